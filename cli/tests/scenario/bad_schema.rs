//! Each schema mistake gives one clear problem, located by file, line and column and naming the key.

use scenarios::load;

const BASE: &str = r#"id = "demo"
title = "Demo"
description = "A demo."
profiles = ["vanilla", "hardened"]

[image]
from = "sample"

[attack]
name = "layer-byte-flip"
params = { path = "bin/app", offset = 3 }

[expect.vanilla]
outcome = "undetected"

[expect.hardened]
outcome = "blocked"
error = "hash-mismatch"
"#;

/// Loads `text` as `demo.toml` and returns its problems, one string each.
fn problems(text: &str) -> Vec<String> {
    match load::parse("demo.toml", text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn one_problem(text: &str) -> String {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    found.into_iter().next().unwrap()
}

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn the_base_scenario_is_valid() {
    let scenario = load::parse("demo.toml", BASE).unwrap();
    assert_eq!(scenario.attack.integer("offset"), Some(3));
    assert_eq!(
        scenario.backends.len(),
        scenarios::RunnerBackend::ALL.len(),
        "no backends key means all backends"
    );
}

#[test]
fn unknown_top_level_key() {
    let p = one_problem(&with("title = \"Demo\"\n", "title = \"Demo\"\ncolour = \"red\"\n"));
    assert!(p.starts_with("demo.toml:3:1: unknown field `colour`"), "{p}");
}

#[test]
fn unknown_key_in_an_expectation() {
    let p = one_problem(&with(
        "error = \"hash-mismatch\"\n",
        "error = \"hash-mismatch\"\nevidence = \"EIO\"\n",
    ));
    assert!(p.starts_with("demo.toml:19:1: unknown field `evidence`"), "{p}");
}

#[test]
fn wrong_type() {
    let p = one_problem(&with("title = \"Demo\"", "title = 3"));
    assert!(
        p.starts_with("demo.toml:2:9: invalid type: integer `3`, expected a string"),
        "{p}"
    );
}

#[test]
fn unknown_profile_in_profiles_and_in_expect() {
    let p = one_problem(&with("\"vanilla\", \"hardened\"", "\"vanilla\", \"strict\""));
    assert!(
        p.starts_with("demo.toml:4:24: unknown variant `strict`, expected one of `vanilla`"),
        "{p}"
    );
    let p = one_problem(&with("[expect.vanilla]", "[expect.strict]"));
    assert!(p.starts_with("demo.toml:13:9: unknown variant `strict`"), "{p}");
}

#[test]
fn unknown_outcome_and_evidence_names() {
    let p = one_problem(&with("outcome = \"blocked\"", "outcome = \"stopped\""));
    assert!(
        p.starts_with("demo.toml:17:11: unknown variant `stopped`, expected one of `blocked`"),
        "{p}"
    );
    let p = one_problem(&with("error = \"hash-mismatch\"", "error = \"boom\""));
    assert!(p.starts_with("demo.toml:18:9: unknown variant `boom`"), "{p}");
}

#[test]
fn unknown_attack() {
    let p = one_problem(&with("name = \"layer-byte-flip\"", "name = \"byte-flip\""));
    assert!(
        p.starts_with("demo.toml:10:8: attack.name: unknown attack `byte-flip` (known: host-layer-swap, "),
        "{p}"
    );
}

#[test]
fn unknown_wrongly_typed_and_missing_attack_parameters() {
    assert_eq!(
        one_problem(&with("offset = 3", "ofset = 3")),
        "demo.toml:11:30: attack.params: unknown parameter `ofset` for attack `layer-byte-flip` (known: layer, \
         path, offset)"
    );
    assert_eq!(
        one_problem(&with("offset = 3", "offset = \"ten\"")),
        "demo.toml:11:39: attack.params.offset: expected a non-negative integer, found string `\"ten\"`"
    );
    assert_eq!(
        one_problem(&with("offset = 3", "offset = -1")),
        "demo.toml:11:39: attack.params.offset: expected a non-negative integer, found -1"
    );
    assert_eq!(
        one_problem(&with("path = \"bin/app\", ", "")),
        "demo.toml:10:8: attack.params: attack `layer-byte-flip` needs parameter `path` (file whose data gets the \
         flipped byte)"
    );
    assert_eq!(
        one_problem(&with("path = \"bin/app\"", "path = \"/bin/../app\"")),
        "demo.toml:11:19: attack.params.path: expected a relative path, `/bin/../app` must be relative to the \
         image root (no leading /)"
    );
}

#[test]
fn hardened_undetected_needs_why() {
    let text = with(
        "outcome = \"blocked\"\nerror = \"hash-mismatch\"",
        "outcome = \"undetected\"",
    );
    assert_eq!(
        one_problem(&text),
        "demo.toml:16:1: expect.hardened: an `undetected` hardened profile needs `why` (the honest explanation)"
    );
    let explained = text.replace(
        "outcome = \"undetected\"",
        "outcome = \"undetected\"\nwhy = \"it cannot see it\"",
    );
    assert_eq!(problems(&explained), Vec::<String>::new());
}

#[test]
fn profiles_and_expectations_must_agree() {
    assert_eq!(
        one_problem(&with(
            "[\"vanilla\", \"hardened\"]",
            "[\"vanilla\", \"verity\", \"hardened\"]"
        )),
        "demo.toml:4:24: profiles: `verity` is run but has no [expect.verity] table"
    );
    assert_eq!(
        one_problem(&with("[\"vanilla\", \"hardened\"]", "[\"hardened\"]")),
        "demo.toml:13:9: expect.vanilla: `vanilla` is not in `profiles`"
    );
    assert_eq!(
        one_problem(&with(
            "[\"vanilla\", \"hardened\"]",
            "[\"vanilla\", \"hardened\", \"vanilla\"]"
        )),
        "demo.toml:4:36: profiles: `vanilla` is listed twice"
    );
}

#[test]
fn detected_needs_evidence_and_undetected_cannot_expect_an_error() {
    assert_eq!(
        one_problem(&with(
            "outcome = \"blocked\"\nerror = \"hash-mismatch\"",
            "outcome = \"detected\""
        )),
        "demo.toml:16:1: expect.hardened: `detected` needs its evidence: `error`, `findings` or `device`"
    );
    assert_eq!(
        one_problem(&with(
            "outcome = \"undetected\"",
            "outcome = \"undetected\"\nerror = \"read-only\""
        )),
        "demo.toml:13:1: expect.vanilla: `undetected` cannot expect an error or findings"
    );
}

#[test]
fn id_must_be_kebab_case_and_match_the_file_name() {
    assert_eq!(
        one_problem(&with("id = \"demo\"", "id = \"other\"")),
        "demo.toml:1:6: id: `other` does not match the file name (expected other.toml)"
    );
    assert_eq!(
        one_problem(&with("id = \"demo\"", "id = \"Demo_1\"")),
        "demo.toml:1:6: id: `Demo_1` is not kebab-case (a-z, 0-9 and single dashes)"
    );
}

#[test]
fn duplicate_ids_across_files() {
    let sources = vec![
        ("a/demo.toml".to_owned(), BASE.to_owned()),
        ("b/demo.toml".to_owned(), BASE.to_owned()),
    ];
    let errors = load::load_sources(&sources).unwrap_err();
    let found: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        ["b/demo.toml:1:6: id: duplicate id `demo` (also in a/demo.toml)"]
    );
}

#[test]
fn references_and_images_are_checked() {
    let cve = "[[references]]\nkind = \"cve\"\nid = \"CVE-21-1\"\n\n[image]";
    assert_eq!(
        one_problem(&with("[image]", cve)),
        "demo.toml:6:1: references: a `cve` reference needs an id like CVE-2021-30465"
    );
    let bare = "[[references]]\nkind = \"tuf\"\n\n[image]";
    assert_eq!(
        one_problem(&with("[image]", bare)),
        "demo.toml:6:1: references: each reference needs an `id` or a `url`"
    );
    let build = "from = \"build\"\n\n[[image.layers]]\nfiles = [{ path = \"etc\", dir = true, content = \"x\" }]";
    assert_eq!(
        one_problem(&with("from = \"sample\"", build)),
        "demo.toml:10:10: image.layers.files: `etc` needs exactly one of content = \"...\", symlink = \"...\", dir = \
         true, whiteout = true"
    );
    assert_eq!(
        one_problem(&with("from = \"sample\"", "from = \"pull\"")),
        "demo.toml:6:1: image: from = \"pull\" needs a non-empty `ref`"
    );
}

#[test]
fn a_directory_reports_every_file_and_reads_only_toml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a scenario").unwrap();
    std::fs::write(dir.path().join("broken.toml"), "id = \"broken\"\ntitle = [\n").unwrap();
    std::fs::write(
        dir.path().join("other.toml"),
        BASE.replace("id = \"demo\"", "id = \"other\"")
            .replace("offset = 3", "offset = true"),
    )
    .unwrap();
    let errors = load::load_dir(dir.path()).unwrap_err();
    let found: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{}:", dir.path().join("broken.toml").display())),
        "{}",
        found[0]
    );
    assert!(
        found[1]
            .ends_with("other.toml:11:39: attack.params.offset: expected a non-negative integer, found boolean `true`"),
        "{}",
        found[1]
    );
    assert!(errors.to_string().starts_with("2 problems in the scenarios:\n  "));
    let empty = tempfile::tempdir().unwrap();
    assert!(
        load::load_dir(empty.path())
            .unwrap_err()
            .to_string()
            .ends_with(": no scenario files (*.toml)")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Truncated or spliced scenario text gives problems or a scenario, never a panic.
    #[test]
    fn mangled_text_never_panics(cut in 0..BASE.len(), insert in "[\\PC\n\"=\\[\\]{}]{0,12}") {
        let mut end = cut;
        while !BASE.is_char_boundary(end) {
            end -= 1;
        }
        let mangled = format!("{}{insert}{}", &BASE[..end], &BASE[end..]);
        let _ = load::parse("demo.toml", &mangled);
        let _ = load::parse("demo.toml", &BASE[..end]);
    }
}

