//! Forward error correction as dm-verity and `veritysetup` define it: Reed-Solomon parity over the data and
//! hash blocks, interleaved so that a run of damaged blocks costs each codeword one symbol.
//!
//! - `rs`: the GF(256) Reed-Solomon codec (encode; decode with errors and erasures).
//! - `layout`: which blocks are covered, how they interleave into rounds of codewords, where parity sits.
//! - [`encode()`]: the parity `veritysetup format --fec-device` writes, byte for byte.
//! - [`Repairer`]: decoding one round (all the codewords one damaged block is part of) from the data, hash
//!   and parity sources; [`repair_all`] decodes every round as `veritysetup verify --fec-device` does.
//!
//! Decoding never decides trust: a repaired block is served only after its digest matches the tree
//! ([`crate::device::VerifiedDevice`] and `verify` check it), because damage beyond the code's capacity can
//! decode to a wrong codeword.

pub(crate) mod layout;
pub(crate) mod rs;

pub use layout::{Covered, DEFAULT_ROOTS, FecLayout, FecParamError, FecParams, MAX_ROOTS, MIN_ROOTS, covered_blocks};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ReadAt;
use crate::error::{BlockRef, Device, VerityError};
use rs::Codec;

/// A failure to repair from parity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FecError {
    /// A codeword of `round` has more damage than its parity can correct.
    #[error("FEC round {round}: codeword {byte} has more damage than {roots} parity bytes can correct")]
    Uncorrectable {
        /// The round (covered block number modulo the number of rounds).
        round: u64,
        /// The byte position inside the blocks whose codeword failed.
        byte: usize,
        /// Parity bytes per codeword.
        roots: u32,
    },
    /// Reading the data or hash device failed.
    #[error(transparent)]
    Read(#[from] VerityError),
    /// Reading the parity failed.
    #[error("reading the FEC device at offset {offset}: {error}")]
    ParityIo {
        /// Byte offset of the failed read.
        offset: u64,
        /// The underlying error.
        error: std::io::Error,
    },
}

/// Reads covered block `b` into `out` (one block): from the data or hash device, or zeroes past the area.
fn read_covered<D: ReadAt + ?Sized, H: ReadAt + ?Sized>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    b: u64,
    out: &mut [u8],
) -> Result<(), VerityError> {
    let bs = layout.block_size as u64;
    let (device, offset, read) = match layout.covered(b) {
        Covered::Zero => {
            out.fill(0);
            return Ok(());
        }
        Covered::Data(block) => (Device::Data, block * bs, data.read_at(block * bs, out)),
        Covered::Hash(block) => (Device::Hash, block * bs, hash.read_at(block * bs, out)),
    };
    read.map_err(|error| VerityError::Io { device, offset, error })
}

/// Calls `work(n)` for every round `n` on `threads` threads; after the first error no new round starts.
fn for_each_round<E: Send>(rounds: u64, threads: usize, work: &(dyn Fn(u64) -> Result<(), E> + Sync)) -> Result<(), E> {
    let next = AtomicU64::new(0);
    let worker = || loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= rounds {
            return Ok(());
        }
        if let Err(e) = work(n) {
            next.store(rounds, Ordering::Relaxed);
            return Err(e);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads.max(1)).map(|_| s.spawn(worker)).collect();
        let mine = worker();
        handles
            .into_iter()
            .map(|h| h.join().expect("FEC worker panicked"))
            .fold(mine, |acc, r| acc.and(r))
    })
}

