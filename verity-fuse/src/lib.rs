//! verity-fuse: a userspace dm-verity, byte-compatible with cryptsetup's `veritysetup`.
//!
//! Data flows from bytes to trust like this:
//!
//! - [`source`]: the [`ReadAt`] trait every block-like thing implements (files, buffers, windows, tampering
//!   wrappers, and the verified device itself).
//! - [`hash`]: algorithms and the salted block digest, two blocks at a time with SHA-NI where the CPU has it
//!   (`unsafe` code, as is [`identity`]'s one ioctl).
//! - [`params`]: tree parameters, validated into a [`Geometry`] that fixes every offset.
//! - [`superblock`]: the 512-byte on-disk superblock.
//! - [`tree`]: building a whole tree (`format`) and checking one (`verify`).
//! - [`fec`]: Reed-Solomon forward error correction, parity byte-identical to `veritysetup --fec-device`.
//! - [`device`]: [`VerifiedDevice`], which checks every block a read touches, with the kernel's error modes.
//! - [`identity`]: identities an attacker cannot hand back (unique mount ids, a loop device's backing
//!   file as device and inode), for audits of what is mounted.
//! - [`ErrorClass`]: what kind of failure an error is; every error type's `class()` says it.
//! - [`host`]: the host's mount table, loop devices and processes, read in one place.
//! - [`signature`]: root-hash signatures (detached PKCS#7) checked against a keyring as the kernel does.
//! - [`cli`]: the `verity-fuse` command.
#![deny(unsafe_code)]

pub mod backend;
mod class;
pub mod cli;
pub mod device;
pub mod error;
pub mod fec;
pub mod fuse;
pub mod hash;
pub mod hex;
pub mod host;
#[allow(unsafe_code)]
pub mod identity;
pub mod params;
pub(crate) mod rundir;
pub mod signature;
pub mod source;
pub mod superblock;
pub mod sys;
pub mod tree;

pub use class::ErrorClass;
pub use device::VerifiedDevice;
pub use error::{BlockRef, VerityError};
pub use hash::{Algorithm, Digest};
pub use params::{Geometry, HashType, Placement, VerityParams};
pub use source::ReadAt;
