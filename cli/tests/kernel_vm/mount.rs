//! Kernel tier (VM): `veritylab mount --backend kernel` on a kernel with device-mapper, so every verified
//! layer is a real dm-verity mapping. One boot: build, pull, convert and sign an image inside the VM, mount it
//! with the verity and hardened profiles, audit both, read files, flip a byte of a layer on disk and see the
//! read fail with EIO and the audit report the corrupted device, swap live tables (ignore corruption, another
//! root hash) and see the audit report both, unmount with nothing left, and clean up after a holder killed
//! with SIGKILL (whose mappings outlive its namespace) and after a mount that fails half-way.

use std::path::Path;

use kernel_vm::VmOutput;
use serde_json::Value;

const TEST: &str = "kernel_vm::mount::the_kernel_backend_mounts_on_dm_verity_in_the_vm";

/// The guest's script. `step NAME CMD...` runs a command in its own section and marks its exit status.
const SCRIPT: &str = r#"
S=/tmp/store
I=oci:/tmp/layout:v1
step() { name=$1; shift; section "$name"; "$@" 2>&1; mark "$name" $?; }
holder() { sed -n 's/^ *"holder": \([0-9]*\),*$/\1/p' "$1"; }
# Polls (at most 10 s) until process $1 is gone or a zombie; the status is 0 only if it went.
gone() { n=0; while [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; do
  [ $n -ge 200 ] && return 1; n=$((n + 1)); sleep 0.05; done; }

mkdir -p /tmp/img/base/etc /tmp/img/base/bin /tmp/t1 /tmp/t2 /tmp/t3
echo "hello from the base layer" > /tmp/img/base/etc/greeting
echo tool > /tmp/img/base/bin/tool
cp -a /tmp/img/base /tmp/img/app
echo "app file" > /tmp/img/app/app.txt
# 256 KiB of 'A': most of the top layer's data blocks.
head -c 262144 /dev/zero | tr '\0' A > /tmp/img/app/big.bin
printf 'trusted_keys = ["lab.pub"]\n' > /tmp/policy.toml

step build veritylab image build /tmp/img/base /tmp/img/app --tag $I
step pull veritylab pull $I --store $S
step convert veritylab convert $I --store $S
step keygen veritylab keygen /tmp/lab
step sign veritylab sign $I --key /tmp/lab.key --store $S
veritylab mount $I /tmp/t1 --profile verity --backend kernel --store $S --json > /tmp/m1.json 2>&1
mark mount-verity $?
veritylab mount $I /tmp/t2 --profile hardened --key /tmp/lab.pub --policy /tmp/policy.toml --backend kernel \
  --store $S --json > /tmp/m2.json 2>&1
mark mount-hardened $?
section record-verity; cat /tmp/m1.json
section record-hardened; cat /tmp/m2.json
H1=$(holder /tmp/m1.json)
H2=$(holder /tmp/m2.json)
section dm-mounted; dmsetup ls
section erofs-mounts; cat /proc/$H1/mountinfo | grep ' - erofs '
step read-verity nsenter -t "$H1" -m cat /tmp/t1/etc/greeting /tmp/t1/app.txt
step read-hardened nsenter -t "$H2" -m cat /tmp/t2/etc/greeting /tmp/t2/app.txt
step check-verity veritylab check /tmp/t1 --store $S --json
step check-hardened veritylab check /tmp/t2 --store $S --json

F=$(ls -S $(find $S -name layer.erofs) | head -n 1)
AT=$(( $(wc -c < "$F") / 3 ))
mark flipped-byte "$(dd if="$F" bs=1 skip=$AT count=1 2>/dev/null)"
printf B | dd of="$F" bs=1 seek=$AT conv=notrunc 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
step read-tampered nsenter -t "$H1" -m sh -c 'cat /tmp/t1/big.bin > /dev/null'
section dm-status; dmsetup status
step check-tampered veritylab check /tmp/t1 --store $S --json
printf A | dd of="$F" bs=1 seek=$AT conv=notrunc 2>/dev/null

step umount-verity veritylab umount /tmp/t1 --store $S --json

# Root on the node swaps live tables: layer 0 told to ignore corruption, layer 1 given layer 0's root hash.
N0=$(sed -n 's/^ *"name": "\(veritylab-[0-9a-f]*-0\)",*$/\1/p' /tmp/m2.json)
N1=$(sed -n 's/^ *"name": "\(veritylab-[0-9a-f]*-1\)",*$/\1/p' /tmp/m2.json)
T0=$(dmsetup table "$N0")
T1=$(dmsetup table "$N1")
R0=$(echo "$T0" | cut -d' ' -f12)
R1=$(echo "$T1" | cut -d' ' -f12)
step reload-0 sh -c "dmsetup reload --readonly $N0 --table '$T0 1 ignore_corruption' && dmsetup resume $N0"
step reload-1 sh -c "dmsetup reload --readonly $N1 --table '$(echo "$T1" | sed "s/$R1/$R0/")' && dmsetup resume $N1"
step check-reloaded veritylab check /tmp/t2 --store $S --json
step umount-hardened veritylab umount /tmp/t2 --store $S --json
section dm-unmounted; dmsetup ls

veritylab mount $I /tmp/t3 --profile verity --backend kernel --store $S --json > /tmp/m3.json 2>&1
mark mount-killed $?
H3=$(holder /tmp/m3.json)
kill -9 "$H3"
gone "$H3"
mark holder-gone $?
section dm-killed; dmsetup ls
step cleanup veritylab cleanup --store $S --json

# A mount that fails half-way: the top layer's EROFS superblock no longer verifies, so its mount fails after
# both mappings exist and the base layer is mounted; everything made so far is taken down.
printf X | dd of="$F" bs=1 seek=1100 conv=notrunc 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
step mount-failing veritylab mount $I /tmp/t3 --profile verity --backend kernel --store $S
section dm-end; dmsetup ls
section loops-end; losetup -a
section mounts-end; grep -c -e ' - erofs ' -e ' - overlay ' /proc/self/mountinfo
exit 0
"#;

fn section<'a>(out: &'a VmOutput, name: &str) -> &'a str {
    out.section(name)
        .unwrap_or_else(|| panic!("no section {name} in:\n{}", out.script_output))
}

