//! A migration interrupted mid-copy on a MySQL primary is resumed on its replica after a
//! failover (the replica promoted, the application writing to it). The checkpoint and the
//! shadow came over with replication, but the checkpoint's binlog file and offset name the old
//! primary's bytes: the resumed stream must start from the checkpoint's GTID set in the new
//! primary's own binlog. (Before the fix it started at the old file offset, which the replica
//! does not hold at that place.) The verification before the cut-over then finds the shadow
//! equal to the table, changes made on the new primary included.
//!
//! On MariaDB the same: the GTID state at the checkpoint's offset on the new primary is not
//! the checkpoint's (the replica's binlog holds the transactions at other offsets), so the
//! resumed stream starts from the checkpoint's GTID list. (Before, that resume was refused.)

use mysql_async::prelude::Queryable;
use rowshift_testkit::{rowshift_bin, Engine, ServerOptions, TestServer};
use std::time::{Duration, Instant};

const ROWS: u64 = 20_000;

fn migrate_args(url: &str, db: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "migrate",
        "--source",
        url,
        "--table",
        &format!("{db}.t"),
        "--alter",
        "ADD COLUMN w INT NOT NULL DEFAULT 7",
        "--copy-workers",
        "1",
        "--execute",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `migrate --resume` of `db`.t on `url`, which must verify GO and cut over.
async fn resume_to_go(url: &str, db: &str) {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(rowshift_bin())
            .args(migrate_args(url, db, &["--resume"]))
            .env("ROWSHIFT_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the resumed migrate did not finish")
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("rowshift verify: GO"), "{stdout}\n{stderr}");
}

