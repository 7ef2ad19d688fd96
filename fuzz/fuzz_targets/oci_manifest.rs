//! Fuzz target: the OCI manifest and index parser, platform selection, digests and image references over
//! arbitrary bytes; the invariants are in `veritylab_fuzz::oci_manifest`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| veritylab_fuzz::oci_manifest(data));
