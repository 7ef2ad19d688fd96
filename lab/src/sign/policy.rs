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
//! require_pull_by_digest = true
//! min_build_timestamp = "2026-11-01T00:00:00Z"   # rollback: older signed builds are refused
//! ```
//!
//! Without a matching rule a signature is required by any key in `trusted_keys` (or given with `--key`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Scheme;
use super::keys::{self, KeyError, PublicKey};
use super::timestamp::BuildTimestamp;
use crate::defence::{self, Defence};
use verity_fuse::ErrorClass;

/// The largest policy file read.
const POLICY_LIMIT: u64 = 1 << 20;

/// The policy file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    trusted_keys: Vec<PathBuf>,
    #[serde(default)]
    require_pull_by_digest: bool,
    #[serde(default = "yes")]
    single_signed_manifest: bool,
    #[serde(default)]
    scheme: Option<Scheme>,
    #[serde(default)]
    root_hash_annotation: Option<String>,
    #[serde(default)]
    repository: Vec<RuleFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    pattern: String,
    #[serde(default = "yes")]
    require_signature: bool,
    #[serde(default)]
    keys: Vec<PathBuf>,
    #[serde(default)]
    require_pull_by_digest: Option<bool>,
    #[serde(default)]
    min_build_timestamp: Option<BuildTimestamp>,
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
    /// Keys trusted for this repository only (empty: the policy's trusted keys).
    #[serde(skip)]
    pub keys: Vec<PublicKey>,
    /// Overrides the policy's `require_pull_by_digest`.
    pub require_pull_by_digest: Option<bool>,
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
    /// The image must be named by digest.
    pub require_pull_by_digest: bool,
    /// Oldest acceptable build.
    pub min_build_timestamp: Option<BuildTimestamp>,
    /// The keys trusted here.
    #[serde(skip)]
    pub keys: Vec<PublicKey>,
}

impl Policy {
    /// Parses policy TOML; key paths are relative to `base` (the policy's directory), `path` names the file.
    pub fn parse(text: &str, base: &Path, path: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        let load = |p: &PathBuf| {
            keys::load_public(&base.join(p)).map_err(|source| PolicyError::Key {
                path: path.to_owned(),
                source,
            })
        };
        let trusted_keys = file.trusted_keys.iter().map(load).collect::<Result<_, _>>()?;
        let mut rules = Vec::with_capacity(file.repository.len());
        for (i, rule) in file.repository.into_iter().enumerate() {
            if rule.pattern.is_empty() {
                return Err(PolicyError::Pattern {
                    path: path.to_owned(),
                    index: i + 1,
                });
            }
            rules.push(Rule {
                keys: rule.keys.iter().map(load).collect::<Result<_, _>>()?,
                pattern: rule.pattern,
                require_signature: rule.require_signature,
                require_pull_by_digest: rule.require_pull_by_digest,
                min_build_timestamp: rule.min_build_timestamp,
            });
        }
        Ok(Self {
            trusted_keys,
            require_pull_by_digest: file.require_pull_by_digest,
            single_signed_manifest: file.single_signed_manifest,
            scheme: file.scheme,
            root_hash_annotation: file.root_hash_annotation,
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
                require_pull_by_digest: false,
                min_build_timestamp: None,
                keys,
            };
        }
        Requirements {
            rule: rule.map(|r| r.pattern.clone()),
            require_signature: rule.is_none_or(|r| r.require_signature),
            require_pull_by_digest: rule
                .and_then(|r| r.require_pull_by_digest)
                .unwrap_or(self.require_pull_by_digest),
            min_build_timestamp: rule.and_then(|r| r.min_build_timestamp),
            keys,
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
