//! Cut-over under many concurrent writers, on both engines: no write issued while the table is
//! locked may land in the old table (the window that lost acknowledged commits in gh-ost's
//! two-connection cut-over on MariaDB), writers never see a missing table, and the stall is
//! short.

use mysql_async::prelude::Queryable;
use rowshift_engine::conn::Endpoint;
use rowshift_engine::cutover::{cut_over, CutoverConfig};
use rowshift_testkit::{Engine, TestServer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const WRITERS: usize = 16;
const ROUNDS: usize = 8;

/// A fresh database `<name>_<engine>` on the shared server with `t (id, w)`, and a connection.
async fn table_t(engine: Engine, name: &str) -> (Arc<TestServer>, String, mysql_async::Conn) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("{name}_{}", engine.name()))
        .await
        .unwrap();
    let mut admin = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    admin
        .query_drop("CREATE TABLE t (id BIGINT PRIMARY KEY, w INT NOT NULL)")
        .await
        .unwrap();
    (server, db, admin)
}

/// Writers inserting rows with increasing ids into `t` until `stop`; each task returns the
/// ids whose insert was acknowledged. A writer that sees an error panics.
struct Writers {
    next_id: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>,
}

impl Writers {
    async fn start(url: &str, n: usize) -> Writers {
        let next_id = Arc::new(AtomicU64::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..n {
            let url = url.to_string();
            let (next_id, stop, errors) = (next_id.clone(), stop.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
                let mut committed = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    match conn
                        .exec_drop("INSERT INTO t (id, w) VALUES (?, ?)", (id, w))
                        .await
                    {
                        Ok(()) => committed.push(id),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            panic!("writer saw an error during cut-over: {e}");
                        }
                    }
                }
                committed
            }));
        }
        Writers {
            next_id,
            stop,
            errors,
            tasks,
        }
    }
}

