//! `veritylab mount IMAGE TARGET`, `veritylab umount TARGET` and `veritylab ps`: rootfs mounts by profile
//! and backend, recorded in the store so that umount removes exactly what mount set up.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, store_dir, trust_inputs};
use crate::mount::{self, Trust};
use crate::profile::{Backend, Profile};
use crate::sign::verify::{VerifyOptions, verify_image};
use crate::store::Store;

/// Raw arguments of `veritylab mount`.
#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// The image's name in the store (see `veritylab images`).
    pub image: String,
    /// An existing directory where the rootfs appears (inside the mount's private namespace on the kernel
    /// backend: reach it with `nsenter -t HOLDER -m` or through `/proc/HOLDER/root`).
    pub target: PathBuf,
    /// The defence profile.
    #[arg(long, value_parser = super::named::<Profile>(Profile::ALL.map(Profile::name)), default_value_t = Profile::Verity)]
    pub profile: Profile,
    /// The backend [default: kernel as root, else fuse where this user can mount FUSE, else emulated; the
    /// choice and its reason are printed].
    #[arg(long, value_parser = super::named::<Backend>(Backend::ALL.map(Backend::name)))]
    pub backend: Option<Backend>,
    /// A trusted public key: the signature is verified and the root hashes are taken from it (required by
    /// `hardened` and `enforced`, optional for the others); repeat for several.
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// The node's trusted certificates for root-hash signatures, a file (PEM or DER) or a directory of them
    /// (required by `enforced`, which checks each layer's signature against them where the kernel does not).
    #[arg(long, value_name = "FILE|DIR")]
    pub keyring: Option<PathBuf>,
    /// The signed IPE policy (`veritylab ipe policy`'s `NAME.ipe.p7s`) that `enforced` loads and activates on
    /// the kernel backend where the kernel has IPE.
    #[arg(long, value_name = "P7S")]
    pub ipe_policy: Option<PathBuf>,
    /// The trust policy (TOML), as for `veritylab verify`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The namespace of the pod the image is for, as for `veritylab verify` (unset: the stricter answer).
    #[arg(long, value_name = "NS", value_parser = super::parse_namespace)]
    pub namespace: Option<String>,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Raw arguments of `veritylab umount`.
#[derive(Args, Debug, Clone)]
pub struct UmountArgs {
    /// The mount's target.
    pub target: PathBuf,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Raw arguments of `veritylab ps`.
#[derive(Args, Debug, Clone)]
pub struct PsArgs {
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// List only the containers (name, image, profile, backend, pid, state).
    #[arg(long)]
    pub containers: bool,
    /// Print JSON (the mounts' records, or with --containers the containers).
    #[arg(long)]
    pub json: bool,
}

/// Raw arguments of `veritylab cleanup`.
#[derive(Args, Debug, Clone)]
pub struct CleanupArgs {
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Mounts an image.
pub(crate) fn run_mount(args: &MountArgs) -> Result<(), CliError> {
    let store = Store::open(&store_dir(args.store.clone())?)?;
    let trust = if args.key.is_empty() && args.policy.is_none() {
        Trust::Local(args.image.clone())
    } else {
        let (policy, keys) = trust_inputs(args.policy.as_deref(), &args.key)?;
        let mut options = VerifyOptions::new(policy, keys);
        options.namespace = args.namespace.clone();
        let verified = verify_image(&store, &args.image, &options)?;
        Trust::Verified(Box::new(verified))
    };
    let backend = match args.backend {
        Some(backend) => backend,
        None => {
            let (backend, reason) = Backend::auto();
            eprintln!("veritylab: backend {reason}");
            backend
        }
    };
    let plan = match (args.profile, &args.keyring) {
        (Profile::Enforced, Some(keyring)) => {
            let kernel = mount::KernelTrust {
                keyring: keyring.clone(),
                ipe_policy: args.ipe_policy.clone(),
            };
            mount::prepare_enforced(&store, &trust, &args.target, backend, &kernel)?
        }
        _ => mount::prepare(&store, &trust, &args.target, args.profile, backend)?,
    };
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        what: "finding the veritylab executable".to_owned(),
        source,
    })?;
    let record = mount::mount(&store, &plan, &exe)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&record).unwrap_or_default())?;
    } else {
        out!(
            "mounted {} at {} (profile {}, backend {}, mount {}{})",
            record.image,
            record.target.display(),
            record.profile,
            record.backend,
            record.id,
            match (record.backend, record.holder) {
                (Backend::Fuse, Some(pid)) => format!(", served by pid {pid}"),
                (_, Some(pid)) => format!(", namespace of pid {pid}"),
                (_, None) => String::new(),
            }
        )?;
    }
    Ok(())
}

/// Takes a mount down.
pub(crate) fn run_umount(args: &UmountArgs) -> Result<(), CliError> {
    let store = Store::open(&store_dir(args.store.clone())?)?;
    let report = mount::umount(&store, &args.target)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report).unwrap_or_default())?;
    } else {
        out!("unmounted {} (mount {})", report.target.display(), report.id)?;
        for left in &report.leftovers {
            out!("left behind: {left}")?;
        }
    }
    if report.leftovers.is_empty() {
        Ok(())
    } else {
        Err(CliError::Leftovers(report.leftovers.len()))
    }
}

/// Lists the mounts.
pub(crate) fn run_ps(args: &PsArgs) -> Result<(), CliError> {
    let store = Store::open(&store_dir(args.store.clone())?)?;
    if args.containers {
        return super::container::print_containers(&store, args.json);
    }
    let records = mount::list(&store)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&records).unwrap_or_default())?;
        return Ok(());
    }
    for r in &records {
        let state = match (r.ready, r.holder_alive() || r.backend == Backend::Emulated) {
            (true, true) => "mounted",
            (false, true) => "mounting",
            (_, false) => "dead (umount cleans up)",
        };
        out!(
            "{}  {}  {}  {}  {}  {}",
            r.id,
            r.target.display(),
            r.image,
            r.profile,
            r.backend,
            state
        )?;
    }
    super::container::print_containers(&store, false)
}

/// Cleans up after dead mounts.
pub(crate) fn run_cleanup(args: &CleanupArgs) -> Result<(), CliError> {
    let store = Store::open(&store_dir(args.store.clone())?)?;
    let containers_left = super::container::cleanup(&store, args.json)?;
    let cleaned = crate::mount::cleanup::cleanup(&store)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&cleaned).unwrap_or_default())?;
    } else {
        if cleaned.is_empty() {
            out!("no dead mounts")?;
        }
        for c in &cleaned {
            out!("cleaned mount {} at {}", c.id, c.target.display())?;
            for (pid, comm) in &c.holders {
                out!("  namespace still held by pid {pid} ({comm})")?;
            }
            for m in &c.unmounted {
                out!("  unmounted {m}")?;
            }
            for left in &c.leftovers {
                out!("  left behind: {left}")?;
            }
        }
    }
    let left: usize = cleaned.iter().map(|c| c.leftovers.len()).sum::<usize>() + containers_left;
    if left == 0 {
        Ok(())
    } else {
        Err(CliError::Leftovers(left))
    }
}
