//! Report renderings of a fixed synthetic run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scenarios::report::{self, Format};

use super::support::synthetic_report;

#[test]
fn text_report_snapshot() {
    let report = synthetic_report();
    insta::assert_snapshot!("text_report", report::render(&report, Format::Text, false));
}

#[test]
fn json_report_snapshot_keeps_the_schema_stable() {
    insta::assert_snapshot!("json_report", report::render(&synthetic_report(), Format::Json, false));
}

#[test]
fn reports_are_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    report::write_atomic(&path, "first").unwrap();
    report::write_atomic(&path, "second").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
    let missing = dir.path().join("no/such/dir/report.html");
    assert!(report::write_atomic(&missing, "x").is_err());
}

#[test]
fn text_report_is_coloured_only_when_asked() {
    let report = synthetic_report();
    let plain = report::render(&report, Format::Text, false);
    let coloured = report::render(&report, Format::Text, true);
    assert!(!plain.contains('\x1b'));
    assert!(coloured.contains("\x1b[32mblocked ✓\x1b[0m"), "{coloured}");
    assert!(coloured.contains("\x1b[1;31mundetected ✗\x1b[0m"), "{coloured}");
}

#[test]
fn json_report_round_trips_and_refuses_other_schema_versions() {
    let report = synthetic_report();
    let text = report::render(&report, Format::Json, false);
    assert_eq!(report::json::parse(&text).unwrap(), report);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["schema_version"], 1);
    let cell = &value["scenarios"][1]["cells"][1];
    assert_eq!(cell["status"], "observed");
    assert_eq!(
        cell["differences"][0],
        serde_json::json!({"kind": "outcome", "expected": "blocked", "observed": "undetected"})
    );
    let future = text.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1);
    assert_eq!(
        report::json::parse(&future).unwrap_err().to_string(),
        "run report schema version 2 is not 1, the version this veritylab reads"
    );
}

#[test]
fn junit_report_is_well_formed_xml_with_one_testcase_per_cell() {
    let xmllint = testkit::require_tool!("xmllint");
    let report = synthetic_report();
    let xml = report::render(&report, Format::Junit, false);
    assert_eq!(xml.matches("<testcase ").count(), report.summary().cells);
    assert_eq!(xml.matches("<failure ").count(), 1);
    assert_eq!(xml.matches("<error ").count(), 1);
    assert_eq!(xml.matches("<skipped ").count(), 2);
    assert!(xml.contains("outcome: expected blocked, observed undetected"));
    assert!(
        xml.contains("&lt;not ours&gt; &quot;x&quot; &amp; &apos;y&apos;\u{FFFD}"),
        "{xml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    std::fs::write(&path, &xml).unwrap();
    let out = Command::new(&xmllint).arg("--noout").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&xmllint)
        .args(["--xpath", "count(//testsuite)"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
}

#[test]
fn html_report_is_self_contained() {
    let html = report::render(&synthetic_report(), Format::Html, false);
    for external in ["<link", "src=", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(external), "the page must not load {external}");
    }
    assert!(html.contains("&lt;not ours&gt;"));
    assert!(!html.contains("<not ours>"));
}

/// Runs chromium headless with `args` and `url`, killing it after 90 s; returns its stdout.
fn chromium(tool: &Path, profile: &Path, args: &[&str], url: &str) -> Vec<u8> {
    let child = Command::new(tool)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, Duration::from_secs(90))
}

fn wait_bounded(mut child: Child, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "chromium did not finish in {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let tool = testkit::require_tool!("chromium");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, report::render(&synthetic_report(), Format::Html, false)).unwrap();
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let profile = dir.path().join("chromium-profile");
    let url = |p: &Path| format!("file://{}", p.display());

    // The DOM after the scripts ran, with a cell opened through the URL fragment as a click would.
    let dom = String::from_utf8(chromium(
        &tool,
        &profile,
        &["--dump-dom"],
        &format!("{}#cell-6", url(&page)),
    ))
    .unwrap();
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not finish: {dom}"
    );
    assert!(
        !dom.contains("id=\"script-error\""),
        "the page shows a script error: {dom}"
    );
    assert!(dom.contains("<table id=\"matrix\">"));
    assert!(
        dom.contains(">enforced</th>"),
        "the matrix lost the enforced column: {dom}"
    );
    assert!(
        dom.matches("data-cell=\"cell-").count() >= 10,
        "the matrix lost its cells"
    );
    assert!(
        dom.contains("data-shows=\"cell-6\""),
        "clicking a cell did not show its evidence: {dom}"
    );
    assert!(
        dom.contains("class=\"cell fail selected\""),
        "the opened cell is not marked: {dom}"
    );

    let shot = dir.path().join("report.png");
    let blank_shot = dir.path().join("blank.png");
    for (source, target) in [(&page, &shot), (&blank, &blank_shot)] {
        chromium(
            &tool,
            &profile,
            &[&format!("--screenshot={}", target.display()), "--window-size=1280,900"],
            &url(source),
        );
    }
    let png = std::fs::read(&shot).unwrap();
    let blank_png = std::fs::read(&blank_shot).unwrap();
    assert_eq!(png_size(&png), (1280, 900));
    assert!(
        png.len() > 4 * blank_png.len(),
        "the screenshot ({} bytes) is not much more than a blank page's ({} bytes)",
        png.len(),
        blank_png.len()
    );
}
