//! Test support shared by the veritylab crates.
//!
//! Tests that need root, FUSE, loop devices or an outside tool ask for it here. When it is missing the test
//! prints `SKIP <test>: <reason>` and returns; with `VERITYLAB_REQUIRE_ALL=1` (CI sets it) a missing
//! capability panics instead, so a test cannot pass by not running. The one exception is a test that needs
//! root run by a normal user (reason [`NEEDS_ROOT`]): the unprivileged CI tier runs every test as `nobody`
//! under `VERITYLAB_REQUIRE_ALL=1`, where those skips pass and are listed, and every other skip fails.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;

/// Whether `VERITYLAB_REQUIRE_ALL=1` turns skips into failures.
pub fn require_all() -> bool {
    std::env::var("VERITYLAB_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// The reason of a test that needs root and runs as a normal user.
pub const NEEDS_ROOT: &str = "needs root";

/// Whether a skip for `reason` passes under `VERITYLAB_REQUIRE_ALL=1`: only [`NEEDS_ROOT`], and only when
/// not root.
fn tolerated(reason: &str, root: bool) -> bool {
    reason == NEEDS_ROOT && !root
}

/// Reports a skipped test: prints the reason, or panics under `VERITYLAB_REQUIRE_ALL=1` (unless the test
/// needs root and this is a normal user).
pub fn skip(test: &str, reason: &str) {
    if require_all() && !tolerated(reason, is_root()) {
        panic!("{test}: required capability missing under VERITYLAB_REQUIRE_ALL=1: {reason}");
    }
    // Written to the stderr handle itself: the test harness captures `eprintln!`, and a skip must show.
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {reason}");
}

pub use verity_fuse::sys::{find_tool, is_root};

/// Whether FUSE devices can be served here; otherwise reports `test` as skipped with the reason (which
/// fails it under `VERITYLAB_REQUIRE_ALL=1`) and returns false.
pub fn fuse_available(test: &str) -> bool {
    match &verity_fuse::backend::capabilities().fuse {
        Ok(()) => true,
        Err(reason) => {
            skip(test, reason);
            false
        }
    }
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
            $crate::skip(module_path!(), $crate::NEEDS_ROOT);
            return;
        }
    };
}

/// The rows (code → name, meaning) of the markdown table under the heading `heading` in the workspace's
/// README: the exit-code tables the commands' tests compare with their exit-code enums.
pub fn readme_exit_codes(heading: &str) -> BTreeMap<u8, (String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split_once(&format!("# {heading}\n"))
        .unwrap_or_else(|| panic!("README has no `{heading}` heading"))
        .1;
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "{row}");
            (cells[0].parse().unwrap(), (cells[1].to_owned(), cells[2].to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_needs_root_as_a_normal_user_passes_under_require_all() {
        assert!(tolerated(NEEDS_ROOT, false));
        assert!(!tolerated(NEEDS_ROOT, true));
        assert!(!tolerated("needs root and loop devices", false));
        assert!(!tolerated("/dev/fuse is not readable and writable by this user", false));
        assert!(!tolerated("`umoci` is not installed (see .ci/run)", false));
    }
}
