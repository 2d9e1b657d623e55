//! Live control of a running migration (design.md section 7): the operator's commands, the
//! [`Controller`] that carries them out, and the listeners in [`server`] (a Unix socket and an
//! optional HTTP port).
//!
//! Commands reach the migration as typed [`Request`]s on a channel; the controller owns the
//! operator's settings and publishes them on `watch` channels that the copy and the migration
//! read (pause and throttle → the copy's run gate; chunk size; postponed cut-over; abort).
//! Nothing else is shared but the pipeline's atomic counters, read for `status`.
//!
//! Protocol on the socket: one JSON object per line, `{"cmd":"pause"}` or
//! `{"cmd":"chunk-size","arg":"500"}`; one JSON line back, `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`. Over HTTP the same commands are `POST /pause`,
//! `POST /chunk-size` (body `500`, or `?arg=500`), `GET /status`, and `GET /metrics`.
//!
//! | command | effect |
//! | --- | --- |
//! | `status` | phase, rows copied / estimate, events, lag, throttle state and reason, chunk size, elapsed, ETA |
//! | `pause` / `resume` | hold / release the copy before its next chunk |
//! | `throttle` / `unthrottle` | the operator's throttle signal |
//! | `chunk-size N` / `chunk-time-ms N` | rows per chunk / target chunk duration (`chunk-size auto` returns to the configured time) |
//! | `max-load Var=N,...` | new load limits for the throttler |
//! | `postpone` / `cut-over` | hold the cut-over / release a postponed one (deletes the flag file) |
//! | `abort` | stop before the cut-over; helpers dropped, the original table untouched |
//!
//! The same controller serves `rowshift sync` ([`Job::Sync`]): there `abort` stops the sync and
//! keeps its checkpoint, `postpone` / `cut-over` are refused (`rowshift promote` is a sync's
//! cut-over), and `status` adds the sync's phase and positions under `"sync"`.

pub mod operate;
pub mod server;

use crate::copy::{ChunkSize, CopyStats};
use crate::migrate::Progress;
use crate::throttle::{parse_limits, show_limits, ThrottleCmd, ThrottleState};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, info_span, Instrument};

/// Errors of the control interface.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A command could not be read.
    #[error("{0}")]
    BadCommand(String),
    /// The control socket could not be opened.
    #[error("cannot listen on the control socket {path}: {source}; pass --control-socket with another path")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another process already listens on the control socket.
    #[error("another rowshift process is listening on the control socket {path} (a migration of the same table is running?); stop it or pass --control-socket with another path")]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket path is too long for a Unix socket.
    #[error("the control socket path {path} is longer than a Unix socket allows (107 bytes); pass --control-socket with a shorter path")]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
    },
    /// The HTTP listener could not be opened.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A non-loopback HTTP address without `--http-allow-remote`.
    #[error("--http {addr} is not a loopback address: the control port has no authentication, so rowshift binds it to 127.0.0.1 unless --http-allow-remote is given")]
    RemoteRefused {
        /// The address.
        addr: std::net::SocketAddr,
    },
}

/// An operator's command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Report the state.
    Status,
    /// Hold the copy before its next chunk.
    Pause,
    /// Release a paused copy.
    Resume,
    /// Throttle the copy (operator signal).
    Throttle,
    /// Remove the operator's throttle signal.
    Unthrottle,
    /// Chunk size: rows, or back to the configured time.
    ChunkSize(ChunkSize),
    /// New load limits.
    MaxLoad(String),
    /// Release a postponed cut-over.
    CutOver,
    /// Hold the cut-over until `cut-over`.
    Postpone,
    /// Abort the migration before the cut-over.
    Abort,
}

/// The job a controller serves: its replies speak of what that job does.
#[derive(Debug, Clone)]
pub enum Job {
    /// `rowshift migrate`.
    Migrate,
    /// `rowshift sync` (and the sync inside `rowshift promote`), with its own progress.
    Sync(watch::Receiver<crate::sync::SyncProgress>),
}

/// The reply to `postpone` / `cut-over` sent to a sync.
pub const SYNC_HAS_NO_CUT_OVER: &str = "a sync has no cut-over to postpone or release: `rowshift promote` is the sync's cut-over (it stops the writes or waits for them to stop, drains, verifies and answers GO / NO-GO)";

/// Every command name, for help and errors.
pub const COMMANDS: &str = "status, pause, resume, throttle, unthrottle, chunk-size N|auto, chunk-time-ms N, max-load Var=N[,Var=N], cut-over, postpone, abort";

