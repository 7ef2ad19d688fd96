//! The kernel's root-hash signature of each layer, carried in the manifest: the layer annotation
//! [`ROOT_HASH_SIGNATURE`] holds the base64 of the detached DER PKCS#7 that
//! [`super::kernel_signature::root_hash_signature`] makes (what `veritysetup open --root-hash-signature`
//! hands to the kernel), and the same bytes go beside the layer as [`SIGNATURE_FILE`].
//!
//! Writing ([`add_signatures`]) sets the annotation on a manifest that [`super::annotate`] has already given
//! its root hashes, before the image signature is made, so the image signature covers it like the other
//! annotations. Reading ([`read_signature`]) is a pure function over the annotation's value: base64 of at most
//! [`MAX_SIGNATURE_LEN`] bytes, a PKCS#7 the kernel's parser accepts, and, when the message carries its
//! signer's certificate, a signature that verifies over this layer's root hash with it. Whether the kernel
//! trusts that certificate is its keyring's business, never the manifest's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use serde::Serialize;
use serde_json::Value;
use verity_fuse::ErrorClass;
use verity_fuse::signature::{self, Keyring, MAX_SIGNATURE_LEN, SignatureError, Signer, TrustedCertificate};

use super::annotate::{AnnotateError, set_annotations};
use crate::oci::Digest;
use crate::root_hash::RootHash;

/// Layer annotation: base64 of the layer's root-hash signature in the kernel's format.
pub const ROOT_HASH_SIGNATURE: &str = "org.veritylab.dm-verity.root-hash-signature";

/// The file beside `layer.erofs` holding the same signature in DER, for `--root-hash-signature`.
pub(crate) const SIGNATURE_FILE: &str = "layer.erofs.roothash.p7s";

/// The longest annotation value that can decode to at most [`MAX_SIGNATURE_LEN`] bytes.
const MAX_ANNOTATION_LEN: usize = MAX_SIGNATURE_LEN.div_ceil(3) * 4;

/// A copy of `manifest` (JSON bytes) whose layer descriptors carry `signatures` (DER, in layer order) in
/// [`ROOT_HASH_SIGNATURE`]; every other field is kept.
pub(crate) fn add_signatures(manifest: &[u8], signatures: &[(Digest, Vec<u8>)]) -> Result<Vec<u8>, AnnotateError> {
    let mut doc: Value = serde_json::from_slice(manifest).map_err(|_| AnnotateError::NotAManifest)?;
    let descriptors = doc
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or(AnnotateError::NotAManifest)?;
    if descriptors.len() != signatures.len() {
        return Err(AnnotateError::LayerCount {
            manifest: descriptors.len(),
            converted: signatures.len(),
        });
    }
    for (index, (descriptor, (layer, der))) in descriptors.iter_mut().zip(signatures).enumerate() {
        let digest = descriptor.get("digest").and_then(Value::as_str).unwrap_or_default();
        if digest != layer.to_string() {
            return Err(AnnotateError::LayerMismatch {
                index,
                manifest: digest.to_owned(),
                converted: *layer,
            });
        }
        set_annotations(descriptor, &[(ROOT_HASH_SIGNATURE, STANDARD.encode(der))])
            .ok_or(AnnotateError::NotAManifest)?;
    }
    serde_json::to_vec(&doc).map_err(|_| AnnotateError::NotAManifest)
}

/// What a layer's root-hash signature annotation holds, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSignature {
    /// The layer.
    pub layer: Digest,
    /// The signature's DER length.
    pub len: usize,
    /// The certificate inside the message whose key verified it over the layer's root hash; `None` when the
    /// message carries no certificate (then only a keyring holding the signer can check it).
    pub signer: Option<Signer>,
    /// The signature (DER).
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// Why a layer's root-hash signature annotation is unusable; each names the layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerSignatureError {
    /// The value is not base64.
    #[error("layer {layer}: annotation {ROOT_HASH_SIGNATURE} is not base64: {reason}")]
    NotBase64 {
        /// The layer.
        layer: Digest,
        /// What the decoder said.
        reason: String,
    },
    /// The signature is larger than a kernel `user` key may hold.
    #[error("layer {layer}: the root-hash signature is {len} bytes, more than the kernel's {MAX_SIGNATURE_LEN}")]
    TooLarge {
        /// The layer.
        layer: Digest,
        /// Its length (decoded, or estimated from the annotation's length).
        len: usize,
    },
    /// The bytes are not a PKCS#7 signature the kernel's parser accepts.
    #[error("layer {layer}: the root-hash signature is malformed: {source}")]
    Malformed {
        /// The layer.
        layer: Digest,
        /// What the parser said.
        #[source]
        source: Box<SignatureError>,
    },
    /// The signer's certificate inside the message does not verify the signature over this layer's root hash.
    #[error("layer {layer}: the root-hash signature does not verify over the layer's root hash: {source}")]
    WrongRootHash {
        /// The layer.
        layer: Digest,
        /// What the check said (it names the root hash).
        #[source]
        source: Box<SignatureError>,
    },
}

impl LayerSignatureError {
    /// What kind of failure this is: a malformed annotation is bad input; a signature over something else
    /// vouches for nothing.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::NotBase64 { .. } | Self::TooLarge { .. } | Self::Malformed { .. } => ErrorClass::BadInput,
            Self::WrongRootHash { .. } => ErrorClass::NotTrusted,
        }
    }
}

