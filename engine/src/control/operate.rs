//! Operating a migration: the throttler, the controller, the listeners and the metrics feed,
//! started and stopped together for `migrate` (one field, [`OperateConfig`], on its config).
//!
//! Order: [`Operations::bind`] opens the listeners before anything changes (a socket in use
//! stops the run early); [`Operations::start`] starts the throttler, the controller and the
//! metrics feed once the pipeline's counters exist, and returns the copy's controls;
//! [`Operations::aborted`] resolves when the operator or a critical load asks to abort;
//! [`Operations::finish`] stops everything and removes the heartbeat row.

use super::server::{self, ControlServer, ServeConfig};
use super::{ControlError, Controller, Controls, Job, Request};
use crate::apply::ApplyStats;
use crate::conn::Endpoint;
use crate::copy::{CopyControl, CopyStats};
use crate::metrics::{self, MetricSources, Metrics};
use crate::migrate::router::RouterStats;
use crate::migrate::Progress;
use crate::throttle::{self, show_limits, ThrottleConfig, ThrottleState, Throttler};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info_span, warn, Instrument};

/// Throttling, live control and metrics of a migration.
#[derive(Debug, Clone, Default)]
pub struct OperateConfig {
    /// What throttles the copy.
    pub throttle: ThrottleConfig,
    /// The control socket; `None`: `/tmp/rowshift-<db>.<table>.sock` (or, when another run
    /// holds that one, the same with `.<pid>` before `.sock`).
    pub control_socket: Option<PathBuf>,
    /// No control socket at all.
    pub no_control_socket: bool,
    /// The HTTP listener (status, commands, `/metrics`).
    pub http: Option<SocketAddr>,
    /// Allow a non-loopback HTTP address.
    pub http_allow_remote: bool,
    /// Copy nice ratio: rest `ratio * t` after a chunk that took `t`.
    pub nice_ratio: f64,
}

/// The running operations of one migration.
pub struct Operations {
    config: OperateConfig,
    server: Option<ControlServer>,
    requests: Option<mpsc::Receiver<Request>>,
    metrics: Arc<Metrics>,
    abort_tx: mpsc::Sender<String>,
    abort_rx: mpsc::Receiver<String>,
    tasks: Vec<JoinHandle<()>>,
    heartbeat: Option<(Endpoint, String, String)>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// Open the control listeners of `db`.`table`.
    pub async fn bind(
        config: &OperateConfig,
        db: &str,
        table: &str,
    ) -> Result<Operations, ControlError> {
        let metrics = Metrics::new(&format!("{db}.{table}"));
        let (req_tx, req_rx) = mpsc::channel(16);
        let socket = if config.no_control_socket {
            None
        } else {
            Some(
                config
                    .control_socket
                    .clone()
                    .unwrap_or_else(|| server::default_socket_path(db, table)),
            )
        };
        let serve = ServeConfig {
            socket: socket.clone(),
            http: config.http,
            allow_remote: config.http_allow_remote,
        };
        let server = match server::start(&serve, req_tx.clone(), metrics.clone()).await {
            Ok(s) => s,
            // The default path in use (another run of the same table name, e.g. on another
            // server) or not ours to replace: fall back to a path of this process.
            Err(ControlError::SocketInUse { path } | ControlError::Socket { path, .. })
                if config.control_socket.is_none() =>
            {
                let alt = pid_socket_path(&path);
                warn!(busy = %path.display(), socket = %alt.display(), "the default control socket is in use; listening on another path");
                let serve = ServeConfig {
                    socket: Some(alt),
                    ..serve
                };
                server::start(&serve, req_tx.clone(), metrics.clone()).await?
            }
            Err(e) => return Err(e),
        };
        let (abort_tx, abort_rx) = mpsc::channel(4);
        Ok(Operations {
            config: config.clone(),
            server: Some(server),
            requests: Some(req_rx),
            metrics,
            abort_tx,
            abort_rx,
            tasks: Vec::new(),
            heartbeat: None,
        })
    }

    /// The control socket, when listening.
    pub fn socket(&self) -> Option<PathBuf> {
        self.server
            .as_ref()
            .and_then(|s| s.socket().map(|p| p.to_path_buf()))
    }

    /// The metrics (for the cut-over's lock time).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Start the throttler, the controller and the metrics feed; returns the copy's controls
    /// and the controls the migration reads (postponed cut-over).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        job: Job,
        source: &Endpoint,
        db: &str,
        table: &str,
        progress: watch::Receiver<Progress>,
        copy: Arc<CopyStats>,
        router: Arc<RouterStats>,
        apply: Arc<ApplyStats>,
        postpone_flag: Option<PathBuf>,
        chunk_time: Duration,
    ) -> (CopyControl, Controls) {
        let (state_tx, state_rx) = watch::channel(ThrottleState::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let check_errors = Arc::new(AtomicU64::new(0));
        let mut throttler = Throttler {
            config: self.config.throttle.clone(),
            source: source.clone(),
            db: db.to_string(),
            table: table.to_string(),
            commands: cmd_rx,
            state: state_tx,
            check_errors: check_errors.clone(),
        };
        if !self.config.throttle.replicas.is_empty() {
            self.heartbeat = Some((source.clone(), db.to_string(), table.to_string()));
        }
        let abort = self.abort_tx.clone();
        self.tasks.push(tokio::spawn(async move {
            let e = throttler.run().await;
            // The abort is queued before the throttle state closes (dropping the throttler):
            // a migration waiting on that state sees the abort first.
            let _ = abort.send(e.to_string()).await;
            drop(throttler);
        }));
        let requests = self.requests.take().unwrap_or_else(|| mpsc::channel(1).1);
        let (controller, controls) = Controller::new(
            job,
            requests,
            cmd_tx,
            state_rx.clone(),
            progress,
            copy.clone(),
            postpone_flag,
            chunk_time,
            show_limits(&self.config.throttle.max_load),
            self.abort_tx.clone(),
        );
        self.tasks.push(tokio::spawn(controller.run()));
        let (times_tx, times_rx) = mpsc::unbounded_channel();
        self.tasks.push(tokio::spawn(
            metrics::feed(
                self.metrics.clone(),
                MetricSources {
                    copy,
                    router,
                    apply,
                    throttle: state_rx,
                    throttle_errors: check_errors,
                    chunk_times: times_rx,
                },
            )
            .instrument(info_span!("metrics")),
        ));
        let copy_control = CopyControl {
            run: controls.run.clone(),
            chunk: controls.chunk.clone(),
            nice_ratio: self.config.nice_ratio.max(0.0),
            chunk_times: Some(times_tx),
            gentle: watch::channel(false).1,
            catch_up: None,
        };
        (copy_control, controls)
    }

    /// Resolves with the reason when an abort is asked (operator, critical load); never
    /// otherwise.
    pub async fn aborted(&mut self) -> String {
        match self.abort_rx.recv().await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Stop the throttler, the controller, the listeners and the feed; remove the heartbeat.
    pub async fn finish(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.server = None;
        if let Some((source, db, table)) = self.heartbeat.take() {
            throttle::drop_heartbeat(&source, &db, &table).await;
        }
    }
}

impl Drop for Operations {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `/tmp/rowshift-db.t.sock` → `/tmp/rowshift-db.t.<pid>.sock`.
pub fn pid_socket_path(path: &std::path::Path) -> PathBuf {
    let s = path.display().to_string();
    let base = s.strip_suffix(".sock").unwrap_or(&s);
    PathBuf::from(format!("{base}.{}.sock", std::process::id()))
}
