//! `verity-fuse open`: make a verified device from DATA and HASH, served by FUSE or by kernel dm-verity.
//!
//! With the FUSE backend the command detaches: it starts itself again with `--foreground` in its own process
//! group, waits until that server has mounted the device and recorded it, prints the device path and exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use clap::builder::TypedValueParser as _;

use super::args::{FecArgs, ParamArgs, existing_geometry, root_hash, same_file};
use super::report::warn_lab_only;
use crate::backend::{self, Backend, Choice, kernel};
use crate::device::{CorruptionMode, IoErrorMode, Options, VerifiedDevice};
use crate::fec::FecParams;
use crate::fuse::{DeviceFs, MountConfig, fuser_config};
use crate::hash::Digest;
use crate::identity::ProcessId;
use crate::params::Geometry;
use crate::rundir::{Entry, Info, RunDir, SignatureCheck};
use crate::signature::{self, Keyring};
use crate::source::FileSource;
use crate::sys;
use crate::tree;

/// Kernel readahead on the FUSE device (the kernel's default is 128 KiB).
const READAHEAD_KIB: u32 = 1024;

/// How long the detaching `open` waits for its server to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `open`.
#[derive(Args, Debug)]
pub(crate) struct OpenArgs {
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    fec: FecArgs,
    /// Read the root hash from this file instead of the argument.
    #[arg(long, value_name = "FILE")]
    root_hash_file: Option<PathBuf>,
    /// A detached PKCS#7 (DER) signature over the root hash as lowercase hex, checked as the kernel checks
    /// it: against --keyring on the FUSE backend, against the kernel's trusted keyrings on the kernel backend.
    #[arg(long, value_name = "FILE")]
    root_hash_signature: Option<PathBuf>,
    /// Trusted X.509 certificates (a PEM or DER file, or a directory of them) for --root-hash-signature;
    /// without it nothing is trusted, as with an empty kernel keyring.
    #[arg(long, value_name = "FILE|DIR")]
    keyring: Option<PathBuf>,
    /// Refuse a device without a root hash signature (the kernel's `dm_verity.require_signatures=1`).
    #[arg(long)]
    require_signatures: bool,
    /// On corruption, log it and return the data anyway (kernel `ignore_corruption`).
    #[arg(long, group = "corruption")]
    ignore_corruption: bool,
    /// On corruption, restart the machine (kernel `restart_on_corruption`; emulated: the device halts).
    #[arg(long, group = "corruption")]
    restart_on_corruption: bool,
    /// On corruption, panic the machine (kernel `panic_on_corruption`; emulated: the device halts).
    #[arg(long, group = "corruption")]
    panic_on_corruption: bool,
    /// On an I/O error, restart the machine (kernel `restart_on_error`; emulated: the device halts).
    #[arg(long, group = "io_error")]
    restart_on_error: bool,
    /// On an I/O error, panic the machine (kernel `panic_on_error`; emulated: the device halts).
    #[arg(long, group = "io_error")]
    panic_on_error: bool,
    /// Return zeroes for blocks whose digest is that of a zero block, without reading them.
    #[arg(long)]
    ignore_zero_blocks: bool,
    /// Verify each data block on its first read only (catches offline tampering only).
    #[arg(long)]
    check_at_most_once: bool,
    /// Which backend serves the device: `auto` takes kernel dm-verity where available, else FUSE.
    #[arg(
        long,
        value_parser = clap::builder::PossibleValuesParser::new(Choice::NAMES)
            .try_map(|name| name.parse::<Choice>()),
        default_value = "auto"
    )]
    backend: Choice,
    /// Directory holding open devices [default: /run/verity-fuse as root, $XDG_RUNTIME_DIR/verity-fuse].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Serve the FUSE device in this process until it is closed, instead of detaching.
    #[arg(long)]
    foreground: bool,
    /// Threads serving FUSE requests [default: every core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Verified hash blocks kept in memory.
    #[arg(long, value_name = "BLOCKS", default_value_t = Options::default().cache_blocks)]
    cache_blocks: usize,
    /// Print one JSON object instead of the device path.
    #[arg(long)]
    json: bool,
    /// The data device (file).
    data: PathBuf,
    /// Name of the verified device.
    name: String,
    /// The hash device (file); may be DATA itself with --hash-offset.
    hash: PathBuf,
    /// The trusted root hash, hex.
    root_hash: Option<String>,
}

/// A validated `open` request.
struct OpenPlan {
    geometry: Geometry,
    root: Digest,
    options: Options,
    data: PathBuf,
    hash: PathBuf,
    /// The FEC file and its parameters.
    fec: Option<(PathBuf, FecParams)>,
    /// The signature's bytes, for the kernel backend to hand to the kernel.
    signature: Option<Vec<u8>>,
}

