//! `rowshift sync --alter "ADD UNIQUE KEY …"` while the application swaps that column's values
//! between two rows in one transaction (row a takes b's value, then b takes a's: the source,
//! which has no such key, holds a duplicate only inside the transaction): an applier batch that
//! ends between the two changes collides on the target's new key and is held until the rest of
//! the transaction comes; the sync keeps running, stops cleanly in the middle of the swaps and
//! resumes, and promote finds the target equal to the source.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, TestServer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sync_support::{
    fresh_source_table, log_contains, log_len, promote, spawn_sync, stop_sync, table_t_args,
    wait_backfill,
};

const ROWS: u64 = 2_000;

/// One client's swaps until `stop`: rows a and b exchange `u` in one transaction.
async fn swapper(url: String, seed: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    let mut x = seed;
    while !stop.load(Ordering::Relaxed) {
        // xorshift: two distinct rows.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = x % ROWS + 1;
        let b = (x / ROWS) % ROWS + 1;
        if a == b {
            continue;
        }
        let swap = format!(
            "START TRANSACTION;
             SELECT u INTO @ua FROM t WHERE id = {a} FOR UPDATE;
             SELECT u INTO @ub FROM t WHERE id = {b} FOR UPDATE;
             UPDATE t SET u = @ub WHERE id = {a};
             UPDATE t SET u = @ua WHERE id = {b};
             COMMIT"
        );
        match c.query_drop(swap).await {
            Ok(()) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            // Two swappers locking the same rows the other way round.
            Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
                let _ = c.query_drop("ROLLBACK").await;
            }
            Err(e) => panic!("swap failed: {e}"),
        }
    }
}

async fn swaps_under_a_unique_key_the_sync_adds(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_unique_{}_{}", from.name(), to.name());
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 'u{i}', {i})")).collect();
    let mut s = fresh_source_table(
        &src,
        &tgt,
        &db,
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, u VARCHAR(20) NOT NULL, v INT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        &rows,
    )
    .await;
    let name = format!("uniq_{}_{}", from.name(), to.name());
    let args = table_t_args(
        &src.url(),
        &tgt,
        &db,
        &name,
        &["--alter", "ADD UNIQUE KEY uk_u (u)"],
    );
    let log = std::env::temp_dir().join(format!("rowshift-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, &name, &mut child).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4u64)
        .map(|i| {
            tokio::spawn(swapper(
                src.url_for_db(&db),
                0x9E37_79B9_7F4A_7C15 ^ (i + 1),
                stop.clone(),
                done.clone(),
            ))
        })
        .collect();
    // Swap until 1,500 transactions have committed (the sync applies them as they come), stop
    // the sync in the middle of the swaps (a clean stop, whatever batch it holds), start it
    // again from its checkpoint, and swap until 3,000.
    for (until, restart) in [(1_500, true), (3_000, false)] {
        while done.load(Ordering::Relaxed) < until {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sync stopped during the swaps: {status:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // Polling a counter the swapping tasks raise.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if restart {
            stop_sync(child).await;
            let from = log_len(&log);
            child = spawn_sync(&args, &log);
            log_contains(&log, from, "resuming from the checkpoints", &mut child).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    stop_sync(child).await;
    let (code, out, err) = promote(&args, &[]).await;
    assert_eq!(
        code,
        0,
        "promote did not say GO:\n{out}\n{err}\nsync log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The target holds the source's values, under its new unique key.
    let mut t = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    let want: Vec<(u64, String)> = s.query("SELECT id, u FROM t ORDER BY id").await.unwrap();
    let got: Vec<(u64, String)> = t.query("SELECT id, u FROM t ORDER BY id").await.unwrap();
    assert_eq!(got, want, "the target's rows differ from the source's");
    let keys: Vec<String> = t
        .query("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' AND NON_UNIQUE = 0")
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k == "uk_u"), "unique keys: {keys:?}");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_swaps_under_a_new_unique_key() {
    swaps_under_a_unique_key_the_sync_adds(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_swaps_under_a_new_unique_key() {
    swaps_under_a_unique_key_the_sync_adds(Engine::MariaDb, Engine::MySql).await;
}
