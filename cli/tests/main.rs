//! The integration tests of the `veritylab` crate, one module per area.
#![forbid(unsafe_code)]

mod agent;
mod container;
mod erofs;
mod exit_codes;
mod kernel_vm;
mod module_graph;
mod mount;
mod mountinfo;
mod oci;
mod rootfs;
mod runner;
mod scenario;
pub(crate) mod sign;
mod watch;
