//! The scenario runner staging attacks for real: every shipped scenario as expected on the emulated backend,
//! and as root on the kernel backend (real overlay and EROFS mounts over verified devices) and the fuse
//! backend; a deliberately leaked mount caught by the leak check (broken defences are the mutation test's,
//! `tests/mutation.rs`), `scenario run` and `demo` from the command line, and a run as an unprivileged
//! user.

mod admission;
pub(crate) mod parity;

use std::process::Command;

use scenarios::RunnerBackend;
use scenarios::outcome::{EffectState, ErrorKind, FindingKind, Outcome, TimelineStep};
use scenarios::report::{self, Format};
use scenarios::results::{CellResult, CellStatus, Verdict};
use scenarios::runner::{self, Hooks, RunOptions};
use scenarios::{Scenario, load};
use veritylab::profile::{Backend, Profile};

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
        backend: Some(RunnerBackend::Emulated),
        exe: None,
        hooks,
        ..RunOptions::default()
    }
}

/// Runs every shipped scenario on `backend` (mounting with the built `veritylab` binary) and checks that
/// each cell the scenario allows there was observed as expected, ending in a clean leak check.
fn every_shipped_scenario_as_expected_on(backend: RunnerBackend) {
    let scenarios = load::embedded().unwrap();
    let options = RunOptions {
        profile: None,
        backend: Some(backend),
        exe: Some(env!("CARGO_BIN_EXE_veritylab").into()),
        ..RunOptions::default()
    };
    let report = runner::run(&scenarios, &options, &mut |_| {});
    let text = report::render(&report, Format::Text, false);
    assert!(report.passed(), "{text}");
    assert_eq!(report.backends_used(), vec![backend], "{text}");
    assert_eq!(
        report.summary().skipped,
        excluded(&scenarios, backend, testkit::is_root()),
        "{text}"
    );
    for cell in report.scenarios.iter().flat_map(|s| &s.cells) {
        let CellStatus::Observed { observation, .. } = &cell.status else {
            assert_eq!(cell.verdict(), Verdict::Skipped, "{cell:?}");
            assert_skipped_for_a_stated_reason(cell);
            continue;
        };
        let last = observation.evidence.timeline.last().unwrap();
        assert_eq!(last.action, "leak check", "{cell:?}");
        assert!(last.ok);
    }
}

/// How many cells of `scenarios` are skipped on `backend`: those the scenario does not run there, and without
/// root those its attack needs root for there.
fn excluded(scenarios: &[Scenario], backend: RunnerBackend, root: bool) -> usize {
    scenarios
        .iter()
        .filter(|s| !s.backends.contains(&backend) || (!root && s.needs_root.contains_key(&backend)))
        .map(|s| s.profiles.len())
        .sum()
}

/// A skipped cell says why: its scenario does not run on the backend, or its attack needs root there.
fn assert_skipped_for_a_stated_reason(cell: &CellResult) {
    let CellStatus::Skipped { reason } = &cell.status else {
        panic!("{cell:?}");
    };
    assert!(
        reason.starts_with("the scenario does not run on") || reason.starts_with(&format!("{}: ", runner::NEEDS_ROOT)),
        "{cell:?}"
    );
}