impl Command {
    /// A command from its name and argument.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Command, ControlError> {
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        let number = |what: &str| -> Result<u64, ControlError> {
            let a = arg.ok_or_else(|| {
                ControlError::BadCommand(format!("{name} needs a number ({what})"))
            })?;
            match a.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ControlError::BadCommand(format!(
                    "{name}: {a:?} is not a positive whole number ({what})"
                ))),
            }
        };
        let no_arg = |c: Command| match arg {
            None => Ok(c),
            Some(a) => Err(ControlError::BadCommand(format!(
                "{name} takes no argument (got {a:?})"
            ))),
        };
        match name {
            "status" => no_arg(Command::Status),
            "pause" => no_arg(Command::Pause),
            "resume" => no_arg(Command::Resume),
            "throttle" => no_arg(Command::Throttle),
            "unthrottle" => no_arg(Command::Unthrottle),
            "chunk-size" if arg == Some("auto") => Ok(Command::ChunkSize(ChunkSize::Auto)),
            "chunk-size" => Ok(Command::ChunkSize(ChunkSize::Rows(number("rows")?))),
            "chunk-time-ms" => Ok(Command::ChunkSize(ChunkSize::TimeMs(number(
                "milliseconds",
            )?))),
            "max-load" => {
                let text = arg.unwrap_or_default();
                parse_limits(text).map_err(|e| ControlError::BadCommand(e.to_string()))?;
                Ok(Command::MaxLoad(text.to_string()))
            }
            "cut-over" => no_arg(Command::CutOver),
            "postpone" => no_arg(Command::Postpone),
            "abort" => no_arg(Command::Abort),
            other => Err(ControlError::BadCommand(format!(
                "unknown command {other:?}; commands: {COMMANDS}"
            ))),
        }
    }

    /// A command from a JSON request line: `{"cmd":"chunk-size","arg":500}` (`arg` may be a
    /// string or a number; `value` is accepted for it too).
    pub fn from_json(line: &str) -> Result<Command, ControlError> {
        let v: Value = serde_json::from_str(line).map_err(|e| {
            ControlError::BadCommand(format!(
                "a request is one JSON object per line like {{\"cmd\":\"status\"}} ({e})"
            ))
        })?;
        let name = v
            .get("cmd")
            .and_then(Value::as_str)
            .ok_or_else(|| ControlError::BadCommand("the request has no \"cmd\" string".into()))?;
        let arg = match v.get("arg").or_else(|| v.get("value")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        Command::parse(name, arg.as_deref())
    }
}

/// A command with its reply channel (the reply is a JSON object with `ok`).
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// Where the reply goes.
    pub reply: oneshot::Sender<Value>,
}

/// Send `command` to the controller and wait for its reply (an error reply when the migration
/// is gone or does not answer within 10 s).
pub async fn ask(requests: &mpsc::Sender<Request>, command: Command) -> Value {
    let (tx, rx) = oneshot::channel();
    if requests.send(Request { command, reply: tx }).await.is_err() {
        return failure("the migration has ended");
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => failure("the migration has ended"),
        Err(_) => failure("the migration did not answer within 10 s (still starting?)"),
    }
}

/// `{"ok":false,"error":why}`.
pub fn failure(why: &str) -> Value {
    json!({"ok": false, "error": why})
}

/// What the migration reads from the controller.
#[derive(Debug, Clone)]
pub struct Controls {
    /// False while the copy must wait (paused or throttled).
    pub run: watch::Receiver<bool>,
    /// The chunk size.
    pub chunk: watch::Receiver<ChunkSize>,
    /// True while the operator holds the cut-over.
    pub postpone: watch::Receiver<bool>,
    /// The throttler's state: the cut-over waits while throttled.
    pub throttle: watch::Receiver<ThrottleState>,
}

/// Carries out the operator's commands for one migration.
pub struct Controller {
    /// Incoming commands.
    pub requests: mpsc::Receiver<Request>,
    /// Commands for the throttler.
    pub throttle_cmds: mpsc::Sender<ThrottleCmd>,
    /// The throttler's state.
    pub throttle: watch::Receiver<ThrottleState>,
    /// The migration's progress.
    pub progress: watch::Receiver<Progress>,
    /// The copy's counters.
    pub copy: Arc<CopyStats>,
    /// The flag file of `--postpone-cut-over`, deleted by `cut-over`.
    pub postpone_flag: Option<PathBuf>,
    /// The configured chunk time (for `status`).
    pub chunk_time: Duration,
    /// Where an abort is requested.
    pub abort: mpsc::Sender<String>,
    /// The job served.
    pub job: Job,
    run: watch::Sender<bool>,
    chunk: watch::Sender<ChunkSize>,
    postpone: watch::Sender<bool>,
    paused: bool,
    max_load: String,
}

