//! `veritylab cleanup` for containers: the mounts a stopped container left in namespaces that other
//! processes still hold, found on every process's mount table and unmounted there.
//!
//! A process that made its own mount namespace from the mount's while the container ran (it entered the
//! holder's namespace and unshared, as a daemon with private mounts does) holds copies of the rootfs overlay,
//! the EROFS lowers and the verified devices' mounts. The holder's teardown does not reach them, so after
//! `stop` they keep the loop devices and disk space nobody can see from the host. A mount is the container's when its mount point lies
//! under the rootfs or the mount's state directory, whatever the mount calls itself, or when it is the root
//! of the container's own namespace on the recorded rootfs device. Each such namespace is entered (`nsenter -t PID -m`) and those mounts are unmounted there, newest first.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

use super::{Container, ContainerError, Status};
use crate::mount::{self, MountError};
use crate::mountinfo::{self, MountInfo};
use crate::store::Store;

/// The most processes cleanup looks at.
const MAX_PROCESSES: usize = 100_000;

/// What cleanup did for one stopped container.
#[derive(Debug, Clone, Serialize)]
pub struct CleanedContainer {
    /// The container.
    pub name: String,
    /// Processes (pid, command) that held a namespace with its mounts.
    pub held_by: Vec<(u32, String)>,
    /// What was unmounted, in which namespace.
    pub unmounted: Vec<String>,
    /// Anything still present afterwards.
    pub leftovers: Vec<String>,
}

/// Whether `m`, in namespace `namespace`, is the container's: under its rootfs or its mount's state directory
/// (paths no other mount uses), or the container's own namespace's root on the recorded rootfs device.
/// Device numbers alone are not enough: the kernel hands a freed one to the next mount.
fn is_ours(container: &Container, namespace: &str, m: &MountInfo) -> bool {
    m.mount_point.starts_with(&container.rootfs)
        || m.mount_point.starts_with(&container.mount.state)
        || (container.namespace.as_deref() == Some(namespace)
            && m.mount_point == Path::new("/")
            && Some(m.device) == container.mount.overlay_dev)
}

/// The processes (pid, command) in one namespace and the container's mounts it holds.
type Held = (Vec<(u32, String)>, Vec<MountInfo>);

/// Each mount namespace other than the container's running one, with its processes and the container's
/// mounts it holds.
fn namespaces_with_mounts(container: &Container) -> BTreeMap<String, Held> {
    let own = fs::read_link("/proc/self/ns/mnt").ok();
    let mut by_namespace: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    for entry in entries.filter_map(Result::ok).take(MAX_PROCESSES) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(namespace) = fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if own.as_ref() == Some(&namespace) {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        by_namespace
            .entry(namespace.to_string_lossy().into_owned())
            .or_default()
            .push((pid, comm.trim().to_owned()));
    }
    by_namespace
        .into_iter()
        .filter_map(|(namespace, pids)| {
            let mounts = pids.iter().find_map(|&(pid, _)| mountinfo::read(pid).ok())?;
            let ours: Vec<MountInfo> = mounts
                .into_iter()
                .filter(|m| is_ours(container, &namespace, m))
                .collect();
            (!ours.is_empty()).then_some((namespace, (pids, ours)))
        })
        .collect()
}

/// The processes (pid, command) in namespaces that hold the stopped container's mounts.
pub(crate) fn holders(container: &Container) -> Vec<(u32, String)> {
    if container.status() == Status::Running {
        return Vec::new();
    }
    namespaces_with_mounts(container)
        .into_values()
        .flat_map(|(pids, _)| pids)
        .collect()
}

/// Cleans up after every stopped container in `store` (see the module docs): unmounts its mounts in every
/// namespace that still holds them, has runc delete it, takes down its rootfs mount if `stop` did not, and
/// removes its directory when nothing is left. Running containers are left alone.
pub fn cleanup(store: &Store) -> Result<Vec<CleanedContainer>, ContainerError> {
    let mut cleaned = Vec::new();
    for container in super::list(store) {
        if container.status() == Status::Running {
            continue;
        }
        let mut held_by = Vec::new();
        let mut unmounted = Vec::new();
        for (namespace, (pids, mut mounts)) in namespaces_with_mounts(&container) {
            mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_id));
            for m in &mounts {
                if pids.iter().any(|&(pid, _)| unmount_in(pid, &m.mount_point)) {
                    unmounted.push(format!(
                        "{} at {} ({}) in {namespace}",
                        m.fs_type.to_string_lossy(),
                        m.mount_point.display(),
                        m.device
                    ));
                }
            }
            held_by.extend(pids);
        }
        let runc = super::runc_for(store, &container.bundle)?;
        runc.delete(&container.name)?;
        let mut leftovers = match mount::umount(store, &container.rootfs) {
            Ok(report) => report.leftovers,
            Err(MountError::NotMounted { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        leftovers.extend(settled_leftovers(&container));
        if leftovers.is_empty() {
            fs::remove_dir_all(&container.bundle).map_err(|source| ContainerError::Io {
                what: format!("removing {}", container.bundle.display()),
                source,
            })?;
        }
        cleaned.push(CleanedContainer {
            name: container.name.clone(),
            held_by,
            unmounted,
            leftovers,
        });
    }
    Ok(cleaned)
}

/// What is still there after the unmounts, once autoclear loops had a moment to go.
fn settled_leftovers(container: &Container) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let left = leftovers(container);
        if left.is_empty() || started.elapsed() > std::time::Duration::from_secs(10) {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Namespaces still holding the container's mounts, and loop devices backed by its mount's state.
fn leftovers(container: &Container) -> Vec<String> {
    let mut found: Vec<String> = namespaces_with_mounts(container)
        .into_iter()
        .flat_map(|(namespace, (_, mounts))| {
            mounts.into_iter().map(move |m| {
                format!(
                    "{} mount at {} in {namespace}",
                    m.fs_type.to_string_lossy(),
                    m.mount_point.display()
                )
            })
        })
        .collect();
    for device in verity_fuse::host::loop_devices() {
        if let Some(backing) = device.backing_path.filter(|b| b.starts_with(&container.mount.state)) {
            found.push(format!(
                "loop device {} backed by {}",
                device.path.display(),
                backing.display()
            ));
        }
    }
    found
}

/// Unmounts `point` lazily inside the mount namespace of `pid`; true when it worked.
fn unmount_in(pid: u32, point: &Path) -> bool {
    Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(["-m", "umount", "-l", "--"])
        .arg(point)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
