//! Mounting an image's rootfs the way each defence profile would, and taking it down again.
//!
//! A mount is planned first ([`prepare`]): which layer files, which root hashes (from the local conversion
//! records for `verity`, from each layer's `layer.erofs.dmverity` sidecar for the containerd profiles
//! ([`containerd`]), from the verified signature for `hardened`), where the state lives. A verified image
//! ([`Trust::Verified`]) is planned from exactly the manifest digest and ordered layers the verifier checked:
//! its name is never looked up again, and `hardened` takes nothing but its [`SignedRootHash`]es. The plan is
//! written to `<store>/mounts/<id>/plan.json`; the backend carries it out and writes `record.json`, the
//! record of everything it set up, so [`umount`] removes exactly that and [`list`] can show it. On the
//! `kernel` backend a holder process in a private mount namespace owns every mount (see `kernel`): if it
//! dies, the namespace and its mounts die with it.

pub(crate) mod cleanup;
pub mod containerd;
pub mod dm;
pub mod emulated;
pub(crate) mod kernel;
pub mod pinned;
pub mod record;
pub(crate) mod signed;
pub(crate) mod view;

pub use cleanup::{Cleaned, cleanup};
pub use record::MountId;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::convert::{self, ConvertError, LayerFec, VerityLayout};
use crate::defence::{self, Defence};
use crate::oci::digest::Digest;
use crate::profile::{Backend, Profile};
use crate::root_hash::RootHash;
use crate::sign::verify::{SignedRootHash, VerifiedImage};
use crate::store::{Store, StoreError, write_atomically};
use verity_fuse::ErrorClass;

pub use record::{Enforcer, Record, RecordError};
pub use signed::{LayerTrust, RootHashSignature, SignedOpenError};

/// One layer as a mount uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedLayer {
    /// A short name: the layer digest, or `pinned:mountpoints`.
    pub name: String,
    /// The EROFS image (for the containerd layout, followed by its tree).
    pub erofs: PathBuf,
    /// Bytes of EROFS data covered by the tree.
    pub erofs_size: u64,
    /// The file holding the hash area.
    pub hash: PathBuf,
    /// Offset of the verity superblock in `hash`.
    pub hashoffset: u64,
    /// The root hash the device is opened with; `None` for unverified profiles.
    pub root_hash: Option<RootHash>,
    /// The layer's forward error correction, when its device corrects from parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec: Option<PlannedFec>,
    /// The kernel root-hash signature the verified manifest carries for the layer (`enforced` only), checked
    /// against the plan's keyring (or the kernel's) when the device opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash_signature: Option<RootHashSignature>,
    /// The layer must open with a root-hash signature a trusted certificate verifies (`enforced`'s publisher
    /// layers; not the pinned layer, whose root hash is compiled in).
    #[serde(default)]
    pub signature_required: bool,
}

/// A layer's parity as a mount uses it: the file (parity at offset 0) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFec {
    /// The parity file.
    pub file: PathBuf,
    /// The parameters, from the signed descriptor (`hardened`) or the conversion record (`verity`).
    #[serde(flatten)]
    pub params: LayerFec,
}

/// Everything a backend needs to mount an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The mount's id (also its state directory's name).
    pub id: String,
    /// Where the rootfs appears.
    pub target: PathBuf,
    /// The image's name in the store.
    pub image: String,
    /// Its manifest digest: for a verified image, the digest that was verified.
    pub manifest: Digest,
    /// The signature the layers' root hashes come from, when they come from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<PlanSignature>,
    /// The profile.
    pub profile: Profile,
    /// The backend.
    pub backend: Backend,
    /// The mount's state directory.
    pub state: PathBuf,
    /// The layers, base first (the pinned layer, if any, last).
    pub layers: Vec<PlannedLayer>,
    /// Open the verified devices with dm-verity's `check_at_most_once`: a data block verified once is served
    /// unchecked afterwards.
    #[serde(default)]
    pub check_at_most_once: bool,
    /// The node's trusted certificates for root-hash signatures (a file or a directory, as
    /// `verity-fuse open --keyring` takes it): `enforced` checks each layer's signature against them where
    /// the kernel does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// The signed IPE policy (`veritylab ipe policy`'s `NAME.ipe.p7s`) `enforced` loads and activates on the
    /// kernel backend where securityfs has IPE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipe_policy: Option<PathBuf>,
}

