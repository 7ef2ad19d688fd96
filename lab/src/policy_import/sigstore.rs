//! sigstore policy-controller `ClusterImagePolicy` (`policy.sigstore.dev/v1beta1`, `v1alpha1`: the same
//! fields).
//!
//! policy-controller's semantics, and how each maps:
//! - `images[].glob` uses `*` for a run without `/` and `**` for any run, as ours do. It is matched against
//!   the image's full name with its tag or digest; a trailing `*`/`**` covers the tag, so such globs map to
//!   repository globs; a glob naming a tag is widened to its repository (listed).
//! - Authorities: any one passing passes the policy. Key authorities (ECDSA P-256, inline `key.data`; only
//!   its first PEM block counts, as upstream) become the rule's `key_data`; a `static` `pass` authority
//!   admits without a signature, `fail` refuses. Keyless authorities, KMS and Secret keys cannot be checked
//!   here (listed): with any of them beside keys, only the keys are accepted here; with nothing else, the
//!   rule refuses its images. An authority with attestations is checked upstream by its attestations alone
//!   (listed: here its key's image signature is required instead).
//! - Every image in an opted-in namespace must be named by digest: each rule `require_pull_by_digest`; the
//!   mutating webhook resolves tags to digests first, so each rule is also `mutate_digest`.
//! - Images no policy matches are denied by default (`no-match-policy`): `unmatched = "reject"`.
//! - `mode: warn` admits failures with a warning: its images need no signature here (listed).

use serde_json::Value;

use super::node::Node;
use super::{Contribution, NotEnforced, Pattern, Problem};
use crate::sign::policy::{RuleFile, Unmatched};

/// Imports one ClusterImagePolicy.
pub(super) fn import(document: &Value) -> Result<Contribution, Problem> {
    let mut out = Contribution::default();
    out.policy.unmatched = Unmatched::Reject;
    let spec_node = Node::spec(document, &mut out.not_enforced)?;
    let mut spec = spec_node.fields()?;
    let warn = match spec.take("mode") {
        None => false,
        Some(n) => match n.str()? {
            "enforce" => false,
            "warn" => true,
            other => return Err(n.problem(format!("unknown mode {other:?} (enforce or warn)"))),
        },
    };
    if let Some(n) = spec.take("policy") {
        out.not_enforced.push(NotEnforced {
            path: n.path().to_owned(),
            what: "a CUE or Rego policy over the verified signatures: not evaluated by veritylab".into(),
        });
    }
    if let Some(n) = spec.take("match") {
        out.not_enforced.push(NotEnforced {
            path: n.path().to_owned(),
            what: "selection by resource type or label: veritylab applies the policy to every image".into(),
        });
    }
    let images = spec.take("images").ok_or_else(|| spec_node.problem("no images"))?;
    let authorities = spec
        .take("authorities")
        .ok_or_else(|| spec_node.problem("no authorities"))?;
    spec.finish(&mut out.not_enforced);

    let decision = authorities_decision(&authorities, &mut out.not_enforced)?;
    let mut patterns = Vec::new();
    for image in images.items()? {
        let mut fields = image.fields()?;
        let glob = fields.take("glob").ok_or_else(|| image.problem("no glob"))?;
        fields.finish(&mut out.not_enforced);
        if let Some(p) = repository_glob(&glob, &mut out.not_enforced)? {
            patterns.push((p, glob.path().to_owned()));
        }
    }
    for (pattern, path) in patterns {
        let mut rule = RuleFile::new("");
        rule.require_pull_by_digest = Some(true);
        rule.mutate_digest = Some(true);
        if warn {
            rule.require_signature = false;
            out.not_enforced.push(NotEnforced {
                path: path.clone(),
                what: "mode warn: policy-controller admits a failed image with a warning; veritylab does the \
                       same (no signature required)"
                    .into(),
            });
        } else {
            match &decision {
                Decision::Keys(keys) => rule.key_data = keys.clone(),
                Decision::Pass => rule.require_signature = false,
                Decision::Refuse => rule.reject = true,
            }
        }
        out.push_pattern("", pattern, rule, &path);
    }
    Ok(out)
}

