//! kernel-vm: run work on a real Linux kernel with dm-verity, in a throwaway qemu VM: the scenario runner's
//! `kernel-vm` backend and the kernel test tier.
//!
//! The host kernel has no device-mapper, so kernel-tier tests boot Debian's cloud kernel under
//! `qemu-system-x86_64` (software emulation, TCG; about 3 s per boot) from an initramfs built for the test,
//! run one shell script doing a batch of checks, and read the results from the serial console.
//!
//! Data flows like this:
//!
//! 1. [`available`] probes once per process: `qemu-system-x86_64` (package `qemu-system-x86`), `busybox`
//!    (`busybox-static`), and the kernel (`kernel`): the package `linux-image-cloud-amd64` depends on,
//!    fetched with `apt-get download`, unpacked with `dpkg -x` into `<target>/kernel-vm/kernels/` and reused.
//! 2. [`Vm::builder`] collects the script, data files, host binaries and extra modules.
//! 3. [`VmBuilder::run`] resolves the modules' load order from their `depends=` metadata (`modinfo`),
//!    writes a newc archive (`cpio`) laid out as `initramfs` describes, boots it with
//!    `-nographic -no-reboot -smp 1`, bounded memory and a wall-clock limit, and splits the console at the
//!    markers `/init` prints (`output`).
//!
//! A script that exits non-zero is a normal result ([`VmOutput::exit_code`]); a VM that times out, panics
//! or fails to set up is a [`VmError`] carrying the last console lines.
//!
//! ```no_run
//! # fn main() -> Result<(), kernel_vm::VmError> {
//! let out = kernel_vm::Vm::builder()
//!     .binary("dmsetup")
//!     .file("hello.txt", "hello\n")
//!     .script("section greeting\ncat hello.txt\nmark modules $(wc -l < /proc/modules)\n")
//!     .run()?;
//! assert_eq!(out.exit_code, 0);
//! assert_eq!(out.section("greeting"), Some("hello\n"));
//! # Ok(())
//! # }
//! ```
//!
//! Tests call [`available`] first and skip with `testkit::skip` and the reason when it fails, so a
//! missing VM is reported, never silent. Timings measured inside the guest are emulated-CPU timings and are
//! never performance figures.
#![forbid(unsafe_code)]

mod cpio;
mod error;
pub mod firmware;
mod host;
mod initramfs;
mod kernel;
mod modinfo;
mod output;
mod process;
mod vm;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use error::VmError;
pub use initramfs::{DATA_DIR, FileSource};
pub use kernel::{Kernel, Series};
pub use output::{TAIL_LINES, VmOutput};
pub use vm::{Vm, VmBuilder};

/// What a VM needs on this host: qemu, busybox and an unpacked kernel.
#[derive(Debug)]
pub struct Host {
    qemu: PathBuf,
    busybox: PathBuf,
    kernel: Kernel,
}

impl Host {
    fn probe(series: Series) -> Result<Self, VmError> {
        Ok(Self {
            qemu: host::require("qemu-system-x86_64", "qemu-system-x86")?,
            busybox: host::require("busybox", "busybox-static")?,
            kernel: Kernel::obtain(series)?,
        })
    }

    /// The qemu binary.
    pub fn qemu(&self) -> &Path {
        &self.qemu
    }

    /// The busybox binary copied into every guest.
    pub fn busybox(&self) -> &Path {
        &self.busybox
    }

    /// The guest kernel.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }
}

/// Whether a VM can run here, probed once per process (the first call may download the kernel package).
/// The error says what is missing and which Debian package provides it.
pub fn available() -> Result<&'static Host, &'static VmError> {
    available_series(Series::Bookworm)
}

/// What a test of the kernel tier needs: `series`'s kernel, UEFI firmware when `firmware` (for certificates
/// in the `db`), and each host tool in `tools`, which the returned builder copies into the guest. Returns the
/// host and that builder, or why this host cannot run the test, for the test to print as its skip reason.
pub fn test_vm(series: Series, firmware: bool, tools: &[&str]) -> Result<(&'static Host, VmBuilder), String> {
    if let Some(tool) = tools.iter().find(|t| verity_fuse::sys::find_tool(t).is_none()) {
        return Err(format!("`{tool}` is not installed"));
    }
    let host = available_series(series).map_err(|e| format!("no {series:?} VM here: {e}"))?;
    if firmware {
        firmware::available().map_err(|e| format!("no UEFI firmware here: {e}"))?;
    }
    let vm = tools
        .iter()
        .fold(Vm::builder().kernel_series(series), |vm, tool| vm.binary(tool));
    Ok((host, vm))
}

/// [`available`] for the kernel of `series`.
pub fn available_series(series: Series) -> Result<&'static Host, &'static VmError> {
    static BOOKWORM: OnceLock<Result<Host, VmError>> = OnceLock::new();
    static BACKPORTS: OnceLock<Result<Host, VmError>> = OnceLock::new();
    let cell = match series {
        Series::Bookworm => &BOOKWORM,
        Series::Backports => &BACKPORTS,
    };
    cell.get_or_init(|| Host::probe(series)).as_ref()
}
