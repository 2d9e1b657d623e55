//! `rowshift promote` (issue 6): with `--lock-source` the source tables are held with
//! `LOCK TABLES ... READ` while the load keeps trying to write, the target drains and verifies
//! GO, and the writes resume after the lock is released; on GO the target tables get the
//! source's AUTO_INCREMENT counters (ids the source handed out in rolled-back inserts are not
//! handed out again on the target); a row changed behind rowshift's back on the target makes
//! promote say NO-GO (exit 1).

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::{Engine, TestServer};
use sync_support::*;

const ROWS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_source_go_then_tampered_no_go() {
    let src = TestServer::shared(Engine::MySql);
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = "sync_promote_lock";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, ROWS).await.unwrap();
    let load = LedgerLoad::start(&src.url(), db, ROWS, 2, 41);
    load.wait_for_commits(50).await;
    let args = sync_args(&src, &tgt, db, "promote");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "promote", &mut child).await;
    load.wait_for_commits(100).await;
    stop_sync(child).await;

    // The load keeps writing: promote locks the source tables, drains and verifies.
    let (code, out, err) = promote(&args, &["--lock-source"]).await;
    assert_eq!(
        code, 0,
        "promote --lock-source did not say GO:\n{out}\n{err}"
    );
    assert!(out.contains("GO:"), "{out}");
    // The lock is released: the writers go on.
    load.wait_for_commits(50).await;
    let report = load.stop().await;
    assert!(report.committed > 150);

    // Writes stopped, after inserts the source rolled back: their ids were handed out there
    // and never reach the target. The target catches up and, on GO, gets the source's
    // AUTO_INCREMENT counter; then a tampered row is found.
    conn.query_drop(format!(
        "START TRANSACTION; INSERT INTO `{db}`.`orders_ledger` (order_id, d, kind) VALUES (1, 0, 'x'), (1, 0, 'x'), (1, 0, 'x'); ROLLBACK"
    ))
    .await
    .unwrap();
    let (code, out, err) = promote(&args, &[]).await;
    assert_eq!(
        code, 0,
        "promote after the load did not say GO:\n{out}\n{err}"
    );
    assert_target_correct(&tgt, db, ROWS).await;
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let source_next = next_auto_increment(&mut conn, db, "orders_ledger").await;
    let target_next = next_auto_increment(&mut t, db, "orders_ledger").await;
    assert!(
        target_next >= source_next,
        "the target's next ledger id {target_next} is below the source's {source_next}"
    );
    t.query_drop(format!(
        "UPDATE `{db}`.`orders` SET note = 'tampered' WHERE id = 17"
    ))
    .await
    .unwrap();
    let (code, out, err) = promote(&args, &[]).await;
    assert_eq!(code, 1, "a tampered target must be NO-GO:\n{out}\n{err}");
    assert!(out.contains("NO-GO"), "{out}");
}

/// The `AUTO_INCREMENT=N` option of `SHOW CREATE TABLE` (1 when it shows none).
async fn next_auto_increment(conn: &mut mysql_async::Conn, db: &str, table: &str) -> u64 {
    let (_, ddl): (String, String) = conn
        .query_first(format!("SHOW CREATE TABLE `{db}`.`{table}`"))
        .await
        .unwrap()
        .unwrap();
    ddl.split_whitespace()
        .find_map(|w| w.strip_prefix("AUTO_INCREMENT="))
        .map_or(1, |n| n.parse().unwrap())
}
