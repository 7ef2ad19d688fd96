//! Against a real `docker-registry`: sign → push → pull by tag into a fresh store → verify (the signature
//! fetched from the registry), and the tag moved in the registry afterwards.

use veritylab::oci::PullOptions;
use veritylab::sign::Policy;
use veritylab::sign::{Scheme, cosign, push_signed};
use veritylab::sign::{SignatureFinding, VerifyOptions};
use veritylab::store::Store;

use super::support::{findings, key_pair, rejected, sign, verified};
use crate::oci::support::{Seeded, plain_http, pull, seeded_registry};

fn fetching(public: &veritylab::sign::keys::PublicKey, pull: &PullOptions) -> VerifyOptions {
    let mut options = VerifyOptions::new(Policy::default(), vec![public.clone()]);
    options.registry = Some(pull.client.clone());
    options
}

#[test]
fn sign_push_pull_by_tag_and_verify_against_a_real_registry() {
    let Some(Seeded { work, layout, registry }) = seeded_registry(
        "sign::remote::sign_push_pull_by_tag_and_verify_against_a_real_registry",
        "lab/signed:v1",
    ) else {
        return;
    };
    let reference = format!("{}/lab/signed:v1", registry.host());
    let publisher = Store::open(&work.path().join("publisher")).unwrap();
    let pulled = pull(&publisher, &reference, &plain_http()).unwrap();
    let (key, public) = key_pair();
    let signed = sign(&publisher, &pulled.name, &key, Scheme::Cosign, 1_800_000_000);
    let Ok(veritylab::oci::Reference::Registry(target)) = reference.parse() else {
        panic!()
    };
    let pushed = push_signed(&publisher, &target, &signed, &plain_http().client).unwrap();
    assert_eq!(pushed.manifest, signed.manifest.digest);
    assert_eq!(
        pushed.uploaded, 2,
        "only the signature's payload and config are new: {pushed:?}"
    );
    assert_eq!(
        pushed.signature.as_deref(),
        Some(cosign::signature_tag(&signed.manifest.digest).as_str())
    );

    // A node: pull by tag into an empty store, verify; the signature comes from the registry.
    let node = Store::open(&work.path().join("node")).unwrap();
    let report = pull(&node, &reference, &plain_http()).unwrap();
    assert_eq!(
        report.manifest, signed.manifest.digest,
        "the tag now names the signed manifest"
    );
    let image = verified(&node, &report.name, &fetching(&public, &plain_http()));
    for (layer, expected) in image.layers().iter().zip(&signed.layers) {
        assert_eq!(layer.verity().root_hash, expected.root_hash);
        assert!(layer.converted().is_empty(), "not converted on the node yet");
    }
    veritylab::convert::convert_image(&node, &report.name, veritylab::convert::VerityLayout::Separate, &|_| {})
        .unwrap();
    let image = verified(&node, &report.name, &fetching(&public, &plain_http()));
    assert!(
        image.layers().iter().all(|l| !l.converted().is_empty()),
        "local trees match the signed ones"
    );

    // The tag is moved back to the unsigned original in the registry: a new pull by tag gets it and fails.
    registry.push(&testkit::find_tool("skopeo").unwrap(), &layout, "v1", "lab/signed:v1");
    let other = Store::open(&work.path().join("other")).unwrap();
    let moved = pull(&other, &reference, &plain_http()).unwrap();
    assert_ne!(moved.manifest, signed.manifest.digest);
    let rejected_report = rejected(&other, &moved.name, &fetching(&public, &plain_http()));
    assert!(matches!(
        findings(&rejected_report)[0],
        SignatureFinding::SignatureMissing { .. }
    ));
    // Pulled by the signed digest, it still verifies.
    let pinned = format!("{}/lab/signed@{}", registry.host(), signed.manifest.digest);
    let by_digest = pull(&other, &pinned, &plain_http()).unwrap();
    verified(&other, &by_digest.name, &fetching(&public, &plain_http()));
}