fn succeeded(out: &VmOutput, step: &str) {
    assert_eq!(
        out.mark(step),
        Some("0"),
        "{step} failed:\n{}",
        out.section(step).unwrap_or(&out.script_output)
    );
}

/// The audit's JSON line in `veritylab check --json` output (the pass reports have no `checked`).
fn audit_of(out: &VmOutput, step: &str) -> Value {
    section(out, step)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("checked").is_some())
        .unwrap_or_else(|| panic!("no audit in {step}:\n{}", section(out, step)))
}

fn kinds(audit: &Value) -> Vec<&str> {
    audit["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["kind"].as_str()).collect())
        .unwrap_or_default()
}

/// Checks that every layer of a mount record is on a dm-verity mapping named after the mount.
fn on_dm_verity(record: &Value, layers: usize) -> Vec<String> {
    let id = record["id"].as_str().expect("record id");
    let recorded = record["layers"].as_array().expect("record layers");
    assert_eq!(recorded.len(), layers, "{record:#}");
    recorded
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let dm = &layer["dm"];
            let name = dm["name"]
                .as_str()
                .unwrap_or_else(|| panic!("layer {i} is not on dm-verity: {layer:#}"));
            assert_eq!(name, format!("veritylab-{id}-{i}"));
            assert_eq!(
                dm["device"], layer["erofs_dev"],
                "the EROFS mount is on the mapping itself"
            );
            assert_eq!(dm["root_hash"], layer["root_hash"]);
            assert!(layer["device_dir"].is_null(), "no FUSE device for a dm-verity layer");
            name.to_owned()
        })
        .collect()
}

