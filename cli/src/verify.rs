//! `rowshift verify`: compare a table with its shadow (same server) or with a table on another
//! server, at a consistent point, while writes continue.
//!
//! Exit codes: 0 equal (GO), 1 differences found (NO-GO), 2 could not verify (the reason is
//! printed, and written to every `--report *.json`).

use crate::common::{read_password, refuse_url_password, ConnArgs};
use anyhow::{bail, Context, Result};
use rowshift_engine::conn::{Endpoint, SslMode};
use rowshift_engine::verify::{
    self, report::cannot_verify_json, ColumnMapping, LockMethod, NewTable, Standalone, TableRef,
    VerifyConfig, VerifyPlan, VerifyReport,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Compare a table with its shadow or with a table on another server.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The original table, as db.table.
    #[arg(long)]
    table: String,
    /// The shadow table on the same server, as db.table.
    #[arg(long, required_unless_present = "target", conflicts_with = "target")]
    shadow: Option<String>,
    /// The other server's URL (without password).
    #[arg(long, requires = "target_table")]
    target: Option<String>,
    /// The table on the other server, as db.table.
    #[arg(long, requires = "target")]
    target_table: Option<String>,
    /// Environment variable holding the target's password.
    #[arg(long, default_value = "ROWSHIFT_TARGET_PASSWORD")]
    target_password_env: String,
    /// File holding the target's password (first line).
    #[arg(long)]
    target_password_file: Option<PathBuf>,
    /// Ask for the target's password on the terminal (not echoed).
    #[arg(long, conflicts_with = "target_password_file")]
    ask_target_password: bool,
    /// Target TLS: disabled, preferred, required, verify-ca, verify-identity.
    #[arg(long, default_value = "preferred")]
    target_ssl_mode: String,
    /// CA certificate (PEM) for the target.
    #[arg(long)]
    target_ssl_ca: Option<PathBuf>,
    /// The migration's ALTER (what follows ALTER TABLE), for its renames; with --set, the
    /// transform applied to the old side. Without both, columns are compared by name and the
    /// tables must have the same columns.
    #[arg(long)]
    alter: Option<String>,
    /// A new column's expression over the old columns, as given to migrate: "col = expression".
    #[arg(long = "set")]
    sets: Vec<String>,
    /// Write the report: *.json (machine-readable) or *.html (self-contained page). Repeatable.
    #[arg(long)]
    report: Vec<PathBuf>,
    /// Chunks compared at once (one snapshot connection per side each).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How long to wait for the brief table lock, in seconds, per attempt.
    #[arg(long, default_value_t = 2)]
    lock_wait: u64,
    /// Lock with FLUSH TABLES .. WITH READ LOCK (needs RELOAD) instead of LOCK TABLES.
    #[arg(long)]
    flush_tables: bool,
    /// Differing rows whose values are listed (all are counted).
    #[arg(long, default_value_t = 1000)]
    max_reported_rows: usize,
}

/// Run the subcommand; errors become exit code 2 with the reason.
pub async fn run(args: VerifyArgs) -> Result<ExitCode> {
    let reports = args.report.clone();
    for path in &reports {
        report_kind(path)?;
    }
    match verify(args).await {
        Ok(report) => {
            print!("{}", report.summary());
            for path in &reports {
                let text = match report_kind(path)? {
                    Kind::Json => report.to_json(),
                    Kind::Html => report.to_html(),
                };
                std::fs::write(path, text)
                    .with_context(|| format!("writing the report {}", path.display()))?;
                println!("  report: {}", path.display());
            }
            Ok(ExitCode::from(if report.is_go() { 0 } else { 1 }))
        }
        Err(e) => {
            let reason = format!("{e:#}");
            eprintln!("rowshift verify: CANNOT VERIFY: {reason}");
            for path in reports
                .iter()
                .filter(|p| matches!(report_kind(p), Ok(Kind::Json)))
            {
                let _ = std::fs::write(path, cannot_verify_json(&reason));
            }
            Ok(ExitCode::from(2))
        }
    }
}

async fn verify(args: VerifyArgs) -> Result<VerifyReport> {
    let source = args.conn.endpoint()?;
    let table = parse_table("--table", &args.table)?;
    let new = match (&args.shadow, &args.target, &args.target_table) {
        (Some(shadow), None, _) => NewTable::Shadow(parse_table("--shadow", shadow)?),
        (None, Some(url), Some(t)) => NewTable::Remote {
            endpoint: target_endpoint(&args, url)?,
            table: parse_table("--target-table", t)?,
        },
        _ => bail!("give --shadow db.table, or --target URL with --target-table db.table"),
    };
    let mapping = if args.alter.is_none() && args.sets.is_empty() {
        ColumnMapping::Identity
    } else {
        verify::mapping_for_alter(
            &source,
            &table,
            &new,
            args.alter.as_deref().unwrap_or(""),
            &args.sets,
        )
        .await?
    };
    let config = VerifyConfig {
        workers: args.workers,
        lock_wait_timeout: Duration::from_secs(args.lock_wait.max(1)),
        lock_method: if args.flush_tables {
            LockMethod::FlushTables
        } else {
            LockMethod::LockTables
        },
        max_reported_rows: args.max_reported_rows,
        ..VerifyConfig::default()
    };
    let plan = VerifyPlan {
        source,
        table,
        new,
        mapping,
    };
    Ok(verify::run(plan, &mut Standalone, config).await?)
}

fn target_endpoint(args: &VerifyArgs, url: &str) -> Result<Endpoint> {
    refuse_url_password("--target", url)?;
    let password = read_password(
        args.target_password_file.as_deref(),
        args.ask_target_password,
        &args.target_password_env,
        url,
    )?;
    let mode: SslMode = args.target_ssl_mode.parse()?;
    Ok(Endpoint::new(url)?
        .with_password(password)
        .with_ssl(mode, args.target_ssl_ca.clone())?)
}

fn parse_table(flag: &str, s: &str) -> Result<TableRef> {
    TableRef::parse(s).with_context(|| format!("{flag} must be db.table (got {s:?})"))
}

enum Kind {
    Json,
    Html,
}

fn report_kind(path: &Path) -> Result<Kind> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Ok(Kind::Json),
        Some("html") | Some("htm") => Ok(Kind::Html),
        _ => bail!(
            "--report {}: the file name must end in .json or .html",
            path.display()
        ),
    }
}
