//! The terminal report: a header, the cells that differ from their expectation (listed above the matrix so
//! none is missed), the matrix (scenarios × profiles, each cell its observed outcome with ✓ or ✗ against the
//! expectation), the legend with each profile's one-line description, a summary line, then every difference
//! with its evidence.
//!
//! With colour, a cell's outcome carries the colour of how the defence fared (red `undetected`, amber
//! `detected`, green `blocked`), independent of the expectation; a cell that differs from its expectation
//! gets its own mark, a white ✗ on magenta, and the same mark leads its line in the list above the matrix.

use std::fmt::Write as _;

use super::{Mismatch, evidence_lines, mismatches, rows, timeline_lines};
use crate::outcome::Outcome;
use crate::results::{CellResult, CellStatus, RunReport, Verdict};
use veritylab::profile::Profile;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[1;31m";
const AMBER: &str = "\x1b[33m";
const GREY: &str = "\x1b[90m";
const MISMATCH: &str = "\x1b[1;97;45m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The colour of an outcome: how the defence fared.
fn outcome_colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Blocked => GREEN,
        Outcome::Detected => AMBER,
        Outcome::Undetected => RED,
        Outcome::Inconclusive => GREY,
    }
}

/// `text` in `code` when colouring, else as is.
fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

/// Renders the report; `color` adds ANSI colours (the outcome's colour on each cell, a magenta mark on each
/// cell that differs from its expectation).
pub fn render(report: &RunReport, color: bool) -> String {
    let mut out = String::new();
    header(report, &mut out);
    mismatch_list(&mismatches(report), color, &mut out);
    matrix(report, color, &mut out);
    legend(color, &mut out);
    let s = report.summary();
    let _ = writeln!(
        out,
        "\n{} scenarios, {} cells: {} as expected, {} differ, {} errors, {} skipped: {}",
        s.scenarios,
        s.cells,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        if report.passed() { "PASS" } else { "FAIL" }
    );
    details(report, &mut out);
    out
}

