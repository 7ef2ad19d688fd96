//! The agent's Prometheus metrics (OpenMetrics text), set after each pass.
//!
//! | series | type | what |
//! |---|---|---|
//! | `veritylab_agent_passes_total` | counter | passes run |
//! | `veritylab_agent_last_pass_timestamp_seconds` | gauge | Unix time the last pass ended |
//! | `veritylab_agent_last_pass_duration_seconds` | gauge | wall time of the last pass |
//! | `veritylab_agent_interval_seconds` | gauge | configured time between passes |
//! | `veritylab_agent_errors` | gauge | mounts the last pass could not check |
//! | `veritylab_mounts_audited` | gauge | mounts audited in the last pass |
//! | `veritylab_containers_audited` | gauge | running containers whose namespaces the last pass audited |
//! | `veritylab_findings{kind,mount,target,container}` | gauge | findings of the last pass (gone when fixed) |
//! | `veritylab_findings_seen_total{kind}` | counter | findings over the agent's life |
//! | `veritylab_verified_bytes_total` | counter | bytes re-verified at rest |
//! | `veritylab_verified_blocks_total` | counter | data and hash blocks re-verified |
//! | `veritylab_layers_checked_total` | counter | layer checks (complete or stopped) |
//! | `veritylab_hash_cpu_seconds_total` | counter | CPU time of the hashing threads |
//! | `veritylab_hash_cpu_budget_ratio` | gauge | the budget, as a fraction of one core |
//! | `veritylab_corrupted_devices` | gauge | layers and devices seen corrupted in the last pass |

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AgentPass;

/// Bytes per block the verified-blocks counter counts in (dm-verity's data and hash block size here).
const BLOCK: u64 = 4096;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: String,
    mount: String,
    target: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// The agent's metric families and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    passes: Counter,
    last_pass: FloatGauge,
    last_duration: FloatGauge,
    errors: Gauge,
    mounts: Gauge,
    containers: Gauge,
    findings: Family<FindingLabels, Gauge>,
    findings_seen: Family<KindLabels, Counter>,
    bytes: Counter,
    blocks: Counter,
    layers: Counter,
    cpu: FloatCounter,
    corrupted: Gauge,
}

impl Metrics {
    /// Empty metrics for an agent with this interval and budget (percent of one core).
    pub fn new(interval: Duration, budget_percent: f64) -> Self {
        let mut registry = Registry::default();
        let this = Self {
            registry: Mutex::new(Registry::default()),
            passes: Counter::default(),
            last_pass: FloatGauge::default(),
            last_duration: FloatGauge::default(),
            errors: Gauge::default(),
            mounts: Gauge::default(),
            containers: Gauge::default(),
            findings: Family::default(),
            findings_seen: Family::default(),
            bytes: Counter::default(),
            blocks: Counter::default(),
            layers: Counter::default(),
            cpu: FloatCounter::default(),
            corrupted: Gauge::default(),
        };
        let interval_gauge = FloatGauge::default();
        interval_gauge.set(interval.as_secs_f64());
        let budget = FloatGauge::default();
        budget.set(budget_percent / 100.0);
        registry.register("veritylab_agent_passes", "Passes run", this.passes.clone());
        registry.register(
            "veritylab_agent_last_pass_timestamp_seconds",
            "Unix time the last pass ended",
            this.last_pass.clone(),
        );
        registry.register(
            "veritylab_agent_last_pass_duration_seconds",
            "Wall time of the last pass",
            this.last_duration.clone(),
        );
        registry.register(
            "veritylab_agent_interval_seconds",
            "Configured time between the starts of two passes",
            interval_gauge,
        );
        registry.register(
            "veritylab_agent_errors",
            "Mounts the last pass could not check",
            this.errors.clone(),
        );
        registry.register(
            "veritylab_mounts_audited",
            "Mounts audited in the last pass",
            this.mounts.clone(),
        );
        registry.register(
            "veritylab_containers_audited",
            "Running containers whose mount namespaces the last pass audited",
            this.containers.clone(),
        );
        registry.register(
            "veritylab_findings",
            "Integrity findings of the last pass, by kind and mount",
            this.findings.clone(),
        );
        registry.register(
            "veritylab_findings_seen",
            "Integrity findings over the agent's life, by kind",
            this.findings_seen.clone(),
        );
        registry.register(
            "veritylab_verified_bytes",
            "Bytes re-verified at rest against their pinned root hash",
            this.bytes.clone(),
        );
        registry.register(
            "veritylab_verified_blocks",
            "4 KiB blocks re-verified at rest",
            this.blocks.clone(),
        );
        registry.register(
            "veritylab_layers_checked",
            "Layer checks run (complete or stopped)",
            this.layers.clone(),
        );
        registry.register(
            "veritylab_hash_cpu_seconds",
            "CPU time spent hashing by the re-verification threads",
            this.cpu.clone(),
        );
        registry.register(
            "veritylab_hash_cpu_budget_ratio",
            "Hashing CPU budget as a fraction of one core",
            budget,
        );
        registry.register(
            "veritylab_corrupted_devices",
            "Layers and mounted devices seen corrupted in the last pass",
            this.corrupted.clone(),
        );
        *this.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        this
    }

    /// Sets the metrics from a finished pass.
    pub fn observe(&self, pass: &AgentPass) {
        self.passes.inc();
        let ended = pass.started + pass.duration;
        self.last_pass
            .set(ended.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        self.last_duration.set(pass.duration.as_secs_f64());
        self.errors.set(gauge_value(pass.errors.len()));
        self.mounts.set(gauge_value(pass.audits.len()));
        self.containers.set(gauge_value(pass.containers.len()));
        self.findings.clear();
        for row in pass.findings() {
            self.findings_seen
                .get_or_create(&KindLabels { kind: row.kind.clone() })
                .inc();
            self.findings
                .get_or_create(&FindingLabels {
                    kind: row.kind,
                    mount: row.mount,
                    target: row.target,
                    container: row.container,
                })
                .inc();
        }
        let report = &pass.verification;
        self.bytes.inc_by(report.bytes);
        self.blocks.inc_by(report.bytes.div_ceil(BLOCK));
        self.layers.inc_by(report.layers.len() as u64);
        self.cpu
            .inc_by(report.layers.iter().map(|l| l.cpu.as_secs_f64()).sum::<f64>());
        self.corrupted.set(gauge_value(pass.corrupted_devices()));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
