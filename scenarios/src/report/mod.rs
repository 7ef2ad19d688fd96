//! Renderings of a [`RunReport`]: the terminal matrix, JSON, JUnit XML and a self-contained HTML page.
//!
//! Every format shows the same facts: each cell's expected and observed outcome, its differences and its
//! evidence. Renderers are pure functions from the report to a string; the caller writes it (atomically
//! when it goes to a file).

pub mod html;
pub mod json;
pub mod junit;
pub mod text;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::str::FromStr;

use veritylab::profile::UnknownName;

use super::results::{CellResult, CellStatus, RunReport, ScenarioResult};
use crate::backend::RunnerBackend;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The terminal matrix (attacks × profiles) with the differences below it.
    Text,
    /// JSON with a `schema_version`.
    Json,
    /// JUnit XML: one testcase per scenario × profile × backend.
    Junit,
    /// One HTML file with inline CSS and JS: the matrix, each cell's evidence on click, the run timeline.
    Html,
}

impl Format {
    /// Every format, as `--report` lists them.
    pub const ALL: [Format; 4] = [Format::Text, Format::Json, Format::Junit, Format::Html];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Junit => "junit",
            Format::Html => "html",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("report format", s, &Format::ALL, Format::name)
    }
}

/// Renders `report` in `format`; `color` applies to the text format only.
pub fn render(report: &RunReport, format: Format, color: bool) -> String {
    match format {
        Format::Text => text::render(report, color),
        Format::Json => json::render(report),
        Format::Junit => junit::render(report),
        Format::Html => html::render(report),
    }
}

/// Writes a rendered report to `path` atomically: a temporary file in the same directory, renamed into place,
/// so a reader never sees half a report and a failed write leaves any previous report intact.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Whether text written to stdout should be coloured: stdout is a terminal and `NO_COLOR` is unset or empty.
pub fn stdout_wants_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The matrix's rows: one per scenario and backend its cells used, in run order then [`RunnerBackend::ALL`] order.
pub(crate) fn rows(report: &RunReport) -> Vec<(&ScenarioResult, RunnerBackend)> {
    let mut rows = Vec::new();
    for scenario in &report.scenarios {
        for backend in RunnerBackend::ALL {
            if scenario.cells.iter().any(|c| c.backend == backend) {
                rows.push((scenario, backend));
            }
        }
    }
    rows
}

/// One line per piece of evidence of a cell, for the text and JUnit reports.
pub(crate) fn evidence_lines(cell: &CellResult) -> Vec<String> {
    let mut lines = Vec::new();
    match &cell.status {
        CellStatus::Observed { observation, .. } => {
            let evidence = &observation.evidence;
            if !observation.grounds.is_empty() {
                lines.push(format!("{} because: {}", observation.outcome, observation.grounds));
            }
            if let Some(effect) = &evidence.effect {
                lines.push(format!("the attacker looked ({}): {}", effect.state, effect.detail));
            }
            for e in &evidence.errors {
                lines.push(format!("error {} at {}: {}", e.kind, e.step, e.message));
            }
            for f in &evidence.findings {
                match &f.path {
                    Some(path) => lines.push(format!("finding {} at /{path}: {}", f.kind, f.message)),
                    None => lines.push(format!("finding {}: {}", f.kind, f.message)),
                }
            }
            for d in &evidence.devices {
                let first = d
                    .first_corrupted
                    .as_deref()
                    .map(|b| format!(", first corrupted {b}"))
                    .unwrap_or_default();
                let fec = match (d.fec_corrected, d.fec_uncorrectable) {
                    (0, 0) => String::new(),
                    (corrected, uncorrectable) => {
                        format!(", {corrected} corrected from parity, {uncorrectable} beyond what the parity corrects")
                    }
                };
                lines.push(format!(
                    "device {}: {}, {} blocks verified, {} corruptions{fec}{first}",
                    d.device, d.state, d.blocks_verified, d.corruptions
                ));
            }
            if lines.is_empty() {
                lines.push("no errors, findings, device status or observation recorded".to_owned());
            }
        }
        CellStatus::Skipped { reason } => lines.push(format!("skipped: {reason}")),
        CellStatus::Error { message, .. } => lines.push(format!("harness error: {message}")),
    }
    lines
}

/// The cell's timeline, one line per step.
pub(crate) fn timeline_lines(cell: &CellResult) -> Vec<String> {
    let CellStatus::Observed { observation, .. } = &cell.status else {
        return Vec::new();
    };
    observation
        .evidence
        .timeline
        .iter()
        .map(|step| {
            let mark = if step.ok { "ok" } else { "failed" };
            let detail = step.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
            format!(
                "{:>8} ms  {:<10} {} ({mark}){detail}",
                step.at_ms,
                step.phase.to_string(),
                step.action
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_agree_across_display_fromstr_and_serde() {
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{f}\""));
        }
        assert!("xml".parse::<Format>().is_err());
    }
}
