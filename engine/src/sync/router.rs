//! The sync router: one binlog stream for every synced table. It keeps the changes of those
//! tables, transforms them, and sends each to the applier owning its key (per-key order), with
//! its binlog coordinate. It also reads the signal table: watermarks of the backfill
//! ([`crate::backfill`]) and drain markers.
//!
//! Exactly-once on restart: each applier's checkpoint says before which coordinate everything
//! routed to it is applied; the router drops changes before that coordinate for that applier,
//! and drops any change at or before the last one it already sent (a reconnected binlog stream
//! sends the unfinished transaction again).

use super::applier::{Change, SyncMsg};
use super::ckpt::Coord;
use crate::apply::Op;
use crate::backfill::{decode_signal, SignalKind, SIGNAL_TABLE};
use crate::event::{Marker, RowKind, SourceEvent, XaMark};
use crate::position::Position;
use crate::source::xa::{Xid, MAX_HELD_ROWS};
use rowshift_transform::key::{KeyCodec, RowKey};
use rowshift_transform::mapping::Mapping;
use rowshift_transform::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

/// Errors that stop the router.
#[derive(Debug, thiserror::Error)]
pub enum SyncRouterError {
    /// The binlog stream failed.
    #[error("binlog source: {0}")]
    Source(String),
    /// A change could not be transformed.
    #[error("transforming a change of {table} at {at}: {detail}")]
    Transform {
        /// Source table.
        table: String,
        /// Where.
        at: String,
        /// What failed.
        detail: String,
    },
    /// An applier stopped (its own error is reported by the caller).
    #[error("an applier of {0} stopped")]
    ApplierStopped(String),
    /// An XA branch too large to track is prepared while the backfill reads its table.
    #[error("XA transaction {xid} changed more than {max} rows of the synced tables and is prepared on the source while the backfill reads {table}: a chunk read now would see the rows before it, and rowshift does not track that many. Commit or roll it back (XA COMMIT / XA ROLLBACK), then run the same sync again (it resumes)")]
    XaTooLarge {
        /// The branch.
        xid: String,
        /// The bound.
        max: usize,
        /// The table being backfilled.
        table: String,
    },
    /// A DDL changed a synced table.
    #[error("the source table {table} was altered ({query}): a sync does not follow a change of a synced table's definition, and its checkpoint stays before the statement (running the same sync again stops here again). Start over: drop the target table (or empty it and give it the new shape, for --target-schema-from-existing) and run sync with a new --name, which backfills it again")]
    TableChanged {
        /// Source table.
        table: String,
        /// The statement.
        query: String,
    },
}

/// One chunk of the backfill, handed over before its high watermark is written.
pub struct ChunkRows {
    /// Table index.
    pub table: usize,
    /// Chunk number.
    pub chunk: u64,
    /// Rows in source column order.
    pub rows: Vec<Vec<Value>>,
    /// Cursor after the chunk.
    pub cursor: Option<Vec<String>>,
    /// Last chunk of the table.
    pub last: bool,
    /// Told how many rows were emitted once the high watermark was processed.
    pub emitted: oneshot::Sender<u64>,
}

/// Requests to the router.
pub enum RouterCmd {
    /// When the drain marker with this token is read, mark every applier and reply once all
    /// acknowledged.
    Drain(u64, oneshot::Sender<Drained>),
    /// Once the reader has passed this coordinate (a commit or a heartbeat at or after it),
    /// mark every applier and reply once all acknowledged: the drain of a source that cannot
    /// be written (no marker row).
    DrainAt(Coord, oneshot::Sender<Drained>),
}

/// The answer to a drain: everything read up to its point is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// At that point an XA branch that changed a synced table was prepared and had not ended:
    /// its rows are applied on the target but not committed on the source.
    pub xa_prepared: bool,
}

/// One synced table.
pub struct TableRoute {
    /// Source database.
    pub db: String,
    /// Source table.
    pub table: String,
    /// Old → new transform.
    pub mapping: Arc<Mapping>,
    /// Positions of the new primary key in the mapping's output.
    pub key_positions: Vec<usize>,
    /// Key codec of the new primary key.
    pub codec: KeyCodec,
    /// Positions, in source rows, of the columns whose change moves a row to another key
    /// ([`rowshift_transform::mapping::Mapping::key_source_columns`]).
    pub key_sources: Vec<usize>,
    /// The appliers.
    pub senders: Vec<mpsc::Sender<SyncMsg>>,
    /// Each applier's acknowledgements.
    pub acks: Vec<watch::Receiver<(u64, Coord)>>,
    /// Per applier: changes before this coordinate are already applied.
    pub skip_before: Vec<Coord>,
}

