//! The verified device over FUSE (privileged tier: needs /dev/fuse, fusermount3, and root for loop mounts):
//! byte-identical reads, the kernel mounting EROFS from it, corruption caught under a live mount, the error
//! modes, concurrent readers, and clean teardown (also after the server is killed).

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{bytes, field, ok, verity_fuse};

use testkit::fuse_available as fuse_ready;

/// Root and the tools for loop mounts of EROFS.
fn mounts_ready(test: &str) -> bool {
    if !fuse_ready(test) {
        return false;
    }
    if !testkit::is_root() {
        testkit::skip(test, testkit::NEEDS_ROOT);
        return false;
    }
    for tool in ["mkfs.erofs", "losetup", "mount"] {
        if testkit::find_tool(tool).is_none() {
            testkit::skip(test, &format!("`{tool}` is not installed"));
            return false;
        }
    }
    true
}

/// A test workspace: files, a registry directory, and every device opened in it closed on drop.
struct Lab {
    dir: tempfile::TempDir,
    opened: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Lab {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            opened: Vec::new(),
            mounts: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut full: Vec<&str> = args.to_vec();
        let reg = self.path("run");
        let reg = reg.to_str().unwrap();
        if ["open", "status", "close", "list"].contains(&args[0]) {
            full.insert(1, reg);
            full.insert(1, "--dir");
        }
        verity_fuse(self.dir.path(), &full)
    }

    /// Formats `data` into `hash` and returns the root hash.
    fn format(&self, data: &str, hash: &str, extra: &[&str]) -> String {
        let mut args = vec!["format", "--salt", "00"];
        args.extend_from_slice(extra);
        args.extend([data, hash]);
        field(&ok(self.run(&args), "format"), "Root hash")
    }

    /// Opens a FUSE device and returns its path.
    fn open(&mut self, data: &str, name: &str, hash: &str, root: &str, extra: &[&str]) -> PathBuf {
        let mut args = vec!["open", "--backend", "fuse"];
        args.extend_from_slice(extra);
        args.extend([data, name, hash, root]);
        let out = ok(self.run(&args), "open");
        self.opened.push(name.to_owned());
        PathBuf::from(out.trim())
    }

    fn status(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&ok(self.run(&["status", "--json", name]), "status")).unwrap()
    }

    fn mount_erofs(&mut self, device: &Path, at: &str) -> PathBuf {
        let mp = self.path(at);
        std::fs::create_dir_all(&mp).unwrap();
        let out = Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(device)
            .arg(&mp)
            .output()
            .unwrap();
        ok(out, "mount -t erofs");
        self.mounts.push(mp.clone());
        mp
    }

    fn umount_all(&mut self) {
        for mp in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&mp).status();
        }
    }

    fn close(&mut self, name: &str) {
        ok(self.run(&["close", name]), "close");
        self.opened.retain(|n| n != name);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.umount_all();
        for name in std::mem::take(&mut self.opened) {
            let _ = self.run(&["close", &name]);
        }
    }
}

/// A directory of files with distinct contents, and an EROFS image of it (no inline data, so every file's
/// bytes sit contiguously in whole blocks).
fn erofs_image(lab: &Lab, name: &str, files: &[(&str, usize)], seed: u64) -> Vec<(String, Vec<u8>)> {
    let src = lab.path(&format!("{name}.src"));
    std::fs::create_dir_all(&src).unwrap();
    let mut made = Vec::new();
    for (i, (file, len)) in files.iter().enumerate() {
        let content = bytes(*len, seed * 1000 + i as u64);
        std::fs::write(src.join(file), &content).unwrap();
        made.push((file.to_string(), content));
    }
    let out = Command::new(testkit::find_tool("mkfs.erofs").unwrap())
        .arg("-Enoinline_data")
        .arg(lab.path(name))
        .arg(&src)
        .output()
        .unwrap();
    ok(out, "mkfs.erofs");
    made
}

