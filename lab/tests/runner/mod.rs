//! The scenario runner staging attacks for real: every shipped scenario as expected on the emulated backend,
//! and as root on the kernel backend (real overlay and EROFS mounts over verified devices) and the fuse
//! backend; a deliberately broken defence failing the run with a clear diff, a deliberately leaked mount
//! caught by the leak check, `scenario run` and `demo` from the command line, and a run as an unprivileged
//! user.

mod parity;

use std::process::Command;

use veritylab::profile::Backend;
use veritylab::scenario::outcome::{Difference, Outcome, TimelineStep};
use veritylab::scenario::report::{self, Format};
use veritylab::scenario::run::{CellResult, CellStatus, Verdict};
use veritylab::scenario::runner::{self, Hooks, RunOptions};
use veritylab::scenario::{Scenario, load};

fn veritylab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
}

fn scenario(id: &str) -> Scenario {
    load::embedded()
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no scenario {id}"))
}

fn emulated(hooks: Hooks) -> RunOptions {
    RunOptions {
        profile: None,
        backend: Some(Backend::Emulated),
        exe: None,
        hooks,
    }
}

/// Runs every shipped scenario on `backend` (mounting with the built `veritylab` binary) and checks that
/// each cell the scenario allows there was observed as expected, ending in a clean leak check.
fn every_shipped_scenario_as_expected_on(backend: Backend) {
    let scenarios = load::embedded().unwrap();
    let options = RunOptions {
        profile: None,
        backend: Some(backend),
        exe: Some(env!("CARGO_BIN_EXE_veritylab").into()),
        hooks: Hooks::default(),
    };
    let report = runner::run(&scenarios, &options, &mut |_| {});
    let text = report::render(&report, Format::Text, false);
    assert!(report.passed(), "{text}");
    assert_eq!(report.backends_used(), vec![backend], "{text}");
    let excluded: usize = scenarios
        .iter()
        .filter(|s| !s.backends.contains(&backend))
        .map(|s| s.profiles.len())
        .sum();
    assert_eq!(report.summary().skipped, excluded, "{text}");
    for cell in report.scenarios.iter().flat_map(|s| &s.cells) {
        let CellStatus::Observed { observation, .. } = &cell.status else {
            assert_eq!(cell.verdict(), Verdict::Skipped, "{cell:?}");
            continue;
        };
        let last = observation.evidence.timeline.last().unwrap();
        assert_eq!(last.action, "leak check", "{cell:?}");
        assert!(last.ok);
    }
}

#[test]
fn every_shipped_scenario_is_observed_as_expected_on_the_emulated_backend() {
    let scenarios = load::embedded().unwrap();
    let report = runner::run(&scenarios, &emulated(Hooks::default()), &mut |_| {});
    let text = report::render(&report, Format::Text, false);
    assert!(report.passed(), "{text}");
    let summary = report.summary();
    assert_eq!(summary.skipped, 0, "{text}");
    assert_eq!(summary.cells, scenarios.iter().map(|s| s.profiles.len()).sum::<usize>());
    assert_eq!(report.backends_used(), vec![Backend::Emulated]);
    // Every cell carries a timeline that ends with a clean leak check.
    for cell in report.scenarios.iter().flat_map(|s| &s.cells) {
        let CellStatus::Observed { observation, .. } = &cell.status else {
            panic!("{cell:?}");
        };
        let last = observation.evidence.timeline.last().unwrap();
        assert_eq!(last.action, "leak check", "{cell:?}");
        assert!(last.ok);
    }
}

#[test]
fn every_shipped_scenario_is_observed_as_expected_on_the_kernel_backend() {
    testkit::require_root!();
    for tool in ["mount", "umount", "unshare", "nsenter"] {
        testkit::require_tool!(tool);
    }
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    every_shipped_scenario_as_expected_on(Backend::Kernel);
}

