//! An ALTER that replaces the primary key (`DROP PRIMARY KEY, DROP INDEX code, ADD PRIMARY
//! KEY (code)`, run with `--skip-verify` as its preflight asks): a row the copy has not reached
//! yet takes a `code` a copied row gives up. Its event must be applied, not skipped as "the copy
//! will read it": the copy's insert of that row meets the copied row's old image in the shadow
//! (an applier has not deleted it yet), ignores the primary-key duplicate, and only the event
//! brings the row. Before the fix the router skipped it and the migrated table lost the row.
//!
//! Made deterministic: rowshift is killed mid-copy (a row lock holds the copy) and resumed with
//! a `copy-start` hook holding its copy, the one applier is held on a shadow row lock, the three
//! changes are made and read, then the copy runs, then the applier.

use mysql_async::prelude::Queryable;
use rowshift_testkit::{rowshift_bin, Engine, TestServer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const ROWS: u64 = 20_000;
/// The copy stops at this row's lock before the kill (its first chunk is 2,000 rows).
const HELD: u64 = 15_000;
/// The row that takes a copied row's value: above the resumed copy's watermark.
const TAKER: u64 = 18_000;
const ALTER: &str = "DROP PRIMARY KEY, DROP INDEX `code`, ADD PRIMARY KEY (`code`)";

fn spawn_migrate(
    url: &str,
    db: &str,
    flag: &std::path::Path,
    extra: &[&str],
) -> tokio::process::Child {
    tokio::process::Command::new(rowshift_bin())
        .args([
            "migrate",
            "--source",
            url,
            "--table",
            &format!("{db}.t"),
            "--alter",
            ALTER,
            "--skip-verify",
            "--appliers",
            "1",
            "--copy-workers",
            "1",
            "--chunk-time-ms",
            "20",
            "--status-interval",
            "100ms",
            "--execute",
            "--postpone-flag-file",
            &flag.display().to_string(),
        ])
        .args(extra)
        .env("ROWSHIFT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// What the status lines said last: events read, the phase, and the whole output.
type Status = (u64, String, String);

/// The status lines' "N events read" and "[phase]", as they come.
fn follow_status(child: &mut tokio::process::Child) -> tokio::sync::watch::Receiver<Status> {
    let (tx, rx) = tokio::sync::watch::channel((0, String::new(), String::new()));
    let stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
            let number_before = |word: &str| -> Option<u64> {
                let i = line.find(word)?;
                line[..i].split_whitespace().last()?.parse().ok()
            };
            let (mut events, mut phase, _) = tx.borrow().clone();
            if let Some(n) = number_before(" events read") {
                events = n;
            }
            if let Some(p) = line
                .strip_prefix('[')
                .and_then(|l| l.split_once(']'))
                .map(|(p, _)| p.trim().to_string())
            {
                phase = p;
            }
            tx.send_replace((events, phase, all.clone()));
        }
    });
    rx
}

/// Wait until `pred` holds for the status, with a deadline; panics with the output otherwise.
async fn wait_status(
    rx: &mut tokio::sync::watch::Receiver<Status>,
    what: &str,
    pred: impl Fn(u64, &str) -> bool,
) {
    let ok = {
        let wait = rx.wait_for(|(events, phase, _)| pred(*events, phase));
        matches!(
            tokio::time::timeout(Duration::from_secs(120), wait).await,
            Ok(Ok(_))
        )
    };
    assert!(ok, "never saw {what}; output:\n{}", rx.borrow().2);
}

