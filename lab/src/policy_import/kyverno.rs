//! Kyverno `ClusterPolicy`/`Policy` (`kyverno.io/v1`) `verifyImages` rules.
//!
//! Kyverno's semantics, and how each maps:
//! - `imageReferences` are wildcard patterns whose `*` crosses `/` (our `**`) and whose `?` is one character
//!   (no equivalent: such a rule is listed and not imported). Kyverno matches them against the image with its
//!   tag or digest (`repo:tag`, `repo@digest`); our rules match the repository, so a trailing `:*`, `@*` or
//!   `*` maps exactly, a pattern naming one tag is widened to its repository (listed), and a pattern with no
//!   wildcard and no tag never matches anything in Kyverno and is listed, not imported.
//! - Each entry is one group of the policy: Kyverno applies every matching rule and entry, and the image
//!   must pass them all. `skipImageReferences` become rules before the entry's in its group, needing no
//!   signature (the group's first match wins), so a skip exempts the image from that entry only.
//! - An attestor set needs `count` of its entries (unset: all). A set of ECDSA P-256 keys needing N of them
//!   is a rule's `key_data` with `key_threshold = N` (distinct keys that signed). Every set must pass: each
//!   further set is a group of its own with the entry's patterns. A set mixing keys with attestors the lab
//!   cannot check needs one of its keys here (listed).
//! - `verifyDigest` (default true) or `mutateDigest` (default true: the pod is pinned to the digest the
//!   webhook verified, so the node pulls by digest) make the rule `require_pull_by_digest`; `mutateDigest`
//!   is also kept as the rule's `mutate_digest`, which an admission stage acts on.
//! - The action is resolved per rule: any entry saying `Enforce` enforces, else the first explicit
//!   `failureAction`, else `spec.validationFailureAction` (default `Audit`). `Audit` admits failures, so its
//!   images need no signature here (listed).
//! - Images no rule matches are admitted unchecked (`unmatched = "allow"`).
//! - `match`/`exclude` by `resources.namespaces` become the rule's `namespaces`/`exclude_namespaces` (under
//!   `any` the union; an `all` with several namespace filters cannot be said and the rule then applies in
//!   every namespace); a namespaced `Policy` applies in its `metadata.namespace` only. Selection by
//!   namespace labels, users, roles, names or object labels is listed, and the rule applies regardless.
//! - Rekor (required by default for keys), certificates, keyless identities, attestations, KMS and Secret
//!   keys and signature repositories are listed as not enforced.

use serde_json::Value;

use super::node::Node;
use super::{Contribution, NotEnforced, Pattern, Problem};
use crate::sign::policy::{RuleFile, Unmatched};

/// Imports one Kyverno document.
pub(super) fn import(document: &Value) -> Result<Contribution, Problem> {
    let mut out = Contribution::default();
    out.policy.unmatched = Unmatched::Allow;
    let spec_node = Node::spec(document, &mut out.not_enforced)?;
    let mut spec = spec_node.fields()?;
    let default_action = match spec.take("validationFailureAction") {
        Some(n) => Action::parse(&n)?,
        None => Action::Audit,
    };
    for field in [
        "background",
        "webhookTimeoutSeconds",
        "failurePolicy",
        "webhookConfiguration",
        "admission",
    ] {
        spec.ignore(field);
    }
    if let Some(n) = spec.take("validationFailureActionOverrides") {
        out.not_enforced.push(NotEnforced {
            path: n.path().to_owned(),
            what: "per-namespace failure actions: veritylab uses the policy's action in every namespace".into(),
        });
    }
    if let Some(n) = spec.take("applyRules")
        && n.str()? == "One"
    {
        out.not_enforced.push(NotEnforced {
            path: n.path().to_owned(),
            what: "applyRules One (stop at the first rule that applies): veritylab applies every matching rule, \
                   which is stricter where rules overlap"
                .into(),
        });
    }
    let rules = spec.take("rules").ok_or_else(|| spec_node.problem("no rules"))?;
    spec.finish(&mut out.not_enforced);
    let policy_namespace = match document.get("kind").and_then(Value::as_str) {
        Some("Policy") => {
            let namespace = document
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str);
            if namespace.is_none() {
                out.not_enforced.push(NotEnforced {
                    path: "metadata.namespace".into(),
                    what: "a namespaced Policy without its namespace (set where it is applied): veritylab applies \
                           it in every namespace"
                        .into(),
                });
            }
            namespace
        }
        _ => None,
    };
    for rule in rules.items()? {
        import_rule(&rule, default_action, policy_namespace, &mut out)?;
    }
    Ok(out)
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Enforce,
    Audit,
}

