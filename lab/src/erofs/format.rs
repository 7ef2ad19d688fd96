//! EROFS on-disk structures, declared once, little-endian, with their sizes checked at compile time.
//!
//! Everything here is a pure function over bytes: the writer serialises with `to_bytes`/`encode`, the reader
//! parses with `parse`. The layout follows erofs-utils `include/erofs_fs.h` and the kernel's
//! `Documentation/filesystems/erofs.rst`. Only the uncompressed subset is described in full; the fields that
//! compressed or multi-device images use are recognised so the reader can refuse them by name.
//!
//! An image is a sequence of blocks (`1 << blkszbits` bytes). The superblock sits at byte 1024 whatever the
//! block size. Inodes live in the metadata area that starts at block `meta_blkaddr`; the inode with number
//! `nid` starts at byte `meta_blkaddr * block_size + 32 * nid`.

/// Byte offset of the superblock in the image.
pub(crate) const SUPERBLOCK_OFFSET: u64 = 1024;
/// The superblock magic number.
pub(crate) const MAGIC: u32 = 0xE0F5_E1E2;
/// Longest file name a directory entry may hold.
pub(crate) const NAME_LEN_MAX: usize = 255;
/// Size of an inode slot: nids count in these units.
pub(crate) const INODE_SLOT: u64 = 32;
/// Block address meaning "no block" (a hole in a chunk-based file).
pub(crate) const NULL_ADDR: u32 = u32::MAX;

/// `feature_compat`: the superblock carries a crc32c of its block.
pub(crate) const COMPAT_SB_CHKSUM: u32 = 0x1;
/// `feature_compat`: extended inodes carry modification times (set by every mkfs.erofs since 1.4).
pub(crate) const COMPAT_MTIME: u32 = 0x2;

/// `feature_incompat`: compressed data is zero-padded at the front (only meaningful for compressed files).
pub(crate) const INCOMPAT_ZERO_PADDING: u32 = 0x1;
/// `feature_incompat`: compression configurations / big physical clusters.
pub(crate) const INCOMPAT_COMPR_CFGS: u32 = 0x2;
/// `feature_incompat`: chunk-based files.
pub(crate) const INCOMPAT_CHUNKED_FILE: u32 = 0x4;
/// `feature_incompat`: a device table (multi-device images) or compressed HEAD2.
pub(crate) const INCOMPAT_DEVICE_TABLE: u32 = 0x8;
/// `feature_incompat`: compressed tail packing.
pub(crate) const INCOMPAT_ZTAILPACKING: u32 = 0x10;
/// `feature_incompat`: compressed fragments / dedupe.
pub(crate) const INCOMPAT_FRAGMENTS: u32 = 0x20;
/// The incompatible features this reader understands. The compression-related bits only change how
/// compressed inodes are laid out; such inodes are refused one by one with
/// [`crate::erofs::ReadError::Compressed`], the rest of the image stays readable.
pub(crate) const INCOMPAT_SUPPORTED: u32 = INCOMPAT_ZERO_PADDING
    | INCOMPAT_COMPR_CFGS
    | INCOMPAT_CHUNKED_FILE
    | INCOMPAT_DEVICE_TABLE
    | INCOMPAT_ZTAILPACKING
    | INCOMPAT_FRAGMENTS;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The superblock (128 bytes at byte 1024).
///
/// ```text
///  0 magic u32        4 checksum u32      8 feature_compat u32
/// 12 blkszbits u8    13 sb_extslots u8   14 root_nid u16
/// 16 inos u64                            24 build_time u64
/// 32 build_time_nsec u32                 36 blocks u32
/// 40 meta_blkaddr u32                    44 xattr_blkaddr u32
/// 48 uuid [16]                           64 volume_name [16]
/// 80 feature_incompat u32                84 available_compr_algs u16
/// 86 extra_devices u16                   88 devt_slotoff u16
/// 90 dirblkbits u8                       91 reserved .. 128
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Superblock {
    /// crc32c of the superblock block (see `superblock_checksum`) when `COMPAT_SB_CHKSUM` is set.
    pub checksum: u32,
    /// Compatible feature bits.
    pub feature_compat: u32,
    /// log2 of the block size.
    pub blkszbits: u8,
    /// Extra 16-byte superblock slots.
    pub sb_extslots: u8,
    /// nid of the root directory.
    pub root_nid: u16,
    /// Number of inodes.
    pub inos: u64,
    /// Build time: the modification time of every compact inode.
    pub build_time: u64,
    /// Nanoseconds of the build time.
    pub build_time_nsec: u32,
    /// Number of blocks in the image.
    pub blocks: u32,
    /// First block of the metadata (inode) area.
    pub meta_blkaddr: u32,
    /// First block of the shared xattr area.
    pub xattr_blkaddr: u32,
    /// Volume UUID.
    pub uuid: [u8; 16],
    /// Volume name, NUL padded.
    pub volume_name: [u8; 16],
    /// Incompatible feature bits.
    pub feature_incompat: u32,
    /// Number of extra devices (multi-device images).
    pub extra_devices: u16,
    /// log2 of the directory block size minus blkszbits (must be 0 here).
    pub dirblkbits: u8,
}