impl Plan {
    /// Where the writable upper directory goes, for profiles that have one.
    pub fn upperdir(&self) -> Option<PathBuf> {
        self.has_upperdir().then(|| self.state.join("upper"))
    }

    /// The overlay's work directory, for profiles with an upperdir.
    pub fn workdir(&self) -> Option<PathBuf> {
        self.has_upperdir().then(|| self.state.join("work"))
    }

    fn has_upperdir(&self) -> bool {
        self.profile.writable() || !defence::on(Defence::NoUpperdir)
    }

    /// True when the rootfs is mounted read-only (`hardened`), whether or not it has an upperdir.
    pub fn read_only(&self) -> bool {
        !self.profile.writable() && defence::on(Defence::ReadOnlyRootfs)
    }
}

/// What a mount is planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The stored image of this name, with root hashes from the node's conversion records (what `verity` uses;
    /// `hardened` refuses it).
    Local(String),
    /// An image that passed verification: exactly its manifest and layers, with root hashes from its signature.
    Verified(Box<VerifiedImage>),
}

impl Trust {
    /// The name the image is known by.
    pub fn name(&self) -> &str {
        match self {
            Trust::Local(name) => name,
            Trust::Verified(image) => image.name(),
        }
    }
}

/// The signature a plan's root hashes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSignature {
    /// The manifest digest the signature covers (the plan's manifest).
    pub manifest: Digest,
    /// The fingerprint of the key that verified it.
    pub key: String,
}

/// Why a backend refused a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerRefusalKind {
    /// The verified device refused the root hash or tree parameters.
    RootHash,
    /// A block failed verification while the filesystem was read.
    Verification,
    /// The filesystem refused the image (the kernel's EROFS, or our reader).
    Malformed,
    /// The layer's root-hash signature was missing or refused by the kernel's check (or its emulation).
    Signature,
}

impl LayerRefusalKind {
    /// What kind of failure a refusal of this kind is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::RootHash | Self::Verification => ErrorClass::VerificationFailed,
            Self::Malformed => ErrorClass::BadInput,
            Self::Signature => ErrorClass::NotTrusted,
        }
    }
}

/// A layer a backend refused to bring up, with the state of the verified devices at that moment (a holder
/// writes it to `record::REFUSAL_FILE` before it exits, so the evidence outlives it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRefusal {
    /// What kind of refusal.
    pub kind: LayerRefusalKind,
    /// The layer's name.
    pub layer: String,
    /// What failed, as the backend saw it.
    pub message: String,
    /// Each verified device opened so far (layer name, status report).
    pub devices: Vec<(String, verity_fuse::fuse::StatusReport)>,
}

impl std::fmt::Display for LayerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {}: {}", self.layer, self.message)
    }
}

