//! veritylab: the container-image integrity pipeline (pull, convert to EROFS, sign, mount, runtime check).
//!
//! This crate grows one module folder per concept; the verity core lives in the `verity-fuse` crate.
#![forbid(unsafe_code)]

pub use verity_fuse;
