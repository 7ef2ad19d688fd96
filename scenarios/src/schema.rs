//! A validated scenario: the types a loaded scenario file becomes (see `scenarios/README.md` for the TOML).
//!
//! These are produced only by [`super::load`], after every check passed, so a runner can trust them: the
//! attack is in the catalogue with well-typed parameters, every listed profile has an expectation, and ids
//! are unique.

use std::collections::BTreeMap;

use super::outcome::Expectation;
use veritylab::profile::Profile;

use crate::backend::RunnerBackend;

/// One scenario: an attack staged against some profiles, with the outcome expected of each.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scenario {
    /// Unique kebab-case id; the file is `<id>.toml`.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// What happens and why it matters.
    pub description: String,
    /// Where the threat is described.
    pub references: Vec<Reference>,
    /// The image the attack is staged on.
    pub image: ImageSpec,
    /// The attack and its parameters.
    pub attack: AttackUse,
    /// The profiles to run, in file order.
    pub profiles: Vec<Profile>,
    /// The backends to run on (all of them when the file names none; the runner uses those available).
    pub backends: Vec<RunnerBackend>,
    /// Backends on which the attack itself needs root (a real mount made by the attacker, say), with why: a run
    /// without root skips these cells with that reason.
    pub needs_root: BTreeMap<RunnerBackend, String>,
    /// The expected outcome of each profile in `profiles`.
    pub expect: BTreeMap<Profile, Expectation>,
    /// The cluster's admission check of the pod before the node pulls, when the scenario stages one.
    pub admission: Option<Admission>,
    /// The file it was loaded from.
    pub source: String,
}

/// A scenario's admission stage: the pod naming the image by tag is checked by the cluster's admission
/// controller against the cell's registry, and the node then pulls the image the admitted pod names
/// (`crate::admission`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Admission {
    /// The admission policy: a document of `scenarios/policies/admission/` by its stem, or `none`.
    pub policy: String,
    /// The pod's namespace, which decides the policy's rules selected by namespace (default `default`).
    pub namespace: String,
}

/// Where a threat is described.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// What kind of source.
    pub kind: ReferenceKind,
    /// An identifier inside that source (a CVE id, a section or threat letter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How it relates to the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The kind of a [`Reference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// The Update Framework specification.
    Tuf,
    /// SLSA's threat model.
    Slsa,
    /// A CVE (its id must look like `CVE-YYYY-NNNN`).
    Cve,
    /// The hardened design of Deckhouse's container-integrity talk (dm-verity layers, signed root hashes).
    SeedTalk,
    /// The kernel's documentation (dm-verity, EROFS, overlayfs).
    KernelDoc,
    /// The OCI image or distribution specification.
    OciSpec,
    /// Anything else.
    Other,
}

/// The image an attack is staged on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum ImageSpec {
    /// The sample image embedded in veritylab (the one `veritylab demo` builds).
    Sample,
    /// An image pulled from a registry or layout reference.
    Pull {
        /// The reference, as `veritylab pull` takes it.
        reference: String,
    },
    /// An image built from layers given inline, base layer first.
    Build {
        /// The layers.
        layers: Vec<LayerSpec>,
    },
}

/// One layer of a built image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerSpec {
    /// Its entries, in file order.
    pub files: Vec<EntrySpec>,
}

/// One entry of a built layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntrySpec {
    /// Path relative to the image root.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (default 0o644 for files, 0o755 for directories).
    pub mode: Option<u32>,
}

/// What an [`EntrySpec`] is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Its content.
        content: String,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: String,
    },
    /// An OCI whiteout: the path is deleted from the layers below.
    Whiteout,
}

/// The attack a scenario stages, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttackUse {
    /// A name from [`attacks::CATALOGUE`].
    pub name: String,
    /// Parameters, checked against the attack's declared ones.
    pub params: BTreeMap<String, ParamValue>,
}

/// A checked attack parameter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer.
    Integer(u64),
    /// A string, path, hex string or choice.
    String(String),
    /// A boolean.
    Bool(bool),
}

impl AttackUse {
    /// The parameters as the attack's constructor takes them.
    pub fn attack_params(&self) -> attacks::Params {
        attacks::Params(
            self.params
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        ParamValue::Integer(i) => attacks::Param::Integer(*i),
                        ParamValue::String(s) => attacks::Param::String(s.clone()),
                        ParamValue::Bool(b) => attacks::Param::Bool(*b),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    /// The integer parameter `name`, if given.
    pub fn integer(&self, name: &str) -> Option<u64> {
        match self.params.get(name) {
            Some(ParamValue::Integer(v)) => Some(*v),
            _ => None,
        }
    }

    /// The string parameter `name`, if given.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.params.get(name) {
            Some(ParamValue::String(v)) => Some(v),
            _ => None,
        }
    }

    /// The boolean parameter `name`, if given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.params.get(name) {
            Some(ParamValue::Bool(v)) => Some(*v),
            _ => None,
        }
    }
}
