//! The verified device served over FUSE, so the kernel (loop + EROFS + overlay) or any reader can sit on it.
//!
//! The filesystem has two files:
//!
//! - `device`: the verified data device, `data_blocks × data_block_size` bytes, read-only. Every read goes
//!   through [`VerifiedDevice`]; a read that touches a block failing verification fails as a whole with
//!   `EIO` (never a short read, which the page cache would pad with zeroes and keep as valid).
//! - `status`: the device's status and counters as JSON, generated on every read.
//!
//! Requests are served by several threads (one per core by default), each with its own `/dev/fuse` clone.
//! The kernel's page cache sits above the device as it sits above a dm-verity mapping: only verified bytes
//! enter it, and a block changed on disk after it was cached is not seen until the cache drops it.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request, SessionACL,
};

use crate::ReadAt;
use crate::device::{Status, VerifiedDevice};
use crate::hash::Digest;

/// Name of the verified device file inside the mount.
pub const DEVICE_FILE: &str = "device";
/// Name of the status file inside the mount.
pub const STATUS_FILE: &str = "status";

const ROOT: INodeNo = INodeNo::ROOT;
const DEVICE: INodeNo = INodeNo(2);
const STATUS: INodeNo = INodeNo(3);
/// The device never changes size or identity while mounted: the kernel may keep its attributes.
const DEVICE_TTL: Duration = Duration::from_secs(3600);
/// The status changes on every read: the kernel must ask each time.
const STATUS_TTL: Duration = Duration::ZERO;

/// What the status file reports: the counters and the device's identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// `verified` or `corrupted`.
    pub status: String,
    /// `V` or `C`, as dm-verity's status line.
    pub letter: char,
    /// Data blocks verified.
    pub blocks_verified: u64,
    /// Data blocks returned as zeroes (`ignore_zero_blocks`).
    pub zero_blocks: u64,
    /// Data blocks served unchecked (`check_at_most_once`).
    pub unchecked_reads: u64,
    /// Corruptions seen.
    pub corruptions: u64,
    /// I/O errors of the underlying devices.
    pub io_errors: u64,
    /// Blocks corrected from parity (and verified).
    #[serde(default)]
    pub fec_corrected: u64,
    /// Blocks the parity could not correct.
    #[serde(default)]
    pub fec_uncorrectable: u64,
    /// The first corrupted block, as text (`data block 7`, `hash block 3 (tree level 0)`).
    pub first_corrupted: Option<String>,
    /// The first corrupted block as structured data.
    pub first_corrupted_block: Option<serde_json::Value>,
    /// `restart` or `panic` once the emulated kernel halted.
    pub halted: Option<String>,
    /// Size of the device in bytes.
    pub size: u64,
    /// The root hash in force (hex in the status file).
    pub root_hash: Digest,
}

impl StatusReport {
    /// The report of `device` now, as its status file would show it.
    pub fn of<D: ReadAt, H: ReadAt>(device: &VerifiedDevice<D, H>) -> Self {
        Self::new(&device.status(), device.len(), device.root())
    }

    fn new(status: &Status, size: u64, root_hash: Digest) -> Self {
        Self {
            status: status.state.name().to_owned(),
            letter: status.state.letter(),
            blocks_verified: status.blocks_verified,
            zero_blocks: status.zero_blocks,
            unchecked_reads: status.unchecked_reads,
            corruptions: status.corruptions,
            io_errors: status.io_errors,
            fec_corrected: status.fec_corrected,
            fec_uncorrectable: status.fec_uncorrectable,
            first_corrupted: status.first_corrupted.map(|b| b.to_string()),
            first_corrupted_block: status.first_corrupted.and_then(|b| serde_json::to_value(b).ok()),
            halted: status.halted.map(|h| h.name().to_owned()),
            size,
            root_hash,
        }
    }
}

/// The FUSE filesystem over one verified device.
pub struct DeviceFs<D, H> {
    device: Arc<VerifiedDevice<D, H>>,
    mounted_at: SystemTime,
    uid: u32,
    gid: u32,
}

