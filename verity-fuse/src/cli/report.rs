//! What `format` and `dump` print: veritysetup's header lines, or one JSON object with `--json`.

use super::output::OutputError;
use crate::hash::{Digest, EngineName};
use crate::hex;
use crate::params::Geometry;
use crate::superblock::format_uuid;

/// Everything known about a tree, printed as veritysetup does or as JSON.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Header {
    pub(crate) device: String,
    pub(crate) uuid: Option<String>,
    pub(crate) hash_type: u32,
    pub(crate) data_blocks: u64,
    pub(crate) data_block_size: u32,
    pub(crate) hash_blocks: u64,
    pub(crate) hash_block_size: u32,
    pub(crate) hash_algorithm: String,
    pub(crate) kernel_supported: bool,
    pub(crate) salt: String,
    pub(crate) root_hash: Option<Digest>,
    pub(crate) hash_offset: u64,
    pub(crate) superblock: bool,
    pub(crate) hash_device_size: Option<u64>,
    pub(crate) fec: Option<FecHeader>,
    /// The SHA-256 engine that built the tree (`format` only; in the JSON alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) engine: Option<EngineName>,
}

/// The FEC lines veritysetup adds when given a FEC device.
#[derive(Debug, serde::Serialize)]
pub(crate) struct FecHeader {
    pub(crate) roots: u32,
    /// Blocks covered (`fec_blocks` in the table).
    pub(crate) covered_blocks: u64,
    /// Blocks of parity (veritysetup's "FEC blocks").
    pub(crate) parity_blocks: u64,
    pub(crate) offset: u64,
    pub(crate) fec_device_size: u64,
}

impl FecHeader {
    pub(crate) fn new(layout: &crate::fec::FecLayout) -> Self {
        Self {
            roots: layout.params.roots,
            covered_blocks: layout.params.blocks,
            parity_blocks: layout.parity_blocks(),
            offset: layout.params.offset,
            fec_device_size: layout.parity_size(),
        }
    }
}

impl Header {
    pub(crate) fn new(device: &str, geometry: &Geometry, uuid: Option<&[u8; 16]>) -> Self {
        let p = &geometry.params;
        Self {
            device: device.to_owned(),
            uuid: uuid.map(format_uuid),
            hash_type: p.hash_type.number(),
            data_blocks: p.data_blocks,
            data_block_size: p.data_block_size,
            hash_blocks: geometry.tree_blocks(),
            hash_block_size: p.hash_block_size,
            hash_algorithm: p.algorithm.to_string(),
            kernel_supported: p.algorithm.kernel_supported(),
            salt: if p.salt.is_empty() {
                "-".into()
            } else {
                hex::encode(&p.salt)
            },
            root_hash: None,
            hash_offset: geometry.placement.hash_offset,
            superblock: geometry.placement.superblock,
            hash_device_size: None,
            engine: None,
            fec: None,
        }
    }

    /// Prints the header as veritysetup does, or as JSON.
    pub(crate) fn print(&self, json: bool) -> Result<(), OutputError> {
        if json {
            return out!("{}", serde_json::to_string_pretty(self).expect("header serialises"));
        }
        out!("VERITY header information for {}", self.device)?;
        out!("UUID:            \t{}", self.uuid.as_deref().unwrap_or(""))?;
        out!("Hash type:       \t{}", self.hash_type)?;
        out!("Data blocks:     \t{}", self.data_blocks)?;
        out!("Data block size: \t{}", self.data_block_size)?;
        out!("Hash blocks:     \t{}", self.hash_blocks)?;
        out!("Hash block size: \t{}", self.hash_block_size)?;
        out!("Hash algorithm:  \t{}", self.hash_algorithm)?;
        if let Some(fec) = &self.fec {
            out!("FEC RS roots:   \t{}", fec.roots)?;
            out!("FEC blocks:     \t{}", fec.parity_blocks)?;
        }
        out!("Salt:            \t{}", self.salt)?;
        if let Some(root) = &self.root_hash {
            out!("Root hash:      \t{root}")?;
        }
        if let Some(size) = self.hash_device_size {
            out!("Hash device size: \t{size} [bytes]")?;
        }
        if let Some(fec) = &self.fec {
            out!("FEC device size: \t{} [bytes]", fec.fec_device_size)?;
        }
        Ok(())
    }
}

/// Warns on stderr when the algorithm is not one the kernel accepts.
pub(crate) fn warn_lab_only(geometry: &Geometry) {
    if !geometry.params.algorithm.kernel_supported() {
        eprintln!(
            "WARNING: {} is lab-only: kernel dm-verity and veritysetup do not accept it",
            geometry.params.algorithm
        );
    }
}
