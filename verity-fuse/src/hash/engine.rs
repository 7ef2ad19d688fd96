//! The SHA-256 engines: which this CPU runs, which is fastest, and which this process uses.
//!
//! An [`Engine`] is made only by probing the CPU ([`Engine::new`]), so holding one proves its instructions
//! run here. [`Engine::fastest`] calibrates every engine the CPU runs once per process, hashing a few blocks
//! with each (bounded in time), and keeps the fastest; [`set_process_engine`] overrides that choice for the
//! whole process (the `--engine` flag), and [`Engine::process`] is what new hashers use.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::{Algorithm, BlockHasher, avx2_x8, avx512_x16, sha_ni_x2};

/// The name of a SHA-256 engine, as `--engine` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineName {
    /// The `sha2` crate, one block at a time (it uses SHA-NI for that one block where the CPU has it).
    Portable,
    /// Two blocks at once, interleaved, with the SHA extensions.
    ShaNiX2,
    /// Eight blocks at once, one per 32-bit lane of AVX2.
    Avx2X8,
    /// Sixteen blocks at once, one per 32-bit lane of AVX-512.
    Avx512X16,
}

impl EngineName {
    /// Every engine.
    pub const ALL: [EngineName; 4] = [Self::Portable, Self::ShaNiX2, Self::Avx2X8, Self::Avx512X16];

    /// The name as `--engine` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::ShaNiX2 => "sha-ni-x2",
            Self::Avx2X8 => "avx2-x8",
            Self::Avx512X16 => "avx512-x16",
        }
    }

    /// Blocks the engine hashes at once.
    pub fn lanes(self) -> usize {
        match self {
            Self::Portable => 1,
            Self::ShaNiX2 => 2,
            Self::Avx2X8 => avx2_x8::LANES,
            Self::Avx512X16 => avx512_x16::LANES,
        }
    }

    /// The CPU features the engine needs.
    pub fn needs(self) -> &'static str {
        match self {
            Self::Portable => "nothing",
            Self::ShaNiX2 => "SHA-NI, SSSE3 and SSE4.1",
            Self::Avx2X8 => "AVX2",
            Self::Avx512X16 => "AVX-512 F and BW",
        }
    }
}

impl fmt::Display for EngineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine `{0}` (engines: auto, portable, sha-ni-x2, avx2-x8, avx512-x16)")]
pub struct UnknownEngine(pub String);

/// The `--engine` argument: the fastest engine for this CPU, or a named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// The fastest engine this CPU runs ([`Engine::fastest`]).
    #[default]
    Auto,
    /// This engine, or an error where the CPU does not run it.
    Named(EngineName),
}

impl FromStr for EngineChoice {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        EngineName::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .map(Self::Named)
            .ok_or_else(|| UnknownEngine(s.to_owned()))
    }
}

/// An engine was asked for that this CPU does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("engine {engine} needs {}, which this CPU lacks", engine.needs())]
pub struct EngineUnavailable {
    /// The engine asked for.
    pub engine: EngineName,
}

impl EngineUnavailable {
    /// What kind of failure this is: the engine is not available on this host.
    pub fn class(&self) -> crate::class::ErrorClass {
        crate::class::ErrorClass::Unavailable
    }
}

/// A SHA-256 engine this CPU runs: only [`Engine::new`] makes one, after probing the CPU.
#[derive(Debug, Clone, Copy)]
pub struct Engine(Kind);

/// An engine with the proof of its CPU probe.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Portable,
    ShaNiX2(sha_ni_x2::Engine),
    Avx2X8(avx2_x8::Engine),
    Avx512X16(avx512_x16::Engine),
}

impl Engine {
    /// The portable engine, which runs everywhere.
    pub const PORTABLE: Engine = Engine(Kind::Portable);

    /// The engine `name`, if this CPU runs it.
    pub fn new(name: EngineName) -> Option<Engine> {
        Some(Engine(match name {
            EngineName::Portable => Kind::Portable,
            EngineName::ShaNiX2 => Kind::ShaNiX2(sha_ni_x2::Engine::detect()?),
            EngineName::Avx2X8 => Kind::Avx2X8(avx2_x8::Engine::detect()?),
            EngineName::Avx512X16 => Kind::Avx512X16(avx512_x16::Engine::detect()?),
        }))
    }

    /// The engine `choice` names: [`Engine::fastest`] for `auto`.
    pub fn choose(choice: EngineChoice) -> Result<Engine, EngineUnavailable> {
        match choice {
            EngineChoice::Auto => Ok(Self::fastest()),
            EngineChoice::Named(engine) => Self::new(engine).ok_or(EngineUnavailable { engine }),
        }
    }