async fn resumed_on_the_promoted_replica(engine: Engine) {
    let primary = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let replica = TestServer::replica_of(&primary).await.unwrap();
    let db = "failover";
    // The replica's binlog rotates on its own schedule (here at once): its files and offsets
    // are not the primary's. (Replicating from the primary's first file with no rotation of
    // its own, it would write the same events at the same offsets of the same file names.)
    let mut r = mysql_async::Conn::from_url(replica.url()).await.unwrap();
    r.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let mut p = mysql_async::Conn::from_url(primary.url()).await.unwrap();
    p.query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    p.query_drop(format!(
        "CREATE TABLE `{db}`.t (id INT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, {i})")).collect();
    p.query_drop(format!("INSERT INTO `{db}`.t VALUES {}", rows.join(",")))
        .await
        .unwrap();

    // The copy stops at a row lock; once the checkpoint holds a watermark, rowshift is killed.
    let mut blocker = mysql_async::Conn::from_url(primary.url()).await.unwrap();
    blocker
        .query_drop(format!(
            "START TRANSACTION; SELECT id FROM `{db}`.t WHERE id = 15000 FOR UPDATE"
        ))
        .await
        .unwrap();
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args(migrate_args(&primary.url(), db, &[]))
        .env("ROWSHIFT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while rowshift_testkit::copy_watermark(&mut p, db, "t")
        .await
        .is_none_or(|w| w < 500)
    {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("migrate exited before its checkpoint held a watermark ({s})");
        }
        assert!(Instant::now() < deadline, "no copy watermark");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    blocker.query_drop("ROLLBACK").await.unwrap();
    // More changes on the old primary after the checkpoint, then the replica catches up.
    p.query_drop(format!(
        "UPDATE `{db}`.t SET v = v + 1000 WHERE id BETWEEN 1 AND 50"
    ))
    .await
    .unwrap();
    let (executed, wait) = match engine {
        Engine::MySql => (
            "SELECT @@GLOBAL.gtid_executed",
            "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 120)",
        ),
        Engine::MariaDb => (
            "SELECT @@GLOBAL.gtid_binlog_pos",
            "SELECT MASTER_GTID_WAIT(?, 120)",
        ),
    };
    let executed: String = p.query_first(executed).await.unwrap().unwrap();
    let waited: Option<i64> = r.exec_first(wait, (executed,)).await.unwrap();
    assert_eq!(waited, Some(0), "the replica did not catch up");

    // Failover: the replica becomes the primary and the application writes to it.
    r.query_drop("STOP REPLICA").await.unwrap();
    r.query_drop("RESET REPLICA ALL").await.unwrap();
    drop(primary);
    r.query_drop(format!(
        "UPDATE `{db}`.t SET v = v + 2000 WHERE id BETWEEN 40 AND 90"
    ))
    .await
    .unwrap();
    r.query_drop(format!("INSERT INTO `{db}`.t VALUES (30000, 1)"))
        .await
        .unwrap();

    resume_to_go(&replica.url(), db).await;
    let want: Vec<(u32, i32)> = r
        .query(format!("SELECT id, v FROM `{db}`.`_t_old` ORDER BY id"))
        .await
        .unwrap();
    let got: Vec<(u32, i32)> = r
        .query(format!("SELECT id, v FROM `{db}`.t ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(got.len() as u64, ROWS + 1);
    assert_eq!(got, want, "the migrated table differs from the old one");
    let v: Option<i32> = r
        .query_first(format!("SELECT v FROM `{db}`.t WHERE id = 45"))
        .await
        .unwrap();
    assert_eq!(v, Some(45 + 3000), "both primaries' changes to row 45");
}

rowshift_testkit::both_engines!(resumed_on_the_promoted_replica);

/// MySQL reads `gtid_executed` before the binlog position, and a transaction already written
/// to the binlog joins `gtid_executed` only when it commits. With a group-commit delay
/// (`binlog_group_commit_sync_delay`, 0.2 s between the binlog write and the commit) a writer
/// updating one row is almost always in that window when the migration takes its start
/// position: the set lacks that update. A stream started at the offset never saw it, every
/// checkpoint's set lacked it, and a `--resume` from the set replayed it over the row's newer
/// updates (before the fix the resumed verification said NO-GO on that row). Started from the
/// set, the stream sees it and the checkpoints' sets are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_after_a_commit_in_flight_at_the_start() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let server = TestServer::dedicated(
        Engine::MySql,
        ServerOptions {
            extra_args: vec!["--binlog-group-commit-sync-delay=200000".into()],
        },
    )
    .unwrap();
    let db = "inflight";
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    c.query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    c.query_drop(format!(
        "CREATE TABLE `{db}`.t (id INT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    let rows: Vec<String> = (1..=1000).map(|i| format!("({i}, 0)")).collect();
    c.query_drop(format!("INSERT INTO `{db}`.t VALUES {}", rows.join(",")))
        .await
        .unwrap();

    // The writer: one row, one update after the other.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, commits, url) = (stop.clone(), commits.clone(), server.url());
        tokio::spawn(async move {
            let mut w = mysql_async::Conn::from_url(url).await.unwrap();
            while !stop.load(Ordering::SeqCst) {
                w.query_drop(format!("UPDATE `{db}`.t SET v = v + 1 WHERE id = 1"))
                    .await
                    .unwrap();
                commits.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the writer does not commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The migration starts while the writer runs and is held before its cut-over.
    let flag =
        std::env::temp_dir().join(format!("rowshift-inflight-{}.postpone", std::process::id()));
    let flag_arg = flag.display().to_string();
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args(migrate_args(
            &server.url(),
            db,
            &["--postpone-flag-file", &flag_arg],
        ))
        .env("ROWSHIFT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ckpt = |what: &str| format!("SELECT {what} FROM `{db}`.`_t_ckpt` WHERE id = 1");
    loop {
        let phase: Option<String> = c.query_first(ckpt("phase")).await.unwrap_or(None);
        // Copied and caught up (the checkpoint has no phase of its own for the postponement).
        if phase.as_deref() == Some("verify") {
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("migrate exited before its cut-over ({s})");
        }
        assert!(
            Instant::now() < deadline,
            "the migration never reached its cut-over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writer stops; the checkpoint passes its last update; then rowshift is killed.
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let row: mysql_async::Row = c
        .query_first("SHOW BINARY LOG STATUS")
        .await
        .unwrap()
        .unwrap();
    let end: (String, u64) = (row.get(0).unwrap(), row.get(1).unwrap());
    loop {
        let at: Option<(String, u64)> = c.query_first(ckpt("file, file_offset")).await.unwrap();
        if at.as_ref().is_some_and(|at| *at >= end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint never passed {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(&flag);

    resume_to_go(&server.url(), db).await;
    let v: Option<u64> = c
        .query_first(format!("SELECT v FROM `{db}`.t WHERE id = 1"))
        .await
        .unwrap();
    assert_eq!(v, Some(commits.load(Ordering::SeqCst)));
}
