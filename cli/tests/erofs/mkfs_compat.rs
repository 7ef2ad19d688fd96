//! Our reader against images made by `mkfs.erofs` (erofs-utils 1.5) with several option sets, and
//! `veritylab erofs extract` reproducing the source tree.

use std::path::Path;
use std::process::Command;

use super::support::{
    Ignore, TreeSpec, assert_same, make_tree, open_image, run, snapshot_dir, snapshot_image, strip, system_directories,
    veritylab,
};
use veritylab::erofs::ReadError;

/// Option sets and what each one legitimately drops from the source.
const OPTION_SETS: &[(&[&str], Ignore)] = &[
    (
        &[],
        Ignore {
            mtime: false,
            xattrs: false,
            owner_high_bits: false,
        },
    ),
    (
        &["-Enoinline_data"],
        Ignore {
            mtime: false,
            xattrs: false,
            owner_high_bits: false,
        },
    ),
    (
        &["-x-1"],
        Ignore {
            mtime: false,
            xattrs: true,
            owner_high_bits: false,
        },
    ),
    (
        &["-Eforce-inode-compact"],
        Ignore {
            mtime: true,
            xattrs: false,
            owner_high_bits: true,
        },
    ),
    (
        &["-Eforce-inode-extended"],
        Ignore {
            mtime: false,
            xattrs: false,
            owner_high_bits: false,
        },
    ),
    (
        &["--chunksize=4096"],
        Ignore {
            mtime: false,
            xattrs: false,
            owner_high_bits: false,
        },
    ),
    (
        &["--chunksize=65536"],
        Ignore {
            mtime: false,
            xattrs: false,
            owner_high_bits: false,
        },
    ),
];

/// `large_ids`: the tree has ids above 65535, which mkfs.erofs refuses with -Eforce-inode-compact.
fn check_tree(src: &Path, extract: bool, large_ids: bool) {
    let mkfs = testkit::require_tool!("mkfs.erofs");
    let work = tempfile::tempdir().unwrap();
    for (i, (args, ignore)) in OPTION_SETS.iter().enumerate() {
        if large_ids && args.contains(&"-Eforce-inode-compact") {
            continue;
        }
        let image = work.path().join(format!("img-{i}.erofs"));
        run(Command::new(&mkfs).arg("--quiet").args(*args).arg(&image).arg(src));
        let expected = strip(snapshot_dir(src), *ignore);
        let got = strip(snapshot_image(&open_image(&image)), *ignore);
        assert_same(&expected, &got);
        if extract {
            let out = work.path().join(format!("out-{i}"));
            run(veritylab().args(["erofs", "extract"]).arg(&image).arg(&out));
            assert_same(&expected, &strip(snapshot_dir(&out), *ignore));
        }
    }
}

#[test]
fn reader_reads_mkfs_erofs_images_of_a_generated_tree() {
    let root = testkit::is_root();
    let src = tempfile::tempdir().unwrap();
    make_tree(
        src.path(),
        TreeSpec {
            privileged: root,
            socket: true,
            longest_name: 254,
        },
    );
    check_tree(src.path(), root, root);
}

#[test]
fn reader_reads_mkfs_erofs_images_of_system_directories() {
    testkit::require_root!();
    let Some(dirs) = system_directories("erofs::mkfs_compat::reader_reads_mkfs_erofs_images_of_system_directories")
    else {
        return;
    };
    for dir in dirs {
        check_tree(dir, true, false);
    }
}

#[test]
fn compressed_files_give_a_clear_unsupported_error() {
    let mkfs = testkit::require_tool!("mkfs.erofs");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("text"), "compressible ".repeat(10_000)).unwrap();
    let image = work.path().join("lz4.erofs");
    run(Command::new(&mkfs).args(["--quiet", "-zlz4"]).arg(&image).arg(&src));
    let image = open_image(&image);
    let inode = image.lookup(b"/text").unwrap();
    let err = image.read_to_vec(&inode, u64::MAX).unwrap_err();
    assert!(
        matches!(err, ReadError::Compressed { nid } if nid == inode.nid),
        "{err}"
    );
}
