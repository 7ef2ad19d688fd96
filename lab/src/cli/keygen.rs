//! `veritylab keygen PREFIX [--passphrase-file FILE] [--force] [--json]`: writes an ECDSA P-256 key pair,
//! `PREFIX.key` (PKCS#8 PEM, mode 0600) and `PREFIX.pub` (SPKI PEM, readable by `cosign verify --key`).
//!
//! The private key is encrypted when a passphrase is given: the first line of `--passphrase-file`, else the
//! `VERITYLAB_PASSPHRASE` environment variable (never an argument, where other users could read it).

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::sign::keys;

/// Raw arguments of `veritylab keygen`.
#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// Writes PREFIX.key and PREFIX.pub.
    pub prefix: PathBuf,
    /// Encrypt the private key with the first line of this file (else VERITYLAB_PASSPHRASE, if set).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Writes the key pair and prints where.
pub fn run(args: &KeygenArgs) -> Result<(), CliError> {
    let passphrase = keys::passphrase(args.passphrase_file.as_deref())?;
    if passphrase.as_ref().is_some_and(Vec::is_empty) {
        return Err(CliError::Usage("the passphrase is empty".to_owned()));
    }
    let files = keys::write_pair(&args.prefix, passphrase.as_deref(), args.force)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&files).unwrap_or_default())?;
        return Ok(());
    }
    let state = if files.encrypted { "encrypted" } else { "not encrypted" };
    out!("private key: {} (mode 0600, {state})", files.private.display())?;
    out!("public key:  {}", files.public.display())?;
    out!("fingerprint: {}", files.fingerprint)?;
    Ok(())
}
