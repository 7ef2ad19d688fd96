//! The container mount audit (`veritylab check --container NAME`): the container's own mount namespace
//! (`/proc/INIT/mountinfo`) against what its bundle explains, on top of the rootfs mount's audit.
//!
//! Expected are the mounts recorded when the container was created, before its process ran, each with why
//! (the rootfs, the runtime's mounts and its masked and read-only paths, the declared volumes), compared by
//! unique mount id (the kernel never hands one to another mount), never by path text. Each volume's
//! mount must still show its source's file (device and inode). Anything else is a finding with its path,
//! device and source: a mount over a path of the rootfs, a bind added after start, an expected mount
//! remounted read-write. A profile with an upperdir gets each file written there since the container was
//! created reported, whoever wrote it.
//!
//! The container's process is its pid and start time ([`ProcessId`]): its `/proc/PID` is opened and the start
//! time checked before anything of it is read, and everything is read through that descriptor. A process
//! given the pid later is never taken for the container's; one that holds it inside the container's own mount
//! namespace is reported as a replacement.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use verity_fuse::identity::{FileId, ProcessDir, ProcessId};

use super::{Container, Status};
use crate::audit::{self, Report};
use crate::mount::{Record, record};
use crate::mountinfo::{self, DeviceNumber};
use crate::store::Store;

/// One thing the container audit found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ContainerFinding {
    /// The container's process is not running.
    NotRunning {
        /// Its status.
        status: String,
    },
    /// The container's process is gone and another process holds its pid inside the container's own mount
    /// namespace: someone kept the namespace and put a process of theirs in the container's place.
    ProcessReplaced {
        /// The pid.
        pid: u32,
        /// The container's mount namespace, which the other process is in.
        namespace: String,
        /// Why the process is not the container's.
        why: String,
    },
    /// A mount in the container's namespace that was not there when it was created.
    UnexpectedMount {
        /// Where, in the container.
        path: PathBuf,
        /// Its filesystem type.
        fs_type: String,
        /// Its (self-declared) source.
        source: String,
        /// Its device number.
        device: DeviceNumber,
        /// What of its filesystem it shows (mountinfo's root field: a bind shows the path it came from).
        root: PathBuf,
    },
    /// An expected mount is gone or was replaced by another at the same place.
    MountMissing {
        /// Where.
        path: PathBuf,
        /// Why it was expected.
        because: String,
    },
    /// A mount that was read-only is now read-write.
    RemountedWritable {
        /// Where.
        path: PathBuf,
        /// Why it was expected.
        because: String,
    },
    /// A volume's mount no longer shows its source.
    VolumeChanged {
        /// The destination.
        path: PathBuf,
        /// The source.
        source: PathBuf,
    },
    /// A file in the overlay's upperdir that was not there when the container was created.
    UpperdirWrite {
        /// The path in the rootfs.
        path: PathBuf,
    },
}

impl ContainerFinding {
    /// The finding's kind, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotRunning { .. } => "not-running",
            Self::ProcessReplaced { .. } => "process-replaced",
            Self::UnexpectedMount { .. } => "unexpected-mount",
            Self::MountMissing { .. } => "mount-missing",
            Self::RemountedWritable { .. } => "remounted-writable",
            Self::VolumeChanged { .. } => "volume-changed",
            Self::UpperdirWrite { .. } => "upperdir-write",
        }
    }
}

impl std::fmt::Display for ContainerFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning { status } => write!(f, "the container is {status}"),
            Self::ProcessReplaced { pid, namespace, why } => write!(
                f,
                "the container's process is gone and pid {pid} runs another process in the container's mount \
                 namespace {namespace} ({why})"
            ),
            Self::UnexpectedMount {
                path,
                fs_type,
                source,
                device,
                root,
            } => write!(
                f,
                "unexpected mount at {}: {fs_type} {source:?} on device {device} (showing {})",
                path.display(),
                root.display()
            ),
            Self::MountMissing { path, because } => {
                write!(f, "{because} at {} is gone or replaced", path.display())
            }
            Self::RemountedWritable { path, because } => {
                write!(f, "{because} at {} was read-only and is now read-write", path.display())
            }
            Self::VolumeChanged { path, source } => write!(
                f,
                "the volume at {} no longer shows {}",
                path.display(),
                source.display()
            ),
            Self::UpperdirWrite { path } => write!(f, "written to the upperdir: {}", path.display()),
        }
    }
}

/// The audit of one container: its rootfs mount's, then its namespace's.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    /// The container.
    pub name: String,
    /// Its init process.
    pub init: Option<ProcessId>,
    /// The rootfs mount's audit (layers traced to trusted root hashes, the overlay's shape).
    pub rootfs: Report,
    /// What was checked in the container's namespace, one line each.
    pub checked: Vec<String>,
    /// What was found there.
    pub findings: Vec<ContainerFinding>,
}

impl ContainerReport {
    /// True when neither audit found anything.
    pub fn passed(&self) -> bool {
        self.findings.is_empty() && self.rootfs.passed()
    }

    /// How many findings, of both audits.
    pub fn count(&self) -> usize {
        self.findings.len() + self.rootfs.findings.len()
    }
}

