//! Prometheus metrics of a migration, served as text on the control HTTP listener's
//! `/metrics` (see [`crate::control`]).
//!
//! The pipeline keeps its own counters in atomics ([`crate::copy::CopyStats`],
//! [`crate::migrate::router::RouterStats`], [`crate::apply::ApplyStats`]); [`feed`] copies them
//! into the Prometheus metrics a few times a second, so no stage depends on this module. Chunk
//! durations arrive one by one on a channel and fill a histogram.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `rowshift_rows_copied_total` | counter | `table` |
//! | `rowshift_events_total` | counter | `table`, `kind` (insert, update, delete) |
//! | `rowshift_events_applied_total` | counter | `table` |
//! | `rowshift_apply_lag_seconds` | gauge | `table` |
//! | `rowshift_apply_lag_events` | gauge | `table` |
//! | `rowshift_throttled` | gauge 0/1 | `table` |
//! | `rowshift_throttle_reason` | gauge 0/1 | `table`, `reason` (operator, flag_file, critical_load, max_load, replica_lag, query) |
//! | `rowshift_replica_lag_seconds` | gauge | `table` |
//! | `rowshift_chunk_seconds` | histogram | `table` |
//! | `rowshift_cutover_lock_seconds` | gauge | `table` |
//! | `rowshift_errors_total` | counter | `table`, `kind` |

use crate::apply::ApplyStats;
use crate::copy::CopyStats;
use crate::migrate::router::RouterStats;
use crate::throttle::ThrottleState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Every throttle signal kind, so each has a 0/1 series.
pub const THROTTLE_KINDS: [&str; 6] = [
    "operator",
    "flag_file",
    "critical_load",
    "max_load",
    "replica_lag",
    "query",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    table: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    table: String,
    reason: String,
}

/// The metrics of one migration.
pub struct Metrics {
    table: String,
    registry: Registry,
    rows_copied: Family<TableLabel, Counter>,
    events: Family<KindLabels, Counter>,
    applied: Family<TableLabel, Counter>,
    batches: Family<TableLabel, Counter>,
    lag_seconds: Family<TableLabel, Gauge<f64, AtomicU64>>,
    lag_events: Family<TableLabel, Gauge>,
    throttled: Family<TableLabel, Gauge>,
    throttle_reason: Family<ReasonLabels, Gauge>,
    replica_lag: Family<TableLabel, Gauge<f64, AtomicU64>>,
    chunk_seconds: Family<TableLabel, Histogram>,
    cutover_lock: Family<TableLabel, Gauge<f64, AtomicU64>>,
    errors: Family<KindLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("table", &self.table)
            .finish()
    }
}

impl Metrics {
    /// Metrics for `table` (shown as `db.table` in the labels).
    pub fn new(table: &str) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("rowshift");
        let m = Metrics {
            table: table.to_string(),
            rows_copied: Family::default(),
            events: Family::default(),
            applied: Family::default(),
            batches: Family::default(),
            lag_seconds: Family::default(),
            lag_events: Family::default(),
            throttled: Family::default(),
            throttle_reason: Family::default(),
            replica_lag: Family::default(),
            chunk_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            cutover_lock: Family::default(),
            errors: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "rows_copied",
            "Rows copied into the shadow table",
            m.rows_copied.clone(),
        );
        registry.register(
            "events",
            "Row changes of the table read from the binlog, by kind",
            m.events.clone(),
        );
        registry.register(
            "events_applied",
            "Changes written to the shadow table by the appliers",
            m.applied.clone(),
        );
        registry.register(
            "apply_batches",
            "Transactions the appliers wrote the changes in (changes per batch: events_applied / apply_batches)",
            m.batches.clone(),
        );
        registry.register(
            "apply_lag_seconds",
            "Seconds between the newest binlog event read and now",
            m.lag_seconds.clone(),
        );
        registry.register(
            "apply_lag_events",
            "Changes read but not yet applied",
            m.lag_events.clone(),
        );
        registry.register(
            "throttled",
            "1 while the copy is throttled",
            m.throttled.clone(),
        );
        registry.register(
            "throttle_reason",
            "1 for each throttle signal that fires",
            m.throttle_reason.clone(),
        );
        registry.register(
            "replica_lag_seconds",
            "Largest lag measured on the watched replicas",
            m.replica_lag.clone(),
        );
        registry.register(
            "chunk_seconds",
            "Duration of copy chunks",
            m.chunk_seconds.clone(),
        );
        registry.register(
            "cutover_lock_seconds",
            "How long the cut-over held the table lock",
            m.cutover_lock.clone(),
        );
        registry.register("errors", "Errors by kind", m.errors.clone());
        let mut m = m;
        m.registry = registry;
        // Series that exist from the start, at 0.
        let _ = m.rows_copied.get_or_create(&m.label());
        for kind in ["insert", "update", "delete"] {
            let _ = m.events.get_or_create(&m.kind(kind));
        }
        let _ = m.throttled.get_or_create(&m.label());
        for reason in THROTTLE_KINDS {
            let _ = m.throttle_reason.get_or_create(&ReasonLabels {
                table: m.table.clone(),
                reason: reason.into(),
            });
        }
        Arc::new(m)
    }

    fn label(&self) -> TableLabel {
        TableLabel {
            table: self.table.clone(),
        }
    }

    fn kind(&self, kind: &str) -> KindLabels {
        KindLabels {
            table: self.table.clone(),
            kind: kind.into(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        out
    }

    /// Count one error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&self.kind(kind)).inc();
    }

    /// Record the cut-over's lock time.
    pub fn cutover_lock(&self, held: Duration) {
        self.cutover_lock
            .get_or_create(&self.label())
            .set(held.as_secs_f64());
    }
}

