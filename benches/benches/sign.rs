//! Criterion benchmarks of signing and verifying an image of 50 layers in a store: `sign` (annotate the
//! manifest with 50 root hashes, sign, store the manifest and the signature manifest; the layers are
//! converted once beforehand, as `convert` would have done) and `verify` (signature over the stored payload,
//! 50 root-hash annotations, 50 local trees compared), beside the bare ECDSA P-256 sign and verify of one
//! payload, the floor under both.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use veritylab::convert::VerityLayout;
use veritylab::oci::Digest;
use veritylab::oci::manifest::Descriptor;
use veritylab::oci::media;
use veritylab::sign::BuildTimestamp;
use veritylab::sign::Policy;
use veritylab::sign::keys::{self, PublicKey};
use veritylab::sign::{self, SignOptions, VerifyOptions};
use veritylab::sign::{Scheme, cosign};
use veritylab::store::Store;

const LAYERS: usize = 50;
const NAME: &str = "registry.example/bench/app:v1";

fn put(store: &Store, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    store.put_bytes(&digest, bytes.len() as u64, bytes).unwrap();
    digest
}

/// Stores an image of 50 one-file layers under [`NAME`].
fn image(store: &Store) {
    let mut layers = Vec::new();
    for i in 0..LAYERS {
        let mut builder = tar::Builder::new(Vec::new());
        let content = format!("layer {i}\n").repeat(100);
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("layer{i}/file"), content.as_bytes())
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let digest = put(store, &bytes);
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.to_string(), "size": bytes.len()}));
    }
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = put(store, config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let descriptor = Descriptor {
        media_type: media::OCI_MANIFEST.to_owned(),
        digest: put(store, &manifest),
        size: manifest.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    store.tag(NAME, descriptor).unwrap();
}

fn sign_and_verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    image(&store);
    let key = keys::generate();
    let public = PublicKey::new(*key.verifying_key(), std::path::Path::new("bench.pub"));
    let options = SignOptions {
        key: key.clone(),
        scheme: Scheme::Cosign,
        root_hash_key: None,
        tag: Some("signed".to_owned()),
        built: BuildTimestamp(1_800_000_000),
        layout: VerityLayout::Containerd,
        kernel_certificate: None,
    };
    // Converts the 50 layers once; every measured signing reuses the conversions.
    let signed = sign::sign_image(&store, NAME, &options, &|_| {}).unwrap();
    let verify_options = VerifyOptions::new(Policy::default(), vec![public.clone()]);

    let mut group = c.benchmark_group("sign_50_layers");
    group.sample_size(10);
    group.bench_function("sign", |b| {
        b.iter(|| sign::sign_image(&store, black_box(NAME), &options, &|_| {}).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            let image = sign::verify_image(&store, black_box(&signed.name), &verify_options).unwrap();
            assert_eq!(image.layers().len(), LAYERS);
            assert!(image.layers().iter().all(|l| !l.converted().is_empty()));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("ecdsa_p256_one_payload");
    let payload = cosign::payload("registry.example/bench/app", &signed.manifest.digest);
    let signature = cosign::sign(&key, &payload);
    let trusted = [public];
    group.bench_function("sign", |b| b.iter(|| cosign::sign(&key, black_box(&payload))));
    group.bench_function("verify", |b| {
        b.iter(|| cosign::verify(&trusted, black_box(&payload), &signature).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sign_and_verify);
criterion_main!(benches);
