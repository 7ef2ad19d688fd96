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

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The `major:minor` of the mounted filesystem.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type (`erofs`, `fuse.verity-fuse`, ...).
    pub fs_type: String,
    /// Mount source (`/dev/loop3`, the FUSE fs name, ...).
    pub source: String,
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let value = d.iter().try_fold(0u16, |acc, c| {
                (b'0'..=b'7').contains(c).then(|| acc * 8 + u16::from(c - b'0'))
            })?;
            u8::try_from(value).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let device = left.nth(2)?.to_owned();
            let mount_point = left.nth(1)?;
            let mut right = right.split(' ');
            Some(Mount {
                device,
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: right.next()?.to_owned(),
                source: unescape(right.next()?),
            })
        })
        .collect()
}

/// The mounts this process sees.
pub fn mounts() -> Vec<Mount> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Sets the kernel's readahead for the filesystem mounted at `mount_point` (its backing device info in
/// sysfs; root only). Larger readahead keeps more FUSE reads in flight, so every serving thread has work.
pub fn set_readahead_kib(mount_point: &Path, kib: u32) -> std::io::Result<()> {
    let device = mounts()
        .into_iter()
        .find(|m| m.mount_point == mount_point)
        .map(|m| m.device)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not mounted"))?;
    std::fs::write(format!("/sys/class/bdi/{device}/read_ahead_kb"), kib.to_string())
}

/// Loop devices whose backing file is `file`, as `/dev/loopN`.
pub fn loops_backed_by(file: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim_end().trim_end_matches(" (deleted)")) == file)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect();
    found.sort();
    found
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

    #[test]
    fn mountinfo_lines_parse_with_escapes_and_optional_fields() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - erofs /dev/loop3 ro\n\
                    40 35 0:50 / /run/x rw shared:5 other:7 - fuse.verity-fuse verity-fuse:x ro\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, Path::new("/mnt/a b"));
        assert_eq!((m[0].fs_type.as_str(), m[0].source.as_str()), ("erofs", "/dev/loop3"));
        assert_eq!(m[1].fs_type, "fuse.verity-fuse");
        assert_eq!((m[0].device.as_str(), m[1].device.as_str()), ("98:0", "0:50"));
        assert_eq!(unescape("a\\1"), "a\\1");
        assert_eq!(
            unescape("\\777\\134x"),
            "\\777\\x",
            "out-of-range escapes stay as they are"
        );
    }

    proptest::proptest! {
        #[test]
        fn mountinfo_parsing_never_panics(text in "[ -~\\n\\\\]{0,400}") {
            let _ = parse_mountinfo(&text);
        }
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        let me = std::process::id();
        let name = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        assert!(process_alive(me, name.trim()));
        assert!(!process_alive(0, "x"));
        assert!(!process_alive(me, "surely-not-this-name"));
    }
}
