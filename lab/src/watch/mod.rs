//! Periodic verification of converted layers at rest, within a CPU budget.
//!
//! Re-checking integrity naively can keep every core busy on a node with many layers. The [`Watcher`]
//! re-verifies every layer file against its pinned root hash (a full dm-verity tree check, top-down, as
//! `veritysetup verify`) in passes, one every `interval`, with at most `max_parallel` layers at a time, and paces the hashing with a
//! token bucket of real CPU time (`budget`) so the process stays within `cpu_budget_percent` of one core
//! however many layers there are.
//!
//! Data flow: [`target::for_images`] pins each layer's files, parameters and root hash from the store
//! once (the root hashes from the node's conversion records, or, through `target::for_verified` and
//! [`target::for_plan`], from a verified signature or the mount's plan of what was verified); each pass, a worker takes the next layer, checks its superblock and sidecar, then runs a
//! [`verity_fuse::tree::Checker`] in steps of `step_blocks` blocks, asking the bucket before every step. Each
//! pass yields a [`PassReport`]: what was checked, when, how long, how many bytes, the CPU used and typed
//! [`DriftFinding`]s.

pub(crate) mod budget;
pub(crate) mod report;
pub(crate) mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use verity_fuse::ErrorClass;
use verity_fuse::tree::{Checker, Step};

use crate::defence::{self, Defence};

pub use budget::{CpuClock, TokenBucket, cpu_time};
pub use report::{DriftFinding, LayerReport, PassReport};
pub use target::{LayerTarget, PinSource, TargetError, Targets, for_images, for_plan};

/// How the watcher runs.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Time from the start of one pass to the start of the next (a pass that takes longer is followed at once).
    pub interval: Duration,
    /// Layers checked at the same time.
    pub max_parallel: usize,
    /// CPU budget in percent of one core; `None` for no limit.
    pub cpu_budget_percent: Option<f64>,
    /// Whose CPU the budget counts.
    pub clock: CpuClock,
    /// Blocks hashed between two looks at the budget (256 blocks of 4 KiB: about half a millisecond of CPU).
    pub step_blocks: u64,
    /// Stop after this many passes; `None` to run until `until`.
    pub passes: Option<u64>,
    /// Stop at this instant, even in the middle of a pass (its unfinished layers are reported incomplete).
    pub until: Option<Instant>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            max_parallel: 1,
            cpu_budget_percent: Some(10.0),
            clock: CpuClock::Process,
            step_blocks: 256,
            passes: Some(1),
            until: None,
        }
    }
}

/// A configuration the watcher cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_parallel` is 0.
    #[error("max parallel must be at least 1")]
    NoParallelism,
    /// The budget is not a positive percentage the workers could use.
    #[error("CPU budget {0}% is not above 0 and at most 100 × max parallel")]
    Budget(f64),
    /// `step_blocks` is 0.
    #[error("step blocks must be at least 1")]
    NoStep,
}

impl ConfigError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

/// Re-verifies a fixed set of layers in passes, within a CPU budget.
#[derive(Debug)]
pub struct Watcher {
    targets: Vec<LayerTarget>,
    unchecked: Vec<DriftFinding>,
    config: WatchConfig,
    bucket: Option<TokenBucket>,
    stop: Option<Arc<AtomicBool>>,
}

impl Watcher {
    /// A watcher of `targets`; `unchecked` are findings about layers that cannot be checked (no conversion),
    /// repeated in every pass report.
    pub fn new(
        targets: Vec<LayerTarget>,
        unchecked: Vec<DriftFinding>,
        config: WatchConfig,
    ) -> Result<Self, ConfigError> {
        if config.max_parallel == 0 {
            return Err(ConfigError::NoParallelism);
        }
        if config.step_blocks == 0 {
            return Err(ConfigError::NoStep);
        }
        if let Some(budget) = config.cpu_budget_percent
            && !(budget > 0.0 && budget <= 100.0 * config.max_parallel as f64)
        {
            return Err(ConfigError::Budget(budget));
        }
        let bucket = config.cpu_budget_percent.map(|b| TokenBucket::new(b, config.clock));
        Ok(Self {
            targets,
            unchecked,
            config,
            bucket,
            stop: None,
        })
    }

    /// Stops the passes early, as `until` does, once `stop` is set (a signal handler's flag): the layers
    /// being checked are reported incomplete.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The layers watched.
    pub fn targets(&self) -> &[LayerTarget] {
        &self.targets
    }

