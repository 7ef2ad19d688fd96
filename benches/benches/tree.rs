//! Criterion benchmarks of the hashing load: block digests (and the two-way sha256 path against `sha2` one
//! block at a time) and whole-tree builds, one thread and all.
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

/// Two 4 KiB blocks per iteration: `sha2` one block at a time against the two-way SHA-NI path.
fn two_way(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256_pair_4k");
    let (a, b) = (vec![0x5au8; 4096], vec![0xa5u8; 4096]);
    group.throughput(Throughput::Bytes(2 * 4096));
    for salt_first in [true, false] {
        let hasher = BlockHasher::new(Algorithm::Sha256, &[7u8; 32], salt_first);
        let portable = hasher.clone().portable();
        let hash_type = if salt_first { "hash_type_1" } else { "hash_type_0" };
        group.bench_function(BenchmarkId::new("sha2_one_at_a_time", hash_type), |bench| {
            bench.iter(|| [portable.digest(black_box(&a)), portable.digest(black_box(&b))])
        });
        let name = if hasher.is_two_way() {
            "two_way_sha_ni"
        } else {
            "two_way_unavailable_portable"
        };
        group.bench_function(BenchmarkId::new(name, hash_type), |bench| {
            bench.iter(|| hasher.digest_pair(black_box(&a), black_box(&b)))
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

criterion_group!(benches, digests, two_way, tree_build);
criterion_main!(benches);
