//! Where a copy chunk's time goes: copies the ledger's `orders` table into a shadow with the copy's
//! own protocol (boundary query `LIMIT 1 OFFSET n`, `BEGIN`, `INSERT IGNORE … SELECT … LOCK IN
//! SHARE MODE`, `COMMIT`) in chunks of each given size, one connection, no load, and prints per
//! chunk the wall time of every step and the server's CPU per row.
//!
//! `cargo run --release -p rowshift-testkit --example chunkprobe -- mysql|mariadb ROWS SIZE...`

use mysql_async::prelude::Queryable;
use rowshift_testkit::ledger::{self, ORDER_STATUS_ALTER, ORDER_STATUS_EXPR};
use rowshift_testkit::procstat::{cpu_seconds, server_pid};
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, rows, sizes @ ..] = args.as_slice() else {
        return Err("usage: chunkprobe mysql|mariadb ROWS SIZE...".into());
    };
    let engine = Engine::from_arg(engine);
    let rows: u64 = rows.parse()?;
    let server = TestServer::dedicated(engine, ServerOptions::bench())?;
    server.fresh_db("probe").await?;
    let mut conn = mysql_async::Conn::from_url(server.url_for_db("probe")).await?;
    ledger::create_and_fill(&mut conn, "probe", rows).await?;
    let pid = server_pid(server.port()).ok_or("no server pid")?;
    conn.query_drop("CREATE TABLE shadow LIKE orders").await?;
    conn.query_drop(format!("ALTER TABLE shadow {ORDER_STATUS_ALTER}"))
        .await?;
    // Plain secondary keys are built after the copy: leave them out, as migrate does.
    for key in ["customer", "idx_order_status"] {
        let _ = conn
            .query_drop(format!("ALTER TABLE shadow DROP KEY `{key}`"))
            .await;
    }
    let cols = "id, customer_id, status_code, amount, counter, note, created_at, updated_at";
    for size in sizes {
        let size: u64 = size.parse()?;
        conn.query_drop("TRUNCATE TABLE shadow").await?;
        let mut steps = [Duration::ZERO; 4];
        let mut chunks = 0u64;
        let mut lower: Option<i64> = None;
        let cpu0 = cpu_seconds(&pid).unwrap_or(0.0);
        let t0 = Instant::now();
        loop {
            let filter = lower.map(|l| format!("WHERE id > {l}")).unwrap_or_default();
            let t = Instant::now();
            let upper: Option<i64> = conn
                .query_first(format!(
                    "SELECT id FROM orders FORCE INDEX (PRIMARY) {filter} ORDER BY id LIMIT 1 OFFSET {}",
                    size - 1
                ))
                .await?;
            steps[0] += t.elapsed();
            let range = match (lower, upper) {
                (Some(l), Some(u)) => format!("id > {l} AND id <= {u}"),
                (None, Some(u)) => format!("id <= {u}"),
                (Some(l), None) => format!("id > {l}"),
                (None, None) => "1=1".into(),
            };
            let t = Instant::now();
            conn.query_drop("BEGIN").await?;
            steps[1] += t.elapsed();
            let t = Instant::now();
            conn.query_drop(format!(
                "INSERT IGNORE INTO shadow ({cols}, order_status) SELECT {cols}, {ORDER_STATUS_EXPR} FROM orders FORCE INDEX (PRIMARY) WHERE {range} LOCK IN SHARE MODE"
            ))
            .await?;
            steps[2] += t.elapsed();
            let t = Instant::now();
            conn.query_drop("COMMIT").await?;
            steps[3] += t.elapsed();
            chunks += 1;
            match upper {
                Some(u) => lower = Some(u),
                None => break,
            }
        }
        let wall = t0.elapsed();
        let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
        let per = |d: Duration| d.as_secs_f64() * 1e3 / chunks as f64;
        println!(
            "{engine:?} chunks of {size}: {chunks} chunks, {:.2} s = {:.0} rows/s, server cpu {:.2} s ({:.2} µs/row); per chunk: boundary {:.3} ms, BEGIN {:.3} ms, INSERT {:.3} ms, COMMIT {:.3} ms",
            wall.as_secs_f64(),
            rows as f64 / wall.as_secs_f64(),
            cpu,
            cpu * 1e6 / rows as f64,
            per(steps[0]),
            per(steps[1]),
            per(steps[2]),
            per(steps[3]),
        );
    }
    Ok(())
}
