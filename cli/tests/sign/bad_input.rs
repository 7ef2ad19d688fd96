//! Bad input: a signature by another key, a stripped signature, a payload for another digest, a changed
//! root-hash annotation, malformed base64 or DER, key files of the wrong mode or format, and a policy with
//! unknown keys. Each is a typed error with its reason, and nothing is marked trusted.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use veritylab::sign::SignatureFinding;
use veritylab::sign::cosign::{self, SignatureError, SignatureImage, StoredSignature};
use veritylab::sign::keys::{self, KeyError};
use veritylab::sign::{Policy, PolicyError};
use veritylab::sign::{Scheme, annotate};

use super::support::{
    REPO, findings, key_pair, layers, manifest_json, options, rejected, sign, signed_store, store_image,
    store_manifest, untag,
};

fn name() -> String {
    format!("{REPO}:v1")
}

#[test]
fn a_signature_made_with_another_key_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, _, _) = signed_store(work.path(), Scheme::Cosign);
    let (_, stranger) = key_pair();
    let report = rejected(&store, &name(), &options(Policy::default(), &stranger, Scheme::Cosign));
    match &findings(&report)[0] {
        SignatureFinding::BadSignature {
            error: SignatureError::NoTrustedKey { tried },
            ..
        } => assert_eq!(tried, &vec![stranger.fingerprint.clone()]),
        other => panic!("{other:?}"),
    }
    assert!(
        report
            .findings()
            .next()
            .unwrap()
            .to_string()
            .contains("does not verify with any trusted key")
    );
}

