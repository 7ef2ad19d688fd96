//! `veritylab convert REF [--layout containerd|separate] [--fec-roots N] [--store DIR] [--json]`: converts
//! every layer of a pulled image to `layer.erofs` plus a dm-verity tree, and with `--fec-roots` Reed-Solomon
//! parity in `layer.erofs.fec`.

use std::path::PathBuf;

use clap::Args;

use super::bars::Bars;
use super::{CliError, store_dir};
use crate::convert::{self, VerityLayout};
use crate::oci::Reference;
use crate::oci::pull::store_name;
use crate::store::Store;
use verity_fuse::fec::{MAX_ROOTS, MIN_ROOTS};

/// Raw arguments of `veritylab convert`.
#[derive(Args, Debug, Clone)]
pub struct ConvertArgs {
    /// The image, as given to `pull`.
    pub reference: String,
    /// Where the tree goes: `containerd` (appended to layer.erofs, with the .dmverity sidecar) or
    /// `separate` (layer.erofs.verity).
    #[arg(long, default_value = "containerd", value_parser = ["containerd", "separate"])]
    pub layout: String,
    /// Also write forward error correction parity with N roots per codeword (2 to 24) into
    /// layer.erofs.fec, as `veritysetup format --fec-device layer.erofs.fec --fec-roots N`.
    #[arg(long, value_name = "N")]
    pub fec_roots: Option<u32>,
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
    /// Parity roots, when each layer gets forward error correction.
    pub fec_roots: Option<u32>,
    /// The store.
    pub store: PathBuf,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<ConvertArgs> for ConvertPlan {
    type Error = CliError;

    fn try_from(args: ConvertArgs) -> Result<Self, CliError> {
        let reference: Reference = args.reference.parse().map_err(|e| CliError::Usage(format!("{e}")))?;
        if let Some(roots) = args.fec_roots.filter(|r| !(MIN_ROOTS..=MAX_ROOTS).contains(r)) {
            return Err(CliError::Usage(format!(
                "--fec-roots {roots} is outside {MIN_ROOTS}..={MAX_ROOTS}"
            )));
        }
        Ok(Self {
            name: store_name(&reference),
            layout: args.layout.parse().map_err(CliError::Usage)?,
            fec_roots: args.fec_roots,
            store: store_dir(args.store)?,
            json: args.json,
        })
    }
}

/// Converts the image and prints each layer's files and root hash.
pub(crate) fn run(plan: &ConvertPlan) -> Result<(), CliError> {
    let store = Store::open(&plan.store)?;
    let bars = Bars::new(plan.json);
    let report = convert::convert_image_with(&store, &plan.name, plan.layout, plan.fec_roots, &|e| bars.report(e))?;
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
        if let Some(fec) = c.fec {
            out!(
                "    FEC {} roots over {} blocks in {}",
                fec.roots,
                fec.blocks,
                convert::FEC_FILE
            )?;
        }
    }
    Ok(())
}
