//! A userspace EROFS reader over [`ReadAt`], so the same code reads a plain file, a byte buffer or a
//! verified device.
//!
//! [`Image::open`] reads and validates the superblock; [`Image::inode`] decodes one inode by nid;
//! [`Image::read_dir`], [`Image::read_at`], [`Image::read_link`] and [`Image::xattrs`] read what an inode
//! holds; [`Image::lookup`] walks a path and [`Image::walk`] visits a whole tree. Every offset is computed with
//! checked arithmetic and every loop is bounded by the bytes it consumes, so a malformed image yields a
//! [`ReadError`] naming the inode or field, never a panic, an out-of-bounds read or an endless loop.
//! Compressed inodes are recognised and refused with [`ReadError::Compressed`].

use std::collections::HashSet;
use std::io;

use verity_fuse::ReadAt;

use super::format::{
    self, COMPACT_INODE_SIZE, COMPAT_SB_CHKSUM, DIRENT_SIZE, Dirent, DiskInode, EXTENDED_INODE_SIZE,
    INCOMPAT_SUPPORTED, INODE_SLOT, Layout, NAME_LEN_MAX, NULL_ADDR, SUPERBLOCK_OFFSET, Superblock,
    XATTR_ENTRY_HEADER_SIZE, XATTR_HEADER_SIZE, mode,
};
use verity_fuse::ErrorClass;

/// Longest symlink target the reader accepts (Linux `PATH_MAX`).
pub(crate) const SYMLINK_MAX: u64 = 4096;

/// What is wrong with a directory block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirCorruption {
    /// The first entry's name offset is not a positive multiple of 12 inside the block.
    #[error("first name offset {nameoff} is not a multiple of 12 inside the block")]
    EntryCount {
        /// The offending name offset.
        nameoff: u16,
    },
    /// An entry's name does not lie between the entry heads and the end of the used block.
    #[error("entry {entry}: name offset {nameoff} is out of order or outside the block")]
    NameOffset {
        /// Index of the entry in its block.
        entry: usize,
        /// The offending name offset.
        nameoff: u16,
    },
    /// A name is empty or longer than 255 bytes.
    #[error("entry {entry}: name length {len} is not in 1..=255")]
    NameLength {
        /// Index of the entry in its block.
        entry: usize,
        /// The name length found.
        len: usize,
    },
    /// A name contains `/` or NUL.
    #[error("entry {entry}: name contains '/' or NUL")]
    NameBytes {
        /// Index of the entry in its block.
        entry: usize,
    },
}

