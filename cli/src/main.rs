//! `rowshift`: the command-line tool for zero-downtime schema changes on MySQL and MariaDB.
//!
//! Thin by design: it parses flags and config, sets up logging, shows progress and reports
//! errors; the work is done by `rowshift-engine`. It must not contain pipeline logic, and it
//! never prints passwords or takes them from argv.

mod binlog_dump;
mod common;
mod config;
mod ctl;
mod migrate;
mod operate_args;
mod progress;
mod sync;
mod verify;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// Zero-downtime schema changes for MySQL, RDS/Aurora MySQL and MariaDB.
#[derive(Debug, Parser)]
#[command(name = "rowshift", version, about)]
struct Cli {
    /// Log format on stderr: text or json (filter with ROWSHIFT_LOG, e.g. rowshift=info).
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "ROWSHIFT_LOG_FORMAT"
    )]
    log_format: String,
    /// TOML file with flag values (keys = flag names; [migrate]/[verify] sections); flags and
    /// ROWSHIFT_<FLAG> environment variables win over it.
    #[arg(long, global = true, value_name = "FILE", env = "ROWSHIFT_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Online ALTER of a live table (a dry run unless --execute).
    Migrate(migrate::MigrateArgs),
    /// Binary log tools.
    Binlog {
        #[command(subcommand)]
        command: BinlogCommand,
    },
    /// Compare a table with its shadow or a table on another server (exit 0 GO, 1 NO-GO, 2
    /// cannot verify).
    Verify(verify::VerifyArgs),
    /// Control a running migration through its socket: status, pause, resume, throttle,
    /// unthrottle, chunk-size, chunk-time-ms, max-load, cut-over, postpone, abort.
    Ctl(ctl::CtlArgs),
    /// Keep tables on another server in step (in a new shape if asked) until stopped.
    Sync(sync::SyncArgs),
    /// Stop-the-writes check, drain and verification of a sync: GO (exit 0) or NO-GO (exit 1).
    Promote(sync::PromoteArgs),
    /// Lag and positions of the syncs checkpointed on a target.
    Status(sync::StatusArgs),
}

/// `rowshift binlog ...`
#[derive(Debug, Subcommand)]
enum BinlogCommand {
    /// Print row changes, commits and DDL of a binlog file or a live server as JSON lines
    /// (format: docs/binlog-dump.md).
    Dump(binlog_dump::DumpArgs),
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROWSHIFT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Run an async subcommand on a fresh runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Parse argv with the environment and config-file layers; `Ok(None)` after `--print-config`.
fn parse() -> anyhow::Result<Option<Cli>> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (cmd, layer) = config::build(Cli::command(), &argv)?;
    let matches = cmd.clone().get_matches_from(&argv);
    if let Some((name, sub)) = matches.subcommand() {
        let wants_print = sub
            .try_get_one::<bool>("print_config")
            .ok()
            .flatten()
            .copied()
            .unwrap_or(false);
        if wants_print {
            print!("{}", config::describe(&cmd, name, sub, &layer));
            return Ok(None);
        }
    }
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => Ok(Some(cli)),
        Err(e) => e.exit(),
    }
}

/// mimalloc: the pipeline allocates rows on one thread and frees them on others, where glibc
/// malloc/free cost ~30 % of the router thread.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(Some(cli)) => cli,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rowshift: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    progress::init_terminal();
    init_logging(&cli.log_format);
    let result = match cli.command {
        Command::Migrate(args) => block_on(migrate::run(args)),
        Command::Binlog {
            command: BinlogCommand::Dump(args),
        } => binlog_dump::run(args),
        Command::Verify(args) => block_on(verify::run(args)),
        Command::Ctl(args) => ctl::run(args),
        Command::Sync(args) => block_on(sync::run_sync(args)),
        Command::Promote(args) => block_on(sync::run_promote(args)),
        Command::Status(args) => block_on(sync::run_status(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rowshift: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
