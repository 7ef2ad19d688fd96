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

use crate::results::{BackendChoice, CellStatus, RunReport};
use crate::{Publisher, Scenario};
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
    /// The run's publisher key and certificate could not be made.
    #[error("the run's publisher key: {0}")]
    Publisher(#[from] crate::PublisherError),
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
            Self::Publisher(e) => e.class(),
        }
    }
}

/// Where a `--dir` scenario folder goes in the guest (under the data directory, the script's cwd).
const GUEST_SCENARIOS: &str = "scenarios";

/// The publisher key's name in the guest's data directory (its certificate is `publisher.crt` beside it).
const GUEST_PUBLISHER: &str = "publisher";

/// Tools the `enforced` boot copies into its guest besides [`TOOLS`]: `keyctl` loads each root-hash
/// signature as a `user` key for the kernel.
pub const ENFORCED_TOOLS: &[&str] = &["keyctl"];

/// Runs `scenarios` (by id; from `dir`, else the ones embedded in the binary) on the `kernel` backend inside
/// VMs, with `exe` as the guest's `veritylab`, and returns the guests' report with every cell and the backend
/// choice labelled `kernel-vm`. `progress` hears one line per cell once the VMs are done.
///
/// Two boots at most. The default kernel runs every cell but the `enforced` ones. The `enforced` cells run in
/// one boot of the 6.12 kernel through OVMF with [`ENFORCED_TOOLS`]: a publisher key and certificate made here for
/// this run, the certificate enrolled in the variable store's `db` (so the kernel's `.platform` keyring holds
/// it), and every enforced cell signs with that key (`--publisher-key`), so the kernel checks each layer's
/// root-hash signature and enforces the IPE policy the key signed. Where that VM cannot run, the enforced
/// cells are skipped and say why.
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
    let started = std::time::Instant::now();
    let wants_enforced = profile.is_none_or(|p| p == Profile::Enforced)
        && scenarios.iter().any(|s| s.profiles.contains(&Profile::Enforced));
    let base = guest(exe, scratch.path());
    let enforced_vm = wants_enforced.then(|| {
        kernel_vm::test_vm(kernel_vm::Series::Backports, true, ENFORCED_TOOLS).map(|_| {
            ENFORCED_TOOLS
                .iter()
                .fold(base.clone().kernel_series(kernel_vm::Series::Backports), |vm, tool| {
                    vm.binary(tool)
                })
        })
    });
    let enforced_boot = enforced_vm.as_ref().is_some_and(Result::is_ok);
    let release = vmtest_release(kernel_vm::Series::Bookworm);
    let mut report = if profile == Some(Profile::Enforced) && enforced_boot {
        None
    } else {
        let builder = with_scenarios(base, dir)?;
        let mut command = scenario_command(dir, scenarios);
        if let Some(profile) = profile {
            command.push_str(&format!(" --profile {profile}"));
        }
        Some(relabel(batch(builder, "", &command)?, &release))
    };
    match enforced_vm {
        Some(Ok(builder)) => {
            let publisher = Publisher::create(&scratch.path().join(GUEST_PUBLISHER))?;
            let read = |path: &Path| {
                fs::read(path).map_err(|source| KernelVmError::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })
            };
            let builder = builder
                .uefi_db_certificate(&publisher.certificate)
                .file(&format!("{GUEST_PUBLISHER}.key"), read(&publisher.key)?)
                .file(&format!("{GUEST_PUBLISHER}.crt"), read(&publisher.certificate)?);
            let builder = with_scenarios(builder, dir)?;
            // /tmp, where the cells' sandboxes go, gets a tmpfs of its own: IPE's `boot_verified` holds for every
            // file on the initramfs's superblock, written at boot or later, so sandboxes on the guest's rootfs
            // would make an attacker's copy there executable, a state a node keeps on its disk never has.
            let setup = format!(
                "mount -t securityfs securityfs /sys/kernel/security 2>/dev/null\n\
                 mount -t tmpfs -o mode=1777 tmpfs /tmp\n\
                 cp {GUEST_PUBLISHER}.key {GUEST_PUBLISHER}.crt /tmp/ && chmod 600 /tmp/{GUEST_PUBLISHER}.key\n"
            );
            let command = format!(
                "{} --profile enforced --publisher-key /tmp/{GUEST_PUBLISHER}.key",
                scenario_command(dir, scenarios)
            );
            let release = vmtest_release(kernel_vm::Series::Backports);
            let enforced = relabel(batch(builder, &setup, &command)?, &release);
            report = Some(match report {
                Some(mut report) => {
                    merge_enforced(&mut report, enforced, &release);
                    report
                }
                None => enforced,
            });
        }
        Some(Err(why)) => {
            if let Some(report) = &mut report {
                for cell in report.scenarios.iter_mut().flat_map(|s| s.cells.iter_mut()) {
                    if cell.profile == Profile::Enforced
                        && let CellStatus::Skipped { reason } = &mut cell.status
                    {
                        reason.push_str(&format!("; the 6.12 VM that runs them cannot run here: {why}"));
                    }
                }
            }
        }
        None => {}
    }
    let mut report = report.ok_or_else(|| KernelVmError::Unavailable("no VM batch ran".to_owned()))?;
    // The run, as this host saw it: booting the VMs included.
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

