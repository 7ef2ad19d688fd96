//! Criterion benchmark of reads of the verified device served over FUSE, beside the same reads of the plain
//! file in the same run.
//!
//! Setup: 64 MiB of pseudo-random data and its dm-verity tree (sha256, 4096-byte blocks, separate hash file)
//! are written to a temporary directory under `$TMPDIR` (default `/var/tmp`, so on disk rather than tmpfs)
//! and synced. A `VerifiedDevice` over the two files is mounted with `verity_fuse::fuse::spawn`, as
//! `verity-fuse open --backend fuse` serves it (one serving thread per core, the kernel's readahead of the
//! mount raised to 1 MiB when root), and the `device` file inside the mount is checked byte-identical to
//! the data file before anything is measured.
//!
//! Reads, each made with `pread` on a file opened once:
//!
//! - `seq_128KiB`: the whole 64 MiB, front to back, in 128 KiB reads (one iteration = 64 MiB).
//! - `random_4KiB`: one 4 KiB read at a block-aligned offset taken from a fixed pseudo-random sequence
//!   (one iteration = 4 KiB), on a file descriptor with `POSIX_FADV_RANDOM` so the kernel reads no more
//!   than the block asked for.
//!
//! Cache states, set before every iteration and outside the timed part:
//!
//! - `cold`: nothing cached. The page cache of the file read is dropped (`POSIX_FADV_DONTNEED`); for the FUSE
//!   device that is the page cache of `device` in the mount and of the data and hash files under it, and the
//!   device's cache of verified hash blocks ([`VerifiedDevice::drop_caches`]), so every read goes to the disk
//!   and is verified from the root hash down.
//! - `backing_warm` (FUSE only): the page cache of `device` is dropped, the data and hash files and the
//!   verified hash blocks stay cached. Every read crosses FUSE and is verified, without disk I/O: this is
//!   the cost of FUSE plus verification.
//! - `warm`: everything cached, as after a first read. The device keeps its page cache across opens (only
//!   verified bytes enter it), so warm reads are served by the kernel without reaching the FUSE server.
//!
//! FUSE needs `/dev/fuse` (read-write for this user) and `fusermount3`: without them the bench prints one
//! `SKIP` line with the reason and exits 0, or fails under `VERITYLAB_REQUIRE_ALL=1`. The mount is taken
//! down when the bench ends, also when a measurement fails; only a bench killed by a signal leaves it behind
//! (`umount /var/tmp/veritylab-fuse-bench*/mnt`).

use std::fs::File;
use std::hint::black_box;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use rustix::fs::{Advice, fadvise};
use verity_fuse::device::Options;
use verity_fuse::fuse::{DEVICE_FILE, MountConfig};
use verity_fuse::source::FileSource;
use verity_fuse::{Geometry, Placement, VerifiedDevice, VerityParams, sys, tree};

/// Size of the device.
const DEVICE_BYTES: u64 = 64 << 20;
/// Data (and hash) block size.
const BLOCK: u64 = 4096;
/// Size of one sequential read.
const SEQ_READ: usize = 128 << 10;
/// Offsets in the random sequence before it repeats.
const RANDOM_OFFSETS: usize = 4096;
/// The readahead `verity-fuse open` gives its FUSE devices when root.
const READAHEAD_KIB: u32 = 1024;
/// Name of this bench in skip messages.
const NAME: &str = "benches/fuse";

/// What is cached before an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing: every read goes to the disk (and, for the device, is verified from the root down).
    Cold,
    /// The backing files and verified hash blocks, but not the device's page cache.
    BackingWarm,
    /// Everything.
    Warm,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Cold => "cold",
            State::BackingWarm => "backing_warm",
            State::Warm => "warm",
        }
    }
}

