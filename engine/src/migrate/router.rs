//! The router: reads the source's events in binlog order, keeps the changes of the migrated
//! table, transforms them to the new shape, skips keys the copy has not reached yet, and sends
//! each change to the applier owning its key. It also watches the sentry table for drain
//! markers, which prove that everything logged before a marker has been applied.

use crate::apply::{AppliedWatcher, ApplierSet, ApplyError, Op};
use crate::copy::HighWater;
use crate::event::{EventPos, RowKind, SourceEvent};
use crate::position::Position;
use futures_util::FutureExt;
use rowshift_transform::key::{KeyCodec, RowKey};
use rowshift_transform::mapping::Mapping;
use rowshift_transform::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Errors that stop the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The source failed.
    #[error("binlog source: {0}")]
    Source(String),
    /// A change could not be transformed.
    #[error("transforming a change of {table} at {pos}: {detail}")]
    Transform {
        /// The table.
        table: String,
        /// Where in the binlog.
        pos: String,
        /// What failed.
        detail: String,
    },
    /// An applier failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A DDL changed the table during the migration.
    #[error("the table {table} was altered during the migration ({query}); rowshift stops because the shadow no longer matches: run again")]
    TableChanged {
        /// The table.
        table: String,
        /// The statement.
        query: String,
    },
}

/// Requests to the router.
#[derive(Debug)]
pub enum RouterCmd {
    /// Reply once the sentry row with this token was read and everything before it applied.
    WaitMarker(u32, oneshot::Sender<()>),
}

/// Live counters of the router, for progress.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Row changes of the migrated table read.
    pub events: AtomicU64,
    /// Changes skipped because the copy will read them.
    pub skipped: AtomicU64,
    /// Timestamp (epoch seconds) of the last event read.
    pub last_event_ts: AtomicU64,
    /// Row changes read, by kind: insert, update, delete (for metrics).
    pub by_kind: [AtomicU64; 3],
    /// True while an XA branch that changed the table is prepared and not yet ended (its
    /// rows are in the shadow, not yet committed in the table).
    pub xa_open: AtomicBool,
}

/// What the router needs to know.
pub struct Router {
    /// Database of the migrated table.
    pub db: String,
    /// The migrated table.
    pub table: String,
    /// The sentry table (drain markers).
    pub sentry: String,
    /// Old → new transform.
    pub mapping: Arc<Mapping>,
    /// Positions of the new primary key columns within the mapping's output row.
    pub key_positions: Vec<usize>,
    /// Makes collation-aware keys of the new primary key values (routing and collapsing).
    pub key_codec: KeyCodec,
    /// Positions, in the old row, of the columns whose change moves a row to another key
    /// ([`rowshift_transform::mapping::Mapping::key_source_columns`]).
    pub key_sources: Vec<usize>,
    /// Index of the old table's single integer key column, when the copy reports a high-water
    /// mark for it.
    pub int_key: Option<usize>,
    /// The copy's progress.
    pub high_water: watch::Receiver<HighWater>,
    /// Counters.
    pub stats: Arc<RouterStats>,
    /// While the copy or the index build runs, read the binlog in bursts this far apart
    /// (zero: follow it continuously). See [`Pace`].
    pub rest: Duration,
    /// The migration's phase (`copy`, `indexes`, `catch-up`, ...).
    pub phase: watch::Receiver<&'static str>,
}

/// The applied position as published: barriers acknowledged together (one batch can answer
/// several lazy barriers) wake their publishers in any order, and only the newest barrier's
/// position may stand.
#[derive(Clone)]
struct Published {
    tx: watch::Sender<Option<Position>>,
    /// The newest barrier whose position was published.
    seq: Arc<AtomicU64>,
}

impl Published {
    fn set(&self, seq: u64, pos: Option<Position>) {
        self.tx.send_if_modified(|current| {
            // Under the channel's lock: compared and set by one publisher at a time.
            if self.seq.fetch_max(seq, Ordering::SeqCst) < seq {
                *current = pos;
                true
            } else {
                false
            }
        });
    }
}

/// How far the stream may fall behind the source while the router rests between bursts.
const MAX_BEHIND: Duration = Duration::from_secs(1);

