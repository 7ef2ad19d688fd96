//! The host filesystem calls the EROFS code needs beyond `std`: xattrs, device nodes, symlink timestamps and
//! device-number helpers. All of them go through `rustix` and live here, so the rest of the module stays plain
//! `std` code.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags};

use super::writer::FileTime;

/// A special file [`mknod`] can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Character device.
    CharDevice(u32, u32),
    /// Block device.
    BlockDevice(u32, u32),
    /// Fifo.
    Fifo,
    /// Unix socket node.
    Socket,
}

/// The extended attributes of `path` (not following a final symlink), sorted by name. A filesystem without
/// xattr support has none.
pub fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let size = match rfs::llistxattr_query(path) {
        Ok(size) => size,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut list = vec![0u8; size];
    let len = rfs::llistxattr(path, &mut list)?;
    list.truncate(len);
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let len = rfs::lgetxattr_query(path, name)?;
        let mut value = vec![0u8; len];
        if len > 0 {
            let got = rfs::lgetxattr(path, name, &mut value)?;
            value.truncate(got);
        }
        out.push((name.as_bytes().to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Sets one extended attribute on `path` (not following a final symlink).
pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    rfs::lsetxattr(path, std::ffi::OsStr::from_bytes(name), value, XattrFlags::empty())?;
    Ok(())
}

/// Creates a device node, fifo or socket node with the given permission bits.
pub fn mknod(path: &Path, kind: Special, permissions: u32) -> io::Result<()> {
    let (file_type, dev) = match kind {
        Special::CharDevice(major, minor) => (FileType::CharacterDevice, rfs::makedev(major, minor)),
        Special::BlockDevice(major, minor) => (FileType::BlockDevice, rfs::makedev(major, minor)),
        Special::Fifo => (FileType::Fifo, 0),
        Special::Socket => (FileType::Socket, 0),
    };
    rfs::mknodat(rfs::CWD, path, file_type, Mode::from_raw_mode(permissions), dev)?;
    Ok(())
}

/// Sets access and modification time of `path` without following a final symlink.
pub fn set_mtime(path: &Path, mtime: FileTime) -> io::Result<()> {
    let t = Timespec {
        tv_sec: mtime.secs,
        tv_nsec: mtime.nanos.into(),
    };
    rfs::utimensat(
        rfs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Major and minor numbers of a `st_rdev`.
pub fn split_dev(dev: u64) -> (u32, u32) {
    (rfs::major(dev), rfs::minor(dev))
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
