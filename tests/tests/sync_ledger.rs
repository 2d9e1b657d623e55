//! `rowshift sync` between the two engines, both directions (issue 6): the ledger load runs on
//! the source while sync backfills and follows; after the load stops, promote drains and
//! verifies (GO), the ledger invariant holds on the target and the transformed column equals
//! its expression. Also `rowshift status`.

mod sync_support;

use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::{run_rowshift, Engine, TestServer};
use sync_support::*;

const ROWS: u64 = 20_000;

async fn ledger_between(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_ledger_{}_{}", from.name(), to.name());
    src.fresh_db(&db).await.unwrap();
    tgt.fresh_db(&db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();
    let load = LedgerLoad::start(&src.url(), &db, ROWS, 2, 7);
    load.wait_for_commits(100).await;

    let name = "ledger";
    let args = sync_args(&src, &tgt, &db, name);
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, name, &mut child).await;
    // Streaming under load after the backfill.
    load.wait_for_commits(500).await;

    let (code, out, err) = run_rowshift(&[
        "status",
        "--target",
        &tgt.url(),
        "--ckpt-db",
        &db,
        "--source",
        &src.url(),
    ])
    .await;
    assert_eq!(code, 0, "status failed: {err}");
    assert!(
        out.contains("ledger:") && out.contains("backfill done"),
        "{out}"
    );
    assert!(
        out.contains("sync ledger running") && out.contains("lag ") && out.contains("changes/s"),
        "{out}"
    );

    let report = load.stop().await;
    assert!(report.committed > 500);

    let out = stop_and_promote(child, &args, &log).await;
    assert!(out.contains("GO:"), "{out}");
    assert_target_correct(&tgt, &db, ROWS).await;
    assert_same_counts(&src, &tgt, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_under_ledger_load() {
    ledger_between(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_under_ledger_load() {
    ledger_between(Engine::MariaDb, Engine::MySql).await;
}
