//! Fuzz target: the merged rootfs view over two arbitrary layer images; the invariants are in
//! `veritylab_fuzz::rootfs_merge`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| veritylab_fuzz::rootfs_merge(data));