/// Byte offset of `content` in `image` (it must occur once, block-aligned).
fn offset_in(image: &[u8], content: &[u8]) -> u64 {
    let at = image
        .chunks(4096)
        .position(|block| block.starts_with(&content[..64.min(content.len())]))
        .expect("file content found in the image");
    at as u64 * 4096
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

fn assert_eio(result: std::io::Result<Vec<u8>>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.raw_os_error(), Some(5), "{what}: expected EIO, got {err}");
}

/// The FUSE server's pid of an open device.
fn server_pid(lab: &Lab, name: &str) -> u32 {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.path(&format!("run/{name}/info.json"))).unwrap()).unwrap();
    info["pid"].as_u64().unwrap() as u32
}

/// Whether the server `pid` exits within `limit`.
fn gone_within(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while verity_fuse::host::process_alive(pid, "verity-fuse") {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn no_leftovers(lab: &Lab, names: &[&str], pids: &[u32]) {
    for pid in pids {
        assert!(
            !verity_fuse::host::process_alive(*pid, "verity-fuse"),
            "server {pid} still runs"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let reg = lab.path("run");
    assert!(
        !mounts.contains(reg.to_str().unwrap()),
        "a mount under {} is left: {mounts}",
        reg.display()
    );
    for name in names {
        assert!(!reg.join(name).exists(), "registry entry {name} left behind");
        let loops = verity_fuse::host::loops_backed_by(&reg.join(name).join("mnt/device"));
        assert!(loops.is_empty(), "loop devices left: {loops:?}");
    }
}

#[test]
fn the_device_reads_back_the_image_and_the_kernel_mounts_erofs_and_overlay_from_it() {
    if !mounts_ready("fuse_device::kernel_mounts") {
        return;
    }
    let mut lab = Lab::new();
    let lower = erofs_image(
        &lab,
        "lower.erofs",
        &[("a", 10_000), ("shared", 5000), ("b", 70_000)],
        1,
    );
    let upper = erofs_image(&lab, "upper.erofs", &[("c", 3000), ("shared", 9000)], 2);
    let r1 = lab.format("lower.erofs", "lower.verity", &[]);
    let r2 = lab.format("upper.erofs", "upper.verity", &[]);
    let d1 = lab.open("lower.erofs", "lower", "lower.verity", &r1, &[]);
    let d2 = lab.open("upper.erofs", "upper", "upper.verity", &r2, &[]);
    let pids = [server_pid(&lab, "lower"), server_pid(&lab, "upper")];

    let image = std::fs::read(lab.path("lower.erofs")).unwrap();
    assert_eq!(read_file(&d1).unwrap(), image[..image.len() / 4096 * 4096]);

    let m1 = lab.mount_erofs(&d1, "m1");
    let m2 = lab.mount_erofs(&d2, "m2");
    for (name, content) in &lower {
        assert_eq!(&read_file(&m1.join(name)).unwrap(), content, "{name}");
    }
    let merged = lab.path("merged");
    std::fs::create_dir_all(&merged).unwrap();
    let lowerdir = format!("lowerdir={}:{}", m2.display(), m1.display());
    ok(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &lowerdir])
            .arg(&merged)
            .output()
            .unwrap(),
        "mount overlay",
    );
    lab.mounts.push(merged.clone());
    assert_eq!(read_file(&merged.join("a")).unwrap(), lower[0].1);
    assert_eq!(read_file(&merged.join("c")).unwrap(), upper[0].1);
    assert_eq!(
        read_file(&merged.join("shared")).unwrap(),
        upper[1].1,
        "upper layer wins"
    );
    assert_eq!(lab.status("lower")["status"], "verified");

    let busy = lab.run(&["close", "lower"]);
    assert_eq!(busy.status.code(), Some(5));
    let msg = String::from_utf8_lossy(&busy.stderr);
    assert!(
        msg.contains("in use by loop device /dev/loop") && msg.contains("mounted at"),
        "{msg}"
    );

    lab.umount_all();
    lab.close("lower");
    lab.close("upper");
    no_leftovers(&lab, &["lower", "upper"], &pids);
}

/// An image where the victim file's blocks are under a different leaf hash block than the other files'.
fn spread_image(lab: &Lab) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, usize)> = (0..40).map(|i| (format!("f{i:02}"), 16 * 1024)).collect();
    files.push(("victim".into(), 8 * 1024));
    files.extend((40..80).map(|i| (format!("f{i:02}"), 16 * 1024)));
    let refs: Vec<(&str, usize)> = files.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    erofs_image(lab, "spread.erofs", &refs, 3)
}

