//! The watermark backfill reads a chunk after its low watermark committed and must see every
//! transaction logged before it: the server has to commit in binlog order.
//!
//! - Semi-synchronous replication (`AFTER_SYNC`, the MySQL default wait point) writes a
//!   transaction to the binlog, then waits for a replica's acknowledgement, and only then
//!   commits it in the engine. A sync started in that window takes its binlog start position
//!   after the transaction, so the stream does not bring it; the backfill must read it. Here
//!   the row has the table's highest key: the backfill's upper bound, read while the row was
//!   invisible, left it out (before the fix the target never got it). Now a signal row
//!   committed after the start position and before that read makes every earlier transaction
//!   visible first. The signal table already exists (an earlier sync of this database made
//!   it): the sync does not create it again, which would log a statement and wait for the
//!   replica too.
//! - MySQL with `binlog_order_commits = OFF` may commit a transaction after one logged behind
//!   it: a sync that still has a backfill to do refuses, before it makes anything.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::time::{Duration, Instant};
use sync_support::{
    fresh_source_table, refused_sync, spawn_sync, stop_sync, table_t_args, wait_backfill,
};

const ROWS: u64 = 500;
/// The key of the row whose commit waits for the replica.
const LATE: u64 = 1_000_000;
/// A row written after the backfill: once the target has it, the sync has passed the rest.
const SENTINEL: u64 = 2_000_000;

/// Poll `query` (one number) on `conn` until `ok` holds for it, with a deadline.
async fn wait_until(
    conn: &mut mysql_async::Conn,
    query: &str,
    what: &str,
    ok: impl Fn(u64) -> bool,
    child: Option<&mut tokio::process::Child>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut child = child;
    loop {
        let got: u64 = conn.query_first(query).await.unwrap().unwrap_or(0);
        if ok(got) {
            return;
        }
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("sync ended ({status:?}) while waiting for {what}");
            }
        }
        if Instant::now() >= deadline {
            let sessions: Vec<(Option<String>, Option<String>, Option<String>)> = conn
                .query("SELECT COMMAND, STATE, INFO FROM information_schema.PROCESSLIST")
                .await
                .unwrap_or_default();
            panic!("{what}: {query} stayed {got}; sessions: {sessions:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The statements that make `p` a semi-synchronous source (waiting for ever, even with no
/// replica) and `r` its acknowledging replica, and the replica's IO thread stop and start.
struct SemiSync {
    source: &'static [&'static str],
    replica: &'static [&'static str],
    clients: &'static str,
    stop_io: &'static str,
    start_io: &'static str,
}

fn semisync(engine: Engine) -> SemiSync {
    match engine {
        Engine::MySql => SemiSync {
            source: &[
                "INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'",
                "SET GLOBAL rpl_semi_sync_source_timeout = 600000, rpl_semi_sync_source_wait_no_replica = ON, rpl_semi_sync_source_wait_point = 'AFTER_SYNC', rpl_semi_sync_source_enabled = ON",
            ],
            replica: &[
                "INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so'",
                "SET GLOBAL rpl_semi_sync_replica_enabled = ON",
            ],
            clients: "SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Rpl_semi_sync_source_clients'",
            stop_io: "STOP REPLICA IO_THREAD",
            start_io: "START REPLICA IO_THREAD",
        },
        Engine::MariaDb => SemiSync {
            source: &[
                "SET GLOBAL rpl_semi_sync_master_timeout = 600000, rpl_semi_sync_master_wait_no_slave = ON, rpl_semi_sync_master_wait_point = 'AFTER_SYNC', rpl_semi_sync_master_enabled = ON",
            ],
            replica: &["SET GLOBAL rpl_semi_sync_slave_enabled = ON"],
            clients: "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'",
            stop_io: "STOP SLAVE IO_THREAD",
            start_io: "START SLAVE IO_THREAD",
        },
    }
}

/// Sessions of the source waiting to commit (for a replica's acknowledgement, or queued
/// behind a commit that does) whose statement is an INSERT that mentions `text`.
fn waiting_for_ack(text: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE (STATE LIKE '%semi-sync%' OR STATE LIKE '%commit%') AND INFO LIKE 'INSERT INTO %{text}%'"
    )
}