/// The FUSE mount of the device; unmounted on drop, also while a failed measurement unwinds.
struct Mounted {
    point: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Dropping the session unmounts the device; its serving threads end once the kernel lets go. Nothing
        // waits for them, so a mount that failed to go cannot hang the bench.
        drop(self.session.take());
        if verity_fuse::host::is_mount_point(&self.point) {
            eprintln!(
                "{NAME}: {} is still mounted (busy?): detaching it lazily",
                self.point.display()
            );
            if let Err(e) = sys::run_tool(
                "fusermount3",
                "fuse3",
                ["-u".as_ref(), "-z".as_ref(), self.point.as_os_str()],
            ) {
                eprintln!("{NAME}: {e}: unmount {} by hand", self.point.display());
            }
        }
    }
}

/// One file read by the bench, opened once for each access pattern.
struct Target {
    /// Opened for sequential reads.
    seq: File,
    /// Opened with `POSIX_FADV_RANDOM` for random reads.
    random: File,
}

impl Target {
    fn open(path: &Path) -> io::Result<Self> {
        let seq = File::open(path)?;
        let random = File::open(path)?;
        fadvise(&random, 0, None, Advice::Random)?;
        Ok(Self { seq, random })
    }
}

/// The data and hash files, the device mounted over them, and the files read. Fields drop in order: the
/// readers close before the mount goes, and the mount goes before its directory is removed.
struct Fixture {
    plain: Target,
    fused: Target,
    backing: [File; 2],
    device: Arc<VerifiedDevice<FileSource, FileSource>>,
    mount: Mounted,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> anyhow::Result<Self> {
        let base = std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into());
        let dir = tempfile::Builder::new()
            .prefix("veritylab-fuse-bench")
            .tempdir_in(base)?;
        let data_path = dir.path().join("data");
        let hash_path = dir.path().join("hash");
        benches::random_file(&data_path, DEVICE_BYTES)?;
        let geometry = Geometry::new(
            VerityParams::new(DEVICE_BYTES / BLOCK, vec![7; 32]),
            Placement::default(),
        )?;
        let built = tree::build(
            &FileSource::open(&data_path)?,
            &geometry,
            tree::default_threads(),
            &|_| {},
        )?;
        std::fs::write(&hash_path, &built.blocks)?;
        // Written pages must be clean, or dropping the page cache would keep them.
        for path in [&data_path, &hash_path] {
            File::open(path)?.sync_all()?;
        }
        let device = Arc::new(VerifiedDevice::new(
            FileSource::open(&data_path)?,
            FileSource::open(&hash_path)?,
            geometry,
            built.root.as_bytes(),
            Options::default(),
        )?);
        let point = dir.path().join("mnt");
        std::fs::create_dir(&point)?;
        // As the mount table spells it, to find the mount there if it outlives the session.
        let point = point.canonicalize()?;
        // Only this process reads the device, so no `allow_other`, and no `auto_unmount` watcher: the guard
        // unmounts.
        let config = MountConfig {
            threads: tree::default_threads(),
            allow_other: false,
            fs_name: "verity-fuse:fuse-bench".to_owned(),
            auto_unmount: false,
        };
        let session = verity_fuse::fuse::spawn(Arc::clone(&device), &point, &config)?;
        let mount = Mounted {
            point: point.clone(),
            session: Some(session),
        };
        let readahead = if sys::is_root() && sys::set_readahead_kib(&point, READAHEAD_KIB).is_ok() {
            "1 MiB, as `verity-fuse open` sets it"
        } else {
            "the kernel's default (setting it needs root)"
        };
        let fused_path = point.join(DEVICE_FILE);
        let fixture = Self {
            plain: Target::open(&data_path)?,
            fused: Target::open(&fused_path)?,
            backing: [File::open(&data_path)?, File::open(&hash_path)?],
            device,
            mount,
            dir,
        };
        fixture.check_identical()?;
        eprintln!(
            "{NAME}: 64 MiB of data and its tree in {}, the verified device at {}, {} serving threads, \
             FUSE readahead {readahead}",
            fixture.dir.path().display(),
            fixture.mount.point.join(DEVICE_FILE).display(),
            config.threads
        );
        Ok(fixture)
    }

    /// Reads the whole device through FUSE and checks it against the data file, so the reads measured are
    /// real verified reads.
    fn check_identical(&self) -> anyhow::Result<()> {
        let mut ours = vec![0u8; SEQ_READ];
        let mut theirs = vec![0u8; SEQ_READ];
        for at in (0..DEVICE_BYTES).step_by(SEQ_READ) {
            self.fused.seq.read_exact_at(&mut ours, at)?;
            self.plain.seq.read_exact_at(&mut theirs, at)?;
            anyhow::ensure!(
                ours == theirs,
                "the FUSE device differs from the data file at byte {at}"
            );
        }
        let verified = self.device.status().blocks_verified;
        anyhow::ensure!(
            verified >= DEVICE_BYTES / BLOCK,
            "only {verified} blocks were verified reading the whole device"
        );
        Ok(())
    }

    /// Sets the caches of the plain file (`fused` false) or the FUSE device for `state`.
    fn prepare(&self, fused: bool, state: State) -> io::Result<()> {
        let target = if fused { &self.fused } else { &self.plain };
        if state != State::Warm {
            fadvise(&target.seq, 0, None, Advice::DontNeed)?;
        }
        if fused && state == State::Cold {
            for file in &self.backing {
                fadvise(file, 0, None, Advice::DontNeed)?;
            }
            self.device.drop_caches();
        }
        Ok(())
    }

    /// Fills every cache: reads the whole device and the whole data file.
    fn warm_up(&self) -> io::Result<()> {
        let mut buf = vec![0u8; SEQ_READ];
        read_sequential(&self.fused.seq, &mut buf)?;
        read_sequential(&self.plain.seq, &mut buf)
    }
}