impl Superblock {
    /// Encoded size.
    pub const SIZE: usize = 128;

    /// Parses the 128 superblock bytes. Checks only the magic; [`crate::erofs::Image::open`] validates the rest.
    pub fn parse(b: &[u8; Self::SIZE]) -> Option<Self> {
        if le32(b, 0) != MAGIC {
            return None;
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[48..64]);
        let mut volume_name = [0u8; 16];
        volume_name.copy_from_slice(&b[64..80]);
        Some(Self {
            checksum: le32(b, 4),
            feature_compat: le32(b, 8),
            blkszbits: b[12],
            sb_extslots: b[13],
            root_nid: le16(b, 14),
            inos: le64(b, 16),
            build_time: le64(b, 24),
            build_time_nsec: le32(b, 32),
            blocks: le32(b, 36),
            meta_blkaddr: le32(b, 40),
            xattr_blkaddr: le32(b, 44),
            uuid,
            volume_name,
            feature_incompat: le32(b, 80),
            extra_devices: le16(b, 86),
            dirblkbits: b[90],
        })
    }

    /// Serialises the superblock.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put32(&mut b, 0, MAGIC);
        put32(&mut b, 4, self.checksum);
        put32(&mut b, 8, self.feature_compat);
        b[12] = self.blkszbits;
        b[13] = self.sb_extslots;
        put16(&mut b, 14, self.root_nid);
        put64(&mut b, 16, self.inos);
        put64(&mut b, 24, self.build_time);
        put32(&mut b, 32, self.build_time_nsec);
        put32(&mut b, 36, self.blocks);
        put32(&mut b, 40, self.meta_blkaddr);
        put32(&mut b, 44, self.xattr_blkaddr);
        b[48..64].copy_from_slice(&self.uuid);
        b[64..80].copy_from_slice(&self.volume_name);
        put32(&mut b, 80, self.feature_incompat);
        put16(&mut b, 86, self.extra_devices);
        b[90] = self.dirblkbits;
        b
    }
}

const _: () = assert!(Superblock::SIZE == 91 + 37);

/// CRC-32C (Castagnoli) register update without the final inversion, as the kernel's `crc32c(seed, ...)`.
pub(crate) fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    crc
}

/// The superblock checksum: crc32c seeded with `!0` (no final inversion) over the bytes from offset 1024 to
/// the end of the block holding the superblock, with the checksum field read as zero. Defined only for block
/// sizes above 1024 bytes; `block` is that whole first block.
pub(crate) fn superblock_checksum(block: &[u8]) -> Option<u32> {
    let start = SUPERBLOCK_OFFSET as usize;
    if block.len() <= start + Superblock::SIZE {
        return None;
    }
    let mut copy = block[start..].to_vec();
    copy[4..8].fill(0);
    Some(crc32c_raw(!0, &copy))
}

/// Data layouts of `i_format` bits 1-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// 0: contiguous blocks starting at `i_u`.
    FlatPlain,
    /// 1: compressed, full indexes.
    CompressedFull,
    /// 2: full blocks at `i_u`, the tail right after the inode and its xattrs.
    FlatInline,
    /// 3: compressed, compact indexes.
    CompressedCompact,
    /// 4: fixed-size chunks located by an index table after the inode.
    ChunkBased,
}

impl Layout {
    /// Decodes the three layout bits.
    pub(crate) fn from_bits(bits: u16) -> Option<Self> {
        Some(match bits {
            0 => Self::FlatPlain,
            1 => Self::CompressedFull,
            2 => Self::FlatInline,
            3 => Self::CompressedCompact,
            4 => Self::ChunkBased,
            _ => return None,
        })
    }

