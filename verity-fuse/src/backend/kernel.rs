//! Kernel dm-verity: the exact table line, read-only loop devices, and the mapping, driven through
//! `losetup` and `dmsetup`.
//!
//! The table line is built by [`table_line`], a pure function of the geometry; the device steps are thin.

use std::path::{Path, PathBuf};

use crate::class::ErrorClass;
use crate::device::Options;
use crate::fec::FecParams;
use crate::hash::Digest;
use crate::hex;
use crate::params::Geometry;
use crate::sys::{ToolError, run_tool};

/// The dm-verity table line for `geometry` over `data_dev` and `hash_dev` (device paths or `major:minor`),
/// as the kernel documents it:
///
/// `<start> <sectors> verity <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
/// <num_data_blocks> <hash_start_block> <algorithm> <root_digest> <salt or -> [<#opt> <opt>...]`
pub fn table_line(geometry: &Geometry, data_dev: &str, hash_dev: &str, root: &Digest, options: &Options) -> String {
    table_line_with(geometry, data_dev, hash_dev, root, options, TableExtras::default())
}

/// What a table line may carry besides the options: forward error correction and a root-hash signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableExtras<'a> {
    /// The FEC device and its parameters: `use_fec_from_device <dev> fec_blocks <n> fec_start <n> fec_roots
    /// <n>`, `fec_start` counted in blocks.
    pub fec: Option<(&'a str, &'a FecParams)>,
    /// The description of a `user` key holding the root hash's PKCS#7 signature: `root_hash_sig_key_desc
    /// <description>`, as veritysetup loads it.
    pub signature_key: Option<&'a str>,
}

/// [`table_line`] with `extras` after the options, in the order the kernel prints them back (FEC, then the
/// signature key).
pub fn table_line_with(
    geometry: &Geometry,
    data_dev: &str,
    hash_dev: &str,
    root: &Digest,
    options: &Options,
    extras: TableExtras<'_>,
) -> String {
    let p = &geometry.params;
    let sectors = geometry.data_size() / 512;
    let salt = if p.salt.is_empty() {
        "-".to_owned()
    } else {
        hex::encode(&p.salt)
    };
    let mut line = format!(
        "0 {sectors} verity {} {data_dev} {hash_dev} {} {} {} {} {} {root} {salt}",
        p.hash_type.number(),
        p.data_block_size,
        p.hash_block_size,
        p.data_blocks,
        geometry.hash_start_block,
        p.algorithm,
    );
    let mut args: Vec<String> = options.table_args().into_iter().map(str::to_owned).collect();
    if let Some((device, f)) = extras.fec {
        let start = f.offset / u64::from(p.data_block_size);
        args.extend([
            "use_fec_from_device".to_owned(),
            device.to_owned(),
            "fec_blocks".to_owned(),
            f.blocks.to_string(),
            "fec_start".to_owned(),
            start.to_string(),
            "fec_roots".to_owned(),
            f.roots.to_string(),
        ]);
    }
    if let Some(description) = extras.signature_key {
        args.extend(["root_hash_sig_key_desc".to_owned(), description.to_owned()]);
    }
    if !args.is_empty() {
        line.push_str(&format!(" {} {}", args.len(), args.join(" ")));
    }
    line
}

/// A mapping made by [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `/dev/mapper/NAME`.
    pub device: PathBuf,
    /// The loop devices it sits on (one per distinct file).
    pub loops: Vec<PathBuf>,
    /// The table line loaded.
    pub table: String,
}

fn attach_read_only(file: &Path) -> Result<PathBuf, ToolError> {
    let out = run_tool(
        "losetup",
        "mount",
        [
            "--find".as_ref(),
            "--show".as_ref(),
            "--read-only".as_ref(),
            file.as_os_str(),
        ],
    )?;
    Ok(PathBuf::from(out.trim()))
}

fn detach(loops: &[PathBuf]) -> Result<(), ToolError> {
    loops
        .iter()
        .try_for_each(|l| run_tool("losetup", "mount", ["--detach".as_ref(), l.as_os_str()]).map(drop))
}

