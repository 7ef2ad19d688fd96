//! The `fuse` backend: a [`Merged`] view served read-only as a FUSE filesystem (fuser, no libfuse).
//!
//! [`RootfsFs`] answers lookup, getattr, readdir, open, read, readlink, getxattr, listxattr, statfs and access
//! from the view. Every operation that would change the tree (write, create, mknod, mkdir, unlink, rmdir,
//! symlink, link, rename, setattr, setxattr, removexattr, fallocate, copy_file_range) fails with `EROFS`,
//! and so does opening a file for writing; the mount itself is also read-only, so the kernel refuses most
//! of them before they arrive. A read refused by a verified device fails as a whole with `EIO`, never a
//! short read the page cache would pad with zeroes.
//!
//! FUSE's root inode (1) stands for the view's root; every other inode number is the view's own stable one.
//! The tree never changes, so the kernel may keep entries, attributes and page-cache contents for long.
//! [`mount`] serves the filesystem from background threads (several, each with its own `/dev/fuse` clone)
//! and returns a [`FuseMount`] that unmounts when dropped. As root the mount is shared with every user
//! (`allow_other`) and the kernel checks permissions from the modes (`default_permissions`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use verity_fuse::ReadAt;

use super::error::{EROFS, RootfsError};
use super::merge::{Entry, Merged, Node, Stat};
use crate::erofs::FileKind;
use verity_fuse::ErrorClass;

/// How long the kernel may keep entries and attributes: the tree never changes.
const TTL: Duration = Duration::from_secs(3600);
/// Block size reported by `stat` and `statfs`.
const BLOCK: u32 = 4096;
/// The access-mode bits of open(2) flags.
const O_ACCMODE: i32 = 0o3;
/// `O_TRUNC`.
const O_TRUNC: i32 = 0o1000;
/// `W_OK` of access(2).
const W_OK: i32 = 2;

/// How the FUSE filesystem is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseOptions {
    /// Threads serving requests.
    pub threads: usize,
    /// Name shown as the mount's source in `/proc/self/mountinfo`.
    pub fs_name: String,
    /// Let every user (not only the mounting one) use the mount: `allow_other`. Needs root, or
    /// `user_allow_other` in `/etc/fuse.conf`.
    pub allow_other: bool,
}

impl Default for FuseOptions {
    /// Up to four threads, source `veritylab-rootfs`, `allow_other` as root.
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            fs_name: "veritylab-rootfs".into(),
            allow_other: verity_fuse::sys::is_root(),
        }
    }
}

/// Errors mounting or unmounting the filesystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FuseError {
    /// The FUSE mount failed.
    #[error("mounting the rootfs on {target} with FUSE: {source}")]
    Mount {
        /// The mount target.
        target: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Unmounting or stopping the server failed.
    #[error("unmounting the FUSE rootfs at {target}: {source}")]
    Unmount {
        /// The mount target.
        target: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl FuseError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Io
    }
}

/// A mounted FUSE rootfs; dropping it unmounts.
#[derive(Debug)]
pub struct FuseMount {
    session: Option<fuser::BackgroundSession>,
    target: PathBuf,
}

impl FuseMount {
    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts and waits for the serving threads to finish.
    pub fn unmount(mut self) -> Result<(), FuseError> {
        match self.session.take() {
            Some(session) => session.umount_and_join().map_err(|source| FuseError::Unmount {
                target: self.target.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        // Dropping the session unmounts; the serving threads end once the kernel closes the connection.
        drop(self.session.take());
    }
}

/// Mounts `view` read-only at `target` and serves it from background threads.
pub fn mount<R: ReadAt + 'static>(
    view: Arc<Merged<R>>,
    target: &Path,
    options: &FuseOptions,
) -> Result<FuseMount, FuseError> {
    let session =
        fuser::spawn_mount(RootfsFs::new(view), target, &config(options)).map_err(|source| FuseError::Mount {
            target: target.to_path_buf(),
            source,
        })?;
    Ok(FuseMount {
        session: Some(session),
        target: target.to_path_buf(),
    })
}

/// The fuser configuration for `options`.
fn config(options: &FuseOptions) -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::DefaultPermissions,
        MountOption::FSName(options.fs_name.clone()),
        MountOption::Subtype("veritylab".into()),
    ];
    // No `auto_unmount`: fusermount3 would unmount only once every copy of its socket is closed, and child
    // processes spawned meanwhile may hold one. Unmounting is the session's job (`unmount`, or drop).
    if options.allow_other {
        c.acl = SessionACL::All;
    }
    c.n_threads = Some(options.threads.max(1));
    c.clone_fd = true;
    c
}

/// A directory listing as FUSE sends it: inode number, type, name (`.` and `..` first).
type Listing = Vec<(u64, FileType, Vec<u8>)>;

/// The FUSE filesystem over a merged view.
pub struct RootfsFs<R> {
    view: Arc<Merged<R>>,
    root_ino: u64,
    /// Open directory listings by handle, so a listing read in several calls stays one snapshot.
    dirs: Mutex<HashMap<u64, Arc<Listing>>>,
    next_fh: AtomicU64,
}

