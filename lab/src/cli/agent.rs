//! `veritylab agent [--store DIR] [--interval DUR] [--cpu-budget PERCENT] [--max-parallel N] [--listen ADDR]
//! [--passes N]`: the node agent (see [`crate::agent`]) in the foreground; JSON log lines on stderr, metrics
//! on `http://ADDR/metrics`; SIGTERM or SIGINT ends it cleanly.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::check::parse_duration;
use super::{CliError, store_dir};
use crate::agent::{self, AgentConfig};

/// Raw arguments of `veritylab agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The store whose mounts are watched [default: /var/lib/veritylab as root, else
    /// ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<std::path::PathBuf>,
    /// Time between the starts of two passes, e.g. 30s, 10m, 1h, 500ms.
    #[arg(long, value_name = "DUR", default_value = "1m", value_parser = parse_duration)]
    pub interval: Duration,
    /// CPU budget for re-verifying layers, in percent of one core (a token bucket on the hashing threads).
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub cpu_budget: f64,
    /// Layers re-verified at the same time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_parallel: usize,
    /// Where to serve the Prometheus metrics (`/metrics`) and `/healthz`; port 0 picks a free port (logged).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Stop after N passes [default: run until SIGTERM or SIGINT].
    #[arg(long, value_name = "N")]
    pub passes: Option<u64>,
}

/// Runs the agent.
pub(crate) fn run(args: AgentArgs) -> Result<(), CliError> {
    let config = AgentConfig {
        store: store_dir(args.store)?,
        interval: args.interval,
        cpu_budget_percent: args.cpu_budget,
        max_parallel: args.max_parallel,
        listen: args.listen,
        passes: args.passes,
    };
    agent::run(&config)?;
    Ok(())
}
