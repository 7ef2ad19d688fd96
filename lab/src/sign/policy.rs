//! The trust policy: a TOML file saying which repositories need signatures, which keys are trusted, and
//! which classic holes to close (tag TOCTOU, rollback, mix-and-match). Unknown keys are an error, never
//! ignored: a misspelt `require_signatrue` must not silently weaken the policy.
//!
//! ```toml
//! trusted_keys = ["release.pub"]        # PEM public keys, relative to this file
//! require_pull_by_digest = false        # refuse images pulled by tag (tag TOCTOU)
//! single_signed_manifest = true         # every layer from the one signed manifest (mix-and-match)
//! scheme = "cosign"                     # or "delivery-kit"
//! root_hash_annotation = "org.veritylab.dm-verity.root-hash"
//!
//! [[repository]]                        # within a group, the first rule whose pattern matches wins
//! pattern = "127.0.0.1:*/lab/**"        # `*`: any run of characters but `/`; `**`: any run at all
//! require_signature = true
//! keys = ["lab.pub"]                    # only these keys here (not even --key)
//! key_threshold = 1                     # signatures by at least this many distinct keys (N of M)
//! require_pull_by_digest = true
//! mutate_digest = true                  # admission pins the pod's image to the digest it verified
//! min_build_timestamp = "2026-11-01T00:00:00Z"   # rollback: older signed builds are refused
//!
//! [[repository]]
//! pattern = "127.0.0.1:*/quarantine/**"
//! reject = true                         # refused whatever they carry
//!
//! [[repository]]
//! pattern = "127.0.0.1:*/**"
//! group = "release"                     # a further group: its first match applies too (AND)
//! namespaces = ["prod-*"]               # only for pods in these namespaces (globs, `*`)
//! exclude_namespaces = ["prod-sandbox"]
//! keys = ["release.pub"]
//! ```
//!
//! Rules of one group are alternatives: the first whose pattern matches (and, for a pod's namespace, which
//! selects it) is that group's rule. Rules without `group` form one group of their own. Every group with a
//! rule for the image applies, and the image must meet all of them: it is refused if any says `reject`, needs
//! a signature if any does, and needs each applied rule's keys separately (for every rule, `key_threshold`
//! distinct keys of that rule whose signatures verify). Without a namespace (the node's `verify` and `mount`
//! know none unless given `--namespace`), selection fails closed: within a group, every namespace-narrowed
//! rule before the first unnarrowed match applies too, and where every match is narrowed, what `unmatched`
//! asks is added as well, so the answer is never weaker than the one for any real namespace.
//!
//! Without a matching rule a signature is required by any key in `trusted_keys` (or given with `--key`);
//! `unmatched = "allow"` admits such images unchecked and `unmatched = "reject"` refuses them. Keys may also be
//! given inline as PEM text (`trusted_key_data`, a rule's `key_data`), as `veritylab policy import` writes
//! them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Scheme;
use super::keys::{self, KeyError, PublicKey};
use super::timestamp::BuildTimestamp;
use crate::defence::{self, Defence};
use verity_fuse::ErrorClass;

/// The largest policy file read.
const POLICY_LIMIT: u64 = 1 << 20;

/// The policy as written in TOML: what `veritylab policy import` produces and prints, and what
/// [`Policy::parse`] reads. Keys are PEM files relative to the policy (`trusted_keys`, a rule's `keys`) or the
/// PEM text itself (`trusted_key_data`, a rule's `key_data`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// PEM public keys trusted everywhere, relative to the policy file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<PathBuf>,
    /// PEM public keys trusted everywhere, inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_key_data: Vec<String>,
    /// Refuse images named by tag.
    #[serde(default)]
    pub require_pull_by_digest: bool,
    /// Every layer from the one signed manifest.
    #[serde(default = "yes")]
    pub single_signed_manifest: bool,
    /// The signature scheme, when fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    /// The root-hash annotation key, when not the scheme's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash_annotation: Option<String>,
    /// What images no rule matches need.
    #[serde(default, skip_serializing_if = "Unmatched::is_default")]
    pub unmatched: Unmatched,
    /// Repository rules: in each group the first match wins, and every group with a match applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository: Vec<RuleFile>,
}

