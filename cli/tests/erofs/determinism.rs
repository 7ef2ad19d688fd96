//! The same input gives byte-identical images, whichever way it arrives: a tar file, the same tar on stdin,
//! gzip- or zstd-compressed, or the directory it was made from. The writer is one streaming pass, so file data
//! lands in the order entries arrive: a tar matches its directory byte for byte when it lists entries in name
//! order (`tar --sort=name`, as a directory is read); in another order it gives the same tree.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use super::support::{
    TreeSpec, assert_same, gnu_tar, gnu_tar_sorted, make_tree, open_image, run, snapshot_image, veritylab,
};

#[test]
fn same_input_gives_identical_images_whichever_way_it_arrives() {
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
    gnu_tar_sorted(&tar, src.path(), &archive);
    let plain = fs::read(&archive).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&plain).unwrap();
    fs::write(work.path().join("t.tar.gz"), gzip.finish().unwrap()).unwrap();
    fs::write(work.path().join("t.tar.zst"), zstd::encode_all(&plain[..], 3).unwrap()).unwrap();

    // `veritylab mkfs [--tar] IMAGE INPUT`, with `stdin` piped in when given.
    let mkfs = |name: &str, tar: bool, input: &Path, stdin: Option<&[u8]>| -> Vec<u8> {
        let image = work.path().join(format!("{name}.erofs"));
        let mut cmd = veritylab();
        cmd.arg("mkfs").args(tar.then_some("--tar")).arg(&image).arg(input);
        match stdin {
            None => {
                run(&mut cmd);
            }
            Some(bytes) => {
                let mut child = cmd.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(bytes).unwrap();
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        fs::read(&image).unwrap()
    };
    let input = |name: &str| work.path().join(name);
    let reference = mkfs("tar", true, &archive, None);
    let ways = [
        ("tar again", mkfs("tar-again", true, &archive, None)),
        ("tar on stdin", mkfs("tar-stdin", true, Path::new("-"), Some(&plain))),
        ("gzip tar", mkfs("tar-gz", true, &input("t.tar.gz"), None)),
        ("zstd tar", mkfs("tar-zst", true, &input("t.tar.zst"), None)),
        ("directory", mkfs("dir", false, src.path(), None)),
        ("directory again", mkfs("dir-again", false, src.path(), None)),
    ];
    for (way, image) in ways {
        assert_eq!(
            image.len(),
            reference.len(),
            "{way}: size differs from the tar file's image"
        );
        if let Some(at) = image.iter().zip(&reference).position(|(a, b)| a != b) {
            panic!(
                "{way}: the image differs from the tar file's at byte {at} (block {})",
                at / 4096
            );
        }
    }

    // The same tree in readdir order: the same files, data placed as it arrived.
    let unsorted = work.path().join("readdir.tar");
    gnu_tar(&tar, src.path(), &unsorted);
    mkfs("tar-readdir", true, &unsorted, None);
    assert_same(
        &snapshot_image(&open_image(&work.path().join("dir.erofs"))),
        &snapshot_image(&open_image(&work.path().join("tar-readdir.erofs"))),
    );
}