impl Action {
    fn parse(node: &Node<'_>) -> Result<Self, Problem> {
        match node.str()? {
            "Enforce" | "enforce" => Ok(Self::Enforce),
            "Audit" | "audit" => Ok(Self::Audit),
            other => Err(node.problem(format!("unknown failure action {other:?} (Enforce or Audit)"))),
        }
    }
}

/// Imports one rule; `policy_namespace` is the namespace of a namespaced `Policy`.
fn import_rule(
    rule: &Node<'_>,
    default_action: Action,
    policy_namespace: Option<&str>,
    out: &mut Contribution,
) -> Result<(), Problem> {
    let mut fields = rule.fields()?;
    fields.ignore("name");
    let mut selection = selection(fields.take("match"), fields.take("exclude"), &mut out.not_enforced)?;
    if let Some(namespace) = policy_namespace {
        // A namespaced Policy applies in its own namespace only.
        if !selection.namespaces.is_empty()
            && !selection
                .namespaces
                .iter()
                .any(|g| crate::sign::policy::matches(g, namespace))
        {
            out.not_enforced.push(NotEnforced {
                path: rule.path().to_owned(),
                what: format!("selects no pod of the Policy's namespace {namespace:?}: not imported"),
            });
            return Ok(());
        }
        selection.namespaces = vec![namespace.to_owned()];
    }
    let Some(entries) = fields.take("verifyImages") else {
        for kind in ["validate", "mutate", "generate"] {
            if let Some(n) = fields.take(kind) {
                out.not_enforced.push(NotEnforced {
                    path: n.path().to_owned(),
                    what: format!("a {kind} rule: veritylab imports verifyImages rules only"),
                });
            }
        }
        fields.finish(&mut out.not_enforced);
        return Ok(());
    };
    let entries = entries.items()?;
    // The rule's action: any entry enforcing enforces; else the first explicit one; else the policy's.
    let mut explicit = Vec::new();
    for entry in &entries {
        if let Some(n) = entry.fields()?.take("failureAction") {
            explicit.push(Action::parse(&n)?);
        }
    }
    let action = if explicit.contains(&Action::Enforce) {
        Action::Enforce
    } else {
        explicit.first().copied().unwrap_or(default_action)
    };
    fields.finish(&mut out.not_enforced);
    for entry in &entries {
        import_entry(entry, action, &selection, out)?;
    }
    Ok(())
}

/// The namespaces a rule's `match` and `exclude` select, as far as namespace globs say it exactly.
#[derive(Debug, Clone, Default)]
struct Selection {
    /// Namespaces the rule applies in (empty: every one).
    namespaces: Vec<String>,
    /// Namespaces it does not apply in.
    exclude: Vec<String>,
}

/// One resource filter: its namespace globs, and whether it also selects by something veritylab cannot check.
#[derive(Debug)]
struct Filter {
    namespaces: Option<Vec<String>>,
    other: bool,
}

