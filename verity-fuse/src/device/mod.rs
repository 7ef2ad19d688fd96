//! A verified block device: every read is checked against the tree up to the root hash, as dm-verity does.
//!
//! [`VerifiedDevice`] wraps a data source and a hash source (both [`ReadAt`]) and is itself a [`ReadAt`] of
//! `data_blocks × data_block_size` bytes; bytes past that on the data source (the unverified tail) are not
//! reachable through it. For each data block a read touches, the device finds the expected digest by walking
//! the hash blocks from the root down (verified hash blocks are cached, bounded), then reads and checks the
//! data block. What happens on a mismatch or an I/O error follows the kernel's options ([`Options`]); with
//! parity ([`VerifiedDevice::with_fec`]) a block that fails its digest is first corrected from the parity
//! and served only if the corrected bytes match the tree.

mod cache;
mod mode;
mod repair;
mod status;

pub use mode::{CorruptionMode, IoErrorMode, Options};
pub use repair::{FecSetupError, MAX_DEPTH};
pub use status::{Event, MAX_EVENTS, State, Status};

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ReadAt;
use crate::class::ErrorClass;
use crate::error::{BlockRef, Device, HaltAction, VerityError};
use crate::hash::{BlockHasher, Digest};
use crate::params::{Geometry, ParamError};
use cache::HashCache;
use status::Counters;

/// A device that verifies every block it returns.
pub struct VerifiedDevice<D, H> {
    data: D,
    hash: H,
    geometry: Geometry,
    root: Digest,
    options: Options,
    hasher: BlockHasher,
    zero_digest: Option<Digest>,
    cache: HashCache,
    checked_once: Option<Vec<AtomicU64>>,
    counters: Counters,
    /// One past the last data block of the latest read, to recognise sequential reads.
    last_read_end: AtomicU64,
    /// One past the last data block already hinted to the sources, so each block is hinted once.
    hinted_end: AtomicU64,
    fec: Option<repair::DeviceFec>,
}

/// Bytes of data fetched ahead of a sequential read, at most; the hint never exceeds this however large the
/// reads are.
const READ_AHEAD_MAX: u64 = 8 << 20;

/// Data blocks from which a read is read and hashed in two halves at once (256 KiB of 4 KiB blocks): below
/// it, starting a second thread costs more than it saves.
const PARALLEL_MIN_BLOCKS: usize = 64;

/// Why a verified device could not be set up (the kernel refuses the table for these).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The root hash does not fit the algorithm.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A device is shorter than the parameters need.
    #[error("{device} is too small: {needed} bytes needed, {len} present")]
    TooSmall {
        /// Which device.
        device: Device,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
}

impl OpenError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Param(e) => e.class(),
            Self::TooSmall { .. } => ErrorClass::BadInput,
        }
    }
}

