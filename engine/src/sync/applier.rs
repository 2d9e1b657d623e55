//! Sync appliers: like [`crate::apply`] (batched, collapsed per key, per-key order), plus the
//! exactly-once checkpoint: every batch's transaction also updates the applier's row in the
//! target's checkpoint table ([`super::ckpt`]) with the coordinate after the batch's last
//! change. A batch and its checkpoint commit together or not at all.
//!
//! A target that refuses writes for a while (a locked table, `read_only`, a restart, a lost
//! connection) is waited for: the batch is retried with back-off (lock waits are bounded to a
//! few seconds per attempt) for up to `retry_for`, then the applier fails with the last error.

use super::ckpt::{ApplierCkpt, CkptTable, Coord};
use crate::apply::{
    is_held_collision, is_transient, run_batch, write_batch, ApplyTarget, Held, Op, Pending,
};
use crate::position::Position;
use mysql_async::prelude::Queryable;
use rowshift_transform::key::RowKey;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Errors of a sync applier.
#[derive(Debug, thiserror::Error)]
pub enum SyncApplyError {
    /// The target refused a batch for longer than the retry window.
    #[error("applier {applier} of {table} could not write a batch of {rows} rows for {waited:?} (last error: {source}); the target refuses writes: check it is writable and not locked, then run sync again (it resumes from its checkpoint)")]
    Batch {
        /// Applier number.
        applier: usize,
        /// Target table.
        table: String,
        /// Rows in the batch.
        rows: usize,
        /// How long it retried.
        waited: Duration,
        /// The last error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server refused the batch for a reason retrying cannot fix.
    #[error("applier {applier} of {table}: the target rejected a batch of {rows} rows: {source}")]
    Rejected {
        /// Applier number.
        applier: usize,
        /// Target table.
        table: String,
        /// Rows in the batch.
        rows: usize,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A batch collided on a unique key of the target's own, and the changes that came after
    /// it did not resolve the collision.
    #[error("applier {applier} of {table}: rows collide under a unique key of the target ({source}), and {why}, so the source most likely holds rows that share that value (or the target held such a row before the sync); nothing was committed past the sync's checkpoint. Remove the duplicates (or drop UNIQUE from --alter), then run sync again (it resumes from its checkpoint)")]
    Duplicate {
        /// Applier number.
        applier: usize,
        /// Target table.
        table: String,
        /// What was waited for.
        why: String,
        /// The server's error (names the key and the value).
        #[source]
        source: mysql_async::Error,
    },
}

/// A change at `at`, in a transaction that started at `resume`.
#[derive(Debug)]
pub struct Change {
    /// The key (collation-aware) for collapsing.
    pub key: RowKey,
    /// What to do.
    pub op: Op,
    /// Where in the binlog.
    pub at: Coord,
    /// The commit position the transaction started after.
    pub resume: Arc<Position>,
    /// The last change the binlog row at `at` makes: false for the delete of the old key of
    /// an update that changes the key (its insert of the new key, at the same `at`, follows
    /// and may go to the same applier). A checkpoint records the row done only after it, so a
    /// restart never skips the new key's insert.
    pub ends_row: bool,
}

/// A message to a sync applier.
#[derive(Debug)]
pub enum SyncMsg {
    /// Changes in binlog order (the router sends them in vectors: one message, and one wake-up
    /// of the applier, per many changes).
    Changes(Vec<Change>),
    /// Everything before `at` has been sent: commit what is pending, record `at`, acknowledge
    /// `seq`.
    Mark {
        /// Coordinate of a commit.
        at: Coord,
        /// That commit's position.
        resume: Arc<Position>,
        /// Acknowledged once applied.
        seq: u64,
    },
    /// The backfill chunk `chunk` was sent completely (its rows precede this message).
    Chunk {
        /// Chunk number.
        chunk: u64,
        /// Cursor after the chunk.
        cursor: Option<Vec<String>>,
        /// The last chunk: the backfill is done.
        done: bool,
    },
}

/// Counters shared by the appliers of a stream.
#[derive(Debug, Default)]
pub struct SyncApplyStats {
    /// Changes applied (committed).
    pub applied: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Batches retried because the target refused them for a moment.
    pub retries: AtomicU64,
}

/// How an applier acknowledges marks: (seq, coordinate).
pub type Ack = watch::Sender<(u64, Coord)>;

/// One applier.
pub struct SyncApplier {
    /// Applier number.
    pub id: usize,
    /// Where to write.
    pub target: Arc<ApplyTarget>,
    /// Checkpoint table.
    pub ckpt: CkptTable,
    /// Stream name (checkpoint key).
    pub stream: String,
    /// Starting checkpoint.
    pub state: ApplierCkpt,
    /// Counters.
    pub stats: Arc<SyncApplyStats>,
    /// Longest time a batch is retried.
    pub retry_for: Duration,
    /// When the sync's lock on the target was last seen held, and by which session (`None`
    /// while its session ended and it is being taken again): no batch is written without the
    /// lock, and after a lost connection none before the lock was seen held again (a
    /// restarted target ends the lock's session too; another process could have taken it).
    /// Each batch's transaction also checks, on the server, that this session holds it
    /// ([`lock_fence_sql`]).
    pub lock_held: watch::Receiver<Option<LockSeen>>,
    /// The lock's name.
    pub lock_name: String,
}

/// The sync's lock seen held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSeen {
    /// When (taken before the check was sent).
    pub at: Instant,
    /// The connection id of the session holding it.
    pub session: u64,
}

/// Error code of the fence: a scalar subquery returning more than one row.
const FENCE_ERROR: u16 = 1242;

/// A statement that fails (error 1242) unless session `session` holds the lock `name`: run
/// inside a batch's transaction, a batch commits only while its run holds the sync's lock
/// (the keeper's once-a-second check leaves the window in between open). A `SELECT`: MariaDB's
/// `DO` does not raise the subquery's cardinality error.
pub fn lock_fence_sql(name: &str, session: u64) -> String {
    format!(
        "SELECT (SELECT 1 FROM (SELECT 1 AS n UNION ALL SELECT 2) AS f WHERE NOT (IS_USED_LOCK({}) <=> {session})) AS rowshift_fence",
        super::ckpt::str_lit(name)
    )
}

struct Batch {
    ops: Pending,
    changes: u64,
}

impl SyncApplier {
    async fn connect(&self) -> Option<mysql_async::Conn> {
        let mut conn = self.target.endpoint.connect().await.ok()?;
        // Bounded waits: a locked target table fails the attempt, which is retried.
        for stmt in [
            "SET SESSION innodb_lock_wait_timeout = 5",
            "SET SESSION lock_wait_timeout = 5",
        ] {
            if conn.query_drop(stmt).await.is_err() {
                return None;
            }
        }
        Some(conn)
    }

