//! `verity-fuse verify`: check data and tree against a root hash, as `veritysetup verify` does.
//!
//! Where veritysetup stops at the first difference ("Verification failed at position P."), the check goes on
//! and names every corrupted block, one line each in veritysetup's wording, then a count; blocks under a
//! corrupted hash block cannot be checked and are counted apart. The error (and exit code) is that of the
//! first.
//!
//! With `--fec-device`, a failed check is followed, as in veritysetup, by decoding every codeword from the
//! parity. Where veritysetup then reports success, we also re-check the whole tree over the corrected blocks
//! (held in memory; the devices are not written) and succeed only if that check passes, listing the blocks
//! that were repaired.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{EngineArgs, FecArgs, ParamArgs, existing_geometry, root_hash};
use super::report::warn_lab_only;
use crate::ReadAt;
use crate::error::{BlockRef, VerityError};
use crate::fec::{self, FecLayout, Patched, Repairer, layout::Covered};
use crate::hash::{Digest, EngineName};
use crate::params::Geometry;
use crate::source::FileSource;
use crate::tree::{self, Finding, Survey};

/// Arguments of `verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    fec: FecArgs,
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
    root_hash: Digest,
    error: Option<String>,
    block: Option<BlockRef>,
    expected: Option<&'a Digest>,
    found: Option<&'a Digest>,
    /// Every corrupted block, top-down, the first being the one `error` names.
    corrupted: Vec<Corrupted<'a>>,
    /// Blocks under a corrupted hash block, which could not be checked.
    unchecked_blocks: u64,
    /// Data blocks among `unchecked_blocks`.
    unchecked_data_blocks: u64,
    /// The SHA-256 engine that hashed.
    engine: EngineName,
    fec: Option<FecOutcome>,
}

/// One corrupted block in the JSON report.
#[derive(serde::Serialize)]
struct Corrupted<'a> {
    block: BlockRef,
    /// Byte position of the block on its device.
    position: u64,
    /// The digest the tree expects, when the block's digest differs.
    expected: Option<&'a Digest>,
    /// The block's digest, when it differs.
    found: Option<&'a Digest>,
    /// Offset of the first non-zero byte where no digest goes, when that is what is wrong.
    padding_offset: Option<usize>,
}

impl<'a> Corrupted<'a> {
    fn new(finding: &'a Finding, geometry: &Geometry) -> Self {
        let (expected, found, padding_offset) = match finding {
            Finding::Mismatch { expected, found, .. } => (Some(expected), Some(found), None),
            Finding::NonZeroPadding { offset, .. } => (None, None, Some(*offset)),
        };
        Self {
            block: finding.block(),
            position: finding.position(geometry),
            expected,
            found,
            padding_offset,
        }
    }
}

/// What FEC did after a failed check.
#[derive(serde::Serialize)]
struct FecOutcome {
    /// Whether every codeword decoded and the corrected image verified.
    repaired: bool,
    /// Symbols corrected (veritysetup's "repairable errors").
    symbols_corrected: u64,
    /// Data and tree blocks whose bytes the parity corrected.
    blocks: Vec<BlockRef>,
    /// Why the repair failed.
    error: Option<String>,
}

