//! The mount audit as `veritylab check TARGET` runs it (see [`crate::audit`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::CliError;
use crate::audit::{self, Report};
use crate::mount::{self, MountError, Record};
use crate::store::Store;

/// The record of the mount at `target`.
pub(crate) fn find(store: &Store, target: &Path) -> Result<Record, CliError> {
    let target = std::fs::canonicalize(target).map_err(|source| CliError::Io {
        what: format!("resolving {}", target.display()),
        source,
    })?;
    Ok(mount::list(store)?
        .into_iter()
        .find(|r| r.target == target)
        .ok_or(MountError::NotMounted { target })?)
}

/// Audits `record` through the view its backend has (the holder's namespace, or the emulated table).
pub(crate) fn audit_record(record: &Record) -> Report {
    audit::audit_record(record, &BTreeMap::new())
}

/// Prints what the audit checked and found.
pub(crate) fn print(report: &Report) -> Result<(), CliError> {
    out!(
        "audit of {} (mount {}, profile {})",
        report.target.display(),
        report.id,
        report.profile
    )?;
    for line in &report.checked {
        out!("  checked: {line}")?;
    }
    for finding in &report.findings {
        out!("  FINDING {}: {finding}", finding.kind())?;
    }
    if report.passed() {
        out!("  passed")?;
    }
    Ok(())
}
