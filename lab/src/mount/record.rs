//! Records of mounts: `<store>/mounts/<id>/plan.json` (what was asked) and `record.json` (what was set up).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::image_spec::Digest;
use crate::mountinfo::DeviceNumber;
use crate::profile::{Backend, Profile};
use crate::root_hash::RootHash;
use crate::store::Store;
use verity_fuse::ErrorClass;
pub use verity_fuse::identity::MountId;
use verity_fuse::identity::{FileId, ProcessId};

/// The plan's file name in a mount's state directory.
pub(crate) const PLAN_FILE: &str = "plan.json";
/// The record's file name in a mount's state directory.
pub const RECORD_FILE: &str = "record.json";
/// What a holder refused, written before it exits (see [`super::LayerRefusal`]).
pub(crate) const REFUSAL_FILE: &str = "refusal.json";
/// The holder's log (its stderr).
pub(crate) const LOG_FILE: &str = "holder.log";
/// The record format this version writes and reads: 2 added the mounts' identities (unique mount ids and
/// the baseline as [`BaselineMount`]s); records without it come from an older veritylab.
pub(crate) const RECORD_FORMAT: u32 = 2;

/// A record or plan that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct RecordError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

impl RecordError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// A layer as it was mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedLayer {
    /// The layer's name (digest or `pinned:mountpoints`).
    pub name: String,
    /// The overlay lowerdir serving it.
    pub lowerdir: PathBuf,
    /// The root hash its device was opened with, for verified profiles.
    pub root_hash: Option<RootHash>,
    /// The verified device's FUSE mount point, for verified profiles.
    pub device_dir: Option<PathBuf>,
    /// Device number (`major:minor`) of that FUSE mount.
    pub device_dev: Option<DeviceNumber>,
    /// Device number of the EROFS mount at `lowerdir` (the loop device, or the dm-verity mapping), for EROFS
    /// profiles.
    pub erofs_dev: Option<DeviceNumber>,
    /// The kernel dm-verity mapping the layer is on, when the host has device-mapper; `None` when its verified
    /// device is ours, served over FUSE at `device_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<super::dm::Mapping>,
    /// The EROFS mount at `lowerdir`, as it was made.
    pub erofs_mount: Option<MountId>,
    /// The verified device's FUSE mount at `device_dir`, as it was made.
    pub device_mount: Option<MountId>,
    /// How the root hash the device opened with was vouched for at open (`enforced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<super::signed::LayerTrust>,
}

/// A mount present when the mount was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineMount {
    /// Its mountinfo id (reused by later mounts once it is gone).
    pub id: u64,
    /// Its unique id, where the kernel has them and the mount could be reached at its mount point (a mount
    /// hidden under another has only its mountinfo id).
    pub unique: Option<u64>,
}

/// What a backend set up for one mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's format (`RECORD_FORMAT`).
    pub format: u32,
    /// The mount's id.
    pub id: String,
    /// Where the rootfs is.
    pub target: PathBuf,
    /// The image's name in the store.
    pub image: String,
    /// Its manifest digest.
    pub manifest: Digest,
    /// The profile.
    pub profile: Profile,
    /// The backend.
    pub backend: Backend,
    /// The state directory.
    pub state: PathBuf,
    /// The process holding the private mount namespace (kernel backend).
    pub holder: Option<u32>,
    /// The holder's start time (`/proc/PID/stat`, field 22): with `holder`, the process itself, which a
    /// process given the pid later does not share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_start: Option<u64>,
    /// The layers, base first.
    pub layers: Vec<MountedLayer>,
    /// The overlay's upper directory, when writable.
    pub upperdir: Option<PathBuf>,
    /// Device number of the overlay at the target.
    pub overlay_dev: Option<DeviceNumber>,
    /// The rootfs mount at the target (the overlay, or the fuse backend's FUSE mount), as it was made.
    pub rootfs_mount: Option<MountId>,
    /// The mounts present in the namespace when the mount was complete; anything else was added later.
    pub baseline: Vec<BaselineMount>,
    /// Unix time the mount was made.
    pub created: u64,
    /// True once everything is set up; a record left `false` by a dead holder is a crashed mount.
    pub ready: bool,
    /// The holder's mount namespace (`mnt:[INODE]`), to find processes still holding it after the holder died.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Who enforces the exec rule (`enforced`): the kernel's IPE with our policy, or the emulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_policy: Option<Enforcer>,
    /// The emulated mount table (emulated backend only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulated: Option<Vec<TableEntry>>,
}

