//! `veritylab images [--store DIR] [--json]`: the images in the store, with their layers' root hashes where
//! converted.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, store_dir};
use crate::convert::{self, VerityLayout};
use crate::oci::Digest;
use crate::oci::manifest::{self, Manifest};
use crate::root_hash::RootHash;
use crate::store::Store;

/// Raw arguments of `veritylab images`.
#[derive(Args, Debug, Clone)]
pub struct ImagesArgs {
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One image in the listing.
#[derive(Debug, Clone, Serialize)]
pub struct ImageEntry {
    /// Its name.
    pub name: String,
    /// Its manifest digest.
    pub manifest: Digest,
    /// Its platform, when picked from an index.
    pub platform: Option<String>,
    /// Its layers.
    pub layers: Vec<LayerEntry>,
}

/// One layer in the listing.
#[derive(Debug, Clone, Serialize)]
pub struct LayerEntry {
    /// The layer digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Root hash of the containerd layout's tree, if converted.
    pub containerd_roothash: Option<RootHash>,
    /// Root hash of the separate layout's tree, if converted.
    pub separate_roothash: Option<RootHash>,
}

/// Lists the store's images (signature manifests, `…:sha256-<hex>.sig`, are not images and are left out).
pub fn list(store: &Store) -> Result<Vec<ImageEntry>, CliError> {
    let mut out = Vec::new();
    for (name, descriptor) in store.images()? {
        if crate::sign::cosign::is_signature_name(&name) {
            continue;
        }
        let bytes = store.read_blob(&descriptor.digest, descriptor.size, 4 << 20, "manifest")?;
        let layers = match manifest::parse(&descriptor.digest, &descriptor.media_type, &bytes)? {
            Manifest::Image(image) => image.layers,
            Manifest::Index(_) => Vec::new(),
        };
        let mut entries = Vec::with_capacity(layers.len());
        for layer in layers {
            let root = |layout| convert::existing(store, &layer.digest, layout).map(|c| c.map(|c| c.roothash));
            entries.push(LayerEntry {
                digest: layer.digest,
                size: layer.size,
                containerd_roothash: root(VerityLayout::Containerd)?,
                separate_roothash: root(VerityLayout::Separate)?,
            });
        }
        out.push(ImageEntry {
            name,
            manifest: descriptor.digest,
            platform: descriptor.platform.as_ref().map(ToString::to_string),
            layers: entries,
        });
    }
    Ok(out)
}

/// Prints the listing.
pub(crate) fn run(args: &ImagesArgs) -> Result<(), CliError> {
    let store = Store::open(&store_dir(args.store.clone())?)?;
    let images = list(&store)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&images).unwrap_or_default())?;
        return Ok(());
    }
    for image in &images {
        out!("{}  {}", image.name, image.manifest)?;
        for layer in &image.layers {
            let show = |r: &Option<RootHash>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
            out!(
                "  {} {:>10} containerd {} separate {}",
                layer.digest,
                layer.size,
                show(&layer.containerd_roothash),
                show(&layer.separate_roothash)
            )?;
        }
    }
    Ok(())
}