/// What an image no repository rule matches needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unmatched {
    /// Nothing: it is admitted unchecked (Kyverno: images no rule names are not verified).
    Allow,
    /// A valid signature by a trusted key.
    #[default]
    RequireSignature,
    /// It is refused (containers-policy.json `reject`, policy-controller's default `no-match-policy`).
    Reject,
}

impl Unmatched {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for PolicyFile {
    /// As an empty file reads: signatures by trusted keys required everywhere, one signed manifest.
    fn default() -> Self {
        Self {
            trusted_keys: Vec::new(),
            trusted_key_data: Vec::new(),
            require_pull_by_digest: false,
            single_signed_manifest: true,
            scheme: None,
            root_hash_annotation: None,
            unmatched: Unmatched::default(),
            repository: Vec::new(),
        }
    }
}

impl PolicyFile {
    /// Appends `other`'s rules and trusted keys after this file's; where the two differ on a setting, the
    /// stricter is kept (`require_pull_by_digest`, `single_signed_manifest`, `unmatched`), as two policies
    /// enforced one after the other would.
    pub fn merge(&mut self, other: PolicyFile) {
        self.trusted_keys.extend(other.trusted_keys);
        for key in other.trusted_key_data {
            if !self.trusted_key_data.contains(&key) {
                self.trusted_key_data.push(key);
            }
        }
        self.require_pull_by_digest |= other.require_pull_by_digest;
        self.single_signed_manifest |= other.single_signed_manifest;
        self.unmatched = self.unmatched.max(other.unmatched);
        self.repository.extend(other.repository);
    }

    /// The TOML text of this policy, which [`Policy::parse`] reads back to the same policy.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

/// One repository rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The repository glob ([`matches`]).
    pub pattern: String,
    /// The group the rule is an alternative within; unset: the group of every rule without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Namespaces (globs, `*` any run) whose pods the rule applies to; empty: every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces (globs) whose pods the rule does not apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_namespaces: Vec<String>,
    /// Images need a valid signature.
    #[serde(default = "yes")]
    pub require_signature: bool,
    /// Images are refused whatever they carry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
    /// Keys trusted for this repository only (files, relative to the policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<PathBuf>,
    /// Keys trusted for this repository only (inline PEM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_data: Vec<String>,
    /// Valid signatures needed, each by a distinct trusted key (Kyverno's attestor `count`); unset: one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_threshold: Option<u32>,
    /// Overrides the policy's `require_pull_by_digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_pull_by_digest: Option<bool>,
    /// Whether an admission check rewrites a tag it verified to that tag's digest (Kyverno's `mutateDigest`,
    /// policy-controller's tag resolution), so the node pulls exactly what was verified. Only an admission
    /// stage acts on it; `require_pull_by_digest` is what the node itself demands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutate_digest: Option<bool>,
    /// Oldest acceptable build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_build_timestamp: Option<BuildTimestamp>,
}

impl RuleFile {
    /// A rule for `pattern` requiring a signature, nothing else set.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            group: None,
            namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            require_signature: true,
            reject: false,
            keys: Vec::new(),
            key_data: Vec::new(),
            key_threshold: None,
            require_pull_by_digest: None,
            mutate_digest: None,
            min_build_timestamp: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// A policy that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("policy {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse into a policy (unknown keys land here).
    #[error("policy {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        reason: String,
    },
    /// A pattern is empty.
    #[error("policy {}: repository rule {index} has an empty pattern", path.display())]
    Pattern {
        /// The file.
        path: PathBuf,
        /// The rule's position (1-based).
        index: usize,
    },
    /// A key named by the policy cannot be read.
    #[error("policy {}: {source}", path.display())]
    Key {
        /// The policy file.
        path: PathBuf,
        /// The key problem.
        #[source]
        source: KeyError,
    },
}

impl PolicyError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            Self::Parse { .. } | Self::Pattern { .. } => ErrorClass::BadInput,
            Self::Key { source, .. } => source.class(),
        }
    }
}