/// Live counters of the router.
#[derive(Debug, Default)]
pub struct SyncRouterStats {
    /// Row changes of synced tables read.
    pub events: AtomicU64,
    /// Changes sent to appliers.
    pub sent: AtomicU64,
    /// Changes dropped because an applier had them already.
    pub skipped: AtomicU64,
    /// Backfill rows emitted.
    pub backfilled: AtomicU64,
    /// Timestamp of the last commit read (epoch seconds).
    pub last_commit_ts: AtomicU64,
    /// When the last change of a synced table was read (ms since the router started).
    pub last_table_event_ms: AtomicU64,
    /// Milliseconds since the router started, at the last heartbeat (the reader is at the end
    /// of the binlog).
    pub last_heartbeat_ms: AtomicU64,
    /// Row changes of synced tables read, by kind: insert, update, delete (for metrics).
    pub by_kind: [AtomicU64; 3],
}

/// The router.
pub struct SyncRouter {
    /// Synced tables.
    pub tables: Vec<TableRoute>,
    /// Database of the signal table.
    pub signal_db: String,
    /// This run's id (signal rows of other runs are ignored).
    pub run: u64,
    /// Counters.
    pub stats: Arc<SyncRouterStats>,
    /// Last commit read.
    pub read_pos: watch::Sender<Option<Position>>,
}

struct Window {
    chunk: u64,
    touched: HashSet<RowKey>,
}

/// The keys of the XA branches prepared on the source. Their rows are applied (at
/// `XA PREPARE`) but not committed on the source: a backfill chunk read meanwhile sees the
/// rows as they were before the branch, and writing that over the branch's would keep the old
/// image for good (the `XA COMMIT` brings no rows). A watermark window therefore starts with
/// the keys of every branch prepared at its low watermark. An ended branch's keys are kept
/// too (oldest dropped first past the bound): an `XA COMMIT` from another session than the
/// one that prepared the branch is written to the binlog before the engine commits it, outside
/// the binlog-ordered commit (MariaDB), so a chunk read after a later low watermark may still
/// see the rows before the branch. Holding a key back from a chunk is always safe: the stream
/// applied a full image of it.
#[derive(Default)]
struct XaKeys {
    /// The branch being read (between `XA START` and its prepare or commit).
    current: Option<HeldKeys>,
    /// Prepared branches.
    prepared: HashMap<Xid, HeldKeys>,
    /// Branches ended, oldest first (their keys only).
    ended: std::collections::VecDeque<HeldKeys>,
    /// Keys kept over all prepared and ended branches.
    kept: usize,
}

#[derive(Default)]
struct HeldKeys {
    /// Tables the branch changed.
    tables: HashSet<usize>,
    /// (table, key) of each change; `None` past [`MAX_HELD_ROWS`] over all branches.
    keys: Option<Vec<(usize, RowKey)>>,
}

impl XaKeys {
    fn mark(&mut self, mark: XaMark) {
        match mark {
            // A branch read again after a reconnect keeps what was recorded of it.
            XaMark::Start => {
                self.current.get_or_insert_with(|| HeldKeys {
                    tables: HashSet::new(),
                    keys: Some(Vec::new()),
                });
            }
            XaMark::Prepared(xid) => {
                let Some(held) = self.current.take() else {
                    return;
                };
                if held.tables.is_empty() {
                    return;
                }
                self.kept += held.keys.as_ref().map_or(0, Vec::len);
                if let Some(old) = self.prepared.insert(*xid, held) {
                    self.kept -= old.keys.as_ref().map_or(0, Vec::len);
                }
            }
            XaMark::Ended(xid) => {
                if let Some(ended) = self.prepared.remove(&xid) {
                    // Known keys only: a branch too large to have kept them ends as nothing.
                    if ended.keys.is_some() {
                        self.ended.push_back(ended);
                    }
                }
                self.make_room(0);
            }
        }
    }

    /// Drop the oldest ended branches until `more` keys fit in the bound.
    fn make_room(&mut self, more: usize) {
        while self.kept + more > MAX_HELD_ROWS {
            let Some(old) = self.ended.pop_front() else {
                return;
            };
            self.kept -= old.keys.as_ref().map_or(0, Vec::len);
        }
    }

