//! `rowshift ctl`: send one command to a running migration's control socket and print the
//! JSON reply (exit 0 when `ok`, 1 when the migration refused, 2 when it cannot be reached).

use crate::common::split_table;
use anyhow::{bail, Context, Result};
use rowshift_engine::control::server::default_socket_path;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Control a running migration.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The migration's control socket.
    #[arg(long, conflicts_with = "table", required_unless_present = "table")]
    socket: Option<PathBuf>,
    /// The migrated table as db.table: its default socket /tmp/rowshift-<db>.<table>.sock.
    #[arg(long)]
    table: Option<String>,
    /// status, pause, resume, throttle, unthrottle, chunk-size N|auto, chunk-time-ms N,
    /// max-load Var=N[,Var=N], cut-over, postpone, abort.
    command: String,
    /// The command's argument (chunk-size, chunk-time-ms, max-load).
    arg: Option<String>,
}

/// Run the subcommand.
pub fn run(args: CtlArgs) -> Result<ExitCode> {
    let path = match (&args.socket, &args.table) {
        (Some(p), _) => p.clone(),
        (None, Some(t)) => {
            let (db, table) = split_table(t)?;
            find_socket(default_socket_path(&db, &table))
        }
        (None, None) => bail!("give --socket PATH or --table db.table"),
    };
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "no migration answers on {} (is it running, and is this its --control-socket?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = serde_json::json!({ "cmd": args.command });
    if let Some(a) = &args.arg {
        request["arg"] = serde_json::json!(a);
    }
    let mut line = request.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .with_context(|| format!("sending to {}", path.display()))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .with_context(|| format!("reading the reply from {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(reply.trim())
        .with_context(|| format!("the reply is not JSON: {reply:?}"))?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    if value.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
        Ok(ExitCode::SUCCESS)
    } else {
        if let Some(e) = value.get("error").and_then(serde_json::Value::as_str) {
            eprintln!("rowshift: ctl: {e}");
        }
        Ok(ExitCode::from(1))
    }
}

/// The default socket, or the one a run made beside it when the default was busy
/// (`….<pid>.sock`), whichever exists (the default first).
fn find_socket(default: PathBuf) -> PathBuf {
    if default.exists() {
        return default;
    }
    let name = default
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".sock").unwrap_or(&name).to_string();
    let dir = default.parent().map(PathBuf::from).unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return default;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .and_then(|n| {
                    n.strip_prefix(&format!("{stem}."))
                        .and_then(|r| r.strip_suffix(".sock"))
                        .map(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
                })
                .unwrap_or(false)
        })
        .unwrap_or(default)
}
