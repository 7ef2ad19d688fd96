//! `veritylab scenario list`, `attacks` and `validate`.

use std::process::Command;

fn veritylab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
}

#[test]
fn list_prints_the_embedded_scenarios_and_json_for_scripts() {
    let out = veritylab().args(["scenario", "list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    let swap = entries
        .iter()
        .find(|e| e["id"] == "host-layer-swap")
        .expect("host-layer-swap listed");
    assert_eq!(swap["attack"], "host-layer-swap");
    assert_eq!(
        swap["profiles"],
        serde_json::json!([
            "vanilla",
            "erofs",
            "containerd-dmverity",
            "containerd-dmverity-auto",
            "verity",
            "hardened",
            "enforced"
        ])
    );
    assert_eq!(swap["expect"]["vanilla"], "undetected");
    let text = veritylab().args(["scenario", "list"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("ID "), "{text}");
    assert_eq!(text.lines().count(), entries.len() + 1);
}

#[test]
fn validate_passes_on_the_shipped_set_and_exits_3_with_located_problems() {
    let out = veritylab().args(["scenario", "validate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("scenarios valid"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.toml"), "id = \"x\"\nsurprise = 1\n").unwrap();
    let out = veritylab()
        .args(["scenario", "validate", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("x.toml:2:1: unknown field `surprise`"), "{stderr}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_as_a_broken_pipe() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = veritylab().args(["scenario", "list"]).stdout(writer).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(i32::from(veritylab::cli::VeritylabExit::BrokenPipe.code()))
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no panic message");
}

#[test]
fn attacks_prints_every_catalogue_entry_with_its_parameters() {
    let out = veritylab().args(["scenario", "attacks"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let named: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(": ").map(|(name, _)| name))
        .collect();
    let catalogue: Vec<&str> = attacks::CATALOGUE.iter().map(|a| a.name).collect();
    assert_eq!(named, catalogue);
    assert!(
        text.contains("    path (a relative path, required): file whose data gets the flipped byte"),
        "{text}"
    );
}

#[test]
fn run_with_a_publisher_key_signs_every_cell_with_it_and_refuses_another_keys_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = |prefix: &str| {
        let out = veritylab()
            .args(["keygen", prefix])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    keygen("lab");
    let run = || {
        veritylab()
            .args(["scenario", "run", "root-hash-signature-other-key", "exec-unverified"])
            .args(["--profile", "enforced", "--backend", "emulated", "--report", "json"])
            .args(["--publisher-key", "lab.key"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let other_key = &report["scenarios"][0]["cells"][0];
    assert_eq!(other_key["observation"]["outcome"], "blocked", "{other_key:#}");

    // A certificate of another key beside lab.key: refused as bad input (exit 3), naming the file.
    keygen("other");
    std::fs::copy(dir.path().join("other.crt"), dir.path().join("lab.crt")).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("lab.crt"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn demo_attack_narrates_overmount_profile_by_profile_and_exits_0() {
    let out = veritylab()
        .args(["demo", "--attack", "overmount", "--color", "always"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("== overmount: "), "{text}");
    assert!(text.contains(&scenarios::report::attacker_sentence("overmount").unwrap()));
    let mut at = 0;
    for profile in veritylab::profile::Profile::ALL {
        let header = format!("-- {profile}: {} --", profile.summary());
        let found = text[at..]
            .find(&header)
            .unwrap_or_else(|| panic!("no part for {profile} after the previous one: {text}"));
        at += found + header.len();
        let part = &text[at..];
        let part = &part[..part.find("\n-- ").unwrap_or(part.len())];
        assert!(
            part.contains("what the defences saw:") && part.contains("   => "),
            "{part}"
        );
        // Without root, the cells whose attack needs it are skipped and say why; every other one has its story.
        if testkit::is_root() || !part.contains("skipped: needs root") {
            assert!(part.contains("timeline ("), "{part}");
        }
    }
    let verdict = text
        .lines()
        .find(|l| l.starts_with("verdict: overmount: "))
        .expect("the verdict line");
    assert!(verdict.ends_with("every cell as expected"), "{verdict}");
    // Coloured when asked: vanilla's undetected in red (as root, where every cell runs).
    let red = "\x1b[1;31mundetected\x1b[0m ✓";
    assert!(
        verdict.contains(red) || (!testkit::is_root() && verdict.contains("\x1b[")),
        "coloured when asked: {verdict}"
    );

    let unknown = veritylab()
        .args(["demo", "--attack", "no-such-attack"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no scenario or attack \"no-such-attack\""));
}
