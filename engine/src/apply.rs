//! Parallel apply: N appliers, each fed by a bounded channel, each applying its changes to the
//! target table in binlog order. The router (the caller) sends every change of one primary key to
//! the same applier, so per-key order holds while different keys apply in parallel.
//!
//! An applier batches what is waiting in its channel (gathering for up to [`ApplyTarget::linger`]
//! while the router reads the binlog in bursts), collapses changes of one key to the last, and
//! writes the batch in one transaction: one `DELETE … WHERE pk IN (…)` for every key of the batch,
//! then one multi-row `INSERT` of the upserted rows. Deleting first (instead of `REPLACE`) never
//! deletes a *different* row that happens to collide on a unique secondary key, and makes the apply
//! idempotent: replaying a change after a crash gives the same table. When the target has no unique
//! key of its own (`ApplyTarget::replace`), upserts are one multi-row `REPLACE` and only deleted
//! keys get a `DELETE`. A batch's statements travel as one multi-statement text (`BEGIN; …`) and
//! its `COMMIT` as a second round trip, sent only once the statements have answered: a batch of a
//! client that died meanwhile (a killed run whose statements wait on a row lock) is rolled back by
//! the server instead of committing a stale image behind the back of a resumed run (measured: such
//! statements stay in the processlist after the kill).
//!
//! On a target with a unique key of its own (a migration that adds one), a batch may collide on
//! that key although the table has no duplicates: its boundary fell inside a transaction that
//! passes a value from one row to another, or the copy wrote a row's newer image first. Such a
//! batch is held, gathering the changes that come next (which resolve it), and written again;
//! a collision that stays for [`ApplyTarget::collision_wait`] is reported as a duplicate (at once
//! when the copy is done and a marker's barrier finds it, see [`LingerControl::copy_done`]).
//!
//! Barriers give the applied position: the router sends a barrier to every applier; an applier
//! acknowledges it once everything before it is committed, at once when someone waits for it
//! (urgent) or with its next batch (a held batch's barriers once it is written). The lowest
//! acknowledged barrier is applied everywhere ([`ApplierSet::wait_applied`]).

use crate::conn::{ConnError, Endpoint};
use crate::sqlvalue::{push_literal, LiteralKind};
use mysql_async::prelude::Queryable;
use rowshift_transform::key::RowKey;
use rowshift_transform::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info_span, Instrument};

/// Errors of an applier.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The server refused a batch.
    #[error("applier {applier} could not apply a batch of {rows} rows to {table}: {source}")]
    Batch {
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
    /// it did not resolve the collision: the table holds rows that share a value under it.
    #[error("applying changes to {table}: rows collide under a unique key the ALTER adds ({source}), and {why}, so the table most likely holds rows that share that value; the original table is untouched. Remove the duplicates from the table (or drop UNIQUE from the ALTER), then run again")]
    Duplicate {
        /// Target table (the shadow).
        table: String,
        /// What was waited for: `the 120 changes that came in the 10.0 s after the collision
        /// did not resolve it`, and the like.
        why: String,
        /// The server's error (names the key and the value).
        #[source]
        source: mysql_async::Error,
    },
    /// An applier stopped (its task ended or panicked).
    #[error("applier {0} stopped")]
    Stopped(usize),
}

impl ApplyError {
    /// True when the error is a lost connection or a lock timeout: retrying can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Conn(_) => true,
            ApplyError::Batch { source, .. } => is_transient(source),
            ApplyError::Duplicate { .. } | ApplyError::Stopped(_) => false,
        }
    }
}

/// True for errors worth retrying: connection problems, lock wait timeouts, deadlocks, and a
/// statement the server interrupted (1317: a server shutting down ends running statements so
/// before it closes the connection; the batch's transaction is rolled back and idempotent).
pub fn is_transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => {
            matches!(s.code, 1205 | 1213 | 2006 | 2013 | 1053 | 1317 | 1927)
        }
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        _ => false,
    }
}

/// `DELETE FROM t WHERE pk IN (…)` for `keys`.
pub(crate) fn write_delete(sql: &mut String, t: &ApplyTarget, keys: &[Vec<&Value>]) {
    let single = t.key_positions.len() == 1;
    sql.push_str("DELETE FROM ");
    sql.push_str(&t.table);
    sql.push_str(" WHERE ");
    let cols = t.key_columns().join(",");
    if single {
        sql.push_str(&cols);
        sql.push_str(" IN (");
    } else {
        sql.push('(');
        sql.push_str(&cols);
        sql.push_str(") IN (");
    }
    for (n, key) in keys.iter().enumerate() {
        if n > 0 {
            sql.push(',');
        }
        if !single {
            sql.push('(');
        }
        for (i, v) in key.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            push_literal(sql, v, LiteralKind::Plain);
        }
        if !single {
            sql.push(')');
        }
    }
    sql.push(')');
}

