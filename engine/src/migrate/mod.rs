//! `migrate`: online ALTER of one table on one server (design.md sections 2 and 4).
//!
//! 1. Preflight ([`preflight`]): binlog settings, privileges, key, foreign keys, triggers,
//!    leftovers. Nothing is changed when it fails.
//! 2. Shadow `_t_new`: `CREATE TABLE … LIKE`, then the user's ALTER, run by the server; the
//!    mapping comes from diffing the two definitions (renames parsed from the ALTER).
//! 3. The binlog stream starts at the current position, before the copy.
//! 4. The copy ([`crate::copy`]) and the router/appliers ([`router`], [`crate::apply`]) run
//!    together; changes above the copy's high-water mark are skipped. The shadow's plain
//!    secondary keys are built after the copy ([`indexes`]).
//! 5. Catch-up: a marker row in the sentry table proves everything before it is applied.
//! 6. Cut-over ([`crate::cutover`]); the original table stays as `_t_old`.

pub mod indexes;
pub mod pace;
pub mod preflight;
pub mod reconnect;
pub mod resume;
pub mod router;

use crate::apply::{ApplierSet, ApplyTarget};
use crate::catalog::{self, CatalogError};
use crate::checkpoint::{Checkpoint, CheckpointTable};
use crate::conn::{ConnError, Endpoint};
use crate::control::operate::Operations;
use crate::copy::{self, CopyConfig, CopyPlan, CopyStats, HighWater};
use crate::cutover::{self, names, CutoverConfig, CutoverReport};
use crate::estimate::{DensityWindow, RowEstimate};
use crate::hooks::{HookContext, HookError, HookEvent, Hooks};
use crate::position::{GtidState, Position};
use crate::source::stream::SourceConfig;
use crate::sqlvalue::LiteralKind;
use mysql_async::prelude::Queryable;
use preflight::PreflightError;
use reconnect::{retry_lost, wait_marker, MarkerConn};
use router::{Router, RouterCmd, RouterStats};
use rowshift_transform::mapping::{ColumnSource, Mapping};
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
    /// The router ended (its own error, when it has one, is reported instead).
    #[error("binlog source: the router stopped")]
    RouterStopped,
    /// The binlog stream could not start or gave up reconnecting.
    #[error(transparent)]
    Stream(#[from] reconnect::StreamError),
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
    /// A hook before the cut-over failed (nothing was cut over).
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Catch-up did not finish.
    #[error("the appliers did not catch up within {0:?}: the write rate may exceed the apply rate; raise --appliers or lower the load")]
    CatchUpTimeout(Duration),
    /// The server stayed unreachable longer than `--reconnect-timeout`.
    #[error("{what}: the connection to the server was lost and not re-established within {waited:?} (--reconnect-timeout); last error: {}", reconnect::error_chain(.last))]
    ServerGone {
        /// The step that needed the server.
        what: &'static str,
        /// How long rowshift retried.
        waited: Duration,
        /// The last error (shown in the message, so not a `source`).
        last: Box<MigrateError>,
    },
    /// The run stopped after its copy had started, on an error a later run can get past (a
    /// lost server): the shadow table and the checkpoint were kept for `--resume`.
    #[error("{cause}\nthe shadow table `{db}`.`{shadow}` and the checkpoint `{db}`.`{ckpt}` were kept: once the server is reachable, run the same command with --resume to continue where this run stopped (or with --abort to drop them); the original table is untouched")]
    Interrupted {
        /// Database.
        db: String,
        /// The shadow table.
        shadow: String,
        /// The checkpoint table.
        ckpt: String,
        /// Why the run stopped (shown in the message, so not a `source`).
        cause: Box<MigrateError>,
    },
}

