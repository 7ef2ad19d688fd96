//! `veritylab push SRC DEST [--store DIR] [--plain-http] [--json]`: copies an image (manifest or index,
//! config, layers) from the store or an OCI image layout to a registry or an OCI image layout.
//!
//! Credentials come from `VERITYLAB_REGISTRY_USERNAME` and `VERITYLAB_REGISTRY_PASSWORD`, as for `pull`.

use std::path::PathBuf;

use clap::Args;

use super::bars::Bars;
use super::{CliError, env_credentials, store_dir};
use crate::oci::Reference;
use crate::oci::pull::{Transport, store_name};
use crate::oci::push::{self, PushDestination, PushOptions, PushSource};
use crate::oci::reference::ReferenceError;

/// Raw arguments of `veritylab push`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:
  veritylab push 127.0.0.1:5000/lab/demo:v1 127.0.0.1:5001/lab/demo:v1 --plain-http
  veritylab push oci:./out:v1 127.0.0.1:5000/lab/demo:v1 --plain-http
  veritylab push 127.0.0.1:5000/lab/demo:v1 oci:./copy:v1")]
pub struct PushArgs {
    /// An image in the store (a name `veritylab images` lists, or the reference it was pulled as), or
    /// `oci:DIR[:TAG]` read straight from an image layout.
    pub source: String,
    /// `HOST[:PORT]/REPO[:TAG][@sha256:HEX]` (tag `latest` when none; a digest must match what is pushed),
    /// or `oci:DIR:TAG` (created if missing).
    pub destination: String,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Talk plain HTTP to a loopback registry (refused for any other host).
    #[arg(long)]
    pub plain_http: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Validated `push` arguments.
#[derive(Debug, Clone)]
pub(crate) struct PushPlan {
    /// What to push.
    pub source: PushSource,
    /// Where to.
    pub destination: PushDestination,
    /// How.
    pub options: PushOptions,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<PushArgs> for PushPlan {
    type Error = CliError;

    fn try_from(args: PushArgs) -> Result<Self, CliError> {
        let usage = |e: ReferenceError| CliError::Usage(e.to_string());
        let source = if args.source.starts_with("oci:") {
            match args.source.parse().map_err(usage)? {
                Reference::Layout(l) => PushSource::Layout(l),
                other => return Err(CliError::Usage(format!("{other} is not an image layout"))),
            }
        } else {
            match args.source.parse::<Reference>() {
                Ok(reference @ Reference::Registry(_)) => PushSource::Store {
                    root: store_dir(args.store.clone())?,
                    name: store_name(&reference),
                },
                Ok(other) => {
                    return Err(CliError::Usage(format!(
                        "push reads the store or oci:DIR[:TAG], not {other} (pull it first)"
                    )));
                }
                Err(_) => PushSource::Store {
                    root: store_dir(args.store.clone())?,
                    name: args.source.clone(),
                },
            }
        };
        let destination = match args.destination.parse().map_err(usage)? {
            Reference::Registry(r) => PushDestination::Registry(r),
            Reference::Layout(l) if l.digest.is_some() => {
                return Err(CliError::Usage(format!(
                    "the destination {} names a digest; write oci:DIR:TAG (the digest is what gets pushed)",
                    args.destination
                )));
            }
            Reference::Layout(l) => match l.tag {
                Some(tag) => PushDestination::Layout { dir: l.dir, tag },
                None => {
                    return Err(CliError::Usage(format!(
                        "the destination {} needs a tag: oci:DIR:TAG",
                        args.destination
                    )));
                }
            },
            Reference::Archive(_) => {
                return Err(CliError::Usage(
                    "push writes a registry or oci:DIR:TAG, not an oci-archive".to_owned(),
                ));
            }
        };
        let registry = match &destination {
            PushDestination::Registry(r) => Some(r),
            _ => None,
        };
        super::check_plain_http(args.plain_http, registry, &destination)?;
        let mut options = PushOptions::default();
        options.client.plain_http = args.plain_http;
        options.client.credentials = env_credentials();
        Ok(Self {
            source,
            destination,
            options,
            json: args.json,
        })
    }
}

/// Pushes and prints what was copied.
pub(crate) fn run(plan: &PushPlan) -> Result<(), CliError> {
    let bars = Bars::new(plan.json);
    let report = push::push(&plan.source, &plan.destination, &plan.options, &|e| bars.report(e))?;
    if report.transport == Transport::PlainHttp {
        eprintln!("veritylab: warning: pushed over plain HTTP (no TLS) to a loopback registry (--plain-http)");
    }
    if plan.json {
        out!("{}", serde_json::to_string_pretty(&report).unwrap_or_default())?;
        return Ok(());
    }
    out!("pushed {} to {}", report.source, report.destination)?;
    out!("  transport: {}", report.transport)?;
    out!("  digest:    {} ({})", report.digest, report.media_type)?;
    for blob in &report.blobs {
        let state = if blob.skipped { "already there" } else { "copied" };
        out!("  blob:      {} {} bytes, {state}", blob.digest, blob.size)?;
    }
    Ok(())
}
