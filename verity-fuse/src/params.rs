//! Tree parameters and the geometry derived from them.
//!
//! [`VerityParams`] are the values a table line or a superblock carries; [`Placement`] says where the tree sits
//! on the hash device. [`Geometry::new`] validates both and computes, with checked arithmetic, every offset
//! the builder, the checker and the verified device use. The layout follows cryptsetup:
//!
//! ```text
//! hash device: [anything before hash_offset][superblock, zero-padded to a hash block][top level]...[leaves]
//! ```
//!
//! `hash_start_block = ceil((hash_offset + 512) / hash_block_size)` with a superblock and
//! `hash_offset / hash_block_size` without. Levels are stored top first; level 0 (the leaves) comes last.

use crate::class::ErrorClass;
use crate::hash::{Algorithm, BlockHasher};

/// Smallest block size dm-verity accepts.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size this implementation accepts (veritysetup formats up to this; the kernel maps only
/// blocks up to the page size).
pub const MAX_BLOCK_SIZE: u32 = 65536;
/// Longest salt the superblock can carry.
pub const MAX_SALT_SIZE: usize = 256;
/// Deepest tree the kernel and cryptsetup accept.
pub const MAX_LEVELS: usize = 63;
/// Size of the on-disk superblock.
pub const SUPERBLOCK_SIZE: u64 = 512;

/// How block digests are salted and packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HashType {
    /// Type 0, "original Chrome OS": `H(block ‖ salt)`, digests packed back to back.
    ChromeOs,
    /// Type 1, "normal": `H(salt ‖ block)`, each digest zero-padded to a power of two.
    Normal,
}

impl HashType {
    /// The number veritysetup's `--format` and the superblock use.
    pub fn number(self) -> u32 {
        match self {
            Self::ChromeOs => 0,
            Self::Normal => 1,
        }
    }

    /// The hash type for a `--format` / superblock number.
    pub fn from_number(n: u32) -> Option<Self> {
        match n {
            0 => Some(Self::ChromeOs),
            1 => Some(Self::Normal),
            _ => None,
        }
    }
}

/// The parameters that define a tree and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// Salting and packing of digests.
    pub hash_type: HashType,
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// Bytes per data block.
    pub data_block_size: u32,
    /// Bytes per hash block.
    pub hash_block_size: u32,
    /// Number of data blocks covered by the tree.
    pub data_blocks: u64,
    /// Salt, 0 to 256 bytes.
    pub salt: Vec<u8>,
}

impl VerityParams {
    /// veritysetup's defaults (sha256, 4096/4096, type 1) for `data_blocks` blocks with `salt`.
    pub fn new(data_blocks: u64, salt: Vec<u8>) -> Self {
        Self {
            hash_type: HashType::Normal,
            algorithm: Algorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks,
            salt,
        }
    }

    /// The hasher for this tree's blocks.
    pub fn hasher(&self) -> BlockHasher {
        BlockHasher::new(self.algorithm, &self.salt, self.hash_type == HashType::Normal)
    }
}

/// Where the tree sits on the hash device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// Byte offset of the superblock (or, without one, of the tree) on the hash device.
    pub hash_offset: u64,
    /// Whether a superblock precedes the tree.
    pub superblock: bool,
}

impl Placement {
    /// A tree with a superblock at `hash_offset`, as veritysetup writes by default.
    pub fn with_superblock(hash_offset: u64) -> Self {
        Self {
            hash_offset,
            superblock: true,
        }
    }
}

/// Parameters that cannot describe a valid tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// A block size is not a power of two between 512 and 65536.
    #[error("{field} {value} is not a power of two from 512 to 65536")]
    BlockSize {
        /// `data block size` or `hash block size`.
        field: &'static str,
        /// The value given.
        value: u64,
    },
    /// The salt is longer than 256 bytes.
    #[error("salt of {len} bytes is longer than the 256 bytes allowed")]
    SaltTooLong {
        /// Salt length given.
        len: usize,
    },
    /// The tree would cover no data.
    #[error("data blocks is 0: the data device holds no complete block")]
    NoDataBlocks,
    /// The hash offset is misaligned.
    #[error("hash offset {offset} is not a multiple of {required}")]
    HashOffsetAlignment {
        /// The offset given.
        offset: u64,
        /// The alignment required.
        required: u64,
    },
    /// Data and hash area overlap on the same device.
    #[error("data area (0..{data_end}) overlaps the hash area starting at hash offset {hash_offset}")]
    HashOffsetOverlapsData {
        /// End of the data area in bytes.
        data_end: u64,
        /// The hash offset given.
        hash_offset: u64,
    },
    /// A size computed from the parameters does not fit in 64 bits.
    #[error("{field} overflows 64 bits")]
    Overflow {
        /// The value that overflowed.
        field: &'static str,
    },
    /// The tree would need more levels than the kernel supports.
    #[error("tree would need {levels} levels; at most 63 are supported")]
    TooManyLevels {
        /// Levels needed.
        levels: usize,
    },
    /// A root hash does not have the algorithm's digest size.
    #[error("root hash has {found} bytes but {algorithm} digests have {expected}")]
    RootHashLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
}

