//! The same migrate process carries on through lost connections (issue 8): a KILL of its
//! binlog connection while it waits to cut over, and restarts of the server during the copy
//! and after it (verification, postponed cut-over) under the ledger load; a server that stays
//! away longer than `--reconnect-timeout` leaves a resumable state, and a resumed run applies
//! changes to rows its first run had copied already. And a SIGKILL of rowshift while its cut-over holds the table locks:
//! the server releases them, the application's writes continue, and the next run reports the
//! state (cut-over done or not) and finishes.
use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{rowshift_bin, run_rowshift, Engine, ServerOptions, TestServer};
use std::sync::Arc;
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

async fn table_exists(conn: &mut mysql_async::Conn, db: &str, t: &str) -> bool {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, t),
        )
        .await
        .unwrap();
    n == Some(1)
}

/// Output of a finished child, failing the test when it does not finish in time.
async fn output_within(child: tokio::process::Child, limit: Duration) -> std::process::Output {
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("migrate did not finish within {limit:?}"),
    }
}

/// A transaction holding a row lock on `id` of `db`.orders (the copy stops there) until the
/// returned connection is dropped.
async fn hold_row(url: &str, db: &str, id: u64) -> mysql_async::Conn {
    let mut blocker = mysql_async::Conn::from_url(url).await.unwrap();
    blocker.query_drop("START TRANSACTION").await.unwrap();
    let _: Vec<u64> = blocker
        .query(format!(
            "SELECT id FROM `{db}`.orders WHERE id = {id} FOR UPDATE"
        ))
        .await
        .unwrap();
    blocker
}

/// The ledger load commits again: proof that no lock of rowshift is left.
async fn load_commits(load: &LedgerLoad, n: u64, what: &str) {
    if tokio::time::timeout(Duration::from_secs(120), load.wait_for_commits(n))
        .await
        .is_err()
    {
        panic!("the application's writes did not continue {what}");
    }
}

/// After the ledger load: no acknowledged write lost or doubled, every `order_status` right,
/// the original kept as `_orders_old`, no helper table left.
async fn check_migrated(server: &TestServer, db: &str, rows: u64) {
    check_migrated_with(server, db, rows, "").await;
}

/// [`check_migrated`], with rowshift's output to show when the ledger is broken.
async fn check_migrated_with(server: &TestServer, db: &str, rows: u64, output: &str) {
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let v = ledger::check_invariant(&mut conn, db, "orders", rows)
        .await
        .unwrap();
    if !v.is_empty() {
        // Where the lost changes are: the old table (the source up to the cut-over) against
        // the ledger tells a change rowshift lost from one the source never had.
        let mut old = Vec::new();
        for (id, _, _) in &v.wrong_counter {
            let row: Option<i64> = conn
                .query_first(format!(
                    "SELECT counter FROM `{db}`.`_orders_old` WHERE id = {id}"
                ))
                .await
                .unwrap();
            let ledger: Vec<(u64, i64, String)> = conn
                .query(format!(
                    "SELECT seq, d, kind FROM `{db}`.`orders_ledger` WHERE order_id = {id} ORDER BY seq"
                ))
                .await
                .unwrap();
            old.push((*id, row, ledger));
        }
        panic!(
            "ledger broken: {v:?}\n(id, counter in _orders_old, ledger rows): {old:?}\n{output}"
        );
    }
    assert_eq!(
        ledger::wrong_order_status(&mut conn, db, "orders")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ledger::missing_indexes(&mut conn, db, "orders")
            .await
            .unwrap(),
        Vec::<&str>::new()
    );
    assert!(table_exists(&mut conn, db, "_orders_old").await);
    for helper in [
        "_orders_new",
        "_orders_ckpt",
        "orders_rs_sentry",
        "_orders_trip",
    ] {
        assert!(
            !table_exists(&mut conn, db, helper).await,
            "{helper} left behind"
        );
    }
    conn.disconnect().await.unwrap();
}

const RESTART_ROWS: u64 = 60_000;

