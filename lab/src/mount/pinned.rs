//! The pinned "standard mountpoints" layer of the hardened profile.
//!
//! A container runtime bind-mounts `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname` and mounts `/dev`,
//! `/proc`, `/sys` and `/tmp` over the rootfs; with a read-only overlay and no upperdir, those mountpoints
//! must already exist. The hardened design adds one small EROFS layer holding exactly them, on top of the
//! image's layers, and pins its root hash in the binary, so no file on the node can swap it. The layer is
//! built deterministically by our writer; [`ensure`] writes it into the store once, and mounts always use
//! the compiled-in `ROOT_HASH`, whatever the file on disk now holds.

use std::fs;
use std::path::Path;

use super::{MountError, PlannedLayer};
use crate::convert::{self, VerityLayout, verity};
use crate::erofs::{self, FileTime, Options, OverlayNamespace, Whiteouts};
use crate::root_hash::RootHash;
use crate::store::{Store, StoreError};

/// The layer's name in plans and records.
pub const NAME: &str = "pinned:mountpoints";
/// The pinned root hash (sha256, 4096/4096, 32 zero bytes of salt, as every converted layer).
pub(crate) const ROOT_HASH: &str = "de1f699b6c4e409cd9dce40e7bd1fbd7c1190badcce061cbfc974283ef65e1b9";
/// The layer's EROFS data blocks (its hash tree starts right after them).
pub(crate) const DATA_BLOCKS: u64 = 8;

/// Directories (mode) and empty files (mode) of the layer.
const ENTRIES: &[(&str, bool, u32)] = &[
    ("dev", true, 0o755),
    ("etc", true, 0o755),
    ("etc/hostname", false, 0o644),
    ("etc/hosts", false, 0o644),
    ("etc/resolv.conf", false, 0o644),
    ("proc", true, 0o555),
    ("sys", true, 0o555),
    ("tmp", true, 0o1777),
];

/// The layer as an uncompressed tar stream.
pub fn tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for &(path, dir, mode) in ENTRIES {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        header.set_cksum();
        builder
            .append_data(&mut header, path, std::io::empty())
            .expect("appending to a Vec cannot fail");
    }
    builder.into_inner().expect("finishing a Vec cannot fail")
}

/// Builds the layer (EROFS with its tree appended, containerd layout) at `path`; returns its root hash.
pub(crate) fn build(path: &Path) -> Result<RootHash, String> {
    let options = Options {
        block_size: 4096,
        inline_data: false,
        build_time: Some(FileTime { secs: 0, nanos: 0 }),
        uuid: [0; 16],
    };
    erofs::build_from_tar(path, &tar()[..], options, Whiteouts::Aufs(OverlayNamespace::Trusted))
        .map_err(|e| e.to_string())?;
    let area = verity::build(path, [0; 16])?;
    area.write(path, VerityLayout::Containerd, Path::new("/nonexistent"))
        .map_err(|e| e.to_string())?;
    Ok(area.root_hash())
}

/// The pinned layer in `store` (built now if absent), with the compiled-in root hash.
pub fn ensure(store: &Store) -> Result<PlannedLayer, MountError> {
    let dir = store.root().join("pinned").join("mountpoints");
    let file = dir.join(convert::LAYER_FILE);
    if !file.is_file() {
        let tmp = store.temp_dir_for(&dir)?;
        let built = tmp.path().join(convert::LAYER_FILE);
        let found = build(&built).map_err(|reason| MountError::Setup {
            target: dir.clone(),
            reason: format!("building the standard-mountpoints layer: {reason}"),
        })?;
        if found != *ROOT_HASH {
            return Err(MountError::PinnedMismatch {
                pinned: ROOT_HASH,
                found,
            });
        }
        let _ = fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755));
        if let Err(source) = fs::rename(tmp.keep(), &dir)
            && !file.is_file()
        {
            return Err(StoreError::Io {
                what: "renaming the standard-mountpoints layer into",
                path: dir,
                source,
            }
            .into());
        }
    }
    Ok(PlannedLayer {
        name: NAME.to_owned(),
        erofs: file.clone(),
        erofs_size: DATA_BLOCKS * verity::BLOCK,
        hash: file,
        hashoffset: DATA_BLOCKS * verity::BLOCK,
        root_hash: ROOT_HASH.parse().ok(),
        fec: None,
        root_hash_signature: None,
        signature_required: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_builds_to_its_pinned_root_hash_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.erofs");
        let root = build(&path).unwrap();
        let len = fs::metadata(&path).unwrap().len();
        assert_eq!(
            (root.to_string().as_str(), len / verity::BLOCK - 2),
            (ROOT_HASH, DATA_BLOCKS),
            "data blocks, then a superblock block and one leaf block"
        );
    }
}