/// `INSERT|REPLACE INTO t (cols) VALUES (…), (…)` for `rows`.
pub(crate) fn write_upsert<'a>(
    sql: &mut String,
    t: &ApplyTarget,
    verb: &str,
    rows: impl Iterator<Item = &'a [Value]>,
) {
    sql.push_str(verb);
    sql.push_str(&t.table);
    sql.push_str(" (");
    sql.push_str(&t.columns.join(","));
    sql.push_str(") VALUES ");
    for (n, row) in rows.enumerate() {
        if n > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            push_literal(sql, v, t.kinds.get(i).copied().unwrap_or_default());
        }
        sql.push(')');
    }
}

/// Deadlock or lock wait timeout: the same connection can simply run the batch again.
pub(crate) fn is_retryable_in_place(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1205 | 1213))
}

/// What one change does to the target.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert or replace the row (values in [`ApplyTarget::columns`] order).
    Upsert(Vec<Value>),
    /// Delete the row with these primary key values (in [`ApplyTarget::key_columns`] order).
    Delete(Vec<Value>),
}

/// Where and how appliers write.
#[derive(Debug, Clone)]
pub struct ApplyTarget {
    /// The target server.
    pub endpoint: Endpoint,
    /// Quoted `` `db`.`table` ``.
    pub table: String,
    /// Quoted names of the columns written, in [`Op::Upsert`] value order.
    pub columns: Vec<String>,
    /// How each column's literal is written.
    pub kinds: Vec<LiteralKind>,
    /// Positions of the primary key columns within `columns`, in key order.
    pub key_positions: Vec<usize>,
    /// Most changes per transaction.
    pub max_batch: usize,
    /// How long an applier gathers changes before writing a batch smaller than `max_batch`
    /// (an urgent barrier writes at once). Zero: write whatever the channel holds. Changed
    /// during a run with [`ApplierSet::linger_control`].
    pub linger: std::time::Duration,
    /// True when upserts may use `REPLACE`: the target has no unique key besides the primary
    /// key, or only unique keys the source table enforces too (then a row `REPLACE` displaces
    /// is one the copy wrote ahead of its own later event, which restores it; the router must
    /// apply every event then, and one applier keeps the order).
    pub replace: bool,
    /// How long a lost connection (server restart) is retried before the applier fails.
    pub reconnect_timeout: std::time::Duration,
    /// How long a batch that collides on a unique key of the target's own is held while later
    /// changes come (targets without `replace`; [`COLLISION_WAIT`] unless a test shortens it).
    pub collision_wait: std::time::Duration,
}

impl ApplyTarget {
    /// Quoted primary key column names.
    pub fn key_columns(&self) -> Vec<&str> {
        self.key_positions
            .iter()
            .map(|&i| self.columns[i].as_str())
            .collect()
    }
}

/// A message to an applier.
#[derive(Debug)]
pub enum ApplyMsg {
    /// A change of the row with this key.
    Change(RowKey, Op),
    /// Acknowledge barrier `seq` once everything sent before it is committed: at once when
    /// `urgent` (someone waits for it), else with the next batch written (within
    /// [`ApplyTarget::linger`]); while a batch is held after a unique key collision, once it
    /// is written.
    Barrier {
        /// The barrier's number.
        seq: u64,
        /// Write the batch now instead of letting it gather more changes.
        urgent: bool,
    },
}

/// Counters of the appliers, read by progress and metrics.
#[derive(Debug, Default)]
pub struct ApplyStats {
    /// Changes received.
    pub changes: std::sync::atomic::AtomicU64,
    /// Rows written (after collapsing).
    pub rows_written: std::sync::atomic::AtomicU64,
    /// Transactions committed.
    pub batches: std::sync::atomic::AtomicU64,
}

/// The running appliers.
pub struct ApplierSet {
    senders: Vec<mpsc::Sender<ApplyMsg>>,
    acks: Vec<watch::Receiver<u64>>,
    tasks: Vec<Option<tokio::task::JoinHandle<Result<(), ApplyError>>>>,
    next_barrier: u64,
    /// The appliers' linger in microseconds (see [`ApplyTarget::linger`]).
    linger_us: Arc<std::sync::atomic::AtomicU64>,
    /// See [`LingerControl::copy_done`].
    settled: Arc<std::sync::atomic::AtomicBool>,
    /// The first applier that failed (its task ended with an error).
    failed: watch::Receiver<Option<usize>>,
    /// Shared counters.
    pub stats: Arc<ApplyStats>,
}

