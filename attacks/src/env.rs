//! The lab as an attack sees it: the primitives through which attacks touch one sandboxed run's real objects.
//! The scenario sandbox implements them; every path they return is inside that run's sandbox.

use std::fmt;
use std::path::{Path, PathBuf};

use veritylab::oci::Digest;
use veritylab::oci::manifest::ImageManifest;
use veritylab::root_hash::RootHash;
use veritylab::sign::Scheme;
use veritylab::store::Store;

use crate::AttackError;

/// The kind of a refusal an attack met, named as scenario files name errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefenceRefusal {
    /// A write failed because the filesystem is read-only.
    ReadOnly,
    /// A read past the end of the verified device (its bounds check: the device ends where the tree's data
    /// blocks end).
    OutOfRange,
    /// A block failed verification on read.
    HashMismatch,
    /// Executing a file was refused (`EACCES`): it does not come from a signature-checked verified device.
    ExecDenied,
}

impl fmt::Display for DefenceRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefenceRefusal::ReadOnly => "read-only",
            DefenceRefusal::OutOfRange => "out-of-range",
            DefenceRefusal::HashMismatch => "hash-mismatch",
            DefenceRefusal::ExecDenied => "exec-denied",
        })
    }
}

/// The key [`Env::sign`] signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// The publisher's key, the one the node trusts.
    Trusted,
    /// A fresh key the node does not trust.
    Untrusted,
}

/// The image's build time and the policy's floor for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildTimes {
    /// When the image under test was built (seconds since the epoch).
    pub built: u64,
    /// The policy's minimum build time for the repository (the hardened profile's rollback floor).
    pub minimum: u64,
}

/// One converted layer's files on the node disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFiles {
    /// The layer's digest (`sha256:...`).
    pub digest: String,
    /// `layer.erofs`: the EROFS image with its dm-verity tree appended (containerd layout).
    pub erofs: PathBuf,
    /// Bytes of EROFS data the tree covers.
    pub data_size: u64,
    /// Offset of the verity superblock in `erofs`; the tree's levels follow it, top level first.
    pub hash_offset: u64,
    /// Offset in `erofs` of each tree level's first byte, level 0 (the one hashing data blocks) first.
    pub levels: Vec<u64>,
}

/// What [`Env::mount_in_container`] mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A tmpfs, into which the attacker then copies the files of the source directory (if any).
    Tmpfs,
    /// A bind mount of a host directory holding the attacker's files (the mount's source).
    Bind,
    /// An EROFS image with the attacker's files (the mount's source), on no verified device.
    UnverifiedErofs,
}

/// A layer file the attacker built: EROFS data with a correct dm-verity tree appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trojan {
    /// The file (EROFS data and a correct tree for it, laid out as `layer.erofs`).
    pub erofs: PathBuf,
    /// The tree's root hash.
    pub root_hash: RootHash,
    /// Bytes of EROFS data.
    pub data_size: u64,
}

/// An identity the kernel hands out again once it is freed, which a replayed mount is meant to get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// A mount's id in the namespace's mountinfo.
    MountId,
    /// A mount's device number (the loop's for an EROFS lowerdir, an anonymous one for the overlay).
    Device,
    /// The loop device the layer was attached to.
    LoopMinor,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Identity::MountId => "mount id",
            Identity::Device => "device",
            Identity::LoopMinor => "loop device",
        })
    }
}

/// One identity a replay did not get back: another process took it while it was free.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissedIdentity {
    /// Which identity.
    pub identity: Identity,
    /// Whose: the mount point, or the loop device the layer had.
    pub at: PathBuf,
    /// What it was before the replay.
    pub wanted: String,
    /// What the replay got instead (`none` when the mount was not found again).
    pub got: String,
}

impl fmt::Display for MissedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {}: {} instead of {}",
            self.identity,
            self.at.display(),
            self.got,
            self.wanted
        )
    }
}

/// How faithfully a replay reproduced the identities the kernel hands out again: empty `missed` is a perfect
/// replay, which only identities that are never reused can tell from the original.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayFidelity {
    /// Every identity the replay meant to get back and did not.
    pub missed: Vec<MissedIdentity>,
}

