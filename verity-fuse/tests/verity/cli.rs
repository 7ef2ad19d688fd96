//! The `verity-fuse` command on good and bad input: clear errors naming the field, exit codes as
//! veritysetup's, and nothing written when format fails.

use std::path::Path;

use crate::support::{bytes, field, ok, verity_fuse};

fn setup(blocks: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), bytes(blocks * 4096, 1)).unwrap();
    dir
}

fn fails(dir: &Path, args: &[&str], code: i32, message: &str) {
    let out = verity_fuse(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: `{message}` not in: {stderr}");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn format_verify_dump_round_trip_with_root_hash_file_and_json() {
    let dir = setup(10);
    let out = ok(
        verity_fuse(dir.path(), &["format", "--root-hash-file", "root", "data", "hash"]),
        "format",
    );
    let root = field(&out, "Root hash");
    assert_eq!(std::fs::read_to_string(dir.path().join("root")).unwrap(), root);
    assert_eq!(field(&out, "Salt").len(), 64, "random 32-byte salt by default");
    ok(verity_fuse(dir.path(), &["verify", "data", "hash", &root]), "verify");
    ok(
        verity_fuse(dir.path(), &["verify", "--root-hash-file", "root", "data", "hash"]),
        "verify",
    );
    let dump = ok(verity_fuse(dir.path(), &["dump", "hash"]), "dump");
    assert_eq!(field(&dump, "Data blocks"), "10");
    let json: serde_json::Value =
        serde_json::from_str(&ok(verity_fuse(dir.path(), &["dump", "--json", "hash"]), "dump --json")).unwrap();
    assert_eq!(json["data_blocks"], 10);
    let v: serde_json::Value = serde_json::from_str(&ok(
        verity_fuse(dir.path(), &["verify", "--json", "data", "hash", &root]),
        "verify",
    ))
    .unwrap();
    assert_eq!(v["verified"], true);
}

#[test]
fn blake3_trees_work_but_are_marked_lab_only() {
    let dir = setup(3);
    let out = verity_fuse(dir.path(), &["format", "--hash", "blake3", "data", "hash"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("lab-only"));
    let root = field(&ok(out, "format"), "Root hash");
    let verify = verity_fuse(dir.path(), &["verify", "data", "hash", &root]);
    assert!(String::from_utf8_lossy(&verify.stderr).contains("lab-only"));
    ok(verify, "verify");
}

#[test]
fn verify_names_the_first_failing_block_and_exits_2() {
    let dir = setup(10);
    let root = field(
        &ok(verity_fuse(dir.path(), &["format", "data", "hash"]), "format"),
        "Root hash",
    );
    let mut data = std::fs::read(dir.path().join("data")).unwrap();
    data[6 * 4096 + 10] ^= 1;
    std::fs::write(dir.path().join("data"), data).unwrap();
    fails(
        dir.path(),
        &["verify", "data", "hash", &root],
        2,
        "data block 6 is corrupted",
    );
}

#[test]
fn bad_root_hashes_are_refused_with_the_reason() {
    let dir = setup(2);
    ok(verity_fuse(dir.path(), &["format", "data", "hash"]), "format");
    fails(
        dir.path(),
        &["verify", "data", "hash", "abcd"],
        1,
        "root hash has 2 bytes but sha256 digests have 32",
    );
    fails(
        dir.path(),
        &["verify", "data", "hash", "xyz"],
        1,
        "root hash: odd number of hex digits",
    );
    fails(
        dir.path(),
        &["verify", "data", "hash", "zz"],
        1,
        "root hash: `z` at position 0 is not a hex digit",
    );
    fails(dir.path(), &["verify", "data", "hash"], 1, "no root hash");
}

#[test]
fn bad_superblocks_name_the_field() {
    let dir = setup(2);
    let root = field(
        &ok(verity_fuse(dir.path(), &["format", "data", "hash"]), "format"),
        "Root hash",
    );
    let good = std::fs::read(dir.path().join("hash")).unwrap();
    let cases: [(usize, &[u8], &str); 6] = [
        (0, b"VERITY", "no verity superblock"),
        (8, &2u32.to_le_bytes(), "unsupported superblock version 2"),
        (12, &9u32.to_le_bytes(), "unsupported hash type 9"),
        (32, b"md5\0\0\0\0", "algorithm `md5`"),
        (64, &1000u32.to_le_bytes(), "data block size 1000"),
        (80, &300u16.to_le_bytes(), "salt size 300"),
    ];
    for (offset, bytes, message) in cases {
        let mut bad = good.clone();
        bad[offset..offset + bytes.len()].copy_from_slice(bytes);
        std::fs::write(dir.path().join("bad"), &bad).unwrap();
        fails(dir.path(), &["verify", "data", "bad", &root], 1, message);
        fails(dir.path(), &["dump", "bad"], 1, message);
    }
    std::fs::write(dir.path().join("short"), &good[..100]).unwrap();
    fails(
        dir.path(),
        &["dump", "short"],
        1,
        "superblock truncated: 100 of 512 bytes",
    );
    std::fs::write(dir.path().join("cut"), &good[..4096 + 10]).unwrap();
    fails(
        dir.path(),
        &["verify", "data", "cut", &root],
        1,
        "hash device is truncated: 8192 bytes needed, 4106 present",
    );
}

#[test]
fn flags_that_disagree_with_the_superblock_are_an_error() {
    let dir = setup(2);
    let root = field(
        &ok(
            verity_fuse(dir.path(), &["format", "--salt", "00", "data", "hash"]),
            "format",
        ),
        "Root hash",
    );
    fails(
        dir.path(),
        &["verify", "--salt", "01", "data", "hash", &root],
        1,
        "salt: given 01, superblock has 00",
    );
    fails(
        dir.path(),
        &["verify", "--hash", "sha1", "data", "hash", &root],
        1,
        "hash: given sha1, superblock has sha256",
    );
    ok(
        verity_fuse(dir.path(), &["verify", "--salt", "00", "data", "hash", &root]),
        "agreeing flags",
    );
}

#[test]
fn format_refuses_bad_parameters_and_writes_nothing() {
    let dir = setup(2);
    let before = entries(dir.path());
    let cases: [(&[&str], &str); 9] = [
        (&["--data-block-size", "1000"], "not a power of two"),
        (&["--hash-block-size", "131072"], "hash block size 131072"),
        (&["--salt", "abc"], "salt: odd number of hex digits"),
        (&["--salt", &"00".repeat(257)], "salt of 257 bytes"),
        (&["--format", "2"], "hash type must be 0 or 1"),
        (&["--hash", "md5"], "unsupported hash algorithm `md5`"),
        (&["--hash-offset", "100"], "hash offset 100 is not a multiple of 512"),
        (&["--uuid", "nope"], "not a UUID"),
        (&["--data-blocks", "3"], "data device is truncated"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["format"];
        args.extend_from_slice(flags);
        args.extend(["data", "hash"]);
        fails(dir.path(), &args, 1, message);
        assert_eq!(entries(dir.path()), before, "{flags:?} left a file behind");
    }
    fails(
        dir.path(),
        &["format", "missing", "hash"],
        4,
        "opening data device missing",
    );
    std::fs::write(dir.path().join("tiny"), b"x").unwrap();
    fails(dir.path(), &["format", "tiny", "hash"], 1, "data blocks is 0");
    assert!(!dir.path().join("hash").exists());
}

#[test]
fn a_tree_in_the_data_file_must_not_overlap_the_data() {
    let dir = setup(4);
    let data = std::fs::read(dir.path().join("data")).unwrap();
    fails(
        dir.path(),
        &["format", "--hash-offset", "8192", "data", "data"],
        1,
        "overlaps the hash area",
    );
    assert_eq!(
        std::fs::read(dir.path().join("data")).unwrap(),
        data,
        "data file untouched"
    );
    let out = ok(
        verity_fuse(dir.path(), &["format", "--hash-offset", "16384", "data", "data"]),
        "format",
    );
    let root = field(&out, "Root hash");
    let grown = std::fs::read(dir.path().join("data")).unwrap();
    assert_eq!(&grown[..data.len()], &data[..]);
    assert_eq!(grown.len(), 16384 + 4096 + 4096);
    ok(
        verity_fuse(dir.path(), &["verify", "--hash-offset", "16384", "data", "data", &root]),
        "verify",
    );
}

#[test]
fn help_documents_every_command() {
    let out = ok(verity_fuse(Path::new("."), &["--help"]), "help");
    for cmd in ["format", "verify", "dump"] {
        assert!(out.contains(cmd));
    }
    fails(Path::new("."), &["frobnicate"], 1, "unrecognized subcommand");
}
