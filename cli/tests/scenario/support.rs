//! A fixed synthetic run report, so report renderings can be snapshot-tested without running attacks.

use scenarios::RunnerBackend;
use scenarios::outcome::{
    DeviceSnapshot, DeviceState, EffectEvidence, EffectState, ErrorEvidence, ErrorKind, Evidence, Expectation,
    FindingEvidence, FindingKind, Observation, Outcome, Phase, TimelineStep,
};
use scenarios::results::{BackendChoice, CellResult, HostInfo, RunReport, SCHEMA_VERSION, ScenarioResult};
use veritylab::profile::Profile;

fn expect(outcome: Outcome) -> Expectation {
    Expectation {
        outcome,
        error: None,
        findings: Vec::new(),
        device: None,
        why: None,
    }
}

fn step(at_ms: u64, phase: Phase, action: &str, ok: bool, detail: Option<&str>) -> TimelineStep {
    TimelineStep {
        at_ms,
        phase,
        action: action.to_owned(),
        ok,
        detail: detail.map(str::to_owned),
    }
}

/// An observation whose grounds are its first error, else its first finding, else what the container showed
/// (a trojaned `bin/app` for an undetected cell), as the runner concludes them.
fn observed(outcome: Outcome, mut evidence: Evidence) -> Observation {
    let grounds = if let Some(e) = evidence.errors.first() {
        format!("{} at {}: {}", e.kind, e.step, e.message)
    } else if let Some(f) = evidence.findings.first() {
        format!("{}: {}", f.kind, f.message)
    } else {
        let effect = EffectEvidence {
            state: EffectState::TookEffect,
            detail: "the container reads /bin/app: \"#!/bin/sh\\necho trojan\\n\"".to_owned(),
            replay: None,
        };
        let detail = effect.detail.clone();
        evidence.effect = Some(effect);
        detail
    };
    Observation {
        outcome,
        grounds,
        evidence,
    }
}

fn timeline(start: u64, blocked_at: Option<&str>) -> Vec<TimelineStep> {
    vec![
        step(start, Phase::Setup, "build, convert and mount the image", true, None),
        step(start + 12, Phase::Detonate, "stage the attack", true, None),
        step(
            start + 20,
            Phase::Observe,
            "read bin/app through the container",
            blocked_at.is_none(),
            blocked_at,
        ),
        step(start + 31, Phase::Revert, "unmount and restore", true, None),
        step(
            start + 35,
            Phase::LeakCheck,
            "mounts, loop devices, FUSE servers, temp files",
            true,
            None,
        ),
    ]
}

