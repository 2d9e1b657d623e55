//! `rowshift sync` under faults (issue 6): the source server restarts during streaming, the
//! target refuses writes for a while (a table locked), and a checkpoint whose binlog was purged
//! is refused with what to do. In the first two sync waits, retries and catches up: promote
//! says GO and the ledger invariant holds on the target.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::sync::Arc;
use std::time::Duration;
use sync_support::*;

const ROWS: u64 = 5_000;

async fn finish_and_check(
    src: &TestServer,
    tgt: &TestServer,
    db: &str,
    args: &[String],
    load: LedgerLoad,
    mut child: tokio::process::Child,
    log: &std::path::Path,
) {
    load.wait_for_commits(100).await;
    let report = load.stop().await;
    assert!(report.committed > 100);
    assert!(
        child.try_wait().unwrap().is_none(),
        "sync stopped on the fault (log {})",
        log.display()
    );
    stop_and_promote(child, args, log).await;
    assert_target_correct(tgt, db, ROWS).await;
    assert_same_counts(src, tgt, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_restart_during_streaming() {
    let src = Arc::new(TestServer::dedicated(Engine::MySql, ServerOptions::default()).unwrap());
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = "sync_faults_restart";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, ROWS).await.unwrap();
    drop(conn);
    let load = LedgerLoad::start(&src.url(), db, ROWS, 2, 31);
    load.wait_for_commits(50).await;
    let args = sync_args(&src, &tgt, db, "restart");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "restart", &mut child).await;
    load.wait_for_commits(100).await;

    let from = log_len(&log);
    let s = src.clone();
    tokio::task::spawn_blocking(move || {
        s.stop();
        s.start().unwrap();
    })
    .await
    .unwrap();
    log_contains(&log, from, "binlog stream resumed", &mut child).await;
    finish_and_check(&src, &tgt, db, &args, load, child, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_table_locked_for_a_while() {
    let src = TestServer::shared(Engine::MariaDb);
    let tgt = TestServer::shared(Engine::MySql);
    let db = "sync_faults_locked";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, ROWS).await.unwrap();
    let load = LedgerLoad::start(&src.url(), db, ROWS, 2, 37);
    load.wait_for_commits(50).await;
    let args = sync_args(&src, &tgt, db, "locked");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "locked", &mut child).await;

    // The target refuses writes to orders until the sync has felt it (a refused batch).
    let mut locker = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let from = log_len(&log);
    locker
        .query_drop(format!("LOCK TABLES `{db}`.`orders` WRITE"))
        .await
        .unwrap();
    log_contains(&log, from, "the target refused a batch", &mut child).await;
    load.wait_for_commits(100).await;
    locker.query_drop("UNLOCK TABLES").await.unwrap();
    drop(locker);
    log_contains(
        &log,
        from,
        "the target accepted the batch again",
        &mut child,
    )
    .await;
    finish_and_check(&src, &tgt, db, &args, load, child, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purged_binlog_needs_a_new_backfill() {
    let src = TestServer::dedicated(Engine::MySql, ServerOptions::default()).unwrap();
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = "sync_faults_purged";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, 1_000).await.unwrap();
    let args = sync_args(&src, &tgt, db, "purged");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "purged", &mut child).await;
    stop_sync(child).await;

    conn.query_drop(format!(
        "UPDATE `{db}`.`orders` SET counter = counter + 1 WHERE id = 1"
    ))
    .await
    .unwrap();
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let row: mysql_async::Row = conn
        .query_first("SHOW BINARY LOG STATUS")
        .await
        .unwrap()
        .unwrap();
    let current: String = row.get(0).unwrap();
    conn.query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
        .await
        .unwrap();

    let err = refused_sync(&args).await;
    assert!(
        err.contains("purged") && err.contains("new backfill is needed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_restart_during_streaming() {
    let src = TestServer::shared(Engine::MySql);
    let tgt = Arc::new(TestServer::dedicated(Engine::MariaDb, ServerOptions::default()).unwrap());
    let db = "sync_faults_tgt_restart";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, ROWS).await.unwrap();
    let load = LedgerLoad::start(&src.url(), db, ROWS, 2, 43);
    load.wait_for_commits(50).await;
    let args = sync_args(&src, &tgt, db, "tgtrestart");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "tgtrestart", &mut child).await;
    load.wait_for_commits(100).await;

    let from = log_len(&log);
    let t = tgt.clone();
    tokio::task::spawn_blocking(move || {
        t.kill();
        t.start().unwrap();
    })
    .await
    .unwrap();
    log_contains(
        &log,
        from,
        "the target accepted the batch again",
        &mut child,
    )
    .await;
    // The restart ended the lock's session too: taken again before any batch was written.
    log_contains(&log, from, "sync lock taken again", &mut child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let (taken, accepted) = (
        text[from..].find("sync lock taken again"),
        text[from..].find("the target accepted the batch again"),
    );
    assert!(
        taken < accepted,
        "a batch was written before the lock was taken again"
    );
    finish_and_check(&src, &tgt, db, &args, load, child, &log).await;
}

/// The session holding the sync's lock on the target ends (a KILL here; a target restart or a
/// network cut do the same, silently). Alone, that is ridden through: the sync takes its lock
/// again with a new session. When another session takes the lock in between (a second process
/// started meanwhile), the sync stops with an error that says so instead of applying the same
/// rows as that process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_lock_stops_the_sync() {
    let src = TestServer::shared(Engine::MySql);
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = "sync_faults_lock";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, 1_000).await.unwrap();
    drop(conn);
    let args = sync_args(&src, &tgt, db, "lock");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "lock", &mut child).await;
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let lock = rowshift_engine::sync::sync_lock_name(db, "lock");
    let holder = |lock: String| async move {
        let mut c = mysql_async::Conn::from_url(TestServer::shared(Engine::MariaDb).url())
            .await
            .unwrap();
        let h: Option<Option<u64>> = c
            .exec_first("SELECT IS_USED_LOCK(?)", (&lock,))
            .await
            .unwrap();
        h.flatten()
    };

    // The session ends, nobody else wants the lock: taken again, the sync goes on.
    let first = holder(lock.clone())
        .await
        .expect("the running sync holds its lock");
    let from = log_len(&log);
    t.query_drop(format!("KILL {first}")).await.unwrap();
    log_contains(&log, from, "sync lock taken again", &mut child).await;
    let second = holder(lock.clone())
        .await
        .expect("the sync holds its lock again");
    assert_ne!(first, second);
    assert!(child.try_wait().unwrap().is_none(), "the sync stopped");

    // The session ends and another session takes the lock first: the sync stops.
    t.query_drop(format!("KILL {second}")).await.unwrap();
    let got: Option<Option<i64>> = t
        .exec_first("SELECT GET_LOCK(?, 10)", (&lock,))
        .await
        .unwrap();
    assert_eq!(got.flatten(), Some(1));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the sync went on without its lock")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("lost its lock"), "{text}");
    assert!(text.contains("another session took the lock"), "{text}");
}

