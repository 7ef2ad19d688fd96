//! One cell's sandbox: its own store, registry and keys in a temporary directory, the pipeline's steps on
//! them, and the [`attacks::Env`] through which an attack touches them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use attacks::{AttackError, BuildTimes, DefenceRefusal, LayerFiles, MountKind, Replayed, Trojan};
use p256::ecdsa::SigningKey;
use verity_fuse::ErrorClass;
use verity_fuse::fuse::StatusReport;

use super::cell_registry::CellRegistry;
use super::image;
use super::registry_front::{Front, Split};
use super::schema::LayerSpec;
use crate::publisher::Publisher;
use veritylab::convert::{self, LayerConversion, VerityLayout, verity};
use veritylab::mount::emulated::{self, Devices, Layers, Rootfs, TableEntry};
use veritylab::mount::{self, MountError, Plan, Record};
use veritylab::mountinfo::DeviceNumber;
use veritylab::oci::Digest;
use veritylab::oci::manifest::{Descriptor, ImageManifest, Platform};
use veritylab::oci::store_tars;
use veritylab::oci::{self, PushDestination, PushError, PushOptions, PushSource};
use veritylab::profile::{Backend, Profile};
use veritylab::root_hash::RootHash;
use veritylab::rootfs::{Snapshot, SnapshotError};
use veritylab::sign::BuildTimestamp;
use veritylab::sign::Scheme;
use veritylab::sign::kernel_signature;
use veritylab::sign::keys::{self, PublicKey};
use veritylab::sign::{SignError, SignOptions, SignReport, read_image, sign_image};
use veritylab::store::{Store, StoreError};

/// The repository every scenario image is published under (a name only: nothing is contacted).
pub(crate) const REPOSITORY: &str = "lab.example/veritylab/app";
/// The repository the image is pushed to in the cell's `docker-registry` ([`REPOSITORY`] without its host).
pub(crate) const REGISTRY_REPOSITORY: &str = "veritylab/app";
/// The build time of the image under test; the rollback floor sits 30 days before it.
pub(crate) const BUILT: u64 = 1_800_000_000;
/// The policy's minimum build timestamp for the repository (the hardened profile's rollback floor).
pub(crate) const MINIMUM: u64 = BUILT - 30 * 86_400;

/// The running container, as the runner reaches it.
pub(crate) enum Container {
    /// The emulated backend: the rootfs and the verified devices, in this process.
    Emulated {
        /// The rootfs as the container reads it.
        rootfs: Box<Rootfs>,
        /// The verified devices, by layer name.
        devices: Devices,
    },
    /// A real mount (kernel or fuse backend), through the holder's `/proc/PID/root`.
    Real {
        /// The rootfs, as the container's primitives reach it.
        root: PathBuf,
        /// The rootfs as a whole-tree read sees it: the mount's, without the runtime's `/proc`, `/sys` and
        /// `/dev` of a runc container.
        tree: PathBuf,
        /// Each verified device's FUSE directory (holding `device` and `status`), by layer name.
        devices: Vec<(String, PathBuf)>,
        /// Each kernel dm-verity mapping (on hosts with device-mapper), by layer name.
        mappings: Vec<(String, mount::dm::Mapping)>,
    },
}

impl Container {
    /// Reads every entry of the rootfs as the container would.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        match self {
            Container::Emulated { rootfs, .. } => Snapshot::of_merged(&rootfs.merged),
            Container::Real { tree, .. } => Snapshot::of_dir(tree),
        }
    }

    /// The status of each verified device now.
    pub(crate) fn statuses(&self) -> Vec<(String, StatusReport)> {
        match self {
            Container::Emulated { devices, .. } => devices
                .iter()
                .map(|(name, device)| (name.clone(), StatusReport::of(device)))
                .collect(),
            Container::Real { devices, mappings, .. } => devices
                .iter()
                .filter_map(|(name, dir)| {
                    let bytes = fs::read(dir.join(verity_fuse::fuse::STATUS_FILE)).ok()?;
                    Some((name.clone(), serde_json::from_slice(&bytes).ok()?))
                })
                .chain(
                    mappings
                        .iter()
                        .filter_map(|(name, m)| Some((name.clone(), mount::dm::status_report(m)?))),
                )
                .collect(),
        }
    }
}

/// One cell's sandbox.
pub(crate) struct Sandbox {
    /// The temporary directory holding everything.
    pub(crate) dir: tempfile::TempDir,
    /// The node's store.
    pub(crate) store: Store,
    /// The profile.
    pub(crate) profile: Profile,
    /// The backend.
    pub(crate) backend: Backend,
    /// The image's name in the node's store.
    pub(crate) name: String,
    /// The image's layers as built.
    pub(crate) layers: Vec<LayerSpec>,
    /// The signature scheme.
    pub(crate) scheme: Scheme,
    /// The trusted signing key.
    pub(crate) key: SigningKey,
    /// Its public half, the key the node trusts.
    pub(crate) public: PublicKey,
    /// Its X.509 certificate (DER): what the publisher's root-hash signatures name, and what the node's
    /// keyring trusts (`enforced`).
    pub(crate) certificate: Vec<u8>,
    /// The IPE policy signed by the run's [`Publisher`] (DER PKCS#7), when the run has one: what the kernel
    /// backend loads where the kernel has IPE.
    pub(crate) signed_ipe_policy: Option<Vec<u8>>,
    /// The registry the node pulls from (a `docker-registry` of the cell's own, or an OCI layout where that is
    /// not installed), for registry-stage attacks; the runner drops it (stopping the registry) before the
    /// leak check.
    pub(crate) registry: Option<CellRegistry>,
    /// The attacker's front for the registry, when an attack put one between the registry and its clients
    /// (`registry-split-view`); clients reach the registry through it from then on.
    pub(crate) front: Option<Front>,
    /// Open verified devices with `check_at_most_once`.
    pub(crate) check_at_most_once: bool,
    /// The converted layers, base first.
    pub(crate) conversions: Vec<LayerConversion>,
    /// The mount's plan and record, once mounted.
    pub(crate) mounted: Option<(Plan, Record)>,
    /// The container, once mounted.
    pub(crate) container: Option<Container>,
    /// Run a real container under runc on the mount (the `runc` runner backend).
    pub(crate) use_runc: bool,
    /// That container, once started.
    pub(crate) runc: Option<veritylab::container::Container>,
    /// The `veritylab` executable that holds kernel and FUSE mounts.
    pub(crate) exe: PathBuf,
    /// Mounts of a stopped container the attack left behind.
    pub(crate) leaked: Vec<Leak>,
    /// The loop device a replayed layer mount uses, to detach on revert.
    pub(crate) replayed: Option<PathBuf>,
    /// The processes that replaced the runc container's own (`container-pid-replay`), killed on revert.
    pub(crate) replaced_process: Option<super::process_replay::Replaced>,
    /// Whether the node's policy requires a signature for the image's repository (an attacker may edit it).
    pub(crate) policy_requires_signature: bool,
    /// What the attacker's mounts hold on the emulated backend, which mounts nothing: each mount point with
    /// the host directory (a tmpfs's or a bind mount's files) or EROFS image behind it.
    pub(crate) emulated_mounts: Vec<(PathBuf, MountKind, PathBuf)>,
}

