//! Every exit code of `veritylab`, triggered through the binary, and the README's table equal to the enum.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use veritylab::cli::VeritylabExit;

fn veritylab(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(args)
        .current_dir(dir)
        .env_remove("VERITYLAB_PASSPHRASE")
        .output()
        .unwrap()
}

#[test]
fn the_readme_table_is_the_exit_code_enum_and_help_lists_it() {
    let documented = testkit::readme_exit_codes("veritylab exit codes");
    let declared: BTreeMap<u8, (String, String)> = VeritylabExit::ALL
        .iter()
        .map(|e| (e.code(), (format!("{e:?}"), e.meaning().to_owned())))
        .collect();
    assert_eq!(documented, declared);
    let dir = std::env::temp_dir();
    for args in [&["--help"][..], &["check", "--help"], &["erofs", "--help"]] {
        let help = veritylab(&dir, args);
        assert!(
            String::from_utf8_lossy(&help.stdout).contains(&VeritylabExit::help()),
            "{args:?}"
        );
    }
}

#[test]
fn each_exit_code_is_triggered_through_the_binary() {
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    std::fs::write(d.join("junk"), vec![0u8; 8192]).unwrap();
    let code = |args: &[&str]| veritylab(d, args).status.code().unwrap();
    let mut seen = BTreeMap::new();

    seen.insert(code(&["keygen", "k"]), VeritylabExit::Success);
    seen.insert(code(&["keygen", "k"]), VeritylabExit::Busy);
    seen.insert(code(&["erofs", "ls", "no-such-image"]), VeritylabExit::Failure);
    seen.insert(code(&["mkfs", "--block-size", "1000", "o", "-"]), VeritylabExit::Usage);
    seen.insert(code(&["erofs", "ls", "junk"]), VeritylabExit::Rejected);

    let scenarios = d.join("scenarios");
    std::fs::create_dir(&scenarios).unwrap();
    let wrong = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/upperdir-write.toml"))
        .unwrap()
        .replace(
            "[expect.vanilla]\noutcome = \"undetected\"",
            "[expect.vanilla]\noutcome = \"detected\"\nfindings = [\"writable-upperdir\"]",
        );
    std::fs::write(scenarios.join("upperdir-write.toml"), wrong).unwrap();
    let run = [
        "scenario",
        "run",
        "--all",
        "--profile",
        "vanilla",
        "--backend",
        "emulated",
        "--dir",
        scenarios.to_str().unwrap(),
    ];
    seen.insert(code(&run), VeritylabExit::Findings);

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let piped = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["scenario", "list"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&piped.stderr),
        "",
        "nothing printed for a closed pipe"
    );
    seen.insert(piped.status.code().unwrap(), VeritylabExit::BrokenPipe);

    for (code, exit) in &seen {
        assert_eq!(*code, i32::from(exit.code()), "{exit:?}");
    }
    assert_eq!(seen.len(), VeritylabExit::ALL.len(), "every code triggered: {seen:?}");
}
