//! Side-by-side comparisons of veritylab's tools with their peers, on the same input in the same run.
//!
//! `cargo build --release --workspace && target/release/compare [--size-mib N] [--runs N]`
//!
//! - `verity-fuse format` vs `veritysetup format` (same salt and UUID; the outputs are checked identical)
//! - `verity-fuse verify` vs `veritysetup verify`
//!
//! Each command runs once to warm the page cache, then `--runs` times; the median is reported.
#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::{Context, Result, bail};
use benches::{Timing, random_file, sibling_binary};

const SALT: &str = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d";
const UUID: &str = "12345678-9abc-4def-8123-456789abcdef";

struct Args {
    size_mib: u64,
    runs: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        size_mib: 1024,
        runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => args.size_mib = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--help" | "-h" => {
                println!("usage: compare [--size-mib N (default 1024)] [--runs N (default 5)]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    Ok(args)
}

fn row(what: &str, ours: Timing, peer: Timing, peer_name: &str, mib: u64) {
    let secs = |t: Timing| t.median.as_secs_f64();
    println!(
        "{what:<32} verity-fuse {:>8.3} s ({:>7.0} MiB/s)   {peer_name} {:>8.3} s ({:>7.0} MiB/s)   speed-up {:.2}x",
        secs(ours),
        mib as f64 / secs(ours),
        secs(peer),
        mib as f64 / secs(peer),
        secs(peer) / secs(ours)
    );
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let ours = sibling_binary("verity-fuse")?;
    let veritysetup =
        testkit::find_tool("veritysetup").context("veritysetup not found (apt-get install cryptsetup-bin)")?;
    let dir = tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))?;
    let data = dir.path().join("data");
    random_file(&data, args.size_mib << 20)?;
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (d, h_ours, h_peer) = (p("data"), p("hash.ours"), p("hash.veritysetup"));
    let format = |hash: &str| {
        vec![
            "format".to_owned(),
            "--salt".into(),
            SALT.into(),
            "--uuid".into(),
            UUID.into(),
            d.clone(),
            hash.to_owned(),
        ]
    };
    let (f_ours, f_peer) = (format(&h_ours), format(&h_peer));

    println!(
        "input: {} MiB of random data, sha256, 4096/4096, {} runs (median), {} cores",
        args.size_mib,
        args.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Timing::measure(&ours, &refs(&f_ours), 1)?;
    let t_ours = Timing::measure(&ours, &refs(&f_ours), args.runs)?;
    let t_peer = Timing::measure(&veritysetup, &refs(&f_peer), args.runs)?;
    if std::fs::read(&h_ours)? != std::fs::read(&h_peer)? {
        bail!("hash devices differ: the comparison is void");
    }
    row("format", t_ours, t_peer, "veritysetup", args.size_mib);
    let mut one_thread = f_ours.clone();
    one_thread.insert(1, "--threads=1".into());
    let t_one = Timing::measure(&ours, &refs(&one_thread), args.runs)?;
    row(
        "format (verity-fuse on 1 thread)",
        t_one,
        t_peer,
        "veritysetup",
        args.size_mib,
    );

    let root = root_hash(&veritysetup, Path::new(&d), Path::new(&h_peer))?;
    let v = |hash: &str| vec!["verify".to_owned(), d.clone(), hash.to_owned(), root.clone()];
    let (v_ours, v_peer) = (v(&h_ours), v(&h_peer));
    let t_ours = Timing::measure(&ours, &refs(&v_ours), args.runs)?;
    let t_peer = Timing::measure(&veritysetup, &refs(&v_peer), args.runs)?;
    row("verify", t_ours, t_peer, "veritysetup", args.size_mib);
    Ok(())
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The root hash veritysetup prints for the formatted pair.
fn root_hash(veritysetup: &Path, data: &Path, hash: &Path) -> Result<String> {
    let out = std::process::Command::new(veritysetup)
        .args(["format", "--salt", SALT, "--uuid", UUID])
        .arg(data)
        .arg(hash)
        .output()?;
    String::from_utf8(out.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:").map(|v| v.trim().to_owned()))
        .context("no root hash in veritysetup's output")
}
