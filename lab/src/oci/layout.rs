//! Reading an OCI image layout directory (`oci:DIR[:TAG]`) as a pull source. Its bytes are as untrusted as
//! a registry's: `index.json` is size-limited and every manifest and blob is checked against its digest.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, VerifyError};
use super::manifest::{Descriptor, Index, REF_NAME};
use verity_fuse::ErrorClass;

/// A layout source failure, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `index.json` is too large or does not parse.
    #[error("{}: {reason}", path.display())]
    Index {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No manifest carries the tag, or no tag was given and the layout holds several.
    #[error("{}: {reason}", dir.display())]
    NoSuchTag {
        /// The layout.
        dir: PathBuf,
        /// What was looked for and what exists.
        reason: String,
    },
    /// A manifest is not what its descriptor says.
    #[error("{}: {source}", path.display())]
    Verify {
        /// The blob file.
        path: PathBuf,
        /// The mismatch.
        #[source]
        source: VerifyError,
    },
}

impl LayoutError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            Self::Index { .. } | Self::NoSuchTag { .. } => ErrorClass::BadInput,
            Self::Verify { source, .. } => source.class(),
        }
    }
}

/// An image layout opened for reading.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens the layout in `dir` (nothing is read yet).
    pub(crate) fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    /// The descriptor in `index.json` tagged `tag`, or the only one when `tag` is `None`.
    pub(crate) fn resolve(&self, tag: Option<&str>, limit: u64) -> Result<Descriptor, LayoutError> {
        let path = self.dir.join("index.json");
        let bytes = read_limited(&path, limit)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| LayoutError::Index {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tags = || {
            let names: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
                .collect();
            if names.is_empty() {
                "it has no tagged manifests".to_owned()
            } else {
                format!("it has: {}", names.join(", "))
            }
        };
        match tag {
            Some(tag) => index
                .manifests
                .iter()
                .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
                .cloned()
                .ok_or_else(|| LayoutError::NoSuchTag {
                    dir: self.dir.clone(),
                    reason: format!("no manifest tagged {tag:?}; {}", tags()),
                }),
            None => match index.manifests.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(LayoutError::NoSuchTag {
                    dir: self.dir.clone(),
                    reason: format!(
                        "{} manifests and no tag given (write oci:DIR:TAG); {}",
                        index.manifests.len(),
                        tags()
                    ),
                }),
            },
        }
    }

    /// What `oci:DIR[:TAG][@DIGEST]` names: by digest when it has one, else by tag.
    pub(crate) fn resolve_ref(
        &self,
        reference: &super::reference::LayoutRef,
        limit: u64,
    ) -> Result<Descriptor, LayoutError> {
        match &reference.digest {
            Some(digest) => self.resolve_digest(digest, limit),
            None => self.resolve(reference.tag.as_deref(), limit),
        }
    }

    /// The manifest `digest`, as `index.json` lists it, or else straight from its blob (checked; its media
    /// type is the one the document states, or for an OCI document without one, which the OCI spec allows,
    /// an index if it lists `manifests` and a manifest if it has a `config`): `oci:DIR@sha256:HEX`.
    pub(crate) fn resolve_digest(&self, digest: &Digest, limit: u64) -> Result<Descriptor, LayoutError> {
        let path = self.dir.join("index.json");
        let bytes = read_limited(&path, limit)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| LayoutError::Index {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(listed) = index.manifests.iter().find(|d| d.digest == *digest) {
            return Ok(listed.clone());
        }
        let path = self.blob_path(digest);
        let bytes = match read_limited(&path, limit) {
            Ok(bytes) => bytes,
            Err(LayoutError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NoSuchTag {
                    dir: self.dir.clone(),
                    reason: format!("no manifest {digest} in index.json or blobs/"),
                });
            }
            Err(e) => return Err(e),
        };
        digest
            .verify(bytes.len() as u64, &bytes)
            .map_err(|source| LayoutError::Verify { path, source })?;
        Ok(Descriptor {
            media_type: super::manifest::embedded_media_type(&bytes).unwrap_or_else(|| oci_type_by_shape(&bytes)),
            digest: *digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        })
    }

    /// Reads a manifest-sized blob and checks it against its descriptor.
    pub(crate) fn read(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(&descriptor.digest);
        if descriptor.size > limit {
            return Err(LayoutError::Verify {
                path,
                source: VerifyError::TooLarge {
                    digest: descriptor.digest,
                    size: descriptor.size,
                    limit,
                    what: "manifest",
                },
            });
        }
        let bytes = read_limited(&path, limit)?;
        descriptor
            .digest
            .verify(descriptor.size, &bytes)
            .map_err(|source| LayoutError::Verify { path, source })?;
        Ok(bytes)
    }

    /// Opens a blob for streaming (the store checks it as it copies).
    pub(crate) fn open(&self, digest: &Digest) -> Result<File, LayoutError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|source| LayoutError::Io { path, source })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }
}

/// The OCI media type a document without `mediaType` has by its fields (empty when neither fits).
fn oci_type_by_shape(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if value.get("manifests").is_some() {
        super::media::OCI_INDEX.to_owned()
    } else if value.get("config").is_some() {
        super::media::OCI_MANIFEST.to_owned()
    } else {
        String::new()
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, LayoutError> {
    let io_error = |source| LayoutError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(io_error)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(LayoutError::Index {
            path: path.to_owned(),
            reason: format!("larger than the limit of {limit} bytes"),
        });
    }
    Ok(bytes)
}
