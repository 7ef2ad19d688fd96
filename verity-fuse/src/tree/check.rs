//! Checking a stored tree against its data, top-down, as `veritysetup verify` does.
//!
//! The top block is checked against the root hash, then each level's blocks against the digests their
//! (already checked) parent holds, then the data blocks against the leaves. The first failure therefore names
//! the block that actually changed, not one of its ancestors.

use crate::ReadAt;
use crate::error::{BlockRef, Device, VerityError};
use crate::hash::Digest;
use crate::params::Geometry;
use crate::tree::{LevelJob, hash_level, require_len};

/// Checks that `hash` holds, at the geometry's placement, the tree of `data` with root hash `root`.
pub fn check<D: ReadAt + ?Sized, H: ReadAt + ?Sized>(
    data: &D,
    hash: &H,
    geometry: &Geometry,
    root: &Digest,
    threads: usize,
) -> Result<(), VerityError> {
    require_len(Device::Data, geometry.data_size(), data.len())?;
    require_len(Device::Hash, geometry.hash_bytes_needed(), hash.len())?;
    let hasher = geometry.params.hasher();
    let hbs = geometry.hash_block_size();
    let mut stored = vec![0u8; geometry.tree_blocks() as usize * hbs];
    let offset = geometry.tree_offset();
    if !stored.is_empty() {
        hash.read_at(offset, &mut stored).map_err(|error| VerityError::Io {
            device: Device::Hash,
            offset,
            error,
        })?;
    }

    let top = match geometry.levels.len() {
        0 => {
            let mut block = vec![0u8; geometry.data_block_size()];
            data.read_at(0, &mut block).map_err(|error| VerityError::Io {
                device: Device::Data,
                offset: 0,
                error,
            })?;
            (BlockRef::Data { block: 0 }, hasher.digest(&block))
        }
        n => (
            BlockRef::Hash {
                level: n - 1,
                block: geometry.levels[n - 1].first_block,
            },
            hasher.digest(&stored[..hbs]),
        ),
    };
    if top.1 != *root {
        return Err(VerityError::HashMismatch {
            block: top.0,
            expected: Box::new(*root),
            found: Box::new(top.1),
        });
    }

    for parent in (0..geometry.levels.len()).rev() {
        let (device, count, block_size, source): (_, _, _, &dyn ReadAt) = if parent == 0 {
            (
                Device::Data,
                geometry.params.data_blocks,
                geometry.data_block_size(),
                &data,
            )
        } else {
            (
                Device::Hash,
                geometry.levels[parent - 1].blocks,
                hbs,
                &stored.as_slice(),
            )
        };
        let source_offset = if parent == 0 {
            0
        } else {
            geometry.level_offset_in_tree(parent - 1) as u64
        };
        let start = geometry.level_offset_in_tree(parent);
        let expected = &stored[start..start + geometry.levels[parent].blocks as usize * hbs];
        let mut computed = vec![0u8; expected.len()];
        let job = LevelJob::new(geometry, &hasher, device, source_offset, block_size, count);
        hash_level(source, &job, &mut computed, threads, &|_| {})?;
        if let Some(at) = computed.iter().zip(expected).position(|(a, b)| a != b) {
            return Err(mismatch(geometry, parent, at, &computed, expected));
        }
    }
    Ok(())
}

/// Names the first difference between the computed and stored bytes of level `parent`.
fn mismatch(geometry: &Geometry, parent: usize, at: usize, computed: &[u8], stored: &[u8]) -> VerityError {
    let hbs = geometry.hash_block_size();
    let hash_block = at / hbs;
    let within = at % hbs;
    let slot = within / geometry.digest_stride;
    let child = hash_block as u64 * geometry.hashes_per_block() + slot as u64;
    let children = if parent == 0 {
        geometry.params.data_blocks
    } else {
        geometry.levels[parent - 1].blocks
    };
    let digest_bytes =
        slot < geometry.hashes_per_block() as usize && within % geometry.digest_stride < geometry.digest_size;
    if !digest_bytes || child >= children {
        return VerityError::NonZeroPadding {
            block: geometry.levels[parent].first_block + hash_block as u64,
            offset: within,
        };
    }
    let digest_at = hash_block * hbs + slot * geometry.digest_stride;
    let digest =
        |bytes: &[u8]| Digest::from_slice(&bytes[digest_at..digest_at + geometry.digest_size]).expect("digest size");
    let block = if parent == 0 {
        BlockRef::Data { block: child }
    } else {
        BlockRef::Hash {
            level: parent - 1,
            block: geometry.levels[parent - 1].first_block + child,
        }
    };
    VerityError::HashMismatch {
        block,
        expected: Box::new(digest(stored)),
        found: Box::new(digest(computed)),
    }
}