/// What a policy's authorities amount to here.
#[derive(Debug)]
enum Decision {
    /// A signature by any of these keys.
    Keys(Vec<String>),
    /// A `static: pass` authority: no signature needed.
    Pass,
    /// Nothing here can pass: refused.
    Refuse,
}

fn authorities_decision(authorities: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<Decision, Problem> {
    let mut keys = Vec::new();
    let mut pass = false;
    for authority in authorities.items()? {
        let mut fields = authority.fields()?;
        fields.ignore("name");
        for unsupported in ["keyless", "ctlog", "rfc3161timestamp", "signatureFormat"] {
            if let Some(n) = fields.take(unsupported) {
                not_enforced.push(NotEnforced {
                    path: n.path().to_owned(),
                    what: format!("{unsupported}: not checked by veritylab"),
                });
            }
        }
        if let Some(n) = fields.take("source") {
            not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: "signatures looked up in another repository: veritylab looks next to the image".into(),
            });
        }
        if let Some(n) = fields.take("attestations") {
            not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: "attestations (upstream then checks them instead of the image signature): veritylab \
                       requires the key's image signature"
                    .into(),
            });
        }
        if let Some(n) = fields.take("static") {
            let mut s = n.fields()?;
            s.ignore("message");
            let action = s.take("action").ok_or_else(|| n.problem("no action"))?;
            s.finish(not_enforced);
            match action.str()? {
                "pass" => pass = true,
                "fail" => {}
                other => return Err(action.problem(format!("unknown static action {other:?} (pass or fail)"))),
            }
        }
        if let Some(n) = fields.take("key") {
            let mut key = n.fields()?;
            if let Some(h) = key.take("hashAlgorithm")
                && h.str()? != "sha256"
            {
                not_enforced.push(NotEnforced {
                    path: h.path().to_owned(),
                    what: format!("{} signatures: veritylab checks ECDSA with SHA-256", h.str()?),
                });
            }
            for unsupported in ["secretRef", "kms"] {
                if let Some(u) = key.take(unsupported) {
                    not_enforced.push(NotEnforced {
                        path: u.path().to_owned(),
                        what: format!("a key from {unsupported}: not available to veritylab"),
                    });
                }
            }
            let data = key.take("data");
            key.finish(not_enforced);
            if let Some(data) = data {
                let blocks = super::pem_blocks(data.str()?).map_err(|reason| data.problem(reason))?;
                if blocks.len() > 1 {
                    not_enforced.push(NotEnforced {
                        path: data.path().to_owned(),
                        what: "several keys in one PEM: policy-controller uses only the first, and so does \
                               veritylab"
                            .into(),
                    });
                }
                match blocks.into_iter().next() {
                    Some(first) if super::is_p256(&first) => keys.push(first),
                    _ => not_enforced.push(NotEnforced {
                        path: data.path().to_owned(),
                        what: "not an ECDSA P-256 public key: veritylab cannot check signatures by it".into(),
                    }),
                }
            }
        }
        fields.finish(not_enforced);
    }
    Ok(if pass {
        Decision::Pass
    } else if keys.is_empty() {
        Decision::Refuse
    } else {
        Decision::Keys(keys)
    })
}

/// Our repository glob for one policy-controller glob.
fn repository_glob(node: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<Option<Pattern>, Problem> {
    let glob = node.str()?;
    if glob.is_empty() || !glob.chars().all(|c| c.is_ascii_alphanumeric() || "-_:/*.@".contains(c)) {
        return Err(node.problem(format!("{glob:?} is not a glob policy-controller accepts")));
    }
    // Upstream rewrites the bare Docker Hub globs.
    let glob = match glob {
        "*" => "index.docker.io/library/*",
        "*/*" => "index.docker.io/*/*",
        other => other,
    };
    if glob.ends_with('*') {
        return Ok(Some(Pattern::Exact(glob.to_owned())));
    }
    Ok(super::without_wildcard(glob, node, not_enforced))
}
