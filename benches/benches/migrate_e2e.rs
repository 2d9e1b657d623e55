//! End-to-end benchmark of `rowshift migrate` under the ledger load, next to
//! pt-online-schema-change on the same table and load, and the server's own
//! `INSERT … SELECT` copy of the table without load (the limit). Also the catch-up apply rate:
//! a backlog of 1,000,000 row events drained through source → router → appliers.
//!
//! Run: `cargo build --release -p rowshift-cli && cargo bench -p rowshift-benches --bench migrate_e2e` (the
//! bench drives the release `rowshift` binary) with env
//! `ROWSHIFT_BENCH_ENGINE=mysql|mariadb` (default mysql), `ROWSHIFT_BENCH_ROWS` (default
//! 1000000), `ROWSHIFT_BENCH_PEER=0` to skip pt-online-schema-change,
//! `ROWSHIFT_BENCH_ONLY=catchup` to measure the catch-up rate alone, and
//! `ROWSHIFT_BENCH_CATCHUP=4x500,2x2000` for the catch-up settings tried (appliers x batch rows,
//! default the migrate default `4x500`; `none` skips it), `ROWSHIFT_BENCH_ARGS="--appliers 2 ..."` for extra
//! `rowshift migrate` options. Results: benches/README.md.

use mysql_async::prelude::Queryable;
use rowshift_engine::apply::{ApplierSet, ApplyTarget};
use rowshift_engine::conn::Endpoint;
use rowshift_engine::copy::HighWater;
use rowshift_engine::cutover::server_position;
use rowshift_engine::migrate::router::{Router, RouterStats};
use rowshift_engine::position::StartPosition;
use rowshift_engine::source::stream::{BinlogSource, SourceConfig};
use rowshift_testkit::ledger::{
    self, LedgerLoad, LoadReport, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR,
};
use rowshift_testkit::procstat::{machine_cpu, server_pid, CpuSince};
use rowshift_testkit::{rowshift_bin, Engine, ServerOptions, TestServer};

use rowshift_transform::key::KeyCodec;
use rowshift_transform::mapping::Mapping;
use rowshift_transform::schema::Flavor;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const BASELINE: Duration = Duration::from_secs(10);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct RunNumbers {
    tool: &'static str,
    wall: Duration,
    tps_before: f64,
    tps_during: f64,
    p95_before: Duration,
    p95_during: Duration,
    worst_stall: Duration,
    worst_before: Duration,
    /// The slowest commit while the tool ran (the copy's chunk locks make writers wait).
    worst_during: Duration,
    /// When the tool was started, on the load's clock.
    started: Duration,
    peak_rss_kb: u64,
    notes: String,
}

