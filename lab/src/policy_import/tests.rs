use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::sign::keys;
use crate::sign::policy::{Policy, Unmatched};

fn pem() -> String {
    keys::public_pem(keys::generate().verifying_key())
}

/// Imports `text` as one file.
fn import_text(text: &str, strict: bool) -> Result<Imported, ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    import(&[path], strict)
}

fn indent(text: &str, spaces: usize) -> String {
    text.lines().map(|l| format!("{}{l}\n", " ".repeat(spaces))).collect()
}

/// A Kyverno ClusterPolicy with one verifyImages entry.
fn kyverno(action: &str, references: &[&str], attestors: &str) -> String {
    let references: String = references.iter().map(|r| format!("            - {r:?}\n")).collect();
    format!(
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: t\nspec:\n  {action}\n  rules:\n    - name: r\n      match:\n        any:\n          - resources:\n              kinds: [Pod]\n      verifyImages:\n        - imageReferences:\n{references}{attestors}"
    )
}

fn one_key(pem: &str) -> String {
    format!(
        "          attestors:\n            - entries:\n                - keys:\n                    publicKeys: |-\n{}                    rekor:\n                      ignoreTlog: true\n",
        indent(pem, 22)
    )
}

#[test]
fn a_kyverno_rule_with_one_key_imports_exactly() {
    let key = pem();
    let imported = import_text(
        &kyverno(
            "validationFailureAction: Enforce",
            &["127.0.0.1:5000/lab/*"],
            &one_key(&key),
        ),
        true,
    )
    .unwrap();
    let rule = &imported.policy.repository[0];
    assert_eq!(rule.pattern, "127.0.0.1:5000/lab/**", "Kyverno's * crosses /");
    assert_eq!(rule.key_data, vec![key]);
    assert!(rule.require_signature && !rule.reject);
    assert_eq!(
        rule.require_pull_by_digest,
        Some(true),
        "mutateDigest and verifyDigest default to true"
    );
    assert_eq!(
        rule.mutate_digest,
        Some(true),
        "mutateDigest is kept for an admission stage to pin the digest"
    );
    assert_eq!(
        imported.policy.unmatched,
        Unmatched::Allow,
        "Kyverno admits images no rule names"
    );
    assert!(imported.not_enforced.is_empty(), "{:?}", imported.not_enforced);
}

#[test]
fn kyverno_defaults_to_audit_which_admits() {
    let imported = import_text(&kyverno("background: true", &["r/*"], &one_key(&pem())), false).unwrap();
    assert!(!imported.policy.repository[0].require_signature);
    assert!(imported.not_enforced.iter().any(|l| l.part.what.starts_with("Audit")));
    assert!(matches!(
        import_text(&kyverno("background: true", &["r/*"], &one_key(&pem())), true),
        Err(ImportError::NotEnforced(_))
    ));
}

#[test]
fn rekor_is_required_by_default_and_listed() {
    let key = pem();
    let attestors = format!(
        "          attestors:\n            - entries:\n                - keys:\n                    publicKeys: |-\n{}",
        indent(&key, 22)
    );
    let imported = import_text(
        &kyverno("validationFailureAction: Enforce", &["r/*"], &attestors),
        false,
    )
    .unwrap();
    assert_eq!(imported.policy.repository[0].key_data, vec![key]);
    assert!(imported.not_enforced.iter().any(|l| l.part.what.contains("Rekor")));
}

#[test]
fn two_keys_in_one_pem_need_both_without_a_count() {
    let (a, b) = (pem(), pem());
    let both = format!("{a}{b}");
    let imported = import_text(
        &kyverno("validationFailureAction: Enforce", &["r/*"], &one_key(&both)),
        false,
    )
    .unwrap();
    assert!(imported.not_enforced.is_empty(), "{:?}", imported.not_enforced);
    let rule = &imported.policy.repository[0];
    assert_eq!(rule.key_data, vec![a.clone(), b.clone()]);
    assert_eq!(rule.key_threshold, Some(2), "no count: every key must have signed");
    let with_count = one_key(&both).replace(
        "            - entries:",
        "            - count: 1\n              entries:",
    );
    let imported = import_text(
        &kyverno("validationFailureAction: Enforce", &["r/*"], &with_count),
        true,
    )
    .unwrap();
    assert_eq!(
        imported.policy.repository[0].key_data,
        vec![a, b],
        "count 1: any of the keys"
    );
    assert_eq!(imported.policy.repository[0].key_threshold, None, "count 1: one signer");
}