    /// Every engine this CPU runs.
    pub fn supported() -> Vec<Engine> {
        EngineName::ALL.into_iter().filter_map(Self::new).collect()
    }

    /// The engine's name.
    pub fn name(self) -> EngineName {
        match self.0 {
            Kind::Portable => EngineName::Portable,
            Kind::ShaNiX2(_) => EngineName::ShaNiX2,
            Kind::Avx2X8(_) => EngineName::Avx2X8,
            Kind::Avx512X16(_) => EngineName::Avx512X16,
        }
    }

    pub(super) fn kind(self) -> Kind {
        self.0
    }

    /// The two-way SHA-NI compressor for the blocks a wider engine leaves over, where the CPU has SHA-NI and
    /// this engine is not the portable one.
    pub(super) fn pair(self) -> Option<sha_ni_x2::Engine> {
        match self.0 {
            Kind::Portable => None,
            Kind::ShaNiX2(e) => Some(e),
            Kind::Avx2X8(_) | Kind::Avx512X16(_) => sha_ni_x2::Engine::detect(),
        }
    }

    /// The fastest engine this CPU runs, calibrated once per process ([`Calibration::get`]).
    pub fn fastest() -> Engine {
        Calibration::get().chosen
    }

    /// The engine new hashers use in this process: the one [`set_process_engine`] set, else
    /// [`Engine::fastest`].
    pub fn process() -> Engine {
        match PROCESS_ENGINE.load(Ordering::Relaxed) {
            0 => Self::fastest(),
            n => EngineName::ALL
                .get(usize::from(n) - 1)
                .and_then(|&name| Self::new(name))
                .expect("only an engine this CPU runs is set"),
        }
    }
}

/// The engine [`set_process_engine`] set, as its index in [`EngineName::ALL`] plus one; 0 for none.
static PROCESS_ENGINE: AtomicU8 = AtomicU8::new(0);

/// Makes `engine` the one every hasher made afterwards in this process uses for sha256.
pub fn set_process_engine(engine: Engine) {
    let index = EngineName::ALL
        .iter()
        .position(|&n| n == engine.name())
        .expect("every engine is listed");
    PROCESS_ENGINE.store(index as u8 + 1, Ordering::Relaxed);
}

/// What the calibration measured: each engine's rate over 4 KiB blocks, and the one it chose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calibration {
    /// The fastest engine.
    #[serde(serialize_with = "serialize_engine")]
    pub chosen: Engine,
    /// Bytes per second each engine this CPU runs reached, best of a few short runs.
    pub rates: Vec<(EngineName, f64)>,
}

fn serialize_engine<S: serde::Serializer>(engine: &Engine, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&engine.name(), s)
}

/// Blocks one calibration run hashes: two groups of the widest engine.
const CALIBRATION_BLOCKS: usize = 32;
/// Runs per engine; the fastest counts, so a run slowed by another process does not.
const CALIBRATION_RUNS: usize = 5;
/// Time after which the calibration stops measuring and chooses among what it has.
const CALIBRATION_BUDGET: Duration = Duration::from_millis(50);

impl Calibration {
    /// The calibration of this process, measured on first use: each engine this CPU runs hashes
    /// 32 4 KiB blocks a few times (a few milliseconds in all, never more than about
    /// 50 ms), and the fastest rate wins. With one engine there is nothing to measure.
    pub fn get() -> &'static Calibration {
        static CALIBRATION: OnceLock<Calibration> = OnceLock::new();
        CALIBRATION.get_or_init(Self::measure)
    }

    fn measure() -> Calibration {
        let engines = Engine::supported();
        if engines.len() == 1 {
            return Calibration {
                chosen: engines[0],
                rates: Vec::new(),
            };
        }
        let data: Vec<u8> = (0..CALIBRATION_BLOCKS * 4096).map(|i| (i * 31 % 251) as u8).collect();
        let started = Instant::now();
        let mut rates = Vec::new();
        for engine in engines {
            let hasher = BlockHasher::with(Algorithm::Sha256, &[0x5a; 32], true, engine);
            let mut best = Duration::MAX;
            for _ in 0..CALIBRATION_RUNS {
                let t = Instant::now();
                let mut sink = 0u8;
                hasher.digest_many(data.chunks_exact(4096), |_, d| sink ^= d.as_bytes()[0]);
                std::hint::black_box(sink);
                best = best.min(t.elapsed());
                if started.elapsed() > CALIBRATION_BUDGET {
                    break;
                }
            }
            rates.push((engine.name(), data.len() as f64 / best.as_secs_f64().max(1e-9)));
        }
        let best = rates
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|&(name, _)| name)
            .unwrap_or(EngineName::Portable);
        Calibration {
            chosen: Engine::new(best).unwrap_or(Engine::PORTABLE),
            rates,
        }
    }
}
