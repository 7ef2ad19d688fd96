//! `verity-fuse status`: is the device verified or corrupted, with its counters (dm-verity's `V`/`C`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::backend::{Backend, kernel};
use crate::fuse::StatusReport;
use crate::registry::{Info, Liveness, Registry, SignatureCheck};

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
    let registry = Registry::new(a.dir.as_deref())?;
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
        println!("{}", serde_json::to_string_pretty(&out).expect("serialises"));
        return Ok(());
    }
    println!("{} is active.", out.device.display());
    println!("  type:        VERITY");
    println!(
        "  backend:     {}",
        if out.backend == Backend::Fuse { "fuse" } else { "kernel" }
    );
    println!("  status:      {}", out.status);
    println!("  data device: {}", out.data.display());
    println!("  hash device: {}", out.hash.display());
    println!("  root hash:   {}", out.root_hash);
    match out.signature {
        SignatureCheck::None => println!("  signature:   none"),
        SignatureCheck::Keyring { signer } => {
            println!("  signature:   verified by {}", signer.subject);
            println!("  signer sha256: {}", signer.fingerprint);
        }
        SignatureCheck::Kernel => println!("  signature:   checked by the kernel's trusted keyrings"),
    }
    if let Some(c) = &out.counters {
        println!("  verified:    {} blocks", c.blocks_verified);
        println!("  corruptions: {}", c.corruptions);
        if let Some(first) = &c.first_corrupted {
            println!("  first corrupted: {first}");
        }
        if c.zero_blocks > 0 {
            println!("  zero blocks: {}", c.zero_blocks);
        }
        if c.unchecked_reads > 0 {
            println!("  unchecked reads: {}", c.unchecked_reads);
        }
        if c.io_errors > 0 {
            println!("  I/O errors:  {}", c.io_errors);
        }
        if let Some(h) = &c.halted {
            println!("  halted:      the kernel would {h} here");
        }
    }
    Ok(())
}
