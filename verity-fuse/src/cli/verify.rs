//! `verity-fuse verify`: check data and tree against a root hash, as `veritysetup verify` does.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{EngineArgs, ParamArgs, existing_geometry, root_hash};
use super::report::warn_lab_only;
use crate::ReadAt;
use crate::error::VerityError;
use crate::hash::{Digest, EngineName};
use crate::source::FileSource;
use crate::tree;

/// Arguments of `verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    params: ParamArgs,
    /// Read the root hash from this file instead of the argument.
    #[arg(long, value_name = "FILE")]
    root_hash_file: Option<PathBuf>,
    /// Threads hashing data [default: every core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Print one JSON object with the outcome.
    #[arg(long)]
    json: bool,
    /// The data device (file).
    data: PathBuf,
    /// The hash device (file); may be DATA itself with --hash-offset.
    hash: PathBuf,
    /// The trusted root hash, hex.
    root_hash: Option<String>,
}

#[derive(serde::Serialize)]
struct Outcome<'a> {
    verified: bool,
    root_hash: String,
    error: Option<String>,
    block: Option<crate::error::BlockRef>,
    expected: Option<&'a Digest>,
    found: Option<&'a Digest>,
    /// The SHA-256 engine that hashed.
    engine: EngineName,
}

pub(crate) fn run(a: VerifyArgs) -> Result<()> {
    let root = root_hash(a.root_hash.as_deref(), a.root_hash_file.as_ref())?;
    a.engine.apply()?;
    let data = FileSource::open(&a.data).with_context(|| format!("opening data device {}", a.data.display()))?;
    let hash = FileSource::open(&a.hash).with_context(|| format!("opening hash device {}", a.hash.display()))?;
    let geometry = existing_geometry(&a.params, data.len(), &a.hash)?;
    geometry.check_root_hash(&root)?;
    warn_lab_only(&geometry);
    let root = Digest::from_slice(&root).expect("length checked");
    let threads = a.threads.unwrap_or_else(tree::default_threads).max(1);
    let result = tree::check(&data, &hash, &geometry, &root, threads);
    if a.json {
        let (error, block, expected, found) = match &result {
            Ok(()) => (None, None, None, None),
            Err(e @ VerityError::HashMismatch { block, expected, found }) => {
                (Some(e.to_string()), Some(*block), Some(&**expected), Some(&**found))
            }
            Err(e) => (Some(e.to_string()), None, None, None),
        };
        let outcome = Outcome {
            verified: result.is_ok(),
            root_hash: root.to_hex(),
            error,
            block,
            expected,
            found,
            engine: geometry.params.hasher().engine(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("outcome serialises")
        );
    }
    result.context("verification failed")
}
