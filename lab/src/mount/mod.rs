//! Mounting an image's rootfs the way each defence profile would, and taking it down again.
//!
//! A mount is planned first ([`prepare`]): which layer files, which root hashes (from the local conversion
//! records for `verity`, from the verified signature for `hardened`), where the state lives. The plan is
//! written to `<store>/mounts/<id>/plan.json`; the backend carries it out and writes `record.json`, the
//! record of everything it set up, so [`umount`] removes exactly that and [`list`] can show it. On the
//! `kernel` backend a holder process in a private mount namespace owns every mount (see [`kernel`]): if it
//! dies, the namespace and its mounts die with it.

pub mod cleanup;
pub mod dm;
pub mod emulated;
pub mod kernel;
pub mod pinned;
pub mod record;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::convert::{self, ConvertError, VerityLayout};
use crate::oci::digest::Digest;
use crate::profile::{Backend, Profile};
use crate::store::{Store, StoreError, write_atomically};

pub use record::{Record, RecordError};

/// Why `veritylab mount --backend kernel-vm` is refused: the VM is throwaway, so nothing it mounts can stay
/// mounted on this host.
pub const KERNEL_VM_MOUNTS: &str = "a kernel-vm mount would live in a throwaway VM that powers off when its \
batch of work ends, so it cannot stay mounted on this host; stage attacks on the VM's kernel with `veritylab \
scenario run --backend kernel-vm`, or run the kernel tier's mount test (`cargo test -p veritylab --test main \
kernel_vm::mount`), which mounts, audits, tampers and unmounts inside one VM boot";

/// One layer as a mount uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// A short name: the layer digest, or `pinned:mountpoints`.
    pub name: String,
    /// The EROFS image (for the containerd layout, followed by its tree).
    pub erofs: PathBuf,
    /// Bytes of EROFS data covered by the tree.
    pub erofs_size: u64,
    /// The file holding the hash area.
    pub hash: PathBuf,
    /// Offset of the verity superblock in `hash`.
    pub hashoffset: u64,
    /// The root hash the device is opened with; `None` for unverified profiles.
    pub root_hash: Option<String>,
}

/// Everything a backend needs to mount an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The mount's id (also its state directory's name).
    pub id: String,
    /// Where the rootfs appears.
    pub target: PathBuf,
    /// The image's name in the store.
    pub image: String,
    /// Its manifest digest.
    pub manifest: Digest,
    /// The profile.
    pub profile: Profile,
    /// The backend.
    pub backend: Backend,
    /// The mount's state directory.
    pub state: PathBuf,
    /// The layers, base first (the pinned layer, if any, last).
    pub layers: Vec<LayerSpec>,
    /// Open the verified devices with dm-verity's `check_at_most_once`: a data block verified once is served
    /// unchecked afterwards.
    #[serde(default)]
    pub check_at_most_once: bool,
}

impl Plan {
    /// Where the writable upper directory goes, for profiles that have one.
    pub fn upperdir(&self) -> Option<PathBuf> {
        self.profile.writable().then(|| self.state.join("upper"))
    }

    /// The overlay's work directory, for profiles with an upperdir.
    pub fn workdir(&self) -> Option<PathBuf> {
        self.profile.writable().then(|| self.state.join("work"))
    }
}

/// Where the root hashes of a verified mount come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The conversion records next to the layer files (what the `verity` profile uses).
    Local,
    /// Root hashes taken from a verified signature, by layer digest (what `hardened` requires).
    Signed(BTreeMap<Digest, String>),
}

impl Trust {
    /// The root hashes of a verified signature.
    pub fn signed(image: &crate::sign::verify::VerifiedImage) -> Self {
        Trust::Signed(
            image
                .layers
                .iter()
                .map(|l| (l.verity.layer, l.verity.root_hash.clone()))
                .collect(),
        )
    }
}

/// Why a backend refused a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The verified device refused the root hash or tree parameters.
    RootHash,
    /// A block failed verification while the filesystem was read.
    Verification,
    /// The filesystem refused the image (the kernel's EROFS, or our reader).
    Malformed,
}

/// A layer a backend refused to bring up, with the state of the verified devices at that moment (a holder
/// writes it to [`record::REFUSAL_FILE`] before it exits, so the evidence outlives it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// The layer's name.
    pub layer: String,
    /// What failed, as the backend saw it.
    pub message: String,
    /// Each verified device opened so far (layer name, status report).
    pub devices: Vec<(String, verity_fuse::fuse::StatusReport)>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {}: {}", self.layer, self.message)
    }
}

/// A failed mount, umount or listing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The store failed or lacks the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Converting a layer failed.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// A record or plan is unusable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The profile needs root hashes from a verified signature.
    #[error("the hardened profile takes root hashes only from a verified signature (give --key)")]
    Unsigned,
    /// The signature does not give a root hash for a layer.
    #[error("layer {layer} has no signed root hash")]
    MissingRootHash {
        /// The layer.
        layer: Digest,
    },
    /// The target is not usable.
    #[error("{}: {reason}", target.display())]
    Target {
        /// The target.
        target: PathBuf,
        /// Why.
        reason: String,
    },
    /// The backend cannot run here.
    #[error("backend {backend} is not available here: {reason}")]
    Unavailable {
        /// The backend.
        backend: Backend,
        /// Why.
        reason: String,
    },
    /// Setting up the mount failed; everything set up so far was removed.
    #[error("mounting {}: {reason}", target.display())]
    Setup {
        /// The target.
        target: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A layer's content or root hash was refused while the backend brought it up; nothing is left mounted.
    #[error("mounting {}: {refusal}", target.display())]
    Refused {
        /// The target.
        target: PathBuf,
        /// What was refused and why.
        refusal: Refusal,
    },
    /// Nothing is mounted at the target by this store.
    #[error("{}: no veritylab mount here", target.display())]
    NotMounted {
        /// The target.
        target: PathBuf,
    },
    /// The pinned standard-mountpoints layer does not build to its pinned root hash.
    #[error("the standard-mountpoints layer has root hash {found}, pinned is {pinned}")]
    PinnedMismatch {
        /// The compiled-in root hash.
        pinned: String,
        /// What was built.
        found: String,
    },
}

