//! A DDL on a synced source table stops `sync` with what to do: its checkpoint stays before
//! the statement, so the same sync stops there again; a new `--name` into a dropped target
//! table backfills the table in its new shape.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, TestServer};
use std::time::Duration;
use sync_support::{fresh_source_table, spawn_sync, stop_sync, table_t_args, wait_backfill};

/// Wait (bounded) for the sync to exit; returns whether it succeeded and its log.
async fn exit_of(mut child: tokio::process::Child, log: &std::path::Path) -> (bool, String) {
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("sync did not stop")
        .unwrap();
    (
        status.success(),
        std::fs::read_to_string(log).unwrap_or_default(),
    )
}

async fn ddl_stops_the_sync(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_ddl_{}_{}", from.name(), to.name());
    let rows: Vec<String> = (1..=500).map(|i| format!("({i}, {i})")).collect();
    let mut s = fresh_source_table(
        &src,
        &tgt,
        &db,
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    let args = |name: &str| table_t_args(&src.url(), &tgt, &db, name, &[]);
    let log = std::env::temp_dir().join(format!("rowshift-{db}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args("first"), &log);
    wait_backfill(&tgt, &db, "first", &mut child).await;
    s.query_drop("ALTER TABLE t ADD COLUMN z INT NOT NULL DEFAULT 5")
        .await
        .unwrap();
    let (ok, text) = exit_of(child, &log).await;
    assert!(!ok, "sync went on after the DDL:\n{text}");
    assert!(
        text.contains("was altered") && text.contains("new --name"),
        "the error says what to do:\n{text}"
    );
    // The same sync stops at the same statement again.
    let _ = std::fs::remove_file(&log);
    let (ok, text) = exit_of(spawn_sync(&args("first"), &log), &log).await;
    assert!(!ok && text.contains("was altered"), "{text}");
    // Start over: the target table dropped, a new name.
    let mut t = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    t.query_drop("DROP TABLE t").await.unwrap();
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args("second"), &log);
    wait_backfill(&tgt, &db, "second", &mut child).await;
    stop_sync(child).await;
    let z: Vec<(u32, i32)> = t
        .query("SELECT id, z FROM t WHERE id IN (1, 500) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(z, vec![(1, 5), (500, 5)], "the target in the new shape");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_ddl_stops_the_sync() {
    ddl_stops_the_sync(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_ddl_stops_the_sync() {
    ddl_stops_the_sync(Engine::MariaDb, Engine::MySql).await;
}