/// Reads the whole device from `file` in `buf`-sized reads.
fn read_sequential(file: &File, buf: &mut [u8]) -> io::Result<()> {
    for at in (0..DEVICE_BYTES).step_by(buf.len()) {
        file.read_exact_at(buf, at)?;
    }
    black_box(buf);
    Ok(())
}

/// Block-aligned offsets spread over the device by an xorshift generator, the same on every run.
fn random_offsets() -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..RANDOM_OFFSETS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (DEVICE_BYTES / BLOCK)) * BLOCK
        })
        .collect()
}

/// Benchmarks `read` on the plain file or the FUSE device in `state`; only `read` is timed.
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    fixture: &Fixture,
    fused: bool,
    state: State,
    mut read: impl FnMut(&Target) -> io::Result<()>,
) {
    let name = format!("{}_{}", if fused { "fuse" } else { "plain" }, state.label());
    let target = if fused { &fixture.fused } else { &fixture.plain };
    if state != State::Cold {
        fixture.warm_up().expect("warming the caches");
    }
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                fixture.prepare(fused, state).expect("dropping caches");
                let start = Instant::now();
                read(target).unwrap_or_else(|e| panic!("{name}: read failed: {e}"));
                timed += start.elapsed();
            }
            timed
        })
    });
}

/// Every (file, state) pair measured, in order: cold first, each baseline beside its FUSE counterpart.
const CASES: [(bool, State); 5] = [
    (false, State::Cold),
    (true, State::Cold),
    (true, State::BackingWarm),
    (false, State::Warm),
    (true, State::Warm),
];

fn main() -> anyhow::Result<()> {
    if !testkit::fuse_available(NAME) {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let mut c = Criterion::default().configure_from_args();

    let mut group = c.benchmark_group("fuse_read_seq_128KiB");
    group
        .throughput(Throughput::Bytes(DEVICE_BYTES))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    let mut buf = vec![0u8; SEQ_READ];
    for (fused, state) in CASES {
        bench(&mut group, &fixture, fused, state, |t| {
            read_sequential(&t.seq, &mut buf)
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fuse_read_random_4KiB");
    group.throughput(Throughput::Bytes(BLOCK));
    let offsets = random_offsets();
    let mut buf = vec![0u8; BLOCK as usize];
    let mut next = 0;
    for (fused, state) in CASES {
        bench(&mut group, &fixture, fused, state, |t| {
            next = (next + 1) % offsets.len();
            t.random.read_exact_at(&mut buf, offsets[next])
        });
    }
    group.finish();

    c.final_summary();
    Ok(())
}
