//! The merged rootfs view: against the kernel's overlayfs and `umoci unpack`, served over FUSE, under
//! tampering, and against a reference model of the overlay rules.

mod kernel;
mod support;