impl<D: ReadAt, H: ReadAt> DeviceFs<D, H> {
    /// A filesystem serving `device`, with files owned by the calling user.
    pub fn new(device: Arc<VerifiedDevice<D, H>>) -> Self {
        Self {
            device,
            mounted_at: SystemTime::now(),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = match ino {
            ROOT => (FileType::Directory, 0o555, 0, 2),
            DEVICE => (FileType::RegularFile, 0o444, self.device.len(), 1),
            STATUS => (FileType::RegularFile, 0o444, 0, 1),
            _ => return None,
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: self.device.geometry().params.data_block_size,
            flags: 0,
        })
    }

    fn status_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(&StatusReport::of(&self.device)).expect("status serialises");
        json.push(b'\n');
        json
    }
}

fn ttl(ino: INodeNo) -> Duration {
    if ino == STATUS { STATUS_TTL } else { DEVICE_TTL }
}

impl<D: ReadAt + 'static, H: ReadAt + 'static> Filesystem for DeviceFs<D, H> {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Let the kernel keep several reads in flight so every serving thread has work.
        let _ = config.set_max_background(64);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = match (parent, name.to_str()) {
            (ROOT, Some(DEVICE_FILE)) => DEVICE,
            (ROOT, Some(STATUS_FILE)) => STATUS,
            _ => return reply.error(Errno::ENOENT),
        };
        match self.attr(ino) {
            Some(attr) => reply.entry(&ttl(ino), &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&ttl(ino), &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & O_ACCMODE != 0 {
            return reply.error(Errno::EROFS);
        }
        match ino {
            // Only verified bytes enter the page cache, and the device never changes: keep it across opens.
            DEVICE => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            // The status has no fixed size: read it directly, past the size the attributes give.
            STATUS => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match ino {
            DEVICE => {
                let len = self.device.len();
                let n = (size as u64).min(len.saturating_sub(offset)) as usize;
                // Each serving thread keeps its buffer: a fresh one per request would fault in every page of
                // it (up to 1 MiB) again. Its bytes are overwritten by the read before any is sent.
                READ_BUFFER.with_borrow_mut(|buf| {
                    buf.resize(n, 0);
                    match self.device.read_verified(offset, &mut buf[..n]) {
                        Ok(()) => reply.data(&buf[..n]),
                        Err(_) => reply.error(Errno::EIO),
                    }
                });
            }
            STATUS => {
                let json = self.status_json();
                let start = (offset as usize).min(json.len());
                let end = (start + size as usize).min(json.len());
                reply.data(&json[start..end]);
            }
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (DEVICE, FileType::RegularFile, DEVICE_FILE),
            (STATUS, FileType::RegularFile, STATUS_FILE),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// The access mode bits of open(2) flags: anything but `O_RDONLY` is refused on this read-only device.
const O_ACCMODE: i32 = 0o3;

thread_local! {
    /// The buffer a serving thread reads device requests into.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How the FUSE session is mounted.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Threads serving requests.
    pub threads: usize,
    /// Let other users (and root, for loop devices) open the device: `allow_other`. Needs root, or
    /// `user_allow_other` in `/etc/fuse.conf`.
    pub allow_other: bool,
    /// Name shown as the mount's source in `/proc/self/mountinfo`.
    pub fs_name: String,
    /// Unmount when the server dies, through a `fusermount3` watcher process (needs `allow_other`); for a
    /// server others rely on to go away cleanly. A caller that unmounts itself leaves it off: the watcher
    /// outlives the session for a moment and keeps whatever file descriptors it inherited.
    pub auto_unmount: bool,
}

/// The fuser configuration for `config`.
pub fn fuser_config(config: &MountConfig) -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::FSName(config.fs_name.clone()),
        MountOption::Subtype("verity-fuse".into()),
    ];
    if config.allow_other {
        c.acl = SessionACL::All;
        if config.auto_unmount {
            c.mount_options.push(MountOption::AutoUnmount);
        }
    }
    c.n_threads = Some(config.threads.max(1));
    c.clone_fd = true;
    c
}

/// Mounts `device` at `mountpoint` on background threads; dropping the returned session unmounts it.
pub fn spawn<D: ReadAt + 'static, H: ReadAt + 'static>(
    device: Arc<VerifiedDevice<D, H>>,
    mountpoint: &Path,
    config: &MountConfig,
) -> std::io::Result<fuser::BackgroundSession> {
    fuser::spawn_mount(DeviceFs::new(device), mountpoint, &fuser_config(config))
}
