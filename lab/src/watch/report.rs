//! What a pass found: typed findings per layer, and per-pass totals of work and CPU.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use verity_fuse::error::{BlockRef, Device, VerityError};

use crate::convert::VerityLayout;
use crate::image_spec::Digest as OciDigest;
use crate::root_hash::RootHash;
use verity_fuse::ErrorClass;

/// A problem found with a layer at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DriftFinding {
    /// A block's digest is not the one its parent (or the root hash) holds: the block was changed.
    #[error("{block} is corrupted: expected digest {expected}, found {found}")]
    Mismatch {
        /// The changed block: a data block, or a hash block with its tree level (0 = leaves).
        block: BlockRef,
        /// The digest the tree or the pinned root hash expects (hex).
        expected: String,
        /// The digest of the block as read (hex).
        found: String,
    },
    /// The unused tail of a hash block is not zero.
    #[error("hash block {block} has non-zero bytes in its unused area at offset {offset}")]
    NonZeroPadding {
        /// Absolute hash-block number.
        block: u64,
        /// Offset in the block.
        offset: usize,
    },
    /// A file of the layer is gone.
    #[error("{} is missing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file is shorter than the data and tree it must hold.
    #[error("{} holds {len} bytes, the {device} needs {needed}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Which part it holds.
        device: Device,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// Reading a file failed.
    #[error("reading {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: String,
    },
    /// The verity superblock does not parse or disagrees with the pinned parameters.
    #[error("verity superblock in {}: {reason}", path.display())]
    Superblock {
        /// The hash file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// containerd's `.dmverity` sidecar no longer holds the pinned root hash and offset.
    #[error("{} says roothash {roothash} hashoffset {hashoffset}, pinned {pinned_roothash} {pinned_hashoffset}", path.display())]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// Its root hash (or why it is unreadable).
        roothash: String,
        /// Its hash offset.
        hashoffset: u64,
        /// The pinned root hash (boxed: a finding is returned as an error and stays small).
        pinned_roothash: Box<RootHash>,
        /// The pinned hash offset.
        pinned_hashoffset: u64,
    },
    /// An image given with keys did not verify, so none of its layers can be pinned to signed root hashes.
    #[error("{image} is not trusted: {reason}")]
    Untrusted {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
    /// An image layer has no conversion to check.
    #[error("layer {layer} of {image} has no conversion (run `veritylab convert`)")]
    NotConverted {
        /// The image.
        image: String,
        /// The layer digest.
        layer: String,
    },
    /// Another verification failure.
    #[error("{reason}")]
    Other {
        /// What failed.
        reason: String,
    },
}

impl DriftFinding {
    /// The finding's kind, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mismatch { .. } => "mismatch",
            Self::NonZeroPadding { .. } => "non_zero_padding",
            Self::Missing { .. } => "missing",
            Self::Truncated { .. } => "truncated",
            Self::Io { .. } => "io",
            Self::Superblock { .. } => "superblock",
            Self::Sidecar { .. } => "sidecar",
            Self::Untrusted { .. } => "untrusted",
            Self::NotConverted { .. } => "not_converted",
            Self::Other { .. } => "other",
        }
    }

    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Mismatch { .. }
            | Self::NonZeroPadding { .. }
            | Self::Truncated { .. }
            | Self::Superblock { .. }
            | Self::Sidecar { .. } => ErrorClass::VerificationFailed,
            Self::Missing { .. } | Self::NotConverted { .. } => ErrorClass::BadInput,
            Self::Io { .. } => ErrorClass::Io,
            Self::Untrusted { .. } => ErrorClass::NotTrusted,
            Self::Other { .. } => ErrorClass::Internal,
        }
    }
}

impl DriftFinding {
    /// The finding for a failed tree check of `data` against `hash`.
    pub fn from_verity(error: VerityError, data: &std::path::Path, hash: &std::path::Path) -> Self {
        let path_of = |device| match device {
            Device::Data => data.to_owned(),
            Device::Hash => hash.to_owned(),
        };
        match error {
            VerityError::HashMismatch { block, expected, found } => DriftFinding::Mismatch {
                block,
                expected: expected.to_hex(),
                found: found.to_hex(),
            },
            VerityError::NonZeroPadding { block, offset } => DriftFinding::NonZeroPadding { block, offset },
            VerityError::Truncated { device, needed, len } => DriftFinding::Truncated {
                path: path_of(device),
                device,
                needed,
                len,
            },
            VerityError::Io { device, error, .. } => DriftFinding::Io {
                path: path_of(device),
                error: error.to_string(),
            },
            other => DriftFinding::Other {
                reason: other.to_string(),
            },
        }
    }
}