/// The spread image formatted and opened as a FUSE device.
struct Spread {
    files: Vec<(String, Vec<u8>)>,
    image: Vec<u8>,
    dev: PathBuf,
    /// Byte offset of the victim file's first block in the image.
    victim_at: u64,
}

fn open_spread(lab: &mut Lab) -> Spread {
    let files = spread_image(lab);
    let image = std::fs::read(lab.path("spread.erofs")).unwrap();
    let root = lab.format("spread.erofs", "spread.verity", &[]);
    let dev = lab.open("spread.erofs", "spread", "spread.verity", &root, &[]);
    let victim = &files.iter().find(|(n, _)| n == "victim").unwrap().1;
    let victim_at = offset_in(&image, victim);
    Spread {
        files,
        image,
        dev,
        victim_at,
    }
}

#[test]
fn a_byte_flipped_under_a_live_mount_fails_that_block_and_file_with_eio_only() {
    if !mounts_ready("fuse_device::flip_data") {
        return;
    }
    let mut lab = Lab::new();
    let Spread {
        files,
        image,
        dev,
        victim_at: at,
    } = open_spread(&mut lab);
    let block = at / 4096;

    let data = std::fs::OpenOptions::new()
        .write(true)
        .open(lab.path("spread.erofs"))
        .unwrap();
    data.write_all_at(&[!image[at as usize + 100]], at + 100).unwrap();

    let mp = lab.mount_erofs(&dev, "m");
    assert_eio(read_file(&mp.join("victim")), "reading the tampered file");
    for (name, content) in files.iter().filter(|(n, _)| n != "victim") {
        assert_eq!(&read_file(&mp.join(name)).unwrap(), content, "{name} still reads");
    }
    let mut buf = vec![0u8; 4096];
    let raw = std::fs::File::open(&dev).unwrap();
    assert_eq!(raw.read_at(&mut buf, at).map_err(|e| e.raw_os_error()), Err(Some(5)));
    let status = lab.status("spread");
    assert_eq!(status["status"], "corrupted");
    assert_eq!(status["counters"]["first_corrupted"], format!("data block {block}"));
}

#[test]
fn a_byte_flipped_in_the_tree_fails_the_blocks_beneath_that_hash_block() {
    if !mounts_ready("fuse_device::flip_tree") {
        return;
    }
    let mut lab = Lab::new();
    let Spread {
        image, dev, victim_at, ..
    } = open_spread(&mut lab);
    let block = victim_at / 4096;
    let blocks = image.len() as u64 / 4096;
    // Tree of this image: superblock block 0, one top block at 1, leaves from 2 (one per 128 data blocks).
    let levels = if blocks > 128 { 2 } else { 1 };
    assert_eq!(levels, 2, "the image spans several leaves");
    let leaf = 2 + block / 128;
    let hash = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(lab.path("spread.verity"))
        .unwrap();
    let mut byte = [0u8];
    hash.read_exact_at(&mut byte, leaf * 4096 + (block % 128) * 32).unwrap();
    hash.write_all_at(&[!byte[0]], leaf * 4096 + (block % 128) * 32)
        .unwrap();

    let raw = std::fs::File::open(&dev).unwrap();
    let mut buf = vec![0u8; 4096];
    for b in 0..blocks {
        let result = raw.read_at(&mut buf, b * 4096).map_err(|e| e.raw_os_error());
        if b / 128 == block / 128 {
            assert_eq!(result, Err(Some(5)), "block {b} sits under the tampered leaf");
        } else {
            assert_eq!(result, Ok(4096), "block {b} is under an intact leaf");
            assert_eq!(buf, image[(b * 4096) as usize..(b * 4096 + 4096) as usize]);
        }
    }
    let status = lab.status("spread");
    assert_eq!(status["status"], "corrupted");
    assert_eq!(
        status["counters"]["first_corrupted"],
        format!("hash block {leaf} (tree level 0)")
    );
}

