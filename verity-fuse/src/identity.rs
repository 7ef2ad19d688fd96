//! Identities on the host that an attacker with root cannot hand back: which mount a path is on (the 64-bit
//! unique mount id), which file a path names (device and inode), and which file a loop device reads.
//!
//! A path, a device number or a mountinfo mount id names a thing only while that thing exists: the kernel
//! hands the same loop minor, anonymous device number and mount id to whatever comes next, so a check that
//! compares them can be satisfied by a replacement set up in the same order. What this module returns can be
//! compared instead:
//!
//! - [`MountId::Unique`]: `statx(STATX_MNT_ID_UNIQUE)` (Linux 6.8 and later), a 64-bit id the kernel never
//!   gives to another mount while it runs. Older kernels have only the mountinfo id, which is reused once its
//!   mount is gone: [`stat`] then returns [`MountId::Reusable`] and callers must say what they cannot prove.
//! - [`FileId`]: a file's device and inode. While the filesystem holding it is mounted, no other file has the
//!   same pair, so a loop device backed by (dev, ino) reads exactly that file.
//! - [`loop_backing`]: the (dev, ino) of the file a loop device has open, from `LOOP_GET_STATUS64`, never its
//!   path (the path string in sysfs is whatever name the file had in the namespace that attached it).
//!
//! - [`ProcessId`]: a pid with its start time (`/proc/PID/stat`, field 22). A pid is handed to the next
//!   process once its process is gone, and root can choose the next pid (`ns_last_pid`); the start time of
//!   the process holding a pid tells a reused pid apart. [`ProcessId::open`] pins the process itself: a
//!   directory descriptor of `/proc/PID` refers to that one process, and reads through it fail once it is
//!   gone, whoever gets its pid.
//!
//! The ioctl is the module's only `unsafe` code.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{AtFlags, Statx, StatxFlags};

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): ask for the 64-bit mount id that is never reused.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// How a mount is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountId {
    /// The 64-bit unique mount id (`STATX_MNT_ID_UNIQUE`): never given to another mount while the kernel runs.
    Unique(u64),
    /// The mount id of `/proc/PID/mountinfo` (kernels before 6.8): given to the next mount once this one is gone.
    Reusable(u64),
}

impl MountId {
    /// Whether the id cannot be handed to another mount.
    pub fn is_unique(self) -> bool {
        matches!(self, MountId::Unique(_))
    }
}

impl std::fmt::Display for MountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountId::Unique(id) => write!(f, "unique mount id {id:#x}"),
            MountId::Reusable(id) => write!(f, "mount id {id} (reusable)"),
        }
    }
}

/// A file's identity: the device of the filesystem holding it and its inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    /// Major number of the filesystem's device.
    pub major: u32,
    /// Minor number of the filesystem's device.
    pub minor: u32,
    /// Inode number.
    pub inode: u64,
}

impl FileId {
    /// From an `st_dev` value (Linux's encoding) and an inode number.
    pub fn from_dev(dev: u64, inode: u64) -> Self {
        Self {
            major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32,
            minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32,
            inode,
        }
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inode {} on device {}:{}", self.inode, self.major, self.minor)
    }
}

/// A process: its pid and its start time in clock ticks after boot, which no later holder of the pid shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    /// The pid (in the reader's pid namespace).
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
    pub start: u64,
}

impl ProcessId {
    /// The process that holds `pid` now.
    pub fn of(pid: u32) -> io::Result<Self> {
        let stat = std::fs::read(format!("/proc/{pid}/stat"))?;
        Ok(Self {
            pid,
            start: parse_stat(&stat)?.1,
        })
    }

    /// Whether this very process still runs (it exists, is not a zombie, and its pid was not handed on).
    pub fn is_live(&self) -> bool {
        self.open().is_ok()
    }

