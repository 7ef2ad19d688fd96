//! Which blocks FEC covers, how they interleave into codewords, and where each codeword's parity sits.
//!
//! FEC covers `fec_blocks` blocks of the data block size, numbered as one run: the data blocks first, then the
//! hash device from the tree's first block (`hash_start_block`) on. Blocks numbered past `fec_blocks` count as
//! zeroes. With `rsn = 255 - roots` and `rounds = ceil(fec_blocks / rsn)`, covered block `b` belongs to round
//! `b % rounds` at codeword position `b / rounds`: a round is the `rsn` blocks `n, n + rounds, n + 2·rounds,
//! …`, and byte `k` of each of them forms one codeword. A run of up to `rounds` consecutive damaged blocks
//! therefore costs each codeword at most one symbol.
//!
//! ```text
//! parity (at fec_offset on the FEC device):
//! [round 0: byte 0's roots parity bytes][byte 1's]…[byte bs-1's][round 1: …]…   rounds × bs × roots bytes
//! ```

use crate::params::Geometry;

/// Fewest parity symbols per codeword dm-verity accepts.
pub const MIN_ROOTS: u32 = 2;
/// Most parity symbols per codeword dm-verity accepts.
pub const MAX_ROOTS: u32 = 24;
/// veritysetup's default number of parity symbols.
pub const DEFAULT_ROOTS: u32 = 2;

/// FEC parameters as the table line and `veritysetup` carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FecParams {
    /// Parity symbols per 255-symbol codeword (`fec_roots`).
    pub roots: u32,
    /// Blocks covered: data blocks, then hash-device blocks from the tree's start (`fec_blocks`).
    pub blocks: u64,
    /// Byte offset of the parity on the FEC device (`fec_start` × block size in the table).
    pub offset: u64,
}

/// FEC parameters that cannot describe a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FecParamError {
    /// Roots outside 2..=24.
    #[error("FEC roots {roots} is outside {MIN_ROOTS}..={MAX_ROOTS}")]
    Roots {
        /// The value given.
        roots: u32,
    },
    /// Data and hash block sizes differ (dm-verity requires them equal for FEC).
    #[error("FEC needs equal data and hash block sizes, not {data} and {hash}")]
    BlockSizes {
        /// Data block size.
        data: u32,
        /// Hash block size.
        hash: u32,
    },
    /// The covered blocks do not include every data block and the whole tree.
    #[error("FEC blocks {blocks} do not cover the {needed} data and hash blocks")]
    TooFewBlocks {
        /// The value given.
        blocks: u64,
        /// Data blocks plus tree blocks.
        needed: u64,
    },
    /// The parity offset is not a multiple of the block size.
    #[error("FEC offset {offset} is not a multiple of the block size {block_size}")]
    OffsetAlignment {
        /// The offset given.
        offset: u64,
        /// The block size.
        block_size: u32,
    },
    /// On a device shared with the hash area, the parity would overlap the tree.
    #[error("FEC offset {offset} overlaps the hash area, which ends at byte {hash_end}")]
    OverlapsHash {
        /// The offset given.
        offset: u64,
        /// End of the tree on the shared device.
        hash_end: u64,
    },
    /// On a device shared with the data, the parity would overlap the data.
    #[error("FEC offset {offset} overlaps the data area, which ends at byte {data_end}")]
    OverlapsData {
        /// The offset given.
        offset: u64,
        /// End of the data.
        data_end: u64,
    },
    /// On a device shared with the hash area, the parity would start past the device's end, where the
    /// covered area cannot be read.
    #[error("FEC offset {offset} is past the end of the {len}-byte hash device it shares")]
    PastDeviceEnd {
        /// The offset given.
        offset: u64,
        /// Length of the shared device.
        len: u64,
    },
    /// The FEC device ends before the parity does.
    #[error("FEC device of {len} bytes is too small: the parity ends at byte {needed}")]
    FecDeviceTooSmall {
        /// Bytes needed: FEC offset plus parity size.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// A size does not fit in 64 bits.
    #[error("{field} overflows 64 bits")]
    Overflow {
        /// What overflowed.
        field: &'static str,
    },
}

