//! Fuzz target: the mountinfo parser over arbitrary bytes; the invariants are in `veritylab_fuzz::mountinfo`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| veritylab_fuzz::mountinfo(data));