impl ApplierSet {
    /// Start `n` appliers writing to `target`; each channel holds at most `capacity` messages.
    pub async fn start(
        target: ApplyTarget,
        n: usize,
        capacity: usize,
    ) -> Result<ApplierSet, ApplyError> {
        let stats = Arc::new(ApplyStats::default());
        let linger_us = Arc::new(std::sync::atomic::AtomicU64::new(
            target.linger.as_micros() as u64
        ));
        let settled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (failed_tx, failed) = watch::channel(None);
        let failed_tx = Arc::new(failed_tx);
        let target = Arc::new(target);
        let mut senders = Vec::new();
        let mut acks = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            let (ack_tx, ack_rx) = watch::channel(0u64);
            let conn = target.endpoint.connect().await?;
            let worker = Applier {
                id: i,
                target: target.clone(),
                conn,
                stats: stats.clone(),
                sql: String::new(),
                linger_us: linger_us.clone(),
                settled: settled.clone(),
            };
            let failed_tx = failed_tx.clone();
            let run = async move {
                let result = worker.run(rx, ack_tx).await;
                if result.is_err() {
                    failed_tx.send_if_modified(|f| f.is_none() && f.replace(i).is_none());
                }
                result
            };
            tasks.push(Some(tokio::spawn(
                run.instrument(info_span!("applier", id = i)),
            )));
            senders.push(tx);
            acks.push(ack_rx);
        }
        Ok(ApplierSet {
            senders,
            acks,
            tasks,
            next_barrier: 0,
            linger_us,
            settled,
            failed,
            stats,
        })
    }

    /// A handle that changes how long the appliers gather a batch, usable after the set moved
    /// into the router.
    pub fn linger_control(&self) -> LingerControl {
        LingerControl {
            linger_us: self.linger_us.clone(),
            settled: self.settled.clone(),
        }
    }

    /// A receiver that turns `Some(i)` once applier `i` failed: a router waiting for the source
    /// learns of it without sending (then [`ApplierSet::failure`] gives the error).
    pub fn failed(&self) -> watch::Receiver<Option<usize>> {
        self.failed.clone()
    }

    /// How many appliers run.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Never empty; for clippy.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Send a change to applier `index` (waits while its channel is full: backpressure).
    pub async fn send(&mut self, index: usize, key: RowKey, op: Op) -> Result<(), ApplyError> {
        let i = index % self.senders.len();
        if self.senders[i]
            .send(ApplyMsg::Change(key, op))
            .await
            .is_err()
        {
            return Err(self.failure(i).await);
        }
        Ok(())
    }

    /// Send a barrier to every applier, to be acknowledged at once (someone waits for it);
    /// returns its number for [`ApplierSet::wait_applied`].
    pub async fn barrier(&mut self) -> Result<u64, ApplyError> {
        self.send_barrier(true).await
    }

    /// Send a barrier acknowledged with the appliers' next batches (within
    /// [`ApplyTarget::linger`]): for publishing the applied position, which nobody waits for.
    pub async fn lazy_barrier(&mut self) -> Result<u64, ApplyError> {
        self.send_barrier(false).await
    }

    async fn send_barrier(&mut self, urgent: bool) -> Result<u64, ApplyError> {
        self.next_barrier += 1;
        for i in 0..self.senders.len() {
            if self.senders[i]
                .send(ApplyMsg::Barrier {
                    seq: self.next_barrier,
                    urgent,
                })
                .await
                .is_err()
            {
                return Err(self.failure(i).await);
            }
        }
        Ok(self.next_barrier)
    }

    /// The error applier `i` ended with ([`ApplyError::Stopped`] when it is gone otherwise).
    pub async fn failure(&mut self, i: usize) -> ApplyError {
        match self.tasks.get_mut(i).and_then(Option::take) {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                _ => ApplyError::Stopped(i),
            },
            None => ApplyError::Stopped(i),
        }
    }

    /// The highest barrier every applier has acknowledged.
    pub fn applied(&self) -> u64 {
        self.acks.iter().map(|a| *a.borrow()).min().unwrap_or(0)
    }

    /// A handle that waits for barriers without borrowing the set.
    pub fn watcher(&self) -> AppliedWatcher {
        AppliedWatcher {
            acks: self.acks.clone(),
        }
    }

    /// Wait until barrier `seq` is acknowledged by every applier.
    pub async fn wait_applied(&self, seq: u64) -> Result<(), ApplyError> {
        self.watcher().wait(seq).await
    }

    /// Close the channels and wait for the appliers to finish what they hold.
    pub async fn finish(self) -> Result<(), ApplyError> {
        drop(self.senders);
        for (i, t) in self.tasks.into_iter().enumerate() {
            let Some(t) = t else { continue };
            match t.await {
                Ok(r) => r?,
                Err(_) => return Err(ApplyError::Stopped(i)),
            }
        }
        Ok(())
    }
}

/// Changes the appliers' [`ApplyTarget::linger`] during a run (from their next batch on).
#[derive(Debug, Clone)]
pub struct LingerControl {
    linger_us: Arc<std::sync::atomic::AtomicU64>,
    settled: Arc<std::sync::atomic::AtomicBool>,
}

