//! Extraction of an image into a host directory, as `fsck.erofs --extract` does.
//!
//! The tree is walked with [`Image::walk`] (which refuses cycles), so every output path is the target joined
//! with names the reader validated (no `/`, no `.`/`..` entries): nothing is written outside the target. Files
//! stream through a fixed buffer. Hard links are recreated from nids. Ownership is restored when running as
//! root; permissions, xattrs and modification times always; directory metadata last, deepest first, so
//! read-only directories and directory times survive the filling of their children.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use verity_fuse::ReadAt;

use super::hostfs::{self, Special};
use super::reader::{FileKind, Image, Inode, ReadError};
use super::writer::FileTime;
use verity_fuse::ErrorClass;

/// Errors of [`extract`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// Reading the image failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing to the target failed.
    #[error("{path}: {source}")]
    Write {
        /// Target path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ExtractError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Read(e) => e.class(),
            Self::Write { .. } => ErrorClass::Io,
        }
    }
}

/// Options of [`extract`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Restore owners (needs root).
    pub preserve_owner: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            preserve_owner: hostfs::is_root(),
        }
    }
}

/// What [`extract`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtractSummary {
    /// Inodes visited (hard links count once per name).
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// Extracts the whole image into `target` (created if missing; its own metadata becomes the root's).
pub fn extract<R: ReadAt>(
    image: &Image<R>,
    target: &Path,
    opts: ExtractOptions,
) -> Result<ExtractSummary, ExtractError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Write { path, source }
    };
    fs::create_dir_all(target).map_err(write_err(target))?;
    let root = image.root()?;
    let mut links: HashMap<u64, PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, Inode)> = Vec::new();
    let mut summary = ExtractSummary::default();
    let mut buf = vec![0u8; 256 * 1024];
    image.walk(&root, |rel, inode| -> Result<(), ExtractError> {
        summary.entries += 1;
        let path = if rel.is_empty() {
            target.to_path_buf()
        } else {
            target.join(OsStr::from_bytes(rel))
        };
        let err = write_err(&path);
        if inode.kind != FileKind::Directory && inode.disk.nlink > 1 {
            if let Some(first) = links.get(&inode.nid) {
                return fs::hard_link(first, &path).map_err(err);
            }
            links.insert(inode.nid, path.clone());
        }
        match inode.kind {
            FileKind::Directory => {
                if !rel.is_empty() {
                    fs::create_dir(&path).map_err(err)?;
                }
                dirs.push((path, inode.clone()));
                return Ok(());
            }
            FileKind::File => {
                let mut file = File::create_new(&path).map_err(write_err(&path))?;
                let mut offset = 0u64;
                loop {
                    let n = image.read_at(inode, offset, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n]).map_err(write_err(&path))?;
                    offset += n as u64;
                }
                summary.bytes += offset;
            }
            FileKind::Symlink => {
                let target = image.read_link(inode)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(err)?;
            }
            FileKind::CharDevice | FileKind::BlockDevice => {
                let (major, minor) = inode.device().unwrap_or((0, 0));
                let kind = if inode.kind == FileKind::CharDevice {
                    Special::CharDevice(major, minor)
                } else {
                    Special::BlockDevice(major, minor)
                };
                hostfs::mknod(&path, kind, inode.permissions()).map_err(err)?;
            }
            FileKind::Fifo => hostfs::mknod(&path, Special::Fifo, inode.permissions()).map_err(err)?,
            FileKind::Socket => hostfs::mknod(&path, Special::Socket, inode.permissions()).map_err(err)?,
        }
        apply_metadata(image, &path, inode, opts)
    })?;
    for (path, inode) in dirs.iter().rev() {
        apply_metadata(image, path, inode, opts)?;
    }
    Ok(summary)
}

fn apply_metadata<R: ReadAt>(
    image: &Image<R>,
    path: &Path,
    inode: &Inode,
    opts: ExtractOptions,
) -> Result<(), ExtractError> {
    let err = |source| ExtractError::Write {
        path: path.to_path_buf(),
        source,
    };
    if opts.preserve_owner {
        std::os::unix::fs::lchown(path, Some(inode.disk.uid), Some(inode.disk.gid)).map_err(err)?;
    }
    if inode.kind != FileKind::Symlink {
        fs::set_permissions(path, Permissions::from_mode(inode.permissions())).map_err(err)?;
    }
    for (name, value) in image.xattrs(inode)? {
        hostfs::set_xattr(path, &name, &value).map_err(err)?;
    }
    let mtime = FileTime {
        secs: inode.disk.mtime as i64,
        nanos: inode.disk.mtime_nsec,
    };
    hostfs::set_mtime(path, mtime).map_err(err)
}
