//! The policy closes the classic holes: rollback to an older signed image, layers mixed from two signed
//! images, and a tag moved after verification (tag TOCTOU).

use std::path::Path;

use veritylab::sign::BuildTimestamp;
use veritylab::sign::Policy;
use veritylab::sign::Scheme;
use veritylab::sign::{CheckName, LayerSource, Outcome, SignatureFinding};

use super::support::{
    REPO, findings, key_pair, layers, manifest_json, options, rejected, sign, store_image, store_manifest, verified,
};

fn policy(text: &str) -> Policy {
    Policy::parse(text, Path::new("."), Path::new("policy.toml")).unwrap()
}

#[test]
fn rollback_to_an_older_signed_build_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let store = veritylab::store::Store::open(work.path()).unwrap();
    let (key, public) = key_pair();
    // v1 built and signed in 2026, v2 in 2027; the policy's floor is 2027-01-01.
    store_image(&store, &format!("{REPO}:v1"), &layers("v1"));
    let old = sign(&store, &format!("{REPO}:v1"), &key, Scheme::Cosign, 1_780_000_000);
    store_image(&store, &format!("{REPO}:v2"), &layers("v2"));
    sign(&store, &format!("{REPO}:v2"), &key, Scheme::Cosign, 1_800_000_000);
    let floor = policy(
        "[[repository]]\npattern = \"registry.example/lab/*\"\nmin_build_timestamp = \"2027-01-01T00:00:00Z\"\n",
    );
    let opts = options(floor, &public, Scheme::Cosign);
    verified(&store, &format!("{REPO}:v2"), &opts);
    // The attacker points the tag back at the old, validly signed manifest.
    let manifest = std::fs::read(store.blob_path(&old.manifest.digest)).unwrap();
    store_manifest(&store, &format!("{REPO}:v2"), &manifest);
    let report = rejected(&store, &format!("{REPO}:v2"), &opts);
    let signature = report.checks.iter().find(|c| c.check == CheckName::Signature).unwrap();
    assert_eq!(signature.outcome, Outcome::Passed, "the old signature itself is valid");
    assert_eq!(
        findings(&report),
        vec![SignatureFinding::Rollback {
            built: BuildTimestamp(1_780_000_000),
            minimum: BuildTimestamp::parse("2027-01-01T00:00:00Z").unwrap(),
        }]
    );
    // Without a floor the rollback goes through: the policy is what closes it.
    verified(
        &store,
        &format!("{REPO}:v2"),
        &options(Policy::default(), &public, Scheme::Cosign),
    );
}

#[test]
fn layers_mixed_from_two_signed_images_are_refused_unless_the_policy_allows_it() {
    let work = tempfile::tempdir().unwrap();
    let store = veritylab::store::Store::open(work.path()).unwrap();
    let (key, public) = key_pair();
    store_image(&store, &format!("{REPO}:a"), &layers("a"));
    let a = sign(&store, &format!("{REPO}:a"), &key, Scheme::Cosign, 1_800_000_000);
    store_image(&store, &format!("{REPO}:b"), &layers("b"));
    let b = sign(&store, &format!("{REPO}:b"), &key, Scheme::Cosign, 1_800_000_000);
    // A manifest with a's base layer and b's top layer, each with its signed root-hash annotations.
    let mut mixed = manifest_json(&store, &format!("{REPO}:a"));
    mixed["layers"][1] = manifest_json(&store, &format!("{REPO}:b"))["layers"][1].clone();
    store_manifest(&store, &format!("{REPO}:mixed"), &serde_json::to_vec(&mixed).unwrap());

    let strict = options(Policy::default(), &public, Scheme::Cosign);
    let report = rejected(&store, &format!("{REPO}:mixed"), &strict);
    let mix = report
        .checks
        .iter()
        .find(|c| c.check == CheckName::SingleSignedManifest)
        .unwrap();
    assert_eq!(
        mix.findings,
        vec![SignatureFinding::MixAndMatch {
            sources: vec![
                LayerSource {
                    layer: a.layers[0].digest,
                    manifest: a.manifest.digest
                },
                LayerSource {
                    layer: b.layers[1].digest,
                    manifest: b.manifest.digest
                },
            ]
        }]
    );
    let weak = options(policy("single_signed_manifest = false\n"), &public, Scheme::Cosign);
    let image = verified(&store, &format!("{REPO}:mixed"), &weak);
    assert!(image.signed_by().is_none(), "trusted per layer, not by one signature");
    assert_eq!(image.layers()[1].verity().root_hash, b.layers[1].root_hash);
}

