//! Kernel tier (VM) of the lab: `veritylab` itself run on Debian's cloud kernel, which has device-mapper,
//! in the `kernel-vm` crate's throwaway VM (one boot per test). Without qemu or the kernel package the tests print
//! `SKIP` with the reason (and fail under `VERITYLAB_REQUIRE_ALL=1`).

mod enforced;
mod ipe;
mod mount;
mod scenario;

/// The host's 6.12 kernel tier (bookworm-backports, booted through OVMF), when `tools` are installed and the
/// kernel package and UEFI firmware are here; otherwise reports `test` as skipped with the reason.
fn backports_uefi_available(test: &str, tools: &[&str]) -> Option<&'static kernel_vm::Host> {
    if let Some(tool) = tools.iter().find(|t| testkit::find_tool(t).is_none()) {
        testkit::skip(test, &format!("`{tool}` is not installed"));
        return None;
    }
    let host = kernel_vm::available_series(kernel_vm::Series::Backports)
        .map_err(|reason| testkit::skip(test, &format!("no 6.12 VM here: {reason}")))
        .ok()?;
    kernel_vm::firmware::available()
        .map_err(|reason| testkit::skip(test, &format!("no UEFI firmware here: {reason}")))
        .ok()?;
    Some(host)
}

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
