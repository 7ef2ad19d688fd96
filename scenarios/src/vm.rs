//! `kernel-vm`: the lab run on a real kernel with device-mapper, inside the kernel tier's throwaway VM.
//!
//! This host's kernel may have no device-mapper; Debian's cloud kernel, booted under qemu by [`kernel_vm`], has
//! dm-verity. [`guest`] describes a VM holding the `veritylab` binary (stripped, when `strip` is installed,
//! to keep the initramfs small) and the tools the `kernel` backend calls, from util-linux and dmsetup with
//! their shared libraries: busybox's applets of the same names lack the flags it uses (`losetup --find
//! --show --read-only`, `umount -R`, `mount -t erofs` from a `/dev/mapper` node). Inside, the `kernel`
//! backend sees `/dev/mapper/control` and opens every verified layer as a real dm-verity mapping.
//!
//! The VM is throwaway: it powers off when its script ends, so nothing it mounts outlives the batch. That is
//! why `kernel-vm` is a [`crate::RunnerBackend`], never one of the lab's mount backends, and kernel-vm work is
//! a batch: the scenario runner's cells ([`run_scenarios`]: one boot runs `veritylab scenario run --backend
//! kernel --report json` inside, and its report comes back with the cells labelled `kernel-vm`) or the kernel
//! tier's mount test. Timings measured inside the VM are emulated-CPU timings (software emulation, no KVM):
//! never performance figures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kernel_vm::{Vm, VmBuilder, VmError};

use crate::Scenario;
use crate::results::{BackendChoice, RunReport};
use veritylab::profile::Profile;

use crate::backend::RunnerBackend;

/// Tools the `kernel` backend runs, copied from this host into the guest with their libraries.
pub const TOOLS: &[&str] = &["unshare", "nsenter", "mount", "umount", "losetup", "dmsetup"];

/// Tools copied when this host has them (FUSE-based attacks use them; the guest loads the fuse module).
pub const OPTIONAL_TOOLS: &[&str] = &["fusermount3"];

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
    for tool in OPTIONAL_TOOLS {
        if verity_fuse::sys::find_tool(tool).is_some() {
            builder = builder.binary(tool);
        }
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
    kernel_vm::available().map(drop).map_err(|e| e.to_string())
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

impl KernelVmError {
    /// What kind of failure this is.
    pub fn class(&self) -> verity_fuse::ErrorClass {
        match self {
            Self::Unavailable(_) => verity_fuse::ErrorClass::Unavailable,
            Self::Vm(_) | Self::Io { .. } => verity_fuse::ErrorClass::Io,
            Self::Guest { .. } => verity_fuse::ErrorClass::Internal,
        }
    }
}

/// Where a `--dir` scenario folder goes in the guest (under the data directory, the script's cwd).
const GUEST_SCENARIOS: &str = "scenarios";

/// Runs `scenarios` (by id; from `dir`, else the ones embedded in the binary) on the `kernel` backend inside
/// one VM boot, with `exe` as the guest's `veritylab`, and returns the guest's report with every cell and
/// the backend choice labelled `kernel-vm`. `progress` hears one line per cell once the VM is done.
pub fn run_scenarios(
    scenarios: &[Scenario],
    dir: Option<&Path>,
    profile: Option<Profile>,
    exe: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<RunReport, KernelVmError> {
    available().map_err(KernelVmError::Unavailable)?;
    let scratch = tempfile::Builder::new()
        .prefix("veritylab-kernel-vm-")
        .tempdir()
        .map_err(|source| KernelVmError::Io {
            what: "creating a scratch directory".to_owned(),
            source,
        })?;
    let mut builder = guest(exe, scratch.path());
    let mut command = String::from("veritylab scenario run --backend kernel --report json --out /tmp/report.json");
    if let Some(dir) = dir {
        let entries = fs::read_dir(dir).map_err(|source| KernelVmError::Io {
            what: format!("reading {}", dir.display()),
            source,
        })?;
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                builder = builder.file(&format!("{GUEST_SCENARIOS}/{name}"), path);
            }
        }
        command.push_str(&format!(" --dir {}/{GUEST_SCENARIOS}", kernel_vm::DATA_DIR));
    }
    if let Some(profile) = profile {
        command.push_str(&format!(" --profile {profile}"));
    }
    for scenario in scenarios {
        command.push(' ');
        command.push_str(&quote(&scenario.id));
    }
    let script = format!(
        "{command} > /tmp/run.log 2>&1\nmark run $?\nsection report\ncat /tmp/report.json\n\
         section log\ntail -n 40 /tmp/run.log\nexit 0\n"
    );
    let started = std::time::Instant::now();
    let out = builder.script(&script).run()?;
    let guest_error = |reason: String| KernelVmError::Guest {
        reason,
        output: out.section("log").unwrap_or(&out.script_output).to_owned(),
    };
    // 0: every cell as expected; 4: some differ (the report says which). Anything else produced no report.
    match out.mark("run") {
        Some("0" | "4") => {}
        status => return Err(guest_error(format!("`veritylab scenario run` exited with {status:?}"))),
    }
    let report: RunReport = serde_json::from_str(out.section("report").unwrap_or_default())
        .map_err(|e| guest_error(format!("the guest's JSON report: {e}")))?;
    let mut report = relabel(report, &vmtest_release());
    // The run, as this host saw it: booting the VM included.
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    for scenario in &report.scenarios {
        for cell in &scenario.cells {
            progress(&format!(
                "{} [{}/{}]: {:?}",
                scenario.id,
                cell.profile,
                cell.backend,
                cell.verdict()
            ));
        }
    }
    Ok(report)
}

/// The guest kernel's release, for the report.
fn vmtest_release() -> String {
    kernel_vm::available()
        .map(|host| host.kernel().release().to_owned())
        .unwrap_or_default()
}

/// The guest's report as the host's: `kernel` cells become `kernel-vm`, the backend choice says what the VM
/// is, and the host is named as the guest of this machine. Cell timings stay the guest's (emulated CPU).
fn relabel(mut report: RunReport, release: &str) -> RunReport {
    let inner: Vec<String> = report.backends.iter().map(|b| b.reason.clone()).collect();
    report.backends = vec![BackendChoice {
        requested: Some(RunnerBackend::KernelVm),
        used: RunnerBackend::KernelVm,
        reason: format!(
            "kernel-vm: the kernel backend inside a throwaway qemu VM (Debian cloud kernel {release}, real \
             dm-verity; software-emulated CPU, so its timings are not performance figures); inside: {}",
            inner.join("; ")
        ),
    }];
    let host = crate::results::HostInfo::probe().hostname;
    report.host.hostname = format!("kernel-vm guest on {host}");
    for cell in report.scenarios.iter_mut().flat_map(|s| s.cells.iter_mut()) {
        if cell.backend == RunnerBackend::Kernel {
            cell.backend = RunnerBackend::KernelVm;
        }
    }
    report
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(quote("tamper-data"), "'tamper-data'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
