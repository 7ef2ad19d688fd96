//! Layers pulled and converted by the pipeline (`pull`, `convert`), opened with `rootfs::open_verified` and
//! `open_plain`, merge into the tree `umoci unpack` makes of the same image.

use std::process::Command;
use std::sync::Arc;

use super::support::{Item, Layers, assert_same, fixture, oci_layout, run};
use veritylab::convert::{self, VerityLayout};
use veritylab::erofs::OverlayNamespace;
use veritylab::oci::{self, PullOptions, Reference};
use veritylab::rootfs::{self, Merged, RootfsError, Snapshot};
use veritylab::store::Store;
use veritylab::verity_fuse::ReadAt;
use veritylab::verity_fuse::device::Options;

#[test]
fn converted_layers_merge_into_what_umoci_unpacks() {
    let umoci = testkit::require_tool!("umoci");
    // Device nodes cannot be made by an unprivileged umoci: leave them out.
    let stack: Vec<Vec<Item>> = fixture()
        .into_iter()
        .map(|layer| layer.into_iter().filter(|i| !matches!(i, Item::Char(..))).collect())
        .collect();
    let layers = Layers::new(&stack);
    let work = layers.dir.path();
    let layout = work.join("layout");
    oci_layout(&layout, "v1", &layers.tars);
    let bundle = work.join("bundle");
    run(Command::new(umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    let unpacked = Snapshot::of_umoci_bundle(&bundle).unwrap();

    let store = Store::open(&work.join("store")).unwrap();
    let reference: Reference = format!("oci:{}:v1", layout.display()).parse().unwrap();
    let pulled = oci::pull(&reference, &store, &PullOptions::default(), &|_| {}).unwrap();
    for layout in [VerityLayout::Containerd, VerityLayout::Separate] {
        let image = convert::convert_image(&store, &pulled.name, layout, &|_| {}).unwrap();
        let verified: Vec<Arc<dyn ReadAt>> = image
            .layers
            .iter()
            .map(|l| {
                let root = l.conversion.roothash.as_bytes().to_vec();
                let device = rootfs::open_verified(&l.conversion, &root, Options::default()).unwrap();
                Arc::new(device) as Arc<dyn ReadAt>
            })
            .collect();
        let view = Merged::from_sources(verified, OverlayNamespace::Trusted).unwrap();
        assert_same(
            &format!("{layout}: verified view vs umoci"),
            &unpacked,
            &Snapshot::of_merged(&view).unwrap(),
        );

        let plain = image
            .layers
            .iter()
            .map(|l| rootfs::open_plain(&l.conversion).unwrap())
            .collect();
        let view = Merged::from_sources(plain, OverlayNamespace::Trusted).unwrap();
        assert_same(
            &format!("{layout}: plain view vs umoci"),
            &unpacked,
            &Snapshot::of_merged(&view).unwrap(),
        );

        // A root hash other than the tree's: the first read of the layer fails verification.
        let top = &image.layers.last().unwrap().conversion;
        let wrong = rootfs::open_verified(top, &[0x5a; 32], Options::default()).unwrap();
        match Merged::from_sources(vec![wrong], OverlayNamespace::Trusted) {
            Err(err @ RootfsError::Verification { layer: 0, .. }) => assert_eq!(err.errno(), 5),
            other => panic!("{layout}: {other:?}"),
        }
        // A record claiming other tree parameters is refused.
        let mut claimed = top.clone();
        claimed.hash = "sha1".into();
        assert!(matches!(
            rootfs::open_verified(&claimed, &[0; 32], Options::default()),
            Err(rootfs::LayerError::Parameters { field: "hash", .. })
        ));
    }
}
