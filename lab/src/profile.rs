//! The shared vocabulary of defence profiles and mount backends.
//!
//! A [`Profile`] says how much of the hardened design a node applies when it mounts an image; a [`Backend`]
//! says how the mounts are made. Mounting, the audit, scenarios and reports all name them with these types,
//! spelled the same everywhere: in TOML and JSON (serde) and in text ([`std::fmt::Display`] and
//! [`std::str::FromStr`], which the command line parses through).

use std::fmt;
use std::str::FromStr;
use verity_fuse::ErrorClass;

/// A defence profile: what a node checks when it mounts and runs an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Stock containerd: layers unpacked to directories, overlay with a writable upperdir, no verity.
    Vanilla,
    /// EROFS layers as overlay lowerdirs with a writable upperdir, no dm-verity.
    Erofs,
    /// containerd's EROFS snapshotter (v2.3+) with `dmverity_mode = "on"`: each layer on a dm-verity device
    /// opened with the root hash and hash offset of its unsigned `layer.erofs.dmverity` sidecar, which the
    /// node's differ wrote when it converted the layer; a layer without a sidecar is refused. Writable upperdir,
    /// no signature, no audit (`docs/profiles.md`).
    ContainerdDmverity,
    /// The same in `dmverity_mode = "auto"`: a layer without a sidecar is mounted as plain EROFS, unverified.
    ContainerdDmverityAuto,
    /// EROFS layers on verified devices whose root hashes come from local metadata (containerd's sidecar).
    Verity,
    /// Root hashes from the verified signature, read-only overlay with no upperdir, the pinned standard
    /// mountpoints layer, the mount audit and periodic re-verification.
    Hardened,
    /// `hardened`, and each layer's root-hash signature checked when its device opens (by the kernel's
    /// keyring, or by the emulation of that check against the node's trusted certificates), required; and
    /// execution only of files from such signature-checked devices (the IPE policy, or its emulation).
    Enforced,
}

impl Profile {
    /// Every profile, from the weakest to the strongest.
    pub const ALL: [Profile; 7] = [
        Profile::Vanilla,
        Profile::Erofs,
        Profile::ContainerdDmverity,
        Profile::ContainerdDmverityAuto,
        Profile::Verity,
        Profile::Hardened,
        Profile::Enforced,
    ];

    /// The name used on the command line, in files and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Vanilla => "vanilla",
            Profile::Erofs => "erofs",
            Profile::ContainerdDmverity => "containerd-dmverity",
            Profile::ContainerdDmverityAuto => "containerd-dmverity-auto",
            Profile::Verity => "verity",
            Profile::Hardened => "hardened",
            Profile::Enforced => "enforced",
        }
    }

    /// True when layers sit on verified devices (under `containerd-dmverity-auto`, those with a sidecar).
    pub fn verified(self) -> bool {
        matches!(
            self,
            Profile::ContainerdDmverity
                | Profile::ContainerdDmverityAuto
                | Profile::Verity
                | Profile::Hardened
                | Profile::Enforced
        )
    }

    /// containerd's `dmverity_mode` for the profiles modelled on its EROFS snapshotter, whose root hashes come
    /// from each layer's `layer.erofs.dmverity` sidecar; `None` for the others.
    pub fn containerd_dmverity(self) -> Option<DmverityMode> {
        match self {
            Profile::ContainerdDmverity => Some(DmverityMode::On),
            Profile::ContainerdDmverityAuto => Some(DmverityMode::Auto),
            _ => None,
        }
    }

    /// True when the profile takes root hashes only from a verified signature and applies the rest of the
    /// hardened design (read-only rootfs without upperdir, the pinned layer, the audit): `hardened` and
    /// `enforced`.
    pub fn hardened(self) -> bool {
        matches!(self, Profile::Hardened | Profile::Enforced)
    }

    /// True when each layer's root-hash signature must pass the kernel's check (or its emulation) at device
    /// open, and only files from such devices may execute: `enforced`.
    pub fn enforced(self) -> bool {
        self == Profile::Enforced
    }

    /// True when the overlay has a writable upperdir.
    pub fn writable(self) -> bool {
        !self.hardened()
    }

    /// The Reed-Solomon parity roots a node of this profile gives each layer it converts and signs, when it
    /// gives any: `hardened` and `enforced` pair dm-verity with forward error correction as Android does
    /// (veritysetup's default of 2 roots), so an honest bit flip is repaired while a rewrite is still refused.
    /// The parity sits outside what the root-hash signature covers and is used only to produce bytes that
    /// match the signed tree, so `enforced`'s kernel checks keep it.
    pub fn fec_roots(self) -> Option<u32> {
        self.hardened().then_some(verity_fuse::fec::DEFAULT_ROOTS)
    }

    /// One line saying what the profile does.
    pub fn summary(self) -> &'static str {
        match self {
            Profile::Vanilla => "layers unpacked to directories, overlay with a writable upperdir, no verity",
            Profile::Erofs => "EROFS lowerdirs, writable upperdir, no dm-verity",
            Profile::ContainerdDmverity => {
                "containerd 2.3 EROFS snapshotter, dmverity_mode=on: root hashes from the node's own unsigned sidecar"
            }
            Profile::ContainerdDmverityAuto => {
                "containerd-dmverity in dmverity_mode=auto: a layer without a sidecar is mounted unverified"
            }
            Profile::Verity => "EROFS on verified devices, root hashes from local metadata, writable upperdir",
            Profile::Hardened => {
                "signed root hashes, read-only overlay without upperdir, pinned mountpoints layer, mount audit"
            }
            Profile::Enforced => {
                "hardened, with root-hash signatures checked at device open and execution only from signed devices"
            }
        }
    }
}

