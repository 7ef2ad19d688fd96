//! The catalogue: every attack's name, what it does, the parameters it takes and its constructor.
//!
//! Each attack's module declares its entry once, as its `SPEC` ([`AttackSpec`]), next to its implementation;
//! [`CATALOGUE`] lists those entries. Scenario validation checks a file's `[attack]` against it (an unknown
//! name is a load error), `scenario attacks` prints it, and the runner builds the attack with the entry's
//! [`AttackSpec::create`]. Adding an attack means writing its module with its `SPEC` and adding that to
//! [`CATALOGUE`]; adding a scenario that reuses an attack needs only a TOML file.

use std::fmt;

use crate::{Attack, AttackError, Params};

/// The type of an attack parameter's value in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A non-negative integer.
    Integer,
    /// Any string.
    String,
    /// A path relative to the image's root (no leading `/`, no `..`).
    Path,
    /// A boolean.
    Bool,
    /// Lowercase hexadecimal with an even number of digits.
    Hex,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Integer => f.write_str("a non-negative integer"),
            ParamType::String => f.write_str("a string"),
            ParamType::Path => f.write_str("a relative path"),
            ParamType::Bool => f.write_str("a boolean"),
            ParamType::Hex => f.write_str("a hex string"),
            ParamType::Choice(choices) => write!(f, "one of {}", choices.join(", ")),
        }
    }
}

/// One parameter an attack takes.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// The key under `[attack.params]`.
    pub name: &'static str,
    /// The value's type.
    pub ty: ParamType,
    /// Whether a scenario must give it.
    pub required: bool,
    /// What it means, and its default when optional.
    pub doc: &'static str,
}

/// A known attack.
#[derive(Clone, Copy)]
pub struct AttackSpec {
    /// Its kebab-case name, as scenario files write it.
    pub name: &'static str,
    /// One line saying what the attacker does.
    pub summary: &'static str,
    /// The parameters it takes.
    pub params: &'static [ParamSpec],
    /// Builds the attack from parameters the scenario loader checked against [`AttackSpec::params`].
    pub create: fn(&Params) -> Result<Box<dyn Attack>, AttackError>,
}

impl fmt::Debug for AttackSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttackSpec")
            .field("name", &self.name)
            .field("summary", &self.summary)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl AttackSpec {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Looks an attack up by name.
pub fn find(name: &str) -> Option<&'static AttackSpec> {
    CATALOGUE.iter().find(|a| a.name == name)
}

pub(crate) const fn opt(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: false,
        doc,
    }
}

pub(crate) const fn req(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: true,
        doc,
    }
}

pub(crate) const LAYER: ParamSpec = opt(
    "layer",
    ParamType::Integer,
    "layer index in manifest order, 0 = base (default: the top layer)",
);
pub(crate) const SCHEME: ParamSpec = opt(
    "scheme",
    ParamType::Choice(&["cosign", "delivery-kit"]),
    "signature scheme the image is signed with (default: cosign)",
);
pub(crate) const TROJAN_PATH: ParamSpec = opt(
    "path",
    ParamType::Path,
    "file the attacker's copy changes (default: bin/app)",
);
pub(crate) const TROJAN_CONTENT: ParamSpec = opt(
    "content",
    ParamType::String,
    "the attacker's content for that file (default: a marker script)",
);

/// Every attack, in catalogue order.
pub const CATALOGUE: &[AttackSpec] = &[
    crate::host_layer_swap::SPEC,
    crate::layer_byte_flip::SPEC,
    crate::layer_blocks_rewrite::SPEC,
    crate::hash_tree_byte_flip::SPEC,
    crate::layer_and_tree_replace::SPEC,
    crate::root_hash_annotation::SPEC,
    crate::signature_stripped::SPEC,
    crate::signature_other_key::SPEC,
    crate::registry_blob_substitution::SPEC,
    crate::tag_moved_after_verify::SPEC,
    crate::tag_moved_after_admission::SPEC,
    crate::registry_split_view::SPEC,
    crate::rollback::SPEC,
    crate::mixed_layers::SPEC,
    crate::overmount::SPEC,
    crate::upperdir_write::SPEC,
    crate::extra_mount::SPEC,
    crate::pinned_layer_replace::SPEC,
    crate::unverified_tail::SPEC,
    crate::check_at_most_once_tamper::SPEC,
    crate::malformed_erofs::SPEC,
    crate::leaked_mounts::SPEC,
    crate::audit_identity_replay::SPEC,
    crate::container_pid_replay::SPEC,
    crate::corruption_then_restore::SPEC,
    crate::tag_race_at_mount::SPEC,
    crate::self_declared_root_hash::SPEC,
    crate::consistent_layer_replace::SPEC,
    crate::malformed_whiteout::SPEC,
    crate::root_hash_signature::SPEC,
    crate::exec_unverified::SPEC,
    crate::poisoned_unpack::SPEC,
    crate::verity_metadata_removed::SPEC,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case_and_params_unique() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for attack in CATALOGUE {
            assert!(
                attack.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                attack.name
            );
            let mut params: Vec<_> = attack.params.iter().map(|p| p.name).collect();
            params.sort_unstable();
            params.dedup();
            assert_eq!(params.len(), attack.params.len(), "{}", attack.name);
        }
    }
}
