//! The same input gives byte-identical images, whichever way it arrives.

use std::fs;

use super::support::{TreeSpec, gnu_tar, make_tree, run, veritylab};

#[test]
fn same_input_twice_gives_identical_images() {
    let tar = testkit::require_tool!("tar");
    let root = testkit::is_root();
    let src = tempfile::tempdir().unwrap();
    make_tree(
        src.path(),
        TreeSpec {
            privileged: root,
            socket: false,
            longest_name: 255,
        },
    );
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("t.tar");
    gnu_tar(&tar, src.path(), &archive);
    let mut images = Vec::new();
    for (i, input) in [&archive, &archive].iter().enumerate() {
        let image = work.path().join(format!("tar-{i}.erofs"));
        run(veritylab().arg("mkfs").arg("--tar").arg(&image).arg(input));
        images.push(fs::read(&image).unwrap());
    }
    assert_eq!(images[0], images[1], "tar input");
    let mut from_dir = Vec::new();
    for i in 0..2 {
        let image = work.path().join(format!("dir-{i}.erofs"));
        run(veritylab().arg("mkfs").arg(&image).arg(src.path()));
        from_dir.push(fs::read(&image).unwrap());
    }
    assert_eq!(from_dir[0], from_dir[1], "directory input");
}
