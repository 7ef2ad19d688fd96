//! Directory ingestion: a host directory tree fed into a [`Builder`], as `mkfs.erofs IMAGE DIR` reads it.
//!
//! Entries are visited depth first in name order (so the output does not depend on `readdir` order), read
//! with `lstat` (symlinks are stored, never followed), with their xattrs. Files with several links become one
//! inode with several names, keyed by device and inode number.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::hostfs;
use super::writer::{Builder, EntryKind, FileTime, Metadata, Result, WriteError};

/// Reads the tree at `root` into `builder`; `root` itself becomes the image root.
pub(crate) fn ingest(builder: &mut Builder, root: &Path) -> Result<()> {
    let source = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Source { path, source }
    };
    let mut links: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    let mut stack: Vec<(PathBuf, Vec<Vec<u8>>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((path, parts)) = stack.pop() {
        let md = fs::symlink_metadata(&path).map_err(source(&path))?;
        let entry = path.display().to_string();
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                let target = first.clone();
                builder.add(&entry, &parts, Metadata::default(), EntryKind::HardLink(target))?;
                continue;
            }
            links.insert(key, parts.clone());
        }
        let meta = Metadata {
            permissions: (md.mode() & 0o7777) as u16,
            uid: md.uid(),
            gid: md.gid(),
            mtime: FileTime {
                secs: md.mtime(),
                nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
            },
            xattrs: hostfs::xattrs(&path).map_err(source(&path))?,
        };
        let (major, minor) = hostfs::split_dev(md.rdev());
        if ft.is_dir() {
            builder.add(&entry, &parts, meta, EntryKind::Directory)?;
            let mut names = Vec::new();
            for child in fs::read_dir(&path).map_err(source(&path))? {
                names.push(child.map_err(source(&path))?.file_name());
            }
            names.sort();
            for name in names.into_iter().rev() {
                let mut child_parts = parts.clone();
                child_parts.push(name.as_bytes().to_vec());
                stack.push((path.join(&name), child_parts));
            }
        } else if ft.is_file() {
            let mut file = File::open(&path).map_err(source(&path))?;
            let size = md.len();
            builder.add(&entry, &parts, meta, EntryKind::File { size, data: &mut file })?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(source(&path))?;
            let target = target.as_os_str().as_bytes().to_vec();
            builder.add(&entry, &parts, meta, EntryKind::Symlink(target))?;
        } else if ft.is_char_device() {
            builder.add(&entry, &parts, meta, EntryKind::CharDevice { major, minor })?;
        } else if ft.is_block_device() {
            builder.add(&entry, &parts, meta, EntryKind::BlockDevice { major, minor })?;
        } else if ft.is_fifo() {
            builder.add(&entry, &parts, meta, EntryKind::Fifo)?;
        } else if ft.is_socket() {
            builder.add(&entry, &parts, meta, EntryKind::Socket)?;
        }
    }
    Ok(())
}