/// A failed mount, umount or listing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The store failed or lacks the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Converting a layer failed.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// A record or plan is unusable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The profile needs root hashes from a verified signature.
    #[error("the hardened profile takes root hashes only from a verified signature (give --key)")]
    Unsigned,
    /// The image verified without a signature of its own (a policy allowed it), which `hardened` never takes.
    #[error(
        "{image}: the hardened profile requires a signature by a trusted key over this manifest, whatever the policy says; none verified, so its root hashes are only the image's own claims"
    )]
    NotSigned {
        /// The image.
        image: String,
    },
    /// What a backend set up differs from the plan made from the verified image; it was taken down.
    #[error("mounting {}: {what} differs from what was verified; taken down", target.display())]
    NotAsVerified {
        /// The target.
        target: PathBuf,
        /// What differs.
        what: String,
    },
    /// The `enforced` profile was asked for without the node's trusted certificates.
    #[error(
        "the enforced profile checks root-hash signatures against the node's trusted certificates (give --keyring)"
    )]
    NoKeyring,
    /// The kernel has IPE but the `enforced` mount was given no signed policy to load.
    #[error(
        "this kernel has IPE ({}): the enforced profile loads a signed policy (give --ipe-policy)",
        crate::ipe::SECURITYFS_IPE
    )]
    NoIpePolicy,
    /// Loading or activating the IPE policy failed; the mount was taken down.
    #[error(transparent)]
    Ipe(#[from] crate::ipe::IpeError),
    /// A layer's root-hash signature annotation cannot be handed to the kernel (not base64, too large).
    #[error(transparent)]
    SignatureAnnotation(#[from] crate::sign::kernel_annotation::LayerSignatureError),
    /// The signature does not give a root hash for a layer.
    #[error("layer {layer} has no signed root hash")]
    MissingRootHash {
        /// The layer.
        layer: Digest,
    },
    /// The target is not usable.
    #[error("{}: {reason}", target.display())]
    Target {
        /// The target.
        target: PathBuf,
        /// Why.
        reason: String,
    },
    /// The backend cannot run here.
    #[error("backend {backend} is not available here: {reason}")]
    Unavailable {
        /// The backend.
        backend: Backend,
        /// Why.
        reason: String,
    },
    /// Setting up the mount failed; everything set up so far was removed.
    #[error("mounting {}: {reason}", target.display())]
    Setup {
        /// The target.
        target: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A layer's content or root hash was refused while the backend brought it up; nothing is left mounted.
    #[error("mounting {}: {refusal}", target.display())]
    Refused {
        /// The target.
        target: PathBuf,
        /// What was refused and why.
        refusal: LayerRefusal,
    },
    /// Nothing is mounted at the target by this store.
    #[error("{}: no veritylab mount here", target.display())]
    NotMounted {
        /// The target.
        target: PathBuf,
    },
    /// A layer's forward error correction does not fit it (parameters, parity size).
    #[error(transparent)]
    Fec(#[from] convert::FecError),
    /// containerd's `dmverity_mode = "on"` found no `layer.erofs.dmverity` sidecar for a layer.
    #[error("layer {layer}: dm-verity mode is on but {} does not exist", path.display())]
    VerityMetadataMissing {
        /// The layer.
        layer: String,
        /// The sidecar looked for.
        path: PathBuf,
    },
    /// A layer's `layer.erofs.dmverity` sidecar does not parse.
    #[error("{}: not a dm-verity sidecar: {reason}", path.display())]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The pinned standard-mountpoints layer does not build to its pinned root hash.
    #[error("the standard-mountpoints layer has root hash {found}, pinned is {pinned}")]
    PinnedMismatch {
        /// The compiled-in root hash.
        pinned: &'static str,
        /// What was built.
        found: RootHash,
    },
}

impl MountError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Store(e) => e.class(),
            Self::Convert(e) => e.class(),
            Self::Record(e) => e.class(),
            Self::Unsigned | Self::NoKeyring => ErrorClass::Usage,
            Self::SignatureAnnotation(e) => e.class(),
            Self::NoIpePolicy => ErrorClass::Usage,
            Self::Ipe(e) => e.class(),
            Self::NotSigned { .. } | Self::NotAsVerified { .. } | Self::MissingRootHash { .. } => {
                ErrorClass::NotTrusted
            }
            Self::Refused { refusal, .. } => refusal.kind.class(),
            Self::Target { .. } | Self::NotMounted { .. } => ErrorClass::BadInput,
            Self::Unavailable { .. } => ErrorClass::Unavailable,
            Self::Setup { .. } => ErrorClass::Io,
            Self::PinnedMismatch { .. } => ErrorClass::VerificationFailed,
            Self::VerityMetadataMissing { .. } => ErrorClass::NotTrusted,
            Self::Sidecar { .. } => ErrorClass::BadInput,
            Self::Fec(e) => e.class(),
        }
    }
}

/// Plans mounting `trust`'s image at `target`: converts its layers if needed and picks root hashes. A
/// [`Trust::Verified`] image is planned from exactly its verified manifest and ordered layers, with no lookup
/// by name; `hardened` takes only its signed root hashes.
pub fn prepare(
    store: &Store,
    trust: &Trust,
    target: &Path,
    profile: Profile,
    backend: Backend,
) -> Result<Plan, MountError> {
    if profile.enforced() {
        return Err(MountError::NoKeyring);
    }
    prepare_profile(store, trust, target, profile, backend)
}

/// What the `enforced` profile trusts beyond `hardened`: the node's configuration, like its trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTrust {
    /// The trusted certificates for root-hash signatures (a file or a directory), where the kernel's own
    /// keyrings do not decide.
    pub keyring: PathBuf,
    /// The signed IPE policy to load and activate where the kernel has IPE.
    pub ipe_policy: Option<PathBuf>,
}

