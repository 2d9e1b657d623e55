//! Chunked checksums inside the snapshots.
//!
//! One finder plans `(lower, upper]` ranges of the old table's primary key on its own snapshot
//! (by key arithmetic for one integer column, see [`super::keyrange`]; otherwise the copy's
//! `ORDER BY pk LIMIT 1 OFFSET n` walk) and hands them to the workers; each
//! worker owns one snapshot connection per side and runs, on both at once,
//! `SELECT COUNT(*), SUM(row_hash) FROM t FORCE INDEX (PRIMARY) WHERE <range>`.
//! Chunk sizes adapt to [`VerifyConfig::target_chunk_time`] like the copy's.
//!
//! With Rust-side JSON columns the workers fetch per-row fingerprints instead and compare them
//! here. A differing chunk is narrowed to rows by [`super::narrow`].

use super::canon::{Compiled, SideSql};
use super::keyrange::{self, KeyRanges};
use super::narrow::{self, FoundDiff};
use super::point::Snapshots;
use super::{Side, VerifyConfig, VerifyError};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use serde::Serialize;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, info_span, Instrument};

/// One compared chunk, for the report's progress chart.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkRecord {
    /// Chunk number in key order, from 0.
    pub chunk: u64,
    /// Rows in the chunk on the old side.
    pub rows_old: u64,
    /// Rows in the chunk on the new side.
    pub rows_new: u64,
    /// True when the checksums matched.
    pub equal: bool,
    /// When the chunk finished, in ms since the checksums started.
    pub finished_ms: f64,
    /// How long its checksum took, in ms.
    pub took_ms: f64,
}

/// What the checksums found.
pub(crate) struct Outcome {
    /// Every chunk, in the order they finished.
    pub chunks: Vec<ChunkRecord>,
    /// Differing rows, reconciled and sorted by key.
    pub diffs: Vec<FoundDiff>,
    /// Rows on the old side.
    pub rows_old: u64,
    /// Rows on the new side.
    pub rows_new: u64,
    /// Chunks whose row counts or checksums differed although no differing row was found
    /// (keys that print alike for distinct values, say): each is a difference all the same.
    pub unexplained: Vec<u64>,
    /// Time spent on checksums.
    pub duration: Duration,
}

#[derive(Debug, Clone)]
struct Chunk {
    index: u64,
    lower: Option<Vec<Value>>,
    upper: Option<Vec<Value>>,
}

struct ChunkResult {
    record: ChunkRecord,
    diffs: Vec<FoundDiff>,
    /// The aggregates differed but no row difference was found.
    unexplained: bool,
}

