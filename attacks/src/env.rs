//! The lab as an attack sees it: the narrow interface through which attacks touch one sandboxed run's real
//! objects. The lab implements it; every path it returns is inside that run's sandbox.

use std::fmt;
use std::path::PathBuf;

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
}

impl fmt::Display for DefenceRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefenceRefusal::ReadOnly => "read-only",
            DefenceRefusal::OutOfRange => "out-of-range",
            DefenceRefusal::HashMismatch => "hash-mismatch",
        })
    }
}

/// The signature scheme an image is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A cosign signature stored beside the image.
    Cosign,
    /// The signature embedded in the manifest (the seed talk's delivery kit).
    DeliveryKit,
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

/// What is mounted by [`Env::add_mount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// An empty tmpfs.
    Tmpfs,
    /// A bind mount of a host directory holding the attacker's files.
    Bind,
    /// An EROFS image with the attacker's files, on no verified device.
    UnverifiedErofs,
}

/// A trojaned copy of a layer, built by [`Env::trojan_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trojan {
    /// Its `layer.erofs` (EROFS data and a correct tree for it).
    pub erofs: PathBuf,
    /// The tree's root hash.
    pub root_hash: String,
    /// Bytes of EROFS data.
    pub data_size: u64,
}

/// What an attack may do to the lab's objects. Errors are harness failures unless they are
/// [`AttackError::Refused`].
pub trait Env {
    /// How many layers the image has.
    fn layer_count(&self) -> usize;

    /// Layer `index`'s converted files (0 = base).
    fn layer(&self, index: usize) -> Result<LayerFiles, AttackError>;

    /// Offset in layer `index`'s `layer.erofs` of the first data byte of the file at `path`.
    fn file_offset(&self, index: usize, path: &str) -> Result<u64, AttackError>;

    /// Builds, from layer `index`'s genuine content with the file at `path` replaced by `content`, a new
    /// EROFS image with a correct tree, in the attacker's scratch space.
    fn trojan_layer(&mut self, index: usize, path: &str, content: &[u8]) -> Result<Trojan, AttackError>;

    /// Builds a tree for the EROFS data `erofs` (an attacker's crafted image), in the scratch space.
    fn build_tree(&mut self, erofs: &[u8]) -> Result<Trojan, AttackError>;

    /// Rewrites layer `index`'s local metadata (conversion record and dm-verity sidecar) to describe `trojan`.
    fn rewrite_local_metadata(&mut self, index: usize, trojan: &Trojan) -> Result<(), AttackError>;

    /// The image's manifest bytes as the node stores them.
    fn manifest(&self) -> Result<Vec<u8>, AttackError>;

    /// Replaces the image's manifest on the node with `bytes` (tagged in its place). With `keep_signature`,
    /// the original cosign signature is attached to the new manifest as well, as an attacker copying it would.
    fn replace_manifest(&mut self, bytes: &[u8], keep_signature: bool) -> Result<String, AttackError>;

    /// The root hash a trojaned layer `index` would have (for a forged annotation).
    fn trojan_root_hash(&mut self, index: usize) -> Result<String, AttackError>;

    /// The scheme the image is signed with.
    fn scheme(&self) -> Scheme;

    /// Deletes every signature of the image (cosign objects, or the embedded delivery-kit signature).
    fn remove_signatures(&mut self) -> Result<String, AttackError>;

    /// Replaces the image on the node with a modified copy (the file at `path` given `content` by an added top
    /// layer), unsigned.
    fn modify_image(&mut self, path: &str, content: &[u8]) -> Result<String, AttackError>;

    /// Replaces the image with a modified copy ([`Env::modify_image`] of `path` and `content`) signed with a
    /// fresh key the node does not trust.
    fn sign_with_other_key(&mut self, path: &str, content: &[u8]) -> Result<String, AttackError>;

    /// The file holding blob `digest` in the registry's storage (only for [`crate::Stage::Registry`]).
    fn registry_blob(&self, digest: &str) -> Result<PathBuf, AttackError>;

    /// Digests of the image's config and layers, as the registry holds them.
    fn registry_image(&self) -> Result<(String, Vec<String>), AttackError>;

    /// Edits the node's trust policy so the image's repository no longer requires a signature; returns what
    /// was changed.
    fn allow_unsigned(&mut self) -> Result<String, AttackError>;

    /// Publishes an attacker's image (layer `index` trojaned, unsigned) and points the node's `tag` at it.
    fn move_tag(&mut self, tag: &str) -> Result<String, AttackError>;

