//! End-to-end benchmark of `rowshift sync` to another server (issue 6):
//! 1. sustained apply under the full ledger load (4 clients) after the backfill: lag in seconds
//!    sampled every 250 ms (target: under 1 s), changes applied per second;
//! 2. backlog drain: with the sync stopped, at least 1,000,000 row events are written on the
//!    source; the sync resumes and drains them (target: at least 100,000 row events/s).
//!
//! Run (the machine otherwise idle): `cargo bench -p rowshift-benches --bench sync_e2e` with env
//! `ROWSHIFT_BENCH_ENGINE=mysql|mariadb` (source, default mysql), `ROWSHIFT_BENCH_TARGET`
//! (default: the other engine), `ROWSHIFT_BENCH_ROWS` (default 200000),
//! `ROWSHIFT_BENCH_APPLIERS` (default 4), `ROWSHIFT_BENCH_SECS` (sustained window, default 30),
//! `ROWSHIFT_BENCH_PEER=0` (skip the peer).
//!
//! The peer: the source engine's own replication. A native replica of the source (same engine,
//! its default applier settings, plus 4 parallel workers on MariaDB, whose default is none) is
//! caught up and stopped before the backlog is written; after rowshift's drain it is started and
//! timed until it has applied the backlog too (fetch and apply, like rowshift). It copies rows
//! unchanged within one engine, so it is the rate to beat for an applier, not a like-for-like
//! tool.
//! Results: benches/README.md.