/// Reads the signature and keyring `a` names and checks the signature over `root` as the kernel would; on
/// the kernel backend the kernel itself checks it later against its own keyrings.
fn check_signature(a: &OpenArgs, root: &Digest, backend: Backend) -> Result<(Option<Vec<u8>>, SignatureCheck)> {
    let signature = match &a.root_hash_signature {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading root hash signature {}", path.display()))?)
        }
        None => None,
    };
    let refused = |e: signature::SignatureError| {
        let errno = e.errno();
        anyhow::Error::new(e).context(format!("activation of {} refused: {errno}", a.name))
    };
    if backend == Backend::Kernel {
        if a.keyring.is_some() {
            bail!("--keyring applies to the fuse backend: the kernel checks signatures against its own keyrings");
        }
        return match signature {
            None if a.require_signatures => Err(refused(signature::SignatureError::Required)),
            None => Ok((None, SignatureCheck::None)),
            Some(bytes) => Ok((Some(bytes), SignatureCheck::Kernel)),
        };
    }
    let keyring = match &a.keyring {
        Some(path) => Keyring::load(path)?,
        None => Keyring::empty(),
    };
    let signer =
        signature::verify_root_hash_signature(&root.to_hex(), signature.as_deref(), &keyring, a.require_signatures)
            .map_err(refused)?;
    Ok((
        signature,
        signer.map_or(SignatureCheck::None, |signer| SignatureCheck::Keyring { signer }),
    ))
}

fn plan(a: &OpenArgs) -> Result<OpenPlan> {
    let root = root_hash(a.root_hash.as_deref(), a.root_hash_file.as_ref())?;
    let data = FileSource::open(&a.data).with_context(|| format!("opening data device {}", a.data.display()))?;
    let geometry = existing_geometry(&a.params, crate::ReadAt::len(&data), &a.hash)?;
    geometry.check_root_hash(&root)?;
    let fec = match &a.fec.fec_device {
        Some(path) => {
            let hash_len = std::fs::metadata(&a.hash)
                .with_context(|| format!("opening hash device {}", a.hash.display()))?
                .len();
            let layout = a.fec.layout(&geometry, path, Some(&a.data), &a.hash, hash_len)?;
            let fec_len = std::fs::metadata(path)
                .with_context(|| format!("opening FEC device {}", path.display()))?
                .len();
            layout
                .check_fec_device(fec_len)
                .with_context(|| format!("FEC device {}", path.display()))?;
            Some((absolute(path)?, layout.params))
        }
        None => None,
    };
    let options = Options {
        on_corruption: match (a.ignore_corruption, a.restart_on_corruption, a.panic_on_corruption) {
            (true, _, _) => CorruptionMode::Ignore,
            (_, true, _) => CorruptionMode::Restart,
            (_, _, true) => CorruptionMode::Panic,
            _ => CorruptionMode::Eio,
        },
        on_io_error: match (a.restart_on_error, a.panic_on_error) {
            (true, _) => IoErrorMode::Restart,
            (_, true) => IoErrorMode::Panic,
            _ => IoErrorMode::Eio,
        },
        ignore_zero_blocks: a.ignore_zero_blocks,
        check_at_most_once: a.check_at_most_once,
        cache_blocks: a.cache_blocks,
    };
    Ok(OpenPlan {
        root: Digest::from_slice(&root).expect("length checked"),
        geometry,
        options,
        data: absolute(&a.data)?,
        hash: absolute(&a.hash)?,
        fec,
        signature: None,
    })
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

#[derive(serde::Serialize)]
struct Opened<'a> {
    name: &'a str,
    backend: Backend,
    device: &'a Path,
    table: &'a str,
}

fn report(info: &Info, json: bool) -> Result<(), super::output::OutputError> {
    if json {
        let opened = Opened {
            name: &info.name,
            backend: info.backend,
            device: &info.device,
            table: &info.table,
        };
        out!("{}", serde_json::to_string_pretty(&opened).expect("serialises"))?;
    } else {
        out!("{}", info.device.display())?;
    }
    Ok(())
}

pub(crate) fn run(a: OpenArgs, argv: &[std::ffi::OsString]) -> Result<()> {
    let mut plan = plan(&a)?;
    warn_lab_only(&plan.geometry);
    let registry = RunDir::new(a.dir.as_deref())?;
    let backend = Backend::resolve(a.backend, backend::capabilities())?;
    let (signature, check) = check_signature(&a, &plan.root, backend)?;
    plan.signature = signature;
    if a.backend == Choice::Auto && !a.foreground {
        let why = match backend {
            Backend::Kernel => "device-mapper is available".to_owned(),
            Backend::Fuse => format!(
                "kernel dm-verity unavailable: {}",
                backend::capabilities().kernel.clone().err().unwrap_or_default()
            ),
        };
        eprintln!("verity-fuse: backend {backend:?} ({why})");
    }
    let entry = registry.create(&a.name)?;
    let result = match backend {
        Backend::Kernel => open_kernel(&a, &plan, &entry, check),
        Backend::Fuse if a.foreground => serve(&a, plan, &entry, check),
        Backend::Fuse => detach(&a, &entry, argv),
    };
    if result.is_err() && entry.info().is_none() {
        let _ = entry.remove();
    }
    result
}

