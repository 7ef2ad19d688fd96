//! What the watcher checks: one converted layer's files and the root hash pinned when the watch began.
//!
//! [`for_images`] resolves store images to their layers' conversions (`conversion.json`, written by
//! `veritylab convert`), in both layouts where both exist. The root hash, offsets and parameters are read
//! once, at start: a later change to the record or the sidecar cannot move what the watcher expects.
//!
//! The node's records are only as good as the node: an attacker who replaces a layer, its sidecar and its
//! record consistently passes a check pinned to them. For a signed image the root hashes are pinned from the
//! signature instead: [`for_verified`] takes them from a [`VerifiedImage`], [`for_plan`] from a mount's plan
//! of what was verified. Each target says where its pin came from ([`PinSource`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use verity_fuse::Geometry;
use verity_fuse::source::FileSource;
use verity_fuse::superblock::Superblock;

use super::report::DriftFinding;
use crate::convert::{self, LayerConversion, SIDECAR_FILE, VERITY_FILE, VerityLayout, verity};
use crate::mount::Plan;
use crate::oci::Digest as OciDigest;
use crate::oci::manifest::{self, Manifest};
use crate::root_hash::RootHash;
use crate::sign::verify::VerifiedImage;
use crate::store::Store;
use verity_fuse::ErrorClass;

/// The largest image manifest read back from the store.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// One layer file and its tree, with everything needed to check them pinned.
#[derive(Debug, Clone)]
pub struct LayerTarget {
    /// The layer's name in reports (its digest).
    pub layer: String,
    /// The layout.
    pub layout: VerityLayout,
    /// `layer.erofs`.
    pub data: PathBuf,
    /// The file holding the superblock and tree (`layer.erofs` itself in containerd's layout).
    pub hash: PathBuf,
    /// containerd's sidecar, checked against the pinned root hash and offset.
    pub sidecar: Option<PathBuf>,
    /// The tree's geometry (parameters and placement).
    pub geometry: Geometry,
    /// The pinned root hash.
    pub root: RootHash,
    /// Where the pinned root hash came from.
    pub source: PinSource,
}

/// Layers to check, and findings about layers that cannot be checked (no conversion).
pub type Targets = (Vec<LayerTarget>, Vec<DriftFinding>);

pub use super::report::PinSource;

/// A target that cannot be set up from its record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The store, manifest or record failed.
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    /// The record holds values no tree can have.
    #[error("conversion record of layer {layer}: {reason}")]
    Record {
        /// The layer.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// A store image is an index, not an image.
    #[error("{name}: stored entry is not an image manifest")]
    NotAnImage {
        /// The image name.
        name: String,
    },
    /// The image verified without a signature of its own, so there are no signed root hashes to pin.
    #[error("{name} has no signature of its own by a trusted key: no signed root hashes to pin")]
    NotSigned {
        /// The image name.
        name: String,
    },
}

impl TargetError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Convert(e) => e.class(),
            Self::Record { .. } | Self::NotAnImage { .. } => ErrorClass::BadInput,
            Self::NotSigned { .. } => ErrorClass::NotTrusted,
        }
    }
}

impl LayerTarget {
    /// The target of one recorded conversion.
    pub fn from_conversion(c: &LayerConversion) -> Result<Self, TargetError> {
        let bad = |reason: String| TargetError::Record {
            layer: c.layer.to_string(),
            reason,
        };
        if c.hash != "sha256" || c.salt != verity_fuse::hex::encode(&verity::SALT) {
            return Err(bad(format!(
                "hash {} salt {} are not the conversion's sha256 and zero salt",
                c.hash, c.salt
            )));
        }
        if c.erofs_size != c.data_blocks * verity::BLOCK {
            return Err(bad(format!(
                "erofs_size {} is not {} blocks",
                c.erofs_size, c.data_blocks
            )));
        }
        let geometry = verity::geometry_for(c.erofs_size, c.hashoffset).map_err(|e| bad(e.to_string()))?;
        let root = c.roothash;
        if root.as_bytes().len() != 32 {
            return Err(bad(format!("roothash {root} is not a sha256 digest")));
        }
        let data = c.dir.join(convert::LAYER_FILE);
        let (hash, sidecar) = match c.layout {
            VerityLayout::Containerd => (data.clone(), Some(c.dir.join(SIDECAR_FILE))),
            VerityLayout::Separate => (c.dir.join(VERITY_FILE), None),
        };
        Ok(Self {
            layer: c.layer.to_string(),
            layout: c.layout,
            data,
            hash,
            sidecar,
            geometry,
            root,
            source: PinSource::ConversionRecord,
        })
    }

