//! Signing an image of the store: convert its layers, annotate a copy of its manifest with their root hashes,
//! store and tag that manifest, and sign it in the chosen [`Scheme`].

use std::path::PathBuf;

use p256::ecdsa::SigningKey;
use serde::Serialize;

use super::annotate::{self, AnnotateError, AnnotationKeys};
use super::cosign::{self, SignatureStoreError, StoredSignature};
use super::kernel_annotation;
use super::kernel_signature::{self, KernelSignatureError};
use super::keys::PublicKey;
use super::timestamp::BuildTimestamp;
use super::{ImageName, Scheme, delivery_kit};
use crate::convert::{self, ConvertError, VerityLayout};
use crate::oci::Digest;
use crate::oci::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError};
use crate::oci::reference::ReferenceError;
use crate::root_hash::RootHash;
use crate::store::{Store, StoreError};
use verity_fuse::ErrorClass;

/// The largest image manifest read.
pub(crate) const MANIFEST_LIMIT: u64 = 4 << 20;

/// How to sign.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// The signing key.
    pub key: SigningKey,
    /// The scheme.
    pub scheme: Scheme,
    /// The root-hash annotation key, when not the scheme's default.
    pub root_hash_key: Option<String>,
    /// The tag of the signed image; `None` keeps the source's tag (the signed manifest replaces it).
    pub tag: Option<String>,
    /// The build timestamp written into the manifest.
    pub built: BuildTimestamp,
    /// The conversion layout used for layers not yet converted.
    pub layout: VerityLayout,
    /// The signing key's X.509 certificate (DER): when given, each layer also gets the kernel's root-hash
    /// signature (`kernel_annotation`), in its descriptor and beside the layer.
    pub kernel_certificate: Option<Vec<u8>>,
}

/// A failed signing; a partly signed image is never tagged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The image name does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store failed or does not hold the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The stored entry is an index.
    #[error("{name}: stored entry {digest} is not an image manifest")]
    NotAnImage {
        /// The image name.
        name: String,
        /// Its digest.
        digest: Digest,
    },
    /// A layer does not convert.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The manifest cannot be annotated.
    #[error(transparent)]
    Annotate(#[from] AnnotateError),
    /// The delivery-kit signature cannot be embedded.
    #[error(transparent)]
    Embed(#[from] delivery_kit::EmbedError),
    /// A root-hash signature cannot be made.
    #[error(transparent)]
    KernelSignature(#[from] KernelSignatureError),
    /// Earlier signatures cannot be read.
    #[error(transparent)]
    Signatures(#[from] SignatureStoreError),
    /// The image has no tag to give the signed manifest.
    #[error("{name} has no tag: give the signed image one with --tag")]
    NoTag {
        /// The image name.
        name: String,
    },
}

impl SignError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Reference(e) => e.class(),
            Self::Store(e) => e.class(),
            Self::Manifest(e) => e.class(),
            Self::Convert(e) => e.class(),
            Self::Annotate(e) => e.class(),
            Self::Embed(e) => e.class(),
            Self::Signatures(e) => e.class(),
            Self::KernelSignature(e) => e.class(),
            Self::NotAnImage { .. } | Self::NoTag { .. } => ErrorClass::BadInput,
        }
    }
}

/// One signed layer.
#[derive(Debug, Clone, Serialize)]
pub struct SignedLayer {
    /// The layer digest.
    pub digest: Digest,
    /// Its root hash.
    pub root_hash: RootHash,
    /// The kernel's root-hash signature written beside the layer, when a certificate was given.
    pub root_hash_signature: Option<PathBuf>,
}

/// Where a cosign signature was stored.
#[derive(Debug, Clone, Serialize)]
pub struct CosignSignature {
    /// The signature manifest's name in the store (`REPO:sha256-<hex>.sig`).
    pub name: String,
    /// Its descriptor.
    pub manifest: Descriptor,
    /// The payload's digest.
    pub payload: Digest,
}

/// What signing produced.
#[derive(Debug, Clone, Serialize)]
pub struct SignReport {
    /// The signed image's name in the store.
    pub name: String,
    /// Its repository (the payload's identity).
    pub repository: String,
    /// The manifest that was signed for.
    pub source: Digest,
    /// The annotated, signed manifest.
    pub manifest: Descriptor,
    /// The scheme.
    pub scheme: Scheme,
    /// The build timestamp.
    pub built: BuildTimestamp,
    /// The signing key's public fingerprint.
    pub key: String,
    /// The layers and their root hashes.
    pub layers: Vec<SignedLayer>,
    /// The cosign signature (cosign scheme only).
    pub cosign: Option<CosignSignature>,
}

