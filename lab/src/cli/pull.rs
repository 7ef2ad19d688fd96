//! `veritylab pull REF [--store DIR] [--plain-http] [--platform OS/ARCH[/VARIANT]] [--json]`.
//!
//! Credentials, when a registry wants them, come from `VERITYLAB_REGISTRY_USERNAME` and
//! `VERITYLAB_REGISTRY_PASSWORD` (never from the command line, where other users could read them).

use std::path::PathBuf;

use clap::Args;

use super::bars::Bars;
use super::{CliError, env_credentials, store_dir};
use crate::oci::manifest::Platform;
use crate::oci::pull::Transport;
use crate::oci::{self, PullOptions, Reference};
use crate::store::Store;

/// Raw arguments of `veritylab pull`.
#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`, `oci:DIR[:TAG][@sha256:HEX]` or `oci-archive:FILE[:TAG]`.
    pub reference: String,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Talk plain HTTP to a loopback registry (refused for any other host).
    #[arg(long)]
    pub plain_http: bool,
    /// The platform to pick from an index [default: this machine's, linux/ARCH].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Validated `pull` arguments.
#[derive(Debug, Clone)]
pub(crate) struct PullPlan {
    /// What to pull.
    pub reference: Reference,
    /// Where to.
    pub store: PathBuf,
    /// How.
    pub options: PullOptions,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<PullArgs> for PullPlan {
    type Error = CliError;

    fn try_from(args: PullArgs) -> Result<Self, CliError> {
        let reference: Reference = args
            .reference
            .parse()
            .map_err(|e: oci::reference::ReferenceError| CliError::Usage(e.to_string()))?;
        let registry = reference.registry();
        super::check_plain_http(args.plain_http, registry, &reference)?;
        let platform = match args.platform.as_deref() {
            Some(text) => text.parse::<Platform>().map_err(CliError::Usage)?,
            None => Platform::host(),
        };
        let mut options = PullOptions {
            platform,
            ..PullOptions::default()
        };
        options.client.plain_http = args.plain_http;
        options.client.credentials = env_credentials();
        Ok(Self {
            reference,
            store: store_dir(args.store)?,
            options,
            json: args.json,
        })
    }
}

/// Pulls the image the plan names and prints what was stored.
pub(crate) fn run(plan: &PullPlan) -> Result<(), CliError> {
    let store = Store::open(&plan.store)?;
    let bars = Bars::new(plan.json);
    let report = oci::pull(&plan.reference, &store, &plan.options, &|e| bars.report(e))?;
    if report.transport == Transport::PlainHttp {
        eprintln!("veritylab: warning: pulled over plain HTTP (no TLS) from a loopback registry (--plain-http)");
    }
    if plan.json {
        out!("{}", serde_json::to_string_pretty(&report).unwrap_or_default())?;
        return Ok(());
    }
    out!("pulled {}", report.name)?;
    out!("  transport: {}", report.transport)?;
    out!("  resolved:  {}", report.resolved)?;
    match &report.platform {
        Some(platform) => out!("  manifest:  {} ({platform})", report.manifest),
        None => out!("  manifest:  {}", report.manifest),
    }?;
    out!("  config:    {}", report.config)?;
    for (i, layer) in report.layers.iter().enumerate() {
        let state = if layer.reused { "already stored" } else { "stored" };
        out!("  layer {}:   {} {} bytes, {state}", i + 1, layer.digest, layer.size)?;
    }
    Ok(())
}
