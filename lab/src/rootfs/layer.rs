//! Converted layers (`veritylab convert`) opened as the sources a [`Merged`](super::Merged) view stacks.
//!
//! - [`open_verified`]: the layer's EROFS image under a [`VerifiedDevice`] whose tree is the one the
//!   conversion wrote (appended to `layer.erofs` in containerd's layout, `layer.erofs.verity` otherwise),
//!   checked against a root hash the caller supplies. The conversion record's own `roothash` is local
//!   metadata an attacker on the host can rewrite together with the layer: the `hardened` profile passes the
//!   root hash from the verified signature instead, the `verity` profile may pass the recorded one.
//! - [`open_plain`]: the EROFS image alone, unverified (the `erofs` profile), without the appended tree.
//!
//! The tree parameters are veritylab's fixed ones (sha256, 4096-byte blocks, 32 zero bytes of salt); a record
//! that claims others is refused rather than trusted.

use std::io;
use std::path::PathBuf;

use verity_fuse::VerifiedDevice;
use verity_fuse::device::{OpenError, Options};
use verity_fuse::params::ParamError;
use verity_fuse::source::{FileSource, Window};

use crate::convert::{self, LAYER_FILE, LayerConversion, VERITY_FILE, VerityLayout};
use verity_fuse::ErrorClass;

/// A converted layer read through a verified device: the data file and the hash file.
pub type VerifiedLayer = VerifiedDevice<FileSource, FileSource>;

/// A converted layer read as it is, without verification.
pub type PlainLayer = Window<FileSource>;

/// Why a converted layer could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A layer file could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The record claims tree parameters other than veritylab's fixed ones.
    #[error("layer {layer}: the conversion record claims {field} {found:?}; veritylab layers use {expected:?}")]
    Parameters {
        /// The layer digest.
        layer: String,
        /// The field.
        field: &'static str,
        /// What the record says.
        found: String,
        /// What veritylab writes.
        expected: String,
    },
    /// The recorded sizes and offset do not make a valid tree geometry.
    #[error("layer {layer}: {source}")]
    Geometry {
        /// The layer digest.
        layer: String,
        /// The error.
        #[source]
        source: ParamError,
    },
    /// The verified device could not be set up (a wrong-sized root hash, a truncated file).
    #[error("layer {layer}: {source}")]
    Device {
        /// The layer digest.
        layer: String,
        /// The error.
        #[source]
        source: OpenError,
    },
}

impl LayerError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Open { .. } => ErrorClass::Io,
            Self::Parameters { .. } => ErrorClass::VerificationFailed,
            Self::Geometry { source, .. } => source.class(),
            Self::Device { source, .. } => source.class(),
        }
    }
}

fn open(path: PathBuf) -> Result<FileSource, LayerError> {
    FileSource::open(&path).map_err(|source| LayerError::Open { path, source })
}

/// Opens a converted layer under a verified device checked against `root_hash` (raw bytes).
pub fn open_verified(
    conversion: &LayerConversion,
    root_hash: &[u8],
    options: Options,
) -> Result<VerifiedLayer, LayerError> {
    let layer = conversion.layer.to_string();
    let salt = verity_fuse::hex::encode(&convert::verity::SALT);
    for (field, found, expected) in [
        ("hash", conversion.hash.as_str(), "sha256"),
        ("salt", conversion.salt.as_str(), salt.as_str()),
    ] {
        if found != expected {
            return Err(LayerError::Parameters {
                layer,
                field,
                found: found.to_owned(),
                expected: expected.to_owned(),
            });
        }
    }
    let data_size = conversion.data_blocks.saturating_mul(convert::verity::BLOCK);
    let geometry =
        convert::verity::geometry_for(data_size, conversion.hashoffset).map_err(|source| LayerError::Geometry {
            layer: layer.clone(),
            source,
        })?;
    let data = open(conversion.dir.join(LAYER_FILE))?;
    let hash = match conversion.layout {
        VerityLayout::Containerd => open(conversion.dir.join(LAYER_FILE))?,
        VerityLayout::Separate => open(conversion.dir.join(VERITY_FILE))?,
    };
    VerifiedDevice::new(data, hash, geometry, root_hash, options).map_err(|source| LayerError::Device { layer, source })
}

/// Opens a converted layer's EROFS image without verification (the tree appended in containerd's layout is
/// left out).
pub fn open_plain(conversion: &LayerConversion) -> Result<PlainLayer, LayerError> {
    let path = conversion.dir.join(LAYER_FILE);
    let file = open(path.clone())?;
    let len = conversion.erofs_size.min(verity_fuse::ReadAt::len(&file));
    Window::new(file, 0, len).map_err(|source| LayerError::Open { path, source })
}
