//! UEFI firmware for VMs that need it: Debian's OVMF (package `ovmf`) with a copy of its variable store in
//! which test certificates are enrolled in `db` by `virt-fw-vars` (PyPI `virt-firmware`).
//!
//! A kernel with `CONFIG_INTEGRITY_PLATFORM_KEYRING` loads the `db` certificates into its `.platform`
//! keyring at boot, which dm-verity (`CONFIG_DM_VERITY_VERIFY_ROOTHASH_SIG_PLATFORM_KEYRING`) and IPE trust.
//! Secure Boot itself stays off: the kernel is booted directly with `-kernel`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::VmError;
use crate::process;

/// The read-only firmware code.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The variable store template copied for each boot.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The owner GUID recorded with our `db` entries.
pub const OWNER_GUID: &str = "a0baa8a3-041d-48a8-bc87-c36d121b5e3d";

/// Time allowed for `virt-fw-vars`.
const ENROLL_LIMIT: Duration = Duration::from_secs(60);

/// Whether OVMF and `virt-fw-vars` are installed, or what to install.
pub fn available() -> Result<PathBuf, VmError> {
    for file in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(file).is_file() {
            return Err(VmError::Firmware {
                detail: format!("{file} not found: install the Debian package `ovmf`"),
            });
        }
    }
    verity_fuse::sys::find_tool("virt-fw-vars").ok_or_else(|| VmError::Firmware {
        detail: "`virt-fw-vars` not found: `pip install virt-firmware`".to_owned(),
    })
}

/// Writes `vars` (in `dir`): a copy of the OVMF variable store with each certificate (PEM or DER files)
/// enrolled in `db`; returns its path.
pub fn enrolled_vars(dir: &Path, certificates: &[PathBuf]) -> Result<PathBuf, VmError> {
    let tool = available()?;
    let vars = dir.join("OVMF_VARS_4M.fd");
    let mut command = Command::new(tool);
    command.args(["--input", OVMF_VARS, "--output"]).arg(&vars);
    for cert in certificates {
        command.args(["--add-db", OWNER_GUID]).arg(cert);
    }
    let out = process::run(&mut command, ENROLL_LIMIT)?;
    if !out.success() {
        return Err(VmError::Firmware { detail: out.describe() });
    }
    Ok(vars)
}
