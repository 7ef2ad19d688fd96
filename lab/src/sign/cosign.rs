//! cosign "simple signing": the payload naming a manifest digest, the ECDSA P-256 / SHA-256 signature over
//! its exact bytes, and the signature manifest stored at tag `sha256-<hex>.sig` beside the image (one layer
//! per signature: the payload blob, media type [`SIMPLE_SIGNING`], the base64 DER signature in the layer's
//! [`SIGNATURE_ANNOTATION`]).
//!
//! Signing writes the payload exactly as cosign does (`optional` is `null` when there is nothing to add), and
//! verification works on the stored payload bytes, never on re-serialised JSON. The payload's `critical`
//! sections refuse unknown fields: a verifier must not skip a critical claim it does not understand.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey};
use serde::{Deserialize, Serialize};

use super::keys::PublicKey;
use crate::oci::Digest;
use crate::oci::manifest::{Descriptor, ImageManifest};
use crate::oci::media;
use crate::store::{Store, StoreError};
use verity_fuse::ErrorClass;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of an image signature.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The largest payload read.
pub const PAYLOAD_LIMIT: u64 = 64 << 10;
/// The largest signature manifest read.
pub const MANIFEST_LIMIT: u64 = 1 << 20;

/// The tag of the signatures of `manifest`: `sha256-<hex>.sig`.
pub fn signature_tag(manifest: &Digest) -> String {
    format!("sha256-{}.sig", manifest.hex())
}

/// A simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    /// What the signature is about.
    pub critical: Critical,
    /// Free-form claims (`null` when none).
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// The claims a verifier must check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Critical {
    /// The repository signed for.
    pub identity: Identity,
    /// The manifest signed.
    pub image: Image,
    /// Always [`PAYLOAD_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The repository, `HOST[:PORT]/PATH` without tag or digest.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// `sha256:<hex>` of the manifest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload bytes for `manifest` in `repository`, byte for byte as cosign writes them.
pub fn payload(repository: &str, manifest: &Digest) -> Vec<u8> {
    let payload = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: Image {
                docker_manifest_digest: manifest.to_string(),
            },
            kind: PAYLOAD_TYPE.to_owned(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Parses payload bytes.
pub fn parse_payload(bytes: &[u8]) -> Result<SimpleSigning, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Signs `message` (ECDSA P-256 over its SHA-256, RFC 6979 nonces) and returns the base64 of the DER
/// signature.
pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    let signature: Signature = key.sign(message);
    STANDARD.encode(signature.to_der().as_bytes())
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum SignatureError {
    /// Not base64.
    #[error("the signature is not valid base64: {reason}")]
    Base64 {
        /// The decoder's complaint.
        reason: String,
    },
    /// Not a DER ECDSA signature.
    #[error("the signature is not a DER-encoded ECDSA signature: {reason}")]
    Der {
        /// The parser's complaint.
        reason: String,
    },
    /// No trusted key verifies it.
    #[error("the signature does not verify with any trusted key (tried {})", if tried.is_empty() { "none".to_owned() } else { tried.join(", ") })]
    NoTrustedKey {
        /// Fingerprints of the keys tried.
        tried: Vec<String>,
    },
}

impl SignatureError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Base64 { .. } | Self::Der { .. } => ErrorClass::BadInput,
            Self::NoTrustedKey { .. } => ErrorClass::NotTrusted,
        }
    }
}

/// Checks a base64 DER signature over `message` against `keys`; returns the key that verifies it.
pub fn verify<'k>(keys: &'k [PublicKey], message: &[u8], signature_b64: &str) -> Result<&'k PublicKey, SignatureError> {
    let der = STANDARD
        .decode(signature_b64)
        .map_err(|e| SignatureError::Base64 { reason: e.to_string() })?;
    let signature = Signature::from_der(&der).map_err(|e| SignatureError::Der { reason: e.to_string() })?;
    keys.iter()
        .find(|k| k.key.verify(message, &signature).is_ok())
        .ok_or_else(|| SignatureError::NoTrustedKey {
            tried: keys.iter().map(|k| k.fingerprint.clone()).collect(),
        })
}

/// One signature: its payload bytes and the base64 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// The payload's exact bytes.
    pub payload: Vec<u8>,
    /// The base64 signature from the layer annotation.
    pub signature: String,
}

/// The blobs of a signature manifest: the manifest, its config, and its payload layers.
#[derive(Debug, Clone)]
pub struct SignatureImage {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The payloads, one per layer.
    pub payloads: Vec<Vec<u8>>,
}

impl SignatureImage {
    /// Builds the manifest holding `signatures` (in order), as cosign lays it out.
    pub fn new(signatures: &[StoredSignature]) -> Self {
        let layers: Vec<Descriptor> = signatures
            .iter()
            .map(|s| Descriptor {
                media_type: SIMPLE_SIGNING.to_owned(),
                digest: Digest::of(&s.payload),
                size: s.payload.len() as u64,
                platform: None,
                annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), s.signature.clone())]),
            })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }))
        .unwrap_or_default();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            config: Descriptor {
                media_type: media::OCI_CONFIG.to_owned(),
                digest: Digest::of(&config),
                size: config.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations: BTreeMap::new(),
        };
        Self {
            manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
            config,
            payloads: signatures.iter().map(|s| s.payload.clone()).collect(),
        }
    }

    /// The manifest's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest: Digest::of(&self.manifest),
            size: self.manifest.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// Why stored signatures cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureStoreError {
    /// The store failed (a blob that does not match its digest lands here).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signature manifest does not parse.
    #[error("signature manifest {digest}: {reason}")]
    Manifest {
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
}

