//! migrate survives crashes (issue 8): SIGKILLed at seeded random moments over the copy,
//! catch-up, verification and the postponed cut-over, then resumed each time, while the ledger
//! load runs. Finished copy ranges are not copied again, and at the end no write is lost or
//! doubled. Also: a checkpoint whose binlog file was purged is refused without any change.

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use rowshift_testkit::ledger::{self, LedgerLoad, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{rowshift_bin, run_rowshift, Engine, ServerOptions, TestServer};
use std::time::Duration;

const ROWS: u64 = 60_000;
const KILLS: usize = 10;

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

fn migrate_args(url: &str, table: &str, set: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "migrate",
        "--source",
        url,
        "--table",
        table,
        "--alter",
        ORDER_STATUS_ALTER,
        "--set",
        set,
        "--chunk-time-ms",
        "50",
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

/// What an ended child printed (its output is small: warnings only). Kept piped so that a run
/// that ends too early says why.
async fn output_of(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text).await;
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text).await;
    }
    text
}

async fn killed_and_resumed(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("faults_{}", engine.name()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();
    let load = LedgerLoad::start(&server.url(), &db, ROWS, 4, 11);
    load.wait_for_commits(100).await;

    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let table = format!("{db}.orders");
    let flag = std::env::temp_dir().join(format!(
        "rowshift-faults-{}-{}.postpone",
        engine.name(),
        std::process::id()
    ));
    let flag_s = flag.display().to_string();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(20261124);
    let mut kills = 0;
    let mut phases_seen = Vec::new();
    while kills < KILLS {
        let mut extra = vec!["--postpone-flag-file", flag_s.as_str()];
        if table_exists(&mut conn, &db, "_orders_ckpt").await {
            extra.push("--resume");
        } else {
            extra.push("--drop-leftovers");
        }
        let args = migrate_args(&server.url(), &table, &set, &extra);
        let mut child = tokio::process::Command::new(rowshift_bin())
            .args(&args)
            .env("ROWSHIFT_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rng.random_range(200..3_000));
        if kills == 0 {
            // The first kill lands in the copy for sure: as soon as the run's checkpoint
            // exists (it is written before the copy starts), whatever the machine's speed.
            loop {
                let phase: Option<String> = conn
                    .query_first(format!(
                        "SELECT phase FROM `{db}`.`_orders_ckpt` WHERE id = 1"
                    ))
                    .await
                    .ok()
                    .flatten();
                if phase.as_deref() == Some("copy") {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "migrate ended before its first kill: {status:?}\n{}",
                        output_of(&mut child).await
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else if kills >= KILLS / 2 && !phases_seen.iter().any(|p| p != "copy" && p != "none") {
            // On a loaded machine the random delays can all land in the copy: from half-way
            // on, wait (polling the checkpoint) until this run is past its copy, then kill.
            loop {
                let phase: Option<String> = conn
                    .query_first(format!(
                        "SELECT phase FROM `{db}`.`_orders_ckpt` WHERE id = 1"
                    ))
                    .await
                    .ok()
                    .flatten();
                if phase.as_deref().is_some_and(|p| p != "copy") {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "migrate ended before its kill after the copy: {status:?}\n{}",
                        output_of(&mut child).await
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            let ended = tokio::select! {
                status = child.wait() => Some(status),
                _ = tokio::time::sleep(delay) => None,
            };
            if let Some(status) = ended {
                panic!(
                    "migrate ended before its kill (postponed cut-over): {status:?}\n{}",
                    output_of(&mut child).await
                );
            }
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        let phase: Option<String> = conn
            .query_first(format!(
                "SELECT phase FROM `{db}`.`_orders_ckpt` WHERE id = 1"
            ))
            .await
            .ok()
            .flatten();
        phases_seen.push(phase.unwrap_or_else(|| "none".into()));
    }
    // A run without --resume must refuse and say what to do.
    if table_exists(&mut conn, &db, "_orders_ckpt").await {
        let (code, _out, err) = run_rowshift(
            &migrate_args(&server.url(), &table, &set, &[])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_ne!(code, 0);
        assert!(
            err.contains("resumable migration") && err.contains("--resume"),
            "{err}"
        );
    }
    // Let it finish.
    let _ = std::fs::remove_file(&flag);
    let args = migrate_args(&server.url(), &table, &set, &["--resume"]);
    let (code, out, err) = run_rowshift(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(
        code, 0,
        "final resume failed after kills in phases {phases_seen:?}\n{out}\n{err}"
    );
    load.wait_for_commits(100).await;
    let report = load.stop().await;
    assert!(report.committed > 0);

    let v = ledger::check_invariant(&mut conn, &db, "orders", ROWS)
        .await
        .unwrap();
    assert!(
        v.is_empty(),
        "ledger broken after {kills} kills ({phases_seen:?}): {v:?}"
    );
    assert_eq!(
        ledger::wrong_order_status(&mut conn, &db, "orders")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ledger::missing_indexes(&mut conn, &db, "orders")
            .await
            .unwrap(),
        Vec::<&str>::new(),
        "indexes missing after {kills} kills ({phases_seen:?})"
    );
    // Copied rows over all runs: finished ranges were not copied again.
    let copied: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("migrated: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no copy count in {out}"));
    let table_rows: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.`_orders_old`"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        copied < table_rows + table_rows / 2,
        "{copied} rows copied over {kills} runs for a table of {table_rows}: finished ranges were copied again"
    );
    assert!(
        phases_seen.iter().any(|p| p == "copy"),
        "no kill during the copy: {phases_seen:?}"
    );
    assert!(
        phases_seen.iter().any(|p| p != "copy" && p != "none"),
        "no kill after the copy: {phases_seen:?}"
    );
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_resumed_mysql() {
    killed_and_resumed(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_resumed_mariadb() {
    killed_and_resumed(Engine::MariaDb).await;
}

/// A migration killed (SIGKILL) during its catch-up or verification on a dedicated server,
/// with what a refused resume must leave unchanged.
struct Killed {
    server: TestServer,
    db: String,
    conn: mysql_async::Conn,
    table: String,
    set: String,
    tables_before: Vec<String>,
    ckpt_file: String,
}

async fn tables_of(conn: &mut mysql_async::Conn, db: &str) -> Vec<String> {
    conn.query(format!(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' ORDER BY 1"
    ))
    .await
    .unwrap()
}

async fn killed_migration(engine: Engine, name: &str) -> Killed {
    let server = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let db = server.fresh_db(name).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, 20_000)
        .await
        .unwrap();
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let table = format!("{db}.orders");
    let flag = server.dir().join("postpone");
    let flag_s = flag.display().to_string();
    let args = migrate_args(
        &server.url(),
        &table,
        &set,
        &["--postpone-flag-file", &flag_s],
    );
    let mut child = tokio::process::Command::new(rowshift_bin())
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the migration is past its copy (the checkpoint says so), then kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let phase: Option<String> = conn
            .query_first(format!(
                "SELECT phase FROM `{db}`.`_orders_ckpt` WHERE id = 1"
            ))
            .await
            .ok()
            .flatten();
        if phase.as_deref() == Some("verify") || phase.as_deref() == Some("catch-up") {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("migrate ended before its kill after the copy: {status:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint never showed the catch-up or verification; last phase {phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let tables_before = tables_of(&mut conn, &db).await;
    let ckpt_file: String = conn
        .query_first(format!(
            "SELECT file FROM `{db}`.`_orders_ckpt` WHERE id = 1"
        ))
        .await
        .unwrap()
        .unwrap();
    Killed {
        server,
        db,
        conn,
        table,
        set,
        tables_before,
        ckpt_file,
    }
}

/// `--resume` refuses with an error containing every one of `says` and changes nothing;
/// then `--abort` cleans up and leaves the table alone.
async fn resume_is_refused(mut k: Killed, says: &[&str]) {
    let args = migrate_args(&k.server.url(), &k.table, &k.set, &["--resume"]);
    let (code, _out, err) =
        run_rowshift(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_ne!(code, 0);
    for s in says {
        assert!(err.contains(s), "the error does not say {s:?}:\n{err}");
    }
    assert_eq!(tables_of(&mut k.conn, &k.db).await, k.tables_before);
    let count: Option<u64> = k
        .conn
        .query_first(format!("SELECT COUNT(*) FROM `{}`.orders", k.db))
        .await
        .unwrap();
    assert_eq!(count, Some(20_000));
    // --abort cleans up and leaves the table alone.
    let (code, out, err) = run_rowshift(&[
        "migrate",
        "--source",
        &k.server.url(),
        "--table",
        &k.table,
        "--alter",
        ORDER_STATUS_ALTER,
        "--set",
        &k.set,
        "--abort",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("aborted: dropped"), "{out}");
    assert!(!table_exists(&mut k.conn, &k.db, "_orders_new").await);
    assert!(!table_exists(&mut k.conn, &k.db, "_orders_ckpt").await);
    assert!(table_exists(&mut k.conn, &k.db, "orders").await);
    k.conn.disconnect().await.unwrap();
}

/// The checkpoint's binlog file is purged: the resume refuses and changes nothing.
async fn purged_binlog_is_refused(engine: Engine) {
    let mut k = killed_migration(engine, "purged").await;
    let conn = &mut k.conn;
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    // MariaDB keeps a file until its binlog checkpoint is written: purge until it is gone.
    for attempt in 0.. {
        let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
        let names: Vec<String> = logs.iter().filter_map(|r| r.get(0)).collect();
        if !names.contains(&k.ckpt_file) {
            break;
        }
        assert!(
            attempt < 500,
            "{} could not be purged: {names:?}",
            k.ckpt_file
        );
        let last = names.last().cloned().unwrap();
        conn.query_drop(format!("PURGE BINARY LOGS TO '{last}'"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    resume_is_refused(k, &["has been purged", "--abort"]).await;
}

/// The table was altered while rowshift was down: the shadow was built from the old
/// definition, so the resume refuses and changes nothing.
async fn altered_table_is_refused(engine: Engine) {
    let mut k = killed_migration(engine, "altered").await;
    k.conn
        .query_drop(format!(
            "ALTER TABLE `{}`.orders ADD COLUMN `added_meanwhile` INT NULL",
            k.db
        ))
        .await
        .unwrap();
    resume_is_refused(
        k,
        &[
            "definition of the table changed",
            "added_meanwhile",
            "--abort",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_table_is_refused_mysql() {
    altered_table_is_refused(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_table_is_refused_mariadb() {
    altered_table_is_refused(Engine::MariaDb).await;
}

/// `--resume` with another `--set` than the run it continues: refused, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_options_are_refused_mariadb() {
    let mut k = killed_migration(Engine::MariaDb, "options").await;
    k.set = "order_status = 'other'".into();
    resume_is_refused(k, &["started with other options", "--abort"]).await;
}

/// MySQL with GTIDs: the server no longer holds the checkpoint's transactions (as after a
/// failover to a server restored without them; made here with `RESET BINARY LOGS AND GTIDS`,
/// which empties `gtid_executed` and starts the binlog anew): the resume refuses and changes
/// nothing, whatever the binlog files are called now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtids_missing_after_a_failover_are_refused_mysql() {
    let mut k = killed_migration(Engine::MySql, "gtid_gone").await;
    k.conn
        .query_drop("RESET BINARY LOGS AND GTIDS")
        .await
        .unwrap();
    resume_is_refused(
        k,
        &["not contained in this server's gtid_executed", "--abort"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlog_is_refused_mysql() {
    purged_binlog_is_refused(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlog_is_refused_mariadb() {
    purged_binlog_is_refused(Engine::MariaDb).await;
}