impl DirCorruption {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Errors reading an EROFS image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The underlying source failed (or the read passed its end).
    #[error("reading {len} bytes at image offset {offset}: {source}")]
    Io {
        /// Image offset of the failed read.
        offset: u64,
        /// Length of the failed read.
        len: usize,
        /// The source's error.
        #[source]
        source: io::Error,
    },
    /// The image is shorter than a superblock.
    #[error("image of {len} bytes is too short to hold a superblock")]
    TooShort {
        /// Image length.
        len: u64,
    },
    /// The superblock magic does not match.
    #[error("not an EROFS image: bad superblock magic {found:#010x}")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// A superblock field has a value this reader refuses.
    #[error("superblock field `{field}` has unsupported value {value}")]
    Superblock {
        /// Field name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// Incompatible feature bits the reader does not know.
    #[error("superblock has unsupported incompatible features {bits:#x}")]
    UnsupportedFeatures {
        /// The unknown bits.
        bits: u32,
    },
    /// The superblock checksum does not match.
    #[error("superblock checksum {stored:#010x} does not match the computed {computed:#010x}")]
    Checksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// The inode's address overflows or lies past the image.
    #[error("inode {nid}: address lies outside the image")]
    InodeOutOfRange {
        /// The nid.
        nid: u64,
    },
    /// Unknown bits in `i_format` or an unknown data layout.
    #[error("inode {nid}: unsupported i_format {format:#x}")]
    InodeFormat {
        /// The nid.
        nid: u64,
        /// The raw format.
        format: u16,
    },
    /// The mode names no file type.
    #[error("inode {nid}: mode {mode:#o} names no file type")]
    FileType {
        /// The nid.
        nid: u64,
        /// The raw mode.
        mode: u16,
    },
    /// The inode's data is compressed.
    #[error("inode {nid}: compressed data is not supported")]
    Compressed {
        /// The nid.
        nid: u64,
    },
    /// The inline tail does not fit in the block that holds the inode.
    #[error("inode {nid}: inline data of {len} bytes crosses a block boundary")]
    InlineCrossesBlock {
        /// The nid.
        nid: u64,
        /// Tail length.
        len: u64,
    },
    /// A data range lies outside the image.
    #[error("inode {nid}: data at image offset {offset} (+{len}) lies outside the image")]
    DataOutOfRange {
        /// The nid.
        nid: u64,
        /// Image offset (saturated on overflow).
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Unsupported chunk format bits.
    #[error("inode {nid}: unsupported chunk format {format:#x}")]
    ChunkFormat {
        /// The nid.
        nid: u64,
        /// The chunk format.
        format: u16,
    },
    /// A corrupt directory block.
    #[error("directory inode {nid}, block {block}: {problem}")]
    Directory {
        /// Directory nid.
        nid: u64,
        /// Logical block within the directory.
        block: u64,
        /// What is wrong.
        problem: DirCorruption,
    },
    /// A directory larger than the image could hold.
    #[error("directory inode {nid}: size {size} is larger than the image")]
    DirectoryTooLarge {
        /// Directory nid.
        nid: u64,
        /// Its size.
        size: u64,
    },
    /// A corrupt xattr body.
    #[error("inode {nid}: corrupt xattrs: {problem}")]
    Xattr {
        /// The nid.
        nid: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// An xattr name index with no known prefix.
    #[error("inode {nid}: xattr name index {index} is not supported")]
    XattrIndex {
        /// The nid.
        nid: u64,
        /// The index.
        index: u8,
    },
    /// A symlink target longer than `SYMLINK_MAX`.
    #[error("inode {nid}: symlink target of {size} bytes is too long")]
    SymlinkTooLong {
        /// The nid.
        nid: u64,
        /// Its size.
        size: u64,
    },
    /// The inode is not of the kind the operation needs.
    #[error("inode {nid}: not a {expected}")]
    WrongType {
        /// The nid.
        nid: u64,
        /// What was expected.
        expected: &'static str,
    },
    /// A path component does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path looked up.
        path: String,
    },
    /// A path component that must be a directory is not one.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path looked up.
        path: String,
    },
    /// A directory is reached twice while walking the tree.
    #[error("directory inode {nid} is reached twice: the tree has a cycle or a hard-linked directory")]
    Cycle {
        /// The nid reached again.
        nid: u64,
    },
}

impl ReadError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            _ => ErrorClass::BadInput,
        }
    }
}

/// An extended attribute: full name and value.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// Result alias of the reader.
pub(crate) type Result<T, E = ReadError> = std::result::Result<T, E>;

/// The kind of file an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Fifo.
    Fifo,
    /// Socket.
    Socket,
}

impl FileKind {
    fn from_mode(m: u16) -> Option<Self> {
        Some(match m & mode::S_IFMT {
            mode::S_IFREG => Self::File,
            mode::S_IFDIR => Self::Directory,
            mode::S_IFLNK => Self::Symlink,
            mode::S_IFCHR => Self::CharDevice,
            mode::S_IFBLK => Self::BlockDevice,
            mode::S_IFIFO => Self::Fifo,
            mode::S_IFSOCK => Self::Socket,
            _ => return None,
        })
    }
}

/// A decoded inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Its nid.
    pub nid: u64,
    /// File kind.
    pub kind: FileKind,
    /// The on-disk fields.
    pub disk: DiskInode,
    pos: u64,
}

