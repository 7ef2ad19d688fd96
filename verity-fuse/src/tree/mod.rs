//! Building and checking whole trees, as `veritysetup format` and `veritysetup verify` do.
//!
//! Both walk levels: the digests of a run of blocks (data blocks for the leaves, hash blocks above) are
//! packed into hash blocks by `hash_level`, which spreads the work over threads. [`build()`] writes the
//! levels bottom-up; [`check()`] compares them top-down so the first failure names the block that is wrong,
//! [`Checker`] does the same check in bounded steps for callers that pace it, and [`survey()`] goes on past
//! the first failure to name every corrupted block.

mod build;
mod check;
mod survey;

pub use build::{Tree, build};
pub use check::{Checker, Step, check};
pub use survey::{Finding, Survey, survey};

use std::sync::Mutex;

use crate::ReadAt;
use crate::error::{BlockRef, Device, VerityError};
use crate::hash::{BlockHasher, Digest};
use crate::params::Geometry;

/// Bytes of input one worker hashes per job.
const JOB_BYTES: usize = 4 << 20;

/// Shape of one level computation: `count` input blocks of `block_size` at `offset` in the source, their
/// digests packed `per_block` to an output hash block at `stride` bytes apart.
pub(crate) struct LevelJob<'a> {
    pub(crate) hasher: &'a BlockHasher,
    pub(crate) device: Device,
    pub(crate) offset: u64,
    pub(crate) block_size: usize,
    pub(crate) count: u64,
    pub(crate) hash_block_size: usize,
    pub(crate) per_block: u64,
    pub(crate) stride: usize,
}

impl<'a> LevelJob<'a> {
    /// Digests of `count` blocks of `block_size` at `offset`, packed as `geometry` packs them.
    pub(crate) fn new(
        geometry: &Geometry,
        hasher: &'a BlockHasher,
        device: Device,
        offset: u64,
        block_size: usize,
        count: u64,
    ) -> Self {
        Self {
            hasher,
            device,
            offset,
            block_size,
            count,
            hash_block_size: geometry.hash_block_size(),
            per_block: geometry.hashes_per_block(),
            stride: geometry.digest_stride,
        }
    }
}

/// Fails unless `device` holds at least `needed` bytes.
pub(crate) fn require_len(device: Device, needed: u64, len: u64) -> Result<(), VerityError> {
    if len < needed {
        return Err(VerityError::Truncated { device, needed, len });
    }
    Ok(())
}

/// Hashes `job.count` blocks of `src` into `out`, which holds `ceil(count / per_block)` zeroed hash blocks.
/// `progress` is called with the number of input blocks done so far, from any worker.
pub(crate) fn hash_level<R: ReadAt + ?Sized>(
    src: &R,
    job: &LevelJob<'_>,
    out: &mut [u8],
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), VerityError> {
    let per_job_hash_blocks = (JOB_BYTES / (job.per_block as usize * job.block_size)).max(1);
    let chunk = per_job_hash_blocks * job.hash_block_size;
    let jobs = Mutex::new(out.chunks_mut(chunk).enumerate());
    let done = std::sync::atomic::AtomicU64::new(0);
    let threads = threads.max(1);
    let worker = || -> Result<(), VerityError> {
        let mut buf = vec![0u8; (per_job_hash_blocks as u64 * job.per_block).min(job.count) as usize * job.block_size];
        loop {
            let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((index, out_chunk)) = next else {
                return Ok(());
            };
            let job_blocks = per_job_hash_blocks as u64 * job.per_block;
            let first = index as u64 * job_blocks;
            // The job a worker takes after this round of jobs: its bytes arrive while this one is hashed.
            let ahead = first + threads as u64 * job_blocks;
            if ahead < job.count {
                let ahead_blocks = (job.count - ahead).min(job_blocks);
                src.prefetch(
                    job.offset + ahead * job.block_size as u64,
                    ahead_blocks * job.block_size as u64,
                );
            }
            let n = (job.count - first).min(per_job_hash_blocks as u64 * job.per_block);
            let bytes = n as usize * job.block_size;
            let offset = job.offset + first * job.block_size as u64;
            src.read_at(offset, &mut buf[..bytes])
                .map_err(|error| VerityError::Io {
                    device: job.device,
                    offset,
                    error,
                })?;
            job.hasher
                .digest_many(buf[..bytes].chunks_exact(job.block_size), |i, digest| {
                    let hb = i / job.per_block as usize;
                    let slot = i % job.per_block as usize;
                    let at = hb * job.hash_block_size + slot * job.stride;
                    out_chunk[at..at + digest.as_bytes().len()].copy_from_slice(digest.as_bytes());
                });
            let total = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            progress(total);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
        let mine = worker();
        handles
            .into_iter()
            .map(|h| h.join().expect("hash worker panicked"))
            .fold(mine, |acc, r| acc.and(r))
    })
}

/// Reads the whole stored tree of `geometry` from `hash`, after checking that both devices are long enough.
pub(crate) fn read_stored<D: ReadAt + ?Sized, H: ReadAt + ?Sized>(
    data: &D,
    hash: &H,
    geometry: &Geometry,
) -> Result<Vec<u8>, VerityError> {
    require_len(Device::Data, geometry.data_size(), data.len())?;
    require_len(Device::Hash, geometry.hash_bytes_needed(), hash.len())?;
    let mut stored = vec![0u8; geometry.tree_blocks() as usize * geometry.hash_block_size()];
    let offset = geometry.tree_offset();
    if !stored.is_empty() {
        hash.read_at(offset, &mut stored).map_err(|error| VerityError::Io {
            device: Device::Hash,
            offset,
            error,
        })?;
    }
    Ok(stored)
}

/// The top block's name and digest: the data block when the tree has no levels, else the top hash block.
pub(crate) fn top<D: ReadAt + ?Sized>(
    data: &D,
    stored: &[u8],
    geometry: &Geometry,
    hasher: &BlockHasher,
) -> Result<(BlockRef, Digest), VerityError> {
    match geometry.levels.len() {
        0 => {
            let mut block = vec![0u8; geometry.data_block_size()];
            data.read_at(0, &mut block).map_err(|error| VerityError::Io {
                device: Device::Data,
                offset: 0,
                error,
            })?;
            Ok((BlockRef::Data { block: 0 }, hasher.digest(&block)))
        }
        n => Ok((
            BlockRef::Hash {
                level: n - 1,
                block: geometry.levels[n - 1].first_block,
            },
            hasher.digest(&stored[..geometry.hash_block_size()]),
        )),
    }
}

/// Threads to use by default: every core the process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::params::{Placement, VerityParams};

    /// `blocks` data blocks of a fixed pattern with their tree (no superblock, tree at offset 0): data,
    /// tree, geometry and root hash.
    pub(crate) fn sample(blocks: u64) -> (Vec<u8>, Vec<u8>, Geometry, Digest) {
        let data: Vec<u8> = (0..blocks * 4096).map(|i| (i * 31 % 251) as u8).collect();
        let geometry = Geometry::new(
            VerityParams::new(blocks, vec![1; 32]),
            Placement {
                hash_offset: 0,
                superblock: false,
            },
        )
        .unwrap();
        let tree = build(&data[..], &geometry, 1, &|_| {}).unwrap();
        (data, tree.blocks, geometry, tree.root)
    }
}
