//! Supply-chain attacks staged against veritylab's defence profiles.
//!
//! Each attack is a type implementing [`Attack`], a lifecycle after Stratus Red Team's: `prepare` (before the
//! image is mounted), `detonate` (at the attack's [`Stage`] of the pipeline), `observe` (what the attacker
//! sees afterwards) and `revert` (undo anything the lab's own teardown would not). Each attack's logic lives in
//! its module here. It reaches one sandboxed run of the lab through [`Env`]'s primitives (the node's store, a
//! signature with the trusted or another key, the registry's blobs, the converted layers and devices, reads,
//! writes and mounts in the container), and works on what they return with the lab's own API (typed
//! manifests, the store's tags, cosign and delivery-kit signatures, the EROFS writer and tree builder). The
//! scenario sandbox implements [`Env`]; attacks know nothing of the runner.
//!
//! - [`CATALOGUE`]: every attack's name, summary, parameters and constructor, declared once by the attack's
//!   module as its `SPEC`; [`create`] builds an attack by its catalogue name (the names scenario files use).
//! - [`layer_tar`]: layer tars written and edited deterministically (the scenario images' layers too).
//!
//! # The observed-effect contract
//!
//! A verdict is only as good as its evidence, so no attack may assume it worked. [`Attack::observe`] is
//! mandatory and returns an [`Effect`] looked at from the container's side, through [`Env`]'s container
//! methods ([`Env::read_in_container`], [`Env::mount_at`], [`Env::leaks_alive`], [`Env::read_device`]):
//!
//! - [`Effect::Seen`]: the container shows the attacker's change (the trojaned bytes, the older version, a
//!   foreign mount over the path); with no refusal and no finding the cell is `undetected`, and the report
//!   quotes this text as the observation;
//! - [`Effect::Genuine`]: the container shows the genuine content; with no refusal the cell is `blocked`;
//! - [`Effect::Unobservable`]: nothing the container shows can tell; the cell is `inconclusive` and the run
//!   fails.
//!
//! Refusals the attacker meets are [`AttackError::Refused`] with the typed [`DefenceRefusal`] the lab raised (a
//! read-only filesystem, a read past the verified device, a block that failed verification): an attack never
//! invents one. Anything else that fails is [`AttackError::Env`], and the cell ends in `error`. Porting an
//! attack onto the contract: say what the attacker wants the container to see (keep it in the attack's
//! state from `detonate`), read it back in `observe`, and compare.
//! - [`tamper`]: wrappers over [`verity_fuse::ReadAt`] that change bytes as an attacker on the node disk
//!   would, so the verifier sees exactly what a tampered file would show it.
#![forbid(unsafe_code)]

mod audit_identity_replay;
mod catalogue;
mod check_at_most_once_tamper;
mod consistent_layer_replace;
mod container_pid_replay;
mod corruption_then_restore;
mod env;
mod exec_unverified;
mod extra_mount;
mod hash_tree_byte_flip;
mod host_layer_swap;
mod layer_and_tree_replace;
mod layer_blocks_rewrite;
mod layer_byte_flip;
pub mod layer_tar;
mod leaked_mounts;
mod malformed_erofs;
mod malformed_whiteout;
mod mixed_layers;
mod overmount;
mod params;
mod pinned_layer_replace;
mod poisoned_unpack;
mod registry_blob_substitution;
mod registry_split_view;
mod rollback;
mod root_hash_annotation;
mod root_hash_signature;
mod self_declared_root_hash;
mod signature_other_key;
mod signature_stripped;
#[cfg(test)]
mod stub;
mod tag_moved_after_admission;
mod tag_moved_after_verify;
mod tag_race_at_mount;
pub mod tamper;
mod unverified_tail;
mod upperdir_write;
mod verity_metadata_removed;

mod steps;

use std::fmt;

pub use catalogue::{AttackSpec, CATALOGUE, ParamSpec, ParamType, find};
pub use env::{
    BuildTimes, DefenceRefusal, Env, Identity, LayerFiles, MissedIdentity, MountKind, ReplayFidelity, Replayed,
    SigningKey, Trojan,
};
pub use params::{Param, Params};

/// When in the pipeline the runner calls an attack's [`Attack::detonate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// After the image is published to the registry, before the node pulls it.
    Registry,
    /// After an admission check of the pod's image against the registry, before the node pulls the image
    /// reference the admission left in the pod (the tag, or the digest it pinned).
    AfterAdmission,
    /// After pull and conversion, before signature verification and mount: the node disk.
    NodeDisk,
    /// After verification, before the mount uses the image (time-of-check to time-of-use).
    AfterVerify,
    /// After the mount, while the container runs.
    Runtime,
    /// After the container read its files once, before it reads them again.
    AfterFirstRead,
}