/// Reads one resource filter (`resources` with `kinds`, `namespaces`, selectors; `subjects`, `roles`) from
/// `fields`. Kinds are fine (pods are what a node runs); other selectors are listed.
fn filter(mut fields: super::node::Fields<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<Filter, Problem> {
    let mut out = Filter {
        namespaces: None,
        other: false,
    };
    for who in ["subjects", "roles", "clusterRoles"] {
        if let Some(n) = fields.take(who) {
            not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: format!("selection by {who}: veritylab does not know who creates the pod"),
            });
            out.other = true;
        }
    }
    if let Some(resources) = fields.take("resources") {
        let mut r = resources.fields()?;
        r.ignore("kinds");
        r.ignore("operations");
        if let Some(n) = r.take("namespaces") {
            let globs = n.strings()?;
            if globs.iter().any(|g| g.contains('?')) {
                not_enforced.push(NotEnforced {
                    path: n.path().to_owned(),
                    what: "a namespace pattern with `?`, which veritylab's globs cannot say".into(),
                });
                out.other = true;
            } else {
                out.namespaces = Some(globs);
            }
        }
        for selector in ["namespaceSelector", "selector", "names", "name", "annotations"] {
            if let Some(n) = r.take(selector) {
                not_enforced.push(NotEnforced {
                    path: n.path().to_owned(),
                    what: format!("selection by {selector}: veritylab selects by namespace name only"),
                });
                out.other = true;
            }
        }
        out.other |= r.finish(not_enforced);
    }
    out.other |= fields.finish(not_enforced);
    Ok(out)
}

/// The filters of a `match` or `exclude`: those under `any`, and those that must all hold (under `all`, or
/// the mapping itself in the older form).
fn filters(node: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<(Vec<Filter>, Vec<Filter>), Problem> {
    let mut fields = node.fields()?;
    let read = |n: Option<Node<'_>>, not_enforced: &mut Vec<NotEnforced>| -> Result<Vec<Filter>, Problem> {
        n.map_or(Ok(Vec::new()), |n| {
            n.items()?
                .iter()
                .map(|item| filter(item.fields()?, not_enforced))
                .collect()
        })
    };
    let any = read(fields.take("any"), not_enforced)?;
    let mut all = read(fields.take("all"), not_enforced)?;
    let legacy = ["resources", "subjects", "roles", "clusterRoles"]
        .iter()
        .any(|k| node.value().get(k).is_some());
    if legacy {
        all.push(filter(fields, not_enforced)?);
    } else {
        fields.finish(not_enforced);
    }
    Ok((any, all))
}

/// The namespaces `match` and `exclude` select. `match`: `any` is the union of its filters (none narrowed if
/// one is not); `all` holds one namespace filter at most, else the rule applies everywhere (listed).
/// `exclude`: a filter selecting by namespace alone excludes those namespaces; any other exclusion is listed
/// and not applied, so the rule applies where upstream might not.
fn selection(
    matched: Option<Node<'_>>,
    excluded: Option<Node<'_>>,
    not_enforced: &mut Vec<NotEnforced>,
) -> Result<Selection, Problem> {
    let mut out = Selection::default();
    if let Some(node) = matched {
        let (any, all) = filters(&node, not_enforced)?;
        let mut narrowing: Vec<Vec<String>> = Vec::new();
        if !any.is_empty() && any.iter().all(|f| f.namespaces.is_some()) {
            narrowing.push(any.into_iter().flat_map(|f| f.namespaces.unwrap_or_default()).collect());
        }
        narrowing.extend(all.into_iter().filter_map(|f| f.namespaces));
        match narrowing.len() {
            0 => {}
            1 => out.namespaces = narrowing.remove(0),
            _ => not_enforced.push(NotEnforced {
                path: node.path().to_owned(),
                what: "several namespace filters that must all hold: veritylab applies the rule in every namespace"
                    .into(),
            }),
        }
    }
    if let Some(node) = excluded {
        let (any, all) = filters(&node, not_enforced)?;
        let mut exact = true;
        for f in any {
            match f {
                Filter {
                    namespaces: Some(globs),
                    other: false,
                } => out.exclude.extend(globs),
                _ => exact = false,
            }
        }
        if !all.is_empty() {
            let by_namespace: Vec<&Filter> = all.iter().filter(|f| f.namespaces.is_some()).collect();
            match by_namespace.as_slice() {
                [one] if all.iter().all(|f| !f.other) => out.exclude.extend(one.namespaces.clone().unwrap_or_default()),
                _ => exact = false,
            }
        }
        if !exact {
            not_enforced.push(NotEnforced {
                path: node.path().to_owned(),
                what: "an exclusion not by namespace alone: veritylab does not exclude those pods (the rule applies)"
                    .into(),
            });
        }
    }
    Ok(out)
}

