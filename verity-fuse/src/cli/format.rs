//! `verity-fuse format`: build a tree and write it, atomically, where veritysetup would.
//!
//! A separate hash file is written to a temporary file beside it and renamed into place when complete. A
//! tree that shares the data file (`--hash-offset`) is computed in full first and then written at the
//! offset; if that write fails, the bytes it replaced are put back and the file is cut to its old length.
//! With `--fec-device`, the FEC layout is validated before anything is written; the parity is computed from
//! the data and the hash device as written, then written the same way (its own file atomically, or at
//! `--fec-offset` inside the hash or data file).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::args::{EngineArgs, FecArgs, ParamArgs, geometry, same_file, same_target};
use super::report::{FecHeader, Header, warn_lab_only};
use crate::fec::{self, FecLayout};
use crate::params::{Geometry, ParamError};
use crate::source::FileSource;
use crate::superblock::{parse_uuid, random_uuid};
use crate::tree::{self, Tree};

/// Arguments of `format`.
#[derive(Args, Debug)]
pub(crate) struct FormatArgs {
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    fec: FecArgs,
    /// UUID stored in the superblock [default: random].
    #[arg(long, value_name = "UUID")]
    uuid: Option<String>,
    /// Also write the root hash (hex, no newline) to this file.
    #[arg(long, value_name = "FILE")]
    root_hash_file: Option<PathBuf>,
    /// Threads hashing data [default: every core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Print one JSON object instead of veritysetup's lines.
    #[arg(long)]
    json: bool,
    /// The data device (file) to protect.
    data: PathBuf,
    /// Where the tree goes: a separate file (created or replaced), or DATA itself with --hash-offset.
    hash: PathBuf,
}

/// A validated `format` request.
struct FormatPlan {
    data: FileSource,
    data_path: PathBuf,
    hash_path: PathBuf,
    shared: bool,
    geometry: Geometry,
    uuid: [u8; 16],
    threads: usize,
}

fn plan(a: &FormatArgs) -> Result<FormatPlan> {
    let data = FileSource::open(&a.data).with_context(|| format!("opening data device {}", a.data.display()))?;
    let params = a
        .params
        .params(crate::ReadAt::len(&data), || rand::random::<[u8; 32]>().to_vec())?;
    let shared = same_file(&a.data, &a.hash);
    let geometry = geometry(params, a.params.placement())?;
    if shared && geometry.data_size() > a.params.hash_offset {
        return Err(ParamError::HashOffsetOverlapsData {
            data_end: geometry.data_size(),
            hash_offset: a.params.hash_offset,
        }
        .into());
    }
    let uuid = match &a.uuid {
        Some(text) => parse_uuid(text).with_context(|| format!("--uuid {text}: not a UUID (8-4-4-4-12 hex digits)"))?,
        None => random_uuid(),
    };
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    Ok(FormatPlan {
        data,
        data_path: a.data.clone(),
        hash_path: a.hash.clone(),
        shared,
        geometry,
        uuid,
        threads: a.threads.unwrap_or_else(tree::default_threads),
    })
}

pub(crate) fn run(a: FormatArgs) -> Result<()> {
    let plan = plan(&a)?;
    a.engine.apply()?;
    warn_lab_only(&plan.geometry);
    let tree = tree::build(
        &plan.data,
        &plan.geometry,
        plan.threads,
        &progress_printer(&plan.geometry),
    )
    .with_context(|| format!("hashing {}", plan.data_path.display()))?;
    let image = HashImage::new(&plan, &tree);
    // A hash file that will also hold the parity is written in place, keeping what lies past the tree.
    let in_place = plan.shared
        || a.fec
            .fec_device
            .as_deref()
            .is_some_and(|fec| same_target(fec, &plan.hash_path))
            && plan.hash_path.is_file();
    let fec_layout = match &a.fec.fec_device {
        Some(path) => Some(a.fec.layout(
            &plan.geometry,
            path,
            Some(&plan.data_path),
            &plan.hash_path,
            image.len_after_write(&plan.hash_path, in_place)?,
        )?),
        None => None,
    };
    if in_place {
        image.write_into_data_file(&plan.hash_path)?;
    } else {
        image.write_hash_file(&plan.hash_path)?;
    }
    if let (Some(path), Some(layout)) = (&a.fec.fec_device, &fec_layout) {
        write_parity(&plan, path, layout)?;
    }
    if let Some(path) = &a.root_hash_file {
        write_atomically(path, tree.root.to_hex().as_bytes())
            .with_context(|| format!("writing root hash file {}", path.display()))?;
    }
    let mut header = Header::new(
        &plan.hash_path.display().to_string(),
        &plan.geometry,
        plan.geometry.placement.superblock.then_some(&plan.uuid),
    );
    header.root_hash = Some(tree.root);
    header.hash_device_size = Some(plan.geometry.hash_device_size());
    header.engine = Some(plan.geometry.params.hasher().engine());
    header.fec = fec_layout.as_ref().map(FecHeader::new);
    header.print(a.json)?;
    Ok(())
}

