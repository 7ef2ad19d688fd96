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
//! [[repository]]                        # the first rule whose pattern matches wins
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
//! ```
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
    /// Repository rules, the first match wins.
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

    /// Whether `other` asks the same of an image (everything but the pattern equal).
    pub fn same_requirements(&self, other: &RuleFile) -> bool {
        RuleFile {
            pattern: String::new(),
            ..self.clone()
        } == RuleFile {
            pattern: String::new(),
            ..other.clone()
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
    /// Repository rules, first match wins.
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

/// What the policy asks of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirements {
    /// The matching rule's pattern, or `None` for the default.
    pub rule: Option<String>,
    /// A valid signature is needed.
    pub require_signature: bool,
    /// The image is refused whatever it carries.
    pub reject: bool,
    /// The image must be named by digest.
    pub require_pull_by_digest: bool,
    /// An admission check pins a verified tag to its digest (`false` without a rule saying so).
    pub mutate_digest: bool,
    /// Oldest acceptable build.
    pub min_build_timestamp: Option<BuildTimestamp>,
    /// The keys trusted here.
    #[serde(skip)]
    pub keys: Vec<PublicKey>,
    /// Valid signatures needed, each by a distinct one of `keys` (at least 1).
    pub key_threshold: usize,
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

    /// What the policy asks of `repository`. `extra_keys` (from `--key`) are trusted beside `trusted_keys`,
    /// but not where the matching rule lists its own keys: those alone are trusted there.
    pub fn requirements(&self, repository: &str, extra_keys: &[PublicKey]) -> Requirements {
        let rule = self.rules.iter().find(|r| matches(&r.pattern, repository));
        let keys = match rule {
            Some(r) if !r.keys.is_empty() => r.keys.clone(),
            _ => {
                let mut keys = self.trusted_keys.clone();
                for key in extra_keys {
                    if !keys.iter().any(|k| k.key == key.key) {
                        keys.push(key.clone());
                    }
                }
                keys
            }
        };
        if !defence::on(Defence::Policy) {
            return Requirements {
                rule: None,
                require_signature: false,
                reject: false,
                require_pull_by_digest: false,
                mutate_digest: false,
                min_build_timestamp: None,
                keys,
                key_threshold: 1,
            };
        }
        Requirements {
            rule: rule.map(|r| r.pattern.clone()),
            require_signature: rule.map_or(self.unmatched != Unmatched::Allow, |r| r.require_signature),
            reject: rule.map_or(self.unmatched == Unmatched::Reject, |r| r.reject),
            require_pull_by_digest: rule
                .and_then(|r| r.require_pull_by_digest)
                .unwrap_or(self.require_pull_by_digest),
            mutate_digest: rule.and_then(|r| r.mutate_digest).unwrap_or(false),
            min_build_timestamp: rule.and_then(|r| r.min_build_timestamp),
            keys,
            key_threshold: rule
                .and_then(|r| r.key_threshold)
                .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX).max(1)),
        }
    }
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
pub(crate) fn may_overlap(a: &str, b: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Lit(u8),
        Star,
        AnyRun,
    }
    fn tokens(p: &str) -> Vec<Token> {
        let bytes = p.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i..] {
                [b'*', b'*', ..] => {
                    out.push(Token::AnyRun);
                    i += 2;
                }
                [b'*', ..] => {
                    out.push(Token::Star);
                    i += 1;
                }
                [c, ..] => {
                    out.push(Token::Lit(c));
                    i += 1;
                }
                [] => break,
            }
        }
        out
    }
    /// The positions reachable from `i` without reading a character (stars match the empty run).
    fn closure(t: &[Token], mut i: usize, into: &mut Vec<usize>) {
        into.push(i);
        while i < t.len() && matches!(t[i], Token::Star | Token::AnyRun) {
            i += 1;
            into.push(i);
        }
    }
    /// Where position `i` goes on reading `c`.
    fn step(t: &[Token], i: usize, c: u8) -> Option<usize> {
        match t.get(i)? {
            Token::Lit(l) => (*l == c).then_some(i + 1),
            Token::Star => (c != b'/').then_some(i),
            Token::AnyRun => Some(i),
        }
    }
    if a.len() > 512 || b.len() > 512 {
        return true;
    }
    let (ta, tb) = (tokens(a), tokens(b));
    // The characters worth trying: every literal of either pattern, `/`, and one character neither names.
    let mut alphabet: Vec<u8> = a
        .bytes()
        .chain(b.bytes())
        .chain([b'/'])
        .filter(|&c| c != b'*')
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    alphabet.push(
        (1..=255u8)
            .find(|c| !alphabet.contains(c) && *c != b'*')
            .unwrap_or(b'\x01'),
    );
    let mut seen = vec![false; (ta.len() + 1) * (tb.len() + 1)];
    let mut queue = vec![(0usize, 0usize)];
    while let Some((i, j)) = queue.pop() {
        let (mut is, mut js) = (Vec::new(), Vec::new());
        closure(&ta, i, &mut is);
        closure(&tb, j, &mut js);
        for &i in &is {
            for &j in &js {
                let index = i * (tb.len() + 1) + j;
                if seen[index] {
                    continue;
                }
                seen[index] = true;
                if i == ta.len() && j == tb.len() {
                    return true;
                }
                for &c in &alphabet {
                    if let (Some(ni), Some(nj)) = (step(&ta, i, c), step(&tb, j, c)) {
                        queue.push((ni, nj));
                    }
                }
            }
        }
    }
    false
}

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
    fn overlap_is_decided_on_the_globs() {
        assert!(may_overlap("r/**", "r/open/*"));
        assert!(may_overlap("r/*", "r/open"));
        assert!(!may_overlap("r/*", "r/open/x"));
        assert!(!may_overlap("a/**", "b/**"));
        assert!(may_overlap("**/x", "a/**"));
        assert!(!may_overlap("example.com/*", "example.com.evil/x"));
        assert!(may_overlap("*.example.com/**", "a.example.com/app"));
        assert!(!may_overlap("*.example.com/**", "a/b.example.com/app"));
    }

    proptest::proptest! {
        #[test]
        fn overlap_agrees_with_matching(name in "[ab/]{0,6}", a in "[ab/*]{0,5}", b in "[ab/*]{0,5}") {
            if matches(&a, &name) && matches(&b, &name) {
                proptest::prop_assert!(may_overlap(&a, &b), "{a} and {b} both match {name}");
            }
        }
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
        let open = policy.requirements("r/open/x", &[]);
        assert!(!open.require_signature && !open.require_pull_by_digest);
        let closed = policy.requirements("r/closed/x", &[]);
        assert!(closed.require_signature && closed.require_pull_by_digest);
        assert_eq!(closed.min_build_timestamp, Some(BuildTimestamp(1_767_225_600)));
        let default = policy.requirements("elsewhere/x", &[]);
        assert_eq!(default.rule, None);
        assert!(default.require_signature);
    }
}
