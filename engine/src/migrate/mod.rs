//! `migrate`: online ALTER of one table on one server (design.md sections 2 and 4).
//!
//! 1. Preflight ([`preflight`]): binlog settings, privileges, key, foreign keys, triggers,
//!    leftovers. Nothing is changed when it fails.
//! 2. Shadow `_t_new`: `CREATE TABLE … LIKE`, then the user's ALTER, run by the server; the
//!    mapping comes from diffing the two definitions (renames parsed from the ALTER).
//! 3. The binlog stream starts at the current position, before the copy.
//! 4. The copy ([`crate::copy`]) and the router/appliers ([`router`], [`crate::apply`]) run
//!    together; changes above the copy's high-water mark are skipped.
//! 5. Catch-up: a marker row in the sentry table proves everything before it is applied.
//! 6. Cut-over ([`crate::cutover`]); the original table stays as `_t_old`.

pub mod preflight;
pub mod resume;
pub mod router;

use crate::apply::{ApplierSet, ApplyTarget};
use crate::catalog::{self, CatalogError};
use crate::checkpoint::{Checkpoint, CheckpointTable};
use crate::conn::{ConnError, Endpoint};
use crate::control::operate::Operations;
use crate::copy::{self, CopyConfig, CopyPlan, CopyStats, HighWater, KeyColumn, KeyLiteral};
use crate::cutover::{self, names, CutoverConfig, CutoverReport};
use crate::event::SourceEvent;
use crate::position::Position;
use crate::source::stream::{BinlogSource, SourceConfig};
use crate::sqlvalue::LiteralKind;
use mysql_async::prelude::Queryable;
use preflight::PreflightError;
use router::{Router, RouterCmd, RouterStats};
use rowshift_transform::mapping::Mapping;
use rowshift_transform::schema::{quote_ident, ColumnType, Flavor, TableSchema};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, info_span, warn, Instrument};

