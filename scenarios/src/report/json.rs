//! The JSON report: the [`RunReport`] as is, pretty-printed, versioned by `schema_version`.
//!
//! Schema (version 1; fields are only ever added within a version):
//! - `schema_version` (integer), `run_id`, `started_at` (RFC 3339 UTC), `duration_ms`;
//! - `profiles` (last): `[{name, summary}]`, every profile's one-line description, weakest first (written for
//!   readers, not read back);
//! - `host`: `{hostname, kernel, uid, version}`;
//! - `backends`: `[{requested: backend name or null, used: backend name, reason}]`;
//! - `scenarios`: `[{id, title, attack, cells}]`, each cell `{profile, backend, started_ms, duration_ms,
//!   expected, status, ...}` where `expected` is the scenario's expectation (`outcome` and the optional
//!   `error`, `findings`, `device`, `why`) and `status` is one of:
//!   - `"observed"` with `observation: {outcome, grounds, evidence: {errors: [{kind, step, message}], findings:
//!     [{kind, path?, message}], devices: [{device, state, blocks_verified, corruptions, first_corrupted?}],
//!     effect?: {state: "took-effect" | "genuine" | "unobservable", detail, replay?: {missed: [{identity:
//!     "mount-id" | "device" | "loop-minor", at, wanted, got}]}}, timeline: [{at_ms, phase,
//!     action, ok, detail?}]}}` and `differences: [{kind: "outcome" | "error" | "finding" | "device",
//!     expected, observed}]` (empty when as expected). `outcome` is `blocked`, `detected`, `undetected` or
//!     `inconclusive` (never expected: it fails the run); `grounds` is the one line of evidence the outcome
//!     rests on; `effect` is what the attack saw from the container's side, when the pipeline got that far
//!     (`replay`: for an attack that replays mounts, each identity it did not get back, none for a perfect
//!     replay);
//!   - `"skipped"` with `reason`;
//!   - `"error"` with `message`.
//!
//! Names (profiles, backends, outcomes, evidence kinds, phases) are the kebab-case names scenario files use.

use crate::results::{RunReport, SCHEMA_VERSION};
use veritylab::profile::Profile;

/// Renders the report as pretty JSON with a trailing newline.
pub fn render(report: &RunReport) -> String {
    #[derive(serde::Serialize)]
    struct Described<'a> {
        #[serde(flatten)]
        report: &'a RunReport,
        profiles: Vec<ProfileDescription>,
    }
    #[derive(serde::Serialize)]
    struct ProfileDescription {
        name: Profile,
        summary: &'static str,
    }
    let described = Described {
        report,
        profiles: Profile::ALL
            .iter()
            .map(|&name| ProfileDescription {
                name,
                summary: name.summary(),
            })
            .collect(),
    };
    let mut out = serde_json::to_string_pretty(&described).expect("a RunReport always serialises");
    out.push('\n');
    out
}

/// A JSON report that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not valid JSON for this schema.
    #[error("not a veritylab run report: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by another schema version.
    #[error("run report schema version {found} is not {SCHEMA_VERSION}, the version this veritylab reads")]
    Version {
        /// The version in the file.
        found: u32,
    },
}

/// Reads a JSON report back, checking its schema version first.
pub fn parse(text: &str) -> Result<RunReport, ParseError> {
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let version: Version = serde_json::from_str(text)?;
    if version.schema_version != SCHEMA_VERSION {
        return Err(ParseError::Version {
            found: version.schema_version,
        });
    }
    Ok(serde_json::from_str(text)?)
}
