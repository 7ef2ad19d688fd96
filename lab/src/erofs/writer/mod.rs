//! The streaming EROFS writer.
//!
//! Data flow: the caller ([`super::tar`] or [`super::dir`]) adds entries one by one to a [`Builder`]. A regular
//! file's full blocks are copied straight into the output image as they arrive (the data area starts right
//! after the superblock); its tail (the last `size % block_size` bytes) goes to a small spool file when it will
//! be inlined after the inode. Only metadata stays in memory, in a `tree::Tree`. [`Builder::finish`] then lays
//! out the metadata area after the data (`layout`): inodes in breadth-first order, each followed by its
//! xattrs and inline tail, then the directory and symlink blocks that do not fit inline, and finally the
//! superblock in block 0. The image is written to a temporary file next to the output and renamed into place
//! only when complete, so an error leaves nothing behind.
//!
//! Output is deterministic: names are kept sorted, nids follow the tree order, the build time defaults to the
//! most common modification time (so most inodes can use the compact form) and the UUID defaults to zero.

mod layout;
pub(crate) mod tree;

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use tree::{Attrs, FileData, Kind, Node, NodeId, Tree, TreeError};

use super::format::{self, EXTENDED_INODE_SIZE, NAME_LEN_MAX};
use verity_fuse::ErrorClass;

/// A modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileTime {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds (below one second).
    pub nanos: u32,
}

/// Options of the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Block size: a power of two from 512 to 65536 (4096 is what the kernel mounts on every architecture
    /// with 4 KiB pages).
    pub block_size: u32,
    /// Pack file, directory and symlink tails right after their inodes (`false` is `-Enoinline_data`).
    pub inline_data: bool,
    /// Fixed build time; `None` picks the most common modification time of the tree.
    pub build_time: Option<FileTime>,
    /// Volume UUID.
    pub uuid: [u8; 16],
}

impl Default for Options {
    fn default() -> Self {
        Self {
            block_size: 4096,
            inline_data: true,
            build_time: None,
            uuid: [0; 16],
        }
    }
}

/// Ownership, permissions, time and xattrs of a new entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits (`0o7777` mask).
    pub permissions: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: FileTime,
    /// Extended attributes: full names (`user.x`, `trusted.overlay.opaque`, ...) and values.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a new entry is.
pub enum EntryKind<'a> {
    /// A directory (an existing directory at the same path keeps its children and takes the new metadata).
    Directory,
    /// A regular file of `size` bytes read from `data`.
    File {
        /// Exact size.
        size: u64,
        /// The bytes; exactly `size` are read.
        data: &'a mut dyn Read,
    },
    /// A symbolic link.
    Symlink(Vec<u8>),
    /// Another name for the file at this path (normalised components), which must already exist.
    HardLink(Vec<Vec<u8>>),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A fifo.
    Fifo,
    /// A socket.
    Socket,
}

