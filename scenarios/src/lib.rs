//! Scenarios: staged supply-chain attacks, each run against defence profiles, with expected outcomes.
//!
//! The public API: the subcommands ([`cli`]), the loader ([`load`]), outcomes and evidence ([`outcome`]), the
//! runner ([`runner`]) and its [`RunnerBackend`]s with the VM one ([`vm`]), the run's results ([`results`]) and
//! their renderings ([`report`]), and the schema's types re-exported here. The sandbox each cell runs in (the
//! implementation of [`attacks::Env`]), the cell's registry and the image builder are private.
//!
//! Data flows in one direction:
//! 1. [`load`] reads scenario files (TOML, schema in `scenarios/README.md`) into checked [`Scenario`]s; the
//!    attack and its parameters are checked against [`attacks::CATALOGUE`].
//! 2. A runner stages each scenario's attack for each (profile, backend) cell and records an
//!    [`outcome::Observation`] with typed evidence (the product's refusals and findings, and the attack's own
//!    look at the container, [`outcome::EffectEvidence`]) and the grounds of its outcome; [`outcome::compare`]
//!    diffs it against the scenario's [`outcome::Expectation`]. An `inconclusive` outcome always fails.
//! 3. The cells gather into a [`results::RunReport`], which [`report`] renders as a terminal matrix, JSON, JUnit
//!    XML or a self-contained HTML page. [`results::RunReport::passed`] decides the exit status.
//!
//! # The runner
//!
//! The runner resolves the backends to use ([`results::BackendChoice`]: requested, used, and why), creates a
//! [`results::RunReport`] with [`results::RunReport::new`], then for each scenario and each (profile, backend) of it:
//! looks the attack up by [`AttackUse::name`], runs its lifecycle (prepare, detonate, observe, revert,
//! then the leak check) in an isolated store and namespace, appends a [`outcome::TimelineStep`] per step,
//! maps the pipeline's typed errors and audit findings onto [`outcome::ErrorKind`] and
//! [`outcome::FindingKind`], concludes an [`outcome::Outcome`], and records the cell with
//! [`results::CellResult::observed`] (which computes the differences), [`results::CellResult::skipped`] (the
//! backend is unavailable) or [`results::CellResult::error`] (the harness itself failed, including a leak).
//! Finally it sets [`results::RunReport::duration_ms`] and renders the report.

pub mod admission;
mod backend;
mod cell_registry;
pub mod cli;
mod image;
pub mod load;
pub mod outcome;
mod process_replay;
mod publisher;
mod registry_front;
mod replay;
pub mod report;
pub mod results;
pub mod runner;
mod sandbox;
mod schema;
pub mod vm;

pub use backend::RunnerBackend;
pub use load::{LoadErrors, Problem};
pub use publisher::{Publisher, PublisherError, PublisherFiles};
pub use sandbox::{SandboxError, device_refusal};
pub use schema::{
    Admission, AttackUse, EntryKind, EntrySpec, ImageSpec, LayerSpec, ParamValue, Reference, ReferenceKind, Scenario,
};
