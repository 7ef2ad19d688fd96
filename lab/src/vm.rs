//! `kernel-vm`: the lab run on a real kernel with device-mapper, inside the kernel tier's throwaway VM.
//!
//! This host's kernel may have no device-mapper; Debian's cloud kernel, booted under qemu by [`vmtest`], has
//! dm-verity. [`guest`] describes a VM holding the `veritylab` binary (stripped, when `strip` is installed,
//! to keep the initramfs small) and the tools the `kernel` backend calls, from util-linux and dmsetup with
//! their shared libraries: busybox's applets of the same names lack the flags it uses (`losetup --find
//! --show --read-only`, `umount -R`, `mount -t erofs` from a `/dev/mapper` node). Inside, the `kernel`
//! backend sees `/dev/mapper/control` and opens every verified layer as a real dm-verity mapping.
//!
//! The VM is throwaway: it powers off when its script ends, so nothing it mounts outlives the batch. That is
//! why `veritylab mount --backend kernel-vm` is refused ([`crate::mount::KERNEL_VM_MOUNTS`]) and kernel-vm
//! work is a batch: the scenario runner's cells ([`run_scenarios`]) or the kernel tier's mount test. Timings
//! measured inside the VM are emulated-CPU timings (software emulation, no KVM): never performance figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vmtest::{Vm, VmBuilder, VmError};

/// Tools the `kernel` backend runs, copied from this host into the guest with their libraries.
pub const TOOLS: &[&str] = &["unshare", "nsenter", "mount", "umount", "losetup", "dmsetup"];

/// Guest memory: the initramfs (binary, libraries, modules) is unpacked into RAM, and the store and mount
/// state live on the guest's tmpfs root.
pub const MEMORY_MIB: u32 = 1024;

/// Wall-clock limit of one kernel-vm batch (booting is a few seconds; the work runs on an emulated CPU).
pub const TIMEOUT: Duration = Duration::from_secs(900);

/// A VM that runs `exe` (a `veritylab` binary) as `/usr/local/bin/veritylab` with [`TOOLS`]; `scratch` holds
/// the stripped copy until the VM has run. Add files and the script, then [`VmBuilder::run`].
pub fn guest(exe: &Path, scratch: &Path) -> VmBuilder {
    let mut builder = Vm::builder()
        .binary_at(stripped(exe, scratch))
        .memory_mib(MEMORY_MIB)
        .timeout(TIMEOUT);
    for tool in TOOLS {
        builder = builder.binary(tool);
    }
    builder
}

/// `exe` stripped of debug information into `scratch/veritylab`, or `exe` itself when `strip` is missing or
/// fails (a debug build is ten times larger, which costs memory and boot time, not correctness).
fn stripped(exe: &Path, scratch: &Path) -> PathBuf {
    let out = scratch.join("veritylab");
    let strip = verity_fuse::sys::find_tool("strip");
    let done = strip.is_some_and(|strip| {
        Command::new(strip)
            .arg("-o")
            .arg(&out)
            .arg(exe)
            .status()
            .is_ok_and(|s| s.success())
    });
    if done { out } else { exe.to_owned() }
}

/// Whether a kernel-vm batch can run here; the error says what is missing.
pub fn available() -> Result<(), String> {
    vmtest::available().map(drop).map_err(|e| e.to_string())
}

/// A kernel-vm batch that could not run or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelVmError {
    /// No VM can run here (qemu, busybox or the kernel package is missing).
    #[error("kernel-vm is not available here: {0}")]
    Unavailable(String),
    /// The VM failed to boot, timed out or crashed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The work inside the VM did not produce what was expected.
    #[error("inside the VM: {reason}\n{output}")]
    Guest {
        /// What went wrong.
        reason: String,
        /// The guest's output, for the evidence.
        output: String,
    },
    /// A local step failed (scratch directory, finding the executable).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