#[test]
fn a_stripped_signature_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, signed) = signed_store(work.path(), Scheme::Cosign);
    let sig_name = format!("{REPO}:{}", cosign::signature_tag(&signed.manifest.digest));
    untag(&store, &sig_name);
    let report = rejected(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    assert_eq!(
        findings(&report),
        vec![SignatureFinding::SignatureMissing { expected: sig_name }],
        "{report:#?}"
    );
    // delivery-kit: stripping the embedded annotations (a new manifest) is caught the same way.
    let (store, _, public, _) = signed_store(&work.path().join("dk"), Scheme::DeliveryKit);
    let mut manifest = manifest_json(&store, &name());
    manifest["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(veritylab::sign::delivery_kit::SIGNATURE);
    store_manifest(&store, &name(), &serde_json::to_vec(&manifest).unwrap());
    let report = rejected(
        &store,
        &name(),
        &options(Policy::default(), &public, Scheme::DeliveryKit),
    );
    assert!(matches!(
        findings(&report)[0],
        SignatureFinding::SignatureMissing { .. }
    ));
}

#[test]
fn a_payload_for_another_digest_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (store, key, public, signed) = signed_store(work.path(), Scheme::Cosign);
    let other = veritylab::oci::Digest::of(b"another manifest");
    let payload = cosign::payload(REPO, &other);
    let forged = StoredSignature {
        signature: cosign::sign(&key, &payload),
        payload,
    };
    cosign::save(&store, REPO, &signed.manifest.digest, &SignatureImage::new(&[forged])).unwrap();
    let report = rejected(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    assert_eq!(
        findings(&report),
        vec![SignatureFinding::PayloadDigest {
            signed: other.to_string(),
            used: signed.manifest.digest
        }]
    );
    // The same for a payload naming another repository.
    let payload = cosign::payload("registry.example/elsewhere", &signed.manifest.digest);
    let moved = StoredSignature {
        signature: cosign::sign(&key, &payload),
        payload,
    };
    cosign::save(&store, REPO, &signed.manifest.digest, &SignatureImage::new(&[moved])).unwrap();
    let report = rejected(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    assert!(
        matches!(&findings(&report)[0], SignatureFinding::PayloadIdentity { signed, .. } if signed == "registry.example/elsewhere")
    );
}

#[test]
fn a_changed_root_hash_annotation_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, _) = signed_store(work.path(), Scheme::Cosign);
    let mut manifest = manifest_json(&store, &name());
    manifest["layers"][1]["annotations"][annotate::ROOT_HASH] = serde_json::Value::String("cd".repeat(32));
    store_manifest(&store, &name(), &serde_json::to_vec(&manifest).unwrap());
    let report = rejected(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    let all = findings(&report);
    assert!(matches!(all[0], SignatureFinding::SignatureMissing { .. }), "{all:?}");
    assert!(
        all.iter().any(
            |f| matches!(f, SignatureFinding::RootHashMismatch { signed, .. } if signed.to_string() == "cd".repeat(32))
        ),
        "the local tree disagrees too: {all:?}"
    );
    // A malformed annotation is named with the reason.
    manifest["layers"][1]["annotations"][annotate::ROOT_HASH] = serde_json::Value::String("XYZ".to_owned());
    store_manifest(&store, &name(), &serde_json::to_vec(&manifest).unwrap());
    let report = rejected(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    assert!(
        report
            .findings()
            .any(|f| f.to_string().contains("not 64 lower-case hex digits")),
        "{report:#?}"
    );
}

fn with_signature_text(text: &str) -> Vec<SignatureFinding> {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, signed) = signed_store(work.path(), Scheme::Cosign);
    let mut sigs = cosign::load(&store, REPO, &signed.manifest.digest).unwrap().unwrap();
    sigs[0].signature = text.to_owned();
    cosign::save(&store, REPO, &signed.manifest.digest, &SignatureImage::new(&sigs)).unwrap();
    findings(&rejected(
        &store,
        &name(),
        &options(Policy::default(), &public, Scheme::Cosign),
    ))
}

#[test]
fn malformed_base64_and_der_signatures_are_refused() {
    assert!(matches!(
        &with_signature_text("MEUCIQ!!not base64")[0],
        SignatureFinding::BadSignature {
            error: SignatureError::Base64 { .. },
            ..
        }
    ));
    let not_der = base64::engine::general_purpose::STANDARD.encode(b"\x30\x03\x02\x01");
    assert!(matches!(
        &with_signature_text(&not_der)[0],
        SignatureFinding::BadSignature {
            error: SignatureError::Der { .. },
            ..
        }
    ));
    let empty = with_signature_text("");
    assert!(
        matches!(
            &empty[0],
            SignatureFinding::BadSignature {
                error: SignatureError::Der { .. },
                ..
            }
        ),
        "{empty:?}"
    );
}

#[test]
fn key_files_of_the_wrong_mode_or_format_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("lab");
    let files = keys::write_pair(&prefix, None, false).unwrap();
    assert_eq!(
        fs::metadata(&files.private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::metadata(&files.public).unwrap().permissions().mode() & 0o777, 0o644);
    keys::load_private(&files.private, None).unwrap();
    assert!(matches!(
        keys::write_pair(&prefix, None, false),
        Err(KeyError::Exists { .. })
    ));

    fs::set_permissions(&files.private, fs::Permissions::from_mode(0o640)).unwrap();
    let err = keys::load_private(&files.private, None).unwrap_err();
    assert!(matches!(err, KeyError::Permissions { mode: 0o640, .. }), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");

    let wrong = |name: &str, text: &str| {
        let path = work.path().join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        keys::load_private(&path, None).unwrap_err()
    };
    let public_text = fs::read_to_string(&files.public).unwrap();
    assert!(matches!(wrong("pub.key", &public_text), KeyError::Format { .. }));
    assert!(wrong("garbage.key", "hello").to_string().contains("not a PEM file"));
    let err = keys::load_public(&files.private).unwrap_err();
    assert!(err.to_string().contains("not a PUBLIC KEY"), "{err}");
    assert!(matches!(
        keys::load_public(Path::new("/nonexistent.pub")),
        Err(KeyError::Io { .. })
    ));
}

#[test]
fn a_policy_with_unknown_keys_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("policy.toml");
    for (text, unknown) in [
        ("require_pull_by_digets = true\n", "require_pull_by_digets"),
        (
            "[[repository]]\npattern = \"**\"\nrequire_signatures = false\n",
            "require_signatures",
        ),
        ("[rollback]\nminimum = 1\n", "rollback"),
    ] {
        fs::write(&path, text).unwrap();
        let err = Policy::load(&path).unwrap_err();
        assert!(matches!(err, PolicyError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(unknown), "{err}");
    }
    fs::write(&path, "trusted_keys = [\"missing.pub\"]\n").unwrap();
    assert!(matches!(Policy::load(&path), Err(PolicyError::Key { .. })));
}

#[test]
fn an_unsigned_image_is_refused_and_allowed_only_where_the_policy_says_so() {
    let work = tempfile::tempdir().unwrap();
    let store = veritylab::store::Store::open(work.path()).unwrap();
    let (key, public) = key_pair();
    store_image(&store, &name(), &layers("v1"));
    let report = rejected(&store, &name(), &options(Policy::default(), &public, Scheme::Cosign));
    assert!(matches!(
        findings(&report)[0],
        SignatureFinding::SignatureMissing { .. }
    ));
    let policy = Policy::parse(
        "[[repository]]\npattern = \"registry.example/lab/*\"\nrequire_signature = false\n",
        work.path(),
        Path::new("policy.toml"),
    )
    .unwrap();
    // Not signed, and no root hashes either: still refused, for the missing annotations.
    let report = rejected(&store, &name(), &options(policy.clone(), &public, Scheme::Cosign));
    assert!(
        findings(&report)
            .iter()
            .all(|f| matches!(f, SignatureFinding::Annotation(_))),
        "{report:#?}"
    );
    // Signed and then stripped: allowed by this rule, with the signature check skipped and said so.
    let signed = sign(&store, &name(), &key, Scheme::Cosign, 1_800_000_000);
    untag(
        &store,
        &format!("{REPO}:{}", cosign::signature_tag(&signed.manifest.digest)),
    );
    let image = super::support::verified(&store, &name(), &options(policy, &public, Scheme::Cosign));
    assert!(image.signed_by().is_none());
}
