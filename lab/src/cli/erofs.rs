//! `veritylab erofs ls|stat|cat|extract IMAGE [PATH] [DIR]`: read an image in userspace.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use verity_fuse::source::FileSource;

use super::CliError;
use crate::erofs::{self, ExtractOptions, FileKind, Image, Inode};

/// Subcommands of `veritylab erofs`.
#[derive(Subcommand, Debug, Clone)]
pub enum ErofsCommand {
    /// List a directory (one line per entry), or describe a single non-directory.
    Ls {
        /// The image.
        image: PathBuf,
        /// Path inside the image (default: the root).
        #[arg(default_value = "/")]
        path: String,
        /// List the whole tree below PATH.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Show an inode's fields and xattrs.
    Stat {
        /// The image.
        image: PathBuf,
        /// Path inside the image.
        path: String,
    },
    /// Write a file's contents to stdout.
    Cat {
        /// The image.
        image: PathBuf,
        /// Path inside the image.
        path: String,
    },
    /// Extract the whole image into DIR, as `fsck.erofs --extract=DIR`.
    Extract {
        /// The image.
        image: PathBuf,
        /// Target directory (created if missing).
        dir: PathBuf,
    },
}

fn open(path: &Path) -> Result<Image<FileSource>, CliError> {
    let src = FileSource::open(path).map_err(|source| CliError::Io {
        what: format!("opening {}", path.display()),
        source,
    })?;
    Ok(Image::open(src)?)
}

fn out_err(source: io::Error) -> CliError {
    CliError::Output(source)
}

/// One `ls -l`-like line for an inode.
pub(crate) fn describe(image: &Image<FileSource>, inode: &Inode, name: &[u8]) -> Result<String, CliError> {
    let kind = match inode.kind {
        FileKind::File => '-',
        FileKind::Directory => 'd',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
    };
    let size = match inode.device() {
        Some((major, minor)) => format!("{major},{minor}"),
        None => inode.size().to_string(),
    };
    let mut line = format!(
        "{kind}{:04o} {:>5} {:>5} {:>10} {}.{:09} {}",
        inode.permissions(),
        inode.disk.uid,
        inode.disk.gid,
        size,
        inode.disk.mtime as i64,
        inode.disk.mtime_nsec,
        String::from_utf8_lossy(name)
    );
    if inode.kind == FileKind::Symlink {
        let target = image.read_link(inode)?;
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&target));
    }
    Ok(line)
}

/// Runs one `erofs` subcommand.
pub(crate) fn run(cmd: ErofsCommand) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match cmd {
        ErofsCommand::Ls { image, path, recursive } => {
            let image = open(&image)?;
            let inode = image.lookup(path.as_bytes())?;
            if recursive {
                image.walk(&inode, |rel, child| -> Result<(), CliError> {
                    let name = if rel.is_empty() { b"." } else { rel };
                    writeln!(out, "{}", describe(&image, child, name)?).map_err(out_err)
                })?;
            } else if inode.kind == FileKind::Directory {
                for entry in image.read_dir(&inode)? {
                    let child = image.inode(entry.nid)?;
                    writeln!(out, "{}", describe(&image, &child, &entry.name)?).map_err(out_err)?;
                }
            } else {
                writeln!(out, "{}", describe(&image, &inode, path.as_bytes())?).map_err(out_err)?;
            }
        }
        ErofsCommand::Stat { image, path } => {
            let image = open(&image)?;
            let inode = image.lookup(path.as_bytes())?;
            let d = &inode.disk;
            writeln!(out, "path: {path}").map_err(out_err)?;
            writeln!(
                out,
                "nid: {}\nkind: {:?}\nmode: {:o}\nuid: {}\ngid: {}\nnlink: {}\nsize: {}\nmtime: {}.{:09}\nform: {}\nlayout: {}",
                inode.nid,
                inode.kind,
                d.mode,
                d.uid,
                d.gid,
                d.nlink,
                d.size,
                d.mtime as i64,
                d.mtime_nsec,
                if d.extended { "extended" } else { "compact" },
                d.layout_bits
            )
            .map_err(out_err)?;
            if let Some((major, minor)) = inode.device() {
                writeln!(out, "device: {major},{minor}").map_err(out_err)?;
            }
            if inode.kind == FileKind::Symlink {
                let target = image.read_link(&inode)?;
                writeln!(out, "target: {}", String::from_utf8_lossy(&target)).map_err(out_err)?;
            }
            for (name, value) in image.xattrs(&inode)? {
                writeln!(
                    out,
                    "xattr: {}={}",
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&value)
                )
                .map_err(out_err)?;
            }
        }
        ErofsCommand::Cat { image, path } => {
            let image = open(&image)?;
            let inode = image.lookup(path.as_bytes())?;
            if inode.kind != FileKind::File {
                return Err(CliError::Read(erofs::ReadError::WrongType {
                    nid: inode.nid,
                    expected: "regular file",
                }));
            }
            let mut buf = vec![0u8; 256 * 1024];
            let mut offset = 0u64;
            loop {
                let n = image.read_at(&inode, offset, &mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(out_err)?;
                offset += n as u64;
            }
        }
        ErofsCommand::Extract { image, dir } => {
            let image = open(&image)?;
            erofs::extract(&image, &dir, ExtractOptions::default())?;
        }
    }
    out.flush().map_err(out_err)
}
