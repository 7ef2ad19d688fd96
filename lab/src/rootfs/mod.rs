//! The container rootfs as veritylab serves it without kernel mounts: a stack of EROFS layers merged with
//! overlayfs's rules for read-only lower layers.
//!
//! Data flows from layer bytes to a reader like this:
//!
//! - Each layer is an [`Image`](crate::erofs::Image) over any [`ReadAt`](verity_fuse::ReadAt): in the
//!   `verity` and `hardened` profiles a [`VerifiedDevice`](verity_fuse::VerifiedDevice) over the layer file
//!   and its tree, so every byte read is checked against the root hash; in the `erofs` profile the plain file.
//! - `layer`: a converted layer (`veritylab convert`) opened as such a source, verified against a root
//!   hash the caller trusts, or plain.
//! - `merge`: [`Merged`] stacks the images (lowest first) into one tree: lookups, `stat`, directory
//!   listings, file ranges, symlinks and xattrs, with stable inode numbers and typed errors
//!   ([`RootfsError`]); a byte refused by a verified device is a [`RootfsError::Verification`] (`EIO`), a
//!   malformed image a [`RootfsError::Layer`] (`EFSCORRUPTED`, as the kernel's EROFS answers).
//! - `emulated`: the `emulated` backend, the same view used in process through path-based calls and a
//!   [`File`] that implements `Read` and `Seek`.
//! - `fuse`(mod@fuse): the `fuse` backend, the view served read-only as a FUSE filesystem.
//! - `snapshot`: a deterministic description of a tree (from a view, or from a host directory such as a
//!   kernel overlay mount, a FUSE mount or `umoci unpack`'s `rootfs/`), to compare backends.

pub(crate) mod emulated;
pub(crate) mod error;
pub(crate) mod fuse;
pub(crate) mod layer;
pub(crate) mod merge;
pub(crate) mod snapshot;

pub use error::{EFSCORRUPTED, EIO};
pub use snapshot::Kind;

pub use emulated::File;
pub use error::RootfsError;
pub use fuse::{FuseError, FuseMount, FuseOptions, RootfsFs, mount};
pub use layer::{LayerError, PlainLayer, VerifiedLayer, open_plain, open_verified};
pub use merge::{Entry, Merged, Node, Stat};
pub use snapshot::{Snapshot, SnapshotEntry, SnapshotError};

/// Most layers a view stacks (inode numbers keep 16 bits for the layer).
pub const MAX_LAYERS: usize = 0xFFFF;

/// A path for messages: `/`-rooted, bytes that are not UTF-8 replaced.
fn display_path(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    if text.starts_with('/') {
        text.into_owned()
    } else {
        format!("/{text}")
    }
}
