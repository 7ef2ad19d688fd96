//! A byte flipped in a layer file under a verified device: reads of the file it belongs to fail with EIO,
//! in process and through FUSE, and the other files still read.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::support::{Layers, fixture, unique_data};
use veritylab::rootfs::{self, FuseOptions, RootfsError, Snapshot, SnapshotError};
use veritylab::verity_fuse::VerityError;

const EIO: i32 = 5;

/// Flips one byte inside the data of the lowest layer's `/big/data` (found by its unique content) on disk.
fn flip_big_data(layers: &Layers) {
    let image = &layers.images[0];
    let bytes = fs::read(image).unwrap();
    let needle = &unique_data(b"BIGDATA!", 4096)[1000..1064];
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the file's data is stored whole in the image");
    let file = fs::OpenOptions::new().write(true).open(image).unwrap();
    file.write_all_at(&[!bytes[at + 5]], (at + 5) as u64).unwrap();
}

#[track_caller]
fn assert_verification_failure(err: &RootfsError) {
    assert!(err.is_verification_failure(), "{err}");
    assert_eq!(err.errno(), EIO);
    let RootfsError::Verification { layer, path, source } = err else {
        unreachable!()
    };
    assert_eq!((*layer, path.as_str()), (0, "/big/data"));
    assert!(matches!(source, VerityError::HashMismatch { .. }), "{source}");
}

#[test]
fn a_flipped_byte_fails_reads_of_its_file_only() {
    let layers = Layers::new(&fixture());
    let view = layers.verified();
    let before = view.read_file(b"/big/data", 1 << 20).unwrap();
    assert_eq!(before, unique_data(b"BIGDATA!", 3 * 4096 + 100));
    flip_big_data(&layers);

    let err = view.read_file(b"/big/data", 1 << 20).unwrap_err();
    assert_verification_failure(&err);
    // The whole-file read fails; so does the block holding the byte, read alone.
    let file = view.open_file(b"/big/data").unwrap();
    let mut block = vec![0u8; 4096];
    assert_verification_failure(&file.read_at(0, &mut block).unwrap_err());
    // Through `std::io::Read` the error travels inside the io::Error.
    let mut reader = view.open_file(b"/big/data").unwrap();
    let io_err = std::io::Read::read_to_end(&mut reader, &mut Vec::new()).unwrap_err();
    assert_verification_failure(io_err.get_ref().unwrap().downcast_ref::<RootfsError>().unwrap());

    // Other files, in the same layer and above it, read as before; metadata is intact.
    assert_eq!(
        view.read_file(b"/big/other", 1 << 20).unwrap(),
        unique_data(b"OTHERDAT", 2 * 4096)
    );
    assert_eq!(view.read_file(b"/a/y", 1 << 20).unwrap(), b"upper y");
    assert_eq!(view.metadata(b"/big/data").unwrap().size, 3 * 4096 + 100);
    match Snapshot::of_merged(&view) {
        Err(SnapshotError::Merged(err)) => assert_verification_failure(&err),
        other => panic!("snapshot of a tampered view: {other:?}"),
    }

    // A fresh view over the tampered files says the same.
    let fresh = layers.verified();
    assert_verification_failure(&fresh.read_file(b"/big/data", 1 << 20).unwrap_err());
}

#[test]
fn a_flipped_byte_fails_reads_through_fuse_with_eio() {
    testkit::require_root!();
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    let layers = Layers::new(&fixture());
    let view = Arc::new(layers.verified());
    // Tampered before the mount: nothing of the file is in the page cache.
    flip_big_data(&layers);
    let target = tempfile::tempdir().unwrap();
    let mount = rootfs::mount(view, target.path(), &FuseOptions::default()).unwrap();
    let root: &Path = target.path();

    let err = fs::read(root.join("big/data")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    assert_eq!(fs::metadata(root.join("big/data")).unwrap().len(), 3 * 4096 + 100);
    assert_eq!(
        fs::read(root.join("big/other")).unwrap(),
        unique_data(b"OTHERDAT", 2 * 4096)
    );
    assert_eq!(fs::read(root.join("a/y")).unwrap(), b"upper y");
    mount.unmount().unwrap();
}
