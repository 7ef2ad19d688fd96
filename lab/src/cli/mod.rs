//! The `veritylab` command as library code: argument types, validation into plans, and the subcommands.
//!
//! `main.rs` only parses [`Cli`], calls [`run`] and turns a [`CliError`] into an exit code with
//! [`CliError::exit_code`]. Each subcommand validates its raw arguments into a plan before doing any work.

pub mod audit;
mod bars;
pub mod check;
pub mod convert;
pub mod demo;
pub mod erofs;
pub mod image;
pub mod images;
pub mod keygen;
pub mod mkfs;
pub mod mount;
pub mod pull;
pub mod push;
pub mod scenario;
pub mod sign;
pub mod verify;

use std::path::PathBuf;

use clap::Parser;

/// veritylab: a lab for container-image integrity.
#[derive(Parser, Debug)]
#[command(version, about)]
pub enum Cli {
    /// Build an EROFS image from a directory or a tar stream (arguments in mkfs.erofs order).
    Mkfs(mkfs::MkfsArgs),
    /// Read an EROFS image in userspace.
    #[command(subcommand)]
    Erofs(erofs::ErofsCommand),
    /// Pull an image from a registry or an OCI image layout into the store, checking every digest.
    Pull(pull::PullArgs),
    /// Convert every layer of a pulled image to layer.erofs plus a dm-verity tree.
    Convert(convert::ConvertArgs),
    /// List the images in the store, with their layers' root hashes.
    Images(images::ImagesArgs),
    /// Copy an image from the store or an OCI layout to a registry or an OCI layout.
    Push(push::PushArgs),
    /// Build images from directories.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Write an ECDSA P-256 key pair (PREFIX.key, PREFIX.pub) for signing.
    Keygen(keygen::KeygenArgs),
    /// Put each layer's root hash into a new manifest and sign it (cosign or delivery-kit), optionally push.
    Sign(sign::SignArgs),
    /// Check an image's signature, root hashes and local trees against keys and a policy.
    Verify(verify::VerifyArgs),
    /// Mount an image's rootfs with a defence profile (vanilla, erofs, verity, hardened) and a backend.
    Mount(mount::MountArgs),
    /// Take down a mount made by `veritylab mount`, reporting anything left behind.
    Umount(mount::UmountArgs),
    /// List the mounts made by `veritylab mount`.
    Ps(mount::PsArgs),
    /// Clean up after mounts whose holder died: unmount leftovers inside namespaces still held, report them.
    Cleanup(mount::PsArgs),
    /// Audit a mount (layers traced to trusted root hashes, no overmount) and re-verify layers at rest, once or
    /// periodically within a CPU budget.
    Check(check::CheckArgs),
    /// List, validate and run the attack scenarios.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// The guided tour: build the sample image, pull, convert, sign, mount and check it, then stage every attack
    /// against all four profiles and print the matrix. No network, no root needed.
    Demo(demo::DemoArgs),
    /// Internal: the holder of a kernel-backend mount's namespace.
    #[command(name = "__hold", hide = true)]
    Hold {
        /// The mount's plan.
        plan: PathBuf,
    },
}

