//! The binlog stream that survives lost connections, shared by `migrate` and `sync`: a
//! network cut, a restarted server, a `KILL` of the dump thread or the stream ending because
//! the server shut down are retried with back-off from the last commit position read, for up
//! to a timeout. The events of a transaction read only in part are sent again, which the
//! idempotent apply absorbs. After a restart the server writes a new binlog file; the old file
//! and offsets stay valid and the dump thread moves on to the new file by itself. A definite
//! error ends the stream with that error.

use super::stream::{BinlogSource, SourceConfig, SourceError};
use super::xa::XaHold;
use crate::conn::ConnError;
use crate::event::SourceEvent;
use crate::position::{Position, StartPosition};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Longest pause between two reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Errors of the reconnecting binlog stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The source failed (the message shows the error's causes: routers keep it as text).
    #[error("reading the binlog: {}", error_chain(.0))]
    Source(SourceError),
    /// The connection was lost and did not come back in time.
    #[error("the binlog connection was lost at {position} and could not be re-established within {waited:?} (last error: {last}); check that the server is up and reachable")]
    GaveUp {
        /// The last commit position read.
        position: String,
        /// How long rowshift tried.
        waited: Duration,
        /// The last error.
        last: String,
    },
}

/// True for a driver error that means the connection (or the server) is gone, not that the
/// statement was refused: I/O errors, driver errors (connection closed), "server has gone
/// away" (2006), "lost connection" (2013), "server shutdown in progress" (1053), "connection
/// killed" (1927).
pub fn is_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => matches!(s.code, 2006 | 2013 | 1053 | 1927),
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        _ => false,
    }
}

/// True when `e` or an error in its chain is a lost connection ([`is_lost`]), a server that
/// could not be reached, a transient binlog source error or a stream that gave up that way.
pub fn chain_is_lost(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<mysql_async::Error>()
            .is_some_and(is_lost)
            || matches!(
                err.downcast_ref::<ConnError>(),
                Some(ConnError::Connect { .. })
            )
            || err
                .downcast_ref::<SourceError>()
                .is_some_and(SourceError::is_transient)
        {
            return true;
        }
        match err.downcast_ref::<StreamError>() {
            Some(StreamError::GaveUp { .. }) => return true,
            Some(StreamError::Source(s)) if chain_is_lost(s) => return true,
            _ => {}
        }
        cur = err.source();
    }
    false
}

/// `e` and its causes, joined with ": " (driver errors hide the cause in the chain).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = err.source();
    }
    s
}

struct StreamState {
    source: Option<BinlogSource>,
    cfg: SourceConfig,
    resume_at: Position,
    /// Where a new connection starts: the GTID start until the first commit, then
    /// `resume_at`.
    restart: StartPosition,
    timeout: Duration,
    /// Connections lost to [`SourceError::Timeout`] since the last commit read: each makes
    /// the next connection twice as patient (until it reads a commit), so an event slower to
    /// arrive than the usual wait (a large one over a slow link) is not read again and again
    /// forever.
    timeouts: u32,
}

/// The binlog stream of `cfg` from `start`, as a `Stream` of events; the first connection and
/// every lost one are retried for up to `timeout`. `cfg.start` is set to `start`, unless it is
/// a GTID start (`start` is then where that GTID state was recorded, for the logs): the server
/// finds the first transaction the state lacks in its own binlog, so a run resumed on another
/// server (a promoted replica) starts right, where a file offset would point into another
/// file's bytes.
pub async fn open(
    mut cfg: SourceConfig,
    start: &Position,
    timeout: Duration,
) -> Result<impl futures_util::Stream<Item = Result<SourceEvent, StreamError>> + Unpin, StreamError>
{
    if !matches!(cfg.start, StartPosition::Gtid(_)) {
        cfg.start = StartPosition::At(start.clone());
    }
    let source = connect(&cfg, start, timeout).await?;
    let state = StreamState {
        source: Some(source),
        restart: cfg.start.clone(),
        cfg,
        resume_at: start.clone(),
        timeout,
        timeouts: 0,
    };
    Ok(Box::pin(futures_util::stream::unfold(
        Some(state),
        |state| async move {
            let mut state = state?;
            loop {
                let source = state.source.as_mut()?;
                let reason = match source.next().await {
                    Ok(Some(ev)) => {
                        if let SourceEvent::Commit { pos, .. } | SourceEvent::Ddl { pos, .. } = &ev
                        {
                            state.resume_at = pos.clone();
                            state.restart = StartPosition::At(pos.clone());
                            state.timeouts = 0;
                            if let Some(s) = state.source.as_mut() {
                                s.set_patience(1);
                            }
                        }
                        return Some((Ok(ev), Some(state)));
                    }
                    // A blocking dump never ends by itself: the server closed it (shutdown).
                    Ok(None) => "the server ended the binlog stream".to_string(),
                    Err(e) if chain_is_lost(&e) => {
                        if matches!(e, SourceError::Timeout { .. }) {
                            state.timeouts += 1;
                        }
                        error_chain(&e)
                    }
                    Err(e) => return Some((Err(StreamError::Source(e)), None)),
                };
                warn!(reason = %reason, position = %state.resume_at, "binlog connection lost; reconnecting from the last commit");
                // Prepared XA branches read before the loss stay kept: the new connection starts
                // after them.
                let mut xa = XaHold::default();
                if let Some(mut old) = state.source.take() {
                    xa = old.take_xa_hold();
                    // Do not wait long for a dead server to answer the close.
                    let _ = tokio::time::timeout(Duration::from_secs(1), old.close()).await;
                }
                let mut cfg = state.cfg.clone();
                cfg.start = state.restart.clone();
                match connect(&cfg, &state.resume_at, state.timeout).await {
                    Ok(mut s) => {
                        // No useful cap: an event that takes longer than any cap would be
                        // read again for ever (2^16 × the usual wait is a day).
                        let patience = 1u32 << state.timeouts.min(16);
                        info!(position = %state.resume_at, patience, "binlog stream resumed");
                        s.set_patience(patience);
                        s.keep_xa_hold(xa);
                        state.source = Some(s)
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        },
    )))
}

/// Connect `cfg` (which starts at `at`), with back-off, for up to `timeout`.
async fn connect(
    cfg: &SourceConfig,
    at: &Position,
    timeout: Duration,
) -> Result<BinlogSource, StreamError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match BinlogSource::connect(cfg.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) if chain_is_lost(&e) && started.elapsed() < timeout => {
                warn!(error = %error_chain(&e), position = %at, "binlog connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) if chain_is_lost(&e) => {
                return Err(StreamError::GaveUp {
                    position: at.to_string(),
                    waited: started.elapsed(),
                    last: error_chain(&e),
                })
            }
            Err(e) => return Err(StreamError::Source(e)),
        }
    }
}