impl LingerControl {
    /// Gather batches for `linger` from now on; zero once changes should be written as they
    /// come (a cut-over drains what is left while the table is locked).
    pub fn set(&self, linger: std::time::Duration) {
        self.linger_us.store(
            linger.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The copy is done: every change that can resolve a collision on a unique key of the
    /// target's own precedes the next marker, so a batch that still collides when an urgent
    /// barrier comes is a duplicate of the table, reported at once (the verification and the
    /// cut-over wait for such barriers with the table locked).
    pub fn copy_done(&self) {
        self.settled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits for barrier acknowledgements.
#[derive(Clone)]
pub struct AppliedWatcher {
    acks: Vec<watch::Receiver<u64>>,
}

impl AppliedWatcher {
    /// Wait until every applier acknowledged barrier `seq`.
    pub async fn wait(&self, seq: u64) -> Result<(), ApplyError> {
        for (i, ack) in self.acks.iter().enumerate() {
            let mut ack = ack.clone();
            ack.wait_for(|v| *v >= seq)
                .await
                .map_err(|_| ApplyError::Stopped(i))?;
        }
        Ok(())
    }
}

struct Applier {
    id: usize,
    target: Arc<ApplyTarget>,
    conn: mysql_async::Conn,
    stats: Arc<ApplyStats>,
    sql: String,
    linger_us: Arc<std::sync::atomic::AtomicU64>,
    settled: Arc<std::sync::atomic::AtomicBool>,
}

/// The changes an applier holds: one op per key (the last one), in the order keys first came
/// (public for the benchmarks).
#[derive(Debug, Default)]
pub struct Pending {
    /// Key → index in `ops`.
    index: HashMap<RowKey, usize>,
    /// The ops, in the order their keys first came.
    pub ops: Vec<Op>,
}

impl Pending {
    /// Keys held.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// True when `key` has a change held.
    pub fn contains(&self, key: &RowKey) -> bool {
        self.index.contains_key(key)
    }

    /// True when `key` must not be collapsed with the change held for equal key bytes: either
    /// key is inexact (folded by an approximate collation: the two may be rows the server
    /// tells apart, e.g. 'ı' and 'i' under utf8mb4_0900_ai_ci). Flush first then.
    pub fn must_flush_before(&self, key: &RowKey) -> bool {
        self.index
            .get_key_value(key)
            .is_some_and(|(held, _)| !held.is_exact() || !key.is_exact())
    }

    /// Keep `op` as the key's change: a later change of a key replaces the earlier one.
    pub fn put(&mut self, key: RowKey, op: Op) {
        match self.index.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => self.ops[*e.get()] = op,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.ops.len());
                self.ops.push(op);
            }
        }
    }

    /// Forget everything (after the batch is written).
    pub fn clear(&mut self) {
        self.index.clear();
        self.ops.clear();
    }
}

/// Append the statements of one batch to `sql` as a single multi-statement text (one round
/// trip): `BEGIN; DELETE …; INSERT|REPLACE …; extra` (`extra`: a sync's checkpoint update,
/// which must commit with the rows). The text never commits: the caller sends `COMMIT` (see
/// [`run_batch`]), so that only a live client's batch commits. Returns the number of upserted
/// rows.
pub fn write_batch(sql: &mut String, t: &ApplyTarget, ops: &[Op], extra: Option<&str>) -> usize {
    let upserts = ops.iter().filter(|op| matches!(op, Op::Upsert(_))).count();
    // Without unique secondary keys REPLACE only ever replaces the same primary key, so
    // only deletes need a DELETE; otherwise every key of the batch is deleted first and
    // the rows inserted, so no other row is ever deleted by a unique-key collision.
    let delete_keys: Vec<Vec<&Value>> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Delete(key) => Some(key.iter().collect()),
            Op::Upsert(row) if !t.replace => {
                Some(t.key_positions.iter().map(|&i| &row[i]).collect())
            }
            Op::Upsert(_) => None,
        })
        .collect();
    sql.push_str("BEGIN");
    if !delete_keys.is_empty() {
        sql.push(';');
        write_delete(sql, t, &delete_keys);
    }
    if upserts > 0 {
        sql.push(';');
        let verb = if t.replace {
            "REPLACE INTO "
        } else {
            "INSERT INTO "
        };
        write_upsert(
            sql,
            t,
            verb,
            ops.iter().filter_map(|op| match op {
                Op::Upsert(row) => Some(row.as_slice()),
                Op::Delete(_) => None,
            }),
        );
    }
    if let Some(extra) = extra {
        sql.push(';');
        sql.push_str(extra);
    }
    upserts
}

