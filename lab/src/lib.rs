//! veritylab: the container-image integrity pipeline (pull, convert to EROFS, sign, mount, runtime check).
//!
//! This crate grows one module folder per concept; the verity core lives in the `verity-fuse` crate.
//! - [`erofs`]: the streaming tar-to-EROFS writer and the userspace reader.
//! - [`cli`]: the `veritylab` command's subcommands as library functions.
#![forbid(unsafe_code)]

pub mod cli;
pub mod erofs;

pub use verity_fuse;