#[test]
fn an_entry_with_only_keyless_attestors_refuses_its_images() {
    let attestors = "          attestors:\n            - entries:\n                - keyless:\n                    issuer: https://issuer.example\n                    subject: someone\n";
    let imported = import_text(&kyverno("validationFailureAction: Enforce", &["r/*"], attestors), false).unwrap();
    assert!(
        imported.policy.repository[0].reject,
        "nothing checkable: refused, never admitted unchecked"
    );
    let err = import_text(&kyverno("validationFailureAction: Enforce", &["r/*"], attestors), true).unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadInput);
    assert!(err.to_string().contains("keyless"), "{err}");
}

#[test]
fn kyverno_patterns_become_repository_globs() {
    let attestors = one_key(&pem());
    let imported = import_text(
        &kyverno(
            "validationFailureAction: Enforce",
            &[
                "reg/app:*",
                "reg/exact",
                "reg/pinned:v1",
                "reg/app?",
                "reg/**/x*",
                "127.0.0.1:*",
            ],
            &attestors,
        ),
        false,
    )
    .unwrap();
    let patterns: Vec<_> = imported.policy.repository.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(patterns, ["reg/app", "reg/pinned", "reg/**/x**", "127.0.0.1:**"]);
    let listed: Vec<_> = imported.not_enforced.iter().map(|l| l.part.what.as_str()).collect();
    assert!(
        listed.iter().any(|w| w.contains("matches no image upstream")),
        "{listed:?}"
    );
    assert!(listed.iter().any(|w| w.contains("names one tag")), "{listed:?}");
    assert!(listed.iter().any(|w| w.contains("`?`")), "{listed:?}");
}

#[test]
fn a_rule_admitting_one_tag_unsigned_is_never_widened_to_its_repository() {
    let mut text = kyverno("validationFailureAction: Enforce", &["reg/*"], &one_key(&pem()));
    text = text.replace(
        "        - imageReferences:\n",
        "        - skipImageReferences: [\"reg/app:debug\"]\n          imageReferences:\n",
    );
    let imported = import_text(&text, false).unwrap();
    let rules = &imported.policy.repository;
    assert_eq!(rules.len(), 1, "the skip of one tag is not imported: {rules:?}");
    assert!(rules[0].require_signature, "reg/app:v1 still needs its signature");
    assert!(
        imported
            .not_enforced
            .iter()
            .any(|l| l.part.path.ends_with("skipImageReferences[0]") && l.part.what.contains("not imported")),
        "{:?}",
        imported.not_enforced
    );
}

#[test]
fn skipped_references_come_first_and_need_nothing() {
    let mut text = kyverno("validationFailureAction: Enforce", &["reg/*"], &one_key(&pem()));
    text = text.replace(
        "        - imageReferences:\n",
        "        - skipImageReferences: [\"reg/debug/*\"]\n          imageReferences:\n",
    );
    let imported = import_text(&text, true).unwrap();
    let rules = &imported.policy.repository;
    assert_eq!(rules[0].pattern, "reg/debug/**");
    assert!(!rules[0].require_signature);
    assert_eq!(rules[1].pattern, "reg/**");
}

#[test]
fn unknown_fields_are_listed_never_dropped() {
    let text = kyverno("validationFailureAction: Enforce", &["r/*"], &one_key(&pem())).replace(
        "        - imageReferences:",
        "        - futureField: 1\n          imageReferences:",
    );
    let imported = import_text(&text, false).unwrap();
    assert_eq!(imported.not_enforced.len(), 1);
    assert_eq!(
        imported.not_enforced[0].part.path,
        "spec.rules[0].verifyImages[0].futureField"
    );
}

