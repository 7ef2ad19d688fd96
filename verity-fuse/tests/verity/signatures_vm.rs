//! The differential test of root-hash signature semantics: the 6.12 kernel (bookworm-backports, booted
//! through OVMF with the test certificates enrolled in `db`, so they are in its `.platform` keyring) decides
//! each case of [`crate::signatures::Pki::cases`] through `veritysetup open --root-hash-signature`, and our
//! emulation decides the same inputs; every row must agree. `require_signatures` is a module parameter read
//! only at load, so the script reloads `dm-verity` with it set between the two groups of rows: one boot.

use std::fmt::Write as _;
use std::time::Duration;

use verity_fuse::signature::{self, Keyring};

use crate::signatures::{Case, Pki};
use crate::support::{bytes, field, ok, verity_fuse};

const TEST: &str = "signatures_vm::the_kernel_and_the_emulation_decide_every_signature_alike";

/// One case in the guest: open with or without a signature, report the exit status and output, close.
fn script(root: &str, cases: &[Case]) -> String {
    let mut s = format!(
        "section platform\nkeyctl show %:.platform 2>&1\n\
         try() {{\n\
           if [ -n \"$2\" ]; then veritysetup open data.img s$1 hash.img {root} --root-hash-signature=\"$2\" >/tmp/out 2>&1\n\
           else veritysetup open data.img s$1 hash.img {root} >/tmp/out 2>&1; fi\n\
           rc=$?\n\
           mark rc-$1 $rc\n\
           section out-$1\n\
           cat /tmp/out\n\
           if [ $rc = 0 ]; then dmsetup table s$1; veritysetup close s$1; fi\n\
         }}\n"
    );
    let run = |s: &mut String, require: bool| {
        for (i, case) in cases.iter().enumerate().filter(|(_, c)| c.require == require) {
            let file = if case.signature.is_some() {
                format!("sig{i}.p7s")
            } else {
                String::new()
            };
            writeln!(s, "try {i} '{file}'").unwrap();
        }
    };
    run(&mut s, false);
    // Our kernel backend: the signature as a user key named in the table, the kernel deciding.
    let good = cases.iter().position(|c| c.name == "good ECDSA P-256").expect("case");
    let other = cases.iter().position(|c| c.name == "another key's").expect("case");
    writeln!(
        s,
        "section ours-table
         verity-fuse open --backend kernel data.img kgood hash.img {root} --root-hash-signature sig{good}.p7s >/tmp/out 2>&1
         mark ours-good $?
cat /tmp/out
dmsetup table kgood
verity-fuse status kgood
verity-fuse close kgood
         section ours-other
         verity-fuse open --backend kernel data.img kother hash.img {root} --root-hash-signature sig{other}.p7s 2>&1
         mark ours-other $?
mark ours-left $(dmsetup ls | grep -c kother)
"
    )
    .unwrap();
    s.push_str(
        "section reload\nrmmod dm_verity && insmod $(ls /vmtest/modules/*-dm_verity.ko) require_signatures=1\n\
         mark reload $?\nmark required $(cat /sys/module/dm_verity/parameters/require_signatures)\n",
    );
    run(&mut s, true);
    s
}