impl ReplayFidelity {
    /// True when every identity came back.
    pub fn perfect(&self) -> bool {
        self.missed.is_empty()
    }
}

impl fmt::Display for ReplayFidelity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.perfect() {
            return f.write_str("every mount id, device and loop device came back");
        }
        let missed: Vec<String> = self.missed.iter().map(ToString::to_string).collect();
        write!(f, "imperfect: {}", missed.join("; "))
    }
}

/// What [`Env::replay_layer_mount`] did, and how faithfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// What was done.
    pub done: String,
    /// Which identities came back.
    pub fidelity: ReplayFidelity,
}

/// The primitives through which an attack touches one sandboxed run of the lab: the node's store, signing,
/// the registry's blobs, the node's converted layers and verified devices, and the running container. Every
/// attack's logic is written on these (and on the lab's own functions over the files they return); errors
/// are harness failures unless they are [`AttackError::Refused`].
pub trait Env {
    /// The node's content store: manifests, blobs and tags, through the lab's [`Store`] API.
    fn store(&self) -> &Store;

    /// The image's name in the node's store (`repository:tag`).
    fn image(&self) -> &str;

    /// The scheme the image is signed with.
    fn scheme(&self) -> Scheme;

    /// Signs the image `name` in the node's store with `key`, as built at `built` (seconds since the epoch);
    /// returns the signed manifest's digest.
    fn sign(&mut self, name: &str, key: SigningKey, built: u64) -> Result<Digest, AttackError>;

    /// A kernel root-hash signature over `content` made with `key` and its certificate (a detached DER
    /// PKCS#7, as `veritylab sign` makes them, but over whatever bytes it is given): the publisher's signing
    /// service for [`SigningKey::Trusted`], a key of the attacker's own for [`SigningKey::Untrusted`].
    fn kernel_signature(&self, key: SigningKey, content: &[u8]) -> Result<Vec<u8>, AttackError>;

    /// The image's build time and the policy's minimum.
    fn build_times(&self) -> BuildTimes;

    /// Edits the node's trust policy so the image's repository no longer requires a signature; returns what
    /// was changed.
    fn allow_unsigned(&mut self) -> Result<String, AttackError>;

    /// The image's manifest as the publisher pushed it to the registry (only where the cell serves a
    /// registry: [`crate::Stage::Registry`], [`crate::Stage::AfterAdmission`]).
    fn registry_manifest(&self) -> Result<ImageManifest, AttackError>;

    /// The file holding blob `digest` in the registry's storage (only where the cell serves a registry).
    fn registry_blob(&self, digest: &Digest) -> Result<PathBuf, AttackError>;

    /// Publishes an unsigned image of `tars` (plain layer tars, base first) to the cell's registry under
    /// `tag` of the image's repository, as an attacker with push rights would; returns its manifest digest
    /// (only where the cell serves a registry: [`crate::Stage::Registry`], [`crate::Stage::AfterAdmission`]).
    fn registry_push(&mut self, tag: &str, tars: &[Vec<u8>]) -> Result<Digest, AttackError>;

    /// Makes the registry answer the node's requests for the manifest `tag` (told apart by its `User-Agent`,
    /// as a compromised registry or mirror can) with the manifest of an unsigned image of `tars`, while every
    /// other client, the admission controller included, still gets the genuine one; returns the decoy's
    /// digest (only where the cell serves a registry).
    fn registry_split_view(&mut self, tag: &str, tars: &[Vec<u8>]) -> Result<Digest, AttackError>;

    /// The attacker's scratch directory (inside the sandbox).
    fn scratch(&self) -> PathBuf;

    /// How many layers the node converted.
    fn layer_count(&self) -> usize;

    /// Layer `index`'s converted files (0 = base).
    fn layer(&self, index: usize) -> Result<LayerFiles, AttackError>;

    /// Rewrites layer `index`'s local metadata (conversion record and dm-verity sidecar) to describe `built`.
    fn rewrite_local_metadata(&mut self, index: usize, built: &Trojan) -> Result<(), AttackError>;

    /// The pinned standard-mountpoints layer's file, present only for profiles that use it.
    fn pinned_layer(&self) -> Option<PathBuf>;