#[test]
fn a_cluster_image_policy_maps_its_authorities() {
    let key = pem();
    let text = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n  images:\n    - glob: \"reg/team/*\"\n  authorities:\n    - key:\n        data: |\n{}---\napiVersion: policy.sigstore.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata:\n  name: q\nspec:\n  images:\n    - glob: \"other/**\"\n  authorities:\n    - static:\n        action: pass\n",
        indent(&key, 10)
    );
    let imported = import_text(&text, true).unwrap();
    let rules = &imported.policy.repository;
    assert_eq!(rules[0].pattern, "reg/team/*", "policy-controller's globs are ours");
    assert_eq!(rules[0].key_data, vec![key]);
    assert!(!rules[1].require_signature);
    assert!(rules.iter().all(|r| r.require_pull_by_digest == Some(true)));
    assert_eq!(
        imported.policy.unmatched,
        Unmatched::Reject,
        "no-match-policy defaults to deny"
    );
    assert_eq!(imported.sources.len(), 2);
}

#[test]
fn containers_policy_scopes_go_most_specific_first() {
    use base64::Engine as _;
    let key = pem();
    let data = base64::engine::general_purpose::STANDARD.encode(&key);
    let text = format!(
        r#"{{"default": [{{"type": "insecureAcceptAnything"}}],
            "transports": {{"docker": {{
              "reg.example": [{{"type": "reject"}}],
              "reg.example/team/app:v1": [{{"type": "reject"}}],
              "reg.example/team": [{{"type": "sigstoreSigned", "keyData": "{data}", "signedIdentity": {{"type": "matchRepository"}}}}],
              "*.mirror.example": [{{"type": "insecureAcceptAnything"}}]
            }}}}}}"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, text).unwrap();
    let imported = import(&[path], false).unwrap();
    let patterns: Vec<_> = imported.policy.repository.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(
        patterns,
        [
            "reg.example/team/app",
            "reg.example/team",
            "reg.example/team/**",
            "reg.example",
            "reg.example/**",
            "*.mirror.example/**",
            "*.mirror.example:*/**"
        ]
    );
    assert_eq!(imported.policy.repository[1].key_data, vec![key]);
    assert!(imported.policy.repository[3].reject);
    assert_eq!(imported.policy.unmatched, Unmatched::Allow);
    assert_eq!(
        imported.not_enforced.len(),
        1,
        "the exact-tag scope is widened: {:?}",
        imported.not_enforced
    );
}

