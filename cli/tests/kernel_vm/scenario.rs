//! `veritylab scenario run --all --backend kernel-vm` from this host: one VM boot runs every shipped
//! scenario's cells on the kernel backend inside (real dm-verity), and the report comes back with every cell
//! labelled `kernel-vm` and as expected (the hardened profile's layers with the kernel's forward error
//! correction: `use_fec_from_device` in each mapping's table).

use std::process::Command;

use serde_json::Value;

const TEST: &str = "kernel_vm::scenario::scenario_cells_run_on_the_vms_kernel";

#[test]
fn scenario_cells_run_on_the_vms_kernel() {
    if !super::vm_available(TEST) {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["scenario", "run", "--all", "--backend", "kernel-vm", "--report", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"));
    let choice = &report["backends"][0];
    assert_eq!(choice["used"], "kernel-vm", "{choice:#}");
    let reason = choice["reason"].as_str().unwrap();
    assert!(reason.contains("not performance figures"), "{reason}");
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
        for cell in cells {
            assert_eq!(cell["backend"], "kernel-vm", "{cell:#}");
            if admission {
                assert_eq!(cell["status"], "skipped", "{}: {cell:#}", scenario["id"]);
                assert!(
                    cell["reason"].as_str().unwrap_or_default().contains("docker-registry"),
                    "{cell:#}"
                );
                continue;
            }
            if cell["profile"] == "enforced" {
                // The VM's kernel checks signatures against its keyrings, filled at boot: a cell's fresh
                // certificate cannot be there (the enforced kernel run is kernel_vm::enforced).
                assert_eq!(cell["status"], "skipped", "{}: {cell:#}", scenario["id"]);
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
    // Without parity the kernel's dm-verity refused the mount (not our FUSE device); with the hardened
    // profile's parity the kernel repaired the hash block, every read succeeded, and re-verification at rest
    // named the damage.
    let flip = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "hash-tree-byte-flip")
        .unwrap();
    for cell in flip["cells"].as_array().unwrap() {
        let evidence = &cell["observation"]["evidence"];
        if cell["profile"] == "enforced" {
            // The VM's kernel trusts only certificates enrolled at its boot, not this cell's fresh one: the cell
            // is skipped and says why.
            assert!(
                cell["reason"].as_str().unwrap_or_default().contains("keyrings"),
                "{cell:#}"
            );
            continue;
        }
        if cell["profile"] == "hardened" {
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
}