    /// The three layout bits.
    pub(crate) fn bits(self) -> u16 {
        match self {
            Self::FlatPlain => 0,
            Self::CompressedFull => 1,
            Self::FlatInline => 2,
            Self::CompressedCompact => 3,
            Self::ChunkBased => 4,
        }
    }
}

/// An on-disk inode, compact or extended, decoded into one shape.
///
/// Compact (32 bytes):
/// ```text
///  0 i_format u16   2 i_xattr_icount u16   4 i_mode u16   6 i_nlink u16
///  8 i_size u32    12 i_mtime u32 (0: the build time)      16 i_u u32
/// 20 i_ino u32     24 i_uid u16   26 i_gid u16   28 reserved u32
/// ```
/// Extended (64 bytes):
/// ```text
///  0 i_format u16   2 i_xattr_icount u16   4 i_mode u16   6 reserved u16
///  8 i_size u64    16 i_u u32   20 i_ino u32   24 i_uid u32   28 i_gid u32
/// 32 i_mtime u64   40 i_mtime_nsec u32   44 i_nlink u32   48 reserved [16]
/// ```
/// `i_format` bit 0 selects extended, bits 1-3 are the `Layout`. `i_u` is the first block (flat layouts),
/// the device number (character and block devices) or the chunk format (chunk-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInode {
    /// 64-byte form.
    pub extended: bool,
    /// Data layout bits (undecoded, so the reader can name an unknown value).
    pub layout_bits: u16,
    /// Inline xattr count (see `xattr_ibody_size`).
    pub xattr_icount: u16,
    /// File type and permission bits.
    pub mode: u16,
    /// Link count.
    pub nlink: u32,
    /// Size in bytes.
    pub size: u64,
    /// The `i_u` union.
    pub u: u32,
    /// 32-bit inode number.
    pub ino: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds (compact inodes: build time plus the 32-bit offset).
    pub mtime: u64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
}

/// Size of a compact inode.
pub(crate) const COMPACT_INODE_SIZE: usize = 32;
/// Size of an extended inode.
pub(crate) const EXTENDED_INODE_SIZE: usize = 64;
const _: () = assert!(COMPACT_INODE_SIZE == 28 + 4 && EXTENDED_INODE_SIZE == 48 + 16);

impl DiskInode {
    /// Encoded size of this inode.
    pub fn size_on_disk(&self) -> usize {
        if self.extended {
            EXTENDED_INODE_SIZE
        } else {
            COMPACT_INODE_SIZE
        }
    }

    /// Parses a compact inode; `build_time`/`build_time_nsec` come from the superblock.
    pub fn parse_compact(b: &[u8; COMPACT_INODE_SIZE], build_time: u64, build_nsec: u32) -> Self {
        let format = le16(b, 0);
        Self {
            extended: false,
            layout_bits: (format >> 1) & 0x7,
            xattr_icount: le16(b, 2),
            mode: le16(b, 4),
            nlink: u32::from(le16(b, 6)),
            size: u64::from(le32(b, 8)),
            mtime: build_time.wrapping_add(u64::from(le32(b, 12))),
            mtime_nsec: build_nsec,
            u: le32(b, 16),
            ino: le32(b, 20),
            uid: u32::from(le16(b, 24)),
            gid: u32::from(le16(b, 26)),
        }
    }

    /// Parses an extended inode.
    pub fn parse_extended(b: &[u8; EXTENDED_INODE_SIZE]) -> Self {
        let format = le16(b, 0);
        Self {
            extended: true,
            layout_bits: (format >> 1) & 0x7,
            xattr_icount: le16(b, 2),
            mode: le16(b, 4),
            size: le64(b, 8),
            u: le32(b, 16),
            ino: le32(b, 20),
            uid: le32(b, 24),
            gid: le32(b, 28),
            mtime: le64(b, 32),
            mtime_nsec: le32(b, 40),
            nlink: le32(b, 44),
        }
    }

