//! The record of a scenario run: host, backends, and one result per (scenario, profile, backend) cell.
//!
//! A [`RunReport`] is plain data (serde both ways) so every report format renders the same facts, and a
//! JSON report can be read back. Its JSON form is versioned by [`SCHEMA_VERSION`].

use std::time::{SystemTime, UNIX_EPOCH};

use super::outcome::{Difference, Expectation, Observation, Outcome, compare};
use super::schema::Scenario;
use verity_fuse::ErrorClass;
use veritylab::profile::Profile;

use crate::backend::RunnerBackend;

/// The version of the report's JSON schema; raised on any change that is not a new optional field.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// [`SCHEMA_VERSION`] of the producer.
    pub schema_version: u32,
    /// Unique id of the run: UTC start time plus random hex, e.g. `20261123T172000Z-3f9a0c11`.
    pub run_id: String,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Wall time of the whole run.
    pub duration_ms: u64,
    /// Where it ran.
    pub host: HostInfo,
    /// The backends used, and why each was chosen.
    pub backends: Vec<BackendChoice>,
    /// One entry per scenario run, in run order.
    pub scenarios: Vec<ScenarioResult>,
}

/// The machine a run happened on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// User id the run had.
    pub uid: u32,
    /// veritylab's version.
    pub version: String,
}

/// A backend the run used, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendChoice {
    /// What the user asked for (`None`: the best available).
    pub requested: Option<RunnerBackend>,
    /// What was used.
    pub used: RunnerBackend,
    /// Why, e.g. "kernel: not root, using emulated".
    pub reason: String,
}

/// The cells of one scenario.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScenarioResult {
    /// Scenario id.
    pub id: String,
    /// Scenario title.
    pub title: String,
    /// Attack name.
    pub attack: String,
    /// One per (profile, backend) run.
    pub cells: Vec<CellResult>,
}

/// One (scenario, profile, backend) cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CellResult {
    /// The profile.
    pub profile: Profile,
    /// The backend actually used.
    pub backend: RunnerBackend,
    /// When the cell started, in milliseconds since the run started.
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// What the scenario expected.
    pub expected: Expectation,
    /// What happened (flattened: `status` names the variant, its fields sit beside it).
    #[serde(flatten)]
    pub status: CellStatus,
}

/// What happened in a cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum CellStatus {
    /// The attack ran; `differences` is empty when the observation matched the expectation.
    Observed {
        /// What was observed.
        observation: Observation,
        /// How it differs from the expectation.
        differences: Vec<Difference>,
    },
    /// Not run, e.g. the backend is unavailable here.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The harness failed (staging the attack, cleanup, or the leak check found leftovers).
    Error {
        /// What kind of failure it was.
        class: ErrorClass,
        /// What failed.
        message: String,
    },
}

/// A cell's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Observed as expected.
    Pass,
    /// Observed differently from expected.
    Fail,
    /// Not run.
    Skipped,
    /// The harness failed.
    Error,
}

impl CellResult {
    /// A cell whose attack ran; the differences are computed here.
    pub fn observed(
        profile: Profile,
        backend: RunnerBackend,
        expected: Expectation,
        observation: Observation,
        started_ms: u64,
        duration_ms: u64,
    ) -> Self {
        let differences = compare(&expected, &observation);
        let status = CellStatus::Observed {
            observation,
            differences,
        };
        CellResult {
            profile,
            backend,
            started_ms,
            duration_ms,
            expected,
            status,
        }
    }

    /// A cell that was not run.
    pub fn skipped(profile: Profile, backend: RunnerBackend, expected: Expectation, reason: impl Into<String>) -> Self {
        let status = CellStatus::Skipped { reason: reason.into() };
        CellResult {
            profile,
            backend,
            started_ms: 0,
            duration_ms: 0,
            expected,
            status,
        }
    }

    /// A cell whose harness failed.
    pub fn error(
        profile: Profile,
        backend: RunnerBackend,
        expected: Expectation,
        class: ErrorClass,
        message: impl Into<String>,
        started_ms: u64,
        duration_ms: u64,
    ) -> Self {
        let status = CellStatus::Error {
            class,
            message: message.into(),
        };
        CellResult {
            profile,
            backend,
            started_ms,
            duration_ms,
            expected,
            status,
        }
    }

    /// Pass, fail, skipped or error. An `inconclusive` cell always fails: no expectation can accept it.
    pub fn verdict(&self) -> Verdict {
        match &self.status {
            CellStatus::Observed { observation, .. } if observation.outcome == Outcome::Inconclusive => Verdict::Fail,
            CellStatus::Observed { differences, .. } if differences.is_empty() => Verdict::Pass,
            CellStatus::Observed { .. } => Verdict::Fail,
            CellStatus::Skipped { .. } => Verdict::Skipped,
            CellStatus::Error { .. } => Verdict::Error,
        }
    }

