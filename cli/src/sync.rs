//! `rowshift sync`, `rowshift promote` and `rowshift status`: keep tables on another server in
//! step (in a new shape if asked), promote with a verified GO / NO-GO, show lag.

use crate::common::{split_table, ConnArgs};
use crate::operate_args::OperateArgs;
use crate::progress;
use anyhow::{bail, Context, Result};
use rowshift_engine::conn::{Endpoint, SslMode};
use rowshift_engine::sync::promote::{self, PromoteConfig};
use rowshift_engine::sync::{self, SyncConfig, SyncProgress, SyncTable};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Options of the target server.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The target server's URL without password, e.g. mysql://admin@replica.example.com:3306
    #[arg(long, env = "ROWSHIFT_TARGET")]
    target: String,
    /// Environment variable holding the target's password.
    #[arg(long, default_value = "ROWSHIFT_TARGET_PASSWORD")]
    target_password_env: String,
    /// File holding the target's password (first line).
    #[arg(long)]
    target_password_file: Option<PathBuf>,
    /// Target TLS: disabled, preferred, required, verify-ca, verify-identity.
    #[arg(long, default_value = "preferred")]
    target_ssl_mode: String,
    /// CA certificate (PEM) for the target.
    #[arg(long)]
    target_ssl_ca: Option<PathBuf>,
}

impl TargetArgs {
    fn endpoint(&self) -> Result<Endpoint> {
        crate::common::refuse_url_password("--target", &self.target)?;
        let password = match &self.target_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the password file {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => std::env::var(&self.target_password_env).ok(),
        };
        let mode: SslMode = self.target_ssl_mode.parse()?;
        Ok(Endpoint::new(&self.target)?
            .with_password(password)
            .with_ssl(mode, self.target_ssl_ca.clone())?)
    }
}

/// Keep tables on another server in step with the source until stopped (Ctrl-C / SIGTERM).
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    target: TargetArgs,
    /// A source table as db.table (repeatable: several tables in one run).
    #[arg(long = "table", required = true)]
    tables: Vec<String>,
    /// The target table of each --table, in the same order (default: the same db.table).
    #[arg(long = "target-table")]
    target_tables: Vec<String>,
    /// ALTER specification applied to the first --table's definition when rowshift creates its
    /// target table (what follows ALTER TABLE); its renames are followed.
    #[arg(long, conflicts_with = "target_schema_from_existing")]
    alter: Option<String>,
    /// "col = expression" for a new or changed column of the first --table (repeatable).
    #[arg(long = "set")]
    sets: Vec<String>,
    /// The target tables exist already (in their new shape): check them instead of creating.
    #[arg(long)]
    target_schema_from_existing: bool,
    /// Appliers per table (one when the target table has unique secondary keys).
    #[arg(long, default_value_t = 4)]
    appliers: usize,
    /// Rows per backfill chunk.
    #[arg(long, default_value_t = 2_000)]
    chunk_rows: usize,
    /// Name of this sync: the checkpoint key. Running again with the same name resumes.
    #[arg(long, default_value = "default")]
    name: String,
    /// Replica server id of the binlog connection.
    #[arg(long)]
    server_id: Option<u32>,
    /// How long a refusing target or a lost source is waited for, in seconds.
    #[arg(long, default_value_t = 600)]
    retry_secs: u64,
    /// Throttling of the backfill, `rowshift ctl` and metrics (as for migrate).
    #[command(flatten)]
    operate: OperateArgs,
    /// Without a terminal: print a status line this often (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "2s", value_parser = progress::parse_duration)]
    status_interval: Duration,
}