/// The server is stopped and started again while the copy runs and the ledger load writes;
/// the same rowshift process reconnects every connection and finishes with a GO verification.
async fn server_restarted_during_copy(engine: Engine) {
    let server = Arc::new(TestServer::dedicated(engine, ServerOptions::default()).unwrap());
    let db = server.fresh_db("restarted").await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, RESTART_ROWS)
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let load = LedgerLoad::start(&server.url(), &db, RESTART_ROWS, 4, 21);
    load.wait_for_commits(100).await;
    // A row lock in the middle of the table: the copy gets through the first half and then
    // waits on it, so the restart below lands in the copy whatever the machine's speed (the
    // restart ends the lock with its session).
    let blocker = hold_row(&server.url(), &db, RESTART_ROWS / 2).await;
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args([
            "migrate",
            "--source",
            &server.url(),
            "--table",
            &format!("{db}.orders"),
            "--alter",
            ORDER_STATUS_ALTER,
            "--set",
            &set,
            "--copy-workers",
            "1",
            "--chunk-time-ms",
            "50",
            "--reconnect-timeout",
            "120",
            "--execute",
        ])
        .env("ROWSHIFT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_ckpt(&mut child, &server.url(), &db, |phase, rows| {
        phase == "copy" && rows >= 1_000
    })
    .await;
    // The lock goes with the restart (the server ends its session): released before, the
    // copy could run on past the restart.
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        s.stop();
        s.start()
    })
    .await
    .unwrap()
    .unwrap();
    drop(blocker);
    let out = output_within(child, Duration::from_secs(600)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "migrate did not carry on through the restart:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("binlog connection lost"),
        "no reconnection logged: the restart was not seen?\n{stderr}"
    );
    assert!(
        stdout.contains("rowshift verify: GO"),
        "verification not GO:\n{stdout}"
    );
    load_commits(&load, 100, "after the restart").await;
    let report = load.stop().await;
    assert!(report.committed > 0);
    check_migrated(&server, &db, RESTART_ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_during_copy_mysql() {
    server_restarted_during_copy(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_during_copy_mariadb() {
    server_restarted_during_copy(Engine::MariaDb).await;
}

/// The server is restarted after the copy, while the run verifies or holds its postponed
/// cut-over (drain markers every second): markers, verification and checkpoint reconnect, and
/// the same process cuts over once the flag is gone.
async fn server_restarted_after_copy(engine: Engine) {
    let server = Arc::new(TestServer::dedicated(engine, ServerOptions::default()).unwrap());
    let db = server.fresh_db("restarted_late").await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();
    conn.disconnect().await.unwrap();
    let load = LedgerLoad::start(&server.url(), &db, ROWS, 4, 51);
    load.wait_for_commits(100).await;
    let flag = server.dir().join("postpone");
    let mut child = spawn_migrate_with(
        &server.url(),
        &db,
        &flag,
        &["--chunk-time-ms", "50", "--reconnect-timeout", "120"],
    );
    wait_ckpt(&mut child, &server.url(), &db, |phase, _| phase == "verify").await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        s.stop();
        s.start()
    })
    .await
    .unwrap()
    .unwrap();
    load_commits(&load, 100, "after the restart").await;
    std::fs::remove_file(&flag).unwrap();
    let out = output_within(child, Duration::from_secs(600)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "migrate did not carry on through the restart:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("binlog connection lost"),
        "no reconnection logged: the restart was not seen?\n{stderr}"
    );
    assert!(
        stdout.contains("rowshift verify: GO"),
        "verification not GO:\n{stdout}"
    );
    load_commits(&load, 100, "after the cut-over").await;
    let report = load.stop().await;
    assert!(report.committed > 0);
    check_migrated(&server, &db, ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_after_copy_mysql() {
    server_restarted_after_copy(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_after_copy_mariadb() {
    server_restarted_after_copy(Engine::MariaDb).await;
}

/// The server is restarted while the cut-over holds its locks (test hook at `locked`): the
/// attempt fails on its lost connections, nothing is renamed, and the same process retries
/// the cut-over once the server is back and finishes.
async fn server_restarted_in_cutover(engine: Engine) {
    let server = Arc::new(TestServer::dedicated(engine, ServerOptions::default()).unwrap());
    let db = server.fresh_db("restarted_cut").await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, CUT_ROWS)
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let load = LedgerLoad::start(&server.url(), &db, CUT_ROWS, 4, 61);
    load.wait_for_commits(100).await;
    let pause = server.dir().join("cutover.paused");
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args([
            "migrate",
            "--source",
            &server.url(),
            "--table",
            &format!("{db}.orders"),
            "--alter",
            ORDER_STATUS_ALTER,
            "--set",
            &set,
            "--reconnect-timeout",
            "120",
            "--execute",
        ])
        .env("ROWSHIFT_LOG", "info")
        .env(
            "ROWSHIFT_TEST_PAUSE_IN_CUTOVER",
            format!("locked:{}", pause.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Drain the pipes while polling the child, so that its logging never blocks it.
    let read_all = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text).await;
            }
            text
        })
    };
    let stdout_task = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr_task = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !pause.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "migrate ended before its cut-over paused ({status}):\n{}",
                stderr_task.await.unwrap()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut-over never took its locks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        s.stop();
        s.start()
    })
    .await
    .unwrap()
    .unwrap();
    // Release the paused attempt, and every later one (the hook pauses each attempt).
    let finished = async {
        loop {
            let _ = std::fs::remove_file(&pause);
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let Ok(status) = tokio::time::timeout(Duration::from_secs(600), finished).await else {
        panic!("migrate did not finish after the restart in its cut-over");
    };
    let stdout = stdout_task.await.unwrap();
    let stderr = stderr_task.await.unwrap();
    assert!(
        status.success(),
        "migrate did not carry on through the restart in its cut-over:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("cut-over attempt lost its connection"),
        "the cut-over did not see the restart:\n{stderr}"
    );
    load_commits(&load, 100, "after the cut-over").await;
    let report = load.stop().await;
    assert!(report.committed > 0);
    check_migrated_with(&server, &db, CUT_ROWS, &format!("{stdout}\n{stderr}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_in_cutover_mysql() {
    server_restarted_in_cutover(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_in_cutover_mariadb() {
    server_restarted_in_cutover(Engine::MariaDb).await;
}

/// The server stays down longer than `--reconnect-timeout` during the copy: the run fails
/// with a message that says to resume, keeps its shadow and checkpoint, and `--resume`
/// finishes once the server is back.
async fn server_gone_keeps_resumable_state(engine: Engine) {
    let server = Arc::new(TestServer::dedicated(engine, ServerOptions::default()).unwrap());
    let db = server.fresh_db("gone").await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, RESTART_ROWS)
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let load = LedgerLoad::start(&server.url(), &db, RESTART_ROWS, 4, 41);
    load.wait_for_commits(100).await;
    // As above: a row lock holds the copy in the middle of the table until the stop.
    let blocker = hold_row(&server.url(), &db, RESTART_ROWS / 2).await;
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let table = format!("{db}.orders");
    let url = server.url();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "migrate",
            "--source",
            url.as_str(),
            "--table",
            table.as_str(),
            "--alter",
            ORDER_STATUS_ALTER,
            "--set",
            set.as_str(),
            "--copy-workers",
            "1",
            "--chunk-time-ms",
            "50",
            "--reconnect-timeout",
            "3",
            "--execute",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args(args(&[]))
        .env("ROWSHIFT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_ckpt(&mut child, &server.url(), &db, |phase, rows| {
        phase == "copy" && rows >= 1_000
    })
    .await;
    // The lock goes with the stop (the server ends its session): released before, the copy
    // could run on, and even finish the migration before the server is gone.
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    drop(blocker);
    // Down for longer than --reconnect-timeout: the run must give up on its own.
    let out = output_within(child, Duration::from_secs(300)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrate succeeded without a server");
    assert!(
        stderr.contains("were kept") && stderr.contains("--resume"),
        "the error does not say the run can be resumed:\n{}",
        &stderr[stderr.len().saturating_sub(4000)..]
    );
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.start())
        .await
        .unwrap()
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    assert!(table_exists(&mut conn, &db, "_orders_new").await);
    assert!(table_exists(&mut conn, &db, "_orders_ckpt").await);
    // A dry run of the resume changes nothing: the shadow and the checkpoint stay.
    let dry: Vec<String> = args(&["--resume"])
        .into_iter()
        .filter(|a| a != "--execute")
        .collect();
    let (code, out, err) = run_rowshift(&dry.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("would resume"), "{out}");
    assert!(table_exists(&mut conn, &db, "_orders_new").await);
    assert!(table_exists(&mut conn, &db, "_orders_ckpt").await);
    conn.disconnect().await.unwrap();
    let a = args(&["--resume"]);
    let (code, out, err) = run_rowshift(&a.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("resumed"), "{out}");
    assert!(out.contains("rowshift verify: GO"), "{out}");
    load_commits(&load, 100, "after the server came back").await;
    let report = load.stop().await;
    assert!(report.committed > 0);
    check_migrated(&server, &db, RESTART_ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_keeps_resumable_state_mysql() {
    server_gone_keeps_resumable_state(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_keeps_resumable_state_mariadb() {
    server_gone_keeps_resumable_state(Engine::MariaDb).await;
}

/// The server's binlog coordinates now.
async fn server_position(conn: &mut mysql_async::Conn) -> (String, u64) {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(r) => r,
        Err(_) => conn.query_first("SHOW MASTER STATUS").await.unwrap(),
    };
    let row = row.expect("binary logging is on");
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// A resumed copy restarts above the checkpoint's copy watermark, and the rows below it are not
/// copied again: every change made to them after the checkpoint must come from the binlog, from
/// the very first event the resumed run reads. (Found by `server_gone_keeps_resumable_state`:
/// the resumed router skipped such events until the copy had started again.) Here rowshift is
/// killed mid-copy, rows below the watermark change while it is down, and a `copy-start` hook
/// holds the resumed copy until the checkpoint shows those changes read and applied.
async fn resume_applies_changes_below_the_watermark(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("resume_low_{}", engine.name()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();
    let load = LedgerLoad::start(&server.url(), &db, ROWS, 4, 57);
    load.wait_for_commits(100).await;
    // A row lock in the middle of the table holds the copy there until the kill.
    let blocker = hold_row(&server.url(), &db, ROWS / 2).await;
    let flag = std::env::temp_dir().join(format!(
        "rowshift-resume-low-{}-{}.postpone",
        engine.name(),
        std::process::id()
    ));
    std::fs::write(&flag, b"").unwrap();
    let mut child = spawn_migrate(&server.url(), &db, &flag);
    wait_ckpt(&mut child, &server.url(), &db, |phase, rows| {
        phase == "copy" && rows >= 1_000
    })
    .await;
    // The watermark follows the rows copied: it moves when the dispatcher takes the finished
    // chunk's report, so a checkpoint written in between counts the rows of a chunk that its
    // watermark does not cover yet. The blocked row holds the copy well above 500.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if rowshift_testkit::copy_watermark(&mut conn, &db, "orders")
            .await
            .is_some_and(|w| w >= 500)
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("migrate exited before its copy watermark passed 500 ({status})");
        }
        let last = rowshift_testkit::copy_watermark(&mut conn, &db, "orders").await;
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint's copy watermark never passed 500; last {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    drop(blocker);
    let upto: u64 = rowshift_testkit::copy_watermark(&mut conn, &db, "orders")
        .await
        .expect("the checkpoint holds a copy watermark");
    assert!(upto >= 500, "copy watermark {upto}");
    // Changes below the watermark while rowshift is down (the ledger load makes more).
    conn.query_drop(format!(
        "UPDATE `{db}`.orders SET note = CONCAT('changed while down ', id) WHERE id <= 500"
    ))
    .await
    .unwrap();
    let after_changes = server_position(&mut conn).await;

    let (dir, release) =
        rowshift_testkit::gated_copy_start_hook(&format!("resume-low-{}", engine.name()));
    let hooks = dir.display().to_string();
    let mut child = spawn_migrate_with(
        &server.url(),
        &db,
        &flag,
        &[
            "--chunk-time-ms",
            "50",
            "--resume",
            "--hooks-dir",
            &hooks,
            "--hook-timeout",
            "300s",
        ],
    );
    // The resumed run has read and applied past the changes, its copy not started yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let seen: Option<(String, u64)> = conn
            .query_first(format!(
                "SELECT file, file_offset FROM `{db}`.`_orders_ckpt` WHERE id = 1"
            ))
            .await
            .unwrap();
        if seen.as_ref().is_some_and(|p| *p >= after_changes) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "the resumed migrate exited early ({status}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint never passed {after_changes:?}; last {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&release, b"").unwrap();
    // The verification before the cut-over finds the shadow equal to the table (a lost change
    // is a NO-GO and a failed run).
    std::fs::remove_file(&flag).unwrap();
    let out = output_within(child, Duration::from_secs(300)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the resumed migrate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rowshift verify: GO"), "{stdout}");
    let report = load.stop().await;
    assert!(report.committed > 0);
    check_migrated(&server, &db, ROWS).await;
    let changed: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM `{db}`.orders WHERE note LIKE 'changed while down %'"
        ))
        .await
        .unwrap();
    assert!(changed.unwrap_or(0) > 0);
    conn.disconnect().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_applies_changes_below_the_watermark_mysql() {
    resume_applies_changes_below_the_watermark(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_applies_changes_below_the_watermark_mariadb() {
    resume_applies_changes_below_the_watermark(Engine::MariaDb).await;
}

const CUT_ROWS: u64 = 20_000;

/// SIGKILL of rowshift while its cut-over is paused at `stage` (the test hook
/// `ROWSHIFT_TEST_PAUSE_IN_CUTOVER`): the server drops the locks with the connections, the
/// ledger load commits again, and the next run reports and finishes the state it finds.
/// `freeze`: first SIGSTOP (a frozen host: the server sees no closed connection), and the
/// load must commit again before the kill, once the server ends the idle locking session.
async fn killed_in_cutover(engine: Engine, stage: &str, freeze: bool) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("cutkill_{stage}_{freeze}_{}", engine.name()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, CUT_ROWS)
        .await
        .unwrap();
    let load = LedgerLoad::start(&server.url(), &db, CUT_ROWS, 4, 31);
    load.wait_for_commits(100).await;
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let table = format!("{db}.orders");
    let url = server.url();
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "migrate".into(),
            "--source".into(),
            url.clone(),
            "--table".into(),
            table.clone(),
            "--alter".into(),
            ORDER_STATUS_ALTER.into(),
            "--set".into(),
            set.clone(),
            "--execute".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let pause = std::env::temp_dir().join(format!(
        "rowshift-cutkill-{stage}-{freeze}-{}-{}.paused",
        engine.name(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&pause);
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args(args(&[]))
        .env("ROWSHIFT_LOG", "warn")
        .env(
            "ROWSHIFT_TEST_PAUSE_IN_CUTOVER",
            format!("{stage}:{}", pause.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !pause.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "migrate ended before its cut-over paused ({status}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut-over never reached {stage}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if stage != "renamed" {
        // The window is real: the table is locked against the application right now.
        let mut probe = mysql_async::Conn::from_url(server.url()).await.unwrap();
        probe
            .query_drop("SET SESSION lock_wait_timeout = 1")
            .await
            .unwrap();
        let blocked = probe
            .query_drop(format!(
                "UPDATE `{db}`.orders SET counter = counter WHERE id = 1"
            ))
            .await;
        assert!(
            blocked.is_err(),
            "the table was not locked at stage {stage}"
        );
        drop(probe);
    }
    if freeze {
        let pid = child.id().unwrap() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        load_commits(&load, 200, "while rowshift was frozen holding the lock").await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let _ = std::fs::remove_file(&pause);
    load_commits(&load, 200, "after rowshift was killed in its cut-over").await;

    let renamed = table_exists(&mut conn, &db, "_orders_old").await;
    assert_eq!(
        renamed,
        stage == "renamed",
        "stage {stage}: the rename happened = {renamed}"
    );
    if stage == "renamed" {
        // Another migration of the table is refused while the earlier one's checkpoint and
        // old table are there: it would otherwise be reported done and exit 0.
        let other = [
            "migrate",
            "--source",
            &url,
            "--table",
            &table,
            "--alter",
            "ADD COLUMN `extra` INT NULL",
            "--execute",
        ];
        let (code, out, err) = run_rowshift(&other).await;
        assert_ne!(code, 0, "{out}\n{err}");
        assert!(
            err.contains("was migrated by an earlier run with other options")
                && err.contains("--abort"),
            "{err}"
        );
        assert!(table_exists(&mut conn, &db, "_orders_old").await);
        assert!(table_exists(&mut conn, &db, "_orders_ckpt").await);
        // The same command as a dry run says so and changes nothing.
        let mut dry = args(&[]);
        dry.retain(|a| a != "--execute");
        let (code, out, err) =
            run_rowshift(&dry.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("run with --execute to clean it up"),
            "{out}\n{err}"
        );
        assert!(table_exists(&mut conn, &db, "_orders_ckpt").await);
        // The same command finds the cut-over done, says so and cleans up.
        let a = args(&[]);
        let (code, out, err) =
            run_rowshift(&a.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("the cut-over of an earlier run had completed"),
            "{out}\n{err}"
        );
    } else {
        // The same command says a resumable migration exists; --resume finishes it.
        let a = args(&[]);
        let (code, out, err) =
            run_rowshift(&a.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains("resumable migration") && err.contains("--resume"),
            "{err}"
        );
        let a = args(&["--resume"]);
        let (code, out, err) =
            run_rowshift(&a.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("resumed") && out.contains("cut-over had not happened"),
            "{out}"
        );
        assert!(out.contains("migrated:"), "{out}");
    }
    load_commits(&load, 100, "after the next run").await;
    let report = load.stop().await;
    assert!(report.committed > 0);
    conn.disconnect().await.unwrap();
    check_migrated(&server, &db, CUT_ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holding_cutover_locks_mysql() {
    killed_in_cutover(Engine::MySql, "locked", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holding_cutover_locks_mariadb() {
    killed_in_cutover(Engine::MariaDb, "locked", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_holding_cutover_locks_mysql() {
    killed_in_cutover(Engine::MySql, "locked", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_holding_cutover_locks_mariadb() {
    killed_in_cutover(Engine::MariaDb, "locked", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_rename_queued_mysql() {
    killed_in_cutover(Engine::MySql, "queued", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_rename_queued_mariadb() {
    killed_in_cutover(Engine::MariaDb, "queued", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_rename_mysql() {
    killed_in_cutover(Engine::MySql, "renamed", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_rename_mariadb() {
    killed_in_cutover(Engine::MariaDb, "renamed", false).await;
}

/// A run killed while its index build runs leaves that `ALTER` running on the server; the
/// resumed run's build must wait for it and add only what is still missing. Staged without a
/// kill: a `LOCK TABLES … READ` holds the shadow, an "earlier run's" `ALTER … ADD KEY` queues
/// on it, then the build starts and queues behind (seen in the processlist), then the lock
/// goes: the earlier ALTER adds the key first, and the build must still succeed.
async fn index_build_outlived_by_earlier_alter(engine: Engine) {
    use rowshift_engine::migrate::indexes;
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("outlived_build_{}", engine.name()))
        .await
        .unwrap();
    let url = server.url();
    let mut setup = mysql_async::Conn::from_url(url.clone()).await.unwrap();
    setup
        .query_drop(format!(
            "CREATE TABLE `{db}`.`_t_new` (id INT PRIMARY KEY, a INT, b INT)"
        ))
        .await
        .unwrap();
    setup
        .query_drop(format!(
            "INSERT INTO `{db}`.`_t_new` VALUES (1, 1, 1), (2, 2, 2)"
        ))
        .await
        .unwrap();
    let table = format!("`{db}`.`_t_new`");
    let wanted = vec![
        indexes::DeferredIndex {
            name: "ka".into(),
            definition: "KEY `ka` (`a`)".into(),
        },
        indexes::DeferredIndex {
            name: "kb".into(),
            definition: "KEY `kb` (`b`)".into(),
        },
    ];
    // Count the sessions waiting for the shadow's metadata lock.
    async fn waiting(conn: &mut mysql_async::Conn, db: &str) -> usize {
        let n: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB IS NULL AND STATE LIKE 'Waiting for table metadata lock' AND INFO LIKE '%{db}%'"
            ))
            .await
            .unwrap();
        n.unwrap_or(0) as usize
    }
    let mut locker = mysql_async::Conn::from_url(url.clone()).await.unwrap();
    locker
        .query_drop(format!("LOCK TABLES {table} READ"))
        .await
        .unwrap();
    let mut earlier = mysql_async::Conn::from_url(url.clone()).await.unwrap();
    let earlier_sql = format!("ALTER TABLE {table} ADD KEY `ka` (`a`)");
    let earlier_alter = tokio::spawn(async move { earlier.query_drop(earlier_sql).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while waiting(&mut setup, &db).await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the earlier ALTER never queued"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut builder = mysql_async::Conn::from_url(url.clone()).await.unwrap();
    let build_table = table.clone();
    let build =
        tokio::spawn(
            async move { indexes::build(&mut builder, &build_table, &wanted, false).await },
        );
    while waiting(&mut setup, &db).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never queued behind the earlier ALTER"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    locker.query_drop("UNLOCK TABLES").await.unwrap();
    earlier_alter.await.unwrap().unwrap();
    let built = build
        .await
        .unwrap()
        .expect("the build gets past the earlier ALTER");
    assert_eq!(built, vec!["ka".to_string(), "kb".to_string()]);
    let create: Option<(String, String)> = setup
        .query_first(format!("SHOW CREATE TABLE {table}"))
        .await
        .unwrap();
    let create = create.unwrap().1;
    assert!(
        create.contains("KEY `ka` (`a`)") && create.contains("KEY `kb` (`b`)"),
        "{create}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_build_outlived_by_earlier_alter_mysql() {
    index_build_outlived_by_earlier_alter(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_build_outlived_by_earlier_alter_mariadb() {
    index_build_outlived_by_earlier_alter(Engine::MariaDb).await;
}
