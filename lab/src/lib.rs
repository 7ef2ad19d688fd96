//! veritylab: the container-image integrity pipeline (pull, convert to EROFS, sign, mount, runtime check).
//!
//! This crate grows one module folder per concept; the verity core lives in the `verity-fuse` crate.
//! - [`erofs`]: the streaming tar-to-EROFS writer and the userspace reader.
//! - [`oci`]: image references, manifests, and pulls from registries and image layouts.
//! - [`store`]: the content store (an OCI image layout plus converted layers).
//! - [`convert`]: each layer to `layer.erofs` plus a dm-verity tree, in containerd's or a separate layout.
//! - [`mountinfo`]: a typed parser of `/proc/PID/mountinfo`.
//! - [`watch`]: periodic re-verification of converted layers at rest, within a CPU budget.
//! - [`cli`]: the `veritylab` command's subcommands as library functions.
#![forbid(unsafe_code)]

pub mod cli;
pub mod convert;
pub mod erofs;
pub mod mountinfo;
pub mod oci;
pub mod store;
pub mod watch;

pub use verity_fuse;
