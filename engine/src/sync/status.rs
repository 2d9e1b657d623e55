//! `rowshift status` for syncs: the checkpoint rows on the target and the source's position.

use super::ckpt::{str_lit, CkptTable, Coord};
use super::SyncProgress;
use crate::conn::Endpoint;
use crate::position::Position;
use mysql_async::prelude::Queryable;
use rowshift_transform::schema::quote_ident;
use std::time::Duration;
use tokio::sync::watch;

/// The live-status table on the target (beside the checkpoint table): one row per running
/// sync, written every second by the sync, read by `rowshift status`.
pub const STATUS_TABLE: &str = "_rowshift_sync_status";

/// What a running sync last reported.
#[derive(Debug, Clone)]
pub struct LiveStatus {
    /// Sync name.
    pub name: String,
    /// Phase.
    pub phase: String,
    /// Last commit read from the source.
    pub source_position: String,
    /// Lowest applied coordinate.
    pub applied: String,
    /// Lag in seconds.
    pub lag_secs: f64,
    /// Changes read, not yet applied.
    pub lag_events: u64,
    /// Changes applied per second (last second).
    pub rows_per_sec: f64,
    /// Rows backfilled.
    pub backfilled: u64,
    /// Seconds since the row was written (a stopped sync stops writing it).
    pub age_secs: f64,
}

fn status_table(db: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(STATUS_TABLE))
}

/// Write the sync's progress to the status table every second (best effort: a failed write is
/// retried on the next tick and never stops the sync).
pub async fn writer(
    target: Endpoint,
    db: String,
    name: String,
    progress: watch::Receiver<SyncProgress>,
) {
    let table = status_table(&db);
    let mut conn = None;
    let mut created = false;
    let mut last_applied = None::<u64>;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let p = progress.borrow().clone();
        let rate = last_applied.map_or(0.0, |l| p.applied_changes.saturating_sub(l) as f64);
        last_applied = Some(p.applied_changes);
        if conn.is_none() {
            conn = target.connect().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        if !created {
            created = c
                .query_drop(format!(
                    "CREATE TABLE IF NOT EXISTS {table} (
                       `name` VARCHAR(191) NOT NULL PRIMARY KEY,
                       `phase` VARCHAR(32) NOT NULL,
                       `source_position` VARCHAR(255) NOT NULL,
                       `applied` VARCHAR(255) NOT NULL,
                       `lag_secs` DOUBLE NOT NULL,
                       `lag_events` BIGINT UNSIGNED NOT NULL,
                       `rows_per_sec` DOUBLE NOT NULL,
                       `backfilled` BIGINT UNSIGNED NOT NULL,
                       `updated` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
                     ) ENGINE=InnoDB"
                ))
                .await
                .is_ok();
        }
        let sql = format!(
            "REPLACE INTO {table} (`name`, `phase`, `source_position`, `applied`, `lag_secs`, `lag_events`, `rows_per_sec`, `backfilled`) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            str_lit(&name),
            str_lit(p.phase),
            str_lit(&p.source_position.map(|p| p.to_string()).unwrap_or_default()),
            str_lit(&p.applied.map(|c| c.to_string()).unwrap_or_default()),
            p.lag_secs,
            p.lag_events,
            rate,
            p.backfilled
        );
        if c.query_drop(sql).await.is_err() {
            conn = None;
            created = false;
        }
    }
}

/// The live status rows of `db` (empty when no sync ever ran there).
pub async fn live(target: &Endpoint, db: &str) -> Result<Vec<LiveStatus>, super::SyncError> {
    let mut conn = target.connect().await?;
    if !crate::catalog::table_exists(&mut conn, db, STATUS_TABLE)
        .await
        .map_err(super::sql_err("looking for the status table"))?
    {
        return Ok(Vec::new());
    }
    let rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT `name`, `phase`, `source_position`, `applied`, `lag_secs`, `lag_events`, `rows_per_sec`, `backfilled`,
                    TIMESTAMPDIFF(MICROSECOND, `updated`, CURRENT_TIMESTAMP(6)) / 1e6
             FROM {} ORDER BY `name`",
            status_table(db)
        ))
        .await
        .map_err(super::sql_err("reading the status table"))?;
    let _ = conn.disconnect().await;
    let text = |r: &mysql_async::Row, i: usize| -> String {
        r.get_opt::<String, _>(i)
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    Ok(rows
        .iter()
        .map(|r| LiveStatus {
            name: text(r, 0),
            phase: text(r, 1),
            source_position: text(r, 2),
            applied: text(r, 3),
            lag_secs: text(r, 4).parse().unwrap_or(0.0),
            lag_events: text(r, 5).parse().unwrap_or(0),
            rows_per_sec: text(r, 6).parse().unwrap_or(0.0),
            backfilled: text(r, 7).parse().unwrap_or(0),
            age_secs: text(r, 8).parse().unwrap_or(0.0),
        })
        .collect())
}

/// The state of one stream (one synced table of one sync).
#[derive(Debug, Clone)]
pub struct StreamStatus {
    /// `name:db.table`.
    pub stream: String,
    /// Appliers.
    pub appliers: usize,
    /// Lowest applied coordinate over the appliers.
    pub applied: Coord,
    /// Backfill finished.
    pub backfill_done: bool,
    /// Lowest backfill chunk done.
    pub chunk: u64,
    /// Seconds since the stalest checkpoint row was written.
    pub checkpoint_age_secs: f64,
}

/// Status of every stream in the checkpoint table of `ckpt_db` on `target`, and the source's
/// current position when `source` is given.
pub async fn read(
    target: &Endpoint,
    ckpt_db: &str,
    source: Option<&Endpoint>,
) -> Result<(Vec<StreamStatus>, Option<Position>), super::SyncError> {
    let ckpt = CkptTable {
        db: ckpt_db.to_string(),
    };
    let mut conn = target.connect().await?;
    let mut out = Vec::new();
    for stream in ckpt.streams(&mut conn).await? {
        let rows = ckpt.load(&mut conn, &stream).await?;
        let Some(applied) = rows.iter().map(|r| r.before.clone()).min() else {
            continue;
        };
        out.push(StreamStatus {
            stream,
            appliers: rows.len(),
            applied,
            backfill_done: rows.iter().all(|r| r.backfill_done),
            chunk: rows.iter().map(|r| r.chunk).min().unwrap_or(0),
            checkpoint_age_secs: rows.iter().filter_map(|r| r.age_secs).fold(0.0, f64::max),
        });
    }
    let _ = conn.disconnect().await;
    let position = match source {
        Some(s) => {
            let mut c = s.connect_raw().await?;
            let p = crate::cutover::server_position(&mut c)
                .await
                .map_err(super::sql_err("reading the source's position"))?;
            let _ = c.disconnect().await;
            Some(p)
        }
        None => None,
    };
    Ok((out, position))
}