/// Errors of a migration.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Connecting failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A preflight check failed (nothing changed).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// Reading a definition failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The server refused the ALTER on the shadow table (nothing changed).
    #[error("the server rejected the ALTER: {detail}; nothing was changed (the shadow table was dropped)")]
    AlterRejected {
        /// The server's message.
        detail: String,
    },
    /// The ALTER cannot be followed by the mapping (nothing changed).
    #[error("{0}; nothing was changed")]
    Mapping(String),
    /// The copy failed.
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    /// The router or an applier failed.
    #[error(transparent)]
    Router(#[from] router::RouterError),
    /// Applier setup failed.
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    /// The binlog source failed.
    #[error("binlog source: {0}")]
    Source(String),
    /// The cut-over failed.
    #[error(transparent)]
    Cutover(#[from] cutover::CutoverError),
    /// A statement failed.
    #[error("{step}: {source}")]
    Sql {
        /// What was being done.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// An earlier run's state forbids this run.
    #[error(transparent)]
    Resume(#[from] resume::ResumeError),
    /// Writing the checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The verification could not run.
    #[error("verification before the cut-over: {0}; nothing was cut over")]
    Verify(#[from] crate::verify::VerifyError),
    /// The verification found differences.
    #[error("verification found differences between the table and its shadow, so rowshift did not cut over (the original table is untouched):\n{summary}\nFix the cause (see the report) and run again, or pass --allow-differences to cut over anyway")]
    Differences {
        /// The report's terminal summary.
        summary: String,
    },
    /// The control listeners could not be opened.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The operator or a critical load aborted the migration before the cut-over.
    #[error("{reason}; the migration stopped before the cut-over: the original table is untouched and rowshift's helper tables were dropped")]
    Aborted {
        /// Who asked and why.
        reason: String,
    },
    /// Catch-up did not finish.
    #[error("the appliers did not catch up within {0:?}: the write rate may exceed the apply rate; raise --appliers or lower the load")]
    CatchUpTimeout(Duration),
}

/// What to migrate and how.
#[derive(Debug, Clone)]
pub struct MigrateConfig {
    /// The server.
    pub endpoint: Endpoint,
    /// Database of the table.
    pub db: String,
    /// The table.
    pub table: String,
    /// The ALTER specification (what follows `ALTER TABLE t`).
    pub alter: String,
    /// `col = expression` assignments for new or changed columns.
    pub sets: Vec<String>,
    /// False for a dry run.
    pub execute: bool,
    /// Drop helper tables of an earlier run.
    pub drop_leftovers: bool,
    /// Number of appliers.
    pub appliers: usize,
    /// Copy tuning.
    pub copy: CopyConfig,
    /// Cut-over tuning.
    pub cutover: CutoverConfig,
    /// While this file exists, the cut-over waits (operator's hold).
    pub postpone_flag: Option<PathBuf>,
    /// Replica server id for the binlog connection.
    pub server_id: u32,
    /// Continue a migration from its checkpoint.
    pub resume: bool,
    /// Drop what an earlier run created (shadow, checkpoint, sentry) and stop.
    pub abort: bool,
    /// Cut over even when the verification finds differences (never the default).
    pub allow_differences: bool,
    /// Skip the verification before the cut-over.
    pub skip_verify: bool,
    /// Write the verification report here (`.json` or `.html`).
    pub verify_report: Option<PathBuf>,
    /// Throttling, live control (socket, HTTP) and metrics.
    pub operate: crate::control::operate::OperateConfig,
}

/// Live progress, published while the migration runs.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Current phase.
    pub phase: &'static str,
    /// Rows copied so far.
    pub rows_copied: u64,
    /// Estimated rows of the table.
    pub rows_estimate: u64,
    /// Row events of the table read from the binlog.
    pub events: u64,
    /// Events skipped because the copy reads them.
    pub skipped: u64,
    /// Seconds behind the source's newest event.
    pub lag_secs: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    /// The plan (printed by dry runs too).
    pub plan: String,
    /// Rows copied.
    pub rows_copied: u64,
    /// Row events applied.
    pub events: u64,
    /// Copy time.
    pub copy_time: Duration,
    /// Whole run.
    pub total_time: Duration,
    /// The cut-over, when executed.
    pub cutover: Option<CutoverReport>,
    /// The verification's summary, when it ran.
    pub verification: Option<String>,
}

fn q2(db: &str, t: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(t))
}

/// Run a migration (or a dry run), publishing progress on `progress`.
pub async fn run(
    config: MigrateConfig,
    progress: watch::Sender<Progress>,
) -> Result<MigrateReport, MigrateError> {
    let span = info_span!("migrate", db = %config.db, table = %config.table);
    run_inner(config, progress).instrument(span).await
}

async fn run_inner(
    config: MigrateConfig,
    progress: watch::Sender<Progress>,
) -> Result<MigrateReport, MigrateError> {
    let started = Instant::now();
    let mut conn = config.endpoint.connect_raw().await?;
    let (flavor, version) =
        catalog::flavor(&mut conn)
            .await
            .map_err(|source| MigrateError::Sql {
                step: "reading the server version",
                source,
            })?;
    info!(%version, "connected");
    let set_phase = |phase: &'static str| {
        progress.send_modify(|p| p.phase = phase);
    };
    set_phase("preflight");
    let old = catalog::load_table(&mut conn, flavor, &config.db, &config.table).await?;
    preflight::table_shape(&mut conn, &old).await?;
    preflight::binlog_settings(&mut conn).await?;
    preflight::replication_privileges(&mut conn).await?;
    let renames = rowshift_transform::mapping::parse_renames(&config.alter)
        .map_err(|e| MigrateError::Mapping(e.to_string()))?;
    let options = resume::options_fingerprint(&config.alter, &config.sets);
    if config.abort {
        let dropped = resume::abort(&mut conn, &config.db, &config.table).await?;
        return Ok(MigrateReport::note(
            format!(
                "aborted: dropped {}; the table itself and any old table are untouched",
                if dropped.is_empty() {
                    "nothing (no earlier run found)".to_string()
                } else {
                    dropped.join(", ")
                }
            ),
            started,
        ));
    }
    let resumed = match resume::inspect(&mut conn, &config.db, &config.table).await? {
        resume::PriorState::Fresh if config.resume => {
            return Err(resume::ResumeError::NothingToResume {
                db: config.db.clone(),
                table: config.table.clone(),
                ckpt: names::checkpoint(&config.table),
            }
            .into())
        }
        resume::PriorState::Fresh => None,
        resume::PriorState::Resumable(c) if !config.resume => {
            return Err(resume::ResumeError::ResumableExists {
                db: config.db.clone(),
                table: config.table.clone(),
                phase: c.phase,
                rows: c.rows_copied,
            }
            .into())
        }
        resume::PriorState::Resumable(c) => {
            resume::validate(&mut conn, &c, &options).await?;
            info!(position = %c.position, rows = c.rows_copied, phase = %c.phase, "resuming from the checkpoint");
            Some(c)
        }
        resume::PriorState::CutOverDone => {
            let dropped = resume::abort(&mut conn, &config.db, &config.table).await?;
            return Ok(MigrateReport::note(
                format!(
                    "the cut-over of an earlier run had completed (the table is the new one, the original is {}); cleaned up {}",
                    q2(&config.db, &names::old(&config.table)),
                    dropped.join(", ")
                ),
                started,
            ));
        }
    };
    if resumed.is_none() {
        preflight::leftovers(&mut conn, &config.db, &config.table, config.drop_leftovers).await?;
    }
    // The control listeners open before anything changes: a socket in use stops the run here.
    let ops = if config.execute {
        Some(Operations::bind(&config.operate, &config.db, &config.table).await?)
    } else {
        None
    };

    // Shadow table with the user's ALTER, run by the server.
    let t = q2(&config.db, &config.table);
    let shadow_name = names::shadow(&config.table);
    let shadow = q2(&config.db, &shadow_name);
    if resumed.is_none() {
        conn.query_drop(format!("CREATE TABLE {shadow} LIKE {t}"))
            .await
            .map_err(|e| {
                privilege_or(
                    e,
                    "creating the shadow table",
                    "CREATE, ALTER, DROP, INSERT, SELECT, LOCK TABLES",
                )
            })?;
        if let Err(e) = conn
            .query_drop(format!("ALTER TABLE {shadow} {}", config.alter))
            .await
        {
            let _ = conn.query_drop(format!("DROP TABLE {shadow}")).await;
            return Err(MigrateError::AlterRejected {
                detail: server_message(&e),
            });
        }
    }
    let prepared = async {
        let new = catalog::load_table(&mut conn, flavor, &config.db, &shadow_name).await?;
        if new.primary_key.is_empty() {
            return Err(MigrateError::Mapping(format!(
                "the ALTER leaves {} without a primary key: rowshift needs one to apply changes by key",
                old.qualified_name()
            )));
        }
        let mapping = Mapping::new(&old, &new, &renames, &config.sets)
            .map_err(|e| MigrateError::Mapping(e.to_string()))?;
        check_new_primary_key(&new, &mapping)?;
        Ok::<_, MigrateError>((new, mapping))
    }
    .await;
    let (new, mapping) = match prepared {
        Ok(v) => v,
        Err(e) => {
            if resumed.is_none() {
                let _ = conn.query_drop(format!("DROP TABLE {shadow}")).await;
            }
            return Err(e);
        }
    };
    let rows_estimate = estimate_rows(&mut conn, &config.db, &config.table).await;
    let plan = describe_plan(&old, &new, &mapping, rows_estimate, &config);
    progress.send_modify(|p| p.rows_estimate = rows_estimate);
    if !config.execute {
        conn.query_drop(format!("DROP TABLE {shadow}"))
            .await
            .map_err(|source| MigrateError::Sql {
                step: "dropping the dry-run shadow table",
                source,
            })?;
        return Ok(MigrateReport {
            plan,
            rows_copied: 0,
            events: 0,
            copy_time: Duration::ZERO,
            total_time: started.elapsed(),
            cutover: None,
            verification: None,
        });
    }
    info!("{plan}");

    // Sentry for drain markers, the checkpoint, then the stream, then the copy.
    let sentry = q2(&config.db, &names::sentry(&config.table));
    let ckpt_name = q2(&config.db, &names::checkpoint(&config.table));
    let ckpt_table = CheckpointTable::new(&config.db, &config.table);
    // From here on a failure drops the shadow and the sentry: the original is untouched.
    macro_rules! or_clean {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    let e: MigrateError = e.into();
                    drop_helpers(&mut conn, &config, &[&shadow, &sentry, &ckpt_name]).await;
                    return Err(e);
                }
            }
        };
    }
    let mut ops = match ops {
        Some(ops) => ops,
        None => or_clean!(Operations::bind(&config.operate, &config.db, &config.table).await),
    };
    or_clean!(conn
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {sentry} (id INT PRIMARY KEY) ENGINE=InnoDB"
        ))
        .await
        .map_err(|source| MigrateError::Sql {
            step: "creating the sentry table",
            source
        }));
    let start = match &resumed {
        Some(c) => {
            // Rows above the copy watermark may be stale copies of unfinished chunks: the copy
            // reads them again, and events for them are skipped until it does.
            let above = match &c.copied_upto {
                Some(w) => format!("WHERE {}", copy::after(&key_columns(&old), w)),
                None => String::new(),
            };
            if !c.copy_finished {
                conn.query_drop(format!("DELETE FROM {shadow} {above}"))
                    .await
                    .map_err(|source| MigrateError::Sql {
                        step: "clearing the unfinished copy range",
                        source,
                    })?;
            }
            c.position.clone()
        }
        None => {
            let start = or_clean!(cutover::server_position(&mut conn).await.map_err(|source| {
                MigrateError::Sql {
                    step: "reading the binlog position",
                    source,
                }
            }));
            or_clean!(ckpt_table.create(&mut conn).await);
            or_clean!(
                ckpt_table
                    .save(
                        &mut conn,
                        &Checkpoint {
                            position: start.clone(),
                            gtid: start.gtid.to_string(),
                            copied_upto: None,
                            copy_finished: false,
                            rows_copied: 0,
                            options: options.clone(),
                            phase: "copy".into(),
                        }
                    )
                    .await
            );
            start
        }
    };
    let events = or_clean!(open_stream(&config, &start).await);
    // A DDL on the table after its definition was read and before the stream's start is in
    // neither the definition nor the stream: read the definition again now.
    let current =
        or_clean!(catalog::load_table(&mut conn, flavor, &config.db, &config.table).await);
    if current != old {
        or_clean!(Err::<(), _>(MigrateError::Mapping(format!(
            "the definition of {} changed while the migration was starting; run again",
            old.qualified_name()
        ))));
    }

    let mapping = Arc::new(mapping);
    let target = apply_target(&config, flavor, &new, &mapping);
    let key_positions = target.key_positions.clone();
    let key_codec = or_clean!(rowshift_transform::key::KeyCodec::for_primary_key(&new)
        .map_err(|e| MigrateError::Mapping(e.to_string())));
    let n_appliers = applier_count(&new, &key_codec, config.appliers);
    let appliers = or_clean!(ApplierSet::start(target, n_appliers, 2_048).await);
    let apply_stats = appliers.stats.clone();
    let copy_finished_before = resumed.as_ref().is_some_and(|c| c.copy_finished);
    let (hw_tx, hw_rx) = watch::channel(if copy_finished_before {
        HighWater::Done
    } else {
        HighWater::Start
    });
    // With a unique secondary key the shadow must never mix the copy's newer rows with
    // skipped events (design.md section 8): every event is applied, so a row that a unique-key
    // collision displaces always has a later event that restores it.
    let int_key = (old.primary_key.len() == 1
        && new.unique_keys.is_empty()
        && matches!(
            old.columns[old.primary_key[0]].data_type,
            ColumnType::Integer { .. }
        ))
    .then(|| old.primary_key[0]);
    let router_stats = Arc::new(RouterStats::default());
    let router = Router {
        db: config.db.clone(),
        table: config.table.clone(),
        sentry: names::sentry(&config.table),
        mapping: mapping.clone(),
        key_positions,
        key_codec,
        old_key: old.primary_key.clone(),
        int_key,
        high_water: hw_rx,
        stats: router_stats.clone(),
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (applied_tx, applied_rx) = watch::channel::<Option<Position>>(None);
    let router_task = tokio::spawn(
        router
            .run(events, appliers, cmd_rx, applied_tx)
            .instrument(info_span!("router")),
    );

    // Progress publisher.
    let copy_stats = Arc::new(CopyStats::default());
    let rows_before = resumed.as_ref().map_or(0, |c| c.rows_copied);
    let (wm_tx, wm_rx) = watch::channel(copy::Watermark::Start(
        resumed.as_ref().and_then(|c| c.copied_upto.clone()),
    ));
    let (phase_tx, phase_rx) = watch::channel(if copy_finished_before {
        "catch-up"
    } else {
        "copy"
    });
    let ckpt_writer = tokio::spawn(checkpoint_writer(
        config.endpoint.clone(),
        CheckpointTable::new(&config.db, &config.table),
        options.clone(),
        applied_rx,
        wm_rx,
        phase_rx,
        copy_stats.clone(),
        rows_before,
        copy_finished_before,
    ));
    let ticker = {
        let (copy_stats, router_stats, progress) =
            (copy_stats.clone(), router_stats.clone(), progress.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let last = router_stats.last_event_ts.load(Ordering::Relaxed);
                progress.send_modify(|p| {
                    p.rows_copied = copy_stats.rows_copied.load(Ordering::Relaxed);
                    p.events = router_stats.events.load(Ordering::Relaxed);
                    p.skipped = router_stats.skipped.load(Ordering::Relaxed);
                    p.lag_secs = if last == 0 {
                        0
                    } else {
                        now.saturating_sub(last)
                    };
                    p.elapsed = started.elapsed();
                });
            }
        })
    };
    let (copy_control, controls) = ops.start(
        &config.endpoint,
        &config.db,
        &config.table,
        progress.subscribe(),
        copy_stats.clone(),
        router_stats.clone(),
        apply_stats.clone(),
        config.postpone_flag.clone(),
        config.copy.target_chunk_time,
    );
    let mut copy_config = config.copy.clone();
    copy_config.control = copy_control;
    let metrics = ops.metrics().clone();
    // Everything before the cut-over can be aborted (operator, critical load); the cut-over
    // itself never is.
    macro_rules! abortable {
        ($e:expr) => {
            tokio::select! {
                biased;
                reason = ops.aborted() => {
                    warn!(%reason, "aborting before the cut-over");
                    return Err(MigrateError::Aborted { reason });
                }
                r = $e => r,
            }
        };
    }

    let result = async {
        set_phase("copy");
        let copy_started = Instant::now();
        let plan_copy = CopyPlan {
            endpoint: config.endpoint.clone(),
            source: t.clone(),
            target: shadow.clone(),
            insert_columns: mapping.insert_columns().iter().map(|c| quote_ident(c)).collect(),
            select_exprs: mapping.select_exprs(),
            key: key_columns(&old),
            benign_duplicates: benign_duplicate_keys(&new, &mapping),
            start_after: resumed.as_ref().and_then(|c| c.copied_upto.clone()),
        };
        if !copy_finished_before {
            abortable!(copy::copy_table(plan_copy, copy_config, copy_stats.clone(), hw_tx, wm_tx))?;
        }
        let copy_time = copy_started.elapsed();

        set_phase("catch-up");
        let _ = phase_tx.send("catch-up");
        let mut marker_conn = config.endpoint.connect_raw().await?;
        let caught_up = Duration::from_secs(600);
        abortable!(tokio::time::timeout(caught_up, wait_marker(&mut marker_conn, &sentry, &cmd_tx)))
            .map_err(|_| MigrateError::CatchUpTimeout(caught_up))??;

        set_phase("verify");
        let _ = phase_tx.send("verify");
        let verification = if config.skip_verify {
            warn!("verification skipped (--skip-verify): cutting over on the copy and binlog apply alone");
            None
        } else {
            let report = abortable!(verify_shadow(&config, &cmd_tx, &sentry))?;
            info!(go = report.is_go(), "verification done");
            if let Some(path) = &config.verify_report {
                let body = if path.extension().is_some_and(|e| e == "html") { report.to_html() } else { report.to_json() };
                if let Err(e) = std::fs::write(path, body) {
                    warn!(path = %path.display(), error = %e, "could not write the verification report");
                }
            }
            if !report.is_go() && !config.allow_differences {
                return Err(MigrateError::Differences { summary: report.summary() });
            }
            Some(report.summary())
        };

        // Postponed while the flag file exists or the operator holds it (`ctl postpone`);
        // `ctl cut-over` releases both.
        let mut postpone = controls.postpone.clone();
        loop {
            let flag = config.postpone_flag.as_ref().filter(|f| f.exists());
            if flag.is_none() && !*postpone.borrow_and_update() {
                break;
            }
            set_phase("postponed");
            match flag {
                Some(flag) => info!(flag = %flag.display(), "cut-over postponed while the flag file exists (or until `rowshift ctl cut-over`)"),
                None => info!("cut-over postponed by the operator until `rowshift ctl cut-over`"),
            }
            abortable!(async {
                tokio::select! {
                    changed = postpone.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            });
            wait_marker(&mut marker_conn, &sentry, &cmd_tx).await?;
        }
        // No cut-over while throttled (a lagging replica, a loaded server): it would add to
        // the trouble, and the lag would reach the application right after.
        let mut throttle = controls.throttle.clone();
        let reason = throttle.borrow_and_update().reason.clone();
        if throttle.borrow().throttled {
            set_phase("throttled");
            info!(%reason, "the cut-over waits until the throttle is released");
            abortable!(async {
                let _ = throttle.wait_for(|s| !s.throttled).await;
            });
            wait_marker(&mut marker_conn, &sentry, &cmd_tx).await?;
        }

        set_phase("cut-over");
        let _ = phase_tx.send("cut-over");
        let cmd = cmd_tx.clone();
        let report = cutover::cut_over(&config.endpoint, &config.db, &config.table, &config.cutover, move |token| {
            let cmd = cmd.clone();
            async move {
                let (tx, rx) = oneshot::channel();
                cmd.send(RouterCmd::WaitMarker(token, tx)).await.map_err(|_| "router stopped".to_string())?;
                rx.await.map_err(|_| "router stopped".to_string())
            }
        })
        .await?;
        metrics.cutover_lock(report.lock_time);
        let _ = marker_conn.disconnect().await;
        Ok::<_, MigrateError>((copy_time, report, verification))
    }
    .await;
    ticker.abort();
    ckpt_writer.abort();
    ops.finish().await;
    // A stopped router is the root cause of "the router stopped": report its own error.
    let router_error = if router_task.is_finished() {
        match router_task.await {
            Ok(Err(router_err)) => Some(router_err),
            _ => None,
        }
    } else {
        router_task.abort();
        None
    };
    let (copy_time, report, verification) = match result {
        Ok(v) => v,
        Err(e) => {
            let e = match router_error {
                Some(router_err) => router_err.into(),
                None => e,
            };
            // The original table is untouched: leave nothing of this run behind, unless the
            // cut-over's outcome is unknown (then every table must stay for inspection).
            if !matches!(
                e,
                MigrateError::Cutover(cutover::CutoverError::Ambiguous { .. })
            ) {
                drop_helpers(&mut conn, &config, &[&shadow, &sentry, &ckpt_name]).await;
            }
            return Err(e);
        }
    };
    let _ = conn
        .query_drop(format!("DROP TABLE IF EXISTS {sentry}, {ckpt_name}"))
        .await;
    set_phase("done");
    Ok(MigrateReport {
        plan,
        rows_copied: rows_before + copy_stats.rows_copied.load(Ordering::Relaxed),
        events: apply_stats.changes.load(Ordering::Relaxed),
        copy_time,
        total_time: started.elapsed(),
        cutover: Some(report),
        verification,
    })
}

