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

use super::results::{CellResult, CellStatus, RunReport, ScenarioResult, Verdict};
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

/// When the terminal report is coloured, as `--color` takes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// Coloured when stdout is a terminal and `NO_COLOR` is unset or empty, or when `CLICOLOR_FORCE` is set to
    /// something other than `0` and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always coloured, whatever stdout is and whatever the environment says.
    Always,
    /// Never coloured.
    Never,
}

impl ColorChoice {
    /// Every choice, as `--color` lists them.
    pub const ALL: [ColorChoice; 3] = [ColorChoice::Auto, ColorChoice::Always, ColorChoice::Never];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ColorChoice::Auto => "auto",
            ColorChoice::Always => "always",
            ColorChoice::Never => "never",
        }
    }

    /// Whether text written to stdout is coloured under this choice, with `NO_COLOR`, `CLICOLOR_FORCE` and
    /// whether stdout is a terminal as given.
    pub fn decide(self, no_color: Option<&str>, force: Option<&str>, terminal: bool) -> bool {
        let set = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto if set(no_color) => false,
            ColorChoice::Auto => terminal || (set(force) && force != Some("0")),
        }
    }

    /// Whether text written to this process's stdout is coloured under this choice.
    pub fn for_stdout(self) -> bool {
        let var = |name| std::env::var(name).ok();
        self.decide(
            var("NO_COLOR").as_deref(),
            var("CLICOLOR_FORCE").as_deref(),
            std::io::stdout().is_terminal(),
        )
    }
}

impl fmt::Display for ColorChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ColorChoice {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("colour choice", s, &ColorChoice::ALL, ColorChoice::name)
    }
}

/// Whether text written to stdout should be coloured without a `--color` flag ([`ColorChoice::Auto`]).
pub fn stdout_wants_color() -> bool {
    ColorChoice::Auto.for_stdout()
}

/// One sentence saying what the attacker of `attack` (a catalogue name) does, from the catalogue's summary;
/// `None` for a name the catalogue lacks (a report read back from another version).
pub fn attacker_sentence(attack: &str) -> Option<String> {
    let summary = attacks::find(attack)?.summary.trim().trim_end_matches('.');
    Some(format!("Attacker: {summary}."))
}

/// A cell whose verdict is not a pass (observed otherwise than expected, inconclusive, or a harness error),
/// as the reports list it above the matrix.
pub(crate) struct Mismatch<'a> {
    /// The scenario's id.
    pub(crate) scenario: &'a str,
    /// The cell.
    pub(crate) cell: &'a CellResult,
}

impl Mismatch<'_> {
    /// `scenario / profile / backend`.
    pub(crate) fn label(&self) -> String {
        format!("{} / {} / {}", self.scenario, self.cell.profile, self.cell.backend)
    }

    /// What was expected against what happened, e.g. `expected blocked, observed undetected`.
    pub(crate) fn summary(&self) -> String {
        let happened = match &self.cell.status {
            CellStatus::Observed { observation, .. } => format!("observed {}", observation.outcome),
            CellStatus::Error { message, .. } => format!("harness error: {message}"),
            CellStatus::Skipped { reason } => format!("skipped: {reason}"),
        };
        format!("expected {}, {happened}", self.cell.expected.outcome)
    }
}

/// Every cell that failed or errored, in run order.
pub(crate) fn mismatches(report: &RunReport) -> Vec<Mismatch<'_>> {
    report
        .scenarios
        .iter()
        .flat_map(|s| s.cells.iter().map(move |cell| Mismatch { scenario: &s.id, cell }))
        .filter(|m| matches!(m.cell.verdict(), Verdict::Fail | Verdict::Error))
        .collect()
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
                if let Some(replay) = &effect.replay {
                    lines.push(format!("the replay: {replay}"));
                }
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

    #[test]
    fn colour_follows_the_flag_then_no_color_then_the_terminal_or_clicolor_force() {
        use ColorChoice::{Always, Auto, Never};
        assert!(Always.decide(Some("1"), None, false));
        assert!(!Never.decide(None, Some("1"), true));
        assert!(Auto.decide(None, None, true));
        assert!(Auto.decide(Some(""), None, true), "an empty NO_COLOR is unset");
        assert!(!Auto.decide(Some("1"), None, true));
        assert!(
            !Auto.decide(Some("1"), Some("1"), true),
            "NO_COLOR wins over CLICOLOR_FORCE"
        );
        assert!(!Auto.decide(None, None, false));
        assert!(Auto.decide(None, Some("1"), false));
        assert!(!Auto.decide(None, Some("0"), false));
        for c in ColorChoice::ALL {
            assert_eq!(c.to_string().parse::<ColorChoice>(), Ok(c));
        }
    }

    #[test]
    fn the_attacker_sentence_comes_from_the_catalogue() {
        let sentence = attacker_sentence("overmount").unwrap();
        assert!(
            sentence.starts_with("Attacker: ") && sentence.ends_with('.'),
            "{sentence}"
        );
        assert_eq!(attacker_sentence("no-such-attack"), None);
    }
}
