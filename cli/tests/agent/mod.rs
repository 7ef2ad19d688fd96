//! The node agent (`veritylab agent`): its metrics and JSON log against a mount that is attacked while it runs,
//! its clean stop on SIGTERM, the alerting rules under `promtool test rules`, a real Prometheus scraping the
//! agent and firing the alert, and the Kubernetes manifests read as Kubernetes' own types.
//!
//! Unprivileged: the mount is on the emulated backend (its mount table is a file the attack edits), so the
//! whole chain runs as any user; Prometheus and promtool are Debian's (`prometheus`, see .ci/run).

mod manifests;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use veritylab::mount::emulated::{self, TableEntry};
use veritylab::mount::{self, Record};
use veritylab::mountinfo::DeviceNumber;
use veritylab::profile::{Backend, Profile};
use veritylab::store::Store;

use crate::oci::support::{PulledImage, free_port, pulled_umoci_image};

/// The repository's `deploy/` directory.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A child process killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 200 ms until it returns a value, for at most `limit`.
pub(crate) fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(url: &str) -> Option<String> {
    let mut response = ureq::get(url).call().ok()?;
    response.body_mut().read_to_string().ok()
}

/// A hardened mount of the umoci test image on the emulated backend, in a store of its own.
struct Mounted {
    work: tempfile::TempDir,
    store: Store,
    record: Record,
}

/// Mounts the pulled umoci image; `None` (skipped, saying why) without umoci.
fn mounted(test: &str) -> Option<Mounted> {
    let PulledImage { work, store, name, .. } = pulled_umoci_image(test)?;
    let trust = crate::mount::signed(&store, &name);
    let target = work.path().join("rootfs");
    std::fs::create_dir_all(&target).unwrap();
    let plan = mount::prepare(&store, &trust, &target, Profile::Hardened, Backend::Emulated).unwrap();
    let record = mount::mount(&store, &plan, Path::new("/nonexistent")).unwrap();
    Some(Mounted { work, store, record })
}

/// The agent on `store`, passes every `interval`, metrics on a free loopback port; its stderr lines are
/// collected as they come.
pub(crate) struct Agent {
    process: Running,
    lines: Arc<Mutex<Vec<String>>>,
    addr: String,
}

pub(crate) fn start_agent(store: &Path, interval: &str) -> Agent {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            interval,
            "--cpu-budget",
            "50",
            "--store",
        ])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let collected = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            collected.lock().unwrap().push(line);
        }
    });
    let process = Running(child);
    let addr = wait_for("the agent's start line", Duration::from_secs(30), || {
        lines.lock().unwrap().iter().find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            (json["msg"] == "agent started").then(|| json["listen"].as_str().unwrap().to_owned())
        })
    });
    Agent { process, lines, addr }
}

impl Agent {
    pub(crate) fn metrics(&self) -> Option<String> {
        get(&format!("http://{}/metrics", self.addr))
    }

    /// The JSON log lines so far.
    fn log(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("log line {line:?} is not JSON: {e}")))
            .collect()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub(crate) fn terminate(mut self) {
        let pid = rustix::process::Pid::from_child(&self.process.0);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = wait_for("the agent to exit on SIGTERM", Duration::from_secs(20), || {
            self.process.0.try_wait().unwrap()
        });
        assert!(status.success(), "the agent exited with {status} on SIGTERM");
        let log = wait_for("the agent's last log line", Duration::from_secs(5), || {
            let log = self.log();
            (log.last()?["msg"] == "agent stopped").then_some(log)
        });
        assert!(log.iter().all(|l| l["time"].is_string() && l["level"].is_string()));
    }
}

/// Value of the sample of `metrics` whose name and labels start with `series` (`None` when absent).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Lays a tmpfs over the rootfs's `/etc` in the emulated mount table, as the overmount attack does.
fn overmount(m: &Mounted) -> PathBuf {
    let mut record = m.record.clone();
    let path = record.target.join("etc");
    emulated::add_mount(
        &mut record,
        TableEntry {
            id: 0,
            mount_point: path.clone(),
            fs_type: "tmpfs".to_owned(),
            source: "attacker".to_owned(),
            device: DeviceNumber { major: 0, minor: 77 },
            options: vec!["rw".to_owned()],
            super_options: vec!["rw".to_owned()],
            backing: None,
            unique: None,
            backing_file: None,
        },
    )
    .unwrap();
    path
}

macro_rules! mounted_or_skip {
    () => {
        match mounted(module_path!()) {
            Some(m) => m,
            None => return,
        }
    };
}

