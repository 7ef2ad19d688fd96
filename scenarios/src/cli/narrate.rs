//! `veritylab demo --attack NAME`: one attack told as a story.
//!
//! The scenario named NAME (or every embedded scenario staging the attack NAME) runs one profile at a time,
//! weakest first, so each part prints as soon as its cells finish: first what the attacker does (the
//! catalogue's summary and the scenario's description), then per profile its one-line description, the
//! timeline the runner recorded and what its defences saw (refusals, findings, device status, the attacker's
//! own look at the container), and the outcome against the expectation; a verdict line ends the story.

use std::fmt::Write as _;

use veritylab::cli::CliError;
use veritylab::out;

use super::CommandError;
use super::scenario::passed;
use crate::report::{self, ColorChoice, Format, attacker_sentence, evidence_lines, timeline_lines};
use crate::results::{RunReport, Verdict};
use crate::runner::{self, RunOptions};
use crate::{Scenario, load};

/// The embedded scenarios `name` means: the one with that id, else every one staging the attack of that name.
pub fn chosen(all: &[Scenario], name: &str) -> Result<Vec<Scenario>, CliError> {
    if let Some(one) = all.iter().find(|s| s.id == name) {
        return Ok(vec![one.clone()]);
    }
    let staging: Vec<Scenario> = all.iter().filter(|s| s.attack.name == name).cloned().collect();
    if staging.is_empty() {
        return Err(CliError::Usage(format!(
            "demo: no scenario or attack {name:?} (see `veritylab scenario list`)"
        )));
    }
    Ok(staging)
}

/// Narrates `name`'s scenarios on the best backend here; writes the HTML report of the cells to `html` when
/// given. `Ok` when every cell was as expected.
pub fn run(name: &str, color: ColorChoice, html: Option<&std::path::Path>) -> Result<(), CommandError> {
    let scenarios = chosen(&load::embedded()?, name)?;
    let color = color.for_stdout();
    let mut whole: Option<RunReport> = None;
    for scenario in &scenarios {
        out!("== {}: {} ==", scenario.id, scenario.title)?;
        if let Some(sentence) = attacker_sentence(&scenario.attack.name) {
            out!("{sentence}")?;
        }
        for line in scenario.description.trim().lines() {
            out!("  {}", line.trim())?;
        }
        let mut result = crate::results::ScenarioResult::new(scenario);
        for &profile in &scenario.profiles {
            let options = RunOptions {
                profile: Some(profile),
                ..RunOptions::default()
            };
            let mut report = runner::run(std::slice::from_ref(scenario), &options, &mut |_| {});
            let cells = report.scenarios.pop().map(|s| s.cells).unwrap_or_default();
            let whole = whole.get_or_insert_with(|| RunReport {
                scenarios: Vec::new(),
                ..report.clone()
            });
            whole.duration_ms += report.duration_ms;
            out!("")?;
            out!("-- {profile}: {} --", profile.summary())?;
            for cell in &cells {
                out!("{}", story(cell, color))?;
            }
            result.cells.extend(cells);
        }
        out!("")?;
        out!("{}", verdict_line(&result, color))?;
        out!("")?;
        if let Some(whole) = whole.as_mut() {
            whole.scenarios.push(result);
        }
    }
    let Some(whole) = whole else {
        return Ok(());
    };
    if let Some(choice) = whole.backends.first() {
        out!("backend {}: {}", choice.used, choice.reason)?;
    }
    if let Some(path) = html {
        report::write_atomic(path, &report::render(&whole, Format::Html, false))
            .map_err(|e| CliError::Usage(format!("demo: writing the HTML report: {e}")))?;
        out!("HTML report: {}", path.display())?;
    }
    passed(&whole)
}

/// One cell's part of the story: its timeline, what the defences saw, and its outcome against the expectation.
fn story(cell: &crate::results::CellResult, color: bool) -> String {
    let mut text = String::new();
    let steps = timeline_lines(cell);
    if !steps.is_empty() {
        let _ = writeln!(text, "   timeline ({} backend):", cell.backend);
        for step in steps {
            let _ = writeln!(text, "   {step}");
        }
    }
    text.push_str("   what the defences saw:\n");
    for line in evidence_lines(cell) {
        let _ = writeln!(text, "     {line}");
    }
    let (_, shown) = report::text::cell_text(Some(cell), color);
    let expectation = match cell.verdict() {
        Verdict::Pass => format!("as the scenario expects ({})", cell.expected.outcome),
        Verdict::Skipped => "not run".to_owned(),
        _ => format!("the scenario expects {}", cell.expected.outcome),
    };
    let _ = write!(text, "   => {shown}  {expectation}");
    text
}

/// `verdict: ID: profile outcome ✓, …: every cell as expected` (or how many differ).
fn verdict_line(result: &crate::results::ScenarioResult, color: bool) -> String {
    let cells: Vec<String> = result
        .cells
        .iter()
        .map(|c| format!("{} {}", c.profile, report::text::cell_text(Some(c), color).1))
        .collect();
    let differ = result
        .cells
        .iter()
        .filter(|c| matches!(c.verdict(), Verdict::Fail | Verdict::Error))
        .count();
    let end = match differ {
        0 => "every cell as expected".to_owned(),
        n => format!("{n} cell(s) differ from the expectation"),
    };
    format!("verdict: {}: {}: {end}", result.id, cells.join(", "))
}
