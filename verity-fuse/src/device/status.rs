//! The status of a verified device, like dm-verity's `V`/`C` with counters, and the events it records.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{BlockRef, HaltAction};

/// Most events kept; later ones are counted but not stored (the kernel stops logging after 100).
pub const MAX_EVENTS: usize = 100;

/// `V` while every read verified, `C` once a corruption was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No corruption seen (`V`).
    Verified,
    /// At least one corruption seen (`C`).
    Corrupted,
}

impl State {
    /// The name status files and JSON use (its serde form).
    pub fn name(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Corrupted => "corrupted",
        }
    }

    /// The kernel's status letter.
    pub fn letter(self) -> char {
        match self {
            Self::Verified => 'V',
            Self::Corrupted => 'C',
        }
    }
}

/// Something the device did that a caller should see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A block failed verification; `returned_data` is true under `ignore_corruption`.
    Corruption {
        /// The corrupted block.
        block: BlockRef,
        /// Whether the data was returned anyway.
        returned_data: bool,
    },
    /// A block failed its digest and was corrected from parity; the corrected bytes matched the tree.
    Corrected {
        /// The corrected block.
        block: BlockRef,
    },
    /// Reading a block failed.
    IoError {
        /// The block being read.
        block: BlockRef,
    },
    /// The emulated kernel restarted or panicked.
    Halt {
        /// Restart or panic.
        action: HaltAction,
        /// The block that caused it.
        cause: BlockRef,
    },
}

/// A snapshot of the device's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// `V` or `C`.
    pub state: State,
    /// Data blocks whose digest was checked and matched.
    pub blocks_verified: u64,
    /// Data blocks returned as zeroes without a read (`ignore_zero_blocks`).
    pub zero_blocks: u64,
    /// Data blocks returned unchecked because they were verified before (`check_at_most_once`).
    pub unchecked_reads: u64,
    /// Corruptions seen (data and hash blocks).
    pub corruptions: u64,
    /// I/O errors of the underlying devices.
    pub io_errors: u64,
    /// Blocks (data and hash) corrected from parity and verified.
    pub fec_corrected: u64,
    /// Blocks whose correction from parity failed (then handled as corruptions).
    pub fec_uncorrectable: u64,
    /// The first corrupted block.
    pub first_corrupted: Option<BlockRef>,
    /// Set once the emulated kernel restarted or panicked.
    pub halted: Option<HaltAction>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) blocks_verified: AtomicU64,
    pub(crate) zero_blocks: AtomicU64,
    pub(crate) unchecked_reads: AtomicU64,
    pub(crate) corruptions: AtomicU64,
    pub(crate) io_errors: AtomicU64,
    pub(crate) fec_corrected: AtomicU64,
    pub(crate) fec_uncorrectable: AtomicU64,
    pub(crate) first_corrupted: Mutex<Option<BlockRef>>,
    pub(crate) halted: Mutex<Option<(HaltAction, BlockRef)>>,
    pub(crate) events: Mutex<Vec<Event>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, event: Event) {
        let mut events = lock(&self.events);
        if events.len() < MAX_EVENTS {
            events.push(event);
        }
    }

    pub(crate) fn corruption(&self, block: BlockRef, returned_data: bool) {
        Self::bump(&self.corruptions);
        lock(&self.first_corrupted).get_or_insert(block);
        self.record(Event::Corruption { block, returned_data });
    }

    pub(crate) fn halt(&self, action: HaltAction, cause: BlockRef) {
        lock(&self.halted).get_or_insert((action, cause));
        self.record(Event::Halt { action, cause });
    }

    pub(crate) fn halted(&self) -> Option<(HaltAction, BlockRef)> {
        *lock(&self.halted)
    }

    pub(crate) fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *lock(&self.events))
    }

    pub(crate) fn snapshot(&self) -> Status {
        let corruptions = self.corruptions.load(Ordering::Relaxed);
        Status {
            state: if corruptions == 0 {
                State::Verified
            } else {
                State::Corrupted
            },
            blocks_verified: self.blocks_verified.load(Ordering::Relaxed),
            zero_blocks: self.zero_blocks.load(Ordering::Relaxed),
            unchecked_reads: self.unchecked_reads.load(Ordering::Relaxed),
            corruptions,
            io_errors: self.io_errors.load(Ordering::Relaxed),
            fec_corrected: self.fec_corrected.load(Ordering::Relaxed),
            fec_uncorrectable: self.fec_uncorrectable.load(Ordering::Relaxed),
            first_corrupted: *lock(&self.first_corrupted),
            halted: self.halted().map(|(action, _)| action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::State;
    use crate::error::HaltAction;

    #[test]
    fn names_are_the_serde_names() {
        for state in [State::Verified, State::Corrupted] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.name());
        }
        for action in [HaltAction::Restart, HaltAction::Panic] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.name());
        }
    }
}