/// The outcome of checking one layer in one pass.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// The layer (digest, or the name the caller gave).
    pub layer: String,
    /// The layout checked.
    pub layout: VerityLayout,
    /// The EROFS file.
    pub data: PathBuf,
    /// Where the root hash it was checked against came from.
    pub pinned: PinSource,
    /// When the check started (RFC 3339, UTC).
    pub started: String,
    /// Wall time of the check.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Bytes hashed.
    pub bytes: u64,
    /// CPU time of the worker thread for this layer (getrusage `RUSAGE_THREAD`).
    #[serde(serialize_with = "seconds")]
    pub cpu: Duration,
    /// False when the pass was stopped (deadline) before this layer's check ended.
    pub complete: bool,
    /// What was found; empty when the layer is intact (or the check was stopped first).
    pub findings: Vec<DriftFinding>,
}

/// One pass over every layer.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    /// Pass number, from 1.
    pub pass: u64,
    /// When the pass started (RFC 3339, UTC).
    pub started: String,
    /// Wall time of the pass.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Bytes hashed in the pass.
    pub bytes: u64,
    /// CPU time of the process during the pass (getrusage `RUSAGE_SELF`).
    #[serde(serialize_with = "seconds")]
    pub cpu: Duration,
    /// `cpu / duration` in percent of one core.
    pub cpu_percent: f64,
    /// The budget, in percent of one core.
    pub budget_percent: f64,
    /// Per layer, in the order given.
    pub layers: Vec<LayerReport>,
    /// Findings that belong to no checked layer (a layer without conversion).
    pub findings: Vec<DriftFinding>,
}

impl PassReport {
    /// Every finding of the pass.
    pub fn all_findings(&self) -> impl Iterator<Item = &DriftFinding> {
        self.findings.iter().chain(self.layers.iter().flat_map(|l| &l.findings))
    }

    /// True when every layer was checked to the end and nothing was found.
    pub fn clean(&self) -> bool {
        self.all_findings().next().is_none() && self.layers.iter().all(|l| l.complete)
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
}

/// Where a target's pinned root hash came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum PinSource {
    /// The node's `conversion.json` (as trustworthy as the node's disk).
    ConversionRecord,
    /// A signature verified at start with a trusted key.
    Signature {
        /// The verified manifest.
        manifest: OciDigest,
        /// The key's fingerprint.
        key: String,
    },
    /// The plan of a mount made from a verified signature.
    MountPlan {
        /// The mount's id.
        mount: String,
        /// The verified manifest.
        manifest: OciDigest,
        /// The key's fingerprint.
        key: String,
    },
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::ConversionRecord => f.write_str("conversion.json (the node's record, not signed)"),
            PinSource::Signature { manifest, key } => {
                write!(f, "the signature of {manifest} by key {key}")
            }
            PinSource::MountPlan { mount, manifest, key } => {
                write!(f, "mount {mount}'s plan (signature of {manifest} by key {key})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn finding_kinds_are_their_json_tags() {
        let path = PathBuf::from("/x");
        let findings = [
            DriftFinding::Mismatch {
                block: BlockRef::Data { block: 1 },
                expected: String::new(),
                found: String::new(),
            },
            DriftFinding::NonZeroPadding { block: 1, offset: 2 },
            DriftFinding::Missing { path: path.clone() },
            DriftFinding::Truncated {
                path: path.clone(),
                device: Device::Data,
                needed: 2,
                len: 1,
            },
            DriftFinding::Io {
                path: path.clone(),
                error: String::new(),
            },
            DriftFinding::Superblock {
                path,
                reason: String::new(),
            },
            DriftFinding::Untrusted {
                image: String::new(),
                reason: String::new(),
            },
            DriftFinding::NotConverted {
                image: String::new(),
                layer: String::new(),
            },
            DriftFinding::Other { reason: String::new() },
        ];
        for finding in findings {
            let json = serde_json::to_value(&finding).unwrap();
            assert_eq!(json["kind"], finding.kind());
        }
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |secs: u64| crate::utc::rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_455_600 + 3_723), "2026-11-23T18:42:03.000Z");
    }
}