#[test]
fn the_default_signed_identity_refuses_cosign_signatures() {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(pem());
    let text = format!(r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{data}"}}]}}"#);
    let imported = import_text(&text, false).unwrap();
    assert_eq!(imported.policy.unmatched, Unmatched::Reject);
    assert!(imported.not_enforced[0].part.what.contains("matchRepoDigestOrExact"));
}

#[test]
fn bad_documents_name_the_document_and_path() {
    let err = import_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n", false).unwrap_err();
    assert!(err.to_string().contains("document 1 (ConfigMap/c)"), "{err}");
    let text = kyverno(
        "validationFailureAction: Enforce",
        &["r/*"],
        &one_key("-----BEGIN PUBLIC KEY-----\nAAAA"),
    );
    let err = import_text(&text, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.rules[0].verifyImages[0].attestors[0].entries[0].keys.publicKeys"),
        "{err}"
    );
    let err = import_text(&kyverno("validationFailureAction: Sometimes", &["r/*"], ""), false).unwrap_err();
    assert!(err.to_string().contains("Sometimes"), "{err}");
    assert!(matches!(import_text("", false), Err(ImportError::Empty { .. })));
}

#[test]
fn an_oversized_file_is_refused_before_parsing() {
    let text = format!("# {}\n", "x".repeat(DOCUMENT_LIMIT as usize));
    assert!(matches!(import_text(&text, false), Err(ImportError::TooLarge { .. })));
}

#[test]
fn the_printed_toml_reads_back_to_the_same_policy() {
    let text = kyverno(
        "validationFailureAction: Enforce",
        &["reg/*", "reg2/app:*"],
        &one_key(&pem()),
    );
    let imported = import_text(&text, true).unwrap();
    let toml = imported.policy.to_toml().unwrap();
    let (base, path) = (Path::new("."), Path::new("imported.toml"));
    assert_eq!(
        Policy::parse(&toml, base, path).unwrap(),
        Policy::from_file(imported.policy, base, path).unwrap()
    );
}

#[test]
fn overlapping_kyverno_rules_become_groups_that_all_apply() {
    let (a, b) = (pem(), pem());
    let mut text = kyverno("validationFailureAction: Enforce", &["reg/*"], &one_key(&a));
    text.push_str(&format!(
        "    - name: app\n      verifyImages:\n        - imageReferences: [\"reg/app*\"]\n{}",
        one_key(&b)
    ));
    let imported = import_text(&text, true).unwrap();
    let groups: Vec<Option<&str>> = imported.policy.repository.iter().map(|r| r.group.as_deref()).collect();
    assert_eq!(
        groups,
        [
            Some("ClusterPolicy/t spec.rules[0].verifyImages[0]"),
            Some("ClusterPolicy/t spec.rules[1].verifyImages[0]")
        ]
    );
    let policy = Policy::from_file(imported.policy, Path::new("."), Path::new("p.toml")).unwrap();
    let requirements = policy.requirements("reg/app", Some("default"), &[]);
    assert_eq!(requirements.key_sets.len(), 2, "both rules' keys are needed");
    assert_eq!(policy.requirements("reg/lib", Some("default"), &[]).key_sets.len(), 1);
}

#[test]
fn every_attestor_set_of_an_entry_is_a_group_of_its_own() {
    let (a, b) = (pem(), pem());
    let second = one_key(&b).replace("          attestors:\n", "");
    let text = kyverno(
        "validationFailureAction: Enforce",
        &["reg/*"],
        &format!("{}{second}", one_key(&a)),
    )
    .replace(
        "        - imageReferences:\n",
        "        - skipImageReferences: [\"reg/debug/*\"]\n          imageReferences:\n",
    );
    let imported = import_text(&text, true).unwrap();
    let rules: Vec<(&str, Option<&str>, bool)> = imported
        .policy
        .repository
        .iter()
        .map(|r| (r.pattern.as_str(), r.group.as_deref(), r.require_signature))
        .collect();
    let (first, other) = (
        "ClusterPolicy/t spec.rules[0].verifyImages[0]",
        "ClusterPolicy/t spec.rules[0].verifyImages[0].attestors[1]",
    );
    assert_eq!(
        rules,
        [
            ("reg/debug/**", Some(first), false),
            ("reg/**", Some(first), true),
            ("reg/debug/**", Some(other), false),
            ("reg/**", Some(other), true),
        ]
    );
    let policy = Policy::from_file(imported.policy, Path::new("."), Path::new("p.toml")).unwrap();
    let sets = policy.requirements("reg/app", Some("default"), &[]).key_sets;
    assert_eq!(sets.len(), 2, "both sets must pass");
    assert!(
        policy
            .requirements("reg/debug/x", Some("default"), &[])
            .key_sets
            .is_empty()
    );
}

#[test]
fn kyverno_namespaces_decide_which_rules_apply() {
    let key = pem();
    let selected = |selection: &str| {
        let text = kyverno("validationFailureAction: Enforce", &["reg/*"], &one_key(&key)).replace(
            "      match:\n        any:\n          - resources:\n              kinds: [Pod]\n",
            selection,
        );
        import_text(&text, false).unwrap()
    };
    let imported = selected(
        "      match:\n        any:\n          - resources:\n              kinds: [Pod]\n              namespaces: [\"prod-*\"]\n          - resources:\n              namespaces: [billing]\n      exclude:\n        any:\n          - resources:\n              namespaces: [prod-sandbox]\n",
    );
    let rule = &imported.policy.repository[0];
    assert_eq!(rule.namespaces, ["prod-*", "billing"], "any: the union");
    assert_eq!(rule.exclude_namespaces, ["prod-sandbox"]);
    assert!(imported.not_enforced.is_empty(), "{:?}", imported.not_enforced);

    // Selection by namespace labels is listed with its path, and the rule applies in every namespace.
    let imported = selected(
        "      match:\n        any:\n          - resources:\n              namespaceSelector:\n                matchLabels: {env: prod}\n",
    );
    assert!(imported.policy.repository[0].namespaces.is_empty());
    assert!(
        imported
            .not_enforced
            .iter()
            .any(|l| l.part.path == "spec.rules[0].match.any[0].resources.namespaceSelector"),
        "{:?}",
        imported.not_enforced
    );

    // Two namespace filters that must both hold: not said, listed, every namespace.
    let imported = selected(
        "      match:\n        all:\n          - resources:\n              namespaces: [\"prod-*\"]\n          - resources:\n              namespaces: [\"*-eu\"]\n",
    );
    assert!(imported.policy.repository[0].namespaces.is_empty());
    assert!(
        imported
            .not_enforced
            .iter()
            .any(|l| l.part.path == "spec.rules[0].match")
    );

    // An exclusion by user is not applied (the rule applies), and listed.
    let imported = selected(
        "      exclude:\n        any:\n          - subjects:\n              - kind: User\n                name: admin\n",
    );
    assert!(imported.policy.repository[0].exclude_namespaces.is_empty());
    assert!(
        imported
            .not_enforced
            .iter()
            .any(|l| l.part.path == "spec.rules[0].exclude")
    );

    // A namespaced Policy applies in its own namespace only.
    let text = kyverno("validationFailureAction: Enforce", &["reg/*"], &one_key(&key)).replace(
        "kind: ClusterPolicy\nmetadata:\n",
        "kind: Policy\nmetadata:\n  namespace: team-a\n",
    );
    let imported = import_text(&text, true).unwrap();
    assert_eq!(imported.policy.repository[0].namespaces, ["team-a"]);
}

/// One rule of our model that Kyverno can say: a repository prefix, keys (one needed), the namespaces it
/// applies in and those it does not.
type Generated = (String, Vec<String>, Vec<String>, Vec<String>);

/// Writes rules of our model as Kyverno rules, each its own rule (so its own group): repository glob `P/**`
/// as `P/*`, keys as one attestor set needing one of them, no Rekor, namespaces as `match`/`exclude`.
fn as_kyverno(rules: &[Generated]) -> String {
    let mut text = String::from(
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: generated\nspec:\n  validationFailureAction: Enforce\n  rules:\n",
    );
    for (i, (prefix, keys, namespaces, excluded)) in rules.iter().enumerate() {
        let namespaces = if namespaces.is_empty() {
            String::new()
        } else {
            format!("              namespaces: {namespaces:?}\n")
        };
        let excluded = if excluded.is_empty() {
            String::new()
        } else {
            format!("      exclude:\n        any:\n          - resources:\n              namespaces: {excluded:?}\n")
        };
        text.push_str(&format!(
            "    - name: rule-{i}\n      match:\n        any:\n          - resources:\n              kinds: [Pod]\n{namespaces}{excluded}      verifyImages:\n        - imageReferences: [\"{prefix}/*\"]\n          attestors:\n            - count: 1\n              entries:\n"
        ));
        for key in keys {
            text.push_str(&format!(
                "                - keys:\n                    rekor: {{ignoreTlog: true}}\n                    publicKeys: |-\n{}",
                indent(key, 22)
            ));
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn our_model_survives_a_trip_through_kyverno(
        prefixes in proptest::collection::vec("[a-z]{1,6}(/[a-z0-9]{1,6}){0,2}", 1..4),
        key_counts in proptest::collection::vec(1usize..3, 4),
        namespaces in proptest::collection::vec(proptest::collection::vec("[a-z]{1,4}(-[a-z*]{1,3})?", 0..3), 4),
        excluded in proptest::collection::vec(proptest::collection::vec("[a-z]{1,4}(-[a-z*]{1,3})?", 0..2), 4),
    ) {
        let pool: Vec<String> = (0..3).map(|_| pem()).collect();
        let rules: Vec<Generated> = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("reg{i}.example/{p}"),
                    pool[..key_counts[i]].to_vec(),
                    namespaces[i].clone(),
                    excluded[i].clone(),
                )
            })
            .collect();
        let imported = import_text(&as_kyverno(&rules), true).unwrap();
        let back: Vec<Generated> = imported
            .policy
            .repository
            .iter()
            .map(|r| {
                (
                    r.pattern.trim_end_matches("/**").to_owned(),
                    r.key_data.clone(),
                    r.namespaces.clone(),
                    r.exclude_namespaces.clone(),
                )
            })
            .collect();
        prop_assert_eq!(back, rules);
        prop_assert!(imported.policy.repository.iter().all(|r| r.require_signature && !r.reject));
        let groups: Vec<String> = (0..prefixes.len())
            .map(|i| format!("ClusterPolicy/generated spec.rules[{i}].verifyImages[0]"))
            .collect();
        let imported_groups: Vec<String> =
            imported.policy.repository.iter().filter_map(|r| r.group.clone()).collect();
        prop_assert_eq!(imported_groups, groups, "each Kyverno rule its own group");
    }
}
