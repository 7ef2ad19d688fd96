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
fn coloured_text_report_snapshot() {
    insta::assert_snapshot!(
        "text_report_coloured",
        report::render(&synthetic_report(), Format::Text, true)
    );
}

/// The magenta mark of a cell that differs from its expectation.
const MISMATCH_MARK: &str = "\x1b[1;97;45m✗\x1b[0m";

#[test]
fn text_report_colours_the_outcome_not_the_expectation() {
    let report = synthetic_report();
    let plain = report::render(&report, Format::Text, false);
    let coloured = report::render(&report, Format::Text, true);
    assert!(!plain.contains('\x1b'));
    assert!(coloured.contains("\x1b[32mblocked\x1b[0m ✓"), "{coloured}");
    assert!(
        coloured.contains("\x1b[1;31mundetected\x1b[0m ✓"),
        "an expected undetected cell is still red: {coloured}"
    );
    assert!(coloured.contains("\x1b[33mdetected\x1b[0m ✓"), "{coloured}");
    assert!(
        coloured.contains(&format!("\x1b[1;31mundetected\x1b[0m {MISMATCH_MARK}")),
        "{coloured}"
    );
}

/// The synthetic run with its harness error removed: exactly one cell (upperdir-write under hardened) differs.
fn one_mismatch() -> scenarios::results::RunReport {
    let mut report = synthetic_report();
    for scenario in &mut report.scenarios {
        scenario
            .cells
            .retain(|c| !matches!(c.status, scenarios::results::CellStatus::Error { .. }));
    }
    assert_eq!(report.summary().failed, 1);
    assert_eq!(report.summary().errors, 0);
    report
}

#[test]
fn a_mismatched_cell_is_flagged_in_the_terminal_and_the_html_reports() {
    let report = one_mismatch();
    let label = "upperdir-write / hardened / emulated: expected blocked, observed undetected";

    let text = report::render(&report, Format::Text, true);
    let matrix = text.find("\nscenario ").expect("the matrix header");
    let listed = text.find(label).expect("the mismatch is listed");
    assert!(listed < matrix, "the mismatch is listed above the matrix: {text}");
    assert!(text.contains("1 cell(s) differ from their expectation:"), "{text}");
    let matrix_rows =
        &text[matrix..matrix + 1 + text[matrix + 1..].find("\n\n").expect("a blank line ends the matrix")];
    assert_eq!(
        matrix_rows.matches(MISMATCH_MARK).count(),
        1,
        "exactly one matrix cell carries the mismatch mark: {matrix_rows}"
    );
    let plain = report::render(&report, Format::Text, false);
    assert!(plain.find(label).unwrap() < plain.find("\nscenario ").unwrap());

    let html = report::render(&report, Format::Html, false);
    assert_eq!(
        html.matches("mismatch\" data-cell=").count(),
        1,
        "one framed cell: {html}"
    );
    assert!(html.contains("class=\"cell undetected fail mismatch\""), "{html}");
    let section = html.find("<section id=\"mismatches\">").expect("the mismatch list");
    assert!(section < html.find("<table id=\"matrix\">").unwrap());
    assert!(html.contains(&format!(
        ">{}</a>: expected blocked, observed undetected",
        "upperdir-write / hardened / emulated"
    )));

    let passing = {
        let mut report = report.clone();
        report.scenarios.retain(|s| s.id != "upperdir-write");
        report
    };
    let html = report::render(&passing, Format::Html, false);
    assert!(
        !html.contains("id=\"mismatches\"") && !html.contains("mismatch\" data-cell="),
        "{html}"
    );
    assert!(!report::render(&passing, Format::Text, false).contains("differ from their expectation:"));
}

#[test]
fn html_report_shows_each_profile_and_what_each_attacker_did() {
    let html = report::render(&synthetic_report(), Format::Html, false);
    for profile in veritylab::profile::Profile::ALL {
        assert!(
            html.contains(&format!(
                "<dt>{profile}</dt><dd>{}</dd>",
                profile.summary().replace('\'', "&apos;")
            )),
            "{profile}'s description is missing"
        );
    }
    let overmount = report::attacker_sentence("overmount").unwrap();
    let overmount = overmount.replace('\'', "&apos;");
    assert!(
        html.contains(&format!("<span class=\"attacker\">{overmount}</span>")),
        "{html}"
    );
    for legend in [
        "swatch blocked",
        "swatch detected",
        "swatch undetected",
        "swatch mismatch",
    ] {
        assert!(html.contains(legend), "the legend lacks {legend}");
    }
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

/// The pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are), as RGB triples.
fn png_pixels(png: &[u8]) -> Vec<[u8; 3]> {
    use std::io::Read as _;
    let (width, height) = png_size(png);
    let (depth, colour, interlace) = (png[24], png[25], png[28]);
    assert_eq!((depth, interlace), (8, 0), "8-bit, non-interlaced");
    let bpp = match colour {
        2 => 3,
        6 => 4,
        other => panic!("PNG colour type {other}"),
    };
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        if &png[at + 4..at + 8] == b"IDAT" {
            idat.extend_from_slice(&png[at + 8..at + 8 + len]);
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = width as usize * bpp;
    assert_eq!(raw.len(), (stride + 1) * height as usize);
    let mut image = vec![0u8; stride * height as usize];
    for y in 0..height as usize {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= bpp { image[y * stride + x - bpp] } else { 0 };
            let b = if y > 0 { image[(y - 1) * stride + x] } else { 0 };
            let c = if x >= bpp && y > 0 {
                image[(y - 1) * stride + x - bpp]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            image[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    image.chunks(bpp).map(|p| [p[0], p[1], p[2]]).collect()
}

/// How many of `pixels` are within 6 of `rgb` in every channel.
fn count_colour(pixels: &[[u8; 3]], rgb: [u8; 3]) -> usize {
    pixels
        .iter()
        .filter(|p| p.iter().zip(rgb).all(|(&a, b)| a.abs_diff(b) <= 6))
        .count()
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

    // The DOM after the scripts ran, with the mismatched cell opened through the URL fragment as a click would.
    let html = std::fs::read_to_string(&page).unwrap();
    let framed = "class=\"cell undetected fail mismatch\" data-cell=\"";
    let at = html.find(framed).expect("the mismatched cell") + framed.len();
    let id = &html[at..at + html[at..].find('"').unwrap()];
    let dom = String::from_utf8(chromium(
        &tool,
        &profile,
        &["--dump-dom"],
        &format!("{}#{id}", url(&page)),
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
        dom.contains(&format!("data-shows=\"{id}\"")),
        "clicking a cell did not show its evidence: {dom}"
    );
    assert!(
        dom.contains("class=\"cell undetected fail mismatch selected\""),
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
    // The outcome colours fill the matrix's cells (each cell is some thousands of pixels), and the mismatch's
    // frame is drawn: what the room sees is the colour, not only the text.
    let pixels = png_pixels(&png);
    for (what, rgb, at_least) in [
        ("blocked green", [0x1f, 0x88, 0x3d], 2000),
        ("detected amber", [0xf0, 0xb4, 0x00], 1000),
        ("undetected red", [0xcf, 0x22, 0x2e], 2000),
        ("mismatch magenta", [0x82, 0x50, 0xdf], 300),
    ] {
        let seen = count_colour(&pixels, rgb);
        assert!(
            seen >= at_least,
            "{what}: {seen} pixels in the screenshot, expected at least {at_least}"
        );
    }
    assert_eq!(count_colour(&png_pixels(&blank_png), [0xcf, 0x22, 0x2e]), 0);
}