/// A run with passes, a failure (a broken hardened profile), a harness error, skips and two backends; its
/// messages hold characters every format must escape.
pub(crate) fn synthetic_report() -> RunReport {
    let corrupted = DeviceSnapshot {
        device: "layer-0".to_owned(),
        state: DeviceState::Corrupted,
        blocks_verified: 7,
        corruptions: 1,
        fec_corrected: 0,
        fec_uncorrectable: 0,
        first_corrupted: Some("data block 3".to_owned()),
    };
    let hash_error = ErrorEvidence {
        kind: ErrorKind::HashMismatch,
        step: "observe".to_owned(),
        message: "data block 3 is corrupted: expected digest 1f2e, found 9a8b".to_owned(),
    };
    let mut blocked = expect(Outcome::Blocked);
    blocked.error = Some(ErrorKind::HashMismatch);
    blocked.device = Some(DeviceState::Corrupted);
    let blocked_evidence = |start| Evidence {
        errors: vec![hash_error.clone()],
        devices: vec![corrupted.clone()],
        timeline: timeline(start, Some("EIO")),
        ..Evidence::default()
    };
    let plain = |start| Evidence {
        timeline: timeline(start, None),
        ..Evidence::default()
    };

    let mut swap = ScenarioResult {
        id: "host-layer-swap".to_owned(),
        title: "Layer files swapped on the node disk".to_owned(),
        attack: "host-layer-swap".to_owned(),
        cells: Vec::new(),
    };
    let undetected = expect(Outcome::Undetected);
    for (i, profile) in Profile::ALL.into_iter().enumerate() {
        let start = 40 * i as u64;
        let (expected, observation) = match profile {
            Profile::Vanilla | Profile::Erofs => (undetected.clone(), observed(Outcome::Undetected, plain(start))),
            _ => (blocked.clone(), observed(Outcome::Blocked, blocked_evidence(start))),
        };
        swap.cells.push(CellResult::observed(
            profile,
            RunnerBackend::Emulated,
            expected,
            observation,
            start,
            36,
        ));
    }

    let mut upper = ScenarioResult {
        id: "upperdir-write".to_owned(),
        title: "Write into the container's upperdir from the host".to_owned(),
        attack: "upperdir-write".to_owned(),
        cells: Vec::new(),
    };
    upper.cells.push(CellResult::observed(
        Profile::Vanilla,
        RunnerBackend::Emulated,
        undetected.clone(),
        observed(Outcome::Undetected, plain(160)),
        160,
        36,
    ));
    let mut read_only = expect(Outcome::Blocked);
    read_only.error = Some(ErrorKind::ReadOnly);
    read_only.why = Some("There is no upperdir: the overlay is read-only & the write fails with EROFS.".to_owned());
    upper.cells.push(CellResult::observed(
        Profile::Hardened,
        RunnerBackend::Emulated,
        read_only,
        observed(Outcome::Undetected, plain(200)),
        200,
        36,
    ));

    let mut over = ScenarioResult {
        id: "overmount".to_owned(),
        title: "Overmount inside the running container".to_owned(),
        attack: "overmount".to_owned(),
        cells: Vec::new(),
    };
    let mut detected = expect(Outcome::Detected);
    detected.findings = vec![FindingKind::Overmount];
    over.cells.push(CellResult::observed(
        Profile::Hardened,
        RunnerBackend::Emulated,
        detected.clone(),
        observed(
            Outcome::Detected,
            Evidence {
                findings: vec![FindingEvidence {
                    kind: FindingKind::Overmount,
                    path: Some("etc".to_owned()),
                    message: "tmpfs on 0:52 over the verified overlay <not ours> \"x\" & 'y'\u{1}".to_owned(),
                }],
                timeline: timeline(240, None),
                ..Evidence::default()
            },
        ),
        240,
        36,
    ));
    over.cells.push(CellResult::error(
        Profile::Vanilla,
        RunnerBackend::Emulated,
        undetected.clone(),
        verity_fuse::ErrorClass::Busy,
        "leak check: mount /tmp/veritylab-run/rootfs remained after revert",
        280,
        12,
    ));
    over.cells.push(CellResult::skipped(
        Profile::Hardened,
        RunnerBackend::Kernel,
        detected,
        "kernel: not root",
    ));
    over.cells.push(CellResult::skipped(
        Profile::Vanilla,
        RunnerBackend::Kernel,
        undetected,
        "kernel: not root",
    ));

    RunReport {
        schema_version: SCHEMA_VERSION,
        run_id: "20261123T172000Z-3f9a0c11".to_owned(),
        started_at: "2026-11-23T17:20:00Z".to_owned(),
        duration_ms: 1234,
        host: HostInfo {
            hostname: "lab".to_owned(),
            kernel: "6.1.0-test".to_owned(),
            uid: 1000,
            version: "0.1.0".to_owned(),
        },
        backends: vec![
            BackendChoice {
                requested: None,
                used: RunnerBackend::Emulated,
                reason: "kernel: not root, using emulated".to_owned(),
            },
            BackendChoice {
                requested: Some(RunnerBackend::Kernel),
                used: RunnerBackend::Kernel,
                reason: "asked for; cells skipped: not root".to_owned(),
            },
        ],
        scenarios: vec![swap, upper, over],
    }
}