/// Resting between bursts while the copy (or the index build after it) runs: nothing needs the
/// stream promptly then (a change read late is applied or skipped against the high-water mark of
/// the moment, which is correct either way, see [`crate::copy`]). Followed continuously, a busy
/// source wakes its dump thread and rowshift once per commit; read in bursts, the server sends full
/// buffers and both wake a few times a second (measured: rowshift 0.16 -> 0.03 cores during the
/// copy; the paced bench's application share 58 % -> 67 % median). The stream is kept within about
/// [`MAX_BEHIND`] of the source, measured on the source's own clock (commit timestamps) against the
/// time passed here, so clock skew between the hosts does not matter.
struct Pace {
    /// The first moment the stream had nothing more to read (it was at the source's end), and
    /// the newest commit timestamp then (seconds).
    reference: Option<(Instant, u32)>,
    /// The newest commit timestamp read.
    last_ts: u32,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            reference: None,
            last_ts: 0,
        }
    }

    fn commit(&mut self, ts: u32) {
        self.last_ts = self.last_ts.max(ts);
    }

    /// The stream has nothing buffered: it is at the source's end (a resumed run reading an
    /// old backlog is not, and must not rest before it gets there).
    fn caught_up(&mut self, now: Instant) {
        if self.reference.is_none() && self.last_ts != 0 {
            self.reference = Some((now, self.last_ts));
        }
    }

    /// How far behind the source the stream is, at most (1 s resolution of the timestamps).
    fn behind(&self, now: Instant) -> Duration {
        match self.reference {
            // Not at the end yet: as good as far behind (read on, do not rest).
            None => Duration::MAX,
            Some((at, ts)) => {
                now.saturating_duration_since(at)
                    .saturating_sub(Duration::from_secs(u64::from(
                        self.last_ts.saturating_sub(ts),
                    )))
            }
        }
    }
}

/// Register a marker's waiter, or answer it once everything read so far is applied when its
/// marker was already read.
async fn on_cmd(
    cmd: RouterCmd,
    waiting: &mut HashMap<u32, oneshot::Sender<()>>,
    seen_markers: &[u32],
    appliers: &mut ApplierSet,
    watcher: &AppliedWatcher,
) -> Result<(), RouterError> {
    let RouterCmd::WaitMarker(token, reply) = cmd;
    if seen_markers.contains(&token) {
        reply_when_applied(appliers, watcher, reply).await?;
    } else {
        waiting.insert(token, reply);
    }
    Ok(())
}