    /// Serialises the inode. A compact inode stores a zero mtime offset: its time is the build time, so the
    /// writer only picks the compact form for inodes whose mtime equals it (and whose ids, link count and size
    /// fit the narrower fields).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let format = u16::from(self.extended) | (self.layout_bits << 1);
        if self.extended {
            let mut b = [0u8; EXTENDED_INODE_SIZE];
            put16(&mut b, 0, format);
            put16(&mut b, 2, self.xattr_icount);
            put16(&mut b, 4, self.mode);
            put64(&mut b, 8, self.size);
            put32(&mut b, 16, self.u);
            put32(&mut b, 20, self.ino);
            put32(&mut b, 24, self.uid);
            put32(&mut b, 28, self.gid);
            put64(&mut b, 32, self.mtime);
            put32(&mut b, 40, self.mtime_nsec);
            put32(&mut b, 44, self.nlink);
            out.extend_from_slice(&b);
        } else {
            let mut b = [0u8; COMPACT_INODE_SIZE];
            put16(&mut b, 0, format);
            put16(&mut b, 2, self.xattr_icount);
            put16(&mut b, 4, self.mode);
            put16(&mut b, 6, self.nlink as u16);
            put32(&mut b, 8, self.size as u32);
            put32(&mut b, 16, self.u);
            put32(&mut b, 20, self.ino);
            put16(&mut b, 24, self.uid as u16);
            put16(&mut b, 26, self.gid as u16);
            out.extend_from_slice(&b);
        }
    }
}

/// Size in bytes of the inline xattr body for an `i_xattr_icount`: a 12-byte header plus 4 bytes per count
/// beyond the first, or nothing when the count is zero.
pub(crate) fn xattr_ibody_size(icount: u16) -> usize {
    match icount {
        0 => 0,
        n => XATTR_HEADER_SIZE + 4 * (usize::from(n) - 1),
    }
}

/// Size of the inline xattr body header.
///
/// ```text
/// 0 h_name_filter u32   4 h_shared_count u8   5 reserved [7]   12 shared xattr ids u32 * h_shared_count
/// ```
pub(crate) const XATTR_HEADER_SIZE: usize = 12;
/// Size of an xattr entry header.
///
/// ```text
/// 0 e_name_len u8   1 e_name_index u8   2 e_value_size u16   4 name suffix, value, zero pad to 4
/// ```
pub(crate) const XATTR_ENTRY_HEADER_SIZE: usize = 4;
const _: () = assert!(XATTR_HEADER_SIZE == 4 + 1 + 7 && XATTR_ENTRY_HEADER_SIZE == 1 + 1 + 2);

/// Xattr name prefixes by `e_name_index`; index 2 and 3 are whole names (POSIX ACLs).
pub(crate) const XATTR_PREFIXES: [(u8, &[u8]); 5] = [
    (1, b"user."),
    (2, b"system.posix_acl_access"),
    (3, b"system.posix_acl_default"),
    (4, b"trusted."),
    (6, b"security."),
];

/// Splits a full xattr name into its prefix index and suffix, or `None` if no EROFS prefix matches.
pub(crate) fn xattr_split_name(name: &[u8]) -> Option<(u8, &[u8])> {
    XATTR_PREFIXES.iter().find_map(|&(index, prefix)| {
        let suffix = name.strip_prefix(prefix)?;
        // The ACL indexes name a whole attribute; a longer name with that prefix is not an ACL.
        if (index == 2 || index == 3) && !suffix.is_empty() {
            return None;
        }
        Some((index, suffix))
    })
}

/// The prefix of a name index, if known.
pub(crate) fn xattr_prefix(index: u8) -> Option<&'static [u8]> {
    XATTR_PREFIXES.iter().find(|&&(i, _)| i == index).map(|&(_, p)| p)
}

/// Encoded size of one xattr entry (header, suffix, value, padding to 4).
pub(crate) fn xattr_entry_size(suffix_len: usize, value_len: usize) -> usize {
    (XATTR_ENTRY_HEADER_SIZE + suffix_len + value_len).next_multiple_of(4)
}

/// A directory entry head (12 bytes); names follow all the heads of a directory block.
///
/// ```text
/// 0 nid u64   8 nameoff u16   10 file_type u8   11 reserved u8
/// ```
/// `nameoff` is the offset of the name inside the block; the first entry's `nameoff / 12` is the number of
/// entries in the block. Each name runs to the next entry's `nameoff`; the last one to the end of the used
/// part of the block, minus trailing NULs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dirent {
    /// Inode number of the target.
    pub nid: u64,
    /// Offset of the name within the block.
    pub nameoff: u16,
    /// One of the `FT_*` file types.
    pub file_type: u8,
}

