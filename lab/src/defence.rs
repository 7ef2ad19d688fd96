//! The defences the profiles claim, by name, and (behind the `mutation` feature only) a way to turn each off.
//!
//! The scenario matrix credits its `blocked` and `detected` verdicts to these defences. To show that the
//! matrix can fail, the mutation test turns one defence (or the set a cell rests on) off and checks that the
//! cells crediting it no longer match their expectation. The switches live in the product code at the one place
//! each defence is applied. Without the `mutation` feature, which the `veritylab` command never enables,
//! [`on`] is the constant `true` and the switches do not exist.

use std::fmt;

/// A defence a profile claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Defence {
    /// The rootfs overlay is mounted read-only (`hardened`).
    ReadOnlyRootfs,
    /// The overlay has no upperdir, so nothing written lands under the container (`hardened`).
    NoUpperdir,
    /// Every block read from a layer is checked against its dm-verity tree (`verity`, `hardened`).
    VerifiedReads,
    /// Root hashes come from a verified signature, and the mount takes exactly the verified image (`hardened`).
    SignatureCheck,
    /// The trust policy's rules: a signature required, a minimum build timestamp, pull by digest (`hardened`).
    Policy,
    /// The mount audit `veritylab check` runs (`hardened`).
    Audit,
    /// Periodic re-verification of the converted layers at rest (`hardened`).
    Reverification,
    /// `veritylab cleanup` of mounts left behind by stopped containers (`hardened`).
    Cleanup,
    /// A block that fails its digest is corrected from the layer's parity and served only if the corrected
    /// bytes match the tree (`hardened`).
    ErrorCorrection,
    /// Each layer's root-hash signature checked by the kernel (or its emulation) when its device opens, and
    /// required (`enforced`).
    KernelSignatures,
    /// Execution only of files from signature-checked verified devices: the IPE policy, or its emulation
    /// (`enforced`).
    ExecPolicy,
    /// An admission stage's check of the pod's image against the registry, and its pinning of the verified
    /// tag to a digest (a scenario's `[admission]`, never a profile: the cluster's, not the node's).
    Admission,
}

impl Defence {
    /// Every defence, in the order reports list them.
    pub const ALL: [Defence; 12] = [
        Defence::ReadOnlyRootfs,
        Defence::NoUpperdir,
        Defence::VerifiedReads,
        Defence::SignatureCheck,
        Defence::Policy,
        Defence::Audit,
        Defence::Reverification,
        Defence::Cleanup,
        Defence::ErrorCorrection,
        Defence::KernelSignatures,
        Defence::ExecPolicy,
        Defence::Admission,
    ];

    /// The defence's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Defence::ReadOnlyRootfs => "read-only rootfs",
            Defence::NoUpperdir => "no upperdir",
            Defence::VerifiedReads => "verified reads",
            Defence::SignatureCheck => "signature check",
            Defence::Policy => "policy",
            Defence::Audit => "audit",
            Defence::Reverification => "periodic re-verification",
            Defence::Cleanup => "cleanup",
            Defence::ErrorCorrection => "error correction",
            Defence::KernelSignatures => "kernel-checked root-hash signatures",
            Defence::ExecPolicy => "exec policy",
            Defence::Admission => "admission check",
        }
    }

    #[cfg(feature = "mutation")]
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Defence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// True unless the mutation test turned `defence` off; always true without the `mutation` feature.
pub fn on(defence: Defence) -> bool {
    #[cfg(feature = "mutation")]
    {
        mutation::OFF.load(std::sync::atomic::Ordering::SeqCst) & defence.bit() == 0
    }
    #[cfg(not(feature = "mutation"))]
    {
        let _ = defence;
        true
    }
}

/// Turning defences off, for the mutation test only.
///
/// The switches are process-wide: a test that uses them runs alone in its own test binary, and the defences
/// come back on when the [`Weakened`] guard drops.
#[cfg(feature = "mutation")]
pub mod mutation {
    use super::Defence;
    use std::sync::atomic::{AtomicU16, Ordering};

    pub(super) static OFF: AtomicU16 = AtomicU16::new(0);

    /// While alive, the defences it names are off.
    #[derive(Debug)]
    #[must_use = "the defences come back on when this guard drops"]
    pub struct Weakened(());

    /// Turns `defences` off (and every other one on) until the guard drops.
    pub fn turn_off(defences: &[Defence]) -> Weakened {
        let bits = defences.iter().fold(0, |bits, d| bits | d.bit());
        OFF.store(bits, Ordering::SeqCst);
        Weakened(())
    }

    impl Drop for Weakened {
        fn drop(&mut self) {
            OFF.store(0, Ordering::SeqCst);
        }
    }
}
