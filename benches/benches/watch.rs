//! Criterion benchmark of the periodic checker: the CPU time (getrusage of the process) of one unbudgeted pass
//! over eight dm-verity protected layers of 4 MiB in both layouts, on one worker and on two. The criterion
//! "time" of each sample is CPU time, not wall time. The budget itself is measured by
//! `benches/src/bin/cpu_budget.rs`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use veritylab::watch::{CpuClock, WatchConfig, Watcher, cpu_time};

fn pass_cpu(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let targets = benches::verity_layers(dir.path(), 8, 4 << 20).expect("layers");
    let bytes: u64 = targets.iter().map(|t| t.geometry.data_size()).sum();
    let mut group = c.benchmark_group("watch_pass_cpu");
    group.throughput(Throughput::Bytes(bytes));
    for workers in [1, 2] {
        let config = WatchConfig {
            cpu_budget_percent: None,
            max_parallel: workers,
            ..WatchConfig::default()
        };
        let watcher = Watcher::new(targets.clone(), Vec::new(), config).expect("config");
        group.bench_function(BenchmarkId::new("workers", workers), |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for i in 0..iters {
                    let start = cpu_time(CpuClock::Process);
                    let report = watcher.pass(i + 1);
                    cpu += cpu_time(CpuClock::Process) - start;
                    assert!(report.clean(), "{report:?}");
                }
                cpu
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = pass_cpu
}
criterion_main!(benches);