#[test]
fn needs_root_names_backends_of_the_scenario_and_says_why() {
    let profiles = "profiles = [\"vanilla\", \"hardened\"]\n";
    let scenario = load::parse(
        "demo.toml",
        &with(
            profiles,
            &format!("{profiles}needs_root = {{ fuse = \"the attacker mounts\" }}\n"),
        ),
    )
    .unwrap();
    assert_eq!(
        scenario
            .needs_root
            .get(&scenarios::RunnerBackend::Fuse)
            .map(String::as_str),
        Some("the attacker mounts")
    );
    let p = one_problem(&with(
        profiles,
        &format!("{profiles}needs_root = {{ kernel = \"mounts\" }}\n"),
    ));
    assert!(
        p.starts_with("demo.toml:5:16: needs_root: every `kernel` cell needs root already"),
        "{p}"
    );
    let p = one_problem(&with(
        profiles,
        &format!("{profiles}backends = [\"kernel\", \"emulated\"]\nneeds_root = {{ fuse = \"mounts\" }}\n"),
    ));
    assert!(
        p.contains("needs_root: `fuse` is not one of the scenario's backends"),
        "{p}"
    );
    let p = one_problem(&with(profiles, &format!("{profiles}needs_root = {{ fuse = \" \" }}\n")));
    assert!(
        p.contains("needs_root.fuse: say why the attack needs root there"),
        "{p}"
    );
}

