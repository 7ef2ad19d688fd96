//! Criterion benchmarks of the hashing load: block digests and whole-tree builds, one thread and all.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use verity_fuse::hash::BlockHasher;
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
    for threads in [1, tree::default_threads()] {
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| tree::build(&data, &geometry, threads, &|_| {}).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, digests, tree_build);
criterion_main!(benches);