#[test]
fn the_kernel_and_the_emulation_decide_every_signature_alike() {
    let openssl = testkit::require_tool!("openssl");
    let tools = ["veritysetup", "dmsetup", "keyctl", "losetup"];
    let (_, vm) = match kernel_vm::test_vm(kernel_vm::Series::Backports, true, &tools) {
        Ok(ready) => ready,
        Err(reason) => return testkit::skip(TEST, &reason),
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), openssl);
    std::fs::write(dir.path().join("data.img"), bytes(16 * 4096, 9)).unwrap();
    let root = field(
        &ok(verity_fuse(dir.path(), &["format", "data.img", "hash.img"]), "format"),
        "Root hash",
    );
    let cases = pki.cases(&root);
    let mut vm = vm
        .binary_at(env!("CARGO_BIN_EXE_verity-fuse"))
        .file("data.img", dir.path().join("data.img"))
        .file("hash.img", dir.path().join("hash.img"))
        .script(&script(&root, &cases))
        .timeout(Duration::from_secs(300));
    for cert in pki.trusted() {
        vm = vm.uefi_db_certificate(cert);
    }
    for (i, case) in cases.iter().enumerate() {
        if let Some(path) = &case.signature {
            vm = vm.file(&format!("sig{i}.p7s"), path.clone());
        }
    }
    let out = vm.run().unwrap_or_else(|e| panic!("VM run failed: {e}"));
    eprintln!(
        "signature VM: {:?} wall clock on the host (emulated CPU: not a performance figure)",
        out.elapsed
    );
    let platform = out.section("platform").unwrap_or_default();
    assert!(
        platform.contains("veritylab test rsa") && platform.contains("veritylab test ec"),
        "the certificates are not in .platform:\n{platform}\n{}",
        out.console_tail()
    );
    let ours = out.section("ours-table").unwrap_or_default();
    assert_eq!(
        out.mark("ours-good"),
        Some("0"),
        "verity-fuse --backend kernel:\n{ours}"
    );
    assert!(
        ours.lines()
            .any(|l| l.contains(" verity ") && l.ends_with(" 2 root_hash_sig_key_desc verity-fuse:kgood")),
        "the table names the signature key as veritysetup does:\n{ours}"
    );
    assert!(ours.contains("checked by the kernel's trusted keyrings"), "{ours}");
    assert_ne!(
        out.mark("ours-other"),
        Some("0"),
        "{}",
        out.section("ours-other").unwrap_or_default()
    );
    assert!(
        out.section("ours-other")
            .unwrap_or_default()
            .contains("Required key not available"),
        "{}",
        out.section("ours-other").unwrap_or_default()
    );
    assert_eq!(out.mark("ours-left"), Some("0"), "a refused open leaves no mapping");
    assert_eq!(out.mark("reload"), Some("0"), "{}", out.console_tail());
    assert_eq!(out.mark("required"), Some("Y"), "{}", out.console_tail());

    let mut keyring = Keyring::empty();
    for path in pki.trusted() {
        signature::parse_certificates(&std::fs::read(path).unwrap())
            .unwrap()
            .into_iter()
            .for_each(|c| keyring.push(c));
    }
    let mut table = String::from(
        "| case | require_signatures | kernel 6.12 (`veritysetup open`) | emulation (`verity-fuse`) | agree |\n\
         |---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let rc = out.mark(&format!("rc-{i}")).unwrap_or("missing");
        let output = out.section(&format!("out-{i}")).unwrap_or_default();
        let kernel_accepts = rc == "0";
        let kernel = if kernel_accepts {
            "accepted".to_owned()
        } else {
            let reason = [
                "Required key not available",
                "Key was rejected by service",
                "Bad message",
                "Invalid argument",
            ]
            .into_iter()
            .find(|r| output.contains(r))
            .unwrap_or("see output");
            format!("refused, exit {rc}: {reason}")
        };
        let sig = case.signature.as_ref().map(|p| std::fs::read(p).unwrap());
        let decision = signature::verify_root_hash_signature(&root, sig.as_deref(), &keyring, case.require);
        let emulated = match &decision {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("refused, exit 4: {}", e.errno().strerror()),
        };
        let agree = kernel_accepts == decision.is_ok() && kernel == emulated;
        if !agree {
            disagreements.push(format!(
                "{}: kernel {kernel} ({output}); emulation {decision:?}",
                case.name
            ));
        }
        if kernel_accepts != case.accepted {
            disagreements.push(format!(
                "{}: the kernel did not decide as expected: {output}",
                case.name
            ));
        }
        writeln!(
            table,
            "| {} | {} | {kernel} | {emulated} | {} |",
            case.name,
            if case.require { "1" } else { "0" },
            if agree { "yes" } else { "**NO**" }
        )
        .unwrap();
    }
    assert!(
        disagreements.is_empty(),
        "the kernel and the emulation disagree:\n{}\n\n{table}\n{}",
        disagreements.join("\n"),
        out.console_tail()
    );
    insta::assert_snapshot!("signature_table", table);
}
