//! Shared helpers: building trees in memory and running the `verity-fuse` binary.

use std::path::Path;
use std::process::{Command, Output};

use verity_fuse::params::{Geometry, Placement, VerityParams};
use verity_fuse::tree;

/// A tree built in memory: the hash device bytes (superblock-less, tree at offset 0) and the root hash.
pub(crate) struct Built {
    pub(crate) geometry: Geometry,
    pub(crate) hash: Vec<u8>,
    pub(crate) root: Vec<u8>,
}

/// Builds the tree of `data` with `params`, laid out as a separate hash device without superblock.
pub(crate) fn build(data: &[u8], params: VerityParams) -> Built {
    let geometry = Geometry::new(params, Placement::default()).unwrap();
    let t = tree::build(data, &geometry, 2, &|_| {}).unwrap();
    Built {
        geometry,
        hash: t.blocks,
        root: t.root.as_bytes().to_vec(),
    }
}

/// Deterministic pseudo-random bytes.
pub(crate) fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `verity-fuse` with `args` in `dir`.
pub(crate) fn verity_fuse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity-fuse"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("verity-fuse runs")
}

/// Runs a tool with `args` in `dir`.
pub(crate) fn tool(path: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(path)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("tool runs")
}

/// Panics with the output unless the command succeeded.
pub(crate) fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of a `Name:   value` line of veritysetup-style output.
pub(crate) fn field(output: &str, name: &str) -> String {
    output
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no `{name}` in {output}"))
}
