//! EROFS: our writer against fsck.erofs and the kernel, our reader against mkfs.erofs, overlay semantics,
//! bad input, determinism and a property test.

mod bad_input;
mod cli;
mod determinism;
mod kernel;
mod kernel_vm;
mod mkfs_compat;
mod overlay;
mod props;
pub(crate) mod support;
