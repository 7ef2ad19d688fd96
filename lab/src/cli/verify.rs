//! `veritylab verify REF [--key PUB]... [--policy FILE] [--namespace NS] [--scheme S] [--annotation-key K] [--offline]
//! [--plain-http] [--no-data] [--store DIR] [--json]`: checks a stored image's signature, root-hash
//! annotations, local trees, the local layers' data (re-hashed against the signed root hashes, several
//! layers at a time, unless `--no-data`) and the policy, and prints every check with what failed. An image
//! the policy lets through without a signature is said to be unsigned.
//!
//! A cosign signature missing from the store is fetched from the image's registry (unless `--offline`).
//! Exit status 0 when the image is trusted, 3 when a check failed (the report still goes to stdout). `--json`
//! prints `{"verified", "report": {checks with typed findings}, "image": {manifest, layers with root hashes
//! and tree parameters} or null, "root_hash_signatures": [per layer: null, {layer, len, signer} or {error}]}`.
//!
//! A layer's root-hash signature annotation (the kernel's format, see [`crate::sign::kernel_annotation`]) is
//! reported per layer: its size and the certificate inside it that verifies it over the layer's root hash.
//! One that is not base64, not a PKCS#7 the kernel parses, too large, or over another root hash fails the
//! command, naming the layer.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, store_dir};
use crate::oci::Reference;
use crate::oci::client::ClientOptions;
use crate::oci::pull::store_name;
use crate::sign::verify::{self, DataCheck, Outcome, Report, VerifiedLayer, VerifyError, VerifyOptions};
use crate::store::Store;

/// Raw arguments of `veritylab verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The image, as given to `pull` (`HOST/REPO@sha256:…` when the policy requires digests).
    pub reference: String,
    /// A trusted public key (SPKI PEM); repeat for several. Added to the policy's trusted keys.
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// The trust policy (TOML; unknown keys are an error).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The namespace of the pod the image is for: the policy's rules narrowed to namespaces apply only if
    /// they select it. Without it every rule that could apply in some namespace does (stricter, never looser).
    #[arg(long, value_name = "NS", value_parser = super::parse_namespace)]
    pub namespace: Option<String>,
    /// The signature scheme [default: the policy's, else cosign].
    #[arg(long, value_parser = ["cosign", "delivery-kit"])]
    pub scheme: Option<String>,
    /// The layer annotation carrying the root hash [default: the policy's, else the scheme's].
    #[arg(long, value_name = "KEY")]
    pub annotation_key: Option<String>,
    /// Never contact the registry (a signature not in the store counts as missing).
    #[arg(long)]
    pub offline: bool,
    /// Fetch signatures over plain HTTP (loopback registries only).
    #[arg(long)]
    pub plain_http: bool,
    /// Do not re-hash the local layers' data and trees against the signed root hashes (the report says so).
    #[arg(long)]
    pub no_data: bool,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Validated `verify` arguments.