/// Opens a device over 64 blocks of data with block 5 zero, flips a byte of block 9 on disk, and returns
/// the lab, the device path and the image.
fn tampered_device(extra: &[&str], name: &str) -> (Lab, PathBuf, Vec<u8>) {
    let mut lab = Lab::new();
    let mut image = bytes(64 * 4096, 11);
    image[5 * 4096..6 * 4096].fill(0);
    std::fs::write(lab.path("data"), &image).unwrap();
    let root = lab.format("data", "hash", &[]);
    let dev = lab.open("data", name, "hash", &root, extra);
    let f = std::fs::OpenOptions::new().write(true).open(lab.path("data")).unwrap();
    f.write_all_at(&[!image[9 * 4096]], 9 * 4096).unwrap();
    f.write_all_at(b"junk", 5 * 4096).unwrap();
    (lab, dev, image)
}

fn read_block(dev: &Path, block: u64) -> Result<Vec<u8>, Option<i32>> {
    let mut buf = vec![0u8; 4096];
    let f = std::fs::File::open(dev).map_err(|e| e.raw_os_error())?;
    f.read_exact_at(&mut buf, block * 4096).map_err(|e| e.raw_os_error())?;
    Ok(buf)
}

#[test]
fn error_modes_behave_as_the_kernel_documents_through_fuse() {
    if !fuse_ready("fuse_device::error_modes") {
        return;
    }
    let (lab, dev, image) = tampered_device(&["--ignore-corruption"], "ignore");
    let got = read_block(&dev, 9).unwrap();
    assert_eq!(got[0], !image[9 * 4096], "ignore_corruption returns the data as read");
    assert_eq!(lab.status("ignore")["status"], "corrupted");
    drop(lab);

    for (flag, action) in [
        ("--restart-on-corruption", "restart"),
        ("--panic-on-corruption", "panic"),
    ] {
        let (lab, dev, _) = tampered_device(&[flag], "halt");
        assert!(read_block(&dev, 8).is_ok());
        assert_eq!(read_block(&dev, 9), Err(Some(5)));
        assert_eq!(read_block(&dev, 7), Err(Some(5)), "after a {action} nothing is served");
        assert_eq!(lab.status("halt")["counters"]["halted"], action);
    }

    let (lab, dev, _) = tampered_device(&["--ignore-zero-blocks"], "zeroes");
    assert_eq!(
        read_block(&dev, 5).unwrap(),
        vec![0u8; 4096],
        "zero block served without reading it"
    );
    assert_eq!(lab.status("zeroes")["counters"]["zero_blocks"], 1);
    drop(lab);
    let (_lab, dev, _) = tampered_device(&[], "strict");
    assert_eq!(
        read_block(&dev, 5),
        Err(Some(5)),
        "without ignore_zero_blocks the change is caught"
    );
}

