//! Criterion benchmarks of verified reads through `VerifiedDevice`: sequential and random 4 KiB reads with a
//! warm hash-block cache (every hash block already verified) and a cold one (the cache dropped before each
//! read, so every read walks the tree from the root), against a plain read of the same bytes.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verity_fuse::device::Options;
use verity_fuse::params::{Geometry, Placement, VerityParams};
use verity_fuse::{ReadAt, VerifiedDevice, tree};

const BLOCKS: u64 = 16384;

fn reads(c: &mut Criterion) {
    let data: Vec<u8> = (0..BLOCKS * 4096).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    let geometry = Geometry::new(VerityParams::new(BLOCKS, vec![7; 32]), Placement::default()).unwrap();
    let built = tree::build(&data, &geometry, tree::default_threads(), &|_| {}).unwrap();
    let device = VerifiedDevice::new(
        &data,
        &built.blocks,
        geometry,
        built.root.as_bytes(),
        Options::default(),
    )
    .unwrap();
    let random: Vec<u64> = (0..1024u64).map(|i| (i * 7919 + 13) % BLOCKS).collect();
    let mut buf = vec![0u8; 4096];

    let mut group = c.benchmark_group("read_4k_64MiB_device");
    group.throughput(Throughput::Bytes(4096));
    let mut next = 0u64;
    group.bench_function("plain_sequential", |b| {
        b.iter(|| {
            next = (next + 1) % BLOCKS;
            data.read_at(black_box(next * 4096), &mut buf).unwrap()
        })
    });
    group.bench_function("verified_sequential_warm", |b| {
        b.iter(|| {
            next = (next + 1) % BLOCKS;
            device.read_at(black_box(next * 4096), &mut buf).unwrap()
        })
    });
    let mut i = 0usize;
    group.bench_function("verified_random_warm", |b| {
        b.iter(|| {
            i = (i + 1) % random.len();
            device.read_at(black_box(random[i] * 4096), &mut buf).unwrap()
        })
    });
    group.bench_function("verified_random_cold", |b| {
        b.iter(|| {
            i = (i + 1) % random.len();
            device.drop_caches();
            device.read_at(black_box(random[i] * 4096), &mut buf).unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("read_1MiB_sequential");
    group.throughput(Throughput::Bytes(1 << 20));
    let mut big = vec![0u8; 1 << 20];
    let mut at = 0u64;
    group.bench_function("verified_warm", |b| {
        b.iter(|| {
            at = (at + (1 << 20)) % (BLOCKS * 4096);
            device.read_at(black_box(at), &mut big).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