impl SyncArgs {
    fn config(&self) -> Result<SyncConfig> {
        if !self.target_tables.is_empty() && self.target_tables.len() != self.tables.len() {
            bail!(
                "give one --target-table per --table ({} tables, {} target tables)",
                self.tables.len(),
                self.target_tables.len()
            );
        }
        let mut tables = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            let (sdb, st) = split_table(t)?;
            let (tdb, tt) = match self.target_tables.get(i) {
                Some(x) => split_table(x)?,
                None => (sdb.clone(), st.clone()),
            };
            tables.push(SyncTable {
                source_db: sdb,
                source_table: st,
                target_db: tdb,
                target_table: tt,
                alter: if i == 0 { self.alter.clone() } else { None },
                sets: if i == 0 {
                    self.sets.clone()
                } else {
                    Vec::new()
                },
            });
        }
        Ok(SyncConfig {
            source: self.conn.endpoint()?,
            target: self.target.endpoint()?,
            tables,
            name: self.name.clone(),
            target_schema_from_existing: self.target_schema_from_existing,
            appliers: self.appliers,
            chunk_rows: self.chunk_rows,
            server_id: self
                .server_id
                .unwrap_or_else(|| 2_000_000 + std::process::id() % 1_000_000),
            retry_for: Duration::from_secs(self.retry_secs),
            operate: self.operate.config(&self.conn)?,
        })
    }
}

/// Run `rowshift sync` until Ctrl-C / SIGTERM (exit 0) or a failure (exit 2).
pub async fn run_sync(args: SyncArgs) -> Result<ExitCode> {
    let config = args.config()?;
    // Signals first: a stop during the setup leaves nothing half-done (the setup is safe to
    // run again), so it simply ends the process cleanly.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut handle = tokio::select! {
        h = sync::start(config) => h?,
        _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        _ = term.recv() => return Ok(ExitCode::SUCCESS),
    };
    progress::eprint_line(
        "rowshift sync: running; stop with Ctrl-C (the checkpoint is kept: run again to resume)",
    );
    let printer = tokio::spawn(progress::drive(handle.progress(), args.status_interval));
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        e = handle.failed() => Some(e),
    };
    // Stopping ends the progress feed, which leaves the bars finished on screen.
    let stopped = handle.stop().await;
    end_display(printer).await;
    if let Some(e) = outcome {
        return Err(e.into());
    }
    stopped?;
    println!("sync stopped; checkpoint kept (run the same command to resume)");
    Ok(ExitCode::SUCCESS)
}

/// Wait (briefly) for the progress display to draw its last frame after its feed ended.
async fn end_display(printer: tokio::task::JoinHandle<progress::PhaseTimes>) {
    let abort = printer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), printer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// Promote: wait for writes to stop (or lock the source), drain, verify, GO / NO-GO.
#[derive(Debug, Clone, clap::Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    sync: SyncArgs,
    /// Hold LOCK TABLES ... READ on the source tables while draining and verifying (needs only
    /// LOCK TABLES and SELECT: works on RDS) instead of waiting for writes to stop.
    #[arg(long)]
    lock_source: bool,
    /// With --lock-source: keep the source tables locked after a GO until Ctrl-C, while the
    /// application is switched to the target.
    #[arg(long, requires = "lock_source")]
    keep_lock: bool,
    /// Seconds without a change of a synced table that mean writes have stopped.
    #[arg(long, default_value_t = 5)]
    quiet_secs: u64,
    /// Longest wait for the backfill, the writes to stop and the drain, in seconds.
    #[arg(long, default_value_t = 3_600)]
    timeout_secs: u64,
    /// Write each table's verification report here (.json or .html; one file per table, the
    /// table's name inserted before the extension when there are several).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Run `rowshift promote`: exit 0 GO, 1 NO-GO, 2 could not promote.