/// A new primary key that no old unique key guarantees unique would merge rows: the copy's
/// `INSERT IGNORE` skips a second row with an equal key as if the applier had written it, and
/// the appliers replace one row by the other. Refused before anything moves.
fn check_new_primary_key(new: &TableSchema, mapping: &Mapping) -> Result<(), MigrateError> {
    if !mapping
        .added_unique_keys()
        .iter()
        .any(|k| k.name == "PRIMARY")
    {
        return Ok(());
    }
    let cols: Vec<String> = new
        .primary_key
        .iter()
        .map(|&i| quote_ident(&new.columns[i].name))
        .collect();
    Err(MigrateError::Mapping(format!(
        "the new primary key ({}) is not guaranteed unique by the old table (no old primary or unique key covers its columns with the same collation): rows with equal keys would merge silently. Add a UNIQUE key on those columns first, or keep the old key columns in the new primary key",
        cols.join(", ")
    )))
}

/// Unique secondary keys of the new table that no old key guarantees: duplicates in them are
/// real and must stop the migration.
fn added_unique_secondary(mapping: &Mapping) -> Vec<String> {
    mapping
        .added_unique_keys()
        .into_iter()
        .filter(|k| k.name != "PRIMARY")
        .map(|k| k.name)
        .collect()
}

