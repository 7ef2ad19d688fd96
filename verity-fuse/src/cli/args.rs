//! Parameter flags shared by `format` and `verify`, and their validation into a [`Geometry`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::hash::{Algorithm, Calibration, Engine, EngineChoice, EngineName, set_process_engine};
use crate::hex;
use crate::params::{Geometry, HashType, Placement, VerityParams};
use crate::superblock::Superblock;

/// Flags describing a tree, named as veritysetup names them.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ParamArgs {
    /// Hash algorithm: sha256 (default), sha1, sha512, or blake3 (lab only: the kernel refuses it).
    #[arg(long = "hash", value_name = "ALG")]
    pub(crate) algorithm: Option<Algorithm>,
    /// Bytes per data block, a power of two from 512 to 65536 [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub(crate) data_block_size: Option<u32>,
    /// Bytes per hash block, a power of two from 512 to 65536 [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub(crate) hash_block_size: Option<u32>,
    /// Salt as hex, or `-` for none [format default: 32 random bytes].
    #[arg(long, short = 's', value_name = "HEX|-")]
    pub(crate) salt: Option<String>,
    /// Hash type: 1 normal (default), 0 original Chrome OS.
    #[arg(long = "format", value_name = "0|1")]
    pub(crate) hash_type: Option<u32>,
    /// Number of data blocks covered [default: the data file's size in whole blocks].
    #[arg(long, value_name = "BLOCKS")]
    pub(crate) data_blocks: Option<u64>,
    /// Byte offset of the superblock (or tree) on the hash device; lets the tree share the data file.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub(crate) hash_offset: u64,
    /// Do not write or read a superblock: every parameter comes from the flags.
    #[arg(long)]
    pub(crate) no_superblock: bool,
}

impl ParamArgs {
    pub(crate) fn placement(&self) -> Placement {
        Placement {
            hash_offset: self.hash_offset,
            superblock: !self.no_superblock,
        }
    }

    fn salt(&self) -> Result<Option<Vec<u8>>> {
        match self.salt.as_deref() {
            None => Ok(None),
            Some("-") => Ok(Some(Vec::new())),
            Some(text) => Ok(Some(hex::decode("salt", text)?)),
        }
    }

    fn hash_type(&self) -> Result<Option<HashType>> {
        self.hash_type
            .map(|n| HashType::from_number(n).with_context(|| format!("--format {n}: hash type must be 0 or 1")))
            .transpose()
    }

    /// Parameters from the flags alone, with veritysetup's defaults; `default_salt` fills a missing salt.
    pub(crate) fn params(&self, data_len: u64, default_salt: impl FnOnce() -> Vec<u8>) -> Result<VerityParams> {
        let data_block_size = self.data_block_size.unwrap_or(4096);
        let data_blocks = match self.data_blocks {
            Some(n) => n,
            None => {
                if !data_block_size.is_power_of_two() {
                    bail!("--data-block-size {data_block_size} is not a power of two from 512 to 65536");
                }
                data_len / u64::from(data_block_size)
            }
        };
        Ok(VerityParams {
            hash_type: self.hash_type()?.unwrap_or(HashType::Normal),
            algorithm: self.algorithm.unwrap_or(Algorithm::Sha256),
            data_block_size,
            hash_block_size: self.hash_block_size.unwrap_or(4096),
            data_blocks,
            salt: self.salt()?.unwrap_or_else(default_salt),
        })
    }

    /// Checks that every flag given agrees with the superblock's parameters: a superblock is attacker
    /// controlled, so parameters the caller states are never silently replaced by it.
    pub(crate) fn check_against(&self, sb: &VerityParams) -> Result<()> {
        let mut disagreements = Vec::new();
        let mut check = |field: &str, given: Option<String>, found: String| {
            if let Some(given) = given
                && given != found
            {
                disagreements.push(format!("{field}: given {given}, superblock has {found}"));
            }
        };
        check("hash", self.algorithm.map(|a| a.to_string()), sb.algorithm.to_string());
        check(
            "data block size",
            self.data_block_size.map(|v| v.to_string()),
            sb.data_block_size.to_string(),
        );
        check(
            "hash block size",
            self.hash_block_size.map(|v| v.to_string()),
            sb.hash_block_size.to_string(),
        );
        check(
            "data blocks",
            self.data_blocks.map(|v| v.to_string()),
            sb.data_blocks.to_string(),
        );
        check(
            "format",
            self.hash_type()?.map(|t| t.number().to_string()),
            sb.hash_type.number().to_string(),
        );
        check("salt", self.salt()?.map(|s| hex::encode(&s)), hex::encode(&sb.salt));
        if disagreements.is_empty() {
            Ok(())
        } else {
            bail!("parameters disagree with the superblock: {}", disagreements.join("; "))
        }
    }
}

/// The SHA-256 engine flags of the commands that hash whole trees.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct EngineArgs {
    /// SHA-256 engine: auto (the fastest this CPU runs, by features and a short calibration), portable,
    /// sha-ni-x2, avx2-x8 or avx512-x16.
    #[arg(long, value_name = "ENGINE", default_value = "auto")]
    pub(crate) engine: EngineChoice,
    /// Say on stderr which SHA-256 engine hashes, and what the calibration measured.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
}