    /// Opens the verified devices with `check_at_most_once` (before the mount).
    fn set_check_at_most_once(&mut self);

    /// Reads `len` bytes at `offset` of layer `index`'s device as the profile opens it (verified or not).
    fn read_device(&mut self, index: usize, offset: u64, len: usize) -> Result<Vec<u8>, AttackError>;

    /// Drops the container's cached pages and hash blocks, as memory pressure would; says what was dropped.
    fn drop_caches(&mut self) -> Result<String, AttackError>;

    /// Writes a file as a process in the container would.
    fn write_in_container(&mut self, path: &str, bytes: &[u8]) -> Result<(), AttackError>;

    /// Reads a file as a process in the container would.
    fn read_in_container(&mut self, path: &str) -> Result<Vec<u8>, AttackError>;

    /// Executes the file at `path` as a process in the container would (`execve` of that file, with no
    /// arguments); returns what it printed. An `EACCES` from the exec policy (the kernel's IPE, or the
    /// `enforced` profile's emulation of it) is [`DefenceRefusal::ExecDenied`].
    fn exec_in_container(&mut self, path: &str) -> Result<String, AttackError>;

    /// Lists a directory as a process in the container would (names only, without `.` and `..` unless the
    /// directory holds entries of those names).
    fn list_in_container(&mut self, path: &str) -> Result<Vec<String>, AttackError>;

    /// The container's overlay upperdir on the host, if its profile has one.
    fn upperdir(&self) -> Option<PathBuf>;

    /// Mounts `kind` from `source` (for a tmpfs, the directory whose files the attacker copies into it) at
    /// `path` inside the container's mount namespace.
    fn mount_in_container(&mut self, path: &str, kind: MountKind, source: &Path) -> Result<String, AttackError>;

    /// Removes what [`Env::mount_in_container`] mounted at `path`.
    fn unmount_in_container(&mut self, path: &str) -> Result<(), AttackError>;

    /// What covers `path` in the container's mount table when it is not the rootfs itself (a device number
    /// and filesystem), as the container sees it; `None` when `path` is on the rootfs.
    fn mount_at(&self, path: &str) -> Result<Option<String>, AttackError>;

    /// Stops `count` containers mounted as this one was without taking their mounts down (a process keeping
    /// the namespace, or a record nobody removed).
    fn leak_mounts(&mut self, count: u64) -> Result<String, AttackError>;

    /// The mounts [`Env::leak_mounts`] left that are still there, one line each (where, held by what).
    fn leaks_alive(&self) -> Result<Vec<String>, AttackError>;

    /// Releases whatever [`Env::leak_mounts`] left behind that is still there.
    fn release_leaks(&mut self) -> Result<(), AttackError>;

    /// Replaces layer `index`'s mount in the running container with one made alike over `trojan`, as a root
    /// attacker on the node would: the rootfs and the layer's EROFS lowerdir are unmounted inside the
    /// container's namespace and mounted again with the same options, the lowerdir from the same loop device,
    /// now attached to the attacker's file at the verified device's path in the host's namespace (where the
    /// device is not mounted). Mount ids, device numbers and the loop's backing path are meant to come back the
    /// same; the returned fidelity names each one another process took first.
    fn replay_layer_mount(&mut self, index: usize, trojan: &Trojan) -> Result<Replayed, AttackError>;

    /// Detaches what [`Env::replay_layer_mount`] attached that the lab's teardown would not remove.
    fn release_replay(&mut self) -> Result<(), AttackError>;

    /// Replaces the running container's process as a root attacker on the node would: a process of theirs
    /// keeps the container's mount namespace, the container's process is killed, and a decoy running the
    /// container's command with the argument `mark` is given the same pid (through `ns_last_pid`) and enters
    /// that namespace. Needs a real container (the `runc` runner backend).
    fn replace_container_process(&mut self, mark: &str) -> Result<String, AttackError>;

    /// The command line of whatever process holds the container's pid now.
    fn container_process(&self) -> Result<String, AttackError>;

    /// Kills what [`Env::replace_container_process`] started.
    fn release_replaced_process(&mut self) -> Result<(), AttackError>;
}
