//! Outcomes: what a scenario expects of a profile, what a run observed, and the difference between them.
//!
//! A cell of the matrix (one scenario, one profile, one backend) ends in one [`Outcome`]:
//! - `blocked`: the attacker's change never reached the container (a pull, signature check, mount or read
//!   failed with a typed error, or there was nothing to tamper with);
//! - `detected`: the change reached the node or the container, and a check reported it (an audit finding,
//!   periodic re-verification, the cleanup helper, a device that turned `corrupted`);
//! - `undetected`: the change took effect (the container showed it: the attack's observed [`EffectState`]) and
//!   nothing noticed;
//! - `inconclusive`: nothing refused or reported it, and whether it took effect cannot be seen from the
//!   container. No scenario may expect it: it always fails the run.
//!
//! The evidence vocabulary ([`ErrorKind`], [`FindingKind`], [`DeviceState`]) is what scenario files name; the
//! runner maps the lab's typed errors and audit findings onto it. [`compare`] turns an [`Expectation`] and an
//! [`Observation`] into a list of [`Difference`]s: empty means the cell is as expected.

use std::fmt;

/// How a profile fared against an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The tampered content never reached the container.
    Blocked,
    /// The tampering was reported, with evidence.
    Detected,
    /// The tampering took effect and nothing noticed.
    Undetected,
    /// Nothing refused or reported the tampering, and its effect could not be observed.
    Inconclusive,
}

impl Outcome {
    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Blocked => "blocked",
            Outcome::Detected => "detected",
            Outcome::Undetected => "undetected",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of error that stopped an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Content did not match its digest (pull, store).
    DigestMismatch,
    /// No signature exists for the manifest digest.
    SignatureMissing,
    /// A signature does not verify with a trusted key, or names another manifest digest.
    SignatureInvalid,
    /// A layer's hash tree does not hash to the trusted root hash: the mount is refused.
    RootHashMismatch,
    /// A block failed verification on read (the device returned `EIO`).
    HashMismatch,
    /// A read past the end of the verified device.
    OutOfRange,
    /// Policy: the image's build timestamp is older than the repository's minimum.
    Rollback,
    /// Policy: the layers do not all come from one signed manifest.
    MixedLayers,
    /// A write failed because the filesystem is read-only (no upperdir).
    ReadOnly,
    /// The EROFS reader or the kernel refused a malformed image.
    MalformedImage,
    /// A layer's root-hash signature was missing or refused when its device opened (the kernel's keyring
    /// check, or its emulation): the mount is refused.
    RootHashSignature,
    /// Executing a file was refused (`EACCES`) because it does not come from a signature-checked verified
    /// device (the kernel's IPE, or its emulation).
    ExecDenied,
    /// The cluster's admission controller refused the pod (the scenario's admission stage): its signature,
    /// its digest or its rule.
    AdmissionDenied,
    /// A layer has no dm-verity metadata (containerd's `layer.erofs.dmverity` sidecar) and the profile
    /// requires it (`dmverity_mode = "on"`): the mount is refused.
    VerityMetadataMissing,
}

/// The kind of a mount-audit, re-verification or cleanup finding.
///
/// The audit's kinds are spelled as `audit::AuditFinding::kind` spells them, so the runner maps them one to one;
/// `tree-mismatch` stands for any finding of re-verification at rest, `leaked-mount` for what the cleanup
/// helper reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Audit: something is mounted at or under the rootfs beside the verified overlay.
    Overmount,
    /// Audit: a mount appeared in the namespace, outside the rootfs, after the mount was made.
    UnexpectedMount,
    /// Audit: the overlay has a writable upperdir where the profile forbids one.
    WritableUpperdir,
    /// Audit: the overlay is not read-only where the profile requires it.
    OverlayWritable,
    /// Audit: the overlay's lowerdirs are not the recorded ones.
    LowerdirsChanged,
    /// Audit: the counts of lowerdirs, verified devices and EROFS mounts disagree.
    CountMismatch,
    /// Audit: a layer's mount cannot be traced to a verified device with a trusted root hash.
    UntracedLayer,
    /// Audit: a layer's device uses a root hash other than the trusted one.
    RootHashMismatch,
    /// Audit: a layer's verified device has seen corruption.
    DeviceCorrupted,
    /// Audit: the namespace holding the mount is gone.
    NamespaceGone,
    /// Container audit: the container's process is not running (it ended, or its pid now belongs to an unrelated
    /// process).
    ContainerNotRunning,
    /// Container audit: the container's process is gone and another process holds its pid inside the
    /// container's own mount namespace.
    ProcessReplaced,
    /// Audit: no rootfs overlay is at the target.
    RootfsMissing,
    /// Audit: a mount the holder made was replaced by another (by unique mount id).
    MountReplaced,
    /// Audit: the kernel's active IPE policy is not the one the `enforced` mount loaded.
    ExecPolicyChanged,
    /// Re-verification at rest found a layer whose files no longer match its pinned root hash.
    TreeMismatch,
    /// Cleanup: a mount, loop device or FUSE server remained after the container stopped.
    LeakedMount,
}