async fn new_key_takes_a_copied_rows_value(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("new_key_{}", engine.name()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    conn.query_drop(
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, code VARCHAR(20) NOT NULL, v INT NOT NULL, UNIQUE KEY `code` (code)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 'c{i}', {i})")).collect();
    conn.query_drop(format!("INSERT INTO t VALUES {}", rows.join(",")))
        .await
        .unwrap();
    let url = server.url();
    let flag = std::env::temp_dir().join(format!(
        "rowshift-new-key-{}-{}.postpone",
        engine.name(),
        std::process::id()
    ));
    std::fs::write(&flag, b"").unwrap();

    // 1. Copy up to a row lock at id HELD, checkpoint a watermark of 500 or more, kill.
    let mut blocker = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    blocker
        .query_drop(format!(
            "START TRANSACTION; SELECT id FROM t WHERE id = {HELD} FOR UPDATE"
        ))
        .await
        .unwrap();
    let mut child = spawn_migrate(&url, &db, &flag, &[]);
    let mut status = follow_status(&mut child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while rowshift_testkit::copy_watermark(&mut conn, &db, "t")
        .await
        .is_none_or(|w| w < 500)
    {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("migrate exited ({s}):\n{}", status.borrow().2);
        }
        assert!(Instant::now() < deadline, "no copy watermark of 500");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    blocker.query_drop("ROLLBACK").await.unwrap();
    let upto = rowshift_testkit::copy_watermark(&mut conn, &db, "t")
        .await
        .unwrap();
    assert!((500..HELD).contains(&upto), "copy watermark {upto}");

    // 2. Resume with the copy held by a hook.
    let (dir, release) =
        rowshift_testkit::gated_copy_start_hook(&format!("new-key-{}", engine.name()));
    let hooks = dir.display().to_string();
    let mut child = spawn_migrate(
        &url,
        &db,
        &flag,
        &["--resume", "--hooks-dir", &hooks, "--hook-timeout", "300s"],
    );
    status = follow_status(&mut child);
    wait_status(&mut status, "the resumed run's status", |_, phase| {
        phase == "copy"
    })
    .await;

    // 3. The applier held on the shadow's row 'c3' (a shared lock, read committed: no gaps).
    let mut shadow_lock = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    shadow_lock
        .query_drop(
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION; SELECT code FROM `_t_new` WHERE code = 'c3' LOCK IN SHARE MODE",
        )
        .await
        .unwrap();
    // Row 3's change holds the applier (its batch waits on the lock: no later change joins
    // it); row 5 (copied) gives up 'c5'; row TAKER (not copied) takes it.
    conn.query_drop("UPDATE t SET v = v + 1 WHERE id = 3")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The applier's statement stays in the process list while it waits on the lock.
        let waiting: u64 = conn
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'REPLACE INTO %_t_new%'",
            )
            .await
            .unwrap()
            .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the applier never waited on the shadow lock; output:\n{}",
            status.borrow().2
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.query_drop("UPDATE t SET code = 'moved' WHERE id = 5")
        .await
        .unwrap();
    conn.query_drop(format!("UPDATE t SET code = 'c5' WHERE id = {TAKER}"))
        .await
        .unwrap();
    wait_status(&mut status, "the three changes read", |events, _| {
        events >= 3
    })
    .await;

    // 4. The copy runs past row TAKER while the applier waits, then the applier goes on.
    std::fs::write(&release, b"").unwrap();
    wait_status(&mut status, "the copy done", |_, phase| {
        !matches!(phase, "" | "preflight" | "copy")
    })
    .await;
    shadow_lock.query_drop("ROLLBACK").await.unwrap();
    std::fs::remove_file(&flag).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("migrate did not finish")
        .unwrap();
    assert!(done.success(), "migrate failed:\n{}", status.borrow().2);

    // The migrated table holds every row of the old one, row TAKER under 'c5'.
    let want: Vec<(u32, String, i32)> = conn
        .query("SELECT id, code, v FROM `_t_old` ORDER BY id")
        .await
        .unwrap();
    let got: Vec<(u32, String, i32)> = conn
        .query("SELECT id, code, v FROM t ORDER BY id")
        .await
        .unwrap();
    let moved: Option<u32> = conn
        .query_first("SELECT id FROM t WHERE code = 'c5'")
        .await
        .unwrap();
    assert_eq!(moved, Some(TAKER as u32), "row {TAKER} under its new code");
    assert_eq!(got.len(), want.len(), "row counts of t and _t_old");
    assert_eq!(got, want, "t differs from _t_old");
    let _ = std::fs::remove_dir_all(&dir);
}

rowshift_testkit::both_engines!(new_key_takes_a_copied_rows_value);
