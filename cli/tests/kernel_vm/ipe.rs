//! Kernel tier (VM) of IPE: on the bookworm-backports 6.12 kernel, booted through OVMF with the lab's
//! certificate enrolled in `db` (so it is in `.platform`), the signed policy of `veritylab ipe policy` lets
//! only the initramfs and dm-verity volumes whose root-hash signature the kernel checked execute.
//!
//! One boot: on the host `veritylab` builds, pulls and signs a one-layer image holding a static busybox, so
//! the layer's `layer.erofs.roothash.p7s` is the signature `sign` made; in the guest `veritysetup open
//! --root-hash-signature` maps the layer (and once more without the signature; a signature our code made
//! with a key that is not enrolled is refused with `Required key not available`), the EROFS volumes are
//! mounted, every way of executing busybox is tried before and after the policy is loaded, activated and
//! enforced, and the kernel's IPE audit records (`ipe_op=EXECUTE`) are the evidence of each refusal.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::sign::kernel_signature::signed_image;

const TEST: &str = "kernel_vm::ipe::ipe_lets_only_signed_dm_verity_volumes_execute";

/// Each way the guest tries to execute busybox: (case, path the shell executes).
const CASES: [(&str, &str); 6] = [
    ("initramfs (boot_verified)", "/bin/busybox"),
    ("signed dm-verity volume", "/mnt/signed/bin/busybox"),
    ("dm-verity volume without signature", "/mnt/unsigned/bin/busybox"),
    ("copy on tmpfs", "/mnt/tmp/busybox"),
    ("same EROFS on a loop device, no verity", "/mnt/plain/bin/busybox"),
    (
        "tmpfs bind-mounted over the signed volume's bin",
        "/mnt/signed/bin/busybox",
    ),
];

