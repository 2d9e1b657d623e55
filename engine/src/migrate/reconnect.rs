//! Surviving lost connections inside one `migrate` run (issue 8): a server restart, a network
//! cut or a `KILL` must not end the migration while the server comes back within
//! `--reconnect-timeout`.
//!
//! - [`lost_connection`] tells a lost connection (worth waiting for) from a definite error,
//!   anywhere in an error's chain.
//! - [`retry_lost`] runs a step again, with back-off, while it fails with a lost connection.
//! - [`open_stream`] is the binlog stream that reconnects from the last commit it read (also
//!   after a restart: the server starts a new binlog file, old positions stay valid).
//! - [`MarkerConn`] writes drain markers over a connection that is re-opened when lost.
//!
//! Every retry is logged with `tracing::warn!` and its reason; past the timeout the step fails
//! with [`super::MigrateError::ServerGone`], which keeps the shadow and the checkpoint so that
//! `--resume` continues.

use super::router::RouterCmd;
use super::{MigrateConfig, MigrateError};
use crate::conn::{ConnError, Endpoint};
use crate::cutover;
use crate::event::SourceEvent;
use crate::position::{Position, StartPosition};
use crate::source::stream::{BinlogSource, SourceConfig, SourceError};
use mysql_async::prelude::Queryable;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

/// True when `e` or any error in its chain is a lost connection or a server that could not be
/// reached (see [`is_lost`]), or a binlog stream that failed that way.
pub fn lost_connection(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(m) = err.downcast_ref::<mysql_async::Error>() {
            if is_lost(m) {
                return true;
            }
        }
        if let Some(ConnError::Connect { .. }) = err.downcast_ref::<ConnError>() {
            return true;
        }
        if let Some(s) = err.downcast_ref::<SourceError>() {
            if s.is_transient() {
                return true;
            }
        }
        match err.downcast_ref::<StreamError>() {
            Some(StreamError::GaveUp { .. }) => return true,
            Some(StreamError::Source(s)) if lost_connection(s) => return true,
            _ => {}
        }
        if let Some(c) = err.downcast_ref::<crate::cutover::CutoverError>() {
            if c.is_lost_connection() {
                return true;
            }
        }
        match err.downcast_ref::<MigrateError>() {
            Some(MigrateError::ServerGone { .. }) => return true,
            Some(MigrateError::Stream(s)) if lost_connection(s) => return true,
            _ => {}
        }
        cur = err.source();
    }
    false
}

/// Bookkeeping of retries after lost connections: back-off (100 ms doubling to 5 s) and the
/// deadline, counted from the first loss.
pub struct Retry {
    what: &'static str,
    timeout: Duration,
    first_loss: Option<Instant>,
    backoff: Duration,
    attempt: u32,
}

impl Retry {
    /// Retries of step `what` for up to `timeout`.
    pub fn new(what: &'static str, timeout: Duration) -> Retry {
        Retry {
            what,
            timeout,
            first_loss: None,
            backoff: Duration::from_millis(100),
            attempt: 0,
        }
    }

    /// After a failure: `Err(e)` when `e` is not a lost connection, or
    /// [`MigrateError::ServerGone`] when the deadline passed; otherwise log the reason, wait
    /// the back-off and return `Ok` (try again).
    pub async fn after(&mut self, e: MigrateError) -> Result<(), MigrateError> {
        if !lost_connection(&e) {
            return Err(e);
        }
        let since = *self.first_loss.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.timeout {
            return Err(MigrateError::ServerGone {
                what: self.what,
                waited: since.elapsed(),
                last: Box::new(e),
            });
        }
        self.attempt += 1;
        warn!(step = self.what, attempt = self.attempt, error = %error_chain(&e), "connection lost; retrying");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

/// Run `op` until it succeeds or fails with something other than a lost connection; lost
/// connections are retried as [`Retry`] says.
pub async fn retry_lost<T, E, F, Fut>(
    what: &'static str,
    timeout: Duration,
    mut op: F,
) -> Result<T, MigrateError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<MigrateError>,
{
    let mut retry = Retry::new(what, timeout);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => retry.after(e.into()).await?,
        }
    }
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

/// Errors of the reconnecting binlog stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The source failed (the message shows the error's causes: the router keeps it as text).
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

struct StreamState {
    source: Option<BinlogSource>,
    cfg: SourceConfig,
    resume_at: Position,
    timeout: Duration,
}

/// The binlog stream from `start`, as a `Stream` of events. A lost connection (network, server
/// restart, `KILL` of the replica thread, the stream ending because the server shut down) is
/// retried with back-off from the last commit position read, for up to `timeout`: the events
/// of a transaction read only in part are sent again, which the idempotent apply absorbs. After
/// a restart the server writes a new binlog file; the old file and offsets stay valid and the
/// server's dump thread moves on to the new file by itself (on MySQL with GTIDs the decoder
/// learns the GTID state by reading the file from its start). A definite error ends the
/// stream with the error.
pub async fn open_stream(
    cfg: SourceConfig,
    start: &Position,
    timeout: Duration,
) -> Result<impl futures_util::Stream<Item = Result<SourceEvent, StreamError>> + Unpin, MigrateError>
{
    let source = retry_lost("starting the binlog stream", timeout, || async {
        BinlogSource::connect(cfg.clone())
            .await
            .map_err(StreamError::Source)
    })
    .await?;
    let state = StreamState {
        source: Some(source),
        cfg,
        resume_at: start.clone(),
        timeout,
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
                        }
                        return Some((Ok(ev), Some(state)));
                    }
                    // A blocking dump never ends by itself: the server closed it (shutdown).
                    Ok(None) => "the server ended the binlog stream".to_string(),
                    Err(e) if lost_connection(&e) => error_chain(&e),
                    Err(e) => return Some((Err(StreamError::Source(e)), None)),
                };
                warn!(reason = %reason, position = %state.resume_at, "binlog connection lost; reconnecting from the last commit");
                if let Some(old) = state.source.take() {
                    // Do not wait long for a dead server to answer the close.
                    let _ = tokio::time::timeout(Duration::from_secs(1), old.close()).await;
                }
                match reconnect(&state.cfg, &state.resume_at, state.timeout).await {
                    Ok(s) => state.source = Some(s),
                    Err(e) => return Some((Err(e), None)),
                }
            }
        },
    )))
}

