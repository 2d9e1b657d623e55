//! The chunked copy: `INSERT IGNORE INTO shadow (cols) SELECT exprs FROM t FORCE INDEX (PRIMARY)
//! WHERE <key range> LOCK IN SHARE MODE`, several ranges at once, each range sized so that it
//! takes about [`CopyConfig::target_chunk_time`].
//!
//! Why it is correct with the appliers running (design.md section 2): the copy never overwrites
//! (`IGNORE` skips a key the applier already wrote, and the applier always holds the newest
//! image); the share locks make the copy wait for a writer that has logged its change but not yet
//! made it visible, so a change the router skipped because its key was above the high-water mark
//! is always seen by the copy.
//!
//! `IGNORE` would also swallow lossy conversions and duplicates on a new unique key; every
//! warning other than a duplicate primary key stops the copy with the warning's text.
//!
//! Range bounds are found by the server (`ORDER BY pk LIMIT 1 OFFSET n`) and written back as
//! literals typed like the key column (strings in the column's charset and collation), so the
//! server's order is the only order used, whatever the collation.

use crate::conn::{ConnError, Endpoint};
use crate::sqlvalue::push_hex;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, info_span, warn, Instrument};

/// Errors of the copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed.
    #[error("copying {table} ({step}): {source}")]
    Sql {
        /// Source table.
        table: String,
        /// What was being done.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A row could not be copied exactly.
    #[error("copying {table} rows {range}: the server reported a lossy or conflicting row ({warning}){keys}; the original table is untouched. Fix the data or the ALTER/--set and run again")]
    Lossy {
        /// Source table.
        table: String,
        /// The key range of the chunk.
        range: String,
        /// The server's warning text.
        warning: String,
        /// `; offending keys: `id`=7, ...` when the warnings name rows, else empty.
        keys: String,
        /// Every warning was a duplicate in a unique key the old table lacked: the colliding
        /// shadow row may be an image the appliers are about to replace (see
        /// [`CopyControl::catch_up`]).
        collision: bool,
    },
    /// A chunk that collided in a new unique key could not be copied again with the appliers
    /// caught up while its rows were locked.
    #[error("copying {table} rows {range}: the chunk collided in a new unique key ({warning}) and the appliers did not catch up while its rows were locked ({attempts} attempts); the original table is untouched. Run again when the application writes less, or check the server's load")]
    CollisionUnsettled {
        /// Source table.
        table: String,
        /// The key range of the chunk.
        range: String,
        /// The first collision's warning.
        warning: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A copy worker stopped.
    #[error("a copy worker stopped unexpectedly")]
    WorkerStopped,
}

/// How a key column's values are written as literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLiteral {
    /// Integers and decimals: the server's text, unquoted (exact, no float conversion).
    Number,
    /// Dates and times: the server's text, quoted.
    Temporal,
    /// Text: bytes in charset `charset`, compared in `collation`.
    Text {
        /// Charset name, e.g. `utf8mb4`.
        charset: String,
        /// Collation name, e.g. `utf8mb4_0900_ai_ci`.
        collation: String,
    },
    /// Binary strings and anything else: hex bytes.
    Bytes,
}

/// One primary key column of the source table.
#[derive(Debug, Clone)]
pub struct KeyColumn {
    /// Quoted name.
    pub name: String,
    /// How to write its values.
    pub literal: KeyLiteral,
}

/// What to copy where.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// The server.
    pub endpoint: Endpoint,
    /// Quoted `` `db`.`t` ``.
    pub source: String,
    /// Quoted `` `db`.`_t_new` ``.
    pub target: String,
    /// Quoted target column names.
    pub insert_columns: Vec<String>,
    /// SQL expressions over the source, one per insert column.
    pub select_exprs: Vec<String>,
    /// The source's primary key, in key order.
    pub key: Vec<KeyColumn>,
    /// Target keys (`PRIMARY`, unique key names) whose duplicate-key warnings are benign: the
    /// row is skipped and the appliers bring its newest image. A duplicate in any other key
    /// stops the copy.
    pub benign_duplicates: Vec<String>,
    /// Resume after this key (a checkpoint's watermark); `None` copies from the start.
    pub start_after: Option<Vec<String>>,
}

/// How far the copy is done, for checkpoints: every chunk up to the bound has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watermark {
    /// No chunk finished yet (or resumed at [`CopyPlan::start_after`]).
    Start(Option<Vec<String>>),
    /// Every key up to this bound is copied.
    Upto(Vec<String>),
    /// The whole table is copied.
    Finished,
}

/// How big the next chunk is, as the operator set it (read before each chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSize {
    /// Sized to [`CopyConfig::target_chunk_time`] (the default).
    Auto,
    /// A fixed number of rows (`ctl chunk-size N`).
    Rows(u64),
    /// Sized to this many milliseconds (`ctl chunk-time-ms N`).
    TimeMs(u64),
}

/// Live control of the copy (throttling, pause, chunk size, nice ratio). The default never
/// holds the copy and keeps the configured chunk time.
#[derive(Debug, Clone)]
pub struct CopyControl {
    /// False while the copy must wait (paused or throttled): checked before each chunk by the
    /// dispatcher and by each worker.
    pub run: watch::Receiver<bool>,
    /// The chunk size, read before each chunk.
    pub chunk: watch::Receiver<ChunkSize>,
    /// After a chunk that took `t`, a worker rests `nice_ratio * t` (like gh-ost's
    /// `--nice-ratio`), leaving the server to the application.
    pub nice_ratio: f64,
    /// Receives the duration of every chunk (for the chunk-time histogram).
    pub chunk_times: Option<mpsc::UnboundedSender<Duration>>,
    /// True while the copy must yield to the application (see [`Gentle`]), read before each
    /// chunk.
    pub gentle: watch::Receiver<bool>,
    /// Asks the appliers to catch up (migrate): the answer comes once every change committed
    /// before the request is applied. A chunk that collides in a unique key the old table
    /// lacked may meet a shadow row whose newer image the appliers have not written yet (two
    /// rows swapped values). It is copied again after a catch-up, in a transaction that
    /// share-locks the chunk's rows, asks for a second catch-up (bounded by
    /// [`COLLISION_LOCKED_WAIT`]: the locks stall writers of those rows) and only then
    /// inserts: the rows can no longer change, and every change that took their values from
    /// another row is in the shadow, so a collision then is a duplicate in the table.
    /// `None`: a collision stops the copy at once.
    pub catch_up: Option<mpsc::Sender<CatchUpRequest>>,
}

