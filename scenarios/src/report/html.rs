//! The HTML report for demos: one self-contained file (inline CSS and JS, no external resources) with the
//! run header, the cells that differ from their expectation (listed above the matrix, each a link to its
//! evidence), the matrix (click or press Enter on a cell to see its evidence, or open `#cell-N`), its legend,
//! each profile's one-line description, and the run timeline. A cell's background is its outcome's colour
//! (red `undetected`, amber `detected`, green `blocked`: how the defence fared), its ✓ or ✗ says whether that
//! was expected, and a cell that differs from its expectation has a magenta frame of its own. Each row's
//! header says in one sentence what the attacker did. Everything is rendered here, so the page reads without scripts too; the script only moves a
//! cell's evidence into the detail panel, marks `<body data-ready="1">` once it ran, and shows any script
//! error in a banner (`id="script-error"`), so a headless browser test can tell both apart.

use std::fmt::Write as _;

use super::junit::escape;
use super::{attacker_sentence, evidence_lines, mismatches, rows, timeline_lines};
use crate::outcome::Outcome;
use crate::results::{CellResult, CellStatus, RunReport, Verdict};
use veritylab::profile::Profile;

const STYLE: &str = r#"
:root { font-family: system-ui, sans-serif; color: #1b1f24; background: #f6f7f9; }
body { margin: 2rem; }
h1 { font-size: 1.4rem; margin: 0 0 .4rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .6rem; }
.meta { color: #4a5360; margin: .15rem 0; }
.verdict { display: inline-block; padding: .15rem .6rem; border-radius: .3rem; font-weight: 600; color: #fff; }
.verdict.pass { background: #1f883d; } .verdict.fail { background: #8250df; }
#matrix { border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.15); }
#matrix th, #matrix td { border: 1px solid #d0d7de; padding: .35rem .7rem; text-align: left; white-space: nowrap; }
#matrix thead th { background: #eaeef2; white-space: normal; max-width: 9rem; vertical-align: bottom; }
#matrix tbody th { font-weight: 600; }
#matrix tbody th .attacker { display: block; font-weight: 400; font-size: .8rem; color: #4a5360; white-space: normal; max-width: 26rem; }
#matrix td.cell { cursor: pointer; font-weight: 600; }
#matrix td.blocked { background: #1f883d; color: #fff; }
#matrix td.detected { background: #f0b400; color: #1b1f24; }
#matrix td.undetected { background: #cf222e; color: #fff; }
#matrix td.inconclusive { background: #6e7781; color: #fff; }
#matrix td.skipped { background: #f6f8fa; color: #8c959f; font-weight: 400; }
#matrix td.error { background: #fff; color: #8250df; }
#matrix td.mismatch { box-shadow: inset 0 0 0 5px #8250df; }
#matrix td.mismatch .mark { background: #8250df; color: #fff; padding: 0 .3rem; border-radius: .2rem; }
#matrix td.none { color: #8c959f; text-align: center; }
#matrix td.selected { outline: 3px solid #0969da; outline-offset: 2px; }
#mismatches { background: #fbefff; border: 3px solid #8250df; padding: .4rem 1rem; margin: 1rem 0; }
#mismatches h2 { margin: .2rem 0 .4rem; color: #8250df; }
#mismatches a { color: #1b1f24; }
.legend { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; margin: .6rem 0; font-size: .9rem; }
.legend .swatch { display: inline-block; padding: 0 .5rem; border-radius: .2rem; font-weight: 600; }
.swatch.blocked { background: #1f883d; color: #fff; } .swatch.detected { background: #f0b400; color: #1b1f24; }
.swatch.undetected { background: #cf222e; color: #fff; } .swatch.inconclusive { background: #6e7781; color: #fff; }
.swatch.mismatch { background: #fff; color: #8250df; box-shadow: inset 0 0 0 3px #8250df; }
#profiles { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .4rem 0 1rem; }
#profiles dt { font-weight: 600; font-family: monospace; } #profiles dd { margin: 0; color: #4a5360; }
#detail { margin-top: 1rem; background: #fff; border: 1px solid #d0d7de; padding: .8rem 1rem; min-height: 3rem; }
#detail h3 { margin: 0 0 .5rem; font-size: 1rem; }
.evidence ul { margin: .3rem 0 .6rem 1.2rem; padding: 0; }
.evidence pre { background: #f6f8fa; padding: .5rem; overflow-x: auto; margin: .3rem 0; }
.hint { color: #57606a; margin: 0; }
#timeline { background: #fff; border: 1px solid #d0d7de; padding: .6rem 1rem; }
.lane { display: flex; align-items: center; gap: .8rem; margin: .15rem 0; font-size: .85rem; }
.lane .label { width: 22rem; flex: none; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { position: relative; flex: 1; height: .8rem; background: #eaeef2; border-radius: .2rem; }
.bar { position: absolute; top: 0; bottom: 0; border-radius: .2rem; min-width: 3px; }
.bar.pass { background: #2da44e; } .bar.fail, .bar.error { background: #cf222e; } .bar.skipped { background: #d4a72c; }
#script-error { background: #cf222e; color: #fff; padding: .6rem 1rem; margin-bottom: 1rem; font-weight: 600; }
#cells[hidden] { display: none; }
"#;

const SCRIPT: &str = r#"
(function () {
  'use strict';
  function fail(message) {
    var banner = document.getElementById('script-error');
    if (!banner) {
      banner = document.createElement('div');
      banner.id = 'script-error';
      document.body.insertBefore(banner, document.body.firstChild);
    }
    banner.textContent = 'Script error: ' + message;
  }
  window.addEventListener('error', function (event) { fail(event.message); });
  var detail = document.getElementById('detail');
  function show(id) {
    var source = document.getElementById(id);
    if (!source || !source.classList.contains('evidence')) { return; }
    var copy = source.cloneNode(true);
    copy.removeAttribute('id');
    copy.setAttribute('data-shows', id);
    detail.replaceChildren(copy);
    document.querySelectorAll('#matrix td.selected').forEach(function (td) { td.classList.remove('selected'); });
    var cell = document.querySelector('#matrix td[data-cell="' + id + '"]');
    if (cell) { cell.classList.add('selected'); }
  }
  document.querySelectorAll('#matrix td[data-cell]').forEach(function (td) {
    td.addEventListener('click', function () {
      show(td.getAttribute('data-cell'));
      history.replaceState(null, '', '#' + td.getAttribute('data-cell'));
    });
    td.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); td.click(); }
    });
  });
  function fromHash() {
    if (location.hash.length > 1) { show(decodeURIComponent(location.hash.slice(1))); }
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
  document.body.setAttribute('data-ready', '1');
})();
"#;

fn class(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Skipped => "skipped",
        Verdict::Error => "error",
    }
}

/// The cell's classes: its outcome (the colour), its verdict, and `mismatch` when it is not as expected.
fn cell_classes(cell: &CellResult) -> String {
    let verdict = cell.verdict();
    let outcome = match &cell.status {
        CellStatus::Observed { observation, .. } => observation.outcome.name(),
        CellStatus::Skipped { .. } => "skipped",
        CellStatus::Error { .. } => "error",
    };
    let mut classes = format!("cell {outcome} {}", class(verdict));
    if matches!(verdict, Verdict::Fail | Verdict::Error) {
        classes.push_str(" mismatch");
    }
    classes
}

fn cell_label(cell: &CellResult) -> String {
    let mark = match cell.verdict() {
        Verdict::Pass => "<span class=\"mark\">✓</span>",
        _ => "<span class=\"mark\">✗</span>",
    };
    match &cell.status {
        CellStatus::Observed { observation, .. } => format!("{} {mark}", observation.outcome),
        CellStatus::Skipped { .. } => "skipped".to_owned(),
        CellStatus::Error { .. } => format!("error {mark}"),
    }
}

fn cell_text(cell: &CellResult) -> String {
    match (&cell.status, cell.verdict()) {
        (CellStatus::Observed { observation, .. }, Verdict::Pass) => format!("{} ✓", observation.outcome),
        (CellStatus::Observed { observation, .. }, _) => format!("{} ✗", observation.outcome),
        (CellStatus::Skipped { .. }, _) => "skipped".to_owned(),
        (CellStatus::Error { .. }, _) => "error ✗".to_owned(),
    }
}

/// Renders the report as one HTML page.
pub fn render(report: &RunReport) -> String {
    let mut cells: Vec<(String, &str, &CellResult)> = Vec::new();
    for scenario in &report.scenarios {
        for cell in &scenario.cells {
            cells.push((format!("cell-{}", cells.len()), scenario.id.as_str(), cell));
        }
    }
    let id_of = |target: &CellResult| {
        cells
            .iter()
            .find(|(_, _, c)| std::ptr::eq(*c, target))
            .map(|(id, _, _)| id.clone())
            .unwrap_or_default()
    };
    let s = report.summary();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>veritylab run {}</title>\n<style>{STYLE}</style>\n\
         <noscript><style>#cells[hidden] {{ display: block; }}</style></noscript>\n</head>\n<body>\n",
        escape(&report.run_id)
    );
    let verdict = if report.passed() {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    let _ = writeln!(
        out,
        "<header>\n<h1>veritylab scenario run <code>{}</code> <span class=\"verdict {}\">{}</span></h1>",
        escape(&report.run_id),
        verdict.0,
        verdict.1
    );
    let h = &report.host;
    let _ = writeln!(
        out,
        "<p class=\"meta\">started {} · took {}.{:03} s · host {} (kernel {}) · uid {} · veritylab {}</p>",
        escape(&report.started_at),
        report.duration_ms / 1000,
        report.duration_ms % 1000,
        escape(&h.hostname),
        escape(&h.kernel),
        h.uid,
        escape(&h.version)
    );
    for choice in &report.backends {
        let asked = choice
            .requested
            .map_or_else(|| "best available".to_owned(), |b| b.to_string());
        let _ = writeln!(
            out,
            "<p class=\"meta\">backend <strong>{}</strong> (asked: {}): {}</p>",
            choice.used,
            escape(&asked),
            escape(&choice.reason)
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} scenarios, {} cells: {} as expected, {} differ, {} errors, {} skipped</p>\n</header>",
        s.scenarios, s.cells, s.passed, s.failed, s.errors, s.skipped
    );

    out.push_str("<main>\n");
    let differing = mismatches(report);
    if !differing.is_empty() {
        let _ = writeln!(
            out,
            "<section id=\"mismatches\">\n<h2>✗ {} cell(s) differ from their expectation</h2>\n<ul>",
            differing.len()
        );
        for m in &differing {
            let _ = writeln!(
                out,
                "<li><a href=\"#{}\">{}</a>: {}</li>",
                id_of(m.cell),
                escape(&m.label()),
                escape(&m.summary())
            );
        }
        out.push_str("</ul>\n</section>\n");
    }
    let show_backend = report.backends_used().len() > 1;
    out.push_str("<h2>Attacks × profiles</h2>\n<table id=\"matrix\">\n<thead><tr><th>scenario</th>");
    if show_backend {
        out.push_str("<th>backend</th>");
    }
    for profile in Profile::ALL {
        let _ = write!(out, "<th title=\"{}\">{profile}</th>", escape(profile.summary()));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (scenario, backend) in rows(report) {
        let attacker = attacker_sentence(&scenario.attack)
            .map(|a| format!("<span class=\"attacker\">{}</span>", escape(&a)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><th scope=\"row\" title=\"{}\">{}{attacker}</th>",
            escape(&scenario.title),
            escape(&scenario.id)
        );
        if show_backend {
            let _ = write!(out, "<td>{backend}</td>");
        }
        for profile in Profile::ALL {
            match scenario
                .cells
                .iter()
                .find(|c| c.profile == profile && c.backend == backend)
            {
                Some(cell) => {
                    let _ = write!(
                        out,
                        "<td class=\"{}\" data-cell=\"{}\" tabindex=\"0\" role=\"button\" \
                         title=\"expected {}\">{}</td>",
                        cell_classes(cell),
                        id_of(cell),
                        cell.expected.outcome,
                        cell_label(cell)
                    );
                }
                None => out.push_str("<td class=\"none\">·</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    legend(&mut out);
    out.push_str(
        "<section id=\"detail\" aria-live=\"polite\"><p class=\"hint\">Click a cell to see its evidence.</p>\
         </section>\n",
    );

    timeline(report, &cells, &mut out);

    out.push_str("<div id=\"cells\" hidden>\n");
    for (id, scenario, cell) in &cells {
        evidence_section(id, scenario, cell, &mut out);
    }
    let _ = write!(out, "</div>\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n");
    out
}

/// The legend of colours and marks, then each profile's one-line description.
fn legend(out: &mut String) {
    out.push_str("<div class=\"legend\" id=\"legend\">\n");
    for (outcome, meaning) in [
        (Outcome::Blocked, "the change never reached the container"),
        (
            Outcome::Detected,
            "it reached the node or the container, and was reported",
        ),
        (Outcome::Undetected, "it took effect and nothing noticed"),
        (Outcome::Inconclusive, "its effect could not be seen"),
    ] {
        let _ = writeln!(
            out,
            "<span><span class=\"swatch {outcome}\">{outcome}</span> {meaning}</span>"
        );
    }
    out.push_str(
        "<span>✓ as expected</span>\n<span><span class=\"swatch mismatch\">✗</span> differs from the \
         scenario's expectation (listed above the matrix)</span>\n<span>· profile not in the scenario</span>\n</div>\n",
    );
    out.push_str("<h2>Profiles, weakest first</h2>\n<dl id=\"profiles\">\n");
    for profile in Profile::ALL {
        let _ = writeln!(out, "<dt>{profile}</dt><dd>{}</dd>", escape(profile.summary()));
    }
    out.push_str("</dl>\n");
}

fn timeline(report: &RunReport, cells: &[(String, &str, &CellResult)], out: &mut String) {
    let end = cells
        .iter()
        .map(|(_, _, c)| c.started_ms + c.duration_ms)
        .max()
        .unwrap_or(0)
        .max(report.duration_ms);
    out.push_str("<h2>Run timeline</h2>\n<div id=\"timeline\">\n");
    for (id, scenario, cell) in cells {
        if matches!(cell.status, CellStatus::Skipped { .. }) {
            continue;
        }
        let pct = |ms: u64| if end == 0 { 0.0 } else { ms as f64 * 100.0 / end as f64 };
        let _ = writeln!(
            out,
            "<div class=\"lane\"><span class=\"label\">{} / {} / {}</span><span class=\"track\">\
             <span class=\"bar {}\" data-cell=\"{id}\" style=\"left:{:.2}%;width:{:.2}%\" title=\"{} ms at {} ms\">\
             </span></span></div>",
            escape(scenario),
            cell.profile,
            cell.backend,
            class(cell.verdict()),
            pct(cell.started_ms),
            pct(cell.duration_ms),
            cell.duration_ms,
            cell.started_ms
        );
    }
    out.push_str("</div>\n");
}

fn evidence_section(id: &str, scenario: &str, cell: &CellResult, out: &mut String) {
    let _ = writeln!(
        out,
        "<section class=\"evidence\" id=\"{id}\">\n<h3>{} / {} / {}</h3>",
        escape(scenario),
        cell.profile,
        cell.backend
    );
    let observed = cell
        .observed_outcome()
        .map_or_else(|| cell_text(cell), |o| o.to_string());
    let _ = writeln!(
        out,
        "<p>expected <strong>{}</strong>, observed <strong>{}</strong> ({} ms)</p>",
        cell.expected.outcome,
        escape(&observed),
        cell.duration_ms
    );
    if let Some(why) = &cell.expected.why {
        let _ = writeln!(out, "<p>why expected: {}</p>", escape(why));
    }
    if let CellStatus::Observed { differences, .. } = &cell.status
        && !differences.is_empty()
    {
        out.push_str("<p>differences:</p>\n<ul class=\"differences\">\n");
        for difference in differences {
            let _ = writeln!(out, "<li>{}</li>", escape(&difference.to_string()));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<p>evidence:</p>\n<ul>\n");
    for line in evidence_lines(cell) {
        let _ = writeln!(out, "<li>{}</li>", escape(&line));
    }
    out.push_str("</ul>\n");
    let steps = timeline_lines(cell);
    if !steps.is_empty() {
        let _ = writeln!(out, "<p>timeline:</p>\n<pre>{}</pre>", escape(&steps.join("\n")));
    }
    out.push_str("</section>\n");
}