/// One stopped container's mount left behind by [`attacks::Env::leak_mounts`].
#[derive(Debug)]
pub(crate) struct Leak {
    /// The mount's target.
    pub(crate) target: PathBuf,
    /// Its id.
    pub(crate) id: String,
    /// The process still in its namespace after its holder was killed (kernel and fuse backends).
    pub(crate) squatter: Option<std::process::Child>,
}

fn env_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> AttackError + '_ {
    move |e| AttackError::env(format!("{what}: {e}"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AttackError + '_ {
    move |e| AttackError::env(format!("{}: {e}", path.display()))
}

/// A sandbox step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Creating the sandbox's directories failed.
    #[error("creating the sandbox: {0}")]
    Create(#[source] std::io::Error),
    /// The node's or the publisher's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("signing {name}: {source}")]
    Sign {
        /// The image.
        name: String,
        /// Why.
        #[source]
        source: Box<SignError>,
    },
    /// Copying the image into an image layout failed.
    #[error("exporting {name} to {}: {source}", dir.display())]
    Export {
        /// The image.
        name: String,
        /// The layout.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<PushError>,
    },
    /// A layer of the scenario's image cannot be written as a tar.
    #[error("the scenario's layer {index}: {source}")]
    Layer {
        /// Which layer.
        index: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cell's runc container could not start (the `runc` runner backend).
    #[error("starting the cell's runc container: {0}")]
    Runc(String),
}

impl SandboxError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            SandboxError::Create(_) | SandboxError::Runc(_) => ErrorClass::Io,
            SandboxError::Store(e) => e.class(),
            SandboxError::Sign { source, .. } => source.class(),
            SandboxError::Export { source, .. } => source.class(),
            SandboxError::Layer { .. } => ErrorClass::BadInput,
        }
    }
}

