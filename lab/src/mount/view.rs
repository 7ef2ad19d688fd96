//! What the audit looks at: a namespace's mount table and the identities of its mounts, files, loop devices
//! and verified devices. The host's namespaces and the emulated backend's table both implement [`View`], so
//! the audit runs the same checks over either.

use std::path::Path;

use verity_fuse::identity::{FileId, MountId};

use super::dm;
use crate::mountinfo::{DeviceNumber, MountInfo};

/// Where to look: the namespace's mount table, and a way to identify mounts and files as the namespace sees
/// them.
pub trait View {
    /// The namespace's mounts.
    fn mounts(&self) -> Vec<MountInfo>;
    /// The identity of `mount`: unique where the kernel has unique mount ids and the mount can be reached at
    /// its mount point, its (reusable) mountinfo id otherwise.
    fn identify(&self, mount: &MountInfo) -> MountId;
    /// The file at `path` in the namespace (as device and inode) and the mount it is on.
    fn file_at(&self, path: &Path) -> Option<(FileId, MountId)>;
    /// The file loop device `device` reads, as device and inode, if it is a loop device with one.
    fn loop_backing(&self, device: DeviceNumber) -> Option<FileId>;
    /// The status report of the verified device served at `device_dir`, and the mount the status file was
    /// read from.
    fn device_status(&self, device_dir: &Path) -> Option<(serde_json::Value, MountId)>;
    /// The kernel dm-verity mapping with device number `device`: `None` when the device is no mapping,
    /// `Err` when it is one that cannot be read as dm-verity. Views without device-mapper have none.
    fn dm_mapping(&self, device: DeviceNumber) -> Option<Result<dm::Observed, String>> {
        let _ = device;
        None
    }
}
