//! Integration tests of verity-fuse, one module per area.

mod cli;
mod corruption;
mod differential;
mod exit_codes;
mod fec;
mod fec_vm;
mod fuse_device;
mod kernel_backend;
mod known_answers;
mod modes;
mod oracle;
pub(crate) mod signatures;
mod signatures_vm;
mod status_vm;
mod support;
mod verify_report;
