//! The admission stage of a scenario: the cluster's image policy checked when the pod is created, as
//! Kyverno's or policy-controller's webhook checks it, before the node pulls.
//!
//! A scenario's `[admission] policy = NAME` picks one of the documents of `scenarios/policies/admission/`
//! (embedded here), each written in its controller's real schema; `none` admits pods as written. The cell's
//! publisher key goes where a document says `VERITYLAB-PUBLISHER-KEY` (each cell signs with a fresh key), and
//! the document is imported with `veritylab policy import`'s code into the lab's policy model.
//!
//! The pod names `lab.example/veritylab/app:v1`, which the cluster reaches at the cell's registry on
//! `127.0.0.1`. At admission time, against that registry, [`admit`] does what the webhook does:
//! 1. every rule matching the image's repository and selecting the pod's namespace (the scenario's
//!    `[admission] namespace`, default `default`) applies; none and an `unmatched = "allow"` policy: the pod
//!    is admitted as written, as by a webhook whose policy does not select it;
//! 2. the tag is resolved to the digest it names now (the image is pulled into the controller's own store,
//!    every blob checked against its digest);
//! 3. a required signature is fetched and verified on that digest with each applied rule's keys;
//! 4. with an applied rule's `mutate_digest` (Kyverno's `mutateDigest`, always on for policy-controller) the
//!    pod's image becomes `repo:tag@digest`, else it keeps the tag; then `require_pull_by_digest` (Kyverno's
//!    `verifyDigest`) refuses a pod whose image still has no digest.
//!
//! The check is of one instant: nothing binds what the node pulls later to it unless the pod names the
//! digest.

use std::fmt;

use verity_fuse::ErrorClass;
use veritylab::defence::{self, Defence};
use veritylab::oci::reference::RegistryRef;
use veritylab::oci::{self, ClientOptions, Digest, PullOptions, Reference};
use veritylab::policy_import;
use veritylab::sign::{self, DataCheck, Policy, VerifyError, VerifyOptions};
use veritylab::store::Store;

/// The admission variant that checks nothing: pods are admitted as written.
pub const NONE: &str = "none";

/// The `User-Agent` the admission controller's registry client sends (a webhook is not the node's runtime).
pub const USER_AGENT: &str = "veritylab-scenario-admission-webhook";

/// Where a document's public key goes.
const PUBLISHER_KEY: &str = "VERITYLAB-PUBLISHER-KEY";

/// The admission policies scenarios may name: (name, document).
static MODELS: &[(&str, &str)] = &[
    (
        "kyverno-defaults",
        include_str!("../policies/admission/kyverno-defaults.yaml"),
    ),
    (
        "kyverno-no-mutate",
        include_str!("../policies/admission/kyverno-no-mutate.yaml"),
    ),
    (
        "kyverno-verify-digest",
        include_str!("../policies/admission/kyverno-verify-digest.yaml"),
    ),
    (
        "policy-controller",
        include_str!("../policies/admission/policy-controller.yaml"),
    ),
    (
        "kyverno-prod-only",
        include_str!("../policies/admission/kyverno-prod-only.yaml"),
    ),
];

/// Every name a scenario's `[admission] policy` may take.
pub fn names() -> impl Iterator<Item = &'static str> {
    std::iter::once(NONE).chain(MODELS.iter().map(|(name, _)| *name))
}

/// The admission stage failed to run (a harness failure, never a verdict on the image).
#[derive(Debug, thiserror::Error)]
#[error("admission: {message}")]
pub struct AdmissionError {
    class: ErrorClass,
    message: String,
}

impl AdmissionError {
    fn new(class: ErrorClass, message: impl fmt::Display) -> Self {
        Self {
            class,
            message: message.to_string(),
        }
    }

    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        self.class
    }
}

/// The admission policy `name` with `publisher_pem` as its key, in the lab's model, and how many parts of
/// the document the lab does not enforce; `None` for [`NONE`].
pub fn policy(name: &str, publisher_pem: &str) -> Result<Option<(Policy, usize)>, AdmissionError> {
    if name == NONE {
        return Ok(None);
    }
    let document = MODELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .ok_or_else(|| AdmissionError::new(ErrorClass::BadInput, format!("no admission policy {name:?}")))?;
    let text = with_key(document, publisher_pem);
    let file = format!("policies/admission/{name}.yaml");
    let imported = policy_import::import_str(&file, &text, false).map_err(|e| AdmissionError::new(e.class(), e))?;
    let policy = Policy::from_file(imported.policy, std::path::Path::new("."), std::path::Path::new(&file))
        .map_err(|e| AdmissionError::new(e.class(), e))?;
    Ok(Some((policy, imported.not_enforced.len())))
}