/// Imports one `verifyImages` entry as one unit (a group of the policy): its skips, then its references.
fn import_entry(
    entry: &Node<'_>,
    action: Action,
    selection: &Selection,
    out: &mut Contribution,
) -> Result<(), Problem> {
    let mut fields = entry.fields()?;
    fields.ignore("failureAction");
    for harmless in ["imageRegistryCredentials", "useCache", "required"] {
        fields.ignore(harmless);
    }
    if let Some(n) = fields.take("type")
        && n.str()? != "Cosign"
    {
        out.not_enforced.push(NotEnforced {
            path: n.path().to_owned(),
            what: format!(
                "{} signatures: veritylab verifies cosign signatures only; entry not imported",
                n.str()?
            ),
        });
        return Ok(());
    }
    let mut patterns = match fields.take("imageReferences") {
        Some(n) => n.items()?,
        None => Vec::new(),
    };
    if let Some(n) = fields.take("image") {
        patterns.push(n);
    }
    if patterns.is_empty() {
        return Err(entry.problem("no imageReferences"));
    }
    let skips = match fields.take("skipImageReferences") {
        Some(n) => n.items()?,
        None => Vec::new(),
    };
    let mutate = fields
        .take("mutateDigest")
        .map(|n| n.bool())
        .transpose()?
        .unwrap_or(true);
    let verify = fields
        .take("verifyDigest")
        .map(|n| n.bool())
        .transpose()?
        .unwrap_or(true);
    if let Some(n) = fields.take("repository") {
        out.not_enforced.push(NotEnforced {
            path: n.path().to_owned(),
            what: format!(
                "signatures looked up in {:?}: veritylab looks next to the image",
                n.str().unwrap_or_default()
            ),
        });
    }
    for unsupported in ["attestations", "validate", "cosignOCI11"] {
        if let Some(n) = fields.take(unsupported) {
            out.not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: format!("{unsupported}: not checked by veritylab"),
            });
        }
    }
    for deprecated in [
        "key",
        "roots",
        "subject",
        "issuer",
        "annotations",
        "additionalExtensions",
    ] {
        if let Some(n) = fields.take(deprecated) {
            out.not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: "a deprecated single-attestor field: write it as attestors to import it".into(),
            });
        }
    }
    let keys = match fields.take("attestors") {
        Some(n) => Some(attestor_keys(&n, &mut out.not_enforced)?),
        None => None,
    };
    fields.finish(&mut out.not_enforced);

    let skips = skips
        .iter()
        .map(|n| Ok(repository_pattern(n, &mut out.not_enforced)?.map(|p| (p, n.path().to_owned()))))
        .collect::<Result<Vec<_>, Problem>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let mut references = Vec::new();
    for node in &patterns {
        if let Some(pattern) = repository_pattern(node, &mut out.not_enforced)? {
            if action == Action::Audit {
                out.not_enforced.push(NotEnforced {
                    path: node.path().to_owned(),
                    what: "Audit: Kyverno reports a failed check and admits the image; veritylab does the same \
                           (no signature required)"
                        .into(),
                });
            }
            references.push((pattern, node.path().to_owned()));
        }
    }
    // What each group of the entry needs: every attestor set must pass, so each set is a group of its own,
    // with the entry's skips and references.
    let needs: Vec<Need> = match (keys, action) {
        (_, Action::Audit) | (None, Action::Enforce) => vec![Need::Nothing],
        (Some(sets), Action::Enforce) if sets.is_empty() => vec![Need::Refuse],
        (Some(sets), Action::Enforce) => sets.into_iter().map(|(keys, n)| Need::Keys(keys, n)).collect(),
    };
    for (k, need) in needs.iter().enumerate() {
        let unit = if k == 0 {
            entry.path().to_owned()
        } else {
            format!("{}.attestors[{k}]", entry.path())
        };
        let mut base = RuleFile::new("");
        base.namespaces = selection.namespaces.clone();
        base.exclude_namespaces = selection.exclude.clone();
        for (pattern, path) in &skips {
            let mut rule = base.clone();
            rule.require_signature = false;
            out.push_pattern(&unit, pattern.clone(), rule, path);
        }
        for (pattern, path) in &references {
            let mut rule = base.clone();
            rule.require_pull_by_digest = Some(mutate || verify);
            rule.mutate_digest = Some(mutate);
            match need {
                Need::Nothing => rule.require_signature = false,
                Need::Refuse => rule.reject = true,
                Need::Keys(keys, needed) => {
                    rule.key_data = keys.clone();
                    rule.key_threshold = (*needed > 1).then_some(*needed);
                }
            }
            out.push_pattern(&unit, pattern.clone(), rule, path);
        }
    }
    Ok(())
}

