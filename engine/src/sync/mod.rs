//! `sync`: keep tables on another server (the target) in step with the source, in a new shape
//! if asked, until stopped; `promote` drains and verifies (design.md section 5).
//!
//! ```text
//!  source binlog ─► stream ─► router ─► per table: N appliers ─► target tables
//!        ▲                      ▲   (key hash, per-key order)   + _rowshift_sync_ckpt
//!  _rowshift_signal ◄─ backfill ┘    (chunk rows at the high watermark)
//! ```
//!
//! - Setup: the target table is created from the source's definition plus the ALTER (or an
//!   existing one is checked against the mapping with `target_schema_from_existing`); the
//!   checkpoint table `_rowshift_sync_ckpt` on the target gets one row per (stream, applier).
//! - Backfill ([`crate::backfill`]): watermark chunks, no locks on the source, written through
//!   the same appliers as the binlog changes.
//! - Exactly-once ([`ckpt`], [`applier`]): each batch commits with its applier's checkpoint
//!   row; a restart starts the stream at the lowest checkpoint and each applier skips what it
//!   has. A purged start position is refused: a new backfill is needed.
//! - Only one process applies a stream at a time: a `GET_LOCK` on the target named after the
//!   sync and the database of its checkpoint, held for the run. When its session ends (a
//!   target restart) it is taken again before any applier writes; when another process took it
//!   meanwhile, the run stops.

pub mod applier;
pub mod ckpt;
mod prepared_xa;
pub mod promote;
pub mod router;
pub mod status;

use crate::apply::ApplyTarget;
use crate::backfill::{BackfillError, RowReader, SignalKind, SignalTable};
use crate::catalog::{self, CatalogError};
use crate::conn::{ConnError, Endpoint};
use crate::control::operate::{OperateConfig, Operations};
use crate::control::{ControlError, Job};
use crate::copy::{ChunkSize, CopyControl, CopyStats};
use crate::position::Position;
use crate::source::stream::SourceConfig;
use crate::sqlvalue::LiteralKind;
use applier::{LockSeen, SyncApplier, SyncApplyError, SyncApplyStats, SyncMsg};
use ckpt::{ApplierCkpt, CkptError, CkptTable, Coord, StreamIdentity};
use mysql_async::prelude::Queryable;
pub use router::Drained;
use router::{ChunkRows, RouterCmd, SyncRouter, SyncRouterError, SyncRouterStats, TableRoute};
use rowshift_transform::mapping::Mapping;
use rowshift_transform::schema::{quote_ident, ColumnType, Flavor, TableSchema};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

/// Errors of a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Connecting failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A preflight check on the source failed.
    #[error(transparent)]
    Preflight(#[from] crate::migrate::preflight::PreflightError),
    /// Reading a definition failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A statement failed.
    #[error("{step}: {source}")]
    Sql {
        /// What was being done.
        step: String,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The target table exists but was not declared as existing.
    #[error("the target table {table} already exists: pass --target-schema-from-existing to sync into it, or drop it to have rowshift create it")]
    TargetExists {
        /// The table.
        table: String,
    },
    /// A fresh sync into an existing target table that holds rows.
    #[error("the target table {table} already holds rows: a backfill into it would mix them with the source's (rows the source lacks would stay); empty it first or sync into an empty table")]
    TargetNotEmpty {
        /// The table.
        table: String,
    },
    /// A stream's checkpoint belongs to another source server or target table than this run's.
    #[error(
        "sync {name}: the checkpoint of {stream} in {ckpt} was made {what}, not {now}: {hint}"
    )]
    StreamMoved {
        /// Sync name.
        name: String,
        /// The stream.
        stream: String,
        /// The checkpoint table.
        ckpt: String,
        /// What the checkpoint belongs to.
        what: String,
        /// What this run has.
        now: String,
        /// What to do.
        hint: &'static str,
    },
    /// The target table is missing.
    #[error("the target table {table} does not exist{hint}")]
    TargetMissing {
        /// The table.
        table: String,
        /// What to do.
        hint: &'static str,
    },
    /// The target rejected the new definition.
    #[error("creating the target table {table} failed: {detail}; create it yourself (in the new shape) and pass --target-schema-from-existing")]
    CreateTarget {
        /// The table.
        table: String,
        /// The server's message.
        detail: String,
    },
    /// The mapping between source and target cannot be built.
    #[error("mapping {source_table} to {target_table}: {detail}")]
    Mapping {
        /// Source table.
        source_table: String,
        /// Target table.
        target_table: String,
        /// What is wrong.
        detail: String,
    },
    /// The backfill failed.
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    /// The checkpoint table failed.
    #[error(transparent)]
    Ckpt(#[from] CkptError),
    /// An applier failed.
    #[error(transparent)]
    Apply(#[from] SyncApplyError),
    /// The router failed.
    #[error(transparent)]
    Router(#[from] SyncRouterError),
    /// The binlog source failed.
    #[error("binlog source: {0}")]
    Source(#[from] crate::source::stream::SourceError),
    /// The binlog stream failed or its connection did not come back in time.
    #[error(transparent)]
    Stream(#[from] crate::source::reconnect::StreamError),
    /// The checkpoints of the tables disagree (some have a stream, others not).
    #[error("the checkpoint table {ckpt} has a stream for {have} but not for {missing}: the set of tables of sync {name} changed. Sync the new tables under another --name")]
    TablesChanged {
        /// Checkpoint table.
        ckpt: String,
        /// Sync name.
        name: String,
        /// Tables with a stream.
        have: String,
        /// Tables without.
        missing: String,
    },
    /// The binlog the checkpoint needs is gone.
    #[error("the source no longer has binlog file {file} (purged), which the checkpoint of sync {name} needs to resume: changes in between are lost to rowshift, so a new backfill is needed. Delete the stream's rows from {ckpt} and truncate (or drop) the target tables, then run sync again; keep binlogs longer (binlog_expire_logs_seconds, on RDS 'binlog retention hours')")]
    Purged {
        /// The missing file.
        file: String,
        /// Sync name.
        name: String,
        /// Checkpoint table.
        ckpt: String,
    },
    /// Another process runs the same sync.
    #[error("another rowshift process is applying sync {name} into `{db}` on this target (lock {lock} is held): stop it first (Ctrl-C) and run this command again")]
    AlreadyRunning {
        /// Sync name.
        name: String,
        /// Target database holding the sync's checkpoint.
        db: String,
        /// The lock name.
        lock: String,
    },
    /// The sync's lock on the target was lost (its connection ended: a target restart, a
    /// KILL, a network cut): another process could take it and apply the same rows.
    #[error("sync {name} lost its lock {lock} on the target ({reason}): stopped so that no second process applies the same rows; run the command again (it resumes from its checkpoint)")]
    LockLost {
        /// Sync name.
        name: String,
        /// The lock name.
        lock: String,
        /// What the lock's connection said.
        reason: String,
    },
    /// The source cannot be written and a snapshot backfill is not possible.
    #[error("cannot write the signal table {table} on the source ({detail}): {why}; or grant CREATE, INSERT, DELETE on that database for the watermark backfill")]
    ReadOnlySource {
        /// The signal table.
        table: String,
        /// The server's message.
        detail: String,
        /// Why no snapshot backfill.
        why: &'static str,
    },
    /// XA transactions stayed prepared on the source when a fresh sync started.
    #[error("XA transactions are prepared on the source ({xids}) and did not end within {waited:?}: their rows were logged before the sync's start and would be missed. Finish them (XA COMMIT or XA ROLLBACK, see XA RECOVER), then start the sync again")]
    PreparedXa {
        /// Their XIDs.
        xids: String,
        /// How long the sync waited.
        waited: Duration,
    },
    /// An XA transaction that changed a synced table stayed prepared during `promote`.
    #[error("an XA transaction that changed a synced table is still prepared on the source after {waited:?} (prepared now: {xids}): its rows are on the target but not committed on the source. Finish it (XA COMMIT or XA ROLLBACK, see XA RECOVER), then run promote again")]
    XaStillPrepared {
        /// The XIDs prepared on the source (or why they could not be listed).
        xids: String,
        /// How long promote waited.
        waited: Duration,
    },
    /// A drain did not finish in time.
    #[error("the target did not catch up with the source within {0:?}: the write rate may exceed the apply rate (raise --appliers) or the target refuses writes")]
    DrainTimeout(Duration),
    /// A pipeline task stopped unexpectedly.
    #[error("the sync pipeline stopped: {0}")]
    Stopped(String),
    /// The verification could not run.
    #[error("verification: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    /// The control socket or HTTP listener could not be opened.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The operator (`rowshift ctl abort`) or a critical load stopped the sync.
    #[error("sync stopped: {0}; the checkpoint is kept: run the same command again to resume")]
    Aborted(String),
}

fn sql_err(step: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> SyncError {
    let step = step.into();
    move |source| SyncError::Sql { step, source }
}

/// One table to sync.
#[derive(Debug, Clone)]
pub struct SyncTable {
    /// Source database.
    pub source_db: String,
    /// Source table.
    pub source_table: String,
    /// Target database.
    pub target_db: String,
    /// Target table.
    pub target_table: String,
    /// ALTER specification applied to the target's definition (when rowshift creates it).
    pub alter: Option<String>,
    /// `col = expression` for new or changed columns.
    pub sets: Vec<String>,
}

impl SyncTable {
    fn source_name(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.source_db),
            quote_ident(&self.source_table)
        )
    }

    fn target_name(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.target_db),
            quote_ident(&self.target_table)
        )
    }
}

/// What to sync and how.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The source server.
    pub source: Endpoint,
    /// The target server.
    pub target: Endpoint,
    /// The tables.
    pub tables: Vec<SyncTable>,
    /// Name of the sync (checkpoint key); the same name resumes.
    pub name: String,
    /// The target tables exist: check them against the mapping instead of creating them.
    pub target_schema_from_existing: bool,
    /// Appliers per table (one when the target has unique secondary keys).
    pub appliers: usize,
    /// Rows per backfill chunk.
    pub chunk_rows: usize,
    /// Replica server id of the binlog connection.
    pub server_id: u32,
    /// How long a refused batch or a lost source is retried before the sync fails.
    pub retry_for: Duration,
    /// Throttling of the backfill, live control (`rowshift ctl`) and metrics; the control
    /// socket is named after the first table.
    pub operate: OperateConfig,
}