#[test]
fn the_kernel_backend_mounts_on_dm_verity_in_the_vm() {
    if !super::vm_available(TEST) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = scenarios::vm::guest(Path::new(env!("CARGO_BIN_EXE_veritylab")), scratch.path())
        .script(SCRIPT)
        .run()
        .unwrap_or_else(|e| panic!("VM run failed: {e}"));
    eprintln!(
        "kernel-vm mount test: {:?} host wall clock (emulated CPU inside), initramfs {} bytes\n{}",
        out.elapsed, out.initramfs_bytes, out.script_output
    );
    assert_eq!(out.exit_code, 0, "{}", out.console_tail());
    for step in [
        "build",
        "pull",
        "convert",
        "keygen",
        "sign",
        "mount-verity",
        "mount-hardened",
    ] {
        succeeded(&out, step);
    }

    let record: Value = serde_json::from_str(section(&out, "record-verity")).unwrap();
    let verity = on_dm_verity(&record, 2);
    let record_hardened: Value = serde_json::from_str(section(&out, "record-hardened")).unwrap();
    let hardened = on_dm_verity(&record_hardened, 3);
    let listed = section(&out, "dm-mounted");
    for name in verity.iter().chain(&hardened) {
        assert!(listed.contains(name.as_str()), "{name} not in dmsetup ls:\n{listed}");
    }
    assert_eq!(
        section(&out, "erofs-mounts").lines().count(),
        2,
        "one EROFS mount per layer of the verity mount, from /dev/mapper"
    );

    succeeded(&out, "read-verity");
    assert_eq!(section(&out, "read-verity"), "hello from the base layer\napp file\n");
    succeeded(&out, "read-hardened");
    assert_eq!(section(&out, "read-hardened"), "hello from the base layer\napp file\n");
    for step in ["check-verity", "check-hardened"] {
        succeeded(&out, step);
        let audit = audit_of(&out, step);
        assert!(kinds(&audit).is_empty(), "{step}: {audit:#}");
        let checked = audit["checked"].to_string();
        assert!(checked.contains("kernel dm-verity mapping"), "{step}: {checked}");
        // The VM's 6.1 kernel predates STATX_MNT_ID_UNIQUE: the holder recorded mountinfo ids, and the audit
        // passes while saying what it then cannot prove.
        assert!(checked.contains("no unique mount ids"), "{step}: {checked}");
    }

    assert_eq!(out.mark("flipped-byte"), Some("A"), "the flipped byte is file data");
    assert_eq!(
        out.mark("read-tampered"),
        Some("1"),
        "reading the tampered file succeeded"
    );
    let error = section(&out, "read-tampered");
    assert!(error.contains("Input/output error"), "read error: {error}");
    let status = section(&out, "dm-status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("{}: ", verity[1])) && l.trim_end().ends_with(" C")),
        "the top layer's mapping reports corruption:\n{status}"
    );
    assert_eq!(
        out.mark("check-tampered"),
        Some("4"),
        "{}",
        section(&out, "check-tampered")
    );
    let audit = audit_of(&out, "check-tampered");
    assert_eq!(kinds(&audit), ["device-corrupted"], "{audit:#}");
    assert_eq!(audit["findings"][0]["status"]["mapping"], verity[1].as_str());
    assert_eq!(audit["findings"][0]["status"]["status"], "C");

    for step in ["reload-0", "reload-1"] {
        succeeded(&out, step);
    }
    assert_eq!(
        out.mark("check-reloaded"),
        Some("4"),
        "{}",
        section(&out, "check-reloaded")
    );
    let audit = audit_of(&out, "check-reloaded");
    // The untraced layer also leaves one verified device fewer than layers.
    assert_eq!(
        kinds(&audit),
        ["untraced-layer", "root-hash-mismatch", "count-mismatch"],
        "{audit:#}"
    );
    let reason = audit["findings"][0]["reason"].as_str().unwrap();
    assert!(reason.ends_with("ignores corruption"), "{reason}");
    assert_eq!(
        audit["findings"][1]["layer"], record_hardened["layers"][1]["name"],
        "{audit:#}"
    );
    assert_eq!(
        audit["findings"][1]["device"], record_hardened["layers"][0]["root_hash"],
        "{audit:#}"
    );

    for step in ["umount-verity", "umount-hardened"] {
        succeeded(&out, step);
        let report: Value = serde_json::from_str(section(&out, step)).unwrap();
        assert_eq!(report["leftovers"], serde_json::json!([]), "{step}: {report:#}");
    }
    assert!(
        !section(&out, "dm-unmounted").contains("veritylab-"),
        "{}",
        section(&out, "dm-unmounted")
    );

    succeeded(&out, "mount-killed");
    assert_eq!(
        out.mark("holder-gone"),
        Some("0"),
        "the killed holder outlived SIGKILL by 10 s"
    );
    assert!(
        section(&out, "dm-killed").contains("veritylab-"),
        "a killed holder leaves its mappings (they are global): {}",
        section(&out, "dm-killed")
    );
    succeeded(&out, "cleanup");
    let cleaned: Value = serde_json::from_str(section(&out, "cleanup")).unwrap();
    assert_eq!(cleaned.as_array().map(Vec::len), Some(1), "{cleaned:#}");
    assert_eq!(cleaned[0]["leftovers"], serde_json::json!([]), "{cleaned:#}");
    assert_ne!(
        out.mark("mount-failing"),
        Some("0"),
        "{}",
        section(&out, "mount-failing")
    );
    assert!(
        section(&out, "mount-failing").contains("from its dm-verity mapping"),
        "{}",
        section(&out, "mount-failing")
    );
    assert!(
        !section(&out, "dm-end").contains("veritylab-"),
        "{}",
        section(&out, "dm-end")
    );
    assert_eq!(section(&out, "loops-end").trim(), "", "loop devices left");
    assert_eq!(section(&out, "mounts-end").trim(), "0", "EROFS or overlay mounts left");
}