impl Record {
    /// A record for `plan` with nothing set up yet.
    pub fn for_plan(plan: &Plan) -> Self {
        Self {
            format: RECORD_FORMAT,
            id: plan.id.clone(),
            target: plan.target.clone(),
            image: plan.image.clone(),
            manifest: plan.manifest,
            profile: plan.profile,
            backend: plan.backend,
            state: plan.state.clone(),
            holder: None,
            holder_start: None,
            layers: Vec::new(),
            upperdir: plan.upperdir(),
            overlay_dev: None,
            rootfs_mount: None,
            baseline: Vec::new(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ready: false,
            namespace: None,
            exec_policy: None,
            emulated: None,
        }
    }

    /// The plan the mount was made from.
    pub fn plan(&self) -> Result<Plan, RecordError> {
        read_json(&self.state.join(PLAN_FILE))
    }

    /// Reads the record at `path`. A record in another format (one an older veritylab wrote, without the
    /// mounts' identities) is refused with a [`RecordError`] saying so, before its fields are read.
    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let value: serde_json::Value = read_json(path)?;
        let format = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(1);
        if format != u64::from(RECORD_FORMAT) {
            return Err(RecordError {
                path: path.to_owned(),
                reason: format!(
                    "record format {format}, this veritylab reads format {RECORD_FORMAT} (the record was written by \
                     another version, without the mount identities the audit compares): take the mount down with \
                     the version that made it, or stop its holder and remove {}",
                    path.parent().unwrap_or(path).display()
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| RecordError {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The holder process, where the record has its start time.
    pub fn holder_process(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.holder?,
            start: self.holder_start?,
        })
    }

    /// Whether the holder process is still running: the very process that made the mount, never one given
    /// its pid since. A record written without the start time falls back to the pid and the process name.
    pub fn holder_alive(&self) -> bool {
        match (self.holder_process(), self.holder) {
            (Some(process), _) => process.is_live(),
            (None, Some(pid)) => verity_fuse::host::process_alive(pid, "veritylab"),
            (None, None) => false,
        }
    }

    /// Whether the audit's check for added mounts covers a mount at `mount_point`: every mount of a kernel
    /// backend's private namespace, but on the fuse backend (which mounts in the host's namespace, where
    /// anything else may come and go) only those at or under the target and the mount's state directory.
    pub fn watches(&self, mount_point: &Path) -> bool {
        self.backend != Backend::Fuse || mount_point.starts_with(&self.target) || mount_point.starts_with(&self.state)
    }

    /// The holder's view of `path` (its mount namespace, through `/proc/PID/root`), or `path` itself.
    pub fn in_namespace(&self, path: &Path) -> PathBuf {
        match self.holder {
            Some(pid) => Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_owned(),
        }
    }
}

/// Where a store keeps its mounts' state.
pub(crate) fn state_root(store: &Store) -> PathBuf {
    store.root().join("mounts")
}

/// A fresh mount id: 12 hex digits.
pub fn new_id() -> String {
    let bytes: [u8; 6] = rand::random();
    verity_fuse::hex::encode(&bytes)
}

/// Reads a JSON file into `T`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let bytes = fs::read(path).map_err(|e| RecordError {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RecordError {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Every complete record in the store, oldest first.
pub(crate) fn all(store: &Store) -> Result<Vec<Record>, RecordError> {
    let root = state_root(store);
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path().join(RECORD_FILE);
        if path.is_file() {
            records.push(Record::read(&path)?);
        }
    }
    records.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(records)
}

/// The record of the mount at `target`, if any.
pub fn find(store: &Store, target: &Path) -> Result<Option<Record>, RecordError> {
    Ok(all(store)?.into_iter().find(|r| r.target == target))
}

/// One entry of an emulated mount table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Mount id.
    pub id: u64,
    /// Where.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fs_type: String,
    /// Self-declared source.
    pub source: String,
    /// Device number.
    pub device: DeviceNumber,
    /// Per-mount options.
    pub options: Vec<String>,
    /// Superblock options.
    pub super_options: Vec<String>,
    /// For an emulated loop device's EROFS mount: the loop's backing file.
    pub backing: Option<PathBuf>,
    /// Unique mount id; `None` models a kernel without unique mount ids.
    pub unique: Option<u64>,
    /// For an emulated loop device: its backing file as device and inode.
    pub backing_file: Option<FileId>,
}

/// Who enforces a mount's exec rule, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum Enforcer {
    /// The kernel's IPE, with this policy loaded and activated by the mount.
    Kernel {
        /// The policy as the kernel holds it.
        policy: crate::ipe::LoadedPolicy,
    },
    /// The emulation in veritylab's process (`exec_policy::decide`): ours by construction, and only as strong
    /// as that process.
    Emulated,
}
