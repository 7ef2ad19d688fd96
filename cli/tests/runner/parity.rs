//! The emulated backend is a model of the kernel one: run as root, every shipped scenario's cells must be
//! observed the same way on both (verdict, outcome and the kinds of evidence), so the model cannot drift from
//! the real overlay and EROFS mounts over verified devices. A cell whose attack says its mount replay was
//! imperfect (another process on the host took an identity it freed) is compared by its verdict alone, and
//! the test prints why.

use std::collections::{BTreeSet, HashSet};

use scenarios::RunnerBackend;
use scenarios::load;
use scenarios::outcome::{DeviceState, ErrorKind, FindingKind, Outcome};
use scenarios::results::{CellResult, CellStatus, RunReport, Verdict};
use scenarios::runner::{self, RunOptions};
use veritylab::profile::Profile;

/// What a cell observed, reduced to what must agree across backends: the verdict, the outcome, and the kinds
/// of errors, findings and device states seen (messages, paths and device numbers may differ).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) verdict: Verdict,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) errors: BTreeSet<ErrorKind>,
    pub(crate) findings: BTreeSet<FindingKind>,
    pub(crate) devices: HashSet<DeviceState>,
}

impl Seen {
    pub(crate) fn of(cell: &CellResult) -> Self {
        let mut seen = Seen {
            verdict: cell.verdict(),
            outcome: cell.observed_outcome(),
            errors: BTreeSet::new(),
            findings: BTreeSet::new(),
            devices: HashSet::new(),
        };
        if let CellStatus::Observed { observation, .. } = &cell.status {
            let evidence = &observation.evidence;
            seen.errors.extend(evidence.errors.iter().map(|e| e.kind));
            seen.findings.extend(evidence.findings.iter().map(|f| f.kind));
            seen.devices.extend(evidence.devices.iter().map(|d| d.state));
        }
        seen
    }
}

/// Why `cell`'s replay was imperfect, when it replayed mounts and some identity did not come back (another
/// process on the host took a freed mount id, device number or loop device): its findings may then differ
/// from a perfect replay's, and only its verdict is compared.
fn imperfect_replay(cell: &CellResult) -> Option<String> {
    let CellStatus::Observed { observation, .. } = &cell.status else {
        return None;
    };
    let effect = observation.evidence.effect.as_ref()?;
    effect
        .imperfect_replay()
        .then(|| effect.replay.as_ref().map(ToString::to_string).unwrap_or_default())
}

fn run_on(backend: RunnerBackend) -> RunReport {
    let options = RunOptions {
        profile: None,
        backend: Some(backend),
        exe: Some(env!("CARGO_BIN_EXE_veritylab").into()),
        ..RunOptions::default()
    };
    runner::run(&load::embedded().unwrap(), &options, &mut |_| {})
}

/// Every cell of `report` by (scenario, profile).
fn cells(report: &RunReport) -> Vec<((String, Profile), &CellResult)> {
    report
        .scenarios
        .iter()
        .flat_map(|s| s.cells.iter().map(move |c| ((s.id.clone(), c.profile), c)))
        .collect()
}

#[test]
fn every_shipped_scenario_is_observed_the_same_on_the_emulated_and_kernel_backends() {
    testkit::require_root!();
    for tool in ["mount", "umount", "unshare", "nsenter"] {
        testkit::require_tool!(tool);
    }
    if !testkit::fuse_available(module_path!()) {
        return;
    }
    let emulated = run_on(RunnerBackend::Emulated);
    let kernel = run_on(RunnerBackend::Kernel);
    assert_eq!(emulated.backends_used(), vec![RunnerBackend::Emulated]);
    assert_eq!(kernel.backends_used(), vec![RunnerBackend::Kernel]);
    let (emulated, kernel) = (cells(&emulated), cells(&kernel));
    let keys = |cells: &[((String, Profile), &CellResult)]| cells.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&emulated), keys(&kernel), "the same cells in the same order");
    let expected: usize = load::embedded().unwrap().iter().map(|s| s.profiles.len()).sum();
    assert_eq!(emulated.len(), expected, "every profile of every shipped scenario");

    // Scenarios that need another backend's machinery (a runc container's process) run on neither.
    let elsewhere: Vec<String> = load::embedded()
        .unwrap()
        .into_iter()
        .filter(|s| !s.backends.is_empty() && !s.backends.contains(&RunnerBackend::Kernel))
        .map(|s| s.id)
        .collect();
    let mut differ = Vec::new();
    for (((id, profile), on_emulated), (_, on_kernel)) in emulated.iter().zip(&kernel) {
        let (model, real) = (Seen::of(on_emulated), Seen::of(on_kernel));
        if elsewhere.contains(id) {
            assert_eq!(
                (model.verdict, real.verdict),
                (Verdict::Skipped, Verdict::Skipped),
                "{id} {profile}"
            );
            continue;
        }
        assert_ne!(
            real.verdict,
            Verdict::Skipped,
            "{id} {profile} did not run on kernel: {on_kernel:?}"
        );
        let imperfect = [("emulated", on_emulated), ("kernel", on_kernel)]
            .into_iter()
            .find_map(|(backend, cell)| Some((backend, imperfect_replay(cell)?)));
        if let Some((backend, why)) = imperfect {
            println!("{id} / {profile}: the {backend} replay was {why}; only the verdict is compared");
            if model.verdict != real.verdict {
                differ.push(format!(
                    "{id} / {profile}: verdict emulated {:?}, kernel {:?}",
                    model.verdict, real.verdict
                ));
            }
        } else if model != real {
            differ.push(format!("{id} / {profile}:\n  emulated {model:?}\n  kernel   {real:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {expected} cells differ between the emulated model and the kernel:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