/// One repository rule, its keys loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The pattern.
    pub pattern: String,
    /// The group it is an alternative within ([`RuleFile::group`]).
    pub group: Option<String>,
    /// Namespaces it applies in (globs; empty: every one).
    pub namespaces: Vec<String>,
    /// Namespaces it does not apply in (globs).
    pub exclude_namespaces: Vec<String>,
    /// Whether images need a valid signature.
    pub require_signature: bool,
    /// Whether images are refused whatever they carry.
    pub reject: bool,
    /// Keys trusted for this repository only (empty: the policy's trusted keys).
    #[serde(skip)]
    pub keys: Vec<PublicKey>,
    /// Valid signatures needed, each by a distinct key ([`RuleFile::key_threshold`]).
    pub key_threshold: Option<u32>,
    /// Overrides the policy's `require_pull_by_digest`.
    pub require_pull_by_digest: Option<bool>,
    /// Whether an admission check pins a verified tag to its digest ([`RuleFile::mutate_digest`]).
    pub mutate_digest: Option<bool>,
    /// Oldest acceptable build timestamp.
    pub min_build_timestamp: Option<BuildTimestamp>,
}

impl Rule {
    /// How findings and reports name the rule: its pattern, and its group when it has one.
    pub fn label(&self) -> String {
        match &self.group {
            Some(group) => format!("{} (group {group})", self.pattern),
            None => self.pattern.clone(),
        }
    }

    /// Whether the rule is limited to some namespaces.
    pub fn narrowed(&self) -> bool {
        !self.namespaces.is_empty() || !self.exclude_namespaces.is_empty()
    }

    /// Whether the rule applies to pods in `namespace`.
    pub fn selects(&self, namespace: &str) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|g| matches_namespace(g, namespace)))
            && !self.exclude_namespaces.iter().any(|g| matches_namespace(g, namespace))
    }
}

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Keys trusted everywhere.
    #[serde(skip)]
    pub trusted_keys: Vec<PublicKey>,
    /// Refuse images whose name is a tag rather than a digest.
    pub require_pull_by_digest: bool,
    /// Every layer and root hash must come from the one signed manifest being used.
    pub single_signed_manifest: bool,
    /// The signature scheme, when the policy fixes it.
    pub scheme: Option<Scheme>,
    /// The root-hash annotation key, when not the scheme's default.
    pub root_hash_annotation: Option<String>,
    /// What images no rule matches need.
    pub unmatched: Unmatched,
    /// Repository rules: the first match of each group applies (see the module docs).
    pub rules: Vec<Rule>,
}

impl Default for Policy {
    /// Signatures required everywhere, one signed manifest, tags allowed, no rollback floor.
    fn default() -> Self {
        Self {
            trusted_keys: Vec::new(),
            require_pull_by_digest: false,
            single_signed_manifest: true,
            scheme: None,
            root_hash_annotation: None,
            unmatched: Unmatched::default(),
            rules: Vec::new(),
        }
    }
}

/// How [`Requirements`] name what `unmatched` adds when no rule applies.
pub const DEFAULT_RULE: &str = "the default (no rule applies)";

/// Keys of which a number of distinct ones must have signed, for one applied rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySet {
    /// The rule that asks for it ([`Rule::label`], or [`DEFAULT_RULE`]).
    pub rule: String,
    /// The keys.
    #[serde(skip)]
    pub keys: Vec<PublicKey>,
    /// Valid signatures needed, each by a distinct one of `keys` (at least 1).
    pub threshold: usize,
}

/// What the policy asks of one repository: the conjunction of every applied rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirements {
    /// The applied rules ([`Rule::label`]), in policy order; empty when none applies (the default decides).
    pub rules: Vec<String>,
    /// A valid signature is needed (some applied rule, or the default, asks for one).
    pub require_signature: bool,
    /// The image is refused whatever it carries (some applied rule, or the default, says so).
    pub reject: bool,
    /// The image must be named by digest.
    pub require_pull_by_digest: bool,
    /// An admission check pins a verified tag to its digest (some applied rule says so).
    pub mutate_digest: bool,
    /// Oldest acceptable build: the latest floor of the applied rules.
    pub min_build_timestamp: Option<BuildTimestamp>,
    /// Every key a signature is checked against: the keys of `key_sets`, or, where none is needed, those the
    /// applied rules (else the policy) trust.
    #[serde(skip)]
    pub keys: Vec<PublicKey>,
    /// The key sets that must each be met: one per applied rule needing a signature.
    pub key_sets: Vec<KeySet>,
}

impl Policy {
    /// Parses policy TOML; key paths are relative to `base` (the policy's directory), `path` names the file.
    pub fn parse(text: &str, base: &Path, path: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        Self::from_file(file, base, path)
    }

