//! XA branches prepared on the source before a fresh sync starts.
//!
//! A prepared branch's rows are in the binlog at its `XA PREPARE`. One prepared before the
//! sync's start position and committed after it reaches the target through neither path: the
//! stream starts after its rows and its `XA COMMIT` carries none, and a backfill read while it
//! is still prepared sees the rows as they were before it. So a fresh start waits (briefly)
//! until no branch is prepared, once before it makes the target tables (a refusal leaves
//! nothing behind) and once right after it reads its start position; branches that ended
//! before the backfill reads are seen by the backfill. A user who may not list prepared branches
//! (`XA RECOVER` needs `XA_RECOVER_ADMIN` on MySQL) gets a warning and the sync starts.

use super::{sql_err, SyncError};
use crate::position::Position;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The XIDs (`gtrid` + `bqual` as text) of branches prepared on the server now; `None` when
/// the user may not list them.
pub(crate) async fn prepared_branches(src: &mut Conn) -> Option<Vec<String>> {
    match src.query::<Row, _>("XA RECOVER").await {
        Ok(rows) => Some(
            rows.into_iter()
                .map(|r| {
                    let data = r
                        .get_opt::<Vec<u8>, _>(3)
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&data).into_owned()
                })
                .collect(),
        ),
        Err(e) => {
            warn!(error = %e, "cannot list prepared XA transactions on the source (grant XA_RECOVER_ADMIN on MySQL): a transaction prepared before the sync starts and committed after it would be missed");
            None
        }
    }
}

/// Wait up to `wait` until no XA branch is prepared on the source (or the user may not list
/// them). With `read_position`, the source's binlog position read just before the last check
/// (`None` without: a snapshot backfill takes its own position afterwards).
pub(crate) async fn when_none_prepared(
    src: &mut Conn,
    wait: Duration,
    read_position: bool,
) -> Result<Option<Position>, SyncError> {
    let deadline = Instant::now() + wait;
    let mut logged = false;
    loop {
        let pos = if read_position {
            Some(
                crate::cutover::server_position(src)
                    .await
                    .map_err(sql_err("reading the source's binlog position"))?,
            )
        } else {
            None
        };
        let xids = match prepared_branches(src).await {
            Some(x) if !x.is_empty() => x,
            _ => return Ok(pos),
        };
        if Instant::now() >= deadline {
            return Err(SyncError::PreparedXa {
                xids: xids.join(", "),
                waited: wait,
            });
        }
        if !logged {
            info!(xids = %xids.join(", "), "waiting for XA transactions prepared on the source to end");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