#[test]
fn every_shipped_scenario_is_observed_as_expected_on_the_fuse_backend() {
    testkit::require_root!();
    for tool in ["umount", "nsenter"] {
        testkit::require_tool!(tool);
    }
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    every_shipped_scenario_as_expected_on(Backend::Fuse);
}

/// The timeline step of `action` in `cell`.
fn step<'a>(cell: &'a CellResult, action: &str) -> &'a TimelineStep {
    let CellStatus::Observed { observation, .. } = &cell.status else {
        panic!("{cell:?}");
    };
    observation
        .evidence
        .timeline
        .iter()
        .find(|s| s.action == action)
        .unwrap_or_else(|| panic!("no step {action}: {cell:?}"))
}

#[test]
fn registry_stage_attacks_run_against_a_real_docker_registry() {
    testkit::require_tool!("docker-registry");
    let report = runner::run(
        &[scenario("registry-blob-substitution")],
        &emulated(Hooks::default()),
        &mut |_| {},
    );
    let text = report::render(&report, Format::Text, false);
    assert!(report.passed(), "{text}");
    assert_eq!(report.scenarios[0].cells.len(), 4, "{text}");
    for cell in &report.scenarios[0].cells {
        let published = step(cell, "build, sign and publish").detail.clone().unwrap_or_default();
        assert!(published.contains("docker-registry at 127.0.0.1:"), "{published}");
        assert!(published.contains(".sig"), "the signature is pushed too: {published}");
        let detonated = step(cell, "detonate registry-blob-substitution at registry");
        let blob = detonated.detail.clone().unwrap_or_default();
        assert!(
            blob.contains("/registry/storage/docker/registry/v2/blobs/sha256/"),
            "{blob}"
        );
        let pull = step(cell, "pull");
        assert!(!pull.ok);
        assert!(
            pull.detail
                .as_deref()
                .unwrap_or_default()
                .starts_with("digest-mismatch: "),
            "{pull:?}"
        );
        assert!(step(cell, "stop the registry").ok);
        let CellStatus::Observed { observation, .. } = &cell.status else {
            unreachable!()
        };
        let last = observation.evidence.timeline.last().unwrap();
        assert_eq!((last.action.as_str(), last.ok), ("leak check", true), "{cell:?}");
    }
}