#[test]
fn a_tag_moved_after_verification_does_not_change_what_was_verified() {
    let work = tempfile::tempdir().unwrap();
    let store = veritylab::store::Store::open(work.path()).unwrap();
    let (key, public) = key_pair();
    let tag = format!("{REPO}:v1");
    store_image(&store, &tag, &layers("v1"));
    let signed = sign(&store, &tag, &key, Scheme::Cosign, 1_800_000_000);
    let opts = options(Policy::default(), &public, Scheme::Cosign);
    let image = verified(&store, &tag, &opts);
    assert_eq!(
        image.manifest().digest,
        signed.manifest.digest,
        "the result pins the digest to mount"
    );
    // The tag now names another (unsigned) image, as a pull of the moved tag would record.
    store_image(&store, &tag, &layers("evil"));
    let report = rejected(&store, &tag, &opts);
    assert!(matches!(
        findings(&report)[0],
        SignatureFinding::SignatureMissing { .. }
    ));
    // By digest, the verified image is still what it was.
    let pinned = format!("{REPO}@{}", signed.manifest.digest);
    store.tag(&pinned, signed.manifest.clone()).unwrap();
    assert_eq!(
        verified(&store, &pinned, &opts).manifest().digest,
        signed.manifest.digest
    );
    // A policy requiring digests refuses the tag outright.
    let digests = options(policy("require_pull_by_digest = true\n"), &public, Scheme::Cosign);
    let report = rejected(&store, &tag, &digests);
    assert!(findings(&report).contains(&SignatureFinding::TagReference { name: tag.clone() }));
    verified(&store, &pinned, &digests);
}

#[test]
fn trusted_keys_come_from_the_policy_and_a_rule_with_keys_trusts_only_those() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let a = veritylab::sign::keys::write_pair(&dir.join("a"), None, false).unwrap();
    let b = veritylab::sign::keys::write_pair(&dir.join("b"), None, false).unwrap();
    let load = |path: &Path| veritylab::sign::keys::load_private(path, None).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "trusted_keys = [\"a.pub\"]\n[[repository]]\npattern = \"registry.example/lab/*\"\nkeys = [\"b.pub\"]\n",
    )
    .unwrap();
    let policy = Policy::load(&dir.join("policy.toml")).unwrap();
    let store = veritylab::store::Store::open(&dir.join("store")).unwrap();
    let other = "registry.example/other/app:v1";
    store_image(&store, other, &layers("other"));
    sign(&store, other, &load(&a.private), Scheme::Cosign, 1_800_000_000);
    let mut by_policy = veritylab::sign::VerifyOptions::new(policy, Vec::new());
    verified(&store, other, &by_policy);
    store_image(&store, &format!("{REPO}:v1"), &layers("v1"));
    sign(
        &store,
        &format!("{REPO}:v1"),
        &load(&a.private),
        Scheme::Cosign,
        1_800_000_000,
    );
    // Key a is trusted in general, and even given as --key, but this repository's rule trusts b alone.
    by_policy.keys = vec![veritylab::sign::keys::load_public(&a.public).unwrap()];
    let report = rejected(&store, &format!("{REPO}:v1"), &by_policy);
    assert!(
        report
            .findings()
            .any(|f| f.to_string().contains(&b.fingerprint) && !f.to_string().contains(&a.fingerprint)),
        "{report:#?}"
    );
    sign(
        &store,
        &format!("{REPO}:v1"),
        &load(&b.private),
        Scheme::Cosign,
        1_800_000_000,
    );
    verified(&store, &format!("{REPO}:v1"), &by_policy);
}

#[test]
fn a_rule_needing_two_signers_counts_distinct_trusted_keys() {
    let work = tempfile::tempdir().unwrap();
    let store = veritylab::store::Store::open(work.path()).unwrap();
    let (first, first_public) = key_pair();
    let (second, second_public) = key_pair();
    let name = format!("{REPO}:v1");
    store_image(&store, &name, &layers("v1"));
    let signed = sign(&store, &name, &first, Scheme::Cosign, 1_800_000_000);
    let pem = |k: &veritylab::sign::keys::PublicKey| veritylab::sign::keys::public_pem(&k.key);
    let two_of_two = policy(&format!(
        "[[repository]]\npattern = \"registry.example/lab/*\"\nkey_threshold = 2\nkey_data = [{:?}, {:?}]\n",
        pem(&first_public),
        pem(&second_public)
    ));
    let opts = options(two_of_two, &first_public, Scheme::Cosign);
    let too_few = vec![SignatureFinding::TooFewSigners {
        rule: "registry.example/lab/*".to_owned(),
        verified: 1,
        needed: 2,
    }];
    assert_eq!(findings(&rejected(&store, &name, &opts)), too_few);
    // The same key signing again is still one signer.
    let again = sign(&store, &name, &first, Scheme::Cosign, 1_800_000_000);
    assert_eq!(
        again.manifest.digest, signed.manifest.digest,
        "the signed manifest is the same"
    );
    assert_eq!(findings(&rejected(&store, &name, &opts)), too_few);
    sign(&store, &name, &second, Scheme::Cosign, 1_800_000_000);
    verified(&store, &name, &opts);
}
