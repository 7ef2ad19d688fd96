//! veritylab: the container-image integrity pipeline (pull, convert to EROFS, sign, mount, runtime check).
//!
//! This crate grows one module folder per concept; the verity core lives in the `verity-fuse` crate.
//! - [`erofs`]: the streaming tar-to-EROFS writer and the userspace reader.
//! - [`image_spec`]: the OCI image-spec types (digests, media types, manifests), without I/O.
//! - [`oci`]: image references, and pulls from and pushes to registries and image layouts.
//! - [`store`]: the content store (an OCI image layout plus converted layers).
//! - [`convert`]: each layer to `layer.erofs` plus a dm-verity tree, in containerd's or a separate layout.
//! - [`mountinfo`]: the typed parser of `/proc/PID/mountinfo`, from [`verity_fuse::host`].
//! - [`root_hash`]: dm-verity root hashes as typed bytes.
//! - [`rootfs`]: the merged read-only view of a layer stack (overlay semantics), its snapshot, and its FUSE server.
//! - [`mount`]: mounting an image's rootfs by profile and backend, and taking it down.
//! - [`container`]: containers under runc on a profile's rootfs (`run`, `ps`, `stop`), their mount audit and the
//!   cleanup of what stopped ones leave held.
//! - [`audit`]: the mount audit (layers traced to trusted root hashes, overmounts, the overlay's shape).
//! - [`profile`]: the defence profiles and mount backends every part names.
//! - [`defence`]: the defences the profiles claim, each of which the mutation test can turn off.
//! - [`sign`]: root hashes in signed manifests (cosign or delivery-kit), keys, the trust policy, verification.
//! - [`ipe`]: IPE policies that let only signature-checked dm-verity volumes (and the initramfs) execute.
//! - [`exec_policy`]: the `enforced` profile's exec rule, emulated where no kernel enforces IPE.
//! - [`watch`]: periodic re-verification of converted layers at rest, within a CPU budget.
//! - [`agent`]: the node agent: every mount audited and its layers re-verified each interval, Prometheus
//!   metrics and JSON logs.
//! - [`utc`]: RFC 3339 date-times in UTC, the one formatter every report and annotation uses.
//! - [`progress`]: what long operations report (steps and byte counts), drawn as bars by the command.
//! - [`cli`]: the `veritylab` command's pipeline subcommands as library functions (the scenario harness and
//!   `demo` are the `scenarios` crate's; the `veritylab` package's binary joins both).
#![forbid(unsafe_code)]

pub mod agent;
pub mod audit;
pub mod cli;
pub mod container;
pub mod convert;
pub mod defence;
pub mod erofs;
pub mod exec_policy;
pub mod image_spec;
pub mod ipe;
pub mod mount;
pub mod oci;
pub mod policy_import;
pub mod profile;
pub mod progress;
pub mod root_hash;
pub mod rootfs;
pub mod sign;
pub mod store;
pub mod utc;
pub mod watch;

pub use verity_fuse;
pub use verity_fuse::host::mountinfo;
