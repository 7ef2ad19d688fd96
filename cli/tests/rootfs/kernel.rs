//! The merged view of three converted layers against a kernel overlay of the same EROFS layers and against
//! `umoci unpack` of an OCI image made of the same tar layers.

use std::fs;
use std::process::Command;

use super::support::{FIXTURE_PATHS, Item, Layers, Mount, assert_same, fixture, oci_layout, run};
use veritylab::erofs::hostfs;
use veritylab::rootfs::Snapshot;

#[test]
fn merged_view_matches_kernel_overlay_and_umoci_unpack() {
    testkit::require_root!();
    let umoci = testkit::require_tool!("umoci");
    let layers = Layers::new(&fixture());
    let ours = Snapshot::of_merged(&layers.plain()).unwrap();
    assert_eq!(ours.paths(), FIXTURE_PATHS, "the overlay rules");

    let mounts: Vec<Mount> = layers.images.iter().map(|image| Mount::erofs(image)).collect();
    let lowers: Vec<&std::path::Path> = mounts.iter().map(Mount::path).collect();
    let overlay = Mount::overlay(&lowers);
    let kernel = Snapshot::of_dir(overlay.path()).unwrap();
    assert_same("kernel overlay vs merged view", &kernel, &ours);
    // Extended attributes too: the overlay's private ones hidden, the others as the uppermost layer has them.
    let view = layers.plain();
    for path in FIXTURE_PATHS {
        let mut theirs = hostfs::xattrs(&overlay.path().join(path.trim_start_matches('/'))).unwrap();
        theirs.sort();
        let ours = view.xattrs(&view.lookup(path.as_bytes()).unwrap()).unwrap();
        assert_eq!(theirs, ours, "{path}");
    }
    assert_eq!(
        view.xattrs(&view.lookup(b"/tagged").unwrap()).unwrap(),
        [(b"user.label".to_vec(), b"top".to_vec())]
    );
    // Why the host walker skips names it cannot stat: overlayfs lists the whiteout of a directory only one
    // layer holds, yet finds nothing under its name. The merged view hides it from both.
    let listed: Vec<_> = fs::read_dir(overlay.path().join("h"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(listed.iter().any(|n| n == "ghost"), "{listed:?}");
    assert!(fs::symlink_metadata(overlay.path().join("h/ghost")).is_err());

    let layout = layers.dir.path().join("layout");
    oci_layout(&layout, "v1", &layers.tars);
    let bundle = layers.dir.path().join("bundle");
    run(Command::new(umoci)
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    let unpacked = Snapshot::of_umoci_bundle(&bundle).unwrap();
    assert_same("umoci unpack vs merged view", &unpacked, &ours);
}

#[test]
fn verified_layers_give_the_same_view_as_plain_ones() {
    let layers = Layers::new(&fixture());
    let plain = Snapshot::of_merged(&layers.plain()).unwrap();
    let verified = Snapshot::of_merged(&layers.verified()).unwrap();
    assert_same("verified vs plain", &plain, &verified);
}

#[test]
fn rootless_umoci_unpack_gives_the_image_owners() {
    let umoci = testkit::require_tool!("umoci");
    // Device nodes cannot be made without privileges: leave them out.
    let stack: Vec<Vec<Item>> = fixture()
        .into_iter()
        .map(|layer| layer.into_iter().filter(|i| !matches!(i, Item::Char(..))).collect())
        .collect();
    let layers = Layers::new(&stack);
    let ours = Snapshot::of_merged(&layers.plain()).unwrap();
    assert_eq!(ours.get("/owned").map(|e| (e.uid, e.gid)), Some((1000, 1001)));

    let layout = layers.dir.path().join("layout");
    oci_layout(&layout, "v1", &layers.tars);
    let bundle = layers.dir.path().join("bundle");
    run(Command::new(umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    assert_same(
        "umoci unpack --rootless vs merged view",
        &Snapshot::of_umoci_bundle(&bundle).unwrap(),
        &ours,
    );
    // The owners come from the xattr: on disk the file belongs to the unpacking user.
    let on_disk = Snapshot::of_dir(&bundle.join("rootfs")).unwrap();
    assert_ne!(on_disk.get("/owned").map(|e| (e.uid, e.gid)), Some((1000, 1001)));
}
