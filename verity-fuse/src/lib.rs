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
//! - [`device`]: [`VerifiedDevice`], which checks every block a read touches, with the kernel's error modes.
//! - [`identity`]: identities an attacker cannot hand back (unique mount ids, a loop device's backing
//!   file as device and inode), for audits of what is mounted.
//! - [`signature`]: root-hash signatures (detached PKCS#7) checked against a keyring as the kernel does.
//! - [`cli`]: the `verity-fuse` command.
#![deny(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod device;
pub mod error;
pub mod fuse;
pub mod hash;
pub mod hex;
#[allow(unsafe_code)]
pub mod identity;
pub mod params;
pub mod registry;
pub mod signature;
pub mod source;
pub mod superblock;
pub mod sys;
pub mod tree;

pub use device::VerifiedDevice;
pub use error::{BlockRef, VerityError};
pub use hash::{Algorithm, Digest};
pub use params::{Geometry, HashType, Placement, VerityParams};
pub use source::ReadAt;
