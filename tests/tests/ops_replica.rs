//! Replica lag throttles the copy: a real replica (the server's own replication) whose SQL
//! thread is stopped holds the migration, with the replica named in the reason; started again,
//! it releases the copy and the migration finishes.

mod ops_support;

use mysql_async::prelude::Queryable;
use ops_support::*;
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::time::{Duration, Instant};

const ROWS: u32 = 2000;

async fn replica_lag_throttles(engine: Engine) {
    let primary = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let replica = TestServer::replica_of(&primary).await.unwrap();
    let name = format!("lag-{}", engine.name());
    let db = table_with_rows(&primary, &format!("ops_lag_{}", engine.name()), ROWS).await;
    // The replica has the table and its rows.
    let mut r = mysql_async::Conn::from_url(replica.url()).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let n: Option<u64> = r
            .query_first(format!("SELECT COUNT(*) FROM `{db}`.`t`"))
            .await
            .ok()
            .flatten();
        if n == Some(u64::from(ROWS)) {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never got the rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica.stop_replica_sql_thread().await.unwrap();

    let replica_url = replica.url();
    let mut run = Run::start(
        &primary,
        &db,
        &name,
        &["--replica", &replica_url, "--max-lag-ms", "500"],
    );
    let where_ = format!("127.0.0.1:{}", replica.port());
    let s = run
        .wait_status("the replica-lag throttle", |s| {
            s["throttled"] == true && s["phase"] == "copy"
        })
        .await;
    let reason = s["throttle_reason"].as_str().unwrap();
    assert!(
        reason.contains("replica") && reason.contains(&where_),
        "the reason names the replica {where_}: {s}"
    );
    assert_eq!(num(&s, "rows_copied"), 0, "{s}");
    // Still held while the replica stays behind (ten status reads).
    for _ in 0..10 {
        let s = run.ctl_ok("status", None).await;
        assert_eq!(s["throttled"], true, "{s}");
        assert_eq!(num(&s, "rows_copied"), 0, "{s}");
    }

    replica.start_replica_sql_thread().await.unwrap();
    let end = run.wait().await;
    assert_eq!(end.code, 0, "stdout:\n{}\nstderr:\n{}", end.out, end.err);
    assert!(end.err.contains("copy released"), "{}", end.err);
    let mut p = mysql_async::Conn::from_url(primary.url()).await.unwrap();
    let n: Option<u64> = p
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.`t` WHERE b = 7"))
        .await
        .unwrap();
    assert_eq!(n, Some(u64::from(ROWS)));
    // The heartbeat table is gone once the migration ends.
    let hb: Option<u64> = p
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = '_rowshift_heartbeat'",
            (&db,),
        )
        .await
        .unwrap();
    assert_eq!(hb, Some(0));
    p.disconnect().await.unwrap();
    r.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lag_mysql() {
    replica_lag_throttles(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lag_mariadb() {
    replica_lag_throttles(Engine::MariaDb).await;
}
