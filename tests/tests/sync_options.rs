//! `rowshift sync` options (issue 6): an existing target table in the new shape under another
//! name (`--target-schema-from-existing`, `--target-table`), an existing target refused without
//! the flag, and changes made while the sync runs arriving transformed.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{run_rowshift, Engine, TestServer};
use std::time::{Duration, Instant};
use sync_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn existing_target_under_another_name() {
    let src = TestServer::shared(Engine::MariaDb);
    let tgt = TestServer::shared(Engine::MySql);
    let db = "sync_opts_src";
    let tdb = "sync_opts_tgt";
    src.fresh_db(db).await.unwrap();
    tgt.fresh_db(tdb).await.unwrap();
    let mut s = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut s, db, 3_000).await.unwrap();
    // The target in the new shape, made by hand.
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    t.query_drop(format!("USE `{tdb}`")).await.unwrap();
    t.query_drop(ledger::ORDERS_DDL.replace("`orders`", "`orders_v2`"))
        .await
        .unwrap();
    t.query_drop(format!("ALTER TABLE `orders_v2` {ORDER_STATUS_ALTER}"))
        .await
        .unwrap();

    let base = |existing: bool| {
        let mut v: Vec<String> = [
            "--source",
            &src.url(),
            "--target",
            &tgt.url(),
            "--table",
            &format!("{db}.orders"),
            "--target-table",
            &format!("{tdb}.orders_v2"),
            "--set",
            &format!("order_status = {ORDER_STATUS_EXPR}"),
            "--name",
            "opts",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if existing {
            v.push("--target-schema-from-existing".into());
        }
        v
    };
    // Without the flag an existing target is refused.
    let err = refused_sync(&base(false)).await;
    assert!(err.contains("--target-schema-from-existing"), "{err}");

    // An existing target holding rows is refused: the backfill would mix them in.
    t.query_drop(format!(
        "INSERT INTO `{tdb}`.`orders_v2` (id, customer_id, status_code, amount, counter, created_at) VALUES (999999, 1, 1, 0, 0, NOW(6))"
    ))
    .await
    .unwrap();
    let err = refused_sync(&base(true)).await;
    assert!(err.contains("`orders_v2` already holds rows"), "{err}");
    t.query_drop(format!("DELETE FROM `{tdb}`.`orders_v2`"))
        .await
        .unwrap();

    let args = base(true);
    let log = std::env::temp_dir().join("rowshift-sync_opts.log");
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, tdb, "opts", &mut child).await;

    // A second process for the same sync is refused; the same name into another database runs.
    let mut args2: Vec<&str> = vec!["sync"];
    args2.extend(args.iter().map(String::as_str));
    let (code, _, err) = tokio::time::timeout(Duration::from_secs(120), run_rowshift(&args2))
        .await
        .expect("a second process of a running sync must stop");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("another rowshift process is applying sync opts into `sync_opts_tgt`"),
        "{err}"
    );
    let other_db = "sync_opts_tgt_b";
    tgt.fresh_db(other_db).await.unwrap();
    let mut other = base(false);
    other[7] = format!("{other_db}.orders_v2");
    other.extend(["--alter".to_string(), ORDER_STATUS_ALTER.to_string()]);
    let socket =
        std::env::temp_dir().join(format!("rowshift-sync-opts-b-{}.sock", std::process::id()));
    other.extend(["--control-socket".to_string(), socket.display().to_string()]);
    let log_b = std::env::temp_dir().join("rowshift-sync_opts_b.log");
    let _ = std::fs::remove_file(&log_b);
    let mut child_b = spawn_sync(&other, &log_b);
    wait_backfill(&tgt, other_db, "opts", &mut child_b).await;
    stop_sync(child_b).await;
    let copied: u64 = t
        .query_first(format!("SELECT COUNT(*) FROM `{other_db}`.`orders_v2`"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copied, 3_000);
    s.query_drop(format!(
        "UPDATE `{db}`.`orders` SET status_code = 2, note = 'changed' WHERE id BETWEEN 10 AND 19"
    ))
    .await
    .unwrap();
    s.query_drop(format!("DELETE FROM `{db}`.`orders` WHERE id = 5"))
        .await
        .unwrap();
    // The changes arrive transformed (polled with a deadline).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shipped: u64 = t
            .query_first(format!(
                "SELECT COUNT(*) FROM `{tdb}`.`orders_v2` WHERE order_status = 'shipped' AND note = 'changed'"
            ))
            .await
            .unwrap()
            .unwrap();
        let gone: u64 = t
            .query_first(format!(
                "SELECT COUNT(*) FROM `{tdb}`.`orders_v2` WHERE id = 5"
            ))
            .await
            .unwrap()
            .unwrap();
        if shipped == 10 && gone == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "changes did not arrive: {shipped} shipped, id 5 present {gone}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_sync(child).await;
    let (code, out, err) = promote(&args, &[]).await;
    assert_eq!(code, 0, "promote did not say GO:\n{out}\n{err}");
    assert_eq!(
        ledger::wrong_order_status(&mut t, tdb, "orders_v2")
            .await
            .unwrap(),
        0
    );
    let n: u64 = t
        .query_first(format!("SELECT COUNT(*) FROM `{tdb}`.`orders_v2`"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2_999);

    // The stream's checkpoint belongs to that source server and that target table: a resume
    // into another table, or from another server with the same table, is refused.
    t.query_drop(format!(
        "CREATE TABLE `{tdb}`.`orders_v3` LIKE `{tdb}`.`orders_v2`"
    ))
    .await
    .unwrap();
    let mut moved = base(true);
    moved[7] = format!("{tdb}.orders_v3");
    let err = refused_sync(&moved).await;
    assert!(
        err.contains("was made applying into `sync_opts_tgt`.`orders_v2`"),
        "{err}"
    );
    let other_src = TestServer::shared(Engine::MySql);
    other_src.fresh_db(db).await.unwrap();
    let mut o = mysql_async::Conn::from_url(other_src.url()).await.unwrap();
    ledger::create_and_fill(&mut o, db, 10).await.unwrap();
    let mut failed_over = base(true);
    failed_over[1] = other_src.url();
    let err = refused_sync(&failed_over).await;
    assert!(
        err.contains("was made reading source server server_id"),
        "{err}"
    );
    assert!(err.contains("point --source at that server"), "{err}");
    // Nothing of the target changed.
    let n: u64 = t
        .query_first(format!("SELECT COUNT(*) FROM `{tdb}`.`orders_v2`"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2_999);
}