impl ParamError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

fn check_block_size(field: &'static str, value: u32) -> Result<(), ParamError> {
    if value.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&value) {
        Ok(())
    } else {
        Err(ParamError::BlockSize {
            field,
            value: value.into(),
        })
    }
}

/// One level of the tree on the hash device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Level {
    /// Absolute hash-block number of the level's first block on the hash device.
    pub first_block: u64,
    /// Number of hash blocks in the level.
    pub blocks: u64,
}

/// Validated parameters with every derived size and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// The parameters.
    pub params: VerityParams,
    /// The placement.
    pub placement: Placement,
    /// Digest size of the algorithm.
    pub digest_size: usize,
    /// Distance between digests inside a hash block (the digest size, padded to a power of two for type 1).
    pub digest_stride: usize,
    /// log2 of the number of digests per hash block.
    pub hashes_per_block_bits: u32,
    /// Absolute hash-block number where the tree starts (its top level).
    pub hash_start_block: u64,
    /// Levels, index 0 = the leaves (digests of data blocks). Empty for a single data block.
    pub levels: Vec<Level>,
}

impl Geometry {
    /// Validates `params` and `placement` and derives the layout.
    pub fn new(params: VerityParams, placement: Placement) -> Result<Self, ParamError> {
        check_block_size("data block size", params.data_block_size)?;
        check_block_size("hash block size", params.hash_block_size)?;
        if params.salt.len() > MAX_SALT_SIZE {
            return Err(ParamError::SaltTooLong { len: params.salt.len() });
        }
        if params.data_blocks == 0 {
            return Err(ParamError::NoDataBlocks);
        }
        params
            .data_blocks
            .checked_mul(params.data_block_size.into())
            .ok_or(ParamError::Overflow {
                field: "data blocks × data block size",
            })?;
        let hbs = u64::from(params.hash_block_size);
        let hash_start_block = if placement.superblock {
            if !placement.hash_offset.is_multiple_of(SUPERBLOCK_SIZE) {
                return Err(ParamError::HashOffsetAlignment {
                    offset: placement.hash_offset,
                    required: SUPERBLOCK_SIZE,
                });
            }
            placement
                .hash_offset
                .checked_add(SUPERBLOCK_SIZE + hbs - 1)
                .ok_or(ParamError::Overflow { field: "hash offset" })?
                / hbs
        } else {
            if !placement.hash_offset.is_multiple_of(hbs) {
                return Err(ParamError::HashOffsetAlignment {
                    offset: placement.hash_offset,
                    required: hbs,
                });
            }
            placement.hash_offset / hbs
        };
        let digest_size = params.algorithm.digest_size();
        let digest_stride = match params.hash_type {
            HashType::Normal => digest_size.next_power_of_two(),
            HashType::ChromeOs => digest_size,
        };
        let hashes_per_block_bits = (params.hash_block_size as usize / digest_size).ilog2();
        let levels = level_sizes(params.data_blocks, hashes_per_block_bits)?;
        let mut position = hash_start_block;
        let mut placed = vec![
            Level {
                first_block: 0,
                blocks: 0
            };
            levels.len()
        ];
        for (i, blocks) in levels.iter().enumerate().rev() {
            placed[i] = Level {
                first_block: position,
                blocks: *blocks,
            };
            position = position.checked_add(*blocks).ok_or(ParamError::Overflow {
                field: "hash device size",
            })?;
        }
        position.checked_mul(hbs).ok_or(ParamError::Overflow {
            field: "hash device size",
        })?;
        Ok(Self {
            params,
            placement,
            digest_size,
            digest_stride,
            hashes_per_block_bits,
            hash_start_block,
            levels: placed,
        })
    }

    /// Digests per hash block.
    pub fn hashes_per_block(&self) -> u64 {
        1 << self.hashes_per_block_bits
    }

    /// Bytes per data block.
    pub fn data_block_size(&self) -> usize {
        self.params.data_block_size as usize
    }

    /// Bytes per hash block.
    pub fn hash_block_size(&self) -> usize {
        self.params.hash_block_size as usize
    }

    /// Bytes of data the tree covers.
    pub fn data_size(&self) -> u64 {
        self.params.data_blocks * u64::from(self.params.data_block_size)
    }

    /// Number of hash blocks in the tree (all levels, without the superblock).
    pub fn tree_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// Bytes from the start of the hash device to the end of the tree.
    pub fn hash_device_size(&self) -> u64 {
        (self.hash_start_block + self.tree_blocks()) * u64::from(self.params.hash_block_size)
    }