/// Plans mounting `trust`'s image at `target` with the `enforced` profile: as [`prepare`] does for
/// `hardened`, and each publisher layer carries the root-hash signature its verified manifest holds (none is
/// refused at device open), checked against `kernel.keyring` where the kernel does not check it itself.
pub fn prepare_enforced(
    store: &Store,
    trust: &Trust,
    target: &Path,
    backend: Backend,
    kernel: &KernelTrust,
) -> Result<Plan, MountError> {
    let mut plan = prepare_profile(store, trust, target, Profile::Enforced, backend)?;
    let absolute = |path: &Path, what| {
        fs::canonicalize(path).map_err(|source| StoreError::Io {
            what,
            path: path.to_owned(),
            source,
        })
    };
    plan.keyring = Some(absolute(&kernel.keyring, "resolving the keyring")?);
    plan.ipe_policy = kernel
        .ipe_policy
        .as_deref()
        .map(|p| absolute(p, "resolving the IPE policy"))
        .transpose()?;
    if let Trust::Verified(image) = trust {
        for (planned, layer) in plan.layers.iter_mut().zip(image.layers()) {
            planned.root_hash_signature = layer.root_hash_signature_der()?.map(RootHashSignature::from_der);
        }
    }
    for layer in &mut plan.layers {
        layer.signature_required = layer.name != pinned::NAME && defence::on(Defence::KernelSignatures);
    }
    Ok(plan)
}

fn prepare_profile(
    store: &Store,
    trust: &Trust,
    target: &Path,
    profile: Profile,
    backend: Backend,
) -> Result<Plan, MountError> {
    let target = absolute_target(target)?;
    let (manifest, signature, planned) = match trust {
        Trust::Local(_) if profile.hardened() && defence::on(Defence::SignatureCheck) => {
            return Err(MountError::Unsigned);
        }
        Trust::Local(name) => {
            let conversion = convert::convert_image(store, name, VerityLayout::Containerd, &|_| {})?;
            let planned = conversion
                .layers
                .into_iter()
                .map(|l| {
                    let c = l.conversion;
                    let root_hash = match profile.verified() {
                        true => Some(c.roothash),
                        false => None,
                    };
                    let fec = c.fec.filter(|_| profile.verified());
                    Ok((c, root_hash, fec))
                })
                .collect::<Result<Vec<_>, MountError>>()?;
            (conversion.manifest, None, planned)
        }
        Trust::Verified(image) => plan_verified(store, image, profile)?,
    };
    let planned = match profile.containerd_dmverity() {
        Some(mode) => planned
            .into_iter()
            .map(|(c, _, _)| containerd::apply(c, mode).map(|(c, root)| (c, root, None)))
            .collect::<Result<Vec<_>, MountError>>()?,
        None => planned,
    };
    let mut layers: Vec<PlannedLayer> = planned
        .into_iter()
        .map(|(c, root_hash, fec)| PlannedLayer {
            name: c.layer.to_string(),
            erofs: c.dir.join(convert::LAYER_FILE),
            erofs_size: c.erofs_size,
            hash: c.dir.join(convert::LAYER_FILE),
            hashoffset: c.hashoffset,
            root_hash,
            fec: fec
                .filter(|_| defence::on(Defence::ErrorCorrection))
                .map(|params| PlannedFec {
                    file: c.dir.join(convert::FEC_FILE),
                    params,
                }),
            root_hash_signature: None,
            signature_required: false,
        })
        .collect();
    if profile.hardened() {
        layers.push(pinned::ensure(store)?);
    }
    let id = record::new_id();
    let state_root = record::state_root(store);
    fs::create_dir_all(&state_root).map_err(|source| StoreError::Io {
        what: "creating",
        path: state_root.clone(),
        source,
    })?;
    // Absolute, as mount tables show paths and overlayfs needs them.
    let state = fs::canonicalize(&state_root)
        .map_err(|source| StoreError::Io {
            what: "resolving",
            path: state_root.clone(),
            source,
        })?
        .join(&id);
    Ok(Plan {
        id,
        target,
        image: trust.name().to_owned(),
        manifest,
        signature,
        profile,
        backend,
        state,
        layers,
        check_at_most_once: false,
        keyring: None,
        ipe_policy: None,
    })
}

/// Each layer's conversion with the root hash its device is opened with (`None` for unverified profiles) and
/// the forward error correction it gets.
type PlannedLayers = Vec<(convert::LayerConversion, Option<RootHash>, Option<LayerFec>)>;