/// Answer `reply` once every change sent to the appliers so far is applied.
async fn reply_when_applied(
    appliers: &mut ApplierSet,
    watcher: &AppliedWatcher,
    reply: oneshot::Sender<()>,
) -> Result<(), RouterError> {
    let seq = appliers.barrier().await?;
    let w = watcher.clone();
    tokio::spawn(async move {
        if w.wait(seq).await.is_ok() {
            let _ = reply.send(());
        }
    });
    Ok(())
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

impl Router {
    fn covers(&self, old_row: &[Value]) -> bool {
        match self.int_key {
            None => true,
            Some(i) => match old_row.get(i).and_then(int_of) {
                Some(k) => self.high_water.borrow().covers(k),
                None => true,
            },
        }
    }

    /// The new row for an old row (taken by value: plain copies move) and its new key.
    fn transform(
        &self,
        row: Vec<Value>,
        ev_pos: &EventPos,
    ) -> Result<(RowKey, Vec<Value>), RouterError> {
        let err = |detail: String| RouterError::Transform {
            table: self.table.clone(),
            pos: ev_pos.to_string(),
            detail,
        };
        let new_row = self
            .mapping
            .apply_owned(row)
            .map_err(|e| err(e.to_string()))?;
        let key = self
            .key_codec
            .key_at(&new_row, &self.key_positions)
            .map_err(|e| err(e.to_string()))?;
        Ok((key, new_row))
    }

    fn key_values(&self, new_row: &[Value]) -> Vec<Value> {
        self.key_positions
            .iter()
            .map(|&i| new_row[i].clone())
            .collect()
    }

    /// Run until the event stream ends or an error. `applied_pos` receives the position applied
    /// everywhere (at barriers).
    pub async fn run<S, E>(
        self,
        mut events: S,
        mut appliers: ApplierSet,
        cmds: mpsc::Receiver<RouterCmd>,
        applied_pos: watch::Sender<Option<Position>>,
    ) -> Result<(), RouterError>
    where
        S: futures_util::Stream<Item = Result<SourceEvent, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let n = appliers.len();
        let mut waiting: HashMap<u32, oneshot::Sender<()>> = HashMap::new();
        // Declared after `waiting`, so dropped before it when the run ends: a marker's waiter
        // that sees its reply dropped finds the command channel closed already, and migrate
        // then reports the router's own error instead of "the router stopped".
        let mut cmds = cmds;
        let mut seen_markers: Vec<u32> = Vec::new();
        let mut since_barrier = 0u64;
        let mut last_publish = std::time::Instant::now();
        let mut last_commit: Option<Position> = None;
        // The restart point held back by XA branches still prepared (set at every commit).
        let mut held_back: Option<Position> = None;
        let watcher = appliers.watcher();
        let published = Published {
            tx: applied_pos,
            seq: Arc::new(AtomicU64::new(0)),
        };
        let mut pace = Pace::new();
        let mut cmds_open = true;
        let mut failed = appliers.failed();
        loop {
            // Commands first: a marker's waiter is registered before the marker can be read.
            while let Ok(cmd) = cmds.try_recv() {
                on_cmd(cmd, &mut waiting, &seen_markers, &mut appliers, &watcher).await?;
            }
            let ev = match events.next().now_or_never() {
                Some(ev) => ev,
                None => {
                    let now = Instant::now();
                    pace.caught_up(now);
                    // Rest between bursts only while the copy or the index build runs, nobody
                    // waits for a marker, and the stream is close to the source.
                    let resting = !self.rest.is_zero()
                        && waiting.is_empty()
                        && matches!(*self.phase.borrow(), "copy" | "indexes")
                        && pace.behind(now) < MAX_BEHIND;
                    tokio::select! {
                        biased;
                        // An applier failed while the source is quiet: stop with its error
                        // (a waiter would otherwise see only that the router stopped).
                        i = async { failed.wait_for(|f| f.is_some()).await.map(|f| f.unwrap_or_default()) } => {
                            // A closed watch (the set is gone) cannot happen while the router
                            // holds it; applier 0 then stands for "some applier".
                            return Err(appliers.failure(i.unwrap_or_default()).await.into());
                        }
                        cmd = cmds.recv(), if cmds_open => {
                            match cmd {
                                Some(cmd) => on_cmd(cmd, &mut waiting, &seen_markers, &mut appliers, &watcher).await?,
                                // No more commands: wait for events alone (not a busy loop).
                                None => cmds_open = false,
                            }
                            continue;
                        }
                        // Let the source's changes gather, then read them at once.
                        _ = tokio::time::sleep(self.rest), if resting => continue,
                        ev = events.next(), if !resting => ev,
                    }
                }
            };
            let Some(ev) = ev else { break };
            let ev = ev.map_err(|e| RouterError::Source(e.to_string()))?;
            match ev {
                SourceEvent::Rows(change) => {
                    let ours = &*change.table.schema == self.db.as_str();
                    if ours && &*change.table.name == self.sentry.as_str() {
                        if let Some(Value::Int(token)) =
                            change.after.as_ref().and_then(|r| r.first())
                        {
                            let token = *token as u32;
                            seen_markers.push(token);
                            if seen_markers.len() > 64 {
                                seen_markers.remove(0);
                            }
                            if let Some(reply) = waiting.remove(&token) {
                                reply_when_applied(&mut appliers, &watcher, reply).await?;
                            }
                        }
                        continue;
                    }
                    if !ours || &*change.table.name != self.table.as_str() {
                        continue;
                    }
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    let kind = match change.kind {
                        RowKind::Insert => 0,
                        RowKind::Update => 1,
                        RowKind::Delete => 2,
                    };
                    self.stats.by_kind[kind].fetch_add(1, Ordering::Relaxed);
                    let pos = &change.pos;
                    if let Some(before) = change.before {
                        if change.kind == RowKind::Delete
                            || change
                                .after
                                .as_ref()
                                .is_some_and(|a| self.key_changed(&before, a))
                        {
                            if self.covers(&before) {
                                let (key, new_row) = self.transform(before, pos)?;
                                let kv = self.key_values(&new_row);
                                appliers.send(key.route(n), key, Op::Delete(kv)).await?;
                            } else {
                                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if let Some(after) = change.after {
                        if self.covers(&after) {
                            let (key, new_row) = self.transform(after, pos)?;
                            appliers
                                .send(key.route(n), key, Op::Upsert(new_row))
                                .await?;
                        } else {
                            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                SourceEvent::Commit {
                    pos,
                    timestamp,
                    resume,
                    ..
                } => {
                    self.stats
                        .last_event_ts
                        .store(u64::from(timestamp), Ordering::Relaxed);
                    pace.commit(timestamp);
                    // The checkpoint's restart point: before any XA branch still prepared.
                    held_back = resume.map(|r| *r);
                    self.stats
                        .xa_open
                        .store(held_back.is_some(), Ordering::Relaxed);
                    last_commit = Some(held_back.clone().unwrap_or(pos));
                    since_barrier += 1;
                    // Publish the applied position often enough for checkpoints (about twice a
                    // second), without a barrier per commit.
                    if since_barrier >= 1000
                        || last_publish.elapsed() >= std::time::Duration::from_millis(500)
                    {
                        since_barrier = 0;
                        last_publish = std::time::Instant::now();
                        self.publish(&mut appliers, &watcher, last_commit.clone(), &published)
                            .await?;
                    }
                }
                // A quiet source: the last commits are published too, so the checkpoint does
                // not stay up to half a second behind them until the next commit.
                SourceEvent::Heartbeat { .. } if since_barrier > 0 => {
                    since_barrier = 0;
                    last_publish = std::time::Instant::now();
                    self.publish(&mut appliers, &watcher, last_commit.clone(), &published)
                        .await?;
                }
                SourceEvent::Ddl {
                    schema,
                    query,
                    pos,
                    timestamp,
                    ..
                } => {
                    self.stats
                        .last_event_ts
                        .store(u64::from(timestamp), Ordering::Relaxed);
                    if ddl_changes_table(&self.db, &self.table, &schema, &query) {
                        return Err(RouterError::TableChanged {
                            table: format!("`{}`.`{}`", self.db, self.table),
                            query,
                        });
                    }
                    last_commit = Some(held_back.clone().unwrap_or(pos));
                }
                _ => {}
            }
        }
        appliers.finish().await?;
        if let Some(pos) = last_commit {
            published.set(u64::MAX, Some(pos));
        }
        Ok(())
    }

    async fn publish(
        &self,
        appliers: &mut ApplierSet,
        watcher: &crate::apply::AppliedWatcher,
        pos: Option<Position>,
        published: &Published,
    ) -> Result<(), RouterError> {
        let seq = appliers.lazy_barrier().await?;
        let w = watcher.clone();
        let published = published.clone();
        tokio::spawn(async move {
            if w.wait(seq).await.is_ok() {
                published.set(seq, pos);
            }
        });
        Ok(())
    }

    fn key_changed(&self, before: &[Value], after: &[Value]) -> bool {
        self.key_sources
            .iter()
            .any(|&i| before.get(i) != after.get(i))
    }
}

/// Whether a statement read from the binlog (run in `schema`) changes `db`.`table`.
/// Our own cut-over renames the table to `_t_old`; the router is stopped before that matters.
/// Only that statement, as the cut-over writes it, is ours: any other (even one that names
/// `_t_old`, such as a column called `legacy_t_old_note`) changes the table.
fn ddl_changes_table(db: &str, table: &str, schema: &str, query: &str) -> bool {
    rowshift_transform::ddl::touches_table(db, table, schema, query)
        && query.trim() != crate::cutover::rename_of(db, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_rename_is_not_a_change_of_the_table() {
        let ours = crate::cutover::rename_of("shop", "orders");
        assert!(!ddl_changes_table("shop", "orders", "shop", &ours));
        for other in [
            "ALTER TABLE orders MODIFY legacy_orders_old_note VARCHAR(20) AFTER id",
            "ALTER TABLE `shop`.`orders` ADD COLUMN `_orders_old` INT",
            "RENAME TABLE orders TO _orders_old",
        ] {
            assert!(
                ddl_changes_table("shop", "orders", "shop", other),
                "{other}"
            );
        }
        assert!(!ddl_changes_table(
            "shop",
            "orders",
            "shop",
            "ALTER TABLE customers ADD x INT"
        ));
    }

    #[test]
    fn an_older_barrier_never_replaces_a_newer_position() {
        let (tx, rx) = watch::channel(None);
        let published = Published {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
        };
        published.set(2, Some(Position::at("b.000001", 200)));
        // Acknowledged by the same batch, its publisher woke later.
        published.set(1, Some(Position::at("b.000001", 100)));
        assert_eq!(*rx.borrow(), Some(Position::at("b.000001", 200)));
        published.set(3, Some(Position::at("b.000001", 300)));
        published.set(u64::MAX, Some(Position::at("b.000001", 400)));
        published.set(4, Some(Position::at("b.000001", 350)));
        assert_eq!(*rx.borrow(), Some(Position::at("b.000001", 400)));
    }

    #[test]
    fn pace_rests_only_near_the_source() {
        let t0 = Instant::now();
        let mut pace = Pace::new();
        // Reading an old backlog (a resumed run): never caught up yet, so never resting.
        assert_eq!(pace.behind(t0), Duration::MAX);
        pace.caught_up(t0);
        assert_eq!(pace.behind(t0), Duration::MAX, "no commit read yet");
        pace.commit(1_000);
        pace.caught_up(t0);
        assert_eq!(pace.behind(t0), Duration::ZERO);
        // Three seconds later the newest commit read is two seconds newer: one second behind.
        pace.commit(1_002);
        assert_eq!(
            pace.behind(t0 + Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        // Commits read as fast as the source makes them: not behind.
        pace.commit(1_003);
        assert_eq!(pace.behind(t0 + Duration::from_secs(3)), Duration::ZERO);
        // The reference stays the first time the end was reached.
        pace.caught_up(t0 + Duration::from_secs(3));
        assert_eq!(
            pace.behind(t0 + Duration::from_secs(10)),
            Duration::from_secs(7)
        );
        // An older timestamp (another server's clock in a multi-source binlog) never counts.
        pace.commit(900);
        assert_eq!(
            pace.behind(t0 + Duration::from_secs(10)),
            Duration::from_secs(7)
        );
    }
}
