//! `veritylab run IMAGE [-- CMD...]`, `veritylab stop NAME`, and the containers `ps` and `cleanup` list:
//! real containers under runc on a profile's rootfs (see [`crate::container`]).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, store_dir, trust_inputs};
use crate::container::{self, Outcome, RunOptions, Volume};
use crate::mount::{KernelTrust, Trust};
use crate::profile::{Backend, Profile};
use crate::sign::verify::{VerifyOptions, verify_image};
use crate::store::Store;

/// Raw arguments of `veritylab run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The image's name in the store (see `veritylab images`).
    pub image: String,
    /// The container's name [default: the image's last path component and a random suffix].
    #[arg(long)]
    pub name: Option<String>,
    /// The defence profile of the rootfs.
    #[arg(long, value_parser = super::named::<Profile>(Profile::ALL.map(Profile::name)), default_value_t = Profile::Verity)]
    pub profile: Profile,
    /// The rootfs mount's backend (a runtime needs a real rootfs: kernel or fuse).
    #[arg(long, value_parser = super::named::<Backend>([Backend::Kernel, Backend::Fuse].map(Backend::name)), default_value = "kernel")]
    pub backend: Backend,
    /// A trusted public key: the signature is verified and the root hashes are taken from it (required by
    /// `hardened` and `enforced`); repeat for several.
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// The node's trusted certificates for root-hash signatures (required by `enforced`).
    #[arg(long, value_name = "FILE|DIR")]
    pub keyring: Option<PathBuf>,
    /// The trust policy (TOML), as for `veritylab verify`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// A volume: the host's SRC at DST in the container, read-only with `:ro`; repeat for several. On a
    /// read-only rootfs DST must exist (the pinned layer has /tmp and the /etc files a runtime binds).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Start the container and return; `veritylab stop NAME` ends it.
    #[arg(long)]
    pub detach: bool,
    /// The command, replacing the image's Cmd (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Raw arguments of `veritylab stop`.
#[derive(Args, Debug, Clone)]
pub struct StopArgs {
    /// The container's name.
    pub name: String,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a container; returns its exit status (0 for a detached one that started).
pub fn run_container(args: &RunArgs) -> Result<u8, CliError> {
    let volumes = args
        .volumes
        .iter()
        .map(|v| v.parse::<Volume>())
        .collect::<Result<Vec<_>, _>>()?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&args.image),
    };
    container::check_name(&name)?;
    let store = Store::open(&store_dir(args.store.clone())?)?;
    let trust = if args.key.is_empty() && args.policy.is_none() {
        Trust::Local(args.image.clone())
    } else {
        let (policy, keys) = trust_inputs(args.policy.as_deref(), &args.key)?;
        Trust::Verified(Box::new(verify_image(
            &store,
            &args.image,
            &VerifyOptions::new(policy, keys),
        )?))
    };
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        what: "finding the veritylab executable".to_owned(),
        source,
    })?;
    let options = RunOptions {
        name,
        profile: args.profile,
        backend: args.backend,
        volumes,
        detach: args.detach,
        command: args.command.clone(),
        kernel: args.keyring.clone().map(|keyring| KernelTrust {
            keyring,
            ipe_policy: None,
        }),
    };
    match container::run(&store, &trust, &options, &exe)? {
        Outcome::Detached(c) => {
            out!(
                "{}  started (image {}, profile {}, backend {}, pid {})",
                c.name,
                c.image,
                c.profile,
                c.backend,
                c.init.map_or(0, |init| init.pid)
            )?;
            Ok(0)
        }
        Outcome::Exited(status) => Ok(u8::try_from(status).unwrap_or(1)),
    }
}

/// The image's last path component (without tag or digest) and a random suffix.
fn default_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base: String = base
        .split([':', '@'])
        .next()
        .unwrap_or(base)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
        .take(40)
        .collect();
    let base = if base.is_empty() { "container".to_owned() } else { base };
    format!("{base}-{:08x}", rand::random::<u32>())
}

/// Stops a container.
pub(crate) fn run_stop(args: &StopArgs) -> Result<(), CliError> {
    let store = Store::open(&store_dir(args.store.clone())?)?;
    let report = container::stop(&store, &args.name)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report).unwrap_or_default())?;
    } else {
        out!(
            "stopped {} ({}; rootfs mount {} taken down)",
            report.name,
            if report.was_running { "killed" } else { "had exited" },
            report.umount.id
        )?;
    }
    Ok(())
}

/// Lists the containers.
pub(crate) fn print_containers(store: &Store, json: bool) -> Result<(), CliError> {
    let containers = container::list(store);
    if json {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            name: &'a str,
            image: &'a str,
            profile: Profile,
            backend: Backend,
            pid: Option<u32>,
            state: &'static str,
        }
        let rows: Vec<Row<'_>> = containers
            .iter()
            .map(|c| Row {
                name: &c.name,
                image: &c.image,
                profile: c.profile,
                backend: c.backend,
                pid: c.init.map(|init| init.pid),
                state: c.status().name(),
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default())?;
        return Ok(());
    }
    for c in &containers {
        out!(
            "{}  {}  {}  {}  pid {}  {}",
            c.name,
            c.image,
            c.profile,
            c.backend,
            c.init
                .map(|init| init.pid.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            c.status().name()
        )?;
    }
    Ok(())
}

/// Cleans up after stopped containers; returns how many things are left.
pub(crate) fn cleanup(store: &Store, json: bool) -> Result<usize, CliError> {
    let cleaned = container::cleanup::cleanup(store)?;
    if json {
        if !cleaned.is_empty() {
            out!("{}", serde_json::to_string_pretty(&cleaned).unwrap_or_default())?;
        }
    } else {
        for c in &cleaned {
            out!("cleaned container {}", c.name)?;
            for (pid, comm) in &c.held_by {
                out!("  a namespace with its mounts was held by pid {pid} ({comm})")?;
            }
            for m in &c.unmounted {
                out!("  unmounted {m}")?;
            }
            for left in &c.leftovers {
                out!("  left behind: {left}")?;
            }
        }
    }
    Ok(cleaned.iter().map(|c| c.leftovers.len()).sum())
}
