//! Errors of tree building and verification, typed so callers and scenarios can match on them.

use std::fmt;
use std::io;

use crate::class::ErrorClass;
use crate::hash::Digest;

/// A block of the data device or of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BlockRef {
    /// A data block, by its number on the data device.
    Data {
        /// Data block number.
        block: u64,
    },
    /// A hash block, by its absolute number on the hash device (as the kernel logs it) and its tree level
    /// (0 = the leaves).
    Hash {
        /// Tree level, 0 = leaves.
        level: usize,
        /// Absolute hash-block number on the hash device.
        block: u64,
    },
}

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data { block } => write!(f, "data block {block}"),
            Self::Hash { level, block } => write!(f, "hash block {block} (tree level {level})"),
        }
    }
}

/// Which device an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The data device.
    Data,
    /// The hash device.
    Hash,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Data => "data device",
            Self::Hash => "hash device",
        })
    }
}

/// What the kernel would do to the machine on corruption or I/O error in the restart and panic modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HaltAction {
    /// `restart_on_corruption` / `restart_on_error`: the kernel reboots.
    Restart,
    /// `panic_on_corruption` / `panic_on_error`: the kernel panics.
    Panic,
}

impl HaltAction {
    /// The name status files and JSON use (its serde form).
    pub fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Panic => "panic",
        }
    }
}

/// A failure to build or verify a tree, or to read through a verified device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerityError {
    /// A block's digest is not the one its parent (or the root hash) holds.
    #[error("{block} is corrupted: expected digest {expected}, found {found}")]
    HashMismatch {
        /// The corrupted block.
        block: BlockRef,
        /// The digest the tree or root hash expects.
        expected: Box<Digest>,
        /// The digest of the block as read.
        found: Box<Digest>,
    },
    /// The unused tail of a hash block is not zero (veritysetup checks this; the kernel does not).
    #[error("hash block {block} has non-zero bytes in its unused area at offset {offset}")]
    NonZeroPadding {
        /// Absolute hash-block number.
        block: u64,
        /// Byte offset inside the block.
        offset: usize,
    },
    /// A device is shorter than the parameters need.
    #[error("{device} is truncated: {needed} bytes needed, {len} present")]
    Truncated {
        /// Which device.
        device: Device,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// Reading a device failed.
    #[error("reading the {device} at offset {offset}: {error}")]
    Io {
        /// Which device.
        device: Device,
        /// Byte offset of the failed read.
        offset: u64,
        /// The underlying error (kept out of the error chain: the message already includes it).
        error: io::Error,
    },
    /// The emulated machine restarted or panicked on an earlier failure; the device no longer serves reads.
    #[error("device halted: the kernel would {action:?} on {cause}")]
    Halted {
        /// Restart or panic.
        action: HaltAction,
        /// The block whose failure triggered it.
        cause: BlockRef,
    },
    /// A read reaches past the end of the verified device.
    #[error("read of {len} bytes at offset {offset} passes the end of the {size}-byte device")]
    OutOfRange {
        /// Offset of the read.
        offset: u64,
        /// Length of the read.
        len: usize,
        /// Size of the device.
        size: u64,
    },
}

impl VerityError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::HashMismatch { .. } | Self::NonZeroPadding { .. } | Self::Halted { .. } => {
                ErrorClass::VerificationFailed
            }
            Self::Truncated { .. } | Self::OutOfRange { .. } => ErrorClass::BadInput,
            Self::Io { .. } => ErrorClass::Io,
        }
    }
}

impl VerityError {
    /// The errno the kernel would return for this failure: `EIO` for everything but reads past the end.
    pub fn errno(&self) -> i32 {
        match self {
            Self::OutOfRange { .. } => 22,
            _ => 5,
        }
    }
}

impl From<VerityError> for io::Error {
    fn from(e: VerityError) -> Self {
        io::Error::other(e)
    }
}
