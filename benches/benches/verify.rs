//! Benchmark of `rowshift verify`: checksum speed (rows compared per second) of a table against
//! its shadow on the same server, and the lock time of the consistent point while the ledger
//! load writes the table.
//!
//! Run: `cargo bench -p rowshift-benches --bench verify` with env
//! `ROWSHIFT_BENCH_ENGINE=mysql|mariadb|both` (default both), `ROWSHIFT_BENCH_ROWS` (default
//! 1000000), `ROWSHIFT_BENCH_WORKERS` (default 2), `ROWSHIFT_BENCH_RUNS` (default 3),
//! `ROWSHIFT_BENCH_CHUNK_MS` (target chunk time; default the verifier's), `ROWSHIFT_BENCH_PEER=0`
//! (skip pt-table-checksum, the peer, run on the quiet table). Each quiet run prints the
//! server's and this process's CPU seconds and when each chunk finished.
//! Results: benches/README.md.

use mysql_async::prelude::Queryable;
use rowshift_engine::conn::Endpoint;
use rowshift_engine::verify::{
    self, ColumnMapping, NewTable, Standalone, TableRef, VerifyConfig, VerifyPlan, VerifyReport,
};
use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::procstat::{server_pid, CpuSince};
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn run_once(server: &TestServer, db: &str, workers: usize) -> Res<VerifyReport> {
    let plan = VerifyPlan {
        source: Endpoint::new(&server.url())?,
        table: TableRef::new(db, "orders"),
        new: NewTable::Shadow(TableRef::new(db, "_orders_new")),
        mapping: ColumnMapping::Identity,
    };
    let mut config = VerifyConfig {
        workers,
        max_reported_rows: 100,
        ..VerifyConfig::default()
    };
    if let Ok(ms) = std::env::var("ROWSHIFT_BENCH_CHUNK_MS") {
        config.target_chunk_time = Duration::from_millis(ms.parse()?);
    }
    Ok(verify::run(plan, &mut Standalone, config).await?)
}