/// The files a mapping is made of: the hash and FEC files may be the data file itself.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// The data file.
    pub data: &'a Path,
    /// The hash file.
    pub hash: &'a Path,
    /// Whether the hash file is the data file.
    pub hash_is_data: bool,
    /// The FEC file and parameters, with whether it is the data file or the hash file.
    pub fec: Option<FecFile<'a>>,
}

/// A FEC file of a mapping.
#[derive(Debug, Clone, Copy)]
pub struct FecFile<'a> {
    /// The parity file.
    pub path: &'a Path,
    /// Its parameters.
    pub params: &'a FecParams,
    /// Whether it is the data file.
    pub is_data: bool,
    /// Whether it is the hash file.
    pub is_hash: bool,
}

/// Sets up read-only loop devices for the files (one per distinct file) and creates the mapping `name`, with
/// forward error correction when `files.fec` is given; on failure every step already taken is undone.
pub fn open(
    name: &str,
    files: Files<'_>,
    geometry: &Geometry,
    root: &Digest,
    options: &Options,
) -> Result<Mapping, ToolError> {
    open_signed(name, files, geometry, root, options, None)
}

/// The description of the `user` key holding mapping `name`'s root-hash signature while its table loads.
pub fn signature_key_description(name: &str) -> String {
    format!("verity-fuse:{name}")
}