impl Inode {
    /// Permission bits (including set-id and sticky bits).
    pub fn permissions(&self) -> u32 {
        u32::from(self.disk.mode & 0o7777)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.disk.size
    }

    /// Device number `(major, minor)` of a character or block device.
    pub fn device(&self) -> Option<(u32, u32)> {
        matches!(self.kind, FileKind::CharDevice | FileKind::BlockDevice).then(|| format::decode_dev(self.disk.u))
    }

    fn body_pos(&self) -> u64 {
        // Cannot overflow: `Image::inode` checked that the inode and its xattr body lie inside the image.
        self.pos + self.disk.size_on_disk() as u64
    }

    fn inline_pos(&self) -> u64 {
        self.body_pos() + format::xattr_ibody_size(self.disk.xattr_icount) as u64
    }
}

/// One directory entry (`.` and `..` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name bytes.
    pub name: Vec<u8>,
    /// nid of the target.
    pub nid: u64,
    /// File type recorded in the entry.
    pub file_type: u8,
}

/// Where a logical range of a file lives.
struct Extent {
    /// Length of the extent from the queried offset.
    len: u64,
    /// Image offset, or `None` for a hole (reads as zeros).
    physical: Option<u64>,
}

/// An EROFS image opened for reading.
#[derive(Debug)]
pub struct Image<R> {
    src: R,
    sb: Superblock,
    block_size: u64,
    meta_base: u64,
}

impl<R: ReadAt> Image<R> {
    /// Opens an image: reads and validates the superblock and the root inode.
    pub fn open(src: R) -> Result<Self> {
        let len = src.len();
        if len < SUPERBLOCK_OFFSET + Superblock::SIZE as u64 {
            return Err(ReadError::TooShort { len });
        }
        let mut raw = [0u8; Superblock::SIZE];
        read_exact(&src, SUPERBLOCK_OFFSET, &mut raw)?;
        let sb = Superblock::parse(&raw).ok_or_else(|| ReadError::BadMagic {
            found: u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
        })?;
        if !(9..=16).contains(&sb.blkszbits) {
            return Err(ReadError::Superblock {
                field: "blkszbits",
                value: sb.blkszbits.into(),
            });
        }
        if sb.dirblkbits != 0 {
            return Err(ReadError::Superblock {
                field: "dirblkbits",
                value: sb.dirblkbits.into(),
            });
        }
        if sb.extra_devices != 0 {
            return Err(ReadError::Superblock {
                field: "extra_devices",
                value: sb.extra_devices.into(),
            });
        }
        let unknown = sb.feature_incompat & !INCOMPAT_SUPPORTED;
        if unknown != 0 {
            return Err(ReadError::UnsupportedFeatures { bits: unknown });
        }
        let block_size = 1u64 << sb.blkszbits;
        if sb.feature_compat & COMPAT_SB_CHKSUM != 0 && block_size > SUPERBLOCK_OFFSET {
            let mut block = vec![0u8; block_size as usize];
            read_exact(&src, 0, &mut block)?;
            if let Some(computed) = format::superblock_checksum(&block)
                && computed != sb.checksum
            {
                return Err(ReadError::Checksum {
                    stored: sb.checksum,
                    computed,
                });
            }
        }
        let meta_base = u64::from(sb.meta_blkaddr) * block_size;
        if meta_base >= len {
            return Err(ReadError::Superblock {
                field: "meta_blkaddr",
                value: sb.meta_blkaddr.into(),
            });
        }
        let image = Self {
            src,
            sb,
            block_size,
            meta_base,
        };
        let root = image.root()?;
        if root.kind != FileKind::Directory {
            return Err(ReadError::WrongType {
                nid: root.nid,
                expected: "directory (root)",
            });
        }
        Ok(image)
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// The root directory inode.
    pub fn root(&self) -> Result<Inode> {
        self.inode(self.sb.root_nid.into())
    }

    /// Decodes the inode `nid`.
    pub fn inode(&self, nid: u64) -> Result<Inode> {
        let out_of_range = || ReadError::InodeOutOfRange { nid };
        let pos = nid
            .checked_mul(INODE_SLOT)
            .and_then(|off| off.checked_add(self.meta_base))
            .ok_or_else(out_of_range)?;
        let mut raw = [0u8; EXTENDED_INODE_SIZE];
        let compact = &mut raw[..COMPACT_INODE_SIZE];
        self.read_checked(pos, compact).map_err(|_| out_of_range())?;
        let format = u16::from_le_bytes([raw[0], raw[1]]);
        if format & !0xF != 0 {
            return Err(ReadError::InodeFormat { nid, format });
        }
        let disk = if format & 1 == 1 {
            self.read_checked(pos, &mut raw).map_err(|_| out_of_range())?;
            DiskInode::parse_extended(&raw)
        } else {
            let mut c = [0u8; COMPACT_INODE_SIZE];
            c.copy_from_slice(&raw[..COMPACT_INODE_SIZE]);
            DiskInode::parse_compact(&c, self.sb.build_time, self.sb.build_time_nsec)
        };
        if Layout::from_bits(disk.layout_bits).is_none() {
            return Err(ReadError::InodeFormat { nid, format });
        }
        let kind = FileKind::from_mode(disk.mode).ok_or(ReadError::FileType { nid, mode: disk.mode })?;
        let end = pos
            .checked_add((disk.size_on_disk() + format::xattr_ibody_size(disk.xattr_icount)) as u64)
            .ok_or_else(out_of_range)?;
        if end > self.src.len() {
            return Err(out_of_range());
        }
        Ok(Inode { nid, kind, disk, pos })
    }

    /// Reads up to `buf.len()` bytes of the file at `offset`; returns how many were read (0 at or past the end).
    pub fn read_at(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let size = inode.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from((size - offset).min(buf.len() as u64)).unwrap_or(buf.len());
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let extent = self.map(inode, pos)?;
            let n = usize::try_from(extent.len.min((want - done) as u64)).unwrap_or(want - done);
            let chunk = &mut buf[done..done + n];
            match extent.physical {
                Some(at) => self.read_data(inode.nid, at, chunk)?,
                None => chunk.fill(0),
            }
            done += n;
        }
        Ok(done)
    }