    /// A change of `table` with `key` was read.
    fn record(&mut self, table: usize, key: &RowKey) {
        let Some(held) = self.current.as_mut() else {
            return;
        };
        held.tables.insert(table);
        let reading = held.keys.as_ref().map_or(0, Vec::len);
        if self.kept + reading >= MAX_HELD_ROWS {
            // Ended branches give way to the one being read.
            let held = self.current.take();
            self.make_room(reading + 1);
            self.current = held;
        }
        let Some(held) = self.current.as_mut() else {
            return;
        };
        let room = self.kept + held.keys.as_ref().map_or(0, Vec::len) < MAX_HELD_ROWS;
        match &mut held.keys {
            Some(keys) if room => keys.push((table, key.clone())),
            _ => held.keys = None,
        }
    }

    /// A transaction ended: a branch not prepared holds nothing.
    fn committed(&mut self) {
        self.current = None;
    }

    /// The keys of `table` held by prepared branches; `Err(xid)` for a branch too large to
    /// have kept them.
    fn held(&self, table: usize) -> Result<HashSet<RowKey>, String> {
        let mut out = HashSet::new();
        for held in &self.ended {
            if let Some(keys) = &held.keys {
                out.extend(
                    keys.iter()
                        .filter(|(t, _)| *t == table)
                        .map(|(_, k)| k.clone()),
                );
            }
        }
        for (xid, held) in &self.prepared {
            if !held.tables.contains(&table) {
                continue;
            }
            let Some(keys) = &held.keys else {
                return Err(xid.to_string());
            };
            out.extend(
                keys.iter()
                    .filter(|(t, _)| *t == table)
                    .map(|(_, k)| k.clone()),
            );
        }
        Ok(out)
    }
}

