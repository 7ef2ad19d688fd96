//! The merged view in process (the `emulated` backend): lookups, metadata, listings, reads, xattrs, errors
//! and inode numbers.

use std::io::{Read, Seek, SeekFrom};

use super::support::{Item, Layers, fixture, unique_data};
use veritylab::erofs::{FileKind, OverlayNamespace};
use veritylab::rootfs::{Merged, RootfsError, Snapshot};

#[test]
fn lookups_follow_the_overlay_rules() {
    let layers = Layers::new(&fixture());
    let view = layers.verified();
    let kind = |p: &[u8]| view.metadata(p).map(|s| s.kind);
    assert_eq!(view.read_file(b"/a/y", 100).unwrap(), b"upper y");
    assert_eq!(view.read_file(b"/m/keep", 100).unwrap(), b"kept from the lowest layer");
    assert_eq!(view.read_file(b"/e", 100).unwrap(), b"a file over a directory");
    assert_eq!(kind(b"/g").unwrap(), FileKind::Directory);
    assert_eq!(view.read_file(b"/g/inside", 100).unwrap(), b"a directory over a file");
    assert_eq!(view.read_link_at(b"/link").unwrap(), b"a/y");
    assert_eq!(view.read_link_at(b"/dangling").unwrap(), b"/no/such/target");
    for hidden in [
        &b"/a/x"[..],
        b"/c",
        b"/d",
        b"/d/e",
        b"/b/z",
        b"/b/sub",
        b"/m/one",
        b"/h/ghost",
    ] {
        match view.metadata(hidden) {
            Err(RootfsError::NotFound { .. }) => {}
            other => panic!("{}: {other:?}", String::from_utf8_lossy(hidden)),
        }
    }
    assert!(matches!(view.metadata(b"/e/f"), Err(RootfsError::NotADirectory { .. })));
    let names: Vec<Vec<u8>> = view.list(b"/m").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [&b"keep"[..], b"three", b"two"]);
    // Paths are normalised lexically and never climb above the root.
    assert_eq!(view.read_file(b"//a/./../../a/y", 100).unwrap(), b"upper y");

    let owned = view.metadata(b"/owned").unwrap();
    assert_eq!((owned.uid, owned.gid, owned.permissions()), (1000, 1001, 0o640));
    assert_eq!(owned.layer, 0);
    assert_eq!(view.metadata(b"/setuid").unwrap().permissions(), 0o4755);
    assert_eq!(view.metadata(b"/dev/null").unwrap().rdev, Some((1, 3)));
    assert_eq!(view.metadata(b"/x").unwrap().permissions(), 0o700);
    // A directory merged from several layers has one link, as overlayfs reports; its metadata is the top's.
    let m = view.metadata(b"/m").unwrap();
    assert_eq!((m.nlink, m.layer), (1, 2));
    assert_eq!(view.lookup(b"/m").unwrap().layers(), [2, 1, 0]);
    // Opaque directories end the merge.
    assert_eq!(view.lookup(b"/b").unwrap().layers(), [1]);
    assert_eq!(view.lookup(b"/n").unwrap().layers(), [2]);
}

