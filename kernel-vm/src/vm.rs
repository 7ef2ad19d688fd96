//! Describing a VM run ([`VmBuilder`]) and booting it under qemu with a wall-clock limit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::VmError;
use crate::initramfs::{self, Contents, FileSource};
use crate::kernel::Series;
use crate::output::{self, Parsed, VmOutput};
use crate::{Host, firmware, process};

/// Modules every VM loads: device-mapper and dm-verity, EROFS, loop devices, overlayfs and FUSE. Their
/// dependencies (`reed_solomon`, `dm-bufio`, `libcrc32c`, ...) are found from the modules themselves.
pub(crate) const DEFAULT_MODULES: &[&str] = &["dm-mod", "dm-bufio", "dm-verity", "erofs", "loop", "overlay", "fuse"];

/// Default guest memory. The initramfs is unpacked into RAM, so data files count against it.
pub(crate) const DEFAULT_MEMORY_MIB: u32 = 512;

/// Default wall-clock limit: generous for a boot of a few seconds on a loaded host, still bounded.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel command line: serial console, quiet boot, reboot (so qemu exits) on panic, and
/// `no_timer_check`: under TCG on a loaded host the kernel's check that the timer interrupt arrives through the
/// IO-APIC can miss its window and panic the boot ("IO-APIC + timer doesn't work"), seen here at a load average
/// of 17; the emulated timer does work, so the check is skipped.
const KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1 no_timer_check";

/// Guest memory limits, in MiB.
const MEMORY_RANGE: std::ops::RangeInclusive<u32> = 128..=8192;

/// A VM run, namespace for [`Vm::builder`].
#[derive(Debug)]
pub struct Vm;

impl Vm {
    /// Starts describing a run with the default modules, memory and time limit.
    pub fn builder() -> VmBuilder {
        VmBuilder {
            modules: DEFAULT_MODULES.iter().map(|m| (*m).to_owned()).collect(),
            binaries: Vec::new(),
            binary_paths: Vec::new(),
            files: Vec::new(),
            script: String::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            series: Series::default(),
            db_certificates: None,
        }
    }
}

/// What to put in the VM and how long to let it run.
#[derive(Debug, Clone)]
#[must_use]
pub struct VmBuilder {
    modules: Vec<String>,
    binaries: Vec<String>,
    binary_paths: Vec<PathBuf>,
    files: Vec<(String, FileSource)>,
    script: String,
    memory_mib: u32,
    timeout: Duration,
    series: Series,
    /// Boot through OVMF with these certificates enrolled in `db`, when set.
    db_certificates: Option<Vec<PathBuf>>,
}

impl VmBuilder {
    /// Adds a host tool found on `PATH` (or `/usr/sbin`, `/sbin`), at the same path in the guest, with its
    /// shared libraries.
    pub fn binary(mut self, name: &str) -> Self {
        self.binaries.push(name.to_owned());
        self
    }

    /// Adds the host binary at `path` as `/usr/local/bin/<file name>` in the guest, with its shared
    /// libraries (for the workspace's own binaries).
    pub fn binary_at(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary_paths.push(path.into());
        self
    }

    /// Adds a data file at `/data/<name>` in the guest; the script runs in `/data`.
    pub fn file(mut self, name: &str, contents: impl Into<FileSource>) -> Self {
        self.files.push((name.to_owned(), contents.into()));
        self
    }