    /// Loads the keys of a policy as written; key paths are relative to `base`, `path` names the file.
    pub fn from_file(file: PolicyFile, base: &Path, path: &Path) -> Result<Self, PolicyError> {
        let load = |p: &PathBuf| {
            keys::load_public(&base.join(p)).map_err(|source| PolicyError::Key {
                path: path.to_owned(),
                source,
            })
        };
        let inline = |(i, pem): (usize, &String), field: &str| {
            keys::parse_public_pem(pem, &path.join(format!("{field}[{i}]"))).map_err(|source| PolicyError::Key {
                path: path.to_owned(),
                source,
            })
        };
        let mut trusted_keys = file.trusted_keys.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        for key in file.trusted_key_data.iter().enumerate() {
            trusted_keys.push(inline(key, "trusted_key_data")?);
        }
        let mut rules = Vec::with_capacity(file.repository.len());
        for (i, rule) in file.repository.into_iter().enumerate() {
            if rule.pattern.is_empty() {
                return Err(PolicyError::Pattern {
                    path: path.to_owned(),
                    index: i + 1,
                });
            }
            let mut keys = rule.keys.iter().map(load).collect::<Result<Vec<_>, _>>()?;
            for key in rule.key_data.iter().enumerate() {
                keys.push(inline(key, &format!("repository[{i}].key_data"))?);
            }
            rules.push(Rule {
                keys,
                pattern: rule.pattern,
                group: rule.group,
                namespaces: rule.namespaces,
                exclude_namespaces: rule.exclude_namespaces,
                require_signature: rule.require_signature,
                reject: rule.reject,
                key_threshold: rule.key_threshold,
                require_pull_by_digest: rule.require_pull_by_digest,
                mutate_digest: rule.mutate_digest,
                min_build_timestamp: rule.min_build_timestamp,
            });
        }
        Ok(Self {
            trusted_keys,
            require_pull_by_digest: file.require_pull_by_digest,
            single_signed_manifest: file.single_signed_manifest,
            scheme: file.scheme,
            root_hash_annotation: file.root_hash_annotation,
            unmatched: file.unmatched,
            rules,
        })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        use std::io::Read;
        let io = |source| PolicyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(POLICY_LIMIT)
            .read_to_string(&mut text)
            .map_err(io)?;
        Policy::parse(&text, path.parent().unwrap_or(Path::new(".")), path)
    }

    /// The rules that apply to `repository` for a pod in `namespace` (`None`: not known, so every rule that
    /// could apply in some namespace does), in policy order, and whether `unmatched` applies as well (no
    /// group has a rule, or, without a namespace, some group's matches are all narrowed to namespaces).
    pub fn applied(&self, repository: &str, namespace: Option<&str>) -> (Vec<&Rule>, bool) {
        let mut groups: Vec<Option<&str>> = Vec::new();
        for rule in &self.rules {
            if !groups.contains(&rule.group.as_deref()) {
                groups.push(rule.group.as_deref());
            }
        }
        let mut applied = Vec::new();
        let mut default = false;
        for group in groups {
            let mut candidates = self
                .rules
                .iter()
                .filter(|r| r.group.as_deref() == group && matches(&r.pattern, repository));
            match namespace {
                Some(namespace) => applied.extend(candidates.find(|r| r.selects(namespace))),
                None => {
                    let mut any = false;
                    let mut closed = false;
                    for rule in candidates {
                        any = true;
                        applied.push(rule);
                        if !rule.narrowed() {
                            closed = true;
                            break;
                        }
                    }
                    default |= any && !closed;
                }
            }
        }
        applied.sort_by_key(|r| self.rules.iter().position(|p| std::ptr::eq(p, *r)));
        default |= applied.is_empty();
        (applied, default)
    }

