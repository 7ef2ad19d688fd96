//! The defence profiles an image can be mounted with, and the backends that do the mounting.

use serde::{Deserialize, Serialize};

/// How much of the hardened design a mount applies, from stock containerd to the full design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Stock containerd: layers unpacked to directories, overlay with a writable upperdir.
    Vanilla,
    /// EROFS layers as lowerdirs, no verity, writable upperdir.
    Erofs,
    /// EROFS on verified devices with root hashes from local metadata, writable upperdir.
    Verity,
    /// Root hashes from the verified signature, read-only overlay without upperdir, plus the pinned
    /// standard-mountpoints layer.
    Hardened,
}

impl Profile {
    /// Every profile, weakest first.
    pub const ALL: [Profile; 4] = [Profile::Vanilla, Profile::Erofs, Profile::Verity, Profile::Hardened];

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Vanilla => "vanilla",
            Profile::Erofs => "erofs",
            Profile::Verity => "verity",
            Profile::Hardened => "hardened",
        }
    }

    /// True when layers sit on verified devices.
    pub fn verified(self) -> bool {
        matches!(self, Profile::Verity | Profile::Hardened)
    }

    /// True when the overlay has a writable upperdir.
    pub fn writable(self) -> bool {
        self != Profile::Hardened
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| format!("unknown profile {text:?} (vanilla, erofs, verity, hardened)"))
    }
}

/// What does the mounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The host kernel (root): verified devices, loop, EROFS and overlay in a private mount namespace.
    Kernel,
    /// A kernel with dm-verity in a throwaway VM.
    KernelVm,
    /// One FUSE filesystem serving the merged rootfs from verified layers.
    Fuse,
    /// In-process: the same merged view and an emulated mount table, no mounts at all.
    Emulated,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 4] = [Backend::Kernel, Backend::KernelVm, Backend::Fuse, Backend::Emulated];

    /// The backend's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::KernelVm => "kernel-vm",
            Backend::Fuse => "fuse",
            Backend::Emulated => "emulated",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == text)
            .ok_or_else(|| format!("unknown backend {text:?} (kernel, kernel-vm, fuse, emulated)"))
    }
}