/// How long after the cut-over's end a commit still counts as stalled by it: one queued on its
/// lock returns within milliseconds of the unlock. (Longer windows caught unrelated stalls: MySQL
/// 9.7 here stalls every client for ~101 ms a few times per minute with no tool running; the
/// baseline column shows it.)
const CUTOVER_TAIL: Duration = Duration::from_millis(250);

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Run `cmd` under `/usr/bin/time -f %M` while the load runs; returns the load windows.
async fn run_under_load(
    server: &TestServer,
    db: &str,
    rows: u64,
    program: &std::path::Path,
    args: &[String],
    tool: &'static str,
) -> Res<(RunNumbers, LoadReport, String)> {
    let spid = server_pid(server.port()).unwrap_or_default();
    let load = LedgerLoad::start(&server.url(), db, rows, CLIENTS, 7);
    let (cpu, machine) = (CpuSince::start(&[&spid, "self"]), machine_cpu());
    tokio::time::sleep(BASELINE).await; // the baseline window of the load, not synchronisation
    let t0 = load.elapsed();
    let (base_cpu, base_machine) = (cpu.used(), machine_cpu());
    let cpu = CpuSince::start(&[&spid, "self"]);
    let started = Instant::now();
    let out = tokio::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("peak_rss_kb=%M tool_cpu_s=%U+%S")
        .arg(program)
        .args(args)
        .output()
        .await?;
    let wall = started.elapsed();
    let t1 = load.elapsed();
    let (during_cpu, during_machine) = (cpu.used(), machine_cpu());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("{tool} failed:\n{stdout}\n{stderr}").into());
    }
    let time_line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak_rss_kb="))
        .unwrap_or("");
    let peak_rss_kb = time_line
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tool_cpu: f64 = time_line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("tool_cpu_s="))
        .map(|v| v.split('+').filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(f64::NAN);
    // Where the two cores went: the whole machine's busy share, the server, the load's
    // clients (this process) and the tool, per second of each window.
    if let (Some(m0), Some(m1), Some(m2)) = (machine, base_machine, during_machine) {
        let base_secs = (m1.1 - m0.1).max(1e-9);
        let during_secs = (m2.1 - m1.1).max(1e-9);
        let cores = base_secs / BASELINE.as_secs_f64();
        println!(
            "{tool} CPU (cores of {cores:.1}): baseline busy {:.2}, server {:.2}, load clients {:.2} / during busy {:.2}, server {:.2}, load clients {:.2}, tool {:.2}",
            (m1.0 - m0.0) / base_secs * cores,
            base_cpu[0] / BASELINE.as_secs_f64(),
            base_cpu[1] / BASELINE.as_secs_f64(),
            (m2.0 - m1.0) / during_secs * cores,
            during_cpu[0] / wall.as_secs_f64(),
            during_cpu[1] / wall.as_secs_f64(),
            tool_cpu / wall.as_secs_f64(),
        );
    }
    let n = RunNumbers {
        tool,
        wall,
        tps_before: report.rate(Duration::ZERO, t0),
        tps_during: report.rate(t0, t1),
        p95_before: report
            .quantile(0.95, Duration::ZERO, t0)
            .unwrap_or_default(),
        p95_during: report.quantile(0.95, t0, t1).unwrap_or_default(),
        // The cut-over happens at the end of the run: the worst commit around it.
        worst_stall: report.worst(
            t1.saturating_sub(Duration::from_secs(3)),
            t1 + Duration::from_secs(1),
        ),
        // For scale: the slowest commit of the baseline window, with no tool running.
        worst_before: report.worst(Duration::ZERO, t0),
        worst_during: report.worst(t0, t1),
        started: t0,
        peak_rss_kb,
        notes: String::new(),
    };
    Ok((n, report, format!("{stdout}\n{stderr}")))
}

async fn fresh(server: &TestServer, db: &str, rows: u64) -> Res<mysql_async::Conn> {
    server.fresh_db(db).await?;
    let mut conn = mysql_async::Conn::from_url(server.url()).await?;
    let t = Instant::now();
    ledger::create_and_fill(&mut conn, db, rows).await?;
    eprintln!("filled {rows} rows in {:.1} s", t.elapsed().as_secs_f64());
    Ok(conn)
}

/// The server's own copy of the table into the new shape, without load.
async fn server_copy_limit(conn: &mut mysql_async::Conn, db: &str) -> Res<(Duration, u64)> {
    conn.query_drop(format!("USE `{db}`")).await?;
    conn.query_drop("DROP TABLE IF EXISTS limit_copy").await?;
    conn.query_drop("CREATE TABLE limit_copy LIKE orders")
        .await?;
    conn.query_drop(format!("ALTER TABLE limit_copy {ORDER_STATUS_ALTER}"))
        .await?;
    let t = Instant::now();
    conn.query_drop(format!(
        "INSERT INTO limit_copy (id, customer_id, status_code, amount, counter, note, created_at, updated_at, order_status)
         SELECT id, customer_id, status_code, amount, counter, note, created_at, updated_at, {ORDER_STATUS_EXPR} FROM orders"
    ))
    .await?;
    let took = t.elapsed();
    let n = conn.affected_rows();
    conn.query_drop("DROP TABLE limit_copy").await?;
    Ok((took, n))
}

/// `rowshift migrate` of the bench table with the bench's ALTER and `--set`, plus
/// `ROWSHIFT_BENCH_ARGS`.
fn migrate_args(server: &TestServer) -> Vec<String> {
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    [
        "migrate",
        "--source",
        &server.url(),
        "--table",
        "bench.orders",
        "--alter",
        ORDER_STATUS_ALTER,
        "--set",
        &set,
        "--execute",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        std::env::var("ROWSHIFT_BENCH_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string),
    )
    .collect()
}

/// rowshift's copy with no load (the pace stays full: nothing writes the table), against the
/// server's own `INSERT … SELECT` rate: the copy alone, and the copy with the index build
/// after it.
async fn copy_without_load(server: &TestServer, limit_rate: f64) -> Res<()> {
    let out = tokio::process::Command::new(rowshift_bin())
        .args(migrate_args(server))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "rowshift migrate without load failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    // "migrated: N rows copied in X s (R rows/s), …" and "indexes: … built after the copy in Y s".
    let number_after = |line_start: &str, after: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(line_start))?;
        let rest = line.split_once(after)?.1.trim_start();
        rest.split_whitespace().next()?.parse().ok()
    };
    let rows = number_after("migrated:", "migrated:").ok_or("no migrated: line")?;
    let copy = number_after("migrated:", "copied in").ok_or("no copy time")?;
    let build = number_after("indexes:", "after the copy in").unwrap_or(0.0);
    let rate = rows / copy.max(1e-3);
    let with_build = rows / (copy + build).max(1e-3);
    println!(
        "rowshift copy of the table (no load): {rows:.0} rows in {copy:.2} s = {rate:.0} rows/s ({:.0} % of INSERT ... SELECT); with the index build after it ({build:.2} s): {with_build:.0} rows/s ({:.0} %)\n",
        100.0 * rate / limit_rate,
        100.0 * with_build / limit_rate
    );
    Ok(())
}

