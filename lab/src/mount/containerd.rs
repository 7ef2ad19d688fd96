//! The trust decisions of containerd's EROFS snapshotter with dm-verity, for the `containerd-dmverity` and
//! `containerd-dmverity-auto` profiles (`docs/profiles.md` cites the containerd code each follows).
//!
//! containerd's differ converts a layer on the node, appends the dm-verity tree to `layer.erofs` and writes
//! the root hash it computed into the unsigned sidecar `layer.erofs.dmverity`, `{"roothash": "<hex>",
//! "hashoffset": <bytes>}`. At mount the snapshotter only looks whether that sidecar exists: with it, the
//! layer's device is opened with the sidecar's root hash and hash offset; without it, `dmverity_mode = "on"`
//! refuses the layer and `"auto"` mounts the whole `layer.erofs` as plain EROFS. Nothing compares the root
//! hash with anything the publisher stated. `apply` makes the same decisions on a planned layer's
//! conversion; the sidecar is parsed here, where it is read.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::MountError;
use crate::convert::{LAYER_FILE, LayerConversion, SIDECAR_FILE};
use crate::profile::DmverityMode;
use crate::root_hash::RootHash;
use crate::store::StoreError;

/// The largest sidecar read: a root hash and an offset take well under a kilobyte.
const SIDECAR_LIMIT: u64 = 4096;

/// What `layer.erofs.dmverity` holds, as containerd writes and reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sidecar {
    /// The root hash the layer's device is opened with.
    pub roothash: RootHash,
    /// Where the verity superblock starts in `layer.erofs` (the EROFS data rounded up to 4096 bytes).
    pub hashoffset: u64,
}

#[derive(Deserialize)]
struct SidecarText {
    roothash: String,
    hashoffset: u64,
}

/// Reads the sidecar in `dir`: `None` when there is none (containerd's "not found"); any other failure to
/// read it, or text that is not a sidecar, is an error (containerd refuses to guess).
pub fn read_sidecar(dir: &Path) -> Result<Option<Sidecar>, MountError> {
    let path = dir.join(SIDECAR_FILE);
    let bytes = match fs::metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Ok(meta) if meta.len() > SIDECAR_LIMIT => {
            return Err(MountError::Sidecar {
                path,
                reason: format!("{} bytes, more than a sidecar holds", meta.len()),
            });
        }
        Ok(_) => fs::read(&path),
        Err(e) => Err(e),
    }
    .map_err(|source| StoreError::Io {
        what: "reading the dm-verity sidecar",
        path: path.clone(),
        source,
    })?;
    let text: SidecarText = serde_json::from_slice(&bytes).map_err(|e| MountError::Sidecar {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let roothash = text
        .roothash
        .parse()
        .map_err(|e: crate::root_hash::RootHashError| MountError::Sidecar {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    Ok(Some(Sidecar {
        roothash,
        hashoffset: text.hashoffset,
    }))
}

/// A layer as containerd would mount it under `mode`: with its sidecar, the conversion's hash offset and
/// covered data become the sidecar's (the tree's superblock sits at the end of the data) and the root hash is
/// the sidecar's; without one, `On` refuses the layer and `Auto` plans the whole `layer.erofs` unverified.
pub(crate) fn apply(
    mut conversion: LayerConversion,
    mode: DmverityMode,
) -> Result<(LayerConversion, Option<RootHash>), MountError> {
    match (read_sidecar(&conversion.dir)?, mode) {
        (Some(sidecar), _) => {
            conversion.hashoffset = sidecar.hashoffset;
            conversion.erofs_size = sidecar.hashoffset;
            Ok((conversion, Some(sidecar.roothash)))
        }
        (None, DmverityMode::On) => Err(MountError::VerityMetadataMissing {
            layer: conversion.layer.to_string(),
            path: conversion.dir.join(SIDECAR_FILE),
        }),
        (None, DmverityMode::Auto) => {
            let file: PathBuf = conversion.dir.join(LAYER_FILE);
            conversion.erofs_size = fs::metadata(&file)
                .map_err(|source| StoreError::Io {
                    what: "sizing the layer",
                    path: file,
                    source,
                })?
                .len();
            Ok((conversion, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion(dir: &Path) -> LayerConversion {
        LayerConversion {
            layer: crate::oci::digest::Digest::of(b"layer"),
            layout: crate::convert::VerityLayout::Containerd,
            roothash: "11".repeat(32).parse().unwrap(),
            hashoffset: 8192,
            erofs_size: 8192,
            data_blocks: 2,
            hash: "sha256".to_owned(),
            salt: "00".repeat(32),
            dir: dir.to_owned(),
            fec: None,
        }
    }

    #[test]
    fn the_sidecar_decides_root_hash_and_offset_and_its_absence_follows_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LAYER_FILE), vec![0u8; 12288]).unwrap();
        let (_, root) = apply(conversion(dir.path()), DmverityMode::Auto).unwrap();
        assert_eq!(root, None, "auto mounts a layer without a sidecar unverified");
        let (planned, _) = apply(conversion(dir.path()), DmverityMode::Auto).unwrap();
        assert_eq!(planned.erofs_size, 12288, "the whole file, as a loop device over it");
        assert!(matches!(
            apply(conversion(dir.path()), DmverityMode::On),
            Err(MountError::VerityMetadataMissing { .. })
        ));

        let sidecar = format!("{{\"roothash\":\"{}\",\"hashoffset\":4096}}", "22".repeat(32));
        fs::write(dir.path().join(SIDECAR_FILE), sidecar).unwrap();
        for mode in [DmverityMode::On, DmverityMode::Auto] {
            let (planned, root) = apply(conversion(dir.path()), mode).unwrap();
            assert_eq!(root, Some("22".repeat(32).parse().unwrap()));
            assert_eq!((planned.hashoffset, planned.erofs_size), (4096, 4096));
        }

        fs::write(dir.path().join(SIDECAR_FILE), "{\"roothash\":\"\",\"hashoffset\":4096}").unwrap();
        assert!(matches!(read_sidecar(dir.path()), Err(MountError::Sidecar { .. })));
        fs::write(dir.path().join(SIDECAR_FILE), vec![b' '; 5000]).unwrap();
        assert!(matches!(read_sidecar(dir.path()), Err(MountError::Sidecar { .. })));
    }
}
