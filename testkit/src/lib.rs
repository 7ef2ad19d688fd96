//! Test support shared by the veritylab crates.
//!
//! Tests that need root, FUSE, loop devices or an outside tool ask for it here. When it is missing the test
//! prints `SKIP <test>: <reason>` and returns; with `VERITYLAB_REQUIRE_ALL=1` (CI sets it) a missing
//! capability panics instead, so a test cannot pass by not running.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// Whether `VERITYLAB_REQUIRE_ALL=1` turns skips into failures.
pub fn require_all() -> bool {
    std::env::var("VERITYLAB_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Reports a skipped test: prints the reason, or panics under `VERITYLAB_REQUIRE_ALL=1`.
pub fn skip(test: &str, reason: &str) {
    if require_all() {
        panic!("{test}: required capability missing under VERITYLAB_REQUIRE_ALL=1: {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Finds an executable by name on `PATH`, then in `/usr/sbin` and `/sbin` (where `veritysetup` lives and
/// where a non-root `PATH` often does not look).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the test process runs as root (effective uid 0), read from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Returns the path of a tool, or skips the calling test (returning from it) with the reason printed.
#[macro_export]
macro_rules! require_tool {
    ($name:expr) => {
        match $crate::find_tool($name) {
            Some(path) => path,
            None => {
                $crate::skip(
                    module_path!(),
                    &format!("`{}` is not installed (see .ci/run for the package)", $name),
                );
                return;
            }
        }
    };
}

/// Skips the calling test (returning from it) unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            $crate::skip(module_path!(), "needs root");
            return;
        }
    };
}
