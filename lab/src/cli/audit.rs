//! `veritylab check TARGET`: audits a mount made by `veritylab mount` (see [`crate::audit`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::CliError;
use crate::audit::{self, Namespace};
use crate::mount::emulated::Table;
use crate::mount::{self, MountError};
use crate::profile::Backend;
use crate::store::Store;

/// Audits the mount at `target` and prints what was checked and found; findings make the command fail.
pub fn run(store: &Store, target: &Path, json: bool) -> Result<(), CliError> {
    let target = std::fs::canonicalize(target).map_err(|source| CliError::Io {
        what: format!("resolving {}", target.display()),
        source,
    })?;
    let record = mount::list(store)?
        .into_iter()
        .find(|r| r.target == target)
        .ok_or(MountError::NotMounted { target })?;
    let report = match record.backend {
        Backend::Emulated => audit::audit(&record, &Table::new(&record), &BTreeMap::new()),
        _ => audit::audit(&record, &Namespace::new(&record), &BTreeMap::new()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!(
            "audit of {} (mount {}, profile {})",
            report.target.display(),
            report.id,
            report.profile
        );
        for line in &report.checked {
            println!("  checked: {line}");
        }
        for finding in &report.findings {
            println!("  FINDING {}: {finding}", finding.kind());
        }
        if report.passed() {
            println!("  passed");
        }
    }
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::Findings(report.findings.len()))
    }
}