/// Reads the image manifest stored under `name`.
pub fn read_image(store: &Store, name: &str) -> Result<(Descriptor, Vec<u8>, ImageManifest), SignError> {
    let descriptor = store.lookup(name)?;
    let bytes = store.read_blob(&descriptor.digest, descriptor.size, MANIFEST_LIMIT, "manifest")?;
    match manifest::parse(&descriptor.digest, &descriptor.media_type, &bytes)? {
        Manifest::Image(image) => Ok((descriptor, bytes, image)),
        Manifest::Index(_) => Err(SignError::NotAnImage {
            name: name.to_owned(),
            digest: descriptor.digest,
        }),
    }
}

/// Signs the stored image `name` (see the module docs); `progress` hears about each layer.
pub fn sign_image(
    store: &Store,
    name: &str,
    options: &SignOptions,
    progress: &dyn Fn(&str),
) -> Result<SignReport, SignError> {
    let image_name = ImageName::parse(name)?;
    let (source, bytes, image) = read_image(store, name)?;
    let target = match (&options.tag, &image_name.tag) {
        (Some(tag), _) | (None, Some(tag)) => image_name.with_tag(tag),
        (None, None) => return Err(SignError::NoTag { name: name.to_owned() }),
    };
    let count = image.layers.len();
    let mut conversions = Vec::with_capacity(count);
    for (i, layer) in image.layers.iter().enumerate() {
        progress(&format!("layer {}/{count} {}", i + 1, layer.digest));
        conversions.push(convert::convert_layer(store, &layer.digest, layer.size, options.layout)?.conversion);
    }
    let keys = AnnotationKeys::for_scheme(options.scheme, options.root_hash_key.as_deref());
    let mut signed = annotate::annotate(&bytes, &conversions, &keys, options.built)?;
    let mut signature_files = vec![None; count];
    if let Some(certificate) = &options.kernel_certificate {
        let mut signatures = Vec::with_capacity(count);
        for (conversion, file) in conversions.iter().zip(&mut signature_files) {
            let der = kernel_signature::root_hash_signature(&options.key, certificate, &conversion.roothash)?;
            let path = conversion.dir.join(kernel_annotation::SIGNATURE_FILE);
            crate::store::write_atomically(&path, &der)?;
            *file = Some(path);
            signatures.push((conversion.layer, der));
        }
        signed = kernel_annotation::add_signatures(&signed, &signatures)?;
    }
    if options.scheme == Scheme::DeliveryKit {
        signed = delivery_kit::embed(&signed, &options.key)?;
    }
    let digest = Digest::of(&signed);
    manifest::parse(&digest, &source.media_type, &signed)?;
    let manifest = Descriptor {
        media_type: source.media_type.clone(),
        digest,
        size: signed.len() as u64,
        platform: source.platform.clone(),
        annotations: Default::default(),
    };
    store.put_bytes(&digest, manifest.size, &signed)?;
    let cosign = match options.scheme {
        Scheme::Cosign => {
            let payload = cosign::payload(&image_name.repository, &digest);
            let signature = StoredSignature {
                signature: cosign::sign(&options.key, &payload),
                payload: payload.clone(),
            };
            let (_, descriptor) = cosign::add(store, &image_name.repository, &digest, signature)?;
            Some(CosignSignature {
                name: image_name.with_tag(&cosign::signature_tag(&digest)),
                manifest: descriptor,
                payload: Digest::of(&payload),
            })
        }
        Scheme::DeliveryKit => None,
    };
    store.tag(&target, manifest.clone())?;
    Ok(SignReport {
        name: target,
        repository: image_name.repository,
        source: source.digest,
        manifest,
        scheme: options.scheme,
        built: options.built,
        key: PublicKey::new(*options.key.verifying_key(), std::path::Path::new("-")).fingerprint,
        layers: conversions
            .iter()
            .zip(signature_files)
            .map(|(c, root_hash_signature)| SignedLayer {
                digest: c.layer,
                root_hash: c.roothash,
                root_hash_signature,
            })
            .collect(),
        cosign,
    })
}
