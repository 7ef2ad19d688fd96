//! `verity-fuse status`: is the device verified or corrupted, with its counters (dm-verity's `V`/`C`).
//!
//! The text output starts with the fields `veritysetup status` prints, in its order and wording, read from
//! the table line the device loaded (for the FUSE backend, the line the kernel would load with the files as
//! devices), so a script reading veritysetup's output reads ours; the backend, the signature and the FUSE
//! device's counters follow. `--json` prints the record and counters as they are.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::backend::table::Table;
use crate::backend::{Backend, kernel};
use crate::fuse::StatusReport;
use crate::hash::Digest;
use crate::host;
use crate::rundir::{Info, Liveness, RunDir, SignatureCheck};

/// Arguments of `status`.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Name of the device.
    name: String,
    /// Directory holding open devices.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct StatusOutput<'a> {
    name: &'a str,
    backend: Backend,
    device: &'a std::path::Path,
    data: &'a std::path::Path,
    hash: &'a std::path::Path,
    root_hash: &'a Digest,
    signature: &'a SignatureCheck,
    table: &'a str,
    status: String,
    counters: Option<StatusReport>,
}

pub(crate) fn run(a: StatusArgs) -> Result<()> {
    let registry = RunDir::new(a.dir.as_deref())?;
    let entry = registry.open_entry(&a.name)?;
    let (liveness, info) = entry.liveness();
    let info: Info = match (liveness, info) {
        (Liveness::Active, Some(info)) => info,
        (Liveness::Opening, _) => bail!("device `{}` is still opening", a.name),
        _ => bail!(
            "device `{}` is stale: its server is gone; `verity-fuse close {}` cleans it up",
            a.name,
            a.name
        ),
    };
    let (status, counters) = match info.backend {
        Backend::Fuse => {
            let text = std::fs::read(entry.status_file())
                .with_context(|| format!("reading {}", entry.status_file().display()))?;
            let report: StatusReport = serde_json::from_slice(&text).context("parsing the status file")?;
            (report.status.clone(), Some(report))
        }
        Backend::Kernel => {
            let letter = kernel::status(&a.name)?;
            let status = if letter == 'V' { "verified" } else { "corrupted" };
            (status.to_owned(), None)
        }
    };
    let out = StatusOutput {
        name: &info.name,
        backend: info.backend,
        device: &info.device,
        data: &info.data,
        hash: &info.hash,
        root_hash: &info.root_hash,
        signature: &info.signature,
        table: &info.table,
        status,
        counters,
    };
    if a.json {
        out!("{}", serde_json::to_string_pretty(&out).expect("serialises"))?;
        return Ok(());
    }
    out!("{} is active.", out.device.display())?;
    out!("  type:        VERITY")?;
    let signed = if matches!(out.signature, SignatureCheck::None) {
        ""
    } else {
        " (with signature)"
    };
    out!("  status:      {}{signed}", out.status)?;
    print_table(out.table)?;
    out!(
        "  backend:     {}",
        if out.backend == Backend::Fuse { "fuse" } else { "kernel" }
    )?;
    match out.signature {
        SignatureCheck::None => out!("  signature:   none")?,
        SignatureCheck::Keyring { signer } => {
            out!("  signature:   verified by {}", signer.subject)?;
            out!("  signer sha256: {}", signer.fingerprint)?;
        }
        SignatureCheck::Kernel => out!("  signature:   checked by the kernel's trusted keyrings")?,
    }
    if let Some(c) = &out.counters {
        out!("  verified:    {} blocks", c.blocks_verified)?;
        out!("  corruptions: {}", c.corruptions)?;
        if let Some(first) = &c.first_corrupted {
            out!("  first corrupted: {first}")?;
        }
        if c.zero_blocks > 0 {
            out!("  zero blocks: {}", c.zero_blocks)?;
        }
        if c.unchecked_reads > 0 {
            out!("  unchecked reads: {}", c.unchecked_reads)?;
        }
        if c.fec_corrected > 0 || c.fec_uncorrectable > 0 {
            out!("  FEC corrected: {} blocks", c.fec_corrected)?;
            out!("  FEC uncorrectable: {} blocks", c.fec_uncorrectable)?;
        }
        if c.io_errors > 0 {
            out!("  I/O errors:  {}", c.io_errors)?;
        }
        if let Some(h) = &c.halted {
            out!("  halted:      the kernel would {h} here")?;
        }
    }
    Ok(())
}

/// Prints the table's fields as `veritysetup status` does: sizes and offsets in 512-byte sectors, and each
/// loop device's backing file after it.
fn print_table(line: &str) -> Result<()> {
    let table = Table::parse(line)?;
    let loop_line = |label: &str, device: &str| -> Result<()> {
        if let Some(file) = host::loop_device(Path::new(device)).and_then(|l| l.backing_path) {
            out!("  {label} {}", file.display())?;
        }
        Ok(())
    };
    out!("  hash type:   {}", table.version)?;
    out!("  data block:  {}", table.data_block_size)?;
    out!("  hash block:  {}", table.hash_block_size)?;
    out!("  hash name:   {}", table.algorithm)?;
    out!("  salt:        {}", table.salt)?;
    out!("  data device: {}", table.data_device)?;
    loop_line("data loop:  ", &table.data_device)?;
    out!("  size:        {} sectors", table.sectors)?;
    out!("  mode:        readonly")?;
    out!("  hash device: {}", table.hash_device)?;
    loop_line("hash loop:  ", &table.hash_device)?;
    out!("  hash offset: {} sectors", table.hash_offset_bytes() / 512)?;
    if let Some(fec) = &table.fec {
        out!("  FEC device:  {}", fec.device)?;
        loop_line("FEC loop:   ", &fec.device)?;
        out!("  FEC offset:  {} sectors", fec.offset_bytes(&table) / 512)?;
        out!("  FEC roots:   {}", fec.roots)?;
    }
    out!("  root hash:   {}", table.root_hash)?;
    if !table.flags.is_empty() {
        out!("  flags:       {}", table.flags.join(" "))?;
    }
    Ok(())
}