/// Compare every chunk of the table on the snapshots.
pub(crate) async fn check_all(
    compiled: Arc<Compiled>,
    snaps: Snapshots,
    config: &VerifyConfig,
) -> Result<Outcome, VerifyError> {
    let span = info_span!("checksum", workers = snaps.new.len());
    async move {
        let started = Instant::now();
        let Snapshots { mut old, new, .. } = snaps;
        let Some(mut finder) = old.pop() else {
            return Err(VerifyError::WorkerStopped);
        };
        let budget = Arc::new(AtomicUsize::new(config.max_reported_rows));
        let (tx, rx) = mpsc::channel::<Chunk>(new.len().max(1));
        let rx = Arc::new(Mutex::new(rx));
        let (res_tx, mut res_rx) = mpsc::unbounded_channel::<ChunkResult>();
        let mut workers = Vec::new();
        for (i, (o, n)) in old.into_iter().zip(new).enumerate() {
            let w = Worker {
                compiled: compiled.clone(),
                old: o,
                new: n,
                rx: rx.clone(),
                results: res_tx.clone(),
                budget: budget.clone(),
                started,
            };
            workers.push(tokio::spawn(
                w.run().instrument(info_span!("checksum_worker", id = i)),
            ));
        }
        drop(res_tx);
        drop(rx);

        let mut results = Vec::new();
        let mut chunk_rows = config.initial_chunk_rows.max(1);
        let mut lower: Option<Vec<Value>> = None;
        let mut index = 0u64;
        let finder_result: Result<(), VerifyError> = async {
            let mut ranges = KeyRanges::open(&mut finder, &compiled).await?;
            loop {
                while let Ok(r) = res_rx.try_recv() {
                    if r.record.rows_old > 0 && r.record.took_ms > 0.0 {
                        let rate = r.record.rows_old as f64 / (r.record.took_ms / 1e3);
                        let wished = (rate * config.target_chunk_time.as_secs_f64()) as u64;
                        chunk_rows = wished.clamp(1, config.max_chunk_rows);
                    }
                    if let Some(k) = ranges.as_mut() {
                        k.measured(r.record.chunk, r.record.rows_old);
                    }
                    results.push(r);
                }
                let upper = if compiled.single_chunk.is_some() {
                    None
                } else if let Some(r) = ranges.as_mut() {
                    let max = config.max_chunk_rows;
                    let (side, lower) = (&compiled.old, lower.as_deref());
                    r.next_upper(&mut finder, side, index, lower, chunk_rows, max)
                        .await?
                } else {
                    keyrange::offset_boundary(
                        &mut finder,
                        &compiled.old,
                        lower.as_deref(),
                        None,
                        chunk_rows,
                    )
                    .await?
                };
                let last = upper.is_none();
                let chunk = Chunk {
                    index,
                    lower: lower.clone(),
                    upper: upper.clone(),
                };
                index += 1;
                if tx.send(chunk).await.is_err() {
                    // Every worker stopped: their results say why.
                    break;
                }
                if last {
                    break;
                }
                lower = upper;
            }
            Ok(())
        }
        .await;
        drop(tx);
        let mut first_err = finder_result.err();
        for w in workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(VerifyError::WorkerStopped);
                }
            }
        }
        let _ = finder.query_drop("COMMIT").await;
        let _ = finder.disconnect().await;
        if let Some(e) = first_err {
            return Err(e);
        }
        while let Some(r) = res_rx.recv().await {
            results.push(r);
        }
        let mut chunks = Vec::with_capacity(results.len());
        let mut diffs = Vec::new();
        let (mut rows_old, mut rows_new) = (0u64, 0u64);
        let mut unexplained = Vec::new();
        for r in results {
            rows_old += r.record.rows_old;
            rows_new += r.record.rows_new;
            if r.unexplained {
                unexplained.push(r.record.chunk);
            }
            chunks.push(r.record);
            diffs.extend(r.diffs);
        }
        chunks.sort_by(|a, b| a.finished_ms.total_cmp(&b.finished_ms));
        unexplained.sort_unstable();
        Ok(Outcome {
            chunks,
            diffs: narrow::reconcile(diffs),
            rows_old,
            rows_new,
            unexplained,
            duration: started.elapsed(),
        })
    }
    .instrument(span)
    .await
}

/// `WHERE` text of a chunk on one side.
fn range_sql(side: &SideSql, lower: Option<&[Value]>, upper: Option<&[Value]>) -> String {
    keyrange::range_sql(side, lower, upper).unwrap_or_else(|| "1=1".into())
}

struct Worker {
    compiled: Arc<Compiled>,
    old: Conn,
    new: Conn,
    rx: Arc<Mutex<mpsc::Receiver<Chunk>>>,
    results: mpsc::UnboundedSender<ChunkResult>,
    budget: Arc<AtomicUsize>,
    started: Instant,
}

impl Worker {
    async fn run(mut self) -> Result<(), VerifyError> {
        let result = self.work().await;
        for c in [&mut self.old, &mut self.new] {
            let _ = c.query_drop("COMMIT").await;
        }
        let _ = self.old.disconnect().await;
        let _ = self.new.disconnect().await;
        result
    }

