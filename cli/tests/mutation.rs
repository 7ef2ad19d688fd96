//! The mutation test of the scenario matrix: each defence a profile claims is turned off in turn, and the
//! cells that credit it must stop matching their expectation. A matrix whose verdicts hold with a defence off
//! would not be measuring that defence.
//!
//! Runs on the emulated backend, where the whole pipeline runs in this process and the switches of
//! [`veritylab::defence::mutation`] reach it; the runner's parity test shows the emulated verdicts equal the
//! kernel's. The switches are process-wide, so this binary holds one test.
//!
//! `cargo test -p veritylab --features mutation --test mutation -- --nocapture` prints what each switch flips.

use std::collections::{BTreeMap, BTreeSet};

use scenarios::RunnerBackend;
use scenarios::outcome::{EffectState, ErrorKind, FindingKind, Outcome};
use scenarios::results::{CellResult, CellStatus, RunReport, Verdict};
use scenarios::runner::{self, RunOptions};
use scenarios::{Scenario, load};
use veritylab::defence::{Defence, mutation};
use veritylab::profile::Profile;

/// A cell of the matrix on the emulated backend.
type CellId = (String, Profile);

/// The defences a profile claims (`scenarios/README.md`), with the admission check where the scenario stages
/// an admission policy (the cluster's defence, not the node's).
fn claimed(profile: Profile, scenario: &Scenario) -> BTreeSet<Defence> {
    let mut claimed: BTreeSet<Defence> = match profile {
        Profile::Vanilla | Profile::Erofs => BTreeSet::new(),
        Profile::ContainerdDmverity | Profile::ContainerdDmverityAuto | Profile::Verity => {
            [Defence::VerifiedReads].into()
        }
        Profile::Hardened => Defence::ALL
            .into_iter()
            .filter(|d| !matches!(d, Defence::KernelSignatures | Defence::ExecPolicy | Defence::Admission))
            .collect(),
        Profile::Enforced => Defence::ALL.into_iter().filter(|d| *d != Defence::Admission).collect(),
    };
    if scenario
        .admission
        .as_ref()
        .is_some_and(|a| a.policy != scenarios::admission::NONE)
    {
        claimed.insert(Defence::Admission);
    }
    claimed
}

/// The defences that produced a product refusal of `kind` under `profile`; empty for the checks every profile
/// has (a pulled blob's digest, the EROFS parser, containerd's demand for a layer's sidecar), which no switch
/// turns off. A root-hash mismatch is the verified device refusing a tree that does not hash to the root hash
/// it was given, and, where root hashes come from the signature, the signature's doing as well.
fn refused_by(kind: ErrorKind, profile: Profile) -> BTreeSet<Defence> {
    match kind {
        ErrorKind::RootHashMismatch if profile.hardened() => [Defence::SignatureCheck, Defence::VerifiedReads].into(),
        ErrorKind::RootHashMismatch => [Defence::VerifiedReads].into(),
        ErrorKind::ReadOnly => [Defence::ReadOnlyRootfs, Defence::NoUpperdir].into(),
        ErrorKind::HashMismatch | ErrorKind::OutOfRange => [Defence::VerifiedReads].into(),
        ErrorKind::SignatureMissing | ErrorKind::SignatureInvalid | ErrorKind::MixedLayers => {
            [Defence::SignatureCheck].into()
        }
        ErrorKind::Rollback => [Defence::Policy].into(),
        ErrorKind::RootHashSignature => [Defence::KernelSignatures].into(),
        ErrorKind::ExecDenied => [Defence::ExecPolicy].into(),
        ErrorKind::AdmissionDenied => [Defence::Admission].into(),
        ErrorKind::DigestMismatch | ErrorKind::MalformedImage | ErrorKind::VerityMetadataMissing => BTreeSet::new(),
    }
}

/// The defence that reported a finding of `kind`.
fn found_by(kind: FindingKind) -> Defence {
    match kind {
        FindingKind::TreeMismatch => Defence::Reverification,
        FindingKind::LeakedMount => Defence::Cleanup,
        _ => Defence::Audit,
    }
}

/// The defences a passing cell's verdict rests on: the ones behind its refusals for `blocked`, behind its
/// findings for `detected`; a `blocked` cell whose container simply read the genuine content rests on every
/// defence its profile (and the scenario's admission stage) claims. `undetected` rests on none.
fn credits(cell: &CellResult, scenario: &Scenario) -> BTreeSet<Defence> {
    let CellStatus::Observed { observation, .. } = &cell.status else {
        return BTreeSet::new();
    };
    let evidence = &observation.evidence;
    match observation.outcome {
        Outcome::Blocked if !evidence.errors.is_empty() => evidence
            .errors
            .iter()
            .flat_map(|e| refused_by(e.kind, cell.profile))
            .collect(),
        Outcome::Blocked
            if evidence
                .effect
                .as_ref()
                .is_some_and(|e| e.state == EffectState::Genuine) =>
        {
            claimed(cell.profile, scenario)
        }
        Outcome::Detected => evidence.findings.iter().map(|f| found_by(f.kind)).collect(),
        _ => BTreeSet::new(),
    }
}

