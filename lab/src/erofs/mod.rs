//! EROFS: a streaming tar-to-EROFS writer and a userspace reader.
//!
//! - `format`(mod@format): the on-disk structures, pure functions over bytes.
//! - `writer`: the streaming [`Builder`] (file data goes straight to the image, metadata is laid out last).
//! - `tar` and `dir`: the two inputs that feed a builder (a tar stream with OCI whiteouts, a directory).
//! - `reader`: [`Image`] over the [`verity_fuse::ReadAt`] trait, so it reads through a verified device.
//! - `extract`(mod@extract): an image back into a directory.
//! - [`hostfs`]: the few host filesystem calls (xattrs, device nodes) `std` lacks.
//!
//! [`build_from_tar`] and [`build_from_dir`] tie an input to a builder and produce a finished image.

pub(crate) mod dir;
pub(crate) mod extract;
pub(crate) mod format;
pub mod hostfs;
pub(crate) mod reader;
pub(crate) mod tar;
pub(crate) mod writer;

use std::io::Read;
use std::path::Path;

pub use extract::{ExtractError, ExtractOptions, ExtractSummary, extract};
pub use format::{DiskInode, Superblock};
pub use reader::{DirCorruption, DirEntry, FileKind, Image, Inode, ReadError};
pub use tar::{OverlayNamespace, Whiteouts};
pub use writer::{Builder, EntryKind, FileTime, Metadata, Options, Summary, WriteError};

/// Converts a tar stream (plain, gzip or zstd) into an image at `output`. Nothing is left at `output` (or
/// beside it) on error.
pub fn build_from_tar(
    output: &Path,
    input: impl Read,
    opts: Options,
    whiteouts: Whiteouts,
) -> Result<Summary, WriteError> {
    let namespace = match whiteouts {
        Whiteouts::Aufs(ns) => ns,
        Whiteouts::Keep => OverlayNamespace::Trusted,
    };
    let mut builder = Builder::create(output, opts)?;
    tar::ingest(&mut builder, input, whiteouts)?;
    builder.finish(namespace.opaque_xattr())
}

/// Converts a directory tree into an image at `output`. Nothing is left at `output` on error.
pub fn build_from_dir(output: &Path, source: &Path, opts: Options) -> Result<Summary, WriteError> {
    let mut builder = Builder::create(output, opts)?;
    dir::ingest(&mut builder, source)?;
    builder.finish(OverlayNamespace::Trusted.opaque_xattr())
}