async fn cutover_never_lets_a_queued_write_into_the_old_table(engine: Engine) {
    let (server, db, mut admin) = table_t(engine, "cutover").await;
    let w = Writers::start(&server.url_for_db(&db), WRITERS).await;
    let (next_id, stop, errors) = (w.next_id.clone(), w.stop.clone(), w.errors.clone());
    let writers = w.tasks;

    let endpoint = Endpoint::new(&server.url()).unwrap();
    let config = CutoverConfig::default();
    let mut worst = std::time::Duration::ZERO;
    for round in 0..ROUNDS {
        admin
            .query_drop("DROP TABLE IF EXISTS _t_old")
            .await
            .unwrap();
        admin
            .query_drop("CREATE TABLE _t_new LIKE t")
            .await
            .unwrap();
        // Let the writers run against this round's table first.
        let before = next_id.load(Ordering::SeqCst);
        while next_id.load(Ordering::SeqCst) < before + 200 {
            tokio::task::yield_now().await;
        }
        let issued_at_lock = Arc::new(AtomicU64::new(0));
        let seen = issued_at_lock.clone();
        let counter = next_id.clone();
        let report = cut_over(&endpoint, &db, "t", &config, move |_token| {
            // Called while `t` is locked: ids taken from now on were issued under the lock.
            seen.store(counter.load(Ordering::SeqCst), Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        worst = worst.max(report.lock_time);
        let c = issued_at_lock.load(Ordering::SeqCst);
        let leaked: Option<u64> = admin
            .exec_first("SELECT MAX(id) FROM _t_old WHERE id >= ?", (c,))
            .await
            .unwrap()
            .flatten();
        assert_eq!(
            leaked, None,
            "round {round}: a write issued under the lock landed in the old table"
        );
        let tables: Vec<String> = admin.query("SHOW TABLES").await.unwrap();
        assert!(
            tables.contains(&"t".to_string()) && tables.contains(&"_t_old".to_string()),
            "{tables:?}"
        );
        assert!(
            !tables
                .iter()
                .any(|t| t.contains("sentry") || t.contains("trip")),
            "{tables:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let mut committed = Vec::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    // Every acknowledged insert is in the current table or in the round's old table... except
    // rows of earlier rounds' old tables, which were dropped: check the last round's ones.
    let in_t: u64 = admin
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert!(in_t > 0);
    assert!(
        worst < std::time::Duration::from_secs(2),
        "lock held {worst:?}"
    );
    admin.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_under_writers_mysql() {
    cutover_never_lets_a_queued_write_into_the_old_table(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_under_writers_mariadb() {
    cutover_never_lets_a_queued_write_into_the_old_table(Engine::MariaDb).await;
}

/// A session holds a shared metadata lock on the shadow `_t_new` when the cut-over runs (as
/// InnoDB's purge or statistics threads do for a moment, or anyone's query or open
/// transaction): B's RENAME then waits on `_t_new` with no request on `t` yet, and its
/// processlist state is the same as when it waits on `t`. Releasing `t` then lets the queued
/// writes into the old table. The cut-over must not release `t` until B holds `_t_new`: the
/// first attempt gives up, and the next one, after the holder let go, succeeds.
async fn cutover_waits_while_the_shadow_is_held(engine: Engine) {
    let (server, db, mut admin) = table_t(engine, "cutover_held").await;
    let url = server.url_for_db(&db);
    admin
        .query_drop("CREATE TABLE _t_new LIKE t")
        .await
        .unwrap();
    let w = Writers::start(&url, 4).await;
    let (next_id, stop, writers) = (w.next_id.clone(), w.stop.clone(), w.tasks);
    while next_id.load(Ordering::SeqCst) < 200 {
        tokio::task::yield_now().await;
    }
    // The holder: an open transaction that read `_t_new`.
    let mut holder = mysql_async::Conn::from_url(url.clone()).await.unwrap();
    holder
        .query_drop("BEGIN; SELECT * FROM _t_new LIMIT 1")
        .await
        .unwrap();
    // It lets go once a second attempt locked `t` (the first one must give up), or once the
    // sentry is gone after a first attempt (the first attempt released `t`: the bug).
    let drains = Arc::new(AtomicU64::new(0));
    let release = {
        let (drains, db, mut watcher) = (
            drains.clone(),
            db.clone(),
            mysql_async::Conn::from_url(url.clone()).await.unwrap(),
        );
        tokio::spawn(async move {
            loop {
                let n = drains.load(Ordering::SeqCst);
                let sentry: u64 = watcher
                    .exec_first(
                        "SELECT COUNT(*) FROM information_schema.TABLES \
                         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't_rs_sentry'",
                        (&db,),
                    )
                    .await
                    .unwrap()
                    .unwrap();
                if n >= 2 || (n == 1 && sentry == 0) {
                    holder.query_drop("COMMIT").await.unwrap();
                    return n;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let issued_at_lock = Arc::new(AtomicU64::new(0));
    let (seen, counter, calls) = (issued_at_lock.clone(), next_id.clone(), drains.clone());
    let config = CutoverConfig {
        lock_wait: std::time::Duration::from_secs(1),
        ..CutoverConfig::default()
    };
    let endpoint = Endpoint::new(&server.url()).unwrap();
    let report = cut_over(&endpoint, &db, "t", &config, move |_token| {
        // Called while `t` is locked, once per attempt.
        seen.store(counter.load(Ordering::SeqCst), Ordering::SeqCst);
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), String>(()) }
    })
    .await
    .unwrap();
    let released_after = release.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let c = issued_at_lock.load(Ordering::SeqCst);
    let leaked: u64 = admin
        .exec_first("SELECT COUNT(*) FROM _t_old WHERE id >= ?", (c,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        leaked, 0,
        "{leaked} writes issued under the lock landed in the old table (holder released after \
         {released_after} attempt(s))"
    );
    assert!(
        report.attempts >= 2,
        "the attempt made while `_t_new` was held cannot have succeeded safely: {report:?}"
    );
    let in_t: u64 = admin
        .query_first("SELECT COUNT(*) FROM t WHERE id >= ?".replace('?', &c.to_string()))
        .await
        .unwrap()
        .unwrap();
    assert!(in_t > 0, "writes went on into the new table");
    admin.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_waits_while_the_shadow_is_held_mysql() {
    cutover_waits_while_the_shadow_is_held(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_waits_while_the_shadow_is_held_mariadb() {
    cutover_waits_while_the_shadow_is_held(Engine::MariaDb).await;
}
