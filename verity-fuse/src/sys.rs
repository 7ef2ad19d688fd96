//! The host: tools on the `PATH`, processes, mounts and loop devices, read from `/proc` and `/sys` or
//! driven through their command-line tools. Every outside program verity-fuse runs is run from here.

use crate::class::ErrorClass;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tool that failed or could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The tool is not installed.
    #[error("`{tool}` is not installed (Debian package {package})")]
    Missing {
        /// The tool.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The tool could not be started.
    #[error("running `{tool}`: {error}")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// Why it could not start.
        error: std::io::Error,
    },
}

impl ToolError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Missing { .. } => ErrorClass::Unavailable,
            Self::Failed { .. } => ErrorClass::Io,
            Self::Spawn { .. } => ErrorClass::Unavailable,
        }
    }
}

/// Finds an executable on `PATH`, then in `/usr/sbin` and `/sbin` (where a non-root `PATH` often does not
/// look).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The file where `fusermount3` reads whether normal users may mount with `allow_other`.
pub const FUSE_CONF: &str = "/etc/fuse.conf";

/// Whether `fuse.conf` text lets normal users mount with `allow_other`: a line holding exactly
/// `user_allow_other`, surrounding blanks aside, as `fusermount3` reads it.
pub fn fuse_conf_allows_other(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "user_allow_other")
}

/// Whether this process may mount FUSE with `allow_other`: as root, or when [`FUSE_CONF`] has
/// `user_allow_other`.
pub fn may_allow_other() -> bool {
    is_root() || std::fs::read_to_string(FUSE_CONF).is_ok_and(|text| fuse_conf_allows_other(&text))
}

/// Whether `path` is a file owned by root with the setuid bit: how `fusermount3` must be installed for a
/// normal user to mount FUSE through it.
pub fn is_setuid_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o4000 != 0)
}

/// Runs `tool` (from `package`) with `args` and returns its stdout.
pub fn run_tool<I, S>(tool: &'static str, package: &'static str, args: I) -> Result<String, ToolError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let path = find_tool(tool).ok_or(ToolError::Missing { tool, package })?;
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(&path)
        .args(&args)
        .output()
        .map_err(|error| ToolError::Spawn { tool, error })?;
    if !out.status.success() {
        let mut command = tool.to_owned();
        for a in &args {
            command.push(' ');
            command.push_str(&a.to_string_lossy());
        }
        return Err(ToolError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets the kernel's readahead for the filesystem mounted at `mount_point` (its backing device info in
/// sysfs; root only). Larger readahead keeps more FUSE reads in flight, so every serving thread has work.
pub fn set_readahead_kib(mount_point: &Path, kib: u32) -> std::io::Result<()> {
    let device = crate::host::mountinfo::read_self()
        .map_err(std::io::Error::other)?
        .into_iter()
        .find(|m| m.mount_point == mount_point)
        .map(|m| m.device)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not mounted"))?;
    std::fs::write(format!("/sys/class/bdi/{device}/read_ahead_kb"), kib.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_conf_allows_other_only_on_its_own_line() {
        assert!(!fuse_conf_allows_other(""));
        assert!(!fuse_conf_allows_other(
            "#user_allow_other\n# user_allow_other\nmount_max = 1000\n"
        ));
        assert!(!fuse_conf_allows_other("user_allow_other_not\n"));
        assert!(fuse_conf_allows_other("mount_max = 10\n  user_allow_other \n"));
    }
}
