//! Support for veritylab's benchmarks and side-by-side comparisons with peer tools.
//!
//! [`Timing`] runs a command several times and keeps the median, so the `compare` binary can print our tool
//! and its peer on the same input in the same run, with their ratio.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Median wall time of a command over several runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The median.
    pub median: Duration,
    /// The fastest run.
    pub min: Duration,
}

impl Timing {
    /// Runs `cmd` `runs` times (at least once), failing on the first unsuccessful run.
    pub fn measure(program: &Path, args: &[&str], runs: usize) -> Result<Self> {
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            let out = Command::new(program)
                .args(args)
                .output()
                .with_context(|| format!("running {}", program.display()))?;
            let elapsed = start.elapsed();
            if !out.status.success() {
                bail!(
                    "{} {:?} failed: {}",
                    program.display(),
                    args,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            times.push(elapsed);
        }
        times.sort();
        Ok(Self {
            median: times[times.len() / 2],
            min: times[0],
        })
    }
}

/// A binary of this workspace next to the running one (build with `cargo build --release` first).
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "{} not found next to {}: run `cargo build --release --workspace` first",
            name,
            exe.display()
        )
    }
}

/// Writes `len` bytes of fast pseudo-random data to `path`.
pub fn random_file(path: &Path, len: u64) -> Result<()> {
    seeded_file(path, len, 0)
}

/// Writes `count` dm-verity protected layer files of `bytes_each` (rounded up to 4 KiB) of pseudo-random data
/// under `dir`, alternating containerd's layout (tree appended, `.dmverity` sidecar) and the separate one,
/// with the conversion's parameters (`veritylab::convert::verity`), and returns them as watch targets.
pub fn verity_layers(dir: &Path, count: usize, bytes_each: u64) -> Result<Vec<veritylab::watch::LayerTarget>> {
    use veritylab::convert::{LAYER_FILE, SIDECAR_FILE, VERITY_FILE, VerityLayout, verity};
    use veritylab::verity_fuse::source::FileSource;
    use veritylab::verity_fuse::tree;
    let size = bytes_each.next_multiple_of(verity::BLOCK);
    let mut targets = Vec::with_capacity(count);
    for i in 0..count {
        let layout = if i % 2 == 0 {
            VerityLayout::Containerd
        } else {
            VerityLayout::Separate
        };
        let layer_dir = dir.join(format!("layer-{i:02}"));
        std::fs::create_dir_all(&layer_dir)?;
        let data = layer_dir.join(LAYER_FILE);
        seeded_file(&data, size, i as u64)?;
        let hashoffset = if layout == VerityLayout::Containerd { size } else { 0 };
        let geometry = verity::geometry_for(size, hashoffset)?;
        let built = tree::build(&FileSource::open(&data)?, &geometry, tree::default_threads(), &|_| {})?;
        let area = verity::HashArea::new(&geometry, &built, [i as u8; 16]);
        let hash = match layout {
            VerityLayout::Containerd => data.clone(),
            VerityLayout::Separate => layer_dir.join(VERITY_FILE),
        };
        area.write(&data, layout, &hash)?;
        let sidecar = (layout == VerityLayout::Containerd).then(|| layer_dir.join(SIDECAR_FILE));
        if let Some(sidecar) = &sidecar {
            std::fs::write(
                sidecar,
                format!(r#"{{"roothash":"{}","hashoffset":{hashoffset}}}"#, area.root_hash()),
            )?;
        }
        targets.push(veritylab::watch::LayerTarget {
            layer: format!("layer-{i:02}"),
            layout,
            data,
            hash,
            sidecar,
            geometry,
            root: area.root_hash(),
            source: veritylab::watch::PinSource::ConversionRecord,
        });
    }
    Ok(targets)
}

/// Writes `len` bytes of pseudo-random data, a different stream for each `seed`.
fn seeded_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x243f_6a88_85a3_08d3 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}