#[test]
fn errors_are_typed() {
    let layers = Layers::new(&fixture());
    let view = layers.plain();
    assert!(matches!(view.list(b"/f"), Err(RootfsError::NotADirectory { .. })));
    match view.metadata(b"/f/x") {
        Err(RootfsError::NotADirectory { path }) => assert_eq!(path, "/f", "names the component"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        view.read_file(b"/a", 10),
        Err(RootfsError::IsADirectory { .. })
    ));
    assert!(matches!(
        view.read_file(b"/fifo", 10),
        Err(RootfsError::NotAFile { .. })
    ));
    assert!(matches!(view.read_link_at(b"/f"), Err(RootfsError::NotASymlink { .. })));
    assert!(matches!(
        view.read_file(b"/big/data", 10),
        Err(RootfsError::TooLarge { size: 12388, .. })
    ));
    assert!(matches!(view.node(12345), Err(RootfsError::StaleInode { ino: 12345 })));
    let err = view.metadata(b"/nope").unwrap_err();
    assert_eq!(
        (err.errno(), err.to_string().as_str()),
        (2, "/nope: no such file or directory")
    );
    assert!(matches!(
        Merged::<Vec<u8>>::from_sources(Vec::new(), OverlayNamespace::Trusted),
        Err(RootfsError::NoLayers)
    ));
    match Merged::from_sources(vec![vec![0u8; 8192]], OverlayNamespace::Trusted) {
        Err(err @ RootfsError::Layer { layer: 0, .. }) => assert_eq!(err.errno(), 117, "EFSCORRUPTED, as EROFS"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_read_and_seek() {
    let layers = Layers::new(&fixture());
    let view = layers.verified();
    let want = unique_data(b"BIGDATA!", 3 * 4096 + 100);
    let mut file = view.open_file(b"/big/data").unwrap();
    assert_eq!(file.size(), want.len() as u64);
    let mut got = Vec::new();
    file.read_to_end(&mut got).unwrap();
    assert_eq!(got, want);
    file.seek(SeekFrom::End(-150)).unwrap();
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, want[want.len() - 150..]);
    assert!(file.seek(SeekFrom::Current(-100_000)).is_err());
    let mut buf = [0u8; 10];
    assert_eq!(file.read_at(want.len() as u64, &mut buf).unwrap(), 0);
    assert_eq!(file.read_at(4090, &mut buf).unwrap(), 10);
    assert_eq!(buf, want[4090..4100]);
}

#[test]
fn private_overlay_xattrs_are_hidden_in_their_namespace_only() {
    let mut lowest = vec![Item::Dir(".".into(), 0o755), Item::Dir("d".into(), 0o755)];
    lowest.push(Item::File("d/f".into(), b"f".to_vec()));
    let upper = vec![
        Item::Dir(".".into(), 0o755),
        Item::Dir("d".into(), 0o755),
        Item::Opaque("d".into()),
    ];
    let layers = Layers::new(&[lowest, upper]);
    let view = layers.plain();
    let d = view.lookup(b"/d").unwrap();
    assert!(view.xattrs(&d).unwrap().is_empty());
    assert_eq!(view.xattr(&d, b"trusted.overlay.opaque").unwrap(), None);
    assert!(view.list(b"/d").unwrap().is_empty(), "opaque");
    // Read as a userxattr overlay would: `trusted.overlay.*` is an ordinary xattr and marks nothing.
    let sources = layers
        .images
        .iter()
        .map(|p| veritylab::verity_fuse::source::FileSource::open(p).unwrap())
        .collect();
    let user = Merged::from_sources(sources, OverlayNamespace::User).unwrap();
    let d = user.lookup(b"/d").unwrap();
    assert_eq!(
        user.xattrs(&d).unwrap(),
        [(b"trusted.overlay.opaque".to_vec(), b"y".to_vec())]
    );
    assert_eq!(user.list(b"/d").unwrap().len(), 1, "not opaque to a userxattr overlay");
}

#[test]
fn inode_numbers_are_stable_and_resolve_back() {
    let layers = Layers::new(&fixture());
    let one = layers.plain();
    let two = layers.verified();
    let numbers = |view: &dyn Fn(&[u8]) -> u64| -> Vec<u64> {
        super::support::FIXTURE_PATHS
            .iter()
            .map(|p| view(p.as_bytes()))
            .collect()
    };
    let a = numbers(&|p| one.lookup(p).unwrap().ino());
    let b = numbers(&|p| two.lookup(p).unwrap().ino());
    assert_eq!(a, b, "the same layers give the same numbers");
    let mut unique = a.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        a.len() - 1,
        "distinct files have distinct numbers; a hard link shares one"
    );
    assert_eq!(
        one.lookup(b"/owned").unwrap().ino(),
        one.lookup(b"/owned-link").unwrap().ino()
    );
    assert!(a.iter().all(|&ino| ino > 1));
    for path in super::support::FIXTURE_PATHS {
        let node = one.lookup(path.as_bytes()).unwrap();
        assert_eq!(node.path(), path.as_bytes());
        let first = if *path == "/owned-link" { "/owned" } else { path };
        assert_eq!(one.node(node.ino()).unwrap().path(), first.as_bytes());
    }
    // Listings report the numbers lookups give.
    for entry in one.list(b"/m").unwrap() {
        let mut path = b"/m/".to_vec();
        path.extend_from_slice(&entry.name);
        assert_eq!(one.lookup(&path).unwrap().ino(), entry.ino);
    }
    assert_eq!(
        Snapshot::of_merged(&one).unwrap().digest(),
        Snapshot::of_merged(&two).unwrap().digest()
    );
}