/// The parity `veritysetup format --fec-device` writes at the FEC offset: for each round, for each byte
/// position, `roots` parity bytes of the codeword made of that byte of the round's blocks.
pub fn encode<D: ReadAt + ?Sized, H: ReadAt + ?Sized>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    threads: usize,
) -> Result<Vec<u8>, VerityError> {
    let codec = Codec::new(layout.roots());
    let roots = layout.roots();
    let bs = layout.block_size();
    let round_bytes = bs * roots;
    let rounds: Vec<Mutex<Vec<u8>>> = (0..layout.rounds).map(|_| Mutex::new(Vec::new())).collect();
    let work = |n: u64| -> Result<(), VerityError> {
        let mut block = vec![0u8; bs];
        let mut remainders = vec![0u8; round_bytes];
        for i in 0..layout.rsn as usize {
            read_covered(layout, data, hash, layout.member(n, i), &mut block)?;
            for (remainder, &symbol) in remainders.chunks_exact_mut(roots).zip(&block) {
                codec.feed(remainder, symbol);
            }
        }
        *rounds[n as usize].lock().unwrap_or_else(|e| e.into_inner()) = remainders;
        Ok(())
    };
    for_each_round(layout.rounds, threads, &work)?;
    let mut parity = Vec::with_capacity(layout.parity_size() as usize);
    for round in rounds {
        parity.extend_from_slice(&round.into_inner().unwrap_or_else(|e| e.into_inner()));
    }
    Ok(parity)
}

/// The blocks of one round after decoding.
#[derive(Debug)]
pub struct RepairedRound {
    /// The round.
    pub round: u64,
    /// The `rsn` blocks of the round, corrected, back to back (blocks past the covered area are zeroes).
    pub blocks: Vec<u8>,
    /// Symbols corrected across the round's codewords.
    pub symbols_corrected: u64,
    /// Covered block numbers whose bytes changed.
    pub changed: Vec<u64>,
}

impl RepairedRound {
    /// The corrected bytes of the block at codeword position `i`.
    pub fn block(&self, i: usize, block_size: usize) -> &[u8] {
        &self.blocks[i * block_size..(i + 1) * block_size]
    }
}

/// Decodes rounds from a data, a hash and a parity source.
pub struct Repairer<'a, D: ?Sized, H: ?Sized, P: ?Sized> {
    layout: &'a FecLayout,
    codec: Codec,
    data: &'a D,
    hash: &'a H,
    parity: &'a P,
}

impl<'a, D: ReadAt + ?Sized, H: ReadAt + ?Sized, P: ReadAt + ?Sized> Repairer<'a, D, H, P> {
    /// A repairer over the three sources.
    pub fn new(layout: &'a FecLayout, data: &'a D, hash: &'a H, parity: &'a P) -> Self {
        Self {
            codec: Codec::new(layout.roots()),
            layout,
            data,
            hash,
            parity,
        }
    }

    /// The layout.
    pub fn layout(&self) -> &FecLayout {
        self.layout
    }

    /// Reads the `rsn` blocks of round `n` back to back. A block whose read fails is left as zeroes and its
    /// position returned, so the caller can treat it as an erasure (as the kernel does).
    pub fn read_round(&self, n: u64) -> (Vec<u8>, Vec<usize>) {
        let bs = self.layout.block_size();
        let mut blocks = vec![0u8; self.layout.rsn as usize * bs];
        let mut unreadable = Vec::new();
        for (i, block) in blocks.chunks_exact_mut(bs).enumerate() {
            let b = self.layout.member(n, i);
            if read_covered(self.layout, self.data, self.hash, b, block).is_err() {
                block.fill(0);
                unreadable.push(i);
            }
        }
        (blocks, unreadable)
    }

