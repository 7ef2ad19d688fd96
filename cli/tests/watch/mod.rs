//! Periodic verification at rest: a umoci-made image pulled and converted in both layouts, checked clean, then
//! tampered (a data byte, a tree byte, the sidecar, a deleted file) and reported with the block and level,
//! through the library and through `veritylab check`.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use veritylab::convert::{self, VerityLayout};
use veritylab::store::Store;
use veritylab::verity_fuse::error::BlockRef;
use veritylab::watch::{self, DriftFinding, PassReport, WatchConfig, Watcher};

use crate::oci::support::{pull, umoci_image};

struct Converted {
    _work: tempfile::TempDir,
    store_dir: PathBuf,
    reference: String,
    name: String,
}

fn converted(umoci: &Path) -> Converted {
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(umoci, work.path());
    let store_dir = work.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let reference = format!("oci:{}:v1", layout.display());
    let name = pull(&store, &reference, &Default::default()).unwrap().name;
    for layout in [VerityLayout::Containerd, VerityLayout::Separate] {
        convert::convert_image(&store, &name, layout, &|_| {}).unwrap();
    }
    Converted {
        _work: work,
        store_dir,
        reference,
        name,
    }
}

fn one_pass(c: &Converted, budget: Option<f64>) -> PassReport {
    let store = Store::open(&c.store_dir).unwrap();
    let (targets, unchecked) = watch::for_images(&store, std::slice::from_ref(&c.name)).unwrap();
    let config = WatchConfig {
        cpu_budget_percent: budget,
        max_parallel: 2,
        step_blocks: 4,
        ..WatchConfig::default()
    };
    let watcher = Watcher::new(targets, unchecked, config).unwrap();
    let mut reports = Vec::new();
    watcher.run(|r| reports.push(r.clone()));
    assert_eq!(reports.len(), 1, "passes: Some(1) runs one pass");
    reports.pop().unwrap()
}

fn flip(path: &Path, offset: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], offset).unwrap();
}

/// The digest dm-verity keeps for the 4096-byte block at `offset` of `file`, as `convert` builds its trees
/// (sha256 of 32 zero bytes of salt, then the block), computed here rather than by the lab's tree code.
fn block_digest(file: &Path, offset: u64) -> String {
    let mut block = vec![0u8; 4096];
    fs::File::open(file).unwrap().read_exact_at(&mut block, offset).unwrap();
    let mut hasher = Sha256::new();
    hasher.update([0u8; 32]);
    hasher.update(&block);
    veritylab::verity_fuse::hex::encode(&hasher.finalize())
}

/// The largest layer's target in `layout`: the one spanning several blocks.
fn largest(report: &PassReport, layout: VerityLayout) -> (String, PathBuf, u64) {
    let layer = report
        .layers
        .iter()
        .filter(|l| l.layout == layout)
        .max_by_key(|l| l.bytes)
        .unwrap();
    (layer.layer.clone(), layer.data.clone(), layer.bytes)
}

fn findings_of<'a>(report: &'a PassReport, layer: &str, layout: VerityLayout) -> &'a [DriftFinding] {
    &report
        .layers
        .iter()
        .find(|l| l.layer == layer && l.layout == layout)
        .unwrap()
        .findings
}

