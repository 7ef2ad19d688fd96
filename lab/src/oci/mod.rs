//! OCI images: references, digests, media types, manifests, and pulling from registries and image layouts.
//!
//! - [`reference`](mod@reference): `HOST[:PORT]/REPO[:TAG][@DIGEST]` and `oci:DIR[:TAG]`, parsed as pure functions.
//! - [`digest`], [`media`] and [`manifest`]: the image-spec types, which live in [`crate::image_spec`].
//! - [`auth`]: `WWW-Authenticate` challenges and credentials.
//! - [`client`]: a small blocking distribution-API client.
//! - [`layout`]: an image layout directory as a source; [`archive`]: unpacking an `oci-archive:` tar into one.
//! - [`pull`](mod@pull): resolve once, fetch by digest, check everything, then commit to the [`crate::store`].
//! - [`push`](mod@push): copy an image from the store or a layout to a registry or a layout.
//! - [`build`]: a small multi-layer image from directories, deletions as whiteouts, written as a layout.

pub mod archive;
pub mod auth;
pub mod build;
pub mod client;
pub mod layout;
pub mod pull;
pub mod push;
pub mod reference;

pub use crate::image_spec::{Digest, digest, manifest, media};
pub use pull::{PullError, PullOptions, PullReport, pull};
pub use reference::Reference;
