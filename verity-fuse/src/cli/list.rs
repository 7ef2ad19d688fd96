//! `verity-fuse list`: the open devices, with stale ones (a killed server) cleaned up on the way.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::backend::{Backend, kernel};
use crate::fuse::StatusReport;
use crate::rundir::{Liveness, RunDir};

/// Arguments of `list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Directory holding open devices.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    state: Liveness,
    backend: Option<Backend>,
    status: Option<String>,
    device: Option<PathBuf>,
    cleaned_up: bool,
}

pub(crate) fn run(a: ListArgs) -> Result<()> {
    let registry = RunDir::new(a.dir.as_deref())?;
    let mut rows = Vec::new();
    for entry in registry.entries() {
        let (state, info) = entry.liveness();
        let status = match (&state, &info) {
            (Liveness::Active, Some(i)) if i.backend == Backend::Fuse => std::fs::read(entry.status_file())
                .ok()
                .and_then(|t| serde_json::from_slice::<StatusReport>(&t).ok())
                .map(|r| r.status),
            (Liveness::Active, Some(_)) => kernel::status(&entry.name).ok().map(|c| c.to_string()),
            _ => None,
        };
        let cleaned_up = state == Liveness::Stale
            && match entry.clean_up_stale(info.as_ref()) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("verity-fuse: could not clean up stale device `{}`: {e}", entry.name);
                    false
                }
            };
        rows.push(Row {
            name: entry.name.clone(),
            state,
            backend: info.as_ref().map(|i| i.backend),
            status,
            device: info.map(|i| i.device),
            cleaned_up,
        });
    }
    if a.json {
        out!("{}", serde_json::to_string_pretty(&rows).expect("serialises"))?;
        return Ok(());
    }
    for r in rows {
        let backend = match r.backend {
            Some(Backend::Fuse) => "fuse",
            Some(Backend::Kernel) => "kernel",
            None => "-",
        };
        let state = match r.state {
            Liveness::Active => r.status.unwrap_or_else(|| "active".into()),
            Liveness::Opening => "opening".into(),
            Liveness::Stale if r.cleaned_up => "stale (cleaned up)".into(),
            Liveness::Stale => "stale".into(),
        };
        let device = r.device.map(|d| d.display().to_string()).unwrap_or_default();
        out!("{:<24} {backend:<7} {state:<20} {device}", r.name)?;
    }
    Ok(())
}
