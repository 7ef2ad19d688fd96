//! The merged rootfs view: against the kernel's overlayfs and `umoci unpack`, in process, served over FUSE,
//! under tampering, and against a reference model of the overlay rules.

mod converted;
mod emulated;
mod fuse;
mod kernel;
mod props;
mod support;
mod tamper;
