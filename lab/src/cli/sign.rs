//! `veritylab sign REF --key KEY [--cert CRT] [--scheme cosign|delivery-kit] [--annotation-key K] [--tag TAG]
//! [--timestamp T] [--push [--plain-http]] [--store DIR] [--json]`: converts the image's layers if needed,
//! stores a copy of its manifest annotated with each layer's root hash, signs it, and optionally pushes the
//! signed image and its signature to the image's registry repository.
//!
//! With the key's certificate (`--cert`, else `KEY` with the extension `.crt` when it exists, as `keygen`
//! writes it) each layer also gets the kernel's root-hash signature: in its descriptor's
//! `org.veritylab.dm-verity.root-hash-signature` annotation and as `layer.erofs.roothash.p7s` beside the layer.

use std::path::PathBuf;

use clap::Args;

use super::bars::Bars;
use super::{CliError, store_dir};
use crate::convert::VerityLayout;
use crate::oci::Reference;
use crate::oci::pull::store_name;
use crate::sign::image::{self, SignOptions};
use crate::sign::timestamp::BuildTimestamp;
use crate::sign::{Scheme, kernel_annotation, kernel_signature, keys, remote};
use crate::store::Store;

/// Raw arguments of `veritylab sign`.
#[derive(Args, Debug, Clone)]
pub struct SignArgs {
    /// The image, as given to `pull`.
    pub reference: String,
    /// The private key (PKCS#8 PEM, mode 0600), as `keygen` writes it.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The key's X.509 certificate (PEM or DER) for the kernel's root-hash signatures [default: KEY with the
    /// extension .crt, when it exists].
    #[arg(long, value_name = "CRT")]
    pub cert: Option<PathBuf>,
    /// The passphrase of an encrypted key: the first line of this file (else VERITYLAB_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// `cosign` (a signature manifest at `sha256-HEX.sig`) or `delivery-kit` (Deckhouse delivery-kit's signature
    /// embedded in the manifest; it does not cover the layers' root-hash annotations).
    #[arg(long, default_value = "cosign", value_parser = ["cosign", "delivery-kit"])]
    pub scheme: String,
    /// The layer annotation carrying the root hash [default: org.veritylab.dm-verity.root-hash, or
    /// io.deckhouse.delivery-kit.dm-verity-root-hash for delivery-kit].
    #[arg(long, value_name = "KEY")]
    pub annotation_key: Option<String>,
    /// The tag of the signed image [default: the image's own tag, which then names the signed manifest].
    #[arg(long)]
    pub tag: Option<String>,
    /// The build timestamp to record, RFC 3339 UTC or seconds [default: SOURCE_DATE_EPOCH, else now].
    #[arg(long, value_name = "TIME")]
    pub timestamp: Option<String>,
    /// Layout of conversions made for signing (the root hash is the same in both).
    #[arg(long, default_value = "containerd", value_parser = ["containerd", "separate"])]
    pub layout: String,
    /// Push the signed image (and its cosign signature) to the image's registry repository.
    #[arg(long)]
    pub push: bool,
    /// Push over plain HTTP (loopback registries only).
    #[arg(long)]
    pub plain_http: bool,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Validated `sign` arguments.
#[derive(Debug, Clone)]
pub(crate) struct SignPlan {
    /// The image's name in the store.
    pub name: String,
    /// Its reference.
    pub reference: Reference,
    /// Signing options (with the key loaded).
    pub options: SignOptions,
    /// The certificate the root-hash signatures are made with, if any.
    pub certificate: Option<PathBuf>,
    /// Push afterwards.
    pub push: bool,
    /// Plain HTTP for the push.
    pub plain_http: bool,
    /// The store.
    pub store: PathBuf,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<SignArgs> for SignPlan {
    type Error = CliError;

    fn try_from(args: SignArgs) -> Result<Self, CliError> {
        let reference: Reference = args.reference.parse().map_err(|e| CliError::Usage(format!("{e}")))?;
        let registry = reference.registry();
        if args.push && registry.is_none() {
            return Err(CliError::Usage(format!(
                "--push needs a registry image, not {reference}"
            )));
        }
        super::check_plain_http(args.plain_http, registry, &reference)?;
        let built = match &args.timestamp {
            Some(text) => BuildTimestamp::parse(text).map_err(|e| CliError::Usage(e.to_string()))?,
            None => BuildTimestamp::now(),
        };
        let passphrase = keys::passphrase(args.passphrase_file.as_deref())?;
        let key = keys::load_private(&args.key, passphrase.as_deref())?;
        let certificate = args.cert.clone().or_else(|| {
            let beside = kernel_signature::certificate_path(&args.key);
            beside.exists().then_some(beside)
        });
        let kernel_certificate = match &certificate {
            Some(path) => {
                let der = kernel_signature::read_certificate(path)?;
                kernel_signature::check_certificate_key(&key, &der).map_err(|e| {
                    kernel_signature::KernelSignatureError::CertificateFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                Some(der)
            }
            None => None,
        };
        let options = SignOptions {
            key,
            scheme: args.scheme.parse::<Scheme>().map_err(CliError::Usage)?,
            root_hash_key: args.annotation_key,
            tag: args.tag,
            built,
            layout: args.layout.parse::<VerityLayout>().map_err(CliError::Usage)?,
            kernel_certificate,
        };
        Ok(Self {
            name: store_name(&reference),
            reference,
            options,
            certificate,
            push: args.push,
            plain_http: args.plain_http,
            store: store_dir(args.store)?,
            json: args.json,
        })
    }
}

/// Signs (and pushes) and prints what was made.
pub(crate) fn run(plan: &SignPlan) -> Result<(), CliError> {
    let store = Store::open(&plan.store)?;
    let bars = Bars::new(plan.json);
    let report = image::sign_image(&store, &plan.name, &plan.options, &|line| {
        bars.report(crate::progress::Event::Step(line))
    })?;
    let pushed = match (&plan.reference, plan.push) {
        (Reference::Registry(r), true) => {
            let mut client = crate::oci::client::ClientOptions {
                plain_http: plan.plain_http,
                ..Default::default()
            };
            client.credentials = super::env_credentials();
            Some(remote::push_signed(&store, r, &report, &client)?)
        }
        _ => None,
    };
    if plan.json {
        let value = serde_json::json!({ "signed": report, "pushed": pushed });
        out!("{}", serde_json::to_string_pretty(&value).unwrap_or_default())?;
        return Ok(());
    }
    out!("signed {} ({} scheme)", report.name, report.scheme)?;
    out!("  manifest:  {} (was {})", report.manifest.digest, report.source)?;
    out!("  built:     {}", report.built)?;
    out!("  key:       {}", report.key)?;
    for (i, layer) in report.layers.iter().enumerate() {
        out!("  layer {}:   {} root hash {}", i + 1, layer.digest, layer.root_hash)?;
        if let Some(file) = &layer.root_hash_signature {
            out!("    root-hash signature: {}", file.display())?;
        }
    }
    match &plan.certificate {
        Some(cert) => out!(
            "  root-hash signatures: made with {} (annotation {})",
            cert.display(),
            kernel_annotation::ROOT_HASH_SIGNATURE
        )?,
        None => {
            out!("  root-hash signatures: none (no certificate: give --cert, or `veritylab keygen --cert-for KEY`)")?
        }
    }
    if let Some(sig) = &report.cosign {
        out!(
            "  signature: {} ({}, payload {})",
            sig.name,
            sig.manifest.digest,
            sig.payload
        )?;
    }
    if let Some(pushed) = &pushed {
        out!("  pushed:    {}", pushed.summary())?;
        if plan.plain_http {
            eprintln!("veritylab: warning: pushed over plain HTTP (no TLS) to a loopback registry (--plain-http)");
        }
    }
    Ok(())
}
