//! Verification across servers: MySQL → MariaDB and MariaDB → MySQL holding the same rows of
//! every column type are GO (JSON, FLOAT, BIT, TIMESTAMP ... print alike after
//! canonicalisation); one changed row on the target is NO-GO with exactly that key.

mod verify_support;

use mysql_async::prelude::Queryable;
use rowshift_engine::conn::Endpoint;
use rowshift_engine::verify::{
    self, ColumnMapping, DiffKind, NewTable, Standalone, TableRef, Verdict, VerifyPlan,
};
use rowshift_testkit::{Engine, TestServer};
use verify_support::*;

const ROWS: u32 = 200;

async fn across(from: Engine, to: Engine) {
    let source = TestServer::shared(from);
    let target = TestServer::shared(to);
    let name = format!("verify_cross_{}_{}", from.name(), to.name());
    let db = source.fresh_db(&name).await.unwrap();
    target.fresh_db(&name).await.unwrap();
    let mut s = connect(&source.url_for_db(&db)).await;
    let mut t = connect(&target.url_for_db(&db)).await;
    for c in [&mut s, &mut t] {
        create_all_types(c, "items").await;
        fill_all_types(c, "items", ROWS).await;
    }
    let plan = VerifyPlan {
        source: Endpoint::new(&source.url()).unwrap(),
        table: TableRef::new(&db, "items"),
        new: NewTable::Remote {
            endpoint: Endpoint::new(&target.url()).unwrap(),
            table: TableRef::new(&db, "items"),
        },
        mapping: ColumnMapping::Identity,
    };
    let report = verify::run(plan.clone(), &mut Standalone, small_chunks())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Go, "{}", report.summary());
    assert_eq!(report.rows_old, u64::from(ROWS));
    assert!(!report.same_server);

    t.query_drop("UPDATE items SET dtm = dtm + INTERVAL 1 MICROSECOND WHERE id = 77")
        .await
        .unwrap();
    let report = verify::run(plan, &mut Standalone, small_chunks())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::NoGo);
    let rows = by_key(&report);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec!["77"],
        "{}",
        report.summary()
    );
    assert_eq!(rows["77"].kind, DiffKind::Changed);
    assert_eq!(rows["77"].differing_columns, vec!["dtm"]);
    s.disconnect().await.unwrap();
    t.disconnect().await.unwrap();
}

/// A text primary key under each server's default collation (MySQL utf8mb4_0900_ai_ci, MariaDB
/// utf8mb4_general_ci) orders `ß` differently: key ranges would not partition the target, so
/// the table is compared whole, and still exactly.
async fn text_keys_in_different_collations(from: Engine, to: Engine) {
    let source = TestServer::shared(from);
    let target = TestServer::shared(to);
    let name = format!("verify_textkey_{}_{}", from.name(), to.name());
    let db = source.fresh_db(&name).await.unwrap();
    target.fresh_db(&name).await.unwrap();
    // Distinct under both collations (0900_ai_ci: ß = ss; general_ci: ß = s).
    let keys = ["A", "b", "sa", "st", "su", "\u{df}", "t", "z", "\u{e9}"];
    let mut conns = Vec::new();
    for server in [&source, &target] {
        let mut c = connect(&server.url_for_db(&db)).await;
        c.query_drop("CREATE TABLE k (name VARCHAR(20) NOT NULL PRIMARY KEY, v INT NOT NULL) DEFAULT CHARSET=utf8mb4")
            .await
            .unwrap();
        for (i, key) in keys.iter().enumerate() {
            c.exec_drop("INSERT INTO k VALUES (?, ?)", (key, i))
                .await
                .unwrap();
        }
        conns.push(c);
    }
    let plan = VerifyPlan {
        source: Endpoint::new(&source.url()).unwrap(),
        table: TableRef::new(&db, "k"),
        new: NewTable::Remote {
            endpoint: Endpoint::new(&target.url()).unwrap(),
            table: TableRef::new(&db, "k"),
        },
        mapping: ColumnMapping::Identity,
    };
    let report = verify::run(plan.clone(), &mut Standalone, small_chunks())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Go, "{}", report.summary());
    assert_eq!(report.chunks_checked, 1, "{}", report.summary());
    assert!(
        report.notes[0].contains("order differently"),
        "{:?}",
        report.notes
    );
    assert_eq!(report.rows_new, keys.len() as u64);

    conns[1]
        .exec_drop("UPDATE k SET v = v + 1 WHERE name = ?", ("\u{df}",))
        .await
        .unwrap();
    let report = verify::run(plan, &mut Standalone, small_chunks())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::NoGo);
    let rows = by_key(&report);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec!["\u{df}".to_string()]
    );
    for c in conns {
        c.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_mysql_to_mariadb() {
    text_keys_in_different_collations(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_mariadb_to_mysql() {
    text_keys_in_different_collations(Engine::MariaDb, Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_to_mariadb() {
    across(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_to_mysql() {
    across(Engine::MariaDb, Engine::MySql).await;
}
