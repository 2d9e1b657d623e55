//! Operating a `rowshift sync` (issue 7 applied to sync): a throttle flag file holds the
//! backfill at 0 rows while the stream keeps being applied; removing it lets the backfill finish;
//! `ctl pause` / `resume` while streaming break nothing; after a SIGTERM the target equals the
//! source; `ctl` answers in a sync's terms (status with the sync's phase and positions, abort
//! keeps the checkpoint, postpone / cut-over refused in favour of `rowshift promote`).

mod ops_support;
mod sync_support;

use mysql_async::prelude::Queryable;
use ops_support::{ctl_args, http_get, metric, num, rows, table_with_rows, temp_path, DEADLINE};
use rowshift_testkit::{Engine, TestServer};
use serde_json::Value;
use std::time::Instant;
use sync_support::{spawn_sync, stop_sync, wait_backfill};

const ROWS: u32 = 3_000;

/// `rowshift ctl --table <table> <command> [arg]`: (exit code, JSON reply or Null).
async fn ctl(table: &str, command: &str, arg: Option<&str>) -> (i32, Value) {
    ctl_args(&["--table", table], command, arg).await
}

/// `ctl <command>`, which must succeed.
async fn ctl_ok(table: &str, command: &str, arg: Option<&str>) -> Value {
    let (code, v) = ctl(table, command, arg).await;
    assert_eq!(code, 0, "ctl {command} {arg:?} failed: {v}");
    assert_eq!(v["ok"], true, "ctl {command}: {v}");
    v
}

