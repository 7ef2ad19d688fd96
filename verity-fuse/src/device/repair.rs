//! Forward error correction inside the verified device, as dm-verity's `verity_fec_decode` does it.
//!
//! When a data or hash block fails its digest, the device decodes the round of codewords the block is part of
//! (see [`crate::fec::layout`]) from the data, hash and parity sources, first without erasures and, if that
//! fails, again with erasures: blocks that could not be read, and data blocks of the round whose own digest
//! does not match the tree. The corrected block is returned only if its digest is the one the tree holds, so
//! the device never serves bytes the tree did not vouch for. Repairs may nest (locating erasures can need a
//! damaged hash block repaired) at most [`MAX_DEPTH`] deep, and a scan for erasures stops at the first data
//! block whose expected digest cannot be had: the kernel allows 4 levels and retries every block, which
//! multiplies the work by the round size at each level for no block it could not otherwise correct.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use super::VerifiedDevice;
use super::status::{Counters, Event};
use crate::ReadAt;
use crate::error::BlockRef;
use crate::fec::{FecLayout, FecParamError, FecParams, RepairedRound, Repairer, layout::Covered};
use crate::hash::Digest;

/// Deepest nesting of repairs: a repair, and the repair of a hash block needed to locate its erasures.
pub const MAX_DEPTH: u32 = 2;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The parity of a device and its layout.
pub(crate) struct DeviceFec {
    pub(crate) layout: FecLayout,
    pub(crate) parity: Box<dyn ReadAt>,
    /// The last round decoded: damage usually spans several blocks of one round, and each is served from
    /// one decode (every block taken from it is still checked against the tree).
    pub(crate) last: Mutex<Option<Arc<RepairedRound>>>,
}

/// Why FEC could not be set up on a device (the kernel refuses the table for these).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FecSetupError {
    /// The parameters do not fit the tree or the parity device.
    #[error(transparent)]
    Params(#[from] FecParamError),
    /// The hash device ends before the covered hash blocks do.
    #[error("hash device is too small for {blocks} FEC blocks: {needed} bytes needed, {len} present")]
    HashTooSmall {
        /// Covered blocks.
        blocks: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
}

impl<D: ReadAt, H: ReadAt> VerifiedDevice<D, H> {
    /// Adds forward error correction from `parity` (the FEC device), as the table arguments
    /// `use_fec_from_device`, `fec_roots`, `fec_blocks` and `fec_start` do.
    pub fn with_fec(mut self, params: FecParams, parity: Box<dyn ReadAt>) -> Result<Self, FecSetupError> {
        let layout = FecLayout::new(&self.geometry, params)?;
        layout.check_fec_device(parity.len())?;
        let hash_blocks = params.blocks - layout.data_blocks;
        let needed = (layout.hash_start_block + hash_blocks) * u64::from(layout.block_size);
        if self.hash.len() < needed {
            return Err(FecSetupError::HashTooSmall {
                blocks: params.blocks,
                needed,
                len: self.hash.len(),
            });
        }
        self.fec = Some(DeviceFec {
            layout,
            parity,
            last: Mutex::new(None),
        });
        Ok(self)
    }

    /// The FEC layout, when the device has parity.
    pub fn fec_layout(&self) -> Option<&FecLayout> {
        self.fec.as_ref().map(|f| &f.layout)
    }

    /// The corrected bytes of `block`, whose digest must be `want`, or `None` when there is no parity or the
    /// parity cannot produce bytes with that digest.
    pub(super) fn repair(&self, block: BlockRef, want: Digest) -> Option<Vec<u8>> {
        let fec = self.fec.as_ref()?;
        let covered = match block {
            BlockRef::Data { block } => Some(block),
            BlockRef::Hash { block, .. } => fec.layout.hash_block(block),
        };
        let depth = DEPTH.with(Cell::get);
        let repaired = covered.filter(|_| depth < MAX_DEPTH).and_then(|covered| {
            DEPTH.with(|d| d.set(depth + 1));
            let repaired = self.decode(fec, covered, want);
            DEPTH.with(|d| d.set(depth));
            repaired
        });
        match repaired {
            Some(_) => {
                Counters::bump(&self.counters.fec_corrected);
                self.counters.record(Event::Corrected { block });
            }
            None => Counters::bump(&self.counters.fec_uncorrectable),
        }
        repaired
    }

    fn decode(&self, fec: &DeviceFec, covered: u64, want: Digest) -> Option<Vec<u8>> {
        let layout = &fec.layout;
        let repairer = Repairer::new(layout, &self.data, &self.hash, &*fec.parity);
        let (round, position) = layout.round_of(covered);
        let bs = layout.block_size();
        let matching = |decoded: &RepairedRound| {
            let bytes = decoded.block(position, bs);
            (self.hasher.digest(bytes) == want).then(|| bytes.to_vec())
        };
        let last = fec.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(bytes) = last.filter(|d| d.round == round).and_then(|d| matching(&d)) {
            return Some(bytes);
        }
        let (blocks, unreadable) = repairer.read_round(round);
        let checked = |blocks: Vec<u8>, erasures: &[usize]| {
            let decoded = repairer.decode_round(round, blocks, erasures).ok()?;
            let bytes = matching(&decoded)?;
            *fec.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(decoded));
            Some(bytes)
        };
        if let Some(bytes) = checked(blocks.clone(), &unreadable) {
            return Some(bytes);
        }
        let mut erasures = unreadable;
        for i in 0..layout.rsn as usize {
            if erasures.len() > layout.roots() {
                break;
            }
            let Covered::Data(index) = layout.covered(layout.member(round, i)) else {
                continue;
            };
            if erasures.contains(&i) {
                continue;
            }
            let Ok(expected) = self.expected_digest(index) else {
                break;
            };
            if self.hasher.digest(&blocks[i * bs..(i + 1) * bs]) != expected {
                erasures.push(i);
            }
        }
        checked(blocks, &erasures)
    }
}