/// Plans mounting the stored image `image` at `target`: converts its layers if needed and picks root hashes.
pub fn prepare(
    store: &Store,
    image: &str,
    target: &Path,
    profile: Profile,
    backend: Backend,
    trust: &Trust,
) -> Result<Plan, MountError> {
    if backend == Backend::KernelVm {
        return Err(MountError::Unavailable {
            backend,
            reason: KERNEL_VM_MOUNTS.to_owned(),
        });
    }
    let target = absolute_target(target)?;
    let conversion = convert::convert_image(store, image, VerityLayout::Containerd, &|_| {})?;
    let mut layers = Vec::with_capacity(conversion.layers.len() + 1);
    for layer in &conversion.layers {
        let c = &layer.conversion;
        let root_hash = match (profile.verified(), profile, trust) {
            (false, _, _) => None,
            (true, Profile::Hardened, Trust::Local) => return Err(MountError::Unsigned),
            (true, _, Trust::Signed(signed)) => Some(
                signed
                    .get(&c.layer)
                    .cloned()
                    .ok_or(MountError::MissingRootHash { layer: c.layer })?,
            ),
            (true, _, Trust::Local) => Some(c.roothash.clone()),
        };
        layers.push(LayerSpec {
            name: c.layer.to_string(),
            erofs: c.dir.join(convert::LAYER_FILE),
            erofs_size: c.erofs_size,
            hash: c.dir.join(convert::LAYER_FILE),
            hashoffset: c.hashoffset,
            root_hash,
        });
    }
    if profile == Profile::Hardened {
        layers.push(pinned::ensure(store)?);
    }
    let id = record::new_id();
    let state_root = record::state_root(store);
    fs::create_dir_all(&state_root).map_err(|source| StoreError::Io {
        what: "creating",
        path: state_root.clone(),
        source,
    })?;
    // Absolute, as mount tables show paths and overlayfs needs them.
    let state = fs::canonicalize(&state_root)
        .map_err(|source| StoreError::Io {
            what: "resolving",
            path: state_root.clone(),
            source,
        })?
        .join(&id);
    Ok(Plan {
        id,
        target,
        image: image.to_owned(),
        manifest: conversion.manifest,
        profile,
        backend,
        state,
        layers,
        check_at_most_once: false,
    })
}

/// Carries out `plan`; returns the record of what was set up.
pub fn mount(store: &Store, plan: &Plan, exe: &Path) -> Result<Record, MountError> {
    if let Some(existing) = record::find(store, &plan.target)? {
        if existing.holder_alive() || existing.backend == Backend::Emulated {
            return Err(MountError::Target {
                target: plan.target.clone(),
                reason: format!("already mounted by veritylab (mount {})", existing.id),
            });
        }
        umount_record(existing)?;
    }
    fs::create_dir_all(&plan.state).map_err(|e| setup_error(plan, format!("creating the state directory: {e}")))?;
    let plan_file = plan.state.join(record::PLAN_FILE);
    write_atomically(&plan_file, &serde_json::to_vec_pretty(plan).unwrap_or_default())?;
    let result = match plan.backend {
        Backend::Kernel | Backend::Fuse => kernel::start(plan, exe),
        Backend::Emulated => emulated::start(plan),
        Backend::KernelVm => Err(MountError::Unavailable {
            backend: Backend::KernelVm,
            reason: KERNEL_VM_MOUNTS.to_owned(),
        }),
    };
    if result.is_err() {
        let _ = fs::remove_dir_all(&plan.state);
    }
    result
}

/// What [`umount`] removed and anything that was left behind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UmountReport {
    /// The mount's id.
    pub id: String,
    /// The target.
    pub target: PathBuf,
    /// Whether the holder process had to be killed.
    pub killed: bool,
    /// Anything still present after the teardown (mounts, loop devices, processes); empty when clean.
    pub leftovers: Vec<String>,
}

/// Takes down the mount at `target`.
pub fn umount(store: &Store, target: &Path) -> Result<UmountReport, MountError> {
    let target = absolute_target(target)?;
    let record = record::find(store, &target)?.ok_or(MountError::NotMounted { target })?;
    umount_record(record)
}

fn umount_record(record: Record) -> Result<UmountReport, MountError> {
    let mut report = match record.backend {
        Backend::Kernel | Backend::Fuse => kernel::stop(&record),
        _ => UmountReport::default(),
    };
    report.id = record.id.clone();
    report.target = record.target.clone();
    fs::remove_dir_all(&record.state).map_err(|e| MountError::Setup {
        target: record.target.clone(),
        reason: format!("removing {}: {e}", record.state.display()),
    })?;
    Ok(report)
}

/// Every mount recorded in the store, with records whose holder died first cleaned up.
pub fn list(store: &Store) -> Result<Vec<Record>, MountError> {
    Ok(record::all(store)?)
}

fn absolute_target(target: &Path) -> Result<PathBuf, MountError> {
    fs::canonicalize(target).map_err(|e| MountError::Target {
        target: target.to_owned(),
        reason: e.to_string(),
    })
}

fn setup_error(plan: &Plan, reason: String) -> MountError {
    MountError::Setup {
        target: plan.target.clone(),
        reason,
    }
}
