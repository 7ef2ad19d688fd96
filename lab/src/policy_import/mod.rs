//! Importing the policies teams already run into veritylab's trust policy ([`crate::sign::Policy`]): Kyverno
//! `ClusterPolicy`/`Policy` documents with `verifyImages` rules, sigstore policy-controller
//! `ClusterImagePolicy` documents, and the `containers-policy.json` that CRI-O and podman enforce at pull.
//!
//! Each document is read field by field (module `node`): what the lab can enforce becomes a repository rule of a
//! [`PolicyFile`]; everything else (keyless identities, transparency-log checks, attestations, Notary
//! signatures, key types other than ECDSA P-256, fields this reader does not know) is listed as
//! [`NotEnforced`] with its document and path, never dropped. `--strict` turns that list into an error.
//! Where a source needs more than the lab can check, the lab checks the part it can and lists the rest;
//! where it can check nothing a rule needs (keyless signatures only, say), the rule refuses its images
//! rather than admitting them unchecked.

mod containers;
mod kyverno;
mod node;
mod sigstore;
#[cfg(test)]
mod tests;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use verity_fuse::ErrorClass;

use crate::sign::policy::{PolicyFile, RuleFile};

pub use yaml::DOCUMENT_LIMIT;

/// A document that cannot be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any policy.
    #[error("{}: larger than {limit} bytes; not a policy this reader accepts", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The file is not YAML or JSON within the reader's limits.
    #[error("{}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A document is malformed or of a kind this reader does not know.
    #[error("{document}: {problem}")]
    Document {
        /// The document.
        document: DocumentId,
        /// What is wrong, and where.
        problem: Problem,
    },
    /// `--strict`: some parts of the documents cannot be enforced here.
    #[error("{} part(s) of the policy cannot be enforced by veritylab (--strict):{}", .0.len(), lines(.0))]
    NotEnforced(Vec<Located>),
    /// Nothing in the files was a policy.
    #[error("no policy document in {}", files.join(", "))]
    Empty {
        /// The files read.
        files: Vec<String>,
    },
}

impl ImportError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            Self::TooLarge { .. }
            | Self::Syntax { .. }
            | Self::Document { .. }
            | Self::NotEnforced(_)
            | Self::Empty { .. } => ErrorClass::BadInput,
        }
    }
}

/// Each part on its own indented line.
fn lines(parts: &[Located]) -> String {
    parts.iter().map(|p| format!("\n  {p}")).collect()
}

/// A problem at one path inside a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The path from the document's root, such as `spec.rules[0].verifyImages[1].attestors`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Which document of which file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentId {
    /// The file.
    pub file: String,
    /// The document's position in the file (1-based).
    pub index: usize,
    /// `kind/name` when the document has them.
    pub name: Option<String>,
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} document {}", self.file, self.index)?;
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// A part of a source document the lab does not enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotEnforced {
    /// The path inside the document.
    pub path: String,
    /// What it asks for and why the lab does not enforce it.
    pub what: String,
}

/// A [`NotEnforced`] part with its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located {
    /// The document.
    pub document: DocumentId,
    /// The part.
    #[serde(flatten)]
    pub part: NotEnforced,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.part.path.is_empty() {
            write!(f, "{}: {}", self.document, self.part.what)
        } else {
            write!(f, "{}: {}: {}", self.document, self.part.path, self.part.what)
        }
    }
}

/// The kinds of document read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Kyverno `ClusterPolicy` or `Policy` (`kyverno.io/v1`).
    Kyverno,
    /// sigstore policy-controller `ClusterImagePolicy`.
    PolicyController,
    /// `containers-policy.json` (CRI-O, podman).
    ContainersPolicy,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kyverno => "Kyverno policy",
            Self::PolicyController => "policy-controller ClusterImagePolicy",
            Self::ContainersPolicy => "containers-policy.json",
        })
    }
}

/// Whether `path` holds documents to import rather than veritylab's own TOML: a `.yaml`, `.yml` or `.json`
/// name. `verify --policy` and `mount --policy` use it to take a cluster's policy directly.
pub fn is_foreign(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// One document read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The document.
    pub document: DocumentId,
    /// What it is.
    pub kind: SourceKind,
    /// How many repository rules it produced.
    pub rules: usize,
}