async fn bench(engine: Engine, rows: u64, workers: usize, runs: usize) -> Res<()> {
    let server = TestServer::dedicated(engine, ServerOptions::bench())?;
    let db = server
        .fresh_db(&format!("bench_verify_{}", engine.name()))
        .await?;
    let mut c = mysql_async::Conn::from_url(server.url_for_db(&db)).await?;
    let t = Instant::now();
    ledger::create_and_fill(&mut c, &db, rows).await?;
    c.query_drop("CREATE TABLE _orders_new LIKE orders").await?;
    c.query_drop("INSERT INTO _orders_new SELECT * FROM orders")
        .await?;
    eprintln!(
        "{engine:?}: {rows} rows and their shadow ready in {:?}",
        t.elapsed()
    );

    // 1. Quiet server: checksum speed.
    let mut rates = Vec::new();
    let mut held = Vec::new();
    let pid = server_pid(server.port()).unwrap_or_default();
    for run in 0..runs {
        let cpu = CpuSince::start(&[&pid, "self"]);
        let r = run_once(&server, &db, workers).await?;
        let cpu = cpu.used();
        assert!(r.is_go(), "{}", r.summary());
        eprintln!(
            "  quiet run {run}: {:.2} s checksums, {:.0} rows/s, lock held {:.2} ms, CPU server {:.2} s + rowshift {:.2} s, {} chunks finishing at {} ms",
            r.checksum_ms / 1e3,
            r.rows_per_second,
            r.lock.held_ms,
            cpu[0],
            cpu[1],
            r.chunks_checked,
            r.progress
                .iter()
                .map(|p| format!("{:.0}", p.elapsed_ms))
                .collect::<Vec<_>>()
                .join(" ")
        );
        rates.push(r.rows_per_second);
        held.push(r.lock.held_ms);
    }

    // 1b. The peer, on the quiet server: pt-table-checksum (Percona Toolkit) checksums the
    //     table on the source only (no replica here: `--recursion-method=none`), i.e. one side
    //     of what rowshift compares.
    let mut peer_rates = Vec::new();
    if std::env::var("ROWSHIFT_BENCH_PEER").as_deref() != Ok("0") {
        for run in 0..runs {
            let cpu = CpuSince::start(&[&pid]);
            let t = Instant::now();
            let out = tokio::process::Command::new("/usr/bin/pt-table-checksum")
                .arg(format!("h=127.0.0.1,P={},u=root", server.port()))
                .args([
                    "--databases",
                    db.as_str(),
                    "--tables",
                    "orders",
                    "--recursion-method=none",
                    "--no-check-binlog-format",
                    "--no-check-replication-filters",
                    "--chunk-time=0.5",
                ])
                .output()
                .await?;
            let took = t.elapsed();
            let text = String::from_utf8_lossy(&out.stdout);
            // Exit status bits flag differences and warnings, not failures to run; the
            // result line (TS ERRORS DIFFS ROWS ...) must be there.
            let Some(line) = text.lines().find(|l| l.contains(&format!("{db}.orders"))) else {
                return Err(format!(
                    "pt-table-checksum printed no result:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            };
            let rate = rows as f64 / took.as_secs_f64();
            eprintln!(
                "  pt-table-checksum run {run}: {:.2} s, {rate:.0} rows/s (one side), server CPU {:.2} s: {line}",
                took.as_secs_f64(),
                cpu.used()[0]
            );
            peer_rates.push(rate);
        }
        c.query_drop("DROP DATABASE IF EXISTS percona").await?;
    }

    // 2. Under the ledger load (4 clients writing `orders` only, so the shadow diverges and the
    //    verdict is NO-GO): the consistent point's lock and what the writers felt.
    let load = LedgerLoad::start(&server.url(), &db, rows, 4, 7);
    load.wait_for_commits(500).await;
    let mut lock_held = Vec::new();
    let mut lock_wait = Vec::new();
    let mut windows = Vec::new();
    let mut found = Vec::new();
    for run in 0..runs {
        let from = load.elapsed();
        let r = run_once(&server, &db, workers).await?;
        windows.push((from, load.elapsed()));
        eprintln!(
            "  loaded run {run}: lock held {:.2} ms (snapshots {:.2} ms), waited {:.2} ms; {} differing rows, {:.2} s",
            r.lock.held_ms,
            r.lock.snapshot_ms,
            r.lock.wait_ms,
            r.differences.total,
            r.duration_ms / 1e3
        );
        lock_held.push(r.lock.held_ms);
        lock_wait.push(r.lock.wait_ms);
        found.push(r.differences.total);
    }
    let report = load.stop().await;
    let first = windows.first().map(|w| w.0).unwrap_or_default();
    let worst_during = windows
        .iter()
        .map(|(a, b)| report.worst(*a, *b))
        .max()
        .unwrap_or_default();
    let p99_before = report
        .quantile(0.99, Duration::ZERO, first)
        .unwrap_or_default();

    if !peer_rates.is_empty() {
        let ours = median(rates.clone());
        let theirs = median(peer_rates);
        eprintln!(
            "  {engine:?}: rowshift verify {ours:.0} rows/s (both sides) vs pt-table-checksum {theirs:.0} rows/s (source side only): {:.2}x",
            ours / theirs
        );
    }
    println!(
        "| {engine:?} | {rows} | {workers} | {:.0} | {:.0} | {:.2} | {:.2} / {:.2} | {:.2} | {:.1} / {:.1} | {} |",
        median(rates.clone()),
        rates.iter().copied().fold(0.0, f64::max),
        median(held),
        median(lock_held.clone()),
        lock_held.iter().copied().fold(0.0, f64::max),
        lock_wait.iter().copied().fold(0.0, f64::max),
        p99_before.as_secs_f64() * 1e3,
        worst_during.as_secs_f64() * 1e3,
        found.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
    );
    c.query_drop(format!("DROP DATABASE `{db}`")).await?;
    c.disconnect().await?;
    Ok(())
}

fn main() -> Res<()> {
    let rows: u64 = env_or("ROWSHIFT_BENCH_ROWS", 1_000_000);
    let workers: usize = env_or("ROWSHIFT_BENCH_WORKERS", 2);
    let runs: usize = env_or("ROWSHIFT_BENCH_RUNS", 3);
    let engines = match std::env::var("ROWSHIFT_BENCH_ENGINE").as_deref() {
        Ok("mysql") => vec![Engine::MySql],
        Ok("mariadb") => vec![Engine::MariaDb],
        _ => vec![Engine::MySql, Engine::MariaDb],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("| engine | rows | workers | rows/s (median) | rows/s (best) | lock held quiet, ms (median) | lock held under load, ms (median / max) | lock wait under load, ms (max) | writer txn ms: p99 before / worst during | differing rows found under load |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for engine in engines {
        rt.block_on(bench(engine, rows, workers, runs))?;
    }
    Ok(())
}
