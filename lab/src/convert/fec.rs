//! Forward error correction for a converted layer: Reed-Solomon parity over its data and hash blocks, in
//! `layer.erofs.fec` beside the layer, as `veritysetup format --fec-device layer.erofs.fec --fec-roots N`
//! writes it (parity at offset 0 of its own file, covering the EROFS data blocks and then the tree's blocks).
//!
//! ```text
//! layer.erofs      [EROFS data][superblock][tree]     (containerd; separate: the tree in layer.erofs.verity)
//! layer.erofs.fec  [parity: rounds × 4096 × roots]    fec_blocks = data blocks + tree blocks, fec_start 0
//! ```
//!
//! The parity needs no signature: a block corrected from it is served only when its digest matches the tree,
//! whose root hash is the trusted one. Its parameters (roots, covered blocks) are recorded in
//! `conversion.json` and, by `sign`, in the layer's signed descriptor.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use verity_fuse::fec::{self, FecLayout, FecParamError, FecParams};
use verity_fuse::source::FileSource;
use verity_fuse::{ErrorClass, Geometry};

use super::{LAYER_FILE, LayerConversion, VERITY_FILE, VerityLayout, verity};
use crate::oci::digest::Digest;
use crate::store::{StoreError, write_atomically};

/// The parity file's name, beside `layer.erofs`.
pub const FEC_FILE: &str = "layer.erofs.fec";

/// A layer's forward error correction parameters, as `conversion.json` and the signed descriptor carry them;
/// the parity starts at offset 0 of [`FEC_FILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFec {
    /// Parity bytes per 255-byte codeword (`--fec-roots`, 2 to 24).
    pub roots: u32,
    /// Blocks the parity covers: the data blocks, then the tree's blocks (the table's `fec_blocks`).
    pub blocks: u64,
}

impl LayerFec {
    /// The parameters as the verified device and the kernel table take them.
    pub fn params(&self) -> FecParams {
        FecParams {
            roots: self.roots,
            blocks: self.blocks,
            offset: 0,
        }
    }
}

/// Why a layer's parity cannot be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FecError {
    /// The parameters do not fit the layer's tree (roots out of range, too few covered blocks).
    #[error("layer {layer}: FEC parameters: {source}")]
    Params {
        /// The layer (its digest).
        layer: String,
        /// What does not fit.
        #[source]
        source: FecParamError,
    },
    /// The parameters cover another number of blocks than the layer's data and tree blocks.
    #[error("layer {layer}: FEC over {blocks} blocks, but the layer has {needed} data and tree blocks")]
    Blocks {
        /// The layer (its digest).
        layer: String,
        /// Blocks the parameters cover.
        blocks: u64,
        /// The layer's data and tree blocks.
        needed: u64,
    },
    /// The parity file is not the size the parameters give.
    #[error("layer {layer}: {} holds {len} bytes, the FEC parameters ({roots} roots over {blocks} blocks) give {expected}", path.display())]
    ParitySize {
        /// The layer (its digest).
        layer: String,
        /// The parity file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The size the parameters give.
        expected: u64,
        /// Roots.
        roots: u32,
        /// Covered blocks.
        blocks: u64,
    },
    /// The recorded tree does not make a valid geometry.
    #[error("layer {layer}: {source}")]
    Geometry {
        /// The layer (its digest).
        layer: String,
        /// The error.
        #[source]
        source: verity_fuse::params::ParamError,
    },
    /// A layer file could not be read, or the parity not written.
    #[error("layer {layer}: {}: {source}", path.display())]
    Io {
        /// The layer (its digest).
        layer: String,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the parity or the record into the store failed.
    #[error("layer {layer}: {source}")]
    Store {
        /// The layer (its digest).
        layer: String,
        /// The error.
        #[source]
        source: StoreError,
    },
}

impl FecError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Params { .. } | Self::Blocks { .. } | Self::ParitySize { .. } | Self::Geometry { .. } => {
                ErrorClass::BadInput
            }
            Self::Io { .. } => ErrorClass::Io,
            Self::Store { source, .. } => source.class(),
        }
    }
}

/// The tree geometry a conversion records.
fn geometry(conversion: &LayerConversion) -> Result<Geometry, FecError> {
    verity::geometry_for(
        conversion.data_blocks.saturating_mul(verity::BLOCK),
        conversion.hashoffset,
    )
    .map_err(|source| FecError::Geometry {
        layer: conversion.layer.to_string(),
        source,
    })
}

/// The blocks parity must cover for `conversion`'s tree: its data blocks and its tree blocks.
pub fn covered_blocks(conversion: &LayerConversion) -> Result<u64, FecError> {
    let g = geometry(conversion)?;
    Ok(g.params.data_blocks + g.tree_blocks())
}

/// The validated layout of `fec` over `conversion`'s tree: the parity must cover exactly its data and tree
/// blocks.
pub fn layout(conversion: &LayerConversion, fec: LayerFec) -> Result<FecLayout, FecError> {
    let g = geometry(conversion)?;
    let needed = g.params.data_blocks + g.tree_blocks();
    if fec.blocks != needed {
        return Err(FecError::Blocks {
            layer: conversion.layer.to_string(),
            blocks: fec.blocks,
            needed,
        });
    }
    FecLayout::new(&g, fec.params()).map_err(|source| FecError::Params {
        layer: conversion.layer.to_string(),
        source,
    })
}

/// The file holding `conversion`'s hash area.
pub fn hash_file(conversion: &LayerConversion) -> PathBuf {
    match conversion.layout {
        VerityLayout::Containerd => conversion.dir.join(LAYER_FILE),
        VerityLayout::Separate => conversion.dir.join(VERITY_FILE),
    }
}