impl<R: ReadAt> RootfsFs<R> {
    /// A filesystem serving `view`.
    pub fn new(view: Arc<Merged<R>>) -> Self {
        Self {
            root_ino: view.root().ino(),
            view,
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn node(&self, ino: INodeNo) -> Result<Node, RootfsError> {
        if ino == INodeNo::ROOT {
            return Ok(self.view.root());
        }
        self.view.node(ino.0)
    }

    fn fuse_ino(&self, ino: u64) -> INodeNo {
        if ino == self.root_ino {
            INodeNo::ROOT
        } else {
            INodeNo(ino)
        }
    }

    fn attr(&self, stat: &Stat) -> FileAttr {
        let mtime = if stat.mtime.secs >= 0 {
            UNIX_EPOCH + Duration::new(stat.mtime.secs.unsigned_abs(), stat.mtime.nanos.min(999_999_999))
        } else {
            UNIX_EPOCH - Duration::from_secs(stat.mtime.secs.unsigned_abs())
                + Duration::from_nanos(u64::from(stat.mtime.nanos.min(999_999_999)))
        };
        FileAttr {
            ino: self.fuse_ino(stat.ino),
            size: stat.size,
            blocks: stat.size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: file_type(stat.kind),
            perm: (stat.mode & 0o7777) as u16,
            nlink: stat.nlink,
            uid: stat.uid,
            gid: stat.gid,
            rdev: stat.rdev_encoded(),
            blksize: BLOCK,
            flags: 0,
        }
    }

    fn listing(&self, node: &Node) -> Result<Listing, RootfsError> {
        let parent = self.view.child(node, b"..")?.unwrap_or_else(|| node.clone());
        let mut out = vec![
            (self.fuse_ino(node.ino()).0, FileType::Directory, b".".to_vec()),
            (self.fuse_ino(parent.ino()).0, FileType::Directory, b"..".to_vec()),
        ];
        out.extend(
            self.view
                .read_dir(node)?
                .into_iter()
                .map(|Entry { name, ino, kind }| (self.fuse_ino(ino).0, file_type(kind), name)),
        );
        Ok(out)
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

fn errno(err: &RootfsError) -> Errno {
    Errno::from_i32(err.errno())
}

fn erofs() -> Errno {
    Errno::from_i32(EROFS)
}

/// Answers an xattr request of `size` bytes with `data` (its length when `size` is 0).
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    match u32::try_from(data.len()) {
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len <= size => reply.data(data),
        _ => reply.error(Errno::ERANGE),
    }
}

impl<R: ReadAt + 'static> Filesystem for RootfsFs<R> {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        let _ = config.set_max_background(64);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.node(parent).and_then(|dir| self.view.child(&dir, name.as_bytes()));
        match found {
            Ok(Some(node)) => reply.entry(&TTL, &self.attr(&self.view.stat(&node)), Generation(0)),
            // A negative entry may be cached as long as a positive one: the tree never changes.
            Ok(None) => reply.error(Errno::ENOENT),
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Ok(node) => reply.attr(&TTL, &self.attr(&self.view.stat(&node))),
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino).and_then(|node| self.view.read_link(&node)) {
            Ok(target) => reply.data(&target),
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & O_ACCMODE != 0 || flags.0 & O_TRUNC != 0 {
            return reply.error(erofs());
        }
        match self.node(ino) {
            Ok(node) if node.kind() == FileKind::Directory => reply.error(Errno::EISDIR),
            // Only bytes that passed verification enter the page cache, and they never change: keep them.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(err) => reply.error(errno(&err)),
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
        let node = match self.node(ino) {
            Ok(node) => node,
            Err(err) => return reply.error(errno(&err)),
        };
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match self.view.read_at(&node, offset + done as u64, &mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(err) => return reply.error(errno(&err)),
            }
        }
        reply.data(&buf[..done]);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listing = self.node(ino).and_then(|node| self.listing(&node));
        match listing {
            Ok(entries) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.dirs
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(fh, Arc::new(entries));
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
                );
            }
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let open = self
            .dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&fh.0)
            .cloned();
        let entries = match open {
            Some(entries) => entries,
            None => match self.node(ino).and_then(|node| self.listing(&node)) {
                Ok(entries) => Arc::new(entries),
                Err(err) => return reply.error(errno(&err)),
            },
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, BLOCK, 255, BLOCK);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.node(ino).and_then(|node| self.view.xattr(&node, name.as_bytes())) {
            Ok(Some(value)) => reply_xattr(reply, size, &value),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.node(ino).and_then(|node| self.view.xattrs(&node)) {
            Ok(xattrs) => {
                let mut names = Vec::new();
                for (name, _) in xattrs {
                    names.extend_from_slice(&name);
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.node(ino) {
            Ok(_) if mask.bits() & W_OK != 0 => reply.error(erofs()),
            Ok(_) => reply.ok(),
            Err(err) => reply.error(errno(&err)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(erofs());
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(erofs());
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(erofs());
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(erofs());
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(erofs());
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(erofs());
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(erofs());
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(erofs());
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(erofs());
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(erofs());
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(erofs());
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(erofs());
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(erofs());
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(erofs());
    }
}
