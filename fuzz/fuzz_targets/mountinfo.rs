//! Fuzz target: the mountinfo parser over arbitrary bytes.
//!
//! Invariants (any violation is a crash libFuzzer reports):
//! - `mountinfo::parse` never panics and always returns, whatever the bytes: malformed lines yield a
//!   `ParseError` naming the line.
//! - Every mount it returns renders back (`Display`) to a line that parses to the same mount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veritylab::mountinfo;

fuzz_target!(|data: &[u8]| {
    let Ok(mounts) = mountinfo::parse(data) else {
        return;
    };
    for mount in mounts {
        let line = mount.to_string();
        assert_eq!(mountinfo::parse_line(line.as_bytes()).as_ref(), Ok(&mount), "{line:?}");
    }
});