#[test]
fn without_docker_registry_registry_stage_attacks_use_an_oci_layout_and_say_so() {
    let out = veritylab()
        .args([
            "scenario",
            "run",
            "registry-blob-substitution",
            "--backend",
            "emulated",
            "--report",
            "json",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = report::json::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(report.passed());
    for cell in &report.scenarios[0].cells {
        let published = step(cell, "build, sign and publish").detail.clone().unwrap_or_default();
        assert!(
            published.contains("an OCI layout at ") && published.contains("docker-registry is not installed"),
            "{published}"
        );
        assert_eq!(
            step(cell, "pull")
                .detail
                .as_deref()
                .map(|d| d.starts_with("digest-mismatch: ")),
            Some(true)
        );
    }
}

#[test]
fn disabling_verification_in_a_copy_of_hardened_fails_the_run_with_a_clear_diff() {
    let broken = Hooks {
        disable_verification: true,
        ..Hooks::default()
    };
    let mut options = emulated(broken);
    options.profile = Some(veritylab::profile::Profile::Hardened);
    let report = runner::run(&[scenario("layer-and-tree-replace")], &options, &mut |_| {});
    assert!(!report.passed());
    let cell = &report.scenarios[0].cells[0];
    assert_eq!(cell.verdict(), Verdict::Fail);
    assert_eq!(cell.observed_outcome(), Some(Outcome::Undetected));
    let CellStatus::Observed { differences, .. } = &cell.status else {
        panic!("{cell:?}");
    };
    assert!(differences.contains(&Difference::Outcome {
        expected: Outcome::Blocked,
        observed: Outcome::Undetected,
    }));
    let text = report::render(&report, Format::Text, false);
    assert!(
        text.contains("outcome: expected blocked, observed undetected"),
        "{text}"
    );
    assert!(text.contains("signature check DISABLED (test hook)"), "{text}");
}

#[test]
fn a_leaked_mount_fails_the_cell_in_the_leak_check() {
    let leaky = Hooks {
        leak_mount: true,
        ..Hooks::default()
    };
    let mut options = emulated(leaky);
    options.profile = Some(veritylab::profile::Profile::Verity);
    let report = runner::run(&[scenario("layer-byte-flip")], &options, &mut |_| {});
    assert!(!report.passed());
    let cell = &report.scenarios[0].cells[0];
    let CellStatus::Error { message } = &cell.status else {
        panic!("expected a harness error: {cell:?}");
    };
    assert!(message.starts_with("leak check: mount record"), "{message}");
}

#[test]
fn scenario_run_exits_zero_when_as_expected_and_writes_each_report_format() {
    let dir = tempfile::tempdir().unwrap();
    for (format, file) in [("json", "r.json"), ("junit", "r.xml"), ("html", "r.html")] {
        let out = dir.path().join(file);
        let status = veritylab()
            .args([
                "scenario",
                "run",
                "upperdir-write",
                "overmount",
                "--backend",
                "emulated",
            ])
            .args(["--report", format, "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "{format}");
        assert!(std::fs::metadata(&out).unwrap().len() > 100, "{format}");
    }
    let json = std::fs::read_to_string(dir.path().join("r.json")).unwrap();
    let parsed = report::json::parse(&json).unwrap();
    assert_eq!(parsed.scenarios.len(), 2);
    assert!(parsed.passed());

    let out = veritylab()
        .args(["scenario", "run", "no-such-scenario"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-scenario"));
}

#[test]
fn a_scenario_whose_expectation_is_wrong_makes_scenario_run_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/upperdir-write.toml"))
        .unwrap()
        .replace(
            "[expect.vanilla]\noutcome = \"undetected\"",
            "[expect.vanilla]\noutcome = \"detected\"\nfindings = [\"writable-upperdir\"]",
        );
    std::fs::write(dir.path().join("upperdir-write.toml"), text).unwrap();
    let out = veritylab()
        .args(["scenario", "run", "--all", "--profile", "vanilla", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("outcome: expected detected, observed undetected"),
        "{stdout}"
    );
}

#[test]
fn the_demo_runs_without_arguments_and_writes_its_html_page() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("demo.html");
    let out = veritylab().arg("demo").arg("--html").arg(&html).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for step in ["pull ", "convert ", "sign ", "verify ", "mount ", "check "] {
        assert!(stdout.lines().any(|l| l.starts_with(step)), "{step}: {stdout}");
    }
    assert!(stdout.contains("66 as expected") || stdout.contains("PASS"), "{stdout}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));
}

#[test]
fn scenario_run_passes_as_an_unprivileged_user() {
    testkit::require_root!();
    let setpriv = testkit::require_tool!("setpriv");
    let test = testkit::require_tool!("test");
    let exe = env!("CARGO_BIN_EXE_veritylab");
    let as_nobody = || {
        let mut cmd = Command::new(&setpriv);
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
        cmd
    };
    // The kernel's own answer whether uid 65534 may execute the binary (every directory on its path
    // searchable, the file executable), asked before the run rather than read from its error.
    let executable = as_nobody().arg(&test).args(["-x", exe]).status().unwrap();
    if !executable.success() {
        testkit::skip(
            module_path!(),
            &format!("uid 65534 cannot execute {exe} (a directory on its path or the file denies it)"),
        );
        return;
    }
    let out = as_nobody()
        .arg(exe)
        .args(["scenario", "run", "--all", "--report", "json"])
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = report::json::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(report.host.uid, 65534);
    assert!(report.passed());
    assert_eq!(report.summary().skipped, 0);
}

#[test]
fn every_attack_of_the_catalogue_has_an_implementation() {
    let catalogue: Vec<&str> = veritylab::scenario::attack::ATTACKS.iter().map(|a| a.name).collect();
    assert_eq!(catalogue, attacks::NAMES);
}