/// Connect again at `at`, with back-off, for up to `timeout`.
async fn reconnect(
    cfg: &SourceConfig,
    at: &Position,
    timeout: Duration,
) -> Result<BinlogSource, StreamError> {
    let mut cfg = cfg.clone();
    cfg.start = StartPosition::File {
        file: at.file.clone(),
        offset: at.offset,
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match BinlogSource::connect(cfg.clone()).await {
            Ok(s) => {
                info!(position = %at, "binlog stream resumed");
                return Ok(s);
            }
            Err(e) if lost_connection(&e) && started.elapsed() < timeout => {
                warn!(error = %error_chain(&e), position = %at, "binlog reconnect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) if lost_connection(&e) => {
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

/// The connection that writes drain markers into the sentry table, re-opened when lost.
pub struct MarkerConn {
    endpoint: Endpoint,
    conn: Option<mysql_async::Conn>,
    timeout: Duration,
}

impl MarkerConn {
    /// A marker connection to the migration's server (connected on first use).
    pub fn new(config: &MigrateConfig) -> MarkerConn {
        MarkerConn {
            endpoint: config.endpoint.clone(),
            conn: None,
            timeout: config.reconnect_timeout,
        }
    }

    /// Close the connection.
    pub async fn disconnect(self) {
        if let Some(c) = self.conn {
            let _ = c.disconnect().await;
        }
    }
}

/// Insert a fresh token into the sentry and wait until the router has applied up to it. A lost
/// connection is retried (with a new token: an insert whose reply was lost may or may not have
/// committed) for up to the reconnect timeout.
pub async fn wait_marker(
    marker: &mut MarkerConn,
    sentry: &str,
    cmds: &mpsc::Sender<RouterCmd>,
) -> Result<(), MigrateError> {
    let mut retry = Retry::new("writing a drain marker", marker.timeout);
    loop {
        match marker_once(&marker.endpoint, &mut marker.conn, sentry, cmds).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                marker.conn = None;
                retry.after(e).await?;
            }
        }
    }
}

async fn marker_once(
    endpoint: &Endpoint,
    slot: &mut Option<mysql_async::Conn>,
    sentry: &str,
    cmds: &mpsc::Sender<RouterCmd>,
) -> Result<(), MigrateError> {
    if slot.is_none() {
        *slot = Some(endpoint.connect_raw().await?);
    }
    let Some(conn) = slot.as_mut() else {
        return Err(MigrateError::Source("no marker connection".into()));
    };
    let token = cutover::drain_token();
    let (tx, rx) = oneshot::channel();
    cmds.send(RouterCmd::WaitMarker(token, tx))
        .await
        .map_err(|_| MigrateError::Source("the router stopped".into()))?;
    conn.query_drop(format!("INSERT INTO {sentry} (id) VALUES ({token})"))
        .await
        .map_err(|source| MigrateError::Sql {
            step: "writing a drain marker",
            source,
        })?;
    rx.await
        .map_err(|_| MigrateError::Source("the router stopped".into()))?;
    // The drain is proven; a marker row left behind is harmless (the sentry is dropped at the
    // cut-over), so a failed clean-up only costs a warning.
    if let Err(e) = conn
        .query_drop(format!("DELETE FROM {sentry} WHERE id = {token}"))
        .await
    {
        warn!(error = %e, "clearing a drain marker failed; the row stays in the sentry table");
        if is_lost(&e) {
            *slot = None;
        }
    }
    Ok(())
}