#[test]
fn every_shipped_scenario_is_observed_as_expected_on_the_emulated_backend() {
    let scenarios = load::embedded().unwrap();
    let report = runner::run(&scenarios, &emulated(Hooks::default()), &mut |_| {});
    let text = report::render(&report, Format::Text, false);
    assert!(report.passed(), "{text}");
    let summary = report.summary();
    // Only the cells of scenarios that need another backend's machinery (a runc container's process) are skipped.
    assert_eq!(
        summary.skipped,
        excluded(&scenarios, RunnerBackend::Emulated, true),
        "{text}"
    );
    assert_eq!(summary.cells, scenarios.iter().map(|s| s.profiles.len()).sum::<usize>());
    assert_eq!(report.backends_used(), vec![RunnerBackend::Emulated]);
    // Every cell carries a timeline that ends with a clean leak check.
    for cell in report.scenarios.iter().flat_map(|s| &s.cells) {
        let CellStatus::Observed { observation, .. } = &cell.status else {
            assert_skipped_for_a_stated_reason(cell);
            continue;
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
    every_shipped_scenario_as_expected_on(RunnerBackend::Kernel);
}

/// As root every cell runs; as a normal user the cells whose attack needs root on fuse skip, saying so.
#[test]
fn every_shipped_scenario_is_observed_as_expected_on_the_fuse_backend() {
    for tool in ["umount", "nsenter"] {
        testkit::require_tool!(tool);
    }
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    every_shipped_scenario_as_expected_on(RunnerBackend::Fuse);
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
    assert_eq!(report.scenarios[0].cells.len(), 7, "{text}");
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
fn a_leaked_mount_fails_the_cell_in_the_leak_check() {
    let leaky = Hooks { leak_mount: true };
    let mut options = emulated(leaky);
    options.profile = Some(veritylab::profile::Profile::Verity);
    let report = runner::run(&[scenario("layer-byte-flip")], &options, &mut |_| {});
    assert!(!report.passed());
    let cell = &report.scenarios[0].cells[0];
    let CellStatus::Error { message, .. } = &cell.status else {
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
        .args([
            "scenario",
            "run",
            "--all",
            "--profile",
            "vanilla",
            "--backend",
            "emulated",
            "--dir",
        ])
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
    // Every cell ran and was as expected: a PASS with skipped cells is no pass of the demo. As root only the
    // cells of scenarios that need another backend's machinery (a runc container's process) are skipped; a
    // normal user on the fuse backend also skips the cells whose scenario says they need root.
    let summary = stdout
        .lines()
        .find(|l| l.contains(" cells: "))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    if testkit::is_root() {
        let elsewhere = excluded(&load::embedded().unwrap(), RunnerBackend::from(Backend::auto().0), true);
        assert!(
            summary.ends_with(&format!(", 0 differ, 0 errors, {elsewhere} skipped: PASS")),
            "{summary}"
        );
    } else {
        assert!(
            summary.contains(", 0 differ, 0 errors, ") && summary.ends_with(": PASS"),
            "{summary}"
        );
    }
    // The pipeline and the matrix use the backend this user gets without asking, and say why.
    let (backend, reason) = Backend::auto();
    assert!(stdout.contains(&format!("backend  {reason}\n")), "{stdout}");
    assert!(
        stdout.contains(&format!("mount    hardened profile, {backend} backend")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("({backend} backend) ==")), "{stdout}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));
    // Both renderings carry the enforced column, with what the profile adds to hardened.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("scenario "))
        .unwrap_or_else(|| panic!("no matrix header: {stdout}"));
    assert!(header.trim_end().ends_with(" enforced"), "{header}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains(&format!("\">{}</th>", Profile::Enforced)),
        "no enforced column in the HTML matrix"
    );
    assert!(
        page.contains(Profile::Enforced.summary()),
        "the column's title says what it is"
    );
}

/// `scenario run --all` without `--backend` as a normal user (this one, or `nobody` through `setpriv` when the
/// tests run as root): on fuse where that user can mount FUSE, else emulated, as expected either way.
#[test]
fn scenario_run_as_a_normal_user_runs_on_fuse_where_that_user_can_mount_it() {
    let exe = env!("CARGO_BIN_EXE_veritylab");
    let mut command = if testkit::is_root() {
        let setpriv = testkit::require_tool!("setpriv");
        let test = testkit::require_tool!("test");
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
        let mut cmd = as_nobody();
        cmd.arg(exe);
        cmd
    } else {
        veritylab()
    };
    let out = command
        .args(["scenario", "run", "--all", "--report", "json"])
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = report::json::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_ne!(report.host.uid, 0);
    assert!(report.passed(), "{stderr}");
    let fuse = if testkit::is_root() {
        fuse_for_others()
    } else {
        verity_fuse::backend::capabilities().fuse.is_ok()
    };
    let backend = if fuse {
        RunnerBackend::Fuse
    } else {
        RunnerBackend::Emulated
    };
    assert_eq!(report.backends_used(), vec![backend], "{:?}", report.backends);
    assert!(
        report.backends[0].reason.starts_with(&format!("{backend}: ")),
        "{:?}",
        report.backends
    );
    let scenarios = load::embedded().unwrap();
    assert_eq!(report.summary().errors, 0);
    assert_eq!(report.summary().skipped, excluded(&scenarios, backend, false));
    for cell in report.scenarios.iter().flat_map(|s| &s.cells) {
        if cell.verdict() == Verdict::Skipped {
            assert_skipped_for_a_stated_reason(cell);
        }
    }
}

/// Whether a user other than root can mount FUSE here: `/dev/fuse` readable and writable by others, and a
/// setuid `fusermount3`.
fn fuse_for_others() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let device = std::fs::metadata("/dev/fuse").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006);
    device && testkit::find_tool("fusermount3").is_some_and(|p| verity_fuse::sys::is_setuid_root(&p))
}

/// The attacker's own look at the container in `cell`, if the pipeline got that far.
fn attacker_look(cell: &CellResult) -> Option<&TimelineStep> {
    let CellStatus::Observed { observation, .. } = &cell.status else {
        return None;
    };
    observation
        .evidence
        .timeline
        .iter()
        .find(|s| s.action == "the attacker looks")
}

#[test]
fn every_undetected_cell_names_what_the_container_saw_of_the_attack() {
    let scenarios = load::embedded().unwrap();
    let report = runner::run(&scenarios, &emulated(Hooks::default()), &mut |_| {});
    let mut unobserved = Vec::new();
    for scenario in &report.scenarios {
        for cell in &scenario.cells {
            if cell.observed_outcome() != Some(Outcome::Undetected) {
                continue;
            }
            let look = attacker_look(cell).and_then(|s| s.detail.clone()).unwrap_or_default();
            if look.is_empty() || look.contains("no separate check") {
                unobserved.push(format!("{} / {}: {look:?}", scenario.id, cell.profile));
            }
        }
    }
    assert!(
        unobserved.is_empty(),
        "undetected without an observation:\n{}",
        unobserved.join("\n")
    );
}

#[test]
fn hardened_leaked_mounts_are_found_by_the_cleanup_helper_itself() {
    let mut options = emulated(Hooks::default());
    options.profile = Some(veritylab::profile::Profile::Hardened);
    let report = runner::run(&[scenario("leaked-mounts")], &options, &mut |_| {});
    let text = report::render(&report, Format::Text, false);
    let cell = &report.scenarios[0].cells[0];
    let CellStatus::Observed { observation, .. } = &cell.status else {
        panic!("{text}");
    };
    let leaked: Vec<_> = observation
        .evidence
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::LeakedMount)
        .collect();
    assert!(!leaked.is_empty(), "{text}");
    for finding in leaked {
        assert!(
            finding.message.starts_with("veritylab cleanup: "),
            "the finding is not cleanup's report: {finding:?}"
        );
    }
}

