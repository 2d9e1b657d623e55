//! XA transactions under `rowshift sync`, both directions: a branch prepared on the source is
//! applied to the target at `XA PREPARE`; its `XA ROLLBACK` must undo it there, and `promote`
//! run while it is prepared waits for its end, then says GO with the source's rows. A branch
//! prepared before a fresh sync starts holds the start until it ends. A branch prepared while
//! the backfill runs keeps its rows out of the chunks read before it commits.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger;
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::time::{Duration, Instant};
use sync_support::*;

const ROWS: u64 = 2_000;

async fn counter(server: &TestServer, db: &str, id: u64) -> Option<i64> {
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let v = c
        .query_first(format!(
            "SELECT counter FROM `{db}`.`orders` WHERE id = {id}"
        ))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    v
}

/// `promote` runs while the branch is prepared: it must wait for the branch to end (with
/// `lock_source`, before it locks: MySQL keeps a prepared branch's table lock) instead of
/// verifying rows the source has not committed.
async fn rolled_back_branch(from: Engine, to: Engine, promote_extra: &[&str]) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_xa_{}_{}", from.name(), to.name());
    src.fresh_db(&db).await.unwrap();
    tgt.fresh_db(&db).await.unwrap();
    let mut c = mysql_async::Conn::from_url(src.url_for_db(&db))
        .await
        .unwrap();
    ledger::create_and_fill(&mut c, &db, ROWS).await.unwrap();
    let name = format!("xa{}{}", from.name(), to.name());
    let args = sync_args(&src, &tgt, &db, &name);
    let log = std::env::temp_dir().join(format!("rs-sync-xa-{}-{name}.log", std::process::id()));
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, &name, &mut child).await;

    let before = counter(&src, &db, 1).await.unwrap();
    for q in [
        "XA START 'sx1'",
        "UPDATE orders SET counter = counter + 1000 WHERE id <= 10",
        "DELETE FROM orders WHERE id = 11",
        "UPDATE orders SET note = 'xa' WHERE id = 12",
        "XA END 'sx1'",
        "XA PREPARE 'sx1'",
    ] {
        c.query_drop(q).await.unwrap();
    }
    // The prepared rows reach the target before the rollback.
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter(&tgt, &db, 1).await != Some(before + 1000) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sync ended: {status:?} (log {})", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "the prepared rows never reached the target (log {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another session: MariaDB keeps the prepared branch on the one that prepared it.
    let mut other = mysql_async::Conn::from_url(src.url_for_db(&db))
        .await
        .unwrap();
    other
        .query_drop("UPDATE orders SET note = 'after' WHERE id = 13")
        .await
        .unwrap();
    other.disconnect().await.unwrap();
    stop_sync(child).await;

    // promote while the branch is prepared: it says it waits, and ends only after the rollback.
    let plog = std::env::temp_dir().join(format!(
        "rs-sync-xa-promote-{}-{name}.log",
        std::process::id()
    ));
    let mut promote = spawn_rowshift("promote", &promote_args(&args, promote_extra), &plog);
    let waiting = "waiting for an XA transaction prepared on the source";
    log_contains(&plog, 0, waiting, &mut promote).await;
    c.query_drop("XA ROLLBACK 'sx1'").await.unwrap();
    c.disconnect().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(300), promote.wait())
        .await
        .expect("promote did not end within 300 s of the rollback")
        .unwrap();
    let text = std::fs::read_to_string(&plog).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "promote did not say GO:\n{text}");
    assert!(text.contains("the prepared XA transaction ended"), "{text}");
    assert_eq!(counter(&tgt, &db, 1).await, Some(before));
    assert!(
        counter(&tgt, &db, 11).await.is_some(),
        "the deleted row is back"
    );
    assert_same_counts(&src, &tgt, &db).await;
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&plog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_branch_mysql_to_mariadb() {
    rolled_back_branch(Engine::MySql, Engine::MariaDb, &["--lock-source"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_branch_mariadb_to_mysql() {
    rolled_back_branch(Engine::MariaDb, Engine::MySql, &[]).await;
}

/// A branch prepared before a fresh sync starts would be missed (its rows are logged before the
/// start, its commit carries none, a backfill reads the rows as they were): the sync waits for it
/// and, past the wait, stops with the XID and what to do; once the branch is committed the sync
/// starts and the target holds the committed rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_prepared_before_the_start() {
    // A source of its own: a prepared branch makes every fresh sync on the server wait.
    let src = TestServer::dedicated(Engine::MySql, ServerOptions::default()).unwrap();
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = "sync_xa_early";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut c = mysql_async::Conn::from_url(src.url_for_db(db))
        .await
        .unwrap();
    ledger::create_and_fill(&mut c, db, 300).await.unwrap();
    let before = counter(&src, db, 7).await.unwrap();
    c.query_drop(
        "XA START 'early'; UPDATE orders SET counter = counter + 1000 WHERE id = 7; \
         XA END 'early'; XA PREPARE 'early'",
    )
    .await
    .unwrap();
    let args = sync_args(&src, &tgt, db, "xaearly");
    // The wait is the retry window, at most 30 s.
    let mut refused = args.clone();
    refused.extend(["--retry-secs", "2"].map(String::from));
    let err = refused_sync(&refused).await;
    assert!(
        err.contains("XA transactions are prepared on the source (early)")
            && err.contains("XA COMMIT or XA ROLLBACK"),
        "{err}"
    );

    c.query_drop("XA COMMIT 'early'").await.unwrap();
    let log = std::env::temp_dir().join(format!("rs-sync-xa-early-{}.log", std::process::id()));
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "xaearly", &mut child).await;
    stop_and_promote(child, &args, &log).await;
    assert_eq!(counter(&tgt, db, 7).await, Some(before + 1000));
    assert_same_counts(&src, &tgt, db).await;
    let _ = std::fs::remove_file(&log);
}

/// A branch prepared during the backfill, before the chunk holding its row is read, and
/// committed after that read: the chunk sees the row as it was before the branch (the branch
/// is not committed), and its `XA COMMIT` carries no rows. The chunk may not write that old
/// image over the branch's, which the sync applied at `XA PREPARE`. (Before the fix the target
/// kept the old image.) A source of its own: the prepared branch would hold other tests' syncs.
async fn branch_prepared_during_the_backfill(from: Engine) {
    let src = TestServer::dedicated(from, ServerOptions::default()).unwrap();
    let to = match from {
        Engine::MySql => Engine::MariaDb,
        Engine::MariaDb => Engine::MySql,
    };
    let tgt = TestServer::shared(to);
    let db = format!("sync_xa_backfill_{}", from.name());
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, {i})")).collect();
    let mut c = fresh_source_table(
        &src,
        &tgt,
        &db,
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    // The backfill waits on the flag file until the branch is prepared.
    let flag = std::env::temp_dir().join(format!("rs-{db}-{}.flag", std::process::id()));
    std::fs::write(&flag, b"").unwrap();
    let name = format!("xabf{}", from.name());
    let flag_arg = flag.display().to_string();
    let args = table_t_args(
        &src.url(),
        &tgt,
        &db,
        &name,
        &["--chunk-rows", "100", "--throttle-flag-file", &flag_arg],
    );
    let log = std::env::temp_dir().join(format!("rs-{db}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while backfill_state(&mut t, &db, &name).await.0 == 0 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sync ended: {status:?} (log {})", log.display());
        }
        assert!(Instant::now() < deadline, "the sync did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The last row (the last chunk) changed by a prepared branch; the sync applies it.
    c.query_drop(format!(
        "XA START 'bf'; UPDATE t SET v = -1 WHERE id = {ROWS}; XA END 'bf'; XA PREPARE 'bf'"
    ))
    .await
    .unwrap();
    let query = format!("SELECT v FROM `{db}`.t WHERE id = {ROWS}");
    while t.query_first::<i64, _>(&query).await.unwrap() != Some(-1) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sync ended: {status:?} (log {})", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "the prepared row never reached the target"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The backfill reads every chunk while the branch is prepared, then it commits.
    std::fs::remove_file(&flag).unwrap();
    wait_backfill(&tgt, &db, &name, &mut child).await;
    c.query_drop("XA COMMIT 'bf'").await.unwrap();

    c.query_drop("INSERT INTO t VALUES (5000000, 1)")
        .await
        .unwrap();
    let sentinel = format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = 5000000");
    while t.query_first::<u64, _>(&sentinel).await.unwrap() != Some(1) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sync ended: {status:?} (log {})", log.display());
        }
        assert!(Instant::now() < deadline, "the sentinel row never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_sync(child).await;
    assert_eq!(
        t.query_first::<i64, _>(&query).await.unwrap(),
        Some(-1),
        "the committed branch's row on the target"
    );
    let want: Vec<(u64, i64)> = c.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let got: Vec<(u64, i64)> = t
        .query(format!("SELECT id, v FROM `{db}`.t ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(got, want, "the target's rows differ from the source's");
    let _ = std::fs::remove_file(&log);
}

rowshift_testkit::both_engines!(branch_prepared_during_the_backfill);
