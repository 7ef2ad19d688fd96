//! `verity-fuse close`: unmount a device cleanly, refusing while a loop device or mount still holds it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Failure;
use crate::backend::{Backend, kernel};
use crate::class::ErrorClass;
use crate::rundir::{Entry, Info, Liveness, RunDir};
use crate::sys;

/// How long `close` waits for the FUSE server to exit after the unmount.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `close`.
#[derive(Args, Debug)]
pub(crate) struct CloseArgs {
    /// Name of the device.
    name: String,
    /// Directory holding open devices.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn run(a: CloseArgs) -> Result<()> {
    let registry = RunDir::new(a.dir.as_deref())?;
    let entry = registry.open_entry(&a.name)?;
    match entry.liveness() {
        (Liveness::Active, Some(info)) if info.backend == Backend::Kernel => {
            kernel::close(&a.name, &info.loops).with_context(|| format!("closing device `{}`", a.name))?;
            entry.remove()?;
        }
        (Liveness::Active, Some(info)) => close_fuse(&entry, &info)?,
        (Liveness::Opening, _) => bail!("device `{}` is still opening; try again", a.name),
        (_, info) => {
            entry.clean_up_stale(info.as_ref())?;
            eprintln!(
                "verity-fuse: cleaned up stale device `{}` (its server was gone)",
                a.name
            );
        }
    }
    Ok(())
}

/// Says who holds a FUSE device: loop devices backed by it, and where those are mounted.
fn holders(entry: &Entry) -> Vec<String> {
    let mounts = crate::host::mountinfo::read_self().unwrap_or_default();
    crate::host::loops_backed_by(&entry.device_file())
        .into_iter()
        .map(|l| {
            let source = l.to_string_lossy();
            let at: Vec<String> = mounts
                .iter()
                .filter(|m| m.source == l.as_os_str())
                .map(|m| format!("mounted at {}", m.mount_point.display()))
                .collect();
            if at.is_empty() {
                format!("loop device {source}")
            } else {
                format!("loop device {source} ({})", at.join(", "))
            }
        })
        .collect()
}

fn close_fuse(entry: &Entry, info: &Info) -> Result<()> {
    let held = holders(entry);
    if !held.is_empty() {
        return Err(Failure::new(
            ErrorClass::Busy,
            format!(
                "device `{}` is in use by {}: unmount and detach those first",
                entry.name,
                held.join("; ")
            ),
        )
        .into());
    }
    let mount_point = entry.mount_point();
    if let Err(e) = sys::run_tool("fusermount3", "fuse3", ["-u".as_ref(), mount_point.as_os_str()]) {
        return Err(Failure::new(
            ErrorClass::Busy,
            format!(
                "device `{}` could not be unmounted (is a file on it open?): {e}",
                entry.name
            ),
        )
        .into());
    }
    let started = Instant::now();
    while info.server_alive() {
        if started.elapsed() > EXIT_TIMEOUT {
            bail!("the FUSE server (pid {:?}) did not exit after the unmount", info.pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    entry.remove()?;
    Ok(())
}