    /// Pins `root` from `source` in place of the record's root hash.
    pub fn pin(&mut self, root: &RootHash, source: PinSource) {
        self.root = *root;
        self.source = source;
    }

    /// Checks what can be checked before hashing: the files exist, the superblock agrees with the pinned
    /// parameters, the sidecar with the pinned root hash. Returns the opened files.
    pub(super) fn open(&self) -> Result<(FileSource, FileSource), DriftFinding> {
        let open = |path: &Path| {
            FileSource::open(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => DriftFinding::Missing { path: path.to_owned() },
                _ => DriftFinding::Io {
                    path: path.to_owned(),
                    error: e.to_string(),
                },
            })
        };
        let data = open(&self.data)?;
        let hash = open(&self.hash)?;
        self.check_superblock()?;
        if let Some(sidecar) = &self.sidecar {
            self.check_sidecar(sidecar)?;
        }
        Ok((data, hash))
    }

    fn check_superblock(&self) -> Result<(), DriftFinding> {
        let bad = |reason: String| DriftFinding::Superblock {
            path: self.hash.clone(),
            reason,
        };
        let mut bytes = [0u8; 512];
        File::open(&self.hash)
            .and_then(|f| f.read_exact_at(&mut bytes, self.geometry.placement.hash_offset))
            .map_err(|e| bad(format!("reading at {}: {e}", self.geometry.placement.hash_offset)))?;
        let superblock = Superblock::parse(&bytes).map_err(|e| bad(e.to_string()))?;
        if superblock.params != self.geometry.params {
            return Err(bad(format!(
                "parameters {:?} differ from the pinned {:?}",
                superblock.params, self.geometry.params
            )));
        }
        Ok(())
    }

    fn check_sidecar(&self, path: &Path) -> Result<(), DriftFinding> {
        #[derive(serde::Deserialize)]
        struct Sidecar {
            roothash: String,
            hashoffset: u64,
        }
        let pinned = self.root;
        let offset = self.geometry.placement.hash_offset;
        let sidecar = match std::fs::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DriftFinding::Missing { path: path.to_owned() });
            }
            Err(e) => {
                return Err(DriftFinding::Io {
                    path: path.to_owned(),
                    error: e.to_string(),
                });
            }
            Ok(bytes) => serde_json::from_slice::<Sidecar>(&bytes).unwrap_or(Sidecar {
                roothash: "(unreadable JSON)".to_owned(),
                hashoffset: 0,
            }),
        };
        if sidecar.roothash.parse::<RootHash>().ok() != Some(pinned) || sidecar.hashoffset != offset {
            return Err(DriftFinding::Sidecar {
                path: path.to_owned(),
                roothash: sidecar.roothash,
                hashoffset: sidecar.hashoffset,
                pinned_roothash: Box::new(pinned),
                pinned_hashoffset: offset,
            });
        }
        Ok(())
    }
}

