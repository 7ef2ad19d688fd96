//! A deterministic description of a rootfs tree, to compare what each backend shows and what `umoci unpack`
//! produces.
//!
//! A [`Snapshot`] lists every entry (the root included) in depth-first order, children sorted by name bytes,
//! with its kind, permission bits, owner, size, the SHA-256 of a file's content or a symlink's target, and a
//! device's numbers. Times, link counts, inode numbers, xattrs and directory sizes are left out: they
//! legitimately differ between an EROFS image, an overlay mount, a FUSE mount and an unpacked directory.
//!
//! Sources:
//! - [`Snapshot::of_merged`]: a [`Merged`] view, read in process.
//! - [`Snapshot::of_dir`]: a host directory through `lstat` (symlinks not followed): a kernel overlay mount,
//!   a FUSE mount, any unpacked tree. An entry that a directory listing names but `lstat` then cannot find
//!   is left out: the kernel's overlayfs lists the whiteouts of a directory that only one layer holds, yet
//!   hides them on lookup.
//! - [`Snapshot::of_umoci_bundle`]: `umoci unpack`'s bundle: its `rootfs/`, with owners as the image has
//!   them: host owners mapped back through the id mappings `umoci.json` records (`--rootless` maps the
//!   image's root to the unpacking user), then replaced by the `user.rootlesscontainers` xattr where
//!   `--rootless` recorded one instead of chowning.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use verity_fuse::ReadAt;

use super::error::RootfsError;
use super::merge::Merged;
use crate::erofs::{FileKind, hostfs};
use verity_fuse::ErrorClass;

/// Deepest directory nesting a host walk follows (a path of `PATH_MAX` bytes holds at most 2048 levels).
pub(crate) const MAX_DEPTH: usize = 2048;

/// The xattr `umoci unpack --rootless` stores the image's owner in.
pub(crate) const ROOTLESS_XATTR: &[u8] = b"user.rootlesscontainers";

/// Errors taking a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading the merged view failed.
    #[error(transparent)]
    Merged(#[from] RootfsError),
    /// Reading a host path failed.
    #[error("{path}: {source}")]
    Host {
        /// The host path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A host tree nests deeper than `MAX_DEPTH`.
    #[error("{path}: nested more than {MAX_DEPTH} directories deep")]
    TooDeep {
        /// Where the limit was reached.
        path: PathBuf,
    },
    /// A bundle's `umoci.json` that does not parse or whose id mappings make no sense.
    #[error("{path}: {reason}")]
    UmociJson {
        /// The `umoci.json` path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `user.rootlesscontainers` value that does not decode.
    #[error("{path}: malformed user.rootlesscontainers xattr")]
    RootlessXattr {
        /// The host path.
        path: PathBuf,
    },
}

impl SnapshotError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Merged(e) => e.class(),
            Self::Host { .. } => ErrorClass::Io,
            Self::TooDeep { .. } | Self::UmociJson { .. } | Self::RootlessXattr { .. } => ErrorClass::BadInput,
        }
    }
}

/// The kind of a snapshot entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Fifo.
    Fifo,
    /// Socket.
    Socket,
}

impl From<FileKind> for Kind {
    fn from(kind: FileKind) -> Self {
        match kind {
            FileKind::File => Self::File,
            FileKind::Directory => Self::Dir,
            FileKind::Symlink => Self::Symlink,
            FileKind::CharDevice => Self::Char,
            FileKind::BlockDevice => Self::Block,
            FileKind::Fifo => Self::Fifo,
            FileKind::Socket => Self::Socket,
        }
    }
}

impl Kind {
    fn of_host(ft: fs::FileType) -> Self {
        if ft.is_dir() {
            Self::Dir
        } else if ft.is_file() {
            Self::File
        } else if ft.is_symlink() {
            Self::Symlink
        } else if ft.is_char_device() {
            Self::Char
        } else if ft.is_block_device() {
            Self::Block
        } else if ft.is_fifo() {
            Self::Fifo
        } else {
            Self::Socket
        }
    }
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Path from the root (`/` for the root); bytes that are not UTF-8 are written `\xNN`, a backslash `\\`.
    pub path: String,
    /// Kind.
    pub kind: Kind,
    /// Permission bits (with set-id and sticky bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a file, length of a symlink's target, 0 for anything else.
    pub size: u64,
    /// Hex SHA-256 of a file's content or a symlink's target.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// `[major, minor]` of a device.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rdev: Option<(u32, u32)>,
}

/// A deterministic description of a tree: entries in depth-first order, children sorted by name bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The entries, root first.
    pub entries: Vec<SnapshotEntry>,
}