/// containerd's EROFS snapshotter setting `dmverity_mode`, for the profiles modelled on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmverityMode {
    /// `on`: every layer needs its `.dmverity` sidecar; a layer without one is refused.
    On,
    /// `auto`: a layer with a sidecar is opened on dm-verity, one without is mounted as plain EROFS.
    Auto,
}

/// How a profile's mounts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// This host's kernel, as root: verified devices (verity-fuse or dm-verity), loop, EROFS and overlay mounts
    /// inside a private mount namespace.
    Kernel,
    /// Unprivileged: one FUSE filesystem serving the merged rootfs from the EROFS reader over verified devices.
    Fuse,
    /// In-process, no mounts at all: the same merged view and an emulated mount table; runs anywhere.
    Emulated,
}

impl Backend {
    /// Every backend, from the most real to the most portable.
    pub const ALL: [Backend; 3] = [Backend::Kernel, Backend::Fuse, Backend::Emulated];

    /// The name used on the command line, in files and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Fuse => "fuse",
            Backend::Emulated => "emulated",
        }
    }
}

impl Backend {
    /// Whether mounts can be made with this backend here, or why not.
    pub fn available(self) -> Result<(), String> {
        let fuse = || verity_fuse::backend::capabilities().fuse.clone();
        match self {
            Backend::Emulated => Ok(()),
            Backend::Fuse => fuse(),
            Backend::Kernel if !verity_fuse::sys::is_root() => Err("mounts need root".to_owned()),
            // Verified devices are dm-verity mappings where device-mapper exists, else served over FUSE.
            Backend::Kernel => verity_fuse::backend::capabilities().kernel.clone().or_else(|_| fuse()),
        }
    }

    /// The backend to use when none is asked for, and why: `kernel` as root (dm-verity mappings where the host
    /// has device-mapper, else verified devices served over FUSE, under loop devices), else `fuse` for a user
    /// who can open `/dev/fuse` and has a setuid `fusermount3`, else `emulated`.
    pub fn auto() -> (Backend, String) {
        let kernel = match Backend::Kernel.available() {
            Ok(()) if verity_fuse::backend::capabilities().kernel.is_ok() => {
                return (
                    Backend::Kernel,
                    "kernel: root, device-mapper and loop devices are available (verified devices are kernel \
                     dm-verity mappings)"
                        .to_owned(),
                );
            }
            Ok(()) => {
                return (
                    Backend::Kernel,
                    "kernel: root, FUSE and loop devices are available (verified devices are served over FUSE; \
                     this kernel has no device-mapper)"
                        .to_owned(),
                );
            }
            Err(why) => why,
        };
        match Backend::Fuse.available() {
            Ok(()) => (
                Backend::Fuse,
                format!(
                    "fuse: the kernel backend is not available ({kernel}); this user can mount FUSE (/dev/fuse, \
                     setuid fusermount3), so the verified devices and the read-only rootfs are served over FUSE"
                ),
            ),
            Err(fuse) => (
                Backend::Emulated,
                format!(
                    "emulated: the kernel backend is not available ({kernel}), nor is fuse ({fuse}); the rootfs is \
                     the merged view in process, without mounts"
                ),
            ),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is none of a closed set's names (a profile, a backend, a report format).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}` (expected one of: {expected})")]
pub struct UnknownName {
    /// What the name was for: `profile`, `backend`, ….
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The names accepted, comma-separated.
    pub expected: String,
}

impl UnknownName {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl UnknownName {
    /// The member of the closed set `all` called `given` (by `name`), or the error naming the set's members:
    /// the one `FromStr` of every named enum (`what` says which set it is).
    pub fn find<T: Copy>(what: &'static str, given: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, Self> {
        all.iter()
            .copied()
            .find(|&t| name(t) == given)
            .ok_or_else(|| UnknownName {
                what,
                given: given.to_owned(),
                expected: all.iter().map(|&t| name(t)).collect::<Vec<_>>().join(", "),
            })
    }
}

impl FromStr for Profile {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("profile", s, &Profile::ALL, Profile::name)
    }
}

impl FromStr for Backend {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("backend", s, &Backend::ALL, Backend::name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_across_display_fromstr_and_serde() {
        for p in Profile::ALL {
            assert_eq!(p.to_string().parse::<Profile>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        for b in Backend::ALL {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{b}\""));
        }
        assert_eq!(
            "strict".parse::<Profile>().unwrap_err().to_string(),
            "unknown profile `strict` (expected one of: vanilla, erofs, containerd-dmverity, containerd-dmverity-auto, \
             verity, hardened, enforced)"
        );
    }
}