/// A catch-up request: answered once the appliers have applied every change committed
/// before it (a dropped sender means it could not be done).
pub type CatchUpRequest = oneshot::Sender<()>;

/// How many times a colliding chunk is tried again with its rows locked (see
/// [`CopyControl::catch_up`]); an attempt whose locked catch-up timed out counts.
pub const COLLISION_ATTEMPTS: u32 = 5;

/// The longest catch-up while a colliding chunk's rows are locked (the appliers have just
/// caught up before it).
pub const COLLISION_LOCKED_WAIT: Duration = Duration::from_secs(5);

/// The longest catch-up before a colliding chunk is locked.
const COLLISION_WAIT: Duration = Duration::from_secs(60);

impl Default for CopyControl {
    fn default() -> Self {
        CopyControl {
            run: watch::channel(true).1,
            chunk: watch::channel(ChunkSize::Auto).1,
            nice_ratio: 0.0,
            chunk_times: None,
            gentle: watch::channel(false).1,
            catch_up: None,
        }
    }
}

/// The gentle pace: what the copy does while [`CopyControl::gentle`] is set (the application
/// is writing the table). Measured on the bench's 1 M-row table under a 4-client load
/// (benches/README.md, session 9): a chunk share-locks the rows it reads until it commits, so
/// the application's writes wait on the chunk in flight (50 ms chunks: 162–415 ms of lock wait
/// per second; 10 ms: 11–18 ms); short chunks from one worker with a 4x rest kept a median 83 %
/// of the application's rate where the full-speed copy kept 24 %. As the default (`--pace
/// auto`, session 10, 3 runs each): MariaDB 77 % in 26.6 s, MySQL 75 % in 57.6 s. Session 14,
/// with the appliers' batches gathered (they had been one small transaction each) and less
/// CPU spent following the binlog, the rest was measured again (one run each unless noted,
/// whole run): MariaDB rest 4: 33.2 s at 78 %; 3: 27.4 / 27.8 s at 77 / 83 %; 2: 20.0 s at
/// 71 %. MySQL rest 3: 63.0 s at 75 %; 2: 50.0 s at 73 %; 1: 29.8 / 30.0 s at 70 / 67 %;
/// 0.5: 21.0 s at 61 %.
pub struct Gentle;

impl Gentle {
    /// Chunk time while gentle (an operator's `ctl chunk-size`/`chunk-time-ms` still wins).
    pub const CHUNK_TIME: Duration = Duration::from_millis(10);
    /// Rest after a chunk, as a multiple of its time (at least; a higher `nice_ratio` stays).
    pub const REST_RATIO: f64 = 3.0;
    /// Only this many workers take chunks; the others wait until the pace is full again.
    pub const WORKERS: usize = 1;
}

impl CopyControl {
    /// Wait until the copy may run. A dropped controller leaves the last state in force; one
    /// dropped while holding the copy releases it (nothing can release it any more).
    /// Returns false when the controller is gone (the copy then runs).
    pub async fn wait_open(&mut self, stats: &CopyStats) -> bool {
        if *self.run.borrow() {
            return true;
        }
        stats.held.store(true, Ordering::Relaxed);
        let released = self.run.wait_for(|open| *open).await.is_ok();
        stats.held.store(false, Ordering::Relaxed);
        released
    }
}

/// Tuning of the copy.
#[derive(Debug, Clone)]
pub struct CopyConfig {
    /// Chunks copied at once.
    pub workers: usize,
    /// Wished duration of one chunk.
    pub target_chunk_time: Duration,
    /// First chunk size in rows.
    pub initial_chunk_rows: u64,
    /// Largest chunk in rows.
    pub max_chunk_rows: u64,
    /// Live control (throttle, pause, chunk size, nice ratio).
    pub control: CopyControl,
}

impl Default for CopyConfig {
    fn default() -> Self {
        CopyConfig {
            workers: 2,
            target_chunk_time: Duration::from_millis(500),
            initial_chunk_rows: 2_000,
            max_chunk_rows: 200_000,
            control: CopyControl::default(),
        }
    }
}

/// Counters of the copy, for progress and metrics.
#[derive(Debug, Default)]
pub struct CopyStats {
    /// Rows inserted into the shadow table.
    pub rows_copied: AtomicU64,
    /// Chunks finished.
    pub chunks: AtomicU64,
    /// Duration of the last chunk in microseconds.
    pub last_chunk_micros: AtomicU64,
    /// Rows of the last chunk.
    pub last_chunk_rows: AtomicU64,
    /// Size in rows of the chunk dispatched last.
    pub chunk_rows: AtomicU64,
    /// Chunks being copied right now.
    pub in_flight: AtomicU64,
    /// Chunk statements retried after a transient error (deadlock, lost connection).
    pub retries: AtomicU64,
    /// True while the dispatcher waits for the copy to be released (paused or throttled).
    pub held: std::sync::atomic::AtomicBool,
}

/// The upper bound of the key ranges handed to the copy so far, for a single integer key:
/// changes to keys above it need not be applied (the copy will read them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighWater {
    /// Nothing dispatched yet: every key is above.
    Start,
    /// Keys up to this value are dispatched.
    Upto(i128),
    /// All dispatched: apply everything.
    Done,
}