    /// Reads a whole file into memory, refusing files larger than `limit` bytes.
    pub fn read_to_vec(&self, inode: &Inode, limit: u64) -> Result<Vec<u8>> {
        if inode.size() > limit {
            return Err(ReadError::DataOutOfRange {
                nid: inode.nid,
                offset: 0,
                len: inode.size(),
            });
        }
        let mut out = vec![0u8; usize::try_from(inode.size()).unwrap_or(0)];
        let n = self.read_at(inode, 0, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// The target of a symbolic link.
    pub fn read_link(&self, inode: &Inode) -> Result<Vec<u8>> {
        if inode.kind != FileKind::Symlink {
            return Err(ReadError::WrongType {
                nid: inode.nid,
                expected: "symlink",
            });
        }
        if inode.size() > SYMLINK_MAX {
            return Err(ReadError::SymlinkTooLong {
                nid: inode.nid,
                size: inode.size(),
            });
        }
        self.read_to_vec(inode, SYMLINK_MAX)
    }

    /// The entries of a directory, in on-disk order (sorted by name), `.` and `..` included.
    pub fn read_dir(&self, dir: &Inode) -> Result<Vec<DirEntry>> {
        if dir.kind != FileKind::Directory {
            return Err(ReadError::WrongType {
                nid: dir.nid,
                expected: "directory",
            });
        }
        let size = dir.size();
        if size > self.src.len() {
            return Err(ReadError::DirectoryTooLarge { nid: dir.nid, size });
        }
        let bs = self.block_size;
        let mut entries = Vec::new();
        let mut block = vec![0u8; bs as usize];
        let mut pos = 0u64;
        while pos < size {
            let used = (size - pos).min(bs) as usize;
            let n = self.read_at(dir, pos, &mut block[..used])?;
            let index = pos / bs;
            parse_dir_block(&block[..n], &mut entries).map_err(|problem| ReadError::Directory {
                nid: dir.nid,
                block: index,
                problem,
            })?;
            pos += bs;
        }
        Ok(entries)
    }

    /// The inode's extended attributes as full names and values, inline ones after shared ones.
    pub fn xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>> {
        let nid = inode.nid;
        let size = format::xattr_ibody_size(inode.disk.xattr_icount);
        if size == 0 {
            return Ok(Vec::new());
        }
        let bad = |problem| ReadError::Xattr { nid, problem };
        let mut body = vec![0u8; size];
        self.read_data(nid, inode.body_pos(), &mut body)?;
        let shared = usize::from(body[4]);
        let inline_start = XATTR_HEADER_SIZE + 4 * shared;
        if inline_start > size {
            return Err(bad("shared xattr ids pass the end of the body"));
        }
        let mut out = Vec::new();
        for id in body[XATTR_HEADER_SIZE..inline_start].chunks_exact(4) {
            let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            let at = u64::from(self.sb.xattr_blkaddr)
                .checked_mul(self.block_size)
                .and_then(|base| base.checked_add(u64::from(id) * 4))
                .ok_or(bad("shared xattr address overflows"))?;
            let mut head = [0u8; XATTR_ENTRY_HEADER_SIZE];
            self.read_data(nid, at, &mut head)?;
            let len =
                XATTR_ENTRY_HEADER_SIZE + usize::from(head[0]) + usize::from(u16::from_le_bytes([head[2], head[3]]));
            let mut entry = vec![0u8; len];
            self.read_data(nid, at, &mut entry)?;
            out.push(self.decode_xattr(nid, &entry)?.0);
        }
        let mut rest = &body[inline_start..];
        while !rest.is_empty() {
            let (pair, used) = self.decode_xattr(nid, rest)?;
            out.push(pair);
            rest = &rest[used.min(rest.len())..];
        }
        Ok(out)
    }

    /// Decodes one xattr entry at the start of `b`; returns the pair and the padded entry size.
    fn decode_xattr(&self, nid: u64, b: &[u8]) -> Result<(Xattr, usize)> {
        if b.len() < XATTR_ENTRY_HEADER_SIZE {
            return Err(ReadError::Xattr {
                nid,
                problem: "entry header passes the end of the body",
            });
        }
        let name_len = usize::from(b[0]);
        let index = b[1];
        let value_len = usize::from(u16::from_le_bytes([b[2], b[3]]));
        let end = XATTR_ENTRY_HEADER_SIZE + name_len + value_len;
        if end > b.len() {
            return Err(ReadError::Xattr {
                nid,
                problem: "entry passes the end of the body",
            });
        }
        let prefix = format::xattr_prefix(index).ok_or(ReadError::XattrIndex { nid, index })?;
        let mut name = prefix.to_vec();
        name.extend_from_slice(&b[XATTR_ENTRY_HEADER_SIZE..XATTR_ENTRY_HEADER_SIZE + name_len]);
        let value = b[XATTR_ENTRY_HEADER_SIZE + name_len..end].to_vec();
        Ok(((name, value), format::xattr_entry_size(name_len, value_len)))
    }

    /// Looks a path up from the root without following symlinks. `/`, empty and `.` components are skipped;
    /// `..` follows the directory's own `..` entry.
    pub fn lookup(&self, path: &[u8]) -> Result<Inode> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let mut cur = self.root()?;
        for name in path.split(|&b| b == b'/') {
            if name.is_empty() || name == b"." {
                continue;
            }
            if cur.kind != FileKind::Directory {
                return Err(ReadError::NotADirectory { path: shown() });
            }
            let entry = self
                .read_dir(&cur)?
                .into_iter()
                .find(|e| e.name == name)
                .ok_or_else(|| ReadError::NotFound { path: shown() })?;
            cur = self.inode(entry.nid)?;
        }
        Ok(cur)
    }

    /// Visits every inode below `start` depth first, children in directory order, calling `visit` with the
    /// path (relative to `start`, components joined by `/`, empty for `start` itself) and the inode. A
    /// directory reached twice is a [`ReadError::Cycle`].
    pub fn walk<E: From<ReadError>>(
        &self,
        start: &Inode,
        mut visit: impl FnMut(&[u8], &Inode) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut seen = HashSet::new();
        let mut stack = vec![(Vec::new(), start.clone())];
        while let Some((path, inode)) = stack.pop() {
            visit(&path, &inode)?;
            if inode.kind != FileKind::Directory {
                continue;
            }
            if !seen.insert(inode.nid) {
                return Err(ReadError::Cycle { nid: inode.nid }.into());
            }
            let entries = self.read_dir(&inode)?;
            for entry in entries.into_iter().rev() {
                if entry.name == b"." || entry.name == b".." {
                    continue;
                }
                let child = self.inode(entry.nid)?;
                if child.kind == FileKind::Directory && seen.contains(&child.nid) {
                    return Err(ReadError::Cycle { nid: child.nid }.into());
                }
                let mut child_path = path.clone();
                if !child_path.is_empty() {
                    child_path.push(b'/');
                }
                child_path.extend_from_slice(&entry.name);
                stack.push((child_path, child));
            }
        }
        Ok(())
    }

    /// Maps the logical offset `pos` (< size) of an inode to an extent.
    fn map(&self, inode: &Inode, pos: u64) -> Result<Extent> {
        let nid = inode.nid;
        let bs = self.block_size;
        let size = inode.size();
        let layout = Layout::from_bits(inode.disk.layout_bits).ok_or(ReadError::InodeFormat {
            nid,
            format: inode.disk.layout_bits << 1,
        })?;
        let blocks_at = |start_block: u64, within: u64, len: u64| block_extent(nid, start_block, bs, within, len);
        match layout {
            Layout::CompressedFull | Layout::CompressedCompact => Err(ReadError::Compressed { nid }),
            Layout::FlatPlain => blocks_at(u64::from(inode.disk.u), pos, size - pos),
            Layout::FlatInline => {
                let full = (size - 1) / bs * bs;
                if pos < full {
                    return blocks_at(u64::from(inode.disk.u), pos, full - pos);
                }
                let tail = size - full;
                let inline = inode.inline_pos();
                if inline % bs + tail > bs {
                    return Err(ReadError::InlineCrossesBlock { nid, len: tail });
                }
                Ok(Extent {
                    len: size - pos,
                    physical: Some(inline + (pos - full)),
                })
            }
            Layout::ChunkBased => self.map_chunk(inode, pos),
        }
    }

    fn map_chunk(&self, inode: &Inode, pos: u64) -> Result<Extent> {
        let nid = inode.nid;
        let chunk_format = (inode.disk.u & 0xFFFF) as u16;
        let chunkbits = u32::from(chunk_format & format::CHUNK_FORMAT_BLKBITS_MASK) + u32::from(self.sb.blkszbits);
        if chunk_format & !(format::CHUNK_FORMAT_BLKBITS_MASK | format::CHUNK_FORMAT_INDEXES) != 0 || chunkbits > 40 {
            return Err(ReadError::ChunkFormat {
                nid,
                format: chunk_format,
            });
        }
        let chunk_size = 1u64 << chunkbits;
        let index = pos >> chunkbits;
        let within = pos & (chunk_size - 1);
        let len = (chunk_size - within).min(inode.size() - pos);
        let unit: u64 = if chunk_format & format::CHUNK_FORMAT_INDEXES != 0 {
            format::CHUNK_INDEX_SIZE as u64
        } else {
            4
        };
        let table = inode.inline_pos().next_multiple_of(unit);
        let at = index
            .checked_mul(unit)
            .and_then(|off| off.checked_add(table))
            .ok_or(ReadError::DataOutOfRange {
                nid,
                offset: u64::MAX,
                len: unit,
            })?;
        let mut raw = [0u8; format::CHUNK_INDEX_SIZE];
        let raw = &mut raw[..unit as usize];
        self.read_data(nid, at, raw)?;
        // The 8-byte index keeps the block address in its last four bytes; without 48-bit addressing the
        // first two are advice bits and the device id is masked out on single-device images.
        let blk = if unit == 4 {
            u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])
        } else {
            u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]])
        };
        if blk == NULL_ADDR {
            return Ok(Extent { len, physical: None });
        }
        block_extent(nid, u64::from(blk), self.block_size, within, len)
    }

    /// Reads image bytes on behalf of an inode, turning a range past the end into a typed error.
    fn read_data(&self, nid: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_checked(offset, buf).map_err(|err| match err {
            ReadError::DataOutOfRange { .. } => ReadError::DataOutOfRange {
                nid,
                offset,
                len: buf.len() as u64,
            },
            other => other,
        })
    }

    fn read_checked(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.src.len() => read_exact(&self.src, offset, buf),
            _ => Err(ReadError::DataOutOfRange {
                nid: u64::MAX,
                offset,
                len: buf.len() as u64,
            }),
        }
    }
}