fn open_kernel(a: &OpenArgs, plan: &OpenPlan, entry: &Entry, signature: SignatureCheck) -> Result<()> {
    let files = kernel::Files {
        data: &plan.data,
        hash: &plan.hash,
        hash_is_data: same_file(&plan.data, &plan.hash),
        fec: plan.fec.as_ref().map(|(path, params)| kernel::FecFile {
            path,
            params,
            is_data: same_file(path, &plan.data),
            is_hash: same_file(path, &plan.hash),
        }),
    };
    let mapping = kernel::open_signed(
        &a.name,
        files,
        &plan.geometry,
        &plan.root,
        &plan.options,
        plan.signature.as_deref(),
    )?;
    let info = Info {
        name: a.name.clone(),
        backend: Backend::Kernel,
        device: mapping.device,
        pid: None,
        pid_start: None,
        data: plan.data.clone(),
        hash: plan.hash.clone(),
        root_hash: plan.root,
        table: mapping.table,
        loops: mapping.loops,
        signature,
    };
    entry.write_info(&info)?;
    report(&info, a.json)?;
    Ok(())
}

/// Mounts the FUSE device and serves it until it is unmounted or a signal asks to stop.
fn serve(a: &OpenArgs, plan: OpenPlan, entry: &Entry, signature: SignatureCheck) -> Result<()> {
    let data = FileSource::open(&plan.data).with_context(|| format!("opening {}", plan.data.display()))?;
    let hash = FileSource::open(&plan.hash).with_context(|| format!("opening {}", plan.hash.display()))?;
    let fec_path = plan.fec.as_ref().map(|(path, _)| path.to_string_lossy().into_owned());
    let table = kernel::table_line_with(
        &plan.geometry,
        &plan.data.to_string_lossy(),
        &plan.hash.to_string_lossy(),
        &plan.root,
        &plan.options,
        kernel::TableExtras {
            fec: fec_path.as_deref().zip(plan.fec.as_ref().map(|(_, params)| params)),
            signature_key: None,
        },
    );
    let mut device = VerifiedDevice::new(data, hash, plan.geometry, plan.root.as_bytes(), plan.options)?;
    if let Some((path, params)) = &plan.fec {
        let parity = FileSource::open(path).with_context(|| format!("opening {}", path.display()))?;
        device = device.with_fec(*params, Box::new(parity))?;
    }
    let config = MountConfig {
        threads: a.threads.unwrap_or_else(tree::default_threads),
        // Others read the device where they may (root's loop devices over a user's device).
        allow_other: sys::may_allow_other(),
        fs_name: format!("verity-fuse:{}", a.name),
        auto_unmount: sys::is_root(),
    };
    let mount_point = entry.mount_point();
    let session = fuser::Session::new(DeviceFs::new(Arc::new(device)), &mount_point, &fuser_config(&config))
        .with_context(|| format!("mounting FUSE at {}", mount_point.display()))?;
    if sys::is_root() {
        // Best effort: the default 128 KiB readahead leaves one of the serving threads idle on a streaming read.
        let _ = sys::set_readahead_kib(&mount_point, READAHEAD_KIB);
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])?;
    let unmount_at = mount_point.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            // Unmounting ends the session loop below, which then cleans up as after `close`.
            if let Err(e) = sys::run_tool("fusermount3", "fuse3", ["-u".as_ref(), unmount_at.as_os_str()]) {
                eprintln!("verity-fuse: unmounting on signal: {e}");
            }
        }
    });
    let info = Info {
        name: a.name.clone(),
        backend: Backend::Fuse,
        device: entry.device_file(),
        pid: Some(std::process::id()),
        pid_start: ProcessId::of(std::process::id()).ok().map(|p| p.start),
        data: plan.data,
        hash: plan.hash,
        root_hash: plan.root,
        table,
        loops: Vec::new(),
        signature,
    };
    entry.write_info(&info)?;
    // A reader that went away before the path was printed ends the server before it serves anything.
    let reported = report(&info, a.json);
    let served = if reported.is_ok() { session.run() } else { Ok(()) };
    entry.remove()?;
    reported?;
    served.context("serving FUSE requests")
}

/// Starts the server in the background and waits until it has recorded the mounted device.
fn detach(a: &OpenArgs, entry: &Entry, argv: &[std::ffi::OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log =
        std::fs::File::create(entry.log_file()).with_context(|| format!("creating {}", entry.log_file().display()))?;
    let exe = std::env::current_exe().context("finding the verity-fuse executable")?;
    let mut child = Command::new(exe)
        .args(argv.iter().skip(1))
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the FUSE server")?;
    let started = Instant::now();
    loop {
        if let Some(info) = entry.info().filter(|i| i.pid == Some(child.id())) {
            report(&info, a.json)?;
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(entry.log_file()).unwrap_or_default();
            bail!("the FUSE server exited ({status}): {}", log.trim());
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the FUSE server was not ready after {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
