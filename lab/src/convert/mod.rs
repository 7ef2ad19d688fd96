//! Layer conversion: each layer of a stored image becomes `layer.erofs` (our writer, OCI whiteouts as
//! overlayfs expects them) plus a dm-verity tree, in one of two layouts:
//!
//! - `containerd`, as containerd's EROFS snapshotter writes it: the tree appended to `layer.erofs`,
//!   `[EROFS][superblock padded to 4096][tree]`, the superblock at the 4096-aligned end of the EROFS data,
//!   and the sidecar `layer.erofs.dmverity` = `{"roothash":"<hex>","hashoffset":<bytes>}`;
//! - `separate`: `layer.erofs` and `layer.erofs.verity` with the superblock at offset 0.
//!
//! Both use sha256, 4096-byte data and hash blocks, hash type 1 and a salt of 32 zero bytes, so the root hash
//! is the same in both. Output is deterministic: the EROFS build time is 0 and both UUIDs are derived from
//! the layer digest. The layer blob is re-hashed while it is read. Everything is built in a temporary
//! directory beside `layers/sha256/<hex>/<layout>/` and renamed into place whole; `conversion.json` there
//! records the parameters. With `--fec-roots N` ([`convert_image_with`]) each layer also gets Reed-Solomon
//! parity in `layer.erofs.fec` ([`fec`]), recorded there too.

pub mod fec;
pub mod verity;

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::erofs::{self, FileTime, Options, OverlayNamespace, Whiteouts};
use crate::oci::digest::{Digest, HashingReader, VerifyError};
use crate::oci::manifest::{self, Manifest, ManifestError};
use crate::progress::{self, Event, Reader};
use crate::root_hash::RootHash;
use crate::store::{Store, StoreError, write_atomically};
use verity_fuse::ErrorClass;

pub use fec::{FEC_FILE, FecError, LayerFec};
pub use verity::VerityLayout;

/// The EROFS image's file name.
pub const LAYER_FILE: &str = "layer.erofs";
/// containerd's sidecar with root hash and hash offset.
pub const SIDECAR_FILE: &str = "layer.erofs.dmverity";
/// The separate hash tree file.
pub const VERITY_FILE: &str = "layer.erofs.verity";
/// Our record of a conversion.
pub const RECORD_FILE: &str = "conversion.json";

/// The largest image manifest read back from the store.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// A failed conversion; nothing is left in the layer's directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The store failed or does not hold the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A store entry names an index; pull stores image manifests only.
    #[error("{name}: stored entry {digest} is not an image manifest")]
    NotAnImage {
        /// The image name.
        name: String,
        /// The entry's digest.
        digest: Digest,
    },
    /// The layer does not convert to EROFS.
    #[error("layer {layer}: {source}")]
    Erofs {
        /// The layer.
        layer: Digest,
        /// The writer's error.
        #[source]
        source: erofs::WriteError,
    },
    /// The stored layer blob no longer matches its digest.
    #[error("layer {layer} in the store: {source}")]
    LayerChanged {
        /// The layer.
        layer: Digest,
        /// The mismatch.
        #[source]
        source: VerifyError,
    },
    /// Building or writing the hash tree failed.
    #[error("layer {layer}: dm-verity tree: {reason}")]
    Verity {
        /// The layer.
        layer: Digest,
        /// What failed.
        reason: String,
    },
    /// The layer's forward error correction could not be made.
    #[error(transparent)]
    Fec(#[from] FecError),
    /// A conversion record does not parse.
    #[error("{}: {source}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl ConvertError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Store(e) => e.class(),
            Self::Manifest(e) => e.class(),
            Self::NotAnImage { .. } => ErrorClass::BadInput,
            Self::Erofs { source, .. } => source.class(),
            Self::LayerChanged { source, .. } => source.class(),
            Self::Verity { .. } => ErrorClass::Internal,
            Self::Record { .. } => ErrorClass::Io,
            Self::Fec(e) => e.class(),
        }
    }
}

