//! The integration tests of the `veritylab` crate, one module per area.
#![forbid(unsafe_code)]

mod erofs;
mod kernel_vm;
mod mount;
mod mountinfo;
mod oci;
mod rootfs;
mod runner;
mod scenario;
mod sign;
mod watch;
