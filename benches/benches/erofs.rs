//! Criterion benchmark of tar → EROFS conversion with our streaming writer: a 32 MiB uncompressed tar of
//! 512 files (64 KiB each, in 16 directories), converted into an image on disk, throughput in tar bytes.
//! `benches/erofs_vs_mkfs.sh` sets the same work beside `tar -x` + `mkfs.erofs`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use veritylab::erofs::{self, Options, OverlayNamespace, Whiteouts};

/// An uncompressed tar of `dirs` × `files` regular files of `size` pseudo-random bytes each.
fn tar_of(dirs: usize, files: usize, size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for d in 0..dirs {
        for f in 0..files {
            let data: Vec<u8> = (0..size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut header = tar::Header::new_ustar();
            header.set_size(size as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("d{d:02}/f{f:03}"), &data[..])
                .expect("appending to a Vec");
        }
    }
    builder.into_inner().expect("finishing a Vec")
}

fn convert(c: &mut Criterion) {
    let tar = tar_of(16, 32, 64 << 10);
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("layer.erofs");
    let mut group = c.benchmark_group("tar_to_erofs");
    group.throughput(Throughput::Bytes(tar.len() as u64));
    group.bench_function("32MiB_512_files", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&out);
            erofs::build_from_tar(
                &out,
                &tar[..],
                Options::default(),
                Whiteouts::Aufs(OverlayNamespace::Trusted),
            )
            .expect("conversion")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = convert
}
criterion_main!(benches);