impl Controller {
    /// A controller and the receivers the migration reads.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job: Job,
        requests: mpsc::Receiver<Request>,
        throttle_cmds: mpsc::Sender<ThrottleCmd>,
        throttle: watch::Receiver<ThrottleState>,
        progress: watch::Receiver<Progress>,
        copy: Arc<CopyStats>,
        postpone_flag: Option<PathBuf>,
        chunk_time: Duration,
        max_load: String,
        abort: mpsc::Sender<String>,
    ) -> (Controller, Controls) {
        // Closed until the throttler's first check has published a state.
        let (run, run_rx) = watch::channel(false);
        let (chunk, chunk_rx) = watch::channel(ChunkSize::Auto);
        let (postpone, postpone_rx) = watch::channel(false);
        let throttle_rx = throttle.clone();
        (
            Controller {
                requests,
                throttle_cmds,
                throttle,
                progress,
                copy,
                postpone_flag,
                chunk_time,
                abort,
                job,
                run,
                chunk,
                postpone,
                paused: false,
                max_load,
            },
            Controls {
                run: run_rx,
                chunk: chunk_rx,
                postpone: postpone_rx,
                throttle: throttle_rx,
            },
        )
    }

    /// Serve commands and follow the throttle state until cancelled.
    pub async fn run(self) {
        self.run_inner().instrument(info_span!("control")).await
    }

    async fn run_inner(mut self) {
        let mut throttle_open = true;
        let mut requests_open = true;
        loop {
            tokio::select! {
                changed = self.throttle.changed(), if throttle_open => {
                    if changed.is_err() {
                        throttle_open = false;
                    }
                    self.update_gate();
                }
                req = self.requests.recv(), if requests_open => match req {
                    Some(req) => {
                        let reply = self.handle(req.command).await;
                        let _ = req.reply.send(reply);
                    }
                    None => requests_open = false,
                },
                else => std::future::pending::<()>().await,
            }
        }
    }

    fn update_gate(&self) {
        let open = !self.paused && !self.throttle.borrow().throttled;
        self.run.send_if_modified(|v| {
            let changed = *v != open;
            *v = open;
            changed
        });
    }

    fn phase(&self) -> &'static str {
        self.progress.borrow().phase
    }

    async fn handle(&mut self, command: Command) -> Value {
        if command != Command::Status {
            info!(?command, "operator command");
        }
        let late = matches!(self.phase(), "cut-over" | "done");
        let sync = matches!(self.job, Job::Sync(_));
        match command {
            Command::Status => self.status(),
            Command::Postpone | Command::CutOver if sync => failure(SYNC_HAS_NO_CUT_OVER),
            Command::Pause => {
                self.paused = true;
                self.update_gate();
                info!("copy paused by the operator");
                self.ok("paused: the copy stops after the chunks in flight")
            }
            Command::Resume => {
                self.paused = false;
                self.update_gate();
                info!("copy resumed by the operator");
                self.ok("resumed")
            }
            Command::Throttle | Command::Unthrottle => {
                let on = command == Command::Throttle;
                if self
                    .throttle_cmds
                    .send(ThrottleCmd::Operator(on))
                    .await
                    .is_err()
                {
                    return failure("the throttler has stopped");
                }
                self.ok(if on {
                    "throttle requested (effective at the throttler's next check)"
                } else {
                    "unthrottle requested (other signals may still throttle)"
                })
            }
            Command::ChunkSize(size) => {
                let _ = self.chunk.send(size);
                self.ok("chunk size set for the next chunk")
            }
            Command::MaxLoad(text) => {
                let limits = match parse_limits(&text) {
                    Ok(l) => l,
                    Err(e) => return failure(&e.to_string()),
                };
                self.max_load = show_limits(&limits);
                if self
                    .throttle_cmds
                    .send(ThrottleCmd::MaxLoad(limits))
                    .await
                    .is_err()
                {
                    return failure("the throttler has stopped");
                }
                self.ok("max-load changed")
            }
            Command::Postpone if late => failure("too late: the cut-over has started"),
            Command::Postpone => {
                let _ = self.postpone.send(true);
                self.ok("cut-over postponed until `cut-over`")
            }
            Command::CutOver => {
                let _ = self.postpone.send(false);
                if let Some(flag) = &self.postpone_flag {
                    if flag.exists() {
                        if let Err(e) = std::fs::remove_file(flag) {
                            return failure(&format!(
                                "cannot delete the postpone flag file {}: {e}",
                                flag.display()
                            ));
                        }
                    }
                }
                self.ok("cut-over released: it runs once the copy and verification are done")
            }
            Command::Abort if sync => {
                if self
                    .abort
                    .send("aborted by the operator (ctl abort)".into())
                    .await
                    .is_err()
                {
                    return failure("the sync is not running");
                }
                self.ok("abort requested: stops the sync; the checkpoint is kept; run the same command to resume")
            }
            Command::Abort if late => failure("too late to abort: the cut-over has started"),
            Command::Abort => {
                if self
                    .abort
                    .send("aborted by the operator (ctl abort)".into())
                    .await
                    .is_err()
                {
                    return failure("the migration is not running");
                }
                self.ok("abort requested: helpers are dropped, the original table stays untouched")
            }
        }
    }

    fn ok(&self, message: &str) -> Value {
        let mut v = self.status();
        v["message"] = json!(message);
        v
    }

    fn status(&self) -> Value {
        let p = self.progress.borrow().clone();
        // Before the job publishes its first phase.
        let phase = if p.phase.is_empty() {
            "starting"
        } else {
            p.phase
        };
        let t = self.throttle.borrow().clone();
        let rows = self.copy.rows_copied.load(Ordering::SeqCst);
        let elapsed = p.elapsed.as_secs_f64();
        // The rows left (of the whole table: a resumed run's progress counts the rows copied
        // before it) at this run's rate.
        let copied = p.rows_copied.max(rows);
        let eta = if rows > 0 && p.rows_estimate > copied && elapsed > 0.0 {
            Some(((p.rows_estimate - copied) as f64 * elapsed / rows as f64).round() as u64)
        } else {
            None
        };
        let chunk = *self.chunk.borrow();
        let (chunk_mode, chunk_value) = match chunk {
            ChunkSize::Auto => ("time_ms", self.chunk_time.as_millis() as u64),
            ChunkSize::Rows(n) => ("rows", n),
            ChunkSize::TimeMs(n) => ("time_ms", n),
        };
        let postponed =
            *self.postpone.borrow() || self.postpone_flag.as_ref().is_some_and(|f| f.exists());
        let (job, sync) = match &self.job {
            Job::Migrate => ("migrate", Value::Null),
            Job::Sync(progress) => ("sync", sync_status(&progress.borrow())),
        };
        let mut v = json!({
            "ok": true,
            "job": job,
            "phase": phase,
            "rows_copied": copied,
            "rows_estimate": p.rows_estimate,
            "events": p.events,
            "skipped": p.skipped,
            "lag_secs": p.lag_secs,
            "throttled": t.throttled,
            "gentle": p.gentle,
            "throttle_reason": t.reason,
            "replica_lag_ms": t.replica_lag_ms,
            "paused": self.paused,
            "copy_open": *self.run.borrow(),
            "chunks": self.copy.chunks.load(Ordering::SeqCst),
            "chunks_in_flight": self.copy.in_flight.load(Ordering::SeqCst),
            "chunk_setting": {"mode": chunk_mode, "value": chunk_value},
            "chunk_rows": self.copy.chunk_rows.load(Ordering::Relaxed),
            "last_chunk_rows": self.copy.last_chunk_rows.load(Ordering::SeqCst),
            "last_chunk_ms": self.copy.last_chunk_micros.load(Ordering::Relaxed) / 1000,
            "max_load": self.max_load,
            "postponed": postponed,
            "elapsed_secs": (elapsed * 10.0).round() / 10.0,
            "eta_secs": eta,
        });
        if !sync.is_null() {
            v["sync"] = sync;
        }
        v
    }
}