/// The result of an import: the policy in veritylab's model and what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// The policy, as veritylab's TOML would say it.
    pub policy: PolicyFile,
    /// The documents read.
    pub sources: Vec<Source>,
    /// What the lab does not enforce, in document order.
    pub not_enforced: Vec<Located>,
}

/// What one document contributes.
#[derive(Debug, Default)]
struct Contribution {
    policy: PolicyFile,
    not_enforced: Vec<NotEnforced>,
    /// For each rule, the unit it belongs to within the document (empty: the whole document). A unit becomes
    /// one group of the policy: its rules are alternatives in the source's own order (a Kyverno entry's skips
    /// before its references; a containers-policy.json's scopes, most specific first), and every unit with a
    /// match applies, as upstream applies every matching rule, policy and document.
    units: Vec<String>,
}

impl Contribution {
    /// Adds `rule` to unit `unit`.
    fn push(&mut self, unit: &str, rule: RuleFile) {
        self.policy.repository.push(rule);
        self.units.push(unit.to_owned());
    }

    /// Adds `rule` for `pattern` to unit `unit`. A pattern [`Pattern::Widened`] from one tag to its repository
    /// is kept only for a rule that admits no more than the default would: a rule that lets images in
    /// without a signature would let every tag in, so it is listed and not imported (`path` is where the
    /// source wrote it).
    fn push_pattern(&mut self, unit: &str, pattern: Pattern, mut rule: RuleFile, path: &str) {
        let (pattern, widened) = match pattern {
            Pattern::Exact(p) => (p, false),
            Pattern::Widened(p) => (p, true),
        };
        if widened && !rule.reject && !rule.require_signature {
            self.not_enforced.push(NotEnforced {
                path: path.to_owned(),
                what: format!(
                    "admits one tag of {pattern:?} without a signature: widened to every tag it would admit them \
                     all; not imported"
                ),
            });
            return;
        }
        rule.pattern = pattern;
        self.push(unit, rule);
    }
}

/// A repository glob made from a source's pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Matches the images the source's pattern matches.
    Exact(String),
    /// The source named one tag or digest; this matches every image of its repository.
    Widened(String),
}

/// Imports `files` (each may hold several documents) into one policy. Rules keep the order of the files and
/// documents; with `strict`, any part that cannot be enforced is an error.
pub fn import(files: &[PathBuf], strict: bool) -> Result<Imported, ImportError> {
    let inputs = files
        .iter()
        .map(|path| Ok((path.display().to_string(), yaml::read(path)?)))
        .collect::<Result<Vec<_>, ImportError>>()?;
    import_documents(&inputs, strict)
}

/// Imports the documents of `text` as if read from a file called `name` (what [`import`] does once the file
/// is read; the fuzz target's entry).
pub fn import_str(name: &str, text: &str, strict: bool) -> Result<Imported, ImportError> {
    let documents = yaml::parse(text).map_err(|reason| ImportError::Syntax {
        path: name.into(),
        reason,
    })?;
    import_documents(&[(name.to_owned(), documents)], strict)
}

fn import_documents(inputs: &[(String, Vec<Value>)], strict: bool) -> Result<Imported, ImportError> {
    let mut policy: Option<PolicyFile> = None;
    let mut sources = Vec::new();
    let mut not_enforced = Vec::new();
    // The label of each document read, which prefixes its groups.
    let mut labels: Vec<String> = Vec::new();
    for (file, documents) in inputs {
        for (i, document) in documents.iter().enumerate() {
            let id = DocumentId {
                file: file.clone(),
                index: i + 1,
                name: name_of(document),
            };
            let (kind, mut contribution) = import_document(document).map_err(|problem| ImportError::Document {
                document: id.clone(),
                problem,
            })?;
            let label = match &id.name {
                Some(name) if !labels.contains(name) => name.clone(),
                _ => id.to_string(),
            };
            for (rule, unit) in contribution.policy.repository.iter_mut().zip(&contribution.units) {
                rule.group = Some(if unit.is_empty() {
                    label.clone()
                } else {
                    format!("{label} {unit}")
                });
            }
            labels.push(label);
            sources.push(Source {
                document: id.clone(),
                kind,
                rules: contribution.policy.repository.len(),
            });
            match &mut policy {
                None => policy = Some(contribution.policy),
                Some(p) => p.merge(contribution.policy),
            }
            not_enforced.extend(contribution.not_enforced.into_iter().map(|part| Located {
                document: id.clone(),
                part,
            }));
        }
    }
    let Some(policy) = policy else {
        return Err(ImportError::Empty {
            files: inputs.iter().map(|(file, _)| file.clone()).collect(),
        });
    };
    if strict && !not_enforced.is_empty() {
        return Err(ImportError::NotEnforced(not_enforced));
    }
    Ok(Imported {
        policy,
        sources,
        not_enforced,
    })
}