/// A failed command, sorted by who has to act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The arguments make no sense together.
    #[error("usage: {0}")]
    Usage(String),
    /// Building an image failed.
    #[error(transparent)]
    Write(#[from] crate::erofs::WriteError),
    /// Reading an image failed (malformed or unsupported image, missing path).
    #[error(transparent)]
    Read(#[from] crate::erofs::ReadError),
    /// Extracting an image failed.
    #[error(transparent)]
    Extract(#[from] crate::erofs::ExtractError),
    /// A pull failed (the store is unchanged).
    #[error(transparent)]
    Pull(#[from] crate::oci::PullError),
    /// A push failed.
    #[error(transparent)]
    Push(#[from] crate::oci::push::PushError),
    /// An image build failed.
    #[error(transparent)]
    Build(#[from] crate::oci::build::BuildError),
    /// A conversion failed.
    #[error(transparent)]
    Convert(#[from] crate::convert::ConvertError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] crate::oci::manifest::ManifestError),
    /// A mount, umount or listing failed.
    #[error(transparent)]
    Mount(#[from] crate::mount::MountError),
    /// A umount left things behind (listed on stdout).
    #[error("{0} leftover(s) after umount")]
    Leftovers(usize),
    /// Scenario files failed to load or validate.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::LoadErrors),
    /// A scenario run observed outcomes other than the expected ones (the report lists the differences).
    #[error("{failed} cell(s) differ from their expected outcome, {errors} cell(s) failed to run")]
    ScenarioFailed {
        /// Cells whose observation differs.
        failed: usize,
        /// Cells whose harness failed.
        errors: usize,
    },
    /// A key cannot be made or read.
    #[error(transparent)]
    Key(#[from] crate::sign::keys::KeyError),
    /// A certificate or root-hash signature cannot be made.
    #[error(transparent)]
    KernelSignature(#[from] crate::sign::kernel_signature::KernelSignatureError),
    /// The policy file is unusable.
    #[error(transparent)]
    Policy(#[from] crate::sign::policy::PolicyError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] crate::sign::image::SignError),
    /// Pushing or fetching a signature failed.
    #[error(transparent)]
    Transfer(#[from] crate::sign::registry::SignatureTransferError),
    /// Verification failed or could not run.
    #[error(transparent)]
    Verify(#[from] crate::sign::verify::VerifyError),
    /// A `kernel-vm` batch could not run or finish.
    #[error(transparent)]
    KernelVm(#[from] crate::vm::KernelVmError),
    /// A watched layer cannot be set up from its conversion record.
    #[error(transparent)]
    WatchTarget(#[from] crate::watch::target::TargetError),
    /// `check` found tampered, missing or unreadable layers (reported above).
    #[error("check found {findings} problem(s)")]
    CheckFailed {
        /// How many findings, over all passes.
        findings: usize,
    },
    /// Another I/O failure (opening the image, writing to stdout).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code: 2 for usage errors (also `hardened` without `--key`, and no `--store` where this
    /// user has no default store), 3 for bad input (a malformed image or archive, a missing path, content that
    /// does not match its digest, an unusable manifest, a failed verification, an image `hardened` will not take
    /// unsigned, a layer a mount refused, a mount that differs from what was verified, an unusable key or
    /// policy), 4 when `check` found something (audit findings, tampered, missing or unreadable layers), 5 when
    /// `umount` or `cleanup` left something behind, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        use crate::erofs::{ExtractError, WriteError};
        match self {
            CliError::Usage(_)
            | CliError::Mount(crate::mount::MountError::Unsigned)
            | CliError::Store(crate::store::StoreError::NoDefaultDir { .. }) => 2,
            CliError::CheckFailed { .. } => 4,
            CliError::Leftovers(_) => 5,
            CliError::Read(_) | CliError::Extract(ExtractError::Read(_)) => 3,
            CliError::Write(WriteError::Create { .. } | WriteError::Output(_) | WriteError::BlockSize(_)) => 1,
            CliError::Write(_) => 3,
            CliError::Pull(
                crate::oci::PullError::Verify { .. }
                | crate::oci::PullError::Manifest(_)
                | crate::oci::PullError::NestedIndex { .. }
                | crate::oci::PullError::Archive { .. }
                | crate::oci::PullError::Store(crate::store::StoreError::Verify(_))
                | crate::oci::PullError::Registry(
                    crate::oci::registry::RegistryError::Verify { .. }
                    | crate::oci::registry::RegistryError::ContentDigestHeader { .. }
                    | crate::oci::registry::RegistryError::ManifestTooLarge { .. },
                ),
            )
            | CliError::Build(
                crate::oci::build::BuildError::NotADirectory { .. }
                | crate::oci::build::BuildError::Unsupported { .. }
                | crate::oci::build::BuildError::WhiteoutName { .. }
                | crate::oci::build::BuildError::NotALayout { .. },
            )
            | CliError::Push(
                crate::oci::push::PushError::Verify { .. }
                | crate::oci::push::PushError::Manifest(_)
                | crate::oci::push::PushError::IncompleteIndex { .. }
                | crate::oci::push::PushError::NestedIndex { .. }
                | crate::oci::push::PushError::Layout(crate::oci::layout::LayoutError::Verify { .. })
                | crate::oci::push::PushError::Store(crate::store::StoreError::Verify(_))
                | crate::oci::push::PushError::Registry(crate::oci::registry::RegistryError::Verify { .. }),
            )
            | CliError::Convert(
                crate::convert::ConvertError::LayerChanged { .. } | crate::convert::ConvertError::Erofs { .. },
            )
            | CliError::Manifest(_)
            | CliError::Mount(
                crate::mount::MountError::Refused { .. }
                | crate::mount::MountError::NotSigned { .. }
                | crate::mount::MountError::NotAsVerified { .. }
                | crate::mount::MountError::MissingRootHash { .. }
                | crate::mount::MountError::PinnedMismatch { .. },
            )
            | CliError::Scenario(_)
            | CliError::Verify(crate::sign::verify::VerifyError::Rejected { .. })
            | CliError::Key(
                crate::sign::keys::KeyError::Permissions { .. }
                | crate::sign::keys::KeyError::Format { .. }
                | crate::sign::keys::KeyError::Decrypt { .. },
            )
            | CliError::Policy(_) => 3,
            CliError::ScenarioFailed { .. } => 4,
            _ => 1,
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli {
        Cli::Mkfs(args) => mkfs::run(&mkfs::MkfsPlan::try_from(args)?),
        Cli::Erofs(cmd) => erofs::run(cmd),
        Cli::Pull(args) => pull::run(&pull::PullPlan::try_from(args)?),
        Cli::Convert(args) => convert::run(&convert::ConvertPlan::try_from(args)?),
        Cli::Images(args) => images::run(&args),
        Cli::Mount(args) => mount::run_mount(&args),
        Cli::Umount(args) => mount::run_umount(&args),
        Cli::Ps(args) => mount::run_ps(&args),
        Cli::Cleanup(args) => mount::run_cleanup(&args),
        Cli::Hold { plan } => Ok(crate::mount::kernel::hold(&plan)?),
        Cli::Scenario(cmd) => scenario::run(cmd),
        Cli::Demo(args) => demo::run(&args),
        Cli::Keygen(args) => keygen::run(&args),
        Cli::Sign(args) => sign::run(&sign::SignPlan::try_from(args)?),
        Cli::Verify(args) => verify::run(&verify::VerifyPlan::try_from(args)?),
        Cli::Check(args) => check::run(&check::CheckPlan::try_from(args)?),
        Cli::Push(args) => push::run(&push::PushPlan::try_from(args)?),
        Cli::Image(command) => image::run(command),
    }
}

/// The trust policy (`--policy`, or the default one) and the public keys (`--key`) that `verify`, `mount` and
/// `check` take, loaded and checked.
fn trust_inputs(
    policy: Option<&std::path::Path>,
    keys: &[PathBuf],
) -> Result<(crate::sign::policy::Policy, Vec<crate::sign::keys::PublicKey>), CliError> {
    let policy = policy
        .map(crate::sign::policy::Policy::load)
        .transpose()?
        .unwrap_or_default();
    let keys = keys
        .iter()
        .map(|k| crate::sign::keys::load_public(k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((policy, keys))
}

/// The store directory: `--store`, else [`crate::store::default_dir`].
fn store_dir(arg: Option<PathBuf>) -> Result<PathBuf, CliError> {
    arg.map_or_else(crate::store::default_dir, Ok).map_err(CliError::from)
}

/// Refuses `--plain-http` unless the image (`shown`) is on a registry at a loopback address: credentials and
/// content must not cross a network unencrypted.
fn check_plain_http(
    plain_http: bool,
    registry: Option<&crate::oci::reference::RegistryRef>,
    shown: &dyn std::fmt::Display,
) -> Result<(), CliError> {
    if plain_http && !registry.is_some_and(|r| r.is_loopback()) {
        return Err(CliError::Usage(format!(
            "--plain-http is only allowed for a registry on a loopback address, not {shown}"
        )));
    }
    Ok(())
}

/// Registry credentials from `VERITYLAB_REGISTRY_USERNAME` and `VERITYLAB_REGISTRY_PASSWORD` (never from
/// the command line, where other users could read them).
fn env_credentials() -> Option<crate::oci::auth::Credentials> {
    match (
        std::env::var("VERITYLAB_REGISTRY_USERNAME"),
        std::env::var("VERITYLAB_REGISTRY_PASSWORD"),
    ) {
        (Ok(username), Ok(password)) => Some(crate::oci::auth::Credentials { username, password }),
        _ => None,
    }
}
