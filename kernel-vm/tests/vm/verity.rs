//! Real kernel dm-verity over an EROFS image and a hash tree built on the host with the `verity_fuse`
//! library: the kernel accepts our tree, loads the table line we expect, mounts and verifies; a flipped byte
//! is refused with an I/O error and flips the status to `C`. One boot for all of it.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use kernel_vm::{Vm, VmOutput};
use verity_fuse::params::{Geometry, Placement, VerityParams};
use verity_fuse::{hex, tree};

use crate::support::vm_available;

const BLOCK: usize = 4096;
const GREETING: &str = "verified by the kernel\n";

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// An EROFS image of a small directory, made by the real `mkfs.erofs`, padded to whole blocks.
fn erofs_image(mkfs: &Path, dir: &Path, payload: &[u8]) -> Result<Vec<u8>> {
    let tree = dir.join("tree");
    fs::create_dir_all(&tree)?;
    fs::write(tree.join("hello.txt"), GREETING)?;
    fs::write(tree.join("payload.bin"), payload)?;
    let image = dir.join("layer.erofs");
    let out = Command::new(mkfs).arg("--quiet").arg(&image).arg(&tree).output()?;
    ensure!(
        out.status.success(),
        "mkfs.erofs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bytes = fs::read(&image)?;
    bytes.resize(bytes.len().next_multiple_of(BLOCK), 0);
    Ok(bytes)
}

/// Checks `table` against `0 <sectors> verity 1 <maj:min> <maj:min> 4096 4096 <blocks> 0 sha256 <root> <salt>`.
fn check_table(table: &str, blocks: u64, root: &str, salt: &str) -> Result<()> {
    let fields: Vec<&str> = table.split_whitespace().collect();
    let device = |f: &str| {
        f.split_once(':')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
    };
    let sectors = (blocks * BLOCK as u64 / 512).to_string();
    let blocks = blocks.to_string();
    let expected = [
        "0", &sectors, "verity", "1", "", "", "4096", "4096", &blocks, "0", "sha256", root, salt,
    ];
    ensure!(
        fields.len() == expected.len(),
        "table `{table}` has {} fields",
        fields.len()
    );
    for (index, (found, want)) in fields.iter().zip(expected).enumerate() {
        let ok = if want.is_empty() { device(found) } else { *found == want };
        ensure!(ok, "table field {index} is `{found}`, expected `{want}` in `{table}`");
    }
    Ok(())
}

fn section<'a>(out: &'a VmOutput, name: &str) -> Result<&'a str> {
    out.section(name)
        .with_context(|| format!("no section `{name}` in:\n{}", out.script_output))
}

fn mark<'a>(out: &'a VmOutput, name: &str) -> Result<&'a str> {
    out.mark(name)
        .with_context(|| format!("no mark `{name}` in:\n{}", out.script_output))
}