/// The name of the checkpoint stream of `t` in sync `name`.
pub fn stream_key(name: &str, t: &SyncTable) -> String {
    format!("{name}:{}.{}", t.source_db, t.source_table)
}

/// Live progress of a sync.
#[derive(Debug, Clone, Default)]
pub struct SyncProgress {
    /// `backfill`, `streaming`, `draining`, `verifying`.
    pub phase: &'static str,
    /// Last commit read from the source.
    pub source_position: Option<Position>,
    /// Lowest coordinate every applier has applied.
    pub applied: Option<Coord>,
    /// Seconds the applied state is behind the source.
    pub lag_secs: f64,
    /// Changes read but not yet applied.
    pub lag_events: u64,
    /// Row changes of the synced tables read.
    pub events: u64,
    /// Changes applied (binlog changes and backfill rows).
    pub applied_changes: u64,
    /// Rows written by the backfill (rows read minus those a binlog change made obsolete).
    pub backfilled: u64,
    /// Rows read from the source by this run's backfill.
    pub backfill_rows: u64,
    /// Estimated rows this run's backfill reads in all (information_schema `TABLE_ROWS` of
    /// each table still to backfill); `None` when unknown (no statistics, or a backfill
    /// resumed mid-table, whose rows left are not counted).
    pub backfill_estimate: Option<u64>,
    /// Changes from the binlog applied (applied changes minus the backfill's rows emitted, so
    /// it may run behind by the backfill rows not yet applied, never ahead).
    pub events_applied: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// A running sync.
pub struct SyncHandle {
    tasks: JoinSet<TaskEnd>,
    router_abort: Option<tokio::task::AbortHandle>,
    backfill_abort: Option<tokio::task::AbortHandle>,
    cmds: mpsc::Sender<RouterCmd>,
    backfill_done: watch::Receiver<bool>,
    progress: watch::Receiver<SyncProgress>,
    phase: Arc<watch::Sender<&'static str>>,
    ticker: tokio::task::JoinHandle<()>,
    status_writer: tokio::task::JoinHandle<()>,
    stats: Arc<SyncRouterStats>,
    born: Instant,
    read_pos: watch::Receiver<Option<Position>>,
    signal: SignalTable,
    writable: bool,
    source: Endpoint,
    run: u64,
    ops: Option<Operations>,
    progress_feed: tokio::task::JoinHandle<()>,
    lock: LockKeeper,
}

/// Holds the sync's `GET_LOCK` on the target and checks every second that it still does. A
/// server ends the lock with its session (restart, KILL, network cut), silently. The keeper
/// then says so at once (the appliers hold their writes while it is not held), connects again
/// and takes the lock again; when another process took it meanwhile, the run stops before a
/// second process applies the same rows.
struct LockKeeper {
    lost: watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
    /// The sync's name and the lock's, for the error.
    sync: String,
    name: String,
}

/// What one check of the lock found.
enum LockCheck {
    Held,
    /// Nobody holds it (its session ended on the server).
    Free,
    /// Another session holds it.
    TakenBy(u64),
    SessionFailed(String),
}

/// The lock's session as last seen holding it: its connection id and when it was seen.
#[derive(Clone, Copy)]
struct LockSession {
    id: u64,
    seen: Instant,
}

impl LockKeeper {
    /// How often the lock is checked (the check keeps the session from going idle too).
    const EVERY: Duration = Duration::from_secs(1);
    /// The longest a check may take before the session counts as failed (a half-open
    /// connection never answers).
    const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