pub async fn run_promote(args: PromoteArgs) -> Result<ExitCode> {
    let config = args.sync.config()?;
    let names: Vec<String> = config
        .tables
        .iter()
        .map(|t| format!("{}.{}", t.source_db, t.source_table))
        .collect();
    let p = PromoteConfig {
        lock_source: args.lock_source,
        keep_lock: args.keep_lock,
        quiet: Duration::from_secs(args.quiet_secs),
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let (tx, rx) = tokio::sync::watch::channel(SyncProgress::default());
    let printer = tokio::spawn(progress::drive(rx, args.sync.status_interval));
    let result = promote::promote(config, p, tx).await;
    end_display(printer).await;
    let report = result?;
    for (name, r) in names.iter().zip(&report.reports) {
        println!("{name}:");
        print!("{}", r.summary());
        if let Some(path) = &args.report {
            let path = if names.len() > 1 {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("report");
                let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("json");
                path.with_file_name(format!("{stem}.{name}.{ext}"))
            } else {
                path.clone()
            };
            let body = if path.extension().is_some_and(|e| e == "html") {
                r.to_html()
            } else {
                r.to_json()
            };
            std::fs::write(&path, body)
                .with_context(|| format!("writing the report {}", path.display()))?;
            println!("  report: {}", path.display());
        }
    }
    println!("drained to source position {}", report.final_position);
    if report.go {
        println!("GO: the target tables equal the source tables (transform applied)");
    } else {
        println!("NO-GO: differences found (see above); the sync's checkpoint is kept: fix the cause and run sync / promote again");
    }
    if let Some(lock) = report.source_lock {
        println!("the source tables stay locked for writes until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        drop(lock);
    } else if report.go {
        // Nothing holds the source now and the sync has stopped: say what that means.
        println!(
            "the sync has stopped{}: a write made to the source tables from now on is not on the target; switch the application to the target before it writes again (--lock-source --keep-lock holds the source's writes until then)",
            if args.lock_source { " and the source lock is released" } else { "" }
        );
    }
    Ok(ExitCode::from(if report.go { 0 } else { 1 }))
}

/// Show the state of the syncs whose checkpoint table is in --ckpt-db on the target.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The source (for its current position and the lag), without password.
    #[arg(long, env = "ROWSHIFT_SOURCE")]
    source: Option<String>,
    /// Environment variable holding the source's password.
    #[arg(long, default_value = "ROWSHIFT_PASSWORD")]
    password_env: String,
    /// Database of the checkpoint table on the target (the first target table's database).
    #[arg(long)]
    ckpt_db: String,
}

/// Run `rowshift status`.
pub async fn run_status(args: StatusArgs) -> Result<ExitCode> {
    let target = args.target.endpoint()?;
    let source = match &args.source {
        Some(url) => {
            crate::common::refuse_url_password("--source", url)?;
            Some(Endpoint::new(url)?.with_password(std::env::var(&args.password_env).ok()))
        }
        None => None,
    };
    let (streams, position) =
        rowshift_engine::sync::status::read(&target, &args.ckpt_db, source.as_ref()).await?;
    if let Some(p) = &position {
        println!("source position: {p}");
    }
    for l in rowshift_engine::sync::status::live(&target, &args.ckpt_db).await? {
        let state = if l.age_secs > 5.0 {
            format!("not running (last report {:.0} s ago)", l.age_secs)
        } else {
            "running".to_string()
        };
        println!(
            "sync {} {state}: phase {}, source {}, applied {}, lag {:.1} s / {} events, {:.0} changes/s, {} rows backfilled",
            l.name, l.phase, l.source_position, l.applied, l.lag_secs, l.lag_events, l.rows_per_sec, l.backfilled
        );
    }
    if streams.is_empty() {
        println!("no sync streams in `{}`._rowshift_sync_ckpt", args.ckpt_db);
    }
    for s in streams {
        let behind = match &position {
            Some(p) if *p.file == *s.applied.file => {
                format!(
                    ", {} bytes behind",
                    p.offset.saturating_sub(s.applied.offset)
                )
            }
            Some(_) => ", behind by at least one binlog file".to_string(),
            None => String::new(),
        };
        println!(
            "{}: applied {}{behind}; {} appliers; backfill {}; checkpoint written {:.1} s ago",
            s.stream,
            s.applied,
            s.appliers,
            if s.backfill_done {
                "done".to_string()
            } else {
                format!("at chunk {}", s.chunk)
            },
            s.checkpoint_age_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}
