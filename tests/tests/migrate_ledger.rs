//! The seed's job under load, on both engines: while the ledger load runs, `rowshift migrate`
//! adds `order_status` filled by an expression plus an index, and cuts over. Afterwards every
//! acknowledged write is there exactly once, the new column holds the expression's value for
//! every row, the index exists and the old table is kept.

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{run_rowshift, Engine, TestServer};

const ROWS: u64 = 120_000;

async fn migrate_under_ledger_load(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("migrate_ledger_{}", engine.name()))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();

    let load = LedgerLoad::start(&server.url(), &db, ROWS, 4, 42);
    load.wait_for_commits(200).await;
    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let table = format!("{db}.orders");
    let (code, out, err) = run_rowshift(&[
        "migrate",
        "--source",
        &server.url(),
        "--table",
        &table,
        "--alter",
        ORDER_STATUS_ALTER,
        "--set",
        &set,
        "--chunk-time-ms",
        "100",
        "--execute",
    ])
    .await;
    assert_eq!(code, 0, "migrate failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("cut-over: began") && out.contains("table locked"),
        "{out}"
    );
    // However short the cut-over, the phase summary lists it (a display sample can miss it).
    assert!(
        out.lines()
            .any(|l| l.starts_with("phases:") && l.contains("cut-over ")),
        "{out}"
    );
    assert!(
        out.contains("verification before cut-over") && out.contains("GO"),
        "{out}"
    );
    // The default pace saw the application writing the table and yielded to it.
    assert!(
        out.lines().any(|l| l.starts_with("pace: gentle for")),
        "{out}\n{err}"
    );
    // The application keeps writing to the new table after the cut-over.
    load.wait_for_commits(200).await;
    let report = load.stop().await;
    assert!(report.committed > 400, "{report:?}");

    let v = ledger::check_invariant(&mut conn, &db, "orders", ROWS)
        .await
        .unwrap();
    assert!(
        v.is_empty(),
        "ledger broken by the migration: {v:?}\n{out}\n{err}"
    );
    let wrong: Vec<(u64, i32, Option<String>)> = conn
        .query(format!(
            "SELECT id, status_code, order_status FROM `{db}`.orders WHERE NOT (order_status <=> ({ORDER_STATUS_EXPR})) LIMIT 10"
        ))
        .await
        .unwrap();
    assert!(
        wrong.is_empty(),
        "rows whose order_status is not the expression's value: {wrong:?}"
    );
    assert_eq!(
        ledger::wrong_order_status(&mut conn, &db, "orders")
            .await
            .unwrap(),
        0
    );
    let index: Option<String> = conn
        .exec_first(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders' AND INDEX_NAME = 'idx_order_status' LIMIT 1",
            (&db,),
        )
        .await
        .unwrap();
    assert_eq!(index.as_deref(), Some("idx_order_status"));
    let old_rows: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.`_orders_old`"))
        .await
        .unwrap();
    assert!(
        old_rows.unwrap_or(0) >= ROWS,
        "old table kept with its rows"
    );
    let helpers: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE '%orders\\_%' AND TABLE_NAME NOT IN ('orders_ledger', '_orders_old')",
            (&db,),
        )
        .await
        .unwrap();
    assert!(helpers.is_empty(), "helper tables left behind: {helpers:?}");
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_ledger_mysql() {
    migrate_under_ledger_load(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_ledger_mariadb() {
    migrate_under_ledger_load(Engine::MariaDb).await;
}
