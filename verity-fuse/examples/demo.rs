//! The main job on an embedded default: protect a sample image with a hash tree, read it through a verified
//! device, then tamper with one byte and watch the read fail as kernel dm-verity would fail it.
//!
//! `cargo run --release -p verity-fuse --example demo` (no network, no root; uses `veritysetup` as a
//! cross-check when it is installed).

use std::process::Command;

use attacks::tamper::Patched;
use verity_fuse::device::{CorruptionMode, Options};
use verity_fuse::{Geometry, Placement, ReadAt, VerifiedDevice, VerityParams, hex, tree};

const BLOCKS: u64 = 2048;
const SALT: &str = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d";

fn main() -> anyhow::Result<()> {
    let image: Vec<u8> = (0..BLOCKS * 4096)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let geometry = Geometry::new(
        VerityParams::new(BLOCKS, hex::decode("salt", SALT)?),
        Placement::with_superblock(0),
    )?;
    let built = tree::build(&image, &geometry, tree::default_threads(), &|_| {})?;
    println!(
        "sample image: {} MiB, sha256, 4096-byte blocks, {} tree levels",
        image.len() >> 20,
        geometry.levels.len()
    );
    println!("root hash:    {}", built.root);
    cross_check(&image, &built.root.to_hex())?;

    let hash = {
        let mut h = vec![0u8; geometry.tree_offset() as usize];
        h.extend_from_slice(&built.blocks);
        h
    };
    let disk = Patched::new(&image);
    let device = VerifiedDevice::new(
        &disk,
        &hash,
        geometry.clone(),
        built.root.as_bytes(),
        Options::default(),
    )?;
    let mut all = vec![0u8; image.len()];
    device.read_at(0, &mut all)?;
    let s = device.status();
    println!(
        "read all {} blocks through the verified device: status {} ({} verified)",
        BLOCKS,
        s.state.letter(),
        s.blocks_verified
    );

    let offset = 1000 * 4096 + 123;
    disk.flip_byte(offset)?;
    println!("attacker flips the byte at offset {offset} on the node's disk");
    let mut block = vec![0u8; 4096];
    match device.read_at(1000 * 4096, &mut block) {
        Ok(()) => anyhow::bail!("tampering went undetected"),
        Err(e) => println!("read of block 1000: EIO: {}", e),
    }
    let s = device.status();
    println!(
        "status {} ({} corruption, first at {})",
        s.state.letter(),
        s.corruptions,
        s.first_corrupted.map_or("-".into(), |b| b.to_string())
    );
    device.read_at(999 * 4096, &mut block)?;
    println!("read of block 999: ok (untouched blocks still read)");

    let ignoring = Options {
        on_corruption: CorruptionMode::Ignore,
        ..Options::default()
    };
    let lax = VerifiedDevice::new(&disk, &hash, geometry, built.root.as_bytes(), ignoring)?;
    lax.read_at(1000 * 4096, &mut block)?;
    println!(
        "with ignore_corruption the tampered block is served and logged: {:?}",
        lax.take_events()
    );
    Ok(())
}

/// Checks the root hash against `veritysetup format` when it is installed.
fn cross_check(image: &[u8], root: &str) -> anyhow::Result<()> {
    let Some(veritysetup) = testkit::find_tool("veritysetup") else {
        println!("veritysetup: not installed, cross-check skipped (apt-get install cryptsetup-bin)");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("image"), image)?;
    let out = Command::new(veritysetup)
        .args(["format", "--salt", SALT, "image", "image.verity"])
        .current_dir(dir.path())
        .output()?;
    let theirs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    if theirs != root {
        anyhow::bail!("veritysetup computed {theirs}, we computed {root}");
    }
    println!("veritysetup: same root hash");
    Ok(())
}