/// Errors of the writer and of the inputs that feed it. Each names the entry it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Unsupported block size.
    #[error("block size {0} is not a power of two from 512 to 65536")]
    BlockSize(u32),
    /// Creating or persisting the output failed.
    #[error("creating {path}: {source}")]
    Create {
        /// Output path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing the image or its spool failed.
    #[error("writing the image: {0}")]
    Output(#[source] io::Error),
    /// Reading the input archive failed (a truncated tar, a bad gzip checksum, a bad header).
    #[error("{entry}: reading the archive: {source}")]
    Archive {
        /// The entry being read, or a description of where in the archive.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the source directory failed.
    #[error("{path}: reading the source: {source}")]
    Source {
        /// The source path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file's data ended early.
    #[error("{entry}: data ended after {got} of {expected} bytes")]
    Truncated {
        /// Entry name.
        entry: String,
        /// Bytes read.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A path component longer than EROFS allows.
    #[error("{entry}: name component of {len} bytes is longer than 255")]
    NameTooLong {
        /// Entry name.
        entry: String,
        /// Component length.
        len: usize,
    },
    /// A path component that no directory entry can hold: empty, `.`, `..` (a whiteout such as `.wh..` would
    /// name one) or holding a NUL byte.
    #[error("{entry}: name {name:?} cannot be a directory entry ({reason})")]
    InvalidName {
        /// Entry name.
        entry: String,
        /// The offending component (lossy UTF-8).
        name: String,
        /// Why it cannot be stored.
        reason: &'static str,
    },
    /// A non-directory entry names the root.
    #[error("{entry}: only a directory can stand for the root")]
    RootNotDirectory {
        /// Entry name.
        entry: String,
    },
    /// A parent path is not a directory.
    #[error("{entry}: parent {parent} is not a directory")]
    ParentNotDirectory {
        /// Entry name.
        entry: String,
        /// The offending parent path.
        parent: String,
    },
    /// A hard link to a path not seen before.
    #[error("{entry}: hard link target {target} does not exist (yet)")]
    HardLinkTarget {
        /// Entry name.
        entry: String,
        /// Link target.
        target: String,
    },
    /// A hard link to a directory.
    #[error("{entry}: hard link target {target} is a directory")]
    HardLinkToDirectory {
        /// Entry name.
        entry: String,
        /// Link target.
        target: String,
    },
    /// An entry type the writer cannot store.
    #[error("{entry}: unsupported entry type {kind}")]
    EntryType {
        /// Entry name.
        entry: String,
        /// The type as the input names it.
        kind: String,
    },
    /// An invalid PAX record.
    #[error("{entry}: invalid PAX record {key}")]
    Pax {
        /// Entry name.
        entry: String,
        /// The key.
        key: String,
    },
    /// An xattr name EROFS has no prefix for, or a name or value too long for the format.
    #[error("{entry}: xattr {name} cannot be stored in EROFS")]
    Xattr {
        /// Entry name.
        entry: String,
        /// Xattr name.
        name: String,
    },
    /// The xattrs of one entry do not fit beside its inode in one block.
    #[error("{entry}: xattrs take {size} bytes, more than fit beside the inode in one block")]
    XattrsTooLarge {
        /// Entry name.
        entry: String,
        /// Encoded size.
        size: usize,
    },
    /// A symlink target longer than 4095 bytes.
    #[error("{entry}: symlink target of {len} bytes is longer than 4095")]
    SymlinkTooLong {
        /// Entry name.
        entry: String,
        /// Target length.
        len: usize,
    },
    /// A file larger than the image can address.
    #[error("the image would need {blocks} blocks, more than EROFS addresses (2^32)")]
    TooManyBlocks {
        /// Blocks needed.
        blocks: u64,
    },
    /// More inodes than fit.
    #[error("{inodes} inodes are more than fit in one image")]
    TooManyInodes {
        /// Inode count.
        inodes: u64,
    },
}

impl WriteError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::BlockSize(_) => ErrorClass::Usage,
            Self::Create { .. } | Self::Output(_) => ErrorClass::Io,
            _ => ErrorClass::BadInput,
        }
    }
}

/// Result alias of the writer.
pub(crate) type Result<T, E = WriteError> = std::result::Result<T, E>;

/// What a finished image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Where it was written.
    pub path: PathBuf,
    /// Inodes in the image.
    pub inodes: u64,
    /// Blocks in the image.
    pub blocks: u64,
    /// Block size.
    pub block_size: u32,
    /// Build time stored in the superblock.
    pub build_time: FileTime,
}

/// Counts bytes written through it so the writer knows the next free block without seeking.
struct Output {
    inner: BufWriter<File>,
    pos: u64,
}

impl Output {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(WriteError::Output)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<()> {
        const ZERO: [u8; 4096] = [0; 4096];
        while n > 0 {
            let step = n.min(ZERO.len() as u64) as usize;
            self.write(&ZERO[..step])?;
            n -= step as u64;
        }
        Ok(())
    }

    fn pad_to(&mut self, align: u64) -> Result<()> {
        let target = self.pos.next_multiple_of(align);
        self.zeros(target - self.pos)
    }
}

/// Builds one image; see the module docs for the data flow.
pub struct Builder {
    opts: Options,
    path: PathBuf,
    temp: tempfile::TempPath,
    out: Output,
    tails: BufWriter<File>,
    tails_len: u64,
    tree: Tree,
}

impl Builder {
    /// Starts an image that [`Builder::finish`] will rename to `path`. The temporary files live in the same
    /// directory and vanish if the builder is dropped unfinished.
    pub fn create(path: &Path, opts: Options) -> Result<Self> {
        if !(512..=65536).contains(&opts.block_size) || !opts.block_size.is_power_of_two() {
            return Err(WriteError::BlockSize(opts.block_size));
        }
        let create = |source| WriteError::Create {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".veritylab-mkfs-")
            .tempfile_in(dir)
            .map_err(create)?;
        let tails = tempfile::tempfile_in(dir).map_err(create)?;
        let (file, temp) = temp.into_parts();
        let mut out = Output {
            inner: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
        };
        // Block 0 (and, for blocks under 2 KiB, the blocks up to the end of the superblock) is written last.
        let first_data =
            (format::SUPERBLOCK_OFFSET + format::Superblock::SIZE as u64).next_multiple_of(u64::from(opts.block_size));
        out.zeros(first_data)?;
        Ok(Self {
            opts,
            path: path.to_path_buf(),
            temp,
            out,
            tails: BufWriter::new(tails),
            tails_len: 0,
            tree: Tree::new(),
        })
    }

