//! Shared helpers: the capability check every test starts with.

/// Whether a VM can run here; otherwise reports `test` as skipped (a failure under
/// `VERITYLAB_REQUIRE_ALL=1`) with the reason.
pub(crate) fn vm_available(test: &str) -> bool {
    match kernel_vm::available() {
        Ok(_) => true,
        Err(reason) => {
            testkit::skip(test, &format!("no VM here: {reason}"));
            false
        }
    }
}
