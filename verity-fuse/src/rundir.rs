//! Open devices and where they live: one directory per device under the runtime directory.
//!
//! ```text
//! /run/verity-fuse/            (root; $XDG_RUNTIME_DIR/verity-fuse/ otherwise; --dir overrides)
//!   NAME/
//!     info.json                what was opened, by which backend and process (written once ready)
//!     server.log               the background FUSE server's messages
//!     mnt/                     FUSE mount point
//!       device                 the verified device (FUSE backend; /dev/mapper/NAME for the kernel)
//!       status                 live status and counters as JSON
//! ```

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::class::ErrorClass;
use crate::fuse::{DEVICE_FILE, STATUS_FILE};
use crate::hash::Digest;
use crate::identity::ProcessId;
use crate::signature::Signer;
use crate::sys;

/// A problem with the registry of open devices.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RunDirError {
    /// The name cannot be used as a directory name.
    #[error("device name `{0}` is invalid: use 1 to 127 letters, digits, `_`, `-` or `.`, not starting with `.`")]
    BadName(String),
    /// No runtime directory is known.
    #[error("no runtime directory: XDG_RUNTIME_DIR is not set (pass --dir)")]
    NoRuntimeDir,
    /// A device of that name is open.
    #[error("device `{0}` already exists (close it first)")]
    Exists(String),
    /// No device of that name is open.
    #[error("device `{0}` is not open")]
    NotFound(String),
    /// Reading or writing the registry failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        error: std::io::Error,
    },
}

impl RunDirError {
    /// What kind of failure this is.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            Self::BadName(_) | Self::NotFound(_) => ErrorClass::BadInput,
            Self::NoRuntimeDir => ErrorClass::Usage,
            Self::Exists(_) => ErrorClass::Busy,
            Self::Io { .. } => ErrorClass::Io,
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunDirError {
    let context = context.into();
    move |error| RunDirError::Io { context, error }
}

/// What `info.json` records about an open device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Info {
    /// The device's name.
    pub name: String,
    /// The backend serving it.
    pub backend: Backend,
    /// Path of the verified device.
    pub device: PathBuf,
    /// The FUSE server's process id.
    pub pid: Option<u32>,
    /// The FUSE server's start time (`/proc/PID/stat`, field 22): with `pid`, the server itself, which a
    /// process given the pid later does not share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The data file.
    pub data: PathBuf,
    /// The hash file.
    pub hash: PathBuf,
    /// The root hash in force.
    pub root_hash: Digest,
    /// The dm-verity table line (for FUSE, the line the kernel would load with the files as devices).
    pub table: String,
    /// Loop devices the kernel backend attached.
    pub loops: Vec<PathBuf>,
    /// Whether and by whom the root hash's signature was checked.
    #[serde(default)]
    pub signature: SignatureCheck,
}

impl Info {
    /// The FUSE server, where the info has its start time.
    pub(crate) fn server(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.pid?,
            start: self.pid_start?,
        })
    }

    /// Whether the FUSE server still runs: the very process that opened the device, never one given its pid
    /// since. Info written without the start time falls back to the pid and the process name.
    pub(crate) fn server_alive(&self) -> bool {
        match (self.server(), self.pid) {
            (Some(server), _) => server.is_live(),
            (None, Some(pid)) => crate::host::process_alive(pid, "verity-fuse"),
            (None, None) => false,
        }
    }
}

/// Whether a device's root hash was signature-checked when it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "checked", rename_all = "lowercase")]
pub(crate) enum SignatureCheck {
    /// No signature was given (and none was required).
    #[default]
    None,
    /// Our check verified the signature with a certificate of the keyring.
    Keyring {
        /// The certificate that verified it.
        signer: Signer,
    },
    /// The signature went to the kernel, which checked it against its own trusted keyrings.
    Kernel,
}

/// The directory holding every open device.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    root: PathBuf,
}

/// One device's directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The device's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl RunDir {
    /// The registry at `dir`, or the default: `/run/verity-fuse` as root, `$XDG_RUNTIME_DIR/verity-fuse`
    /// otherwise.
    pub(crate) fn new(dir: Option<&Path>) -> Result<Self, RunDirError> {
        let root = match dir {
            Some(d) => d.to_owned(),
            None if sys::is_root() => PathBuf::from("/run/verity-fuse"),
            None => std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join("verity-fuse"))
                .ok_or(RunDirError::NoRuntimeDir)?,
        };
        Ok(Self { root })
    }

    /// The entry for `name` (which need not exist).
    pub(crate) fn entry(&self, name: &str) -> Result<Entry, RunDirError> {
        if !valid_name(name) {
            return Err(RunDirError::BadName(name.to_owned()));
        }
        Ok(Entry {
            name: name.to_owned(),
            dir: self.root.join(name),
        })
    }

    /// Creates the directory of a new device; fails if a device of that name is open.
    pub(crate) fn create(&self, name: &str) -> Result<Entry, RunDirError> {
        let entry = self.entry(name)?;
        if entry.info().is_some() {
            return Err(RunDirError::Exists(name.to_owned()));
        }
        std::fs::create_dir_all(entry.mount_point()).map_err(io(format!("creating {}", entry.dir.display())))?;
        Ok(entry)
    }

    /// The entry for an open device.
    pub(crate) fn open_entry(&self, name: &str) -> Result<Entry, RunDirError> {
        let entry = self.entry(name)?;
        if entry.dir.is_dir() {
            Ok(entry)
        } else {
            Err(RunDirError::NotFound(name.to_owned()))
        }
    }

    /// Every device directory, sorted by name.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut entries: Vec<Entry> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| self.entry(&e.file_name().to_string_lossy()).ok())
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }
}