    /// What the policy asks of `repository` for a pod in `namespace` (`None`: unknown, see [`Self::applied`]):
    /// the conjunction of every applied rule. `extra_keys` (from `--key`) are trusted beside `trusted_keys`,
    /// but not by a rule listing its own keys: those alone are trusted for that rule's key set.
    pub fn requirements(&self, repository: &str, namespace: Option<&str>, extra_keys: &[PublicKey]) -> Requirements {
        let (applied, default) = self.applied(repository, namespace);
        let mut general = self.trusted_keys.clone();
        for key in extra_keys {
            if !general.iter().any(|k| k.key == key.key) {
                general.push(key.clone());
            }
        }
        let keys_of = |rule: &Rule| {
            if rule.keys.is_empty() {
                general.clone()
            } else {
                rule.keys.clone()
            }
        };
        let mut keys: Vec<PublicKey> = Vec::new();
        let mut requirements = Requirements {
            rules: applied.iter().map(|r| r.label()).collect(),
            require_signature: false,
            reject: false,
            require_pull_by_digest: false,
            mutate_digest: false,
            min_build_timestamp: None,
            keys: Vec::new(),
            key_sets: Vec::new(),
        };
        for rule in &applied {
            let rule_keys = keys_of(rule);
            add_keys(&rule_keys, &mut keys);
            requirements.reject |= rule.reject;
            requirements.require_pull_by_digest |= rule.require_pull_by_digest.unwrap_or(self.require_pull_by_digest);
            requirements.mutate_digest |= rule.mutate_digest.unwrap_or(false);
            requirements.min_build_timestamp = requirements.min_build_timestamp.max(rule.min_build_timestamp);
            if rule.require_signature && !rule.reject {
                requirements.key_sets.push(KeySet {
                    rule: rule.label(),
                    keys: rule_keys,
                    threshold: rule
                        .key_threshold
                        .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX).max(1)),
                });
            }
        }
        if default {
            requirements.require_pull_by_digest |= self.require_pull_by_digest;
            match self.unmatched {
                Unmatched::Allow => {}
                Unmatched::Reject => requirements.reject = true,
                Unmatched::RequireSignature => requirements.key_sets.push(KeySet {
                    rule: DEFAULT_RULE.to_owned(),
                    keys: general.clone(),
                    threshold: 1,
                }),
            }
            add_keys(&general, &mut keys);
        }
        requirements.keys = keys;
        requirements.require_signature = !requirements.key_sets.is_empty();
        if !defence::on(Defence::Policy) {
            return Requirements {
                rules: Vec::new(),
                require_signature: false,
                reject: false,
                require_pull_by_digest: false,
                mutate_digest: false,
                min_build_timestamp: None,
                keys: requirements.keys,
                key_sets: Vec::new(),
            };
        }
        requirements
    }
}

/// Adds to `keys` those of `more` it lacks.
fn add_keys(more: &[PublicKey], keys: &mut Vec<PublicKey>) {
    for key in more {
        if !keys.iter().any(|k| k.key == key.key) {
            keys.push(key.clone());
        }
    }
}

/// Whether `name` is a Kubernetes namespace name (an RFC 1123 label: lowercase letters, digits and `-`, not
/// at either end, at most 63 characters).
pub fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Namespace glob match: `*` matches any run of characters (namespaces have no `/`), everything else itself.
fn matches_namespace(pattern: &str, namespace: &str) -> bool {
    !namespace.contains('/') && matches(pattern, namespace)
}

/// Glob match: `**` matches any run of characters, `*` any run without `/`, everything else itself.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| go(rest, &t[i..])),
            [b'*', rest @ ..] => {
                let limit = t.iter().position(|&c| c == b'/').unwrap_or(t.len());
                (0..=limit).any(|i| go(rest, &t[i..]))
            }
            [c, rest @ ..] => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    // Patterns and names are short; the recursion is bounded by the pattern's length.
    pattern.len() <= 512 && text.len() <= 4096 && go(pattern.as_bytes(), text.as_bytes())
}