impl EngineArgs {
    /// Makes the engine asked for the process's engine and returns its name; an engine this CPU does not
    /// run is refused.
    pub(crate) fn apply(&self) -> Result<EngineName> {
        let engine = Engine::choose(self.engine)?;
        set_process_engine(engine);
        if self.verbose {
            let how = match self.engine {
                EngineChoice::Auto => {
                    let rates: Vec<String> = Calibration::get()
                        .rates
                        .iter()
                        .map(|(name, rate)| format!("{name} {:.2} GB/s", rate / 1e9))
                        .collect();
                    format!("fastest in calibration: {}", rates.join(", "))
                }
                EngineChoice::Named(_) => "forced by --engine".to_owned(),
            };
            eprintln!("verity-fuse: sha256 engine {} ({how})", engine.name());
        }
        Ok(engine.name())
    }
}

/// FEC flags, named as veritysetup names them.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FecArgs {
    /// Reed-Solomon parity device (file): written by `format`, used to repair by `verify` and `open`; may be
    /// the hash or data file with --fec-offset past what they hold.
    #[arg(long, value_name = "FILE")]
    pub(crate) fec_device: Option<PathBuf>,
    /// Byte offset of the parity on the FEC device (a multiple of the block size).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub(crate) fec_offset: u64,
    /// Parity bytes per 255-byte codeword, 2 to 24.
    #[arg(long, value_name = "N", default_value_t = crate::fec::DEFAULT_ROOTS)]
    pub(crate) fec_roots: u32,
}

impl FecArgs {
    /// The FEC layout over `geometry` for a FEC device at `fec`, whose hash device `hash` is `hash_len` bytes
    /// long (once written): the parity covers the data and the hash device from the tree's start to its end,
    /// or to the FEC offset when parity shares the hash device, as veritysetup computes `fec_blocks`.
    /// `data` is the data file (when known), whose data area the parity must not overlap when it shares that file.
    pub(crate) fn layout(
        &self,
        geometry: &Geometry,
        fec: &Path,
        data: Option<&Path>,
        hash: &Path,
        hash_len: u64,
    ) -> Result<crate::fec::FecLayout> {
        use crate::fec::{FecLayout, FecParamError, FecParams, layout::covered_blocks};
        crate::fec::layout::check_roots(self.fec_roots)?;
        let shares_hash = same_target(fec, hash);
        if shares_hash {
            let hash_end = geometry.hash_device_size();
            if self.fec_offset < hash_end {
                return Err(FecParamError::OverlapsHash {
                    offset: self.fec_offset,
                    hash_end,
                }
                .into());
            }
            if self.fec_offset > hash_len {
                return Err(FecParamError::PastDeviceEnd {
                    offset: self.fec_offset,
                    len: hash_len,
                }
                .into());
            }
        }
        if data.is_some_and(|data| same_target(fec, data)) && self.fec_offset < geometry.data_size() {
            return Err(FecParamError::OverlapsData {
                offset: self.fec_offset,
                data_end: geometry.data_size(),
            }
            .into());
        }
        let end = if shares_hash { self.fec_offset } else { hash_len };
        Ok(FecLayout::new(
            geometry,
            FecParams {
                roots: self.fec_roots,
                blocks: covered_blocks(geometry, end),
                offset: self.fec_offset,
            },
        )?)
    }
}

/// Reads and parses the superblock at `offset` in the file at `path`.
pub(crate) fn read_superblock(path: &Path, offset: u64) -> Result<Superblock> {
    use crate::ReadAt;
    let file =
        crate::source::FileSource::open(path).with_context(|| format!("opening hash device {}", path.display()))?;
    let mut bytes = vec![0u8; crate::superblock::SIZE];
    let available = file.len().saturating_sub(offset).min(bytes.len() as u64) as usize;
    file.read_at(offset, &mut bytes[..available])
        .with_context(|| format!("reading the superblock of {}", path.display()))?;
    Superblock::parse(&bytes[..available]).with_context(|| format!("{} at offset {offset}", path.display()))
}

/// Validates parameters and placement into a geometry, naming the bad field on failure.
pub(crate) fn geometry(params: VerityParams, placement: Placement) -> Result<Geometry> {
    Ok(Geometry::new(params, placement)?)
}

/// The geometry of an existing tree: from the flags alone with `--no-superblock`, else from the superblock
/// at the hash offset, which flags given must agree with. `data_len` sizes the default data blocks.
pub(crate) fn existing_geometry(args: &ParamArgs, data_len: u64, hash: &Path) -> Result<Geometry> {
    let params = if args.no_superblock {
        args.params(data_len, Vec::new)?
    } else {
        let sb = read_superblock(hash, args.hash_offset)?;
        args.check_against(&sb.params)?;
        sb.params
    };
    geometry(params, args.placement())
}

/// Reads a root hash from an argument or a root-hash file (exactly one must be given).
pub(crate) fn root_hash(arg: Option<&str>, file: Option<&PathBuf>) -> Result<Vec<u8>> {
    let text = match (arg, file) {
        (Some(_), Some(_)) => {
            bail!("give the root hash either as an argument or with --root-hash-file, not both")
        }
        (Some(text), None) => text.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading root hash file {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => bail!("no root hash: give it as an argument or with --root-hash-file"),
    };
    Ok(hex::decode("root hash", &text)?)
}

/// Whether two paths name the same file: the same device and inode when both exist, else the same name in
/// the same directory (a file `format` is about to create).
pub(crate) fn same_target(a: &Path, b: &Path) -> bool {
    if a.exists() && b.exists() {
        return same_file(a, b);
    }
    let absolute = |p: &Path| {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        parent
            .canonicalize()
            .ok()
            .map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    matches!((absolute(a), absolute(b)), (Some(x), Some(y)) if x == y)
}

/// Whether two paths name the same file (both must exist).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