/// The verified image's manifest, signature and layers in order, each converted (or its conversion found) by
/// digest: `hardened` takes each layer's [`SignedRootHash`] and refuses an image without its own signature;
/// other verified profiles take the root hash the manifest states. A verified profile's layer whose
/// descriptor states FEC parameters gets them: the node's parity is made with those roots if it has none,
/// and parameters that do not fit the layer's tree are refused, naming the layer.
fn plan_verified(
    store: &Store,
    image: &VerifiedImage,
    profile: Profile,
) -> Result<(Digest, Option<PlanSignature>, PlannedLayers), MountError> {
    let signature = image.signed_by().map(|by| PlanSignature {
        manifest: image.manifest().digest,
        key: by.key.clone(),
    });
    let roots: Vec<Option<RootHash>> = if profile.hardened() && defence::on(Defence::SignatureCheck) {
        let signed = image.signed_layers().ok_or_else(|| MountError::NotSigned {
            image: image.name().to_owned(),
        })?;
        signed
            .into_iter()
            .map(|(_, root): (_, &SignedRootHash)| Some(*root.root_hash()))
            .collect()
    } else {
        image
            .layers()
            .iter()
            .map(|layer| profile.verified().then(|| layer.verity().root_hash))
            .collect()
    };
    let mut planned = Vec::with_capacity(roots.len());
    for (layer, root_hash) in image.layers().iter().zip(roots) {
        let converted = convert::convert_layer(
            store,
            &layer.digest(),
            layer.descriptor().size,
            VerityLayout::Containerd,
        )?;
        let mut conversion = converted.conversion;
        let fec = match layer.verity().fec.filter(|_| profile.verified()) {
            Some(signed) => {
                conversion = convert::fec::add(&conversion, signed.roots)?;
                convert::fec::layout(&conversion, signed)?;
                Some(signed)
            }
            None => None,
        };
        planned.push((conversion, root_hash, fec));
    }
    Ok((image.manifest().digest, signature, planned))
}

/// Carries out `plan`; returns the record of what was set up.
pub fn mount(store: &Store, plan: &Plan, exe: &Path) -> Result<Record, MountError> {
    if let Some(existing) = record::find(store, &plan.target)? {
        if existing.holder_alive() || existing.backend == Backend::Emulated {
            return Err(MountError::Target {
                target: plan.target.clone(),
                reason: format!("already mounted by veritylab (mount {})", existing.id),
            });
        }
        umount_record(existing)?;
    }
    fs::create_dir_all(&plan.state).map_err(|e| setup_error(plan, format!("creating the state directory: {e}")))?;
    let plan_file = plan.state.join(record::PLAN_FILE);
    write_atomically(&plan_file, &serde_json::to_vec_pretty(plan).unwrap_or_default())?;
    let result = match plan.backend {
        Backend::Kernel | Backend::Fuse => kernel::start(plan, exe),
        Backend::Emulated => emulated::start(plan),
    };
    let result = result.and_then(|record| match differs_from_plan(plan, &record) {
        None => Ok(record),
        Some(what) => {
            let _ = umount_record(record);
            Err(MountError::NotAsVerified {
                target: plan.target.clone(),
                what,
            })
        }
    });
    let result = result.and_then(|mut record| match enforce_exec(plan, &mut record) {
        Ok(()) => Ok(record),
        Err(e) => {
            let _ = umount_record(record);
            Err(e)
        }
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&plan.state);
    }
    result
}

/// Puts `enforced`'s exec rule in force for `record` and records who enforces it: on the kernel backend
/// where securityfs has IPE, the plan's signed policy is loaded (unless the kernel holds it already),
/// activated and enforced; elsewhere the rule is the emulation of `exec_policy`.
fn enforce_exec(plan: &Plan, record: &mut Record) -> Result<(), MountError> {
    if !plan.profile.enforced() {
        return Ok(());
    }
    let ipe = (plan.backend == Backend::Kernel)
        .then(crate::ipe::Securityfs::find)
        .flatten();
    record.exec_policy = Some(match ipe {
        None => Enforcer::Emulated,
        Some(ipe) => {
            let path = plan.ipe_policy.as_ref().ok_or(MountError::NoIpePolicy)?;
            let signed = crate::ipe::read_signed(path)?;
            Enforcer::Kernel {
                policy: ipe.load_and_activate(&signed)?,
            }
        }
    });
    write_atomically(
        &record.state.join(record::RECORD_FILE),
        &serde_json::to_vec_pretty(&*record).unwrap_or_default(),
    )?;
    Ok(())
}