/// Whether some name matches both globs (`*`, `**` and literals, as [`matches`] reads them): a name matched by
/// two rules is decided by the first, so an importer whose source applies every matching rule must know when
/// a later rule could have mattered.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_path_segments() {
        assert!(matches("127.0.0.1:*/lab/*", "127.0.0.1:5000/lab/demo"));
        assert!(!matches("127.0.0.1:*/lab/*", "127.0.0.1:5000/lab/a/b"));
        assert!(matches("127.0.0.1:*/lab/**", "127.0.0.1:5000/lab/a/b"));
        assert!(matches("**", "anything/at/all"));
        assert!(!matches("example.com/*", "example.com.evil/x"));
    }

    #[test]
    fn unknown_keys_are_errors_with_their_name() {
        let err = Policy::parse("require_signatrue = true\n", Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(err.to_string().contains("require_signatrue"), "{err}");
        let err = Policy::parse(
            "[[repository]]\npattern = \"x\"\nmin_build = \"2026-01-01T00:00:00Z\"\n",
            Path::new("."),
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("min_build"), "{err}");
        let err = Policy::parse(
            "[[repository]]\npattern = \"x\"\nmin_build_timestamp = \"yesterday\"\n",
            Path::new("."),
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = Policy::parse(
            "require_pull_by_digest = true\n[[repository]]\npattern = \"r/open/*\"\nrequire_signature = false\nrequire_pull_by_digest = false\n[[repository]]\npattern = \"r/**\"\nmin_build_timestamp = \"2026-01-01T00:00:00Z\"\n",
            Path::new("."),
            Path::new("p.toml"),
        )
        .unwrap();
        let open = policy.requirements("r/open/x", None, &[]);
        assert!(!open.require_signature && !open.require_pull_by_digest);
        assert_eq!(open.rules, ["r/open/*"]);
        let closed = policy.requirements("r/closed/x", None, &[]);
        assert!(closed.require_signature && closed.require_pull_by_digest);
        assert_eq!(closed.min_build_timestamp, Some(BuildTimestamp(1_767_225_600)));
        let default = policy.requirements("elsewhere/x", None, &[]);
        assert!(default.rules.is_empty());
        assert!(default.require_signature);
        assert_eq!(default.key_sets[0].rule, DEFAULT_RULE);
    }

    fn pem() -> String {
        keys::public_pem(keys::generate().verifying_key())
    }

    fn with_keys(text: &str, pems: &[&str]) -> Policy {
        let mut text = text.to_owned();
        for (i, pem) in pems.iter().enumerate() {
            text = text.replace(&format!("KEY{i}"), &format!("{pem:?}"));
        }
        Policy::parse(&text, Path::new("."), Path::new("p.toml")).unwrap()
    }

    #[test]
    fn every_group_with_a_match_applies_and_each_key_set_must_be_met() {
        let (a, b) = (pem(), pem());
        let policy = with_keys(
            "[[repository]]\npattern = \"r/open/*\"\ngroup = \"one\"\nrequire_signature = false\n\
             [[repository]]\npattern = \"r/**\"\ngroup = \"one\"\nkey_data = [KEY0]\nmin_build_timestamp = \"2026-01-01T00:00:00Z\"\n\
             [[repository]]\npattern = \"r/*/app\"\ngroup = \"two\"\nkey_data = [KEY0, KEY1]\nkey_threshold = 2\nmutate_digest = true\nmin_build_timestamp = \"2026-06-01T00:00:00Z\"\n\
             [[repository]]\npattern = \"r/bad/**\"\ngroup = \"three\"\nreject = true\n",
            &[&a, &b],
        );
        let both = policy.requirements("r/x/app", Some("default"), &[]);
        assert_eq!(both.rules, ["r/** (group one)", "r/*/app (group two)"]);
        let sets: Vec<(&str, usize, usize)> = both
            .key_sets
            .iter()
            .map(|s| (s.rule.as_str(), s.keys.len(), s.threshold))
            .collect();
        assert_eq!(sets, [("r/** (group one)", 1, 1), ("r/*/app (group two)", 2, 2)]);
        assert_eq!(both.keys.len(), 2, "the union, each key once");
        assert!(both.require_signature && both.mutate_digest && !both.reject);
        assert_eq!(
            both.min_build_timestamp,
            Some(BuildTimestamp(1_780_272_000)),
            "the latest floor"
        );

        // Group one's first match needs nothing; group two still needs its two signers.
        let open = policy.requirements("r/open/app", Some("default"), &[]);
        assert_eq!(open.rules, ["r/open/* (group one)", "r/*/app (group two)"]);
        assert_eq!(open.key_sets.len(), 1);
        assert_eq!(open.key_sets[0].threshold, 2);

        let one = policy.requirements("r/x/lib", Some("default"), &[]);
        assert_eq!(one.rules, ["r/** (group one)"]);
        assert!(!one.mutate_digest);

        let refused = policy.requirements("r/bad/app", Some("default"), &[]);
        assert!(refused.reject, "any applied rule refusing refuses");
        assert_eq!(refused.rules.len(), 3);
    }

    #[test]
    fn a_known_namespace_picks_the_rules_that_select_it() {
        let (a, b) = (pem(), pem());
        let policy = with_keys(
            "unmatched = \"allow\"\n\
             [[repository]]\npattern = \"r/**\"\nnamespaces = [\"prod-*\", \"billing\"]\nexclude_namespaces = [\"prod-sandbox\"]\nkey_data = [KEY0]\n\
             [[repository]]\npattern = \"r/**\"\nrequire_signature = false\n\
             [[repository]]\npattern = \"r/**\"\ngroup = \"ops\"\nnamespaces = [\"ops\"]\nkey_data = [KEY1]\n",
            &[&a, &b],
        );
        let prod = policy.requirements("r/app", Some("prod-eu"), &[]);
        assert_eq!(prod.rules, ["r/**"]);
        assert_eq!(prod.key_sets.len(), 1);
        assert_eq!(policy.requirements("r/app", Some("billing"), &[]).key_sets.len(), 1);
        for namespace in ["dev", "prod-sandbox", "production"] {
            let dev = policy.requirements("r/app", Some(namespace), &[]);
            assert!(!dev.require_signature, "{namespace}: the unnarrowed rule admits");
            assert_eq!(dev.rules.len(), 1, "{namespace}");
        }
        let ops = policy.requirements("r/app", Some("ops"), &[]);
        assert_eq!(ops.rules, ["r/**", "r/** (group ops)"]);
        assert_eq!(ops.key_sets.len(), 1);
        assert_eq!(ops.key_sets[0].rule, "r/** (group ops)");
        assert!(
            policy
                .requirements("elsewhere/app", Some("prod-eu"), &[])
                .rules
                .is_empty()
        );
    }

    #[test]
    fn without_a_namespace_every_rule_that_could_apply_does() {
        let (a, b) = (pem(), pem());
        let policy = with_keys(
            "unmatched = \"allow\"\n\
             [[repository]]\npattern = \"r/**\"\nnamespaces = [\"prod\"]\nkey_data = [KEY0]\n\
             [[repository]]\npattern = \"r/**\"\nrequire_signature = false\n\
             [[repository]]\npattern = \"r/**\"\ngroup = \"ops\"\nnamespaces = [\"ops\"]\nkey_data = [KEY1]\n",
            &[&a, &b],
        );
        let unknown = policy.requirements("r/app", None, &[]);
        assert_eq!(unknown.rules, ["r/**", "r/**", "r/** (group ops)"]);
        assert_eq!(unknown.key_sets.len(), 2, "prod's key and ops's key, each needed");
        for namespace in ["prod", "ops", "dev"] {
            let known = policy.requirements("r/app", Some(namespace), &[]);
            assert!(
                known.key_sets.len() <= unknown.key_sets.len(),
                "{namespace}: never stricter than unknown"
            );
        }

        // Every match narrowed: what `unmatched` asks is added, as a namespace no rule selects would get it.
        let strict = with_keys(
            "unmatched = \"reject\"\n[[repository]]\npattern = \"r/**\"\nnamespaces = [\"prod\"]\nkey_data = [KEY0]\n",
            &[&a],
        );
        assert!(strict.requirements("r/app", None, &[]).reject);
        assert!(strict.requirements("r/app", Some("dev"), &[]).reject);
        assert!(!strict.requirements("r/app", Some("prod"), &[]).reject);
        let signed = with_keys(
            "trusted_key_data = [KEY1]\n[[repository]]\npattern = \"r/**\"\nnamespaces = [\"prod\"]\nkey_data = [KEY0]\n",
            &[&a, &b],
        );
        let unknown = signed.requirements("r/app", None, &[]);
        let rules: Vec<&str> = unknown.key_sets.iter().map(|s| s.rule.as_str()).collect();
        assert_eq!(rules, ["r/**", DEFAULT_RULE]);
        assert_eq!(unknown.keys.len(), 2);
    }

    #[test]
    fn groups_and_namespaces_round_trip_through_toml() {
        let mut file = PolicyFile::default();
        let mut rule = RuleFile::new("r/**");
        rule.group = Some("kyverno: a".into());
        rule.namespaces = vec!["prod-*".into()];
        rule.exclude_namespaces = vec!["prod-x".into()];
        file.repository.push(rule);
        let text = file.to_toml().unwrap();
        assert!(text.contains("group = \"kyverno: a\""), "{text}");
        assert_eq!(toml::from_str::<PolicyFile>(&text).unwrap(), file);
    }
}
