//! The same migrate process carries on through a KILL of its binlog connection while it waits
//! to cut over (issue 8). (A restart of the server during the copy is not covered yet: see the
//! issue notes.)

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{rowshift_bin, Engine, ServerOptions, TestServer};
use std::time::Duration;

const ROWS: u64 = 60_000;

async fn ckpt(url: &str, db: &str) -> Option<(String, u64)> {
    let mut conn = mysql_async::Conn::from_url(url).await.ok()?;
    let row: Option<(String, u64)> = conn
        .query_first(format!(
            "SELECT phase, rows_copied FROM `{db}`.`_orders_ckpt` WHERE id = 1"
        ))
        .await
        .ok()
        .flatten();
    let _ = conn.disconnect().await;
    row
}

/// Wait (polling the checkpoint, a condition) until `pred` holds; fails when migrate exits.
async fn wait_ckpt(
    child: &mut tokio::process::Child,
    url: &str,
    db: &str,
    pred: impl Fn(&str, u64) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let seen = ckpt(url, db).await;
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint never reached the awaited state; last {seen:?}"
        );
        if let Some((phase, rows)) = ckpt(url, db).await {
            if pred(&phase, rows) {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            use tokio::io::AsyncReadExt;
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out).await;
            }
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            panic!("migrate exited early ({status}):\n{out}\n{err}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_migrate(url: &str, db: &str, flag: &std::path::Path) -> tokio::process::Child {
    spawn_migrate_with(url, db, flag, &["--chunk-time-ms", "50"])
}

fn spawn_migrate_with(
    url: &str,
    db: &str,
    flag: &std::path::Path,
    extra: &[&str],
) -> tokio::process::Child {
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    tokio::process::Command::new(rowshift_bin())
        .args([
            "migrate",
            "--source",
            url,
            "--table",
            &format!("{db}.orders"),
            "--alter",
            ORDER_STATUS_ALTER,
            "--set",
            &set,
            "--copy-workers",
            "1",
            "--execute",
            "--postpone-flag-file",
            &flag.display().to_string(),
        ])
        .args(extra)
        .env("ROWSHIFT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn finish_and_check(
    server: &TestServer,
    db: &str,
    child: tokio::process::Child,
    flag: &std::path::Path,
    extra_rows: u64,
) {
    std::fs::remove_file(flag).unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "migrate did not carry on:\n{stdout}\n{stderr}"
    );
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let n: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.orders"))
        .await
        .unwrap();
    assert_eq!(n, Some(ROWS + extra_rows));
    assert_eq!(
        ledger::wrong_order_status(&mut conn, db, "orders")
            .await
            .unwrap(),
        0
    );
    let v = ledger::check_invariant(&mut conn, db, "orders", ROWS)
        .await
        .unwrap();
    assert!(v.wrong_counter.is_empty(), "{v:?}");
    conn.disconnect().await.unwrap();
}

async fn binlog_connection_killed(engine: Engine) {
    let server = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let db = server.fresh_db("killed").await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();
    let flag = server.dir().join("postpone");
    let mut child = spawn_migrate(&server.url(), &db, &flag);
    wait_ckpt(&mut child, &server.url(), &db, |phase, _| phase == "verify").await;
    let dumps: Vec<u64> = conn
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    assert!(!dumps.is_empty(), "no binlog connection found");
    for id in dumps {
        conn.query_drop(format!("KILL {id}")).await.unwrap();
    }
    conn.query_drop(format!(
        "UPDATE `{db}`.orders SET status_code = 3 WHERE id <= 100"
    ))
    .await
    .unwrap();
    finish_and_check(&server, &db, child, &flag, 0).await;
    let delivered: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM `{db}`.orders WHERE id <= 100 AND order_status = 'delivered'"
        ))
        .await
        .unwrap();
    assert_eq!(
        delivered,
        Some(100),
        "changes after the KILL were not applied"
    );
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_connection_killed_mysql() {
    binlog_connection_killed(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_connection_killed_mariadb() {
    binlog_connection_killed(Engine::MariaDb).await;
}
