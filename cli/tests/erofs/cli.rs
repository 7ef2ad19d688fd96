//! The `veritylab mkfs` and `veritylab erofs` commands: stdin input, listing, exit codes.

use std::fs;
use std::io::Write;
use std::process::Stdio;

use super::support::{run, veritylab};

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/hostname", &b"lab\n"[..]),
        ("bin/tool", &[0x7f, b'E', b'L', b'F'][..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn mkfs_reads_a_tar_from_stdin_and_erofs_subcommands_read_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("s.erofs");
    let mut child = veritylab()
        .args(["mkfs", "--tar", "--mkfs-time", "1600000000", "--uuid", "clear"])
        .arg(&image)
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&small_tar()).unwrap();
    assert!(child.wait().unwrap().success());

    let ls = run(veritylab().args(["erofs", "ls"]).arg(&image).arg("/etc"));
    assert!(ls.contains("hostname"), "{ls}");
    let tree = run(veritylab().args(["erofs", "ls", "-R"]).arg(&image));
    assert_eq!(tree.lines().count(), 5, "{tree}");
    let cat = run(veritylab().args(["erofs", "cat"]).arg(&image).arg("/etc/hostname"));
    assert_eq!(cat, "lab\n");
    let stat = run(veritylab().args(["erofs", "stat"]).arg(&image).arg("/bin/tool"));
    assert!(
        stat.contains("mode: 100755") && stat.contains("form: compact"),
        "{stat}"
    );
    let out = dir.path().join("x");
    run(veritylab().args(["erofs", "extract"]).arg(&image).arg(&out));
    assert_eq!(fs::read(out.join("etc/hostname")).unwrap(), b"lab\n");
}

#[test]
fn exit_codes_separate_usage_bad_input_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    fs::write(&junk, vec![0u8; 8192]).unwrap();
    let code = |cmd: &mut std::process::Command| cmd.output().unwrap().status.code();
    assert_eq!(code(veritylab().args(["erofs", "ls"]).arg(&junk)), Some(3));
    assert_eq!(
        code(
            veritylab()
                .args(["mkfs", "--aufs"])
                .arg(dir.path().join("o"))
                .arg(dir.path())
        ),
        Some(2)
    );
    assert_eq!(
        code(veritylab().args(["mkfs", "--block-size", "1000", "o", "-"])),
        Some(2)
    );
    let truncated = dir.path().join("t.tar");
    fs::write(&truncated, &small_tar()[..700]).unwrap();
    let out = dir.path().join("never.erofs");
    assert_eq!(
        code(veritylab().args(["mkfs", "--tar"]).arg(&out).arg(&truncated)),
        Some(3)
    );
    assert!(!out.exists());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "only the inputs remain: {names:?}");
}
