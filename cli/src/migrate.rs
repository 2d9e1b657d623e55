//! `rowshift migrate`: the online ALTER, with a progress line and a final summary.

use crate::common::{split_table, ConnArgs};
use crate::operate_args::OperateArgs;
use crate::progress;
use anyhow::Result;
use rowshift_engine::copy::CopyConfig;
use rowshift_engine::cutover::CutoverConfig;
use rowshift_engine::hooks::Hooks;
use rowshift_engine::migrate::{self, MigrateConfig, Progress};
use std::path::PathBuf;
use std::process::ExitCode;

/// How the copy shares the server with the application (`--pace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// Gentle while the binlog shows the application writing the table, full otherwise.
    Auto,
    /// Always the configured chunk time, workers and nice ratio.
    Full,
    /// Always gentle.
    Gentle,
}

/// When the shadow's plain secondary indexes are built (`--index-build`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexBuild {
    /// Left out of the copy, built in one sorted pass after it.
    AfterCopy,
    /// Kept in the shadow, updated row by row as the copy inserts.
    DuringCopy,
}
use std::time::Duration;

/// Online ALTER of a live table.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The table, as db.table.
    #[arg(long)]
    table: String,
    /// What follows ALTER TABLE, e.g. "ADD COLUMN order_status VARCHAR(16), ADD INDEX (order_status)".
    #[arg(long)]
    alter: String,
    /// Fill a new or changed column with an expression of the old columns: "col = expression".
    #[arg(long = "set")]
    sets: Vec<String>,
    /// Really migrate; without it, a dry run that changes nothing.
    #[arg(long)]
    execute: bool,
    /// Drop helper tables left by an earlier run (including its old table).
    #[arg(long)]
    drop_leftovers: bool,
    /// Parallel appliers of binlog changes.
    #[arg(long, default_value_t = 4)]
    appliers: usize,
    /// Chunks copied at once.
    #[arg(long, default_value_t = 2)]
    copy_workers: usize,
    /// Wished duration of one copy chunk, in milliseconds. A chunk share-locks the rows it
    /// read until it commits: an application write to one of them waits up to this long.
    #[arg(long, default_value_t = 500)]
    chunk_time_ms: u64,
    /// While the copy runs, read the binlog in bursts this many milliseconds apart (staying
    /// within about a second of the source): the server's dump thread and rowshift then wake a
    /// few times a second instead of once per commit. 0 follows the binlog continuously.
    #[arg(long, default_value_t = 250)]
    stream_rest_ms: u64,
    /// When the new table's plain (non-unique) secondary indexes are built: `after-copy`
    /// leaves them out of the copy and builds each in one sorted pass once the rows are in
    /// (about half the server's work per copied row); `during-copy` keeps them, updated row by
    /// row as the copy inserts.
    #[arg(long, value_enum, default_value_t = IndexBuild::AfterCopy)]
    index_build: IndexBuild,
    /// How the copy shares the server with the application. `gentle`: 10 ms chunks (a chunk
    /// share-locks the rows it reads, so an application write waits at most that long), one
    /// copy worker resting 4x each chunk's time, index builds on one thread (MySQL). `full`: --chunk-time-ms, --copy-workers and
    /// --copy-nice-ratio as given. `auto`: gentle while the binlog shows the application
    /// writing the table (at least 200 row changes a second over two seconds; full again below
    /// 50), full otherwise.
    #[arg(long, value_enum, default_value_t = Pace::Auto)]
    pace: Pace,
    /// Hold the cut-over until the flag file (printed at start) is deleted.
    #[arg(long)]
    postpone_cut_over: bool,
    /// Flag file for --postpone-cut-over.
    #[arg(long)]
    postpone_flag_file: Option<PathBuf>,
    /// How long the cut-over may wait for the table lock, in seconds.
    #[arg(long, default_value_t = 2)]
    cut_over_lock_wait: u64,
    /// Server id of rowshift's binlog connection (unique among replicas).
    #[arg(long)]
    server_id: Option<u32>,
    /// Continue an interrupted migration from its checkpoint (same --table/--alter/--set).
    #[arg(long, conflicts_with = "abort")]
    resume: bool,
    /// Drop the shadow, checkpoint and sentry tables of an interrupted migration; the table
    /// and any old table are left untouched.
    #[arg(long)]
    abort: bool,
    /// Cut over even when the verification finds differences.
    #[arg(long)]
    allow_differences: bool,
    /// Do not verify before the cut-over.
    #[arg(long)]
    skip_verify: bool,
    /// Write the verification report to this file (.json or .html).
    #[arg(long)]
    verify_report: Option<PathBuf>,
    /// How long, in seconds, every connection keeps retrying a lost server (restart, network)
    /// before the run stops; it then keeps its shadow and checkpoint for --resume.
    #[arg(long, default_value_t = 300)]
    reconnect_timeout: u64,
    #[command(flatten)]
    operate: OperateArgs,
    /// Without a terminal: print a status line this often (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = progress::parse_duration)]
    status_interval: Duration,
    /// Folder of hook executables run at phase changes (rowshift-on-startup,
    /// rowshift-on-copy-done, rowshift-on-before-cut-over, rowshift-on-success, ...; see README).
    #[arg(long)]
    hooks_dir: Option<PathBuf>,
    /// How long one hook may run before it is killed (and, before the cut-over, fails the run).
    #[arg(long, default_value = "60s", value_parser = progress::parse_duration)]
    hook_timeout: Duration,
}

