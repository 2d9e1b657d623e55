//! The throttler: decides, several times a second, whether the copy may run (design.md
//! section 7).
//!
//! Signals, each naming itself in the reason when it fires:
//! - replica lag: rowshift writes a heartbeat row (`REPLACE INTO _rowshift_heartbeat (id, ts)`,
//!   microsecond UTC time) on the source every 100 ms, in the migrated table's database, and
//!   reads its age on every replica; where the heartbeat cannot be read (not replicated yet,
//!   no privilege) the replica's own `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`
//!   `Seconds_Behind_*` stands in. A replica whose lag cannot be read at all throttles too:
//!   an unknown lag is not a small one.
//! - load: status variables of the source (`--max-load Threads_running=25,...`);
//! - a flag file that exists; a query that returns a value above 0;
//! - the operator (`rowshift ctl throttle` / `unthrottle`).
//!
//! `--critical-load` throttles at once and, when still over after the grace period, ends the
//! throttler with [`ThrottleError::Critical`]: the migration then aborts cleanly (helpers
//! dropped, the original table untouched).
//!
//! Throttling holds the copy only: the appliers keep up with the binlog stream, so the lag to
//! catch up stays small. The state is published on a `watch` of [`ThrottleState`]; every change
//! of the throttled flag or of the signals that fire is logged with its reason.

use crate::conn::{ConnError, Endpoint};
use mysql_async::prelude::Queryable;
use rowshift_transform::schema::quote_ident;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};

/// Name of the heartbeat table, created in the migrated table's database.
pub const HEARTBEAT_TABLE: &str = "_rowshift_heartbeat";

/// Errors of the throttler.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// A `Var=N[,Var=N]` list could not be read.
    #[error("bad load limit {text:?}: {reason} (expected e.g. Threads_running=25,Threads_connected=500)")]
    BadLimit {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A critical load stayed over its limit past the grace period.
    #[error("critical load: {detail} for longer than {grace:?} (--critical-load); the migration was aborted so the server can recover")]
    Critical {
        /// Which limit and value.
        detail: String,
        /// The grace period.
        grace: Duration,
    },
    /// Connecting to the source failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
}

/// One limit on a status variable of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLimit {
    /// The status variable, e.g. `Threads_running`.
    pub variable: String,
    /// Throttle (or abort, for critical limits) when the value is above this.
    pub limit: u64,
}

/// Parse `Var=N[,Var=N...]` (empty text: no limit).
pub fn parse_limits(text: &str) -> Result<Vec<LoadLimit>, ThrottleError> {
    let bad = |reason: &str| ThrottleError::BadLimit {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (var, n) = part
            .split_once('=')
            .ok_or_else(|| bad("each limit is Var=N"))?;
        let var = var.trim();
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad("a status variable name has only letters, digits and _"));
        }
        let limit = n
            .trim()
            .parse::<u64>()
            .map_err(|_| bad("the limit is a whole number"))?;
        out.push(LoadLimit {
            variable: var.to_string(),
            limit,
        });
    }
    Ok(out)
}

/// Show limits as `Var=N,...`.
pub fn show_limits(limits: &[LoadLimit]) -> String {
    limits
        .iter()
        .map(|l| format!("{}={}", l.variable, l.limit))
        .collect::<Vec<_>>()
        .join(",")
}

/// What the throttler watches.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Replicas whose lag is watched (`--replica URL`).
    pub replicas: Vec<Endpoint>,
    /// Throttle when a replica lags more than this (`--max-lag-ms`).
    pub max_lag: Duration,
    /// Throttle when a status variable of the source is above its limit (`--max-load`).
    pub max_load: Vec<LoadLimit>,
    /// Throttle, and abort after [`ThrottleConfig::critical_grace`], above these.
    pub critical_load: Vec<LoadLimit>,
    /// How long a critical load may last before the migration aborts.
    pub critical_grace: Duration,
    /// Throttle while this file exists.
    pub flag_file: Option<PathBuf>,
    /// Throttle while this query (run on the source) returns a value above 0.
    pub query: Option<String>,
    /// How often the signals are checked.
    pub interval: Duration,
    /// How often the heartbeat row is written.
    pub heartbeat_interval: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            replicas: Vec::new(),
            max_lag: Duration::from_millis(1500),
            max_load: Vec::new(),
            critical_load: Vec::new(),
            critical_grace: Duration::from_millis(5000),
            flag_file: None,
            query: None,
            interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_millis(100),
        }
    }
}

