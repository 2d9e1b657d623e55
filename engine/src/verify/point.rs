//! The consistent point: every snapshot connection of both sides sees the tables as they were at
//! one instant, while writes are blocked only for the few milliseconds it takes to open them.
//!
//! Sequence: connect every snapshot connection first (outside the lock); lock the tables
//! (`LOCK TABLES .. READ`, or `FLUSH TABLES .. WITH READ LOCK`) on one connection per server,
//! which waits for every open write transaction on them to end and blocks new writes; call the
//! [`ConsistentPoint::drain`] hook (migrate waits there until its appliers reached the position
//! of the lock); `START TRANSACTION WITH CONSISTENT SNAPSHOT` on every snapshot connection at
//! once; `UNLOCK TABLES`. From then on the checksums read the snapshots, not the live tables.
//!
//! The lock waits at most `lock_wait_timeout` (a waiting `LOCK TABLES` queues the application's
//! writes behind it) and is retried with back-off.

use super::{Side, VerifyConfig, VerifyError};
use crate::conn::Endpoint;
use futures_util::future::try_join_all;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

/// An error of a [`ConsistentPoint::drain`] hook.
pub type DrainError = Box<dyn std::error::Error + Send + Sync>;

/// Which tables are locked while the snapshots are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// Both tables: nothing may change either while the snapshots open. For a standalone
    /// verification where writers may touch both (or nothing maintains the new table).
    #[default]
    BothTables,
    /// Only the old table: its writes stop, while whatever maintains the new table (migrate's
    /// appliers) keeps writing until [`ConsistentPoint::drain`] says it caught up.
    OldTable,
    /// No lock: the caller already keeps both tables still (sync's promote holds `LOCK TABLES
    /// t READ` on the source and has drained its appliers). Another `LOCK TABLES` on the source
    /// would queue behind the writers waiting for the caller's lock.
    Held,
}

/// How the tables are locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMethod {
    /// `LOCK TABLES t READ, ..` (needs the LOCK TABLES privilege).
    #[default]
    LockTables,
    /// `FLUSH TABLES t, .. WITH READ LOCK` (needs RELOAD; also flushes the tables).
    FlushTables,
}

/// The hook that decides what happens while the tables are locked.
///
/// Standalone `rowshift verify` uses [`Standalone`]: nothing to wait for. `migrate` implements
/// it with `lock_scope() == OldTable` and a `drain` that waits until its appliers applied
/// everything up to the binlog position current at the lock.
pub trait ConsistentPoint: Send {
    /// Tables to lock.
    fn lock_scope(&self) -> LockScope {
        LockScope::BothTables
    }

    /// Called with the tables locked, before the snapshots are opened. Keep it short: writes
    /// wait meanwhile.
    fn drain(&mut self) -> impl Future<Output = Result<(), DrainError>> + Send {
        async { Ok(()) }
    }
}

/// Lock, open the snapshots, unlock: no drain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standalone;

impl ConsistentPoint for Standalone {}

/// How long the consistent point held up writes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockStats {
    /// Waiting for the lock (other transactions finishing; writes queue behind it meanwhile).
    pub wait_ms: f64,
    /// From the first lock granted to the unlock done: writes to the locked tables were
    /// blocked.
    pub held_ms: f64,
    /// Time spent in the drain hook (part of `held_ms`).
    pub drain_ms: f64,
    /// Time spent opening the snapshots (part of `held_ms`).
    pub snapshot_ms: f64,
    /// Attempts needed (lock wait timeouts are retried).
    pub attempts: u32,
    /// The lock statement's method.
    pub method: LockMethod,
    /// Which tables.
    pub scope: LockScope,
    /// Snapshot connections opened (both sides).
    pub snapshots: usize,
}

/// Snapshot connections of both sides, opened at one consistent point.
pub(crate) struct Snapshots {
    pub old: Vec<Conn>,
    pub new: Vec<Conn>,
    pub lock: LockStats,
}

/// What to open: both endpoints, the quoted tables and the number of connections per side.
pub(crate) struct Request<'a> {
    pub old: &'a Endpoint,
    pub new: &'a Endpoint,
    pub same_server: bool,
    pub old_table: &'a str,
    pub new_table: &'a str,
    pub n_old: usize,
    pub n_new: usize,
}

/// One server to lock tables on.
struct LockTarget<'a> {
    endpoint: &'a Endpoint,
    side: Side,
}