impl Sandbox {
    /// A fresh sandbox for one cell.
    pub(crate) fn new(
        profile: Profile,
        backend: Backend,
        layers: Vec<LayerSpec>,
        scheme: Scheme,
        exe: &Path,
        publisher: Option<&Publisher>,
    ) -> Result<Self, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("veritylab-scenario-")
            .tempdir()
            .map_err(SandboxError::Create)?;
        let store = Store::open(&dir.path().join("store"))?;
        fs::create_dir_all(dir.path().join("scratch")).map_err(SandboxError::Create)?;
        let (key, certificate) = match publisher {
            Some(publisher) => (publisher.key().clone(), publisher.certificate().to_vec()),
            None => {
                let key = keys::generate();
                let certificate = kernel_signature::self_signed_certificate(&key, "veritylab scenario publisher")
                    .map_err(|source| SandboxError::Sign {
                        name: REPOSITORY.to_owned(),
                        source: Box::new(SignError::KernelSignature(source)),
                    })?;
                (key, certificate)
            }
        };
        let public = PublicKey::new(*key.verifying_key(), Path::new("scenario.pub"));
        Ok(Self {
            dir,
            store,
            profile,
            backend,
            name: format!("{REPOSITORY}:v1"),
            layers,
            scheme,
            key,
            public,
            certificate,
            signed_ipe_policy: publisher.map(|p| p.ipe_policy().to_vec()),
            registry: None,
            front: None,
            check_at_most_once: false,
            conversions: Vec::new(),
            mounted: None,
            container: None,
            use_runc: false,
            runc: None,
            exe: exe.to_owned(),
            leaked: Vec::new(),
            replayed: None,
            replaced_process: None,
            policy_requires_signature: true,
            emulated_mounts: Vec::new(),
        })
    }

    /// The attacker's scratch directory.
    pub(crate) fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Stores an unsigned image of `layers` in `store` under `name` (the lab's [`store_tars`]); returns its
    /// manifest descriptor.
    pub(crate) fn store_image(store: &Store, name: &str, layers: &[LayerSpec]) -> Result<Descriptor, SandboxError> {
        let tars = layers
            .iter()
            .enumerate()
            .map(|(index, layer)| image::tar(layer).map_err(|source| SandboxError::Layer { index, source }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(store_tars(store, name, &Platform::host(), &tars)?)
    }

    /// Signs `name` in `store` with `key`, built at `built`; returns what was signed.
    pub(crate) fn sign(
        &self,
        store: &Store,
        name: &str,
        key: &SigningKey,
        built: u64,
    ) -> Result<SignReport, SandboxError> {
        let certificate = if key.verifying_key() == self.key.verifying_key() {
            self.certificate.clone()
        } else {
            kernel_signature::self_signed_certificate(key, "veritylab scenario signer").map_err(|source| {
                SandboxError::Sign {
                    name: name.to_owned(),
                    source: Box::new(SignError::KernelSignature(source)),
                }
            })?
        };
        let options = SignOptions {
            key: key.clone(),
            scheme: self.scheme,
            root_hash_key: None,
            tag: None,
            built: BuildTimestamp(built),
            layout: VerityLayout::Containerd,
            kernel_certificate: Some(certificate),
        };
        if let Some(roots) = self.profile.fec_roots() {
            convert::convert_image_with(store, name, VerityLayout::Containerd, Some(roots), &|_| {}).map_err(
                |source| SandboxError::Sign {
                    name: name.to_owned(),
                    source: Box::new(source.into()),
                },
            )?;
        }
        sign_image(store, name, &options, &|_| {}).map_err(|source| SandboxError::Sign {
            name: name.to_owned(),
            source: Box::new(source),
        })
    }

    /// Copies the image `name` (manifest, config, layers) from `from` into the image layout at `dir`, tagged
    /// `tag`, with the lab's own push (the registry of a cell without `docker-registry`; the signature stays in
    /// `from`).
    pub(crate) fn export(from: &Store, name: &str, dir: &Path, tag: &str) -> Result<(), SandboxError> {
        let source = PushSource::Store {
            root: from.root().to_owned(),
            name: name.to_owned(),
        };
        let destination = PushDestination::Layout {
            dir: dir.to_owned(),
            tag: tag.to_owned(),
        };
        oci::push(&source, &destination, &PushOptions::default(), &|_| {})
            .map(drop)
            .map_err(|source| SandboxError::Export {
                name: name.to_owned(),
                dir: dir.to_owned(),
                source: Box::new(source),
            })
    }

    /// The node's trusted certificates for root-hash signatures (`enforced`): the trusted key's certificate,
    /// written on first use.
    pub(crate) fn keyring(&self) -> Result<PathBuf, SandboxError> {
        let path = self.dir.path().join("keyring.crt");
        if !path.exists() {
            fs::write(&path, &self.certificate).map_err(SandboxError::Create)?;
        }
        Ok(path)
    }

    /// The signed IPE policy for the mount to load (`enforced` on a kernel with IPE), written on first use:
    /// the run's [`Publisher`]'s, or `None` without one (the exec rule is then emulated, or the mount refused
    /// where the kernel has IPE and would need a policy).
    pub(crate) fn ipe_policy(&self) -> Result<Option<PathBuf>, SandboxError> {
        let Some(signed) = &self.signed_ipe_policy else {
            return Ok(None);
        };
        let path = self.dir.path().join("veritylab.ipe.p7s");
        if !path.exists() {
            fs::write(&path, signed).map_err(SandboxError::Create)?;
        }
        Ok(Some(path))
    }

    /// The trusted root hashes of the mounted layers, by layer name (for the audit).
    pub(crate) fn trusted(&self) -> BTreeMap<String, RootHash> {
        self.mounted
            .iter()
            .flat_map(|(plan, _)| &plan.layers)
            .filter_map(|l| Some((l.name.clone(), l.root_hash?)))
            .collect()
    }

    /// Opens the container `record` mounted: in process for the emulated backend (the layers opened as the
    /// plan says), through the holder's namespace otherwise.
    pub(crate) fn open_container(&self, plan: &Plan, record: &Record) -> Result<Container, MountError> {
        if record.backend == Backend::Emulated {
            let (merged, devices) = Layers::open(plan)?.merge(plan)?;
            return Ok(Container::Emulated {
                rootfs: Box::new(Rootfs {
                    merged,
                    upper: record.upperdir.clone(),
                    read_only: plan.read_only(),
                }),
                devices,
            });
        }
        Ok(Container::Real {
            root: record.in_namespace(&record.target),
            tree: record.in_namespace(&record.target),
            devices: record
                .layers
                .iter()
                .filter_map(|l| Some((l.name.clone(), record.in_namespace(l.device_dir.as_ref()?))))
                .collect(),
            mappings: record
                .layers
                .iter()
                .filter_map(|l| Some((l.name.clone(), l.dm.clone()?)))
                .collect(),
        })
    }

    fn conversion(&self, index: usize) -> Result<&LayerConversion, AttackError> {
        self.conversions.get(index).ok_or_else(|| {
            AttackError::env(format!(
                "layer {index}: the image has {} converted layers",
                self.conversions.len()
            ))
        })
    }

    /// Runs `mount args` inside the container's mount namespace.
    pub(super) fn mount_inside(&self, args: &[&std::ffi::OsStr]) -> Result<(), AttackError> {
        let holder = match &self.runc {
            Some(container) => container.init.map(|init| init.pid),
            None => self.mounted.as_ref().and_then(|(_, r)| r.holder),
        }
        .ok_or_else(|| AttackError::env("the mount has no holder"))?;
        let mut all: Vec<std::ffi::OsString> = vec!["-t".into(), holder.to_string().into(), "-m".into(), "--".into()];
        if self.runc.is_some() {
            // The container's rootfs has no tools: its busybox is on the scratch volume.
            all.push(format!("{RUNC_SCRATCH}/busybox").into());
        }
        all.extend(args.iter().map(|a| a.to_os_string()));
        verity_fuse::sys::run_tool("nsenter", "util-linux", all)
            .map(drop)
            .map_err(env_err("inside the container's namespace"))
    }

    /// Where `path` (relative to the rootfs) is in the namespace the container primitives act in: under the
    /// target in the holder's, at the root in a runc container's.
    fn in_container(&self, record: &Record, path: &str) -> PathBuf {
        match &self.runc {
            Some(_) => Path::new("/").join(path),
            None => record.target.join(path),
        }
    }

    /// A host path as the runc container sees it: the scratch directory is its volume at
    /// [`RUNC_SCRATCH`]; other paths are the host's (the holder's namespace has them).
    fn source_in_container(&self, source: &Path) -> PathBuf {
        match (&self.runc, source.strip_prefix(self.scratch())) {
            (Some(_), Ok(rel)) => Path::new(RUNC_SCRATCH).join(rel),
            _ => source.to_owned(),
        }
    }

    /// Starts a runc container on the mount (the `runc` runner backend): its process is the host's static
    /// busybox, copied into the scratch directory, which the container has as a read-only volume at
    /// [`RUNC_SCRATCH`] (a mount point the pinned layer has on a read-only rootfs).
    pub(crate) fn start_runc(&mut self) -> Result<(), SandboxError> {
        let Some((plan, record)) = &self.mounted else {
            return Ok(());
        };
        let fail = |e: &dyn std::fmt::Display| SandboxError::Runc(e.to_string());
        let busybox = verity_fuse::sys::find_tool("busybox").ok_or_else(|| fail(&"busybox is not installed"))?;
        fs::copy(&busybox, self.scratch().join("busybox")).map_err(|e| fail(&e))?;
        let volumes = vec![veritylab::container::Volume {
            source: fs::canonicalize(self.scratch()).map_err(|e| fail(&e))?,
            destination: PathBuf::from(RUNC_SCRATCH),
            read_only: true,
        }];
        let args: Vec<String> = [&format!("{RUNC_SCRATCH}/busybox"), "sleep", "100000"]
            .map(str::to_owned)
            .to_vec();
        let name = format!("cell-{}", record.id);
        let dir = veritylab::container::claim(&self.store, &name).map_err(|e| fail(&e))?;
        let start = veritylab::container::Start {
            name: &name,
            args: &args,
            env: &[],
            cwd: "/",
            user: veritylab::container::User { uid: 0, gid: 0 },
            volumes: &volumes,
            detach: true,
        };
        match veritylab::container::start_on(&self.store, &dir, record, veritylab::container::read_only(plan), &start) {
            Ok(container) => {
                if let (Some(Container::Real { root, .. }), Some(init)) =
                    (self.container.as_mut(), container.init.map(|init| init.pid))
                {
                    // `/.` so that what reads the root follows the magic link instead of seeing a symlink.
                    *root = PathBuf::from(format!("/proc/{init}/root/."));
                }
                self.runc = Some(container);
                Ok(())
            }
            Err(e) => {
                let _ = veritylab::container::remove(&self.store, &dir, &name);
                Err(fail(&e))
            }
        }
    }

    /// A loop device over the host's `file`, with its node made in the runc container's `/dev` (which has no
    /// loop devices); it clears itself when the mount on it goes.
    fn loop_in_container(&self, file: &Path) -> Result<PathBuf, AttackError> {
        let device = verity_fuse::sys::run_tool(
            "losetup",
            "mount",
            ["-f".as_ref(), "--show".as_ref(), "-r".as_ref(), file.as_os_str()],
        )
        .map_err(env_err("setting up a loop device"))?;
        let device = PathBuf::from(device.trim());
        let minor = device
            .to_string_lossy()
            .trim_start_matches("/dev/loop")
            .parse::<u32>()
            .map_err(|_| AttackError::env(format!("losetup answered {}", device.display())))?;
        self.mount_inside(&[
            "mknod".as_ref(),
            device.as_os_str(),
            "b".as_ref(),
            "7".as_ref(),
            minor.to_string().as_ref(),
        ])
        .inspect_err(|_| {
            let _ = verity_fuse::sys::run_tool("losetup", "mount", ["-d".as_ref(), device.as_os_str()]);
        })?;
        Ok(device)
    }

    /// Removes the runc container, if one runs (its rootfs mount stays).
    pub(crate) fn stop_runc(&mut self) -> Result<(), veritylab::container::ContainerError> {
        match self.runc.take() {
            Some(container) => veritylab::container::remove(&self.store, &container.bundle, &container.name),
            None => Ok(()),
        }
    }
}

/// Where a runc container of the runner has the cell's scratch directory.
pub(crate) const RUNC_SCRATCH: &str = "/tmp";

impl attacks::Env for Sandbox {
    fn store(&self) -> &Store {
        &self.store
    }

    fn image(&self) -> &str {
        &self.name
    }

    fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn sign(&mut self, name: &str, key: attacks::SigningKey, built: u64) -> Result<Digest, AttackError> {
        let key = match key {
            attacks::SigningKey::Trusted => self.key.clone(),
            attacks::SigningKey::Untrusted => keys::generate(),
        };
        let signed = Sandbox::sign(self, &self.store, name, &key, built).map_err(AttackError::env)?;
        Ok(signed.manifest.digest)
    }

    fn kernel_signature(&self, key: attacks::SigningKey, content: &[u8]) -> Result<Vec<u8>, AttackError> {
        let (key, certificate) = match key {
            attacks::SigningKey::Trusted => (self.key.clone(), self.certificate.clone()),
            attacks::SigningKey::Untrusted => {
                let key = keys::generate();
                let certificate = kernel_signature::self_signed_certificate(&key, "veritylab scenario attacker")
                    .map_err(env_err("the attacker's certificate"))?;
                (key, certificate)
            }
        };
        kernel_signature::pkcs7_signature(&key, &certificate, content, kernel_signature::Content::Detached)
            .map_err(env_err("a root-hash signature"))
    }

    fn build_times(&self) -> BuildTimes {
        BuildTimes {
            built: BUILT,
            minimum: MINIMUM,
        }
    }

    fn registry_manifest(&self) -> Result<ImageManifest, AttackError> {
        let publisher = Store::open(&self.dir.path().join("publisher")).map_err(env_err("publisher"))?;
        let (_, _, manifest) = read_image(&publisher, &self.name).map_err(env_err("the published manifest"))?;
        Ok(manifest)
    }

    fn registry_blob(&self, digest: &Digest) -> Result<PathBuf, AttackError> {
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| AttackError::env("this cell has no registry"))?;
        Ok(registry.blob_path(digest))
    }

    fn registry_split_view(&mut self, tag: &str, tars: &[Vec<u8>]) -> Result<Digest, AttackError> {
        let decoy_tag = format!("{tag}-decoy");
        let decoy = self.registry_push(&decoy_tag, tars)?;
        let Some(CellRegistry::Served(served)) = &self.registry else {
            return Err(AttackError::env("this cell serves no registry"));
        };
        let manifests = format!("/v2/{REGISTRY_REPOSITORY}/manifests");
        let split = Split {
            path: format!("{manifests}/{tag}"),
            decoy: format!("{manifests}/{decoy_tag}"),
            node_agent: veritylab::oci::DEFAULT_USER_AGENT.to_owned(),
        };
        let front = Front::start(served.host(), split).map_err(env_err("starting the registry's front"))?;
        self.front = Some(front);
        Ok(decoy)
    }

    fn registry_push(&mut self, tag: &str, tars: &[Vec<u8>]) -> Result<Digest, AttackError> {
        let Some(CellRegistry::Served(served)) = &self.registry else {
            return Err(AttackError::env("this cell serves no registry to push to"));
        };
        let attacker = Store::open(&self.scratch().join("attacker-store")).map_err(env_err("the attacker's store"))?;
        let name = format!("{REPOSITORY}:{tag}");
        let descriptor = store_tars(&attacker, &name, &Platform::host(), tars).map_err(env_err(&name))?;
        let target = veritylab::oci::reference::RegistryRef {
            host: served.host(),
            repository: REGISTRY_REPOSITORY.to_owned(),
            tag: Some(tag.to_owned()),
            digest: None,
        };
        let options = PushOptions {
            client: veritylab::oci::ClientOptions {
                plain_http: true,
                ..veritylab::oci::ClientOptions::default()
            },
            ..PushOptions::default()
        };
        let source = PushSource::Store {
            root: attacker.root().to_owned(),
            name,
        };
        oci::push(&source, &PushDestination::Registry(target.clone()), &options, &|_| {})
            .map_err(env_err(&format!("pushing to {target}")))?;
        Ok(descriptor.digest)
    }

    fn scratch(&self) -> PathBuf {
        Sandbox::scratch(self)
    }

    fn layer_count(&self) -> usize {
        self.conversions.len()
    }

    fn layer(&self, index: usize) -> Result<LayerFiles, AttackError> {
        let c = self.conversion(index)?;
        let geometry = verity::geometry_for(c.erofs_size, c.hashoffset).map_err(env_err("geometry"))?;
        let block = geometry.hash_block_size() as u64;
        Ok(LayerFiles {
            digest: c.layer.to_string(),
            erofs: c.dir.join(convert::LAYER_FILE),
            data_size: c.erofs_size,
            hash_offset: c.hashoffset,
            levels: geometry.levels.iter().map(|l| l.first_block * block).collect(),
        })
    }

    fn rewrite_local_metadata(&mut self, index: usize, built: &Trojan) -> Result<(), AttackError> {
        let mut record = self.conversion(index)?.clone();
        record.roothash = built.root_hash;
        record.erofs_size = built.data_size;
        record.hashoffset = built.data_size;
        record.data_blocks = built.data_size / verity::BLOCK;
        convert::write_metadata(&record.dir, &record).map_err(env_err("the layer's local metadata"))?;
        self.conversions[index] = record;
        Ok(())
    }
    fn mount_in_container(&mut self, path: &str, kind: MountKind, source: &Path) -> Result<String, AttackError> {
        if self.backend != Backend::Emulated {
            let target = self
                .mounted
                .as_ref()
                .map(|(_, r)| self.in_container(r, path))
                .ok_or_else(|| AttackError::env("nothing is mounted"))?;
            let files = source;
            let inside = self.source_in_container(source);
            let source = inside.as_path();
            let loop_device;
            let (fs_type, options, source) = match kind {
                MountKind::Tmpfs => ("tmpfs", "rw", Path::new("tmpfs")),
                MountKind::Bind => ("none", "bind", source),
                MountKind::UnverifiedErofs if self.runc.is_some() => {
                    loop_device = self.loop_in_container(files)?;
                    ("erofs", "ro", loop_device.as_path())
                }
                MountKind::UnverifiedErofs => ("erofs", "ro,loop", source),
            };
            let mounted = self.mount_inside(&[
                "mount".as_ref(),
                "-t".as_ref(),
                fs_type.as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                source.as_os_str(),
                target.as_os_str(),
            ]);
            if kind == MountKind::UnverifiedErofs && self.runc.is_some() {
                // Detaching a loop device in use makes it clear itself once the mount on it goes.
                let _ = verity_fuse::sys::run_tool("losetup", "mount", ["-d".as_ref(), source.as_os_str()]);
            }
            mounted?;
            if kind == MountKind::Tmpfs {
                self.fill_tmpfs(path, files)?;
            }
            return Ok(format!(
                "mounted {} ({fs_type}) at {} inside the container",
                source.display(),
                target.display()
            ));
        }
        let content = match kind {
            MountKind::Tmpfs => {
                let dir = self.scratch().join(format!("tmpfs-{}", self.emulated_mounts.len()));
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                copy_files(source, &dir)?;
                dir
            }
            MountKind::Bind | MountKind::UnverifiedErofs => source.to_owned(),
        };
        let Some((_, record)) = self.mounted.as_mut() else {
            return Err(AttackError::env("nothing is mounted"));
        };
        let mount_point = record.target.join(path);
        self.emulated_mounts.push((mount_point.clone(), kind, content));
        let (fs_type, device_name, backing) = match kind {
            MountKind::Tmpfs => ("tmpfs", "tmpfs", None),
            MountKind::Bind => ("ext4", "/dev/attacker", None),
            MountKind::UnverifiedErofs => ("erofs", "/dev/loop4999", Some(source.to_owned())),
        };
        let device = DeviceNumber {
            major: if backing.is_some() { 7 } else { 0 },
            minor: 4999,
        };
        emulated::add_mount(
            record,
            TableEntry {
                id: 0,
                mount_point: mount_point.clone(),
                fs_type: fs_type.to_owned(),
                source: device_name.to_owned(),
                device,
                options: vec!["rw".to_owned()],
                super_options: vec!["rw".to_owned()],
                backing,
                unique: None,
                backing_file: None,
            },
        )
        .map_err(env_err("adding the mount"))?;
        Ok(format!(
            "mounted {fs_type} at {} inside the container",
            mount_point.display()
        ))
    }

    fn mount_at(&self, path: &str) -> Result<Option<String>, AttackError> {
        let (_, record) = self
            .mounted
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        if path.is_empty() {
            return Ok(None);
        }
        let at = record.target.join(path);
        match &self.container {
            Some(Container::Emulated { .. }) => {
                let table = emulated::Table::new(record);
                let device = veritylab::audit::View::file_at(&table, &at).map(|(file, _)| DeviceNumber {
                    major: file.major,
                    minor: file.minor,
                });
                if device == record.overlay_dev {
                    return Ok(None);
                }
                let entry = record
                    .emulated
                    .iter()
                    .flatten()
                    .filter(|e| at.starts_with(&e.mount_point))
                    .max_by_key(|e| e.mount_point.components().count());
                Ok(entry.map(|e| format!("{} {:?} on device {}", e.fs_type, e.source, e.device)))
            }
            Some(Container::Real { root, .. }) => {
                use std::os::unix::fs::MetadataExt;
                let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).map_err(io(p));
                let inside = root.join(path);
                let (root_dev, path_dev) = (dev(root)?, dev(&inside)?);
                if root_dev == path_dev {
                    return Ok(None);
                }
                let device = DeviceNumber::from_dev(path_dev);
                let (pid, at) = match &self.runc {
                    Some(container) => (container.init.map(|init| init.pid), Path::new("/").join(path)),
                    None => (record.holder, at),
                };
                let described = pid
                    .and_then(|pid| veritylab::mountinfo::read(pid).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .rfind(|m| m.mount_point == at)
                    .map(|m| format!("{} {:?}", m.fs_type.to_string_lossy(), m.source.to_string_lossy()));
                Ok(Some(format!(
                    "{} on device {device}",
                    described.unwrap_or_else(|| "a filesystem".to_owned())
                )))
            }
            None => Err(AttackError::env("nothing is mounted")),
        }
    }

    fn unmount_in_container(&mut self, path: &str) -> Result<(), AttackError> {
        let Some((_, record)) = self.mounted.as_mut() else {
            return Ok(());
        };
        let mount_point = record.target.join(path);
        if self.backend != Backend::Emulated {
            let inside = match &self.runc {
                Some(_) => Path::new("/").join(path),
                None => mount_point,
            };
            return self.mount_inside(&["umount".as_ref(), inside.as_os_str()]);
        }
        if let Some(table) = record.emulated.as_mut() {
            table.retain(|e| e.mount_point != mount_point);
        }
        self.emulated_mounts.retain(|(at, _, _)| *at != mount_point);
        emulated::save(record).map_err(env_err("removing the mount"))
    }

    fn upperdir(&self) -> Option<PathBuf> {
        self.mounted.as_ref().and_then(|(_, r)| r.upperdir.clone())
    }

    fn write_in_container(&mut self, path: &str, bytes: &[u8]) -> Result<(), AttackError> {
        if let Some((dir, rel)) = self.emulated_mount_dir(path) {
            let file = dir.join(rel);
            return fs::write(&file, bytes).map_err(io(&file));
        }
        let written = match &self.container {
            Some(Container::Emulated { rootfs, .. }) => rootfs.write(path, bytes),
            Some(Container::Real { root, .. }) => fs::write(root.join(path.trim_start_matches('/')), bytes),
            None => return Err(AttackError::env("nothing is mounted")),
        };
        written.map_err(|e| {
            if e.raw_os_error() == Some(30) {
                AttackError::Refused {
                    kind: DefenceRefusal::ReadOnly,
                    message: format!("writing /{path} in the container: {e}"),
                }
            } else {
                AttackError::env(format!("writing /{path}: {e}"))
            }
        })
    }

    fn read_in_container(&mut self, path: &str) -> Result<Vec<u8>, AttackError> {
        let read = match &self.container {
            Some(Container::Emulated { rootfs, .. }) => rootfs
                .read(path, 1 << 20)
                .map_err(|e| (e.is_verification_failure(), e.to_string())),
            Some(Container::Real { root, .. }) => fs::read(root.join(path.trim_start_matches('/'))).map_err(|e| {
                (
                    e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()),
                    e.to_string(),
                )
            }),
            None => return Err(AttackError::env("nothing is mounted")),
        };
        read.map_err(|(verification, e)| {
            if verification {
                AttackError::Refused {
                    kind: DefenceRefusal::HashMismatch,
                    message: format!("reading /{path}: {e}"),
                }
            } else {
                AttackError::env(format!("reading /{path}: {e}"))
            }
        })
    }

    fn exec_in_container(&mut self, path: &str) -> Result<String, AttackError> {
        use veritylab::audit::View as _;
        let rel = path.trim_start_matches('/');
        let (_, record) = self
            .mounted
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        let denied = |e: veritylab::exec_policy::ExecDenied| AttackError::Refused {
            kind: DefenceRefusal::ExecDenied,
            message: e.to_string(),
        };
        match &self.container {
            Some(Container::Emulated { rootfs, .. }) => {
                let at = record.target.join(rel);
                let table = emulated::Table::new(record);
                let (file, mount) = table
                    .file_at(&at)
                    .ok_or_else(|| AttackError::env(format!("/{rel} is on no mount")))?;
                if record.profile.enforced() {
                    let exe = veritylab::exec_policy::Executable { file, mount };
                    veritylab::exec_policy::decide(record, &table, Path::new(rel), exe).map_err(denied)?;
                }
                let bytes = match self.emulated_mount_of(&at) {
                    Some((MountKind::UnverifiedErofs, image, inside)) => read_erofs_file(image, &inside)?,
                    Some((_, dir, inside)) => {
                        let file = dir.join(inside);
                        fs::read(&file).map_err(io(&file))?
                    }
                    None => rootfs
                        .read(rel, 1 << 20)
                        .map_err(|e| AttackError::env(format!("loading /{rel}: {e}")))?,
                };
                Ok(format!(
                    "the emulated container loaded /{rel} for execution ({} bytes, no process runs on this backend): {:?}",
                    bytes.len(),
                    String::from_utf8_lossy(&bytes).lines().last().unwrap_or_default()
                ))
            }
            Some(Container::Real { root, .. }) => {
                let file_path = root.join(rel);
                let file = fs::File::open(&file_path).map_err(io(&file_path))?;
                if record.profile.enforced()
                    && !matches!(
                        record.exec_policy,
                        Some(veritylab::exec_policy::Enforcer::Kernel { .. })
                    )
                {
                    let stat = verity_fuse::identity::stat_open(&file).map_err(io(&file_path))?;
                    let exe = veritylab::exec_policy::Executable {
                        file: stat.file,
                        mount: stat.mount,
                    };
                    let view = veritylab::audit::Namespace::new(record);
                    veritylab::exec_policy::decide(record, &view, Path::new(rel), exe).map_err(denied)?;
                }
                run_open_file(&file, rel)
            }
            None => Err(AttackError::env("nothing is mounted")),
        }
    }

    fn list_in_container(&mut self, path: &str) -> Result<Vec<String>, AttackError> {
        let rel = path.trim_start_matches('/');
        let names = match &self.container {
            Some(Container::Emulated { rootfs, .. }) => rootfs
                .merged
                .list(rel.as_bytes())
                .map_err(env_err("listing in the container"))?
                .into_iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .collect(),
            Some(Container::Real { root, .. }) => {
                let dir = root.join(rel);
                fs::read_dir(&dir)
                    .map_err(io(&dir))?
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(io(&dir))?
            }
            None => return Err(AttackError::env("nothing is mounted")),
        };
        Ok(names.into_iter().filter(|n| n != "." && n != "..").collect())
    }

    fn read_device(&mut self, index: usize, offset: u64, len: usize) -> Result<Vec<u8>, AttackError> {
        let layer = self.conversion(index)?;
        let name = layer.layer.to_string();
        let mut buf = vec![0u8; len];
        match &self.container {
            Some(Container::Emulated { devices, .. }) => {
                if let Some((_, device)) = devices.iter().find(|(n, _)| *n == name) {
                    return device
                        .read_verified(offset, &mut buf)
                        .map(|()| buf)
                        .map_err(|e| device_refusal(index, offset, e));
                }
            }
            Some(Container::Real { devices, mappings, .. }) => {
                let device_file = devices
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, dir)| dir.join(verity_fuse::fuse::DEVICE_FILE))
                    .or_else(|| mappings.iter().find(|(n, _)| *n == name).map(|(_, m)| m.path()));
                if let Some(path) = device_file {
                    let file = fs::File::open(&path).map_err(io(&path))?;
                    let size = file.metadata().map_err(io(&path))?.len();
                    let mut read = 0;
                    while read < len {
                        match std::os::unix::fs::FileExt::read_at(&file, &mut buf[read..], offset + read as u64) {
                            Ok(0) => break,
                            Ok(n) => read += n,
                            Err(e) if e.raw_os_error() == Some(veritylab::rootfs::EIO) => {
                                return Err(AttackError::Refused {
                                    kind: DefenceRefusal::HashMismatch,
                                    message: format!("reading the verified device of layer {index} at {offset}: {e}"),
                                });
                            }
                            Err(e) => return Err(io(&path)(e)),
                        }
                    }
                    // The device ends where the tree's data blocks end: a read there meets end of file.
                    if read < len {
                        return Err(AttackError::Refused {
                            kind: DefenceRefusal::OutOfRange,
                            message: format!(
                                "the verified device of layer {index} ends at byte {size}: a read of {len} bytes at \
                                 {offset} returned {read}"
                            ),
                        });
                    }
                    return Ok(buf);
                }
            }
            None => return Err(AttackError::env("nothing is mounted")),
        }
        let file = layer.dir.join(convert::LAYER_FILE);
        let bytes = fs::read(&file).map_err(io(&file))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(bytes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(len)
            .copied()
            .collect())
    }

    fn allow_unsigned(&mut self) -> Result<String, AttackError> {
        self.policy_requires_signature = false;
        Ok(format!(
            "the node's policy rule for {REPOSITORY} now says require_signature = false"
        ))
    }

    fn set_check_at_most_once(&mut self) {
        self.check_at_most_once = true;
    }

    fn drop_caches(&mut self) -> Result<String, AttackError> {
        match &self.container {
            Some(Container::Emulated { devices, .. }) => {
                for (_, device) in devices {
                    device.drop_caches();
                }
                Ok(format!("dropped the caches of {} verified devices", devices.len()))
            }
            // The page cache over the rootfs, the EROFS mounts and the devices: what memory pressure evicts.
            Some(Container::Real { .. }) => {
                let knob = Path::new("/proc/sys/vm/drop_caches");
                fs::write(knob, "3").map_err(io(knob))?;
                Ok("dropped the page cache (3 > /proc/sys/vm/drop_caches)".to_owned())
            }
            None => Err(AttackError::env("nothing is mounted")),
        }
    }

    fn pinned_layer(&self) -> Option<PathBuf> {
        self.profile
            .hardened()
            .then(|| self.store.root().join("pinned/mountpoints/layer.erofs"))
    }

    fn leak_mounts(&mut self, count: u64) -> Result<String, AttackError> {
        let (plan, _) = self
            .mounted
            .clone()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        for i in 0..count.min(8) {
            let target = self.dir.path().join(format!("stopped-{i}"));
            fs::create_dir_all(&target).map_err(io(&target))?;
            let mut leaked = plan.clone();
            leaked.id = mount::record::new_id();
            leaked.state = plan.state.with_file_name(&leaked.id);
            leaked.target = fs::canonicalize(&target).map_err(io(&target))?;
            let record = mount::mount(&self.store, &leaked, &self.exe).map_err(env_err("leaking a mount"))?;
            let mut leak = Leak {
                target: record.target.clone(),
                id: record.id.clone(),
                squatter: None,
            };
            let stopped = if record.backend == Backend::Emulated {
                stop_emulated(record)
            } else {
                stop_leaving_a_squatter(&record).map(|child| leak.squatter = Some(child))
            };
            self.leaked.push(leak);
            stopped?;
        }
        let text = self
            .leaked
            .iter()
            .map(|l| match &l.squatter {
                Some(child) => format!("{} (its namespace kept by pid {})", l.target.display(), child.id()),
                None => format!("{} (its process gone, its record left)", l.target.display()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(format!(
            "stopped {} container(s) whose mounts stay: {text}",
            self.leaked.len()
        ))
    }

    fn replay_layer_mount(&mut self, index: usize, trojan: &Trojan) -> Result<Replayed, AttackError> {
        let (replayed, device) = super::replay::replay(self, index, trojan)?;
        self.replayed = device;
        Ok(replayed)
    }

    fn release_replay(&mut self) -> Result<(), AttackError> {
        match self.replayed.take() {
            Some(device) => super::replay::release(&device),
            None => Ok(()),
        }
    }

    fn replace_container_process(&mut self, mark: &str) -> Result<String, AttackError> {
        let container = self.runc.as_ref().ok_or_else(|| {
            AttackError::env("replacing the container's process needs a real container (the runc backend)")
        })?;
        let (done, replaced) = super::process_replay::replace(container, mark)?;
        self.replaced_process = Some(replaced);
        Ok(done)
    }

    fn container_process(&self) -> Result<String, AttackError> {
        let init = self
            .runc
            .as_ref()
            .and_then(|c| c.init)
            .ok_or_else(|| AttackError::env("no container process (the runc backend runs one)"))?;
        super::process_replay::command_line(init.pid)
    }

    fn release_replaced_process(&mut self) -> Result<(), AttackError> {
        self.replaced_process = None;
        Ok(())
    }

    fn leaks_alive(&self) -> Result<Vec<String>, AttackError> {
        let mut alive = Vec::new();
        for leak in &self.leaked {
            match &leak.squatter {
                Some(child) => {
                    let mounts = veritylab::mountinfo::read(child.id()).unwrap_or_default();
                    if let Some(m) = mounts.iter().find(|m| m.mount_point == leak.target) {
                        alive.push(format!(
                            "{} {} still mounted in the namespace pid {} keeps",
                            m.fs_type.to_string_lossy(),
                            leak.target.display(),
                            child.id()
                        ));
                    }
                }
                None => {
                    if mount::record::find(&self.store, &leak.target)
                        .map_err(env_err("mount records"))?
                        .is_some()
                    {
                        alive.push(format!(
                            "the mount {} at {} is still recorded",
                            leak.id,
                            leak.target.display()
                        ));
                    }
                }
            }
        }
        Ok(alive)
    }

    fn release_leaks(&mut self) -> Result<(), AttackError> {
        for mut leak in std::mem::take(&mut self.leaked) {
            if let Some(child) = leak.squatter.as_mut() {
                // Killing the last process in the namespace takes its mounts with it.
                let _ = child.kill();
                child.wait().map_err(env_err("reaping the squatter"))?;
            }
            match mount::umount(&self.store, &leak.target) {
                Ok(_) | Err(mount::MountError::NotMounted { .. }) => {}
                Err(e) => return Err(AttackError::env(format!("releasing {}: {e}", leak.target.display()))),
            }
        }
        Ok(())
    }
}

/// Stops an emulated container without taking its mount down: its record is made to name a process that has
/// exited (a thread of ours, gone once joined), as a killed container's would.
/// Copies the regular files directly in `from` (a directory; nothing when it is not one) into `to`, keeping
/// their modes.
fn copy_files(from: &Path, to: &Path) -> Result<(), AttackError> {
    if !from.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        if entry.file_type().map_err(io(&entry.path()))?.is_file() {
            let dest = to.join(entry.file_name());
            fs::copy(entry.path(), &dest).map_err(io(&dest))?;
        }
    }
    Ok(())
}

impl Sandbox {
    /// Puts the attacker's files from `source` into the tmpfs just mounted at `path` in the container, as the
    /// attacker would (through the holder's view of its namespace).
    fn fill_tmpfs(&self, path: &str, source: &Path) -> Result<(), AttackError> {
        let (_, record) = self
            .mounted
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        match (&self.runc, &self.container) {
            (Some(_), Some(Container::Real { root, .. })) => copy_files(source, &root.join(path)),
            _ => copy_files(source, &record.in_namespace(&record.target.join(path))),
        }
    }

    /// The attacker's emulated mount `at` is on, with what is behind it and `at`'s path inside it.
    fn emulated_mount_of(&self, at: &Path) -> Option<(MountKind, &Path, PathBuf)> {
        if self.backend != Backend::Emulated {
            return None;
        }
        self.emulated_mounts
            .iter()
            .rev()
            .filter(|(point, _, _)| at.starts_with(point))
            .max_by_key(|(point, _, _)| point.components().count())
            .map(|(point, kind, content)| {
                let inside = at.strip_prefix(point).unwrap_or(Path::new("")).to_owned();
                (*kind, content.as_path(), inside)
            })
    }

    /// The host directory behind an attacker's emulated tmpfs or bind mount holding `path`, with the path in it.
    fn emulated_mount_dir(&self, path: &str) -> Option<(PathBuf, PathBuf)> {
        let target = self.mounted.as_ref()?.1.target.join(path.trim_start_matches('/'));
        match self.emulated_mount_of(&target)? {
            (MountKind::UnverifiedErofs, _, _) => None,
            (_, dir, inside) => Some((dir.to_owned(), inside)),
        }
    }
}

/// Reads the file at `inside` of the EROFS image `image` (an attacker's unverified EROFS mount, emulated).
fn read_erofs_file(image: &Path, inside: &Path) -> Result<Vec<u8>, AttackError> {
    let fail = |e: &dyn std::fmt::Display| AttackError::env(format!("{}: {e}", image.display()));
    let source = verity_fuse::source::FileSource::open(image).map_err(|e| fail(&e))?;
    let image = veritylab::erofs::Image::open(source).map_err(|e| fail(&e))?;
    let inode = image
        .lookup(inside.as_os_str().as_encoded_bytes())
        .map_err(|e| fail(&e))?;
    image.read_to_vec(&inode, 1 << 20).map_err(|e| fail(&e))
}

/// The longest an executed file may run.
const EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Executes the open `file` through a descriptor (the child's standard input, `/proc/self/fd/0`, set only
/// in the child, so no other process inherits it), so the file run is the file opened and checked; returns
/// its output. `EACCES` from `execve` (the kernel's IPE) is the exec policy's refusal.
fn run_open_file(file: &fs::File, rel: &str) -> Result<String, AttackError> {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    // Other reasons for EACCES are the harness's, not the exec policy's: ruled out before executing.
    let mode = file
        .metadata()
        .map_err(|e| AttackError::env(format!("/{rel}: {e}")))?
        .permissions()
        .mode();
    if mode & 0o111 == 0 {
        return Err(AttackError::env(format!("/{rel} is not executable (mode {mode:o})")));
    }
    let noexec = rustix::fs::fstatvfs(file)
        .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC))
        .map_err(|e| AttackError::env(format!("/{rel}: {e}")))?;
    if noexec {
        return Err(AttackError::env(format!("/{rel} is on a noexec mount")));
    }
    let input = file
        .try_clone()
        .map_err(|e| AttackError::env(format!("executing /{rel}: {e}")))?;
    let child = Command::new("/proc/self/fd/0")
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::ACCESS.raw_os_error()) => {
            return Err(AttackError::Refused {
                kind: DefenceRefusal::ExecDenied,
                message: format!("executing /{rel}: {e}"),
            });
        }
        Err(e) => return Err(AttackError::env(format!("executing /{rel}: {e}"))),
    };
    let started = std::time::Instant::now();
    let mut child = child;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > EXEC_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AttackError::env(format!("/{rel} ran longer than {EXEC_TIMEOUT:?}")));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(AttackError::env(format!("waiting for /{rel}: {e}"))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| AttackError::env(format!("executing /{rel}: {e}")))?;
    if !out.status.success() {
        return Err(AttackError::env(format!(
            "/{rel} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(format!(
        "the container ran /{rel}: {:?}",
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

fn stop_emulated(mut record: Record) -> Result<(), AttackError> {
    let gone = std::thread::spawn(|| {
        fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|l| l.file_name()?.to_str()?.parse::<u32>().ok())
    })
    .join()
    .map_err(|_| AttackError::env("the stand-in container process panicked"))?
    .ok_or_else(|| AttackError::env("/proc/thread-self does not name a thread"))?;
    record.holder = Some(gone);
    emulated::save(&record).map_err(env_err("stopping the emulated container"))
}

/// Stops a kernel or fuse container so that its mounts leak: a process enters its mount
/// namespace, then the holder is killed (no teardown), so the namespace and every mount in it stay alive,
/// held by that process alone. Returns the process.
fn stop_leaving_a_squatter(record: &Record) -> Result<std::process::Child, AttackError> {
    let holder = record
        .holder
        .ok_or_else(|| AttackError::env("the leaked mount has no holder"))?;
    let namespace = record
        .namespace
        .clone()
        .ok_or_else(|| AttackError::env("the leaked mount's namespace is not recorded"))?;
    let mut child = std::process::Command::new("nsenter")
        .args(["-t", &holder.to_string(), "-m", "--", "sleep", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(env_err("starting a process in the container's namespace"))?;
    let pid = child.id();
    let entered = || {
        fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l.to_string_lossy() == namespace)
            && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "sleep")
    };
    if !wait_for(entered) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(AttackError::env(format!(
            "pid {pid} did not enter the namespace {namespace}"
        )));
    }
    let killed = rustix::process::Pid::from_raw(i32::try_from(holder).unwrap_or(0))
        .ok_or_else(|| AttackError::env("no holder pid"))
        .and_then(|p| {
            rustix::process::kill_process(p, rustix::process::Signal::KILL).map_err(env_err("killing the holder"))
        });
    if let Err(e) = killed.and_then(|()| {
        if wait_for(|| !record.holder_alive()) {
            Ok(())
        } else {
            Err(AttackError::env(format!("the holder {holder} outlived SIGKILL")))
        }
    }) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// Polls `done` every 20 ms for at most five seconds.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

/// A verified device's refusal of a read, by its typed error: past its end is the bounds check, a block that
/// fails verification (or a device halted by one) is a hash mismatch, anything else the harness's.
pub fn device_refusal(index: usize, offset: u64, e: verity_fuse::VerityError) -> AttackError {
    use verity_fuse::VerityError as V;
    let message = format!("reading the verified device of layer {index} at {offset}: {e}");
    match e {
        V::OutOfRange { .. } => AttackError::Refused {
            kind: DefenceRefusal::OutOfRange,
            message,
        },
        V::HashMismatch { .. } | V::NonZeroPadding { .. } | V::Halted { .. } => AttackError::Refused {
            kind: DefenceRefusal::HashMismatch,
            message,
        },
        _ => AttackError::env(message),
    }
}