/// What one converted layer is, as `conversion.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerConversion {
    /// The layer blob's digest.
    pub layer: Digest,
    /// The layout.
    pub layout: VerityLayout,
    /// The dm-verity root hash (lower-case hex in `conversion.json` and the sidecar).
    pub roothash: RootHash,
    /// Byte offset of the verity superblock in the hash file (`layer.erofs` for containerd).
    pub hashoffset: u64,
    /// Bytes of EROFS data (= data blocks × 4096).
    pub erofs_size: u64,
    /// Data blocks covered by the tree.
    pub data_blocks: u64,
    /// The hash algorithm.
    pub hash: String,
    /// The salt (hex).
    pub salt: String,
    /// Where the files are.
    pub dir: PathBuf,
    /// The layer's forward error correction (parity in [`FEC_FILE`]), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec: Option<LayerFec>,
}

/// The conversion of every layer of an image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageConversion {
    /// The image's name in the store.
    pub name: String,
    /// Its manifest digest.
    pub manifest: Digest,
    /// The layers, base first.
    pub layers: Vec<ConvertedLayer>,
}

/// A layer's conversion and whether it was made now.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertedLayer {
    /// The conversion.
    #[serde(flatten)]
    pub conversion: LayerConversion,
    /// True when the conversion was already in the store.
    pub reused: bool,
}

