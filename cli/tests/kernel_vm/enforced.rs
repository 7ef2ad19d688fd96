//! Kernel tier (VM) of the `enforced` profile: on the bookworm-backports 6.12 kernel, booted through OVMF
//! with the lab's certificate enrolled in `db`, `veritylab mount --profile enforced --backend kernel` opens
//! each layer as a dm-verity mapping whose root-hash signature the kernel checks, loads and activates the
//! signed IPE policy, and then the kernel itself decides every `execve`: a binary from the image runs, and an
//! attacker's binary on a tmpfs mounted over a directory of the rootfs is refused with `EACCES`, the kernel's
//! IPE audit record naming it.
//!
//! One boot: the key, its certificate and the signed policy are made on the host (the certificate must be
//! in `db` before the kernel starts); the image is built, pulled and signed inside the guest, as a node would.

use std::fs;
use std::path::Path;

use kernel_vm::VmOutput;

const TEST: &str =
    "kernel_vm::enforced::the_enforced_profile_runs_the_image_and_the_kernel_refuses_an_overmount_binary";

/// The guest's script. `step NAME CMD...` runs a command in its own section and marks its exit status.
const SCRIPT: &str = r#"
S=/tmp/store
I=oci:/tmp/layout:v1
step() { name=$1; shift; section "$name"; "$@" 2>&1; mark "$name" $?; }
holder() { sed -n 's/^ *"holder": \([0-9]*\),*$/\1/p' "$1"; }
mount -t securityfs securityfs /sys/kernel/security
cp /data/lab.key /data/lab.pub /data/lab.crt /data/veritylab.ipe.p7s /tmp/
chmod 600 /tmp/lab.key
printf 'trusted_keys = ["lab.pub"]\n' > /tmp/policy.toml
mkdir -p /tmp/img/bin /tmp/img/opt /tmp/t
cp /data/busybox /tmp/img/bin/busybox
chmod 755 /tmp/img/bin/busybox

step build veritylab image build /tmp/img --tag $I
step pull veritylab pull $I --store $S
step sign veritylab sign $I --key /tmp/lab.key --store $S
veritylab mount $I /tmp/t --profile enforced --key /tmp/lab.pub --policy /tmp/policy.toml --keyring /tmp/lab.crt \
  --ipe-policy /tmp/veritylab.ipe.p7s --backend kernel --store $S --json > /tmp/m.json 2>&1
mark mount $?
section record; cat /tmp/m.json
H=$(holder /tmp/m.json)
section tables; dmsetup table
section enforce; cat /sys/kernel/security/ipe/enforce; echo
step genuine nsenter -t "$H" -m /tmp/t/bin/busybox echo ran
step overmount nsenter -t "$H" -m mount -t tmpfs tmpfs /tmp/t/opt
step plant nsenter -t "$H" -m sh -c "cp /data/busybox /tmp/t/opt/busybox && chmod 755 /tmp/t/opt/busybox"
step attacker nsenter -t "$H" -m /tmp/t/opt/busybox echo ran
sleep 1
section ipe-audit; dmesg | grep 'ipe_op=EXECUTE'
echo 0 > /sys/kernel/security/ipe/enforce
step permissive nsenter -t "$H" -m /tmp/t/opt/busybox echo ran
echo 1 > /sys/kernel/security/ipe/enforce
step check veritylab check /tmp/t --store $S --json
nsenter -t "$H" -m umount /tmp/t/opt
step umount veritylab umount /tmp/t --store $S
exit 0
"#;

fn section<'a>(out: &'a VmOutput, name: &str) -> &'a str {
    out.section(name)
        .unwrap_or_else(|| panic!("no section {name} in:\n{}", out.script_output))
}

#[test]
fn the_enforced_profile_runs_the_image_and_the_kernel_refuses_an_overmount_binary() {
    if !super::vm_available(TEST) {
        return;
    }
    let Some(host) = super::backports_uefi_available(TEST, &["keyctl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let veritylab = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_veritylab"))
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "veritylab {args:?}: {out:?}");
    };
    veritylab(&["keygen", "lab"]);
    veritylab(&["ipe", "policy", "--cert", "lab.crt", "--key", "lab.key"]);
    let scratch = tempfile::tempdir().unwrap();
    let mut builder = scenarios::vm::guest(Path::new(env!("CARGO_BIN_EXE_veritylab")), scratch.path())
        .kernel_series(kernel_vm::Series::Backports)
        .uefi_db_certificate(d.join("lab.crt"))
        .binary("keyctl")
        .file("busybox", host.busybox().to_owned());
    for file in ["lab.key", "lab.pub", "lab.crt", "veritylab.ipe.p7s"] {
        builder = builder.file(file, fs::read(d.join(file)).unwrap());
    }
    let out = builder
        .script(SCRIPT)
        .run()
        .unwrap_or_else(|e| panic!("VM run failed: {e}"));
    eprintln!(
        "enforced VM: {:?} wall clock on the host (emulated CPU: not a performance figure)\n{}",
        out.elapsed, out.script_output
    );
    for step in [
        "build",
        "pull",
        "sign",
        "mount",
        "genuine",
        "overmount",
        "plant",
        "umount",
    ] {
        assert_eq!(
            out.mark(step),
            Some("0"),
            "{step} failed:\n{}\n{}",
            out.script_output,
            out.console_tail()
        );
    }
    let record: serde_json::Value = serde_json::from_str(section(&out, "record")).unwrap();
    assert_eq!(record["exec_policy"]["by"], "kernel", "{record:#}");
    let publisher: Vec<&serde_json::Value> = record["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] != veritylab::mount::pinned::NAME)
        .collect();
    assert!(!publisher.is_empty());
    for layer in &publisher {
        assert_eq!(layer["trust"]["checked-by"], "kernel", "{layer:#}");
    }
    let tables = section(&out, "tables");
    assert_eq!(
        tables.matches("root_hash_sig_key_desc").count(),
        publisher.len(),
        "each publisher layer's table names its signature:\n{tables}"
    );
    assert_eq!(section(&out, "enforce").trim(), "1");
    assert_eq!(section(&out, "genuine").trim(), "ran");
    assert_eq!(
        out.mark("attacker"),
        Some("126"),
        "the planted binary was not refused:\n{}",
        section(&out, "attacker")
    );
    assert!(
        section(&out, "attacker").contains("Permission denied"),
        "{}",
        section(&out, "attacker")
    );
    // The same file runs once IPE is switched to permissive: the refusal was IPE's, not the file's or the
    // mount's.
    assert_eq!(section(&out, "permissive").trim(), "ran", "{}", out.script_output);
    let logged = format!("{}\n{}", section(&out, "ipe-audit"), out.dmesg);
    let record = logged
        .lines()
        .find(|l| l.contains("ipe_op=EXECUTE") && l.contains("path=\"/tmp/t/opt/busybox\""))
        .unwrap_or_else(|| panic!("no IPE audit record for the planted binary:\n{logged}"));
    assert!(record.contains("action=DENY"), "{record}");
    eprintln!("the kernel's IPE audit record: {record}");
    let audit = section(&out, "check")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("checked").is_some())
        .unwrap_or_else(|| panic!("no audit in:\n{}", section(&out, "check")));
    let checked = audit["checked"].to_string();
    assert!(
        checked.contains("the active IPE policy is the one the mount loaded"),
        "{audit:#}"
    );
    let kinds: Vec<&str> = audit["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"overmount"), "{audit:#}");
    assert!(!kinds.contains(&"exec-policy-changed"), "{audit:#}");
}
