//! Both schemes round-trip, and the gap delivery-kit's scheme has: a changed layer-descriptor annotation
//! alone is not covered by the delivery-kit payload, but is by the cosign scheme.

use veritylab::convert::{self, VerityLayout};
use veritylab::sign::Policy;
use veritylab::sign::{CheckName, Outcome, SignatureFinding};
use veritylab::sign::{Scheme, annotate, cosign, delivery_kit};

use super::support::{
    REPO, findings, forget_conversions, manifest_json, options, rejected, signed_store, store_manifest, verified,
};

#[test]
fn cosign_signing_keeps_the_image_and_verification_returns_the_signed_root_hashes() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, report) = signed_store(work.path(), Scheme::Cosign);
    let name = format!("{REPO}:v1");
    assert_eq!(report.name, name);
    assert_ne!(report.manifest.digest, report.source, "a new manifest digest");
    let source: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.blob_path(&report.source)).unwrap()).unwrap();
    let signed = manifest_json(&store, &name);
    assert_eq!(signed["config"], source["config"], "same config");
    for (s, o) in signed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(source["layers"].as_array().unwrap())
    {
        assert_eq!((&s["digest"], &s["size"]), (&o["digest"], &o["size"]), "same layers");
        assert_eq!(s["annotations"][annotate::HASH_ALGORITHM], "sha256");
    }
    assert_eq!(signed["annotations"][annotate::BUILD_TIMESTAMP], "2027-01-15T08:00:00Z");
    let sig_name = format!("{REPO}:{}", cosign::signature_tag(&report.manifest.digest));
    assert!(store.lookup(&sig_name).is_ok(), "signature stored at {sig_name}");
    let listed = veritylab::cli::list_images(&store).unwrap();
    assert_eq!(listed.len(), 1, "the signature manifest is not listed as an image");

    let image = verified(&store, &name, &options(Policy::default(), &public, Scheme::Cosign));
    assert_eq!(image.manifest().digest, report.manifest.digest);
    assert_eq!(image.signed_by().unwrap().key, public.fingerprint);
    assert_eq!(image.layers().len(), 2);
    for (layer, signed) in image.layers().iter().zip(&report.layers) {
        assert_eq!(layer.verity().root_hash, signed.root_hash);
        assert_eq!(
            layer.converted(),
            [VerityLayout::Containerd],
            "the local tree was compared"
        );
        let local = convert::existing(&store, &layer.digest(), VerityLayout::Containerd)
            .unwrap()
            .unwrap();
        assert_eq!(layer.verity().params().data_blocks, local.data_blocks);
        assert_eq!(layer.verity().params().salt, vec![0u8; 32]);
    }
    // The separate layout's tree has the same root hash, so it verifies too.
    convert::convert_image(&store, &name, VerityLayout::Separate, &|_| {}).unwrap();
    let again = verified(&store, &name, &options(Policy::default(), &public, Scheme::Cosign));
    assert_eq!(
        again.layers()[0].converted(),
        [VerityLayout::Containerd, VerityLayout::Separate]
    );
}

#[test]
fn delivery_kit_round_trips_with_its_own_annotations() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, report) = signed_store(work.path(), Scheme::DeliveryKit);
    let name = format!("{REPO}:v1");
    assert!(report.cosign.is_none());
    let signed = manifest_json(&store, &name);
    assert!(signed["annotations"][delivery_kit::SIGNATURE].is_string());
    assert_eq!(signed["annotations"][delivery_kit::BUILD_TIMESTAMP], "1800000000");
    assert_eq!(
        signed["layers"][0]["annotations"][delivery_kit::ROOT_HASH],
        report.layers[0].root_hash.to_string()
    );
    let image = verified(&store, &name, &options(Policy::default(), &public, Scheme::DeliveryKit));
    assert_eq!(image.layers()[1].verity().root_hash, report.layers[1].root_hash);
    // The cosign verifier finds no cosign signature on it.
    let report = rejected(&store, &name, &options(Policy::default(), &public, Scheme::Cosign));
    assert!(matches!(
        findings(&report)[0],
        SignatureFinding::SignatureMissing { .. }
    ));
}

/// Changes layer 0's root-hash annotation (key `key`) and stores the result as `REPO:v1` again, as an
/// attacker with write access to the registry or the store can.
fn change_root_hash(store: &veritylab::store::Store, key: &str) -> String {
    let name = format!("{REPO}:v1");
    let mut manifest = manifest_json(store, &name);
    manifest["layers"][0]["annotations"][key] = serde_json::Value::String("ab".repeat(32));
    store_manifest(store, &name, &serde_json::to_vec(&manifest).unwrap());
    name
}

#[test]
fn a_changed_root_hash_annotation_passes_the_delivery_kit_signature_but_not_cosign() {
    // delivery-kit: the signature still verifies; only a local tree can tell, and a node that has not
    // converted the layer yet trusts the attacker's root hash.
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, _) = signed_store(&work.path().join("dk"), Scheme::DeliveryKit);
    let name = change_root_hash(&store, delivery_kit::ROOT_HASH);
    let dk = options(Policy::default(), &public, Scheme::DeliveryKit);
    let report = rejected(&store, &name, &dk);
    let signature = report.checks.iter().find(|c| c.check == CheckName::Signature).unwrap();
    assert_eq!(
        signature.outcome,
        Outcome::Passed,
        "the payload does not cover layer annotations"
    );
    assert!(findings(&report).iter().any(
        |f| matches!(f, SignatureFinding::RootHashMismatch { signed, .. } if signed.to_string() == "ab".repeat(32))
    ));
    forget_conversions(&store);
    let image = verified(&store, &name, &dk);
    assert_eq!(
        image.layers()[0].verity().root_hash.to_string(),
        "ab".repeat(32),
        "delivery-kit's gap: layer annotations are not signed"
    );

    // cosign: the manifest digest changed, so the signature (even copied to the new digest) fails.
    let (store, _, public, report) = signed_store(&work.path().join("cosign"), Scheme::Cosign);
    let name = change_root_hash(&store, annotate::ROOT_HASH);
    forget_conversions(&store);
    let co = options(Policy::default(), &public, Scheme::Cosign);
    let missing = rejected(&store, &name, &co);
    assert!(matches!(
        findings(&missing)[0],
        SignatureFinding::SignatureMissing { .. }
    ));
    let old = cosign::load(&store, REPO, &report.manifest.digest).unwrap().unwrap();
    let new_digest = store.lookup(&name).unwrap().digest;
    cosign::save(&store, REPO, &new_digest, &cosign::SignatureImage::new(&old)).unwrap();
    let replayed = rejected(&store, &name, &co);
    assert!(
        matches!(&findings(&replayed)[0], SignatureFinding::PayloadDigest { signed, used } if *signed == report.manifest.digest.to_string() && *used == new_digest),
        "{replayed:#?}"
    );
}
