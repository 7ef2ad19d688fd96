//! The JUnit XML report, for CI systems: one `<testsuite>` per scenario, one `<testcase>` per profile and
//! backend. A cell that differs is a `<failure>` whose message is the first difference and whose body is the
//! full diff with the evidence; a harness failure is an `<error>`; a skipped cell is `<skipped>`. The timeline
//! goes to `<system-out>`; each suite's properties give the one-line description of each profile it ran.
//! Text is escaped for XML 1.0, and characters XML cannot carry become U+FFFD.

use std::fmt::Write as _;

use super::{evidence_lines, timeline_lines};
use crate::results::{CellStatus, RunReport, Verdict};
use veritylab::profile::Profile;

/// Escapes text for XML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Renders the report as JUnit XML.
pub fn render(report: &RunReport) -> String {
    let s = report.summary();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"veritylab scenarios {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" \
         time=\"{}\">",
        escape(&report.run_id),
        s.cells,
        s.failed,
        s.errors,
        s.skipped,
        seconds(report.duration_ms)
    );
    for scenario in &report.scenarios {
        let count = |v: Verdict| scenario.cells.iter().filter(|c| c.verdict() == v).count();
        let time: u64 = scenario.cells.iter().map(|c| c.duration_ms).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" \
             timestamp=\"{}\" hostname=\"{}\">",
            escape(&scenario.id),
            scenario.cells.len(),
            count(Verdict::Fail),
            count(Verdict::Error),
            count(Verdict::Skipped),
            seconds(time),
            escape(report.started_at.trim_end_matches('Z')),
            escape(&report.host.hostname),
        );
        let _ = writeln!(out, "    <properties>");
        let _ = writeln!(
            out,
            "      <property name=\"run_id\" value=\"{}\"/>",
            escape(&report.run_id)
        );
        let _ = writeln!(
            out,
            "      <property name=\"title\" value=\"{}\"/>",
            escape(&scenario.title)
        );
        let _ = writeln!(
            out,
            "      <property name=\"attack\" value=\"{}\"/>",
            escape(&scenario.attack)
        );
        for choice in &report.backends {
            let _ = writeln!(
                out,
                "      <property name=\"backend.{}\" value=\"{}\"/>",
                choice.used,
                escape(&choice.reason)
            );
        }
        let mut profiles: Vec<Profile> = scenario.cells.iter().map(|c| c.profile).collect();
        profiles.sort_unstable();
        profiles.dedup();
        for profile in profiles {
            let _ = writeln!(
                out,
                "      <property name=\"profile.{profile}\" value=\"{}\"/>",
                escape(profile.summary())
            );
        }
        let _ = writeln!(out, "    </properties>");
        for cell in &scenario.cells {
            let _ = write!(
                out,
                "    <testcase classname=\"veritylab.{}\" name=\"{} [{}]\" time=\"{}\"",
                escape(&scenario.id),
                cell.profile,
                cell.backend,
                seconds(cell.duration_ms)
            );
            let evidence = evidence_lines(cell).join("\n");
            let timeline = timeline_lines(cell).join("\n");
            let mut body = String::new();
            match (&cell.status, cell.verdict()) {
                (CellStatus::Observed { differences, .. }, Verdict::Fail) => {
                    let message = differences.first().map(ToString::to_string).unwrap_or_default();
                    let diff: Vec<String> = differences.iter().map(ToString::to_string).collect();
                    let mut text = format!(
                        "expected {}\n{}\n\nevidence:\n{evidence}",
                        cell.expected.outcome,
                        diff.join("\n")
                    );
                    if let Some(why) = &cell.expected.why {
                        let _ = write!(text, "\n\nwhy expected: {why}");
                    }
                    let _ = writeln!(
                        body,
                        "      <failure message=\"{}\" type=\"outcome-mismatch\">{}</failure>",
                        escape(&message),
                        escape(&text)
                    );
                }
                (CellStatus::Skipped { reason }, _) => {
                    let _ = writeln!(body, "      <skipped message=\"{}\"/>", escape(reason));
                }
                (CellStatus::Error { message, .. }, _) => {
                    let _ = writeln!(
                        body,
                        "      <error message=\"{}\" type=\"harness\">{}</error>",
                        escape(message),
                        escape(message)
                    );
                }
                _ => {}
            }
            if matches!(cell.status, CellStatus::Observed { .. }) {
                let _ = writeln!(
                    body,
                    "      <system-out>{}</system-out>",
                    escape(&format!("evidence:\n{evidence}\n\ntimeline:\n{timeline}"))
                );
            }
            if body.is_empty() {
                out.push_str("/>\n");
            } else {
                out.push_str(">\n");
                out.push_str(&body);
                out.push_str("    </testcase>\n");
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
