//! `verity-fuse status`: is the device verified or corrupted, with its counters (dm-verity's `V`/`C`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::backend::{Backend, kernel};
use crate::fuse::StatusReport;
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
    root_hash: &'a str,
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
    out!(
        "  backend:     {}",
        if out.backend == Backend::Fuse { "fuse" } else { "kernel" }
    )?;
    out!("  status:      {}", out.status)?;
    out!("  data device: {}", out.data.display())?;
    out!("  hash device: {}", out.hash.display())?;
    out!("  root hash:   {}", out.root_hash)?;
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