/// `veritylab scenario run --backend kernel` writing its JSON report to `/tmp/report.json`, for `scenarios`
/// (from `dir` as copied into the guest by [`with_scenarios`], else the embedded ones).
fn scenario_command(dir: Option<&Path>, scenarios: &[Scenario]) -> String {
    let mut command = String::from("veritylab scenario run --backend kernel --report json --out /tmp/report.json");
    if dir.is_some() {
        command.push_str(&format!(" --dir {}/{GUEST_SCENARIOS}", kernel_vm::DATA_DIR));
    }
    for scenario in scenarios {
        command.push(' ');
        command.push_str(&quote(&scenario.id));
    }
    command
}

/// `builder` with `dir`'s scenario files, when a `--dir` was given.
fn with_scenarios(mut builder: VmBuilder, dir: Option<&Path>) -> Result<VmBuilder, KernelVmError> {
    let Some(dir) = dir else {
        return Ok(builder);
    };
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
    Ok(builder)
}

/// Boots `builder` with a script that runs `setup`, then `command` (a `veritylab scenario run`), and returns
/// the guest's report.
fn batch(builder: VmBuilder, setup: &str, command: &str) -> Result<RunReport, KernelVmError> {
    let script = format!(
        "{setup}{command} > /tmp/run.log 2>&1\nmark run $?\nsection report\ncat /tmp/report.json\n\
         section log\ntail -n 40 /tmp/run.log\nexit 0\n"
    );
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
    serde_json::from_str(out.section("report").unwrap_or_default())
        .map_err(|e| guest_error(format!("the guest's JSON report: {e}")))
}

/// `report` with its `enforced` cells replaced by those of `enforced`, the run of the 6.12 kernel `release`,
/// and its backend choice saying so.
fn merge_enforced(report: &mut RunReport, enforced: RunReport, release: &str) {
    for scenario in enforced.scenarios {
        let Some(into) = report.scenarios.iter_mut().find(|s| s.id == scenario.id) else {
            continue;
        };
        for cell in scenario.cells.into_iter().filter(|c| c.profile == Profile::Enforced) {
            match into.cells.iter_mut().find(|c| c.profile == Profile::Enforced) {
                Some(slot) => *slot = cell,
                None => into.cells.push(cell),
            }
        }
    }
    if let Some(choice) = report.backends.first_mut() {
        choice.reason.push_str(&format!(
            "; the enforced cells in a second boot, of Debian's cloud kernel {release} through OVMF with this \
             run's publisher certificate enrolled in db (the kernel checks root-hash signatures and enforces IPE)"
        ));
    }
}

/// The release of `series`'s guest kernel, for the report.
fn vmtest_release(series: kernel_vm::Series) -> String {
    kernel_vm::available_series(series)
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