impl HighWater {
    /// True when a change of integer key `k` must be applied now.
    pub fn covers(self, k: i128) -> bool {
        match self {
            HighWater::Start => false,
            HighWater::Upto(hw) => k <= hw,
            HighWater::Done => true,
        }
    }
}

/// Follows chunks finishing out of order and publishes the bound of the longest finished
/// prefix.
#[derive(Default)]
struct WatermarkTracker {
    /// Upper bounds of dispatched chunks not yet confirmed, by sequence number.
    pending: std::collections::BTreeMap<u64, (Option<Vec<String>>, bool)>,
}

impl WatermarkTracker {
    fn dispatched(&mut self, seq: u64, upper: Option<Vec<String>>) {
        self.pending.insert(seq, (upper, false));
    }

    fn finished(&mut self, seq: u64, out: &watch::Sender<Watermark>) {
        if let Some(entry) = self.pending.get_mut(&seq) {
            entry.1 = true;
        }
        let mut last = None;
        while let Some(entry) = self.pending.first_entry() {
            if !entry.get().1 {
                break;
            }
            last = Some(entry.remove().0);
        }
        match last {
            Some(Some(bound)) => {
                let _ = out.send(Watermark::Upto(bound));
            }
            Some(None) => {
                let _ = out.send(Watermark::Finished);
            }
            None => {}
        }
    }
}

struct Chunk {
    seq: u64,
    lower: Option<Vec<String>>,
    upper: Option<Vec<String>>,
}

impl Chunk {
    fn describe(&self) -> String {
        let show = |b: &Option<Vec<String>>| match b {
            Some(v) => format!("({})", v.join(",")),
            None => "end".into(),
        };
        match &self.lower {
            None => format!("[start, {}]", show(&self.upper)),
            Some(_) => format!("({}, {}]", show(&self.lower), show(&self.upper)),
        }
    }
}

/// Copy the whole table. `high_water` receives the bound of each dispatched range (integer
/// single-column keys only; otherwise it stays at [`HighWater::Start`] until the end and the
/// router must apply everything). `watermark` receives the bound below which every chunk
/// has finished (chunks finish out of order).
pub async fn copy_table(
    plan: CopyPlan,
    config: CopyConfig,
    stats: Arc<CopyStats>,
    high_water: watch::Sender<HighWater>,
    watermark: watch::Sender<Watermark>,
) -> Result<(), CopyError> {
    let span = info_span!("copy", table = %plan.source);
    async move {
        let plan = Arc::new(plan);
        let started = Instant::now();
        let mut finder = plan.endpoint.connect().await?;
        let mut config = config;
        // Every warning of a chunk must be seen. A user without SESSION_VARIABLES_ADMIN (MySQL
        // 8+, e.g. on RDS) cannot raise max_error_count: then chunks are capped at the number
        // of warnings the server lists, so benign duplicates alone can never fill the list.
        if let Some(listed) = raise_max_error_count(&mut finder, &plan.source).await? {
            config.max_chunk_rows = config.max_chunk_rows.min(listed.max(1));
            config.initial_chunk_rows = config.initial_chunk_rows.min(config.max_chunk_rows);
        }
        // One chunk waits at most: its bounds are computed when a slot frees, so a new chunk
        // size or a pause applies to the next chunk.
        let (tx, rx) = mpsc::channel::<Chunk>(1);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, u64, Duration)>();
        let mut workers = Vec::new();
        // Set once no chunk will come: all dispatched, or a worker failed.
        let (ended_tx, mut ended) = watch::channel(false);
        let ended_tx = Arc::new(ended_tx);
        for i in 0..config.workers.max(1) {
            let conn = plan.endpoint.connect().await?;
            let w = Worker {
                id: i,
                ended: ended.clone(),
                end: ended_tx.clone(),
                plan: plan.clone(),
                conn,
                rx: rx.clone(),
                done: done_tx.clone(),
                stats: stats.clone(),
                control: config.control.clone(),
            };
            workers.push(AbortOnDrop(Some(tokio::spawn(
                w.run().instrument(info_span!("copy_worker", id = i)),
            ))));
        }
        drop(done_tx);
        let int_key = plan.key.len() == 1 && plan.key[0].literal == KeyLiteral::Number;
        let mut chunk_rows = config.initial_chunk_rows.max(1);
        let mut lower: Option<Vec<String>> = plan.start_after.clone();
        if int_key {
            if let Some(k) = lower.as_ref().and_then(|l| l[0].parse::<i128>().ok()) {
                let _ = high_water.send(HighWater::Upto(k));
            }
        }
        let mut tracker = WatermarkTracker::default();
        let mut seq = 0u64;
        let mut control = config.control.clone();
        // Rows per second of the last finished chunk.
        let mut rate: Option<f64> = None;
        // The next chunk's bounds, found before waiting for a free slot (so the boundary query
        // runs while the workers copy, not after one freed), with the setting and size they
        // were found for. Used only if the setting is unchanged when the slot frees.
        let mut ahead: Option<(ChunkSize, u64, Option<Vec<String>>)> = None;
        loop {
            if ahead.is_none() && *control.run.borrow() {
                drain_finished(&mut done_rx, &mut tracker, &watermark, &mut rate);
                let setting = *control.chunk.borrow();
                let gentle = *control.gentle.borrow();
                chunk_rows = next_chunk_rows(setting, rate, chunk_rows, &config, gentle);
                let upper =
                    find_boundary(&mut finder, &plan, lower.as_deref(), chunk_rows, started)
                        .await?;
                ahead = Some((setting, chunk_rows, upper));
            }
            let _ = control.wait_open(&stats).await;
            // A failed worker stops the dispatch at once: its error is returned once the
            // others have finished their chunks (not after the whole table).
            let permit = tokio::select! {
                permit = tx.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = ended.wait_for(|f| *f) => break,
            };
            // A pause or throttle that came while waiting for a free worker holds this chunk.
            let _ = control.wait_open(&stats).await;
            // Adapt the chunk size to the measured speed of finished chunks and to the setting
            // as it is now.
            drain_finished(&mut done_rx, &mut tracker, &watermark, &mut rate);
            let setting = *control.chunk.borrow();
            let gentle = *control.gentle.borrow();
            let wished = next_chunk_rows(setting, rate, chunk_rows, &config, gentle);
            let upper = match ahead.take() {
                // Found for the same setting and a size within a factor of two of what is
                // wished now (a fixed size is always exact): send at once.
                Some((found_for, rows, upper))
                    if found_for == setting && wished <= rows * 2 && rows <= wished * 2 =>
                {
                    chunk_rows = rows;
                    upper
                }
                _ => {
                    chunk_rows = wished;
                    find_boundary(&mut finder, &plan, lower.as_deref(), chunk_rows, started).await?
                }
            };
            stats.chunk_rows.store(chunk_rows, Ordering::Relaxed);
            let last = upper.is_none();
            if int_key {
                let hw = match &upper {
                    Some(v) => v[0]
                        .parse::<i128>()
                        .map(HighWater::Upto)
                        .unwrap_or(HighWater::Done),
                    None => HighWater::Done,
                };
                let _ = high_water.send(hw);
            }
            seq += 1;
            tracker.dispatched(seq, upper.clone());
            let chunk = Chunk {
                seq,
                lower: lower.clone(),
                upper: upper.clone(),
            };
            permit.send(chunk);
            if last {
                break;
            }
            lower = upper;
        }
        drop(tx);
        let _ = ended_tx.send(true);
        for mut w in workers {
            let Some(handle) = w.0.take() else { continue };
            match handle.await {
                Ok(r) => r?,
                Err(_) => return Err(CopyError::WorkerStopped),
            }
        }
        while let Ok((done_seq, _, _)) = done_rx.try_recv() {
            tracker.finished(done_seq, &watermark);
        }
        let _ = high_water.send(HighWater::Done);
        let _ = watermark.send(Watermark::Finished);
        let _ = finder.disconnect().await;
        info!(
            rows = stats.rows_copied.load(Ordering::Relaxed),
            secs = started.elapsed().as_secs_f64(),
            "copy finished"
        );
        Ok(())
    }
    .instrument(span)
    .await
}