/// Computes the parity over the data and the hash device as written, and writes it at the FEC offset.
fn write_parity(plan: &FormatPlan, path: &Path, layout: &FecLayout) -> Result<()> {
    let hash = FileSource::open(&plan.hash_path)
        .with_context(|| format!("opening hash device {}", plan.hash_path.display()))?;
    let parity = fec::encode(layout, &plan.data, &hash, plan.threads)
        .with_context(|| format!("computing FEC parity for {}", plan.data_path.display()))?;
    let image = HashImage {
        offset: layout.params.offset,
        area: parity,
    };
    if same_target(path, &plan.hash_path) || same_target(path, &plan.data_path) {
        image.write_into_data_file(path)
    } else {
        image.write_hash_file(path)
    }
    .with_context(|| format!("writing FEC parity to {}", path.display()))
}

/// Prints hashing progress on stderr when it is a terminal.
fn progress_printer(geometry: &Geometry) -> impl Fn(u64) + Sync {
    let total = geometry.params.data_blocks;
    let shown = AtomicU64::new(0);
    let tty = std::io::stderr().is_terminal() && total > 1 << 14;
    move |done| {
        if !tty {
            return;
        }
        let percent = done * 100 / total;
        if shown.fetch_max(percent, Ordering::Relaxed) < percent {
            eprint!("\rHashing data blocks: {percent:3}%");
            if done == total {
                eprintln!();
            }
        }
    }
}

/// Bytes `format` writes at an offset: the hash area on the hash device, or the parity on the FEC device.
struct HashImage {
    offset: u64,
    area: Vec<u8>,
}

impl HashImage {
    fn new(plan: &FormatPlan, tree: &Tree) -> Self {
        Self {
            offset: plan.geometry.placement.hash_offset,
            area: tree.hash_area(&plan.geometry, plan.uuid),
        }
    }

    /// The end of what is written on the hash device.
    fn end(&self) -> u64 {
        self.offset + self.area.len() as u64
    }

    /// The length the file at `path` will have once this is written into it: a replaced regular file ends at
    /// [`Self::end`]; a file written in place or a device keeps any longer length it has.
    fn len_after_write(&self, path: &Path, in_place: bool) -> Result<u64> {
        let existing = match std::fs::metadata(path) {
            Ok(m) if in_place || !m.is_file() => m.len(),
            _ => 0,
        };
        Ok(self.end().max(existing))
    }

    /// Writes the hash area into `file` (which is at least `offset` long).
    fn write_to(&self, file: &File) -> std::io::Result<()> {
        file.write_all_at(&self.area, self.offset)?;
        file.set_len(self.end().max(file.metadata()?.len()))?;
        file.sync_all()
    }

    /// Writes a separate hash file: bytes before the offset are kept from an existing file (zeroes if none),
    /// the rest is new; the file appears complete or not at all.
    fn write_hash_file(&self, path: &Path) -> Result<()> {
        let existing = std::fs::metadata(path).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening hash device {}", path.display()))?;
            return self
                .write_to(&file)
                .with_context(|| format!("writing hash device {}", path.display()));
        }
        let dir = parent_dir(path);
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot create hash image {} for writing", path.display()))?;
        if self.offset > 0 {
            if existing.is_some() {
                let mut prefix = std::io::Read::take(File::open(path)?, self.offset);
                std::io::copy(&mut prefix, tmp.as_file_mut())?;
            }
            tmp.as_file().set_len(self.offset)?;
        }
        self.write_to(tmp.as_file())
            .with_context(|| format!("writing hash image {}", path.display()))?;
        tmp.persist(path)
            .with_context(|| format!("renaming the hash image into {}", path.display()))?;
        Ok(())
    }

    /// Writes the tree into the data file itself, restoring what it replaced if the write fails.
    fn write_into_data_file(&self, path: &Path) -> Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {} for writing", path.display()))?;
        let old_len = file.metadata()?.len();
        let replaced_len = old_len.min(self.end()).saturating_sub(self.offset) as usize;
        let mut replaced = vec![0u8; replaced_len];
        file.read_exact_at(&mut replaced, self.offset)?;
        if let Err(e) = self.write_to(&file) {
            let restored = file
                .write_all_at(&replaced, self.offset)
                .and_then(|()| file.set_len(old_len))
                .and_then(|()| file.sync_all());
            let note = match restored {
                Ok(()) => "the file was restored".to_owned(),
                Err(r) => format!("restoring the file also failed: {r}"),
            };
            bail!("writing the tree into {} failed: {e}; {note}", path.display());
        }
        Ok(())
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(parent_dir(path))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}
