//! Privileged tier: images we write pass `fsck.erofs` and, mounted by the kernel, show exactly the source.

use std::path::Path;
use std::process::Command;

use super::support::{
    Mount, TreeSpec, assert_same, gnu_tar, make_tree, open_image, run, snapshot_dir, snapshot_image,
    system_directories, veritylab,
};

/// tar (GNU, pax format, xattrs) → `veritylab mkfs --tar` → fsck.erofs → kernel mount == source.
fn tar_round_trip(src: &Path, extra: &[&str], fsck: bool) {
    let tar = testkit::require_tool!("tar");
    let fsck_erofs = testkit::require_tool!("fsck.erofs");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("layer.tar");
    let image = work.path().join("layer.erofs");
    gnu_tar(&tar, src, &archive);
    run(veritylab()
        .arg("mkfs")
        .arg("--tar")
        .args(extra)
        .arg(&image)
        .arg(&archive));
    if fsck {
        run(Command::new(&fsck_erofs).arg(&image));
    }
    let expected = snapshot_dir(src);
    assert_same(&expected, &snapshot_image(&open_image(&image)));
    let mount = Mount::erofs(&image);
    assert_same(&expected, &snapshot_dir(mount.path()));
}

#[test]
fn generated_tree_from_gnu_tar_mounts_exactly() {
    testkit::require_root!();
    let src = tempfile::tempdir().unwrap();
    make_tree(
        src.path(),
        TreeSpec {
            privileged: true,
            socket: false,
            longest_name: 255,
        },
    );
    tar_round_trip(src.path(), &[], true);
    tar_round_trip(src.path(), &["--no-inline-data"], true);
    tar_round_trip(
        src.path(),
        &[
            "--mkfs-time",
            "1600000000",
            "--uuid",
            "0123456789abcdef0123456789abcdef",
        ],
        true,
    );
}

#[test]
fn block_size_512_mounts_exactly() {
    testkit::require_root!();
    let src = tempfile::tempdir().unwrap();
    make_tree(
        src.path(),
        TreeSpec {
            privileged: true,
            socket: false,
            longest_name: 255,
        },
    );
    // fsck.erofs 1.5 only knows 4096-byte blocks; the kernel is the oracle here.
    tar_round_trip(src.path(), &["--block-size", "512"], false);
    tar_round_trip(src.path(), &["--block-size", "512", "--no-inline-data"], false);
}

#[test]
fn directory_input_with_a_socket_mounts_exactly() {
    testkit::require_root!();
    let fsck_erofs = testkit::require_tool!("fsck.erofs");
    let src = tempfile::tempdir().unwrap();
    make_tree(
        src.path(),
        TreeSpec {
            privileged: true,
            socket: true,
            longest_name: 255,
        },
    );
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("dir.erofs");
    run(veritylab().arg("mkfs").arg(&image).arg(src.path()));
    run(Command::new(&fsck_erofs).arg(&image));
    let mount = Mount::erofs(&image);
    assert_same(&snapshot_dir(src.path()), &snapshot_dir(mount.path()));
}

#[test]
fn system_directories_from_gnu_tar_mount_exactly() {
    testkit::require_root!();
    let Some(dirs) = system_directories("erofs::kernel::system_directories_from_gnu_tar_mount_exactly") else {
        return;
    };
    for dir in dirs {
        tar_round_trip(dir, &[], true);
    }
}
