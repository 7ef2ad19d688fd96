//! Criterion benchmark of `format` with FEC against `veritysetup format --fec-device` in the same run: the
//! tree and the Reed-Solomon parity of a 16 MiB file, written to files, for 2 and 24 parity roots.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use verity_fuse::fec::{self, FecLayout, FecParams, covered_blocks};
use verity_fuse::params::{Geometry, Placement, VerityParams};
use verity_fuse::source::FileSource;
use verity_fuse::tree;

const SIZE: u64 = 16 << 20;
const SALT: &str = "0707070707070707070707070707070707070707070707070707070707070707";

/// Our format with FEC through the library, as the command does it: tree, hash file, parity from the files.
fn ours(dir: &Path, roots: u32, threads: usize) {
    let data = FileSource::open(&dir.join("data")).unwrap();
    let geometry = Geometry::new(
        VerityParams::new(SIZE / 4096, vec![7; 32]),
        Placement::with_superblock(0),
    )
    .unwrap();
    let built = tree::build(&data, &geometry, threads, &|_| {}).unwrap();
    let area = built.hash_area(&geometry, [1; 16]);
    let hash_file = std::fs::File::create(dir.join("hash")).unwrap();
    hash_file.write_all_at(&area, 0).unwrap();
    let hash = FileSource::open(&dir.join("hash")).unwrap();
    let params = FecParams {
        roots,
        blocks: covered_blocks(&geometry, area.len() as u64),
        offset: 0,
    };
    let layout = FecLayout::new(&geometry, params).unwrap();
    let parity = fec::encode(&layout, &data, &hash, threads).unwrap();
    std::fs::write(dir.join("fec"), parity).unwrap();
}

fn veritysetup(tool: &Path, dir: &Path, roots: u32) {
    let status = Command::new(tool)
        .current_dir(dir)
        .args(["format", "--salt", SALT, "--fec-device", "fec", "--fec-roots"])
        .arg(roots.to_string())
        .args(["data", "hash"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn format_with_fec(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..SIZE).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("data"), data).unwrap();
    let tool = testkit::find_tool("veritysetup");
    if tool.is_none() {
        eprintln!("fec bench: veritysetup is not installed; only our side runs");
    }
    let mut group = c.benchmark_group("format_fec_16MiB");
    group.throughput(Throughput::Bytes(SIZE));
    group.sample_size(10);
    for roots in [2, 24] {
        for threads in [1, tree::default_threads()] {
            group.bench_function(BenchmarkId::new(format!("verity_fuse_threads_{threads}"), roots), |b| {
                b.iter(|| ours(dir.path(), roots, threads))
            });
        }
        if let Some(tool) = &tool {
            group.bench_function(BenchmarkId::new("veritysetup", roots), |b| {
                b.iter(|| veritysetup(tool, dir.path(), roots))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, format_with_fec);
criterion_main!(benches);