    async fn work(&mut self) -> Result<(), VerifyError> {
        loop {
            let chunk = { self.rx.lock().await.recv().await };
            let Some(chunk) = chunk else { return Ok(()) };
            let t0 = Instant::now();
            let c = &self.compiled;
            let old_range = range_sql(&c.old, chunk.lower.as_deref(), chunk.upper.as_deref());
            let new_range = range_sql(&c.new, chunk.lower.as_deref(), chunk.upper.as_deref());
            let clients = c.client_columns();
            let (rows_old, rows_new, mut diffs, differ) = if clients == 0 {
                let (o, n) = futures_util::future::join(
                    aggregate(&mut self.old, &c.old, Side::Old, &old_range),
                    aggregate(&mut self.new, &c.new, Side::New, &new_range),
                )
                .await;
                let (o, n) = (o?, n?);
                if o == n {
                    (o.0, n.0, Vec::new(), false)
                } else {
                    let (po, pn) = self.prints(&old_range, &new_range).await?;
                    (o.0, n.0, narrow::diff_rows(po, pn), true)
                }
            } else {
                let (po, pn) = self.prints(&old_range, &new_range).await?;
                let (ro, rn) = (po.len() as u64, pn.len() as u64);
                (ro, rn, narrow::diff_rows(po, pn), ro != rn)
            };
            // The narrowing matches rows by their key's text: two distinct keys that print
            // alike (FLOAT) hide a row from it, but not from the counts and checksums.
            let unexplained = differ && diffs.is_empty();
            if !diffs.is_empty() {
                narrow::fetch_all_values(
                    &mut self.old,
                    &mut self.new,
                    &self.compiled,
                    &mut diffs,
                    &self.budget,
                )
                .await?;
            }
            let took = t0.elapsed();
            let record = ChunkRecord {
                chunk: chunk.index,
                rows_old,
                rows_new,
                equal: diffs.is_empty() && !unexplained,
                finished_ms: self.started.elapsed().as_secs_f64() * 1e3,
                took_ms: took.as_secs_f64() * 1e3,
            };
            debug!(
                chunk = chunk.index,
                rows_old,
                equal = record.equal,
                ms = record.took_ms,
                "chunk compared"
            );
            let result = ChunkResult {
                record,
                diffs,
                unexplained,
            };
            if self.results.send(result).is_err() {
                return Ok(());
            }
        }
    }

    async fn prints(
        &mut self,
        old_range: &str,
        new_range: &str,
    ) -> Result<(Vec<narrow::RowPrint>, Vec<narrow::RowPrint>), VerifyError> {
        let c = &self.compiled;
        let n = c.client_columns();
        let (po, pn) = futures_util::future::join(
            narrow::fetch_prints(&mut self.old, &c.old, Side::Old, old_range, n),
            narrow::fetch_prints(&mut self.new, &c.new, Side::New, new_range, n),
        )
        .await;
        Ok((po?, pn?))
    }
}

/// `(COUNT(*), SUM(row hash))` of a chunk on one side.
async fn aggregate(
    conn: &mut Conn,
    side_sql: &SideSql,
    side: Side,
    range: &str,
) -> Result<(u64, u64), VerifyError> {
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM({}), 0) FROM {} FORCE INDEX (PRIMARY) WHERE {range}",
        side_sql.row_hash, side_sql.table
    );
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(VerifyError::sql(side, "checksumming a chunk"))?;
    let Some(row) = row else {
        return Err(VerifyError::BadValue {
            side,
            what: "checksum row",
            value: "no row".into(),
        });
    };
    let mut v = row
        .unwrap_raw()
        .into_iter()
        .map(|v| v.unwrap_or(Value::NULL));
    let count = narrow::parse_u64(v.next().unwrap_or(Value::NULL), side, "row count")?;
    let hash = narrow::parse_u64(v.next().unwrap_or(Value::NULL), side, "chunk hash")?;
    Ok((count, hash))
}