impl SyncRouter {
    /// Run until the stream ends or fails.
    pub async fn run<S, E>(
        self,
        mut events: S,
        start: Position,
        mut chunks: mpsc::Receiver<ChunkRows>,
        mut cmds: mpsc::Receiver<RouterCmd>,
    ) -> Result<(), SyncRouterError>
    where
        S: futures_util::Stream<Item = Result<SourceEvent, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::{FutureExt, StreamExt};
        let born = Instant::now();
        // Open watermark windows per table (the backfill keeps a few chunks in flight).
        let mut windows: Vec<Vec<Window>> = self.tables.iter().map(|_| Vec::new()).collect();
        let mut pending_chunks: HashMap<(usize, u64), ChunkRows> = HashMap::new();
        let mut drains: HashMap<u64, oneshot::Sender<Drained>> = HashMap::new();
        let mut marks = Marks {
            seq: 0,
            last: Instant::now(),
            drains_at: Vec::new(),
        };
        let mut txn_start = Arc::new(start);
        // Where a restart must begin while an XA branch is prepared (else `txn_start`).
        let mut held_back: Option<Arc<Position>> = None;
        let mut last_sent: Option<Coord> = None;
        let mut outbox = Outbox::new(&self.tables);
        let mut cmds_open = true;
        let mut xa = XaKeys::default();
        loop {
            // Commands first: a drain is registered before its marker can be read.
            while let Ok(cmd) = cmds.try_recv() {
                register(cmd, &mut drains, &mut marks.drains_at);
            }
            let ready = if outbox.is_empty() {
                None
            } else {
                events.next().now_or_never()
            };
            let ev = match ready {
                Some(ev) => ev,
                None => {
                    // Nothing to read right now: the held changes go out before waiting.
                    outbox.flush(&self.tables).await?;
                    tokio::select! {
                        biased;
                        cmd = cmds.recv(), if cmds_open => {
                            match cmd {
                                Some(cmd) => register(cmd, &mut drains, &mut marks.drains_at),
                                None => cmds_open = false,
                            }
                            continue;
                        }
                        ev = events.next() => ev,
                    }
                }
            };
            let Some(ev) = ev else { break };
            let ev = ev.map_err(|e| SyncRouterError::Source(e.to_string()))?;
            match ev {
                SourceEvent::Rows(change) => {
                    let at = Coord {
                        file: change.pos.file.clone(),
                        offset: change.pos.offset,
                        row: change.pos.row,
                    };
                    if last_sent.as_ref().is_some_and(|l| at <= *l) {
                        continue;
                    }
                    last_sent = Some(at.clone());
                    if &*change.table.name == SIGNAL_TABLE
                        && &*change.table.schema == self.signal_db.as_str()
                    {
                        let Some((run, tbl, kind, chunk)) = change
                            .after
                            .as_deref()
                            .filter(|_| change.kind == RowKind::Insert)
                            .and_then(decode_signal)
                        else {
                            continue;
                        };
                        if run != self.run {
                            continue;
                        }
                        match kind {
                            SignalKind::Low if tbl < windows.len() => {
                                let touched =
                                    xa.held(tbl).map_err(|xid| SyncRouterError::XaTooLarge {
                                        xid,
                                        max: MAX_HELD_ROWS,
                                        table: format!(
                                            "`{}`.`{}`",
                                            self.tables[tbl].db, self.tables[tbl].table
                                        ),
                                    })?;
                                windows[tbl].push(Window { chunk, touched });
                            }
                            SignalKind::High if tbl < windows.len() => {
                                let rows = loop {
                                    if let Some(r) = pending_chunks.remove(&(tbl, chunk)) {
                                        break Some(r);
                                    }
                                    match chunks.recv().await {
                                        Some(r) => {
                                            pending_chunks.insert((r.table, r.chunk), r);
                                        }
                                        None => break None,
                                    }
                                };
                                let window = windows[tbl]
                                    .iter()
                                    .position(|w| w.chunk == chunk)
                                    .map(|i| windows[tbl].remove(i));
                                // A chunk whose high watermark never came (the backfill
                                // retried it under another number) is closed too.
                                windows[tbl].retain(|w| w.chunk > chunk);
                                if let Some(rows) = rows {
                                    let touched = window.map(|w| w.touched).unwrap_or_default();
                                    self.emit_chunk(
                                        &mut outbox,
                                        tbl,
                                        rows,
                                        touched,
                                        &at,
                                        held_back.as_ref().unwrap_or(&txn_start),
                                    )
                                    .await?;
                                }
                            }
                            SignalKind::Drain => {
                                let token = chunk;
                                if let Some(reply) = drains.remove(&token) {
                                    marks.seq += 1;
                                    let pos = held_back.as_ref().unwrap_or(&txn_start);
                                    self.mark_all(&mut outbox, &at, pos, marks.seq).await?;
                                    self.reply_when_applied(marks.seq, reply, held_back.is_some());
                                }
                            }
                            _ => {}
                        }
                        continue;
                    }
                    let Some(ti) = self.tables.iter().position(|t| {
                        *t.db == *change.table.schema && *t.table == *change.table.name
                    }) else {
                        continue;
                    };
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    let kind = match change.kind {
                        RowKind::Insert => 0,
                        RowKind::Update => 1,
                        RowKind::Delete => 2,
                    };
                    self.stats.by_kind[kind].fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .last_table_event_ms
                        .store(born.elapsed().as_millis() as u64, Ordering::Relaxed);
                    let mut ops: Vec<(RowKey, Op)> = Vec::with_capacity(2);
                    let t = &self.tables[ti];
                    if let Some(before) = change.before {
                        let key_changed = change.after.as_ref().is_some_and(|a| {
                            t.key_sources.iter().any(|&i| before.get(i) != a.get(i))
                        });
                        if change.kind == RowKind::Delete || key_changed {
                            let (key, row) = transform(t, before, &at)?;
                            let kv = t.key_positions.iter().map(|&i| row[i].clone()).collect();
                            ops.push((key, Op::Delete(kv)));
                        }
                    }
                    if let Some(after) = change.after {
                        let (key, row) = transform(t, after, &at)?;
                        ops.push((key, Op::Upsert(row)));
                    }
                    for w in windows[ti].iter_mut() {
                        for (k, _) in &ops {
                            w.touched.insert(k.clone());
                        }
                    }
                    for (k, _) in &ops {
                        xa.record(ti, k);
                    }
                    // An update that changes the key makes two changes at one coordinate:
                    // only the second ends the row (see `Change::ends_row`).
                    let last = ops.len().saturating_sub(1);
                    for (n, (key, op)) in ops.into_iter().enumerate() {
                        let resume = held_back.as_ref().unwrap_or(&txn_start).clone();
                        let change = Change {
                            key,
                            op,
                            at: at.clone(),
                            resume,
                            ends_row: n == last,
                        };
                        self.send(&mut outbox, ti, change).await?;
                    }
                }
                SourceEvent::Commit {
                    pos,
                    timestamp,
                    resume,
                    ..
                } => {
                    self.stats
                        .last_commit_ts
                        .store(u64::from(timestamp), Ordering::Relaxed);
                    txn_start = Arc::new(pos);
                    held_back = resume.map(|r| Arc::new(*r));
                    xa.committed();
                    let _ = self.read_pos.send(Some((*txn_start).clone()));
                    let here = Coord::of_position(&txn_start);
                    let held = held_back.as_ref();
                    self.reached(&mut outbox, &mut marks, &here, held, &txn_start)
                        .await?;
                }
                SourceEvent::Ddl {
                    schema, query, pos, ..
                } => {
                    for t in &self.tables {
                        if rowshift_transform::ddl::touches_table(&t.db, &t.table, &schema, &query)
                        {
                            return Err(SyncRouterError::TableChanged {
                                table: format!("`{}`.`{}`", t.db, t.table),
                                query,
                            });
                        }
                    }
                    txn_start = Arc::new(pos);
                    // A DDL ends no XA branch: `held_back` stays as it is.
                    let _ = self.read_pos.send(Some((*txn_start).clone()));
                }
                SourceEvent::Heartbeat { pos } => {
                    let here = Coord {
                        file: pos.file.clone(),
                        offset: pos.offset,
                        row: 0,
                    };
                    let here = here.max(Coord::of_position(&txn_start));
                    self.stats
                        .last_heartbeat_ms
                        .store(born.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
                    let held = held_back.as_ref();
                    self.reached(&mut outbox, &mut marks, &here, held, &txn_start)
                        .await?;
                }
                SourceEvent::Marker {
                    marker: Marker::Xa(mark),
                    ..
                } => xa.mark(mark),
                _ => {}
            }
        }
        outbox.flush(&self.tables).await
    }