async fn commit_waiting_for_a_replica_at_the_start(engine: Engine) {
    let primary = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let replica = TestServer::replica_of(&primary).await.unwrap();
    let tgt = TestServer::shared(engine);
    let db = format!("sync_semisync_{}", engine.name());
    let name = format!("semisync_{}", engine.name());
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, {i})")).collect();
    let mut s = fresh_source_table(
        &primary,
        &tgt,
        &db,
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    rowshift_engine::backfill::SignalTable { db: db.clone() }
        .create(&mut s)
        .await
        .unwrap();

    // Semi-sync on, the replica acknowledging; then its IO thread stops: commits wait.
    let ss = semisync(engine);
    let mut r = mysql_async::Conn::from_url(replica.url()).await.unwrap();
    for stmt in ss.source {
        s.query_drop(*stmt).await.unwrap();
    }
    for stmt in ss.replica.iter().chain([&ss.stop_io, &ss.start_io]) {
        r.query_drop(*stmt).await.unwrap();
    }
    wait_until(&mut s, ss.clients, "a semi-sync replica", |n| n == 1, None).await;
    r.query_drop(ss.stop_io).await.unwrap();
    wait_until(&mut s, ss.clients, "no semi-sync replica", |n| n == 0, None).await;

    // The late row: in the binlog, waiting for an acknowledgement, invisible.
    let mut late = mysql_async::Conn::from_url(primary.url_for_db(&db))
        .await
        .unwrap();
    let late_insert = tokio::spawn(async move {
        late.query_drop(format!("INSERT INTO t VALUES ({LATE}, 1)"))
            .await
            .unwrap();
    });
    wait_until(
        &mut s,
        &waiting_for_ack(&LATE.to_string()),
        "the late insert waiting for the replica",
        |n| n == 1,
        None,
    )
    .await;

    // The sync starts; its first signal row waits too (it is logged after the late row).
    // Then the replica acknowledges both.
    let args = table_t_args(&primary.url(), &tgt, &db, &name, &[]);
    let log = std::env::temp_dir().join(format!("rowshift-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_until(
        &mut s,
        &waiting_for_ack("_rowshift_signal"),
        "the sync's signal row waiting for the replica",
        |n| n >= 1,
        Some(&mut child),
    )
    .await;
    r.query_drop(ss.start_io).await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), late_insert)
        .await
        .expect("the late insert was not acknowledged")
        .unwrap();
    wait_backfill(&tgt, &db, &name, &mut child).await;

    s.query_drop(format!("INSERT INTO t VALUES ({SENTINEL}, 1)"))
        .await
        .unwrap();
    let mut t = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    wait_until(
        &mut t,
        &format!("SELECT COUNT(*) FROM t WHERE id = {SENTINEL}"),
        "the sentinel row on the target",
        |n| n == 1,
        Some(&mut child),
    )
    .await;
    stop_sync(child).await;

    let want: Vec<(u64, i64)> = s.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let got: Vec<(u64, i64)> = t.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let late_row: Option<u64> = t
        .query_first(format!("SELECT COUNT(*) FROM t WHERE id = {LATE}"))
        .await
        .unwrap();
    assert_eq!(late_row, Some(1), "the late row reached the target");
    assert_eq!(got, want, "the target's rows differ from the source's");
    let _ = std::fs::remove_file(&log);
}

rowshift_testkit::both_engines!(commit_waiting_for_a_replica_at_the_start);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_order_commits_off_is_refused() {
    let src = TestServer::dedicated(
        Engine::MySql,
        ServerOptions {
            extra_args: vec!["--binlog-order-commits=OFF".into()],
        },
    )
    .unwrap();
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = "sync_order_commits_off";
    let rows: Vec<String> = (1..=10).map(|i| format!("({i}, {i})")).collect();
    let mut s = fresh_source_table(
        &src,
        &tgt,
        db,
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    let args = table_t_args(&src.url(), &tgt, db, "order_commits_off", &[]);
    let err = refused_sync(&args).await;
    assert!(
        err.contains("binlog_order_commits is OFF")
            && err.contains("SET GLOBAL binlog_order_commits = ON"),
        "{err}"
    );
    // Nothing made: no target table, no signal table on the source.
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let made: Option<u64> = t
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'",
            (db,),
        )
        .await
        .unwrap();
    assert_eq!(made, Some(0), "the target table was created");
    let signal: Option<u64> = s
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = '_rowshift_signal'",
            (db,),
        )
        .await
        .unwrap();
    assert_eq!(signal, Some(0), "the signal table was created");
}