/// Take the finished chunks' reports: advance the watermark, remember the last rate.
fn drain_finished(
    done_rx: &mut mpsc::UnboundedReceiver<(u64, u64, Duration)>,
    tracker: &mut WatermarkTracker,
    watermark: &watch::Sender<Watermark>,
    rate: &mut Option<f64>,
) {
    while let Ok((done_seq, rows, took)) = done_rx.try_recv() {
        tracker.finished(done_seq, watermark);
        if rows > 0 && took > Duration::ZERO {
            *rate = Some(rows as f64 / took.as_secs_f64());
        }
    }
}

/// Rows of the next chunk for the operator's setting and the last measured rate (`current`
/// until a rate is known).
fn next_chunk_rows(
    setting: ChunkSize,
    rate: Option<f64>,
    current: u64,
    config: &CopyConfig,
    gentle: bool,
) -> u64 {
    let target_time = if gentle {
        config.target_chunk_time.min(Gentle::CHUNK_TIME)
    } else {
        config.target_chunk_time
    };
    let target = match setting {
        ChunkSize::Rows(n) => Some(n),
        ChunkSize::Auto => rate.map(|r| (r * target_time.as_secs_f64()) as u64),
        ChunkSize::TimeMs(ms) => rate.map(|r| (r * ms as f64 / 1000.0) as u64),
    };
    match target {
        Some(n) => {
            let floor = if matches!(setting, ChunkSize::Rows(_)) {
                1
            } else {
                100
            };
            n.clamp(floor.min(config.max_chunk_rows), config.max_chunk_rows)
        }
        None => current,
    }
}