/// The DER bytes of `value`, the [`ROOT_HASH_SIGNATURE`] annotation of `layer`: base64 of at most the
/// kernel's largest signature, not parsed (the kernel's check, or its emulation, decides on them at device
/// open).
pub(crate) fn decode_signature(layer: Digest, value: &str) -> Result<Vec<u8>, LayerSignatureError> {
    if value.len() > MAX_ANNOTATION_LEN {
        return Err(LayerSignatureError::TooLarge {
            layer,
            len: value.len() / 4 * 3,
        });
    }
    let der = STANDARD.decode(value).map_err(|e| LayerSignatureError::NotBase64 {
        layer,
        reason: e.to_string(),
    })?;
    if der.len() > MAX_SIGNATURE_LEN {
        return Err(LayerSignatureError::TooLarge { layer, len: der.len() });
    }
    Ok(der)
}

/// Checks `value`, the [`ROOT_HASH_SIGNATURE`] annotation of `layer` (whose root hash is `root`).
pub(crate) fn read_signature(
    layer: Digest,
    value: &str,
    root: &RootHash,
) -> Result<LayerSignature, LayerSignatureError> {
    let der = decode_signature(layer, value)?;
    let parsed = signature::parse(&der).map_err(|source| LayerSignatureError::Malformed {
        layer,
        source: Box::new(source),
    })?;
    let carried = carried_certificates(&der);
    let signer = if carried.certificates().is_empty() {
        None
    } else {
        let signer =
            parsed
                .verify(&root.to_string(), &carried)
                .map_err(|source| LayerSignatureError::WrongRootHash {
                    layer,
                    source: Box::new(source),
                })?;
        Some(signer)
    };
    Ok(LayerSignature {
        layer,
        len: der.len(),
        signer,
        der,
    })
}

/// The certificates a PKCS#7 message carries that the emulation can use (others are left out).
fn carried_certificates(der: &[u8]) -> Keyring {
    let mut keyring = Keyring::empty();
    let signed = ContentInfo::from_der(der)
        .ok()
        .and_then(|info| info.content.decode_as::<SignedData>().ok());
    let certificates = signed.and_then(|s| s.certificates).map(|set| set.0.into_vec());
    for choice in certificates.unwrap_or_default() {
        if let cms::cert::CertificateChoices::Certificate(cert) = choice
            && let Ok(cert_der) = cert.to_der()
            && let Ok(trusted) = TrustedCertificate::from_der(&cert_der)
        {
            keyring.push(trusted);
        }
    }
    keyring
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sign::kernel_signature::{root_hash_signature, self_signed_certificate};
    use crate::sign::keys;

    fn signed(root: &RootHash) -> Vec<u8> {
        let key = keys::generate();
        let cert = self_signed_certificate(&key, "annotation test").unwrap();
        root_hash_signature(&key, &cert, root).unwrap()
    }

    #[test]
    fn a_signature_round_trips_through_the_manifest_and_verifies_over_its_root_hash() {
        let layer = Digest::of(b"layer");
        let root = RootHash::from_bytes(&[7; 32]).unwrap();
        let der = signed(&root);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "layers": [{"digest": layer.to_string(), "annotations": {"kept": "yes"}}],
            "other": 1,
        }))
        .unwrap();
        let annotated = add_signatures(&manifest, &[(layer, der.clone())]).unwrap();
        let value: Value = serde_json::from_slice(&annotated).unwrap();
        assert_eq!(value["other"], 1);
        assert_eq!(value["layers"][0]["annotations"]["kept"], "yes");
        let map: BTreeMap<String, String> = serde_json::from_value(value["layers"][0]["annotations"].clone()).unwrap();
        let read = read_signature(layer, &map[ROOT_HASH_SIGNATURE], &root).unwrap();
        assert_eq!(read.der, der);
        assert_eq!(read.signer.unwrap().subject, "CN=annotation test");
        assert!(matches!(
            add_signatures(&manifest, &[(Digest::of(b"other"), der)]),
            Err(AnnotateError::LayerMismatch { index: 0, .. })
        ));
    }

    #[test]
    fn bad_annotations_are_errors_naming_the_layer() {
        let layer = Digest::of(b"layer");
        let root = RootHash::from_bytes(&[7; 32]).unwrap();
        let named = |e: LayerSignatureError| {
            assert!(e.to_string().contains(&layer.to_string()), "{e}");
            e
        };
        let e = named(read_signature(layer, "not base64!", &root).unwrap_err());
        assert!(matches!(e, LayerSignatureError::NotBase64 { .. }) && e.class() == ErrorClass::BadInput);
        let e = named(read_signature(layer, &STANDARD.encode(b"\x30\x03abc"), &root).unwrap_err());
        assert!(matches!(e, LayerSignatureError::Malformed { .. }));
        let huge = STANDARD.encode(vec![0u8; MAX_SIGNATURE_LEN + 1]);
        let e = named(read_signature(layer, &huge, &root).unwrap_err());
        assert!(matches!(e, LayerSignatureError::TooLarge { .. }));
        let other = RootHash::from_bytes(&[8; 32]).unwrap();
        let e = named(read_signature(layer, &STANDARD.encode(signed(&other)), &root).unwrap_err());
        assert!(matches!(e, LayerSignatureError::WrongRootHash { .. }) && e.class() == ErrorClass::NotTrusted);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_annotations_never_panic(value in ".{0,200}", bytes in proptest::collection::vec(0u8.., 0..300)) {
            let root = RootHash::from_bytes(&[1; 32]).unwrap();
            let _ = read_signature(Digest::of(b"l"), &value, &root);
            let _ = read_signature(Digest::of(b"l"), &STANDARD.encode(&bytes), &root);
        }
    }
}