/// Whether the copy may run, and why not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThrottleState {
    /// True while the copy must wait.
    pub throttled: bool,
    /// Every signal that fires, `; `-separated (empty when not throttled).
    pub reason: String,
    /// The kinds of the signals that fire (`operator`, `flag_file`, `critical_load`,
    /// `max_load`, `replica_lag`, `query`), for metrics labels.
    pub kinds: Vec<&'static str>,
    /// The largest lag measured on the replicas, in milliseconds (None without replicas or
    /// when none could be read).
    pub replica_lag_ms: Option<u64>,
}

/// Commands of the operator for the throttler.
#[derive(Debug, Clone)]
pub enum ThrottleCmd {
    /// `ctl throttle` (true) / `ctl unthrottle` (false).
    Operator(bool),
    /// `ctl max-load ...`: new load limits.
    MaxLoad(Vec<LoadLimit>),
}

/// The heartbeat row id of a migrated table: several migrations may share the heartbeat table
/// of one database.
pub fn heartbeat_id(table: &str) -> u32 {
    crc32fast::hash(table.as_bytes()) & 0x7fff_ffff
}

/// The throttler of one migration.
pub struct Throttler {
    /// What to watch.
    pub config: ThrottleConfig,
    /// The source server.
    pub source: Endpoint,
    /// Database of the migrated table (holds the heartbeat table).
    pub db: String,
    /// The migrated table (names the heartbeat row).
    pub table: String,
    /// Commands of the operator.
    pub commands: mpsc::Receiver<ThrottleCmd>,
    /// Where the state is published.
    pub state: watch::Sender<ThrottleState>,
    /// Failed checks (a replica or the source unreadable), for metrics.
    pub check_errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Throttler {
    /// Watch the signals until a critical load outlasts its grace period (the only way this
    /// returns). Cancel the task to stop it; then call [`drop_heartbeat`]. The state stays
    /// published until the throttler is dropped, so report the error before dropping it.
    pub async fn run(&mut self) -> ThrottleError {
        let span = info_span!("throttle", db = %self.db, table = %self.table);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(&mut self) -> ThrottleError {
        let hb_table = format!("{}.{}", quote_ident(&self.db), quote_ident(HEARTBEAT_TABLE));
        let hb_id = heartbeat_id(&self.table);
        let heartbeat = if self.config.replicas.is_empty() {
            None
        } else {
            Some(AbortOnDrop(tokio::spawn(
                heartbeat_writer(
                    self.source.clone(),
                    hb_table.clone(),
                    hb_id,
                    self.config.heartbeat_interval,
                )
                .instrument(info_span!("heartbeat")),
            )))
        };
        let mut source_conn: Option<mysql_async::Conn> = None;
        let mut replica_conns: Vec<Option<mysql_async::Conn>> =
            self.config.replicas.iter().map(|_| None).collect();
        let mut operator = false;
        let mut critical_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_logged: (bool, Vec<&'static str>) = (false, Vec::new());
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                cmd = self.commands.recv() => match cmd {
                    Some(ThrottleCmd::Operator(on)) => operator = on,
                    Some(ThrottleCmd::MaxLoad(limits)) => {
                        info!(max_load = %show_limits(&limits), "max-load changed by the operator");
                        self.config.max_load = limits;
                    }
                    None => {}
                },
            }
            let mut reasons: Vec<(&'static str, String)> = Vec::new();
            if operator {
                reasons.push((
                    "operator",
                    "throttled by the operator (ctl throttle)".into(),
                ));
            }
            if let Some(flag) = &self.config.flag_file {
                if flag.exists() {
                    reasons.push(("flag_file", format!("flag file {} exists", flag.display())));
                }
            }
            // Load and the custom query, on the source.
            let wanted: Vec<String> = self
                .config
                .max_load
                .iter()
                .chain(&self.config.critical_load)
                .map(|l| l.variable.clone())
                .collect();
            if !wanted.is_empty() || self.config.query.is_some() {
                if source_conn.is_none() {
                    match self.source.connect_raw().await {
                        Ok(c) => source_conn = Some(c),
                        Err(e) => {
                            self.check_failed();
                            warn!(error = %e, "throttler: cannot connect to the source");
                        }
                    }
                }
                if let Some(conn) = source_conn.as_mut() {
                    match self.source_checks(conn, &wanted).await {
                        Ok((status, query_value)) => {
                            let mut critical = Vec::new();
                            for l in &self.config.critical_load {
                                if let Some(v) = status.get(&l.variable.to_ascii_lowercase()) {
                                    if *v > l.limit {
                                        critical.push(format!("{}={v} > {}", l.variable, l.limit));
                                    }
                                }
                            }
                            if critical.is_empty() {
                                critical_since = None;
                            } else {
                                let since = *critical_since.get_or_insert_with(Instant::now);
                                let detail = critical.join(", ");
                                if since.elapsed() >= self.config.critical_grace {
                                    warn!(%detail, "critical load outlasted its grace period: aborting");
                                    drop(heartbeat);
                                    return ThrottleError::Critical {
                                        detail,
                                        grace: self.config.critical_grace,
                                    };
                                }
                                reasons.push((
                                    "critical_load",
                                    format!(
                                        "critical load {detail} (aborting in {:.1} s unless it drops)",
                                        self.config.critical_grace.saturating_sub(since.elapsed()).as_secs_f64()
                                    ),
                                ));
                            }
                            let over: Vec<String> = self
                                .config
                                .max_load
                                .iter()
                                .filter_map(|l| {
                                    let v = status.get(&l.variable.to_ascii_lowercase())?;
                                    (*v > l.limit)
                                        .then(|| format!("{}={v} > {}", l.variable, l.limit))
                                })
                                .collect();
                            if !over.is_empty() {
                                reasons.push(("max_load", format!("max-load {}", over.join(", "))));
                            }
                            if let Some(v) = query_value {
                                if v > 0.0 {
                                    reasons.push(("query", format!("throttle query returned {v}")));
                                }
                            }
                        }
                        Err(e) => {
                            self.check_failed();
                            warn!(error = %e, "throttler: reading the source's status failed");
                            source_conn = None;
                        }
                    }
                }
            }
            // Replica lag.
            let mut max_lag: Option<u64> = None;
            for (i, replica) in self.config.replicas.iter().enumerate() {
                let name = replica.to_string();
                let lag = replica_lag(replica, &mut replica_conns[i], &hb_table, hb_id).await;
                match lag {
                    Ok(lag) => {
                        let ms = lag.as_millis() as u64;
                        max_lag = Some(max_lag.map_or(ms, |m| m.max(ms)));
                        if lag > self.config.max_lag {
                            reasons.push((
                                "replica_lag",
                                format!(
                                    "replica {name} lags {:.1} s > {:.1} s (--max-lag-ms)",
                                    lag.as_secs_f64(),
                                    self.config.max_lag.as_secs_f64()
                                ),
                            ));
                        }
                    }
                    Err(why) => {
                        self.check_failed();
                        replica_conns[i] = None;
                        reasons.push(("replica_lag", format!("replica {name}: {why}")));
                    }
                }
            }
            let mut kinds: Vec<&'static str> = reasons.iter().map(|(k, _)| *k).collect();
            kinds.dedup();
            let next = ThrottleState {
                throttled: !reasons.is_empty(),
                reason: reasons
                    .iter()
                    .map(|(_, r)| r.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                kinds: kinds.clone(),
                replica_lag_ms: max_lag,
            };
            if (next.throttled, kinds.clone()) != last_logged {
                if next.throttled {
                    info!(reason = %next.reason, "copy throttled");
                } else {
                    info!("copy released: no throttle signal fires");
                }
                last_logged = (next.throttled, kinds);
            } else {
                debug!(reason = %next.reason, "throttle state");
            }
            if first {
                // Always announced, even when equal to the default: the copy waits for it.
                first = false;
                self.state.send_replace(next);
                continue;
            }
            self.state.send_if_modified(|s| {
                if *s == next {
                    false
                } else {
                    *s = next;
                    true
                }
            });
        }
    }

    fn check_failed(&self) {
        self.check_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The wanted status variables (lowercase names) and the custom query's value.
    async fn source_checks(
        &self,
        conn: &mut mysql_async::Conn,
        wanted: &[String],
    ) -> Result<(HashMap<String, u64>, Option<f64>), mysql_async::Error> {
        let mut status = HashMap::new();
        if !wanted.is_empty() {
            let list = wanted
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",");
            let rows: Vec<(String, String)> = conn
                .query(format!(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN ({list})"
                ))
                .await?;
            for (name, value) in rows {
                if let Ok(v) = value.trim().parse::<f64>() {
                    status.insert(name.to_ascii_lowercase(), v.max(0.0) as u64);
                }
            }
        }
        let query_value = match &self.config.query {
            Some(q) => {
                let v: Option<Option<String>> = conn.query_first(q.as_str()).await?;
                Some(
                    v.flatten()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .unwrap_or(0.0),
                )
            }
            None => None,
        };
        Ok((status, query_value))
    }
}

/// Writes the heartbeat row every `interval`; creates the table when it is missing.
async fn heartbeat_writer(source: Endpoint, table: String, id: u32, interval: Duration) {
    let mut conn: Option<mysql_async::Conn> = None;
    let mut created = false;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if conn.is_none() {
            match source.connect_raw().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    warn!(error = %e, "heartbeat: cannot connect to the source");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if !created {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {table} (id INT UNSIGNED NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB"
            );
            if let Err(e) = c.query_drop(sql).await {
                warn!(error = %e, "heartbeat: cannot create the heartbeat table");
                conn = None;
                continue;
            }
            created = true;
        }
        let sql = format!("REPLACE INTO {table} (id, ts) VALUES ({id}, UTC_TIMESTAMP(6))");
        if let Err(e) = c.query_drop(sql).await {
            warn!(error = %e, "heartbeat write failed; retrying");
            // The table may have been dropped by another migration that finished.
            created = false;
            if !matches!(e, mysql_async::Error::Server(_)) {
                conn = None;
            }
        }
    }
}

/// The lag of one replica: the heartbeat's age, else the replica's own status.
async fn replica_lag(
    replica: &Endpoint,
    conn: &mut Option<mysql_async::Conn>,
    hb_table: &str,
    hb_id: u32,
) -> Result<Duration, String> {
    if conn.is_none() {
        *conn = Some(
            replica
                .connect_raw()
                .await
                .map_err(|e| format!("cannot connect ({e})"))?,
        );
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let heartbeat: Result<Option<Option<i64>>, _> = c
        .query_first(format!(
            "SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) FROM {hb_table} WHERE id = {hb_id}"
        ))
        .await;
    if let Ok(Some(Some(micros))) = heartbeat {
        return Ok(Duration::from_micros(micros.max(0) as u64));
    }
    if let Err(e) = &heartbeat {
        if !matches!(e, mysql_async::Error::Server(_)) {
            return Err(format!("connection lost ({e})"));
        }
    }
    // No heartbeat (not replicated yet, not readable): the replica's own view.
    let status = match c
        .query_first::<mysql_async::Row, _>("SHOW REPLICA STATUS")
        .await
    {
        Ok(r) => r,
        Err(mysql_async::Error::Server(_)) => c
            .query_first::<mysql_async::Row, _>("SHOW SLAVE STATUS")
            .await
            .map_err(|e| format!("cannot read SHOW SLAVE STATUS ({e})"))?,
        Err(e) => return Err(format!("cannot read SHOW REPLICA STATUS ({e})")),
    };
    let Some(row) = status else {
        return Err("not a replica (SHOW REPLICA STATUS is empty) and no heartbeat".into());
    };
    let behind = ["Seconds_Behind_Source", "Seconds_Behind_Master"]
        .iter()
        .find_map(|col| row.get_opt::<Option<u64>, _>(*col).and_then(Result::ok));
    match behind {
        Some(Some(secs)) => Ok(Duration::from_secs(secs)),
        _ => Err(
            "replication is stopped (Seconds_Behind is NULL) and the heartbeat is not readable"
                .into(),
        ),
    }
}

/// Remove this migration's heartbeat row, and the heartbeat table when no other migration
/// uses it (best effort).
pub async fn drop_heartbeat(source: &Endpoint, db: &str, table: &str) {
    let hb_table = format!("{}.{}", quote_ident(db), quote_ident(HEARTBEAT_TABLE));
    let Ok(mut conn) = source.connect_raw().await else {
        return;
    };
    let exists: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, HEARTBEAT_TABLE),
        )
        .await
        .ok()
        .flatten();
    if exists.unwrap_or(0) == 0 {
        return;
    }
    let _ = conn
        .query_drop(format!(
            "DELETE FROM {hb_table} WHERE id = {}",
            heartbeat_id(table)
        ))
        .await;
    let left: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {hb_table}"))
        .await
        .ok()
        .flatten();
    if left == Some(0) {
        if let Err(e) = conn
            .query_drop(format!("DROP TABLE IF EXISTS {hb_table}"))
            .await
        {
            warn!(error = %e, "could not drop the heartbeat table");
        }
    }
    let _ = conn.disconnect().await;
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(
            parse_limits("Threads_running=25, Threads_connected=500").unwrap(),
            vec![
                LoadLimit {
                    variable: "Threads_running".into(),
                    limit: 25
                },
                LoadLimit {
                    variable: "Threads_connected".into(),
                    limit: 500
                }
            ]
        );
        assert!(parse_limits("").unwrap().is_empty());
        assert!(parse_limits("Threads_running").is_err());
        assert!(parse_limits("Threads_running=x").is_err());
        assert!(parse_limits("a'b=1").is_err());
        assert_eq!(
            show_limits(&parse_limits("Threads_running=3").unwrap()),
            "Threads_running=3"
        );
    }
}
