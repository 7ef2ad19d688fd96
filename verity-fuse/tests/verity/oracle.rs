//! Our trees against `veritysetup` on a grid of parameter combinations: byte-identical hash devices given
//! the same salt and UUID, and each tool accepting the other's trees.

use std::path::Path;

use crate::support::{bytes, field, ok, tool, verity_fuse};

const UUID: &str = "12345678-9abc-4def-8123-456789abcdef";

#[derive(Debug, Clone)]
struct Case {
    data_block_size: u32,
    hash_block_size: u32,
    hash_type: u32,
    algorithm: &'static str,
    salt: String,
    superblock: bool,
    same_file: bool,
    data_len: usize,
}

/// At least 40 combinations, each dimension cycling at its own period so every value meets many others.
fn grid() -> Vec<Case> {
    let block_sizes = [
        (512, 512),
        (1024, 1024),
        (4096, 4096),
        (65536, 65536),
        (4096, 512),
        (512, 4096),
        (1024, 512),
    ];
    let algorithms = ["sha256", "sha1", "sha512"];
    let salts = [
        "",
        "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d",
        "dadada",
        "00",
    ];
    (0..48)
        .map(|i| {
            let (dbs, hbs) = block_sizes[i % block_sizes.len()];
            let dbs_usize = dbs as usize;
            // 1 block, a few blocks, not a multiple of the block size, and enough blocks for 3+ levels
            // with small hash blocks.
            let data_len = match (i / 2) % 4 {
                0 => dbs_usize,
                1 => 3 * dbs_usize,
                2 => 5 * dbs_usize + dbs_usize / 2 + 7,
                _ if dbs <= 1024 && hbs <= 1024 => 300 * dbs_usize,
                _ => 17 * dbs_usize,
            };
            Case {
                data_block_size: dbs,
                hash_block_size: hbs,
                hash_type: (i % 2) as u32 ^ ((i / 7) % 2) as u32,
                algorithm: algorithms[i % 3],
                salt: salts[i % 4].to_owned(),
                superblock: (i / 3) % 2 == 0,
                same_file: (i / 5) % 2 == 1,
                data_len,
            }
        })
        .collect()
}

fn param_args(c: &Case, hash_offset: u64) -> Vec<String> {
    let mut a = vec![
        format!("--hash={}", c.algorithm),
        format!("--data-block-size={}", c.data_block_size),
        format!("--hash-block-size={}", c.hash_block_size),
        format!("--format={}", c.hash_type),
        format!("--salt={}", if c.salt.is_empty() { "-" } else { &c.salt }),
    ];
    if !c.superblock {
        a.push("--no-superblock".into());
    }
    if hash_offset > 0 {
        a.push(format!("--hash-offset={hash_offset}"));
    }
    a
}

/// Runs format with one tool in `dir`, returning (root hash, bytes of the hash device).
fn format(dir: &Path, c: &Case, veritysetup: Option<&Path>) -> (String, Vec<u8>) {
    let data = bytes(c.data_len, c.data_len as u64 ^ u64::from(c.hash_block_size));
    std::fs::write(dir.join("data"), &data).unwrap();
    let (hash, offset) = if c.same_file {
        let align = u64::from(c.hash_block_size.max(512));
        ("data", (c.data_len as u64).div_ceil(align) * align)
    } else {
        ("hash", 0)
    };
    let mut args = vec!["format".to_owned()];
    args.extend(param_args(c, offset));
    if c.superblock {
        args.push(format!("--uuid={UUID}"));
    }
    args.extend(["data".to_owned(), hash.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = match veritysetup {
        Some(v) => ok(tool(v, dir, &args), &format!("veritysetup {args:?}")),
        None => ok(verity_fuse(dir, &args), &format!("verity-fuse {args:?}")),
    };
    (field(&out, "Root hash"), std::fs::read(dir.join(hash)).unwrap())
}

fn verify(dir: &Path, c: &Case, root: &str, veritysetup: Option<&Path>) {
    let hash_offset = if c.same_file {
        let align = u64::from(c.hash_block_size.max(512));
        (c.data_len as u64).div_ceil(align) * align
    } else {
        0
    };
    let mut args = vec!["verify".to_owned()];
    if c.superblock {
        if hash_offset > 0 {
            args.push(format!("--hash-offset={hash_offset}"));
        }
    } else {
        args.extend(param_args(c, hash_offset));
        args.push(format!("--data-blocks={}", c.data_len / c.data_block_size as usize));
    }
    let hash = if c.same_file { "data" } else { "hash" };
    args.extend(["data".to_owned(), hash.to_owned(), root.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match veritysetup {
        Some(v) => ok(tool(v, dir, &args), &format!("veritysetup {args:?}")),
        None => ok(verity_fuse(dir, &args), &format!("verity-fuse {args:?}")),
    };
}

#[test]
fn hash_devices_are_byte_identical_to_veritysetup_and_each_verifies_the_other() {
    let veritysetup = testkit::require_tool!("veritysetup");
    let cases = grid();
    assert!(cases.len() >= 40);
    for c in &cases {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let (our_root, our_bytes) = format(ours.path(), c, None);
        let (their_root, their_bytes) = format(theirs.path(), c, Some(&veritysetup));
        assert_eq!(our_root, their_root, "root hash differs for {c:?}");
        assert!(our_bytes == their_bytes, "hash device differs for {c:?}");
        verify(ours.path(), c, &our_root, Some(&veritysetup));
        verify(theirs.path(), c, &their_root, None);
    }
}

#[test]
fn the_grid_covers_every_dimension() {
    let cases = grid();
    let has = |f: &dyn Fn(&Case) -> bool| cases.iter().any(f);
    for bs in [512, 1024, 4096, 65536] {
        assert!(has(&|c| c.data_block_size == bs && c.hash_block_size == bs));
    }
    for alg in ["sha1", "sha256", "sha512"] {
        for t in [0, 1] {
            assert!(has(&|c| c.algorithm == alg && c.hash_type == t), "{alg} type {t}");
        }
    }
    assert!(has(&|c| c.salt.is_empty()) && has(&|c| c.salt.len() == 6) && has(&|c| c.salt.len() == 64));
    assert!(has(&|c| c.superblock && c.same_file) && has(&|c| !c.superblock && c.same_file));
    assert!(has(&|c| c.superblock && !c.same_file) && has(&|c| !c.superblock && !c.same_file));
    assert!(has(&|c| c.data_len == c.data_block_size as usize));
    assert!(has(&|c| c.data_len % c.data_block_size as usize != 0));
    assert!(has(
        &|c| c.data_len / c.data_block_size as usize == 300 && c.hash_block_size == 512
    ));
}