/// Adds `payload` as a `user` key called `description` to the user keyring (`keyctl padd ... @u`), where the
/// kernel's `request_key` finds it while `dmsetup` loads the table (through the user-session keyring, which
/// links it, or a session keyring linking it); returns the key's serial number. The session keyring will
/// not do: where a process has none, `keyctl` would join a new one that ends with it.
pub fn add_user_key(description: &str, payload: &[u8]) -> Result<String, ToolError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let tool = "keyctl";
    let path = crate::sys::find_tool(tool).ok_or(ToolError::Missing {
        tool,
        package: "keyutils",
    })?;
    let spawn = |error| ToolError::Spawn { tool, error };
    let mut child = Command::new(path)
        .args(["padd", "user", description, "@u"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    let written = child.stdin.take().expect("piped").write_all(payload);
    let out = child.wait_with_output().map_err(spawn)?;
    written.map_err(spawn)?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command: format!("keyctl padd user {description} @u"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// [`open`] with a root-hash signature: it is loaded as a `user` key for as long as the table loads (the
/// kernel copies it then), and the table names it, so the kernel checks it against its trusted keyrings.
pub fn open_signed(
    name: &str,
    files: Files<'_>,
    geometry: &Geometry,
    root: &Digest,
    options: &Options,
    signature: Option<&[u8]>,
) -> Result<Mapping, ToolError> {
    let description = signature_key_description(name);
    let key = match signature {
        Some(bytes) => Some(add_user_key(&description, bytes)?),
        None => None,
    };
    let made = create(
        name,
        files,
        geometry,
        root,
        options,
        key.as_ref().map(|_| description.as_str()),
    );
    if let Some(key) = key {
        let _ = run_tool("keyctl", "keyutils", ["unlink", key.as_str(), "@u"]);
    }
    made
}

fn create(
    name: &str,
    files: Files<'_>,
    geometry: &Geometry,
    root: &Digest,
    options: &Options,
    signature_key: Option<&str>,
) -> Result<Mapping, ToolError> {
    let mut loops = vec![attach_read_only(files.data)?];
    let attach = |path: &Path, loops: &mut Vec<PathBuf>| match attach_read_only(path) {
        Ok(l) => {
            loops.push(l.clone());
            Ok(l)
        }
        Err(e) => {
            let _ = detach(loops);
            Err(e)
        }
    };
    let hash_loop = if files.hash_is_data {
        loops[0].clone()
    } else {
        attach(files.hash, &mut loops)?
    };
    let fec_loop = match files.fec {
        None => None,
        Some(f) if f.is_data => Some(loops[0].clone()),
        Some(f) if f.is_hash => Some(hash_loop.clone()),
        Some(f) => Some(attach(f.path, &mut loops)?),
    };
    let dev = |p: &PathBuf| p.to_string_lossy().into_owned();
    let fec_dev = fec_loop.as_ref().map(dev);
    let table = table_line_with(
        geometry,
        &dev(&loops[0]),
        &dev(&hash_loop),
        root,
        options,
        TableExtras {
            fec: fec_dev.as_deref().zip(files.fec.map(|f| f.params)),
            signature_key,
        },
    );
    if let Err(e) = run_tool("dmsetup", "dmsetup", ["create", name, "--readonly", "--table", &table]) {
        let _ = detach(&loops);
        return Err(e);
    }
    // Without udev (containers, minimal VMs) nothing creates /dev/mapper/NAME: ask dmsetup to.
    if let Err(e) = run_tool("dmsetup", "dmsetup", ["mknodes", name]) {
        let _ = run_tool("dmsetup", "dmsetup", ["remove", name]);
        let _ = detach(&loops);
        return Err(e);
    }
    Ok(Mapping {
        device: Path::new("/dev/mapper").join(name),
        loops,
        table,
    })
}

/// The status letter (`V` or `C`) of mapping `name`, from `dmsetup status`.
pub fn status(name: &str) -> Result<char, ToolError> {
    let out = run_tool("dmsetup", "dmsetup", ["status", name])?;
    Ok(parse_status(&out).unwrap_or('?'))
}

/// The letter of a `dmsetup status` line: `0 296 verity V`.
pub fn parse_status(line: &str) -> Option<char> {
    let mut fields = line.split_whitespace();
    (fields.nth(2)? == "verity").then_some(())?;
    fields.next()?.chars().next()
}

/// The table of mapping `name`, from `dmsetup table`.
pub fn table(name: &str) -> Result<String, ToolError> {
    Ok(run_tool("dmsetup", "dmsetup", ["table", name])?.trim().to_owned())
}

/// Why a mapping could not be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Something holds the mapping exclusively (a mounted filesystem, another mapping): opening it with
    /// `O_EXCL` failed with `EBUSY`.
    #[error("{} is in use: {error}", device.display())]
    Busy {
        /// `/dev/mapper/NAME`.
        device: PathBuf,
        /// The error of the exclusive open.
        error: std::io::Error,
    },
    /// `dmsetup` or `losetup` failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
}

impl CloseError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Busy { .. } => ErrorClass::Busy,
            Self::Tool(e) => e.class(),
        }
    }
}

/// Fails with [`CloseError::Busy`] when the block device at `device` is held exclusively: the kernel answers an
/// `O_EXCL` open of a block device with `EBUSY` while a filesystem is mounted on it or a mapping sits on it.
fn check_not_held(device: &Path) -> Result<(), CloseError> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::open(device, OFlags::RDONLY | OFlags::EXCL | OFlags::CLOEXEC, Mode::empty()) {
        Err(errno) if errno == rustix::io::Errno::BUSY => Err(CloseError::Busy {
            device: device.to_owned(),
            error: errno.into(),
        }),
        _ => Ok(()),
    }
}

