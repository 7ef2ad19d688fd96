//! Why a VM could not be prepared or did not finish its script.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::modinfo::ModinfoError;

/// Everything that can go wrong between looking for qemu and reading the script's exit status.
///
/// A script that runs and exits non-zero is not an error: it is [`crate::VmOutput::exit_code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    /// A host tool is missing; the Debian package that provides it is named.
    #[error("`{tool}` not found: install the Debian package `{package}`")]
    ToolMissing {
        /// The executable looked for.
        tool: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// The UEFI firmware or its variable store could not be prepared.
    #[error("UEFI firmware: {detail}")]
    Firmware {
        /// What failed.
        detail: String,
    },
    /// A binary asked for by name is not installed on the host.
    #[error("binary `{name}` for the VM not found on PATH, in /usr/sbin or in /sbin")]
    BinaryMissing {
        /// The name asked for.
        name: String,
    },
    /// The kernel package could not be identified or fetched.
    #[error("cannot obtain the cloud kernel ({step}): {detail}")]
    Kernel {
        /// What was being done (`apt-cache depends`, `apt-get download`, `dpkg -x`, ...).
        step: &'static str,
        /// The command's output or the missing piece.
        detail: String,
    },
    /// A kernel module is neither a module file nor built in.
    #[error("kernel module `{name}` is not in the kernel package")]
    ModuleMissing {
        /// The module name, normalized.
        name: String,
    },
    /// A module file's metadata could not be read.
    #[error("cannot read the dependencies of {path}: {source}")]
    Modinfo {
        /// The module file.
        path: PathBuf,
        /// What was wrong with it.
        source: ModinfoError,
    },
    /// `ldd` could not list the shared libraries of a binary, or one is missing.
    #[error("cannot resolve the shared libraries of {binary}: {detail}")]
    Libraries {
        /// The binary.
        binary: PathBuf,
        /// `ldd`'s complaint.
        detail: String,
    },
    /// A data file name is not a plain relative path.
    #[error("file name `{name}` must be a relative path without `..`")]
    BadFileName {
        /// The name given.
        name: String,
    },
    /// The memory size is outside what the harness allows, or too small for the initramfs.
    #[error(
        "{memory_mib} MiB of VM memory does not fit an initramfs of {initramfs_bytes} bytes (allowed 128..=8192 MiB, at least twice the initramfs plus 128 MiB)"
    )]
    Memory {
        /// The memory asked for.
        memory_mib: u32,
        /// The initramfs size.
        initramfs_bytes: usize,
    },
    /// The VM cannot run here; the reason is what [`crate::available`] reported.
    #[error("no VM can run here: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The VM did not power off within the time limit and was killed.
    #[error("VM timed out after {after:?} and was killed; last console lines:\n{console_tail}")]
    Timeout {
        /// The time limit.
        after: Duration,
        /// The last console lines.
        console_tail: String,
    },
    /// The VM stopped without reporting the script's exit status (kernel panic, failed init step, qemu
    /// error).
    #[error("VM stopped without a script result ({reason}); last console lines:\n{console_tail}")]
    BootFailed {
        /// What went wrong, as far as the harness can tell.
        reason: String,
        /// The last console lines.
        console_tail: String,
    },
    /// An I/O operation on the host failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl VmError {
    /// An [`VmError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