impl Snapshot {
    /// The snapshot of a merged view.
    pub fn of_merged<R: ReadAt>(view: &Merged<R>) -> Result<Self, SnapshotError> {
        let mut entries = Vec::new();
        view.walk(|node| -> Result<(), RootfsError> {
            let stat = view.stat(node);
            let kind = Kind::from(stat.kind);
            let (size, sha256) = match kind {
                Kind::File => {
                    let mut hasher = Sha256::new();
                    let mut buf = vec![0u8; 1 << 16];
                    let mut offset = 0u64;
                    loop {
                        let n = view.read_at(node, offset, &mut buf)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        offset += n as u64;
                    }
                    (offset, Some(hex(&hasher.finalize())))
                }
                Kind::Symlink => {
                    let target = view.read_link(node)?;
                    (target.len() as u64, Some(hex(&Sha256::digest(&target))))
                }
                _ => (0, None),
            };
            entries.push(SnapshotEntry {
                path: escape(node.path()),
                kind,
                mode: stat.permissions(),
                uid: stat.uid,
                gid: stat.gid,
                size,
                sha256,
                rdev: stat.rdev,
            });
            Ok(())
        })?;
        Ok(Self { entries })
    }

    /// The snapshot of a host directory, through `lstat` (symlinks are not followed).
    pub fn of_dir(root: &Path) -> Result<Self, SnapshotError> {
        walk_host(root, None)
    }

    /// The snapshot of `umoci unpack`'s bundle directory: its `rootfs/`, with the image's owners (see the
    /// module docs).
    pub fn of_umoci_bundle(bundle: &Path) -> Result<Self, SnapshotError> {
        let maps = IdMaps::of_bundle(bundle)?;
        walk_host(&bundle.join("rootfs"), Some(&maps))
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&SnapshotEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The paths, in order.
    pub fn paths(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.path.as_str()).collect()
    }

    /// Human-readable differences from `self` (expected) to `other` (actual); empty when equal.
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mine: BTreeMap<&str, &SnapshotEntry> = self.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let theirs: BTreeMap<&str, &SnapshotEntry> = other.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut out = Vec::new();
        for (path, want) in &mine {
            match theirs.get(path) {
                None => out.push(format!("missing {path}")),
                Some(got) if got != want => out.push(format!("{path}:\n  want {want:?}\n  got  {got:?}")),
                Some(_) => {}
            }
        }
        for path in theirs.keys().filter(|p| !mine.contains_key(*p)) {
            out.push(format!("unexpected {path}"));
        }
        if out.is_empty() && self != other {
            out.push("same entries in a different order".into());
        }
        out
    }

    /// Hex SHA-256 of the snapshot's JSON: one value to compare or record.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(
            serde_json::to_vec(self).expect("a snapshot serialises"),
        ))
    }
}

fn walk_host(root: &Path, umoci: Option<&IdMaps>) -> Result<Snapshot, SnapshotError> {
    let host = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Host { path, source }
    };
    let mut entries = Vec::new();
    let mut stack: Vec<(PathBuf, Vec<u8>, usize)> = vec![(root.to_path_buf(), b"/".to_vec(), 0)];
    while let Some((path, name, depth)) = stack.pop() {
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Listed but not there: an overlayfs whiteout in a directory only one layer holds.
            Err(err) if err.kind() == io::ErrorKind::NotFound && depth > 0 => continue,
            Err(err) => return Err(host(&path)(err)),
        };
        let kind = Kind::of_host(md.file_type());
        let (size, sha256) = match kind {
            Kind::File => {
                let mut file = fs::File::open(&path).map_err(host(&path))?;
                let (size, digest) = hash_reader(&mut file).map_err(host(&path))?;
                (size, Some(digest))
            }
            Kind::Symlink => {
                let target = fs::read_link(&path)
                    .map_err(host(&path))?
                    .into_os_string()
                    .into_encoded_bytes();
                (target.len() as u64, Some(hex(&Sha256::digest(&target))))
            }
            _ => (0, None),
        };
        let (mut uid, mut gid) = (md.uid(), md.gid());
        if let Some(maps) = umoci {
            (uid, gid) = (maps.uid(uid), maps.gid(gid));
            if let Some(owner) = rootless_owner(&path)? {
                (uid, gid) = (owner.0.unwrap_or(uid), owner.1.unwrap_or(gid));
            }
        }
        entries.push(SnapshotEntry {
            path: escape(&name),
            kind,
            mode: md.mode() & 0o7777,
            uid,
            gid,
            size,
            sha256,
            rdev: matches!(kind, Kind::Char | Kind::Block).then(|| hostfs::split_dev(md.rdev())),
        });
        if kind != Kind::Dir {
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err(SnapshotError::TooDeep { path });
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&path).map_err(host(&path))? {
            names.push(entry.map_err(host(&path))?.file_name().into_encoded_bytes());
        }
        names.sort();
        for child in names.into_iter().rev() {
            let mut child_name = name.clone();
            if child_name != b"/" {
                child_name.push(b'/');
            }
            child_name.extend_from_slice(&child);
            stack.push((path.join(OsString::from_vec(child)), child_name, depth + 1));
        }
    }
    Ok(Snapshot { entries })
}

