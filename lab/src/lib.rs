//! veritylab: the container-image integrity pipeline (pull, convert to EROFS, sign, mount, runtime check).
//!
//! This crate grows one module folder per concept; the verity core lives in the `verity-fuse` crate.
//! - [`erofs`]: the streaming tar-to-EROFS writer and the userspace reader.
//! - [`oci`]: image references, manifests, and pulls from registries and image layouts.
//! - [`store`]: the content store (an OCI image layout plus converted layers).
//! - [`convert`]: each layer to `layer.erofs` plus a dm-verity tree, in containerd's or a separate layout.
//! - [`progress`]: what long operations report (steps and byte counts), drawn as bars by the command.
//! - [`cli`]: the `veritylab` command's subcommands as library functions.
#![forbid(unsafe_code)]

pub mod cli;
pub mod convert;
pub mod erofs;
pub mod oci;
pub mod progress;
pub mod store;

pub use verity_fuse;
