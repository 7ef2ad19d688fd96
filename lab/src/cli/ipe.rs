//! `veritylab ipe policy --cert CRT --key KEY [--name N] [--policy-version V] [--out DIR] [--force]
//! [--passphrase-file FILE] [--json]`: writes an IPE policy that lets only the initramfs and dm-verity volumes
//! with a kernel-checked root-hash signature execute ([`crate::ipe`]), as `DIR/NAME.ipe` (text) and
//! `DIR/NAME.ipe.p7s` (signed with the key, carrying the text: what `/sys/kernel/security/ipe/new_policy`
//! takes).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use crate::ipe::{self, Policy, PolicyName, PolicyVersion};
use crate::sign::{kernel_signature, keys};

/// `veritylab ipe` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum IpeCommand {
    /// Write a signed IPE policy: execute only from the initramfs and signature-checked dm-verity volumes.
    Policy(PolicyArgs),
}

/// Raw arguments of `veritylab ipe policy`.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// The signer's X.509 certificate (PEM or DER), as `keygen` writes it; the kernel must trust it (the UEFI
    /// db fills the .platform keyring).
    #[arg(long, value_name = "CRT")]
    pub cert: PathBuf,
    /// The private key of the certificate (PKCS#8 PEM).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The passphrase of an encrypted key: the first line of this file (else VERITYLAB_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The policy's name: printable ASCII without '/' or '#', at most 255 bytes.
    #[arg(long, default_value = ipe::DEFAULT_NAME)]
    pub name: String,
    /// The policy's version, MAJOR.MINOR.REVISION; a replacement must be higher than the loaded one.
    #[arg(long, value_name = "V", default_value = "0.0.1")]
    pub policy_version: String,
    /// Where to write NAME.ipe and NAME.ipe.p7s.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Replace existing policy files.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs an `ipe` subcommand.
pub(crate) fn run(command: IpeCommand) -> Result<(), CliError> {
    match command {
        IpeCommand::Policy(args) => policy(&args),
    }
}

fn policy(args: &PolicyArgs) -> Result<(), CliError> {
    let policy = Policy {
        name: PolicyName::parse(&args.name)?,
        version: args.policy_version.parse::<PolicyVersion>()?,
    };
    let certificate = kernel_signature::read_certificate(&args.cert)?;
    let passphrase = keys::passphrase(args.passphrase_file.as_deref())?;
    let key = keys::load_private(&args.key, passphrase.as_deref())?;
    if !args.force {
        for file in [format!("{}.ipe", policy.name), format!("{}.ipe.p7s", policy.name)] {
            let path = args.out.join(file);
            if path.exists() {
                return Err(kernel_signature::KernelSignatureError::Exists { path }.into());
            }
        }
    }
    let files = ipe::write(&policy, &key, &certificate, &args.out).map_err(|e| match e {
        ipe::IpeError::Sign(kernel_signature::KernelSignatureError::KeyMismatch) => {
            kernel_signature::KernelSignatureError::CertificateFile {
                path: args.cert.clone(),
                reason: format!("its public key is not that of {}", args.key.display()),
            }
            .into()
        }
        other => CliError::from(other),
    })?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&files).unwrap_or_default())?;
        return Ok(());
    }
    out!("IPE policy {} version {}", files.name, files.version)?;
    out!("  text:   {}", files.text.display())?;
    out!(
        "  signed: {} (write it to /sys/kernel/security/ipe/new_policy)",
        files.signed.display()
    )?;
    out!(
        "  then:   echo 1 > /sys/kernel/security/ipe/policies/{}/active; echo 1 > /sys/kernel/security/ipe/enforce",
        files.name
    )?;
    Ok(())
}