#[test]
fn check_at_most_once_serves_blocks_tampered_after_their_first_read() {
    if !fuse_ready("fuse_device::check_at_most_once") {
        return;
    }
    let mut lab = Lab::new();
    let image = bytes(64 * 4096, 12);
    std::fs::write(lab.path("data"), &image).unwrap();
    let root = lab.format("data", "hash", &[]);
    let dev = lab.open("data", "once", "hash", &root, &["--check-at-most-once"]);
    assert!(read_block(&dev, 3).is_ok());
    let f = std::fs::OpenOptions::new().write(true).open(lab.path("data")).unwrap();
    f.write_all_at(&[!image[3 * 4096]], 3 * 4096).unwrap();
    f.write_all_at(&[!image[4 * 4096]], 4 * 4096).unwrap();
    let dev_file = std::fs::File::open(&dev).unwrap();
    rustix::fs::fadvise(&dev_file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    assert_eq!(
        read_block(&dev, 3).unwrap()[0],
        !image[3 * 4096],
        "tampered after the first read: unchecked"
    );
    assert_eq!(read_block(&dev, 4), Err(Some(5)), "never read before: still checked");
}

#[test]
fn a_wrong_root_hash_opens_but_reads_fail_and_status_says_corrupted() {
    if !fuse_ready("fuse_device::wrong_root") {
        return;
    }
    let mut lab = Lab::new();
    std::fs::write(lab.path("data"), bytes(16 * 4096, 13)).unwrap();
    lab.format("data", "hash", &[]);
    let dev = lab.open("data", "wrong", "hash", &"ab".repeat(32), &[]);
    assert_eq!(read_block(&dev, 0), Err(Some(5)));
    assert_eq!(lab.status("wrong")["status"], "corrupted");
}

#[test]
fn bad_open_requests_are_refused_clearly() {
    if !fuse_ready("fuse_device::bad_open") {
        return;
    }
    let mut lab = Lab::new();
    std::fs::write(lab.path("data"), bytes(16 * 4096, 14)).unwrap();
    let root = lab.format("data", "hash", &[]);
    lab.open("data", "dup", "hash", &root, &[]);
    let again = lab.run(&["open", "--backend", "fuse", "data", "dup", "hash", &root]);
    assert_eq!(again.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let missing = lab.run(&["open", "--backend", "fuse", "nope", "x", "hash", &root]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("opening data device nope"));
    let kernel = lab.run(&["open", "--backend", "kernel", "data", "k", "hash", &root]);
    if verity_fuse::backend::capabilities().kernel.is_err() {
        let msg = String::from_utf8_lossy(&kernel.stderr);
        assert!(msg.contains("Kernel backend is not available here"), "{msg}");
    }
    let bad_name = lab.run(&["open", "--backend", "fuse", "data", "../x", "hash", &root]);
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("device name `../x` is invalid"));
}

#[test]
fn a_data_file_truncated_while_mounted_gives_eio_past_its_new_end() {
    if !fuse_ready("fuse_device::truncated") {
        return;
    }
    let mut lab = Lab::new();
    std::fs::write(lab.path("data"), bytes(32 * 4096, 15)).unwrap();
    let root = lab.format("data", "hash", &[]);
    let dev = lab.open("data", "trunc", "hash", &root, &[]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(lab.path("data"))
        .unwrap()
        .set_len(10 * 4096)
        .unwrap();
    assert!(read_block(&dev, 9).is_ok());
    assert_eq!(read_block(&dev, 20), Err(Some(5)));
    // The kernel may retry a failed readahead page by page: one failed read or more.
    assert!(lab.status("trunc")["counters"]["io_errors"].as_u64().unwrap() >= 1);
    assert_eq!(
        lab.status("trunc")["status"],
        "verified",
        "an I/O error is not a corruption"
    );
}

#[test]
fn a_killed_server_fails_active_readers_and_close_and_list_clean_up() {
    if !fuse_ready("fuse_device::killed_server") {
        return;
    }
    let mut lab = Lab::new();
    std::fs::write(lab.path("data"), bytes(256 * 4096, 16)).unwrap();
    let root = lab.format("data", "hash", &[]);
    let dev = lab.open("data", "victim", "hash", &root, &[]);
    let pid = server_pid(&lab, "victim");
    let reads = Arc::new(AtomicU64::new(0));
    let counted = reads.clone();
    let reader = std::thread::spawn(move || {
        let f = std::fs::File::open(&dev).unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        while started.elapsed() < Duration::from_secs(30) {
            let dropped = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).map_err(std::io::Error::from);
            if let Err(e) = dropped.and_then(|()| f.read_exact_at(&mut buf, 0)) {
                return Some(e);
            }
            counted.fetch_add(1, Ordering::SeqCst);
        }
        None
    });
    // The kill must land while the reader is reading through the server: wait for its first reads.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reads.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the reader made no progress in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    ok(
        Command::new("kill").args(["-9", &pid.to_string()]).output().unwrap(),
        "kill",
    );
    let err = reader.join().unwrap().expect("the reader got an error, not a hang");
    assert!(err.raw_os_error().is_some(), "{err}");
    // The connection aborts while the killed process is still exiting (its FUSE descriptor closes first);
    // the server is gone once the process is.
    assert!(
        gone_within(pid, Duration::from_secs(10)),
        "server {pid} outlived SIGKILL"
    );
    let list = ok(lab.run(&["list"]), "list");
    assert!(list.contains("victim") && list.contains("stale (cleaned up)"), "{list}");
    lab.opened.clear();
    no_leftovers(&lab, &["victim"], &[pid]);

    let dev = lab.open("data", "again", "hash", &root, &[]);
    assert!(read_block(&dev, 1).is_ok());
    let pid = server_pid(&lab, "again");
    ok(
        Command::new("kill").args(["-9", &pid.to_string()]).output().unwrap(),
        "kill",
    );
    assert!(
        gone_within(pid, Duration::from_secs(10)),
        "server {pid} outlived SIGKILL"
    );
    lab.close("again");
    no_leftovers(&lab, &["again"], &[pid]);
}

