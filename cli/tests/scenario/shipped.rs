//! The scenarios in the repository's `scenarios/` folder: they validate, embedded and from the folder, and
//! show what each profile misses: vanilla misses the layer attacks, hardened only a rollback within the
//! freshness window.

use std::collections::BTreeSet;
use std::path::Path;

use attacks::CATALOGUE;
use scenarios::load;
use scenarios::outcome::Outcome;
use veritylab::profile::Profile;

fn folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn every_shipped_scenario_validates_and_the_embedded_set_is_the_folder() {
    let embedded = load::embedded().unwrap_or_else(|e| panic!("{e}"));
    let from_dir = load::load_dir(&folder()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(embedded.len(), from_dir.len());
    for (a, b) in embedded.iter().zip(&from_dir) {
        assert_eq!((&a.id, &a.attack, &a.expect), (&b.id, &b.attack, &b.expect));
    }
}

#[test]
fn every_catalogue_attack_has_a_scenario_named_after_it() {
    let scenarios = load::embedded().unwrap();
    let ids: BTreeSet<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
    for attack in CATALOGUE {
        assert!(
            ids.contains(attack.name),
            "no scenarios/{}.toml for attack {}",
            attack.name,
            attack.name
        );
    }
    assert_eq!(CATALOGUE.len(), 33, "the catalogue has 33 attacks");
}

#[test]
fn vanilla_misses_layer_attacks_hardened_rollback_and_kernel_signatures_enforced_only_rollback() {
    let scenarios = load::embedded().unwrap();
    let expected = |id: &str, profile: Profile| {
        let scenario = scenarios
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no scenario {id}"));
        scenario.expect.get(&profile).map(|e| e.outcome)
    };
    for id in ["host-layer-swap", "upperdir-write", "overmount"] {
        assert_eq!(
            expected(id, Profile::Vanilla),
            Some(Outcome::Undetected),
            "vanilla must miss {id}"
        );
    }
    for scenario in &scenarios {
        let hardened = scenario
            .expect
            .get(&Profile::Hardened)
            .expect("every scenario runs the hardened profile");
        if hardened.outcome == Outcome::Undetected {
            assert!(
                hardened.why.as_deref().is_some_and(|w| w.len() > 40),
                "{}: say why",
                scenario.id
            );
        }
    }
    let undetected = |profile: Profile| -> Vec<&str> {
        let mut ids: Vec<&str> = scenarios
            .iter()
            .filter(|s| s.expect.get(&profile).is_some_and(|e| e.outcome == Outcome::Undetected))
            .map(|s| s.id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(
        undetected(Profile::Hardened),
        [
            "rollback-within-window",
            "root-hash-signature",
            "root-hash-signature-binary-digest",
            "root-hash-signature-other-key"
        ]
    );
    assert_eq!(undetected(Profile::Enforced), ["rollback-within-window"]);
    // `enforced` is `hardened` (error correction included) plus the kernel's two decisions: its expected
    // outcome differs only where an exec or a layer's root-hash signature is refused.
    let mut differ: Vec<&str> = scenarios
        .iter()
        .filter(|s| s.expect.get(&Profile::Enforced).map(|e| e.outcome) != Some(s.expect[&Profile::Hardened].outcome))
        .map(|s| s.id.as_str())
        .collect();
    differ.sort_unstable();
    assert_eq!(
        differ,
        [
            "exec-unverified",
            "exec-unverified-bind",
            "extra-mount",
            "overmount",
            "root-hash-signature",
            "root-hash-signature-binary-digest",
            "root-hash-signature-other-key"
        ]
    );
}

#[test]
fn the_readme_schema_example_is_a_valid_scenario() {
    let readme = std::fs::read_to_string(folder().join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let scenario = load::parse("layer-byte-flip.toml", example).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.profiles, [Profile::Vanilla, Profile::Hardened]);
    assert_eq!(scenario.attack.integer("offset"), Some(20));
}

/// The outcomes `docs/profiles.md` reasons out for the attacks that separate the containerd profiles from the
/// signed designs (its table "What follows"), one row per attack with the scenarios it names and a column
/// per profile, and the error kind where it names one.
#[test]
fn the_separating_attacks_expect_per_profile_what_docs_profiles_md_reasons() {
    let doc = std::fs::read_to_string(folder().join("../docs/profiles.md")).unwrap();
    let section = &doc[doc.find("### 4.").expect("the section on what follows")..];
    let scenarios = load::embedded().unwrap();
    let mut header: Vec<Profile> = Vec::new();
    let mut checked = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let columns: Vec<&str> = line.split('|').map(str::trim).collect();
        let columns = &columns[1..columns.len() - 1];
        if columns[0] == "attack (scenario)" {
            header = columns[1..columns.len() - 1]
                .iter()
                .map(|c| c.trim_matches('`').parse().unwrap())
                .collect();
            continue;
        }
        if columns[0].starts_with("---") {
            continue;
        }
        let named = columns[0].split_once('(').expect("the row names its scenarios").1;
        let ids: Vec<&str> = named.split('`').skip(1).step_by(2).collect();
        assert!(!ids.is_empty(), "{line}");
        for id in ids {
            let scenario = scenarios
                .iter()
                .find(|s| s.id == id)
                .unwrap_or_else(|| panic!("docs/profiles.md names no scenario {id}"));
            for (profile, cell) in header.iter().zip(&columns[1..]) {
                let word = cell.split_whitespace().next().unwrap();
                let outcome = [Outcome::Blocked, Outcome::Detected, Outcome::Undetected]
                    .into_iter()
                    .find(|o| o.name() == word)
                    .unwrap_or_else(|| panic!("{cell}: not an outcome"));
                let expected = scenario
                    .expect
                    .get(profile)
                    .unwrap_or_else(|| panic!("{id} does not run {profile}"));
                assert_eq!(
                    expected.outcome, outcome,
                    "{id} under {profile}: docs/profiles.md says {cell}"
                );
                if let Some(kind) = cell.split('`').nth(1) {
                    assert_eq!(
                        expected.error.map(|e| e.name()),
                        Some(kind),
                        "{id} under {profile}: docs/profiles.md names {kind}"
                    );
                }
            }
            checked.insert(id);
        }
    }
    assert!(header.contains(&Profile::ContainerdDmverity) && header.contains(&Profile::ContainerdDmverityAuto));
    for id in ["layer-and-tree-replace", "poisoned-unpack", "verity-metadata-removed"] {
        assert!(checked.contains(id), "docs/profiles.md does not reason about {id}");
    }
}
