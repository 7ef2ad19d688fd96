//! Criterion benchmarks of the hashing load: block digests per algorithm, runs of sha256 blocks through each
//! engine this CPU runs (portable `sha2`, two-way SHA-NI, eight-lane AVX2, sixteen-lane AVX-512), and
//! whole-tree builds per engine, one thread and all.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use verity_fuse::hash::{BlockHasher, Engine, set_process_engine};
use verity_fuse::params::{Geometry, Placement, VerityParams};
use verity_fuse::{Algorithm, tree};

fn digests(c: &mut Criterion) {
    let mut group = c.benchmark_group("block_digest_4k");
    let block = vec![0x5au8; 4096];
    group.throughput(Throughput::Bytes(4096));
    for alg in Algorithm::ALL {
        let hasher = BlockHasher::new(alg, &[7u8; 32], true);
        group.bench_function(BenchmarkId::from_parameter(alg), |b| {
            b.iter(|| hasher.digest(black_box(&block)))
        });
    }
    group.finish();
}

/// A run of 64 blocks of 4 KiB (a 256 KiB read, or a slice of a tree level) through each sha256 engine this
/// CPU runs.
fn engines(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256_engine_run_64x4k");
    let data: Vec<u8> = (0..64 * 4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    group.throughput(Throughput::Bytes(data.len() as u64));
    for salt_first in [true, false] {
        let hash_type = if salt_first { "hash_type_1" } else { "hash_type_0" };
        for engine in Engine::supported() {
            let hasher = BlockHasher::new(Algorithm::Sha256, &[7u8; 32], salt_first).with_engine(engine);
            group.bench_function(BenchmarkId::new(engine.name().as_str(), hash_type), |bench| {
                bench.iter(|| {
                    let mut last = None;
                    hasher.digest_many(black_box(&data).chunks_exact(4096), |_, d| last = Some(d));
                    last
                })
            });
        }
    }
    group.finish();
}

/// A whole tree over 64 MiB with each engine, on one thread and on every core.
fn tree_build(c: &mut Criterion) {
    let size = 64u64 << 20;
    let data: Vec<u8> = (0..size).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    let geometry = Geometry::new(
        VerityParams::new(size / 4096, vec![7; 32]),
        Placement::with_superblock(0),
    )
    .unwrap();
    let mut group = c.benchmark_group("tree_build_64MiB_sha256");
    group.throughput(Throughput::Bytes(size));
    group.sample_size(10);
    for engine in Engine::supported() {
        set_process_engine(engine);
        for threads in [1, tree::default_threads()] {
            group.bench_function(
                BenchmarkId::new(engine.name().as_str(), format!("threads_{threads}")),
                |b| b.iter(|| tree::build(&data, &geometry, threads, &|_| {}).unwrap()),
            );
        }
    }
    set_process_engine(Engine::fastest());
    group.finish();
}

criterion_group!(benches, digests, engines, tree_build);
criterion_main!(benches);
