//! The ledger workload itself: it runs on both engines and its checker catches a lost write.

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::{Engine, TestServer};

async fn ledger_holds_and_catches_damage(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("ledger_{}", engine.name()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, 2_000)
        .await
        .unwrap();
    let count: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.orders"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 2_000);

    let load = LedgerLoad::start(&server.url(), &db, 2_000, 4, 7);
    load.wait_for_commits(300).await;
    let report = load.stop().await;
    assert!(report.committed >= 300, "{report:?}");

    let v = ledger::check_invariant(&mut conn, &db, "orders", 2_000)
        .await
        .unwrap();
    assert!(v.is_empty(), "ledger broken before any migration: {v:?}");

    // A lost write must be caught: change a counter behind the ledger's back.
    conn.query_drop(format!(
        "UPDATE `{db}`.orders SET counter = counter + 1 WHERE id = 5"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("DELETE FROM `{db}`.orders WHERE id = 6"))
        .await
        .unwrap();
    let v = ledger::check_invariant(&mut conn, &db, "orders", 2_000)
        .await
        .unwrap();
    assert_eq!(
        v.wrong_counter.iter().map(|w| w.0).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(v.missing, vec![6]);
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_on_mysql() {
    ledger_holds_and_catches_damage(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_on_mariadb() {
    ledger_holds_and_catches_damage(Engine::MariaDb).await;
}