    /// Replaces the image with an older, correctly signed build of the same repository, whose
    /// [`crate::rollback::VERSION_FILE`] reads [`crate::rollback::OLDER_VERSION`]; `within_window` chooses a
    /// build time still at or above the policy's minimum.
    fn serve_older(&mut self, within_window: bool) -> Result<String, AttackError>;

    /// Replaces the image with one assembled from its layers and `foreign` top layers of a second, correctly
    /// signed image (no signature covers the mix); each layer of the second image has
    /// [`crate::mixed_layers::FOREIGN_FILE`] reading [`crate::mixed_layers::FOREIGN_CONTENT`].
    fn mix_layers(&mut self, foreign: usize) -> Result<String, AttackError>;

    /// Mounts `kind` at `path` inside the container's mount namespace.
    fn add_mount(&mut self, path: &str, kind: MountKind) -> Result<String, AttackError>;

    /// What covers `path` in the container's mount table when it is not the rootfs itself (a device number
    /// and filesystem), as the container sees it; `None` when `path` is on the rootfs.
    fn mount_at(&self, path: &str) -> Result<Option<String>, AttackError>;

    /// Removes what [`Env::add_mount`] mounted at `path`.
    fn remove_mount(&mut self, path: &str) -> Result<(), AttackError>;

    /// The container's overlay upperdir on the host, if its profile has one.
    fn upperdir(&self) -> Option<PathBuf>;

    /// Writes a file as a process in the container would.
    fn write_in_container(&mut self, path: &str, bytes: &[u8]) -> Result<(), AttackError>;

    /// Reads a file as a process in the container would.
    fn read_in_container(&mut self, path: &str) -> Result<Vec<u8>, AttackError>;

    /// Lists a directory as a process in the container would (names only, without `.` and `..` unless the
    /// directory holds entries of those names).
    fn list_in_container(&mut self, path: &str) -> Result<Vec<String>, AttackError>;

    /// Replaces the image on the node with a copy whose added top layer holds the OCI whiteout `.wh.HIDDEN`
    /// in `dir`, exactly as named (no path normalisation), and has the publisher sign it with the node's
    /// trusted key; where the publisher's signer refuses the layer, the image ships unsigned.
    fn publish_whiteout(&mut self, dir: &str, hidden: &str) -> Result<String, AttackError>;

    /// Reads `len` bytes at `offset` of layer `index`'s device as the profile opens it (verified or not).
    fn read_device(&mut self, index: usize, offset: u64, len: usize) -> Result<Vec<u8>, AttackError>;

    /// Opens the verified devices with `check_at_most_once` (before the mount).
    fn set_check_at_most_once(&mut self);

    /// Drops the container's cached pages and hash blocks, as memory pressure would; says what was dropped.
    fn drop_caches(&mut self) -> Result<String, AttackError>;

    /// The pinned standard-mountpoints layer's file, present only for profiles that use it.
    fn pinned_layer(&self) -> Option<PathBuf>;

    /// Replaces the pinned layer with one whose file `path` has `content`, with a correct tree of its own.
    fn replace_pinned(&mut self, path: &str, content: &[u8]) -> Result<String, AttackError>;

    /// Leaves `count` mounts of the stopped container alive (a process keeping its namespace, or a record
    /// nobody removed).
    fn leak_mounts(&mut self, count: u64) -> Result<String, AttackError>;

    /// The mounts [`Env::leak_mounts`] left that are still there, one line each (where, held by what).
    fn leaks_alive(&self) -> Result<Vec<String>, AttackError>;

    /// Releases whatever [`Env::leak_mounts`] left behind that is still there.
    fn release_leaks(&mut self) -> Result<(), AttackError>;

    /// Replaces layer `index`'s mount in the running container with one made alike over `trojan`, as a root
    /// attacker on the node would: the rootfs and the layer's EROFS lowerdir are unmounted inside the
    /// container's namespace and mounted again with the same options, the lowerdir from the same loop device,
    /// now attached to the attacker's file at the verified device's path in the host's namespace (where the
    /// device is not mounted). Mount ids, device numbers and the loop's backing path come back the same.
    fn replay_layer_mount(&mut self, index: usize, trojan: &Trojan) -> Result<String, AttackError>;

    /// Detaches what [`Env::replay_layer_mount`] attached that the lab's teardown would not remove.
    fn release_replay(&mut self) -> Result<(), AttackError>;
}