/// Run a batch written by [`write_batch`] and commit it: the statements in one round trip,
/// then `COMMIT` in a second one. A server whose client is gone before it asks for the commit
/// rolls the transaction back when it notices the closed connection, so a dead run can never
/// commit (a single multi-statement text ending in `COMMIT`, or an autocommit statement, runs
/// to its end on the server even after the client died: a statement waiting on a row lock
/// would then commit its rows late, over what a resumed run wrote). On an error the
/// transaction is rolled back (best effort) and the error returned.
pub async fn run_batch(conn: &mut mysql_async::Conn, sql: &str) -> Result<(), mysql_async::Error> {
    let mut result = conn.query_drop(sql).await;
    if result.is_ok() {
        result = conn.query_drop("COMMIT").await;
    }
    if result.is_err() {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    result
}

/// How long a batch that collides on a unique key of the target's own (not the primary key) is
/// held while more changes come, before the collision is taken for a duplicate of the table
/// (the default of [`ApplyTarget::collision_wait`]).
pub const COLLISION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The most keys a held batch gathers (in [`ApplyTarget::max_batch`]s) before the collision is
/// taken for a duplicate of the table.
const HELD_BATCHES: usize = 50;

/// The least time between two tries of a held batch, unless it grew by half meanwhile; it
/// doubles with every try, up to [`HELD_RETRY_MAX`] (each try writes the whole batch).
const HELD_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The longest time between two tries of a held batch.
const HELD_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// The largest statement text a held batch may grow to (MariaDB's default
/// `max_allowed_packet` is 16 MiB, and a try adds half again).
const HELD_BYTES: usize = 8 << 20;

/// True when `e` is a collision that a batch held on a target written with `DELETE` + `INSERT`
/// (not `replace`) may see resolved by later changes: a duplicate key, which can only be a unique
/// key of the target's own since every key of the batch is deleted first.
pub(crate) fn is_held_collision(replace: bool, e: &mysql_async::Error) -> bool {
    !replace && matches!(e, mysql_async::Error::Server(s) if s.code == 1062)
}

/// A batch that collided on a unique key of the target's own, held until later changes resolve
/// the collision (shared by these appliers and `sync`'s): a batch boundary inside an application
/// transaction that passes a value from one row to another, or the copy having written a row's
/// newer image (it took the value) before the appliers reached the change of the row that gave
/// it up. The changes that resolve it are in the binlog already (the source committed them
/// first), so they come soon; a collision that stays is a duplicate of the table under the key.
#[derive(Debug)]
pub(crate) struct Held {
    /// When the batch first collided.
    pub since: tokio::time::Instant,
    /// Tries since the collision.
    tries: u32,
    /// The last try.
    tried: tokio::time::Instant,
    /// Changes came since the last try.
    pub owed: bool,
    /// The latest barrier (mark) received while held, acknowledged once the batch is written.
    pub ack: Option<u64>,
    /// Changes received since the collision.
    pub changes: u64,
}

impl Held {
    /// A batch that collided just now.
    pub fn new() -> Held {
        let now = tokio::time::Instant::now();
        Held {
            since: now,
            tries: 1,
            tried: now,
            owed: false,
            ack: None,
            changes: 0,
        }
    }

    /// When the batch may be tried again: the wait doubles with every try, from
    /// [`HELD_RETRY`] to [`HELD_RETRY_MAX`].
    pub fn next_try(&self) -> tokio::time::Instant {
        self.tried
            + HELD_RETRY
                .saturating_mul(1 << self.tries.min(8))
                .min(HELD_RETRY_MAX)
    }

    /// Another try collided.
    pub fn tried_again(&mut self) {
        self.tries += 1;
        self.tried = tokio::time::Instant::now();
        self.owed = false;
    }

    /// The batch will be tried again once it holds this many keys (half again, at least
    /// `max_batch` more).
    pub fn full(rows: usize, max_batch: usize) -> usize {
        rows + max_batch.max(rows / 2)
    }

    /// Why the wait ends now, if it does: the collision wait passed, or the batch (`rows` keys,
    /// `sql_bytes` of statement text) reached its limits. Written for the duplicate error.
    pub fn gave_up(
        &self,
        wait: std::time::Duration,
        rows: usize,
        sql_bytes: usize,
        max_batch: usize,
    ) -> Option<String> {
        if self.since.elapsed() >= wait {
            Some(self.waited())
        } else if rows >= HELD_BATCHES * max_batch || sql_bytes >= HELD_BYTES {
            Some(format!(
                "the batch held for it reached {rows} rows ({sql_bytes} bytes of SQL) in {:.1} s without resolving it",
                self.since.elapsed().as_secs_f64()
            ))
        } else {
            None
        }
    }

    /// What the batch waited for, for the duplicate error.
    pub fn waited(&self) -> String {
        format!(
            "the {} changes that came in the {:.1} s after the collision did not resolve it",
            self.changes,
            self.since.elapsed().as_secs_f64()
        )
    }
}

impl Applier {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ApplyMsg>,
        ack: watch::Sender<u64>,
    ) -> Result<(), ApplyError> {
        let mut batch = Pending::default();
        let mut held: Option<Held> = None;
        loop {
            let first = match held.as_ref().map(|h| h.since + self.target.collision_wait) {
                None => rx.recv().await,
                Some(until) => match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(m) => m,
                    // Nothing came that could resolve it: written once more, or reported.
                    Err(_) => {
                        self.write_held(&mut batch, &mut held, &ack).await?;
                        continue;
                    }
                },
            };
            let Some(first) = first else {
                // The run ends: a held batch is written or its collision reported, never
                // dropped.
                self.write_held(&mut batch, &mut held, &ack).await?;
                break;
            };
            // Changes are gathered until the batch is full, an urgent barrier comes, or the
            // channel stayed empty for the linger since the batch began: the router reads the
            // binlog faster than an applier writes it only in bursts, and without the linger a
            // batch was whatever the channel held at the moment (8.5 changes on average in a
            // migrate_e2e run, one transaction each). A held batch is tried again once it
            // gathered half its size more (at least `max_batch`), so that trying a growing
            // batch again costs the server about as much as writing it once.
            let full = match held {
                None => self.target.max_batch,
                Some(_) => Held::full(batch.len(), self.target.max_batch),
            };
            let step = full - batch.len();
            let linger = self.linger_us.load(std::sync::atomic::Ordering::Relaxed);
            let mut deadline =
                tokio::time::Instant::now() + std::time::Duration::from_micros(linger);
            if let Some(h) = &held {
                // Not a try per trickling change: each one writes the whole held batch.
                deadline = deadline.max(h.next_try());
            }
            let mut msg = Some(first);
            let mut barrier = None;
            let mut urgent = false;
            let mut received = 0u64;
            loop {
                while let Some(m) = msg.take() {
                    match m {
                        ApplyMsg::Change(key, op) => {
                            received += 1;
                            // A key folded by an approximate collation may stand for two rows
                            // the server tells apart: never collapse it, flush what came
                            // before (a collision there ends the run with the server's error: the
                            // key cannot join a held batch).
                            if batch.must_flush_before(&key) {
                                self.flush(&mut batch).await?;
                                if let Some(h) = held.take() {
                                    barrier = barrier.max(h.ack);
                                }
                            }
                            batch.put(key, op);
                        }
                        ApplyMsg::Barrier { seq, urgent: now } => {
                            // Acknowledged after the flush below, which writes everything
                            // received before it.
                            barrier = Some(seq);
                            urgent = now;
                            if urgent {
                                break;
                            }
                        }
                    }
                    if batch.len() >= full {
                        break;
                    }
                    // A steady stream of changes to few keys never fills the batch: the linger
                    // bounds it too (the clock read once every 64 changes), and without a
                    // linger the number of changes.
                    if received >= 4 * step as u64
                        || (linger > 0
                            && received.is_multiple_of(64)
                            && tokio::time::Instant::now() >= deadline)
                    {
                        break;
                    }
                    msg = rx.try_recv().ok();
                }
                if urgent || batch.len() >= full || tokio::time::Instant::now() >= deadline {
                    break;
                }
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => msg = Some(m),
                    // Closed (the run ends) or the linger passed: write what there is.
                    Ok(None) | Err(_) => break,
                }
            }
            self.stats
                .changes
                .fetch_add(received, std::sync::atomic::Ordering::Relaxed);
            if !batch.is_empty() {
                match self.flush(&mut batch).await {
                    Ok(()) => {
                        if let Some(h) = held.take() {
                            debug!(
                                waited_ms = h.since.elapsed().as_millis() as u64,
                                "unique key collision resolved by later changes"
                            );
                            barrier = barrier.max(h.ack);
                        }
                    }
                    Err(error) if self.held_collision(&error) => {
                        if let Some(h) = &mut held {
                            h.tried_again();
                            h.changes += received;
                        }
                        let h = held.get_or_insert_with(Held::new);
                        h.ack = h.ack.max(barrier);
                        let settled = self.settled.load(std::sync::atomic::Ordering::Relaxed);
                        let why = if urgent && settled {
                            Some("the copy is done and every change before the marker was written with it".to_string())
                        } else {
                            h.gave_up(
                                self.target.collision_wait,
                                batch.len(),
                                self.sql.len(),
                                self.target.max_batch,
                            )
                        };
                        if let Some(why) = why {
                            return Err(self.duplicate(error, why));
                        }
                        debug!(keys = batch.len(), "batch held: unique key collision");
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            if let Some(seq) = barrier {
                let _ = ack.send(seq);
            }
        }
        let _ = self.conn.disconnect().await;
        Ok(())
    }

    /// Write a held batch once more (nothing more came, or the run ends): its barrier is
    /// acknowledged, or the collision is reported as a duplicate of the table.
    async fn write_held(
        &mut self,
        batch: &mut Pending,
        held: &mut Option<Held>,
        ack: &watch::Sender<u64>,
    ) -> Result<(), ApplyError> {
        let Some(h) = held.take() else {
            return Ok(());
        };
        match self.flush(batch).await {
            Ok(()) => {
                if let Some(seq) = h.ack {
                    let _ = ack.send(seq);
                }
                Ok(())
            }
            Err(error) => Err(self.duplicate(error, h.waited())),
        }
    }

    /// A collision on a unique key of the target's own as [`ApplyError::Duplicate`] (`why`: what
    /// was waited for); any other error as it is.
    fn duplicate(&self, error: ApplyError, why: String) -> ApplyError {
        if !self.held_collision(&error) {
            return error;
        }
        match error {
            ApplyError::Batch { table, source, .. } => ApplyError::Duplicate { table, why, source },
            other => other,
        }
    }

    /// True when `error` is a collision on a unique key of the target's own that later changes
    /// may resolve (see [`Held`]): a duplicate key on a target written with `DELETE` + `INSERT`,
    /// where the primary key cannot collide (every key of the batch is deleted first).
    fn held_collision(&self, error: &ApplyError) -> bool {
        matches!(error, ApplyError::Batch { source, .. } if is_held_collision(self.target.replace, source))
    }

    async fn flush(&mut self, batch: &mut Pending) -> Result<(), ApplyError> {
        let t = &self.target;
        let rows = batch.len();
        let mut sql = std::mem::take(&mut self.sql);
        sql.clear();
        let upserts = write_batch(&mut sql, t, &batch.ops, None);
        // Deadlocks with the copy and lock timeouts are retried; the batch is idempotent.
        let mut attempt = 0u32;
        let mut first_loss: Option<std::time::Instant> = None;
        loop {
            let result = run_batch(&mut self.conn, &sql).await;
            match result {
                Ok(()) => break,
                Err(source) => {
                    attempt += 1;
                    if attempt < 30 && is_retryable_in_place(&source) {
                        debug!(attempt, error = %source, "batch retried");
                        tokio::time::sleep(std::time::Duration::from_millis(
                            5 * u64::from(attempt),
                        ))
                        .await;
                        continue;
                    }
                    // A lost connection (server restart, KILL): reconnect and run the batch
                    // again, for up to the reconnect timeout (lock waits: 60 attempts).
                    let again = if is_retryable_in_place(&source) {
                        attempt < 60
                    } else {
                        is_transient(&source)
                            && first_loss
                                .get_or_insert_with(std::time::Instant::now)
                                .elapsed()
                                < self.target.reconnect_timeout
                    };
                    if again {
                        tracing::warn!(attempt, error = %source, "applier connection lost; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(
                            250 * u64::from(attempt.min(8)),
                        ))
                        .await;
                        if let Ok(conn) = self.target.endpoint.connect().await {
                            self.conn = conn;
                        }
                        continue;
                    }
                    self.sql = sql;
                    return Err(ApplyError::Batch {
                        applier: self.id,
                        table: t.table.clone(),
                        rows,
                        source,
                    });
                }
            }
        }
        self.sql = sql;
        debug!(rows, upserts, "batch applied");
        self.stats
            .rows_written
            .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        batch.clear();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn interrupted_and_lost_statements_are_retried() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })
        };
        for code in [1205, 1213, 1053, 1317, 1927, 2013] {
            assert!(is_transient(&server(code)), "{code}");
        }
        // A duplicate key or a bad value is not.
        for code in [1062, 1264, 1406] {
            assert!(!is_transient(&server(code)), "{code}");
        }
    }

    fn target(replace: bool) -> ApplyTarget {
        ApplyTarget {
            endpoint: Endpoint::new("mysql://root@127.0.0.1:3306").unwrap(),
            table: "`d`.`t`".into(),
            columns: vec!["`id`".into(), "`v`".into()],
            kinds: vec![LiteralKind::Plain; 2],
            key_positions: vec![0],
            max_batch: 10,
            linger: std::time::Duration::ZERO,
            replace,
            reconnect_timeout: std::time::Duration::from_secs(1),
            collision_wait: COLLISION_WAIT,
        }
    }

    /// The key `v` of a one-column primary key `k` of `data_type` (`column_type`), under
    /// `collation` for text.
    fn key_of(data_type: &str, column_type: &str, collation: Option<&str>, v: Value) -> RowKey {
        use rowshift_transform::schema::{ColumnInfoRow, Flavor, StatisticsRow, TableSchema};
        let col = ColumnInfoRow {
            column_name: "k".into(),
            ordinal_position: 1,
            data_type: data_type.into(),
            column_type: column_type.into(),
            is_nullable: "NO".into(),
            column_default: None,
            extra: String::new(),
            character_set_name: collation.map(|_| "utf8mb4".into()),
            collation_name: collation.map(Into::into),
            character_maximum_length: collation.map(|_| 10),
            numeric_precision: None,
            numeric_scale: None,
            datetime_precision: None,
            column_key: "PRI".into(),
        };
        let pk = StatisticsRow {
            index_name: "PRIMARY".into(),
            seq_in_index: 1,
            column_name: Some("k".into()),
            non_unique: false,
            sub_part: None,
        };
        let t =
            TableSchema::from_information_schema("d", "t", Flavor::MySql, &[col], &[pk]).unwrap();
        let codec = rowshift_transform::key::KeyCodec::for_primary_key(&t).unwrap();
        codec.key_of_values(&[v]).unwrap()
    }

    /// The key `i` of a one-column BIGINT primary key (also used by other modules' tests).
    pub(crate) fn key(i: i64) -> RowKey {
        key_of("bigint", "bigint", None, Value::Int(i))
    }

    fn text_key(v: &str) -> RowKey {
        let bytes = Value::Bytes(v.as_bytes().to_vec());
        key_of("varchar", "varchar(10)", Some("utf8mb4_0900_ai_ci"), bytes)
    }

    /// 'ı' (dotless i) folds to the bytes of 'i' but the server keeps them apart: whichever
    /// comes second, the first one's change is flushed, never replaced.
    #[test]
    fn an_inexact_key_is_never_collapsed_either_way() {
        let (dotless, plain) = (text_key("ı"), text_key("i"));
        assert!(!dotless.is_exact() && plain.is_exact());
        let mut p = Pending::default();
        p.put(dotless.clone(), Op::Delete(vec![]));
        assert!(p.must_flush_before(&plain), "exact after inexact");
        let mut p = Pending::default();
        p.put(plain.clone(), Op::Delete(vec![]));
        assert!(p.must_flush_before(&dotless), "inexact after exact");
        assert!(!p.must_flush_before(&text_key("j")));
        // Two exact keys the server sees equal ('i', 'I' under a case-insensitive collation)
        // do collapse.
        assert!(!p.must_flush_before(&text_key("I")));
    }

    #[test]
    fn pending_keeps_first_order_and_last_op() {
        let mut p = Pending::default();
        p.put(key(1), Op::Upsert(vec![Value::Int(1), Value::Int(10)]));
        p.put(key(2), Op::Upsert(vec![Value::Int(2), Value::Int(20)]));
        p.put(key(1), Op::Delete(vec![Value::Int(1)]));
        assert_eq!(p.len(), 2);
        assert!(p.contains(&key(1)));
        assert_eq!(
            p.ops,
            vec![
                Op::Delete(vec![Value::Int(1)]),
                Op::Upsert(vec![Value::Int(2), Value::Int(20)])
            ]
        );
        p.clear();
        assert!(p.is_empty() && !p.contains(&key(1)));
    }

    #[test]
    fn batch_text_shapes() {
        let up = Op::Upsert(vec![Value::Int(2), Value::Int(20)]);
        let del = Op::Delete(vec![Value::Int(1)]);
        let mut sql = String::new();
        // Upserts only, REPLACE allowed: one statement, in a transaction the caller commits.
        assert_eq!(
            write_batch(&mut sql, &target(true), std::slice::from_ref(&up), None),
            1
        );
        assert_eq!(sql, "BEGIN;REPLACE INTO `d`.`t` (`id`,`v`) VALUES (2,20)");
        // A delete: one transaction, one round trip.
        sql.clear();
        write_batch(&mut sql, &target(true), &[del.clone(), up.clone()], None);
        assert_eq!(
            sql,
            "BEGIN;DELETE FROM `d`.`t` WHERE `id` IN (1);REPLACE INTO `d`.`t` (`id`,`v`) VALUES (2,20)"
        );
        // No REPLACE: every key deleted first, then INSERT; the extra statement commits with it.
        sql.clear();
        write_batch(
            &mut sql,
            &target(false),
            &[del, up],
            Some("UPDATE ck SET n = 1"),
        );
        assert_eq!(
            sql,
            "BEGIN;DELETE FROM `d`.`t` WHERE `id` IN (1,2);INSERT INTO `d`.`t` (`id`,`v`) VALUES (2,20);UPDATE ck SET n = 1"
        );
        // Only the extra statement (a sync checkpoint without rows).
        sql.clear();
        assert_eq!(
            write_batch(&mut sql, &target(true), &[], Some("UPDATE ck SET n = 2")),
            0
        );
        assert_eq!(sql, "BEGIN;UPDATE ck SET n = 2");
    }
}
