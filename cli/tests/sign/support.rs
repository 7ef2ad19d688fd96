//! Shared helpers: small images written straight into a store (tar layers made with the `tar` crate, so no
//! tool is needed), keys, signing, and the store edits an attacker with write access would make.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use veritylab::oci::Digest;
use veritylab::oci::manifest::{Descriptor, REF_NAME};
use veritylab::oci::media;
use veritylab::sign::BuildTimestamp;
use veritylab::sign::Policy;
use veritylab::sign::Scheme;
use veritylab::sign::keys::{self, PublicKey};
use veritylab::sign::{
    self, Report, SignOptions, SignReport, SignatureFinding, VerifiedImage, VerifyError, VerifyOptions,
};
use veritylab::store::Store;

/// The repository test images live in (a name only: nothing is contacted).
pub(super) const REPO: &str = "registry.example/lab/app";

/// A gzip-less tar with one file per `(path, content)`.
pub(super) fn layer_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder.append_data(&mut header, path, &content[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

fn put(store: &Store, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    store.put_bytes(&digest, bytes.len() as u64, bytes).unwrap();
    digest
}

/// Stores an image of `layers` (tar bytes) tagged `name`; returns its manifest digest.
pub(super) fn store_image(store: &Store, name: &str, layers: &[Vec<u8>]) -> Digest {
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|bytes| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(store, bytes).to_string(), "size": bytes.len()})
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|b| Digest::of(b).to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_digest = put(store, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    store_manifest(store, name, &manifest)
}

/// Stores manifest bytes and tags them `name` (as a pull, or an attacker with store access, would).
pub(super) fn store_manifest(store: &Store, name: &str, manifest: &[u8]) -> Digest {
    let digest = put(store, manifest);
    store
        .tag(
            name,
            Descriptor {
                media_type: media::OCI_MANIFEST.to_owned(),
                digest,
                size: manifest.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            },
        )
        .unwrap();
    digest
}

/// Two small layers whose content depends on `seed`.
pub(super) fn layers(seed: &str) -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[
            ("etc/hello", format!("hello from {seed}\n").into_bytes()),
            ("usr/bin/tool", seed.as_bytes().repeat(3000)),
        ]),
        layer_tar(&[("etc/motd", format!("second layer of {seed}\n").into_bytes())]),
    ]
}

/// A key pair: the signing key and its trusted public form.
pub(super) fn key_pair() -> (p256::ecdsa::SigningKey, PublicKey) {
    let key = keys::generate();
    let public = PublicKey::new(*key.verifying_key(), Path::new("test.pub"));
    (key, public)
}

/// Signs the stored image `name` with `key` in `scheme`, built at `built`.
pub(super) fn sign(store: &Store, name: &str, key: &p256::ecdsa::SigningKey, scheme: Scheme, built: u64) -> SignReport {
    let options = SignOptions {
        key: key.clone(),
        scheme,
        root_hash_key: None,
        tag: None,
        built: BuildTimestamp(built),
        layout: veritylab::convert::VerityLayout::Containerd,
        kernel_certificate: None,
    };
    sign::sign_image(store, name, &options, &|_| {}).unwrap()
}

/// A store in `dir` holding `REPO:v1` from [`layers`], signed with a new key in `scheme`.
pub(super) fn signed_store(dir: &Path, scheme: Scheme) -> (Store, p256::ecdsa::SigningKey, PublicKey, SignReport) {
    let store = Store::open(dir).unwrap();
    store_image(&store, &format!("{REPO}:v1"), &layers("v1"));
    let (key, public) = key_pair();
    let report = sign(&store, &format!("{REPO}:v1"), &key, scheme, 1_800_000_000);
    (store, key, public, report)
}

/// Options trusting `key` under `policy`, in `scheme`.
pub(super) fn options(policy: Policy, key: &PublicKey, scheme: Scheme) -> VerifyOptions {
    let mut options = VerifyOptions::new(policy, vec![key.clone()]);
    options.scheme = scheme;
    options
}

/// Verifies and expects success.
pub(super) fn verified(store: &Store, name: &str, options: &VerifyOptions) -> VerifiedImage {
    match sign::verify_image(store, name, options) {
        Ok(image) => {
            assert!(image.report().verified);
            image
        }
        Err(e) => panic!("{name} should verify: {e}"),
    }
}

/// Verifies, expects a rejection, and returns the report (never marked verified).
pub(super) fn rejected(store: &Store, name: &str, options: &VerifyOptions) -> Report {
    match sign::verify_image(store, name, options) {
        Ok(image) => panic!("{name} should be rejected: {:#?}", image.report()),
        Err(VerifyError::Rejected { report }) => {
            assert!(!report.verified, "a rejected image is never marked verified");
            *report
        }
        Err(e) => panic!("{name}: expected a rejection, got {e}"),
    }
}

/// The findings of a report.
pub(super) fn findings(report: &Report) -> Vec<SignatureFinding> {
    report.findings().cloned().collect()
}

/// Removes the entry `name` from the store's `index.json` (what stripping a tag in a store looks like).
pub(super) fn untag(store: &Store, name: &str) {
    let path = store.root().join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["annotations"][REF_NAME] != name);
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The stored manifest `name` as JSON.
pub(super) fn manifest_json(store: &Store, name: &str) -> serde_json::Value {
    let d = store.lookup(name).unwrap();
    serde_json::from_slice(&fs::read(store.blob_path(&d.digest)).unwrap()).unwrap()
}

/// Removes every local conversion (a node that has not converted the layers yet).
pub(super) fn forget_conversions(store: &Store) {
    fs::remove_dir_all(store.root().join("layers/sha256")).unwrap();
    fs::create_dir_all(store.root().join("layers/sha256")).unwrap();
}