    /// The reader has reached `here` (the last commit was `txn_start`; `held_back`, the
    /// restart point while an XA branch is prepared). The drains waiting for a coordinate at or
    /// before it mark every applier at that commit and are answered once all acknowledged; and
    /// at least every 500 ms every applier is marked there, so checkpoints move on while the
    /// synced tables are quiet.
    async fn reached(
        &self,
        outbox: &mut Outbox,
        marks: &mut Marks,
        here: &Coord,
        held_back: Option<&Arc<Position>>,
        txn_start: &Arc<Position>,
    ) -> Result<(), SyncRouterError> {
        let due = marks.drains_at.iter().any(|(at, _)| at <= here);
        if !due && marks.last.elapsed() < Duration::from_millis(500) {
            return Ok(());
        }
        marks.last = Instant::now();
        marks.seq += 1;
        let mark = Coord::of_position(txn_start);
        self.mark_all(outbox, &mark, held_back.unwrap_or(txn_start), marks.seq)
            .await?;
        if due {
            let (ready, rest): (Vec<_>, Vec<_>) =
                marks.drains_at.drain(..).partition(|(at, _)| at <= here);
            marks.drains_at = rest;
            for (_, reply) in ready {
                self.reply_when_applied(marks.seq, reply, held_back.is_some());
            }
        }
        Ok(())
    }

    /// Reply once every applier acknowledged mark `seq`.
    fn reply_when_applied(&self, seq: u64, reply: oneshot::Sender<Drained>, xa_prepared: bool) {
        let acks: Vec<_> = self.tables.iter().flat_map(|t| t.acks.clone()).collect();
        tokio::spawn(async move {
            for mut a in acks {
                if a.wait_for(|(s, _)| *s >= seq).await.is_err() {
                    return;
                }
            }
            let _ = reply.send(Drained { xa_prepared });
        });
    }

