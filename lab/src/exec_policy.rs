//! The `enforced` profile's execution rule where no kernel enforces it: IPE's policy, emulated.
//!
//! On the 6.12 kernel the IPE policy ([`crate::ipe`]) lets `execve` load a file only when the file's
//! filesystem sits on a dm-verity device whose root-hash signature the kernel checked; IPE looks through an
//! overlay at the real (lower) file. Where no kernel enforces it (the emulated and fuse backends, a kernel
//! backend without IPE), [`decide`] makes the same decision for a file the caller has already opened, by
//! identities alone:
//!
//! 1. The file ([`Executable`]: its device and inode, and the unique id of the mount it was opened on) must
//!    be on the container's rootfs mount exactly as the mount recorded it (same unique mount id, same
//!    device). A tmpfs or bind mount over a path, an added EROFS mount, a replaced rootfs: each is another
//!    mount, and the file on it is refused.
//! 2. The file must come from signature-checked devices: the rootfs has no upperdir, and the layer the file
//!    is on (overlayfs reports a lower file's own device, which names its layer), or where the device names
//!    none (the fuse backend's single rootfs) every publisher layer, has a [`LayerTrust`] saying a trusted
//!    certificate vouched for its root hash at device open (the pinned standard-mountpoints layer carries
//!    directories only and is left out).
//! 3. Each layer's EROFS mount must still be the one recorded (by unique mount id), on the verified device
//!    recorded (the loop's backing file is the device file, by device and inode; a dm-verity mapping still
//!    has the recorded root hash).
//!
//! A refusal is `EACCES` with [`DENIED`] and the reason, as IPE's audit record names the rule. The caller
//! then executes exactly the file it opened (through its descriptor), so nothing is looked up twice.
//!
//! What this proves and does not: it is the kernel's rule, decided in the lab's process over the mount table
//! the view shows; a root attacker who replaces that process, or runs a binary outside the lab's `exec`,
//! is not stopped by it. Only the kernel tier's IPE stops `execve` itself.

use std::path::{Path, PathBuf};

use verity_fuse::ErrorClass;
use verity_fuse::identity::{FileId, MountId};

use crate::defence::{self, Defence};
use crate::mount::record::{MountedLayer, Record};
use crate::mount::view::View;
use crate::mount::{LayerTrust, pinned};

pub use crate::mount::Enforcer;

/// What an emulated refusal says, after `Permission denied`.
pub const DENIED: &str = "denied by IPE policy (emulated)";

/// The file about to be executed, as the caller opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executable {
    /// Its device and inode.
    pub file: FileId,
    /// The mount it was opened on.
    pub mount: MountId,
}

/// Why [`decide`] refused to execute a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DenyReason {
    /// The file is on a mount other than the recorded rootfs.
    #[error("the file is on {mount}, not on the container's signature-checked rootfs")]
    NotOnRootfs {
        /// The mount, as the namespace's table describes it.
        mount: String,
    },
    /// The rootfs has an upperdir, whose files no device checks.
    #[error("the rootfs has an upperdir, whose files no verified device checks")]
    Upperdir,
    /// A publisher layer's root hash was not vouched for by a trusted certificate at device open.
    #[error("layer {layer} was opened without a checked root-hash signature")]
    LayerNotSigned {
        /// The layer.
        layer: String,
    },
    /// A layer's mount or device is not the recorded one.
    #[error("layer {layer}: {what}")]
    LayerChanged {
        /// The layer.
        layer: String,
        /// What differs.
        what: String,
    },
}

/// A refused execution: `EACCES`, as IPE refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("executing {}: Permission denied: {DENIED}: {reason}", path.display())]
pub struct ExecDenied {
    /// The path as the container named it.
    pub path: PathBuf,
    /// Why.
    pub reason: DenyReason,
}

impl ExecDenied {
    /// What kind of failure this is: the file is not vouched for.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::NotTrusted
    }
}

/// An allowed execution: the signature-checked layers the rootfs draws on, with how each was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecAllowed {
    /// Each publisher layer and its trust.
    pub layers: Vec<(String, LayerTrust)>,
}

