//! `veritylab demo`: the guided tour, with no arguments, no network and no root.
//!
//! It builds the sample image, walks it through the pipeline a node runs (pull from a local OCI layout,
//! convert, sign, verify, mount with the hardened profile, audit), printing each step, then stages every
//! embedded scenario against every profile it lists and prints the matrix (`enforced` included). Both parts use the backend
//! [`Backend::auto`] picks, and say which and why: `kernel` as root, `fuse` for a user who can mount FUSE (real
//! verified FUSE reads), `emulated` otherwise. Everything lives in a temporary directory removed at the end.
//! With `--attack NAME` it tells one attack's story instead ([`super::narrate`]).

use std::path::PathBuf;

use clap::Args;

use veritylab::cli::CliError;

use super::CommandError;
use super::scenario::{passed, run_and_report_coloured};
use crate::image;
use crate::load;
use crate::report::{self, ColorChoice, Format};
use crate::runner::RunOptions;
use crate::sandbox::{BUILT, Sandbox};
use veritylab::audit;
use veritylab::convert::{self, VerityLayout};
use veritylab::mount::emulated::Table;
use veritylab::mount::{self, Trust};
use veritylab::oci::reference;
use veritylab::oci::{self, PullOptions};
use veritylab::out;
use veritylab::profile::{Backend, Profile};
use veritylab::rootfs::Snapshot;
use veritylab::sign::Policy;
use veritylab::sign::Scheme;
use veritylab::sign::{self, VerifyOptions};
use veritylab::store::Store;

/// Raw arguments of `veritylab demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Also write the self-contained HTML report (matrix, evidence, timeline) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Narrate one attack instead (a scenario id or an attack name): what the attacker does, then what each
    /// profile's defences saw, ending with the verdict line.
    #[arg(long, value_name = "NAME")]
    pub attack: Option<String>,
    /// Colour the terminal output: `auto` (when stdout is a terminal or `CLICOLOR_FORCE` is set, unless
    /// `NO_COLOR` is), `always` or `never`.
    #[arg(long, value_name = "WHEN", value_parser = super::scenario::parse_color, default_value = "auto")]
    pub color: ColorChoice,
}

fn fail(step: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("demo: {step}: {e}"))
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<(), CommandError> {
    if let Some(name) = &args.attack {
        return super::narrate::run(name, args.color, args.html.as_deref());
    }
    let (backend, reason) = Backend::auto();
    out!("backend  {reason}")?;
    pipeline(backend)?;
    out!("")?;
    out!("== every attack of the catalogue against every profile ({backend} backend) ==")?;
    let scenarios = load::embedded()?;
    // No backend asked for: the run makes the same choice and reports it with its reason.
    let report = run_and_report_coloured(&scenarios, &RunOptions::default(), Format::Text, None, args.color)?;
    if let Some(path) = &args.html {
        report::write_atomic(path, &report::render(&report, Format::Html, false))
            .map_err(|e| fail("writing the HTML report", e))?;
        out!("HTML report: {}", path.display())?;
    }
    passed(&report)
}

/// The pipeline on the sample image on `backend`: pull, convert, sign, verify, mount, check.
fn pipeline(backend: Backend) -> Result<(), CliError> {
    out!("== the pipeline on the sample image ==")?;
    let exe = std::env::current_exe().map_err(|e| fail("finding the veritylab executable", e))?;
    let sandbox = Sandbox::new(Profile::Hardened, backend, image::sample(), Scheme::Cosign, &exe, None)
        .map_err(|e| fail("creating a sandbox", e))?;
    let dir = sandbox.dir.path();
    let publisher = Store::open(&dir.join("publisher")).map_err(|e| fail("store", e))?;
    Sandbox::store_image(&publisher, &sandbox.name, &sandbox.layers).map_err(|e| fail("build", e))?;
    let layout = dir.join("registry");
    Sandbox::export(&publisher, &sandbox.name, &layout, "v1").map_err(|e| fail("publish", e))?;
    out!(
        "build    the sample image ({} layers) as an OCI layout at {}",
        sandbox.layers.len(),
        layout.display()
    )?;

    let reference = reference::parse(&format!("oci:{}:v1", layout.display())).map_err(|e| fail("pull", e))?;
    let pulled = oci::pull(&reference, &sandbox.store, &PullOptions::default(), &|_| {})?;
    let descriptor = sandbox.store.lookup(&pulled.name)?;
    sandbox.store.tag(&sandbox.name, descriptor)?;
    out!(
        "pull     {} -> {} (every blob checked against its digest)",
        pulled.name,
        pulled.manifest
    )?;

    let converted = convert::convert_image(&sandbox.store, &sandbox.name, VerityLayout::Containerd, &|_| {})?;
    for layer in &converted.layers {
        out!(
            "convert  {} -> EROFS + dm-verity tree, root hash {}",
            layer.conversion.layer,
            layer.conversion.roothash
        )?;
    }

    sandbox
        .sign(&sandbox.store, &sandbox.name, &sandbox.key, BUILT)
        .map_err(|e| fail("sign", e))?;
    out!(
        "sign     {} with a fresh P-256 key (cosign, root hashes as annotations)",
        sandbox.name
    )?;

    let mut options = VerifyOptions::new(Policy::default(), vec![sandbox.public.clone()]);
    options.scheme = Scheme::Cosign;
    let verified = sign::verify_image(&sandbox.store, &sandbox.name, &options).map_err(|e| fail("verify", e))?;
    out!(
        "verify   signature, root hashes and local trees of {}: ok",
        verified.manifest().digest
    )?;

    let target = dir.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| fail("mount", e))?;
    let plan = mount::prepare(
        &sandbox.store,
        &Trust::Verified(Box::new(verified)),
        &target,
        Profile::Hardened,
        backend,
    )?;
    let record = mount::mount(&sandbox.store, &plan, &exe)?;
    let (snapshot, audit) = if backend == Backend::Emulated {
        let view = mount::emulated::open_view(&record, &plan)?;
        let snapshot = Snapshot::of_merged(&view.merged);
        (
            snapshot,
            audit::audit(&record, &Table::new(&record), &sandbox.trusted()),
        )
    } else {
        let snapshot = Snapshot::of_dir(&record.in_namespace(&record.target));
        let namespace = audit::Namespace::new(&record);
        (snapshot, audit::audit(&record, &namespace, &sandbox.trusted()))
    };
    let snapshot = match snapshot {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let _ = mount::umount(&sandbox.store, &record.target);
            return Err(fail("read", e));
        }
    };
    let how = match backend {
        Backend::Emulated => "emulated backend, no mounts",
        Backend::Fuse => "fuse backend, a read-only FUSE rootfs over verified FUSE devices",
        _ => "kernel backend, an overlay over verified devices",
    };
    out!(
        "mount    hardened profile, {how}: {} entries read, every block verified",
        snapshot.entries.len()
    )?;
    out!(
        "check    mount audit: {} checks, {}",
        audit.checked.len(),
        if audit.passed() {
            "passed".to_owned()
        } else {
            format!("{} findings", audit.findings.len())
        }
    )?;
    let umounted = mount::umount(&sandbox.store, &record.target)?;
    if !umounted.leftovers.is_empty() {
        return Err(fail(
            "umount",
            format!("left behind: {}", umounted.leftovers.join("; ")),
        ));
    }
    if !audit.passed() {
        let findings: Vec<String> = audit.findings.iter().map(ToString::to_string).collect();
        return Err(fail("check", findings.join("; ")));
    }
    sandbox.dir.close().map_err(|e| fail("cleaning up", e))?;
    Ok(())
}
