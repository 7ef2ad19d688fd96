//! Signatures and signed images in a registry: fetching the cosign signature manifest of a digest (tag
//! `sha256-<hex>.sig`) into the store, and pushing a signed image with its signature.
//!
//! A fetched signature is untrusted until verified: only its blobs are checked against their digests here;
//! the key check happens in [`super::verify`].

use std::io::Read;

use super::cosign::{self, MANIFEST_LIMIT, PAYLOAD_LIMIT};
use crate::oci::Digest;
use crate::oci::client::{Client, ClientOptions, RegistryError};
use crate::oci::digest::VerifyError;
use crate::oci::manifest::{Descriptor, ImageManifest};
use crate::oci::media;
use crate::oci::reference::RegistryRef;
use crate::store::{Store, StoreError};
use verity_fuse::ErrorClass;

/// Why a signature cannot be fetched or pushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureTransferError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed (content not matching its digest lands here).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signature manifest is unusable.
    #[error(transparent)]
    Signature(#[from] cosign::SignatureStoreError),
    /// Reading a blob failed or it does not match its descriptor.
    #[error("blob {digest}: {reason}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
}

impl SignatureTransferError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Registry(e) => e.class(),
            Self::Store(e) => e.class(),
            Self::Signature(e) => e.class(),
            Self::Blob { .. } => ErrorClass::BadInput,
        }
    }
}

fn client_for(reference: &RegistryRef, options: &ClientOptions) -> Result<Client, RegistryError> {
    Client::new(reference, options.clone())
}

/// Reads a small blob whole and checks it against its descriptor.
fn small_blob(client: &mut Client, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>, SignatureTransferError> {
    let blob_error = |reason: String| SignatureTransferError::Blob {
        digest: descriptor.digest,
        reason,
    };
    if descriptor.size > limit {
        return Err(blob_error(format!(
            "{} bytes, over the limit of {limit}",
            descriptor.size
        )));
    }
    let mut bytes = Vec::new();
    client
        .blob(&descriptor.digest)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| blob_error(e.to_string()))?;
    descriptor
        .digest
        .verify(descriptor.size, &bytes)
        .map_err(|e: VerifyError| blob_error(e.to_string()))?;
    Ok(bytes)
}

/// Fetches the signature manifest of `manifest` from `reference`'s repository into the store and tags it
/// there; `Ok(false)` when the registry has none.
pub fn fetch_signatures(
    store: &Store,
    reference: &RegistryRef,
    manifest: &Digest,
    options: &ClientOptions,
) -> Result<bool, SignatureTransferError> {
    let mut client = client_for(reference, options)?;
    let tag = cosign::signature_tag(manifest);
    let fetched = match client.manifest(&tag, media::OCI_MANIFEST, MANIFEST_LIMIT) {
        Ok(f) => f,
        Err(RegistryError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let layers = cosign::signature_layers(&fetched.digest, &fetched.bytes)?;
    let signature_manifest: ImageManifest =
        serde_json::from_slice(&fetched.bytes).map_err(|e| cosign::SignatureStoreError::Manifest {
            digest: fetched.digest,
            reason: e.to_string(),
        })?;
    let mut staged = Vec::new();
    for layer in &layers {
        let bytes = small_blob(&mut client, layer, PAYLOAD_LIMIT)?;
        staged.push(store.stage_bytes(&layer.digest, layer.size, &bytes)?);
    }
    let config = small_blob(&mut client, &signature_manifest.config, MANIFEST_LIMIT)?;
    let config_descriptor = &signature_manifest.config;
    staged.push(store.stage_bytes(&config_descriptor.digest, config_descriptor.size, &config)?);
    staged.push(store.stage_bytes(&fetched.digest, fetched.bytes.len() as u64, &fetched.bytes)?);
    for blob in staged {
        blob.commit()?;
    }
    let descriptor = Descriptor {
        media_type: media::OCI_MANIFEST.to_owned(),
        digest: fetched.digest,
        size: fetched.bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    store.tag(
        &format!("{}/{}:{tag}", reference.host, reference.repository),
        descriptor,
    )?;
    Ok(true)
}

/// What a push sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushReport {
    /// `HOST/REPO:TAG` the signed manifest was pushed to.
    pub target: String,
    /// The signed manifest's digest.
    pub manifest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub present: usize,
    /// The signature tag pushed (cosign scheme).
    pub signature: Option<String>,
}

impl PushReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} ({}; {} blobs uploaded, {} already there)",
            self.target, self.manifest, self.uploaded, self.present
        );
        if let Some(sig) = &self.signature {
            line.push_str(&format!(", signature {sig}"));
        }
        line
    }
}

/// Pushes the signed image of `report` (config, layers, annotated manifest under its tag) and, for cosign,
/// its signature manifest (payloads, config, manifest at `sha256-<hex>.sig`) to `reference`'s repository.
/// Blobs go first and manifests last, so a reader never sees a manifest whose blobs are missing.
pub fn push_signed(
    store: &Store,
    reference: &RegistryRef,
    report: &super::image::SignReport,
    options: &ClientOptions,
) -> Result<PushReport, SignatureTransferError> {
    let mut client = client_for(reference, options)?;
    let (_, manifest_bytes, image) =
        super::image::read_image(store, &report.name).map_err(|e| SignatureTransferError::Blob {
            digest: report.manifest.digest,
            reason: e.to_string(),
        })?;
    let tag = report
        .name
        .rsplit_once(':')
        .map(|(_, tag)| tag.to_owned())
        .unwrap_or_else(|| "latest".to_owned());
    let mut counts = (0, 0);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        push_blob(&mut client, store, blob, &mut counts)?;
    }
    client.put_manifest(&tag, &report.manifest.media_type, &manifest_bytes)?;
    let mut signature = None;
    if let Some(cosign) = &report.cosign {
        let bytes = store.read_blob(
            &cosign.manifest.digest,
            cosign.manifest.size,
            MANIFEST_LIMIT,
            "signature manifest",
        )?;
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| cosign::SignatureStoreError::Manifest {
                digest: cosign.manifest.digest,
                reason: e.to_string(),
            })?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            push_blob(&mut client, store, blob, &mut counts)?;
        }
        let sig_tag = cosign::signature_tag(&report.manifest.digest);
        client.put_manifest(&sig_tag, media::OCI_MANIFEST, &bytes)?;
        signature = Some(sig_tag);
    }
    Ok(PushReport {
        target: format!("{}/{}:{tag}", reference.host, reference.repository),
        manifest: report.manifest.digest,
        uploaded: counts.0,
        present: counts.1,
        signature,
    })
}

fn push_blob(
    client: &mut Client,
    store: &Store,
    blob: &Descriptor,
    (uploaded, present): &mut (usize, usize),
) -> Result<(), SignatureTransferError> {
    if client.blob_exists(&blob.digest)? {
        *present += 1;
        return Ok(());
    }
    let file = store.open_blob(&blob.digest)?;
    client.put_blob(&blob.digest, blob.size, file)?;
    *uploaded += 1;
    Ok(())
}