    /// Run until the channel closes.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<SyncMsg>,
        ack: Ack,
    ) -> Result<(), SyncApplyError> {
        let mut conn = self.connect().await;
        let mut batch = Batch {
            ops: Pending::default(),
            changes: 0,
        };
        let mut saved = self.state.clone();
        // The resume position of the last change taken, copied into the state only when a
        // batch is written or compared (not once per change: a GTID set is costly to clone).
        let mut pending: Option<Arc<Position>> = None;
        let mut held: Option<Held> = None;
        loop {
            let first = match &held {
                None => rx.recv().await,
                Some(h) => {
                    let until = h.since + self.target.collision_wait;
                    let wake = if h.owed {
                        until.min(h.next_try())
                    } else {
                        until
                    };
                    match tokio::time::timeout_at(wake, rx.recv()).await {
                        Ok(m) => m,
                        // Time to try the held batch again (changes came since the last try),
                        // or for the last time: written, or its collision reported.
                        Err(_) => {
                            let last = tokio::time::Instant::now() >= until;
                            match self
                                .flush(&mut conn, &mut batch, &mut saved, &mut pending)
                                .await
                            {
                                Ok(()) => {
                                    if let Some(seq) = held.take().and_then(|h| h.ack) {
                                        let _ = ack.send((seq, self.state.before.clone()));
                                    }
                                }
                                Err(e) if self.held_collision(&e) && !last => {
                                    if let Some(h) = &mut held {
                                        h.tried_again();
                                    }
                                }
                                Err(e) => {
                                    let why = held.as_ref().map(Held::waited).unwrap_or_default();
                                    return Err(self.duplicate(e, why));
                                }
                            }
                            continue;
                        }
                    }
                }
            };
            let Some(first) = first else { break };
            // A held batch is tried again once it gathered half its size more (at least
            // `max_batch`), a mark came, or its retry time passed: each try writes the whole
            // batch.
            let full = match &held {
                None => self.target.max_batch,
                Some(_) => Held::full(batch.ops.len(), self.target.max_batch),
            };
            let mut received = 0u64;
            let mut msg = Some(first);
            let mut mark = None;
            while let Some(m) = msg.take() {
                match m {
                    SyncMsg::Changes(changes) => {
                        for Change {
                            key,
                            op,
                            at,
                            resume,
                            ends_row,
                        } in changes
                        {
                            // A collision here ends the run with the server's error: the key
                            // cannot join a held batch.
                            if batch.ops.must_flush_before(&key) {
                                self.flush(&mut conn, &mut batch, &mut saved, &mut pending)
                                    .await?;
                                if let Some(h) = held.take() {
                                    mark = mark.max(h.ack);
                                }
                            }
                            batch.ops.put(key, op);
                            batch.changes += 1;
                            received += 1;
                            let done = if ends_row {
                                Coord {
                                    row: at.row + 1,
                                    ..at
                                }
                            } else {
                                at
                            };
                            self.state.before = self.state.before.clone().max(done);
                            pending = Some(resume);
                            if held.is_none() && batch.ops.len() >= full {
                                match self
                                    .flush(&mut conn, &mut batch, &mut saved, &mut pending)
                                    .await
                                {
                                    Ok(()) => {}
                                    Err(e) if self.held_collision(&e) => {
                                        debug!(
                                            applier = self.id,
                                            "batch held: unique key collision"
                                        );
                                        held = Some(Held::new());
                                    }
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                    }
                    SyncMsg::Mark { at, resume, seq } => {
                        if at > self.state.before {
                            self.state.before = at;
                            pending = Some(resume);
                        }
                        mark = Some(seq);
                        break;
                    }
                    SyncMsg::Chunk {
                        chunk,
                        cursor,
                        done,
                    } => {
                        self.state.chunk = chunk;
                        self.state.cursor = cursor;
                        self.state.backfill_done = done;
                    }
                }
                if batch.ops.len() >= full {
                    break;
                }
                msg = rx.try_recv().ok();
            }
            if let Some(h) = &mut held {
                h.changes += received;
                if mark.is_none()
                    && batch.ops.len() < full
                    && tokio::time::Instant::now() < h.next_try()
                {
                    // Not yet: the next message or the retry time tries it.
                    h.owed = true;
                    continue;
                }
            }
            if mark.is_some() {
                settle(&mut self.state, &mut pending);
            }
            if !batch.ops.is_empty() || (mark.is_some() && saved != self.state) {
                match self
                    .flush(&mut conn, &mut batch, &mut saved, &mut pending)
                    .await
                {
                    Ok(()) => {
                        if let Some(h) = held.take() {
                            debug!(
                                applier = self.id,
                                waited_ms = h.since.elapsed().as_millis() as u64,
                                "unique key collision resolved by later changes"
                            );
                            mark = mark.max(h.ack);
                        }
                    }
                    Err(e) if self.held_collision(&e) => {
                        if let Some(h) = &mut held {
                            h.tried_again();
                        }
                        let h = held.get_or_insert_with(Held::new);
                        h.ack = h.ack.max(mark);
                        // The statement's size, measured again (this path is rare).
                        let mut text = String::new();
                        write_batch(&mut text, &self.target, &batch.ops.ops, None);
                        if let Some(why) = h.gave_up(
                            self.target.collision_wait,
                            batch.ops.len(),
                            text.len(),
                            self.target.max_batch,
                        ) {
                            return Err(self.duplicate(e, why));
                        }
                        debug!(
                            applier = self.id,
                            keys = batch.ops.len(),
                            "batch held: unique key collision"
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(seq) = mark {
                let _ = ack.send((seq, self.state.before.clone()));
            }
        }
        settle(&mut self.state, &mut pending);
        if !batch.ops.is_empty() || saved != self.state {
            match self
                .flush(&mut conn, &mut batch, &mut saved, &mut pending)
                .await
            {
                Ok(()) => {
                    if let Some(seq) = held.and_then(|h| h.ack) {
                        let _ = ack.send((seq, self.state.before.clone()));
                    }
                }
                // The sync stops (it may stop inside a transaction that swaps values): the
                // batch is not committed and the checkpoint stays where the committed rows
                // are, so the next run reads these changes again with what follows them.
                Err(e) if self.held_collision(&e) => {
                    warn!(
                        applier = self.id,
                        error = %e,
                        "the last batch collides on a unique key of the target; left to the next run"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(c) = conn {
            let _ = c.disconnect().await;
        }
        Ok(())
    }

    /// True when `error` is a collision on a unique key of the target's own (a batch written
    /// with `DELETE` + `INSERT`, where the primary key cannot collide) that later changes may
    /// resolve (see [`crate::apply::Held`]).
    fn held_collision(&self, error: &SyncApplyError) -> bool {
        matches!(error, SyncApplyError::Rejected { source, .. } if is_held_collision(self.target.replace, source))
    }

    /// A collision on a unique key of the target's own as [`SyncApplyError::Duplicate`] (`why`:
    /// what was waited for); any other error as it is.
    fn duplicate(&self, error: SyncApplyError, why: String) -> SyncApplyError {
        if !self.held_collision(&error) {
            return error;
        }
        match error {
            SyncApplyError::Rejected { table, source, .. } => SyncApplyError::Duplicate {
                applier: self.id,
                table,
                why,
                source,
            },
            other => other,
        }
    }

    /// Commit the batch (possibly empty) together with the checkpoint row.
    async fn flush(
        &mut self,
        conn: &mut Option<mysql_async::Conn>,
        batch: &mut Batch,
        saved: &mut ApplierCkpt,
        pending: &mut Option<Arc<Position>>,
    ) -> Result<(), SyncApplyError> {
        settle(&mut self.state, pending);
        let t = self.target.clone();
        let rows = batch.ops.len();
        let ckpt_sql = self.ckpt.update_sql(&self.stream, &self.state);
        let mut sql = String::new();
        write_batch(&mut sql, &t, &batch.ops.ops, Some(&ckpt_sql));
        let batch_len = sql.len();
        let started = Instant::now();
        let mut attempt = 0u32;
        // The batch could not be written for want of the lock.
        let id = self.id;
        let lock_error = |why: &str| SyncApplyError::Batch {
            applier: id,
            table: t.table.clone(),
            rows,
            waited: started.elapsed(),
            source: mysql_async::Error::Other(why.into()),
        };
        // After a lost connection: the lock must be seen held after that moment.
        let mut seen_after: Option<Instant> = None;
        loop {
            let fresh = |seen: &Option<LockSeen>| match (seen, seen_after) {
                (Some(seen), Some(after)) => seen.at > after,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !fresh(&self.lock_held.borrow()) {
                let left = self.retry_for.saturating_sub(started.elapsed());
                let _ = tokio::time::timeout(left, self.lock_held.wait_for(fresh)).await;
                // The keeper ended without the lock (another session holds it): the run is
                // stopping; waiting out the retry window would only hold its shutdown.
                if self.lock_held.has_changed().is_err() && !fresh(&self.lock_held.borrow()) {
                    return Err(lock_error("the sync lost its lock on the target"));
                }
            }
            let holder = *self.lock_held.borrow();
            // Not holding the lock counts as not being connected.
            let result = match (conn.as_mut(), holder) {
                (Some(c), Some(seen)) if fresh(&holder) => {
                    sql.truncate(batch_len);
                    sql.push(';');
                    sql.push_str(&lock_fence_sql(&self.lock_name, seen.session));
                    run_batch(c, &sql).await.map_err(Some)
                }
                _ => Err(None),
            };
            // The fence failed: the lock is not this run's right now. Wait for the keeper to
            // see it held again (or to stop the run).
            if let Err(Some(mysql_async::Error::Server(e))) = &result {
                if e.code == FENCE_ERROR {
                    attempt += 1;
                    warn!(
                        applier = self.id,
                        attempt, "the sync's lock is not held by this run; waiting for it"
                    );
                    seen_after = Some(Instant::now());
                    if started.elapsed() > self.retry_for {
                        return Err(lock_error(
                            "the sync's lock on the target is not held by this run",
                        ));
                    }
                    continue;
                }
            }
            match result {
                Ok(()) => break,
                Err(err) => {
                    attempt += 1;
                    let definite = err.as_ref().is_some_and(|e| !is_refusal(e));
                    if definite {
                        if let Some(source) = err {
                            return Err(SyncApplyError::Rejected {
                                applier: self.id,
                                table: t.table.clone(),
                                rows,
                                source,
                            });
                        }
                    }
                    if started.elapsed() > self.retry_for {
                        let source = err.unwrap_or_else(|| {
                            mysql_async::Error::Other("cannot connect to the target".into())
                        });
                        return Err(SyncApplyError::Batch {
                            applier: self.id,
                            table: t.table.clone(),
                            rows,
                            waited: started.elapsed(),
                            source,
                        });
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    match &err {
                        Some(e) => {
                            warn!(applier = self.id, attempt, error = %e, "the target refused a batch; retrying")
                        }
                        None => warn!(
                            applier = self.id,
                            attempt, "no connection to the target; retrying"
                        ),
                    }
                    let lost = err.as_ref().is_none_or(|e| !is_lock_wait(e));
                    if lost {
                        *conn = None;
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                            .await;
                        *conn = self.connect().await;
                        // A check from before this connection was made proves nothing about
                        // the server it reached (it may have restarted during the back-off).
                        seen_after = Some(Instant::now());
                    }
                }
            }
        }
        if attempt > 0 {
            info!(
                applier = self.id,
                attempt, "the target accepted the batch again"
            );
        }
        debug!(rows, "sync batch applied");
        self.stats
            .applied
            .fetch_add(batch.changes, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        batch.ops.clear();
        batch.changes = 0;
        *saved = self.state.clone();
        Ok(())
    }
}

/// Copy the pending resume position into the state.
fn settle(state: &mut ApplierCkpt, pending: &mut Option<Arc<Position>>) {
    if let Some(p) = pending.take() {
        if state.resume != *p {
            state.resume = (*p).clone();
        }
    }
}

fn is_lock_wait(e: &mysql_async::Error) -> bool {
    crate::apply::is_retryable_in_place(e)
}

/// Errors that mean "not now": lost connections, lock waits, deadlocks, a read-only or
/// shutting-down server.
fn is_refusal(e: &mysql_async::Error) -> bool {
    is_transient(e)
        || matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1290 | 1836 | 1099 | 1100 | 1053 | 2013 | 1927 | 1105))
}