fn run(scenarios: &[Scenario], profile: Option<Profile>) -> RunReport {
    let options = RunOptions {
        profile,
        backend: Some(RunnerBackend::Emulated),
        exe: None,
        ..RunOptions::default()
    };
    runner::run(scenarios, &options, &mut |_| {})
}

fn cells(report: &RunReport) -> BTreeMap<CellId, &CellResult> {
    report
        .scenarios
        .iter()
        .flat_map(|s| s.cells.iter().map(move |c| ((s.id.clone(), c.profile), c)))
        .collect()
}

fn names(defences: &BTreeSet<Defence>) -> String {
    defences.iter().map(|d| d.name()).collect::<Vec<_>>().join(" + ")
}

fn describe(cell: &CellResult) -> String {
    match &cell.status {
        CellStatus::Observed { observation, .. } => {
            format!("{} because: {}", observation.outcome, observation.grounds)
        }
        CellStatus::Skipped { reason } => format!("skipped: {reason}"),
        CellStatus::Error { message, .. } => format!("error: {message}"),
    }
}

/// A cell with `off` turned off either fails its expectation, or still passes on the evidence of a check no
/// switch reaches (a pulled blob's digest, the EROFS parser) with none of `off` among what it rests on.
fn flipped_or_held_elsewhere(cell: &CellResult, scenario: &Scenario, off: &BTreeSet<Defence>) -> Result<bool, String> {
    if cell.verdict() != Verdict::Pass {
        return Ok(true);
    }
    let still = credits(cell, scenario);
    let CellStatus::Observed { observation, .. } = &cell.status else {
        return Err(format!("passed without an observation: {}", describe(cell)));
    };
    let held_by_unswitchable = observation
        .evidence
        .errors
        .iter()
        .any(|e| refused_by(e.kind, cell.profile).is_empty());
    if still.is_disjoint(off) && held_by_unswitchable {
        Ok(false)
    } else {
        Err(format!("still as expected with {} off: {}", names(off), describe(cell)))
    }
}

#[test]
fn turning_off_each_defence_flips_the_cells_that_credit_it() {
    let scenarios = load::embedded().unwrap();
    let baseline = run(&scenarios, None);
    assert!(
        baseline.passed(),
        "the catalogue must pass before anything is turned off"
    );
    let base = cells(&baseline);

    // What each passing cell rests on, and that it is a defence its profile claims.
    let mut credited: BTreeMap<CellId, BTreeSet<Defence>> = BTreeMap::new();
    for (id, cell) in &base {
        let scenario = scenarios.iter().find(|s| s.id == id.0).unwrap();
        let credits = credits(cell, scenario);
        assert!(
            credits.is_subset(&claimed(id.1, scenario)),
            "{id:?} credits {} beyond what {} claims",
            names(&credits),
            id.1
        );
        if !credits.is_empty() {
            credited.insert(id.clone(), credits);
        }
    }
    for defence in Defence::ALL {
        assert!(
            credited.values().any(|c| c.contains(&defence)),
            "no cell of the matrix credits {defence}: the catalogue does not measure it"
        );
    }

    // Every crediting cell, with everything it rests on turned off, stops matching (or is held by a check no
    // switch reaches, which it then names).
    let mut problems = Vec::new();
    let mut held = Vec::new();
    for ((id, profile), off) in &credited {
        let scenario = scenarios.iter().find(|s| &s.id == id).unwrap();
        let off_list: Vec<Defence> = off.iter().copied().collect();
        let report = {
            let _weakened = mutation::turn_off(&off_list);
            run(std::slice::from_ref(scenario), Some(*profile))
        };
        let cell = report.scenarios[0]
            .cells
            .iter()
            .find(|c| c.profile == *profile)
            .unwrap();
        match flipped_or_held_elsewhere(cell, scenario, off) {
            Ok(true) => {}
            Ok(false) => held.push(format!("{id} / {profile}: {}", describe(cell))),
            Err(e) => problems.push(format!("{id} / {profile}: {e}")),
        }
    }

    // Each switch alone flips at least one cell of the whole catalogue.
    let mut table = Vec::new();
    for defence in Defence::ALL {
        let report = {
            let _weakened = mutation::turn_off(&[defence]);
            run(&scenarios, None)
        };
        let flipped: Vec<String> = cells(&report)
            .into_iter()
            .filter(|(id, cell)| cell.verdict() != Verdict::Pass && base[id].verdict() == Verdict::Pass)
            .map(|((id, profile), cell)| format!("{id} / {profile} ({})", describe(cell)))
            .collect();
        if flipped.is_empty() {
            problems.push(format!("turning off {defence} alone flips no cell"));
        }
        table.push(format!(
            "{defence}: {} cells\n    {}",
            flipped.len(),
            flipped.join("\n    ")
        ));
    }

    println!("each defence alone off:\n{}", table.join("\n"));
    if !held.is_empty() {
        println!(
            "crediting cells still held by a check no switch reaches:\n    {}",
            held.join("\n    ")
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
