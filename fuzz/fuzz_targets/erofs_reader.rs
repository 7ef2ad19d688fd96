//! Fuzz target: the EROFS reader over arbitrary bytes; the invariants are in `veritylab_fuzz::erofs_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| veritylab_fuzz::erofs_reader(data));
