//! The admission stage against the cell's real `docker-registry`: each attack in the window between admission
//! and pull, under each admission policy, crossed with every node-side profile, observed cell by cell, with
//! the layer that stopped it named by its evidence.

use super::{emulated, scenario, step};
use scenarios::outcome::{ErrorKind, Outcome};
use scenarios::report::{self, Format};
use scenarios::results::{CellResult, CellStatus};
use scenarios::runner::{self, Hooks};
use veritylab::profile::Profile;

/// The outcome expected of each profile (vanilla, erofs, verity, hardened, enforced) under each admission.
const MATRIX: &[(&str, [Outcome; 5])] = {
    use Outcome::{Blocked as B, Undetected as U};
    &[
        ("", [U, U, U, B, B]),
        ("-kyverno-no-mutate", [U, U, U, B, B]),
        ("-kyverno-verify-digest", [B, B, B, B, B]),
        ("-kyverno-defaults", [B, B, B, B, B]),
        ("-policy-controller", [B, B, B, B, B]),
        ("-kyverno-prod-only", [B, B, B, B, B]),
        ("-kyverno-prod-only-dev", [U, U, U, B, B]),
    ]
};

fn observed(cell: &CellResult) -> (Outcome, &scenarios::outcome::Observation) {
    let CellStatus::Observed { observation, .. } = &cell.status else {
        panic!("{cell:?}");
    };
    (observation.outcome, observation)
}

fn detail<'c>(cell: &'c CellResult, action: &str) -> &'c str {
    step(cell, action).detail.as_deref().unwrap_or_default()
}

#[test]
fn attacks_between_admission_and_pull_are_stopped_by_the_layer_that_pins_or_verifies() {
    testkit::require_tool!("docker-registry");
    for attack in ["tag-moved-after-admission", "registry-split-view"] {
        let set: Vec<_> = MATRIX
            .iter()
            .map(|(suffix, _)| scenario(&format!("{attack}{suffix}")))
            .collect();
        let report = runner::run(&set, &emulated(Hooks::default()), &mut |_| {});
        let text = report::render(&report, Format::Text, false);
        assert!(report.passed(), "{text}");
        for ((suffix, outcomes), result) in MATRIX.iter().zip(&report.scenarios) {
            assert_eq!(result.cells.len(), 5, "{text}");
            for (cell, expected) in result.cells.iter().zip(outcomes) {
                let (outcome, observation) = observed(cell);
                let at = format!("{}/{}", result.id, cell.profile);
                assert_eq!(outcome, *expected, "{at}: {text}");
                let admission = step(cell, "admission");
                let pull_from = if observation.evidence.errors.iter().any(|e| e.step == "admission") {
                    None
                } else {
                    Some(detail(cell, "pull"))
                };
                match *suffix {
                    "" => assert!(detail(cell, "admission").starts_with("no admission policy"), "{at}"),
                    "-kyverno-prod-only-dev" => {
                        let checked = detail(cell, "admission");
                        assert!(
                            checked.contains("no rule matched in namespace \"dev\"")
                                && checked.contains("admitted unchecked"),
                            "the webhook does not apply in dev: {at}: {checked}"
                        );
                        assert!(
                            pull_from.unwrap().contains("/veritylab/app:v1 ("),
                            "pulled by tag: {at}"
                        );
                    }
                    "-kyverno-verify-digest" => {
                        assert!(!admission.ok, "{at}");
                        let denied = &observation.evidence.errors[0];
                        assert_eq!(
                            (denied.kind, denied.step.as_str()),
                            (ErrorKind::AdmissionDenied, "admission")
                        );
                        assert!(
                            denied.message.contains("signature verified"),
                            "the signature passed first: {at}"
                        );
                        assert!(denied.message.contains("without a digest"), "{at}: {}", denied.message);
                    }
                    pinned => {
                        let checked = detail(cell, "admission");
                        assert!(checked.contains("signature verified"), "{at}: {checked}");
                        assert!(checked.contains("resolved to sha256:"), "{at}: {checked}");
                        let pull = pull_from.unwrap();
                        if pinned == "-kyverno-no-mutate" {
                            assert!(
                                checked.contains("the pod keeps lab.example/veritylab/app:v1 "),
                                "{checked}"
                            );
                            assert!(pull.contains("/veritylab/app:v1 ("), "pulled by tag: {at}: {pull}");
                        } else {
                            assert!(
                                checked.contains("pinned to lab.example/veritylab/app:v1@sha256:"),
                                "{checked}"
                            );
                            assert!(
                                pull.contains("/veritylab/app:v1@sha256:"),
                                "pulled by digest: {at}: {pull}"
                            );
                            assert!(
                                observation.grounds.contains("the digest the admission pinned"),
                                "{at}: {}",
                                observation.grounds
                            );
                        }
                    }
                }
                // Whoever refused on the node says so at the node's own step.
                if outcome == Outcome::Blocked
                    && matches!(cell.profile, Profile::Hardened | Profile::Enforced)
                    && let Some(e) = observation
                        .evidence
                        .errors
                        .first()
                        .filter(|e| e.kind != ErrorKind::AdmissionDenied)
                {
                    assert_eq!(
                        (e.kind, e.step.as_str()),
                        (ErrorKind::SignatureMissing, "verify the signature"),
                        "{at}"
                    );
                }
                if attack == "registry-split-view" {
                    let decoys = detail(cell, "stop the registry's front");
                    let node_pulled_the_tag = matches!(*suffix, "" | "-kyverno-no-mutate" | "-kyverno-prod-only-dev");
                    assert_eq!(
                        !decoys.contains("answered 0 requests"),
                        node_pulled_the_tag,
                        "only the node's request for the tag is answered with the decoy: {at}: {decoys}"
                    );
                }
            }
        }
    }
}
