//! `veritylab image build DIR... --tag oci:OUT:TAG [--platform OS/ARCH[/VARIANT]] [--mtime SECS] [--json]`:
//! a small multi-layer image from directories, deletions as whiteouts, written as an OCI image layout.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use super::bars::Bars;
use crate::oci::Reference;
use crate::oci::build::{self, BuildOptions};
use crate::oci::manifest::Platform;

/// `veritylab image ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum ImageCommand {
    /// Build an image from directories, one layer each (the first is the bottom layer).
    Build(BuildArgs),
}

/// Raw arguments of `veritylab image build`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Each DIR is the whole filesystem after its layer: the layer holds what differs from the \
directory before it, and what that directory had but DIR lacks becomes a whiteout (.wh.NAME, or .wh..wh..opq \
for a directory whose lower content is all gone). The same directories always give the same digests.

Example:
  veritylab image build base/ update/ --tag oci:./demo:v1
  veritylab push oci:./demo:v1 127.0.0.1:5000/lab/demo:v1 --plain-http"
)]
pub struct BuildArgs {
    /// The layer directories, bottom first.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write: `oci:OUT:TAG` (OUT is created, or must already be an image layout).
    #[arg(long, value_name = "oci:OUT:TAG")]
    pub tag: String,
    /// The platform recorded in the config [default: this machine's, linux/ARCH].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// The mtime of every file in the layers, in seconds since the epoch.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub mtime: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Validated `image build` arguments.
#[derive(Debug, Clone)]
pub(crate) struct BuildPlan {
    /// The layer directories.
    pub dirs: Vec<PathBuf>,
    /// The output layout.
    pub out: PathBuf,
    /// Its tag.
    pub tag: String,
    /// Platform and mtime.
    pub options: BuildOptions,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<BuildArgs> for BuildPlan {
    type Error = CliError;

    fn try_from(args: BuildArgs) -> Result<Self, CliError> {
        let (out, tag) = match args.tag.parse::<Reference>() {
            Ok(Reference::Layout(l)) if l.tag.is_some() && l.digest.is_none() => (l.dir, l.tag.unwrap_or_default()),
            Ok(Reference::Layout(_)) => {
                return Err(CliError::Usage(format!(
                    "--tag {} must be oci:OUT:TAG (a tag, and no digest)",
                    args.tag
                )));
            }
            Ok(_) => {
                return Err(CliError::Usage(format!(
                    "--tag {} must be oci:OUT:TAG (push the result to a registry with veritylab push)",
                    args.tag
                )));
            }
            Err(e) => return Err(CliError::Usage(e.to_string())),
        };
        let platform = match args.platform.as_deref() {
            Some(text) => text.parse::<Platform>().map_err(CliError::Usage)?,
            None => Platform::host(),
        };
        Ok(Self {
            dirs: args.dirs,
            out,
            tag,
            options: BuildOptions {
                platform,
                mtime: args.mtime,
            },
            json: args.json,
        })
    }
}

/// Runs an `image` subcommand.
pub(crate) fn run(command: ImageCommand) -> Result<(), CliError> {
    match command {
        ImageCommand::Build(args) => build_image(&BuildPlan::try_from(args)?),
    }
}

fn build_image(plan: &BuildPlan) -> Result<(), CliError> {
    let bars = Bars::new(plan.json);
    let report = build::build(&plan.dirs, &plan.out, &plan.tag, &plan.options, &|e| bars.report(e))?;
    if plan.json {
        out!("{}", serde_json::to_string_pretty(&report).unwrap_or_default())?;
        return Ok(());
    }
    out!("built oci:{}:{}", report.layout.display(), report.tag)?;
    out!("  manifest: {} ({})", report.manifest, report.platform)?;
    out!("  config:   {}", report.config)?;
    for (i, layer) in report.layers.iter().enumerate() {
        out!(
            "  layer {}:  {} {} bytes, {} entries, {} whiteouts, from {}",
            i + 1,
            layer.digest,
            layer.size,
            layer.entries,
            layer.whiteouts,
            layer.source.display()
        )?;
    }
    Ok(())
}
