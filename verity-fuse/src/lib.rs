//! verity-fuse: a userspace dm-verity.
//!
//! - [`source`]: the [`ReadAt`] trait every block-like thing implements.
#![forbid(unsafe_code)]

pub mod source;

pub use source::ReadAt;
