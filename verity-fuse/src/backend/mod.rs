//! Where a verified device comes from: our FUSE server, or the kernel's dm-verity on hosts that have it.
//!
//! The backends are a closed set, picked by [`Backend::resolve`] from a capability probe that runs once per
//! process ([`capabilities`]) and is shared with the lab.

pub mod kernel;
pub(crate) mod table;

pub use table::{Table, TableError, TableFec};

use std::path::Path;
use std::sync::OnceLock;

use crate::class::ErrorClass;
use crate::sys;

/// A backend that serves verified devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Our userspace verifier, served over FUSE.
    Fuse,
    /// Kernel dm-verity through device-mapper.
    Kernel,
}

/// Which backend to use, as the `--backend` flag says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The kernel where it is available, FUSE otherwise.
    #[default]
    Auto,
    /// FUSE only.
    Fuse,
    /// The kernel only.
    Kernel,
}

impl Choice {
    /// Every choice, as `--backend` spells them.
    pub const NAMES: [&'static str; 3] = ["auto", "fuse", "kernel"];
}

/// A `--backend` value that is none of [`Choice::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}` (expected one of: auto, fuse, kernel)")]
pub struct UnknownChoice(pub String);

impl UnknownChoice {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl std::str::FromStr for Choice {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Choice::Auto),
            "fuse" => Ok(Choice::Fuse),
            "kernel" => Ok(Choice::Kernel),
            _ => Err(UnknownChoice(s.to_owned())),
        }
    }
}

/// What this host can do, with the reason when it cannot.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// `Ok` when FUSE devices can be mounted, else what is missing.
    pub fuse: Result<(), String>,
    /// `Ok` when kernel dm-verity mappings can be made, else what is missing.
    pub kernel: Result<(), String>,
}

fn missing(reasons: Vec<String>) -> Result<(), String> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

fn probe() -> Capabilities {
    let mut fuse = Vec::new();
    let rw = rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK;
    if !Path::new("/dev/fuse").exists() {
        fuse.push("/dev/fuse does not exist (load the fuse module)".to_owned());
    } else if rustix::fs::access("/dev/fuse", rw).is_err() {
        fuse.push("/dev/fuse is not readable and writable by this user".to_owned());
    }
    match sys::find_tool("fusermount3") {
        None => fuse.push("fusermount3 is not installed (Debian package fuse3)".to_owned()),
        Some(path) if !sys::is_root() && !sys::is_setuid_root(&path) => fuse.push(format!(
            "{} is not setuid root, and a normal user mounts FUSE through it",
            path.display()
        )),
        Some(_) => {}
    }
    let mut kernel = Vec::new();
    if !Path::new("/dev/mapper/control").exists() {
        kernel.push("/dev/mapper/control does not exist: this kernel has no device-mapper (dm-mod)".to_owned());
    }
    if !sys::is_root() {
        kernel.push("device-mapper needs root".to_owned());
    }
    for (tool, package) in [("dmsetup", "dmsetup"), ("losetup", "mount")] {
        if sys::find_tool(tool).is_none() {
            kernel.push(format!("{tool} is not installed (Debian package {package})"));
        }
    }
    Capabilities {
        fuse: missing(fuse),
        kernel: missing(kernel),
    }
}

/// The host's capabilities, probed once per process.
pub fn capabilities() -> &'static Capabilities {
    static PROBE: OnceLock<Capabilities> = OnceLock::new();
    PROBE.get_or_init(probe)
}

/// A backend that was asked for but cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {backend:?} backend is not available here: {reason}")]
pub struct Unavailable {
    /// The backend asked for.
    pub backend: Backend,
    /// What is missing.
    pub reason: String,
}

impl Unavailable {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }
}

impl Backend {
    /// Picks the backend for `choice` on a host with `caps`; `auto` prefers the kernel.
    pub fn resolve(choice: Choice, caps: &Capabilities) -> Result<Backend, Unavailable> {
        let check = |backend: Backend, cap: &Result<(), String>| {
            cap.clone()
                .map(|()| backend)
                .map_err(|reason| Unavailable { backend, reason })
        };
        match choice {
            Choice::Fuse => check(Backend::Fuse, &caps.fuse),
            Choice::Kernel => check(Backend::Kernel, &caps.kernel),
            Choice::Auto => check(Backend::Kernel, &caps.kernel).or_else(|kernel| {
                check(Backend::Fuse, &caps.fuse).map_err(|fuse| Unavailable {
                    backend: Backend::Fuse,
                    reason: format!("kernel: {}; fuse: {}", kernel.reason, fuse.reason),
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(fuse: bool, kernel: bool) -> Capabilities {
        let r = |ok: bool, why: &str| if ok { Ok(()) } else { Err(why.to_owned()) };
        Capabilities {
            fuse: r(fuse, "no fuse"),
            kernel: r(kernel, "no dm"),
        }
    }

    #[test]
    fn auto_prefers_the_kernel_and_falls_back_to_fuse() {
        assert_eq!(Backend::resolve(Choice::Auto, &caps(true, true)), Ok(Backend::Kernel));
        assert_eq!(Backend::resolve(Choice::Auto, &caps(true, false)), Ok(Backend::Fuse));
        let err = Backend::resolve(Choice::Auto, &caps(false, false)).unwrap_err();
        assert_eq!(err.reason, "kernel: no dm; fuse: no fuse");
    }

    #[test]
    fn an_explicit_choice_says_what_is_missing() {
        let err = Backend::resolve(Choice::Kernel, &caps(true, false)).unwrap_err();
        assert_eq!(err.to_string(), "the Kernel backend is not available here: no dm");
        assert_eq!(Backend::resolve(Choice::Fuse, &caps(true, false)), Ok(Backend::Fuse));
    }
}