    /// Loads `name` (and its dependencies) as well as the default modules.
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_owned());
        self
    }

    /// The busybox `sh` script to run. It may call `section NAME` to start a named section of its output
    /// and `mark NAME VALUE` to report a value; its exit status is [`VmOutput::exit_code`].
    pub fn script(mut self, script: &str) -> Self {
        script.clone_into(&mut self.script);
        self
    }

    /// Guest memory in MiB (128 to 8192, and at least twice the initramfs plus 128 MiB).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Boots the kernel of `series` instead of bookworm's.
    pub fn kernel_series(mut self, series: Series) -> Self {
        self.series = series;
        self
    }

    /// Boots through UEFI firmware (OVMF, machine q35) with the certificate file `cert` (PEM or DER)
    /// enrolled in `db`, so the kernel's `.platform` keyring holds it; call again to enroll more.
    pub fn uefi_db_certificate(mut self, cert: impl Into<PathBuf>) -> Self {
        self.db_certificates.get_or_insert_with(Vec::new).push(cert.into());
        self
    }

    /// Wall-clock limit for the whole boot; qemu is killed when it passes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the initramfs, boots it and returns what the script reported. Needs [`crate::available`].
    pub fn run(self) -> Result<VmOutput, VmError> {
        let host = crate::available_series(self.series).map_err(|error| VmError::Unavailable {
            reason: error.to_string(),
        })?;
        let initramfs = self.initramfs(host)?;
        let budget = u64::from(self.memory_mib) * 1024 * 1024;
        let needed = 2 * initramfs.len() as u64 + 128 * 1024 * 1024;
        if !MEMORY_RANGE.contains(&self.memory_mib) || budget < needed {
            return Err(VmError::Memory {
                memory_mib: self.memory_mib,
                initramfs_bytes: initramfs.len(),
            });
        }
        let scratch = tempfile::Builder::new()
            .prefix("vmtest-")
            .tempdir()
            .map_err(VmError::io("creating a scratch directory"))?;
        let initrd = scratch.path().join("initramfs.cpio");
        fs::write(&initrd, &initramfs).map_err(VmError::io(format!("writing {}", initrd.display())))?;
        let vars = match &self.db_certificates {
            Some(certs) => Some(firmware::enrolled_vars(scratch.path(), certs)?),
            None => None,
        };
        self.boot(host, &initrd, initramfs.len(), vars.as_deref())
    }

    fn initramfs(&self, host: &Host) -> Result<Vec<u8>, VmError> {
        let modules = host.kernel.modules_in_load_order(&self.modules)?;
        let mut binaries = Vec::new();
        for name in &self.binaries {
            let path =
                verity_fuse::sys::find_tool(name).ok_or_else(|| VmError::BinaryMissing { name: name.clone() })?;
            let guest = path.to_string_lossy().into_owned();
            binaries.push((path, guest));
        }
        for path in &self.binary_paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| VmError::BadFileName {
                    name: path.display().to_string(),
                })?;
            binaries.push((path.clone(), format!("/usr/local/bin/{name}")));
        }
        initramfs::build(&Contents {
            busybox: &host.busybox,
            modules: &modules,
            binaries: &binaries,
            files: &self.files,
            script: &self.script,
        })
    }

    fn boot(
        &self,
        host: &Host,
        initrd: &Path,
        initramfs_bytes: usize,
        vars: Option<&Path>,
    ) -> Result<VmOutput, VmError> {
        let mut qemu = Command::new(&host.qemu);
        if let Some(vars) = vars {
            let mut code = std::ffi::OsString::from("if=pflash,format=raw,readonly=on,file=");
            code.push(firmware::OVMF_CODE);
            let mut store = std::ffi::OsString::from("if=pflash,format=raw,file=");
            store.push(vars);
            qemu.args(["-machine", "q35", "-drive"])
                .arg(code)
                .arg("-drive")
                .arg(store);
        }
        qemu.args([
            "-nographic",
            "-nodefaults",
            "-no-reboot",
            "-serial",
            "stdio",
            "-smp",
            "1",
        ])
        .arg("-m")
        .arg(self.memory_mib.to_string())
        .arg("-kernel")
        .arg(host.kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", KERNEL_ARGS]);
        let finished = process::run(&mut qemu, self.timeout)?;
        let console = output::clean(&finished.stdout);
        if finished.status.is_none() {
            return Err(VmError::Timeout {
                after: self.timeout,
                console_tail: output::tail(&console),
            });
        }
        let boot_failed = |reason: String| VmError::BootFailed {
            reason,
            console_tail: output::tail(&format!("{console}{}", output::clean(&finished.stderr))),
        };
        match output::parse(&console) {
            Parsed::Finished(script) => Ok(VmOutput {
                exit_code: script.exit_code,
                script_output: script.script_output,
                sections: script.sections,
                marks: script.marks,
                dmesg: script.dmesg,
                console,
                elapsed: finished.elapsed,
                initramfs_bytes,
            }),
            Parsed::InitFailed(step) => Err(boot_failed(format!("init step `{step}` failed"))),
            Parsed::Incomplete(what) => {
                let panic = output::panic_line(&console)
                    .map(|line| format!("; {line}"))
                    .unwrap_or_default();
                Err(boot_failed(format!(
                    "{what}{panic}; qemu exited with {}",
                    finished.describe()
                )))
            }
        }
    }
}
