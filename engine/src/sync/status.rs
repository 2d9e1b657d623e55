//! `rowshift status` for syncs: the checkpoint rows on the target and the source's position.

use super::ckpt::{CkptTable, Coord};
use crate::conn::Endpoint;
use crate::position::Position;

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