/// Removes mapping `name` and detaches its loop devices; refuses with [`CloseError::Busy`] while something
/// holds the mapping.
pub fn close(name: &str, loops: &[PathBuf]) -> Result<(), CloseError> {
    check_not_held(&Path::new("/dev/mapper").join(name))?;
    run_tool("dmsetup", "dmsetup", ["remove", name])?;
    // Without udev the node stays behind: have dmsetup drop nodes of mappings that no longer exist.
    run_tool("dmsetup", "dmsetup", ["mknodes"])?;
    Ok(detach(loops)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CorruptionMode;
    use crate::params::{Placement, VerityParams};

    #[test]
    fn table_line_matches_what_veritysetup_loads() {
        // The line `dmsetup table` printed for a veritysetup mapping (REFERENCE.md section 8), with the root
        // and salt of this test.
        let mut params = VerityParams::new(37, vec![0xab, 0xcd]);
        params.salt = vec![0xab, 0xcd];
        let g = Geometry::new(params, Placement::with_superblock(0)).unwrap();
        let root = Digest::from_slice(&[0x11; 32]).unwrap();
        assert_eq!(
            table_line(&g, "7:1", "7:0", &root, &Options::default()),
            format!("0 296 verity 1 7:1 7:0 4096 4096 37 1 sha256 {} abcd", "11".repeat(32))
        );
    }

    #[test]
    fn options_and_no_salt_and_hash_offsets_are_spelled_as_the_kernel_wants() {
        let g = Geometry::new(VerityParams::new(8, vec![]), Placement::with_superblock(40960)).unwrap();
        let root = Digest::from_slice(&[0; 32]).unwrap();
        let options = Options {
            on_corruption: CorruptionMode::Restart,
            ignore_zero_blocks: true,
            check_at_most_once: true,
            ..Options::default()
        };
        let line = table_line(&g, "/dev/loop0", "/dev/loop0", &root, &options);
        assert!(
            line.starts_with("0 64 verity 1 /dev/loop0 /dev/loop0 4096 4096 8 11 sha256 "),
            "{line}"
        );
        assert!(
            line.ends_with(" - 3 restart_on_corruption ignore_zero_blocks check_at_most_once"),
            "{line}"
        );
    }

    #[test]
    fn fec_arguments_follow_the_options_with_the_start_in_blocks() {
        // veritysetup format over 1000 data blocks with roots 2 covers 1009 blocks (1000 data, 9 tree).
        let g = Geometry::new(VerityParams::new(1000, vec![0]), Placement::with_superblock(0)).unwrap();
        let root = Digest::from_slice(&[0x22; 32]).unwrap();
        let fec = FecParams {
            roots: 2,
            blocks: 1009,
            offset: 40960,
        };
        let options = Options {
            ignore_zero_blocks: true,
            ..Options::default()
        };
        assert_eq!(
            table_line_with(
                &g,
                "7:0",
                "7:1",
                &root,
                &options,
                TableExtras {
                    fec: Some(("7:1", &fec)),
                    signature_key: None
                }
            ),
            format!(
                "0 8000 verity 1 7:0 7:1 4096 4096 1000 1 sha256 {} 00 9 ignore_zero_blocks \
                 use_fec_from_device 7:1 fec_blocks 1009 fec_start 10 fec_roots 2",
                "22".repeat(32)
            )
        );
    }

    fn signed(description: &str) -> TableExtras<'_> {
        TableExtras {
            fec: None,
            signature_key: Some(description),
        }
    }

    #[test]
    fn a_signature_key_is_named_last_in_the_table_as_veritysetup_names_it() {
        let g = Geometry::new(VerityParams::new(37, vec![0xab, 0xcd]), Placement::with_superblock(0)).unwrap();
        let root = Digest::from_slice(&[0x11; 32]).unwrap();
        let desc = signature_key_description("layer1");
        assert_eq!(
            table_line_with(&g, "7:1", "7:0", &root, &Options::default(), signed(&desc)),
            format!(
                "0 296 verity 1 7:1 7:0 4096 4096 37 1 sha256 {} abcd 2 root_hash_sig_key_desc verity-fuse:layer1",
                "11".repeat(32)
            )
        );
        let options = Options {
            check_at_most_once: true,
            ..Options::default()
        };
        assert!(
            table_line_with(&g, "7:1", "7:0", &root, &options, signed(&desc))
                .ends_with(" abcd 3 check_at_most_once root_hash_sig_key_desc verity-fuse:layer1")
        );
    }

    #[test]
    fn status_lines_give_their_letter() {
        assert_eq!(parse_status("0 296 verity V\n"), Some('V'));
        assert_eq!(parse_status("0 296 verity C"), Some('C'));
        assert_eq!(parse_status("0 296 linear"), None);
    }
}
