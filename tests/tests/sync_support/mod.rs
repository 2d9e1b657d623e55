//! Shared helpers of the sync tests: the ledger tables on a source, `rowshift sync` as a child
//! process, promote, and the checks on the target.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{rowshift_bin, run_rowshift, TestServer};
use std::time::{Duration, Instant};
use tokio::process::Child;

/// Arguments of `sync` / `promote` for the ledger tables of `db` (orders transformed, the
/// ledger as is).
pub fn sync_args(src: &TestServer, tgt: &TestServer, db: &str, name: &str) -> Vec<String> {
    [
        "--source".to_string(),
        src.url(),
        "--target".to_string(),
        tgt.url(),
        "--table".to_string(),
        format!("{db}.orders"),
        "--table".to_string(),
        format!("{db}.orders_ledger"),
        "--alter".to_string(),
        ORDER_STATUS_ALTER.to_string(),
        "--set".to_string(),
        format!("order_status = {ORDER_STATUS_EXPR}"),
        "--name".to_string(),
        name.to_string(),
        "--chunk-rows".to_string(),
        "1000".to_string(),
    ]
    .into_iter()
    .collect()
}

/// Run `rowshift sync ARGS`, which must stop on its own within 120 s with exit code 2; its
/// error output.
pub async fn refused_sync(args: &[String]) -> String {
    let mut argv: Vec<&str> = vec!["sync"];
    argv.extend(args.iter().map(String::as_str));
    let (code, out, err) = tokio::time::timeout(Duration::from_secs(120), run_rowshift(&argv))
        .await
        .expect("a refused sync must stop on its own");
    assert_eq!(code, 2, "{out}\n{err}");
    err
}

/// Start `rowshift sync` with `args`; its stderr goes to `log`.
pub fn spawn_sync(args: &[String], log: &std::path::Path) -> Child {
    spawn_rowshift("sync", args, log)
}

/// Start `rowshift <command>` with `args`, logging at info level; its stderr goes to `log`.
pub fn spawn_rowshift(command: &str, args: &[String], log: &std::path::Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    tokio::process::Command::new(rowshift_bin())
        .arg(command)
        .args(args)
        .env("ROWSHIFT_LOG", "rowshift=info,warn")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The log's length now: [`log_contains`] looks only at what is written after it.
pub fn log_len(log: &std::path::Path) -> usize {
    std::fs::read(log).map_or(0, |b| b.len())
}

/// Wait until the log says `needle` after its first `from` bytes: a line an earlier retry
/// (a deadlock during the backfill, say) wrote must not count for the fault made after.
pub async fn log_contains(
    log: &std::path::Path,
    from: usize,
    needle: &str,
    child: &mut tokio::process::Child,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        if text
            .get(from..)
            .is_some_and(|new| String::from_utf8_lossy(new).contains(needle))
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("rowshift ended: {status:?} (log {})", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {needle:?} ({})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM and wait: a clean stop exits 0.
pub async fn stop_sync(mut child: Child) {
    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("sync did not stop within 120 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "sync exited with {status:?} on SIGTERM");
}

/// Backfill progress of every stream of sync `name` on the target: (rows, all done).
pub async fn backfill_state(tgt: &mut mysql_async::Conn, db: &str, name: &str) -> (u64, bool) {
    let rows: Vec<(u64, u64)> = tgt
        .query(format!(
            "SELECT COUNT(*), COALESCE(SUM(backfill_done = 0), 0) FROM `{db}`.`_rowshift_sync_ckpt` WHERE stream LIKE '{name}:%'"
        ))
        .await
        .unwrap_or_default();
    match rows.first() {
        Some((n, not_done)) => (*n, *n > 0 && *not_done == 0),
        None => (0, false),
    }
}

/// Wait (polling, with a deadline) until the backfill of sync `name` is done.
pub async fn wait_backfill(tgt: &TestServer, db: &str, name: &str, child: &mut Child) {
    let mut conn = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if backfill_state(&mut conn, db, name).await.1 {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sync ended during the backfill: {status:?}");
        }
        assert!(Instant::now() < deadline, "backfill not done within 300 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The arguments of `rowshift promote` for a sync with `args` (writes have stopped).
pub fn promote_args(args: &[String], extra: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.extend(["--quiet-secs", "1", "--timeout-secs", "300"].map(String::from));
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

/// Run `rowshift promote` (writes have stopped) and return (exit code, stdout, stderr).
pub async fn promote(args: &[String], extra: &[&str]) -> (i32, String, String) {
    let mut all = vec!["promote".to_string()];
    all.extend(promote_args(args, extra));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run_rowshift(&all).await
}

/// Stop the sync, run `promote` and require GO; returns promote's stdout.
pub async fn stop_and_promote(child: Child, args: &[String], log: &std::path::Path) -> String {
    stop_sync(child).await;
    let (code, out, err) = promote(args, &[]).await;
    assert_eq!(
        code,
        0,
        "promote did not say GO:\n{out}\n{err}\nsync log: {}",
        log.display()
    );
    out
}

/// The ledger invariant and the transformed column hold on the target.
pub async fn assert_target_correct(tgt: &TestServer, db: &str, rows: u64) {
    let mut conn = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let v = ledger::check_invariant(&mut conn, db, "orders", rows)
        .await
        .unwrap();
    assert!(v.is_empty(), "ledger invariant broken on the target: {v:?}");
    let wrong = ledger::wrong_order_status(&mut conn, db, "orders")
        .await
        .unwrap();
    assert_eq!(
        wrong, 0,
        "rows whose order_status differs from the expression"
    );
    let n: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.`orders_ledger`"))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "the ledger reached the target");
}

/// Same rows on both sides (count and checksum of the shared columns).
pub async fn assert_same_counts(src: &TestServer, tgt: &TestServer, db: &str) {
    let mut s = mysql_async::Conn::from_url(src.url()).await.unwrap();
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    for table in ["orders", "orders_ledger"] {
        let q = format!("SELECT COUNT(*) FROM `{db}`.`{table}`");
        let a: u64 = s.query_first(&q).await.unwrap().unwrap();
        let b: u64 = t.query_first(&q).await.unwrap().unwrap();
        assert_eq!(a, b, "row counts of {table}");
    }
}

/// Fresh `db` on both servers, `create` run in it on the source, then one INSERT of `values`
/// (`(…)` tuples) into `t`; returns the source connection (its default database `db`).
pub async fn fresh_source_table(
    src: &TestServer,
    tgt: &TestServer,
    db: &str,
    create: &str,
    values: &[String],
) -> mysql_async::Conn {
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(db).await.unwrap();
    let mut s = mysql_async::Conn::from_url(src.url_for_db(db))
        .await
        .unwrap();
    s.query_drop(create).await.unwrap();
    s.query_drop(format!("INSERT INTO t VALUES {}", values.join(",")))
        .await
        .unwrap();
    s
}

/// `sync` arguments for table `db`.t from `source_url` into `tgt` under `name`, then `extra`.
pub fn table_t_args(
    source_url: &str,
    tgt: &TestServer,
    db: &str,
    name: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = [
        "--source",
        source_url,
        "--target",
        &tgt.url(),
        "--table",
        &format!("{db}.t"),
        "--name",
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}
