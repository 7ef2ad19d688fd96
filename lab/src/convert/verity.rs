//! The dm-verity side of a conversion: the fixed parameters, the hash area (superblock padded to one
//! 4096-byte block, then the tree, top level first) and writing it in either layout.
//!
//! The tree is built with `verity_fuse::tree::build`; the bytes written are the same `veritysetup format`
//! would write with `--salt` of 32 zero bytes, `--uuid` and, for containerd's layout, `--hash-offset`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use verity_fuse::params::ParamError;
use verity_fuse::source::FileSource;
use verity_fuse::{Digest, Geometry, Placement, VerityParams, tree};

use crate::root_hash::RootHash;

/// Block size of data and hash blocks.
pub const BLOCK: u64 = 4096;

/// The salt containerd's snapshotter uses: 32 zero bytes.
pub const SALT: [u8; 32] = [0; 32];

/// Where the tree goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerityLayout {
    /// Appended to `layer.erofs` at its 4096-aligned end, with the `layer.erofs.dmverity` sidecar.
    Containerd,
    /// In `layer.erofs.verity`, superblock at offset 0.
    Separate,
}

impl VerityLayout {
    /// The layout's name (also its directory under the layer).
    pub fn name(self) -> &'static str {
        match self {
            VerityLayout::Containerd => "containerd",
            VerityLayout::Separate => "separate",
        }
    }
}

impl std::str::FromStr for VerityLayout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "containerd" => Ok(Self::Containerd),
            "separate" => Ok(Self::Separate),
            _ => Err(format!("layout {text:?} is not containerd or separate")),
        }
    }
}

impl std::fmt::Display for VerityLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The geometry of a tree over `data_size` bytes (a multiple of 4096) with the superblock at `hash_offset`.
pub fn geometry_for(data_size: u64, hash_offset: u64) -> Result<Geometry, ParamError> {
    Geometry::new(
        VerityParams::new(data_size / BLOCK, SALT.to_vec()),
        Placement::with_superblock(hash_offset),
    )
}

/// A superblock (padded to one block) followed by the tree: what goes at the hash offset.
#[derive(Debug, Clone)]
pub struct HashArea {
    data_blocks: u64,
    root: Digest,
    bytes: Vec<u8>,
}

impl HashArea {
    /// Lays out the hash area of a built tree. The tree does not depend on where it is placed, so one
    /// area serves both layouts.
    pub fn new(geometry: &Geometry, tree: &tree::Tree, uuid: [u8; 16]) -> Self {
        Self {
            data_blocks: geometry.params.data_blocks,
            root: tree.root,
            bytes: tree.hash_area(geometry, uuid),
        }
    }

    /// The root hash.
    pub fn root_hash(&self) -> RootHash {
        RootHash::from(self.root)
    }

    /// Data blocks covered.
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// Bytes of data covered.
    pub fn data_size(&self) -> u64 {
        self.data_blocks * BLOCK
    }

    /// The bytes at the hash offset.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the area for `layout` (into `erofs` at its end, or into a new `verity` file) and returns the
    /// hash offset.
    pub fn write(&self, erofs: &Path, layout: VerityLayout, verity: &Path) -> io::Result<u64> {
        match layout {
            VerityLayout::Containerd => {
                let file = OpenOptions::new().write(true).open(erofs)?;
                file.write_all_at(&self.bytes, self.data_size())?;
                file.sync_all()?;
                Ok(self.data_size())
            }
            VerityLayout::Separate => {
                let file = File::create(verity)?;
                file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
                file.write_all_at(&self.bytes, 0)?;
                file.sync_all()?;
                Ok(0)
            }
        }
    }
}

/// Pads the EROFS image at `path` to a whole number of blocks and builds its tree.
pub fn build(path: &Path, uuid: [u8; 16]) -> Result<HashArea, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let data_size = len.next_multiple_of(BLOCK);
    if data_size != len {
        file.set_len(data_size).map_err(|e| e.to_string())?;
    }
    let geometry = geometry_for(data_size, 0).map_err(|e| e.to_string())?;
    let source = FileSource::new(file).map_err(|e| e.to_string())?;
    let tree = tree::build(&source, &geometry, tree::default_threads(), &|_| {}).map_err(|e| e.to_string())?;
    Ok(HashArea::new(&geometry, &tree, uuid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_fuse::superblock::Superblock;

    #[test]
    fn the_hash_area_is_a_padded_superblock_then_the_tree() {
        let data = vec![5u8; 3 * BLOCK as usize];
        let geometry = geometry_for(data.len() as u64, 0).unwrap();
        let tree = tree::build(&data[..], &geometry, 1, &|_| {}).unwrap();
        let area = HashArea::new(&geometry, &tree, [7; 16]);
        assert_eq!(
            area.bytes().len(),
            2 * BLOCK as usize,
            "superblock block + one leaf block"
        );
        let sb = Superblock::parse(&area.bytes()[..512]).unwrap();
        assert_eq!(sb.params.salt, SALT);
        assert_eq!(sb.params.data_blocks, 3);
        assert_eq!(sb.uuid, [7; 16]);
        assert!(area.bytes()[512..BLOCK as usize].iter().all(|&b| b == 0));
        let moved = geometry_for(data.len() as u64, 3 * BLOCK).unwrap();
        let again = tree::build(&data[..], &moved, 1, &|_| {}).unwrap();
        assert_eq!(again.root, tree.root, "placement does not change the tree");
    }
}