impl Entry {
    /// The FUSE mount point.
    pub(crate) fn mount_point(&self) -> PathBuf {
        self.dir.join("mnt")
    }

    /// The FUSE device file.
    pub(crate) fn device_file(&self) -> PathBuf {
        self.mount_point().join(DEVICE_FILE)
    }

    /// The FUSE status file.
    pub(crate) fn status_file(&self) -> PathBuf {
        self.mount_point().join(STATUS_FILE)
    }

    /// The background server's log.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn info_file(&self) -> PathBuf {
        self.dir.join("info.json")
    }

    /// The recorded info, if the device finished opening.
    pub(crate) fn info(&self) -> Option<Info> {
        let text = std::fs::read(self.info_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Records `info` atomically: it appears complete or not at all.
    pub(crate) fn write_info(&self, info: &Info) -> Result<(), RunDirError> {
        let context = format!("writing {}", self.info_file().display());
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io(context.clone()))?;
        serde_json::to_writer_pretty(tmp.as_file_mut(), info)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(io(context.clone()))?;
        tmp.persist(self.info_file())
            .map_err(|e| e.error)
            .map_err(io(context))?;
        Ok(())
    }

    /// Whether the FUSE mount of this entry is in the mount table.
    pub(crate) fn is_mounted(&self) -> bool {
        let mp = self.mount_point();
        crate::host::is_mount_point(&mp)
    }

    /// Removes the entry's directory and everything in it (the mount must be gone).
    pub(crate) fn remove(&self) -> Result<(), RunDirError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("removing {}", self.dir.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

/// Whether an entry's device is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Liveness {
    /// Opened and served.
    Active,
    /// Still opening (no info recorded yet, recently created).
    Opening,
    /// Left behind: the server died, or the mapping is gone.
    Stale,
}

/// Entries without info older than this are stale (an `open` that never finished).
const OPENING_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

impl Entry {
    /// Whether the device is served, and its info if recorded.
    pub(crate) fn liveness(&self) -> (Liveness, Option<Info>) {
        let Some(info) = self.info() else {
            let young = std::fs::metadata(&self.dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < OPENING_GRACE);
            return (if young { Liveness::Opening } else { Liveness::Stale }, None);
        };
        let alive = match info.backend {
            Backend::Fuse => info.server_alive() && self.is_mounted(),
            Backend::Kernel => info.device.exists(),
        };
        (if alive { Liveness::Active } else { Liveness::Stale }, Some(info))
    }

    /// Cleans up a stale entry: lazily unmounts a FUSE mount left by a dead server, detaches loop devices
    /// the kernel backend left, and removes the directory.
    pub(crate) fn clean_up_stale(&self, info: Option<&Info>) -> Result<(), RunDirError> {
        if self.is_mounted() {
            let unmounted = sys::run_tool(
                "fusermount3",
                "fuse3",
                ["-u".as_ref(), "-z".as_ref(), self.mount_point().as_os_str()],
            );
            // The dead server's auto-unmount helper may have won the race: only a mount still there is an error.
            if let Err(e) = unmounted
                && self.is_mounted()
            {
                return Err(RunDirError::Io {
                    context: format!("unmounting {}", self.mount_point().display()),
                    error: std::io::Error::other(e.to_string()),
                });
            }
        }
        for l in info.map(|i| i.loops.as_slice()).unwrap_or_default() {
            let _ = sys::run_tool("losetup", "mount", ["--detach".as_ref(), l.as_os_str()]);
        }
        self.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_path_is_built() {
        let r = RunDir::new(Some(Path::new("/tmp/x"))).unwrap();
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(128)] {
            assert!(matches!(r.entry(bad), Err(RunDirError::BadName(_))), "{bad:?}");
        }
        assert_eq!(
            r.entry("layer-1.erofs").unwrap().device_file(),
            Path::new("/tmp/x/layer-1.erofs/mnt/device")
        );
    }

    fn info(pid: Option<u32>, pid_start: Option<u64>) -> Info {
        Info {
            name: "dev".into(),
            backend: Backend::Fuse,
            device: "/run/dev/mnt/device".into(),
            pid,
            pid_start,
            data: "/d".into(),
            hash: "/h".into(),
            root_hash: Digest::from_slice(&[0]).unwrap(),
            table: String::new(),
            loops: vec![],
            signature: SignatureCheck::None,
        }
    }

    #[test]
    fn a_server_is_its_pid_and_start_time_never_a_process_given_the_pid_later() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let server = ProcessId::of(child.id()).unwrap();
        assert!(!info(None, None).server_alive(), "no server recorded");
        // Info without the start time falls back to the pid and the name, which `sleep` is not.
        assert!(!info(Some(server.pid), None).server_alive());
        assert_eq!(info(Some(server.pid), Some(server.start)).server(), Some(server));
        assert!(info(Some(server.pid), Some(server.start)).server_alive());
        assert!(
            !info(Some(server.pid), Some(server.start + 1)).server_alive(),
            "the same pid started at another time is another process"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!info(Some(server.pid), Some(server.start)).server_alive());
    }

    #[test]
    fn info_is_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let r = RunDir::new(Some(dir.path())).unwrap();
        let e = r.create("dev").unwrap();
        assert!(e.info().is_none());
        let written = Info {
            device: e.device_file(),
            ..info(Some(1), Some(1))
        };
        e.write_info(&written).unwrap();
        assert_eq!(e.info(), Some(written));
        assert!(matches!(r.create("dev"), Err(RunDirError::Exists(_))));
        assert_eq!(r.entries().len(), 1);
        e.remove().unwrap();
        assert!(r.entries().is_empty());
    }
}