    async fn send(
        &self,
        outbox: &mut Outbox,
        ti: usize,
        change: Change,
    ) -> Result<(), SyncRouterError> {
        let t = &self.tables[ti];
        let i = change.key.route(t.senders.len());
        if change.at < t.skip_before[i] {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        outbox.push(t, ti, i, change).await
    }

    /// Mark every applier (after the changes held for it).
    async fn mark_all(
        &self,
        outbox: &mut Outbox,
        at: &Coord,
        resume: &Arc<Position>,
        seq: u64,
    ) -> Result<(), SyncRouterError> {
        outbox.flush(&self.tables).await?;
        for t in &self.tables {
            for s in &t.senders {
                s.send(SyncMsg::Mark {
                    at: at.clone(),
                    resume: resume.clone(),
                    seq,
                })
                .await
                .map_err(|_| {
                    SyncRouterError::ApplierStopped(format!("`{}`.`{}`", t.db, t.table))
                })?;
            }
        }
        Ok(())
    }

    async fn emit_chunk(
        &self,
        outbox: &mut Outbox,
        ti: usize,
        mut chunk: ChunkRows,
        touched: HashSet<RowKey>,
        at: &Coord,
        resume: &Arc<Position>,
    ) -> Result<(), SyncRouterError> {
        let t = &self.tables[ti];
        let mut emitted = 0u64;
        let read = chunk.rows.len() as u64;
        for row in std::mem::take(&mut chunk.rows) {
            let (key, new_row) = transform(t, row, at)?;
            if touched.contains(&key) {
                continue;
            }
            emitted += 1;
            // Counted before it is sent: applied changes minus backfilled rows never counts a
            // backfill row as a binlog change (the progress's applied events).
            self.stats.backfilled.fetch_add(1, Ordering::Relaxed);
            // A restarted backfill reads a chunk again with new watermarks, so its rows'
            // shared coordinate never makes a restart skip one.
            let change = Change {
                key,
                op: Op::Upsert(new_row),
                at: at.clone(),
                resume: resume.clone(),
                ends_row: true,
            };
            self.send(outbox, ti, change).await?;
        }
        outbox.flush(&self.tables).await?;
        for s in &t.senders {
            s.send(SyncMsg::Chunk {
                chunk: chunk.chunk,
                cursor: chunk.cursor.clone(),
                done: chunk.last,
            })
            .await
            .map_err(|_| SyncRouterError::ApplierStopped(format!("`{}`.`{}`", t.db, t.table)))?;
        }
        debug!(table = %t.table, chunk = chunk.chunk, emitted, dropped = read - emitted, "chunk emitted");
        let _ = chunk.emitted.send(emitted);
        Ok(())
    }
}

/// The router's marks: the last sequence number, when the last one was sent, and the drains
/// waiting for the reader to reach a coordinate.
struct Marks {
    seq: u64,
    last: Instant,
    drains_at: Vec<(Coord, oneshot::Sender<Drained>)>,
}

/// Register a command for the stream position it waits for.
fn register(
    cmd: RouterCmd,
    drains: &mut HashMap<u64, oneshot::Sender<Drained>>,
    drains_at: &mut Vec<(Coord, oneshot::Sender<Drained>)>,
) {
    match cmd {
        RouterCmd::Drain(token, reply) => {
            drains.insert(token, reply);
        }
        RouterCmd::DrainAt(at, reply) => drains_at.push((at, reply)),
    }
}

/// Changes sent to an applier at once, at most.
pub const SEND_BATCH: usize = 256;

/// Changes held for each applier (per table), sent in vectors of up to [`SEND_BATCH`]: one
/// channel message, and one wake-up of the applier, per many changes. Whatever must follow
/// them (a mark, a backfill chunk's end) flushes them first, and so does the router before it
/// waits for the stream, so nothing is held while the source is quiet.
struct Outbox {
    held: Vec<Vec<Vec<Change>>>,
    count: usize,
}

impl Outbox {
    fn new(tables: &[TableRoute]) -> Outbox {
        Outbox {
            held: tables
                .iter()
                .map(|t| t.senders.iter().map(|_| Vec::new()).collect())
                .collect(),
            count: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Hold `change` for applier `i` of table `ti`; a full vector is sent at once.
    async fn push(
        &mut self,
        t: &TableRoute,
        ti: usize,
        i: usize,
        change: Change,
    ) -> Result<(), SyncRouterError> {
        let held = &mut self.held[ti][i];
        held.push(change);
        self.count += 1;
        if held.len() >= SEND_BATCH {
            let batch = std::mem::replace(held, Vec::with_capacity(SEND_BATCH));
            self.count -= batch.len();
            send_changes(t, i, batch).await?;
        }
        Ok(())
    }

    /// Send everything held, in order.
    async fn flush(&mut self, tables: &[TableRoute]) -> Result<(), SyncRouterError> {
        if self.count == 0 {
            return Ok(());
        }
        for (t, held) in tables.iter().zip(&mut self.held) {
            for (i, h) in held.iter_mut().enumerate() {
                if !h.is_empty() {
                    let batch = std::mem::take(h);
                    self.count -= batch.len();
                    send_changes(t, i, batch).await?;
                }
            }
        }
        Ok(())
    }
}

async fn send_changes(t: &TableRoute, i: usize, batch: Vec<Change>) -> Result<(), SyncRouterError> {
    t.senders[i]
        .send(SyncMsg::Changes(batch))
        .await
        .map_err(|_| SyncRouterError::ApplierStopped(format!("`{}`.`{}`", t.db, t.table)))
}

fn transform(
    t: &TableRoute,
    row: Vec<Value>,
    at: &Coord,
) -> Result<(RowKey, Vec<Value>), SyncRouterError> {
    let err = |detail: String| SyncRouterError::Transform {
        table: format!("`{}`.`{}`", t.db, t.table),
        at: at.to_string(),
        detail,
    };
    let new_row = t.mapping.apply_owned(row).map_err(|e| err(e.to_string()))?;
    let key = t
        .codec
        .key_at(&new_row, &t.key_positions)
        .map_err(|e| err(e.to_string()))?;
    Ok((key, new_row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::key;

    fn xid(g: &str) -> Box<Xid> {
        Box::new(Xid {
            format_id: 1,
            gtrid: g.as_bytes().to_vec(),
            bqual: Vec::new(),
        })
    }

    fn held(xa: &XaKeys, table: usize) -> Vec<RowKey> {
        let mut v: Vec<RowKey> = xa.held(table).unwrap().into_iter().collect();
        v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        v
    }

    #[test]
    fn prepared_branches_hold_their_keys_until_they_end() {
        let mut xa = XaKeys::default();
        // A plain transaction holds nothing.
        xa.record(0, &key(9));
        xa.committed();
        xa.mark(XaMark::Start);
        xa.record(0, &key(1));
        xa.record(1, &key(2));
        // Read again after a reconnect: the start does not forget the rows recorded.
        xa.mark(XaMark::Start);
        xa.record(0, &key(3));
        xa.mark(XaMark::Prepared(xid("a")));
        xa.committed();
        assert_eq!(held(&xa, 0), vec![key(1), key(3)]);
        assert_eq!(held(&xa, 1), vec![key(2)]);
        // A branch committed in one phase (no prepare) holds nothing.
        xa.mark(XaMark::Start);
        xa.record(0, &key(4));
        xa.committed();
        assert_eq!(held(&xa, 0), vec![key(1), key(3)]);
        // Ended: still held (its commit may not be visible yet), until the bound needs room.
        xa.mark(XaMark::Ended(xid("a")));
        assert_eq!(held(&xa, 0), vec![key(1), key(3)]);
        assert_eq!(xa.kept, 3);
        xa.make_room(MAX_HELD_ROWS - 2);
        assert!(held(&xa, 0).is_empty() && held(&xa, 1).is_empty());
        assert_eq!(xa.kept, 0);
    }

    #[test]
    fn a_branch_past_the_bound_is_an_error_only_for_its_tables() {
        let mut xa = XaKeys::default();
        xa.mark(XaMark::Start);
        for i in 0..=MAX_HELD_ROWS as i64 {
            xa.record(0, &key(i % 10));
        }
        xa.mark(XaMark::Prepared(xid("big")));
        xa.committed();
        assert!(xa.held(0).is_err());
        assert!(xa.held(1).unwrap().is_empty());
        xa.mark(XaMark::Ended(xid("big")));
        assert!(xa.held(0).unwrap().is_empty());
        assert_eq!(xa.kept, 0);
        // A small ended branch gives way to a large one being read.
        xa.mark(XaMark::Start);
        xa.record(0, &key(1));
        xa.mark(XaMark::Prepared(xid("small")));
        xa.committed();
        xa.mark(XaMark::Ended(xid("small")));
        xa.mark(XaMark::Start);
        for i in 0..MAX_HELD_ROWS as i64 {
            xa.record(1, &key(i));
        }
        xa.mark(XaMark::Prepared(xid("large")));
        xa.committed();
        assert!(xa.held(0).unwrap().is_empty(), "the small one gave way");
        assert_eq!(xa.held(1).unwrap().len(), MAX_HELD_ROWS);
    }
}