    /// Opens `/proc/PID` of this process, or fails when the pid is free, held by a zombie or held by another
    /// process ([`io::ErrorKind::NotFound`]). What is read through the returned directory is this process's
    /// or an error: the directory stays bound to the process it was opened for.
    pub fn open(&self) -> io::Result<ProcessDir> {
        let gone = |why: String| io::Error::new(io::ErrorKind::NotFound, why);
        let dir = match rustix::fs::open(
            format!("/proc/{}", self.pid),
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(dir) => dir,
            Err(rustix::io::Errno::NOENT) => return Err(gone(format!("process {} is gone", self.pid))),
            Err(e) => return Err(e.into()),
        };
        let stat = rustix::fs::openat(
            &dir,
            "stat",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|fd| {
            use std::io::Read;
            let mut text = Vec::new();
            File::from(fd).take(4096).read_to_end(&mut text)?;
            Ok(text)
        })
        .map_err(|_| gone(format!("process {} is gone", self.pid)))?;
        let (state, start) = parse_stat(&stat)?;
        if start != self.start {
            return Err(gone(format!(
                "pid {} now belongs to another process (started at tick {start}, not {})",
                self.pid, self.start
            )));
        }
        if matches!(state, b'Z' | b'X') {
            return Err(gone(format!("process {} has ended (a zombie)", self.pid)));
        }
        Ok(ProcessDir { dir: dir.into() })
    }
}

impl ProcessId {
    /// Sends `signal` to this very process, never to one given its pid since: the signal goes through a
    /// pidfd, opened before the start time is checked, so the descriptor refers to the process that was
    /// checked (a process holding the pid at the check held it since the pidfd was opened). Fails with
    /// [`io::ErrorKind::NotFound`] when the process is gone or the pid is another's.
    pub fn signal(&self, signal: rustix::process::Signal) -> io::Result<()> {
        let gone = |why: String| io::Error::new(io::ErrorKind::NotFound, why);
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| gone(format!("{} is no pid", self.pid)))?;
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Err(gone(format!("process {} is gone", self.pid))),
            Err(e) => return Err(e.into()),
        };
        drop(self.open()?);
        rustix::process::pidfd_send_signal(&pidfd, signal).map_err(|e| match e {
            rustix::io::Errno::SRCH => gone(format!("process {} is gone", self.pid)),
            e => e.into(),
        })
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (started at tick {})", self.pid, self.start)
    }
}

/// `/proc/PID` of one process, opened by [`ProcessId::open`] after its start time was checked.
#[derive(Debug)]
pub struct ProcessDir {
    dir: File,
}

impl ProcessDir {
    /// A path that reaches the process's `/proc/PID` through this descriptor (`/proc/self/fd/N`), valid while
    /// `self` lives: `path().join("mountinfo")`, `path().join("root")`.
    pub fn path(&self) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
    }
}

/// The state (field 3) and start time (field 22) of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold anything, so fields are counted after its last `)`.
fn parse_stat(stat: &[u8]) -> io::Result<(u8, u64)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat");
    let close = stat.iter().rposition(|&b| b == b')').ok_or_else(bad)?;
    let mut fields = stat[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let state = *fields.next().and_then(|f| f.first()).ok_or_else(bad)?;
    // Field 3 was the state; the start time is field 22, 19 fields on.
    let start = fields
        .nth(18)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok((state, start))
}

/// What [`stat`] found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The file.
    pub file: FileId,
    /// The mount the path ends on.
    pub mount: MountId,
    /// The mountinfo id of that mount (the same as `mount` on kernels without unique ids).
    pub reusable: u64,
}

/// Identifies the file at `path` (not following a final symlink, triggering an automount or asking a network or
/// FUSE server for fresh attributes) and the mount it is on: the unique mount id where the kernel has it. The mount the two `statx` calls see must be the
/// same one (the reusable id is read before and after), else the path is read again, at most three times.
pub fn stat(path: &Path) -> io::Result<Stat> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT | AtFlags::STATX_DONT_SYNC;
    identify(|mask| rustix::fs::statx(rustix::fs::CWD, path, flags, mask))
}

/// [`stat`] of an open file: the file read through `file` and the mount it was opened on.
pub fn stat_open(file: &File) -> io::Result<Stat> {
    identify(|mask| rustix::fs::statx(file.as_fd(), "", AtFlags::EMPTY_PATH, mask))
}

fn identify(call: impl Fn(StatxFlags) -> rustix::io::Result<Statx>) -> io::Result<Stat> {
    let basic = StatxFlags::BASIC_STATS | StatxFlags::MNT_ID;
    let unique_mask = StatxFlags::BASIC_STATS | StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE);
    for _ in 0..3 {
        let before = call(basic)?;
        if before.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "statx gives no mount id (Linux 5.8 or later needed)",
            ));
        }
        let file = FileId {
            major: before.stx_dev_major,
            minor: before.stx_dev_minor,
            inode: before.stx_ino,
        };
        let unique = call(unique_mask)?;
        let after = call(basic)?;
        let same_file =
            (after.stx_dev_major, after.stx_dev_minor, after.stx_ino) == (file.major, file.minor, file.inode);
        if after.stx_mnt_id != before.stx_mnt_id || !same_file {
            continue;
        }
        let mount = if unique.stx_mask & STATX_MNT_ID_UNIQUE != 0 {
            MountId::Unique(unique.stx_mnt_id)
        } else {
            MountId::Reusable(before.stx_mnt_id)
        };
        return Ok(Stat {
            file,
            mount,
            reusable: before.stx_mnt_id,
        });
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        "the mount at the path changed while it was identified",
    ))
}