#[test]
fn the_agent_reports_an_overmount_made_while_it_runs_and_stops_cleanly_on_sigterm() {
    let m = mounted_or_skip!();
    let agent = start_agent(m.store.root(), "500ms");
    let clean = wait_for("a clean pass in the metrics", Duration::from_secs(60), || {
        let metrics = agent.metrics()?;
        (sample(&metrics, "veritylab_agent_passes_total")? >= 1.0).then_some(metrics)
    });
    assert_eq!(sample(&clean, "veritylab_mounts_audited"), Some(1.0), "{clean}");
    assert_eq!(
        sample(&clean, "veritylab_findings{"),
        None,
        "a clean mount has no findings:\n{clean}"
    );
    assert_eq!(sample(&clean, "veritylab_corrupted_devices"), Some(0.0));
    assert!(
        sample(&clean, "veritylab_verified_bytes_total").is_some_and(|b| b > 0.0),
        "{clean}"
    );
    assert_eq!(sample(&clean, "veritylab_hash_cpu_budget_ratio"), Some(0.5));
    assert!(clean.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");

    let path = overmount(&m);
    let metrics = wait_for("the overmount in the metrics", Duration::from_secs(60), || {
        let metrics = agent.metrics()?;
        metrics.contains("kind=\"overmount\"").then_some(metrics)
    });
    let line = metrics
        .lines()
        .find(|l| l.starts_with("veritylab_findings{") && l.contains("overmount"))
        .unwrap();
    assert!(line.contains(&format!("mount=\"{}\"", m.record.id)), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
    assert!(
        sample(&metrics, "veritylab_findings_seen_total{kind=\"overmount\"}").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let log = agent.log();
    let pass = log
        .iter()
        .find(|l| l["msg"] == "pass" && l["level"] == "warn")
        .expect("a pass with findings is logged at warn");
    assert_eq!(pass["findings"][0]["kind"], "overmount");
    assert!(
        pass["details"][0]["finding"]
            .as_str()
            .unwrap()
            .contains(&path.display().to_string())
    );
    assert_eq!(get(&format!("http://{}/healthz", agent.addr)).as_deref(), Some("ok\n"));
    agent.terminate();
    drop(m.work);
}

#[test]
fn an_agent_whose_address_is_taken_fails_with_the_address_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["agent", "--passes", "1", "--listen", &addr, "--store"])
        .arg(store.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn promtool_passes_the_alerting_rules_unit_tests() {
    let Some(promtool) = testkit::find_tool("promtool") else {
        testkit::skip(
            module_path!(),
            "promtool is not installed (Debian package prometheus, see .ci/run)",
        );
        return;
    };
    let dir = deploy().join("prometheus");
    for args in [
        ["check", "rules", "veritylab-rules.yml"],
        ["test", "rules", "veritylab-rules.test.yml"],
    ] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Debian's Prometheus on a free loopback port, scraping `agent` every second with the shipped rules loaded.
pub(crate) struct Prometheus {
    _process: Running,
    api: String,
}

impl Prometheus {
    /// Starts it with its configuration and data under `work` and waits (bounded) until it has scraped a pass
    /// of the agent and nothing fires; `None` (skipped, saying why) without `prometheus`.
    pub(crate) fn start(work: &Path, agent: &Agent) -> Option<Self> {
        let Some(prometheus) = testkit::find_tool("prometheus") else {
            testkit::skip(
                module_path!(),
                "prometheus is not installed (Debian package prometheus, see .ci/run)",
            );
            return None;
        };
        let config = work.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: veritylab-agent\n    static_configs:\n      - targets: ['{}']\n",
                deploy().join("prometheus/veritylab-rules.yml").display(),
                agent.addr
            ),
        )
        .unwrap();
        let port = free_port();
        let process = Running(
            Command::new(prometheus)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", work.join("tsdb").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let this = Self {
            _process: process,
            api: format!("http://127.0.0.1:{port}"),
        };
        wait_for("Prometheus to scrape a pass", Duration::from_secs(90), || {
            let url = format!("{}/api/v1/query?query=veritylab_agent_passes_total", this.api);
            let v: serde_json::Value = serde_json::from_str(&get(&url)?).ok()?;
            let value = v["data"]["result"][0]["value"][1].as_str()?.parse::<f64>().ok()?;
            (value >= 1.0).then_some(())
        });
        assert_eq!(
            this.alerts().unwrap_or_default().len(),
            0,
            "nothing fires before the attack"
        );
        Some(this)
    }

    fn alerts(&self) -> Option<Vec<serde_json::Value>> {
        let v: serde_json::Value = serde_json::from_str(&get(&format!("{}/api/v1/alerts", self.api))?).ok()?;
        v["data"]["alerts"].as_array().cloned()
    }

    /// Waits (bounded) for the integrity alert to fire and returns it.
    pub(crate) fn integrity_alert(&self) -> serde_json::Value {
        wait_for("the integrity alert to fire", Duration::from_secs(90), || {
            self.alerts()?
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "VeritylabIntegrityFinding" && a["state"] == "firing")
        })
    }
}

#[test]
fn prometheus_scraping_the_agent_fires_the_integrity_alert_when_a_mount_is_attacked() {
    let m = mounted_or_skip!();
    let agent = start_agent(m.store.root(), "1s");
    let Some(prometheus) = Prometheus::start(m.work.path(), &agent) else {
        return;
    };
    overmount(&m);
    let alert = prometheus.integrity_alert();
    assert_eq!(alert["labels"]["kind"], "overmount");
    assert_eq!(alert["labels"]["mount"], m.record.id.as_str());
    assert_eq!(alert["labels"]["severity"], "critical");
    agent.terminate();
}
