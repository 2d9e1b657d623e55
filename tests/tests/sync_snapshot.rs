//! `rowshift sync` from a source it cannot write (issue 6): no signal table, so the backfill is
//! one consistent snapshot with its binlog position (MariaDB), and promote drains by position.
//! The ledger load runs meanwhile; promote says GO and the invariant holds on the target.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::{Engine, TestServer};
use sync_support::*;

const ROWS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_mariadb_source_snapshot_backfill() {
    let src = TestServer::shared(Engine::MariaDb);
    let tgt = TestServer::shared(Engine::MySql);
    let db = "sync_snapshot_ro";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, ROWS).await.unwrap();
    // A user that may read and lock for reading, and read the binlog: nothing else.
    conn.query_drop("DROP USER IF EXISTS 'rs_ro'@'%'")
        .await
        .unwrap();
    conn.query_drop("CREATE USER 'rs_ro'@'%'").await.unwrap();
    conn.query_drop(format!(
        "GRANT SELECT, LOCK TABLES ON `{db}`.* TO 'rs_ro'@'%'"
    ))
    .await
    .unwrap();
    conn.query_drop("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'rs_ro'@'%'")
        .await
        .unwrap();
    let load = LedgerLoad::start(&src.url(), db, ROWS, 2, 53);
    load.wait_for_commits(50).await;

    let ro_url = format!("mysql://rs_ro@127.0.0.1:{}", src.port());
    let mut args = sync_args(&src, &tgt, db, "snapshot");
    args[1] = ro_url;
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "snapshot", &mut child).await;
    load.wait_for_commits(200).await;
    let report = load.stop().await;
    assert!(report.committed > 200);
    stop_sync(child).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("consistent-snapshot backfill"),
        "no snapshot backfill in {}",
        log.display()
    );
    let n: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '_rowshift_signal'"
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "nothing was written on the source");

    let (code, out, err) = promote(&args, &[]).await;
    assert_eq!(
        code,
        0,
        "promote did not say GO:\n{out}\n{err}\nsync log: {}",
        log.display()
    );
    assert_target_correct(&tgt, db, ROWS).await;
    assert_same_counts(&src, &tgt, db).await;
}