/// What one group made from a `verifyImages` entry asks of its images.
#[derive(Debug, Clone)]
enum Need {
    /// No signature: the entry has no attestors (Kyverno only handles the digest) or only audits.
    Nothing,
    /// Signatures by this many distinct ones of these PEM keys.
    Keys(Vec<String>, u32),
    /// Refused: no attestor set the lab can check (Kyverno would check something this lab cannot, so
    /// admitting them would be weaker).
    Refuse,
}

/// The key sets of an entry's attestors that the lab can check, each as PEM keys and how many of them must
/// have signed; every set must pass. A set mixing keys with attestors the lab cannot check needs one of its
/// keys here (listed); a set with no key the lab can check is listed and left out.
fn attestor_keys(
    attestors: &Node<'_>,
    not_enforced: &mut Vec<NotEnforced>,
) -> Result<Vec<(Vec<String>, u32)>, Problem> {
    let mut sets = Vec::new();
    for set in attestors.items()? {
        let mut fields = set.fields()?;
        let count = fields.take("count").map(|n| n.count()).transpose()?;
        let entries = fields.take("entries").ok_or_else(|| set.problem("no entries"))?;
        fields.finish(not_enforced);
        let mut keys = Vec::new();
        let mut other = 0usize;
        for entry in entries.items()? {
            match entry_keys(&entry, not_enforced)? {
                Some(k) => keys.extend(k),
                None => other += 1,
            }
        }
        // Kyverno splits a multi-key PEM into entries of the set; the count then runs over all of them.
        let needed = match count {
            None | Some(0) => keys.len() + other,
            Some(n) => n as usize,
        };
        // N of the keys is enforced exactly when every entry is a key the lab can check.
        let exact = !keys.is_empty() && (needed == 1 || (other == 0 && needed <= keys.len()));
        if exact {
            sets.push((keys, u32::try_from(needed).unwrap_or(u32::MAX)));
            continue;
        }
        let what = if keys.is_empty() {
            "no ECDSA P-256 key veritylab can check in this set".to_owned()
        } else {
            format!(
                "needs {needed} of {} signatures (all when count is unset), some by attestors veritylab cannot \
                 check; veritylab checks that one of the keys signed",
                keys.len() + other
            )
        };
        not_enforced.push(NotEnforced {
            path: set.path().to_owned(),
            what,
        });
        if !keys.is_empty() {
            sets.push((keys, 1));
        }
    }
    Ok(sets)
}