/// [`next_boundary`], reconnecting and retrying after transient errors (a restarted server)
/// for up to a day from `started`.
async fn find_boundary(
    finder: &mut mysql_async::Conn,
    plan: &CopyPlan,
    lower: Option<&[String]>,
    rows: u64,
    started: Instant,
) -> Result<Option<Vec<String>>, CopyError> {
    loop {
        match next_boundary(finder, plan, lower, rows).await {
            Ok(upper) => return Ok(upper),
            Err(CopyError::Sql { source, .. })
                if crate::apply::is_transient(&source)
                    && started.elapsed() < Duration::from_secs(24 * 3600) =>
            {
                warn!(error = %source, "finding the next chunk failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(conn) = plan.endpoint.connect().await {
                    *finder = conn;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `key > lower` as SQL (expanded for composite keys so both servers use a range scan).
pub fn after(key: &[KeyColumn], lower: &[String]) -> String {
    let mut ors = Vec::new();
    for i in 0..key.len() {
        let mut ands: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", key[j].name, lower[j]))
            .collect();
        ands.push(format!("{} > {}", key[i].name, lower[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    ors.join(" OR ")
}

/// `key <= upper` as SQL.
pub fn upto(key: &[KeyColumn], upper: &[String]) -> String {
    let mut ors = Vec::new();
    for i in 0..key.len() {
        let mut ands: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", key[j].name, upper[j]))
            .collect();
        let op = if i + 1 == key.len() { "<=" } else { "<" };
        ands.push(format!("{} {op} {}", key[i].name, upper[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    ors.join(" OR ")
}

fn range_sql(key: &[KeyColumn], chunk: &Chunk) -> String {
    let mut parts = Vec::new();
    if let Some(l) = &chunk.lower {
        parts.push(format!("({})", after(key, l)));
    }
    if let Some(u) = &chunk.upper {
        parts.push(format!("({})", upto(key, u)));
    }
    if parts.is_empty() {
        "1=1".into()
    } else {
        parts.join(" AND ")
    }
}

/// The key of the `rows`-th row after `lower`, as literals; `None` when fewer rows remain.
async fn next_boundary(
    conn: &mut mysql_async::Conn,
    plan: &CopyPlan,
    lower: Option<&[String]>,
    rows: u64,
) -> Result<Option<Vec<String>>, CopyError> {
    let cols: Vec<&str> = plan.key.iter().map(|k| k.name.as_str()).collect();
    let cols = cols.join(",");
    let filter = match lower {
        Some(l) => format!("WHERE {}", after(&plan.key, l)),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {cols} FROM {} FORCE INDEX (PRIMARY) {filter} ORDER BY {cols} LIMIT 1 OFFSET {}",
        plan.source,
        rows.saturating_sub(1)
    );
    let row: Option<mysql_async::Row> =
        conn.query_first(sql)
            .await
            .map_err(|source| CopyError::Sql {
                table: plan.source.clone(),
                step: "finding the next chunk boundary",
                source,
            })?;
    let Some(row) = row else { return Ok(None) };
    let values = row.unwrap_raw();
    let mut out = Vec::with_capacity(values.len());
    for (v, k) in values.into_iter().zip(&plan.key) {
        out.push(key_literal(
            v.unwrap_or(mysql_async::Value::NULL),
            &k.literal,
        ));
    }
    Ok(Some(out))
}

/// A key value from the server (text protocol) as a literal of the key column's type.
pub fn key_literal(v: mysql_async::Value, kind: &KeyLiteral) -> String {
    let bytes = match v {
        mysql_async::Value::NULL => return "NULL".into(),
        mysql_async::Value::Bytes(b) => b,
        other => other.as_sql(true).into_bytes(),
    };
    let mut out = String::new();
    match kind {
        KeyLiteral::Number
            if bytes
                .iter()
                .all(|b| b.is_ascii_digit() || b"-+.eE".contains(b)) =>
        {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
        KeyLiteral::Temporal
            if bytes
                .iter()
                .all(|b| b.is_ascii_digit() || b"-:. ".contains(b)) =>
        {
            out.push('\'');
            out.push_str(&String::from_utf8_lossy(&bytes));
            out.push('\'');
        }
        KeyLiteral::Text { charset, collation }
            if is_plain_name(charset) && is_plain_name(collation) =>
        {
            out.push_str("CONVERT(");
            push_hex(&mut out, &bytes);
            out.push_str(&format!(" USING {charset}) COLLATE {collation}"));
        }
        _ => push_hex(&mut out, &bytes),
    }
    out
}

/// Raise the session's `max_error_count` so `SHOW WARNINGS` lists every warning of a chunk.
/// Returns `Some(limit)` when the server refused (the limit that stays), `None` when raised.
async fn raise_max_error_count(
    conn: &mut mysql_async::Conn,
    table: &str,
) -> Result<Option<u64>, CopyError> {
    if conn
        .query_drop("SET SESSION max_error_count = 65535")
        .await
        .is_ok()
    {
        return Ok(None);
    }
    let limit: Option<u64> =
        conn.query_first("SELECT @@max_error_count")
            .await
            .map_err(|source| CopyError::Sql {
                table: table.to_string(),
                step: "reading max_error_count",
                source,
            })?;
    info!(
        limit,
        "cannot raise max_error_count: copy chunks are capped at that many rows"
    );
    Ok(Some(limit.unwrap_or(64)))
}

/// The warning is a duplicate in one of the `benign` keys (see [`CopyPlan::benign_duplicates`]).
/// The key is named `'name'` (MariaDB) or `'table.name'` (MySQL 8+).
fn is_benign(code: u32, text: &str, benign: &[String]) -> bool {
    if code != 1062 {
        return false;
    }
    let Some(key) = text
        .rfind("for key '")
        .and_then(|i| text[i + 9..].strip_suffix('\''))
    else {
        return false;
    };
    benign.iter().any(|b| {
        key == b
            || key
                .strip_suffix(b.as_str())
                .is_some_and(|prefix| prefix.ends_with('.'))
    })
}

/// The row numbers (1-based, within the chunk) that warnings name with `at row N`.
fn warned_rows<'a>(warnings: impl Iterator<Item = &'a str>) -> Vec<u64> {
    let mut rows: Vec<u64> = warnings
        .filter_map(|text| {
            let at = text.rfind(" at row ")?;
            text[at + 8..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// A key value read with the text protocol, for messages: numbers bare, text quoted, other
/// bytes in hex.
fn show_key_value(v: &mysql_async::Value) -> String {
    match v {
        mysql_async::Value::NULL => "NULL".into(),
        mysql_async::Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s)
                if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || b"-.".contains(&c)) =>
            {
                s.to_string()
            }
            Ok(s) if !s.chars().any(char::is_control) => format!("'{}'", s.replace('\'', "''")),
            _ => {
                let mut out = String::new();
                push_hex(&mut out, b);
                out
            }
        },
        other => other.as_sql(true),
    }
}

/// The column of a `Column 'x' cannot be null` warning (it names no row).
fn null_column(text: &str) -> Option<&str> {
    text.strip_prefix("Column '")?
        .strip_suffix("' cannot be null")
}

/// `; offending keys: ...` for the rows the warnings name, read inside the chunk's
/// transaction (its share locks keep them as the INSERT saw them); empty when none is named.
/// Rows are named by number (`at row N`, counted in key order within the chunk) or, for a
/// NULL into a NOT NULL column, found by the column's expression being NULL.
async fn offending_keys(
    conn: &mut mysql_async::Conn,
    plan: &CopyPlan,
    chunk: &Chunk,
    warnings: &[&str],
) -> String {
    const SHOWN: usize = 5;
    let cols: Vec<&str> = plan.key.iter().map(|k| k.name.as_str()).collect();
    let list = cols.join(",");
    let range = range_sql(&plan.key, chunk);
    let select = |filter: &str, limit: String| {
        format!(
            "SELECT {list} FROM {} FORCE INDEX (PRIMARY) WHERE ({range}){filter} ORDER BY {list} LIMIT {limit}",
            plan.source
        )
    };
    let mut queries: Vec<String> = warned_rows(warnings.iter().copied())
        .into_iter()
        .map(|n| select("", format!("1 OFFSET {}", n.saturating_sub(1))))
        .collect();
    for text in warnings {
        let Some(column) = null_column(text) else {
            continue;
        };
        let quoted = rowshift_quote(column);
        if let Some(i) = plan.insert_columns.iter().position(|c| *c == quoted) {
            let filter = format!(" AND ({}) IS NULL", plan.select_exprs[i]);
            queries.push(select(&filter, (SHOWN + 1).to_string()));
        }
    }
    let mut keys: Vec<String> = Vec::new();
    let mut more = false;
    for sql in queries {
        let Ok(rows) = conn.query::<mysql_async::Row, _>(sql).await else {
            continue;
        };
        for row in rows {
            let values: Vec<String> = row
                .unwrap_raw()
                .into_iter()
                .map(|v| show_key_value(&v.unwrap_or(mysql_async::Value::NULL)))
                .collect();
            let key = if cols.len() == 1 {
                format!("{}={}", cols[0], values[0])
            } else {
                format!("({list})=({})", values.join(","))
            };
            if keys.contains(&key) {
                continue;
            }
            if keys.len() == SHOWN {
                more = true;
                break;
            }
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return String::new();
    }
    format!(
        "; offending keys: {}{}",
        keys.join(", "),
        if more { ", ..." } else { "" }
    )
}

/// `` `name` `` with backticks doubled, as the plan's column names are quoted.
fn rowshift_quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A copy worker's session: REPEATABLE READ, so that a chunk's share locks cover the gaps of
/// its range too (the server's default, pinned), and as many warnings kept as a chunk can
/// raise (refused for users without SESSION_VARIABLES_ADMIN: copy_table then caps the chunks).
async fn session_setup(conn: &mut mysql_async::Conn, table: &str) -> Result<(), CopyError> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(|source| CopyError::Sql {
            table: table.to_string(),
            step: "setting the isolation level",
            source,
        })?;
    let _ = conn.query_drop("SET SESSION max_error_count = 65535").await;
    Ok(())
}

/// A copy worker's task, aborted when the copy is dropped (an aborted migration).
struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<(), CopyError>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

struct Worker {
    /// Workers numbered from 0; those at or past [`Gentle::WORKERS`] wait while gentle.
    id: usize,
    /// Set once no chunk will come (every chunk dispatched, or a worker failed): a waiting
    /// worker then ends.
    ended: watch::Receiver<bool>,
    /// Sets [`Worker::ended`] for every worker when this one fails, so that a worker waiting
    /// while gentle ends and the copy reports the failure instead of waiting for it.
    end: Arc<watch::Sender<bool>>,
    plan: Arc<CopyPlan>,
    conn: mysql_async::Conn,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Chunk>>>,
    done: mpsc::UnboundedSender<(u64, u64, Duration)>,
    stats: Arc<CopyStats>,
    control: CopyControl,
}

impl Worker {
    /// Copy one chunk in one transaction; returns the rows inserted.
    /// With `settle`, the chunk's rows are share-locked first and the appliers catch up
    /// before they are copied (see [`CopyControl::catch_up`]).
    async fn copy_chunk(
        &mut self,
        chunk: &Chunk,
        sql: &str,
        settle: bool,
    ) -> Result<u64, CopyError> {
        let plan = self.plan.clone();
        let sql_err = |step| {
            let table = plan.source.clone();
            move |source| CopyError::Sql {
                table,
                step,
                source,
            }
        };
        self.conn
            .query_drop("BEGIN")
            .await
            .map_err(sql_err("BEGIN"))?;
        if settle {
            self.conn
                .query_drop(format!(
                    "SELECT COUNT(*) FROM {} FORCE INDEX (PRIMARY) WHERE {} LOCK IN SHARE MODE",
                    plan.source,
                    range_sql(&plan.key, chunk)
                ))
                .await
                .map_err(sql_err("locking a chunk's rows"))?;
            if !self.catch_up(COLLISION_LOCKED_WAIT).await {
                let _ = self.conn.query_drop("ROLLBACK").await;
                return Err(CopyError::CollisionUnsettled {
                    table: plan.source.clone(),
                    range: chunk.describe(),
                    warning: String::new(),
                    attempts: 0,
                });
            }
        }
        self.conn
            .query_drop(sql)
            .await
            .map_err(sql_err("copying a chunk"))?;
        let rows = self.conn.affected_rows();
        // The OK packet's count stops at 65,535: past it, ask for the real one (SHOW COUNT(*)
        // WARNINGS keeps the list; a SELECT @@warning_count would clear it).
        let total: u64 = match self.conn.get_warnings() {
            u16::MAX => self
                .conn
                .query_first::<u64, _>("SHOW COUNT(*) WARNINGS")
                .await
                .map_err(sql_err("counting warnings"))?
                .unwrap_or(u64::MAX),
            n => u64::from(n),
        };
        if total > 0 {
            let warnings: Vec<(String, u32, String)> = self
                .conn
                .query("SHOW WARNINGS")
                .await
                .map_err(sql_err("reading warnings"))?;
            let bad: Vec<&str> = warnings
                .iter()
                .filter(|(_, code, text)| !is_benign(*code, text, &plan.benign_duplicates))
                .map(|(_, _, text)| text.as_str())
                .collect();
            // More warnings than listed: the unlisted ones may be anything.
            let unlisted = total > warnings.len() as u64;
            if !bad.is_empty() || unlisted {
                let warning = match bad.first() {
                    Some(text) if bad.len() > 1 => format!("{text}; and {} more", bad.len() - 1),
                    Some(text) => text.to_string(),
                    None => format!(
                        "{total} warnings, of which the server listed only {}",
                        warnings.len()
                    ),
                };
                let keys = offending_keys(&mut self.conn, &plan, chunk, &bad).await;
                let _ = self.conn.query_drop("ROLLBACK").await;
                let collision = !unlisted
                    && warnings
                        .iter()
                        .all(|(_, code, text)| *code == 1062 && text.contains("for key '"));
                return Err(CopyError::Lossy {
                    table: plan.source.clone(),
                    range: chunk.describe(),
                    warning,
                    keys,
                    collision,
                });
            }
        }
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(sql_err("COMMIT"))?;
        Ok(rows)
    }

    /// Wait while the copy is held (paused, throttled); the waiting chunk does not count as
    /// in flight meanwhile.
    async fn wait_gate(&mut self) {
        while !*self.control.run.borrow() {
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            let released = self.control.wait_open(&self.stats).await;
            self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
            if !released {
                break;
            }
        }
    }

    /// Ask the appliers to catch up and wait (at most `bound`); false when that did not
    /// happen.
    async fn catch_up(&self, bound: Duration) -> bool {
        let Some(requests) = &self.control.catch_up else {
            return false;
        };
        let (reply, answer) = oneshot::channel();
        if requests.send(reply).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(bound, answer).await, Ok(Ok(())))
    }

    async fn run(self) -> Result<(), CopyError> {
        let end = self.end.clone();
        let result = self.copy_chunks().await;
        if result.is_err() {
            let _ = end.send(true);
        }
        result
    }

    async fn copy_chunks(mut self) -> Result<(), CopyError> {
        let plan = self.plan.clone();
        session_setup(&mut self.conn, &plan.source).await?;
        loop {
            // While gentle, the extra workers take no chunk, until no chunk will come (a dropped
            // sender ends a wait as well).
            if self.id >= Gentle::WORKERS {
                tokio::select! {
                    _ = self.control.gentle.wait_for(|g| !*g) => {}
                    _ = self.ended.wait_for(|d| *d) => {}
                }
            }
            let chunk = { self.rx.lock().await.recv().await };
            let Some(chunk) = chunk else { break };
            // Counted in flight before the gate is checked: once the gate is closed, an
            // observer that sees no chunk in flight knows none will start.
            self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
            self.wait_gate().await;
            let started = Instant::now();
            let sql = format!(
                "INSERT IGNORE INTO {} ({}) SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE {} LOCK IN SHARE MODE",
                plan.target,
                plan.insert_columns.join(","),
                plan.select_exprs.join(","),
                plan.source,
                range_sql(&plan.key, &chunk)
            );
            // A deadlock with the appliers, a lock timeout or a lost connection (server
            // restart) is retried: the chunk is idempotent (`INSERT IGNORE`).
            let mut attempt = 0u32;
            let mut collisions = 0u32;
            let mut first_collision = String::new();
            let rows = loop {
                match self.copy_chunk(&chunk, &sql, collisions > 0).await {
                    Ok(rows) => {
                        if collisions > 0 {
                            info!(range = %chunk.describe(), attempts = collisions, "the colliding chunk was copied with the appliers caught up");
                        }
                        break rows;
                    }
                    // A first collision, or a locked catch-up that timed out: catch up without
                    // locks, then try again with the rows locked.
                    Err(CopyError::Lossy {
                        collision: true,
                        warning,
                        ..
                    }) if collisions == 0 && self.control.catch_up.is_some() => {
                        collisions = 1;
                        first_collision = warning;
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        info!(range = %chunk.describe(), "copy chunk collided in a new unique key; copying it again with the appliers caught up");
                        self.catch_up(COLLISION_WAIT).await;
                        // A pause or throttle asked meanwhile holds the chunk before it locks.
                        self.wait_gate().await;
                    }
                    Err(CopyError::CollisionUnsettled { .. })
                        if collisions < COLLISION_ATTEMPTS =>
                    {
                        collisions += 1;
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        warn!(range = %chunk.describe(), attempt = collisions, "the appliers did not catch up while the chunk's rows were locked; releasing them and trying again");
                        self.catch_up(COLLISION_WAIT).await;
                        self.wait_gate().await;
                    }
                    Err(CopyError::CollisionUnsettled { table, range, .. }) => {
                        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                        return Err(CopyError::CollisionUnsettled {
                            table,
                            range,
                            warning: first_collision,
                            attempts: collisions,
                        });
                    }
                    Err(CopyError::Sql { source, .. })
                        if attempt < 60 && crate::apply::is_transient(&source) =>
                    {
                        attempt += 1;
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        warn!(attempt, error = %source, range = %chunk.describe(), "copy chunk failed; retrying");
                        let _ = self.conn.query_drop("ROLLBACK").await;
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(20))))
                            .await;
                        if !matches!(&source, mysql_async::Error::Server(e) if matches!(e.code, 1205 | 1213))
                        {
                            if let Ok(mut conn) = self.plan.endpoint.connect().await {
                                if session_setup(&mut conn, &plan.source).await.is_ok() {
                                    self.conn = conn;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            };
            let took = started.elapsed();
            // The last chunk's figures before the chunk count: a reader that sees the count
            // sees them.
            self.stats.last_chunk_rows.store(rows, Ordering::SeqCst);
            self.stats
                .last_chunk_micros
                .store(took.as_micros() as u64, Ordering::Relaxed);
            self.stats.rows_copied.fetch_add(rows, Ordering::SeqCst);
            self.stats.chunks.fetch_add(1, Ordering::SeqCst);
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            debug!(rows, ms = took.as_millis() as u64, range = %chunk.describe(), "chunk copied");
            if let Some(times) = &self.control.chunk_times {
                let _ = times.send(took);
            }
            let _ = self.done.send((chunk.seq, rows, took));
            // Nice ratio: leave the server to the application for a while (pacing, not
            // synchronisation).
            let gentle = *self.control.gentle.borrow();
            let ratio = if gentle {
                self.control.nice_ratio.max(Gentle::REST_RATIO)
            } else {
                self.control.nice_ratio
            };
            if ratio > 0.0 {
                tokio::time::sleep(took.mul_f64(ratio.min(100.0))).await;
            }
        }
        let _ = self.conn.disconnect().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> KeyColumn {
        KeyColumn {
            name: format!("`{name}`"),
            literal: KeyLiteral::Number,
        }
    }

    #[test]
    fn gentle_chunks_are_short_unless_the_operator_sized_them() {
        let config = CopyConfig::default(); // 500 ms
        let rate = Some(100_000.0); // rows per second
        let rows = |setting, gentle| next_chunk_rows(setting, rate, 2_000, &config, gentle);
        assert_eq!(rows(ChunkSize::Auto, false), 50_000);
        assert_eq!(rows(ChunkSize::Auto, true), 1_000, "10 ms at 100 K rows/s");
        // An operator's `ctl chunk-size` / `chunk-time-ms` wins over the pace.
        assert_eq!(rows(ChunkSize::Rows(7_000), true), 7_000);
        assert_eq!(rows(ChunkSize::TimeMs(100), true), 10_000);
        // A chunk time already below the gentle one stays.
        let short = CopyConfig {
            target_chunk_time: Duration::from_millis(5),
            ..CopyConfig::default()
        };
        assert_eq!(
            next_chunk_rows(ChunkSize::Auto, rate, 2_000, &short, true),
            500
        );
        // No rate yet: the current size.
        assert_eq!(
            next_chunk_rows(ChunkSize::Auto, None, 2_000, &config, true),
            2_000
        );
    }

    #[test]
    fn composite_ranges_expand() {
        let key = [k("a"), k("b")];
        assert_eq!(
            after(&key, &["1".into(), "2".into()]),
            "(`a` > 1) OR (`a` = 1 AND `b` > 2)"
        );
        assert_eq!(
            upto(&key, &["3".into(), "4".into()]),
            "(`a` < 3) OR (`a` = 3 AND `b` <= 4)"
        );
        let chunk = Chunk {
            seq: 1,
            lower: None,
            upper: None,
        };
        assert_eq!(range_sql(&key, &chunk), "1=1");
    }

    #[test]
    fn warnings_name_rows() {
        let w = [
            "Data truncated for column 's' at row 3",
            "Out of range value for column 'a' at row 17",
            "Duplicate entry 'x' for key '_t_new.uk'",
            "Data truncated for column 'b' at row 3",
        ];
        assert_eq!(warned_rows(w.iter().copied()), vec![3, 17]);
        assert_eq!(null_column("Column 'a b' cannot be null"), Some("a b"));
        assert_eq!(null_column("Data truncated for column 's' at row 3"), None);
        let benign = ["PRIMARY".to_string(), "uk_old".to_string()];
        assert!(is_benign(
            1062,
            "Duplicate entry '5' for key '_t_new.PRIMARY'",
            &benign
        ));
        assert!(is_benign(
            1062,
            "Duplicate entry '5' for key 'PRIMARY'",
            &benign
        ));
        assert!(is_benign(
            1062,
            "Duplicate entry 'x' for key 'uk_old'",
            &benign
        ));
        assert!(!is_benign(
            1062,
            "Duplicate entry '5' for key '_t_new.uk_a'",
            &benign
        ));
        assert!(!is_benign(
            1062,
            "Duplicate entry '5' for key '_t_new.xuk_old'",
            &benign
        ));
        assert!(!is_benign(
            1265,
            "Data truncated for key 'PRIMARY'",
            &benign
        ));
        assert_eq!(
            show_key_value(&mysql_async::Value::Bytes(b"-1.50".to_vec())),
            "-1.50"
        );
        assert_eq!(
            show_key_value(&mysql_async::Value::Bytes(b"it's".to_vec())),
            "'it''s'"
        );
        assert_eq!(
            show_key_value(&mysql_async::Value::Bytes(vec![1, 0])),
            "X'0100'"
        );
    }

    #[test]
    fn key_literals_keep_type_and_collation() {
        assert_eq!(
            key_literal(
                mysql_async::Value::Bytes(b"18446744073709551615".to_vec()),
                &KeyLiteral::Number
            ),
            "18446744073709551615"
        );
        assert_eq!(
            key_literal(
                mysql_async::Value::Bytes(b"a'b".to_vec()),
                &KeyLiteral::Text {
                    charset: "utf8mb4".into(),
                    collation: "utf8mb4_general_ci".into()
                }
            ),
            "CONVERT(X'612762' USING utf8mb4) COLLATE utf8mb4_general_ci"
        );
        assert_eq!(
            key_literal(
                mysql_async::Value::Bytes(b"2026-01-01 00:00:00".to_vec()),
                &KeyLiteral::Temporal
            ),
            "'2026-01-01 00:00:00'"
        );
        assert_eq!(
            key_literal(mysql_async::Value::Bytes(vec![0, 1]), &KeyLiteral::Bytes),
            "X'0001'"
        );
        // Not a number after all: never pasted raw.
        assert_eq!(
            key_literal(
                mysql_async::Value::Bytes(b"1;DROP".to_vec()),
                &KeyLiteral::Number
            ),
            "X'313B44524F50'"
        );
    }
}
