//! Host tools: finding executables (with the Debian package to install when one is missing) and the shared
//! libraries a dynamic binary loads, as `ldd` reports them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::VmError;

/// Finds `tool` on `PATH` (or in `/usr/sbin`, `/sbin`), or names `package` as the one to install.
pub(crate) fn require(tool: &str, package: &str) -> Result<PathBuf, VmError> {
    verity_fuse::sys::find_tool(tool).ok_or_else(|| VmError::ToolMissing {
        tool: tool.to_owned(),
        package: package.to_owned(),
    })
}

/// The absolute paths of the shared libraries (and the dynamic loader) `binary` needs; empty for a static
/// binary.
pub(crate) fn libraries(binary: &Path) -> Result<Vec<PathBuf>, VmError> {
    let ldd = require("ldd", "libc-bin")?;
    let out = Command::new(ldd)
        .arg(binary)
        .output()
        .map_err(VmError::io(format!("running ldd {}", binary.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(VmError::Libraries {
            binary: binary.to_owned(),
            detail: format!("ldd exited with {}: {stderr}", out.status),
        });
    }
    parse_ldd(&stdout).map_err(|detail| VmError::Libraries {
        binary: binary.to_owned(),
        detail,
    })
}

/// The library paths in `ldd` output; a `not found` line is the error.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in output.lines().map(str::trim) {
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!("library `{}` not found", name.trim()));
                }
                target
            }
            None => line,
        };
        if let Some(path) = target.split_whitespace().next().filter(|p| p.starts_with('/')) {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007fc899a7e000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fc899794000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007fc899a80000)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn missing_library_is_an_error() {
        let out = "\tlibgone.so.1 => not found\n";
        assert_eq!(parse_ldd(out), Err("library `libgone.so.1` not found".into()));
    }
}