/// Poll `ctl status` until `pred` holds (the sync must keep running).
async fn wait_status(
    table: &str,
    child: &mut tokio::process::Child,
    log: &std::path::Path,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Value::Null;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "sync ended ({status:?}) while waiting for {what}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let (code, v) = ctl(table, "status", None).await;
        if code == 0 {
            if pred(&v) {
                return v;
            }
            last = v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {last}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Poll until `sql` returns `want` on `server`.
async fn wait_value(server: &TestServer, sql: &str, want: i64) {
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got: Option<i64> = c.query_first(sql).await.ok().flatten();
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} returned {got:?}, expected {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `sync` arguments for `db`.`t` with the throttle flag file `flag`.
fn args_for(
    src: &TestServer,
    tgt: &TestServer,
    table: &str,
    name: &str,
    flag: &str,
) -> Vec<String> {
    [
        "--source",
        &src.url(),
        "--target",
        &tgt.url(),
        "--table",
        table,
        "--name",
        name,
        "--chunk-rows",
        "100",
        "--throttle-flag-file",
        flag,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn throttle_pause_resume(from: Engine, to: Engine, dbname: &str) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = table_with_rows(&src, dbname, ROWS).await;
    tgt.fresh_db(&db).await.unwrap();
    let table = format!("{db}.t");
    let flag = temp_path(&format!("{dbname}-flag"));
    std::fs::write(&flag, b"").unwrap();
    let name = "ops";
    let flag_s = flag.display().to_string();
    let mut args = args_for(&src, &tgt, &table, name, &flag_s);
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    args.extend(["--http".to_string(), format!("127.0.0.1:{port}")]);
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);

    // Throttled by the flag file: the backfill copies nothing. The throttler may report the
    // flag before the sync has published its first phase (`starting`), so wait for both.
    let v = wait_status(
        &table,
        &mut child,
        &log,
        "throttled by the flag file in the backfill",
        |v| v["throttled"] == true && v["phase"] == "backfill",
    )
    .await;
    let reason = v["throttle_reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&flag_s), "throttle reason: {v}");
    assert_eq!(num(&v, "rows_copied"), 0, "{v}");
    assert_eq!(v["phase"], "backfill", "{v}");

    // The stream keeps being applied while the backfill is held.
    let mut s = mysql_async::Conn::from_url(src.url()).await.unwrap();
    s.query_drop(format!(
        "INSERT INTO `{db}`.`t` (id, a, s) VALUES (100001, 7, 'during throttle')"
    ))
    .await
    .unwrap();
    wait_value(
        &tgt,
        &format!("SELECT a FROM `{db}`.`t` WHERE id = 100001"),
        7,
    )
    .await;
    let v = ctl_ok(&table, "status", None).await;
    assert_eq!(v["throttled"], true, "{v}");
    assert_eq!(
        num(&v, "rows_copied"),
        0,
        "backfill ran while throttled: {v}"
    );

    // Released: the backfill finishes in chunks of 100.
    std::fs::remove_file(&flag).unwrap();
    wait_backfill(&tgt, &db, name, &mut child).await;
    // The checkpoint says done when the target applied the last chunk, which can be before the
    // backfill task counted it; the phase turns to streaming once that task has returned, so
    // its counters are final then (`status` reads them one after the other: while a chunk is
    // being counted it can show in `rows_copied` and not yet in `chunks`).
    let v = wait_status(&table, &mut child, &log, "the backfill over", |v| {
        v["throttled"] == false && v["phase"] == "streaming"
    })
    .await;
    assert!(num(&v, "rows_copied") >= u64::from(ROWS), "{v}");
    assert!(num(&v, "chunks") >= u64::from(ROWS) / 100, "{v}");
    assert!(num(&v, "last_chunk_rows") <= 100, "{v}");

    // Pause / resume while streaming: changes still reach the target.
    let v = ctl_ok(&table, "pause", None).await;
    assert_eq!(v["paused"], true, "{v}");
    s.query_drop(format!("UPDATE `{db}`.`t` SET a = a + 1000 WHERE id <= 50"))
        .await
        .unwrap();
    s.query_drop(format!(
        "DELETE FROM `{db}`.`t` WHERE id BETWEEN 2001 AND 2010"
    ))
    .await
    .unwrap();
    let v = ctl_ok(&table, "resume", None).await;
    assert_eq!(v["paused"], false, "{v}");
    s.query_drop(format!(
        "INSERT INTO `{db}`.`t` (id, a, s) VALUES (100002, 9, 'after resume')"
    ))
    .await
    .unwrap();
    wait_value(
        &tgt,
        &format!("SELECT a FROM `{db}`.`t` WHERE id = 100002"),
        9,
    )
    .await;
    let v = wait_status(
        &table,
        &mut child,
        &log,
        "the applied events counted",
        |v| v["sync"]["events_applied"].as_u64() >= Some(62),
    )
    .await;
    assert_eq!(v["phase"], "streaming", "{v}");
    assert_eq!(v["sync"]["phase"], "streaming", "{v}");
    assert!(v["sync"]["applied"].is_string(), "{v}");
    s.disconnect().await.unwrap();

    // /metrics counts the sync's own work: backfilled rows, changes read by kind, applied.
    let started = Instant::now();
    loop {
        let (status, body) = http_get(port, "/metrics").await;
        assert!(status.contains("200"), "{status}\n{body}");
        let copied = metric(&body, "rowshift_rows_copied_total", None).unwrap_or(0.0);
        let updates =
            metric(&body, "rowshift_events_total", Some(("kind", "update"))).unwrap_or(0.0);
        let deletes =
            metric(&body, "rowshift_events_total", Some(("kind", "delete"))).unwrap_or(0.0);
        let applied = metric(&body, "rowshift_events_applied_total", None).unwrap_or(0.0);
        if copied >= f64::from(ROWS) && updates >= 50.0 && deletes >= 10.0 && applied >= 62.0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "metrics did not count the sync's work: copied {copied}, updates {updates}, deletes {deletes}, applied {applied}\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await; // polling interval
    }

    stop_sync(child).await;
    let (a, b) = (rows(&src, &db).await, rows(&tgt, &db).await);
    assert_eq!(a.len(), ROWS as usize - 10 + 2);
    assert!(a == b, "target differs from source; log: {}", log.display());
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_throttle_pause_resume() {
    throttle_pause_resume(Engine::MySql, Engine::MariaDb, "sync_ops_my_ma").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_throttle_pause_resume() {
    throttle_pause_resume(Engine::MariaDb, Engine::MySql, "sync_ops_ma_my").await;
}

/// `ctl abort` during a throttled backfill ends the sync with a non-zero exit and keeps the
/// checkpoint; the same command without the flag file resumes and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_abort_keeps_checkpoint() {
    let src = TestServer::shared(Engine::MySql);
    let tgt = TestServer::shared(Engine::MariaDb);
    let db = table_with_rows(&src, "sync_ops_abort", ROWS).await;
    tgt.fresh_db(&db).await.unwrap();
    let table = format!("{db}.t");
    let flag = temp_path("sync-ops-abort-flag");
    std::fs::write(&flag, b"").unwrap();
    // Its own sync name: the throttle test runs at the same time against the same target
    // server, and a sync name is one lock per target server.
    let name = "opsabort";
    let flag_s = flag.display().to_string();
    let args = args_for(&src, &tgt, &table, name, &flag_s);
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    let v = wait_status(&table, &mut child, &log, "throttled", |v| {
        v["throttled"] == true && v["sync"]["source_position"].is_string()
    })
    .await;
    // `ctl status` of a sync names the job and carries the sync's phase and positions.
    assert_eq!(v["job"], "sync", "{v}");
    assert_eq!(v["sync"]["phase"], "backfill", "{v}");
    assert_eq!(num(&v["sync"], "backfill_rows"), 0, "{v}");
    assert!(
        v["sync"]["source_position"]
            .as_str()
            .is_some_and(|p| p.contains(':')),
        "{v}"
    );
    // A sync has no cut-over of its own: postpone and cut-over are refused, naming promote.
    for command in ["postpone", "cut-over"] {
        let (code, v) = ctl(&table, command, None).await;
        assert_eq!(code, 1, "ctl {command} must be refused for a sync: {v}");
        assert_eq!(v["ok"], false, "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("`rowshift promote` is the sync's cut-over"),
            "ctl {command}: {v}"
        );
    }
    // Abort speaks of the sync: stopped, checkpoint kept, same command resumes.
    let v = ctl_ok(&table, "abort", None).await;
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stops the sync; the checkpoint is kept; run the same command to resume"),
        "{v}"
    );
    assert!(
        !message.contains("helpers"),
        "migrate wording for a sync: {v}"
    );
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("sync did not end after ctl abort")
        .unwrap();
    assert!(!status.success(), "an aborted sync exits non-zero");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("aborted by the operator") && text.contains("checkpoint is kept"),
        "{text}"
    );
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let (streams, done) = sync_support::backfill_state(&mut t, &db, name).await;
    assert!(
        streams > 0 && !done,
        "checkpoint rows kept, backfill unfinished"
    );

    // The same command, released: resumes and completes.
    std::fs::remove_file(&flag).unwrap();
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, name, &mut child).await;
    stop_sync(child).await;
    assert!(
        rows(&src, &db).await == rows(&tgt, &db).await,
        "target differs from source"
    );
    let _ = std::fs::remove_file(&log);
}