/// The targets of the stored images `names`: every converted layout of every layer (each layer once, even
/// when images share it), and a [`DriftFinding::NotConverted`] for each layer with no conversion.
pub fn for_images(store: &Store, names: &[String]) -> Result<Targets, TargetError> {
    let mut targets: Vec<LayerTarget> = Vec::new();
    let mut findings = Vec::new();
    for name in names {
        let descriptor = store.lookup(name).map_err(convert::ConvertError::from)?;
        let bytes = store
            .read_blob(&descriptor.digest, descriptor.size, MANIFEST_LIMIT, "manifest")
            .map_err(convert::ConvertError::from)?;
        let image = match manifest::parse(&descriptor.digest, &descriptor.media_type, &bytes)
            .map_err(convert::ConvertError::from)?
        {
            Manifest::Image(image) => image,
            _ => return Err(TargetError::NotAnImage { name: name.clone() }),
        };
        for layer in &image.layers {
            let mut any = false;
            for layout in [VerityLayout::Containerd, VerityLayout::Separate] {
                if let Some(conversion) = convert::existing(store, &layer.digest, layout)? {
                    any = true;
                    let target = LayerTarget::from_conversion(&conversion)?;
                    if !targets.iter().any(|t| t.layer == target.layer && t.layout == layout) {
                        targets.push(target);
                    }
                }
            }
            if !any {
                findings.push(DriftFinding::NotConverted {
                    image: name.clone(),
                    layer: layer.digest.to_string(),
                });
            }
        }
    }
    Ok((targets, findings))
}

/// Every converted layout of `layer`, pinned to `root` from `source`.
fn pinned_targets(
    store: &Store,
    layer: &OciDigest,
    root: &RootHash,
    source: &PinSource,
    targets: &mut Vec<LayerTarget>,
) -> Result<bool, TargetError> {
    let mut any = false;
    for layout in [VerityLayout::Containerd, VerityLayout::Separate] {
        if let Some(conversion) = convert::existing(store, layer, layout)? {
            any = true;
            let mut target = LayerTarget::from_conversion(&conversion)?;
            target.pin(root, source.clone());
            if !targets.iter().any(|t| t.layer == target.layer && t.layout == layout) {
                targets.push(target);
            }
        }
    }
    Ok(any)
}

/// The targets of a verified image's layers (exactly the verified ones, never looked up by name), pinned to
/// their signed root hashes; an image without a signature of its own is refused.
pub(crate) fn for_verified(store: &Store, image: &VerifiedImage) -> Result<Targets, TargetError> {
    let (Some(signed), Some(by)) = (image.signed_layers(), image.signed_by()) else {
        return Err(TargetError::NotSigned {
            name: image.name().to_owned(),
        });
    };
    let source = PinSource::Signature {
        manifest: image.manifest().digest,
        key: by.key.clone(),
    };
    let mut targets = Vec::new();
    let mut findings = Vec::new();
    for (layer, root) in signed {
        if !pinned_targets(store, &layer.digest(), root.root_hash(), &source, &mut targets)? {
            findings.push(DriftFinding::NotConverted {
                image: image.name().to_owned(),
                layer: layer.digest().to_string(),
            });
        }
    }
    Ok((targets, findings))
}

/// The targets of a mount's layers pinned to the root hashes its plan opened them with, when the plan took
/// them from a signature; `None` when it did not (the node's records are then all there is).
pub fn for_plan(store: &Store, plan: &Plan) -> Result<Option<Targets>, TargetError> {
    let Some(signature) = &plan.signature else {
        return Ok(None);
    };
    let source = PinSource::MountPlan {
        mount: plan.id.clone(),
        manifest: signature.manifest,
        key: signature.key.clone(),
    };
    let mut targets = Vec::new();
    let mut findings = Vec::new();
    for layer in &plan.layers {
        let (Ok(digest), Some(root)) = (layer.name.parse::<OciDigest>(), &layer.root_hash) else {
            continue;
        };
        if !pinned_targets(store, &digest, root, &source, &mut targets)? {
            findings.push(DriftFinding::NotConverted {
                image: plan.image.clone(),
                layer: layer.name.clone(),
            });
        }
    }
    Ok(Some((targets, findings)))
}