impl<D: ReadAt, H: ReadAt> VerifiedDevice<D, H> {
    /// Sets up a device over `data` and `hash` with the tree described by `geometry` and the trusted `root`.
    /// Like loading a dm-verity table, this checks sizes but reads nothing: a wrong root hash shows on the
    /// first read.
    pub fn new(data: D, hash: H, geometry: Geometry, root: &[u8], options: Options) -> Result<Self, OpenError> {
        geometry.check_root_hash(root)?;
        for (device, needed, len) in [
            (Device::Data, geometry.data_size(), data.len()),
            (Device::Hash, geometry.hash_bytes_needed(), hash.len()),
        ] {
            if len < needed {
                return Err(OpenError::TooSmall { device, needed, len });
            }
        }
        let hasher = geometry.params.hasher();
        let zero_digest = options
            .ignore_zero_blocks
            .then(|| hasher.digest(&vec![0u8; geometry.data_block_size()]));
        let checked_once = options.check_at_most_once.then(|| {
            (0..geometry.params.data_blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect()
        });
        Ok(Self {
            data,
            hash,
            root: Digest::from_slice(root).expect("length checked"),
            cache: HashCache::new(options.cache_blocks),
            hasher,
            zero_digest,
            checked_once,
            counters: Counters::default(),
            last_read_end: AtomicU64::new(u64::MAX),
            hinted_end: AtomicU64::new(0),
            fec: None,
            options,
            geometry,
        })
    }

    /// The geometry of the tree.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The trusted root hash.
    pub fn root(&self) -> Digest {
        self.root
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The current status and counters.
    pub fn status(&self) -> Status {
        self.counters.snapshot()
    }

    /// Takes the events recorded since the last call (at most [`MAX_EVENTS`] are kept).
    pub fn take_events(&self) -> Vec<Event> {
        self.counters.take_events()
    }

    /// Drops every cached hash block, as if the kernel's buffer cache were flushed.
    pub fn drop_caches(&self) {
        self.cache.clear();
    }

    /// Number of hash blocks in the cache.
    pub fn cached_hash_blocks(&self) -> usize {
        self.cache.len()
    }

    /// Reads `buf.len()` verified bytes at `offset`. The data blocks a read touches are read from the data
    /// source in one request, then each is checked; the read fails as a whole if any block fails.
    pub fn read_verified(&self, offset: u64, buf: &mut [u8]) -> Result<(), VerityError> {
        let size = self.geometry.data_size();
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > size) {
            return Err(VerityError::OutOfRange {
                offset,
                len: buf.len(),
                size,
            });
        }
        if buf.is_empty() {
            return Ok(());
        }
        let dbs = self.geometry.data_block_size() as u64;
        let first = offset / dbs;
        let last = (offset + buf.len() as u64 - 1) / dbs;
        if offset.is_multiple_of(dbs) && (buf.len() as u64).is_multiple_of(dbs) {
            return self.read_blocks(first, buf);
        }
        let mut span = vec![0u8; ((last - first + 1) * dbs) as usize];
        self.read_blocks(first, &mut span)?;
        let skip = (offset - first * dbs) as usize;
        buf.copy_from_slice(&span[skip..skip + buf.len()]);
        Ok(())
    }

    /// Reads and verifies the data blocks from `first` into `out` (a whole number of blocks).
    fn read_blocks(&self, first: u64, out: &mut [u8]) -> Result<(), VerityError> {
        if self.options.ignore_zero_blocks {
            // Zero blocks must not be read at all: go block by block.
            return out
                .chunks_exact_mut(self.geometry.data_block_size())
                .zip(first..)
                .try_for_each(|(block, index)| self.read_block(index, block));
        }
        if let Some((action, cause)) = self.counters.halted() {
            return Err(VerityError::Halted { action, cause });
        }
        let dbs = self.geometry.data_block_size();
        let count = out.len() / dbs;
        self.prefetch(first, count as u64);
        // A large read is split in two halves, each read into its part of `out` and hashed there, the second on
        // a scoped thread: a sequential reader then keeps both cores busy even with one request in flight.
        let split = (count >= PARALLEL_MIN_BLOCKS).then(|| {
            let half = count / 2;
            let (head, tail) = out.split_at_mut(half * dbs);
            let mid = first + half as u64;
            std::thread::scope(|s| {
                let tail = std::thread::Builder::new()
                    .spawn_scoped(s, || self.read_and_hash(mid, tail))
                    .ok()?;
                let head = self.read_and_hash(first, head);
                let tail = tail.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                Some(head.and_then(|mut found| {
                    found.extend(tail?);
                    Ok(found)
                }))
            })
        });
        // A read too small to split, or whose second thread could not be started, is done on this one.
        let hashed = match split.flatten() {
            Some(hashed) => hashed,
            None => self.read_and_hash(first, out),
        };
        let found = hashed.map_err(|(index, source)| {
            self.io_error(
                BlockRef::Data { block: index },
                Device::Data,
                index * dbs as u64,
                source,
            )
        })?;
        // Then the blocks are settled in order and the read stops at the first failure, as the kernel walks a
        // bio. Blocks corrected from parity replace what was read once the walk is done.
        let mut corrected = Vec::new();
        for (index, found) in found {
            let want = self.expected_digest(index)?;
            corrected.extend(self.settle(index, want, found)?.map(|bytes| (index, bytes)));
        }
        for (index, bytes) in corrected {
            let at = (index - first) as usize * dbs;
            out[at..at + dbs].copy_from_slice(&bytes);
        }
        Ok(())
    }

    /// Reads the data blocks from `first` into `out` (a whole number of blocks) and hashes those still to check,
    /// as many at once as the engine has lanes: their indices and digests in order, or the first block of the
    /// failed read and its error.
    fn read_and_hash(&self, first: u64, out: &mut [u8]) -> Result<Vec<(u64, Digest)>, (u64, io::Error)> {
        let dbs = self.geometry.data_block_size();
        self.data
            .read_at(first * dbs as u64, out)
            .map_err(|source| (first, source))?;
        let (blocks, indices): (Vec<&[u8]>, Vec<u64>) = out
            .chunks_exact(dbs)
            .zip(first..)
            .filter(|&(_, index)| {
                let checked = self.was_checked(index);
                if checked {
                    Counters::bump(&self.counters.unchecked_reads);
                }
                !checked
            })
            .unzip();
        let mut found = Vec::with_capacity(blocks.len());
        self.hasher
            .digest_many(blocks, |i, digest| found.push((indices[i], digest)));
        Ok(found)
    }

    /// Hints the sources about what this read and the next will need, so that their I/O overlaps: the hash
    /// blocks on the paths of data blocks `first..first + count` that are not cached (fetched while the data is
    /// read), and, when the read continues the one before, the data that follows it and its hash blocks
    /// (fetched while this read is hashed). Hints only: every byte served is still read and checked.
    fn prefetch(&self, first: u64, count: u64) {
        let end = first + count;
        let previous_end = self.last_read_end.swap(end, Ordering::Relaxed);
        let dbs = self.geometry.data_block_size() as u64;
        let sequential = first.abs_diff(previous_end) <= 4 * count;
        let ahead_end = if sequential {
            (end + (4 * count).min(READ_AHEAD_MAX / dbs)).min(self.geometry.params.data_blocks)
        } else {
            end
        };
        // Only blocks no earlier read hinted: a sequential reader hints each block once.
        let hinted = self.hinted_end.swap(ahead_end, Ordering::Relaxed);
        let from = if (first..ahead_end).contains(&hinted) {
            hinted
        } else {
            first
        };
        if from < ahead_end {
            self.prefetch_hash_paths(from, ahead_end - from);
        }
        let data_from = from.max(end);
        if data_from < ahead_end {
            self.data.prefetch(data_from * dbs, (ahead_end - data_from) * dbs);
        }
    }

    /// Hints the hash source to fetch the hash blocks on the paths of data blocks `first..first + count`, on
    /// every level where one of them is not cached.
    fn prefetch_hash_paths(&self, first: u64, count: u64) {
        let hbs = self.geometry.hash_block_size() as u64;
        let last = first + count - 1;
        for level in 0..self.geometry.levels.len() {
            let shift = self.geometry.hashes_per_block_bits as u64 * level as u64;
            let (a, _) = self.geometry.digest_position(level, first >> shift);
            let (b, _) = self.geometry.digest_position(level, last >> shift);
            if self.cache.get(a).is_none() || self.cache.get(b).is_none() {
                self.hash.prefetch(a * hbs, (b - a + 1) * hbs);
            }
        }
    }

    /// Reads and verifies data block `index` into `out` (one data block long).
    pub fn read_block(&self, index: u64, out: &mut [u8]) -> Result<(), VerityError> {
        if let Some((action, cause)) = self.counters.halted() {
            return Err(VerityError::Halted { action, cause });
        }
        if self.was_checked(index) {
            self.read_data(index, out)?;
            Counters::bump(&self.counters.unchecked_reads);
            return Ok(());
        }
        let want = self.expected_digest(index)?;
        if self.zero_digest == Some(want) {
            out.fill(0);
            Counters::bump(&self.counters.zero_blocks);
            return Ok(());
        }
        self.read_data(index, out)?;
        if let Some(bytes) = self.settle(index, want, self.hasher.digest(out))? {
            out.copy_from_slice(&bytes);
        }
        Ok(())
    }

    /// Settles data block `index`, whose digest is `found`, against the digest the tree holds. On a mismatch
    /// the bytes corrected from parity are returned, if any; `Ok(None)` means the bytes as read stand.
    fn settle(&self, index: u64, want: Digest, found: Digest) -> Result<Option<Vec<u8>>, VerityError> {
        if found == want {
            Counters::bump(&self.counters.blocks_verified);
            self.mark_checked(index);
            return Ok(None);
        }
        let block = BlockRef::Data { block: index };
        if let Some(bytes) = self.repair(block, want) {
            Counters::bump(&self.counters.blocks_verified);
            self.mark_checked(index);
            return Ok(Some(bytes));
        }
        self.corrupted(block, want, found).map(|()| None)
    }

    fn was_checked(&self, index: u64) -> bool {
        self.checked_once
            .as_ref()
            .is_some_and(|bits| bits[(index / 64) as usize].load(Ordering::Relaxed) & (1 << (index % 64)) != 0)
    }

    fn mark_checked(&self, index: u64) {
        if let Some(bits) = &self.checked_once {
            bits[(index / 64) as usize].fetch_or(1 << (index % 64), Ordering::Relaxed);
        }
    }

    fn read_data(&self, index: u64, out: &mut [u8]) -> Result<(), VerityError> {
        let offset = index * self.geometry.data_block_size() as u64;
        self.data
            .read_at(offset, out)
            .map_err(|source| self.io_error(BlockRef::Data { block: index }, Device::Data, offset, source))
    }

    /// Applies the I/O error mode and returns the error the read fails with.
    fn io_error(&self, block: BlockRef, device: Device, offset: u64, source: io::Error) -> VerityError {
        Counters::bump(&self.counters.io_errors);
        self.counters.record(Event::IoError { block });
        let action = match self.options.on_io_error {
            IoErrorMode::Eio => {
                return VerityError::Io {
                    device,
                    offset,
                    error: source,
                };
            }
            IoErrorMode::Restart => HaltAction::Restart,
            IoErrorMode::Panic => HaltAction::Panic,
        };
        self.counters.halt(action, block);
        VerityError::Halted { action, cause: block }
    }

    /// Applies the corruption mode: `Ok` means the caller goes on with the bytes as read.
    fn corrupted(&self, block: BlockRef, expected: Digest, found: Digest) -> Result<(), VerityError> {
        let action = match self.options.on_corruption {
            CorruptionMode::Ignore => {
                self.counters.corruption(block, true);
                return Ok(());
            }
            CorruptionMode::Eio => {
                self.counters.corruption(block, false);
                return Err(VerityError::HashMismatch {
                    block,
                    expected: Box::new(expected),
                    found: Box::new(found),
                });
            }
            CorruptionMode::Restart => HaltAction::Restart,
            CorruptionMode::Panic => HaltAction::Panic,
        };
        self.counters.corruption(block, false);
        self.counters.halt(action, block);
        Err(VerityError::Halted { action, cause: block })
    }

    /// The digest the tree holds for data block `index`, verifying every hash block on the way.
    fn expected_digest(&self, index: u64) -> Result<Digest, VerityError> {
        let levels = self.geometry.levels.len();
        if levels == 0 {
            return Ok(self.root);
        }
        let (leaf, at) = self.geometry.digest_position(0, index);
        if let Some(bytes) = self.cache.get(leaf) {
            return Ok(self.digest_at(&bytes, at));
        }
        let mut want = self.root;
        let mut bytes: Arc<[u8]> = Arc::from(Vec::new());
        for level in (0..levels).rev() {
            let child = index >> (self.geometry.hashes_per_block_bits as u64 * level as u64);
            let (block, at) = self.geometry.digest_position(level, child);
            bytes = self.verified_hash_block(level, block, want)?;
            want = self.digest_at(&bytes, at);
        }
        drop(bytes);
        Ok(want)
    }

    /// Hash block `block` of `level`, checked against `want` (or cached from an earlier check).
    fn verified_hash_block(&self, level: usize, block: u64, want: Digest) -> Result<Arc<[u8]>, VerityError> {
        if let Some(bytes) = self.cache.get(block) {
            return Ok(bytes);
        }
        let hbs = self.geometry.hash_block_size();
        let offset = block * hbs as u64;
        let mut bytes = vec![0u8; hbs];
        let block_ref = BlockRef::Hash { level, block };
        self.hash
            .read_at(offset, &mut bytes)
            .map_err(|source| self.io_error(block_ref, Device::Hash, offset, source))?;
        let mut bytes: Arc<[u8]> = Arc::from(bytes);
        let found = self.hasher.digest(&bytes);
        if found != want
            && let Some(repaired) = self.repair(block_ref, want)
        {
            bytes = Arc::from(repaired);
        } else if found != want {
            self.corrupted(block_ref, want, found)?;
            return Ok(bytes);
        }
        self.cache.insert(block, bytes.clone());
        Ok(bytes)
    }

    fn digest_at(&self, bytes: &[u8], at: usize) -> Digest {
        Digest::from_slice(&bytes[at..at + self.geometry.digest_size]).expect("digest size")
    }
}

impl<D: ReadAt, H: ReadAt> ReadAt for VerifiedDevice<D, H> {
    fn len(&self) -> u64 {
        self.geometry.data_size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_verified(offset, buf).map_err(io::Error::from)
    }
}