    /// Keep the lock `name`, taken by `conn` on `target`; `held` tells the appliers when it was
    /// last seen held (`None`: not held now).
    fn start(
        mut conn: mysql_async::Conn,
        target: Endpoint,
        name: String,
        sync: String,
        held: watch::Sender<Option<LockSeen>>,
    ) -> LockKeeper {
        let (tx, lost) = watch::channel(None);
        let lock = name.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Self::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut session = LockSession {
                id: u64::from(conn.id()),
                seen: Instant::now(),
            };
            let reason = loop {
                tick.tick().await;
                // Taken before asking: the lock was held at least until this moment.
                let asked = Instant::now();
                let reason = match Self::check(&mut conn, &name).await {
                    LockCheck::Held => {
                        session.seen = asked;
                        held.send_replace(Some(LockSeen {
                            at: asked,
                            session: session.id,
                        }));
                        continue;
                    }
                    LockCheck::TakenBy(other) => {
                        held.send_replace(None);
                        break format!("another session (connection {other}) holds it");
                    }
                    LockCheck::Free => "its session no longer holds it".to_string(),
                    LockCheck::SessionFailed(reason) => reason,
                };
                held.send_replace(None);
                warn!(lock = %name, %reason, "sync lock's session ended; taking the lock again");
                drop(conn);
                match Self::retake(&target, &name, session).await {
                    Ok(c) => {
                        conn = c;
                        session = LockSession {
                            id: u64::from(conn.id()),
                            seen: Instant::now(),
                        };
                        // Said before the appliers may write again.
                        info!(lock = %name, "sync lock taken again");
                        held.send_replace(Some(LockSeen {
                            at: session.seen,
                            session: session.id,
                        }));
                    }
                    Err(reason) => break reason,
                }
            };
            warn!(lock = %name, %reason, "sync lock lost");
            let _ = tx.send(Some(reason));
        }
        .in_current_span());
        LockKeeper {
            lost,
            task,
            sync,
            name: lock,
        }
    }

    async fn check(conn: &mut mysql_async::Conn, name: &str) -> LockCheck {
        let asked = conn.exec_first::<(Option<u64>, u64), _, _>(
            "SELECT IS_USED_LOCK(?), CONNECTION_ID()",
            (name,),
        );
        match tokio::time::timeout(Self::CHECK_TIMEOUT, asked).await {
            Ok(Ok(Some((Some(holder), me)))) if holder == me => LockCheck::Held,
            Ok(Ok(Some((Some(holder), _)))) => LockCheck::TakenBy(holder),
            Ok(Ok(_)) => LockCheck::Free,
            Ok(Err(e)) => LockCheck::SessionFailed(format!("its session failed: {e}")),
            Err(_) => LockCheck::SessionFailed(format!(
                "its session gave no answer in {} s",
                Self::CHECK_TIMEOUT.as_secs()
            )),
        }
    }

    /// Connect again (for as long as the target is down) and take the lock, waiting as long
    /// as a fresh start does for a session the server has not ended yet. When the server
    /// still shows the lock held by the old session (only this side saw its connection end:
    /// a proxy, a network cut), that session is ended first, unless the server restarted
    /// since (connection ids start again: the id may be another process's).
    async fn retake(
        target: &Endpoint,
        name: &str,
        old: LockSession,
    ) -> Result<mysql_async::Conn, String> {
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let pause = Duration::from_millis(200 * attempt.min(10));
            let mut conn = match target.connect_raw().await {
                Ok(c) => c,
                Err(e) => {
                    if attempt % 15 == 1 {
                        warn!(error = %e, attempt, "sync lock: the target cannot be reached yet; the appliers wait");
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            match Self::take(&mut conn, name, old).await {
                Ok(true) => return Ok(conn),
                Ok(false) => {
                    let wait = LOCK_WAIT_SECS;
                    return Err(format!(
                        "its session ended and another session took the lock within {wait} s"
                    ));
                }
                Err(e) => {
                    debug!(error = %e, "sync lock: taking it again failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Take the lock on a new connection: false when another session holds it.
    async fn take(
        conn: &mut mysql_async::Conn,
        name: &str,
        old: LockSession,
    ) -> Result<bool, mysql_async::Error> {
        let holder: Option<Option<u64>> =
            conn.exec_first("SELECT IS_USED_LOCK(?)", (name,)).await?;
        if let Some(holder) = holder.flatten() {
            // The old session's id, on a server that has run since the lock was last seen
            // held by it: that session, which only this side saw end.
            let uptime: Option<(String, u64)> =
                conn.query_first("SHOW GLOBAL STATUS LIKE 'Uptime'").await?;
            let same_server =
                uptime.is_some_and(|(_, up)| Duration::from_secs(up) > old.seen.elapsed());
            if holder != old.id || !same_server {
                return Ok(false);
            }
            warn!(
                connection = holder,
                "sync lock: the server still shows the old session holding it; ending that session"
            );
            conn.query_drop(format!("KILL {holder}")).await?;
        }
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (name, LOCK_WAIT_SECS))
            .await?;
        Ok(got.flatten() == Some(1))
    }

    /// Wait until the lock is lost.
    async fn lost(&mut self) -> SyncError {
        let reason = match self.lost.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "its keeper ended".to_string(),
        };
        SyncError::LockLost {
            name: self.sync.clone(),
            lock: self.name.clone(),
            reason,
        }
    }
}

impl Drop for LockKeeper {
    fn drop(&mut self) {
        // Its session (and with it the lock) ends with the task.
        self.task.abort();
    }
}

enum TaskEnd {
    BackfillDone,
    Failed(SyncError),
    RouterEnded,
    ApplierEnded,
}

/// What the target tables look like and how rows map.
struct Prepared {
    old: TableSchema,
    mapping: Mapping,
    target: ApplyTarget,
    appliers: usize,
}

/// Longest wait at a fresh start for XA transactions prepared on the source to end.
const XA_WAIT: Duration = Duration::from_secs(30);

/// How long a sync waits for its lock, held by another process, before refusing to run.
const LOCK_WAIT_SECS: u64 = 5;

/// Whether two quoted table names name the same table (compared without case when the
/// server stores names in lower case).
fn same_table_name(a: &str, b: &str, lowercase: bool) -> bool {
    if lowercase {
        a.to_lowercase() == b.to_lowercase()
    } else {
        a == b
    }
}

/// The `GET_LOCK` name of sync `name` checkpointed in database `db`: readable when it fits the
/// servers' 64-character limit, else the CRC-32s of both parts.
pub fn sync_lock_name(db: &str, name: &str) -> String {
    let plain = format!("rowshift-sync:{db}:{name}");
    if plain.chars().count() <= 64 {
        plain
    } else {
        format!(
            "rowshift-sync:{:08x}{:08x}",
            crc32fast::hash(db.as_bytes()),
            crc32fast::hash(name.as_bytes())
        )
    }
}

/// Start a sync: set up the target, resume from the checkpoints or start fresh, and run
/// until [`SyncHandle::stop`] or a failure ([`SyncHandle::failed`]).
pub async fn start(config: SyncConfig) -> Result<SyncHandle, SyncError> {
    let span = info_span!("sync", name = %config.name);
    start_inner(config).instrument(span).await
}

async fn start_inner(config: SyncConfig) -> Result<SyncHandle, SyncError> {
    let born = Instant::now();
    let mut src = config.source.connect().await?;
    let (src_flavor, src_version) = catalog::flavor(&mut src)
        .await
        .map_err(sql_err("reading the source version"))?;
    crate::migrate::preflight::binlog_settings(&mut src).await?;
    crate::migrate::preflight::replication_privileges(&mut src).await?;
    let mut tgt = config.target.connect().await?;
    let (tgt_flavor, tgt_version) = catalog::flavor(&mut tgt)
        .await
        .map_err(sql_err("reading the target version"))?;
    info!(source = %src_version, target = %tgt_version, "connected");
    let first = config
        .tables
        .first()
        .ok_or_else(|| SyncError::Stopped("no table to sync".into()))?;
    let ckpt = CkptTable {
        db: first.target_db.clone(),
    };
    let signal = SignalTable {
        db: first.source_db.clone(),
    };

    // One process per sync name and checkpoint database. The wait covers a process killed a
    // moment ago, whose session the server has not ended yet.
    let lock_name = sync_lock_name(&ckpt.db, &config.name);
    let mut lock = config.target.connect_raw().await?;
    let got: Option<Option<i64>> = lock
        .exec_first("SELECT GET_LOCK(?, ?)", (&lock_name, LOCK_WAIT_SECS))
        .await
        .map_err(sql_err("taking the sync lock on the target"))?;
    if got.flatten() != Some(1) {
        return Err(SyncError::AlreadyRunning {
            name: config.name.clone(),
            db: ckpt.db.clone(),
            lock: lock_name,
        });
    }
    let (lock_held_tx, lock_held) = watch::channel(Some(LockSeen {
        at: Instant::now(),
        session: u64::from(lock.id()),
    }));
    let lock = LockKeeper::start(
        lock,
        config.target.clone(),
        lock_name.clone(),
        config.name.clone(),
        lock_held_tx,
    );
    // The control listeners before anything changes: a socket in use stops the run here.
    let mut ops = Operations::bind(&config.operate, &first.source_db, &first.source_table).await?;
    if let Some(path) = ops.socket() {
        info!(socket = %path.display(), "control socket");
    }

    for t in &config.tables {
        tgt.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            quote_ident(&t.target_db)
        ))
        .await
        .map_err(sql_err("creating the target database"))?;
    }
    ckpt.create(&mut tgt).await?;
    let mut saved = Vec::new();
    for t in &config.tables {
        saved.push(ckpt.load(&mut tgt, &stream_key(&config.name, t)).await?);
    }
    let resumed = saved.iter().any(|s| !s.is_empty());
    if resumed && saved.iter().any(Vec::is_empty) {
        let (have, missing): (Vec<_>, Vec<_>) = config
            .tables
            .iter()
            .zip(&saved)
            .partition(|(_, s)| !s.is_empty());
        let list = |v: Vec<(&SyncTable, &Vec<ApplierCkpt>)>| {
            v.iter()
                .map(|(t, _)| t.source_name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(SyncError::TablesChanged {
            ckpt: ckpt.qualified(),
            name: config.name.clone(),
            have: list(have),
            missing: list(missing),
        });
    }
    ckpt.create_streams(&mut tgt).await?;
    let decode_flavor = match src_flavor {
        Flavor::MySql => crate::source::decode::Flavor::MySql,
        Flavor::MariaDb => crate::source::decode::Flavor::MariaDb,
    };
    let source_server = crate::source::stream::server_identity(&mut src, decode_flavor)
        .await
        .map_err(|e| SyncError::Stopped(format!("reading the source's identity: {e}")))?;
    let lowercase_names = tgt
        .query_first::<u32, _>("SELECT @@lower_case_table_names")
        .await
        .map_err(sql_err("reading the target's lower_case_table_names"))?
        .unwrap_or(0)
        != 0;
    let identity = |t: &SyncTable| StreamIdentity {
        source: source_server.clone(),
        target: t.target_name(),
    };
    if resumed {
        // Every table has checkpoint rows here (checked above).
        for t in &config.tables {
            let stream = stream_key(&config.name, t);
            let want = identity(t);
            let moved = |what: String, now: String, hint| SyncError::StreamMoved {
                name: config.name.clone(),
                stream: stream.clone(),
                ckpt: ckpt.qualified(),
                what,
                now,
                hint,
            };
            match ckpt.identity(&mut tgt, &stream).await? {
                Some(had) if had.source != want.source => {
                    return Err(moved(
                        format!("reading source server {}", had.source),
                        format!("{} (this --source)", want.source),
                        "its binlog coordinates mean nothing on another server (a failover to a replica, another --source); point --source at that server, or start a new sync under another --name into an empty target",
                    ));
                }
                Some(had) if !same_table_name(&had.target, &want.target, lowercase_names) => {
                    return Err(moved(
                        format!("applying into {}", had.target),
                        format!("{} (this run's target table)", want.target),
                        "resuming would apply the rest of the stream into another table; give the target table it had, or use another --name for another target",
                    ));
                }
                Some(_) => {}
                // A checkpoint from a rowshift that did not record identities: adopted.
                None => ckpt.set_identity(&mut tgt, &stream, &want).await?,
            }
        }
    }

    // The watermark backfill needs commits in binlog order (MariaDB always commits so);
    // checked before anything is made on the target.
    let backfill_left = !resumed || saved.iter().flatten().any(|c| !c.backfill_done);
    if backfill_left && src_flavor == Flavor::MySql {
        crate::migrate::preflight::binlog_order_commits(&mut src).await?;
    }

    // XA branches prepared before a fresh start would be missed: wait for them before the
    // target tables are made (a refusal leaves nothing to clean up), and again below once the
    // start position is read.
    let xa_wait = config.retry_for.min(XA_WAIT);
    if !resumed {
        prepared_xa::when_none_prepared(&mut src, xa_wait, false).await?;
    }

    let mut prepared = Vec::new();
    for (t, s) in config.tables.iter().zip(&saved) {
        let p = prepare_table(
            &config, &mut src, src_flavor, &mut tgt, tgt_flavor, t, resumed,
        )
        .await?;
        let n = if s.is_empty() { p.appliers } else { s.len() };
        prepared.push(Prepared { appliers: n, ..p });
    }

    // The signal table; a source that cannot be written gets a consistent-snapshot backfill
    // (MariaDB gives the snapshot's binlog position) and position-based drains.
    let writable = match signal.create(&mut src).await {
        Ok(()) => true,
        Err(BackfillError::Signal { source, .. }) if is_not_writable(&source) => {
            let unfinished = resumed && saved.iter().flatten().any(|c| !c.backfill_done);
            if unfinished || (!resumed && src_flavor != Flavor::MariaDb) {
                return Err(SyncError::ReadOnlySource {
                    table: signal.qualified(),
                    detail: source.to_string(),
                    why: if unfinished {
                        "the backfill of an earlier run is unfinished and a snapshot backfill cannot resume: delete the stream's rows from the checkpoint table and drop (or truncate) the target tables, then run again"
                    } else {
                        "MySQL gives no binlog position of a consistent snapshot without a global lock, so the backfill needs the watermark rows"
                    },
                });
            }
            warn!(error = %source, "the source cannot be written: consistent-snapshot backfill, drains by position");
            false
        }
        Err(e) => return Err(e.into()),
    };

    // Where to start.
    let start_pos = if resumed {
        let min = saved
            .iter()
            .flatten()
            .map(|c| c.resume.clone())
            .min_by(|a, b| Coord::of_position(a).cmp(&Coord::of_position(b)))
            .ok_or_else(|| SyncError::Stopped("empty checkpoint".into()))?;
        check_not_purged(&mut src, &min, &config.name, &ckpt).await?;
        info!(position = %min, "resuming from the checkpoints");
        min
    } else {
        // No XA branch may be prepared before the start position.
        let pos = match prepared_xa::when_none_prepared(&mut src, xa_wait, writable).await? {
            Some(pos) => pos,
            None => snapshot_backfill(&config, &prepared).await?,
        };
        for (t, p) in config.tables.iter().zip(&prepared) {
            let stream = stream_key(&config.name, t);
            // The identity first: a crash between the two leaves no checkpoint to adopt.
            ckpt.set_identity(&mut tgt, &stream, &identity(t)).await?;
            ckpt.init(&mut tgt, &stream, p.appliers, &pos).await?;
            if !writable {
                ckpt.mark_backfilled(&mut tgt, &stream).await?;
            }
        }
        saved.clear();
        for t in &config.tables {
            saved.push(ckpt.load(&mut tgt, &stream_key(&config.name, t)).await?);
        }
        info!(position = %pos, "starting fresh");
        pos
    };

    let mut source_cfg = SourceConfig::new(config.source.url_with_password());
    source_cfg.server_id = config.server_id;
    source_cfg.ssl_mode = config.source.ssl_mode;
    source_cfg.ssl_ca = config.source.ssl_ca.clone();
    source_cfg.heartbeat = Duration::from_millis(500);
    // Every binlog connection, the first and each one made again, reads this same server.
    source_cfg.expect_server = Some(source_server.clone());
    // Only the synced tables and the signal table are decoded; other tables' rows are
    // skipped at their table map.
    source_cfg.decode.tables = Some(crate::source::TableFilter::of_tables(
        config
            .tables
            .iter()
            .map(|t| (t.source_db.as_str(), t.source_table.as_str()))
            .chain([(signal.db.as_str(), crate::backfill::SIGNAL_TABLE)]),
    ));
    let events = crate::source::reconnect::open(source_cfg, &start_pos, config.retry_for).await?;

    let run = u64::from(crate::cutover::drain_token()) << 16 | u64::from(std::process::id() as u16);
    // A transaction can be in the binlog before the start position and not yet visible (its
    // commit waits for a semi-synchronous replica's acknowledgement after the binlog write):
    // a table's highest key read now would miss its rows, which the stream does not bring
    // either. The server commits in binlog order, so once a signal row written now has
    // committed, every transaction logged before it is visible.
    if writable && backfill_left {
        signal.write(&mut src, run, 0, SignalKind::Fence, 0).await?;
    }

    // Appliers and routes.
    let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
    let apply_stats = Arc::new(SyncApplyStats::default());
    let mut routes = Vec::new();
    let mut jobs = Vec::new();
    let mut backfill_estimate = Some(0u64);
    for (ti, ((t, p), s)) in config.tables.iter().zip(prepared).zip(&saved).enumerate() {
        let target = Arc::new(p.target);
        let mut senders = Vec::new();
        let mut acks = Vec::new();
        for state in s {
            // Changes travel in vectors of up to router::SEND_BATCH: 16 messages bound an
            // applier's queue at 4,096 changes (as one change per message did before).
            let (tx, rx) = mpsc::channel::<SyncMsg>(16);
            let (ack_tx, ack_rx) = watch::channel((0u64, state.before.clone()));
            let a = SyncApplier {
                id: state.applier,
                target: target.clone(),
                ckpt: ckpt.clone(),
                stream: stream_key(&config.name, t),
                state: state.clone(),
                stats: apply_stats.clone(),
                retry_for: config.retry_for,
                lock_held: lock_held.clone(),
                lock_name: lock_name.clone(),
            };
            let span = info_span!("applier", table = %t.target_table, id = state.applier);
            tasks.spawn(
                async move {
                    match a.run(rx, ack_tx).await {
                        Ok(()) => TaskEnd::ApplierEnded,
                        Err(e) => TaskEnd::Failed(e.into()),
                    }
                }
                .instrument(span),
            );
            senders.push(tx);
            acks.push(ack_rx);
        }
        let codec = p.mapping.new_key_codec().clone();
        let key_positions = p.mapping.key_positions_in_insert();
        let done = s.iter().all(|c| c.backfill_done);
        if !done {
            let from = s.iter().min_by_key(|c| c.chunk);
            let reader = RowReader::new(&p.old)?;
            // Read after the stream's start position was fixed and the fence above committed
            // (see `max_key`).
            let upper = reader.max_key(&mut src).await?;
            let resumed_mid_table = from.is_some_and(|c| c.cursor.is_some());
            backfill_estimate = match (backfill_estimate, upper.is_none()) {
                (_, true) => backfill_estimate,
                (Some(sum), false) if !resumed_mid_table => {
                    // The statistics, capped by an integer key's span (engine::estimate).
                    let estimate = crate::estimate::RowEstimate {
                        statistics: crate::catalog::estimate_rows(
                            &mut src,
                            &t.source_db,
                            &t.source_table,
                        )
                        .await,
                        span: reader.key_span(&mut src).await,
                    };
                    (estimate != Default::default()).then(|| sum + estimate.initial())
                }
                _ => None,
            };
            jobs.push(BackfillJob {
                table: ti,
                cursor: from.and_then(|c| c.cursor.clone()),
                next_chunk: from.map_or(0, |c| c.chunk) + 1,
                empty: upper.is_none(),
                upper,
                reader,
            });
        }
        let key_sources = p.mapping.key_source_columns();
        routes.push(TableRoute {
            db: t.source_db.clone(),
            table: t.source_table.clone(),
            mapping: Arc::new(p.mapping),
            key_positions,
            codec,
            key_sources,
            senders,
            acks,
            skip_before: s.iter().map(|c| c.before.clone()).collect(),
        });
    }
    let all_acks: Vec<watch::Receiver<(u64, Coord)>> =
        routes.iter().flat_map(|r| r.acks.clone()).collect();

    let stats = Arc::new(SyncRouterStats::default());
    let (read_tx, read_rx) = watch::channel(None);
    let router = SyncRouter {
        tables: routes,
        signal_db: signal.db.clone(),
        run,
        stats: stats.clone(),
        read_pos: read_tx,
    };
    let (chunk_tx, chunk_rx) = mpsc::channel(2);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let router_abort = tasks.spawn(
        async move {
            match router.run(events, start_pos, chunk_rx, cmd_rx).await {
                Ok(()) => TaskEnd::RouterEnded,
                Err(e) => TaskEnd::Failed(e.into()),
            }
        }
        .instrument(info_span!("router")),
    );
    let (done_tx, done_rx) = watch::channel(jobs.is_empty());
    let (progress_tx, progress_rx) = watch::channel(SyncProgress::default());
    let copy_stats = Arc::new(CopyStats::default());
    let (ops_progress_tx, ops_progress_rx) = watch::channel(crate::migrate::Progress::default());
    // The metrics read migrate's counters: mirror the sync's into them.
    let router_mirror = Arc::new(crate::migrate::router::RouterStats::default());
    let apply_mirror = Arc::new(crate::apply::ApplyStats::default());
    let progress_feed = tokio::spawn(feed_ops_progress(
        progress_rx.clone(),
        ops_progress_tx,
        copy_stats.clone(),
        backfill_estimate,
        Mirror {
            sync_router: stats.clone(),
            sync_apply: apply_stats.clone(),
            router: router_mirror.clone(),
            apply: apply_mirror.clone(),
        },
    ));
    let (copy_control, _controls) = ops.start(
        Job::Sync(progress_rx.clone()),
        &config.source,
        &first.source_db,
        &first.source_table,
        ops_progress_rx,
        copy_stats.clone(),
        router_mirror,
        apply_mirror,
        None,
        Duration::from_millis(500),
    );
    let backfill_abort = if jobs.is_empty() {
        None
    } else {
        let source = config.source.clone();
        let signal = signal.clone();
        let chunk_rows = config.chunk_rows.max(1);
        let retry_for = config.retry_for;
        let pace = Pace {
            control: copy_control,
            stats: copy_stats.clone(),
            chunk_rows,
        };
        Some(
            tasks.spawn(
                async move {
                    match run_backfill(source, signal, run, jobs, chunk_tx, pace, retry_for).await {
                        Ok(()) => {
                            let _ = done_tx.send(true);
                            TaskEnd::BackfillDone
                        }
                        Err(e) => TaskEnd::Failed(e),
                    }
                }
                .instrument(info_span!("backfill")),
            ),
        )
    };
    let _ = src.disconnect().await;
    let _ = tgt.disconnect().await;

    let (phase_tx, phase_rx) = watch::channel(if *done_rx.borrow() {
        "streaming"
    } else {
        "backfill"
    });
    let phase = Arc::new(phase_tx);
    let ticker = tokio::spawn(progress_ticker(
        progress_tx,
        phase_rx,
        done_rx.clone(),
        stats.clone(),
        apply_stats,
        Backfilling {
            copy: copy_stats,
            estimate: backfill_estimate,
        },
        all_acks,
        read_rx.clone(),
        born,
    ));
    Ok(SyncHandle {
        tasks,
        router_abort: Some(router_abort),
        backfill_abort,
        cmds: cmd_tx,
        backfill_done: done_rx,
        progress: progress_rx.clone(),
        phase,
        ticker,
        stats,
        born,
        status_writer: tokio::spawn(status::writer(
            config.target.clone(),
            ckpt.db.clone(),
            config.name.clone(),
            progress_rx.clone(),
        )),
        read_pos: read_rx,
        signal,
        writable,
        source: config.source.clone(),
        run,
        ops: Some(ops),
        progress_feed,
        lock,
    })
}

/// The sync's counters and the migrate-shaped ones the metrics feed reads.
struct Mirror {
    sync_router: Arc<SyncRouterStats>,
    sync_apply: Arc<SyncApplyStats>,
    router: Arc<crate::migrate::router::RouterStats>,
    apply: Arc<crate::apply::ApplyStats>,
}

impl Mirror {
    fn copy_over(&self) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.router.events, load(&self.sync_router.sent));
        set(&self.router.skipped, 0);
        set(
            &self.router.last_event_ts,
            load(&self.sync_router.last_commit_ts),
        );
        for (to, from) in self.router.by_kind.iter().zip(&self.sync_router.by_kind) {
            set(to, load(from));
        }
        set(&self.apply.changes, load(&self.sync_apply.applied));
        set(&self.apply.batches, load(&self.sync_apply.batches));
    }
}

/// Publish the sync's progress in the shape the controller reads (`rowshift ctl status`):
/// rows copied are the backfill's rows.
async fn feed_ops_progress(
    mut sync: watch::Receiver<SyncProgress>,
    tx: watch::Sender<crate::migrate::Progress>,
    copy: Arc<CopyStats>,
    estimate: Option<u64>,
    mirror: Mirror,
) {
    loop {
        mirror.copy_over();
        {
            let p = sync.borrow_and_update();
            let _ = tx.send(crate::migrate::Progress {
                phase: p.phase,
                rows_copied: copy.rows_copied.load(Ordering::Relaxed),
                rows_estimate: estimate.unwrap_or(0),
                events: p.events,
                skipped: 0,
                lag_secs: p.lag_secs as u64,
                elapsed: p.elapsed,
                throttled: None,
                gentle: false,
            });
        }
        if sync.changed().await.is_err() {
            return;
        }
    }
}

/// The backfill's counters and its estimated total, for the progress.
struct Backfilling {
    copy: Arc<CopyStats>,
    estimate: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
async fn progress_ticker(
    tx: watch::Sender<SyncProgress>,
    phase: watch::Receiver<&'static str>,
    done: watch::Receiver<bool>,
    stats: Arc<SyncRouterStats>,
    apply: Arc<SyncApplyStats>,
    backfill: Backfilling,
    acks: Vec<watch::Receiver<(u64, Coord)>>,
    read: watch::Receiver<Option<Position>>,
    born: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // When each read position was first seen, to turn "behind by coordinates" into seconds.
    let mut seen: std::collections::VecDeque<(Coord, Instant)> = Default::default();
    loop {
        tick.tick().await;
        let read_pos = read.borrow().clone();
        if let Some(p) = &read_pos {
            let c = Coord::of_position(p);
            if seen.back().is_none_or(|(b, _)| *b < c) {
                seen.push_back((c, Instant::now()));
            }
        }
        let applied = acks.iter().map(|a| a.borrow().1.clone()).min();
        // Lag: how long ago the reader saw the oldest position not yet applied everywhere,
        // plus how far the reader itself is behind the source's clock.
        let mut lag = 0.0;
        if let Some(a) = &applied {
            while seen.len() > 1 && seen[1].0 <= *a {
                seen.pop_front();
            }
            if let Some((c, at)) = seen.front() {
                if *c > *a {
                    lag = at.elapsed().as_secs_f64();
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last_ts = stats.last_commit_ts.load(Ordering::Relaxed);
        let hb = stats.last_heartbeat_ms.load(Ordering::Relaxed);
        let at_end = hb > 0 && born.elapsed().as_millis() as u64 - hb < 1_500;
        if last_ts > 0 && !at_end {
            lag += now.saturating_sub(last_ts).saturating_sub(1) as f64;
        }
        let sent = stats.sent.load(Ordering::Relaxed);
        let applied_n = apply.applied.load(Ordering::Relaxed);
        let backfilled = stats.backfilled.load(Ordering::Relaxed);
        let ph = *phase.borrow();
        let ph = if ph == "backfill" && *done.borrow() {
            "streaming"
        } else {
            ph
        };
        let p = SyncProgress {
            phase: ph,
            source_position: read_pos,
            applied,
            lag_secs: lag,
            lag_events: sent.saturating_sub(applied_n),
            events: stats.events.load(Ordering::Relaxed),
            applied_changes: applied_n,
            backfilled,
            backfill_rows: backfill.copy.rows_copied.load(Ordering::Relaxed),
            backfill_estimate: backfill.estimate,
            events_applied: applied_n.saturating_sub(backfilled),
            elapsed: born.elapsed(),
        };
        if tx.send(p).is_err() {
            return;
        }
    }
}

impl SyncHandle {
    /// Live progress.
    pub fn progress(&self) -> watch::Receiver<SyncProgress> {
        self.progress.clone()
    }

    /// Set the phase shown in the progress.
    pub fn set_phase(&self, phase: &'static str) {
        let _ = self.phase.send(phase);
    }

    /// True once every table's backfill is complete.
    pub fn backfill_done(&self) -> bool {
        *self.backfill_done.borrow()
    }

    /// A receiver that turns true when the backfill is complete.
    pub fn backfill_watch(&self) -> watch::Receiver<bool> {
        self.backfill_done.clone()
    }

    /// The last commit read from the source.
    pub fn read_position(&self) -> Option<Position> {
        self.read_pos.borrow().clone()
    }

    /// Time since the last change of a synced table was read (the whole run when none).
    pub fn since_last_table_event(&self) -> Duration {
        let last = self.stats.last_table_event_ms.load(Ordering::Relaxed);
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    /// Wait until the first failure of the pipeline and return it (never returns while the
    /// sync runs fine).
    pub async fn failed(&mut self) -> SyncError {
        let SyncHandle {
            tasks,
            backfill_abort,
            ops,
            lock,
            ..
        } = self;
        let pipeline = async {
            // The lost lock first: the appliers it stops fail after it, for that reason.
            tokio::select! {
                biased;
                e = lock.lost() => e,
                e = pipeline_failed(tasks, backfill_abort) => e,
            }
        };
        match ops {
            Some(ops) => tokio::select! {
                e = pipeline => e,
                reason = ops.aborted() => {
                    warn!(%reason, "sync aborted");
                    SyncError::Aborted(reason)
                }
            },
            None => pipeline.await,
        }
    }
}

/// Wait until the first failure of the pipeline's tasks.
async fn pipeline_failed(
    tasks: &mut JoinSet<TaskEnd>,
    backfill_abort: &mut Option<tokio::task::AbortHandle>,
) -> SyncError {
    {
        let mut router_err = None;
        loop {
            match tasks.join_next().await {
                None => {
                    return router_err
                        .unwrap_or_else(|| SyncError::Stopped("all tasks ended".into()))
                }
                Some(Ok(TaskEnd::BackfillDone)) => {
                    info!("backfill complete; streaming");
                    *backfill_abort = None;
                }
                Some(Ok(TaskEnd::Failed(SyncError::Router(SyncRouterError::ApplierStopped(
                    t,
                ))))) => {
                    // The applier's own error follows.
                    router_err = Some(SyncError::Stopped(format!("an applier of {t} stopped")));
                }
                Some(Ok(TaskEnd::Failed(e))) => return e,
                Some(Ok(TaskEnd::RouterEnded)) => {
                    return SyncError::Stopped("the binlog stream ended".into())
                }
                Some(Ok(TaskEnd::ApplierEnded)) => {
                    if let Some(e) = router_err.take() {
                        return e;
                    }
                }
                Some(Err(e)) => return SyncError::Stopped(format!("a task panicked: {e}")),
            }
        }
    }
}

impl SyncHandle {
    /// Write a drain marker on the source and wait until every applier has applied everything
    /// logged before it.
    pub async fn drain(&mut self, timeout: Duration) -> Result<Drained, SyncError> {
        let token = (u64::from(crate::cutover::drain_token()) << 20)
            ^ self.born.elapsed().as_nanos() as u64;
        let (tx, rx) = oneshot::channel();
        let mut conn = self.source.connect().await?;
        if self.writable {
            self.cmds
                .send(RouterCmd::Drain(token, tx))
                .await
                .map_err(|_| SyncError::Stopped("the router stopped".into()))?;
            self.signal
                .write(&mut conn, self.run, 0, SignalKind::Drain, token)
                .await?;
        } else {
            let end = crate::cutover::server_position(&mut conn)
                .await
                .map_err(sql_err("reading the source's binlog position"))?;
            self.cmds
                .send(RouterCmd::DrainAt(Coord::of_position(&end), tx))
                .await
                .map_err(|_| SyncError::Stopped("the router stopped".into()))?;
        }
        let _ = conn.disconnect().await;
        tokio::select! {
            r = rx => r.map_err(|_| SyncError::Stopped("the router stopped".into())),
            e = self.failed() => Err(e),
            _ = tokio::time::sleep(timeout) => Err(SyncError::DrainTimeout(timeout)),
        }
    }

    /// Stop: the backfill and the stream stop, the appliers commit what they hold (with their
    /// checkpoints) and end.
    pub async fn stop(mut self) -> Result<(), SyncError> {
        if let Some(b) = self.backfill_abort.take() {
            b.abort();
        }
        if let Some(r) = self.router_abort.take() {
            r.abort();
        }
        let mut first_err = None;
        while let Some(end) = self.tasks.join_next().await {
            if let Ok(TaskEnd::Failed(e)) = end {
                if first_err.is_none() && !matches!(e, SyncError::Router(_)) {
                    first_err = Some(e);
                }
            }
        }
        self.ticker.abort();
        self.status_writer.abort();
        self.progress_feed.abort();
        if let Some(ops) = self.ops.take() {
            ops.finish().await;
        }
        if self.writable {
            let mut conn = self.source.connect().await?;
            self.signal.clear(&mut conn, self.run).await;
            let _ = conn.disconnect().await;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

struct BackfillJob {
    table: usize,
    reader: RowReader,
    cursor: Option<Vec<String>>,
    next_chunk: u64,
    /// The highest key when the stream started: higher keys come from the binlog.
    upper: Option<Vec<String>>,
    /// The table was empty then: nothing to read.
    empty: bool,
}

async fn run_backfill(
    source: Endpoint,
    signal: SignalTable,
    run: u64,
    jobs: Vec<BackfillJob>,
    chunks: mpsc::Sender<ChunkRows>,
    mut pace: Pace,
    retry_for: Duration,
) -> Result<(), SyncError> {
    const MAX_CHUNKS_IN_FLIGHT: usize = 8;
    let mut conn: Option<mysql_async::Conn> = None;
    let mut in_flight = std::collections::VecDeque::new();
    for mut job in jobs {
        loop {
            // Paused or throttled: wait before the chunk (the stream keeps being applied).
            pace.control.wait_open(&pace.stats).await;
            let chunk_rows = pace.chunk_rows();
            pace.stats
                .chunk_rows
                .store(chunk_rows as u64, Ordering::Relaxed);
            pace.stats.in_flight.store(1, Ordering::SeqCst);
            let started = Instant::now();
            let mut attempt = 0u32;
            let (rows, cursor) = loop {
                let result = async {
                    if conn.is_none() {
                        conn = Some(source.connect().await.map_err(SyncError::from)?);
                    }
                    let c = conn
                        .as_mut()
                        .ok_or_else(|| SyncError::Stopped("no connection".into()))?;
                    signal
                        .write(c, run, job.table, SignalKind::Low, job.next_chunk)
                        .await?;
                    if job.empty {
                        return Ok((Vec::new(), None));
                    }
                    Ok::<_, SyncError>(
                        job.reader
                            .read_chunk(c, job.cursor.as_deref(), job.upper.as_deref(), chunk_rows)
                            .await?,
                    )
                }
                .await;
                match result {
                    Ok(v) => break v,
                    Err(e) if is_transient_sync(&e) && started.elapsed() < retry_for => {
                        attempt += 1;
                        warn!(error = %e, attempt, "backfill chunk failed; retrying");
                        conn = None;
                        job.next_chunk += 1;
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                            .await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let last = rows.len() < chunk_rows;
            let n_rows = rows.len() as u64;
            let cursor = cursor.or_else(|| job.cursor.clone());
            let (tx, rx) = oneshot::channel();
            chunks
                .send(ChunkRows {
                    table: job.table,
                    chunk: job.next_chunk,
                    rows,
                    cursor: cursor.clone(),
                    last,
                    emitted: tx,
                })
                .await
                .map_err(|_| BackfillError::RouterStopped)?;
            let high = async {
                let c = conn
                    .as_mut()
                    .ok_or_else(|| SyncError::Stopped("no connection".into()))?;
                signal
                    .write(c, run, job.table, SignalKind::High, job.next_chunk)
                    .await?;
                Ok::<_, SyncError>(())
            }
            .await;
            if let Err(e) = high {
                if is_transient_sync(&e) {
                    warn!(error = %e, "writing the high watermark failed; the chunk is read again");
                    conn = None;
                    job.next_chunk += 1;
                    continue;
                }
                return Err(e);
            }
            // Keep a few chunks in flight: the next chunk is read while the router has not
            // reached this one's high watermark yet (it may lag behind the source).
            in_flight.push_back(rx);
            if in_flight.len() >= MAX_CHUNKS_IN_FLIGHT {
                if let Some(rx) = in_flight.pop_front() {
                    rx.await.map_err(|_| BackfillError::RouterStopped)?;
                }
            }
            job.cursor = cursor;
            job.next_chunk += 1;
            pace.chunk_done(n_rows, started.elapsed()).await;
            if last {
                break;
            }
        }
    }
    for rx in in_flight {
        rx.await.map_err(|_| BackfillError::RouterStopped)?;
    }
    if let Some(c) = conn {
        let _ = c.disconnect().await;
    }
    Ok(())
}

/// How the backfill is paced: the copy gate (pause, throttle), the chunk size set live, the
/// nice ratio, and the counters `rowshift ctl status` and the metrics read.
struct Pace {
    control: CopyControl,
    stats: Arc<CopyStats>,
    /// The configured rows per chunk (used unless `ctl chunk-size N` set a number).
    chunk_rows: usize,
}

impl Pace {
    /// Rows of the next chunk: the operator's number, else the configured one (the backfill
    /// has no time-based chunk size).
    fn chunk_rows(&self) -> usize {
        match *self.control.chunk.borrow() {
            ChunkSize::Rows(n) => usize::try_from(n).unwrap_or(usize::MAX).max(1),
            ChunkSize::Auto | ChunkSize::TimeMs(_) => self.chunk_rows,
        }
    }

    /// Count a chunk and rest `nice_ratio` times its duration.
    async fn chunk_done(&self, rows: u64, took: Duration) {
        let s = &self.stats;
        s.in_flight.store(0, Ordering::SeqCst);
        s.rows_copied.fetch_add(rows, Ordering::SeqCst);
        s.chunks.fetch_add(1, Ordering::SeqCst);
        s.last_chunk_rows.store(rows, Ordering::SeqCst);
        s.last_chunk_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(times) = &self.control.chunk_times {
            let _ = times.send(took);
        }
        if self.control.nice_ratio > 0.0 {
            tokio::time::sleep(took.mul_f64(self.control.nice_ratio.min(100.0))).await;
        }
    }
}

/// Access denied, read-only server or transaction: the source cannot be written.
fn is_not_writable(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1142 | 1044 | 1290 | 1227 | 1792 | 1836))
}

/// The backfill of a source that cannot be written: every table read inside one
/// `START TRANSACTION WITH CONSISTENT SNAPSHOT` (MariaDB reports its binlog position in
/// `binlog_snapshot_file/position`) and written to the target before the stream starts there.
/// An interrupted snapshot backfill starts over (the checkpoint is written only after it).
async fn snapshot_backfill(
    config: &SyncConfig,
    prepared: &[Prepared],
) -> Result<Position, SyncError> {
    let mut snap = config.source.connect().await?;
    snap.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(sql_err("setting the snapshot's isolation level"))?;
    snap.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(sql_err("opening a consistent snapshot on the source"))?;
    let status: Vec<(String, String)> = snap
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(sql_err("reading the snapshot's binlog position"))?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(offset)) = (
        get("binlog_snapshot_file"),
        get("binlog_snapshot_position").and_then(|v| v.parse::<u64>().ok()),
    ) else {
        return Err(SyncError::Stopped(
            "the source reports no binlog_snapshot_file/position".into(),
        ));
    };
    let pos = Position::at(file, offset);
    info!(position = %pos, "consistent-snapshot backfill");
    let mut tgt = config.target.connect().await?;
    let limit = config.chunk_rows.max(1);
    for p in prepared {
        let reader = RowReader::new(&p.old)?;
        let mut cursor: Option<Vec<String>> = None;
        loop {
            let (rows, next) = reader
                .read_chunk(&mut snap, cursor.as_deref(), None, limit)
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut new_rows = Vec::with_capacity(rows.len());
            for r in &rows {
                new_rows.push(p.mapping.apply(r).map_err(|e| SyncError::Mapping {
                    source_table: p.old.qualified_name(),
                    target_table: p.target.table.clone(),
                    detail: e.to_string(),
                })?);
            }
            let mut stmts = Vec::new();
            if !p.target.replace {
                let keys: Vec<Vec<&rowshift_transform::Value>> = new_rows
                    .iter()
                    .map(|r| p.target.key_positions.iter().map(|&i| &r[i]).collect())
                    .collect();
                let mut sql = String::new();
                crate::apply::write_delete(&mut sql, &p.target, &keys);
                stmts.push(sql);
            }
            let mut sql = String::new();
            let verb = if p.target.replace {
                "REPLACE INTO "
            } else {
                "INSERT INTO "
            };
            crate::apply::write_upsert(
                &mut sql,
                &p.target,
                verb,
                new_rows.iter().map(Vec::as_slice),
            );
            stmts.push(sql);
            tgt.query_drop("BEGIN")
                .await
                .map_err(sql_err("snapshot backfill"))?;
            for s in &stmts {
                tgt.query_drop(s)
                    .await
                    .map_err(sql_err(format!("snapshot backfill of {}", p.target.table)))?;
            }
            tgt.query_drop("COMMIT")
                .await
                .map_err(sql_err("snapshot backfill"))?;
            if rows.len() < limit {
                break;
            }
            cursor = next;
        }
    }
    let _ = snap.query_drop("COMMIT").await;
    let _ = snap.disconnect().await;
    let _ = tgt.disconnect().await;
    Ok(pos)
}

fn is_transient_sync(e: &SyncError) -> bool {
    match e {
        SyncError::Conn(_) => true,
        SyncError::Backfill(BackfillError::Sql { source, .. })
        | SyncError::Backfill(BackfillError::Signal { source, .. }) => {
            crate::apply::is_transient(source)
        }
        _ => false,
    }
}

async fn check_not_purged(
    conn: &mut mysql_async::Conn,
    pos: &Position,
    name: &str,
    ckpt: &CkptTable,
) -> Result<(), SyncError> {
    let rows: Vec<mysql_async::Row> = match conn.query("SHOW BINARY LOGS").await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot list the source's binlogs (needs REPLICATION CLIENT); the stream will tell");
            return Ok(());
        }
    };
    let have = rows.iter().any(|r| {
        r.get_opt::<String, _>(0)
            .and_then(Result::ok)
            .is_some_and(|f| f == pos.file)
    });
    if !have {
        return Err(SyncError::Purged {
            file: pos.file.clone(),
            name: name.to_string(),
            ckpt: ckpt.qualified(),
        });
    }
    Ok(())
}

/// Collation names one server knows and the other does not, with the closest equivalent.
const COLLATION_MYSQL_TO_MARIADB: &[(&str, &str)] = &[
    ("utf8mb4_0900_ai_ci", "utf8mb4_uca1400_ai_ci"),
    ("utf8mb4_0900_as_ci", "utf8mb4_uca1400_as_ci"),
    ("utf8mb4_0900_as_cs", "utf8mb4_uca1400_as_cs"),
    ("utf8mb4_0900_bin", "utf8mb4_bin"),
];

fn translate_ddl(ddl: &str, from: Flavor, to: Flavor) -> (String, Vec<String>) {
    let mut out = ddl.to_string();
    let mut notes = Vec::new();
    if from == to {
        return (out, notes);
    }
    for (my, maria) in COLLATION_MYSQL_TO_MARIADB {
        let (a, b) = if to == Flavor::MariaDb {
            (*my, *maria)
        } else {
            (*maria, *my)
        };
        if out.contains(a) {
            out = out.replace(a, b);
            notes.push(format!("collation {a} is written as {b} on the target"));
        }
    }
    (out, notes)
}

/// `CREATE TABLE `x` (...` with the name replaced by `target`.
fn rename_create(ddl: &str, target: &str) -> Option<String> {
    let rest = ddl.strip_prefix("CREATE TABLE ")?;
    let rest = rest.strip_prefix('`')?;
    let mut chars = rest.char_indices().peekable();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().map(|(_, c)| *c) == Some('`') {
                chars.next();
                continue;
            }
            end = Some(i + 1);
            break;
        }
    }
    Some(format!("CREATE TABLE {target}{}", &rest[end?..]))
}

#[allow(clippy::too_many_arguments)]
async fn prepare_table(
    config: &SyncConfig,
    src: &mut mysql_async::Conn,
    src_flavor: Flavor,
    tgt: &mut mysql_async::Conn,
    tgt_flavor: Flavor,
    t: &SyncTable,
    resumed: bool,
) -> Result<Prepared, SyncError> {
    let old = catalog::load_table(src, src_flavor, &t.source_db, &t.source_table).await?;
    crate::migrate::preflight::table_shape(src, &old).await?;
    let exists = catalog::table_exists(tgt, &t.target_db, &t.target_table)
        .await
        .map_err(sql_err("checking the target table"))?;
    let target_name = t.target_name();
    if resumed || config.target_schema_from_existing {
        if exists && !resumed {
            let any: Option<u8> = tgt
                .query_first(format!("SELECT 1 FROM {target_name} LIMIT 1"))
                .await
                .map_err(sql_err("checking that the target table is empty"))?;
            if any.is_some() {
                return Err(SyncError::TargetNotEmpty { table: target_name });
            }
        }
        if !exists {
            return Err(SyncError::TargetMissing {
                table: target_name,
                hint: if resumed {
                    ": it was dropped after the sync started; delete the stream's checkpoint rows to start over"
                } else {
                    ": create it first, or leave out --target-schema-from-existing to have rowshift create it"
                },
            });
        }
    } else {
        if exists {
            return Err(SyncError::TargetExists { table: target_name });
        }
        let row: Option<(String, String)> = src
            .query_first(format!("SHOW CREATE TABLE {}", t.source_name()))
            .await
            .map_err(sql_err("reading the source table's definition"))?;
        let ddl = row.map(|(_, d)| d).unwrap_or_default();
        let ddl = rename_create(&ddl, &target_name).ok_or_else(|| SyncError::CreateTarget {
            table: target_name.clone(),
            detail: "SHOW CREATE TABLE returned an unexpected statement".into(),
        })?;
        let (ddl, notes) = translate_ddl(&ddl, src_flavor, tgt_flavor);
        for n in notes {
            warn!(table = %target_name, "{n}");
        }
        tgt.query_drop(&ddl)
            .await
            .map_err(|e| SyncError::CreateTarget {
                table: target_name.clone(),
                detail: e.to_string(),
            })?;
        if let Some(alter) = t.alter.as_deref().filter(|a| !a.trim().is_empty()) {
            // One statement only (binary protocol): a `;` cannot start a second one.
            if let Err(e) = tgt
                .exec_drop(format!("ALTER TABLE {target_name} {alter}"), ())
                .await
            {
                let _ = tgt.query_drop(format!("DROP TABLE {target_name}")).await;
                return Err(SyncError::CreateTarget {
                    table: target_name,
                    detail: format!("the target rejected the ALTER: {e}"),
                });
            }
        }
        info!(table = %target_name, "target table created");
    }
    let new = catalog::load_table(tgt, tgt_flavor, &t.target_db, &t.target_table).await?;
    let renames = match t.alter.as_deref() {
        Some(a) => {
            rowshift_transform::mapping::parse_renames(a).map_err(|e| SyncError::Mapping {
                source_table: t.source_name(),
                target_table: target_name.clone(),
                detail: e.to_string(),
            })?
        }
        None => Vec::new(),
    };
    let mapping = Mapping::new(&old, &new, &renames, &t.sets).map_err(|e| SyncError::Mapping {
        source_table: t.source_name(),
        target_table: target_name.clone(),
        detail: e.to_string(),
    })?;
    let cols = mapping.insert_columns();
    let kinds = cols
        .iter()
        .map(|c| match new.column(c).map(|c| &c.data_type) {
            Some(ColumnType::Json) if tgt_flavor == Flavor::MySql => LiteralKind::Json,
            _ => LiteralKind::Plain,
        })
        .collect();
    let unique_secondary = new.unique_keys.iter().any(|k| k.name != "PRIMARY");
    let exact = mapping.new_key_codec().is_always_exact();
    let appliers = if unique_secondary || !exact {
        1
    } else {
        config.appliers.max(1)
    };
    let target = ApplyTarget {
        endpoint: config.target.clone(),
        table: target_name,
        columns: cols.iter().map(|c| quote_ident(c)).collect(),
        kinds,
        key_positions: mapping.key_positions_in_insert(),
        max_batch: 500,
        linger: std::time::Duration::ZERO,
        replace: !unique_secondary,
        // The sync's own appliers (sync::applier) retry lost connections themselves.
        reconnect_timeout: std::time::Duration::from_secs(300),
        collision_wait: crate::apply::COLLISION_WAIT,
    };
    Ok(Prepared {
        old,
        mapping,
        target,
        appliers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_statement_renamed() {
        assert_eq!(
            rename_create("CREATE TABLE `o``x` (\n `id` INT)", "`d`.`t`").unwrap(),
            "CREATE TABLE `d`.`t` (\n `id` INT)"
        );
        let (ddl, notes) = translate_ddl(
            "x COLLATE=utf8mb4_0900_ai_ci",
            Flavor::MySql,
            Flavor::MariaDb,
        );
        assert_eq!(ddl, "x COLLATE=utf8mb4_uca1400_ai_ci");
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn lock_names_fit_the_servers_limit() {
        assert_eq!(
            sync_lock_name("shop", "orders"),
            "rowshift-sync:shop:orders"
        );
        let long = "x".repeat(64);
        let a = sync_lock_name(&long, "orders");
        assert_eq!(a.len(), 30, "{a}");
        assert_ne!(a, sync_lock_name(&long, "orders2"));
        assert_ne!(a, sync_lock_name("shop", &long));
    }
}
