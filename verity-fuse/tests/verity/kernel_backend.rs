//! The kernel backend against real kernel dm-verity, in a VM (kernel-vm): `verity-fuse open --backend kernel`
//! loads the same table line `veritysetup open` loads, the kernel mounts EROFS from it, `status` reads the
//! kernel's `V`/`C`, `close` refuses while mounted and then leaves no mapping or loop device behind.

use std::process::Command;

use crate::support::{bytes, field, ok, verity_fuse};

const HELLO: &str = "verified by the kernel, opened by verity-fuse\n";

/// Every field of a table line but the two devices (loop devices differ between mappings).
fn without_devices(table: &str) -> Vec<String> {
    table
        .split_whitespace()
        .enumerate()
        .filter(|(i, _)| *i != 4 && *i != 5)
        .map(|(_, f)| f.to_owned())
        .collect()
}

#[test]
fn kernel_backend_loads_veritysetups_table_and_its_lifecycle_works() {
    const TEST: &str = "kernel_backend::lifecycle";
    if let Err(reason) = kernel_vm::available() {
        testkit::skip(TEST, &format!("no VM here: {reason}"));
        return;
    }
    let mkfs = testkit::require_tool!("mkfs.erofs");
    testkit::require_tool!("veritysetup");
    testkit::require_tool!("dmsetup");
    testkit::require_tool!("losetup");

    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello.txt"), HELLO).unwrap();
    let payload = bytes(12 * 4096, 21);
    std::fs::write(tree.join("payload.bin"), &payload).unwrap();
    ok(
        Command::new(&mkfs)
            .arg("-Enoinline_data")
            .arg(dir.path().join("layer.erofs"))
            .arg(&tree)
            .output()
            .unwrap(),
        "mkfs.erofs",
    );
    let image = std::fs::read(dir.path().join("layer.erofs")).unwrap();
    let root = field(
        &ok(
            verity_fuse(dir.path(), &["format", "--salt", "00", "layer.erofs", "layer.verity"]),
            "format",
        ),
        "Root hash",
    );
    let probe = &payload[5 * 4096..5 * 4096 + 64];
    let block = image
        .chunks(4096)
        .position(|b| b.starts_with(probe))
        .expect("payload block in the image");
    let mut bad = image.clone();
    bad[block * 4096 + 10] ^= 0x80;

    let script = format!(
        r#"vf() {{ cmd=$1; shift; verity-fuse "$cmd" --dir /run/vf "$@"; }}
mkdir -p /mnt/ours
section open-ours
vf open layer.erofs ours layer.verity {root} 2>&1; mark open-ours $?
section table-ours
dmsetup table ours
section status-ours
vf status --json ours
veritysetup open layer.erofs theirs layer.verity {root}; mark open-theirs $?
section table-theirs
dmsetup table theirs
veritysetup close theirs
mount -t erofs -o ro /dev/mapper/ours /mnt/ours; mark mount $?
section hello
cat /mnt/ours/hello.txt
section close-busy
vf close ours 2>&1; mark close-busy $?
umount /mnt/ours
vf close ours 2>&1; mark close $?
section after-close
ls /dev/mapper
losetup -a
vf list
section open-bad
vf open --backend kernel bad.erofs bad layer.verity {root} 2>&1; mark open-bad $?
dd if=/dev/mapper/bad of=/dev/null bs=4096 skip={block} count=1 2>&1; mark read-bad $?
dd if=/dev/mapper/bad of=/dev/null bs=4096 skip=0 count=1 2>/dev/null; mark read-good-block $?
section status-bad
vf status --json bad
vf close bad; mark close-bad $?
section table-options
vf open --backend kernel --ignore-corruption --ignore-zero-blocks --check-at-most-once layer.erofs opts layer.verity {root} >/dev/null
dmsetup table opts
vf close opts
"#
    );
    let out = kernel_vm::Vm::builder()
        .binary_at(env!("CARGO_BIN_EXE_verity-fuse"))
        .binary("veritysetup")
        .binary("dmsetup")
        .binary("losetup")
        .file("layer.erofs", image)
        .file("bad.erofs", bad)
        .file("layer.verity", std::fs::read(dir.path().join("layer.verity")).unwrap())
        .script(&script)
        .run()
        .unwrap_or_else(|e| panic!("VM run failed: {e}"));
    let section = |name: &str| {
        out.section(name)
            .unwrap_or_else(|| panic!("no section {name}:\n{}", out.script_output))
    };
    let mark = |name: &str| {
        out.mark(name)
            .unwrap_or_else(|| panic!("no mark {name}:\n{}", out.script_output))
    };

    assert_eq!(mark("open-ours"), "0", "{}", section("open-ours"));
    assert!(section("open-ours").contains("/dev/mapper/ours"));
    assert!(
        section("open-ours").contains("backend Kernel (device-mapper is available)"),
        "auto picks the kernel"
    );
    assert_eq!(mark("open-theirs"), "0");
    let ours = section("table-ours").trim().to_owned();
    let theirs = section("table-theirs").trim().to_owned();
    assert_eq!(
        without_devices(&ours),
        without_devices(&theirs),
        "ours: {ours}\ntheirs: {theirs}"
    );
    let status: serde_json::Value = serde_json::from_str(section("status-ours")).unwrap();
    assert_eq!(
        (status["backend"].as_str(), status["status"].as_str()),
        (Some("kernel"), Some("verified"))
    );

    assert_eq!(mark("mount"), "0");
    assert_eq!(section("hello"), HELLO);
    assert_eq!(mark("close-busy"), "5", "{}", section("close-busy"));
    assert!(section("close-busy").contains("in use"), "{}", section("close-busy"));
    assert_eq!(mark("close"), "0", "{}", section("close-busy"));
    let after = section("after-close");
    assert!(
        !after.contains("ours") && !after.contains("/dev/loop"),
        "left behind:\n{after}"
    );

    assert_eq!(
        mark("open-bad"),
        "0",
        "open succeeds; the first read of the bad block fails"
    );
    assert_ne!(mark("read-bad"), "0", "{}", section("open-bad"));
    assert_eq!(mark("read-good-block"), "0");
    let status: serde_json::Value = serde_json::from_str(section("status-bad")).unwrap();
    assert_eq!(status["status"], "corrupted");
    assert_eq!(mark("close-bad"), "0");

    let opts = section("table-options");
    assert!(
        opts.trim_end()
            .ends_with(" 3 ignore_corruption ignore_zero_blocks check_at_most_once"),
        "{opts}"
    );
}
