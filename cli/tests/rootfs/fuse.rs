//! The merged view served over FUSE: the same tree as the view itself, read-only to every write-type call.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::Arc;

use super::support::{FIXTURE_PATHS, Layers, assert_same, fixture};
use veritylab::erofs::hostfs;
use veritylab::rootfs::{self, FuseOptions, Snapshot};

const EROFS: i32 = 30;

#[track_caller]
fn assert_erofs(what: &str, result: std::io::Result<impl std::fmt::Debug>) {
    match result {
        Err(err) => assert_eq!(err.raw_os_error(), Some(EROFS), "{what}: {err}"),
        Ok(value) => panic!("{what} succeeded on the read-only rootfs: {value:?}"),
    }
}

#[test]
fn fuse_mount_shows_the_merged_view_and_refuses_writes() {
    // Root: the fixture holds files only their owners may read, and the mount is shared (`allow_other`).
    testkit::require_root!();
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    let layers = Layers::new(&fixture());
    let view = Arc::new(layers.verified());
    let expected = Snapshot::of_merged(&view).unwrap();
    assert_eq!(expected.paths(), FIXTURE_PATHS);

    let target = tempfile::tempdir().unwrap();
    let mount = rootfs::mount(view.clone(), target.path(), &FuseOptions::default()).unwrap();
    let root = target.path();
    assert_same("FUSE mount vs merged view", &expected, &Snapshot::of_dir(root).unwrap());

    // Reads, links and xattrs through the mount.
    assert_eq!(fs::read(root.join("a/y")).unwrap(), b"upper y");
    assert_eq!(fs::read_link(root.join("link")).unwrap().as_os_str(), "a/y");
    assert_eq!(fs::read(root.join("link")).unwrap(), b"upper y");
    assert_eq!(
        fs::symlink_metadata(root.join("x")).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert!(fs::symlink_metadata(root.join("c")).is_err(), "whited out");
    // The opaque marker is the overlay's own: hidden, as overlayfs hides it.
    assert!(hostfs::xattrs(&root.join("b")).unwrap().is_empty());
    assert!(hostfs::xattrs(&root.join("n")).unwrap().is_empty());
    assert_eq!(
        hostfs::xattrs(&root.join("tagged")).unwrap(),
        [(b"user.label".to_vec(), b"top".to_vec())]
    );

    // Every write-type call fails with EROFS.
    assert_erofs("create", fs::write(root.join("new-file"), b"x"));
    assert_erofs("open for writing", OpenOptions::new().write(true).open(root.join("f")));
    assert_erofs("open for append", OpenOptions::new().append(true).open(root.join("f")));
    assert_erofs(
        "truncate",
        OpenOptions::new().write(true).truncate(true).open(root.join("f")),
    );
    assert_erofs("unlink", fs::remove_file(root.join("f")));
    assert_erofs("rmdir", fs::remove_dir(root.join("x")));
    assert_erofs("mkdir", fs::create_dir(root.join("newdir")));
    assert_erofs(
        "chmod",
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o777)),
    );
    assert_erofs("rename", fs::rename(root.join("f"), root.join("f2")));
    assert_erofs("symlink", symlink("f", root.join("f-link")));
    assert_erofs("hard link", fs::hard_link(root.join("f"), root.join("f-hard")));
    assert_erofs("setxattr", hostfs::set_xattr(&root.join("f"), b"user.x", b"1"));
    assert_erofs("chown", std::os::unix::fs::lchown(root.join("f"), Some(1), Some(1)));
    assert_eq!(fs::read(root.join("f")).unwrap(), b"upper f", "nothing changed");

    mount.unmount().unwrap();
    let after = fs::read_dir(target.path()).unwrap().count();
    assert_eq!(after, 0, "the mount point is empty again");
    assert_eq!(
        fs::read(target.path().join("f")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn dropping_the_mount_unmounts() {
    // Also unprivileged: then fusermount3 mounts and unmounts.
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    let layers = Layers::new(&fixture());
    let target = tempfile::tempdir().unwrap();
    let mount = rootfs::mount(Arc::new(layers.plain()), target.path(), &FuseOptions::default()).unwrap();
    assert_eq!(fs::read(target.path().join("f")).unwrap(), b"upper f");
    drop(mount);
    let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let shown = target.path().display().to_string();
    assert!(
        !mounted.lines().any(|l| l.split(' ').nth(4) == Some(shown.as_str())),
        "still mounted at {shown}"
    );
}