#[test]
fn an_admission_stage_names_a_known_policy_and_an_attack_that_runs_around_it() {
    let admission = |attack: &str, policy: &str| {
        with(
            "[attack]\nname = \"layer-byte-flip\"\nparams = { path = \"bin/app\", offset = 3 }\n",
            &format!("[admission]\npolicy = \"{policy}\"\n\n[attack]\nname = \"{attack}\"\n"),
        )
    };
    let scenario = load::parse("demo.toml", &admission("tag-moved-after-admission", "kyverno-defaults")).unwrap();
    assert_eq!(
        scenario.admission.map(|a| (a.policy, a.namespace)),
        Some(("kyverno-defaults".to_owned(), "default".to_owned())),
        "the pod is in `default` unless the scenario says otherwise"
    );
    let in_namespace = |namespace: &str| {
        admission("tag-moved-after-admission", "kyverno-prod-only").replace(
            "policy = \"kyverno-prod-only\"\n",
            &format!("policy = \"kyverno-prod-only\"\nnamespace = \"{namespace}\"\n"),
        )
    };
    let scenario = load::parse("demo.toml", &in_namespace("prod")).unwrap();
    assert_eq!(scenario.admission.map(|a| a.namespace).as_deref(), Some("prod"));
    let p = one_problem(&in_namespace("Prod_1"));
    assert!(
        p.contains("admission.namespace: `Prod_1` is not a namespace name"),
        "{p}"
    );
    assert!(load::parse("demo.toml", &admission("registry-split-view", "none")).is_ok());

    let p = one_problem(&admission("tag-moved-after-admission", "kyverno-maybe"));
    assert!(
        p.starts_with("demo.toml:10:10: admission.policy: unknown policy `kyverno-maybe`"),
        "{p}"
    );
    assert!(
        p.contains("kyverno-defaults") && p.contains("none"),
        "the known names are listed: {p}"
    );

    let p = one_problem(&admission("rollback", "none"));
    assert!(p.contains("admission: `rollback` detonates at node-disk"), "{p}");

    let p = one_problem(&with(
        "name = \"layer-byte-flip\"\nparams = { path = \"bin/app\", offset = 3 }",
        "name = \"tag-moved-after-admission\"",
    ));
    assert!(
        p.contains("`tag-moved-after-admission` detonates after admission, so the scenario needs an [admission] stage"),
        "{p}"
    );
}
