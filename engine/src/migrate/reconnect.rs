//! Surviving lost connections inside one `migrate` run (issue 8): a server restart, a network
//! cut or a `KILL` must not end the migration while the server comes back within
//! `--reconnect-timeout`.
//!
//! - [`lost_connection`] tells a lost connection (worth waiting for) from a definite error,
//!   anywhere in an error's chain.
//! - [`retry_lost`] runs a step again, with back-off, while it fails with a lost connection.
//! - [`open_stream`] is the binlog stream that reconnects from the last commit it read
//!   ([`crate::source::reconnect`], shared with `sync`).
//! - [`MarkerConn`] writes drain markers over a connection that is re-opened when lost.
//!
//! Every retry is logged with `tracing::warn!` and its reason; past the timeout the step fails
//! with [`super::MigrateError::ServerGone`], which keeps the shadow and the checkpoint so that
//! `--resume` continues.

use super::router::RouterCmd;
use super::{MigrateConfig, MigrateError};
use crate::conn::Endpoint;
use crate::cutover;
use crate::event::SourceEvent;
use crate::position::Position;
use crate::source::reconnect::chain_is_lost;
pub use crate::source::reconnect::{error_chain, is_lost, StreamError, MAX_BACKOFF};
use crate::source::stream::SourceConfig;
use mysql_async::prelude::Queryable;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// True when `e` or any error in its chain is a lost connection or a server that could not be
/// reached (see [`is_lost`]), a statement the server interrupted (1317: a shutting-down server
/// ends running statements so, before it closes the connection), or a binlog stream that failed
/// that way.
pub fn lost_connection(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if chain_is_lost(err) || is_interrupted(err) {
            return true;
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

/// True for "query execution was interrupted" (1317).
fn is_interrupted(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<mysql_async::Error>(),
        Some(mysql_async::Error::Server(s)) if s.code == 1317
    )
}

/// The binlog stream from `start` (see [`crate::source::reconnect`]), reconnecting from the
/// last commit read for up to `timeout`.
pub async fn open_stream(
    cfg: SourceConfig,
    start: &Position,
    timeout: Duration,
) -> Result<impl futures_util::Stream<Item = Result<SourceEvent, StreamError>> + Unpin, MigrateError>
{
    Ok(crate::source::reconnect::open(cfg, start, timeout).await?)
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
        .map_err(|_| MigrateError::RouterStopped)?;
    conn.query_drop(format!("INSERT INTO {sentry} (id) VALUES ({token})"))
        .await
        .map_err(|source| MigrateError::Sql {
            step: "writing a drain marker",
            source,
        })?;
    rx.await.map_err(|_| MigrateError::RouterStopped)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn interrupted_statements_count_as_lost() {
        // Shutdown: running statements get 1317, then the connection closes.
        assert!(lost_connection(&server_error(1317)));
        assert!(lost_connection(&server_error(1053)));
        // A refused statement is not retried.
        assert!(!lost_connection(&server_error(1064)));
        // Inside the verification's lock error, as the restart test met it.
        let lock = |code| crate::verify::VerifyError::Lock {
            tables: "`d`.`t`".into(),
            attempts: 1,
            source: server_error(code),
        };
        assert!(lost_connection(&lock(1317)));
        assert!(!lost_connection(&lock(1205)));
    }
}