    /// Decodes every codeword of round `n` over `blocks` (as [`Self::read_round`] returns them), with the
    /// codeword positions in `erasures` known to be wrong. Fails at the first codeword beyond repair.
    pub fn decode_round(&self, n: u64, mut blocks: Vec<u8>, erasures: &[usize]) -> Result<RepairedRound, FecError> {
        let bs = self.layout.block_size();
        let roots = self.layout.roots();
        let rsn = self.layout.rsn as usize;
        let mut parity = vec![0u8; bs * roots];
        let offset = self.layout.parity_offset(n);
        self.parity
            .read_at(offset, &mut parity)
            .map_err(|error| FecError::ParityIo { offset, error })?;
        let original = blocks.clone();
        let mut word = [0u8; rs::N];
        let mut symbols_corrected = 0u64;
        for k in 0..bs {
            for i in 0..rsn {
                word[i] = blocks[i * bs + k];
            }
            word[rsn..].copy_from_slice(&parity[k * roots..(k + 1) * roots]);
            let fixed = self
                .codec
                .decode(&mut word, erasures)
                .map_err(|_| FecError::Uncorrectable {
                    round: n,
                    byte: k,
                    roots: self.layout.params.roots,
                })?;
            if fixed > 0 {
                symbols_corrected += fixed as u64;
                for i in 0..rsn {
                    blocks[i * bs + k] = word[i];
                }
            }
        }
        let changed = (0..rsn)
            .filter(|&i| blocks[i * bs..(i + 1) * bs] != original[i * bs..(i + 1) * bs])
            .map(|i| self.layout.member(n, i))
            .collect();
        Ok(RepairedRound {
            round: n,
            blocks,
            symbols_corrected,
            changed,
        })
    }
}

/// What decoding every round found.
#[derive(Debug, Default)]
pub struct FullRepair {
    /// Symbols corrected over all codewords (what veritysetup reports as "repairable errors").
    pub symbols_corrected: u64,
    /// Corrected bytes of every covered block that changed, by covered block number.
    pub blocks: BTreeMap<u64, Vec<u8>>,
}

impl FullRepair {
    /// The blocks that changed, as data or hash block references (`tree_level` names a hash block's level).
    pub fn block_refs(&self, layout: &FecLayout, tree_level: impl Fn(u64) -> usize) -> Vec<BlockRef> {
        self.blocks
            .keys()
            .filter_map(|&b| match layout.covered(b) {
                Covered::Data(block) => Some(BlockRef::Data { block }),
                Covered::Hash(block) => Some(BlockRef::Hash {
                    level: tree_level(block),
                    block,
                }),
                Covered::Zero => None,
            })
            .collect()
    }
}

/// Decodes every round, as `veritysetup verify --fec-device` does after a failed check, keeping the corrected
/// blocks in memory. Fails if any codeword is beyond repair.
pub fn repair_all<D: ReadAt + ?Sized, H: ReadAt + ?Sized, P: ReadAt + ?Sized>(
    repairer: &Repairer<'_, D, H, P>,
    threads: usize,
) -> Result<FullRepair, FecError> {
    let bs = repairer.layout.block_size();
    let result = Mutex::new(FullRepair::default());
    let work = |n: u64| -> Result<(), FecError> {
        let (blocks, unreadable) = repairer.read_round(n);
        let round = repairer.decode_round(n, blocks, &unreadable)?;
        let mut result = result.lock().unwrap_or_else(|e| e.into_inner());
        result.symbols_corrected += round.symbols_corrected;
        for b in &round.changed {
            let i = (b / repairer.layout.rounds) as usize;
            result.blocks.insert(*b, round.block(i, bs).to_vec());
        }
        Ok(())
    };
    for_each_round(repairer.layout.rounds, threads, &work)?;
    Ok(result.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// A source with some whole blocks replaced by corrected bytes, kept in memory: how `verify` re-checks a
/// repaired image without writing to the devices.
pub struct Patched<'a, R: ?Sized> {
    inner: &'a R,
    block_size: u64,
    blocks: BTreeMap<u64, &'a [u8]>,
}

impl<'a, R: ReadAt + ?Sized> Patched<'a, R> {
    /// `inner` with block `n` (at byte `n × block_size`) replaced by `blocks[n]` (one block each).
    pub fn new(inner: &'a R, block_size: usize, blocks: BTreeMap<u64, &'a [u8]>) -> Self {
        Self {
            inner,
            block_size: block_size as u64,
            blocks,
        }
    }
}

impl<R: ReadAt + ?Sized> ReadAt for Patched<'_, R> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        let first = offset / self.block_size;
        for (&n, bytes) in self.blocks.range(first..end.div_ceil(self.block_size)) {
            let start = n * self.block_size;
            let from = start.max(offset);
            let to = (start + self.block_size).min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }
}