/// The PEM keys of one attestor entry, `None` when it is not a key the lab can check.
fn entry_keys(entry: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<Option<Vec<String>>, Problem> {
    let mut fields = entry.fields()?;
    for unsupported in ["keyless", "certificates", "attestor", "annotations", "repository"] {
        if let Some(n) = fields.take(unsupported) {
            not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: format!("{unsupported}: not checked by veritylab"),
            });
        }
    }
    if let Some(n) = fields.take("signatureAlgorithm") {
        sha256_only(&n, not_enforced)?;
    }
    let keys = fields.take("keys");
    fields.finish(not_enforced);
    let Some(keys) = keys else {
        return Ok(None);
    };
    let mut fields = keys.fields()?;
    if let Some(n) = fields.take("signatureAlgorithm") {
        sha256_only(&n, not_enforced)?;
    }
    for unsupported in ["secret", "kms", "ctlog"] {
        if let Some(n) = fields.take(unsupported) {
            not_enforced.push(NotEnforced {
                path: n.path().to_owned(),
                what: format!("{unsupported}: not checked by veritylab"),
            });
        }
    }
    let ignore_tlog = fields
        .take("rekor")
        .map(|n| -> Result<bool, Problem> {
            let mut rekor = n.fields()?;
            rekor.ignore("url");
            rekor.ignore("pubkey");
            let ignore = rekor.take("ignoreTlog").map(|n| n.bool()).transpose()?.unwrap_or(false);
            rekor.finish(not_enforced);
            Ok(ignore)
        })
        .transpose()?
        .unwrap_or(false);
    let pem = fields.take("publicKeys");
    fields.finish(not_enforced);
    if !ignore_tlog {
        not_enforced.push(NotEnforced {
            path: keys.path().to_owned(),
            what: "a Rekor transparency-log entry (Kyverno's default for keys): veritylab checks the signature \
                   offline"
                .into(),
        });
    }
    let Some(pem) = pem else {
        return Ok(None);
    };
    let text = pem.str()?;
    if text.contains("{{") || text.starts_with("k8s://") {
        not_enforced.push(NotEnforced {
            path: pem.path().to_owned(),
            what: "a key from a variable or a Kubernetes Secret: not available to veritylab".into(),
        });
        return Ok(None);
    }
    let blocks = super::pem_blocks(text).map_err(|reason| pem.problem(reason))?;
    let mut usable = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        if super::is_p256(&block) {
            usable.push(block);
        } else {
            not_enforced.push(NotEnforced {
                path: format!("{}[key {}]", pem.path(), i + 1),
                what: "not an ECDSA P-256 public key: veritylab cannot check signatures by it".into(),
            });
        }
    }
    Ok(Some(usable))
}

fn sha256_only(node: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<(), Problem> {
    let algorithm = node.str()?;
    if !algorithm.is_empty() && algorithm != "sha256" {
        not_enforced.push(NotEnforced {
            path: node.path().to_owned(),
            what: format!("{algorithm} signatures: veritylab checks ECDSA with SHA-256"),
        });
    }
    Ok(())
}

/// Our repository glob for one Kyverno image pattern, or `None` (listed) when there is none.
fn repository_pattern(node: &Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Result<Option<Pattern>, Problem> {
    let pattern = node.str()?;
    let mut list = |what: String| {
        not_enforced.push(NotEnforced {
            path: node.path().to_owned(),
            what,
        });
        Ok(None)
    };
    if pattern.contains('?') {
        return list(format!(
            "{pattern:?}: `?` has no equivalent in veritylab's globs; rule not imported"
        ));
    }
    // Kyverno's `*` crosses `/`: ours is `**`.
    let mut glob = String::with_capacity(pattern.len() + 8);
    let mut stars = false;
    for c in pattern.chars() {
        if c == '*' {
            if !stars {
                glob.push_str("**");
            }
            stars = true;
        } else {
            glob.push(c);
            stars = false;
        }
    }
    let last_segment = glob.rsplit('/').next().unwrap_or(&glob);
    if glob.contains('/')
        && let Some(stripped) = glob.strip_suffix(":**").or_else(|| glob.strip_suffix("@**"))
        && !last_segment[..last_segment.len() - 3].contains([':', '@'])
    {
        return Ok(Some(Pattern::Exact(stripped.to_owned())));
    }
    if glob.ends_with("**") {
        return Ok(Some(Pattern::Exact(glob)));
    }
    Ok(super::without_wildcard(&glob, node, not_enforced))
}
