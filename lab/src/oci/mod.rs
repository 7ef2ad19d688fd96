//! OCI images: references, digests, media types, manifests, and pulling from registries and image layouts.
//!
//! - [`reference`](mod@reference): `HOST[:PORT]/REPO[:TAG][@DIGEST]` and `oci:DIR[:TAG]`, parsed as pure functions.
//! - `digest`, [`media`] and [`manifest`]: the image-spec types, which live in [`crate::image_spec`].
//! - `auth`: `WWW-Authenticate` challenges and credentials.
//! - `client`: a small blocking distribution-API client.
//! - `layout`: an image layout directory as a source; `archive`: unpacking an `oci-archive:` tar into one.
//! - `pull`(mod@pull): resolve once, fetch by digest, check everything, then commit to the [`crate::store`].
//! - `push`(mod@push): copy an image from the store or a layout to a registry or a layout.
//! - [`build`]: a small multi-layer image from directories, deletions as whiteouts, written as a layout.

pub(crate) mod archive;
pub(crate) mod auth;
pub(crate) mod build;
pub(crate) mod client;
pub(crate) mod layout;
pub(crate) mod pull;
pub(crate) mod push;
pub mod reference;

pub(crate) use crate::image_spec::digest;
pub use crate::image_spec::{Digest, VerifyError, manifest, media};
pub use archive::ArchiveError;
pub use auth::Credentials;
pub use build::{BuildError, BuildOptions, BuildReport, BuiltLayer, build, store_tars};
pub use client::{Client, ClientOptions, DEFAULT_USER_AGENT, FetchedManifest, RegistryError};
pub use layout::LayoutError;
pub use pull::{Limits, PullError, PullOptions, PullReport, PulledLayer, Transport, pull};
pub use push::{PushDestination, PushError, PushOptions, PushReport, PushSource, PushedBlob, push};
pub use reference::Reference;
