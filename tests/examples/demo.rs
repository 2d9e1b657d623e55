//! The demo behind `scripts/demo.sh`: a throwaway local server, a `shop.orders` table with
//! sample rows and live writes (the ledger load), and `rowshift migrate` adding `order_status`
//! and an index while customers keep ordering. At the end it checks that no write was lost.
//!
//! Usage: demo [mariadb|mysql] [rows]

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, LedgerLoad, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::{rowshift_bin, Engine, ServerOptions, TestServer};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let engine = match args.get(1).map(String::as_str) {
        Some("mysql") => Engine::MySql,
        _ => Engine::MariaDb,
    };
    let rows: u64 = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(200_000);
    println!("== starting a throwaway {engine:?} server on 127.0.0.1");
    let server = TestServer::dedicated(engine, ServerOptions::default())?;
    println!("   {} (folder {})", server.url(), server.dir().display());
    let mut conn = mysql_async::Conn::from_url(server.url()).await?;
    conn.query_drop("CREATE DATABASE shop").await?;
    let t = Instant::now();
    ledger::create_and_fill(&mut conn, "shop", rows).await?;
    println!(
        "== filled shop.orders with {rows} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    println!("== customers keep ordering: 4 clients write to shop.orders (the ledger load)");
    let load = LedgerLoad::start(&server.url(), "shop", rows, 4, 1);
    load.wait_for_commits(100).await;

    let set = format!("order_status = {ORDER_STATUS_EXPR}");
    let cmd = [
        "migrate",
        "--source",
        &server.url(),
        "--table",
        "shop.orders",
        "--alter",
        ORDER_STATUS_ALTER,
        "--set",
        &set,
        "--execute",
    ];
    println!(
        "== rowshift {}",
        cmd.iter()
            .map(|a| if a.contains(' ') {
                format!("{a:?}")
            } else {
                a.to_string()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = tokio::process::Command::new(rowshift_bin())
        .args(cmd)
        .status()
        .await?;
    let committed_during = load.committed();
    load.wait_for_commits(100).await;
    let report = load.stop().await;
    println!(
        "== the load committed {} transactions ({} while rowshift ran), retried {}",
        report.committed, committed_during, report.retried
    );
    if !status.success() {
        return Err(format!("rowshift migrate failed ({status})").into());
    }
    let v = ledger::check_invariant(&mut conn, "shop", "orders", rows).await?;
    let wrong = ledger::wrong_order_status(&mut conn, "shop", "orders").await?;
    let columns: Vec<(String, String)> = conn
        .query("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='orders' ORDER BY ORDINAL_POSITION")
        .await?;
    println!(
        "== shop.orders now: {}",
        columns
            .iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if v.is_empty() && wrong == 0 {
        println!("== check: every acknowledged write is present exactly once, order_status matches its expression for every row, old table kept as shop._orders_old");
        Ok(())
    } else {
        Err(format!("check FAILED: {v:?}, {wrong} rows with a wrong order_status").into())
    }
}