#[test]
fn kernel_verity_accepts_our_tree_and_refuses_a_flipped_byte() -> Result<()> {
    const TEST: &str = "verity::kernel_verity_accepts_our_tree_and_refuses_a_flipped_byte";
    if !vm_available(TEST) {
        return Ok(());
    }
    let Some(mkfs) = testkit::find_tool("mkfs.erofs") else {
        testkit::skip(TEST, "`mkfs.erofs` is not installed (Debian package erofs-utils)");
        return Ok(());
    };
    for tool in ["veritysetup", "dmsetup"] {
        if testkit::find_tool(tool).is_none() {
            testkit::skip(
                TEST,
                &format!("`{tool}` is not installed (Debian package cryptsetup-bin)"),
            );
            return Ok(());
        }
    }

    let dir = tempfile::tempdir()?;
    let payload = bytes(16 * BLOCK, 7);
    let image = erofs_image(&mkfs, dir.path(), &payload)?;
    let blocks = (image.len() / BLOCK) as u64;
    let salt: Vec<u8> = (0u8..32).collect();
    let geometry = Geometry::new(VerityParams::new(blocks, salt.clone()), Placement::default())?;
    let built = tree::build(&image[..], &geometry, 2, &|_| {})?;
    let root = built.root.to_hex();
    let salt_hex = hex::encode(&salt);

    // Flip one byte in the middle of the payload's eighth block, wherever mkfs.erofs put it.
    let probe = &payload[7 * BLOCK..7 * BLOCK + 64];
    let at = image
        .windows(probe.len())
        .position(|w| w == probe)
        .context("payload not stored verbatim in the image")?
        + BLOCK / 2;
    let corrupt_block = at / BLOCK;
    ensure!(
        corrupt_block > 0,
        "the flipped byte must not be in the superblock's block"
    );
    let mut tampered = image.clone();
    tampered[at] ^= 0x01;

    let open = format!(
        "veritysetup open --no-superblock --format=1 --hash=sha256 --data-block-size=4096 \
         --hash-block-size=4096 --data-blocks={blocks} --salt={salt_hex}"
    );
    let script = format!(
        r#"mkdir -p /mnt/good /mnt/bad
section open-good
{open} layer.erofs good layer.hash {root} 2>&1; mark open-good $?
section table-good
dmsetup table good
section mount-good
mount -t erofs -o ro /dev/mapper/good /mnt/good 2>&1; mark mount-good $?
section hello
cat /mnt/good/hello.txt
cmp /mnt/good/payload.bin payload.bin; mark payload-good $?
section status-good
veritysetup status good
section dmstatus-good
dmsetup status good
section open-bad
{open} layer-bad.erofs bad layer.hash {root} 2>&1; mark open-bad $?
section mount-bad
mount -t erofs -o ro /dev/mapper/bad /mnt/bad 2>&1; mark mount-bad $?
section read-bad
cat /mnt/bad/payload.bin 2>&1 >/dev/null; mark read-bad $?
section raw-bad
dd if=/dev/mapper/bad of=/dev/null bs=4096 skip={corrupt_block} count=1 2>&1; mark raw-bad $?
section dmstatus-bad
dmsetup status bad
section end
umount /mnt/good /mnt/bad
exit 0
"#
    );
    let out = Vm::builder()
        .binary("veritysetup")
        .binary("dmsetup")
        .file("layer.erofs", image)
        .file("layer-bad.erofs", tampered)
        .file("layer.hash", built.blocks)
        .file("payload.bin", payload)
        .script(&script)
        .run()?;
    eprintln!(
        "verity VM: {:?} wall clock, initramfs {} bytes\n{}",
        out.elapsed, out.initramfs_bytes, out.script_output
    );
    ensure!(out.exit_code == 0, "script failed:\n{}", out.console);

    ensure!(mark(&out, "open-good")? == "0", "open: {}", section(&out, "open-good")?);
    check_table(section(&out, "table-good")?.trim(), blocks, &root, &salt_hex)?;
    ensure!(
        mark(&out, "mount-good")? == "0",
        "mount: {}",
        section(&out, "mount-good")?
    );
    ensure!(section(&out, "hello")? == GREETING);
    ensure!(
        mark(&out, "payload-good")? == "0",
        "payload differs through the verified mount"
    );
    let status = section(&out, "status-good")?;
    ensure!(
        status.lines().any(|l| l.trim() == "status:      verified"),
        "veritysetup status: {status}"
    );
    let dm_status = section(&out, "dmstatus-good")?;
    ensure!(dm_status.trim().ends_with(" V"), "dmsetup status good: {dm_status}");

    ensure!(
        mark(&out, "open-bad")? == "0",
        "open bad: {}",
        section(&out, "open-bad")?
    );
    ensure!(
        mark(&out, "mount-bad")? == "0",
        "mount bad: {}",
        section(&out, "mount-bad")?
    );
    ensure!(mark(&out, "read-bad")? != "0", "reading the tampered file succeeded");
    let read_error = section(&out, "read-bad")?;
    ensure!(read_error.contains("Input/output error"), "read error: {read_error}");
    ensure!(mark(&out, "raw-bad")? != "0", "reading the tampered block succeeded");
    let dm_status = section(&out, "dmstatus-bad")?;
    ensure!(dm_status.trim().ends_with(" C"), "dmsetup status bad: {dm_status}");
    let logged = format!("data block {corrupt_block} is corrupted");
    ensure!(
        out.dmesg.contains(&logged),
        "kernel log lacks `{logged}`:\n{}",
        out.dmesg
    );
    Ok(())
}