/// Size of a [`Dirent`] head.
pub(crate) const DIRENT_SIZE: usize = 12;
const _: () = assert!(DIRENT_SIZE == 8 + 2 + 1 + 1);

impl Dirent {
    /// Parses a dirent head from its 12 bytes.
    pub(crate) fn parse(b: &[u8; DIRENT_SIZE]) -> Self {
        Self {
            nid: le64(b, 0),
            nameoff: le16(b, 8),
            file_type: b[10],
        }
    }

    /// Serialises the dirent head.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; DIRENT_SIZE];
        put64(&mut b, 0, self.nid);
        put16(&mut b, 8, self.nameoff);
        b[10] = self.file_type;
        out.extend_from_slice(&b);
    }
}

/// Dirent file type: regular file.
pub(crate) const FT_REG: u8 = 1;
/// Dirent file type: directory.
pub(crate) const FT_DIR: u8 = 2;
/// Dirent file type: character device.
pub(crate) const FT_CHR: u8 = 3;
/// Dirent file type: block device.
pub(crate) const FT_BLK: u8 = 4;
/// Dirent file type: fifo.
pub(crate) const FT_FIFO: u8 = 5;
/// Dirent file type: socket.
pub(crate) const FT_SOCK: u8 = 6;
/// Dirent file type: symbolic link.
pub(crate) const FT_SYMLINK: u8 = 7;

/// `S_IFMT` and the file type bits of `st_mode`.
pub(crate) mod mode {
    /// Mask of the type bits.
    pub(crate) const S_IFMT: u16 = 0o170000;
    /// Socket.
    pub(crate) const S_IFSOCK: u16 = 0o140000;
    /// Symbolic link.
    pub(crate) const S_IFLNK: u16 = 0o120000;
    /// Regular file.
    pub(crate) const S_IFREG: u16 = 0o100000;
    /// Block device.
    pub(crate) const S_IFBLK: u16 = 0o060000;
    /// Directory.
    pub(crate) const S_IFDIR: u16 = 0o040000;
    /// Character device.
    pub(crate) const S_IFCHR: u16 = 0o020000;
    /// Fifo.
    pub(crate) const S_IFIFO: u16 = 0o010000;
}

/// Chunk format (`i_u` low 16 bits of a chunk-based inode): bits 0-4 are log2(chunk size / block size).
pub(crate) const CHUNK_FORMAT_BLKBITS_MASK: u16 = 0x1F;
/// Chunk format: 8-byte chunk indexes instead of a 4-byte block map.
pub(crate) const CHUNK_FORMAT_INDEXES: u16 = 0x20;
/// Size of an 8-byte chunk index.
///
/// ```text
/// 0 startblk_hi u16 (0 without 48-bit addressing)   2 device_id u16   4 startblk_lo u32
/// ```
pub(crate) const CHUNK_INDEX_SIZE: usize = 8;
const _: () = assert!(CHUNK_INDEX_SIZE == 2 + 2 + 4);

/// Linux `new_encode_dev`: the 32-bit device number EROFS stores in `i_u`.
pub(crate) fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Linux `new_decode_dev`: major and minor from the stored device number.
pub(crate) fn decode_dev(dev: u32) -> (u32, u32) {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trips() {
        let sb = Superblock {
            feature_compat: COMPAT_MTIME,
            blkszbits: 12,
            root_nid: 36,
            inos: 7,
            build_time: 1_700_000_000,
            build_time_nsec: 5,
            blocks: 9,
            meta_blkaddr: 3,
            uuid: [7; 16],
            ..Default::default()
        };
        assert_eq!(Superblock::parse(&sb.to_bytes()), Some(sb));
    }

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 65536), (4095, 0xFFFFF)] {
            assert_eq!(decode_dev(encode_dev(major, minor)), (major, minor));
        }
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The standard CRC-32C check value of "123456789" is 0xE3069283 (with the final inversion).
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn xattr_names_split_by_prefix() {
        assert_eq!(
            xattr_split_name(b"trusted.overlay.opaque"),
            Some((4, &b"overlay.opaque"[..]))
        );
        assert_eq!(xattr_split_name(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(xattr_split_name(b"system.posix_acl_accessx"), None);
        assert_eq!(xattr_split_name(b"other.name"), None);
    }
}
