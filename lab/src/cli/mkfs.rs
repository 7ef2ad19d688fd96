//! `veritylab mkfs [--tar] [--aufs] [--userxattr] [--no-inline-data] [--block-size N] [--mkfs-time SECS]
//! [--uuid UUID|clear] OUTPUT INPUT`: arguments in `mkfs.erofs` order; INPUT `-` reads a tar from stdin.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::erofs::{self, FileTime, Options, OverlayNamespace, Whiteouts};

/// Raw arguments of `veritylab mkfs`.
#[derive(Args, Debug, Clone)]
pub struct MkfsArgs {
    /// INPUT is a tar stream (plain, gzip or zstd, detected from its bytes) instead of a directory.
    #[arg(long)]
    pub tar: bool,
    /// Convert OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) for an overlayfs lower layer.
    #[arg(long)]
    pub aufs: bool,
    /// With --aufs, write `user.overlay.*` markers (for overlays mounted with `userxattr`).
    #[arg(long)]
    pub userxattr: bool,
    /// Store every tail in its own block instead of after the inode (as `-Enoinline_data`).
    #[arg(long)]
    pub no_inline_data: bool,
    /// Block size in bytes (a power of two, 512 to 65536).
    #[arg(long, default_value_t = 4096)]
    pub block_size: u32,
    /// Fixed build time in seconds since the epoch (default: the most common modification time).
    #[arg(long, value_name = "SECS")]
    pub mkfs_time: Option<i64>,
    /// Volume UUID, or `clear` for all zeros (the default, so images are reproducible).
    #[arg(long, value_name = "UUID|clear")]
    pub uuid: Option<String>,
    /// The image to write (replaced atomically).
    pub output: PathBuf,
    /// The source directory, or with --tar a tar file (`-` for stdin).
    pub input: PathBuf,
}

/// Where the input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// A directory tree.
    Directory(PathBuf),
    /// A tar file.
    TarFile(PathBuf),
    /// A tar stream on stdin.
    TarStdin,
}

/// Validated `mkfs` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MkfsPlan {
    /// Output image.
    pub output: PathBuf,
    /// Input.
    pub input: Input,
    /// Writer options.
    pub options: Options,
    /// Whiteout handling.
    pub whiteouts: Whiteouts,
}

impl TryFrom<MkfsArgs> for MkfsPlan {
    type Error = CliError;

    fn try_from(args: MkfsArgs) -> Result<Self, CliError> {
        let stdin = args.input.as_os_str() == "-";
        let input = match (args.tar || stdin, stdin) {
            (true, true) => Input::TarStdin,
            (true, false) => Input::TarFile(args.input),
            (false, _) => Input::Directory(args.input),
        };
        if args.aufs && matches!(input, Input::Directory(_)) {
            return Err(CliError::Usage("--aufs needs a tar input (--tar)".into()));
        }
        if args.userxattr && !args.aufs {
            return Err(CliError::Usage("--userxattr needs --aufs".into()));
        }
        if !(512..=65536).contains(&args.block_size) || !args.block_size.is_power_of_two() {
            return Err(CliError::Usage(format!(
                "--block-size {} is not a power of two from 512 to 65536",
                args.block_size
            )));
        }
        let uuid = match args.uuid.as_deref() {
            None | Some("clear") => [0u8; 16],
            Some(text) => {
                parse_uuid(text).ok_or_else(|| CliError::Usage(format!("--uuid {text}: not a UUID or `clear`")))?
            }
        };
        let whiteouts = match (args.aufs, args.userxattr) {
            (false, _) => Whiteouts::Keep,
            (true, false) => Whiteouts::Aufs(OverlayNamespace::Trusted),
            (true, true) => Whiteouts::Aufs(OverlayNamespace::User),
        };
        Ok(Self {
            output: args.output,
            input,
            options: Options {
                block_size: args.block_size,
                inline_data: !args.no_inline_data,
                build_time: args.mkfs_time.map(|secs| FileTime { secs, nanos: 0 }),
                uuid,
            },
            whiteouts,
        })
    }
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (dashes optional).
pub(crate) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Builds the image the plan describes.
pub(crate) fn run(plan: &MkfsPlan) -> Result<(), CliError> {
    let opts = plan.options.clone();
    match &plan.input {
        Input::Directory(dir) => {
            erofs::build_from_dir(&plan.output, dir, opts)?;
        }
        Input::TarFile(path) => {
            let file = File::open(path).map_err(|source| CliError::Io {
                what: format!("opening {}", path.display()),
                source,
            })?;
            erofs::build_from_tar(&plan.output, BufReader::new(file), opts, plan.whiteouts)?;
        }
        Input::TarStdin => {
            let stdin = io::stdin().lock();
            erofs::build_from_tar(&plan.output, BufReader::new(stdin), opts, plan.whiteouts)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_with_or_without_dashes() {
        let want = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        ];
        assert_eq!(parse_uuid("12345678-9abc-def0-0123-456789abcdef"), Some(want));
        assert_eq!(parse_uuid("123456789abcdef0123456789abcdef"), None);
        assert_eq!(parse_uuid("zz345678-9abc-def0-0123-456789abcdef"), None);
    }
}
