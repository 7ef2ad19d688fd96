//! Signing and verification: both schemes, bad input, the policy's holes closed, the command line, a real
//! registry, and the signature format checked against openssl (and the sigstore crate, with the
//! `sigstore-interop` feature).

mod bad_input;
mod cli;
mod import;
mod interop;
pub(crate) mod kernel_signature;
mod policy;
mod registry;
mod schemes;
mod support;
mod trust;