/// Where [`feed`] reads the pipeline's counters.
#[derive(Debug)]
pub struct MetricSources {
    /// Copy counters.
    pub copy: Arc<CopyStats>,
    /// Router counters.
    pub router: Arc<RouterStats>,
    /// Applier counters.
    pub apply: Arc<ApplyStats>,
    /// Throttle state.
    pub throttle: watch::Receiver<ThrottleState>,
    /// Failed throttle checks.
    pub throttle_errors: Arc<AtomicU64>,
    /// Durations of copy chunks.
    pub chunk_times: mpsc::UnboundedReceiver<Duration>,
}

/// Copy the pipeline's counters into `metrics` every 250 ms, until cancelled.
pub async fn feed(metrics: Arc<Metrics>, mut src: MetricSources) {
    let mut last = [0u64; 8];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(t) = src.chunk_times.recv() => {
                metrics.chunk_seconds.get_or_create(&metrics.label()).observe(t.as_secs_f64());
                continue;
            }
        }
        let now = [
            src.copy.rows_copied.load(Ordering::Relaxed),
            src.router.by_kind[0].load(Ordering::Relaxed),
            src.router.by_kind[1].load(Ordering::Relaxed),
            src.router.by_kind[2].load(Ordering::Relaxed),
            src.apply.changes.load(Ordering::Relaxed),
            src.copy.retries.load(Ordering::Relaxed),
            src.throttle_errors.load(Ordering::Relaxed),
            src.apply.batches.load(Ordering::Relaxed),
        ];
        let delta = |i: usize| now[i].saturating_sub(last[i]);
        metrics
            .rows_copied
            .get_or_create(&metrics.label())
            .inc_by(delta(0));
        for (i, kind) in ["insert", "update", "delete"].iter().enumerate() {
            metrics
                .events
                .get_or_create(&metrics.kind(kind))
                .inc_by(delta(1 + i));
        }
        metrics
            .applied
            .get_or_create(&metrics.label())
            .inc_by(delta(4));
        metrics
            .batches
            .get_or_create(&metrics.label())
            .inc_by(delta(7));
        if delta(5) > 0 {
            metrics
                .errors
                .get_or_create(&metrics.kind("copy_retry"))
                .inc_by(delta(5));
        }
        if delta(6) > 0 {
            metrics
                .errors
                .get_or_create(&metrics.kind("throttle_check"))
                .inc_by(delta(6));
        }
        last = now;
        let last_ts = src.router.last_event_ts.load(Ordering::Relaxed);
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let lag = if last_ts == 0 {
            0
        } else {
            epoch.saturating_sub(last_ts)
        };
        metrics
            .lag_seconds
            .get_or_create(&metrics.label())
            .set(lag as f64);
        let read = src
            .router
            .events
            .load(Ordering::Relaxed)
            .saturating_sub(src.router.skipped.load(Ordering::Relaxed));
        let backlog = read.saturating_sub(src.apply.changes.load(Ordering::Relaxed));
        metrics
            .lag_events
            .get_or_create(&metrics.label())
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        let state = src.throttle.borrow().clone();
        metrics
            .throttled
            .get_or_create(&metrics.label())
            .set(i64::from(state.throttled));
        for reason in THROTTLE_KINDS {
            metrics
                .throttle_reason
                .get_or_create(&ReasonLabels {
                    table: metrics.table.clone(),
                    reason: reason.into(),
                })
                .set(i64::from(state.kinds.contains(&reason)));
        }
        if let Some(ms) = state.replica_lag_ms {
            metrics
                .replica_lag
                .get_or_create(&metrics.label())
                .set(ms as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_text() {
        let m = Metrics::new("shop.orders");
        m.error("copy_retry");
        m.cutover_lock(Duration::from_millis(12));
        let text = m.encode();
        assert!(
            text.contains("rowshift_rows_copied_total{table=\"shop.orders\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("rowshift_errors_total{table=\"shop.orders\",kind=\"copy_retry\"} 1"),
            "{text}"
        );
        assert!(text.contains("rowshift_cutover_lock_seconds"), "{text}");
        assert!(text.contains("# EOF"), "{text}");
    }
}