/// What the backend's record says it set up that the plan (made from what was verified) does not say: the
/// manifest, the layers in order, or a root hash a device was opened with.
fn differs_from_plan(plan: &Plan, record: &Record) -> Option<String> {
    if record.manifest != plan.manifest {
        return Some(format!("manifest {} (planned {})", record.manifest, plan.manifest));
    }
    let mounted: Vec<(&str, Option<RootHash>)> = record.layers.iter().map(|l| (l.name.as_str(), l.root_hash)).collect();
    let planned: Vec<(&str, Option<RootHash>)> = plan.layers.iter().map(|l| (l.name.as_str(), l.root_hash)).collect();
    (mounted != planned).then(|| format!("the layers and root hashes mounted {mounted:?} (planned {planned:?})"))
}

/// What [`umount`] removed and anything that was left behind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UmountReport {
    /// The mount's id.
    pub id: String,
    /// The target.
    pub target: PathBuf,
    /// Whether the holder process had to be killed.
    pub killed: bool,
    /// Anything still present after the teardown (mounts, loop devices, processes); empty when clean.
    pub leftovers: Vec<String>,
}

/// Takes down the mount at `target`.
pub fn umount(store: &Store, target: &Path) -> Result<UmountReport, MountError> {
    let target = absolute_target(target)?;
    let record = record::find(store, &target)?.ok_or(MountError::NotMounted { target })?;
    umount_record(record)
}

fn umount_record(record: Record) -> Result<UmountReport, MountError> {
    let mut report = match record.backend {
        Backend::Kernel | Backend::Fuse => kernel::stop(&record),
        _ => UmountReport::default(),
    };
    report.id = record.id.clone();
    report.target = record.target.clone();
    fs::remove_dir_all(&record.state).map_err(|e| MountError::Setup {
        target: record.target.clone(),
        reason: format!("removing {}: {e}", record.state.display()),
    })?;
    Ok(report)
}

/// Every mount recorded in the store, with records whose holder died first cleaned up.
pub fn list(store: &Store) -> Result<Vec<Record>, MountError> {
    Ok(record::all(store)?)
}

fn absolute_target(target: &Path) -> Result<PathBuf, MountError> {
    fs::canonicalize(target).map_err(|e| MountError::Target {
        target: target.to_owned(),
        reason: e.to_string(),
    })
}

fn setup_error(plan: &Plan, reason: String) -> MountError {
    MountError::Setup {
        target: plan.target.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            id: "m".to_owned(),
            target: PathBuf::from("/t"),
            image: "i".to_owned(),
            manifest: Digest::of(b"verified"),
            signature: None,
            profile: Profile::Hardened,
            backend: Backend::Emulated,
            state: PathBuf::from("/s"),
            layers: vec![PlannedLayer {
                name: Digest::of(b"layer").to_string(),
                erofs: PathBuf::from("/l"),
                erofs_size: 4096,
                hash: PathBuf::from("/l"),
                hashoffset: 4096,
                root_hash: "ab".repeat(32).parse().ok(),
                fec: None,
                root_hash_signature: None,
                signature_required: false,
            }],
            check_at_most_once: false,
            keyring: None,
            ipe_policy: None,
        }
    }

    #[test]
    fn a_holder_is_its_pid_and_start_time_never_a_process_given_the_pid_later() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = verity_fuse::identity::ProcessId::of(child.id()).unwrap();
        let mut record = Record::for_plan(&plan());
        assert!(!record.holder_alive(), "no holder yet");
        record.holder = Some(me.pid);
        // A record without the start time falls back to the pid and the name, which `sleep` is not.
        assert!(!record.holder_alive());
        record.holder_start = Some(me.start);
        assert_eq!(record.holder_process(), Some(me));
        assert!(record.holder_alive());
        record.holder_start = Some(me.start + 1);
        assert!(
            !record.holder_alive(),
            "the same pid started at another time is another process"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        record.holder_start = Some(me.start);
        assert!(!record.holder_alive());
    }

    #[test]
    fn a_record_that_differs_from_the_verified_plan_is_named() {
        let plan = plan();
        let mut record = Record::for_plan(&plan);
        assert!(
            differs_from_plan(&plan, &record).is_some_and(|d| d.contains("layers")),
            "a layer missing from the record"
        );
        record.manifest = Digest::of(b"other");
        assert!(differs_from_plan(&plan, &record).is_some_and(|d| d.starts_with("manifest")));
    }
}
