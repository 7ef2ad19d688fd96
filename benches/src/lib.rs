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
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
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
