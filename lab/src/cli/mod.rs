//! The `veritylab` command as library code: argument types, validation into plans, and the subcommands.
//!
//! The `veritylab` binary (package `veritylab`) parses [`Cli`] among its subcommands, calls [`run`] and turns a
//! [`CliError`] into a [`VeritylabExit`] with [`CliError::exit`], which depends on the error's [`ErrorClass`]
//! alone. Each subcommand validates its raw arguments into a plan before doing any work; output goes through
//! `out!` ([`write_line`]), so a closed pipe is an error the command returns, never a panic.

/// `println!` that returns a [`CliError::Output`] instead of panicking when standard output fails.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

pub(crate) mod agent;
pub(crate) mod audit;
pub(crate) mod bars;
pub(crate) mod check;
pub(crate) mod container;
pub(crate) mod convert;
pub(crate) mod erofs;
mod exit;
pub(crate) mod image;
pub(crate) mod images;
pub(crate) mod ipe;
pub(crate) mod keygen;
pub(crate) mod mkfs;
pub(crate) mod mount;
pub(crate) mod policy;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod sign;
pub(crate) mod verify;

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use verity_fuse::ErrorClass;

pub use bars::Bars;
pub use check::CheckArgs;
pub use container::{RunArgs, StopArgs, run_container};
pub use convert::ConvertArgs;
pub use erofs::ErofsCommand;
pub use exit::VeritylabExit;
pub use image::{BuildArgs, ImageCommand};
pub use images::{ImageEntry, ImagesArgs, LayerEntry, list as list_images};
pub use ipe::{IpeCommand, PolicyArgs};
pub use keygen::KeygenArgs;
pub use mkfs::MkfsArgs;
pub use mount::{CleanupArgs, MountArgs, PsArgs, UmountArgs};
pub use policy::{ImportArgs, PolicyCommand};
pub use pull::PullArgs;
pub use push::PushArgs;
pub use sign::SignArgs;
pub use verify::VerifyArgs;

