//! Errors of the merged view, typed so backends map them to errno values and scenarios match on them.
//!
//! A read that fails inside a layer is split by cause: [`RootfsError::Verification`] when the bytes came from
//! a verified device that refused them (a hash mismatch, or a device halted by an earlier one), and
//! [`RootfsError::Layer`] for a malformed image or a plain I/O failure. Both are `EIO` to a reader.

use std::io;

use verity_fuse::VerityError;

use crate::erofs::ReadError;
use verity_fuse::ErrorClass;

/// `ENOENT`.
pub(crate) const ENOENT: i32 = 2;
/// `EIO`.
pub const EIO: i32 = 5;
/// `ENOTDIR`.
pub(crate) const ENOTDIR: i32 = 20;
/// `EISDIR`.
pub(crate) const EISDIR: i32 = 21;
/// `EFBIG`.
pub(crate) const EFBIG: i32 = 27;
/// `EINVAL`.
pub(crate) const EINVAL: i32 = 22;
/// `EROFS`: what every write-type operation on the view returns.
pub(crate) const EROFS: i32 = 30;
/// `ESTALE`.
pub(crate) const ESTALE: i32 = 116;
/// `EUCLEAN`, the kernel's `EFSCORRUPTED`: what its EROFS returns for a malformed image.
pub const EFSCORRUPTED: i32 = 117;

/// Errors of the merged view.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    /// A view needs at least one layer.
    #[error("a merged view needs at least one layer")]
    NoLayers,
    /// More layers than inode numbers can tell apart.
    #[error("{count} layers: at most {max} are supported", max = super::MAX_LAYERS)]
    TooManyLayers {
        /// Layers given.
        count: usize,
    },
    /// A path component does not exist (or is whited out).
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A path component that must be a directory is not one.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// A file operation on a directory.
    #[error("{path}: is a directory")]
    IsADirectory {
        /// The path.
        path: String,
    },
    /// A read of data from something that is not a regular file (a device, fifo, socket or symlink).
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// A whole-file read of a file larger than the caller's limit.
    #[error("{path}: {size} bytes is more than the limit of {limit}")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// `read_link` on something that is not a symbolic link.
    #[error("{path}: not a symbolic link")]
    NotASymlink {
        /// The path.
        path: String,
    },
    /// An inode number the view never handed out.
    #[error("inode {ino} is not known to this view")]
    StaleInode {
        /// The inode number.
        ino: u64,
    },
    /// A directory is reached twice while walking the view (a malformed layer links a directory twice).
    #[error("{path}: directory reached twice (a layer links a directory into itself)")]
    Cycle {
        /// Where it was reached the second time.
        path: String,
    },
    /// A verified device refused the bytes of a layer: the layer (or its tree) does not match its root hash.
    #[error("layer {layer}, {path}: verification failed: {source}")]
    Verification {
        /// Layer index, 0 = the lowest.
        layer: usize,
        /// The path being read.
        path: String,
        /// What the device found.
        #[source]
        source: VerityError,
    },
    /// A layer image is malformed, or reading it failed.
    #[error("layer {layer}, {path}: {source}")]
    Layer {
        /// Layer index, 0 = the lowest.
        layer: usize,
        /// The path being read.
        path: String,
        /// The reader's error.
        #[source]
        source: ReadError,
    },
}

impl RootfsError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Verification { source, .. } => source.class(),
            Self::Layer { source, .. } => source.class(),
            Self::StaleInode { .. } => ErrorClass::Internal,
            Self::NoLayers
            | Self::TooManyLayers { .. }
            | Self::NotFound { .. }
            | Self::NotADirectory { .. }
            | Self::IsADirectory { .. }
            | Self::NotAFile { .. }
            | Self::TooLarge { .. }
            | Self::NotASymlink { .. }
            | Self::Cycle { .. } => ErrorClass::BadInput,
        }
    }
}

/// Result alias of the view.
pub(crate) type Result<T, E = RootfsError> = std::result::Result<T, E>;

impl RootfsError {
    /// The errno a filesystem serving the view returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Self::NoLayers | Self::TooManyLayers { .. } => EINVAL,
            Self::NotFound { .. } => ENOENT,
            Self::NotADirectory { .. } => ENOTDIR,
            Self::IsADirectory { .. } => EISDIR,
            Self::NotASymlink { .. } | Self::NotAFile { .. } => EINVAL,
            Self::TooLarge { .. } => EFBIG,
            Self::StaleInode { .. } => ESTALE,
            Self::Verification { .. }
            | Self::Layer {
                source: ReadError::Io { .. },
                ..
            } => EIO,
            Self::Cycle { .. } | Self::Layer { .. } => EFSCORRUPTED,
        }
    }

    /// Whether this is a verification failure (a layer's bytes do not match its root hash).
    pub fn is_verification_failure(&self) -> bool {
        matches!(self, Self::Verification { .. })
    }

    /// Files a reader error of `layer` (while reading `path`) as a verification failure when a verified
    /// device refused the bytes, and as a layer error otherwise.
    pub(super) fn from_layer(layer: usize, path: &[u8], err: ReadError) -> Self {
        let path = super::display_path(path);
        match err {
            ReadError::Io { offset, len, source } => match source.downcast::<VerityError>() {
                Ok(verity) => Self::Verification {
                    layer,
                    path,
                    source: verity,
                },
                Err(source) => Self::Layer {
                    layer,
                    path,
                    source: ReadError::Io { offset, len, source },
                },
            },
            other => Self::Layer {
                layer,
                path,
                source: other,
            },
        }
    }
}

impl From<RootfsError> for io::Error {
    /// An `io::Error` carrying the view's error, so callers can downcast it back.
    fn from(err: RootfsError) -> Self {
        let kind = match err.errno() {
            ENOENT => io::ErrorKind::NotFound,
            ENOTDIR => io::ErrorKind::NotADirectory,
            EISDIR => io::ErrorKind::IsADirectory,
            EINVAL => io::ErrorKind::InvalidInput,
            ESTALE => io::ErrorKind::StaleNetworkFileHandle,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
