//! The terminal report: a header, the matrix (scenarios × profiles, each cell its observed outcome with ✓ or
//! ✗ against the expectation), a summary line, then every difference with its evidence.

use std::fmt::Write as _;

use super::{evidence_lines, rows, timeline_lines};
use crate::results::{CellResult, CellStatus, RunReport, Verdict};
use veritylab::profile::Profile;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Renders the report; `color` adds ANSI colours (green as expected, red differs, yellow skipped).
pub fn render(report: &RunReport, color: bool) -> String {
    let mut out = String::new();
    header(report, &mut out);
    matrix(report, color, &mut out);
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

/// The text of a cell and whether it is as expected.
fn cell_text(cell: Option<&CellResult>) -> (String, Option<Verdict>) {
    let Some(cell) = cell else {
        return ("·".to_owned(), None);
    };
    let verdict = cell.verdict();
    let text = match (&cell.status, verdict) {
        (CellStatus::Observed { observation, .. }, Verdict::Pass) => format!("{} ✓", observation.outcome),
        (CellStatus::Observed { observation, .. }, _) => format!("{} ✗", observation.outcome),
        (CellStatus::Skipped { .. }, _) => "skipped".to_owned(),
        (CellStatus::Error { .. }, _) => "error ✗".to_owned(),
    };
    (text, Some(verdict))
}

fn matrix(report: &RunReport, color: bool, out: &mut String) {
    let rows = rows(report);
    let show_backend = report.backends_used().len() > 1;
    let mut table: Vec<Vec<(String, Option<Verdict>)>> = Vec::with_capacity(rows.len() + 1);
    let mut head = vec![("scenario".to_owned(), None)];
    if show_backend {
        head.push(("backend".to_owned(), None));
    }
    head.extend(Profile::ALL.iter().map(|p| (p.to_string(), None)));
    table.push(head);
    for (scenario, backend) in rows {
        let mut row = vec![(scenario.id.clone(), None)];
        if show_backend {
            row.push((backend.to_string(), None));
        }
        for profile in Profile::ALL {
            row.push(cell_text(
                scenario
                    .cells
                    .iter()
                    .find(|c| c.profile == profile && c.backend == backend),
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
        for (i, (text, verdict)) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - text.chars().count());
            let paint = match verdict {
                _ if !color => None,
                Some(Verdict::Pass) => Some(GREEN),
                Some(Verdict::Fail | Verdict::Error) => Some(RED),
                Some(Verdict::Skipped) => Some(YELLOW),
                None if text == "·" => Some(DIM),
                None => None,
            };
            match paint {
                Some(code) => {
                    let _ = write!(line, "{code}{text}{RESET}{pad}");
                }
                None => {
                    let _ = write!(line, "{text}{pad}");
                }
            }
            if i + 1 < columns {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("\n✓ as expected   ✗ differs from the scenario's expectation   · profile not in the scenario\n");
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
