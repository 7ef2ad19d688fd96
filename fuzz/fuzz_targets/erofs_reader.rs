//! Fuzz target: the EROFS reader over arbitrary bytes.
//!
//! Invariants (any violation is a crash libFuzzer reports):
//! - `Image::open`, `inode`, `read_dir`, `read_at`, `read_link`, `xattrs`, `lookup` and `walk` never panic,
//!   never read outside the input (every read goes through `ReadAt`, which refuses out-of-range reads) and
//!   always return, whatever the bytes: malformed images yield `ReadError`s.
//! - `walk` terminates on directory cycles (it reports `ReadError::Cycle`).
//! - Work is bounded: the walk stops after 4096 inodes and reads at most 64 KiB per file, so a huge sparse
//!   size cannot make one input slow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veritylab::erofs::{FileKind, Image, ReadError};

/// Stops the walk once the budget is spent.
#[derive(Debug)]
enum Stop {
    Budget,
    Read,
}

impl From<ReadError> for Stop {
    fn from(_: ReadError) -> Self {
        Stop::Read
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(image) = Image::open(data) else {
        return;
    };
    let _ = image.lookup(b"/a/b/../c");
    let Ok(root) = image.root() else {
        return;
    };
    let mut budget = 4096u32;
    let mut buf = vec![0u8; 4096];
    let _ = image.walk(&root, |_, inode| -> Result<(), Stop> {
        budget = budget.checked_sub(1).ok_or(Stop::Budget)?;
        let _ = image.xattrs(inode);
        match inode.kind {
            FileKind::File => {
                let mut offset = 0u64;
                while offset < 65536 {
                    match image.read_at(inode, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => offset += n as u64,
                    }
                }
            }
            FileKind::Symlink => {
                let _ = image.read_link(inode);
            }
            _ => {}
        }
        Ok(())
    });
});