/// A verified device's state, as dm-verity's status letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceState {
    /// `V`: every read verified.
    Verified,
    /// `C`: a corruption was seen.
    Corrupted,
    /// `V` after forward error correction: every read verified, some of them only after the block was
    /// corrected from the layer's parity (the device's corrected counter is not zero).
    Repaired,
}

impl From<verity_fuse::device::State> for DeviceState {
    fn from(state: verity_fuse::device::State) -> Self {
        match state {
            verity_fuse::device::State::Verified => DeviceState::Verified,
            verity_fuse::device::State::Corrupted => DeviceState::Corrupted,
        }
    }
}

/// Each kind's name as scenario files and reports spell it (kebab-case, as its serde form: a test checks the
/// two agree), and `Display` printing it.
macro_rules! kebab_names {
    ($($ty:ident { $($variant:ident => $name:literal),* $(,)? })*) => {$(
        impl $ty {
            /// Every variant.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The kebab-case name.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}

kebab_names! {
    ErrorKind {
        DigestMismatch => "digest-mismatch",
        SignatureMissing => "signature-missing",
        SignatureInvalid => "signature-invalid",
        RootHashMismatch => "root-hash-mismatch",
        HashMismatch => "hash-mismatch",
        OutOfRange => "out-of-range",
        Rollback => "rollback",
        MixedLayers => "mixed-layers",
        ReadOnly => "read-only",
        MalformedImage => "malformed-image",
        RootHashSignature => "root-hash-signature",
        ExecDenied => "exec-denied",
        AdmissionDenied => "admission-denied",
        VerityMetadataMissing => "verity-metadata-missing",
    }
    FindingKind {
        Overmount => "overmount",
        UnexpectedMount => "unexpected-mount",
        WritableUpperdir => "writable-upperdir",
        OverlayWritable => "overlay-writable",
        LowerdirsChanged => "lowerdirs-changed",
        CountMismatch => "count-mismatch",
        UntracedLayer => "untraced-layer",
        RootHashMismatch => "root-hash-mismatch",
        DeviceCorrupted => "device-corrupted",
        NamespaceGone => "namespace-gone",
        ContainerNotRunning => "container-not-running",
        ProcessReplaced => "process-replaced",
        RootfsMissing => "rootfs-missing",
        MountReplaced => "mount-replaced",
        TreeMismatch => "tree-mismatch",
        LeakedMount => "leaked-mount",
        ExecPolicyChanged => "exec-policy-changed",
    }
    DeviceState {
        Verified => "verified",
        Corrupted => "corrupted",
        Repaired => "repaired",
    }
    EffectState {
        TookEffect => "took-effect",
        Genuine => "genuine",
        Unobservable => "unobservable",
    }
}

/// What a scenario expects of one profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The expected outcome.
    pub outcome: Outcome,
    /// The kind of error expected among the observed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
    /// Finding kinds expected among the observed ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingKind>,
    /// The state the verified device is expected to be in afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceState>,
    /// Why this is the outcome (mandatory when the hardened profile is expected `undetected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// An error seen during a cell's run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorEvidence {
    /// Its kind.
    pub kind: ErrorKind,
    /// The step that failed.
    pub step: String,
    /// The error's message.
    pub message: String,
}

/// A finding reported during a cell's run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FindingEvidence {
    /// Its kind.
    pub kind: FindingKind,
    /// The path inside the rootfs it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The finding's message (device numbers, root hashes, ...).
    pub message: String,
}

/// A verified device's status after the attack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSnapshot {
    /// Which device (layer digest or device name).
    pub device: String,
    /// `verified`, `repaired` or `corrupted`.
    pub state: DeviceState,
    /// Data blocks verified.
    pub blocks_verified: u64,
    /// Corruptions seen.
    pub corruptions: u64,
    /// Blocks corrected from parity and then verified (the device's FEC counter).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fec_corrected: u64,
    /// Blocks the parity could not correct.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fec_uncorrectable: u64,
    /// The first corrupted block, as the device names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_corrupted: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The phase of an attack's lifecycle a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Building, pulling, converting and mounting the image for the profile.
    Setup,
    /// The attack's preparation.
    Prepare,
    /// The attack itself.
    Detonate,
    /// Reading through the container and running the profile's checks.
    Observe,
    /// Undoing the attack and tearing the profile down.
    Revert,
    /// Checking that nothing (mounts, loop devices, FUSE servers, temp files) was left behind.
    LeakCheck,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Setup => "setup",
            Phase::Prepare => "prepare",
            Phase::Detonate => "detonate",
            Phase::Observe => "observe",
            Phase::Revert => "revert",
            Phase::LeakCheck => "leak-check",
        })
    }
}

