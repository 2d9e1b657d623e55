//! `promote`: the last step before the application moves to the target.
//!
//! 1. Run the sync (resuming from its checkpoints) until the backfill is complete.
//! 2. Writes stop on the source: either the operator stopped them and rowshift waits until no
//!    change of the synced tables arrives for a quiet period (with the reader caught up with the
//!    source's position), or, with `lock_source`, rowshift holds `LOCK TABLES t READ, ...` on a
//!    connection to the source. That needs only the LOCK TABLES and SELECT privileges (no SUPER,
//!    no `FLUSH TABLES WITH READ LOCK`), so it works on RDS; writers to those tables wait on the
//!    lock, readers continue.
//! 3. Drain: a marker row in the signal table is read back from the binlog and every applier
//!    acknowledges everything before it. While an XA branch that changed a synced table is
//!    prepared (applied on the target, not committed on the source), promote waits for it to
//!    end and drains again.
//! 4. Verify every table (chunk checksums, transform applied) and report GO or NO-GO.
//! 5. The sync stops (its checkpoints stay, so `sync` can continue after a NO-GO). The source
//!    lock is released, or handed back to the caller to hold (`keep_lock`) until the
//!    application points at the target.

use super::prepared_xa::prepared_branches;
use super::{start, SyncConfig, SyncError, SyncProgress};
use crate::cutover::server_position;
use crate::verify::{
    self, ColumnMapping, NewTable, Standalone, TableRef, VerifyConfig, VerifyPlan,
};
use mysql_async::prelude::Queryable;
use rowshift_transform::schema::quote_ident;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// How to promote.
#[derive(Debug, Clone)]
pub struct PromoteConfig {
    /// Hold `LOCK TABLES ... READ` on the source instead of waiting for writes to stop.
    pub lock_source: bool,
    /// Keep the source lock after the verdict (returned in the report).
    pub keep_lock: bool,
    /// No change of a synced table for this long means writes have stopped.
    pub quiet: Duration,
    /// Longest wait for the writes to stop, the backfill and the drain.
    pub timeout: Duration,
}

/// The verdict of a promotion.
pub struct PromoteReport {
    /// True when every table verified equal.
    pub go: bool,
    /// One verification report per table.
    pub reports: Vec<verify::VerifyReport>,
    /// The source's position the target was drained to.
    pub final_position: String,
    /// The held source lock (`keep_lock`): dropping it releases the tables.
    pub source_lock: Option<mysql_async::Conn>,
}

/// Promote: see the module documentation.
pub async fn promote(
    config: SyncConfig,
    p: PromoteConfig,
    progress: watch::Sender<SyncProgress>,
) -> Result<PromoteReport, SyncError> {
    let started = Instant::now();
    let mut handle = start(config.clone()).await?;
    let forward = {
        let mut rx = handle.progress();
        let tx = progress.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let v = rx.borrow().clone();
                if tx.send(v).is_err() {
                    return;
                }
            }
        })
    };
    let result = async {
        let mut done = handle.backfill_watch();
        tokio::select! {
            r = done.wait_for(|d| *d) => { r.map_err(|_| SyncError::Stopped("the backfill stopped".into()))?; }
            e = handle.failed() => return Err(e),
            _ = tokio::time::sleep(p.timeout) => return Err(SyncError::DrainTimeout(p.timeout)),
        }
        let mut lock = None;
        if p.lock_source {
            // Not under the lock: the branch's end may need the table.
            drain_without_prepared_xa(&mut handle, &config, &p).await?;
            handle.set_phase("locking");
            let mut c = config.source.connect_raw().await?;
            c.query_drop(format!(
                "SET SESSION lock_wait_timeout = {}",
                p.timeout.as_secs().max(1)
            ))
            .await
            .map_err(super::sql_err("bounding the wait for the source lock"))?;
            let list = config
                .tables
                .iter()
                .map(|t| format!("{}.{} READ", quote_ident(&t.source_db), quote_ident(&t.source_table)))
                .collect::<Vec<_>>()
                .join(", ");
            c.query_drop(format!("LOCK TABLES {list}"))
                .await
                .map_err(super::sql_err("locking the source tables (LOCK TABLES ... READ; needs the LOCK TABLES privilege)"))?;
            info!("source tables locked for reading");
            lock = Some(c);
        } else {
            handle.set_phase("wait-quiet");
            wait_quiet(&mut handle, &config, &p).await?;
        }
        handle.set_phase("draining");
        drain_without_prepared_xa(&mut handle, &config, &p).await?;
        let final_position = handle
            .read_position()
            .map(|p| p.to_string())
            .unwrap_or_default();
        info!(position = %final_position, "drained");
        handle.set_phase("verifying");
        let mut reports = Vec::new();
        for t in &config.tables {
            let table = TableRef {
                db: t.source_db.clone(),
                table: t.source_table.clone(),
            };
            let new = NewTable::Remote {
                endpoint: config.target.clone(),
                table: TableRef {
                    db: t.target_db.clone(),
                    table: t.target_table.clone(),
                },
            };
            let mapping = if t.alter.is_none() && t.sets.is_empty() {
                ColumnMapping::Identity
            } else {
                verify::mapping_for_alter(
                    &config.source,
                    &table,
                    &new,
                    t.alter.as_deref().unwrap_or(""),
                    &t.sets,
                )
                .await?
            };
            let plan = VerifyPlan {
                source: config.source.clone(),
                table,
                new,
                mapping,
            };
            let report = if lock.is_some() {
                verify::run(plan, &mut HeldPoint, VerifyConfig::default()).await?
            } else {
                verify::run(plan, &mut Standalone, VerifyConfig::default()).await?
            };
            reports.push(report);
        }
        Ok((reports, final_position, lock))
    }
    .await;
    let stopped = handle.stop().await;
    forward.abort();
    let (reports, final_position, lock) = result?;
    stopped?;
    let go = reports.iter().all(|r| r.is_go());
    info!(go, elapsed = ?started.elapsed(), "promotion verdict");
    let mut lock = lock;
    if go {
        // The verdict stands whatever happens here: a counter that could not be raised is
        // reported with the statement to run.
        carry_auto_increments(&config, lock.as_mut()).await;
    }
    let source_lock = match lock {
        Some(mut c) if !p.keep_lock => {
            let _ = c.query_drop("UNLOCK TABLES").await;
            let _ = c.disconnect().await;
            None
        }
        other => other,
    };
    Ok(PromoteReport {
        go,
        reports,
        final_position,
        source_lock,
    })
}

