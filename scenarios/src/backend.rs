//! Where a scenario's cells run: on this host with one of the lab's mount backends (under a real runc
//! container for `runc`), or in the kernel tier's VM.
//!
//! [`RunnerBackend`] is the runner's choice, not a way to mount: `kernel-vm` cells run the lab's
//! [`Backend::Kernel`] inside a throwaway VM ([`crate::vm`]), so `veritylab mount` never sees it. Scenario
//! files, the command line and reports spell it as the lab's backends are spelled, with `kernel-vm` and `runc`
//! added.

use std::fmt;
use std::str::FromStr;

use veritylab::profile::{Backend, UnknownName};

/// Where the runner stages a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerBackend {
    /// This host, with the lab's [`Backend::Kernel`].
    Kernel,
    /// The lab's [`Backend::Kernel`] inside the kernel tier's throwaway VM, booted with a kernel that has
    /// device-mapper (real dm-verity): one boot runs every cell of the batch.
    KernelVm,
    /// This host, with the lab's [`Backend::Kernel`] and a real container under runc on the rootfs: the
    /// container primitives act in the container's own namespace and the checks add its mount audit.
    Runc,
    /// This host, with the lab's [`Backend::Fuse`].
    Fuse,
    /// This host, with the lab's [`Backend::Emulated`].
    Emulated,
}

impl RunnerBackend {
    /// Every place a cell can run, from the most real to the most portable.
    pub const ALL: [RunnerBackend; 5] = [
        RunnerBackend::Kernel,
        RunnerBackend::KernelVm,
        RunnerBackend::Runc,
        RunnerBackend::Fuse,
        RunnerBackend::Emulated,
    ];

    /// The name used on the command line, in files and in reports.
    pub fn name(self) -> &'static str {
        match self {
            RunnerBackend::KernelVm => "kernel-vm",
            RunnerBackend::Runc => "runc",
            other => other.mount_backend().name(),
        }
    }

    /// The lab's mount backend the cell's mounts use (inside the VM for `kernel-vm`).
    pub fn mount_backend(self) -> Backend {
        match self {
            RunnerBackend::Kernel | RunnerBackend::KernelVm | RunnerBackend::Runc => Backend::Kernel,
            RunnerBackend::Fuse => Backend::Fuse,
            RunnerBackend::Emulated => Backend::Emulated,
        }
    }
}

impl From<Backend> for RunnerBackend {
    fn from(backend: Backend) -> Self {
        match backend {
            Backend::Kernel => RunnerBackend::Kernel,
            Backend::Fuse => RunnerBackend::Fuse,
            Backend::Emulated => RunnerBackend::Emulated,
        }
    }
}

impl fmt::Display for RunnerBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RunnerBackend {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("backend", s, &RunnerBackend::ALL, RunnerBackend::name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_across_display_fromstr_serde_and_the_labs_backends() {
        for b in RunnerBackend::ALL {
            assert_eq!(b.to_string().parse::<RunnerBackend>(), Ok(b));
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{b}\""));
        }
        for b in Backend::ALL {
            assert_eq!(RunnerBackend::from(b).name(), b.name());
            assert_eq!(RunnerBackend::from(b).mount_backend(), b);
        }
        assert_eq!(RunnerBackend::KernelVm.mount_backend(), Backend::Kernel);
        assert_eq!(RunnerBackend::Runc.mount_backend(), Backend::Kernel);
    }
}