/// Where covered block `b` is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covered {
    /// Data block number.
    Data(u64),
    /// Absolute block number on the hash device.
    Hash(u64),
    /// Past the covered area: zeroes.
    Zero,
}

/// A validated FEC layout over a tree's geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FecLayout {
    /// The parameters.
    pub params: FecParams,
    /// Bytes per block (data and hash blocks are the same size).
    pub block_size: u32,
    /// Data blocks of the tree.
    pub data_blocks: u64,
    /// First block of the tree on the hash device.
    pub hash_start_block: u64,
    /// Message symbols per codeword, `255 - roots`.
    pub rsn: u64,
    /// Codeword rounds, `ceil(blocks / rsn)`.
    pub rounds: u64,
}

/// Checks that `roots` is in dm-verity's range.
pub(crate) fn check_roots(roots: u32) -> Result<(), FecParamError> {
    if (MIN_ROOTS..=MAX_ROOTS).contains(&roots) {
        Ok(())
    } else {
        Err(FecParamError::Roots { roots })
    }
}

/// The number of covered blocks veritysetup uses: the data blocks plus the hash device from the tree's start
/// up to `hash_end` bytes (the hash device's size, or the FEC offset when parity shares the hash device).
pub fn covered_blocks(geometry: &Geometry, hash_end: u64) -> u64 {
    let bs = u64::from(geometry.params.data_block_size);
    (hash_end / bs).saturating_sub(geometry.hash_start_block) + geometry.params.data_blocks
}

impl FecLayout {
    /// Validates `params` against the tree's `geometry`.
    pub fn new(geometry: &Geometry, params: FecParams) -> Result<Self, FecParamError> {
        check_roots(params.roots)?;
        let p = &geometry.params;
        if p.data_block_size != p.hash_block_size {
            return Err(FecParamError::BlockSizes {
                data: p.data_block_size,
                hash: p.hash_block_size,
            });
        }
        let needed = p.data_blocks + geometry.tree_blocks();
        if params.blocks < needed {
            return Err(FecParamError::TooFewBlocks {
                blocks: params.blocks,
                needed,
            });
        }
        let bs = u64::from(p.data_block_size);
        if !params.offset.is_multiple_of(bs) {
            return Err(FecParamError::OffsetAlignment {
                offset: params.offset,
                block_size: p.data_block_size,
            });
        }
        let rsn = 255 - u64::from(params.roots);
        let rounds = params.blocks.div_ceil(rsn);
        rounds
            .checked_mul(bs * u64::from(params.roots))
            .and_then(|size| size.checked_add(params.offset))
            .ok_or(FecParamError::Overflow {
                field: "FEC device size",
            })?;
        params
            .blocks
            .checked_mul(bs)
            .ok_or(FecParamError::Overflow { field: "FEC blocks" })?;
        Ok(Self {
            params,
            block_size: p.data_block_size,
            data_blocks: p.data_blocks,
            hash_start_block: geometry.hash_start_block,
            rsn,
            rounds,
        })
    }

    /// Parity symbols per codeword.
    pub fn roots(&self) -> usize {
        self.params.roots as usize
    }

    /// Bytes per block.
    pub fn block_size(&self) -> usize {
        self.block_size as usize
    }

    /// Bytes of parity: `rounds × block size × roots`.
    pub fn parity_size(&self) -> u64 {
        self.rounds * u64::from(self.block_size) * u64::from(self.params.roots)
    }

    /// Blocks of parity, as veritysetup's dump counts them ("FEC blocks").
    pub fn parity_blocks(&self) -> u64 {
        self.rounds * u64::from(self.params.roots)
    }

    /// Bytes the FEC device must hold: up to the end of the parity.
    pub fn fec_device_size(&self) -> u64 {
        self.params.offset + self.parity_size()
    }