pub(crate) fn run(a: VerifyArgs) -> Result<()> {
    let root = root_hash(a.root_hash.as_deref(), a.root_hash_file.as_ref())?;
    a.engine.apply()?;
    let data = FileSource::open(&a.data).with_context(|| format!("opening data device {}", a.data.display()))?;
    let hash = FileSource::open(&a.hash).with_context(|| format!("opening hash device {}", a.hash.display()))?;
    let geometry = existing_geometry(&a.params, data.len(), &a.hash)?;
    geometry.check_root_hash(&root)?;
    warn_lab_only(&geometry);
    let fec = match &a.fec.fec_device {
        Some(path) => {
            let layout = a.fec.layout(&geometry, path, Some(&a.data), &a.hash, hash.len())?;
            let parity = FileSource::open(path).with_context(|| format!("opening FEC device {}", path.display()))?;
            layout
                .check_fec_device(parity.len())
                .with_context(|| format!("FEC device {}", path.display()))?;
            Some((layout, parity))
        }
        None => None,
    };
    let root = Digest::from_slice(&root).expect("length checked");
    let threads = a.threads.unwrap_or_else(tree::default_threads).max(1);
    let (survey, mut result) = match tree::survey(&data, &hash, &geometry, &root, threads) {
        Ok(survey) => {
            let result = survey.result();
            (survey, result)
        }
        Err(e) => (Survey::default(), Err(e)),
    };
    if !a.json {
        print_findings(&survey, &geometry);
    }
    let mut fec_outcome = None;
    if let (Err(VerityError::HashMismatch { .. } | VerityError::NonZeroPadding { .. }), Some((layout, parity))) =
        (&result, &fec)
    {
        let repairer = Repairer::new(layout, &data, &hash, parity);
        let outcome = match fec::repair_all(&repairer, threads) {
            Ok(full) => {
                let blocks = full.block_refs(layout, |block| tree_level(&geometry, block));
                let recheck = recheck(&data, &hash, &geometry, layout, &full.blocks, &root, threads);
                FecOutcome {
                    repaired: recheck.is_ok(),
                    symbols_corrected: full.symbols_corrected,
                    blocks,
                    error: recheck
                        .as_ref()
                        .err()
                        .map(|e| format!("the corrected image does not verify: {e}")),
                }
            }
            Err(e) => FecOutcome {
                repaired: false,
                symbols_corrected: 0,
                blocks: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        if !a.json {
            if outcome.repaired {
                let names: Vec<String> = outcome.blocks.iter().map(ToString::to_string).collect();
                eprintln!(
                    "Found {} repairable errors with FEC device; corrected and verified in memory: {}",
                    outcome.symbols_corrected,
                    names.join(", ")
                );
            } else {
                eprintln!(
                    "Errors cannot be repaired with FEC device: {}",
                    outcome.error.as_deref().unwrap_or("")
                );
            }
        }
        if outcome.repaired {
            result = Ok(());
        }
        fec_outcome = Some(outcome);
    }
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
            root_hash: root,
            error,
            block,
            expected,
            found,
            corrupted: survey.findings.iter().map(|f| Corrupted::new(f, &geometry)).collect(),
            unchecked_blocks: survey.unchecked,
            unchecked_data_blocks: survey.unchecked_data,
            engine: geometry.params.hasher().engine(),
            fec: fec_outcome,
        };
        out!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("outcome serialises")
        )?;
    }
    result.context("verification failed")
}

/// Prints every corrupted block on stderr, one line each as veritysetup words its first, then the count.
fn print_findings(survey: &Survey, geometry: &Geometry) {
    if survey.is_clean() {
        return;
    }
    for finding in &survey.findings {
        let device = match finding.block() {
            BlockRef::Data { .. } => "",
            BlockRef::Hash { .. } => " of the hash device",
        };
        eprintln!(
            "Verification failed at position {}{device}: {}",
            finding.position(geometry),
            finding.to_error()
        );
    }
    let data = survey
        .findings
        .iter()
        .filter(|f| matches!(f.block(), BlockRef::Data { .. }))
        .count();
    let unchecked = if survey.unchecked > 0 {
        format!(
            "; {} more not checked under a corrupted hash block ({} of them data)",
            survey.unchecked, survey.unchecked_data
        )
    } else {
        String::new()
    };
    eprintln!(
        "Verification of data area failed: corrupted blocks: {} ({data} data, {} hash){unchecked}.",
        survey.findings.len(),
        survey.findings.len() - data,
    );
}

/// The tree level of absolute hash block `block` (one past the top for blocks after the tree).
fn tree_level(geometry: &Geometry, block: u64) -> usize {
    geometry
        .levels
        .iter()
        .position(|l| (l.first_block..l.first_block + l.blocks).contains(&block))
        .unwrap_or(geometry.levels.len())
}

/// Checks the whole tree again with the corrected blocks in place of the stored ones.
fn recheck(
    data: &FileSource,
    hash: &FileSource,
    geometry: &Geometry,
    layout: &FecLayout,
    corrected: &BTreeMap<u64, Vec<u8>>,
    root: &Digest,
    threads: usize,
) -> Result<(), VerityError> {
    let mut data_blocks = BTreeMap::new();
    let mut hash_blocks = BTreeMap::new();
    for (&b, bytes) in corrected {
        match layout.covered(b) {
            Covered::Data(n) => data_blocks.insert(n, bytes.as_slice()),
            Covered::Hash(n) => hash_blocks.insert(n, bytes.as_slice()),
            Covered::Zero => None,
        };
    }
    let bs = layout.block_size();
    tree::check(
        &Patched::new(data, bs, data_blocks),
        &Patched::new(hash, bs, hash_blocks),
        geometry,
        root,
        threads,
    )
}
