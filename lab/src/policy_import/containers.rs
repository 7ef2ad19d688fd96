//! `containers-policy.json` (containers/image: CRI-O, podman, skopeo check it at pull).
//!
//! Its semantics, and how each maps:
//! - Only the most specific scope applies: an exact `host/repo:tag`, then repository and namespace prefixes
//!   (whole `/` segments, longest first), then `*.domain` wildcards (any port), then the transport's `""`
//!   scope, then `default`. Rules are written in that order, in one group per document, so the group's first
//!   match picks the same scope. An
//!   exact-reference scope is widened to its repository (listed).
//! - Every requirement of a list must accept the image. `reject` refuses; `insecureAcceptAnything` adds
//!   nothing; `sigstoreSigned` with ECDSA P-256 keys (`keyPath(s)`, `keyData(s)`: base64 of a PEM file, its
//!   first block) needs a signature by one of them. A second `sigstoreSigned`, GPG `signedBy`, `fulcio`,
//!   `pki` and Rekor keys cannot be checked here (listed); a list with nothing checkable but such
//!   requirements refuses its images.
//! - `signedIdentity`: cosign signatures claim a repository without tag, which `matchRepository` and
//!   `exactRepository` accept and the default `matchRepoDigestOrExact` (and `matchExact`, `exactReference`,
//!   `remapIdentity`) refuse: such a list refuses every cosign-signed image upstream, and so here (listed).
//! - Transports other than `docker` are listed.

use base64::Engine as _;
use serde_json::Value;

use super::node::Node;
use super::{Contribution, NotEnforced, Pattern, Problem};
use crate::sign::policy::{RuleFile, Unmatched};

/// What one requirement list amounts to here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Allow,
    Reject,
    Keys { paths: Vec<String>, data: Vec<String> },
}

/// Imports one containers-policy.json.
pub(super) fn import(document: &Value) -> Result<Contribution, Problem> {
    let mut out = Contribution::default();
    let mut root = Node::root(document).fields()?;
    let default = root
        .take("default")
        .ok_or_else(|| Node::root(document).problem("no default"))?;
    let transports = root.take("transports");
    root.finish(&mut out.not_enforced);
    let mut unmatched = decide(&default, &mut out.not_enforced)?;
    if let Some(transports) = transports {
        for (name, transport) in transports.entries()? {
            if name != "docker" {
                out.not_enforced.push(NotEnforced {
                    path: transport.path().to_owned(),
                    what: format!("the {name} transport: veritylab imports registry (docker) scopes only"),
                });
                continue;
            }
            let mut scopes = Vec::new();
            for (scope, node) in transport.entries()? {
                if scope.is_empty() {
                    unmatched = decide(&node, &mut out.not_enforced)?;
                } else {
                    scopes.push((scope, node));
                }
            }
            scopes.sort_by_key(|(scope, _)| std::cmp::Reverse(specificity(scope)));
            for (scope, node) in scopes {
                let decision = decide(&node, &mut out.not_enforced)?;
                for pattern in scope_patterns(&scope, node.path(), &mut out.not_enforced) {
                    out.push_pattern("", pattern, rule(&decision), node.path());
                }
            }
        }
    }
    match unmatched {
        Decision::Allow => out.policy.unmatched = Unmatched::Allow,
        Decision::Reject => out.policy.unmatched = Unmatched::Reject,
        Decision::Keys { paths, data } => {
            out.policy.trusted_keys = paths.into_iter().map(Into::into).collect();
            out.policy.trusted_key_data = data;
        }
    }
    Ok(out)
}

fn rule(decision: &Decision) -> RuleFile {
    let mut rule = RuleFile::new("");
    match decision {
        Decision::Allow => rule.require_signature = false,
        Decision::Reject => rule.reject = true,
        Decision::Keys { paths, data } => {
            rule.keys = paths.iter().map(Into::into).collect();
            rule.key_data = data.clone();
        }
    }
    rule
}

/// How specific a scope is: exact references first, then longer prefixes, then wildcards, longer first.
fn specificity(scope: &str) -> (u8, usize) {
    let last = scope.rsplit('/').next().unwrap_or(scope);
    if scope.starts_with("*.") {
        (0, scope.len())
    } else if scope.contains('/') && last.contains([':', '@']) {
        (2, scope.len())
    } else {
        (1, scope.matches('/').count() * 4096 + scope.len())
    }
}

/// Our repository globs for one scope.
fn scope_patterns(scope: &str, path: &str, not_enforced: &mut Vec<NotEnforced>) -> Vec<Pattern> {
    if let Some(domain) = scope.strip_prefix("*.") {
        return vec![
            Pattern::Exact(format!("*.{domain}/**")),
            Pattern::Exact(format!("*.{domain}:*/**")),
        ];
    }
    let last = scope.rsplit('/').next().unwrap_or(scope);
    if scope.contains('/')
        && let Some(at) = last.find([':', '@'])
    {
        let repository = &scope[..scope.len() - last.len() + at];
        not_enforced.push(NotEnforced {
            path: path.to_owned(),
            what: format!(
                "scope {scope:?} is one tag or digest: veritylab applies it to every image of {repository:?}"
            ),
        });
        return vec![Pattern::Widened(repository.to_owned())];
    }
    vec![Pattern::Exact(scope.to_owned()), Pattern::Exact(format!("{scope}/**"))]
}

