//! The binlog stream of a sync, reconnecting after a lost connection or a restarted source
//! from the last commit read (the router drops what it already sent).

use crate::event::SourceEvent;
use crate::position::{Position, StartPosition};
use crate::source::stream::{BinlogSource, SourceConfig, SourceError};
use std::time::{Duration, Instant};
use tracing::{info, warn};

struct StreamState {
    source: Option<BinlogSource>,
    cfg: SourceConfig,
    resume_at: Position,
    reconnect_for: Duration,
}

/// The events from `start` as a stream. A lost connection is retried with back-off for up to
/// `reconnect_for`; a definite error ends the stream with that error.
pub async fn open(
    mut cfg: SourceConfig,
    start: &Position,
    reconnect_for: Duration,
) -> Result<impl futures_util::Stream<Item = Result<SourceEvent, SourceError>> + Unpin, SourceError>
{
    cfg.start = StartPosition::File {
        file: start.file.clone(),
        offset: start.offset,
    };
    let source = BinlogSource::connect(cfg.clone()).await?;
    let state = StreamState {
        source: Some(source),
        cfg,
        resume_at: start.clone(),
        reconnect_for,
    };
    Ok(Box::pin(futures_util::stream::unfold(
        Some(state),
        |state| async move {
            let mut state = state?;
            loop {
                let source = state.source.as_mut()?;
                match source.next().await {
                    Ok(Some(ev)) => {
                        if let SourceEvent::Commit { pos, .. } | SourceEvent::Ddl { pos, .. } = &ev
                        {
                            state.resume_at = pos.clone();
                        }
                        return Some((Ok(ev), Some(state)));
                    }
                    // The server closed the stream (a clean shutdown): it may come back.
                    Ok(None) => {
                        warn!(position = %state.resume_at, "the source ended the binlog stream; reconnecting");
                        state.source = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        match reconnect(&state.cfg, &state.resume_at, state.reconnect_for).await {
                            Ok(s) => state.source = Some(s),
                            Err(e) => return Some((Err(e), None)),
                        }
                    }
                    Err(e) if e.is_transient() => {
                        warn!(error = %e, position = %state.resume_at, "binlog connection lost; reconnecting from the last commit");
                        state.source = None;
                        match reconnect(&state.cfg, &state.resume_at, state.reconnect_for).await {
                            Ok(s) => state.source = Some(s),
                            Err(e) => return Some((Err(e), None)),
                        }
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        },
    )))
}

async fn reconnect(
    cfg: &SourceConfig,
    at: &Position,
    for_: Duration,
) -> Result<BinlogSource, SourceError> {
    let mut cfg = cfg.clone();
    cfg.start = StartPosition::File {
        file: at.file.clone(),
        offset: at.offset,
    };
    let deadline = Instant::now() + for_;
    let mut backoff = Duration::from_millis(100);
    loop {
        match BinlogSource::connect(cfg.clone()).await {
            Ok(s) => {
                info!(position = %at, "binlog stream resumed");
                return Ok(s);
            }
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                warn!(error = %e, "binlog reconnect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}