/// Open `n_old` + `n_new` snapshot connections at one consistent point.
pub(crate) async fn open(
    point: &mut impl ConsistentPoint,
    req: Request<'_>,
    config: &VerifyConfig,
) -> Result<Snapshots, VerifyError> {
    let Request {
        old,
        new,
        same_server,
        old_table,
        new_table,
        n_old,
        n_new,
    } = req;
    let span = info_span!("consistent_point", n_old, n_new);
    async move {
        let mut olds = Vec::with_capacity(n_old);
        for _ in 0..n_old {
            olds.push(snapshot_conn(old, Side::Old).await?);
        }
        let mut news = Vec::with_capacity(n_new);
        for _ in 0..n_new {
            news.push(snapshot_conn(new, Side::New).await?);
        }
        let scope = point.lock_scope();
        let mut groups: Vec<(LockTarget, Vec<String>)> = vec![(
            LockTarget {
                endpoint: old,
                side: Side::Old,
            },
            vec![old_table.to_string()],
        )];
        if scope == LockScope::Held {
            groups.clear();
        }
        if scope == LockScope::BothTables {
            if same_server {
                groups[0].1.push(new_table.to_string());
            } else {
                groups.push((
                    LockTarget {
                        endpoint: new,
                        side: Side::New,
                    },
                    vec![new_table.to_string()],
                ));
            }
        }
        let mut lockers = Vec::with_capacity(groups.len());
        for (target, _) in &groups {
            let mut c = target.endpoint.connect().await?;
            let secs = config.lock_wait_timeout.as_secs().max(1);
            c.query_drop(format!("SET SESSION lock_wait_timeout = {secs}"))
                .await
                .map_err(VerifyError::sql(target.side, "setting lock_wait_timeout"))?;
            lockers.push(c);
        }

        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(200);
        let waited = Instant::now();
        let locked = loop {
            attempts += 1;
            match lock_all(&mut lockers, &groups, config).await {
                Ok(first_granted) => break first_granted,
                Err(e) if attempts < config.lock_attempts && is_lock_timeout(&e) => {
                    warn!(attempt = attempts, "lock wait timeout; retrying");
                    unlock_all(&mut lockers).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    unlock_all(&mut lockers).await;
                    return Err(VerifyError::Lock {
                        tables: groups
                            .iter()
                            .flat_map(|g| g.1.iter().cloned())
                            .collect::<Vec<_>>()
                            .join(", "),
                        attempts,
                        source: e,
                    });
                }
            }
        };
        let wait = locked.duration_since(waited);

        let drain_start = Instant::now();
        let drained = point.drain().await;
        let drain_time = drain_start.elapsed();
        if let Err(source) = drained {
            unlock_all(&mut lockers).await;
            return Err(VerifyError::Drain { source });
        }
        let snapshot_start = Instant::now();
        let started = {
            let olds_f = olds.iter_mut().map(|c| begin_snapshot(c, Side::Old));
            let news_f = news.iter_mut().map(|c| begin_snapshot(c, Side::New));
            futures_util::future::join(try_join_all(olds_f), try_join_all(news_f)).await
        };
        let snapshot_time = snapshot_start.elapsed();
        let mut unlock_err = None;
        for (c, (target, _)) in lockers.iter_mut().zip(&groups) {
            if let Err(e) = c.query_drop("UNLOCK TABLES").await {
                unlock_err = Some(VerifyError::sql(target.side, "UNLOCK TABLES")(e));
            }
        }
        let held = locked.elapsed();
        for c in lockers {
            let _ = c.disconnect().await;
        }
        started.0?;
        started.1?;
        if let Some(e) = unlock_err {
            return Err(e);
        }
        let stats = LockStats {
            wait_ms: wait.as_secs_f64() * 1e3,
            held_ms: held.as_secs_f64() * 1e3,
            drain_ms: drain_time.as_secs_f64() * 1e3,
            snapshot_ms: snapshot_time.as_secs_f64() * 1e3,
            attempts,
            method: config.lock_method,
            scope,
            snapshots: n_old + n_new,
        };
        info!(
            held_ms = stats.held_ms,
            wait_ms = stats.wait_ms,
            "snapshots opened at a consistent point"
        );
        Ok(Snapshots {
            old: olds,
            new: news,
            lock: stats,
        })
    }
    .instrument(span)
    .await
}

/// Lock every group; returns when the first lock was granted (writes blocked from then on).
async fn lock_all(
    lockers: &mut [Conn],
    groups: &[(LockTarget<'_>, Vec<String>)],
    config: &VerifyConfig,
) -> Result<Instant, mysql_async::Error> {
    let mut first_granted = None;
    for (c, (_, tables)) in lockers.iter_mut().zip(groups) {
        let sql = match config.lock_method {
            LockMethod::LockTables => format!(
                "LOCK TABLES {}",
                tables
                    .iter()
                    .map(|t| format!("{t} READ"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LockMethod::FlushTables => {
                format!("FLUSH TABLES {} WITH READ LOCK", tables.join(", "))
            }
        };
        debug!(%sql, "locking");
        c.query_drop(sql).await?;
        first_granted.get_or_insert_with(Instant::now);
    }
    Ok(first_granted.unwrap_or_else(Instant::now))
}

async fn unlock_all(lockers: &mut [Conn]) {
    for c in lockers.iter_mut() {
        let _ = c.query_drop("UNLOCK TABLES").await;
    }
}

fn is_lock_timeout(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1205)
}

async fn snapshot_conn(endpoint: &Endpoint, side: Side) -> Result<Conn, VerifyError> {
    let mut c = endpoint.connect().await?;
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(VerifyError::sql(side, "setting REPEATABLE READ"))?;
    Ok(c)
}

async fn begin_snapshot(c: &mut Conn, side: Side) -> Result<(), VerifyError> {
    c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(VerifyError::sql(side, "opening a consistent snapshot"))
}