#[test]
fn every_cell_rests_on_product_evidence_or_the_containers_observation() {
    let scenarios = load::embedded().unwrap();
    let report = runner::run(&scenarios, &emulated(Hooks::default()), &mut |_| {});
    let text = report::render(&report, Format::Text, false);
    assert!(report.passed(), "{text}");
    for scenario in &report.scenarios {
        for cell in &scenario.cells {
            let CellStatus::Observed { observation, .. } = &cell.status else {
                assert_skipped_for_a_stated_reason(cell);
                continue;
            };
            let evidence = &observation.evidence;
            let label = format!("{} / {}", scenario.id, cell.profile);
            assert!(!observation.grounds.is_empty(), "{label}: no grounds");
            match observation.outcome {
                Outcome::Undetected => {
                    let effect = evidence.effect.as_ref().unwrap_or_else(|| panic!("{label}: no effect"));
                    assert_eq!(effect.state, EffectState::TookEffect, "{label}");
                    assert_eq!(observation.grounds, effect.detail, "{label}");
                }
                Outcome::Detected => assert!(!evidence.findings.is_empty(), "{label}"),
                Outcome::Blocked => assert!(
                    !evidence.errors.is_empty()
                        || evidence
                            .effect
                            .as_ref()
                            .is_some_and(|e| e.state == EffectState::Genuine),
                    "{label}: blocked without a refusal or the genuine content seen"
                ),
                Outcome::Inconclusive => panic!("{label}: inconclusive: {}", observation.grounds),
            }
        }
    }
    let json = report::render(&report, Format::Json, false);
    assert!(json.contains("\"grounds\": \"the container reads /bin/app: "), "{json}");
}

#[test]
fn read_errors_count_only_as_the_defence_that_raised_them() {
    use veritylab::rootfs::SnapshotError;
    let host = |errno: i32| SnapshotError::Host {
        path: "/rootfs/bin/app".into(),
        source: std::io::Error::from_raw_os_error(errno),
    };
    // A dead FUSE server, a missing file, a permission problem: the harness's, never a refusal.
    for errno in [107, 2, 13] {
        assert_eq!(runner::snapshot_kind(&host(errno)), None, "errno {errno}");
    }
    assert_eq!(runner::snapshot_kind(&host(5)), Some(ErrorKind::HashMismatch));
    assert_eq!(runner::snapshot_kind(&host(117)), Some(ErrorKind::MalformedImage));

    use verity_fuse::VerityError;
    let refusal = |e| scenarios::device_refusal(0, 4096, e);
    assert!(matches!(
        refusal(VerityError::OutOfRange {
            offset: 4096,
            len: 1,
            size: 4096
        }),
        attacks::AttackError::Refused {
            kind: attacks::DefenceRefusal::OutOfRange,
            ..
        }
    ));
    assert!(matches!(
        refusal(VerityError::Io {
            device: verity_fuse::error::Device::Data,
            offset: 0,
            error: std::io::Error::from_raw_os_error(107),
        }),
        attacks::AttackError::Env(_)
    ));
}

#[test]
fn an_audit_finding_keeps_its_name_as_a_scenario_finding_kind() {
    let findings = [
        veritylab::audit::AuditFinding::OverlayWritable,
        veritylab::audit::AuditFinding::RootfsMissing { target: "/t".into() },
    ];
    for finding in &findings {
        let kind = serde_json::to_value(runner::finding_kind(finding)).unwrap();
        assert_eq!(kind, finding.kind(), "{finding}");
    }
}
