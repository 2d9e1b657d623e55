//! `rowshift migrate` and `rowshift sync` flags for operating a run: throttling, live control, metrics.

use crate::common::ConnArgs;
use anyhow::{bail, Context, Result};
use rowshift_engine::control::operate::OperateConfig;
use rowshift_engine::throttle::{parse_limits, ThrottleConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Throttling, control socket/HTTP and metrics.
#[derive(Debug, Clone, clap::Args)]
pub struct OperateArgs {
    /// A replica whose lag throttles the copy (repeatable), e.g. mysql://monitor@replica1:3306;
    /// it uses the source's password options.
    #[arg(long = "replica")]
    pub replicas: Vec<String>,
    /// Throttle the copy while a replica lags more than this, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub max_lag_ms: u64,
    /// Throttle while a status variable of the source is above its limit, e.g.
    /// Threads_running=25[,Threads_connected=500].
    #[arg(long)]
    pub max_load: Option<String>,
    /// Above these limits the copy stops, and the migration aborts cleanly when they last
    /// longer than --critical-load-grace-ms, e.g. Threads_running=200.
    #[arg(long)]
    pub critical_load: Option<String>,
    /// How long a critical load may last before the migration aborts, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub critical_load_grace_ms: u64,
    /// Throttle while this file exists.
    #[arg(long)]
    pub throttle_flag_file: Option<PathBuf>,
    /// Throttle while this query, run on the source, returns a value above 0.
    #[arg(long)]
    pub throttle_query: Option<String>,
    /// After a copy chunk that took t, rest F*t (0 = no rest; 1 = copy at most half the time).
    #[arg(long, default_value_t = 0.0)]
    pub copy_nice_ratio: f64,
    /// Control socket for `rowshift ctl` (default /tmp/rowshift-<db>.<table>.sock).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Do not open a control socket.
    #[arg(long, conflicts_with = "control_socket")]
    pub no_control_socket: bool,
    /// HTTP listener for status, commands and /metrics, e.g. 127.0.0.1:9187.
    #[arg(long)]
    pub http: Option<String>,
    /// Allow --http on a non-loopback address (the port has no authentication).
    #[arg(long)]
    pub http_allow_remote: bool,
}

impl OperateArgs {
    /// The engine's configuration; replicas use the source's password and TLS options.
    pub fn config(&self, conn: &ConnArgs) -> Result<OperateConfig> {
        let mut replicas = Vec::new();
        for url in &self.replicas {
            let mut c = conn.clone();
            c.source = url.clone();
            replicas.push(c.endpoint().with_context(|| "--replica")?);
        }
        if !(0.0..=100.0).contains(&self.copy_nice_ratio) {
            bail!(
                "--copy-nice-ratio must be between 0 and 100 (got {})",
                self.copy_nice_ratio
            );
        }
        let http = match &self.http {
            None => None,
            Some(text) => Some(parse_http(text)?),
        };
        Ok(OperateConfig {
            throttle: ThrottleConfig {
                replicas,
                max_lag: Duration::from_millis(self.max_lag_ms),
                max_load: parse_limits(self.max_load.as_deref().unwrap_or_default())?,
                critical_load: parse_limits(self.critical_load.as_deref().unwrap_or_default())?,
                critical_grace: Duration::from_millis(self.critical_load_grace_ms),
                flag_file: self.throttle_flag_file.clone(),
                query: self.throttle_query.clone(),
                ..ThrottleConfig::default()
            },
            control_socket: self.control_socket.clone(),
            no_control_socket: self.no_control_socket,
            http,
            http_allow_remote: self.http_allow_remote,
            nice_ratio: self.copy_nice_ratio,
        })
    }
}

/// `PORT`, `:PORT` (both on 127.0.0.1) or `HOST:PORT`.
fn parse_http(text: &str) -> Result<SocketAddr> {
    let t = text.trim();
    let full = if t.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{t}")
    } else if let Some(port) = t.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        t.to_string()
    };
    full.parse()
        .with_context(|| format!("--http {text:?}: expected 127.0.0.1:PORT"))
}