/// `struct loop_info64` of `<linux/loop.h>`, as `LOOP_GET_STATUS64` fills it (232 bytes, no padding).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);

/// `LOOP_GET_STATUS64`.
const LOOP_GET_STATUS64: rustix::ioctl::Opcode = 0x4C05;

/// The file loop device `major:minor` reads: its backing file's (dev, ino) as the kernel reports it, whatever
/// namespace attached it and whatever its path. `Ok(None)` when the device is no loop device or has no backing
/// file. The device node is opened through `/sys/dev/block` and `/dev`, and must be the block device asked for.
pub fn loop_backing(major: u32, minor: u32) -> io::Result<Option<FileId>> {
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))?;
    let Some(name) = link.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    if !name.starts_with("loop") {
        return Ok(None);
    }
    let node = File::open(Path::new("/dev").join(name))?;
    let meta = node.metadata()?;
    let rdev = FileId::from_dev(meta.rdev(), 0);
    if !meta.file_type().is_block_device() || (rdev.major, rdev.minor) != (major, minor) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/dev/{name} is not block device {major}:{minor}"),
        ));
    }
    // SAFETY: LOOP_GET_STATUS64 writes exactly one `struct loop_info64`, which `LoopInfo64` declares field for
    // field with the kernel's layout (its size is asserted above); the getter owns that buffer.
    let info = unsafe {
        let getter = rustix::ioctl::Getter::<LOOP_GET_STATUS64, LoopInfo64>::new();
        rustix::ioctl::ioctl(&node, getter)
    };
    match info {
        Ok(info) => Ok(Some(FileId::from_dev(info.lo_device, info.lo_inode))),
        // ENXIO: a loop device with nothing attached.
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_identified_by_device_inode_and_its_mount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let seen = stat(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(seen.file, FileId::from_dev(meta.dev(), meta.ino()));
        assert_eq!(stat_open(&File::open(&path).unwrap()).unwrap(), seen);
        let same_mount = stat(dir.path()).unwrap();
        assert_eq!(same_mount.mount, seen.mount);
        assert!(stat(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_process_is_its_pid_and_start_time_and_a_reused_pid_is_told_apart() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        let dir = id.open().unwrap();
        let mountinfo = std::fs::read(dir.path().join("mountinfo")).unwrap();
        assert_eq!(
            mountinfo,
            std::fs::read(format!("/proc/{}/mountinfo", child.id())).unwrap()
        );
        assert!(id.is_live());
        // The same pid with another start time is what a reused pid looks like.
        let replayed = ProcessId {
            start: id.start + 1,
            ..id
        };
        let err = replayed.open().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("another process"), "{err}");
        let err = replayed.signal(rustix::process::Signal::KILL).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            id.is_live(),
            "a signal meant for another start time reached the process"
        );
        id.signal(rustix::process::Signal::KILL).unwrap();
        // A zombie until reaped, then gone: neither is the process any more, and the pinned directory reads
        // nothing of whoever comes next.
        let started = std::time::Instant::now();
        while id.is_live() && started.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!id.is_live());
        child.wait().unwrap();
        assert!(!id.is_live());
        assert!(std::fs::read(dir.path().join("mountinfo")).is_err());
        assert_eq!(
            id.signal(rustix::process::Signal::KILL).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn stat_lines_are_read_after_the_last_parenthesis() {
        let line = b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10\n";
        assert_eq!(parse_stat(line).unwrap(), (b'S', 987654));
        for bad in [
            &b""[..],
            b"42 (x",
            b"42 (x) S 1 2",
            b"42 (x) S 1 42 42 0 -1 4 1 0 0 0 1 2 0 0 20 0 1 0 z",
        ] {
            assert_eq!(parse_stat(bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }

    #[test]
    fn a_device_that_is_no_loop_has_no_backing_file() {
        let meta = std::fs::metadata("/").unwrap();
        let dev = FileId::from_dev(meta.dev(), 0);
        assert!(!matches!(loop_backing(dev.major, dev.minor), Ok(Some(_))));
    }
}
