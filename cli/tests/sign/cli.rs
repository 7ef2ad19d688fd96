//! `keygen`, `sign` and `verify` from the command line: files and modes, JSON output, exit codes and the
//! reasons printed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::oci::support::{Seeded, seeded_registry};

fn veritylab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keygen_sign_push_and_verify_from_the_command_line() {
    let Some(Seeded { work, registry, .. }) = seeded_registry(
        "sign::cli::keygen_sign_push_and_verify_from_the_command_line",
        "lab/cli:v1",
    ) else {
        return;
    };
    let dir = work.path();
    let reference = format!("{}/lab/cli:v1", registry.host());
    let passphrase = dir.join("passphrase");
    fs::write(&passphrase, "correct horse\n").unwrap();
    let keygen = ok(&veritylab()
        .arg("keygen")
        .arg(dir.join("lab"))
        .arg("--passphrase-file")
        .arg(&passphrase)
        .arg("--json")
        .output()
        .unwrap());
    let keygen: serde_json::Value = serde_json::from_str(&keygen).unwrap();
    assert_eq!(keygen["encrypted"], true);
    let key_text = fs::read_to_string(dir.join("lab.key")).unwrap();
    assert!(key_text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(
        fs::read_to_string(dir.join("lab.pub"))
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    let store = dir.join("publisher");
    ok(&veritylab()
        .args(["pull", &reference, "--plain-http", "--store"])
        .arg(&store)
        .output()
        .unwrap());
    // Without the passphrase the key is refused with the reason.
    let out = veritylab()
        .args(["sign", &reference, "--key"])
        .arg(dir.join("lab.key"))
        .arg("--store")
        .arg(&store)
        .env_remove("VERITYLAB_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is encrypted"));
    let signed = ok(&veritylab()
        .args(["sign", &reference, "--push", "--plain-http", "--json", "--key"])
        .arg(dir.join("lab.key"))
        .arg("--store")
        .arg(&store)
        .env("VERITYLAB_PASSPHRASE", "correct horse")
        .output()
        .unwrap());
    let signed: serde_json::Value = serde_json::from_str(&signed).unwrap();
    let digest = signed["signed"]["manifest"]["digest"].as_str().unwrap().to_owned();
    assert!(signed["pushed"]["signature"].as_str().unwrap().ends_with(".sig"));

    let node = dir.join("node");
    ok(&veritylab()
        .args(["pull", &reference, "--plain-http", "--store"])
        .arg(&node)
        .output()
        .unwrap());
    let text = ok(&veritylab()
        .args(["verify", &reference, "--plain-http", "--key"])
        .arg(dir.join("lab.pub"))
        .arg("--store")
        .arg(&node)
        .output()
        .unwrap());
    assert!(text.contains("ok   signature"), "{text}");
    assert!(text.contains("verified:"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&ok(&veritylab()
        .args(["verify", &reference, "--offline", "--json", "--key"])
        .arg(dir.join("lab.pub"))
        .arg("--store")
        .arg(&node)
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["image"]["manifest"]["digest"], digest.as_str());
    assert_eq!(report["image"]["layers"].as_array().unwrap().len(), 2);
    assert!(report["image"]["layers"][0]["verity"]["root_hash"].is_string());
    let checks = report["report"]["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["outcome"] != "failed"), "{checks:?}");

    // Another key: exit 3, the report on stdout says what failed.
    let other = dir.join("other");
    ok(&veritylab()
        .arg("keygen")
        .arg(&other)
        .env_remove("VERITYLAB_PASSPHRASE")
        .output()
        .unwrap());
    let out = veritylab()
        .args(["verify", &reference, "--offline", "--json", "--key"])
        .arg(dir.join("other.pub"))
        .arg("--store")
        .arg(&node)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], false);
    assert!(report["image"].is_null());
    let signature = report["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "signature")
        .unwrap();
    assert_eq!(signature["outcome"], "failed");
    assert_eq!(signature["findings"][0]["kind"], "bad-signature");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify with any trusted key"));
}

#[test]
fn bad_keys_and_policies_fail_with_exit_code_3_and_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    ok(&veritylab()
        .arg("keygen")
        .arg(dir.join("k"))
        .env_remove("VERITYLAB_PASSPHRASE")
        .output()
        .unwrap());
    let out = veritylab().arg("keygen").arg(dir.join("k")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    fs::set_permissions(dir.join("k.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = veritylab()
        .args(["sign", "registry.example/lab/app:v1", "--key"])
        .arg(dir.join("k.key"))
        .arg("--store")
        .arg(dir.join("store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode 0644"), "{out:?}");

    fs::write(
        dir.join("policy.toml"),
        "trusted_keys = [\"k.pub\"]\nrequire_digest = true\n",
    )
    .unwrap();
    let out = veritylab()
        .args(["verify", "registry.example/lab/app:v1", "--offline", "--policy"])
        .arg(dir.join("policy.toml"))
        .arg("--store")
        .arg(dir.join("store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field") && stderr.contains("require_digest"),
        "{stderr}"
    );

    let out = veritylab()
        .args(["verify", "registry.example/lab/app:v1", "--store"])
        .arg(dir.join("store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no key at all is a usage error");
}
