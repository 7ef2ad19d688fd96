//! Building a tree bottom-up, in memory, with every core.

use crate::ReadAt;
use crate::error::{Device, VerityError};
use crate::hash::Digest;
use crate::params::Geometry;
use crate::superblock::Superblock;
use crate::tree::{LevelJob, hash_level, require_len, top};

/// A built tree: the root hash and the hash blocks from the top level to the leaves, as they go on disk at
/// [`Geometry::tree_offset`].
#[derive(Debug, Clone)]
pub struct Tree {
    /// The root hash.
    pub root: Digest,
    /// Hash blocks, top level first. Empty for a single data block.
    pub blocks: Vec<u8>,
}

impl Tree {
    /// The bytes `veritysetup format` writes at the hash offset for this tree: the superblock (when the
    /// placement has one) zero-padded to the tree's first block, then the tree, top level first. With one data
    /// block there is no tree, and veritysetup writes only the superblock, padded to the smaller of the hash
    /// block and 4096 bytes.
    pub fn hash_area(&self, geometry: &Geometry, uuid: [u8; 16]) -> Vec<u8> {
        let head = (geometry.tree_offset() - geometry.placement.hash_offset) as usize;
        let head = if self.blocks.is_empty() {
            head.min(geometry.hash_block_size().min(4096))
        } else {
            head
        };
        let mut area = vec![0u8; head];
        if geometry.placement.superblock {
            let superblock = Superblock {
                params: geometry.params.clone(),
                uuid,
            }
            .to_bytes();
            area[..superblock.len()].copy_from_slice(&superblock);
        } else {
            area.clear();
        }
        area.extend_from_slice(&self.blocks);
        area
    }
}

/// Builds the tree over the first [`Geometry::data_size`] bytes of `data` using `threads` threads.
/// `progress` receives the number of data blocks hashed so far.
pub fn build<R: ReadAt + ?Sized>(
    data: &R,
    geometry: &Geometry,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Tree, VerityError> {
    require_len(Device::Data, geometry.data_size(), data.len())?;
    let hasher = geometry.params.hasher();
    let hbs = geometry.hash_block_size();
    let mut blocks = vec![0u8; geometry.tree_blocks() as usize * hbs];
    for level in 0..geometry.levels.len() {
        let start = geometry.level_offset_in_tree(level);
        let end = start + geometry.levels[level].blocks as usize * hbs;
        if level == 0 {
            let leaves = LevelJob::new(
                geometry,
                &hasher,
                Device::Data,
                0,
                geometry.data_block_size(),
                geometry.params.data_blocks,
            );
            hash_level(data, &leaves, &mut blocks[start..end], threads, progress)?;
        } else {
            let below = geometry.level_offset_in_tree(level - 1);
            let (upper, lower) = blocks.split_at_mut(below);
            let count = geometry.levels[level - 1].blocks;
            let inner = LevelJob::new(geometry, &hasher, Device::Hash, 0, hbs, count);
            hash_level(
                &lower[..count as usize * hbs],
                &inner,
                &mut upper[start..end],
                threads,
                &|_| {},
            )?;
        }
    }
    let root = top(data, &blocks, geometry, &hasher)?.1;
    if geometry.levels.is_empty() {
        progress(1);
    }
    Ok(Tree { root, blocks })
}