    /// Bytes the hash device must hold for the tree to be read: up to the end of the tree, or nothing when
    /// there is no tree (one data block, whose digest is the root hash).
    pub fn hash_bytes_needed(&self) -> u64 {
        if self.levels.is_empty() {
            0
        } else {
            self.hash_device_size()
        }
    }

    /// Byte offset of `level` inside the tree (from its top block), as the tree is held in memory.
    pub fn level_offset_in_tree(&self, level: usize) -> usize {
        ((self.levels[level].first_block - self.hash_start_block) as usize) * self.hash_block_size()
    }

    /// Byte offset of the tree's first (top) block on the hash device.
    pub fn tree_offset(&self) -> u64 {
        self.hash_start_block * u64::from(self.params.hash_block_size)
    }

    /// Where the digest of block `index` of the level below `level` sits: the absolute hash block in `level`
    /// and the byte offset inside it. For `level` 0 the children are data blocks.
    pub fn digest_position(&self, level: usize, index: u64) -> (u64, usize) {
        let block = self.levels[level].first_block + (index >> self.hashes_per_block_bits);
        let slot = (index & (self.hashes_per_block() - 1)) as usize;
        (block, slot * self.digest_stride)
    }

    /// Checks that a root hash has this algorithm's digest size.
    pub fn check_root_hash(&self, root: &[u8]) -> Result<(), ParamError> {
        if root.len() == self.digest_size {
            Ok(())
        } else {
            Err(ParamError::RootHashLength {
                algorithm: self.params.algorithm,
                expected: self.digest_size,
                found: root.len(),
            })
        }
    }
}

/// Hash blocks per level, index 0 = leaves, as cryptsetup computes them.
fn level_sizes(data_blocks: u64, bits: u32) -> Result<Vec<u64>, ParamError> {
    let mut levels = 0usize;
    while bits as usize * levels < 64 && (data_blocks - 1) >> (bits as usize * levels) != 0 {
        levels += 1;
    }
    if levels > MAX_LEVELS {
        return Err(ParamError::TooManyLevels { levels });
    }
    (0..levels)
        .map(|i| {
            let shift = (i + 1) * bits as usize;
            if shift > 63 {
                return Err(ParamError::TooManyLevels { levels });
            }
            Ok(data_blocks.div_ceil(1 << shift))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(data_blocks: u64) -> Geometry {
        Geometry::new(VerityParams::new(data_blocks, vec![]), Placement::with_superblock(0)).unwrap()
    }

    #[test]
    fn reference_example_has_one_top_block_then_nine_leaves() {
        let g = geometry(1096);
        assert_eq!(g.hashes_per_block(), 128);
        assert_eq!(g.hash_start_block, 1);
        assert_eq!(
            g.levels,
            vec![
                Level {
                    first_block: 2,
                    blocks: 9
                },
                Level {
                    first_block: 1,
                    blocks: 1
                }
            ]
        );
        assert_eq!(g.hash_device_size(), 11 * 4096);
    }

    #[test]
    fn one_data_block_has_no_levels() {
        assert!(geometry(1).levels.is_empty());
        assert_eq!(geometry(2).levels.len(), 1);
        assert_eq!(geometry(128).levels.len(), 1);
        assert_eq!(geometry(129).levels.len(), 2);
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let mut p = VerityParams::new(1, vec![]);
        p.hash_block_size = 3000;
        assert_eq!(
            Geometry::new(p, Placement::default()),
            Err(ParamError::BlockSize {
                field: "hash block size",
                value: 3000
            })
        );
        let p = VerityParams::new(1, vec![0; 257]);
        assert_eq!(
            Geometry::new(p, Placement::default()),
            Err(ParamError::SaltTooLong { len: 257 })
        );
        let p = VerityParams::new(u64::MAX, vec![]);
        assert!(matches!(
            Geometry::new(p, Placement::default()),
            Err(ParamError::Overflow { .. })
        ));
        let p = VerityParams::new(1, vec![]);
        assert!(matches!(
            Geometry::new(p.clone(), Placement::with_superblock(100)),
            Err(ParamError::HashOffsetAlignment { required: 512, .. })
        ));
        assert!(matches!(
            Geometry::new(p.clone(), Placement::with_superblock(u64::MAX - 511)),
            Err(ParamError::Overflow { .. })
        ));
        assert_eq!(
            Geometry::new(VerityParams::new(0, vec![]), Placement::default()),
            Err(ParamError::NoDataBlocks)
        );
    }

    #[test]
    fn huge_trees_fit_or_fail_cleanly() {
        let mut p = VerityParams::new(u64::MAX / 65536, vec![]);
        p.data_block_size = 65536;
        p.hash_block_size = 512;
        p.algorithm = Algorithm::Sha512;
        let g = Geometry::new(p, Placement::default());
        assert!(g.is_ok() || matches!(g, Err(ParamError::Overflow { .. })));
    }
}