/// Imports one parsed document, chosen by its `apiVersion` and `kind` (a containers-policy.json has neither
/// and is recognised by its `default` requirement list).
fn import_document(document: &Value) -> Result<(SourceKind, Contribution), Problem> {
    let api = document.get("apiVersion").and_then(Value::as_str);
    let kind = document.get("kind").and_then(Value::as_str);
    match (api, kind) {
        (Some("kyverno.io/v1"), Some("ClusterPolicy" | "Policy")) => {
            Ok((SourceKind::Kyverno, kyverno::import(document)?))
        }
        (Some("policy.sigstore.dev/v1beta1" | "policy.sigstore.dev/v1alpha1"), Some("ClusterImagePolicy")) => {
            Ok((SourceKind::PolicyController, sigstore::import(document)?))
        }
        (None, None) if document.get("default").is_some() => {
            Ok((SourceKind::ContainersPolicy, containers::import(document)?))
        }
        (Some(api), Some(kind)) => Err(Problem {
            path: String::new(),
            reason: format!(
                "{kind} of {api} is not a policy this reader knows (kyverno.io/v1 ClusterPolicy or Policy, \
                 policy.sigstore.dev ClusterImagePolicy, or a containers-policy.json)"
            ),
        }),
        _ => Err(Problem {
            path: String::new(),
            reason: "neither apiVersion and kind nor a containers-policy.json `default`".into(),
        }),
    }
}

/// `kind/name` of a Kubernetes document.
fn name_of(document: &Value) -> Option<String> {
    let kind = document.get("kind")?.as_str()?;
    let name = document.get("metadata")?.get("name")?.as_str()?;
    Some(format!("{kind}/{name}"))
}

/// Our repository glob for a source glob without a trailing wildcard (`node` is where it was written). Both
/// sources match globs against the image name with its tag or digest: a glob naming one tag or digest is
/// widened to its repository (listed); one naming neither matches nothing upstream and is not imported
/// (listed), so its images fall to the same default here.
fn without_wildcard(glob: &str, node: &node::Node<'_>, not_enforced: &mut Vec<NotEnforced>) -> Option<Pattern> {
    let last_segment = glob.rsplit('/').next().unwrap_or(glob);
    let tagged = glob.contains('/').then(|| last_segment.find([':', '@'])).flatten();
    let (pattern, what) = match tagged {
        Some(at) => {
            let repository = &glob[..glob.len() - last_segment.len() + at];
            (
                Some(Pattern::Widened(repository.to_owned())),
                format!("{glob:?} names one tag or digest: veritylab applies it to every image of {repository:?}"),
            )
        }
        None => (
            None,
            format!(
                "{glob:?} has no tag or digest and no trailing wildcard, so it matches no image upstream (names \
                 are matched with their tag or digest); not imported"
            ),
        ),
    };
    not_enforced.push(NotEnforced {
        path: node.path().to_owned(),
        what,
    });
    pattern
}

/// The PEM blocks of `text` (a Kyverno `publicKeys` string may hold several), each from its BEGIN line to
/// its END line.
fn pem_blocks(text: &str) -> Result<Vec<String>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines().map(str::trim) {
        match (&mut current, line) {
            (None, "") => {}
            (None, l) if l.starts_with("-----BEGIN ") => current = Some(vec![l]),
            (None, l) => {
                return Err(format!(
                    "text outside a PEM block: {:?}",
                    l.chars().take(40).collect::<String>()
                ));
            }
            (Some(lines), l) if l.starts_with("-----END ") => {
                lines.push(l);
                blocks.push(lines.join("\n") + "\n");
                current = None;
            }
            (Some(lines), l) => lines.push(l),
        }
    }
    if current.is_some() {
        return Err("a PEM block without its END line".into());
    }
    if blocks.is_empty() {
        return Err("no PEM public key".into());
    }
    Ok(blocks)
}

/// Whether one PEM block is an ECDSA P-256 public key the lab can check signatures with.
fn is_p256(block: &str) -> bool {
    crate::sign::keys::parse_public_pem(block, Path::new("inline key")).is_ok()
}
