//! `verity-fuse dump`: print the superblock of a hash device.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::read_superblock;
use super::report::Header;
use crate::params::{Geometry, Placement};

/// Arguments of `dump`.
#[derive(Args, Debug)]
pub(crate) struct DumpArgs {
    /// The hash device (file) holding a superblock.
    hash: PathBuf,
    /// Byte offset of the superblock.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    hash_offset: u64,
    /// Print one JSON object instead of veritysetup's lines.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: DumpArgs) -> Result<()> {
    let sb = read_superblock(&a.hash, a.hash_offset)?;
    let geometry = Geometry::new(sb.params, Placement::with_superblock(a.hash_offset))?;
    Header::new(&a.hash.display().to_string(), &geometry, Some(&sb.uuid)).print(a.json)?;
    Ok(())
}