/// The keys of the new table whose duplicate-key warnings during the copy are benign: the
/// primary key (the applier wrote the row first) and unique keys that were unique in the old
/// table too. Such a collision is with a row whose newer image the appliers have not written
/// yet (every event is applied when the table has unique secondary keys): the applier's
/// `REPLACE` of the skipped row's own, later event brings it.
fn benign_duplicate_keys(new: &TableSchema, mapping: &Mapping) -> Vec<String> {
    let added = added_unique_secondary(mapping);
    std::iter::once("PRIMARY".to_string())
        .chain(
            new.unique_keys
                .iter()
                .map(|k| k.name.clone())
                .filter(|n| !added.contains(n)),
        )
        .collect()
}

/// Drop this run's helper tables after a failure (best effort; a fresh connection when the
/// main one is gone). The trip table of an interrupted cut-over is dropped too.
async fn drop_helpers(conn: &mut mysql_async::Conn, config: &MigrateConfig, tables: &[&str]) {
    let trip = q2(&config.db, &names::trip(&config.table));
    let mut fresh = None;
    for t in tables.iter().copied().chain([trip.as_str()]) {
        let sql = format!("DROP TABLE IF EXISTS {t}");
        if conn.query_drop(&sql).await.is_ok() {
            continue;
        }
        if fresh.is_none() {
            fresh = config.endpoint.connect_raw().await.ok();
        }
        if let Some(c) = fresh.as_mut() {
            if let Err(e) = c.query_drop(&sql).await {
                warn!(table = %t, error = %e, "could not drop a helper table");
            }
        }
    }
}