/// Resident memory of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// 8 concurrent readers for 60 s (`VERITYLAB_STRESS_SECS` overrides) over a 256 MiB device, each dropping
/// the page cache of its range so every read reaches the verifier: no errors, no wrong bytes, and the
/// server's memory stays bounded.
#[test]
fn eight_concurrent_readers_get_only_correct_bytes_with_bounded_server_memory() {
    if !fuse_ready("fuse_device::concurrent_readers") {
        return;
    }
    let secs: u64 = std::env::var("VERITYLAB_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut lab = Lab::new();
    let image = std::sync::Arc::new(bytes(256 << 20, 17));
    std::fs::write(lab.path("data"), &*image).unwrap();
    let root = lab.format("data", "hash", &[]);
    let dev = lab.open("data", "stress", "hash", &root, &[]);
    let pid = server_pid(&lab, "stress");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let readers: Vec<_> = (0..8u64)
        .map(|r| {
            let (dev, image) = (dev.clone(), image.clone());
            std::thread::spawn(move || {
                let f = std::fs::File::open(&dev).unwrap();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (r + 1);
                let mut reads = 0u64;
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let len = 1 + (x >> 40) as usize % (256 << 10);
                    let offset = (x % (image.len() - len) as u64) & !if r % 2 == 0 { 4095 } else { 0 };
                    rustix::fs::fadvise(
                        &f,
                        offset,
                        std::num::NonZeroU64::new(len as u64),
                        rustix::fs::Advice::DontNeed,
                    )
                    .unwrap();
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, offset).unwrap();
                    assert!(
                        buf == image[offset as usize..offset as usize + len],
                        "wrong bytes at {offset}+{len}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut peak = 0;
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(250));
    }
    let reads: u64 = readers.into_iter().map(|t| t.join().unwrap()).sum();
    let status = lab.status("stress");
    eprintln!("concurrent readers: {reads} reads in {secs} s, server peak RSS {peak} KiB, status {status}");
    assert_eq!(status["status"], "verified");
    assert!(reads > 8, "the readers made progress");
    assert!(peak < 96 * 1024, "server RSS peaked at {peak} KiB");
}