    fn block_size(&self) -> u64 {
        u64::from(self.opts.block_size)
    }

    /// Adds an entry at `path` (normalised components; empty for the root). `entry` is the name to report in
    /// errors. A later entry for the same path replaces the earlier one; missing parents are created.
    pub fn add(&mut self, entry: &str, path: &[Vec<u8>], meta: Metadata, kind: EntryKind<'_>) -> Result<()> {
        check_names(entry, path)?;
        let attrs = self.attrs(entry, meta)?;
        let Some((name, parent_path)) = path.split_last() else {
            return match kind {
                EntryKind::Directory => {
                    self.tree.nodes[tree::ROOT].attrs = attrs;
                    Ok(())
                }
                _ => Err(WriteError::RootNotDirectory {
                    entry: entry.to_owned(),
                }),
            };
        };
        let parent = self.parent(entry, parent_path)?;
        let kind = match kind {
            EntryKind::Directory => Kind::Directory(Default::default()),
            EntryKind::File { size, data } => Kind::File(self.spool_file(entry, size, data, &attrs)?),
            EntryKind::Symlink(target) => {
                if target.len() > 4095 {
                    return Err(WriteError::SymlinkTooLong {
                        entry: entry.to_owned(),
                        len: target.len(),
                    });
                }
                Kind::Symlink(target)
            }
            EntryKind::HardLink(target) => {
                let id = self.hard_link_target(entry, &target)?;
                self.tree.put_link(parent, name.clone(), id);
                return Ok(());
            }
            EntryKind::CharDevice { major, minor } => Kind::CharDevice(format::encode_dev(major, minor)),
            EntryKind::BlockDevice { major, minor } => Kind::BlockDevice(format::encode_dev(major, minor)),
            EntryKind::Fifo => Kind::Fifo,
            EntryKind::Socket => Kind::Socket,
        };
        self.tree.put(
            parent,
            name.clone(),
            Node {
                kind,
                attrs,
                opaque: false,
            },
        );
        Ok(())
    }

    /// Marks the directory at `path` (created if missing) opaque for overlayfs: it gets the xattr
    /// `<namespace>.overlay.opaque=y` with the namespace chosen when the image is finished.
    pub fn set_opaque(&mut self, entry: &str, path: &[Vec<u8>]) -> Result<()> {
        check_names(entry, path)?;
        let dir = self.tree.ensure_dir(path).map_err(|err| tree_error(entry, path, err))?;
        self.tree.nodes[dir].opaque = true;
        Ok(())
    }

    fn parent(&mut self, entry: &str, parent_path: &[Vec<u8>]) -> Result<NodeId> {
        self.tree
            .ensure_dir(parent_path)
            .map_err(|err| tree_error(entry, parent_path, err))
    }

    fn hard_link_target(&self, entry: &str, target: &[Vec<u8>]) -> Result<NodeId> {
        let shown = join(target);
        let id = self.tree.resolve(target).map_err(|_| WriteError::HardLinkTarget {
            entry: entry.to_owned(),
            target: shown.clone(),
        })?;
        if self.tree.nodes[id].kind.is_dir() {
            return Err(WriteError::HardLinkToDirectory {
                entry: entry.to_owned(),
                target: shown,
            });
        }
        Ok(id)
    }

    fn attrs(&self, entry: &str, meta: Metadata) -> Result<Attrs> {
        let mut xattrs = std::collections::BTreeMap::new();
        for (name, value) in meta.xattrs {
            let fits =
                format::xattr_split_name(&name).is_some_and(|(_, suffix)| suffix.len() <= 255 && value.len() <= 65535);
            if !fits {
                return Err(WriteError::Xattr {
                    entry: entry.to_owned(),
                    name: String::from_utf8_lossy(&name).into_owned(),
                });
            }
            xattrs.insert(name, value);
        }
        let attrs = Attrs {
            permissions: meta.permissions & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            mtime: Some(meta.mtime),
            xattrs,
        };
        // Leave room for the opaque marker a directory may still get.
        let size = layout::xattr_body_size(&attrs, Some(b"trusted.overlay.opaque"));
        if EXTENDED_INODE_SIZE + size > self.opts.block_size as usize {
            return Err(WriteError::XattrsTooLarge {
                entry: entry.to_owned(),
                size,
            });
        }
        Ok(attrs)
    }

