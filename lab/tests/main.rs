//! The integration tests of the `veritylab` crate, one module per area.
#![forbid(unsafe_code)]

mod erofs;
mod oci;
mod rootfs;
