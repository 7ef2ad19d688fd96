//! `veritylab policy import FILE... [--strict] [--out FILE] [--force] [--json]`: reads Kyverno
//! `ClusterPolicy`/`Policy`, sigstore policy-controller `ClusterImagePolicy` and `containers-policy.json`
//! documents ([`crate::policy_import`]) and prints the policy in veritylab's TOML, with every part veritylab
//! does not enforce listed on standard error (`--strict`: an error). `verify --policy` and `mount --policy`
//! take the same files directly.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use crate::policy_import::{self, Imported};

/// `veritylab policy` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum PolicyCommand {
    /// Turn Kyverno, policy-controller or containers-policy.json documents into veritylab's policy TOML.
    Import(ImportArgs),
}

/// Raw arguments of `veritylab policy import`.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// Policy files: YAML (one or more documents) or JSON; read in order, their rules kept in that order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Refuse (exit 3) when any part of the documents cannot be enforced by veritylab.
    #[arg(long)]
    pub strict: bool,
    /// Write the TOML to this file (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object: the policy, the documents read and what is not enforced.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Import(args) => import(&args),
    }
}

fn import(args: &ImportArgs) -> Result<(), CliError> {
    let imported = policy_import::import(&args.files, args.strict)?;
    let toml = imported
        .policy
        .to_toml()
        .map_err(|e| CliError::Usage(format!("the imported policy cannot be written as TOML: {e}")))?;
    if let Some(out) = &args.out {
        if out.exists() && !args.force {
            return Err(CliError::Usage(format!(
                "{} exists (--force replaces it)",
                out.display()
            )));
        }
        crate::store::write_atomically(out, toml.as_bytes()).map_err(CliError::from)?;
    }
    if args.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&Json {
                imported: &imported,
                toml: &toml,
            })
            .unwrap_or_default()
        )?;
        return Ok(());
    }
    report(&imported);
    if args.out.is_none() {
        out!("{}", toml.trim_end())?;
    }
    Ok(())
}

/// The `--json` output.
#[derive(serde::Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    imported: &'a Imported,
    toml: &'a str,
}

/// The documents read and the parts not enforced, on standard error (standard output carries the TOML).
pub(super) fn report(imported: &Imported) {
    for source in &imported.sources {
        eprintln!("read {}: {}, {} rule(s)", source.document, source.kind, source.rules);
        for located in imported.not_enforced.iter().filter(|l| l.document == source.document) {
            let part = &located.part;
            if part.path.is_empty() {
                eprintln!("  not enforced: {}", part.what);
            } else {
                eprintln!("  not enforced: {}: {}", part.path, part.what);
            }
        }
    }
    if !imported.not_enforced.is_empty() {
        eprintln!(
            "{} part(s) not enforced by veritylab (--strict refuses the import)",
            imported.not_enforced.len()
        );
    }
}
