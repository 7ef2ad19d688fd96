//! Side-by-side comparisons of veritylab's tools with their peers, on the same input in the same run.
//!
//! `cargo build --release --workspace && target/release/compare [--size-mib N] [--runs N] [--fuse-only]`
//!
//! - `verity-fuse format` vs `veritysetup format` (same salt and UUID; the outputs are checked identical)
//! - `verity-fuse verify` vs `veritysetup verify`
//! - `verity-fuse format` on one thread with each SHA-256 engine this CPU runs (`--engine`)
//! - sequential reads of the `verity-fuse open` FUSE device vs an unverified FUSE passthrough of the same file
//!   (`bindfs`) and a plain read of the file: cold (page cache dropped), backing cached (only the FUSE file's
//!   cache dropped) and warm (needs root for the mounts)
//!
//! Each command runs once to warm the page cache, then `--runs` times; the median is reported. The FUSE reads
//! also report the CPU time (user + system) each server spends per GiB served, which the machine's load
//! inflates far less than wall time, and the load average beside it. `--fuse-only`
//! runs only the FUSE read comparison (the input is still formatted once by `veritysetup`, untimed).
#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::{Context, Result, bail};
use benches::{Timing, random_file, sibling_binary};

const SALT: &str = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d";
const UUID: &str = "12345678-9abc-4def-8123-456789abcdef";

struct Args {
    size_mib: u64,
    runs: usize,
    fuse_only: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        size_mib: 1024,
        runs: 5,
        fuse_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => args.size_mib = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--fuse-only" => args.fuse_only = true,
            "--help" | "-h" => {
                println!(
                    "usage: compare [--size-mib N (default 1024)] [--runs N (default 5)] [--fuse-only]\n\n\
                     --fuse-only  only the FUSE device reads against bindfs and a plain read (needs root)"
                );
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
    if args.fuse_only {
        let root = root_hash(&veritysetup, Path::new(&d), Path::new(&h_peer))?;
        return fuse_reads(&ours, dir.path(), &d, &h_peer, &root, args.size_mib, args.runs);
    }
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

    for engine in verity_fuse::hash::Engine::supported() {
        let mut forced = one_thread.clone();
        forced.insert(1, format!("--engine={}", engine.name()));
        let t = Timing::measure(&ours, &refs(&forced), args.runs)?;
        row(
            &format!("format (1 thread, engine {})", engine.name()),
            t,
            t_peer,
            "veritysetup",
            args.size_mib,
        );
    }

    let root = root_hash(&veritysetup, Path::new(&d), Path::new(&h_peer))?;
    let v = |hash: &str| vec!["verify".to_owned(), d.clone(), hash.to_owned(), root.clone()];
    let (v_ours, v_peer) = (v(&h_ours), v(&h_peer));
    let t_ours = Timing::measure(&ours, &refs(&v_ours), args.runs)?;
    let t_peer = Timing::measure(&veritysetup, &refs(&v_peer), args.runs)?;
    row("verify", t_ours, t_peer, "veritysetup", args.size_mib);
    fuse_reads(&ours, dir.path(), &d, &h_peer, &root, args.size_mib, args.runs)
}

/// Seconds to read `path` sequentially in 1 MiB requests, after dropping the page cache of every file in
/// `drop` when `cold`.
fn read_seconds(path: &Path, drop: &[&Path], cold: bool) -> Result<f64> {
    use std::io::Read;
    if cold {
        for p in drop {
            let f = std::fs::File::open(p)?;
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
        }
    }
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = std::time::Instant::now();
    while f.read(&mut buf)? > 0 {}
    Ok(start.elapsed().as_secs_f64())
}

/// Medians over `runs` of [`read_seconds`] and of the CPU time (user + system) the process `server` spent
/// during each read (zero for a plain read, which has no server).
fn median_read(path: &Path, drop: &[&Path], server: Option<u32>, runs: usize) -> Result<(f64, f64)> {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let before = server.map(cpu_seconds).transpose()?;
        wall.push(read_seconds(path, drop, true)?);
        let after = server.map(cpu_seconds).transpose()?;
        cpu.push(after.zip(before).map_or(0.0, |(a, b)| a - b));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(wall), median(cpu)))
}

/// The CPU time, user plus system, process `pid` (all its threads) has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields that follow start after the last `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<_, _>>()?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// The load average over the last minute, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The process serving the FUSE device opened with registry `registry`: the `verity-fuse open --foreground`
/// whose arguments name that directory.
fn server_pid(registry: &str) -> Result<u32> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let has = |arg: &str| args.contains(&arg.as_bytes());
        if has("open") && has("--foreground") && has(registry) {
            return Ok(pid);
        }
    }
    bail!("no verity-fuse server serving {registry}")
}

