//! The host's facts, read in one place: the mount table ([`mountinfo`]), loop devices (their backing file by
//! path for messages, and by device and inode for identity, through [`crate::identity`]) and processes under
//! `/proc`. The audit, the mount backends, cleanup and the `verity-fuse` command all ask this module.

pub mod mountinfo;

use std::path::{Path, PathBuf};

use crate::identity::{self, FileId};
use mountinfo::DeviceNumber;

/// A loop device of this host, from `/sys/block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// The path of its backing file as the kernel recorded it when it was attached (in the namespace that
    /// attached it, ` (deleted)` dropped). For messages only: a path is no identity, see [`Self::backing_file`].
    pub backing_path: Option<PathBuf>,
    /// Whether something sits on it (a mapping, another device): its `holders` directory is not empty.
    pub held: bool,
}

impl LoopDevice {
    /// The file it reads, as device and inode (`LOOP_GET_STATUS64`): the identity to compare, whatever the
    /// path. Reading it opens the device node, which needs the right to (root, as a rule).
    pub fn backing_file(&self) -> std::io::Result<Option<FileId>> {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(Path::new("/sys/block").join(name.as_ref()).join("dev"))?;
        let number = text
            .trim_end()
            .split_once(':')
            .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
        match number {
            Some((major, minor)) => identity::loop_backing(major, minor),
            None => Ok(None),
        }
    }
}

/// The backing-file path the kernel reports in `dir/loop/backing_file`, without ` (deleted)`.
fn backing_path_in(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dir.join("loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end().trim_end_matches(" (deleted)")))
}

/// Every loop device with a backing file, by name order.
pub fn loop_devices() -> Vec<LoopDevice> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<LoopDevice> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| {
            let dir = e.path();
            Some(LoopDevice {
                path: Path::new("/dev").join(e.file_name()),
                backing_path: Some(backing_path_in(&dir)?),
                held: std::fs::read_dir(dir.join("holders")).is_ok_and(|mut h| h.next().is_some()),
            })
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// The loop device at `path` (`/dev/loopN`), if it has a backing file.
pub fn loop_device(path: &Path) -> Option<LoopDevice> {
    loop_devices().into_iter().find(|l| l.path == path)
}

/// The backing-file path of block device `device` when it is a loop device (for messages and records; compare
/// identities with [`identity::loop_backing`]).
pub fn loop_backing_path(device: DeviceNumber) -> Option<PathBuf> {
    backing_path_in(&PathBuf::from(format!("/sys/dev/block/{device}")))
}

/// Loop devices that read `file`, compared by device and inode; by the recorded path only where the device
/// cannot be opened to ask (a normal user), which can only report holders, never prove an identity.
pub fn loops_backed_by(file: &Path) -> Vec<PathBuf> {
    let wanted = identity::stat(file).map(|s| s.file).ok();
    loop_devices()
        .into_iter()
        .filter(|l| match l.backing_file() {
            Ok(found) => found.is_some() && found == wanted,
            Err(_) => l.backing_path.as_deref() == Some(file),
        })
        .map(|l| l.path)
        .collect()
}

/// Whether process `pid` exists.
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` is alive and runs an executable called `name`.
pub fn process_alive(pid: u32, name: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let comm = stat.split_once('(')?.1.rsplit_once(')')?;
            let state = comm.1.split_whitespace().next()?;
            Some(comm.0 == &name[..name.len().min(15)] && state != "Z")
        })
        .unwrap_or(false)
}

/// The processes whose mount namespace is `namespace` (`mnt:[INODE]`, as `/proc/PID/ns/mnt` reads), with
/// their command names, by pid.
pub fn processes_in_mount_namespace(namespace: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l.to_string_lossy() == namespace))
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim_end().to_owned())
        })
        .collect();
    found.sort();
    found
}

/// Whether something is mounted at `mount_point` in this process's namespace.
pub fn is_mount_point(mount_point: &Path) -> bool {
    mountinfo::read_self().is_ok_and(|mounts| mounts.iter().any(|m| m.mount_point == mount_point))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        let me = std::process::id();
        let name = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        assert!(process_alive(me, name.trim()));
        assert!(process_exists(me));
        assert!(!process_alive(0, "x"));
        assert!(!process_alive(me, "surely-not-this-name"));
    }

    #[test]
    fn a_file_no_loop_reads_has_no_loops() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(loops_backed_by(file.path()).is_empty());
        assert!(loops_backed_by(Path::new("/no/such/file")).is_empty());
    }
}