/// The cells that differ from their expectation, one line each, above the matrix.
fn mismatch_list(mismatches: &[Mismatch<'_>], color: bool, out: &mut String) {
    if mismatches.is_empty() {
        return;
    }
    let _ = writeln!(out, "{} cell(s) differ from their expectation:", mismatches.len());
    for m in mismatches {
        let _ = writeln!(out, "  {} {}: {}", paint(color, MISMATCH, "✗"), m.label(), m.summary());
    }
    out.push('\n');
}

fn legend(color: bool, out: &mut String) {
    let _ = writeln!(
        out,
        "\n{} the change never reached the container   {} it reached it and was reported   {} it took effect unnoticed",
        paint(color, GREEN, "blocked"),
        paint(color, AMBER, "detected"),
        paint(color, RED, "undetected"),
    );
    let _ = writeln!(
        out,
        "✓ as expected   {} differs from the scenario's expectation (listed above)   · profile not in the scenario",
        paint(color, MISMATCH, "✗"),
    );
    out.push_str("\nProfiles, weakest first:\n");
    let width = Profile::ALL.iter().map(|p| p.name().len()).max().unwrap_or(0);
    for profile in Profile::ALL {
        let _ = writeln!(out, "  {:<width$}  {}", profile.name(), profile.summary());
    }
}

fn header(report: &RunReport, out: &mut String) {
    let h = &report.host;
    let _ = writeln!(
        out,
        "veritylab scenario run {} (started {}, took {}.{:03} s)",
        report.run_id,
        report.started_at,
        report.duration_ms / 1000,
        report.duration_ms % 1000
    );
    let _ = writeln!(
        out,
        "host {} (kernel {}), uid {}, veritylab {}",
        h.hostname, h.kernel, h.uid, h.version
    );
    for choice in &report.backends {
        let asked = choice
            .requested
            .map_or_else(|| "best available".to_owned(), |b| b.to_string());
        let _ = writeln!(out, "backend {} (asked: {asked}): {}", choice.used, choice.reason);
    }
    out.push('\n');
}

/// A cell as the matrix shows it: its plain text, and the same with colour when `color`.
pub(crate) fn cell_text(cell: Option<&CellResult>, color: bool) -> (String, String) {
    let Some(cell) = cell else {
        return ("·".to_owned(), paint(color, DIM, "·"));
    };
    let pass = cell.verdict() == Verdict::Pass;
    let mark = if pass { "✓" } else { "✗" };
    let painted_mark = if pass {
        mark.to_owned()
    } else {
        paint(color, MISMATCH, mark)
    };
    match &cell.status {
        CellStatus::Observed { observation, .. } => {
            let outcome = observation.outcome;
            (
                format!("{outcome} {mark}"),
                format!(
                    "{} {painted_mark}",
                    paint(color, outcome_colour(outcome), outcome.name())
                ),
            )
        }
        CellStatus::Skipped { .. } => ("skipped".to_owned(), paint(color, DIM, "skipped")),
        CellStatus::Error { .. } => (format!("error {mark}"), format!("error {painted_mark}")),
    }
}

fn matrix(report: &RunReport, color: bool, out: &mut String) {
    let rows = rows(report);
    let show_backend = report.backends_used().len() > 1;
    let plain = |text: String| (text.clone(), text);
    let mut table: Vec<Vec<(String, String)>> = Vec::with_capacity(rows.len() + 1);
    let mut head = vec![plain("scenario".to_owned())];
    if show_backend {
        head.push(plain("backend".to_owned()));
    }
    head.extend(Profile::ALL.iter().map(|p| plain(p.to_string())));
    table.push(head);
    for (scenario, backend) in rows {
        let mut row = vec![plain(scenario.id.clone())];
        if show_backend {
            row.push(plain(backend.to_string()));
        }
        for profile in Profile::ALL {
            row.push(cell_text(
                scenario
                    .cells
                    .iter()
                    .find(|c| c.profile == profile && c.backend == backend),
                color,
            ));
        }
        table.push(row);
    }
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| table.iter().map(|row| row[i].0.chars().count()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let mut line = String::new();
        for (i, (text, shown)) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - text.chars().count());
            let _ = write!(line, "{shown}{pad}");
            if i + 1 < columns {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn details(report: &RunReport, out: &mut String) {
    let mut skipped: Vec<(String, Vec<String>)> = Vec::new();
    let mut first = true;
    for scenario in &report.scenarios {
        for cell in &scenario.cells {
            let label = format!("{} / {} / {}", scenario.id, cell.profile, cell.backend);
            match (&cell.status, cell.verdict()) {
                (CellStatus::Skipped { reason }, _) => match skipped.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, cells)) => cells.push(label),
                    None => skipped.push((reason.clone(), vec![label])),
                },
                (_, Verdict::Pass) => {}
                (status, _) => {
                    if first {
                        out.push_str("\nDifferences:\n");
                        first = false;
                    }
                    let _ = writeln!(out, "\n  {label}: expected {}", cell.expected.outcome);
                    if let CellStatus::Observed { differences, .. } = status {
                        for difference in differences {
                            let _ = writeln!(out, "    {difference}");
                        }
                    }
                    if let Some(why) = &cell.expected.why {
                        let _ = writeln!(out, "    why expected: {why}");
                    }
                    for line in evidence_lines(cell) {
                        let _ = writeln!(out, "    evidence: {line}");
                    }
                    let steps = timeline_lines(cell);
                    if !steps.is_empty() {
                        out.push_str("    timeline:\n");
                    }
                    for line in steps {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
        }
    }
    if !skipped.is_empty() {
        out.push_str("\nSkipped:\n");
        for (reason, cells) in skipped {
            let _ = writeln!(out, "  {} cells: {reason}", cells.len());
        }
    }
}