/// The fence each sync batch runs in its transaction: it passes only while the given session
/// holds the lock, on both engines.
async fn lock_fence(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("rowshift-test-fence-{}", engine.name());
    let mut holder = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let mut writer = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let fence = |session: u64| rowshift_engine::sync::applier::lock_fence_sql(&name, session);
    let id = u64::from(holder.id());
    let got: Option<i64> = holder
        .exec_first("SELECT GET_LOCK(?, 5)", (&name,))
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    writer.query_drop("BEGIN").await.unwrap();
    writer.query_drop(fence(id)).await.unwrap();
    let other = writer.query_drop(fence(id + 1_000_000)).await;
    assert!(
        matches!(&other, Err(mysql_async::Error::Server(e)) if e.code == 1242),
        "{other:?}"
    );
    writer.query_drop("ROLLBACK").await.unwrap();
    let _: Option<i64> = holder
        .exec_first("SELECT RELEASE_LOCK(?)", (&name,))
        .await
        .unwrap();
    let free = writer.query_drop(fence(id)).await;
    assert!(
        matches!(&free, Err(mysql_async::Error::Server(e)) if e.code == 1242),
        "{free:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_fence_mysql() {
    lock_fence(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_fence_mariadb() {
    lock_fence(Engine::MariaDb).await;
}

/// The binlog connection made again during a run reaches another server (the same address
/// with another `server_id` here, as behind a virtual IP after a failover to a replica): the
/// sync stops instead of reading that server's binlog at the checkpoint's coordinates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_to_another_server_stops_the_sync() {
    let src = Arc::new(TestServer::dedicated(Engine::MariaDb, ServerOptions::default()).unwrap());
    let tgt = TestServer::shared(Engine::MySql);
    let db = "sync_faults_other_server";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, db, 1_000).await.unwrap();
    let args = sync_args(&src, &tgt, db, "other");
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, db, "other", &mut child).await;
    let was: u32 = conn
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    conn.query_drop("SET GLOBAL server_id = 4242")
        .await
        .unwrap();
    let dumps: Vec<u64> = conn
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    assert!(
        !dumps.is_empty(),
        "the sync's binlog connection is not there"
    );
    for id in dumps {
        conn.query_drop(format!("KILL {id}")).await.unwrap();
    }
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the sync went on reading another server's binlog")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("is server_id 4242, not server_id {was}")),
        "{text}"
    );
}