    /// Checks that a FEC device of `len` bytes holds the whole parity.
    pub fn check_fec_device(&self, len: u64) -> Result<(), FecParamError> {
        if len < self.fec_device_size() {
            return Err(FecParamError::FecDeviceTooSmall {
                needed: self.fec_device_size(),
                len,
            });
        }
        Ok(())
    }

    /// Where covered block `b` lives.
    pub fn covered(&self, b: u64) -> Covered {
        if b >= self.params.blocks {
            Covered::Zero
        } else if b < self.data_blocks {
            Covered::Data(b)
        } else {
            Covered::Hash(b - self.data_blocks + self.hash_start_block)
        }
    }

    /// The covered block number of an absolute hash-device block, if FEC covers it.
    pub fn hash_block(&self, block: u64) -> Option<u64> {
        let b = block.checked_sub(self.hash_start_block)? + self.data_blocks;
        (b < self.params.blocks).then_some(b)
    }

    /// The round of covered block `b` and its position in that round's codewords.
    pub fn round_of(&self, b: u64) -> (u64, usize) {
        (b % self.rounds, (b / self.rounds) as usize)
    }

    /// The covered block at codeword position `i` of round `n`.
    pub fn member(&self, n: u64, i: usize) -> u64 {
        n + i as u64 * self.rounds
    }

    /// Byte offset on the FEC device of round `n`'s parity (`block size × roots` bytes).
    pub fn parity_offset(&self, n: u64) -> u64 {
        self.params.offset + n * u64::from(self.block_size) * u64::from(self.params.roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Placement, VerityParams};

    fn geometry(data_blocks: u64) -> Geometry {
        Geometry::new(VerityParams::new(data_blocks, vec![]), Placement::with_superblock(0)).unwrap()
    }

    #[test]
    fn veritysetup_example_has_four_rounds_and_eight_parity_blocks() {
        // 1000 data blocks, 9 tree blocks after a superblock block: veritysetup dump says "FEC blocks: 8".
        let g = geometry(1000);
        let blocks = covered_blocks(&g, 40960);
        assert_eq!(blocks, 1009);
        let layout = FecLayout::new(
            &g,
            FecParams {
                roots: 2,
                blocks,
                offset: 0,
            },
        )
        .unwrap();
        assert_eq!((layout.rsn, layout.rounds), (253, 4));
        assert_eq!(layout.parity_blocks(), 8);
        assert_eq!(layout.covered(999), Covered::Data(999));
        assert_eq!(layout.covered(1000), Covered::Hash(1));
        assert_eq!(layout.covered(1009), Covered::Zero);
        assert_eq!(layout.round_of(5), (1, 1));
        assert_eq!(layout.member(1, 1), 5);
        assert_eq!(layout.hash_block(1), Some(1000));
        assert_eq!(layout.hash_block(0), None);
    }

    #[test]
    fn bad_parameters_are_typed() {
        let g = geometry(10);
        let ok = FecParams {
            roots: 2,
            blocks: 11,
            offset: 0,
        };
        for roots in [0, 1, 25, 255] {
            assert_eq!(
                FecLayout::new(&g, FecParams { roots, ..ok }),
                Err(FecParamError::Roots { roots })
            );
        }
        assert!(matches!(
            FecLayout::new(&g, FecParams { blocks: 10, ..ok }),
            Err(FecParamError::TooFewBlocks { .. })
        ));
        assert!(matches!(
            FecLayout::new(&g, FecParams { offset: 100, ..ok }),
            Err(FecParamError::OffsetAlignment { .. })
        ));
        assert!(matches!(
            FecLayout::new(&g, FecParams { blocks: u64::MAX, ..ok }),
            Err(FecParamError::Overflow { .. })
        ));
        let mut p = VerityParams::new(10, vec![]);
        p.hash_block_size = 512;
        let g = Geometry::new(p, Placement::default()).unwrap();
        assert!(matches!(FecLayout::new(&g, ok), Err(FecParamError::BlockSizes { .. })));
    }
}