/// Decides whether `exe`, opened at `path` (relative to the rootfs) in the container `record` describes, may
/// execute under the `enforced` profile's rule (see the module docs); `view` shows the container's mounts.
pub fn decide(record: &Record, view: &dyn View, path: &Path, exe: Executable) -> Result<ExecAllowed, ExecDenied> {
    let deny = |reason| ExecDenied {
        path: Path::new("/").join(path),
        reason,
    };
    if !defence::on(Defence::ExecPolicy) {
        return Ok(ExecAllowed { layers: Vec::new() });
    }
    let is = |d: &Option<crate::mountinfo::DeviceNumber>| {
        d.is_some_and(|d| d.major == exe.file.major && d.minor == exe.file.minor)
    };
    // Overlayfs reports a lower file's own device for non-directories where it can: the file then names
    // its layer; otherwise (the overlay's device, or the fuse backend's one rootfs) it may be any layer's.
    let from_layer = record.layers.iter().find(|l| is(&l.erofs_dev));
    let on_rootfs = record.rootfs_mount == Some(exe.mount) && (is(&record.overlay_dev) || from_layer.is_some());
    if !on_rootfs {
        return Err(deny(DenyReason::NotOnRootfs {
            mount: describe_mount(view, exe),
        }));
    }
    if record.upperdir.is_some() {
        return Err(deny(DenyReason::Upperdir));
    }
    let candidates: Vec<&MountedLayer> = match from_layer {
        Some(layer) => vec![layer],
        None => record.layers.iter().filter(|l| l.name != pinned::NAME).collect(),
    };
    let mut layers = Vec::new();
    for layer in candidates {
        let trust = layer.trust.clone().filter(LayerTrust::signature_checked);
        let Some(trust) = trust else {
            return Err(deny(DenyReason::LayerNotSigned {
                layer: layer.name.clone(),
            }));
        };
        if let Some(what) = layer_changed(view, layer) {
            return Err(deny(DenyReason::LayerChanged {
                layer: layer.name.clone(),
                what,
            }));
        }
        layers.push((layer.name.clone(), trust));
    }
    Ok(ExecAllowed { layers })
}

/// What of `layer`'s mount or device is not as recorded, if anything.
fn layer_changed(view: &dyn View, layer: &MountedLayer) -> Option<String> {
    if let Some(recorded) = layer.erofs_mount {
        let found = view.file_at(&layer.lowerdir).map(|(_, mount)| mount);
        if found != Some(recorded) {
            return Some(format!(
                "its EROFS mount at {} is not the recorded one",
                layer.lowerdir.display()
            ));
        }
    }
    let erofs_dev = layer.erofs_dev?;
    if let Some(mapping) = &layer.dm {
        return match view.dm_mapping(erofs_dev) {
            Some(Ok(observed)) if observed.table.root_hash == mapping.root_hash => None,
            _ => Some(format!(
                "device {erofs_dev} is not the recorded dm-verity mapping {}",
                mapping.name
            )),
        };
    }
    let device_dir = layer.device_dir.as_ref()?;
    let device = view
        .file_at(&device_dir.join(verity_fuse::fuse::DEVICE_FILE))
        .map(|(file, _)| file);
    let backing = view.loop_backing(erofs_dev);
    (device.is_none() || backing != device)
        .then(|| format!("the loop device {erofs_dev} does not read the verified device's file"))
}

/// The mount `exe` is on, as the namespace's table describes it.
fn describe_mount(view: &dyn View, exe: Executable) -> String {
    view.mounts()
        .iter()
        .find(|m| view.identify(m) == exe.mount)
        .map(|m| {
            format!(
                "{} {:?} on device {} at {}",
                m.fs_type.to_string_lossy(),
                m.source.to_string_lossy(),
                m.device,
                m.mount_point.display()
            )
        })
        .unwrap_or_else(|| format!("device {}:{}", exe.file.major, exe.file.minor))
}
