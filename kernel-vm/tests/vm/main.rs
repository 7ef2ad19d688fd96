//! Kernel-tier tests: the VM harness itself, and real dm-verity in the guest checked against trees we build.
//!
//! Each test boots one VM and runs one script with a batch of checks. Without qemu or the kernel package
//! the tests print `SKIP` with the reason (and fail under `VERITYLAB_REQUIRE_ALL=1`).

mod boot;
mod support;
mod verity;