/// The binlog stream from `start`, as a `Stream` of events. A lost connection (network, server
/// restart, `KILL` of the replica thread) is retried with back-off from the last commit
/// position read: the events of a transaction read only in part are sent again, which the
/// idempotent apply absorbs. A definite error, or a server that stays away for a minute, ends
/// the stream with the error.
async fn open_stream(
    config: &MigrateConfig,
    start: &Position,
) -> Result<
    impl futures_util::Stream<
            Item = Result<crate::event::SourceEvent, crate::source::stream::SourceError>,
        > + Unpin,
    MigrateError,
> {
    let cfg = source_config(config, start);
    let source = BinlogSource::connect(cfg.clone())
        .await
        .map_err(|e| MigrateError::Source(e.to_string()))?;
    let state = StreamState {
        source: Some(source),
        cfg,
        resume_at: start.clone(),
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
                    Ok(None) => return None,
                    Err(e) if e.is_transient() => {
                        warn!(error = %e, position = %state.resume_at, "binlog connection lost; reconnecting from the last commit");
                        state.source = None;
                        match reconnect(&state.cfg, &state.resume_at).await {
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

struct StreamState {
    source: Option<BinlogSource>,
    cfg: SourceConfig,
    resume_at: Position,
}

/// Connect again at `at`, with back-off, for up to a minute.
async fn reconnect(
    cfg: &SourceConfig,
    at: &Position,
) -> Result<BinlogSource, crate::source::stream::SourceError> {
    let mut cfg = cfg.clone();
    cfg.start = crate::position::StartPosition::File {
        file: at.file.clone(),
        offset: at.offset,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
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
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn source_config(config: &MigrateConfig, start: &Position) -> SourceConfig {
    let mut cfg = SourceConfig::new(config.endpoint.url_with_password());
    cfg.server_id = config.server_id;
    cfg.start = crate::position::StartPosition::File {
        file: start.file.clone(),
        offset: start.offset,
    };
    cfg.ssl_mode = config.endpoint.ssl_mode;
    cfg.ssl_ca = config.endpoint.ssl_ca.clone();
    cfg.heartbeat = Duration::from_millis(500);
    cfg
}

/// Writes the checkpoint every second: the applied position (a barrier every applier
/// acknowledged), the copy watermark and the phase. A failed write is logged and retried on the
/// next tick; it never stops the migration, and the stored checkpoint only gets older, never
/// ahead of what is applied.
#[allow(clippy::too_many_arguments)]
async fn checkpoint_writer(
    endpoint: Endpoint,
    table: CheckpointTable,
    options: String,
    applied: watch::Receiver<Option<Position>>,
    watermark: watch::Receiver<copy::Watermark>,
    phase: watch::Receiver<&'static str>,
    copy_stats: Arc<CopyStats>,
    rows_before: u64,
    finished_before: bool,
) {
    let mut conn = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_saved: Option<(Position, copy::Watermark, &'static str)> = None;
    loop {
        tick.tick().await;
        let Some(position) = applied.borrow().clone() else {
            continue;
        };
        let wm = watermark.borrow().clone();
        let ph = *phase.borrow();
        if last_saved.as_ref() == Some(&(position.clone(), wm.clone(), ph)) {
            continue;
        }
        let (copied_upto, copy_finished) = match &wm {
            copy::Watermark::Start(w) => (w.clone(), finished_before),
            copy::Watermark::Upto(w) => (Some(w.clone()), false),
            copy::Watermark::Finished => (None, true),
        };
        let ckpt = Checkpoint {
            gtid: position.gtid.to_string(),
            position: position.clone(),
            copied_upto,
            copy_finished,
            rows_copied: rows_before + copy_stats.rows_copied.load(Ordering::Relaxed),
            options: options.clone(),
            phase: ph.to_string(),
        };
        if conn.is_none() {
            conn = endpoint.connect_raw().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match table.save(c, &ckpt).await {
            Ok(()) => last_saved = Some((position, wm, ph)),
            Err(e) => {
                warn!(error = %e, "checkpoint write failed; retrying");
                conn = None;
            }
        }
    }
}

/// Insert a fresh token into the sentry and wait until the router has applied up to it.
async fn wait_marker(
    conn: &mut mysql_async::Conn,
    sentry: &str,
    cmds: &mpsc::Sender<RouterCmd>,
) -> Result<(), MigrateError> {
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
    conn.query_drop(format!("DELETE FROM {sentry} WHERE id = {token}"))
        .await
        .map_err(|source| MigrateError::Sql {
            step: "clearing a drain marker",
            source,
        })?;
    Ok(())
}

/// How many appliers may run in parallel without breaking an order the server cares about:
/// - unique secondary keys: two rows swapping a value must apply in one batch, in order;
/// - a primary key under a collation rowshift folds only approximately: two keys the server
///   sees as one row must stay in one applier.
///
/// In both cases one applier keeps binlog order; otherwise `wanted`.
fn applier_count(
    new: &TableSchema,
    codec: &rowshift_transform::key::KeyCodec,
    wanted: usize,
) -> usize {
    if new.unique_keys.iter().any(|k| k.name != "PRIMARY") || !codec.is_always_exact() {
        1
    } else {
        wanted.max(1)
    }
}

fn key_columns(old: &TableSchema) -> Vec<KeyColumn> {
    old.primary_key
        .iter()
        .map(|&i| {
            let c = &old.columns[i];
            let literal = match &c.data_type {
                ColumnType::Integer { .. }
                | ColumnType::Decimal { .. }
                | ColumnType::Float { .. }
                | ColumnType::Double { .. }
                | ColumnType::Year => KeyLiteral::Number,
                ColumnType::Date
                | ColumnType::Time { .. }
                | ColumnType::DateTime { .. }
                | ColumnType::Timestamp { .. } => KeyLiteral::Temporal,
                t if t.is_text() => match (t.charset(), t.collation()) {
                    (Some(cs), Some(co)) => KeyLiteral::Text {
                        charset: cs.to_string(),
                        collation: co.to_string(),
                    },
                    _ => KeyLiteral::Bytes,
                },
                _ => KeyLiteral::Bytes,
            };
            KeyColumn {
                name: quote_ident(&c.name),
                literal,
            }
        })
        .collect()
}

fn apply_target(
    config: &MigrateConfig,
    flavor: Flavor,
    new: &TableSchema,
    mapping: &Mapping,
) -> ApplyTarget {
    let cols = mapping.insert_columns();
    let kinds = cols
        .iter()
        .map(|c| match new.column(c).map(|c| &c.data_type) {
            Some(ColumnType::Json) if flavor == Flavor::MySql => LiteralKind::Json,
            _ => LiteralKind::Plain,
        })
        .collect();
    let key_positions = new
        .primary_key
        .iter()
        .filter_map(|&i| cols.iter().position(|c| *c == new.columns[i].name))
        .collect();
    ApplyTarget {
        endpoint: config.endpoint.clone(),
        table: q2(&config.db, &names::shadow(&config.table)),
        columns: cols.iter().map(|c| quote_ident(c)).collect(),
        kinds,
        key_positions,
        max_batch: 500,
        replace: added_unique_secondary(mapping).is_empty(),
    }
}

async fn estimate_rows(conn: &mut mysql_async::Conn, db: &str, table: &str) -> u64 {
    conn.exec_first::<Option<u64>, _, _>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (db, table),
    )
    .await
    .ok()
    .flatten()
    .flatten()
    .unwrap_or(0)
}

fn describe_plan(
    old: &TableSchema,
    new: &TableSchema,
    mapping: &Mapping,
    rows: u64,
    config: &MigrateConfig,
) -> String {
    let mut s = format!(
        "plan for {} ({} rows estimated):\n  shadow {} ← ALTER {}\n  columns:\n",
        old.qualified_name(),
        rows,
        q2(&config.db, &names::shadow(&config.table)),
        config.alter
    );
    for (col, expr) in mapping.insert_columns().iter().zip(mapping.select_exprs()) {
        s.push_str(&format!("    {} ← {}\n", quote_ident(col), expr));
    }
    let dropped: Vec<&str> = old
        .columns
        .iter()
        .filter(|c| {
            new.column(&c.name).is_none()
                && !mapping
                    .select_exprs()
                    .iter()
                    .any(|e| e.contains(&quote_ident(&c.name)))
        })
        .map(|c| c.name.as_str())
        .collect();
    if !dropped.is_empty() {
        s.push_str(&format!("  dropped columns: {}\n", dropped.join(", ")));
    }
    s.push_str(&format!(
        "  copy: {} parallel chunks of ~{} ms; {} appliers; cut-over lock wait {:?}; old table kept as {}\n",
        config.copy.workers,
        config.copy.target_chunk_time.as_millis(),
        match rowshift_transform::key::KeyCodec::for_primary_key(new) {
            Ok(codec) => applier_count(new, &codec, config.appliers),
            Err(_) => 1,
        },
        config.cutover.lock_wait,
        q2(&config.db, &names::old(&config.table)),
    ));
    // A rough estimate: 100k rows/s copy on a small server.
    s.push_str(&format!(
        "  estimated copy time: ~{} s\n",
        rows / 100_000 + 1
    ));
    s
}

fn server_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (error {})", s.message, s.code),
        other => other.to_string(),
    }
}

fn privilege_or(e: mysql_async::Error, step: &'static str, grants: &str) -> MigrateError {
    if let mysql_async::Error::Server(s) = &e {
        if matches!(s.code, 1142 | 1044 | 1227) {
            return MigrateError::Preflight(PreflightError::MissingPrivilege {
                what: step,
                grant: format!("GRANT {grants} ON <db>.* TO <user>"),
                detail: s.message.clone(),
            });
        }
    }
    MigrateError::Sql { step, source: e }
}

impl MigrateReport {
    /// A report that only says something (abort, clean-up after an earlier cut-over).
    fn note(plan: String, started: Instant) -> MigrateReport {
        MigrateReport {
            plan,
            rows_copied: 0,
            events: 0,
            copy_time: Duration::ZERO,
            total_time: started.elapsed(),
            cutover: None,
            verification: None,
        }
    }
}

/// The consistent point of a verification inside `migrate`: only the original table is locked
/// (the appliers keep writing the shadow), and the drain is proven by a marker row read back
/// from the binlog.
struct MigratePoint<'a> {
    endpoint: &'a Endpoint,
    cmds: &'a mpsc::Sender<RouterCmd>,
    sentry: &'a str,
}

impl crate::verify::ConsistentPoint for MigratePoint<'_> {
    fn lock_scope(&self) -> crate::verify::LockScope {
        crate::verify::LockScope::OldTable
    }

    async fn drain(&mut self) -> Result<(), crate::verify::DrainError> {
        let mut conn = self.endpoint.connect_raw().await?;
        wait_marker(&mut conn, self.sentry, self.cmds).await?;
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// Verify the shadow against the original, transform applied, at a drained consistent point.
async fn verify_shadow(
    config: &MigrateConfig,
    cmds: &mpsc::Sender<RouterCmd>,
    sentry: &str,
) -> Result<crate::verify::VerifyReport, MigrateError> {
    use crate::verify::{self, NewTable, TableRef, VerifyPlan};
    let old = TableRef {
        db: config.db.clone(),
        table: config.table.clone(),
    };
    let new = NewTable::Shadow(TableRef {
        db: config.db.clone(),
        table: names::shadow(&config.table),
    });
    let mapping =
        verify::mapping_for_alter(&config.endpoint, &old, &new, &config.alter, &config.sets)
            .await?;
    let plan = VerifyPlan {
        source: config.endpoint.clone(),
        table: old,
        new,
        mapping,
    };
    let mut point = MigratePoint {
        endpoint: &config.endpoint,
        cmds,
        sentry,
    };
    Ok(verify::run(plan, &mut point, verify::VerifyConfig::default()).await?)
}