impl SignatureStoreError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Store(e) => e.class(),
            Self::Manifest { .. } => ErrorClass::BadInput,
        }
    }
}

/// Parses a signature manifest's JSON into its layer descriptors of type [`SIMPLE_SIGNING`].
pub fn signature_layers(digest: &Digest, bytes: &[u8]) -> Result<Vec<Descriptor>, SignatureStoreError> {
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(|e| SignatureStoreError::Manifest {
        digest: *digest,
        reason: e.to_string(),
    })?;
    let layers: Vec<Descriptor> = manifest
        .layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .collect();
    if layers.is_empty() {
        return Err(SignatureStoreError::Manifest {
            digest: *digest,
            reason: format!("no layer of type {SIMPLE_SIGNING}"),
        });
    }
    Ok(layers)
}

/// The signatures stored for `manifest` under `repository`'s signature tag, if any.
pub fn load(
    store: &Store,
    repository: &str,
    manifest: &Digest,
) -> Result<Option<Vec<StoredSignature>>, SignatureStoreError> {
    let name = format!("{repository}:{}", signature_tag(manifest));
    let descriptor = match store.lookup(&name) {
        Ok(d) => d,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = store.read_blob(
        &descriptor.digest,
        descriptor.size,
        MANIFEST_LIMIT,
        "signature manifest",
    )?;
    let mut out = Vec::new();
    for layer in signature_layers(&descriptor.digest, &bytes)? {
        let payload = store.read_blob(&layer.digest, layer.size, PAYLOAD_LIMIT, "signature payload")?;
        out.push(StoredSignature {
            payload,
            signature: layer.annotations.get(SIGNATURE_ANNOTATION).cloned().unwrap_or_default(),
        });
    }
    Ok(Some(out))
}

/// Stores the signature image holding `signatures` and tags it `REPOSITORY:sha256-<hex>.sig`.
pub fn save(
    store: &Store,
    repository: &str,
    manifest: &Digest,
    image: &SignatureImage,
) -> Result<Descriptor, StoreError> {
    for blob in image.payloads.iter().chain([&image.config, &image.manifest]) {
        store.put_bytes(&Digest::of(blob), blob.len() as u64, blob)?;
    }
    let descriptor = image.descriptor();
    store.tag(&format!("{repository}:{}", signature_tag(manifest)), descriptor.clone())?;
    Ok(descriptor)
}

/// Adds `signature` to the signatures stored for `manifest` (kept once if already there) and stores them.
pub fn add(
    store: &Store,
    repository: &str,
    manifest: &Digest,
    signature: StoredSignature,
) -> Result<(SignatureImage, Descriptor), SignatureStoreError> {
    let mut all = load(store, repository, manifest)?.unwrap_or_default();
    if !all.contains(&signature) {
        all.push(signature);
    }
    let image = SignatureImage::new(&all);
    let descriptor = save(store, repository, manifest, &image)?;
    Ok((image, descriptor))
}

/// Whether a store name is a signature tag (`…:sha256-<hex>.sig`).
pub fn is_signature_name(name: &str) -> bool {
    name.rsplit_once(':').is_some_and(|(_, tag)| {
        tag.strip_prefix("sha256-")
            .and_then(|t| t.strip_suffix(".sig"))
            .is_some_and(|hex| hex.len() == 64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keys;

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let digest: Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            .parse()
            .unwrap();
        let bytes = payload("127.0.0.1:5000/lab/demo", &digest);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/lab/demo"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"cosign container image signature"},"optional":null}"#
        );
        let parsed = parse_payload(&bytes).unwrap();
        assert_eq!(parsed.critical.image.docker_manifest_digest, digest.to_string());
        let unknown = br#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"d"},"type":"t","extra":1},"optional":null}"#;
        assert!(parse_payload(unknown).is_err(), "unknown critical claims are refused");
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_bytes() {
        let key = keys::generate();
        let other = keys::generate();
        let public = |k: &SigningKey| PublicKey::new(*k.verifying_key(), std::path::Path::new("k.pub"));
        let trusted = [public(&key)];
        let sig = sign(&key, b"payload");
        assert_eq!(sign(&key, b"payload"), sig, "RFC 6979: deterministic");
        assert!(verify(&trusted, b"payload", &sig).is_ok());
        assert!(matches!(
            verify(&trusted, b"payloae", &sig),
            Err(SignatureError::NoTrustedKey { .. })
        ));
        assert!(matches!(
            verify(&trusted, b"payload", &sign(&other, b"payload")),
            Err(SignatureError::NoTrustedKey { .. })
        ));
        assert!(matches!(
            verify(&trusted, b"payload", "***"),
            Err(SignatureError::Base64 { .. })
        ));
        assert!(matches!(
            verify(&trusted, b"payload", &STANDARD.encode(b"\x30\x02\x01\x01")),
            Err(SignatureError::Der { .. })
        ));
    }

    #[test]
    fn signature_names_are_recognised() {
        let d = Digest::of(b"m");
        assert!(is_signature_name(&format!("127.0.0.1:5000/a/b:{}", signature_tag(&d))));
        assert!(!is_signature_name("127.0.0.1:5000/a/b:v1"));
    }
}
