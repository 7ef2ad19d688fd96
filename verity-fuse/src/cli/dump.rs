//! `verity-fuse dump`: print the superblock of a hash device, and with `--fec-device` the FEC parameters
//! (which travel on the command line and in the table, never in the superblock).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{FecArgs, read_superblock};
use super::report::{FecHeader, Header};
use crate::params::{Geometry, Placement};

/// Arguments of `dump`.
#[derive(Args, Debug)]
pub(crate) struct DumpArgs {
    /// The hash device (file) holding a superblock.
    hash: PathBuf,
    /// Byte offset of the superblock.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    hash_offset: u64,
    #[command(flatten)]
    fec: FecArgs,
    /// Print one JSON object instead of veritysetup's lines.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: DumpArgs) -> Result<()> {
    let sb = read_superblock(&a.hash, a.hash_offset)?;
    let geometry = Geometry::new(sb.params, Placement::with_superblock(a.hash_offset))?;
    let mut header = Header::new(&a.hash.display().to_string(), &geometry, Some(&sb.uuid));
    if let Some(fec) = &a.fec.fec_device {
        let hash_len = std::fs::metadata(&a.hash)?.len();
        header.fec = Some(FecHeader::new(&a.fec.layout(&geometry, fec, None, &a.hash, hash_len)?));
    }
    header.print(a.json);
    Ok(())
}
