//! The guest kernel: Debian's cloud kernel package, fetched once with `apt-get download`, unpacked with
//! `dpkg -x` into `<target>/kernel-vm/kernels/<package>/` and reused by every later run.
//!
//! The package is the one `linux-image-cloud-amd64` depends on (`apt-cache depends`). Two test processes
//! may fetch at once: each unpacks into its own hidden scratch directory and renames the finished tree into
//! place; the loser of the rename finds the winner's tree and uses it. A tree is only ever visible complete.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::VmError;
use crate::host;
use crate::modinfo;
use crate::process;

/// The metapackage whose dependency is the kernel to boot.
pub(crate) const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// Time allowed for `apt-cache`, `apt-get download` (about 27 MB) and `dpkg -x`, each.
const FETCH_LIMIT: Duration = Duration::from_secs(300);

/// Which Debian cloud kernel a VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Series {
    /// Bookworm's own (6.1): dm-verity with root-hash signatures against the secondary keyring only, no IPE,
    /// no ECDSA keys.
    #[default]
    Bookworm,
    /// bookworm-backports (6.12): root-hash signatures also against the `.platform` keyring (filled from the
    /// UEFI `db`), ECDSA keys, IPE. Its modules ship as `.ko.xz`, decompressed when the package is unpacked.
    Backports,
}

impl Series {
    /// The argument of `apt-cache depends` naming the metapackage in this series.
    fn metapackage(self) -> String {
        match self {
            Self::Bookworm => METAPACKAGE.to_owned(),
            Self::Backports => format!("{METAPACKAGE}/bookworm-backports"),
        }
    }

    /// Whether a cached package belongs to this series (6.1 versus 6.12 kernels).
    fn owns(self, package: &str) -> bool {
        let backports = package.starts_with("linux-image-6.12.");
        backports == (self == Self::Backports)
    }
}

/// An unpacked kernel package: the bootable image and its modules.
#[derive(Debug, Clone)]
pub struct Kernel {
    package: String,
    release: String,
    vmlinuz: PathBuf,
    modules: PathBuf,
}

impl Kernel {
    /// Returns the cached kernel of `series`, fetching and unpacking it first if needed.
    pub(crate) fn obtain(series: Series) -> Result<Self, VmError> {
        let cache = cache_dir();
        let package = match kernel_package(series) {
            Ok(package) => package,
            // Without apt (no lists, no apt-cache) a kernel cached earlier still boots.
            Err(error) => return cached_any(&cache, series).ok_or(error)?,
        };
        let tree = cache.join(&package);
        if tree.is_dir() {
            return Self::from_tree(&package, &tree);
        }
        fetch(&cache, &package)
    }

    /// Reads the layout of an unpacked package at `root`.
    fn from_tree(package: &str, root: &Path) -> Result<Self, VmError> {
        let layout = |detail: String| VmError::Kernel {
            step: "reading the unpacked package",
            detail: format!("{}: {detail}", root.display()),
        };
        let boot = root.join("boot");
        let entries = fs::read_dir(&boot).map_err(|e| layout(format!("no boot directory: {e}")))?;
        let release = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_owned))
            .max()
            .ok_or_else(|| layout("no boot/vmlinuz-*".into()))?;
        let modules = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|dir| root.join(dir).join(&release))
            .find(|dir| dir.join("modules.order").is_file())
            .ok_or_else(|| layout(format!("no lib/modules/{release}/modules.order")))?;
        Ok(Self {
            package: package.to_owned(),
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            release,
            modules,
        })
    }

    /// The Debian package the kernel came from (`linux-image-6.1.0-56-cloud-amd64`).
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The kernel release (`6.1.0-56-cloud-amd64`).
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The bootable kernel image.
    pub fn vmlinuz(&self) -> &Path {
        &self.vmlinuz
    }

    /// The module files for `wanted` and everything they depend on, in a load order that puts every module
    /// after its dependencies, as `(name, path)`. Modules built into the kernel are left out.
    pub(crate) fn modules_in_load_order(&self, wanted: &[String]) -> Result<Vec<(String, PathBuf)>, VmError> {
        let files = self.module_index("modules.order")?;
        let builtin: BTreeSet<String> = self.module_index("modules.builtin")?.into_keys().collect();
        let mut deps = BTreeMap::new();
        let mut pending: Vec<String> = wanted.iter().map(|name| modinfo::normalize(name)).collect();
        while let Some(name) = pending.pop() {
            if deps.contains_key(&name) {
                continue;
            }
            let module_deps = if builtin.contains(&name) {
                Vec::new()
            } else {
                let path = files
                    .get(&name)
                    .ok_or_else(|| VmError::ModuleMissing { name: name.clone() })?;
                let bytes = fs::read(path).map_err(VmError::io(format!("reading {}", path.display())))?;
                modinfo::depends(&bytes).map_err(|source| VmError::Modinfo {
                    path: path.clone(),
                    source,
                })?
            };
            pending.extend(module_deps.iter().cloned());
            deps.insert(name, module_deps);
        }
        let order = modinfo::load_order(wanted, &deps).map_err(|name| VmError::ModuleMissing { name })?;
        Ok(order
            .into_iter()
            .filter(|name| !builtin.contains(name))
            .filter_map(|name| files.get(&name).cloned().map(|path| (name, path)))
            .collect())
    }

    /// Normalized module name to file, from a `modules.order`-style list of `kernel/.../name.ko` lines.
    fn module_index(&self, list: &str) -> Result<BTreeMap<String, PathBuf>, VmError> {
        let path = self.modules.join(list);
        let text = fs::read_to_string(&path).map_err(VmError::io(format!("reading {}", path.display())))?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let relative = line.trim();
                let stem = Path::new(relative).file_name()?.to_str()?.strip_suffix(".ko")?;
                Some((modinfo::normalize(stem), self.modules.join(relative)))
            })
            .collect())
    }
}