/// Converts every layer of the stored image `name`.
pub fn convert_image(
    store: &Store,
    name: &str,
    layout: VerityLayout,
    progress: &dyn Fn(Event<'_>),
) -> Result<ImageConversion, ConvertError> {
    convert_image_with(store, name, layout, None, progress)
}

/// [`convert_image`], and with `fec_roots` each layer also gets parity with that many roots ([`fec::add`];
/// a layer converted before gets it added, or replaced when it had other roots).
pub fn convert_image_with(
    store: &Store,
    name: &str,
    layout: VerityLayout,
    fec_roots: Option<u32>,
    progress: &dyn Fn(Event<'_>),
) -> Result<ImageConversion, ConvertError> {
    let descriptor = store.lookup(name)?;
    let bytes = store.read_blob(&descriptor.digest, descriptor.size, MANIFEST_LIMIT, "manifest")?;
    let image = match manifest::parse(&descriptor.digest, &descriptor.media_type, &bytes)? {
        Manifest::Image(image) => image,
        Manifest::Index(_) => {
            return Err(ConvertError::NotAnImage {
                name: name.to_owned(),
                digest: descriptor.digest,
            });
        }
    };
    let count = image.layers.len();
    let mut layers = Vec::with_capacity(count);
    for (i, layer) in image.layers.iter().enumerate() {
        let label = format!("converting layer {}/{count} {}", i + 1, layer.digest.short());
        let mut converted = progress::task(progress, &label, layer.size, || {
            convert_layer_reporting(store, &layer.digest, layer.size, layout, progress)
        })?;
        if let Some(roots) = fec_roots {
            converted.conversion = fec::add(&converted.conversion, roots)?;
        }
        layers.push(converted);
    }
    Ok(ImageConversion {
        name: name.to_owned(),
        manifest: descriptor.digest,
        layers,
    })
}

/// The recorded conversion of a layer, if it exists.
pub fn existing(store: &Store, layer: &Digest, layout: VerityLayout) -> Result<Option<LayerConversion>, ConvertError> {
    let path = store.layer_dir(layer, layout.name()).join(RECORD_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ConvertError::Record { path, source }),
        Err(_) => Ok(None),
    }
}

/// Converts one stored layer blob (or returns its existing conversion).
pub fn convert_layer(
    store: &Store,
    layer: &Digest,
    size: u64,
    layout: VerityLayout,
) -> Result<ConvertedLayer, ConvertError> {
    convert_layer_reporting(store, layer, size, layout, &|_| {})
}

/// [`convert_layer`], reporting the layer blob's bytes as they are read ([`Event::Advance`]).
pub fn convert_layer_reporting(
    store: &Store,
    layer: &Digest,
    size: u64,
    layout: VerityLayout,
    progress: &dyn Fn(Event<'_>),
) -> Result<ConvertedLayer, ConvertError> {
    if let Some(conversion) = existing(store, layer, layout)? {
        return Ok(ConvertedLayer {
            conversion,
            reused: true,
        });
    }
    let final_dir = store.layer_dir(layer, layout.name());
    let tmp = store.temp_dir_for(&final_dir)?;
    let erofs_path = tmp.path().join(LAYER_FILE);
    let blob = Reader::new(BufReader::new(store.open_blob(layer)?), progress);
    let mut reader = HashingReader::new(blob, size);
    let options = Options {
        block_size: 4096,
        inline_data: false,
        build_time: Some(FileTime { secs: 0, nanos: 0 }),
        uuid: derived_uuid(&layer.as_bytes()[..16]),
    };
    erofs::build_from_tar(
        &erofs_path,
        &mut reader,
        options,
        Whiteouts::Aufs(OverlayNamespace::Trusted),
    )
    .map_err(|source| ConvertError::Erofs { layer: *layer, source })?;
    reader
        .finish(layer, size)
        .map_err(|e| ConvertError::Verity {
            layer: *layer,
            reason: format!("reading the layer blob: {e}"),
        })?
        .map_err(|source| ConvertError::LayerChanged { layer: *layer, source })?;
    let area = verity::build(&erofs_path, derived_uuid(&layer.as_bytes()[16..]))
        .map_err(|reason| ConvertError::Verity { layer: *layer, reason })?;
    let hashoffset = area
        .write(&erofs_path, layout, &tmp.path().join(VERITY_FILE))
        .map_err(|e| ConvertError::Verity {
            layer: *layer,
            reason: e.to_string(),
        })?;
    let conversion = LayerConversion {
        layer: *layer,
        layout,
        roothash: area.root_hash(),
        hashoffset,
        erofs_size: area.data_size(),
        data_blocks: area.data_blocks(),
        hash: "sha256".to_owned(),
        salt: verity_fuse::hex::encode(&verity::SALT),
        dir: final_dir.clone(),
        fec: None,
    };
    write_metadata(tmp.path(), &conversion)?;
    publish(tmp.path(), &final_dir)?;
    Ok(ConvertedLayer {
        conversion,
        reused: false,
    })
}

/// Writes `conversion`'s record and, in the containerd layout, its dm-verity sidecar (root hash and hash
/// offset) into `dir`, each file replaced whole.
pub fn write_metadata(dir: &Path, conversion: &LayerConversion) -> Result<(), StoreError> {
    if conversion.layout == VerityLayout::Containerd {
        let sidecar = serde_json::json!({ "roothash": conversion.roothash, "hashoffset": conversion.hashoffset });
        write_atomically(&dir.join(SIDECAR_FILE), sidecar.to_string().as_bytes())?;
    }
    let record = serde_json::to_vec_pretty(conversion).unwrap_or_default();
    write_atomically(&dir.join(RECORD_FILE), &record)
}

/// Renames a finished temporary directory into place; if another conversion got there first, keeps that one.
fn publish(tmp: &Path, final_dir: &Path) -> Result<(), StoreError> {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).map_err(|source| StoreError::Io {
        what: "setting permissions of",
        path: tmp.to_owned(),
        source,
    })?;
    match fs::rename(tmp, final_dir) {
        Ok(()) => Ok(()),
        Err(_) if final_dir.join(RECORD_FILE).is_file() => Ok(()),
        Err(source) => Err(StoreError::Io {
            what: "renaming a conversion into",
            path: final_dir.to_owned(),
            source,
        }),
    }
}

/// A UUID (version 4 form) taken from 16 bytes of a digest, so the same layer always gets the same one.
fn derived_uuid(bytes: &[u8]) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&bytes[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}