fn open(layer: &Digest, path: &Path) -> Result<FileSource, FecError> {
    FileSource::open(path).map_err(|source| FecError::Io {
        layer: layer.to_string(),
        path: path.to_owned(),
        source,
    })
}

/// The parity file of `conversion`, checked to be exactly the size `fec` gives.
pub fn open_parity(conversion: &LayerConversion, fec: LayerFec) -> Result<FileSource, FecError> {
    let layout = layout(conversion, fec)?;
    let path = conversion.dir.join(FEC_FILE);
    let parity = open(&conversion.layer, &path)?;
    check_size(
        &conversion.layer.to_string(),
        &path,
        verity_fuse::ReadAt::len(&parity),
        &layout,
    )?;
    Ok(parity)
}

/// Checks that a parity file of `len` bytes is exactly what `layout` gives.
pub fn check_size(layer: &str, path: &Path, len: u64, layout: &FecLayout) -> Result<(), FecError> {
    if len == layout.parity_size() {
        return Ok(());
    }
    Err(FecError::ParitySize {
        layer: layer.to_owned(),
        path: path.to_owned(),
        len,
        expected: layout.parity_size(),
        roots: layout.params.roots,
        blocks: layout.params.blocks,
    })
}

/// The parity of a planned layer (`name`) over `geometry`: the file, checked to be exactly the size `fec`
/// gives, and the parameters the verified device takes.
pub fn open_planned(
    name: &str,
    file: &Path,
    geometry: &Geometry,
    fec: LayerFec,
) -> Result<(FileSource, FecParams), FecError> {
    let layout = FecLayout::new(geometry, fec.params()).map_err(|source| FecError::Params {
        layer: name.to_owned(),
        source,
    })?;
    let parity = FileSource::open(file).map_err(|source| FecError::Io {
        layer: name.to_owned(),
        path: file.to_owned(),
        source,
    })?;
    check_size(name, file, verity_fuse::ReadAt::len(&parity), &layout)?;
    Ok((parity, fec.params()))
}

/// Writes `roots` parity for `conversion` into its directory (the file replaced whole) and returns the
/// conversion with its FEC recorded; the record is rewritten last, so a failure leaves the previous one.
/// A conversion that already has parity with `roots` is returned as it is.
pub fn add(conversion: &LayerConversion, roots: u32) -> Result<LayerConversion, FecError> {
    let fec = LayerFec {
        roots,
        blocks: covered_blocks(conversion)?,
    };
    if conversion.fec == Some(fec) && open_parity(conversion, fec).is_ok() {
        return Ok(conversion.clone());
    }
    let layout = layout(conversion, fec)?;
    let data_path = conversion.dir.join(LAYER_FILE);
    let data = open(&conversion.layer, &data_path)?;
    let hash = open(&conversion.layer, &hash_file(conversion))?;
    let parity =
        fec::encode(&layout, &data, &hash, verity_fuse::tree::default_threads()).map_err(|e| FecError::Io {
            layer: conversion.layer.to_string(),
            path: data_path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
    let store = |source| FecError::Store {
        layer: conversion.layer.to_string(),
        source,
    };
    write_atomically(&conversion.dir.join(FEC_FILE), &parity).map_err(store)?;
    let mut updated = conversion.clone();
    updated.fec = Some(fec);
    super::write_metadata(&conversion.dir, &updated).map_err(store)?;
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converted(dir: &Path) -> LayerConversion {
        let erofs = dir.join(LAYER_FILE);
        std::fs::write(
            &erofs,
            (0..3 * verity::BLOCK).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        )
        .unwrap();
        let area = verity::build(&erofs, [1; 16]).unwrap();
        let hashoffset = area
            .write(&erofs, VerityLayout::Containerd, &dir.join(VERITY_FILE))
            .unwrap();
        LayerConversion {
            layer: Digest::of(b"layer"),
            layout: VerityLayout::Containerd,
            roothash: area.root_hash(),
            hashoffset,
            erofs_size: area.data_size(),
            data_blocks: area.data_blocks(),
            hash: "sha256".to_owned(),
            salt: verity_fuse::hex::encode(&verity::SALT),
            dir: dir.to_owned(),
            fec: None,
        }
    }

    #[test]
    fn parity_that_does_not_fit_the_layer_is_refused_naming_it_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let conversion = converted(dir.path());
        let layer = conversion.layer.to_string();
        let error = add(&conversion, 30).unwrap_err();
        assert!(
            matches!(&error, FecError::Params { layer: l, .. } if *l == layer),
            "{error}"
        );
        assert_eq!(error.class(), ErrorClass::BadInput);
        assert!(
            !dir.path().join(FEC_FILE).exists(),
            "nothing written for refused parameters"
        );

        let with = add(&conversion, 2).unwrap();
        let fec = with.fec.unwrap();
        assert_eq!(fec.blocks, 3 + 1, "three data blocks and one tree block");
        open_parity(&with, fec).unwrap();
        let more = LayerFec {
            blocks: fec.blocks + 1,
            ..fec
        };
        assert!(matches!(layout(&with, more), Err(FecError::Blocks { needed: 4, .. })));

        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(FEC_FILE))
            .unwrap();
        file.set_len(100).unwrap();
        let error = open_parity(&with, fec).unwrap_err();
        assert!(
            matches!(&error, FecError::ParitySize { layer: l, len: 100, .. } if *l == layer),
            "{error}"
        );
        assert!(error.to_string().contains(&layer), "{error}");
        let repaired = add(&with, 2).unwrap();
        open_parity(&repaired, fec).expect("a parity file of the wrong size is written again");
    }
}