/// `document` with each line holding [`PUBLISHER_KEY`] replaced by the PEM's lines at that line's indentation
/// (a YAML block scalar keeps them as one string).
fn with_key(document: &str, pem: &str) -> String {
    let mut out = String::with_capacity(document.len() + pem.len() * 2);
    for line in document.lines() {
        if let Some(at) = line.find(PUBLISHER_KEY) {
            let indent = &line[..at];
            for pem_line in pem.lines().filter(|l| !l.is_empty()) {
                out.push_str(indent);
                out.push_str(pem_line);
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The image a pod names: the repository's tag, and the digest an admission pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodImage {
    /// The repository as the cluster names it (`lab.example/veritylab/app`).
    pub repository: String,
    /// The tag the pod was written with.
    pub tag: String,
    /// The digest the admission pinned, if it did.
    pub digest: Option<Digest>,
}

impl fmt::Display for PodImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl PodImage {
    /// Where the registry `endpoint` serves this image: its host and repository, with the pod's tag, and
    /// the digest when pinned (which then decides what is pulled).
    pub fn at(&self, endpoint: &RegistryRef) -> RegistryRef {
        RegistryRef {
            host: endpoint.host.clone(),
            repository: endpoint.repository.clone(),
            tag: Some(self.tag.clone()),
            digest: self.digest,
        }
    }
}

/// What the admission controller decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The pod is created with this image; the text says what was checked.
    Admitted {
        /// The pod's image after admission.
        image: PodImage,
        /// What the controller checked and changed.
        detail: String,
    },
    /// The pod is refused.
    Denied {
        /// Why, as the controller says it.
        reason: String,
    },
}

/// Checks the pod's `image`, in the pod's `namespace`, against `policy` at the registry `endpoint` (where the
/// cluster reaches the image's repository), as the admission webhook does (see the module docs). `store` is
/// the controller's own cache; `client` its registry settings.
pub fn admit(
    policy: &Policy,
    image: &PodImage,
    namespace: &str,
    endpoint: &RegistryRef,
    store: &Store,
    client: &ClientOptions,
) -> Result<Decision, AdmissionError> {
    if !defence::on(Defence::Admission) {
        return Ok(Decision::Admitted {
            image: image.clone(),
            detail: "admission check OFF (mutation test): the pod is admitted as written".to_owned(),
        });
    }
    let requirements = policy.requirements(&image.repository, Some(namespace), &[]);
    let rule = match requirements.rules.as_slice() {
        [] => format!("no rule matched in namespace {namespace:?}"),
        [one] => format!("rule {one:?}"),
        many => format!("rules {many:?}"),
    };
    if requirements.reject {
        return Ok(Decision::Denied {
            reason: format!("{rule} refuses {image}"),
        });
    }
    if requirements.rules.is_empty() && !requirements.require_signature && !requirements.require_pull_by_digest {
        return Ok(Decision::Admitted {
            image: image.clone(),
            detail: format!("{rule}: {image} admitted unchecked"),
        });
    }

    let source = Reference::Registry(image.at(endpoint));
    let options = PullOptions {
        client: client.clone(),
        ..PullOptions::default()
    };
    let pulled = match oci::pull(&source, store, &options, &|_| {}) {
        Ok(pulled) => pulled,
        Err(e) if matches!(e.class(), ErrorClass::VerificationFailed | ErrorClass::BadInput) => {
            return Ok(Decision::Denied {
                reason: format!("resolving {image} at {source}: {e}"),
            });
        }
        Err(e) => {
            return Err(AdmissionError::new(
                e.class(),
                format!("resolving {image} at {source}: {e}"),
            ));
        }
    };
    let digest = pulled.manifest;
    let harness = |e: &dyn fmt::Display| AdmissionError::new(ErrorClass::Internal, e);
    let descriptor = store
        .lookup(&pulled.name)
        .map_err(|e| AdmissionError::new(e.class(), e))?;
    let resolved = format!("{}@{digest}", image.repository);
    store
        .tag(&resolved, descriptor)
        .map_err(|e| AdmissionError::new(e.class(), e))?;

    let mut checked = format!("{rule}: {image} resolved to {digest}");
    if requirements.require_signature {
        let Reference::Registry(at) = &source else {
            return Err(harness(&"the pod's image is not in a registry"));
        };
        if sign::fetch_signatures(store, at, &digest, client).map_err(|e| AdmissionError::new(e.class(), e))? {
            let fetched = format!("{}/{}:{}", at.host, at.repository, sign::cosign::signature_tag(&digest));
            let signature = store.lookup(&fetched).map_err(|e| AdmissionError::new(e.class(), e))?;
            store
                .tag(
                    &format!("{}:{}", image.repository, sign::cosign::signature_tag(&digest)),
                    signature,
                )
                .map_err(|e| AdmissionError::new(e.class(), e))?;
        }
        let mut options = VerifyOptions::new(policy.clone(), Vec::new());
        options.namespace = Some(namespace.to_owned());
        options.local = false;
        options.data = DataCheck::Skip("the admission controller checks the signature, not a node's layers");
        match sign::verify_image(store, &resolved, &options) {
            Ok(verified) => {
                checked.push_str(&format!(
                    ", signature verified ({})",
                    verified
                        .signed_by()
                        .map_or_else(|| "none required".to_owned(), |by| format!("key {}", by.key))
                ));
            }
            Err(VerifyError::Rejected { report }) => {
                let finding = report
                    .findings()
                    .next()
                    .map_or_else(|| "a check failed".to_owned(), ToString::to_string);
                return Ok(Decision::Denied {
                    reason: format!("{checked}: {finding}"),
                });
            }
            Err(e) => return Err(AdmissionError::new(e.class(), format!("verifying {resolved}: {e}"))),
        }
    }
    let admitted = PodImage {
        digest: requirements.mutate_digest.then_some(digest),
        ..image.clone()
    };
    if admitted.digest.is_none() && requirements.require_pull_by_digest {
        return Ok(Decision::Denied {
            reason: format!(
                "{checked}; but the pod names {admitted} without a digest, which the policy requires \
                 (verifyDigest) and does not add (mutateDigest off)"
            ),
        });
    }
    let detail = if admitted.digest.is_some() {
        format!("{checked}; the pod's image is pinned to {admitted}")
    } else {
        format!("{checked}; the pod keeps {admitted} (the tag is read again at pull)")
    };
    Ok(Decision::Admitted {
        image: admitted,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> String {
        sign::keys::public_pem(sign::keys::generate().verifying_key())
    }

    #[test]
    fn every_model_imports_with_the_publisher_key_and_says_how_it_pins() {
        let key = pem();
        let expected = [
            ("kyverno-defaults", "default", true, true),
            ("kyverno-no-mutate", "default", false, false),
            ("kyverno-verify-digest", "default", false, true),
            ("policy-controller", "default", true, true),
            ("kyverno-prod-only", "prod", true, true),
        ];
        for (name, namespace, mutate, by_digest) in expected {
            let (policy, _) = policy(name, &key).unwrap().unwrap();
            let requirements = policy.requirements("lab.example/veritylab/app", Some(namespace), &[]);
            assert!(
                !requirements.rules.is_empty(),
                "{name}: the rule matches the pod's repository"
            );
            assert!(requirements.require_signature && !requirements.reject, "{name}");
            assert_eq!(requirements.mutate_digest, mutate, "{name}: mutate_digest");
            assert_eq!(
                requirements.require_pull_by_digest, by_digest,
                "{name}: require_pull_by_digest"
            );
            assert_eq!(requirements.keys.len(), 1, "{name}: the publisher's key");
        }
        let (prod_only, _) = policy("kyverno-prod-only", &key).unwrap().unwrap();
        let dev = prod_only.requirements("lab.example/veritylab/app", Some("dev"), &[]);
        assert!(
            dev.rules.is_empty() && !dev.require_signature && !dev.require_pull_by_digest,
            "outside prod the webhook checks nothing"
        );
        assert_eq!(policy(NONE, &key).unwrap(), None);
        assert!(policy("kyverno-nope", &key).is_err());
        assert_eq!(names().count(), MODELS.len() + 1);
    }

    #[test]
    fn the_pod_image_names_the_tag_and_the_pinned_digest() {
        let digest = Digest::of(b"manifest");
        let image = PodImage {
            repository: "lab.example/veritylab/app".to_owned(),
            tag: "v1".to_owned(),
            digest: Some(digest),
        };
        assert_eq!(image.to_string(), format!("lab.example/veritylab/app:v1@{digest}"));
        let endpoint = RegistryRef {
            host: "127.0.0.1:5000".to_owned(),
            repository: "veritylab/app".to_owned(),
            tag: Some("v1".to_owned()),
            digest: None,
        };
        let at = image.at(&endpoint);
        assert_eq!((at.host.as_str(), at.digest), ("127.0.0.1:5000", Some(digest)));
    }
}