impl Stage {
    /// The stage's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Registry => "registry",
            Stage::AfterAdmission => "after-admission",
            Stage::NodeDisk => "node-disk",
            Stage::AfterVerify => "after-verify",
            Stage::Runtime => "runtime",
            Stage::AfterFirstRead => "after-first-read",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed attack step.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The lab refused what the attacker tried (a read-only filesystem, a read past the device's end): this is
    /// a defence at work, and evidence for the outcome.
    #[error("{kind}: {message}")]
    Refused {
        /// What kind of refusal.
        kind: DefenceRefusal,
        /// The error's message.
        message: String,
    },
    /// The environment could not do what the attack asked (a harness failure, not a defence).
    #[error("{0}")]
    Env(String),
    /// A parameter is missing or out of range.
    #[error("parameter {name}: {reason}")]
    Param {
        /// The parameter.
        name: String,
        /// Why.
        reason: String,
    },
}

impl AttackError {
    /// What kind of failure this is: a refusal is the defence's verdict on the attacker's change (a block
    /// that failed verification, a read past the verified device, a write to a read-only filesystem), a bad
    /// parameter is bad input, and an environment failure is the harness's own.
    pub fn class(&self) -> verity_fuse::ErrorClass {
        use verity_fuse::ErrorClass;
        match self {
            AttackError::Refused {
                kind: DefenceRefusal::HashMismatch | DefenceRefusal::OutOfRange,
                ..
            } => ErrorClass::VerificationFailed,
            AttackError::Refused {
                kind: DefenceRefusal::ReadOnly | DefenceRefusal::ExecDenied,
                ..
            } => ErrorClass::NotTrusted,
            AttackError::Param { .. } => ErrorClass::BadInput,
            AttackError::Env(_) => ErrorClass::Internal,
        }
    }

    /// A harness failure with `message`.
    pub fn env(message: impl fmt::Display) -> Self {
        AttackError::Env(message.to_string())
    }
}

/// What the container shows of an attack: the observation a verdict of `undetected` rests on.
///
/// Every attack says, in [`Attack::observe`], what the container would see if the attack worked (a planted
/// file, changed bytes, an older version, a mount over a path) and looks for exactly that from the container's
/// side. The runner reports `undetected` only on [`Effect::Seen`]; [`Effect::Genuine`] with no refusal is
/// `blocked`; [`Effect::Unobservable`] makes the cell `inconclusive`, which fails the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The container sees the attacker's change; the text says what was seen.
    Seen(String),
    /// The container sees the genuine content; the text says what was seen.
    Genuine(String),
    /// The effect cannot be observed from the container; the text says why.
    Unobservable(String),
}

impl Effect {
    /// The container reads `seen` at `path`, and the attacker wanted `wanted` there.
    pub fn read(path: &str, seen: &[u8], wanted: &[u8]) -> Self {
        let detail = format!("the container reads /{path}: {:?}", String::from_utf8_lossy(seen));
        if seen == wanted {
            Effect::Seen(detail)
        } else {
            Effect::Genuine(detail)
        }
    }

    /// Whether the attacker's change reached the container.
    pub fn took_effect(&self) -> bool {
        matches!(self, Effect::Seen(_))
    }

    /// What was seen, or why nothing could be.
    pub fn detail(&self) -> &str {
        match self {
            Effect::Seen(d) | Effect::Genuine(d) | Effect::Unobservable(d) => d,
        }
    }
}

/// An attack's lifecycle; the runner calls the steps in order, each once.
pub trait Attack {
    /// The catalogue name.
    fn name(&self) -> &'static str;

    /// When [`Attack::detonate`] runs.
    fn stage(&self) -> Stage;

    /// Before the pipeline starts: arrange what the attack needs (e.g. a device option it exploits).
    fn prepare(&mut self, _env: &mut dyn Env) -> Result<(), AttackError> {
        Ok(())
    }

    /// The attack itself, at [`Attack::stage`]; returns what was done.
    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError>;

    /// After the container read its files: what the container shows of the attack, looked at from its side
    /// (see [`Effect`]). Every attack implements it; errors here are refusals the attacker met.
    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError>;

    /// For an attack that replays mounts, after [`Attack::detonate`]: which of the identities the kernel
    /// hands out again came back (see [`ReplayFidelity`]). `None` for every other attack.
    fn replay_fidelity(&self) -> Option<&ReplayFidelity> {
        None
    }

    /// Undoes what the lab's teardown would not (mounts added inside the namespace, processes left behind).
    fn revert(&mut self, _env: &mut dyn Env) -> Result<(), AttackError> {
        Ok(())
    }
}

/// Builds the attack called `name` with `params`: its [`CATALOGUE`] entry's constructor.
pub fn create(name: &str, params: &Params) -> Result<Box<dyn Attack>, AttackError> {
    let spec = find(name).ok_or_else(|| AttackError::Param {
        name: "name".to_owned(),
        reason: format!("no attack called {name:?}"),
    })?;
    (spec.create)(params)
}