/// The guest's script: open and mount, try every case, load the policy, try every case again.
fn script(root: &str, hash_offset: &str) -> String {
    let mut s = format!(
        "mount -t securityfs securityfs /sys/kernel/security
section lsm; cat /sys/kernel/security/lsm; echo
section platform; keyctl show %:.platform 2>&1
section open-signed
veritysetup open layer.erofs signed layer.erofs {root} --hash-offset={hash_offset} \\
  --root-hash-signature=layer.erofs.roothash.p7s 2>&1
mark open-signed $?
dmsetup table signed
section open-unsigned
veritysetup open layer.erofs unsigned layer.erofs {root} --hash-offset={hash_offset} 2>&1
mark open-unsigned $?
section open-other
veritysetup open layer.erofs other layer.erofs {root} --hash-offset={hash_offset} \\
  --root-hash-signature=other.p7s 2>&1
mark open-other $?
mkdir -p /mnt/signed /mnt/unsigned /mnt/plain /mnt/tmp
mount -t erofs -o ro /dev/mapper/signed /mnt/signed; mark mount-signed $?
mount -t erofs -o ro /dev/mapper/unsigned /mnt/unsigned; mark mount-unsigned $?
mount -t erofs -o ro,loop layer.erofs /mnt/plain; mark mount-plain $?
mount -t tmpfs tmpfs /mnt/tmp; mkdir /mnt/tmp/bin
cp /mnt/signed/bin/busybox /mnt/tmp/busybox; cp /mnt/signed/bin/busybox /mnt/tmp/bin/busybox
try() {{ out=$(\"$3\" echo ran 2>&1); rc=$?; mark $1-$2 $rc; section $1-$2-out; echo \"$out\"; }}
"
    );
    let round = |s: &mut String, phase: &str| {
        for (i, (_, path)) in CASES.iter().enumerate() {
            if i == CASES.len() - 1 {
                s.push_str("mount --bind /mnt/tmp/bin /mnt/signed/bin\n");
            }
            writeln!(s, "try {phase} {i} {path}").unwrap();
            if i == CASES.len() - 1 {
                s.push_str("umount /mnt/signed/bin\n");
            }
        }
    };
    round(&mut s, "before");
    s.push_str(
        "section load
cat veritylab.ipe.p7s > /sys/kernel/security/ipe/new_policy; mark load $?
echo 1 > /sys/kernel/security/ipe/policies/veritylab/active; mark activate $?
echo 1 > /sys/kernel/security/ipe/enforce; mark enforce $?
section active; cat /sys/kernel/security/ipe/policies/veritylab/pkcs7 | wc -c
cat /sys/kernel/security/ipe/policies/veritylab/policy
",
    );
    round(&mut s, "after");
    s
}

#[test]
fn ipe_lets_only_signed_dm_verity_volumes_execute() {
    let tools = ["veritysetup", "dmsetup", "keyctl", "losetup"];
    let (host, vm) = match kernel_vm::test_vm(kernel_vm::Series::Backports, true, &tools) {
        Ok(ready) => ready,
        Err(reason) => return testkit::skip(TEST, &reason),
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("rootfs/bin")).unwrap();
    fs::copy(host.busybox(), d.join("rootfs/bin/busybox")).unwrap();
    let signed = signed_image(d, "rootfs");
    let layer = &signed["signed"]["layers"][0];
    let root = layer["root_hash"].as_str().unwrap();
    let p7s = Path::new(layer["root_hash_signature"].as_str().unwrap()).to_owned();
    let erofs = p7s.with_file_name("layer.erofs");
    let conversion: serde_json::Value =
        serde_json::from_slice(&fs::read(p7s.with_file_name(veritylab::convert::RECORD_FILE)).unwrap()).unwrap();
    let hash_offset = conversion["hashoffset"].to_string();
    let policy = std::process::Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["ipe", "policy", "--cert", "lab.crt", "--key", "lab.key"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(policy.status.success(), "ipe policy: {policy:?}");
    // The same root hash signed by our code with a key whose certificate is not enrolled.
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["keygen", "other"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "keygen: {keygen:?}");
    let other_key = veritylab::sign::keys::load_private(&d.join("other.key"), None).unwrap();
    let other_cert = veritylab::sign::kernel_signature::read_certificate(&d.join("other.crt")).unwrap();
    let other = veritylab::sign::kernel_signature::pkcs7_signature(
        &other_key,
        &other_cert,
        root.as_bytes(),
        veritylab::sign::kernel_signature::Content::Detached,
    )
    .unwrap();

    let out = vm
        .uefi_db_certificate(d.join("lab.crt"))
        .file("layer.erofs", erofs)
        .file("layer.erofs.roothash.p7s", p7s)
        .file("other.p7s", other)
        .file("veritylab.ipe.p7s", d.join("veritylab.ipe.p7s"))
        .script(&script(root, &hash_offset))
        .memory_mib(768)
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap_or_else(|e| panic!("VM run failed: {e}"));
    eprintln!(
        "IPE VM: {:?} wall clock on the host (emulated CPU: not a performance figure)",
        out.elapsed
    );
    let lsm = out.section("lsm").unwrap_or_default();
    assert!(
        lsm.split(',').any(|m| m.trim() == "ipe"),
        "IPE is not an active LSM of this kernel (/sys/kernel/security/lsm: {lsm:?}):\n{}",
        out.console_tail()
    );
    assert!(
        out.section("platform").unwrap_or_default().contains("veritylab lab"),
        "the certificate is not in .platform:\n{}",
        out.section("platform").unwrap_or_default()
    );
    assert_eq!(
        out.mark("open-signed"),
        Some("0"),
        "the kernel refused the signature `veritylab sign` wrote:\n{}",
        out.section("open-signed").unwrap_or_default()
    );
    assert!(
        out.section("open-signed")
            .unwrap_or_default()
            .contains("root_hash_sig_key_desc"),
        "{}",
        out.section("open-signed").unwrap_or_default()
    );
    // Our signature by a key the kernel's keyrings do not hold: refused, as veritysetup reports it.
    let refused = out.section("open-other").unwrap_or_default();
    assert_eq!(out.mark("open-other"), Some("4"), "{refused}");
    assert!(refused.contains("Required key not available"), "{refused}");
    for step in [
        "open-unsigned",
        "mount-signed",
        "mount-unsigned",
        "mount-plain",
        "load",
        "activate",
        "enforce",
    ] {
        assert_eq!(
            out.mark(step),
            Some("0"),
            "{step}:\n{}\n{}",
            out.script_output,
            out.dmesg
        );
    }
    let denials: Vec<&str> = out
        .dmesg
        .lines()
        .filter(|l| l.contains("ipe_op=EXECUTE") && l.contains("action=DENY"))
        .collect();
    let mut table = String::from(
        "| executed from | before the policy | with the policy enforced | IPE audit record |\n|---|---|---|---|\n",
    );
    for (i, (case, path)) in CASES.iter().enumerate() {
        let result = |phase: &str| {
            let rc = out.mark(&format!("{phase}-{i}")).unwrap_or("missing");
            let text = out.section(&format!("{phase}-{i}-out")).unwrap_or_default().trim();
            match rc {
                "0" if text == "ran" => "runs".to_owned(),
                _ if text.contains("Permission denied") => format!("refused, exit {rc}: EACCES (Permission denied)"),
                _ => format!("exit {rc}: {text}"),
            }
        };
        let (before, after) = (result("before"), result("after"));
        let refused = i >= 2;
        let record = denials.iter().find(|l| l.contains(&format!("path=\"{path}\"")));
        assert_eq!(before, "runs", "{case}: before the policy");
        if refused {
            assert!(
                after.contains("EACCES"),
                "{case} with the policy: {after}\n{}",
                out.dmesg
            );
            assert!(
                record.is_some(),
                "{case}: no IPE audit record for {path}:\n{}",
                out.dmesg
            );
        } else {
            assert_eq!(after, "runs", "{case} with the policy\n{}", out.dmesg);
        }
        let evidence = if refused {
            record
                .and_then(|l| l.find("ipe_op=").map(|at| &l[at..]))
                .map(|r| {
                    let keep: Vec<&str> = r
                        .split(' ')
                        .filter(|f| {
                            ["ipe_op=", "ipe_hook=", "enforcing=", "path=", "dev=", "rule="]
                                .iter()
                                .any(|k| f.starts_with(k))
                                || f.starts_with("op=")
                                || f.starts_with("action=")
                        })
                        .collect();
                    format!("`{}`", keep.join(" "))
                })
                .unwrap_or_default()
        } else {
            "none (allowed)".to_owned()
        };
        writeln!(table, "| {case} | {before} | {after} | {evidence} |").unwrap();
    }
    insta::assert_snapshot!("ipe_outcomes", table);
}