/// The pipeline's subcommands of `veritylab`.
#[derive(Subcommand, Debug)]
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
    /// Kernel-enforced execution (the IPE LSM): write a signed policy.
    #[command(subcommand)]
    Ipe(ipe::IpeCommand),
    /// Bring the cluster's policy: import Kyverno, policy-controller or containers-policy.json documents.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Mount an image's rootfs with a defence profile (vanilla, erofs, verity, hardened, enforced) and a backend.
    Mount(mount::MountArgs),
    /// Take down a mount made by `veritylab mount`, reporting anything left behind.
    Umount(mount::UmountArgs),
    /// List the mounts made by `veritylab mount` and the containers of `veritylab run`.
    Ps(mount::PsArgs),
    /// Clean up after mounts whose holder died and containers that stopped: unmount leftovers inside
    /// namespaces still held, report them.
    Cleanup(mount::CleanupArgs),
    /// Run an image's command in a container under runc, on the profile's rootfs; exits with its status.
    Run(container::RunArgs),
    /// Stop a container of `veritylab run` and take down everything mounted for it.
    Stop(container::StopArgs),
    /// Audit a mount (layers traced to trusted root hashes, no overmount) and re-verify layers at rest, once or
    /// periodically within a CPU budget.
    Check(check::CheckArgs),
    /// The node agent: audit every mount and re-verify its layers every interval within a CPU budget, log
    /// each pass as JSON on stderr and serve Prometheus metrics.
    Agent(agent::AgentArgs),
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
    /// A container could not be run, stopped, audited or cleaned up.
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    /// A umount left things behind (listed on stdout).
    #[error("{0} leftover(s) after umount")]
    Leftovers(usize),
    /// A key cannot be made or read.
    #[error(transparent)]
    Key(#[from] crate::sign::keys::KeyError),
    /// A certificate or root-hash signature cannot be made.
    #[error(transparent)]
    KernelSignature(#[from] crate::sign::kernel_signature::KernelSignatureError),
    /// A layer's root-hash signature annotation is unusable.
    #[error(transparent)]
    LayerSignature(Box<crate::sign::kernel_annotation::LayerSignatureError>),
    /// An IPE policy cannot be made.
    #[error(transparent)]
    Ipe(#[from] crate::ipe::IpeError),
    /// The policy file is unusable.
    #[error(transparent)]
    Policy(#[from] crate::sign::policy::PolicyError),
    /// Policy documents cannot be imported.
    #[error(transparent)]
    PolicyImport(#[from] crate::policy_import::ImportError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] crate::sign::image::SignError),
    /// Pushing or fetching a signature failed.
    #[error(transparent)]
    Transfer(#[from] crate::sign::remote::SignatureTransferError),
    /// Verification failed or could not run.
    #[error(transparent)]
    Verify(#[from] crate::sign::verify::VerifyError),
    /// A watched layer cannot be set up from its conversion record.
    #[error(transparent)]
    WatchTarget(#[from] crate::watch::target::TargetError),
    /// `check` found tampered, missing or unreadable layers (reported above).
    #[error("check found {findings} problem(s)")]
    CheckFailed {
        /// How many findings, over all passes.
        findings: usize,
    },
    /// The node agent could not run.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// Writing to standard output failed (a closed pipe is [`ErrorClass::OutputClosed`]).
    #[error("writing to standard output: {0}")]
    Output(#[source] std::io::Error),
    /// Another I/O failure (opening the image, writing a file).
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
    /// What kind of failure this is: the class of the wrapped error, or of the command's own outcome.
    pub fn class(&self) -> ErrorClass {
        match self {
            CliError::Usage(_) => ErrorClass::Usage,
            CliError::Write(e) => e.class(),
            CliError::Read(e) => e.class(),
            CliError::Extract(e) => e.class(),
            CliError::Pull(e) => e.class(),
            CliError::Push(e) => e.class(),
            CliError::Build(e) => e.class(),
            CliError::Convert(e) => e.class(),
            CliError::Store(e) => e.class(),
            CliError::Manifest(e) => e.class(),
            CliError::Mount(e) => e.class(),
            CliError::Container(e) => e.class(),
            CliError::Leftovers(_) => ErrorClass::Busy,
            CliError::CheckFailed { .. } => ErrorClass::Findings,
            CliError::Key(e) => e.class(),
            CliError::LayerSignature(e) => e.class(),
            CliError::Ipe(e) => e.class(),
            CliError::Policy(e) => e.class(),
            CliError::PolicyImport(e) => e.class(),
            CliError::Sign(e) => e.class(),
            CliError::KernelSignature(e) => e.class(),
            CliError::Transfer(e) => e.class(),
            CliError::Verify(e) => e.class(),
            CliError::WatchTarget(e) => e.class(),
            CliError::Agent(e) => e.class(),
            CliError::Io { .. } => ErrorClass::Io,
            CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ErrorClass::OutputClosed,
            CliError::Output(_) => ErrorClass::Io,
        }
    }

    /// How the process ends for this error, from its [`class`](Self::class) alone.
    pub fn exit(&self) -> VeritylabExit {
        VeritylabExit::from_class(self.class())
    }
}

impl From<crate::sign::kernel_annotation::LayerSignatureError> for CliError {
    fn from(e: crate::sign::kernel_annotation::LayerSignatureError) -> Self {
        Self::LayerSignature(Box::new(e))
    }
}

/// Writes `args` and a newline to standard output, returning the error instead of panicking (what `out!`
/// expands to).
pub fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(CliError::Output)
}

/// A `--flag` value parser for a domain type named by `names` (each [`crate::profile::Profile::name`], say):
/// `--help` lists the names and the value goes through the type's `FromStr`, so the domain types know nothing
/// of clap.
pub fn named<T>(names: impl IntoIterator<Item = &'static str>) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}

/// Runs one parsed command. `run` is reported as success when its container started; the binary calls
/// [`run_container`] itself to exit with the container's status.
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
        Cli::Run(args) => container::run_container(&args).map(drop),
        Cli::Stop(args) => container::run_stop(&args),
        Cli::Hold { plan } => Ok(crate::mount::kernel::hold(&plan)?),
        Cli::Keygen(args) => keygen::run(&args),
        Cli::Sign(args) => sign::run(&sign::SignPlan::try_from(args)?),
        Cli::Verify(args) => verify::run(&verify::VerifyPlan::try_from(args)?),
        Cli::Check(args) => check::run(&check::CheckPlan::try_from(args)?),
        Cli::Agent(args) => agent::run(args),
        Cli::Push(args) => push::run(&push::PushPlan::try_from(args)?),
        Cli::Image(command) => image::run(command),
        Cli::Ipe(command) => ipe::run(command),
        Cli::Policy(command) => policy::run(command),
    }
}

/// A `--namespace` value: a Kubernetes namespace name.
fn parse_namespace(value: &str) -> Result<String, String> {
    if crate::sign::is_namespace_name(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a namespace name (lowercase letters, digits and `-`, at most 63)"
        ))
    }
}

/// The trust policy (`--policy`, or the default one) and the public keys (`--key`) that `verify`, `mount` and
/// `check` take, loaded and checked.
fn trust_inputs(
    policy: Option<&std::path::Path>,
    keys: &[PathBuf],
) -> Result<(crate::sign::policy::Policy, Vec<crate::sign::keys::PublicKey>), CliError> {
    let policy = match policy {
        None => crate::sign::policy::Policy::default(),
        Some(path) if crate::policy_import::is_foreign(path) => {
            let imported = crate::policy_import::import(&[path.to_owned()], false)?;
            policy::report(&imported);
            crate::sign::policy::Policy::from_file(
                imported.policy,
                path.parent().unwrap_or(std::path::Path::new(".")),
                path,
            )?
        }
        Some(path) => crate::sign::policy::Policy::load(path)?,
    };
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
