//! `veritylab keygen PREFIX [--passphrase-file FILE] [--force] [--json]`: writes an ECDSA P-256 key pair,
//! `PREFIX.key` (PKCS#8 PEM, mode 0600) and `PREFIX.pub` (SPKI PEM, readable by `cosign verify --key`), and
//! `PREFIX.crt`, a self-signed X.509 certificate of the key (keyUsage digitalSignature), the form kernel
//! keyrings take. `veritylab keygen --cert-for KEY` writes the certificate of an existing key beside it.
//!
//! The private key is encrypted when a passphrase is given: the first line of `--passphrase-file`, else the
//! `VERITYLAB_PASSPHRASE` environment variable (never an argument, where other users could read it).

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::sign::{kernel_signature, keys};

/// Raw arguments of `veritylab keygen`.
#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// Writes PREFIX.key, PREFIX.pub and PREFIX.crt.
    #[arg(required_unless_present = "cert_for", conflicts_with = "cert_for")]
    pub prefix: Option<PathBuf>,
    /// Write only the certificate of this existing private key, as KEY with the extension `.crt`.
    #[arg(long, value_name = "KEY")]
    pub cert_for: Option<PathBuf>,
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
pub(crate) fn run(args: &KeygenArgs) -> Result<(), CliError> {
    let passphrase = keys::passphrase(args.passphrase_file.as_deref())?;
    if passphrase.as_ref().is_some_and(Vec::is_empty) {
        return Err(CliError::Usage("the passphrase is empty".to_owned()));
    }
    if let Some(key_path) = &args.cert_for {
        let key = keys::load_private(key_path, passphrase.as_deref())?;
        let path = kernel_signature::certificate_path(key_path);
        kernel_signature::write_certificate(&key, &path, args.force)?;
        if args.json {
            out!("{}", serde_json::json!({ "certificate": path }))?;
        } else {
            out!("certificate: {}", path.display())?;
        }
        return Ok(());
    }
    let prefix = args
        .prefix
        .as_ref()
        .ok_or_else(|| CliError::Usage("give PREFIX or --cert-for KEY".into()))?;
    let mut certificate = prefix.as_os_str().to_owned();
    certificate.push(".crt");
    let certificate = PathBuf::from(certificate);
    if certificate.exists() && !args.force {
        return Err(kernel_signature::KernelSignatureError::Exists { path: certificate }.into());
    }
    let files = keys::write_pair(prefix, passphrase.as_deref(), args.force)?;
    let key = keys::load_private(&files.private, passphrase.as_deref())?;
    kernel_signature::write_certificate(&key, &certificate, args.force)?;
    if args.json {
        let mut value = serde_json::to_value(&files).unwrap_or_default();
        value["certificate"] = serde_json::json!(certificate);
        out!("{}", serde_json::to_string_pretty(&value).unwrap_or_default())?;
        return Ok(());
    }
    let state = if files.encrypted { "encrypted" } else { "not encrypted" };
    out!("private key: {} (mode 0600, {state})", files.private.display())?;
    out!("public key:  {}", files.public.display())?;
    out!("fingerprint: {}", files.fingerprint)?;
    out!("certificate: {}", certificate.display())?;
    Ok(())
}