    /// Copies a regular file's data into the image: full blocks straight into the data area, the tail into the
    /// spool when it will be inlined (decided here, assuming the larger inode form), otherwise padded to a
    /// block after the full blocks.
    fn spool_file(&mut self, entry: &str, size: u64, data: &mut dyn Read, attrs: &Attrs) -> Result<FileData> {
        let bs = self.block_size();
        let tail = size % bs;
        let xattr_size = layout::xattr_body_size(attrs, None) as u64;
        let inline = self.opts.inline_data && tail > 0 && EXTENDED_INODE_SIZE as u64 + xattr_size + tail <= bs;
        let start_block = self.out.pos / bs;
        let in_blocks = if inline { size - tail } else { size };
        let blocks_needed = start_block + in_blocks.div_ceil(bs);
        if blocks_needed > u64::from(u32::MAX) {
            return Err(WriteError::TooManyBlocks { blocks: blocks_needed });
        }
        let copied =
            io::copy(&mut data.take(in_blocks), &mut self.out.inner).map_err(|source| WriteError::Archive {
                entry: entry.to_owned(),
                source,
            })?;
        self.out.pos += copied;
        if copied < in_blocks {
            return Err(WriteError::Truncated {
                entry: entry.to_owned(),
                got: copied,
                expected: size,
            });
        }
        self.out.pad_to(bs)?;
        let spooled_tail = if inline {
            let mut buf = vec![0u8; tail as usize];
            let mut got = 0usize;
            while got < buf.len() {
                match data.read(&mut buf[got..]) {
                    Ok(0) => {
                        return Err(WriteError::Truncated {
                            entry: entry.to_owned(),
                            got: in_blocks + got as u64,
                            expected: size,
                        });
                    }
                    Ok(n) => got += n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(WriteError::Archive {
                            entry: entry.to_owned(),
                            source,
                        });
                    }
                }
            }
            let at = self.tails_len;
            self.tails.write_all(&buf).map_err(WriteError::Output)?;
            self.tails_len += tail;
            Some(at)
        } else {
            None
        };
        Ok(FileData {
            size,
            blkaddr: u32::try_from(start_block).unwrap_or(u32::MAX),
            spooled_tail,
        })
    }

    /// Lays out the metadata, writes it and the superblock, and renames the image into place.
    /// `opaque_xattr` is the full name of the overlay opaque marker (`trusted.overlay.opaque` or
    /// `user.overlay.opaque`).
    pub fn finish(self, opaque_xattr: &[u8]) -> Result<Summary> {
        let Builder {
            opts,
            path,
            temp,
            out,
            tails,
            tree,
            ..
        } = self;
        let tails = tails.into_inner().map_err(|err| WriteError::Output(err.into_error()))?;
        let mut out = out;
        let summary = layout::write_metadata(&opts, &tree, &tails, opaque_xattr, &mut out)?;
        let mut file = out
            .inner
            .into_inner()
            .map_err(|err| WriteError::Output(err.into_error()))?;
        file.rewind().map_err(WriteError::Output)?;
        file.write_all(&summary.block0).map_err(WriteError::Output)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(WriteError::Output)?;
        file.sync_all().map_err(WriteError::Output)?;
        drop(file);
        temp.persist(&path).map_err(|err| WriteError::Create {
            path: path.clone(),
            source: err.error,
        })?;
        Ok(Summary {
            path,
            inodes: summary.inodes,
            blocks: summary.blocks,
            block_size: opts.block_size,
            build_time: summary.build_time,
        })
    }
}

fn check_names(entry: &str, path: &[Vec<u8>]) -> Result<()> {
    for name in path {
        if name.len() > NAME_LEN_MAX {
            return Err(WriteError::NameTooLong {
                entry: entry.to_owned(),
                len: name.len(),
            });
        }
        let reason = match name.as_slice() {
            b"" => "empty",
            b"." | b".." => "reserved for the directory's own links",
            n if n.contains(&0) => "holds a NUL byte",
            _ => continue,
        };
        return Err(WriteError::InvalidName {
            entry: entry.to_owned(),
            name: String::from_utf8_lossy(name).into_owned(),
            reason,
        });
    }
    Ok(())
}

fn tree_error(entry: &str, path: &[Vec<u8>], err: TreeError) -> WriteError {
    let depth = match err {
        TreeError::NotADirectory(depth) => depth,
        TreeError::Missing => path.len(),
    };
    WriteError::ParentNotDirectory {
        entry: entry.to_owned(),
        parent: join(&path[..depth.min(path.len())]),
    }
}

/// Joins normalised components for messages.
pub(crate) fn join(path: &[Vec<u8>]) -> String {
    let mut shown = String::from("/");
    for (i, name) in path.iter().enumerate() {
        if i > 0 {
            shown.push('/');
        }
        shown.push_str(&String::from_utf8_lossy(name));
    }
    shown
}