/// Raise each target table's AUTO_INCREMENT counter to its source table's (writes to the
/// source have stopped): the target's counter follows its highest row, and ids the source
/// handed out and lost (its highest rows deleted, inserts rolled back) would be handed out
/// again once the application writes to the target. Read on the source under promote's lock
/// when it holds one. A failure (no ALTER privilege on the target, a lock wait) is logged as a
/// warning with the statement to run.
async fn carry_auto_increments(config: &SyncConfig, lock: Option<&mut mysql_async::Conn>) {
    let mut own = None;
    let src = match lock {
        Some(c) => c,
        None => match config.source.connect_raw().await {
            Ok(c) => own.insert(c),
            Err(e) => {
                warn!(error = %e, "AUTO_INCREMENT counters not carried to the target: cannot connect to the source");
                return;
            }
        },
    };
    let mut tgt = match config.target.connect_raw().await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "AUTO_INCREMENT counters not carried to the target: cannot connect to it");
            return;
        }
    };
    for t in &config.tables {
        let target = format!(
            "{}.{}",
            quote_ident(&t.target_db),
            quote_ident(&t.target_table)
        );
        let next = match crate::cutover::next_auto_increment(src, &t.source_db, &t.source_table)
            .await
        {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, table = %target, "cannot read the source table's AUTO_INCREMENT: check the target's counter before the application writes to it");
                continue;
            }
        };
        if let Err(e) =
            crate::cutover::raise_auto_increment(&mut tgt, &t.target_db, &t.target_table, next)
                .await
        {
            warn!(error = %e, table = %target, "cannot raise the target table's AUTO_INCREMENT: run ALTER TABLE {target} AUTO_INCREMENT = {next} before the application writes to it");
        }
    }
    let _ = tgt.disconnect().await;
}

/// The consistent point under promote's own source lock: nothing more to lock (the appliers
/// are drained and idle, the source tables are read-locked by promote).
struct HeldPoint;

impl verify::ConsistentPoint for HeldPoint {
    fn lock_scope(&self) -> verify::LockScope {
        verify::LockScope::Held
    }
}

/// Drain; while an XA branch that changed a synced table is prepared on the source, wait (up to
/// the timeout) for it to end and drain again. Its rows are applied on the target but not
/// committed on the source, so a verification now would report them as differences.
async fn drain_without_prepared_xa(
    handle: &mut super::SyncHandle,
    config: &SyncConfig,
    p: &PromoteConfig,
) -> Result<(), SyncError> {
    let started = Instant::now();
    let mut waiting = false;
    while handle.drain(p.timeout).await?.xa_prepared {
        if started.elapsed() >= p.timeout {
            let mut c = config.source.connect_raw().await?;
            let xids = prepared_branches(&mut c)
                .await
                .map(|x| x.join(", "))
                .unwrap_or_else(|| "XA RECOVER not permitted".into());
            let _ = c.disconnect().await;
            return Err(SyncError::XaStillPrepared {
                xids,
                waited: p.timeout,
            });
        }
        if !waiting {
            waiting = true;
            info!("waiting for an XA transaction prepared on the source that changed a synced table to end (XA COMMIT or XA ROLLBACK) before verifying");
        }
        tokio::select! {
            e = handle.failed() => return Err(e),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    if waiting {
        info!(
            waited_ms = started.elapsed().as_millis() as u64,
            "the prepared XA transaction ended"
        );
    }
    Ok(())
}

/// Wait until the reader has caught up with the source's position and no change of a synced
/// table arrived for `quiet`.
async fn wait_quiet(
    handle: &mut super::SyncHandle,
    config: &SyncConfig,
    p: &PromoteConfig,
) -> Result<(), SyncError> {
    let deadline = Instant::now() + p.timeout;
    let mut conn = config.source.connect_raw().await?;
    loop {
        if Instant::now() > deadline {
            return Err(SyncError::DrainTimeout(p.timeout));
        }
        let target = server_position(&mut conn)
            .await
            .map_err(super::sql_err("reading the source's position"))?;
        // Caught up: the reader has passed the position read just now. A drain proves it.
        handle.drain(p.timeout).await?;
        let read = handle.read_position();
        let caught_up = read.as_ref().is_some_and(|r| {
            super::ckpt::Coord::of_position(r) >= super::ckpt::Coord::of_position(&target)
        });
        if caught_up && handle.since_last_table_event() >= p.quiet {
            let _ = conn.disconnect().await;
            return Ok(());
        }
        tokio::select! {
            e = handle.failed() => return Err(e),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
