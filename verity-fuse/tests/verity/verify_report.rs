//! `verity-fuse verify` names every corrupted block; `veritysetup verify` (2.6.1, with or without `--debug`)
//! stops at the first, printing "Verification failed at position P." with P a byte position on the data
//! device, found bottom-up: the lowest data block whose digest differs from its leaf, even when the leaf is
//! what changed. On the same tampered files (formatted by veritysetup), the block veritysetup names must be the
//! lowest of the data blocks we name or leave unchecked under a corrupted hash block, both tools exit 2, and
//! our list must be exactly the damage.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{bytes, field, ok, tool, verity_fuse};

const BLOCK: usize = 4096;
const BLOCKS: usize = 1000;
/// Hash device with a superblock: block 0 the superblock, 1 the top, 2–9 the leaves of 128 data blocks each.
const FIRST_LEAF: u64 = 2;

/// One tampering: data blocks with a flipped byte, and leaves overwritten whole.
struct Case {
    name: &'static str,
    data_blocks: &'static [u64],
    leaves: &'static [u64],
}

const CASES: &[Case] = &[
    Case {
        name: "clean",
        data_blocks: &[],
        leaves: &[],
    },
    Case {
        name: "data blocks",
        data_blocks: &[700, 5, 300, 301, 999],
        leaves: &[],
    },
    Case {
        name: "a leaf and data blocks elsewhere",
        data_blocks: &[900, 60],
        leaves: &[3],
    },
    Case {
        name: "data blocks under a damaged leaf",
        data_blocks: &[130, 131, 500],
        leaves: &[3],
    },
];

/// veritysetup's first failure position, from its stderr.
fn veritysetup_position(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        l.strip_prefix("Verification failed at position ")?
            .strip_suffix('.')?
            .parse()
            .ok()
    })
}

fn run(dir: &Path, veritysetup: &Path, root: &str, case: &Case) {
    let mut data = std::fs::read(dir.join("pristine.img")).unwrap();
    let mut hash = std::fs::read(dir.join("pristine.verity")).unwrap();
    for &b in case.data_blocks {
        data[b as usize * BLOCK + 77] ^= 0x10;
    }
    for &leaf in case.leaves {
        hash[leaf as usize * BLOCK..(leaf as usize + 1) * BLOCK].fill(0x5C);
    }
    std::fs::write(dir.join("data.img"), &data).unwrap();
    std::fs::write(dir.join("hash.verity"), &hash).unwrap();

    let theirs = tool(
        veritysetup,
        dir,
        &["verify", "--debug", "data.img", "hash.verity", root],
    );
    let ours_text = verity_fuse(dir, &["verify", "data.img", "hash.verity", root]);
    let ours = verity_fuse(dir, &["verify", "--json", "data.img", "hash.verity", root]);
    let theirs_err = String::from_utf8_lossy(&theirs.stderr);
    let ours_err = String::from_utf8_lossy(&ours_text.stderr);
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "{}: exit codes\nveritysetup: {theirs_err}\nours: {ours_err}",
        case.name
    );
    assert_eq!(ours_text.status.code(), ours.status.code(), "{}", case.name);
    let report: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let corrupted = report["corrupted"].as_array().expect("a list");
    let named: Vec<(String, u64)> = corrupted
        .iter()
        .map(|c| {
            (
                c["block"]["kind"].as_str().unwrap().to_owned(),
                c["block"]["block"].as_u64().unwrap(),
            )
        })
        .collect();
    let leaves: BTreeSet<u64> = case.leaves.iter().copied().collect();
    let under_leaves = |b: &u64| leaves.contains(&(FIRST_LEAF + b / 128));
    let mut expected: Vec<(String, u64)> = case.leaves.iter().map(|&l| ("hash".to_owned(), l)).collect();
    let mut data_named: Vec<u64> = case.data_blocks.iter().copied().filter(|b| !under_leaves(b)).collect();
    data_named.sort();
    expected.extend(data_named.iter().map(|&b| ("data".to_owned(), b)));
    assert_eq!(named, expected, "{}: we name exactly the damage, top-down", case.name);
    assert_eq!(
        report["unchecked_data_blocks"].as_u64(),
        Some(128 * case.leaves.len() as u64),
        "{}",
        case.name
    );
    for c in corrupted {
        let kind = c["block"]["kind"].as_str().unwrap();
        let line = format!(
            "Verification failed at position {}{}: {} block {}",
            c["position"],
            if kind == "hash" { " of the hash device" } else { "" },
            kind,
            c["block"]["block"]
        );
        assert!(ours_err.contains(&line), "{}: no `{line}` in\n{ours_err}", case.name);
    }

    let mut reachable: BTreeSet<u64> = data_named.iter().copied().collect();
    for &leaf in case.leaves {
        reachable.extend((leaf - FIRST_LEAF) * 128..((leaf - FIRST_LEAF + 1) * 128).min(BLOCKS as u64));
    }
    let position = veritysetup_position(&theirs_err);
    assert_eq!(
        position,
        reachable.first().map(|b| b * BLOCK as u64),
        "{}: veritysetup's first position is the lowest data block we name or leave unchecked\n{theirs_err}",
        case.name
    );
    eprintln!(
        "{}: veritysetup: {}; verity-fuse: {} corrupted ({})",
        case.name,
        position.map_or("verified".to_owned(), |p| format!("position {p}")),
        named.len(),
        named
            .iter()
            .map(|(k, b)| format!("{k} {b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn verify_names_every_corrupted_block_where_veritysetup_names_the_first() {
    let veritysetup = testkit::require_tool!("veritysetup");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pristine.img"), bytes(BLOCKS * BLOCK, 77)).unwrap();
    let out = ok(
        tool(
            &veritysetup,
            dir.path(),
            &["format", "--salt", "5a17", "pristine.img", "pristine.verity"],
        ),
        "veritysetup format",
    );
    assert_eq!(field(&out, "Hash blocks"), "9", "the layout FIRST_LEAF assumes");
    let root = field(&out, "Root hash");
    for case in CASES {
        run(dir.path(), &veritysetup, &root, case);
    }
}