/// Drain a backlog of `rows` row events (one UPDATE of every row) through the real pipeline.
async fn catch_up_rate(
    server: &TestServer,
    conn: &mut mysql_async::Conn,
    db: &str,
    appliers: usize,
    batch: usize,
) -> Res<(u64, Duration)> {
    conn.query_drop(format!("USE `{db}`")).await?;
    // A copy of the table, so the ledger of `orders` stays intact.
    conn.query_drop("DROP TABLE IF EXISTS catchup, `_catchup_new`")
        .await?;
    conn.query_drop("CREATE TABLE catchup LIKE orders").await?;
    conn.query_drop("INSERT INTO catchup SELECT * FROM orders")
        .await?;
    conn.query_drop("CREATE TABLE `_catchup_new` LIKE orders")
        .await?;
    conn.query_drop("INSERT INTO `_catchup_new` SELECT * FROM orders")
        .await?;
    let flavor = match server.engine() {
        Engine::MySql => Flavor::MySql,
        Engine::MariaDb => Flavor::MariaDb,
    };
    let old = rowshift_engine::catalog::load_table(conn, flavor, db, "catchup").await?;
    let new = rowshift_engine::catalog::load_table(conn, flavor, db, "_catchup_new").await?;
    let mapping = Mapping::new::<String>(&old, &new, &[], &[])?;
    let p0 = server_position(conn).await?;
    conn.query_drop("UPDATE catchup SET counter = counter + 1")
        .await?;
    let events = conn.affected_rows();

    let endpoint = Endpoint::new(&server.url())?;
    let cols: Vec<String> = mapping
        .insert_columns()
        .iter()
        .map(|c| rowshift_transform::schema::quote_ident(c))
        .collect();
    let key_positions = mapping.key_positions_in_insert().to_vec();
    let target = ApplyTarget {
        endpoint: endpoint.clone(),
        table: format!("`{db}`.`_catchup_new`"),
        kinds: vec![Default::default(); cols.len()],
        columns: cols,
        key_positions: key_positions.clone(),
        max_batch: batch,
        linger: Duration::from_millis(20),
        replace: true,
        reconnect_timeout: Duration::from_secs(300),
        collision_wait: rowshift_engine::apply::COLLISION_WAIT,
    };
    let server_pid = server_pid(server.port()).unwrap_or_default();
    let cpu = CpuSince::start(&[&server_pid, "self"]);
    let started = Instant::now();
    let mut cfg = SourceConfig::new(server.url());
    cfg.start = StartPosition::File {
        file: p0.file.clone(),
        offset: p0.offset,
    };
    cfg.until_end = true;
    let source = BinlogSource::connect(cfg).await?;
    let stream = Box::pin(futures_util::stream::unfold(Some(source), |s| async move {
        let mut s = s?;
        match s.next().await {
            Ok(Some(ev)) => Some((Ok(ev), Some(s))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    }));
    let appliers = ApplierSet::start(target, appliers, 2048).await?;
    let (_hw_tx, hw_rx) = tokio::sync::watch::channel(HighWater::Done);
    let router = Router {
        db: db.to_string(),
        table: "catchup".into(),
        sentry: "catchup_rs_sentry".into(),
        key_codec: KeyCodec::for_primary_key(&new)?,
        key_sources: mapping.key_source_columns(),
        mapping: Arc::new(mapping),
        key_positions,
        int_key: None,
        high_water: hw_rx,
        stats: Arc::new(RouterStats::default()),
        rest: Duration::ZERO,
        phase: tokio::sync::watch::channel("catch-up").1,
    };
    let (_cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(1);
    let (applied_tx, _applied_rx) = tokio::sync::watch::channel(None);
    router.run(stream, appliers, cmd_rx, applied_tx).await?;
    let took = started.elapsed();
    let used = cpu.used();
    println!(
        "catch-up CPU: server {:.2} s, rowshift pipeline {:.2} s (wall {:.2} s)",
        used[0],
        used[1],
        took.as_secs_f64()
    );
    let diff: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM catchup o JOIN `_catchup_new` n USING (id) WHERE o.counter <> n.counter")
        .await?;
    if diff != Some(0) {
        return Err(format!("catch-up left {diff:?} rows behind").into());
    }
    conn.query_drop("DROP TABLE catchup, `_catchup_new`")
        .await?;
    Ok((events, took))
}

/// mimalloc: the pipeline allocates rows on one thread and frees them on others, where glibc
/// malloc/free cost ~30 % of the router thread.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list` and `cargo test --benches` probes
    }
    let engine = match std::env::var("ROWSHIFT_BENCH_ENGINE").as_deref() {
        Ok("mariadb") => Engine::MariaDb,
        _ => Engine::MySql,
    };
    let rows: u64 = env_or("ROWSHIFT_BENCH_ROWS", 1_000_000);
    let peer = env_or("ROWSHIFT_BENCH_PEER", 1u8) == 1;
    let server = TestServer::dedicated(engine, ServerOptions::bench())?;
    let version: Option<String> = mysql_async::Conn::from_url(server.url())
        .await?
        .query_first("SELECT VERSION()")
        .await?;
    println!(
        "## migrate end to end: {engine:?} {}, {rows} rows, ledger load from {CLIENTS} clients\n",
        version.unwrap_or_default()
    );

    // The limit: the server's own INSERT ... SELECT, no load.
    let mut conn = fresh(&server, "bench", rows).await?;
    let only_catchup = std::env::var("ROWSHIFT_BENCH_ONLY").as_deref() == Ok("catchup");
    if !only_catchup {
        let (limit_time, limit_rows) = server_copy_limit(&mut conn, "bench").await?;
        let limit_rate = limit_rows as f64 / limit_time.as_secs_f64();
        println!("server INSERT ... SELECT of the table (no load): {limit_rows} rows in {:.2} s = {limit_rate:.0} rows/s\n", limit_time.as_secs_f64());
        copy_without_load(&server, limit_rate).await?;
        conn = fresh(&server, "bench", rows).await?;
    }

    // Catch-up apply rate on a backlog.
    let settings = std::env::var("ROWSHIFT_BENCH_CATCHUP").unwrap_or_else(|_| "4x500".into());
    for setting in settings.split(',').filter(|s| *s != "none") {
        let (appliers, batch) = setting
            .split_once('x')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or("ROWSHIFT_BENCH_CATCHUP: expected APPLIERSxBATCH[,...], e.g. 4x500")?;
        let (events, took) = catch_up_rate(&server, &mut conn, "bench", appliers, batch).await?;
        println!("catch-up: {events} row events drained in {:.2} s = {:.0} row events/s (source → router → {appliers} appliers, batches of {batch})\n", took.as_secs_f64(), events as f64 / took.as_secs_f64());
    }
    if only_catchup {
        return Ok(());
    }

    // rowshift under load.
    let args = migrate_args(&server);
    let (mut ours, load_report, output) =
        run_under_load(&server, "bench", rows, &rowshift_bin(), &args, "rowshift").await?;
    // rowshift prints when its cut-over began and how long it took ("cut-over: began 10.512 s
    // into the run, took 8.1 ms, …") and its phase times ("phases: … verify 1.2 s · …"): split
    // the worst stall at the cut-over (from its start to CUTOVER_TAIL after it ended, for
    // commits queued on its lock) from the one during the verification before it (its consistent-point lock).
    let cut_line = output.lines().find(|l| l.starts_with("cut-over: began"));
    let field = |after: &str, unit: &str| -> Option<f64> {
        let rest = cut_line?.split_once(after)?.1.trim_start();
        rest.split_once(unit)?.0.trim().parse::<f64>().ok()
    };
    let phase_secs = |name: &str| -> Option<Duration> {
        let line = output.lines().find(|l| l.starts_with("phases:"))?;
        line.split('·').find_map(|part| {
            let rest = part.trim().trim_start_matches("phases:").trim();
            let value = rest.strip_prefix(name)?.trim();
            // "1.2 s", or "28 ms" below a second.
            match value.strip_suffix(" ms") {
                Some(ms) => ms.trim().parse::<f64>().ok().map(|v| v / 1e3),
                None => value.strip_suffix(" s")?.trim().parse::<f64>().ok(),
            }
            .map(Duration::from_secs_f64)
        })
    };
    if let (Some(began), Some(took_ms)) = (field("began", " s"), field("took", " ms")) {
        let cut_start = ours.started + Duration::from_secs_f64(began);
        let cut_end = cut_start + Duration::from_secs_f64(took_ms / 1e3);
        let at_cutover = load_report.worst(cut_start, cut_end + CUTOVER_TAIL);
        let verify = phase_secs("verify").unwrap_or_default();
        let postponed = phase_secs("postponed").unwrap_or_default();
        let verify_start = cut_start.saturating_sub(verify + postponed);
        let at_verify = load_report.worst(verify_start, verify_start + verify);
        println!(
            "rowshift worst commit: {} at the cut-over ({took_ms:.1} ms, from {:.2} s into the run to {} ms after), {} in the verification ({:.2} s) before it",
            ms(at_cutover),
            began,
            CUTOVER_TAIL.as_millis(),
            ms(at_verify),
            verify.as_secs_f64()
        );
        ours.worst_stall = at_cutover;
        // The application's rate in each phase, counted back from the cut-over: which part of
        // the migration costs the application what.
        let mut end = cut_start;
        let mut by_phase = Vec::new();
        for name in ["postponed", "verify", "catch-up", "indexes", "copy"] {
            let Some(d) = phase_secs(name).filter(|d| !d.is_zero()) else {
                continue;
            };
            let from = end.saturating_sub(d);
            let rate = load_report.rate(from, end);
            by_phase.push(format!(
                "{name} {:.1} s: {rate:.0} ({:.0}%)",
                d.as_secs_f64(),
                100.0 * rate / ours.tps_before.max(1e-9)
            ));
            end = from;
        }
        by_phase.reverse();
        println!("rowshift app tx/s by phase: {}", by_phase.join(" · "));
    } else {
        return Err(format!("rowshift printed no cut-over line:\n{output}").into());
    }
    let v = ledger::check_invariant(&mut conn, "bench", "orders", rows).await?;
    let wrong = ledger::wrong_order_status(&mut conn, "bench", "orders").await?;
    if !v.is_empty() || wrong > 0 {
        return Err(format!(
            "rowshift broke the ledger: {v:?}, {wrong} wrong order_status\n{output}"
        )
        .into());
    }
    let summary = output
        .lines()
        .filter(|l| {
            l.starts_with("migrated:")
                || l.starts_with("indexes:")
                || l.starts_with("pace:")
                || l.starts_with("cut-over:")
                || l.starts_with("phases:")
                || l.contains("lock held")
        })
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" / ");
    ours.notes = summary;
    let mut results = vec![ours];

    if peer {
        drop(conn);
        let mut conn = fresh(&server, "bench", rows).await?;
        let dsn = format!("h=127.0.0.1,P={},u=root,D=bench,t=orders", server.port());
        let pt_alter = ORDER_STATUS_ALTER.replace('`', "");
        let args: Vec<String> = [
            "--alter",
            &pt_alter,
            &dsn,
            "--execute",
            "--recursion-method=none",
            "--no-check-replication-filters",
            "--chunk-time=0.5",
            "--set-vars=lock_wait_timeout=5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pt = std::path::PathBuf::from("/usr/bin/pt-online-schema-change");
        let (mut theirs, _r, output) = run_under_load(
            &server,
            "bench",
            rows,
            &pt,
            &args,
            "pt-online-schema-change",
        )
        .await?;
        let v = ledger::check_invariant(&mut conn, "bench", "orders", rows).await?;
        theirs.notes = format!(
            "ledger {}; no --set: the column gets its DEFAULT, an UPDATE would be needed; {}",
            if v.is_empty() { "intact" } else { "BROKEN" },
            output
                .lines()
                .filter(|l| l.contains("Copied") || l.contains("Swapped"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        results.push(theirs);
    }

    println!("| tool | wall time | app tx/s before | during | p95 before | p95 during | worst stall at cut-over | worst commit in the baseline | worst commit during | peak RSS | notes |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.1} s | {:.0} | {:.0} ({:.0}%) | {} | {} | {} | {} | {} | {:.0} MB | {} |",
            r.tool,
            r.wall.as_secs_f64(),
            r.tps_before,
            r.tps_during,
            100.0 * r.tps_during / r.tps_before.max(1e-9),
            ms(r.p95_before),
            ms(r.p95_during),
            ms(r.worst_stall),
            ms(r.worst_before),
            ms(r.worst_during),
            r.peak_rss_kb as f64 / 1024.0,
            r.notes
        );
    }
    Ok(())
}