impl MigrateError {
    /// True when the run failed on a lost connection or an unreachable server (anywhere in
    /// the error's chain), on the binlog stream (the router's source), or on a catch-up that
    /// did not finish: a later `--resume` can continue, so the shadow and the checkpoint are
    /// kept. Definite errors (lossy data, a DDL on the table, differences) are not resumable.
    pub fn is_resumable(&self) -> bool {
        matches!(
            self,
            MigrateError::CatchUpTimeout(_) | MigrateError::Router(router::RouterError::Source(_))
        ) || reconnect::lost_connection(self)
    }
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
    /// How long every connection of the run (binlog stream, appliers, copy, markers,
    /// checkpoint, verification, cut-over) keeps retrying a lost server before the run fails.
    pub reconnect_timeout: Duration,
    /// While the copy runs, read the binlog in bursts this far apart, staying within about a
    /// second of the source (zero: follow it continuously).
    pub stream_rest: Duration,
    /// Build the shadow's plain secondary keys after the copy, sorted in one pass, instead of
    /// row by row during it ([`indexes`]).
    pub defer_indexes: bool,
    /// How the copy and the index build share the server with the application ([`pace`]).
    pub pace: pace::PaceMode,
    /// Throttling, live control (socket, HTTP) and metrics.
    pub operate: crate::control::operate::OperateConfig,
    /// Executables run at phase changes of an `execute` run ([`crate::hooks`]).
    pub hooks: Hooks,
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
    /// Why the copy is throttled, while it is.
    pub throttled: Option<String>,
    /// True while the copy (or the index build) yields to the application writing the table
    /// (`--pace`).
    pub gentle: bool,
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
    /// Batches (transactions) the appliers wrote them in.
    pub batches: u64,
    /// Copy time.
    pub copy_time: Duration,
    /// Secondary keys built after the copy ([`indexes`]), and how long that took.
    pub indexes_built: Vec<String>,
    /// Time of that build.
    pub index_time: Duration,
    /// Time the copy and the index build ran gently, yielding to the application ([`pace`]).
    pub gentle_time: Duration,
    /// The highest rate of the table's row changes read from the binlog (per second).
    pub peak_app_rate: u64,
    /// Whole run.
    pub total_time: Duration,
    /// The cut-over, when executed.
    pub cutover: Option<CutoverReport>,
    /// When the cut-over began, counted from the start of the run (the window in which the
    /// application may feel it; a progress display can miss so short a phase).
    pub cutover_began: Option<Duration>,
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
    async move {
        // Hooks run for real migrations only (not dry runs, not --abort).
        let hooks = (config.execute && !config.abort).then(|| config.hooks.clone());
        let base = HookContext {
            database: config.db.clone(),
            table: config.table.clone(),
            ..HookContext::default()
        };
        let started = Instant::now();
        let startup = match &hooks {
            Some(h) => {
                let ctx = HookContext {
                    phase: "startup".into(),
                    ..base.clone()
                };
                h.fire(HookEvent::Startup, &ctx).await.map_err(Into::into)
            }
            None => Ok(()),
        };
        let result = match startup {
            Ok(()) => run_inner(config, progress.clone()).await,
            Err(e) => Err(e),
        };
        if let Some(h) = hooks {
            let p = progress.borrow().clone();
            let mut ctx = HookContext {
                phase: p.phase.to_string(),
                rows_copied: p.rows_copied,
                rows_estimate: p.rows_estimate,
                events: p.events,
                elapsed: started.elapsed(),
                ..base
            };
            match &result {
                Ok(r) if r.cutover.is_some() => {
                    ctx.rows_copied = r.rows_copied;
                    ctx.events = r.events;
                    let _ = h.fire(HookEvent::Success, &ctx).await;
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.error = Some(e.to_string());
                    let _ = h.fire(HookEvent::Failure, &ctx).await;
                }
            }
        }
        result
    }
    .instrument(span)
    .await
}

