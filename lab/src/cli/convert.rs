//! `veritylab convert REF [--layout containerd|separate] [--store DIR] [--json]`: converts every layer of a
//! pulled image to `layer.erofs` plus a dm-verity tree.

use std::path::PathBuf;

use clap::Args;

use super::bars::Bars;
use super::{CliError, store_dir};
use crate::convert::{self, VerityLayout};
use crate::oci::Reference;
use crate::oci::pull::store_name;
use crate::store::Store;

/// Raw arguments of `veritylab convert`.
#[derive(Args, Debug, Clone)]
pub struct ConvertArgs {
    /// The image, as given to `pull`.
    pub reference: String,
    /// Where the tree goes: `containerd` (appended to layer.erofs, with the .dmverity sidecar) or
    /// `separate` (layer.erofs.verity).
    #[arg(long, default_value = "containerd", value_parser = ["containerd", "separate"])]
    pub layout: String,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Validated `convert` arguments.
#[derive(Debug, Clone)]
pub(crate) struct ConvertPlan {
    /// The image's name in the store.
    pub name: String,
    /// The layout.
    pub layout: VerityLayout,
    /// The store.
    pub store: PathBuf,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<ConvertArgs> for ConvertPlan {
    type Error = CliError;

    fn try_from(args: ConvertArgs) -> Result<Self, CliError> {
        let reference: Reference = args.reference.parse().map_err(|e| CliError::Usage(format!("{e}")))?;
        Ok(Self {
            name: store_name(&reference),
            layout: args.layout.parse().map_err(CliError::Usage)?,
            store: store_dir(args.store)?,
            json: args.json,
        })
    }
}

/// Converts the image and prints each layer's files and root hash.
pub(crate) fn run(plan: &ConvertPlan) -> Result<(), CliError> {
    let store = Store::open(&plan.store)?;
    let bars = Bars::new(plan.json);
    let report = convert::convert_image(&store, &plan.name, plan.layout, &|e| bars.report(e))?;
    if plan.json {
        out!("{}", serde_json::to_string_pretty(&report).unwrap_or_default())?;
        return Ok(());
    }
    out!("converted {} ({})", report.name, report.manifest)?;
    for layer in &report.layers {
        let c = &layer.conversion;
        out!(
            "  {} {} roothash {} hashoffset {}{}",
            c.layer,
            c.layout,
            c.roothash,
            c.hashoffset,
            if layer.reused { " (already converted)" } else { "" }
        )?;
        out!("    {}", c.dir.display())?;
    }
    Ok(())
}
