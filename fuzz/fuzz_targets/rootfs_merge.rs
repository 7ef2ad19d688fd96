//! Fuzz target: the merged rootfs view over two arbitrary layer images.
//!
//! The input's first two bytes (little-endian) say where the lower image ends; the rest is the upper image.
//! Invariants (any violation is a crash libFuzzer reports):
//! - `Merged::from_sources`, `lookup`, `child`, `read_dir`, `stat`, `read_at`, `read_link`, `xattrs`, `node`
//!   and `walk` never panic and always return, whatever the bytes: malformed layers yield `RootfsError`s.
//! - `walk` terminates on directories linked into themselves, across layers too (`RootfsError::Cycle`).
//! - Work is bounded: the walk stops after 4096 nodes and reads at most 64 KiB per file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veritylab::erofs::{FileKind, OverlayNamespace};
use veritylab::rootfs::{Merged, RootfsError};

/// Stops the walk once the budget is spent.
#[derive(Debug)]
enum Stop {
    Budget,
    Read,
}

impl From<RootfsError> for Stop {
    fn from(_: RootfsError) -> Self {
        Stop::Read
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (lower, upper) = rest.split_at(at);
    let Ok(view) = Merged::from_sources(vec![lower, upper], OverlayNamespace::Trusted) else {
        return;
    };
    for path in [&b"/a/b/../c"[..], b"/etc/passwd", b"/x"] {
        if let Ok(node) = view.lookup(path) {
            let _ = view.node(node.ino());
            let _ = view.child(&node, b"..");
        }
    }
    let mut budget = 4096u32;
    let mut buf = vec![0u8; 4096];
    let _ = view.walk(|node| -> Result<(), Stop> {
        budget = budget.checked_sub(1).ok_or(Stop::Budget)?;
        let _ = view.stat(node);
        let _ = view.xattrs(node);
        match node.kind() {
            FileKind::File => {
                let mut offset = 0u64;
                while offset < 65536 {
                    match view.read_at(node, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => offset += n as u64,
                    }
                }
            }
            FileKind::Symlink => {
                let _ = view.read_link(node);
            }
            _ => {}
        }
        Ok(())
    });
});