/// Run the hooks of `event` when this run has hooks (an `execute` run); a failure of a
/// blocking hook stops the migration.
async fn fire_hook(
    config: &MigrateConfig,
    event: HookEvent,
    ctx: HookContext,
) -> Result<(), MigrateError> {
    if config.execute && !config.abort {
        config.hooks.fire(event, &ctx).await?;
    }
    Ok(())
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
    let options = resume::options_fingerprint(&config.alter, &config.sets, &old);
    if config.abort {
        let done = resume::abort(&mut conn, &config.db, &config.table).await?;
        let mut note = format!(
            "aborted: dropped {}; the table itself and any old table are untouched",
            if done.dropped.is_empty() {
                "nothing (no earlier run found)".to_string()
            } else {
                done.dropped.join(", ")
            }
        );
        if let Some(shadow) = &done.kept_shadow {
            note.push_str(&format!(
                "\nkept {}: no checkpoint {} shows that a run of rowshift made it (another tool's shadow, a table of yours, or a run that died right after creating it). Drop it yourself once you know it is a leftover, or let the next migration do it with --drop-leftovers --execute",
                q2(&config.db, shadow),
                q2(&config.db, &names::checkpoint(&config.table))
            ));
        }
        return Ok(MigrateReport::note(note, started));
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
        resume::PriorState::CutOverDone(stored) if !resume::same_options(&stored, &options) => {
            return Err(resume::ResumeError::EarlierCutOver {
                db: config.db.clone(),
                table: config.table.clone(),
                old: names::old(&config.table),
                stored: resume::options_line(&stored),
            }
            .into())
        }
        // A dry run changes nothing: it says what --execute would clean up.
        resume::PriorState::CutOverDone(_) if !config.execute => {
            return Ok(MigrateReport::note(
                format!(
                    "the cut-over of an earlier run had completed (the table is the new one, the original is {}); its checkpoint is left: run with --execute to clean it up",
                    q2(&config.db, &names::old(&config.table)),
                ),
                started,
            ));
        }
        resume::PriorState::CutOverDone(_) => {
            let dropped = resume::abort(&mut conn, &config.db, &config.table).await?;
            return Ok(MigrateReport::note(
                format!(
                    "the cut-over of an earlier run had completed (the table is the new one, the original is {}); cleaned up {}",
                    q2(&config.db, &names::old(&config.table)),
                    dropped.dropped.join(", ")
                ),
                started,
            ));
        }
    };
    if resumed.is_none() {
        // A dry run changes nothing: it lists leftovers, it never drops them.
        let drop = config.drop_leftovers && config.execute;
        preflight::leftovers(&mut conn, &config.db, &config.table, drop).await?;
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
        // The binary protocol runs one statement: a `;` in the ALTER is a syntax error, not a
        // second statement against the user's tables (the text protocol allows several).
        if let Err(e) = conn
            .exec_drop(format!("ALTER TABLE {shadow} {}", config.alter), ())
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
        if !config.skip_verify {
            check_verifiable_key(&old, &new, &mapping)?;
        }
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
    // The shadow's plain secondary keys, built after the copy (kept in the checkpoint: a
    // resumed run's shadow has them dropped already).
    let deferred = match (&resumed, config.defer_indexes) {
        (Some(c), _) => indexes::decode(&c.deferred_indexes).ok_or_else(|| {
            MigrateError::Mapping(format!(
                "the checkpoint {} lists deferred indexes rowshift did not write: {:?}; run with --abort and start again",
                q2(&config.db, &names::checkpoint(&config.table)),
                c.deferred_indexes
            ))
        })?,
        (None, true) => match indexes::of_table(&mut conn, &shadow).await {
            Ok(list) => list,
            Err(e) => {
                let _ = conn.query_drop(format!("DROP TABLE {shadow}")).await;
                return Err(e);
            }
        },
        (None, false) => Vec::new(),
    };
    // The server's statistics can be several times off (MySQL): a single integer key bounds
    // them by its span, and the copy refines them as it goes (the ticker below).
    let key_span = match old.primary_key.as_slice() {
        [k] if matches!(old.columns[*k].data_type, ColumnType::Integer { .. }) => {
            catalog::key_span(&mut conn, &t, &quote_ident(&old.columns[*k].name)).await
        }
        _ => None,
    };
    let estimate = RowEstimate {
        statistics: catalog::estimate_rows(&mut conn, &config.db, &config.table).await,
        span: key_span,
    };
    let rows_estimate = estimate.initial();
    let mut plan = describe_plan(&old, &new, &mapping, rows_estimate, &config);
    if !deferred.is_empty() {
        let names: Vec<String> = deferred.iter().map(|d| quote_ident(&d.name)).collect();
        plan.push_str(&format!(
            "  secondary indexes built after the copy, in one sorted pass: {}\n",
            names.join(", ")
        ));
    }
    if let Some(c) = &resumed {
        // Say exactly what state the earlier run left: the shadow still stands beside the
        // untouched original, so its cut-over (if it started) had not renamed anything.
        let what = if config.execute {
            "resumed"
        } else {
            "would resume"
        };
        plan = format!(
            "{what} an interrupted run from its checkpoint (phase {}, {} rows copied, binlog position {}): its cut-over had not happened (the original table is still in place)\n{plan}",
            c.phase, c.rows_copied, c.position
        );
    }
    progress.send_modify(|p| p.rows_estimate = rows_estimate);
    if !config.execute {
        // A dry run drops the shadow it made; a resumed run's shadow and checkpoint are the
        // earlier run's work (maybe a run still waiting at its cut-over) and stay.
        if resumed.is_none() {
            conn.query_drop(format!("DROP TABLE {shadow}"))
                .await
                .map_err(|source| MigrateError::Sql {
                    step: "dropping the dry-run shadow table",
                    source,
                })?;
        }
        return Ok(MigrateReport::note(plan, started));
    }
    info!("{plan}");

    // Sentry for drain markers, the checkpoint, then the stream, then the copy.
    let sentry = q2(&config.db, &names::sentry(&config.table));
    let ckpt_name = q2(&config.db, &names::checkpoint(&config.table));
    let ckpt_table = CheckpointTable::new(&config.db, &config.table);
    // From here on a failure drops the shadow and the sentry (the original is untouched),
    // unless a checkpoint exists and the failure is one a `--resume` can get past.
    let mut ckpt_saved = resumed.is_some();
    macro_rules! or_clean {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    let e: MigrateError = e.into();
                    if ckpt_saved && e.is_resumable() {
                        return Err(interrupted(&config, e));
                    }
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
    if resumed.is_none() {
        or_clean!(indexes::drop_for_copy(&mut conn, &shadow, &deferred).await);
    }
    or_clean!(conn
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {sentry} (id INT PRIMARY KEY) ENGINE=InnoDB"
        ))
        .await
        .map_err(|source| MigrateError::Sql {
            step: "creating the sentry table",
            source
        }));
    let mut by_gtid = false;
    let start = match &resumed {
        Some(c) => {
            // Rows above the copy watermark may be stale copies of unfinished chunks: the copy
            // reads them again, and events for them are skipped until it does.
            let above = match &c.copied_upto {
                Some(w) => format!(
                    "WHERE {}",
                    copy::after(&shadow_key_columns(&old, &new, &mapping)?, w)
                ),
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
            // From the checkpoint's GTID state where resume::gtid_start says so.
            let mut p = c.position.clone();
            if let Some(gtid) = resume::gtid_start(&mut conn, c).await? {
                p.gtid = gtid;
                by_gtid = true;
            }
            p
        }
        None => {
            // With its GTID state, so that the stream starts right there (engine::position).
            let source_flavor = match flavor {
                Flavor::MySql => crate::source::Flavor::MySql,
                Flavor::MariaDb => crate::source::Flavor::MariaDb,
            };
            let start = or_clean!(crate::source::stream::current_position(
                &mut conn,
                source_flavor
            )
            .await
            .map_err(|e| MigrateError::Source(format!("reading the binlog position: {e}"))));
            // MySQL reads `gtid_executed` before the binlog position, and a transaction already
            // written to the binlog joins `gtid_executed` only once it commits: the set can lack
            // transactions before the position. A stream started at the offset never sees them,
            // so every GTID set it records (the checkpoints') would lack them for good, and a
            // `--resume` from such a set would replay them over newer changes. Started from the
            // set instead (the server sends every transaction the set lacks), the stream sees
            // them and each recorded set is exact.
            by_gtid = matches!(start.gtid, GtidState::MySql(_))
                && or_clean!(resume::gtid_mode_on(&mut conn).await);
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
                            deferred_indexes: indexes::encode(&deferred),
                        }
                    )
                    .await
            );
            ckpt_saved = true;
            start
        }
    };
    let events = or_clean!(
        reconnect::open_stream(
            source_config(&config, &start, by_gtid),
            &start,
            config.reconnect_timeout
        )
        .await
    );
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
    let linger = appliers.linger_control();
    let copy_finished_before = resumed.as_ref().is_some_and(|c| c.copy_finished);
    // On a resume, keys up to the checkpoint's copy watermark are in the shadow already: the
    // router must apply their events from the first one it reads, not only once the copy has
    // started again (events it skipped meanwhile would be lost: nothing copies those keys again).
    let resumed_upto = resumed
        .as_ref()
        .and_then(|c| c.copied_upto.as_ref())
        .and_then(|w| w.first())
        .and_then(|k| k.parse::<i128>().ok());
    let (hw_tx, hw_rx) = watch::channel(if copy_finished_before {
        HighWater::Done
    } else if let Some(k) = resumed_upto {
        HighWater::Upto(k)
    } else {
        HighWater::Start
    });
    // With a unique secondary key the shadow must never mix the copy's newer rows with
    // skipped events (design.md section 8): every event is applied, so a row that a unique-key
    // collision displaces always has a later event that restores it. A new primary key that
    // does not hold the old one is such a key too: a row above the mark can take a value a
    // copied row gives up, and the copy's insert then meets the copied row's old image (a
    // primary-key duplicate the copy ignores), so its event must not be skipped.
    let int_key = (old.primary_key.len() == 1
        && new.unique_keys.is_empty()
        && mapping.new_key_sources().contains(&old.primary_key[0])
        && matches!(
            old.columns[old.primary_key[0]].data_type,
            ColumnType::Integer { .. }
        ))
    .then(|| old.primary_key[0]);
    let (phase_tx, phase_rx) = watch::channel(if copy_finished_before {
        "catch-up"
    } else {
        "copy"
    });
    let router_stats = Arc::new(RouterStats::default());
    let router = Router {
        db: config.db.clone(),
        table: config.table.clone(),
        sentry: names::sentry(&config.table),
        mapping: mapping.clone(),
        key_positions,
        key_codec,
        key_sources: mapping.key_source_columns(),
        int_key,
        high_water: hw_rx,
        stats: router_stats.clone(),
        rest: config.stream_rest,
        phase: phase_rx.clone(),
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (applied_tx, applied_rx) = watch::channel::<Option<Position>>(None);
    // Set when the router ends (a stream that gave up reconnecting, an applier error): the
    // copy stops then instead of retrying on its own.
    let (router_done_tx, router_done) = watch::channel(false);
    let mut router_task = tokio::spawn(
        async move {
            let r = router.run(events, appliers, cmd_rx, applied_tx).await;
            let _ = router_done_tx.send(true);
            r
        }
        .instrument(info_span!("router")),
    );

    // Progress publisher.
    let copy_stats = Arc::new(CopyStats::default());
    let rows_before = resumed.as_ref().map_or(0, |c| c.rows_copied);
    let (wm_tx, wm_rx) = watch::channel(copy::Watermark::Start(
        resumed.as_ref().and_then(|c| c.copied_upto.clone()),
    ));
    let ckpt_writer = tokio::spawn(checkpoint_writer(
        config.endpoint.clone(),
        CheckpointTable::new(&config.db, &config.table),
        options.clone(),
        indexes::encode(&deferred),
        applied_rx,
        wm_rx.clone(),
        phase_rx,
        copy_stats.clone(),
        rows_before,
        copy_finished_before,
    ));
    // Yield to the application while it writes the table (`--pace`).
    let (gentle_tx, gentle) = watch::channel(config.pace != pace::PaceMode::Full);
    let ticker = {
        let (copy_stats, router_stats, progress, gentle, copied_upto) = (
            copy_stats.clone(),
            router_stats.clone(),
            progress.clone(),
            gentle.clone(),
            wm_rx,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            // The copy's density over its last 10 s (50 ticks).
            let mut density = DensityWindow::new(50);
            loop {
                tick.tick().await;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let last = router_stats.last_event_ts.load(Ordering::Relaxed);
                let gentle_now = *gentle.borrow();
                let copied = rows_before + copy_stats.rows_copied.load(Ordering::Relaxed);
                // How far into the integer key's span the copy has finished, for the estimate.
                let upto: Option<Option<i128>> = match &*copied_upto.borrow() {
                    copy::Watermark::Start(bound) => {
                        Some(bound.as_ref().and_then(|b| b.first()?.parse().ok()))
                    }
                    copy::Watermark::Upto(bound) => {
                        Some(bound.first().and_then(|k| k.parse().ok()))
                    }
                    copy::Watermark::Finished => None,
                };
                let rows_estimate = match upto {
                    Some(k) => {
                        let recent = k.and_then(|k| density.push(copied, k));
                        estimate.refined(copied, k, recent)
                    }
                    None => copied,
                };
                progress.send_modify(|p| {
                    p.rows_copied = copied;
                    p.rows_estimate = rows_estimate;
                    p.events = router_stats.events.load(Ordering::Relaxed);
                    p.skipped = router_stats.skipped.load(Ordering::Relaxed);
                    p.lag_secs = if last == 0 {
                        0
                    } else {
                        now.saturating_sub(last)
                    };
                    p.elapsed = started.elapsed();
                    // Only the copy and the index build are paced.
                    p.gentle = matches!(p.phase, "copy" | "indexes") && gentle_now;
                });
            }
        })
    };
    let (copy_control, controls) = ops.start(
        crate::control::Job::Migrate,
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
    copy_config.control.gentle = gentle.clone();
    // Catch-ups the copy asks for (a chunk colliding in a new unique key), each proved by a
    // marker row like the catch-up before the verification.
    let (catch_up_tx, mut catch_up_rx) = mpsc::channel::<copy::CatchUpRequest>(4);
    copy_config.control.catch_up = Some(catch_up_tx);
    // The task ends with the copy (its requests' senders go with the copy's workers).
    {
        let mut marker = MarkerConn::new(&config);
        let (sentry, cmds) = (sentry.clone(), cmd_tx.clone());
        tokio::spawn(
            async move {
                while let Some(reply) = catch_up_rx.recv().await {
                    if wait_marker(&mut marker, &sentry, &cmds).await.is_ok() {
                        let _ = reply.send(());
                    }
                }
                marker.disconnect().await;
            }
            .instrument(info_span!("copy_catch_up")),
        );
    }
    let pace_stats = Arc::new(pace::PaceStats::default());
    let pace_task = tokio::spawn(
        pace::follow(
            config.pace,
            router_stats.clone(),
            gentle_tx,
            pace_stats.clone(),
        )
        .instrument(info_span!("pace")),
    );
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

    let hook_ctx = |phase: &str, extra: Vec<(String, String)>| HookContext {
        database: config.db.clone(),
        table: config.table.clone(),
        phase: phase.to_string(),
        rows_copied: rows_before + copy_stats.rows_copied.load(Ordering::Relaxed),
        // As refined by the copy so far (the ticker).
        rows_estimate: progress.borrow().rows_estimate,
        events: router_stats.events.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        error: None,
        extra,
    };
    // The throttled / unthrottled hooks follow the throttler's state (their failures are
    // only logged: they never stop a migration). At the end a running one finishes (within
    // its timeout) instead of being killed with the task, and the last change seen gets its
    // hook; then the task ends.
    let (hooks_stop_tx, mut hooks_stop) = watch::channel(false);
    let throttle_hooks = {
        let mut state = controls.throttle.clone();
        let (hooks, db, table) = (
            config.hooks.clone(),
            config.db.clone(),
            config.table.clone(),
        );
        let copied = copy_stats.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut was = false;
            loop {
                // Stopping: the state as it is now still gets its hook if it changed.
                let stopping = tokio::select! {
                    biased;
                    _ = hooks_stop.changed() => true,
                    changed = state.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        false
                    }
                };
                let (now, reason) = {
                    let s = state.borrow_and_update();
                    (s.throttled, s.reason.clone())
                };
                if now != was {
                    was = now;
                    progress.send_modify(|p| p.throttled = now.then(|| reason.clone()));
                    let rows_estimate = progress.borrow().rows_estimate;
                    let ctx = HookContext {
                        database: db.clone(),
                        table: table.clone(),
                        phase: "copy".into(),
                        rows_copied: rows_before + copied.rows_copied.load(Ordering::Relaxed),
                        rows_estimate,
                        events: 0,
                        elapsed: started.elapsed(),
                        error: None,
                        extra: vec![("ROWSHIFT_THROTTLE_REASON".into(), reason)],
                    };
                    let event = if now {
                        HookEvent::Throttled
                    } else {
                        HookEvent::Unthrottled
                    };
                    if let Err(e) = hooks.fire(event, &ctx).await {
                        warn!(error = %e, "a throttle hook failed");
                    }
                }
                if stopping {
                    break;
                }
            }
        })
    };
    let result = async {
        set_phase("copy");
        fire_hook(&config, HookEvent::CopyStart, hook_ctx("copy", vec![])).await?;
        let copy_started = Instant::now();
        let plan_copy = CopyPlan {
            endpoint: config.endpoint.clone(),
            source: t.clone(),
            target: shadow.clone(),
            insert_columns: mapping.insert_columns().iter().map(|c| quote_ident(c)).collect(),
            select_exprs: mapping.select_exprs(),
            key: crate::backfill::key_columns(&old),
            benign_duplicates: benign_duplicate_keys(&new, &mapping),
            start_after: resumed.as_ref().and_then(|c| c.copied_upto.clone()),
        };
        if !copy_finished_before {
            let mut router_done = router_done.clone();
            abortable!(async {
                tokio::select! {
                    copied = copy::copy_table(plan_copy, copy_config, copy_stats.clone(), hw_tx, wm_tx) => copied.map(|_| ()).map_err(MigrateError::from),
                    _ = router_done.wait_for(|done| *done) => Err(MigrateError::RouterStopped),
                }
            })?;
        }
        let copy_time = copy_started.elapsed();
        // The display's last count before the phase changes is the final one.
        progress.send_modify(|p| p.rows_copied = rows_before + copy_stats.rows_copied.load(Ordering::Relaxed));
        fire_hook(&config, HookEvent::CopyDone, hook_ctx("copy", vec![])).await?;

        // The secondary keys left out of the copy, built while the appliers keep writing.
        let index_started = Instant::now();
        let indexes_built = if deferred.is_empty() {
            Vec::new()
        } else {
            set_phase("indexes");
            let _ = phase_tx.send("indexes");
            abortable!(retry_lost("building the secondary indexes", config.reconnect_timeout, || async {
                let mut c = config.endpoint.connect_raw().await?;
                // Read apart: a borrow held across the build's await would block the pace's
                // sender, and with it a runtime thread (a deadlock seen in the suite).
                let gentle_now = *gentle.borrow();
                let built = indexes::build(&mut c, &shadow, &deferred, gentle_now).await?;
                let _ = c.disconnect().await;
                Ok::<_, MigrateError>(built)
            }))?
        };
        let index_time = index_started.elapsed();
        // Nothing later is paced: the time counted gentle ends here.
        pace_task.abort();
        if !indexes_built.is_empty() {
            info!(indexes = ?indexes_built, took = ?index_time, "secondary indexes built");
        }

        // From here on changes are written as they come: what is pending when the cut-over
        // locks the table is drained while it stays locked.
        linger.set(Duration::ZERO);
        linger.copy_done();
        set_phase("catch-up");
        let _ = phase_tx.send("catch-up");
        let mut marker_conn = MarkerConn::new(&config);
        let caught_up = Duration::from_secs(600);
        abortable!(tokio::time::timeout(caught_up, wait_marker(&mut marker_conn, &sentry, &cmd_tx)))
            .map_err(|_| MigrateError::CatchUpTimeout(caught_up))??;
        fire_hook(&config, HookEvent::CatchUpDone, hook_ctx("catch-up", vec![])).await?;

        set_phase("verify");
        let _ = phase_tx.send("verify");
        // The verification, its report written; a difference stops the run (unless allowed).
        let verify_now = || async {
            wait_xa_ended(&router_stats).await;
            let report = retry_lost("verification", config.reconnect_timeout, || verify_shadow(&config, &cmd_tx, &sentry)).await?;
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
            Ok::<_, MigrateError>((report.summary(), report.is_go()))
        };
        let verification = if config.skip_verify {
            warn!("verification skipped (--skip-verify): cutting over on the copy and binlog apply alone");
            None
        } else {
            Some(abortable!(verify_now())?)
        };
        let outcome = match &verification {
            None => "skipped",
            Some((_, true)) => "go",
            Some((_, false)) => "differences-allowed",
        };
        fire_hook(&config, HookEvent::VerifyDone, hook_ctx("verify", vec![("ROWSHIFT_VERIFY".into(), outcome.into())])).await?;
        let mut verification = verification.map(|(summary, _)| summary);

        // Postponed while the flag file exists or the operator holds it (`ctl postpone`);
        // `ctl cut-over` releases both. Checked again after what runs before the cut-over (a
        // verification after a postponement, a throttle wait, the before-cut-over hook): a
        // postponement made meanwhile (by an operator, or by that hook) holds it again.
        let mut postpone = controls.postpone.clone();
        let postpone_flag = config.postpone_flag.clone();
        let postponed_now = move |postpone: &mut watch::Receiver<bool>| {
            let flag = postpone_flag.as_ref().filter(|f| f.exists()).cloned();
            let held = *postpone.borrow_and_update();
            (flag.is_some() || held).then_some(flag)
        };
        loop {
            let mut postponed = false;
            while let Some(flag) = postponed_now(&mut postpone) {
                set_phase("postponed");
                postponed = true;
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
            // What was verified before a postponement may be hours old: verify what the binlog
            // applied since, too, before cutting over.
            if postponed && verification.is_some() {
                set_phase("verify");
                let _ = phase_tx.send("verify");
                info!("verifying again after the postponement");
                verification = Some(abortable!(verify_now())?.0);
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
            fire_hook(&config, HookEvent::BeforeCutOver, hook_ctx("cut-over", vec![])).await?;
            if postponed_now(&mut postpone).is_none() {
                break;
            }
            info!("postponed again before the cut-over began");
        }

        set_phase("cut-over");
        let _ = phase_tx.send("cut-over");
        let cutover_began = started.elapsed();
        let cmd = cmd_tx.clone();
        let cut_config = CutoverConfig { reconnect_timeout: config.reconnect_timeout, ..config.cutover.clone() };
        let report = cutover::cut_over(&config.endpoint, &config.db, &config.table, &cut_config, move |token| {
            let cmd = cmd.clone();
            async move {
                let (tx, rx) = oneshot::channel();
                cmd.send(RouterCmd::WaitMarker(token, tx)).await.map_err(|_| "router stopped".to_string())?;
                rx.await.map_err(|_| "router stopped".to_string())
            }
        })
        .await?;
        metrics.cutover_lock(report.lock_time);
        marker_conn.disconnect().await;
        Ok::<_, MigrateError>((copy_time, (indexes_built, index_time), report, verification, cutover_began))
    }
    .await;
    ticker.abort();
    pace_task.abort();
    ckpt_writer.abort();
    let _ = hooks_stop_tx.send(true);
    let _ = throttle_hooks.await;
    ops.finish().await;
    // A stopped router is the root cause of "the router stopped": report its own error.
    // (The router signals its end just before its task finishes, and its command channel
    // closes as its run returns, before that signal and before its markers' waiters are
    // dropped: wait for the task then.)
    // A marker's waiter also learns of an applier's failure first (its reply is dropped when
    // the applied barrier fails) while the router is still alive: it ends soon after (it
    // watches the appliers), so wait a little for its error then.
    let router_ended = router_task.is_finished() || *router_done.borrow() || cmd_tx.is_closed();
    let router_stopped = matches!(result, Err(MigrateError::RouterStopped));
    let router_error = if router_ended || router_stopped {
        match tokio::time::timeout(ROUTER_END_WAIT, &mut router_task).await {
            Ok(Ok(Err(router_err))) => Some(router_err),
            Ok(_) => None,
            Err(_) => {
                router_task.abort();
                None
            }
        }
    } else {
        router_task.abort();
        None
    };
    let (copy_time, (indexes_built, index_time), report, verification, cutover_began) = match result
    {
        Ok(v) => v,
        Err(e) => {
            let e = match router_error {
                Some(router_err) => router_err.into(),
                None => e,
            };
            // The original table is untouched: leave nothing of this run behind, unless the
            // cut-over's outcome is unknown (then every table must stay for inspection) or a
            // `--resume` can continue (a lost server: keep the shadow and the checkpoint).
            if matches!(
                e,
                MigrateError::Cutover(cutover::CutoverError::Ambiguous { .. })
            ) {
                return Err(e);
            }
            if e.is_resumable() {
                return Err(interrupted(&config, e));
            }
            drop_helpers(&mut conn, &config, &[&shadow, &sentry, &ckpt_name]).await;
            return Err(e);
        }
    };
    // The main connection may have died with a restart long ago: a fresh one if needed.
    let cleanup = format!("DROP TABLE IF EXISTS {sentry}, {ckpt_name}");
    if conn.query_drop(&cleanup).await.is_err() {
        let dropped = retry_lost(
            "dropping the checkpoint",
            config.reconnect_timeout,
            || async {
                let mut c = config.endpoint.connect_raw().await?;
                c.query_drop(&cleanup)
                    .await
                    .map_err(|source| MigrateError::Sql {
                        step: "dropping the checkpoint",
                        source,
                    })?;
                let _ = c.disconnect().await;
                Ok::<_, MigrateError>(())
            },
        )
        .await;
        if let Err(e) = dropped {
            warn!(error = %e, "the cut-over is done but the sentry and checkpoint tables could not be dropped; the next run (or --abort) drops them");
        }
    }
    set_phase("done");
    Ok(MigrateReport {
        plan,
        rows_copied: rows_before + copy_stats.rows_copied.load(Ordering::Relaxed),
        events: apply_stats.changes.load(Ordering::Relaxed),
        batches: apply_stats.batches.load(Ordering::Relaxed),
        copy_time,
        indexes_built,
        index_time,
        gentle_time: Duration::from_millis(pace_stats.gentle_ms.load(Ordering::Relaxed)),
        peak_app_rate: pace_stats.peak_rate.load(Ordering::Relaxed),
        total_time: started.elapsed(),
        cutover: Some(report),
        cutover_began: Some(cutover_began),
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

/// The old table's primary key columns as the shadow names them, for predicates over the
/// shadow with the old key's literals (a resumed run clears the rows above the copy's
/// watermark): a renamed key column gets its new name, and a text column whose character set
/// changed is converted back, so that the literal's explicit old collation orders the rows as
/// the old table does.
fn shadow_key_columns(
    old: &TableSchema,
    new: &TableSchema,
    mapping: &Mapping,
) -> Result<Vec<copy::KeyColumn>, MigrateError> {
    let old_key = crate::backfill::key_columns(old);
    old.primary_key
        .iter()
        .zip(old_key)
        .map(|(&k, key)| {
            let col = mapping
                .columns()
                .iter()
                .find(|m| matches!(m.source, ColumnSource::Copy { old_index } if old_index == k))
                .ok_or_else(|| {
                    MigrateError::Mapping(format!(
                        "cannot resume: the new table keeps no copy of the old primary key column {}, so the rows above the copy's watermark cannot be told apart; run `rowshift migrate --abort` and start again",
                        quote_ident(&old.columns[k].name)
                    ))
                })?;
            let name = quote_ident(&col.name);
            let old_cs = old.columns[k].data_type.charset();
            let new_cs = new.columns[col.new_index].data_type.charset();
            let name = match (old_cs, new_cs) {
                (Some(o), Some(n)) if o != n => format!("CONVERT({name} USING {o})"),
                _ => name,
            };
            Ok(copy::KeyColumn {
                name,
                literal: key.literal,
            })
        })
        .collect()
}

/// The verification matches the rows of both tables by primary key: the new one must be the
/// old one, its columns copied in the same order. Refused before anything is changed (it
/// used to fail only at the verification, after the whole copy), unless `--skip-verify`.
fn check_verifiable_key(
    old: &TableSchema,
    new: &TableSchema,
    mapping: &Mapping,
) -> Result<(), MigrateError> {
    if mapping.new_key_sources() == old.primary_key {
        return Ok(());
    }
    let names = |t: &TableSchema| -> String {
        t.primary_key
            .iter()
            .map(|&i| quote_ident(&t.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(MigrateError::Mapping(format!(
        "the ALTER changes the primary key ({}) to ({}): the verification before the cut-over matches the rows of both tables by primary key and cannot check this change. Run it with --skip-verify (the copy and the binlog apply follow the new key; nothing compares the tables before the swap), or keep the primary key in this migration",
        names(old),
        names(new)
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

/// `e` as an [`MigrateError::Interrupted`]: the shadow and checkpoint stay for `--resume`.
fn interrupted(config: &MigrateConfig, e: MigrateError) -> MigrateError {
    warn!(error = %e, "the run stopped on a lost server; keeping the shadow and checkpoint for --resume");
    MigrateError::Interrupted {
        db: config.db.clone(),
        shadow: names::shadow(&config.table),
        ckpt: names::checkpoint(&config.table),
        cause: Box::new(e),
    }
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

/// The stream's settings, starting at `start`, or from its GTID state with `by_gtid` (a
/// resumed run, see [`resume::gtid_start`]): after a failover to a replica the checkpoint's
/// file and offset name another server's bytes, its GTIDs the same transactions everywhere.
fn source_config(config: &MigrateConfig, start: &Position, by_gtid: bool) -> SourceConfig {
    let mut cfg = SourceConfig::new(config.endpoint.url_with_password());
    cfg.server_id = config.server_id;
    cfg.start = if by_gtid {
        crate::position::StartPosition::Gtid(start.gtid.clone())
    } else {
        crate::position::StartPosition::At(start.clone())
    };
    cfg.ssl_mode = config.endpoint.ssl_mode;
    cfg.ssl_ca = config.endpoint.ssl_ca.clone();
    cfg.heartbeat = Duration::from_millis(500);
    // Only the table and the sentry are decoded: the copy's rows into the shadow (as many as
    // the table's) are skipped at their table map instead of decoded and dropped by the router.
    let sentry = names::sentry(&config.table);
    cfg.decode.tables = Some(crate::source::TableFilter::of_tables([
        (config.db.as_str(), config.table.as_str()),
        (config.db.as_str(), sentry.as_str()),
    ]));
    cfg
}

/// Longest wait before a verification for an XA branch prepared on the table to end.
const XA_END_WAIT: Duration = Duration::from_secs(300);

/// Before a verification: wait (up to [`XA_END_WAIT`]) while an XA branch that changed the table
/// is prepared. Its rows are in the shadow but not committed in the table, so the comparison
/// would report them (and the table lock waits for the branch's locks).
async fn wait_xa_ended(stats: &RouterStats) {
    if !stats.xa_open.load(Ordering::Relaxed) {
        return;
    }
    info!("waiting for an XA transaction prepared on the table to end (XA COMMIT or XA ROLLBACK) before verifying");
    let started = Instant::now();
    while stats.xa_open.load(Ordering::Relaxed) {
        if started.elapsed() >= XA_END_WAIT {
            warn!(waited = ?XA_END_WAIT, "an XA transaction prepared on the table has not ended; verifying anyway (its rows will show as differences)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    info!(
        waited_ms = started.elapsed().as_millis() as u64,
        "the prepared XA transaction ended"
    );
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
    deferred_indexes: String,
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
            deferred_indexes: deferred_indexes.clone(),
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

/// How long migrate's error path waits for a router that is ending to give its own error.
const ROUTER_END_WAIT: Duration = Duration::from_secs(5);

/// How long an applier gathers changes before writing a batch smaller than the largest, during
/// the copy and the index build (the router reads the binlog in bursts then; a batch is a
/// transaction). Markers write at once; from the catch-up on the linger is zero.
const APPLY_LINGER: Duration = Duration::from_millis(20);

fn apply_target(
    config: &MigrateConfig,
    flavor: Flavor,
    new: &TableSchema,
    mapping: &Mapping,
) -> ApplyTarget {
    let replace = added_unique_secondary(mapping).is_empty();
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
        // A batch boundary inside a transaction that passes a value of a unique key the shadow
        // adds makes the batch collide: the applier holds it until the rest of the transaction
        // comes (`apply::COLLISION_WAIT`).
        linger: APPLY_LINGER,
        replace,
        reconnect_timeout: config.reconnect_timeout,
        collision_wait: crate::apply::COLLISION_WAIT,
    }
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
            batches: 0,
            copy_time: Duration::ZERO,
            indexes_built: Vec::new(),
            index_time: Duration::ZERO,
            gentle_time: Duration::ZERO,
            peak_app_rate: 0,
            total_time: started.elapsed(),
            cutover: None,
            cutover_began: None,
            verification: None,
        }
    }
}

/// The consistent point of a verification inside `migrate`: only the original table is locked
/// (the appliers keep writing the shadow), and the drain is proven by a marker row read back
/// from the binlog.
struct MigratePoint<'a> {
    config: &'a MigrateConfig,
    cmds: &'a mpsc::Sender<RouterCmd>,
    sentry: &'a str,
}

impl crate::verify::ConsistentPoint for MigratePoint<'_> {
    fn lock_scope(&self) -> crate::verify::LockScope {
        crate::verify::LockScope::OldTable
    }

    async fn drain(&mut self) -> Result<(), crate::verify::DrainError> {
        let mut marker = MarkerConn::new(self.config);
        let drained = wait_marker(&mut marker, self.sentry, self.cmds).await;
        marker.disconnect().await;
        Ok(drained?)
    }
}

/// Verify the shadow against the original, transform applied, at a drained consistent point.
///
/// Never paced: it reads both tables in snapshots, and the longer a snapshot of a written table
/// lives, the more old row versions each read rebuilds (measured with one worker resting 4x
/// between chunks: 7.6 s at 56 % of the application's rate instead of 1.0 s at 31 %).
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
        config,
        cmds,
        sentry,
    };
    Ok(verify::run(plan, &mut point, verify::VerifyConfig::default()).await?)
}
