//! An update that changes a row's primary key reaches a sync applier as two changes at one
//! binlog coordinate: delete the old key, insert the new one. When a batch ends between them
//! (the delete is the batch's 500th key) and the sync is killed before the insert is written,
//! the restarted sync must still insert the new key: the checkpoint of the first batch may not
//! record the row as done. (Before the fix it did, and the restarted sync skipped the insert:
//! the row was lost on the target.)

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, TestServer};
use std::time::{Duration, Instant};
use sync_support::{
    fresh_source_table, log_contains, log_len, spawn_sync, stop_sync, table_t_args, wait_backfill,
};

const ROWS: u64 = 2_000;
/// The key the update gives row 500.
const NEW_KEY: u64 = 1_000_500;

/// Poll `query` (one number) on `conn` until it returns `want`, with a deadline.
async fn wait_for(
    conn: &mut mysql_async::Conn,
    query: &str,
    want: u64,
    child: &mut tokio::process::Child,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: u64 = conn.query_first(query).await.unwrap().unwrap_or(u64::MAX);
        if got == want {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sync ended: {status:?} while waiting for {query} = {want}");
        }
        assert!(
            Instant::now() < deadline,
            "{query} stayed {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn key_change_split_by_a_kill(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_keychg_{}_{}", from.name(), to.name());
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, {i})")).collect();
    let mut s = fresh_source_table(
        &src,
        &tgt,
        &db,
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    let name = format!("keychg_{}_{}", from.name(), to.name());
    // One applier: the old and the new key go to the same one.
    let args = table_t_args(&src.url(), &tgt, &db, &name, &["--appliers", "1"]);
    let log = std::env::temp_dir().join(format!("rowshift-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, &name, &mut child).await;
    let mut t = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    // Every row is on the target, so the applier's batch is empty when the update comes.
    wait_for(&mut t, "SELECT COUNT(*) FROM t", ROWS, &mut child).await;

    // The target's gap above the last key is locked: the batch that inserts the new key
    // waits, the one before it (499 updated rows and the old key's delete) commits.
    let mut blocker = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    blocker
        .query_drop(format!(
            "START TRANSACTION; SELECT id FROM t WHERE id = {NEW_KEY} FOR UPDATE"
        ))
        .await
        .unwrap();
    s.query_drop(format!(
        "START TRANSACTION;
         UPDATE t SET v = v + 1 WHERE id BETWEEN 1 AND 499;
         UPDATE t SET id = {NEW_KEY} WHERE id = 500;
         COMMIT"
    ))
    .await
    .unwrap();
    wait_for(
        &mut t,
        "SELECT COUNT(*) FROM t WHERE id = 500",
        0,
        &mut child,
    )
    .await;
    let updated: u64 = t
        .query_first("SELECT COUNT(*) FROM t WHERE id BETWEEN 1 AND 499 AND v = id + 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated, 499, "the first batch was written whole");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    blocker.query_drop("ROLLBACK").await.unwrap();
    drop(blocker);

    // Restart, then a later row shows the sync has passed the update.
    let from = log_len(&log);
    let mut child = spawn_sync(&args, &log);
    log_contains(&log, from, "resuming from the checkpoints", &mut child).await;
    s.query_drop("INSERT INTO t VALUES (5000000, 1)")
        .await
        .unwrap();
    wait_for(
        &mut t,
        "SELECT COUNT(*) FROM t WHERE id = 5000000",
        1,
        &mut child,
    )
    .await;
    stop_sync(child).await;

    let want: Vec<(u64, i64)> = s.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let got: Vec<(u64, i64)> = t.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let moved: Option<i64> = t
        .query_first(format!("SELECT v FROM t WHERE id = {NEW_KEY}"))
        .await
        .unwrap();
    assert_eq!(moved, Some(500), "the row under its new key on the target");
    assert_eq!(got, want, "the target's rows differ from the source's");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_key_change_split_by_a_kill() {
    key_change_split_by_a_kill(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_key_change_split_by_a_kill() {
    key_change_split_by_a_kill(Engine::MariaDb, Engine::MySql).await;
}
