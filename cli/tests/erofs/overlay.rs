//! Two of our layers with whiteouts and an opaque directory, as kernel overlay lowerdirs, against an overlay
//! of the equivalent plain directories (whiteouts as 0:0 character devices, the opaque xattr set by hand).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::support::{Mount, assert_same, run, snapshot_dir, touch, veritylab};
use veritylab::erofs::hostfs::{self, Special};

const T: u64 = 1_650_000_000;

/// An entry of a test layer.
enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
}

fn tar_layer(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(T);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Item::File(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

const LOWER: &[Item<'static>] = &[
    Item::Dir("a"),
    Item::File("a/x", b"lower x"),
    Item::File("a/y", b"lower y"),
    Item::Dir("b"),
    Item::File("b/z", b"lower z"),
    Item::Dir("b/sub"),
    Item::File("b/sub/w", b"lower w"),
    Item::File("c", b"lower c"),
    Item::Dir("d"),
    Item::File("d/e", b"lower e"),
];

const UPPER: &[Item<'static>] = &[
    Item::Dir("a"),
    Item::File("a/.wh.x", b""),
    Item::File("a/y", b"upper y"),
    Item::Dir("b"),
    Item::File("b/.wh..wh..opq", b""),
    Item::File("b/new", b"upper new"),
    Item::File(".wh.c", b""),
    Item::File(".wh.d", b""),
    Item::File("f", b"upper f"),
];

/// The plain-directory equivalent of a layer: whiteouts become 0:0 devices, opaque markers an xattr.
fn plain_layer(root: &Path, items: &[Item<'_>], opaque_xattr: &[u8]) {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    for item in items {
        match item {
            Item::Dir(path) => {
                fs::create_dir_all(root.join(path)).unwrap();
                fs::set_permissions(root.join(path), fs::Permissions::from_mode(0o755)).unwrap();
            }
            Item::File(path, data) => {
                let p = root.join(path);
                let name = p.file_name().unwrap().to_str().unwrap().to_owned();
                if name == ".wh..wh..opq" {
                    hostfs::set_xattr(p.parent().unwrap(), opaque_xattr, b"y").unwrap();
                } else if let Some(hidden) = name.strip_prefix(".wh.") {
                    hostfs::mknod(&p.with_file_name(hidden), Special::CharDevice(0, 0), 0).unwrap();
                } else {
                    fs::write(&p, data).unwrap();
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
                }
            }
        }
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        touch(&p, T as i64, 0);
    }
}

fn overlay_case(userxattr: bool) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut images = Vec::new();
    for (name, items) in [("lower", LOWER), ("upper", UPPER)] {
        let archive = w.join(format!("{name}.tar"));
        fs::write(&archive, tar_layer(items)).unwrap();
        let image = w.join(format!("{name}.erofs"));
        let mut cmd = veritylab();
        cmd.args(["mkfs", "--tar", "--aufs"]);
        if userxattr {
            cmd.arg("--userxattr");
        }
        run(cmd.arg(&image).arg(&archive));
        images.push(image);
    }
    let opaque: &[u8] = if userxattr {
        b"user.overlay.opaque"
    } else {
        b"trusted.overlay.opaque"
    };
    let plain_lower = w.join("plain-lower");
    let plain_upper = w.join("plain-upper");
    fs::create_dir(&plain_lower).unwrap();
    fs::create_dir(&plain_upper).unwrap();
    plain_layer(&plain_lower, LOWER, opaque);
    plain_layer(&plain_upper, UPPER, opaque);

    let lower_mount = Mount::erofs(&images[0]);
    let upper_mount = Mount::erofs(&images[1]);
    let ours = Mount::overlay_with(&[upper_mount.path(), lower_mount.path()], userxattr);
    let theirs = Mount::overlay_with(&[&plain_upper, &plain_lower], userxattr);
    let got = snapshot_dir(ours.path());
    assert_same(&snapshot_dir(theirs.path()), &got);

    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["/", "/a", "/a/y", "/b", "/b/new", "/f"],
        "deletions and the opaque directory"
    );
    assert_eq!(fs::read(ours.path().join("a/y")).unwrap(), b"upper y");
}

#[test]
fn overlay_of_our_layers_matches_overlay_of_directories() {
    testkit::require_root!();
    overlay_case(false);
}

#[test]
fn userxattr_overlay_of_our_layers_matches_overlay_of_directories() {
    testkit::require_root!();
    overlay_case(true);
}
