//! Deckhouse delivery-kit's signature embedded in the manifest, reproduced so both schemes can be compared.
//!
//! The signed payload is the hex SHA-256 of the concatenation, without separators, of: `schemaVersion`,
//! `mediaType`, the config's digest, media type and size, each layer's digest, media type and size, then
//! every manifest annotation key and value in key order except the three signature annotations. The
//! signature (ECDSA P-256 over SHA-256 of that hex text, DER, base64) goes into the manifest's own
//! annotations, with the signer's public key (base64 of its PEM; the design puts an X.509 certificate there,
//! we have none) in [`CERT`].
//!
//! Layer-descriptor annotations, where the root hashes live, are NOT part of the payload: a changed root-hash
//! annotation keeps this signature valid. The cosign scheme signs the manifest digest and so covers them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey;
use serde_json::Value;

use super::annotate::set_annotations;
use super::cosign;
use super::keys::{self, PublicKey};
use crate::oci::Digest;
use crate::oci::manifest::ImageManifest;
use verity_fuse::ErrorClass;

pub use super::annotate::{DELIVERY_KIT_BUILD_TIMESTAMP as BUILD_TIMESTAMP, DELIVERY_KIT_ROOT_HASH as ROOT_HASH};
/// Manifest annotation with the base64 signature.
pub const SIGNATURE: &str = "io.deckhouse.delivery-kit.signature";
/// Manifest annotation with the signer's certificate (here: the base64 of its public key PEM).
pub const CERT: &str = "io.deckhouse.delivery-kit.cert";
/// Manifest annotation with the certificate chain (unused here).
pub const CHAIN: &str = "io.deckhouse.delivery-kit.chain";

/// The text that is signed: hex SHA-256 of the covered fields (see the module docs).
pub fn payload(manifest: &ImageManifest) -> String {
    let mut text = String::new();
    text.push_str(&manifest.schema_version.to_string());
    text.push_str(manifest.media_type.as_deref().unwrap_or_default());
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        text.push_str(&descriptor.digest.to_string());
        text.push_str(&descriptor.media_type);
        text.push_str(&descriptor.size.to_string());
    }
    for (key, value) in &manifest.annotations {
        if ![SIGNATURE, CERT, CHAIN].contains(&key.as_str()) {
            text.push_str(key);
            text.push_str(value);
        }
    }
    Digest::of(text.as_bytes()).hex()
}

/// Why a manifest cannot be signed in this scheme.
#[derive(Debug, thiserror::Error)]
#[error("the manifest is not an image manifest: {0}")]
pub struct EmbedError(String);

impl EmbedError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Signs the manifest JSON `bytes` and returns it with [`SIGNATURE`] and [`CERT`] set (any earlier values
/// replaced). Every other field is kept.
pub fn embed(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, EmbedError> {
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(|e| EmbedError(e.to_string()))?;
    let signature = cosign::sign(key, payload(&manifest).as_bytes());
    let cert = STANDARD.encode(keys::public_pem(key.verifying_key()));
    let mut doc: Value = serde_json::from_slice(bytes).map_err(|e| EmbedError(e.to_string()))?;
    set_annotations(&mut doc, &[(SIGNATURE, signature), (CERT, cert)])
        .ok_or_else(|| EmbedError("not a JSON object".to_owned()))?;
    Ok(serde_json::to_vec(&doc).unwrap_or_default())
}

/// The embedded signature, if any.
pub fn signature(manifest: &ImageManifest) -> Option<&str> {
    manifest.annotations.get(SIGNATURE).map(String::as_str)
}

/// Checks the embedded signature against `keys`; returns the key that verifies it.
pub fn verify<'k>(
    manifest: &ImageManifest,
    signature: &str,
    keys: &'k [PublicKey],
) -> Result<&'k PublicKey, cosign::SignatureError> {
    cosign::verify(keys, payload(manifest).as_bytes(), signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media;

    fn manifest() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": Digest::of(b"c").to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::of(b"l").to_string(), "size": 1,
                        "annotations": {ROOT_HASH: "aa"}}],
            "annotations": {BUILD_TIMESTAMP: "1700000000"},
        }))
        .unwrap()
    }

    #[test]
    fn the_payload_is_the_hash_of_the_listed_fields_in_order() {
        let image: ImageManifest = serde_json::from_slice(&manifest()).unwrap();
        let text = format!(
            "2{}{}{}1{}application/vnd.oci.image.layer.v1.tar1{BUILD_TIMESTAMP}1700000000",
            media::OCI_MANIFEST,
            Digest::of(b"c"),
            media::OCI_CONFIG,
            Digest::of(b"l"),
        );
        assert_eq!(payload(&image), Digest::of(text.as_bytes()).hex());
    }

    #[test]
    fn embedded_signatures_cover_the_manifest_but_not_layer_annotations() {
        let key = keys::generate();
        let trusted = [PublicKey::new(*key.verifying_key(), std::path::Path::new("k.pub"))];
        let signed: ImageManifest = serde_json::from_slice(&embed(&manifest(), &key).unwrap()).unwrap();
        let sig = signature(&signed).unwrap().to_owned();
        assert!(verify(&signed, &sig, &trusted).is_ok());
        let mut root_changed = signed.clone();
        root_changed.layers[0]
            .annotations
            .insert(ROOT_HASH.to_owned(), "bb".to_owned());
        assert!(
            verify(&root_changed, &sig, &trusted).is_ok(),
            "delivery-kit's gap: layer annotations are not signed"
        );
        let mut size_changed = signed.clone();
        size_changed.layers[0].size = 2;
        assert!(verify(&size_changed, &sig, &trusted).is_err());
        let mut rolled_back = signed;
        rolled_back
            .annotations
            .insert(BUILD_TIMESTAMP.to_owned(), "1".to_owned());
        assert!(verify(&rolled_back, &sig, &trusted).is_err());
    }
}