#[test]
fn a_clean_image_passes_and_every_tampering_is_reported_with_its_block() {
    let umoci = testkit::require_tool!("umoci");
    let c = converted(&umoci);

    let clean = one_pass(&c, Some(50.0));
    assert!(clean.clean(), "{clean:#?}");
    assert_eq!(clean.layers.len(), 4, "two layers in two layouts");
    assert!(clean.layers.iter().all(|l| l.complete && l.bytes > 0));
    assert_eq!(clean.bytes, clean.layers.iter().map(|l| l.bytes).sum::<u64>());
    assert!(
        !clean.cpu.is_zero() && clean.cpu_percent > 0.0,
        "hashing {} bytes used CPU: {clean:#?}",
        clean.bytes
    );
    let (layer, erofs, bytes) = largest(&clean, VerityLayout::Containerd);
    assert!(bytes > 8 * 4096, "the big layer spans several blocks: {bytes}");

    // A data byte in block 5 of the containerd layout's file.
    let data_before = block_digest(&erofs, 5 * 4096);
    flip(&erofs, 5 * 4096 + 17);
    let data_after = block_digest(&erofs, 5 * 4096);
    // The top (and only) tree block of the separate layout's tree file.
    let separate_dir = Store::open(&c.store_dir)
        .unwrap()
        .layer_dir(&layer.parse().unwrap(), "separate");
    let tree = separate_dir.join(convert::VERITY_FILE);
    let tree_before = block_digest(&tree, 4096);
    flip(&tree, 4096 + 3);
    let tree_after = block_digest(&tree, 4096);
    assert!(data_before != data_after && tree_before != tree_after);

    let report = one_pass(&c, None);
    assert!(!report.clean());
    match findings_of(&report, &layer, VerityLayout::Containerd) {
        [DriftFinding::Mismatch { block, expected, found }] => {
            assert_eq!(*block, BlockRef::Data { block: 5 });
            assert_eq!((expected, found), (&data_before, &data_after), "the block's digests");
        }
        other => panic!("containerd layout: {other:?}"),
    }
    match findings_of(&report, &layer, VerityLayout::Separate) {
        [DriftFinding::Mismatch { block, expected, found }] => {
            assert_eq!(*block, BlockRef::Hash { level: 0, block: 1 });
            assert_eq!(
                (expected, found),
                (&tree_before, &tree_after),
                "the top block against the root hash"
            );
        }
        other => panic!("separate layout: {other:?}"),
    }
    let untouched: Vec<_> = report.layers.iter().filter(|l| l.layer != layer).collect();
    assert!(untouched.iter().all(|l| l.findings.is_empty() && l.complete));

    // The sidecar moved to another root hash, and the separate tree file deleted.
    let sidecar = erofs.with_file_name(convert::SIDECAR_FILE);
    fs::write(
        &sidecar,
        format!(r#"{{"roothash":"{}","hashoffset":4096}}"#, "ab".repeat(32)),
    )
    .unwrap();
    fs::remove_file(separate_dir.join(convert::VERITY_FILE)).unwrap();
    let report = one_pass(&c, Some(50.0));
    assert!(matches!(
        findings_of(&report, &layer, VerityLayout::Containerd),
        [DriftFinding::Sidecar { pinned_roothash, .. }] if pinned_roothash.as_bytes().len() == 32
    ));
    assert_eq!(
        findings_of(&report, &layer, VerityLayout::Separate),
        [DriftFinding::Missing {
            path: separate_dir.join(convert::VERITY_FILE)
        }]
    );
}

fn veritylab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_prints_a_json_line_per_pass_and_exits_4_on_tampering() {
    let umoci = testkit::require_tool!("umoci");
    let c = converted(&umoci);
    let store = c.store_dir.to_str().unwrap();
    let base = ["check", "--image", &c.reference, "--store", store, "--cpu-budget", "50"];

    let out = veritylab(&[&base[..], &["--json", "--watch", "--passes", "2", "--interval", "0s"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passes: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(passes.len(), 2);
    assert_eq!(passes[1]["pass"], 2);
    assert_eq!(passes[0]["budget_percent"], 50.0);
    assert!(passes.iter().all(|p| p["cpu"].as_f64() > Some(0.0)), "{passes:?}");
    assert_eq!(passes[0]["layers"].as_array().unwrap().len(), 4);

    let report = one_pass(&c, None);
    let (_, erofs, _) = largest(&report, VerityLayout::Separate);
    let before = block_digest(&erofs, 2 * 4096);
    flip(&erofs, 2 * 4096);
    let after = block_digest(&erofs, 2 * 4096);
    let out = veritylab(&[&base[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let pass: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<_> = pass["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["findings"].as_array().unwrap().clone())
        .collect();
    assert_eq!(
        found,
        [
            serde_json::json!({"kind": "mismatch", "block": {"kind": "data", "block": 2}, "expected": before, "found": after})
        ]
    );

    let text = veritylab(&base);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("FINDING") && stdout.contains("data block 2 is corrupted"),
        "{stdout}"
    );

    let usage = veritylab(&["check", "--image", &c.reference, "--passes", "2"]);
    assert_eq!(usage.status.code(), Some(2), "--passes needs --watch");
    let budget = veritylab(&["check", "--image", &c.reference, "--store", store, "--cpu-budget", "0"]);
    assert_eq!(budget.status.code(), Some(2), "a zero budget is refused");
    assert!(String::from_utf8_lossy(&budget.stderr).contains("CPU budget 0%"));
}