/// What a requirement list needs (all of its requirements).
fn decide(list: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<Decision, Problem> {
    let items = list.items()?;
    if items.is_empty() {
        return Err(list.problem("an empty requirement list (containers/image refuses it)"));
    }
    let mut keys: Option<(Vec<String>, Vec<String>)> = None;
    let mut uncheckable = false;
    let mut reject = false;
    for item in items {
        let mut fields = item.fields()?;
        let kind = fields.take("type").ok_or_else(|| item.problem("no type"))?;
        match kind.str()? {
            "reject" => reject = true,
            "insecureAcceptAnything" => {}
            "signedBy" => {
                for f in ["keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"] {
                    fields.ignore(f);
                }
                uncheckable = true;
                not_enforced.push(NotEnforced {
                    path: item.path().to_owned(),
                    what: "a GPG signedBy signature: not checked by veritylab".into(),
                });
            }
            "sigstoreSigned" => match sigstore_keys(&mut fields, &item, not_enforced)? {
                Some(found) if keys.is_none() => keys = Some(found),
                Some(_) => not_enforced.push(NotEnforced {
                    path: item.path().to_owned(),
                    what: "a second sigstoreSigned requirement (all must accept): veritylab checks the first".into(),
                }),
                None => uncheckable = true,
            },
            other => return Err(kind.problem(format!("unknown requirement type {other:?}"))),
        }
        fields.finish(not_enforced);
    }
    Ok(match keys {
        _ if reject => Decision::Reject,
        Some((paths, data)) => Decision::Keys { paths, data },
        None if uncheckable => Decision::Reject,
        None => Decision::Allow,
    })
}

/// The keys of a `sigstoreSigned` requirement, `None` when none can be checked here.
#[allow(clippy::type_complexity)]
fn sigstore_keys(
    fields: &mut super::node::Fields<'_>,
    item: &Node<'_>,
    not_enforced: &mut Vec<NotEnforced>,
) -> Result<Option<(Vec<String>, Vec<String>)>, Problem> {
    for unsupported in [
        "fulcio",
        "pki",
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
    ] {
        if let Some(n) = fields.take(unsupported) {
            not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: format!("{unsupported}: not checked by veritylab"),
            });
        }
    }
    let identity_ok = match fields.take("signedIdentity") {
        None => false,
        Some(n) => {
            let mut f = n.fields()?;
            let kind = f.take("type").ok_or_else(|| n.problem("no type"))?;
            for field in ["dockerReference", "dockerRepository", "prefix", "signedPrefix"] {
                f.ignore(field);
            }
            f.finish(not_enforced);
            match kind.str()? {
                "matchRepository" => true,
                "exactRepository" => {
                    not_enforced.push(NotEnforced {
                        path: n.path().to_owned(),
                        what: "exactRepository: veritylab checks that the signature names the image's own \
                               repository"
                            .into(),
                    });
                    true
                }
                "matchRepoDigestOrExact" | "matchExact" | "exactReference" | "remapIdentity" => false,
                other => return Err(kind.problem(format!("unknown signedIdentity type {other:?}"))),
            }
        }
    };
    let mut paths = Vec::new();
    let mut data = Vec::new();
    if let Some(n) = fields.take("keyPath") {
        paths.push(n.str()?.to_owned());
    }
    if let Some(n) = fields.take("keyPaths") {
        paths.extend(n.strings()?);
    }
    let mut blobs = Vec::new();
    if let Some(n) = fields.take("keyData") {
        blobs.push(n);
    }
    if let Some(n) = fields.take("keyDatas") {
        blobs.extend(n.items()?);
    }
    for blob in blobs {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob.str()?.trim())
            .map_err(|e| blob.problem(format!("keyData is not base64: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| blob.problem("keyData is not PEM text"))?;
        let first = super::pem_blocks(&text)
            .map_err(|reason| blob.problem(reason))?
            .into_iter()
            .next();
        match first {
            Some(pem) if super::is_p256(&pem) => data.push(pem),
            _ => not_enforced.push(NotEnforced {
                path: blob.path().to_owned(),
                what: "not an ECDSA P-256 public key: veritylab cannot check signatures by it".into(),
            }),
        }
    }
    if paths.is_empty() && data.is_empty() {
        return Ok(None);
    }
    if !identity_ok {
        not_enforced.push(NotEnforced {
            path: item.path().to_owned(),
            what: "the signedIdentity (default matchRepoDigestOrExact) refuses cosign signatures, which name a \
                   repository without a tag: every image here is refused upstream, and here"
                .into(),
        });
        return Ok(None);
    }
    Ok(Some((paths, data)))
}