/// FUSE device reads against bindfs and a plain read, cold and warm, median of `runs` each.
fn fuse_reads(ours: &Path, dir: &Path, data: &str, hash: &str, root: &str, mib: u64, runs: usize) -> Result<()> {
    let Some(bindfs) = testkit::find_tool("bindfs") else {
        println!("fuse reads: skipped (bindfs not installed: apt-get install bindfs)");
        return Ok(());
    };
    let registry = dir.join("run");
    let reg = registry.to_string_lossy();
    let open = std::process::Command::new(ours)
        .args(["open", "--backend", "fuse", "--dir", &reg, data, "bench", hash, root])
        .output()?;
    if !open.status.success() {
        bail!("verity-fuse open failed: {}", String::from_utf8_lossy(&open.stderr));
    }
    let device = std::path::PathBuf::from(String::from_utf8(open.stdout)?.trim());
    let passthrough = dir.join("bindfs");
    std::fs::create_dir_all(&passthrough)?;
    let src = Path::new(data).parent().context("data has a parent")?;
    let server = server_pid(&reg)?;
    // In the foreground, so its process is this child and its CPU time can be read.
    let mut peer = std::process::Command::new(&bindfs)
        .arg("-f")
        .arg(src)
        .arg(&passthrough)
        .spawn()?;
    let via_bindfs = passthrough.join("data");
    let started = std::time::Instant::now();
    while !via_bindfs.exists() {
        if let Some(status) = peer.try_wait()? {
            bail!("bindfs exited ({status})");
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = peer.kill();
            bail!("bindfs did not mount within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // verity-fuse raises its device's readahead to 1 MiB when root; give the peer the same, to be fair.
    let same_readahead = verity_fuse::sys::set_readahead_kib(&passthrough, 1024).is_ok();
    println!(
        "fuse reads: bindfs readahead {}",
        if same_readahead {
            "1 MiB, as verity-fuse's"
        } else {
            "left at the kernel default (not root)"
        }
    );
    let data = Path::new(data);
    let result = (|| -> Result<()> {
        // Cold: nothing cached. Backing cached: the file is in the page cache but the FUSE file's own cache is
        // dropped, so every read goes through the FUSE server (and, for verity-fuse, verification) without the
        // disk's noise. Warm: both cached.
        for (label, drop_fuse, drop_data) in [
            ("cold", true, true),
            ("backing cached", true, false),
            ("warm", false, false),
        ] {
            if !drop_data {
                read_seconds(data, &[], false)?;
            }
            if !drop_fuse {
                read_seconds(&device, &[], false)?;
                read_seconds(&via_bindfs, &[], false)?;
            }
            let plain_dropped: Vec<&Path> = if drop_data { vec![data] } else { Vec::new() };
            let load = load_average();
            let (ours, ours_cpu) = median_read(
                &device,
                &to_drop(&device, data, drop_fuse, drop_data),
                Some(server),
                runs,
            )?;
            let (peer_time, peer_cpu) = median_read(
                &via_bindfs,
                &to_drop(&via_bindfs, data, drop_fuse, drop_data),
                Some(peer.id()),
                runs,
            )?;
            let (plain, _) = median_read(data, &plain_dropped, None, runs)?;
            let gib = mib as f64 / 1024.0;
            println!(
                "fuse read {label:<22} verity-fuse {ours:>8.3} s ({:>7.0} MiB/s)   bindfs {peer_time:>8.3} s ({:>7.0} MiB/s)   \
                 ratio {:.2}x of bindfs; plain read {plain:.3} s ({:.0} MiB/s)",
                mib as f64 / ours,
                mib as f64 / peer_time,
                peer_time / ours,
                mib as f64 / plain,
            );
            println!(
                "fuse read {label:<22} server CPU per GiB: verity-fuse {:.3} s, bindfs {:.3} s ({:.2}x); \
                 load average {load} before, {} after",
                ours_cpu / gib,
                peer_cpu / gib,
                ours_cpu / peer_cpu.max(f64::MIN_POSITIVE),
                load_average(),
            );
        }
        Ok(())
    })();
    let _ = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&passthrough)
        .status();
    let _ = peer.wait();
    let _ = std::process::Command::new(ours)
        .args(["close", "--dir", &reg, "bench"])
        .status();
    result
}

/// The files whose page cache a read of `fuse_file` drops first: the FUSE file itself and the backing `data`.
fn to_drop<'a>(fuse_file: &'a Path, data: &'a Path, drop_fuse: bool, drop_data: bool) -> Vec<&'a Path> {
    [(drop_fuse, fuse_file), (drop_data, data)]
        .into_iter()
        .filter_map(|(drop, p)| drop.then_some(p))
        .collect()
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