/// One step of a cell's run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineStep {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// The lifecycle phase.
    pub phase: Phase,
    /// What was done.
    pub action: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it produced or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the container showed of the attack, as the attack observed it from the container's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EffectState {
    /// The container showed the attacker's change.
    TookEffect,
    /// The container showed the genuine content.
    Genuine,
    /// Nothing the container shows can tell.
    Unobservable,
}

/// The attack's observation of its effect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EffectEvidence {
    /// What the container showed.
    pub state: EffectState,
    /// What was seen, or why nothing could be.
    pub detail: String,
    /// For an attack that replays mounts: which identities the kernel hands out again came back. An
    /// imperfect replay (another process took a freed mount id, device number or loop device) may leave
    /// findings a perfect one would not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<attacks::ReplayFidelity>,
}

impl EffectEvidence {
    /// True when the attack replayed mounts and some identity did not come back.
    pub fn imperfect_replay(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| !r.perfect())
    }
}

impl From<&attacks::Effect> for EffectEvidence {
    fn from(effect: &attacks::Effect) -> Self {
        let state = match effect {
            attacks::Effect::Seen(_) => EffectState::TookEffect,
            attacks::Effect::Genuine(_) => EffectState::Genuine,
            attacks::Effect::Unobservable(_) => EffectState::Unobservable,
        };
        Self {
            state,
            detail: effect.detail().to_owned(),
            replay: None,
        }
    }
}

/// Everything a cell's run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    /// Errors raised by the pipeline (not by the harness).
    pub errors: Vec<ErrorEvidence>,
    /// Findings of the audit, re-verification and cleanup.
    pub findings: Vec<FindingEvidence>,
    /// Verified devices' status after the attack.
    pub devices: Vec<DeviceSnapshot>,
    /// What the container showed of the attack, when the pipeline got as far as looking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<EffectEvidence>,
    /// The steps, in order.
    pub timeline: Vec<TimelineStep>,
}

/// What a cell's run observed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    /// The outcome the runner concluded from the evidence.
    pub outcome: Outcome,
    /// The evidence the outcome rests on, in one line: the product's refusal or finding for `blocked` and
    /// `detected`, the container's observation for `undetected` (or a `blocked` attack that never showed),
    /// why nothing could be seen for `inconclusive`.
    #[serde(default)]
    pub grounds: String,
    /// The evidence.
    pub evidence: Evidence,
}

