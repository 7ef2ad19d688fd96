//! `veritylab scenario run --all --backend kernel-vm` from this host: one VM boot runs every shipped
//! scenario's cells on the kernel backend inside (real dm-verity), and a second boot, of the 6.12 kernel
//! through OVMF with the run's publisher certificate enrolled in `db`, runs the `enforced` cells with the
//! kernel checking each layer's root-hash signature and IPE deciding each exec. The report comes back with
//! every cell labelled `kernel-vm` and as expected (the hardened and enforced profiles' layers with the
//! kernel's forward error correction: `use_fec_from_device` in each mapping's table), and every cell is
//! observed as the emulated run observes it.

use std::collections::BTreeMap;
use std::process::Command;

use scenarios::outcome::FindingKind;
use scenarios::results::{CellResult, RunReport};
use serde_json::Value;
use veritylab::profile::Profile;

use crate::runner::parity::Seen;

const TEST: &str = "kernel_vm::scenario::scenario_cells_run_on_the_vms_kernel";

#[test]
fn scenario_cells_run_on_the_vms_kernel() {
    if !super::vm_available(TEST) {
        return;
    }
    let started = std::time::Instant::now();
    let stdout = run_all("kernel-vm");
    eprintln!(
        "kernel-vm run: {:?} wall clock on the host, both boots included (emulated CPU: not a performance figure)",
        started.elapsed()
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"));
    let choice = &report["backends"][0];
    assert_eq!(choice["used"], "kernel-vm", "{choice:#}");
    let reason = choice["reason"].as_str().unwrap();
    assert!(reason.contains("not performance figures"), "{reason}");
    assert!(reason.contains("the enforced cells in a second boot"), "{reason}");
    assert!(
        report["host"]["kernel"].as_str().unwrap().contains("cloud"),
        "{:#}",
        report["host"]
    );
    let ids: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let embedded = scenarios::load::embedded().unwrap();
    let shipped: Vec<&str> = embedded.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, shipped);
    for scenario in report["scenarios"].as_array().unwrap() {
        let cells = scenario["cells"].as_array().unwrap();
        assert!(!cells.is_empty(), "{scenario:#}");
        // The admission stage checks pods against a cell's docker-registry, which the VM does not carry (it
        // mounts nothing of its own: the other backends run those cells); they are skipped there, saying so.
        let admission = embedded.iter().any(|s| s.id == scenario["id"] && s.admission.is_some());
        // A scenario that needs another backend's machinery (a runc container's process) is skipped, saying so.
        let elsewhere = embedded.iter().any(|s| {
            s.id == scenario["id"] && !s.backends.is_empty() && !s.backends.contains(&scenarios::RunnerBackend::Kernel)
        });
        for cell in cells {
            assert_eq!(cell["backend"], "kernel-vm", "{cell:#}");
            if elsewhere {
                assert_eq!(cell["status"], "skipped", "{}: {cell:#}", scenario["id"]);
                assert!(
                    cell["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("does not run on kernel"),
                    "{cell:#}"
                );
                continue;
            }
            if admission {
                assert_eq!(cell["status"], "skipped", "{}: {cell:#}", scenario["id"]);
                assert!(
                    cell["reason"].as_str().unwrap_or_default().contains("docker-registry"),
                    "{cell:#}"
                );
                continue;
            }
            assert_eq!(cell["status"], "observed", "{}: {cell:#}", scenario["id"]);
            assert_eq!(
                cell["differences"],
                serde_json::json!([]),
                "{}: {cell:#}",
                scenario["id"]
            );
        }
    }
    // Without parity the kernel's dm-verity refused the mount (not our FUSE device); with the hardened and
    // enforced profiles' parity the kernel repaired the hash block, every read succeeded, and re-verification at rest
    // named the damage.
    let flip = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "hash-tree-byte-flip")
        .unwrap();
    for cell in flip["cells"].as_array().unwrap() {
        let evidence = &cell["observation"]["evidence"];
        if cell["profile"] == "hardened" || cell["profile"] == "enforced" {
            assert_eq!(evidence["errors"], serde_json::json!([]), "{cell:#}");
            let kinds: Vec<&str> = evidence["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap_or_default())
                .collect();
            assert!(kinds.contains(&"tree-mismatch"), "{cell:#}");
            continue;
        }
        let message = evidence["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("from its dm-verity mapping veritylab-"), "{cell:#}");
        assert_eq!(evidence["devices"][0]["state"], "corrupted", "{cell:#}");
    }
    enforced_cells_are_the_kernels(&report);
    every_cell_agrees_with_the_emulated_run(&stdout);
}

/// `veritylab scenario run --all --backend BACKEND --report json`, which must pass; its stdout.
fn run_all(backend: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["scenario", "run", "--all", "--backend", backend, "--report", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{backend}: stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The enforced cells' refusals are the kernel's own: an exec refused by IPE (`EACCES` from `execve`, not the
/// emulation's message), a layer's root-hash signature refused by dm-verity with the kernel's error.
fn enforced_cells_are_the_kernels(report: &Value) {
    let mut execs = 0;
    let mut signatures = 0;
    for scenario in report["scenarios"].as_array().unwrap() {
        for cell in scenario["cells"].as_array().unwrap() {
            // Skipped cells (the admission stage's, see above) have no observation.
            if cell["profile"] != "enforced" || cell["status"] == "skipped" {
                continue;
            }
            for error in cell["observation"]["evidence"]["errors"].as_array().unwrap() {
                let message = error["message"].as_str().unwrap_or_default();
                match error["kind"].as_str() {
                    Some("exec-denied") => {
                        execs += 1;
                        assert!(
                            !message.contains("(emulated)") && message.contains("Permission denied"),
                            "{}: {message}",
                            scenario["id"]
                        );
                    }
                    Some("root-hash-signature") => {
                        signatures += 1;
                        assert!(
                            ["Required key not available", "Key was rejected by service"]
                                .iter()
                                .any(|e| message.contains(e)),
                            "{}: {message}",
                            scenario["id"]
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(
        execs >= 4,
        "overmount, extra-mount and both exec-unverified scenarios refuse an exec"
    );
    assert!(
        signatures >= 3,
        "the three root-hash-signature scenarios refuse a layer"
    );
}

/// Findings the kernel adds to an `enforced` cell that the emulation cannot show, by scenario: with FEC the
/// kernel's dm-verity marks the mapping corrupted during a hash block's repair (a nested lookup of the damaged
/// block, `docs/fec.md`), so the audit also reports `device-corrupted`; our devices repair without marking.
const KERNEL_ONLY_FINDINGS: &[(&str, FindingKind)] = &[("hash-tree-byte-flip", FindingKind::DeviceCorrupted)];

/// Every cell of the kernel-vm run (`kernel_vm`, its JSON report) but those with an admission stage is observed
/// as the emulated run observes it:
/// the same verdict, outcome and kinds of errors, and for every `enforced` cell the same kinds of findings too
/// (but for [`KERNEL_ONLY_FINDINGS`]). Device states are not compared: a mount the kernel refuses reports the
/// mappings made before the refusal, where the emulation reports the devices it opened to decide.
fn every_cell_agrees_with_the_emulated_run(kernel_vm: &str) {
    let emulated = run_all("emulated");
    let parse = |json: &str| serde_json::from_str::<RunReport>(json).unwrap_or_else(|e| panic!("{e}:\n{json}"));
    let (kernel_vm, emulated) = (parse(kernel_vm), parse(&emulated));
    // Cells with an admission stage are skipped in the VM (no docker-registry there): nothing to compare.
    let admission: Vec<String> = scenarios::load::embedded()
        .unwrap()
        .into_iter()
        .filter(|s| s.admission.is_some())
        .map(|s| s.id)
        .collect();
    let cells = |report: &RunReport| -> BTreeMap<(String, Profile), Seen> {
        report
            .scenarios
            .iter()
            .filter(|s| !admission.contains(&s.id))
            .flat_map(|s| {
                s.cells
                    .iter()
                    .map(move |c: &CellResult| ((s.id.clone(), c.profile), Seen::of(c)))
            })
            .collect()
    };
    let (real, model) = (cells(&kernel_vm), cells(&emulated));
    assert_eq!(
        real.keys().collect::<Vec<_>>(),
        model.keys().collect::<Vec<_>>(),
        "the same cells"
    );
    let enforced = real.keys().filter(|(_, p)| *p == Profile::Enforced).count();
    assert!(enforced >= 30, "{enforced} enforced cells");
    let differ: Vec<String> = real
        .iter()
        .filter(|((id, profile), seen)| {
            let model = &model[&(id.clone(), *profile)];
            let mut findings = seen.findings.clone();
            findings.retain(|f| !KERNEL_ONLY_FINDINGS.contains(&(id.as_str(), *f)));
            (seen.verdict, seen.outcome, &seen.errors) != (model.verdict, model.outcome, &model.errors)
                || (*profile == Profile::Enforced && findings != model.findings)
        })
        .map(|((id, profile), seen)| {
            format!(
                "{id} / {profile}:\n  emulated  {:?}\n  kernel-vm {seen:?}",
                model[&(id.clone(), *profile)]
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} cells differ between the emulated run and the kernel-vm run:\n{}",
        differ.len(),
        real.len(),
        differ.join("\n")
    );
    eprintln!(
        "{} cells ({enforced} enforced) agree between the emulated and the kernel-vm run",
        real.len()
    );
}
