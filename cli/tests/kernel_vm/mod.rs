//! Kernel tier (VM) of the lab: `veritylab` itself run on Debian's cloud kernel, which has device-mapper,
//! in the `kernel-vm` crate's throwaway VM (one boot per test). Without qemu or the kernel package the tests print
//! `SKIP` with the reason (and fail under `VERITYLAB_REQUIRE_ALL=1`).

mod ipe;
mod mount;
mod scenario;

/// Whether a kernel-vm batch can run here; otherwise reports `test` as skipped with the reason.
fn vm_available(test: &str) -> bool {
    if let Err(reason) = scenarios::vm::available() {
        testkit::skip(test, &format!("no VM here: {reason}"));
        return false;
    }
    for tool in scenarios::vm::TOOLS {
        if testkit::find_tool(tool).is_none() {
            testkit::skip(
                test,
                &format!("`{tool}` is not installed (util-linux, mount or dmsetup)"),
            );
            return false;
        }
    }
    true
}
