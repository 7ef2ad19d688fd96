//! The periodic checker's CPU use against its budget, measured with getrusage.
//!
//! `cargo build --release -p benches && target/release/cpu_budget [--layers 20] [--total-mib 1100]
//! [--budgets 5,10,25] [--seconds 60] [--other-seconds 30] [--max-parallel 2] [--step-blocks 256]
//! [--results benches/RESULTS.md]`
//!
//! Writes `--layers` dm-verity protected layers totalling `--total-mib` (both of the conversion's layouts,
//! alternating), measures one unbudgeted pass, then runs the watcher back to back (interval 0, so the budget
//! is the only brake) at each budget: `--seconds` for 10% and `--other-seconds` for the others. The CPU share
//! is the process's user + system time (getrusage `RUSAGE_SELF`) over the run divided by its wall time. With
//! `--results FILE` the table replaces the section between the `cpu-budget` markers in FILE (or is appended).
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use veritylab::utc::rfc3339_millis as rfc3339;
use veritylab::watch::{CpuClock, WatchConfig, Watcher, cpu_time};

const BEGIN: &str = "<!-- cpu-budget:begin (written by benches/src/bin/cpu_budget.rs) -->";
const END: &str = "<!-- cpu-budget:end -->";

struct Args {
    layers: usize,
    total_mib: u64,
    budgets: Vec<f64>,
    seconds: u64,
    other_seconds: u64,
    max_parallel: usize,
    step_blocks: u64,
    results: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        layers: 20,
        total_mib: 1100,
        budgets: vec![5.0, 10.0, 25.0],
        seconds: 60,
        other_seconds: 30,
        max_parallel: 2,
        step_blocks: WatchConfig::default().step_blocks,
        results: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--layers" => args.layers = value()?.parse()?,
            "--total-mib" => args.total_mib = value()?.parse()?,
            "--budgets" => {
                args.budgets = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--budgets takes numbers separated by commas")?
            }
            "--seconds" => args.seconds = value()?.parse()?,
            "--other-seconds" => args.other_seconds = value()?.parse()?,
            "--max-parallel" => args.max_parallel = value()?.parse()?,
            "--step-blocks" => args.step_blocks = value()?.parse()?,
            "--results" => args.results = Some(value()?.into()),
            "--help" | "-h" => {
                println!(
                    "usage: cpu_budget [--layers N (20)] [--total-mib N (1100)] [--budgets 5,10,25] \
                     [--seconds S for 10% (60)] [--other-seconds S (30)] [--max-parallel N (2)] [--step-blocks N (256)] [--results FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    if args.layers == 0 {
        bail!("--layers must be at least 1");
    }
    Ok(args)
}

struct Row {
    budget: f64,
    seconds: f64,
    cpu: f64,
    passes: usize,
    bytes: u64,
}

impl Row {
    fn share(&self) -> f64 {
        100.0 * self.cpu / self.seconds
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} × {model}, Linux {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel.trim()
    )
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))?;
    let each = (args.total_mib << 20) / args.layers as u64;
    eprintln!(
        "writing {} layers of {} MiB under {}",
        args.layers,
        each >> 20,
        dir.path().display()
    );
    let targets = benches::verity_layers(dir.path(), args.layers, each)?;
    let total: u64 = targets.iter().map(|t| t.geometry.data_size()).sum();

    let unbudgeted = WatchConfig {
        cpu_budget_percent: None,
        max_parallel: 1,
        passes: Some(1),
        ..WatchConfig::default()
    };
    let watcher = Watcher::new(targets.clone(), Vec::new(), unbudgeted)?;
    let cpu0 = cpu_time(CpuClock::Process);
    let pass = watcher.pass(1);
    let pass_cpu = (cpu_time(CpuClock::Process) - cpu0).as_secs_f64();
    if !pass.clean() {
        bail!(
            "the fresh layers did not verify: {:?}",
            pass.all_findings().collect::<Vec<_>>()
        );
    }
    eprintln!(
        "one unbudgeted pass, 1 worker: {:.2} s wall, {pass_cpu:.2} s CPU for {} MiB",
        pass.duration.as_secs_f64(),
        pass.bytes >> 20
    );

    let load_before = loadavg();
    let started = rfc3339(SystemTime::now());
    let mut rows = Vec::new();
    for &budget in &args.budgets {
        let seconds = if budget == 10.0 {
            args.seconds
        } else {
            args.other_seconds
        };
        let start = Instant::now();
        let config = WatchConfig {
            interval: Duration::ZERO,
            max_parallel: args.max_parallel,
            step_blocks: args.step_blocks,
            cpu_budget_percent: Some(budget),
            clock: CpuClock::Process,
            passes: None,
            until: Some(start + Duration::from_secs(seconds)),
        };
        let watcher = Watcher::new(targets.clone(), Vec::new(), config)?;
        let cpu_start = cpu_time(CpuClock::Process);
        let mut passes = 0;
        let mut bytes = 0;
        watcher.run(|report| {
            passes += usize::from(report.layers.iter().all(|l| l.complete));
            bytes += report.bytes;
            if report.all_findings().next().is_some() {
                eprintln!("unexpected findings in pass {}", report.pass);
            }
        });
        let row = Row {
            budget,
            seconds: start.elapsed().as_secs_f64(),
            cpu: (cpu_time(CpuClock::Process) - cpu_start).as_secs_f64(),
            passes,
            bytes,
        };
        println!(
            "budget {:>5.1}%  measured {:>6.2}% ({:+.2} points)  CPU {:.2} s over {:.1} s  {} full passes, {} MiB hashed",
            row.budget,
            row.share(),
            row.share() - row.budget,
            row.cpu,
            row.seconds,
            row.passes,
            row.bytes >> 20
        );
        rows.push(row);
    }
    let load_after = loadavg();

    let mut section = String::new();
    writeln!(section, "{BEGIN}")?;
    writeln!(
        section,
        "## Periodic verification within a CPU budget: `benches/src/bin/cpu_budget.rs`\n"
    )?;
    writeln!(section, "```sh")?;
    writeln!(
        section,
        "cargo build --release -p benches && target/release/cpu_budget --layers {} --total-mib {} --budgets {} \\\n  --seconds {} --other-seconds {} --max-parallel {} --step-blocks {} --results benches/RESULTS.md",
        args.layers,
        args.total_mib,
        args.budgets.iter().map(f64::to_string).collect::<Vec<_>>().join(","),
        args.seconds,
        args.other_seconds,
        args.max_parallel,
        args.step_blocks
    )?;
    writeln!(section, "```\n")?;
    writeln!(
        section,
        "{} layers, {} MiB in all (alternating containerd's appended tree with its sidecar and the separate \
         tree file), re-verified back to back (interval 0) by {} workers, so the budget is the only brake. CPU \
         is this process's user + system time from getrusage over the whole run. Measured {started} on {}; \
         load average {load_before} before, {load_after} after (other jobs shared the machine).\n",
        args.layers,
        total >> 20,
        args.max_parallel,
        machine()
    )?;
    writeln!(
        section,
        "| budget (% of one core) | run | CPU used | measured share | off by | full passes | hashed |"
    )?;
    writeln!(section, "|---|---|---|---|---|---|---|")?;
    for row in &rows {
        writeln!(
            section,
            "| {} % | {:.1} s | {:.2} s | {:.2} % | {:+.2} points | {} | {} MiB |",
            row.budget,
            row.seconds,
            row.cpu,
            row.share(),
            row.share() - row.budget,
            row.passes,
            row.bytes >> 20
        )?;
    }
    writeln!(
        section,
        "\nWithout a budget one pass over the same layers on one worker took {:.2} s of wall time and {pass_cpu:.2} s \
         of CPU ({:.0} MiB hashed per CPU second; it got {:.0} % of a core from the scheduler while it ran).",
        pass.duration.as_secs_f64(),
        (pass.bytes >> 20) as f64 / pass_cpu.max(1e-9),
        100.0 * pass_cpu / pass.duration.as_secs_f64().max(1e-9)
    )?;
    write!(section, "{END}")?;
    println!("\n{section}");
    if let Some(path) = &args.results {
        update_results(path, &section)?;
        eprintln!("updated {}", path.display());
    }
    Ok(())
}

/// Replaces the marked section of `path` with `section` (or appends it), through a temporary file and a rename.
fn update_results(path: &std::path::Path, section: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if end > begin => format!("{}{section}{}", &text[..begin], &text[end + END.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end_matches('\n')),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, updated.as_bytes())?;
    tmp.persist(path)?;
    Ok(())
}
