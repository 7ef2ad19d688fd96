//! The harness: exit status, sections and marks, and timeouts.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kernel_vm::{Vm, VmError};

use crate::support::vm_available;

#[test]
fn script_output_and_nonzero_exit_status_come_back() -> Result<()> {
    if !vm_available("boot::script_output_and_nonzero_exit_status_come_back") {
        return Ok(());
    }
    let out = Vm::builder()
        .file("greeting.txt", "hello from the host\n")
        .file("nested/dir/x", vec![1, 2, 3])
        .script(
            "section greeting\ncat greeting.txt\nsection kernel\nuname -r\n\
             mark nested $(wc -c < nested/dir/x)\nmark modules $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ,)\n\
             exit 7\n",
        )
        .run()?;
    eprintln!(
        "boot took {:?} (host wall clock), initramfs {} bytes",
        out.elapsed, out.initramfs_bytes
    );
    ensure!(out.exit_code == 7, "exit status {} in:\n{}", out.exit_code, out.console);
    ensure!(
        out.section("greeting") == Some("hello from the host\n"),
        "{:?}",
        out.sections
    );
    let release = kernel_vm::available()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .kernel()
        .release();
    ensure!(out.section("kernel").context("kernel section")?.trim() == release);
    ensure!(out.mark("nested") == Some("3"), "{:?}", out.marks);
    let modules = out.mark("modules").context("modules mark")?;
    for module in [
        "dm_verity",
        "dm_bufio",
        "dm_mod",
        "reed_solomon",
        "erofs",
        "libcrc32c",
        "loop",
        "overlay",
        "fuse",
    ] {
        ensure!(
            modules.split(',').any(|m| m == module),
            "{module} not loaded: {modules}"
        );
    }
    Ok(())
}

#[test]
fn successful_script_exits_zero() -> Result<()> {
    if !vm_available("boot::successful_script_exits_zero") {
        return Ok(());
    }
    let out = Vm::builder().script("true\n").run()?;
    ensure!(out.exit_code == 0, "{}", out.console_tail());
    ensure!(out.dmesg.contains("Linux version"), "kernel log missing: {}", out.dmesg);
    Ok(())
}

#[test]
fn timeout_kills_the_vm_and_shows_the_console() -> Result<()> {
    if !vm_available("boot::timeout_kills_the_vm_and_shows_the_console") {
        return Ok(());
    }
    let limit = Duration::from_secs(20);
    let result = Vm::builder()
        .script("echo about to hang\nwhile true; do sleep 1; done\n")
        .timeout(limit)
        .run();
    match result {
        Err(VmError::Timeout { after, console_tail }) => {
            ensure!(after == limit);
            ensure!(console_tail.contains("about to hang"), "tail: {console_tail}");
            let message = VmError::Timeout { after, console_tail }.to_string();
            ensure!(
                message.contains("timed out") && message.contains("about to hang"),
                "{message}"
            );
            Ok(())
        }
        other => anyhow::bail!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn kernel_panic_is_a_boot_failure_with_the_console_tail() -> Result<()> {
    if !vm_available("boot::kernel_panic_is_a_boot_failure_with_the_console_tail") {
        return Ok(());
    }
    let result = Vm::builder()
        .script("echo crashing on purpose\necho c > /proc/sysrq-trigger\nsleep 600\n")
        .run();
    match result {
        Err(VmError::BootFailed { reason, console_tail }) => {
            ensure!(reason.contains("did not finish"), "reason: {reason}");
            ensure!(reason.contains("Kernel panic - not syncing"), "reason: {reason}");
            ensure!(
                console_tail.lines().count() == kernel_vm::TAIL_LINES,
                "tail:\n{console_tail}"
            );
            Ok(())
        }
        other => anyhow::bail!("expected a boot failure, got {other:?}"),
    }
}

#[test]
fn memory_too_small_for_the_initramfs_is_refused_before_booting() -> Result<()> {
    if !vm_available("boot::memory_too_small_for_the_initramfs_is_refused_before_booting") {
        return Ok(());
    }
    let result = Vm::builder().file("big", vec![0u8; 64 << 20]).memory_mib(192).run();
    ensure!(
        matches!(result, Err(VmError::Memory { memory_mib: 192, .. })),
        "expected a memory error, got {result:?}"
    );
    Ok(())
}