#[derive(Debug, Clone)]
pub(crate) struct VerifyPlan {
    /// The image's name in the store.
    pub name: String,
    /// Verification options (keys and policy loaded).
    pub options: VerifyOptions,
    /// The store.
    pub store: PathBuf,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<VerifyArgs> for VerifyPlan {
    type Error = CliError;

    fn try_from(args: VerifyArgs) -> Result<Self, CliError> {
        let reference: Reference = args.reference.parse().map_err(|e| CliError::Usage(format!("{e}")))?;
        let registry = reference.registry();
        super::check_plain_http(args.plain_http, registry, &reference)?;
        let (policy, keys) = super::trust_inputs(args.policy.as_deref(), &args.key)?;
        if keys.is_empty() && policy.trusted_keys.is_empty() && policy.rules.iter().all(|r| r.keys.is_empty()) {
            return Err(CliError::Usage(
                "no trusted key: give --key PUB or a --policy with trusted_keys".to_owned(),
            ));
        }
        let mut options = VerifyOptions::new(policy, keys);
        options.namespace = args.namespace;
        if let Some(scheme) = &args.scheme {
            options.scheme = scheme.parse().map_err(CliError::Usage)?;
        }
        options.data = if args.no_data {
            DataCheck::Skip("--no-data given")
        } else {
            DataCheck::parallel()
        };
        if args.annotation_key.is_some() {
            options.root_hash_key = args.annotation_key;
        }
        if !args.offline && registry.is_some() {
            options.registry = Some(ClientOptions {
                plain_http: args.plain_http,
                credentials: super::env_credentials(),
                ..Default::default()
            });
        }
        Ok(Self {
            name: store_name(&reference),
            options,
            store: store_dir(args.store)?,
            json: args.json,
        })
    }
}

/// Verifies and prints the report; a rejected image is an error after the report is printed.
pub(crate) fn run(plan: &VerifyPlan) -> Result<(), CliError> {
    let store = Store::open(&plan.store)?;
    let result = verify::verify_image(&store, &plan.name, &plan.options);
    let report = match &result {
        Ok(image) => image.report(),
        Err(VerifyError::Rejected { report }) => report.as_ref(),
        Err(_) => return result.map(|_| ()).map_err(CliError::from),
    };
    let signatures: Vec<_> = result
        .as_ref()
        .map(|image| image.layers().iter().map(VerifiedLayer::root_hash_signature).collect())
        .unwrap_or_default();
    if plan.json {
        let value = serde_json::json!({
            "verified": report.verified,
            "report": report,
            "image": result.as_ref().ok(),
            "root_hash_signatures": signatures
                .iter()
                .map(|s| match s {
                    Ok(found) => serde_json::json!(found),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                })
                .collect::<Vec<_>>(),
        });
        out!("{value}")?;
    } else {
        print_report(report)?;
        if let Ok(image) = &result {
            for (i, layer) in image.layers().iter().enumerate() {
                out!(
                    "  layer {}: {} root hash {}{}",
                    i + 1,
                    layer.digest(),
                    layer.verity().root_hash,
                    if layer.signed_root_hash().is_some() {
                        ""
                    } else {
                        " (unsigned: the image's own claim)"
                    }
                )?;
                match &signatures[i] {
                    Ok(Some(sig)) => out!(
                        "    root-hash signature: {} bytes, {}",
                        sig.len,
                        sig.signer.as_ref().map_or_else(
                            || "no certificate inside (the kernel's keyring decides)".to_owned(),
                            |s| format!(
                                "by {} ({}), the certificate it carries: verifies over this root hash (not a \
                                 trust decision: the kernel's keyring decides whether that signer is trusted)",
                                s.subject, s.fingerprint
                            )
                        )
                    )?,
                    Ok(None) => out!("    root-hash signature: none")?,
                    Err(e) => out!("    root-hash signature: FAIL {e}")?,
                }
            }
        }
    }
    result.map(|_| ()).map_err(CliError::from)?;
    match signatures.into_iter().find_map(Result::err) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn print_report(report: &Report) -> Result<(), CliError> {
    let manifest = report.manifest.map(|d| format!(" ({d})")).unwrap_or_default();
    out!("verify {}{manifest}, scheme {}", report.image, report.scheme)?;
    for check in &report.checks {
        let mark = match check.outcome {
            Outcome::Passed => "ok  ",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
        };
        out!("  {mark} {:<22} {}", check.check.to_string(), check.detail)?;
        for finding in &check.findings {
            out!("       - {finding}")?;
        }
    }
    if report.verified && report.signed {
        out!("verified: the root hashes above come from the signed manifest")?;
    } else if report.verified {
        out!(
            "accepted by the policy, but NOT SIGNED: no trusted signature covers this manifest, so its root hashes \
             are the image's own claims (the hardened profile refuses it)"
        )?;
    } else {
        let failed = report.checks.iter().filter(|c| c.outcome == Outcome::Failed).count();
        out!("NOT verified: {failed} check(s) failed; nothing is trusted")?;
    }
    Ok(())
}