/// The sync's own state for `status`: phase, positions, lag and counts.
fn sync_status(p: &crate::sync::SyncProgress) -> Value {
    json!({
        "phase": if p.phase.is_empty() { "starting" } else { p.phase },
        "source_position": p.source_position.as_ref().map(|x| x.to_string()),
        "applied": p.applied.as_ref().map(|c| c.to_string()),
        "lag_secs": (p.lag_secs * 10.0).round() / 10.0,
        "lag_events": p.lag_events,
        "events_read": p.events,
        "events_applied": p.events_applied,
        "backfill_rows": p.backfill_rows,
        "backfill_estimate": p.backfill_estimate,
        "backfilled": p.backfilled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            Command::from_json(r#"{"cmd":"pause"}"#).unwrap(),
            Command::Pause
        );
        assert_eq!(
            Command::from_json(r#"{"cmd":"chunk-size","arg":500}"#).unwrap(),
            Command::ChunkSize(ChunkSize::Rows(500))
        );
        assert_eq!(
            Command::from_json(r#"{"cmd":"chunk-size","value":"auto"}"#).unwrap(),
            Command::ChunkSize(ChunkSize::Auto)
        );
        assert_eq!(
            Command::parse("chunk-time-ms", Some("250")).unwrap(),
            Command::ChunkSize(ChunkSize::TimeMs(250))
        );
        assert!(Command::parse("chunk-size", Some("0")).is_err());
        assert!(Command::parse("chunk-size", None).is_err());
        assert!(Command::parse("pause", Some("x")).is_err());
        assert!(Command::parse("max-load", Some("Threads_running")).is_err());
        assert!(Command::parse("dance", None)
            .unwrap_err()
            .to_string()
            .contains("status, pause"));
        assert!(Command::from_json("pause").is_err());
    }
}