    /// The observed outcome, when the attack ran.
    pub fn observed_outcome(&self) -> Option<Outcome> {
        match &self.status {
            CellStatus::Observed { observation, .. } => Some(observation.outcome),
            _ => None,
        }
    }
}

impl ScenarioResult {
    /// An empty result for a scenario, to which the runner adds cells.
    pub fn new(scenario: &Scenario) -> Self {
        ScenarioResult {
            id: scenario.id.clone(),
            title: scenario.title.clone(),
            attack: scenario.attack.name.clone(),
            cells: Vec::new(),
        }
    }
}

/// Counts of cells by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Scenarios.
    pub scenarios: usize,
    /// Cells.
    pub cells: usize,
    /// Cells as expected.
    pub passed: usize,
    /// Cells that differ.
    pub failed: usize,
    /// Cells whose harness failed.
    pub errors: usize,
    /// Cells not run.
    pub skipped: usize,
}

impl RunReport {
    /// A report with no scenarios yet, started now with a fresh run id.
    pub fn new(host: HostInfo, backends: Vec<BackendChoice>) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = now.as_secs();
        RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: format!("{}-{:08x}", compact_utc(secs), random_u32()),
            started_at: veritylab::utc::rfc3339(secs),
            duration_ms: 0,
            host,
            backends,
            scenarios: Vec::new(),
        }
    }

    /// Counts of cells by verdict.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            scenarios: self.scenarios.len(),
            ..Summary::default()
        };
        for cell in self.scenarios.iter().flat_map(|r| &r.cells) {
            s.cells += 1;
            match cell.verdict() {
                Verdict::Pass => s.passed += 1,
                Verdict::Fail => s.failed += 1,
                Verdict::Skipped => s.skipped += 1,
                Verdict::Error => s.errors += 1,
            }
        }
        s
    }

    /// Whether the run passes: no cell differs from its expectation and no harness failed. Skipped cells do
    /// not fail a run (the backend choice in the report says why they were skipped).
    pub fn passed(&self) -> bool {
        let s = self.summary();
        s.failed == 0 && s.errors == 0
    }

    /// The backends any cell used, in [`RunnerBackend::ALL`] order.
    pub fn backends_used(&self) -> Vec<RunnerBackend> {
        let mut used: Vec<RunnerBackend> = self
            .scenarios
            .iter()
            .flat_map(|s| &s.cells)
            .map(|c| c.backend)
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }
}

impl HostInfo {
    /// This machine, now.
    pub fn probe() -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        HostInfo {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            uid: rustix::process::getuid().as_raw(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// 32 random bits from the standard library's per-process random hash keys and the clock.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() & 0xffff_ffff) as u32
}

/// Seconds since the epoch as a compact UTC stamp for run ids, e.g. `20261123T172000Z` (the lab's RFC 3339
/// formatter without separators).
fn compact_utc(secs: u64) -> String {
    veritylab::utc::rfc3339(secs).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(compact_utc(1_795_454_400), "20261123T172000Z");
    }

    #[test]
    fn an_inconclusive_cell_fails_the_run_whatever_it_expected() {
        use crate::outcome::{Evidence, Expectation, Observation};
        let expected = Expectation {
            outcome: Outcome::Inconclusive,
            error: None,
            findings: Vec::new(),
            device: None,
            why: None,
        };
        let observation = Observation {
            outcome: Outcome::Inconclusive,
            grounds: "nothing the container shows can tell".to_owned(),
            evidence: Evidence::default(),
        };
        let cell = CellResult::observed(Profile::Hardened, RunnerBackend::Emulated, expected, observation, 0, 0);
        assert_eq!(cell.verdict(), Verdict::Fail);
        let mut report = RunReport::new(HostInfo::probe(), Vec::new());
        report.scenarios.push(ScenarioResult {
            id: "s".to_owned(),
            title: "s".to_owned(),
            attack: "a".to_owned(),
            cells: vec![cell],
        });
        assert!(!report.passed());
    }

    #[test]
    fn run_ids_are_time_based_and_distinct() {
        let host = HostInfo::probe();
        let a = RunReport::new(host.clone(), Vec::new());
        let b = RunReport::new(host, Vec::new());
        assert_eq!(a.run_id.len(), "20261123T172000Z-3f9a0c11".len());
        assert_ne!(a.run_id, b.run_id);
        assert!(a.passed());
    }
}