/// One id mapping of `umoci.json`: `size` ids from `container` inside are `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct IdMap {
    #[serde(rename = "containerID")]
    container: u32,
    #[serde(rename = "hostID")]
    host: u32,
    size: u32,
}

/// The id mappings an unpack used (none: host ids are the image's).
#[derive(Debug, Clone, Default, Deserialize)]
struct IdMaps {
    /// `null` when the unpack mapped nothing.
    #[serde(default)]
    uid_mappings: Option<Vec<IdMap>>,
    #[serde(default)]
    gid_mappings: Option<Vec<IdMap>>,
}

impl IdMaps {
    /// The mappings recorded in `BUNDLE/umoci.json` (`map_options`); none when the file is absent.
    fn of_bundle(bundle: &Path) -> Result<Self, SnapshotError> {
        #[derive(Deserialize)]
        struct Meta {
            #[serde(default)]
            map_options: Option<IdMaps>,
        }
        let path = bundle.join("umoci.json");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(SnapshotError::Host { path, source }),
        };
        serde_json::from_slice::<Meta>(&bytes)
            .map(|meta| meta.map_options.unwrap_or_default())
            .map_err(|err| SnapshotError::UmociJson {
                path,
                reason: err.to_string(),
            })
    }

    fn uid(&self, host: u32) -> u32 {
        to_container(self.uid_mappings.as_deref().unwrap_or_default(), host)
    }

    fn gid(&self, host: u32) -> u32 {
        to_container(self.gid_mappings.as_deref().unwrap_or_default(), host)
    }
}

/// The id inside the container of host id `host` (unchanged when no mapping covers it).
fn to_container(maps: &[IdMap], host: u32) -> u32 {
    maps.iter()
        .find(|m| host >= m.host && u64::from(host) < u64::from(m.host) + u64::from(m.size))
        .and_then(|m| m.container.checked_add(host - m.host))
        .unwrap_or(host)
}

/// A recorded owner: uid and gid, `None` where the record leaves the file's own.
type Owner = (Option<u32>, Option<u32>);

/// The owner `umoci unpack --rootless` recorded for `path`: the protobuf message
/// `{uint32 uid = 1; uint32 gid = 2;}`, where a missing field is 0 and `0xFFFFFFFF` means "unchanged".
fn rootless_owner(path: &Path) -> Result<Option<Owner>, SnapshotError> {
    let xattrs = hostfs::xattrs(path).map_err(|source| SnapshotError::Host {
        path: path.to_path_buf(),
        source,
    })?;
    let Some((_, value)) = xattrs.iter().find(|(name, _)| name == ROOTLESS_XATTR) else {
        return Ok(None);
    };
    let bad = || SnapshotError::RootlessXattr {
        path: path.to_path_buf(),
    };
    let (mut uid, mut gid) = (0u32, 0u32);
    let mut rest = value.as_slice();
    while !rest.is_empty() {
        let (key, used) = varint(rest).ok_or_else(bad)?;
        rest = &rest[used..];
        if key & 7 != 0 {
            return Err(bad());
        }
        let (value, used) = varint(rest).ok_or_else(bad)?;
        rest = &rest[used..];
        let value = u32::try_from(value).map_err(|_| bad())?;
        match key >> 3 {
            1 => uid = value,
            2 => gid = value,
            _ => {}
        }
    }
    let keep = |id: u32| (id != u32::MAX).then_some(id);
    Ok(Some((keep(uid), keep(gid))))
}

/// A protobuf varint at the start of `b`: its value and length.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn hash_reader(reader: &mut impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = io::copy(reader, &mut hasher)?;
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A path as text: valid UTF-8 kept, other bytes `\xNN`, a backslash `\\`, so distinct paths stay distinct.
fn escape(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_non_utf8_and_backslashes() {
        assert_eq!(escape(b"/a\\b"), "/a\\\\b");
        assert_eq!(escape(b"/x\xffy"), "/x\\xffy");
        assert_eq!(escape("/é".as_bytes()), "/é");
    }

    #[test]
    fn host_ids_map_back_into_the_container() {
        let maps = [IdMap {
            container: 0,
            host: 65534,
            size: 1,
        }];
        assert_eq!(to_container(&maps, 65534), 0);
        assert_eq!(to_container(&maps, 1000), 1000);
        let wide = [IdMap {
            container: 1,
            host: u32::MAX - 1,
            size: 10,
        }];
        assert_eq!(to_container(&wide, u32::MAX), 2);
    }

    #[test]
    fn rootless_owner_varints_decode() {
        assert_eq!(varint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(varint(&[0x80]), None);
        assert_eq!(varint(&[0xFF; 11]), None);
    }
}