use mysql_async::prelude::Queryable;
use rowshift_engine::conn::Endpoint;
use rowshift_engine::sync::{self, SyncConfig, SyncTable};
use rowshift_testkit::ledger::{self, LedgerLoad, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
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

fn engine(name: &str) -> Engine {
    if name.eq_ignore_ascii_case("mariadb") {
        Engine::MariaDb
    } else {
        Engine::MySql
    }
}

fn config(src: &TestServer, tgt: &TestServer, db: &str, appliers: usize) -> Res<SyncConfig> {
    let table = |t: &str, alter: bool| SyncTable {
        source_db: db.into(),
        source_table: t.into(),
        target_db: db.into(),
        target_table: t.into(),
        alter: alter.then(|| ORDER_STATUS_ALTER.to_string()),
        sets: if alter {
            vec![format!("order_status = {ORDER_STATUS_EXPR}")]
        } else {
            Vec::new()
        },
    };
    Ok(SyncConfig {
        source: Endpoint::new(&src.url())?,
        target: Endpoint::new(&tgt.url())?,
        tables: vec![table("orders", true), table("orders_ledger", false)],
        name: "bench".into(),
        target_schema_from_existing: false,
        appliers,
        chunk_rows: 5_000,
        server_id: 4_242_001,
        retry_for: Duration::from_secs(600),
        operate: Default::default(),
    })
}

async fn run() -> Res<()> {
    let src_engine = engine(&env_or("ROWSHIFT_BENCH_ENGINE", "mysql".to_string()));
    let default_target = if src_engine == Engine::MySql {
        "mariadb"
    } else {
        "mysql"
    };
    let tgt_engine = engine(&env_or("ROWSHIFT_BENCH_TARGET", default_target.to_string()));
    let rows: u64 = env_or("ROWSHIFT_BENCH_ROWS", 200_000);
    let appliers: usize = env_or("ROWSHIFT_BENCH_APPLIERS", 4);
    let secs: u64 = env_or("ROWSHIFT_BENCH_SECS", 30);
    let src = TestServer::dedicated(src_engine, ServerOptions::bench())?;
    let tgt = TestServer::dedicated(tgt_engine, ServerOptions::bench())?;
    let db = "bench_sync";
    src.fresh_db(db).await?;
    tgt.fresh_db(db).await?;
    let mut conn = mysql_async::Conn::from_url(src.url()).await?;
    ledger::create_and_fill(&mut conn, db, rows).await?;
    println!(
        "sync_e2e: {} -> {}, {rows} rows, {appliers} appliers per table, 4 ledger clients",
        src_engine.name(),
        tgt_engine.name()
    );

    // 1. Backfill under load, then the sustained window.
    let load = LedgerLoad::start(&src.url(), db, rows, 4, 7);
    let cfg = config(&src, &tgt, db, appliers)?;
    let started = Instant::now();
    let mut handle = sync::start(cfg.clone()).await?;
    let mut done = handle.backfill_watch();
    tokio::select! {
        r = done.wait_for(|d| *d) => { r?; }
        e = handle.failed() => return Err(e.into()),
    }
    let backfill = started.elapsed();
    let progress = handle.progress();
    let applied0 = progress.borrow().applied_changes;
    let commits0 = load.committed();
    let window = Instant::now();
    let mut lags = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while window.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        lags.push(progress.borrow().lag_secs);
    }
    let elapsed = window.elapsed().as_secs_f64();
    let applied = progress.borrow().applied_changes - applied0;
    let tps = (load.committed() - commits0) as f64 / elapsed;
    let report = load.stop().await;
    handle.drain(Duration::from_secs(600)).await?;
    handle.stop().await?;
    lags.sort_by(f64::total_cmp);
    let p95 = lags
        .get(((lags.len().max(1) - 1) as f64 * 0.95) as usize)
        .copied()
        .unwrap_or(0.0);
    let max = lags.last().copied().unwrap_or(0.0);
    println!(
        "  backfill of {rows} rows under load: {:.1} s",
        backfill.as_secs_f64()
    );
    println!(
        "  sustained {secs} s: source {tps:.0} txn/s ({} committed in all), applied {:.0} changes/s, lag p95 {p95:.2} s, max {max:.2} s (target < 1 s)",
        report.committed,
        applied as f64 / elapsed
    );

    // The peer's replica, caught up with everything so far, then stopped.
    let peer = if std::env::var("ROWSHIFT_BENCH_PEER").as_deref() != Ok("0") {
        let replica = TestServer::replica_of(&src).await?;
        let mut r = mysql_async::Conn::from_url(replica.url()).await?;
        if src_engine == Engine::MariaDb {
            r.query_drop("STOP SLAVE").await?;
            r.query_drop("SET GLOBAL slave_parallel_threads = 4")
                .await?;
            r.query_drop("START SLAVE").await?;
        }
        wait_replica(&mut conn, &mut r, src_engine).await?;
        r.query_drop(match src_engine {
            Engine::MySql => "STOP REPLICA",
            Engine::MariaDb => "STOP SLAVE",
        })
        .await?;
        Some((replica, r))
    } else {
        None
    };

    // 2. Backlog: >= 1,000,000 row events written while the sync is stopped.
    let per_round = rows.min(100_000);
    let rounds = 1_000_000u64.div_ceil(per_round);
    for _ in 0..rounds {
        conn.query_drop(format!(
            "UPDATE `{db}`.`orders` SET counter = counter + 1 WHERE id <= {per_round}"
        ))
        .await?;
    }
    let events = rounds * per_round;
    // CPU seconds of the source server, the target server and this process (rowshift) over
    // the drain, per million events: where the time goes.
    let (src_pid, tgt_pid) = (
        server_pid(src.port()).unwrap_or_default(),
        server_pid(tgt.port()).unwrap_or_default(),
    );
    let cpu = CpuSince::start(&[&src_pid, &tgt_pid, "self"]);
    println!("  draining the backlog");
    let mut handle = sync::start(cfg).await?;
    let t = Instant::now();
    handle.drain(Duration::from_secs(3_600)).await?;
    let drain = t.elapsed().as_secs_f64();
    handle.stop().await?;
    let per_m: Vec<f64> = cpu.used().iter().map(|s| s * 1e6 / events as f64).collect();
    println!(
        "  backlog: {events} row events drained in {drain:.1} s = {:.0} row events/s (target >= 100000); CPU s per million: source {:.1}, target {:.1}, rowshift {:.1}",
        events as f64 / drain,
        per_m[0],
        per_m[1],
        per_m[2]
    );
    if let Some((replica, mut r)) = peer {
        let pid = server_pid(replica.port()).unwrap_or_default();
        let cpu = CpuSince::start(&[&src_pid, &pid]);
        let t = Instant::now();
        r.query_drop(match src_engine {
            Engine::MySql => "START REPLICA",
            Engine::MariaDb => "START SLAVE",
        })
        .await?;
        wait_replica(&mut conn, &mut r, src_engine).await?;
        let took = t.elapsed().as_secs_f64();
        let per_m: Vec<f64> = cpu.used().iter().map(|s| s * 1e6 / events as f64).collect();
        println!(
            "  peer: {}'s own replication drained the same backlog in {took:.1} s = {:.0} row events/s ({:.2}x rowshift's rate); CPU s per million: source {:.1}, replica {:.1}",
            src_engine.name(),
            events as f64 / took,
            drain / took,
            per_m[0],
            per_m[1]
        );
    }
    Ok(())
}

/// Block until the replica `r` has applied everything the source `src` has committed (the
/// servers' own GTID waits).
async fn wait_replica(
    src: &mut mysql_async::Conn,
    r: &mut mysql_async::Conn,
    engine: Engine,
) -> Res<()> {
    let (pos_sql, wait_sql) = match engine {
        Engine::MySql => (
            "SELECT @@GLOBAL.gtid_executed",
            "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 3600)",
        ),
        Engine::MariaDb => (
            "SELECT @@GLOBAL.gtid_binlog_pos",
            "SELECT MASTER_GTID_WAIT(?, 3600)",
        ),
    };
    let pos: Option<String> = src.query_first(pos_sql).await?;
    let pos = pos.unwrap_or_default();
    let waited: Option<i64> = r.exec_first(wait_sql, (pos.clone(),)).await?;
    if waited != Some(0) {
        return Err(format!("the replica did not reach {pos}: {waited:?}").into());
    }
    Ok(())
}

/// mimalloc: the pipeline allocates rows on one thread and frees them on others, where glibc
/// malloc/free cost ~30 % of the router thread.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    if let Err(e) = rt.block_on(run()) {
        panic!("sync_e2e failed: {e}");
    }
}