fn read_exact<R: ReadAt>(src: &R, offset: u64, buf: &mut [u8]) -> Result<()> {
    src.read_at(offset, buf).map_err(|source| ReadError::Io {
        offset,
        len: buf.len(),
        source,
    })
}

/// Parses one directory block (only its used part) and appends its entries.
fn parse_dir_block(block: &[u8], out: &mut Vec<DirEntry>) -> Result<(), DirCorruption> {
    let head = |i: usize| -> Option<Dirent> {
        let raw: &[u8; DIRENT_SIZE] = block.get(i * DIRENT_SIZE..(i + 1) * DIRENT_SIZE)?.try_into().ok()?;
        Some(Dirent::parse(raw))
    };
    let first = head(0).ok_or(DirCorruption::EntryCount { nameoff: 0 })?;
    let heads_end = usize::from(first.nameoff);
    if heads_end == 0 || heads_end % DIRENT_SIZE != 0 || heads_end > block.len() {
        return Err(DirCorruption::EntryCount { nameoff: first.nameoff });
    }
    let count = heads_end / DIRENT_SIZE;
    for i in 0..count {
        let entry = head(i).ok_or(DirCorruption::EntryCount { nameoff: first.nameoff })?;
        let start = usize::from(entry.nameoff);
        let end = match head(i + 1).filter(|_| i + 1 < count) {
            Some(next) => usize::from(next.nameoff),
            None => block.len(),
        };
        if start < heads_end || end > block.len() || start > end {
            return Err(DirCorruption::NameOffset {
                entry: i,
                nameoff: entry.nameoff,
            });
        }
        let mut name = &block[start..end];
        if i + 1 == count {
            let trimmed = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            name = &name[..trimmed];
        }
        if name.is_empty() || name.len() > NAME_LEN_MAX {
            return Err(DirCorruption::NameLength {
                entry: i,
                len: name.len(),
            });
        }
        if name.iter().any(|&b| b == b'/' || b == 0) {
            return Err(DirCorruption::NameBytes { entry: i });
        }
        out.push(DirEntry {
            name: name.to_vec(),
            nid: entry.nid,
            file_type: entry.file_type,
        });
    }
    Ok(())
}

/// `len` bytes at `within` of block `block`, with the block address checked for overflow.
fn block_extent(nid: u64, block: u64, block_size: u64, within: u64, len: u64) -> Result<Extent> {
    let physical = block
        .checked_mul(block_size)
        .and_then(|base| base.checked_add(within))
        .ok_or(ReadError::DataOutOfRange {
            nid,
            offset: u64::MAX,
            len,
        })?;
    Ok(Extent {
        len,
        physical: Some(physical),
    })
}