    /// Runs passes until `passes` are done or `until` comes, handing each report to `on_pass` as it ends.
    pub fn run(&self, mut on_pass: impl FnMut(&PassReport)) {
        let done: Result<(), std::convert::Infallible> = self.try_run(|report| {
            on_pass(report);
            Ok(())
        });
        let Ok(()) = done;
    }

    /// [`Watcher::run`] with an `on_pass` that may fail (printing to a closed pipe): the first error ends the
    /// passes and is returned.
    pub fn try_run<E>(&self, mut on_pass: impl FnMut(&PassReport) -> Result<(), E>) -> Result<(), E> {
        let mut pass = 0u64;
        loop {
            if self.config.passes.is_some_and(|n| pass >= n) || self.past_deadline() {
                return Ok(());
            }
            pass += 1;
            let start = Instant::now();
            on_pass(&self.pass(pass))?;
            if self.config.passes.is_some_and(|n| pass >= n) {
                return Ok(());
            }
            let next = start + self.config.interval;
            let wake = self.config.until.map_or(next, |until| until.min(next));
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }

    /// One pass over every layer.
    pub fn pass(&self, number: u64) -> PassReport {
        let started = SystemTime::now();
        let start = Instant::now();
        let cpu_start = cpu_time(CpuClock::Process);
        let next = AtomicUsize::new(0);
        let workers = self.config.max_parallel.min(self.targets.len()).max(1);
        let mut layers: Vec<(usize, LayerReport)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(target) = self.targets.get(i) else {
                                return done;
                            };
                            done.push((i, self.check(target)));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("watch worker panicked"))
                .collect()
        });
        layers.sort_by_key(|(i, _)| *i);
        let duration = start.elapsed();
        let cpu = cpu_time(CpuClock::Process).saturating_sub(cpu_start);
        let layers: Vec<LayerReport> = layers.into_iter().map(|(_, r)| r).collect();
        PassReport {
            pass: number,
            started: crate::utc::rfc3339_millis(started),
            duration,
            bytes: layers.iter().map(|l| l.bytes).sum(),
            cpu,
            cpu_percent: 100.0 * cpu.as_secs_f64() / duration.as_secs_f64().max(1e-9),
            budget_percent: self.config.cpu_budget_percent.unwrap_or(f64::INFINITY),
            layers,
            findings: self.unchecked.clone(),
        }
    }

    fn past_deadline(&self) -> bool {
        self.config.until.is_some_and(|until| Instant::now() >= until)
            || self.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// Checks one layer, pacing each step with the bucket.
    fn check(&self, target: &LayerTarget) -> LayerReport {
        let started = SystemTime::now();
        let start = Instant::now();
        let cpu_start = cpu_time(CpuClock::Threads);
        let mut last = self.bucket.as_ref().map_or(Duration::ZERO, TokenBucket::worker_start);
        let mut bytes = 0;
        let mut complete = false;
        let mut findings = Vec::new();
        let mut pace = || match &self.bucket {
            Some(bucket) => !self.past_deadline() && bucket.pace(&mut last, self.config.until),
            None => !self.past_deadline(),
        };
        if pace() {
            match target.open() {
                Err(finding) => {
                    findings.push(finding);
                    complete = true;
                }
                Ok((data, hash)) => match Checker::new(&data, &hash, &target.geometry, &target.root.digest(), 1) {
                    Err(e) => {
                        findings.push(DriftFinding::from_verity(e, &target.data, &target.hash));
                        complete = true;
                    }
                    Ok(mut checker) => {
                        while pace() {
                            match checker.step(self.config.step_blocks) {
                                Ok(Step::Continue) => continue,
                                Ok(Step::Done) => {}
                                Err(e) => findings.push(DriftFinding::from_verity(e, &target.data, &target.hash)),
                            }
                            complete = true;
                            break;
                        }
                        bytes = checker.bytes_done();
                    }
                },
            }
        }
        if !defence::on(Defence::Reverification) {
            findings.clear();
        }
        LayerReport {
            layer: target.layer.clone(),
            layout: target.layout,
            data: target.data.clone(),
            pinned: target.source.clone(),
            started: crate::utc::rfc3339_millis(started),
            duration: start.elapsed(),
            bytes,
            cpu: cpu_time(CpuClock::Threads).saturating_sub(cpu_start),
            complete,
            findings,
        }
    }
}