/// One way an observation differs from its expectation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Difference {
    /// Another outcome than expected.
    Outcome {
        /// Expected.
        expected: Outcome,
        /// Observed.
        observed: Outcome,
    },
    /// The expected error kind was not among the observed errors.
    Error {
        /// Expected.
        expected: ErrorKind,
        /// The kinds observed.
        observed: Vec<ErrorKind>,
    },
    /// An expected finding kind was not among the observed findings.
    Finding {
        /// Expected.
        expected: FindingKind,
        /// The kinds observed.
        observed: Vec<FindingKind>,
    },
    /// No device was observed in the expected state.
    Device {
        /// Expected.
        expected: DeviceState,
        /// The states observed.
        observed: Vec<DeviceState>,
    },
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Outcome { expected, observed } => {
                write!(f, "outcome: expected {expected}, observed {observed}")
            }
            Difference::Error { expected, observed } => {
                write!(f, "error: expected {expected}, observed {}", list(observed))
            }
            Difference::Finding { expected, observed } => {
                write!(f, "finding: expected {expected}, observed {}", list(observed))
            }
            Difference::Device { expected, observed } => {
                write!(f, "device: expected {expected}, observed {}", list(observed))
            }
        }
    }
}

/// Compares an observation with its expectation: each expected piece of evidence must be among the observed
/// ones (more evidence than expected is fine). Empty means as expected.
pub fn compare(expected: &Expectation, observed: &Observation) -> Vec<Difference> {
    let mut out = Vec::new();
    if expected.outcome != observed.outcome {
        out.push(Difference::Outcome {
            expected: expected.outcome,
            observed: observed.outcome,
        });
    }
    let evidence = &observed.evidence;
    if let Some(kind) = expected.error
        && !evidence.errors.iter().any(|e| e.kind == kind)
    {
        out.push(Difference::Error {
            expected: kind,
            observed: evidence.errors.iter().map(|e| e.kind).collect(),
        });
    }
    for &kind in &expected.findings {
        if !evidence.findings.iter().any(|f| f.kind == kind) {
            out.push(Difference::Finding {
                expected: kind,
                observed: evidence.findings.iter().map(|f| f.kind).collect(),
            });
        }
    }
    if let Some(state) = expected.device
        && !evidence.devices.iter().any(|d| d.state == state)
    {
        out.push(Difference::Device {
            expected: state,
            observed: evidence.devices.iter().map(|d| d.state).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_the_serde_names() {
        fn check<T: serde::Serialize + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(
                    serde_json::to_value(v).unwrap(),
                    serde_json::Value::String(v.to_string())
                );
            }
        }
        check(super::ErrorKind::ALL);
        check(super::FindingKind::ALL);
        check(super::DeviceState::ALL);
        check(super::EffectState::ALL);
    }

    use super::*;

    fn expect(outcome: Outcome) -> Expectation {
        Expectation {
            outcome,
            error: None,
            findings: Vec::new(),
            device: None,
            why: None,
        }
    }

    #[test]
    fn extra_evidence_is_fine_missing_evidence_is_a_difference() {
        let mut expected = expect(Outcome::Detected);
        expected.findings = vec![FindingKind::Overmount];
        expected.device = Some(DeviceState::Corrupted);
        let observed = Observation {
            outcome: Outcome::Detected,
            grounds: String::new(),
            evidence: Evidence {
                findings: vec![
                    FindingEvidence {
                        kind: FindingKind::UnexpectedMount,
                        path: None,
                        message: "x".into(),
                    },
                    FindingEvidence {
                        kind: FindingKind::Overmount,
                        path: Some("etc".into()),
                        message: "y".into(),
                    },
                ],
                ..Evidence::default()
            },
        };
        let diff = compare(&expected, &observed);
        assert_eq!(
            diff,
            vec![Difference::Device {
                expected: DeviceState::Corrupted,
                observed: vec![]
            }]
        );
        assert_eq!(diff[0].to_string(), "device: expected corrupted, observed none");
        let wrong = Observation {
            outcome: Outcome::Undetected,
            grounds: String::new(),
            evidence: Evidence::default(),
        };
        assert_eq!(
            compare(&expect(Outcome::Blocked), &wrong)[0].to_string(),
            "outcome: expected blocked, observed undetected"
        );
        assert_eq!(ErrorKind::RootHashMismatch.to_string(), "root-hash-mismatch");
    }
}
