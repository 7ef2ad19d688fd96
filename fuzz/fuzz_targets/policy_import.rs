//! Fuzz target: the policy importer over arbitrary bytes; the invariants are in `veritylab_fuzz::policy_import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| veritylab_fuzz::policy_import(data));
