//! `veritylab policy import` and cluster policies given straight to `verify --policy`: the imported rules
//! decide verification as they read, and what the lab cannot enforce is listed (an error under --strict).

use std::path::{Path, PathBuf};
use std::process::Command;

use veritylab::policy_import;
use veritylab::sign::keys;
use veritylab::sign::{Policy, Scheme, SignatureFinding, VerifyOptions};

use super::support::{REPO, findings, key_pair, rejected, sign, signed_store, verified};

fn veritylab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
}

/// The example policies shipped with the scenarios.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/policies")
        .join(name)
}

/// A Kyverno policy enforcing a cosign signature by `pem` on `registry.example/lab/*`.
fn kyverno(pem: &str) -> String {
    let key: String = pem.lines().map(|l| format!("                      {l}\n")).collect();
    format!(
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: lab\nspec:\n  validationFailureAction: Enforce\n  rules:\n    - name: lab-signed\n      match:\n        any:\n          - resources:\n              kinds: [Pod]\n      verifyImages:\n        - imageReferences: [\"registry.example/lab/*\"]\n          mutateDigest: false\n          verifyDigest: false\n          attestors:\n            - entries:\n                - keys:\n                    rekor: {{ignoreTlog: true}}\n                    publicKeys: |-\n{key}"
    )
}

fn import_policy(dir: &Path, name: &str, text: &str) -> Policy {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let imported = policy_import::import(std::slice::from_ref(&path), true).unwrap();
    Policy::from_file(imported.policy, dir, &path).unwrap()
}

#[test]
fn an_imported_kyverno_policy_decides_verification() {
    let work = tempfile::tempdir().unwrap();
    let (store, key, _, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    let name = format!("{REPO}:v1");
    let signer = keys::public_pem(key.verifying_key());
    let policy = import_policy(work.path(), "signer.yaml", &kyverno(&signer));
    verified(&store, &name, &VerifyOptions::new(policy, Vec::new()));

    let stranger = keys::public_pem(keys::generate().verifying_key());
    let policy = import_policy(work.path(), "stranger.yaml", &kyverno(&stranger));
    let report = rejected(&store, &name, &VerifyOptions::new(policy, Vec::new()));
    assert!(
        findings(&report)
            .iter()
            .any(|f| matches!(f, SignatureFinding::BadSignature { .. })),
        "{:?}",
        findings(&report)
    );
}

#[test]
fn a_containers_policy_reject_scope_refuses_even_a_signed_image() {
    let work = tempfile::tempdir().unwrap();
    let (store, _, public, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    let policy = import_policy(
        work.path(),
        "policy.json",
        r#"{"default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {"registry.example/lab": [{"type": "reject"}]}}}"#,
    );
    let report = rejected(&store, &format!("{REPO}:v1"), &VerifyOptions::new(policy, vec![public]));
    assert!(
        findings(&report)
            .iter()
            .any(|f| matches!(f, SignatureFinding::Refused { .. })),
        "{:?}",
        findings(&report)
    );
}

#[test]
fn verify_takes_a_cluster_policy_directly() {
    let work = tempfile::tempdir().unwrap();
    let (_, key, _, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    let policy = work.path().join("kyverno.yaml");
    std::fs::write(&policy, kyverno(&keys::public_pem(key.verifying_key()))).unwrap();
    let out = veritylab()
        .args(["verify", &format!("{REPO}:v1"), "--offline", "--policy"])
        .arg(&policy)
        .arg("--store")
        .arg(work.path().join("store"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Kyverno policy, 1 rule(s)"), "{stderr}");

    let stranger = work.path().join("stranger.yaml");
    std::fs::write(&stranger, kyverno(&keys::public_pem(keys::generate().verifying_key()))).unwrap();
    let out = veritylab()
        .args(["verify", &format!("{REPO}:v1"), "--offline", "--policy"])
        .arg(&stranger)
        .arg("--store")
        .arg(work.path().join("store"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "not trusted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Two Kyverno rules that both match `registry.example/lab/app`: one for every image of the registry
/// trusting `first`, one for the app trusting `second`. Kyverno applies both.
fn overlapping_kyverno(first: &str, second: &str) -> String {
    let key = |pem: &str| -> String { pem.lines().map(|l| format!("                      {l}\n")).collect() };
    let rule = |name: &str, reference: &str, pem: &str| {
        format!(
            "    - name: {name}\n      match:\n        any:\n          - resources:\n              kinds: [Pod]\n      verifyImages:\n        - imageReferences: [\"{reference}\"]\n          mutateDigest: false\n          verifyDigest: false\n          attestors:\n            - entries:\n                - keys:\n                    rekor: {{ignoreTlog: true}}\n                    publicKeys: |-\n{}",
            key(pem)
        )
    };
    format!(
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: both\nspec:\n  validationFailureAction: Enforce\n  rules:\n{}{}",
        rule("registry", "registry.example/*", first),
        rule("app", "registry.example/lab/app*", second)
    )
}

#[test]
fn overlapping_kyverno_rules_must_all_pass() {
    let work = tempfile::tempdir().unwrap();
    let (store, first, _, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    let (second, _) = key_pair();
    let name = format!("{REPO}:v1");
    let policy = work.path().join("both.yaml");
    std::fs::write(
        &policy,
        overlapping_kyverno(
            &keys::public_pem(first.verifying_key()),
            &keys::public_pem(second.verifying_key()),
        ),
    )
    .unwrap();
    let verify = || {
        veritylab()
            .args(["verify", &name, "--offline", "--policy"])
            .arg(&policy)
            .arg("--store")
            .arg(work.path().join("store"))
            .output()
            .unwrap()
    };

    let out = verify();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "signed by the registry's key only: {printed}"
    );
    assert!(
        printed.contains("registry.example/lab/app**") && printed.contains("spec.rules[1].verifyImages[0]"),
        "the finding names the app rule: {printed}"
    );
    assert!(!printed.contains("not enforced: an image matching both"), "{printed}");
    let imported = policy_import::import(std::slice::from_ref(&policy), true).unwrap();
    let loaded = Policy::from_file(imported.policy, work.path(), &policy).unwrap();
    let report = rejected(&store, &name, &VerifyOptions::new(loaded.clone(), Vec::new()));
    assert!(
        findings(&report).iter().any(|f| matches!(
            f,
            SignatureFinding::TooFewSigners { rule, verified: 0, needed: 1 } if rule.contains("lab/app**")
        )),
        "{:?}",
        findings(&report)
    );
    assert_eq!(report.rule.len(), 2, "both rules applied: {:?}", report.rule);

    sign(&store, &name, &second, Scheme::Cosign, 1_800_000_000);
    let out = verify();
    assert!(
        out.status.success(),
        "signed by both keys: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    verified(&store, &name, &VerifyOptions::new(loaded, Vec::new()));
}

#[test]
fn a_rule_for_one_namespace_decides_only_there_and_without_a_namespace() {
    let work = tempfile::tempdir().unwrap();
    let (_, signer, _, _) = signed_store(&work.path().join("store"), Scheme::Cosign);
    // The publisher's key is trusted where no rule says otherwise; the prod rule trusts a stranger only.
    let publisher = work.path().join("publisher.pub");
    std::fs::write(&publisher, keys::public_pem(signer.verifying_key())).unwrap();
    let stranger = keys::public_pem(keys::generate().verifying_key());
    let policy = work.path().join("prod.yaml");
    std::fs::write(
        &policy,
        kyverno(&stranger).replace(
            "              kinds: [Pod]\n",
            "              kinds: [Pod]\n              namespaces: [prod]\n",
        ),
    )
    .unwrap();
    let verify = |namespace: Option<&str>| {
        let mut command = veritylab();
        command
            .args(["verify", &format!("{REPO}:v1"), "--offline", "--policy"])
            .arg(&policy)
            .arg("--key")
            .arg(&publisher)
            .arg("--store")
            .arg(work.path().join("store"));
        if let Some(namespace) = namespace {
            command.args(["--namespace", namespace]);
        }
        command.output().unwrap().status.code()
    };
    assert_eq!(
        verify(Some("prod")),
        Some(3),
        "the rule selects prod: the stranger's key is needed"
    );
    assert_eq!(
        verify(Some("dev")),
        Some(0),
        "no rule selects dev: the publisher's signature is enough"
    );
    assert_eq!(verify(None), Some(3), "no namespace: the stricter answer");
    assert_eq!(
        verify(Some("Not_A_Namespace")),
        Some(2),
        "a bad namespace name is a usage error"
    );
}

#[test]
fn import_prints_toml_and_lists_what_it_cannot_enforce() {
    for file in [
        "kyverno-verify-images.yaml",
        "cluster-image-policy.yaml",
        "containers-policy.json",
    ] {
        let out = veritylab()
            .args(["policy", "import"])
            .arg(example(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let toml = String::from_utf8(out.stdout).unwrap();
        let parsed: toml::Value = toml::from_str(&toml).unwrap();
        assert!(parsed.get("repository").is_some(), "{file}: {toml}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not enforced"), "{file}");
    }
}

#[test]
fn strict_import_of_keyless_attestors_fails() {
    let out = veritylab()
        .args(["policy", "import", "--strict"])
        .arg(example("kyverno-verify-images.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "bad input");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.rules[0].verifyImages[0].attestors[1].entries[0].keyless"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing printed as a policy");
}

#[test]
fn import_json_carries_the_policy_and_the_list() {
    let out = veritylab()
        .args(["policy", "import", "--json"])
        .arg(example("cluster-image-policy.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["policy"]["unmatched"], "reject");
    assert_eq!(json["sources"].as_array().unwrap().len(), 2);
    assert!(
        json["not_enforced"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"] == "spec.authorities[2].keyless")
    );
    assert!(json["toml"].as_str().unwrap().contains("[[repository]]"));
}