/// The default content a trojaned file gets.
pub const TROJAN: &str = "#!/bin/sh\necho 'trojan: attacker code runs here'\n";

/// Flips every bit of the byte at `offset` of `path`; returns the old and new byte.
pub fn flip_byte(path: &std::path::Path, offset: u64) -> Result<(u8, u8), AttackError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AttackError::env(format!("{}: {e}", path.display())))?;
    let mut byte = [0u8];
    let io = |e: std::io::Error| AttackError::env(format!("{} at {offset}: {e}", path.display()));
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    file.read_exact(&mut byte).map_err(io)?;
    let old = byte[0];
    byte[0] = !old;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    file.write_all(&byte).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok((old, byte[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Param;

    fn with(pairs: &[(&str, Param)]) -> Params {
        Params(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    #[test]
    fn every_name_creates_its_attack_and_unknown_names_are_refused() {
        let params = with(&[
            ("path", Param::String("bin/app".to_owned())),
            ("content", Param::String("#!/bin/sh\n".to_owned())),
            ("dir", Param::String("etc".to_owned())),
        ]);
        for spec in CATALOGUE {
            let attack = create(spec.name, &params).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert_eq!(attack.name(), spec.name);
        }
        assert!(matches!(create("nope", &params), Err(AttackError::Param { .. })));
        assert!(matches!(
            create("overmount", &Params::default()),
            Err(AttackError::Param { .. })
        ));
    }

    #[test]
    fn a_whiteout_of_a_name_a_directory_can_hold_is_no_malformed_whiteout() {
        let params = with(&[
            ("dir", Param::String("etc".to_owned())),
            ("hidden", Param::String("passwd".to_owned())),
        ]);
        assert!(matches!(
            create("malformed-whiteout", &params),
            Err(AttackError::Param { name, .. }) if name == "hidden"
        ));
    }

    #[test]
    fn flip_byte_inverts_one_byte_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, [1u8, 2, 3]).unwrap();
        assert_eq!(flip_byte(&file, 1).unwrap(), (2, !2));
        assert_eq!(std::fs::read(&file).unwrap(), [1, !2, 3]);
        assert!(flip_byte(&file, 9).is_err());
    }

    #[test]
    fn upperdir_write_without_upperdir_reports_a_write_that_succeeded_as_such() {
        let params = with(&[("path", Param::String("bin/app".to_owned()))]);
        let mut lab = stub::Stub::default();
        let mut attack = create("upperdir-write", &params).unwrap();
        let done = attack.detonate(&mut lab);
        assert!(
            !matches!(done, Err(AttackError::Refused { .. })),
            "a write that succeeded is no refusal: {done:?}"
        );
        assert_eq!(lab.files["bin/app"], TROJAN.as_bytes());
        let effect = attack.observe(&mut lab).unwrap();
        assert!(effect.took_effect(), "{effect:?}");

        let mut read_only = stub::Stub {
            read_only: true,
            ..stub::Stub::default()
        };
        let mut attack = create("upperdir-write", &params).unwrap();
        assert!(matches!(
            attack.detonate(&mut read_only),
            Err(AttackError::Refused {
                kind: DefenceRefusal::ReadOnly,
                ..
            })
        ));
    }

    #[test]
    fn check_at_most_once_tamper_sees_whether_the_container_reads_the_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer.erofs");
        std::fs::write(&layer, b"....#!/bin/sh\n....").unwrap();
        let params = with(&[("path", Param::String("bin/app".to_owned()))]);
        for reads_through in [true, false] {
            std::fs::write(&layer, b"....#!/bin/sh\n....").unwrap();
            let mut lab = stub::Stub {
                layer: Some(layer.clone()),
                offsets: [("bin/app".to_owned(), 4)].into(),
                files: [("bin/app".to_owned(), b"#!/bin/sh\n".to_vec())].into(),
                reads_through,
                ..stub::Stub::default()
            };
            lab.publish().unwrap();
            let mut attack = create("check-at-most-once-tamper", &params).unwrap();
            attack.detonate(&mut lab).unwrap();
            let effect = attack.observe(&mut lab).unwrap();
            assert_eq!(effect.took_effect(), reads_through, "{effect:?}");
        }
    }

    #[test]
    fn malforming_garbage_is_an_error_not_a_panic() {
        for field in [
            "dirent-nameoff",
            "inode-size",
            "root-nid",
            "xattr-count",
            "superblock-blocks",
        ] {
            assert!(malformed_erofs::malform(&mut [0u8; 100], field).is_err(), "{field}");
            let mut zeros = vec![0u8; 8192];
            let _ = malformed_erofs::malform(&mut zeros, field);
            let mut ones = vec![0xffu8; 8192];
            let _ = malformed_erofs::malform(&mut ones, field);
        }
    }
}
