//! Supply-chain attacks staged against veritylab's defence profiles.
//!
//! - [`tamper`]: wrappers over [`verity_fuse::ReadAt`] that change bytes as an attacker on the node disk
//!   would, so the verifier sees exactly what a tampered file would show it.
#![forbid(unsafe_code)]

pub mod tamper;
