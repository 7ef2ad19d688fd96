//! `veritylab cleanup`: what dead mounts left behind, found and removed.
//!
//! A kernel-backend mount lives in its holder's mount namespace. When the holder dies the namespace normally
//! dies with it, but any process that entered it (a container's process started with `nsenter`, a debugging
//! shell) keeps it, and with it every EROFS mount, loop device and verified device: the phantom disk usage
//! a node's cleanup helper has to hunt. Cleanup finds such processes by the recorded namespace, unmounts
//! the mount's leftovers from inside that namespace, removes the mount's dm-verity mappings and their loop
//! devices (global, so left behind by a killed holder even when its namespace is gone), then removes the
//! record and reports what it found. An emulated mount has no namespace: its record names the process that
//! stood for the container, and one whose process is gone is a stopped container's leftover, removed the same
//! way.

use std::fs;
use std::path::Path;
use std::process::Command;
use verity_fuse::host;

use serde::Serialize;

use super::record::{self, Record};
use super::{MountError, dm, kernel, umount_record};
use crate::defence::{self, Defence};
use crate::profile::Backend;
use crate::store::Store;

/// What cleanup found for one dead mount.
#[derive(Debug, Clone, Serialize)]
pub struct Cleaned {
    /// The mount's id.
    pub id: String,
    /// Its target.
    pub target: std::path::PathBuf,
    /// Processes that still held its namespace (pid and command name).
    pub holders: Vec<(u32, String)>,
    /// Mounts unmounted inside that namespace.
    pub unmounted: Vec<String>,
    /// Anything still present afterwards.
    pub leftovers: Vec<String>,
}

impl Cleaned {
    /// One line: the mount, who still held it, what was unmounted and what is left.
    pub fn summary(&self) -> String {
        let holders = if self.holders.is_empty() {
            "no process held it".to_owned()
        } else {
            format!(
                "held by {}",
                self.holders
                    .iter()
                    .map(|(pid, comm)| format!("pid {pid} ({comm})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let unmounted = if self.unmounted.is_empty() {
            "nothing left mounted inside".to_owned()
        } else {
            format!("unmounted {}", self.unmounted.join(", "))
        };
        let left = if self.leftovers.is_empty() {
            String::new()
        } else {
            format!("; still present: {}", self.leftovers.join(", "))
        };
        format!(
            "mount {} at {} outlived its container: {holders}; {unmounted}{left}",
            self.id,
            self.target.display()
        )
    }
}

/// Cleans up every mount in `store` whose holder is gone; live mounts are left alone. An emulated mount
/// without a holder belongs to the process using it and is live.
pub fn cleanup(store: &Store) -> Result<Vec<Cleaned>, MountError> {
    if !defence::on(Defence::Cleanup) {
        return Ok(Vec::new());
    }
    let mut cleaned = Vec::new();
    for r in record::all(store)? {
        let emulated_live = r.backend == Backend::Emulated && r.holder.is_none_or(host::process_exists);
        if emulated_live || (r.backend != Backend::Emulated && r.holder_alive()) {
            continue;
        }
        // Only a kernel-backend holder has a private namespace; the fuse backend mounts in its caller's, which
        // every other process shares, and its umount takes the FUSE mounts down.
        let holders = match (r.backend, r.namespace.as_deref()) {
            (Backend::Kernel, Some(namespace)) => host::processes_in_mount_namespace(namespace),
            _ => Vec::new(),
        };
        let pids: Vec<u32> = holders.iter().map(|&(pid, _)| pid).collect();
        let unmounted = unmount_inside(&pids, &r);
        let id = r.id.clone();
        let target = r.target.clone();
        let report = umount_record(r)?;
        cleaned.push(Cleaned {
            id,
            target,
            holders,
            unmounted,
            leftovers: report.leftovers,
        });
    }
    remove_orphans(store);
    Ok(cleaned)
}

/// Unmounts, inside the namespace the processes `pids` hold, the target and every mount under the record's
/// state directory, newest first; returns what was unmounted. Any of the processes may exit meanwhile (the
/// FUSE auto-unmount watchers do), so each step uses the first one still there.
fn unmount_inside(pids: &[u32], record: &Record) -> Vec<String> {
    let Some(mounts) = pids.iter().find_map(|&pid| host::mountinfo::read(pid).ok()) else {
        return Vec::new();
    };
    let mut ours: Vec<_> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(&record.target) || m.mount_point.starts_with(&record.state))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.mount_id));
    let mut done = Vec::new();
    for m in ours {
        let unmounted = pids.iter().any(|pid| {
            Command::new("nsenter")
                .arg("-t")
                .arg(pid.to_string())
                .args(["-m", "umount", "-l"])
                .arg(&m.mount_point)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if unmounted {
            done.push(format!(
                "{} at {} ({})",
                m.fs_type.to_string_lossy(),
                m.mount_point.display(),
                m.device
            ));
        }
    }
    done
}

/// Removes state directories that never got a record (a mount killed before its holder started).
fn remove_orphans(store: &Store) {
    let Ok(entries) = fs::read_dir(record::state_root(store)) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        if !dir.join(record::RECORD_FILE).exists() && is_stale(&dir) {
            kernel::unmount(&dir, true);
            if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                dm::remove_mount(id, &[]);
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// A state directory untouched for a minute cannot belong to a mount still starting.
fn is_stale(dir: &Path) -> bool {
    fs::metadata(dir)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() > 60))
}