/// Run the subcommand.
pub async fn run(args: MigrateArgs) -> Result<ExitCode> {
    let endpoint = args.conn.endpoint()?;
    let operate = args.operate.config(&args.conn)?;
    let (db, table) = split_table(&args.table)?;
    let hooks = match &args.hooks_dir {
        Some(dir) => {
            Hooks::from_dir(dir, args.hook_timeout)?.hide_env([args.conn.password_env.clone()])
        }
        None => Hooks::default(),
    };
    let default_flag = PathBuf::from(format!("rowshift-{db}.{table}.postpone"));
    let postpone_flag = if args.postpone_cut_over || args.postpone_flag_file.is_some() {
        let flag = args.postpone_flag_file.clone().unwrap_or(default_flag);
        if !flag.exists() {
            std::fs::write(&flag, b"delete this file to let rowshift cut over\n")?;
        }
        progress::eprint_line(&format!(
            "cut-over postponed: delete {} to let it happen",
            flag.display()
        ));
        Some(flag)
    } else if default_flag.exists() {
        // Left by an earlier run of this migration that was postponed and did not end (killed,
        // or a crash): a resume without --postpone-cut-over must not cut over behind the
        // operator's back.
        progress::eprint_line(&format!(
            "cut-over postponed: {} exists (left by an earlier postponed run); delete it to let the cut-over happen",
            default_flag.display()
        ));
        Some(default_flag)
    } else {
        None
    };
    let config = MigrateConfig {
        endpoint,
        db,
        table,
        alter: args.alter,
        sets: args.sets,
        execute: args.execute,
        drop_leftovers: args.drop_leftovers,
        appliers: args.appliers,
        copy: CopyConfig {
            workers: args.copy_workers,
            target_chunk_time: Duration::from_millis(args.chunk_time_ms),
            ..CopyConfig::default()
        },
        cutover: CutoverConfig {
            lock_wait: Duration::from_secs(args.cut_over_lock_wait),
            ..CutoverConfig::default()
        },
        postpone_flag,
        resume: args.resume,
        abort: args.abort,
        allow_differences: args.allow_differences,
        skip_verify: args.skip_verify,
        verify_report: args.verify_report,
        reconnect_timeout: Duration::from_secs(args.reconnect_timeout),
        stream_rest: Duration::from_millis(args.stream_rest_ms),
        defer_indexes: args.index_build == IndexBuild::AfterCopy,
        pace: match args.pace {
            Pace::Auto => migrate::pace::PaceMode::Auto,
            Pace::Full => migrate::pace::PaceMode::Full,
            Pace::Gentle => migrate::pace::PaceMode::Gentle,
        },
        operate,
        hooks,
        server_id: args
            .server_id
            .unwrap_or_else(|| 1_000_000 + std::process::id() % 1_000_000),
    };
    let execute = config.execute;
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let printer = tokio::spawn(progress::show(rx, args.status_interval));
    let result = migrate::run(config, tx).await;
    let phases = printer.await.unwrap_or_default();
    let report = result?;
    println!("{}", report.plan);
    if report.cutover.is_none() && (args_note(&report.plan)) {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(v) = &report.verification {
        println!("verification before cut-over:\n{v}");
    }
    if !execute {
        println!("dry run: the shadow table was created, checked and dropped; nothing of yours changed. Add --execute to migrate.");
        return Ok(ExitCode::SUCCESS);
    }
    let rate = report.rows_copied as f64 / report.copy_time.as_secs_f64().max(1e-3);
    println!(
        "migrated: {} rows copied in {:.1} s ({:.0} rows/s), {} binlog changes applied in {} batches, total {:.1} s",
        report.rows_copied,
        report.copy_time.as_secs_f64(),
        rate,
        report.events,
        report.batches,
        report.total_time.as_secs_f64()
    );
    if !report.indexes_built.is_empty() {
        println!(
            "indexes: {} built after the copy in {:.1} s",
            report
                .indexes_built
                .iter()
                .map(|n| rowshift_transform::schema::quote_ident(n))
                .collect::<Vec<_>>()
                .join(", "),
            report.index_time.as_secs_f64()
        );
    }
    // Auto starts gentle until it has seen the table; say so only when the application wrote.
    if !report.gentle_time.is_zero() && report.peak_app_rate > 0 {
        println!(
            "pace: gentle for {:.1} s, yielding to the application (it wrote the table at up to {} rows/s; --pace full copies at full speed)",
            report.gentle_time.as_secs_f64(),
            report.peak_app_rate
        );
    }
    if let Some(c) = &report.cutover {
        println!(
            "cut-over: began {:.3} s into the run, took {:.1} ms, table locked {:.1} ms (attempt {}); the original table is kept as `{}`: drop it when you no longer need a rollback",
            report.cutover_began.unwrap_or_default().as_secs_f64(),
            c.took.as_secs_f64() * 1000.0,
            c.lock_time.as_secs_f64() * 1000.0,
            c.attempts,
            c.old_table
        );
    }
    // The display samples the engine's phase, so a cut-over of a few milliseconds can fall
    // between two samples: the report's own time stands in for it then.
    let missed_cutover = report
        .cutover
        .as_ref()
        .filter(|_| !phases.iter().any(|(p, _)| *p == "cut-over"))
        .map(|c| ("cut-over", c.took));
    if !phases.is_empty() {
        println!(
            "phases: {}",
            phases
                .iter()
                .copied()
                .filter(|(p, _)| *p != "done")
                .chain(missed_cutover)
                .map(|(p, d)| format!("{p} {}", phase_time(d)))
                .collect::<Vec<_>>()
                .join(" · ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A phase's duration for the summary: milliseconds below a second (a cut-over takes a few),
/// else seconds with one decimal.
fn phase_time(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// True for reports that only carry a note (abort, clean-up of a finished earlier run).
fn args_note(plan: &str) -> bool {
    plan.starts_with("aborted:") || plan.starts_with("the cut-over of an earlier run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_times_read_well() {
        assert_eq!(phase_time(Duration::from_micros(28_400)), "28 ms");
        assert_eq!(phase_time(Duration::from_millis(999)), "999 ms");
        assert_eq!(phase_time(Duration::from_millis(1_000)), "1.0 s");
        assert_eq!(phase_time(Duration::from_millis(12_345)), "12.3 s");
    }
}
