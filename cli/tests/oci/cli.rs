//! The `pull`, `convert` and `images` commands end to end, with their JSON output, exit codes and progress
//! bars.

use std::process::Command;

use super::support::{Seeded, run, seeded_registry};

fn veritylab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
}

fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&run(cmd)).unwrap()
}

#[test]
fn pull_convert_and_images_from_the_command_line() {
    let Some(Seeded { work, registry, .. }) =
        seeded_registry("oci::cli::pull_convert_and_images_from_the_command_line", "lab/cli:v1")
    else {
        return;
    };
    let store = work.path().join("store");
    let reference = format!("{}/lab/cli:v1", registry.host());

    let out = veritylab()
        .args(["pull", &reference, "--plain-http", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plain HTTP"), "plain HTTP is said in the output: {text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain HTTP"));

    let pulled = json(
        veritylab()
            .args(["pull", &reference, "--plain-http", "--json", "--store"])
            .arg(&store),
    );
    assert_eq!(pulled["transport"], "plain-http");
    assert_eq!(pulled["layers"].as_array().unwrap().len(), 2);

    let converted = json(
        veritylab()
            .args(["convert", &reference, "--layout", "separate", "--json", "--store"])
            .arg(&store),
    );
    let roots: Vec<&str> = converted["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["roothash"].as_str().unwrap())
        .collect();
    assert_eq!(roots.len(), 2);

    let images = json(veritylab().args(["images", "--json", "--store"]).arg(&store));
    assert_eq!(images[0]["name"], reference.as_str());
    assert_eq!(images[0]["manifest"], pulled["manifest"]);
    assert_eq!(images[0]["layers"][1]["separate_roothash"], roots[1]);
    assert!(images[0]["layers"][1]["containerd_roothash"].is_null());
}

#[test]
fn plain_http_to_a_remote_host_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let out = veritylab()
        .args(["pull", "registry.example.com/a:1", "--plain-http", "--store"])
        .arg(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = veritylab()
        .args(["convert", "example.com/never/pulled:1", "--store"])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("pull it first"));
}

#[test]
fn progress_bars_show_on_a_terminal_only_and_never_with_json() {
    let script = testkit::require_tool!("script");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data"), vec![7u8; 300_000]).unwrap();
    let layout = work.path().join("layout");
    veritylab::oci::build(&[src], &layout, "v1", &Default::default(), &|_| {}).unwrap();
    let reference = format!("oci:{}:v1", layout.display());
    let bin = env!("CARGO_BIN_EXE_veritylab");
    let store = |name: &str| work.path().join(name).display().to_string();

    // Not a terminal: no bars on stderr.
    let out = veritylab()
        .args(["pull", &reference, "--store", &store("piped")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // A terminal (script gives the command a pseudo-terminal): a bar per layer for pull and convert.
    let on_tty = |args: &str| {
        // A terminal that can move the cursor (indicatif draws nothing on TERM=dumb or none).
        let out = Command::new(&script)
            .env("TERM", "xterm")
            .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };
    let shown = on_tty(&format!("pull {reference} --store {}", store("tty")));
    assert!(shown.contains("pulling layer 1/1"), "{shown}");
    assert!(shown.contains(&format!("[{}]", "=".repeat(30))), "a full bar: {shown}");
    let shown = on_tty(&format!("convert {reference} --store {}", store("tty")));
    assert!(shown.contains("converting layer 1/1"), "{shown}");

    // A terminal but --json: the output is the JSON document alone.
    let shown = on_tty(&format!("pull {reference} --json --store {}", store("json")));
    let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert_eq!(parsed["layers"].as_array().unwrap().len(), 1);
    let shown = on_tty(&format!("convert {reference} --json --store {}", store("json")));
    serde_json::from_str::<serde_json::Value>(&shown).unwrap_or_else(|e| panic!("{e}: {shown}"));
}

/// A normal user whose HOME is not a directory (`nobody`'s is `/nonexistent`) and who has no XDG_DATA_HOME has
/// no default store: a usage error that says to pass `--store`, and nothing created. Run as `nobody` through
/// `setpriv` when the tests run as root (root's default is `/var/lib/veritylab`).
#[test]
fn a_user_without_a_home_directory_is_asked_for_store() {
    let mut command = if testkit::is_root() {
        let mut setpriv = Command::new(testkit::require_tool!("setpriv"));
        setpriv
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_veritylab"));
        setpriv
    } else {
        veritylab()
    };
    let out = command
        .arg("images")
        .env("HOME", "/nonexistent")
        .env_remove("XDG_DATA_HOME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no default store for this user: HOME (/nonexistent) is not a directory (pass --store DIR"),
        "{stderr}"
    );
    assert!(!std::path::Path::new("/nonexistent").exists());
}
