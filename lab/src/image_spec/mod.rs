//! The OCI image-spec types, without I/O: digests and checking bytes against a descriptor, the media types we
//! accept, and the manifest, index and descriptor documents. The content store and the transports in
//! [`crate::oci`] both build on these, so neither depends on the other for them.
//!
//! - `digest`: sha256 digests and checking bytes or streams against a descriptor (digest and size).
//! - [`media`] and [`manifest`]: the media types we accept and the manifest, index and descriptor types.

pub(crate) mod digest;
pub mod manifest;
pub mod media;

pub use digest::{Digest, DigestError, VerifyError};