/// Audits `container` (see the module docs): its rootfs mount's audit, then its namespace's.
pub fn audit(store: &Store, container: &Container) -> ContainerReport {
    let record = record::find(store, &container.rootfs).ok().flatten();
    let rootfs = match &record {
        Some(record) => audit::audit_record(record, &BTreeMap::new()),
        None => Report {
            id: container.mount.id.clone(),
            target: container.rootfs.clone(),
            profile: container.profile,
            checked: Vec::new(),
            findings: vec![audit::AuditFinding::NamespaceGone {
                holder: container.mount.holder,
            }],
        },
    };
    audit_with_rootfs(container, record.as_ref(), rootfs)
}

/// Audits `container`'s own namespace on top of `rootfs`, the audit its caller already made of the container's
/// rootfs mount `record` (`None` when its record is gone): one audit of that mount serves both, as in the
/// agent's pass, which audits every mount of the node anyway.
pub fn audit_with_rootfs(container: &Container, record: Option<&Record>, rootfs: Report) -> ContainerReport {
    let mut report = ContainerReport {
        name: container.name.clone(),
        init: container.init,
        rootfs,
        checked: Vec::new(),
        findings: Vec::new(),
    };
    // The init process is pinned before anything of it is read: what follows reads its namespace or fails,
    // never that of a process given its pid since.
    let process = match container.init.map(|init| init.open()) {
        Some(Ok(process)) => process,
        Some(Err(e)) => {
            report.findings.push(gone(container, e));
            return report;
        }
        None => {
            report.findings.push(ContainerFinding::NotRunning {
                status: Status::Created.name().to_owned(),
            });
            return report;
        }
    };
    check_mounts(container, &process, &mut report);
    if let Some(upper) = record.and_then(|r| r.upperdir.as_deref()) {
        check_upperdir(container, upper, &mut report);
    }
    report
}

/// What the audit reports when the container's process could not be opened (`e` says why): a replacement
/// when whatever holds its pid now is in the container's own mount namespace, else that it is not running.
fn gone(container: &Container, e: std::io::Error) -> ContainerFinding {
    let pid = container.init.map_or(0, |init| init.pid);
    let namespace = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned());
    match (namespace, &container.namespace) {
        (Some(now), Some(recorded)) if now == *recorded => ContainerFinding::ProcessReplaced {
            pid,
            namespace: now,
            why: e.to_string(),
        },
        _ => ContainerFinding::NotRunning {
            status: format!("{} ({e})", Status::Stopped.name()),
        },
    }
}

fn check_mounts(container: &Container, process: &ProcessDir, report: &mut ContainerReport) {
    let root = process.path().join("root");
    let mounts = match mountinfo::read_path(&process.path().join("mountinfo")) {
        Ok(mounts) => mounts,
        Err(e) => {
            report.findings.push(ContainerFinding::NotRunning {
                status: format!("{} (its mount table could not be read: {e})", Status::Stopped.name()),
            });
            return;
        }
    };
    let init = report.init.map_or(0, |init| init.pid);
    report.checked.push(format!(
        "{} mounts in the container's namespace (pid {init}, its start time checked) against the {} the bundle \
         explains, by unique mount id",
        mounts.len(),
        container.expected.len()
    ));
    let current: Vec<_> = mounts.iter().map(|m| (m, mountinfo::identify(&root, m))).collect();
    for (m, id) in &current {
        match container.expected.iter().find(|e| e.id == *id) {
            None => report.findings.push(ContainerFinding::UnexpectedMount {
                path: m.mount_point.clone(),
                fs_type: m.fs_type.to_string_lossy().into_owned(),
                source: m.source.to_string_lossy().into_owned(),
                device: m.device,
                root: m.root.clone(),
            }),
            Some(expected) if expected.read_only && !m.is_read_only() => {
                report.findings.push(ContainerFinding::RemountedWritable {
                    path: m.mount_point.clone(),
                    because: expected.because.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for expected in &container.expected {
        if !current.iter().any(|(_, id)| *id == expected.id) {
            report.findings.push(ContainerFinding::MountMissing {
                path: expected.mount_point.clone(),
                because: expected.because.clone(),
            });
        }
    }
    report.checked.push(format!(
        "each of the {} volume(s) shows its source's file (device and inode)",
        container.volumes.len()
    ));
    for volume in &container.volumes {
        let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| FileId::from_dev(m.dev(), m.ino()));
        let inside = identity(&mountinfo::under(&root, &volume.destination));
        if inside.is_none() || inside != identity(&volume.source) {
            report.findings.push(ContainerFinding::VolumeChanged {
                path: volume.destination.clone(),
                source: volume.source.clone(),
            });
        }
    }
}

fn check_upperdir(container: &Container, upper: &Path, report: &mut ContainerReport) {
    report.checked.push(format!(
        "nothing was written to the upperdir {} since the container was created",
        upper.display()
    ));
    for entry in super::upper_entries(upper) {
        if !container.upper_baseline.contains(&entry) {
            report.findings.push(ContainerFinding::UpperdirWrite {
                path: Path::new("/").join(entry),
            });
        }
    }
}