/// Where unpacked kernels are cached: `$CARGO_TARGET_DIR/kernel-vm/kernels`, else the target directory that
/// holds the running test executable (found by cargo's `CACHEDIR.TAG`), else `<workspace>/target`.
pub(crate) fn cache_dir() -> PathBuf {
    target_dir().join("kernel-vm").join("kernels")
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"))
}

/// The package `linux-image-cloud-amd64` depends on in `series`, from `apt-cache depends`.
fn kernel_package(series: Series) -> Result<String, VmError> {
    let step = match series {
        Series::Bookworm => "apt-cache depends linux-image-cloud-amd64",
        Series::Backports => "apt-cache depends linux-image-cloud-amd64/bookworm-backports",
    };
    let apt_cache = host::require("apt-cache", "apt")?;
    let out = process::run(
        Command::new(apt_cache).args(["depends", &series.metapackage()]),
        FETCH_LIMIT,
    )?;
    if !out.success() {
        return Err(VmError::Kernel {
            step,
            detail: format!("{} (has `apt-get update` run?)", out.describe()),
        });
    }
    parse_depends(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| VmError::Kernel {
        step,
        detail: format!(
            "no linux-image dependency listed (has `apt-get update` run?): {}",
            out.describe()
        ),
    })
}

/// The first `linux-image-*` package in `apt-cache depends` output.
fn parse_depends(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let package = line.trim().trim_start_matches('|').strip_prefix("Depends:")?.trim();
        package.starts_with("linux-image-").then(|| package.to_owned())
    })
}

/// Any kernel already in the cache (the newest name wins), for hosts where apt cannot answer.
fn cached_any(cache: &Path, series: Series) -> Option<Result<Kernel, VmError>> {
    let package = fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("linux-image-") && series.owns(name))
        .max()?;
    Some(Kernel::from_tree(&package, &cache.join(&package)))
}

/// Downloads and unpacks `package` into `cache/<package>` through a scratch directory and a rename.
fn fetch(cache: &Path, package: &str) -> Result<Kernel, VmError> {
    fs::create_dir_all(cache).map_err(VmError::io(format!("creating {}", cache.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(cache)
        .map_err(VmError::io(format!(
            "creating a scratch directory in {}",
            cache.display()
        )))?;
    let apt_get = host::require("apt-get", "apt")?;
    let out = process::run(
        Command::new(apt_get)
            .args(["download", package])
            .current_dir(scratch.path()),
        FETCH_LIMIT,
    )?;
    if !out.success() {
        return Err(VmError::Kernel {
            step: "apt-get download",
            detail: out.describe(),
        });
    }
    let deb = fs::read_dir(scratch.path())
        .map_err(VmError::io("listing the download"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| VmError::Kernel {
            step: "apt-get download",
            detail: "no .deb file was downloaded".into(),
        })?;
    let tree = scratch.path().join("tree");
    let dpkg = host::require("dpkg", "dpkg")?;
    let out = process::run(Command::new(dpkg).arg("-x").arg(&deb).arg(&tree), FETCH_LIMIT)?;
    if !out.success() {
        return Err(VmError::Kernel {
            step: "dpkg -x",
            detail: out.describe(),
        });
    }
    decompress_modules(&tree)?;
    Kernel::from_tree(package, &tree)?;
    let target = cache.join(package);
    if let Err(error) = fs::rename(&tree, &target) {
        // Another process finished first; its tree is as good as ours.
        if !target.is_dir() {
            return Err(VmError::io(format!("moving the kernel into {}", target.display()))(
                error,
            ));
        }
    }
    Kernel::from_tree(package, &target)
}

/// Decompresses every `.ko.xz` module under `tree` in place (`xz -d`), so the module lists' `.ko` names
/// are the files and busybox `insmod` can load them.
fn decompress_modules(tree: &Path) -> Result<(), VmError> {
    let mut compressed = Vec::new();
    let mut dirs = vec![tree.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(VmError::io(format!("listing {}", dir.display())))? {
            let path = entry.map_err(VmError::io(format!("listing {}", dir.display())))?.path();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path);
            } else if path.to_string_lossy().ends_with(".ko.xz") {
                compressed.push(path);
            }
        }
    }
    if compressed.is_empty() {
        return Ok(());
    }
    let xz = host::require("xz", "xz-utils")?;
    for batch in compressed.chunks(256) {
        let out = process::run(Command::new(&xz).arg("-d").args(batch), FETCH_LIMIT)?;
        if !out.success() {
            return Err(VmError::Kernel {
                step: "xz -d of the modules",
                detail: out.describe(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kernel_dependency() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(parse_depends(out).as_deref(), Some("linux-image-6.1.0-56-cloud-amd64"));
        assert_eq!(parse_depends("linux-image-cloud-amd64\n"), None);
        assert!(Series::Backports.owns("linux-image-6.12.95+deb12-cloud-amd64"));
        assert!(!Series::Bookworm.owns("linux-image-6.12.95+deb12-cloud-amd64"));
        assert!(Series::Bookworm.owns("linux-image-6.1.0-56-cloud-amd64"));
        assert_eq!(
            parse_depends("x\n |Depends: linux-image-a\n  Depends: linux-image-b\n").as_deref(),
            Some("linux-image-a")
        );
    }
}
