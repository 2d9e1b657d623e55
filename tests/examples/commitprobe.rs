//! Time the copy's chunk statement and its COMMIT apart, on an idle throwaway server (the
//! ledger's `orders`, 200,000 rows, copied into a `LIKE` table in key ranges of CHUNK rows):
//! tells a COMMIT's own cost from its wait behind other commits under load.
//!
//! `cargo run --release -p rowshift-testkit --example commitprobe -- mysql|mariadb CHUNK`

use mysql_async::prelude::Queryable;
use rowshift_testkit::{ledger, Engine, ServerOptions, TestServer};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, chunk] = args.as_slice() else {
        return Err("usage: commitprobe mysql|mariadb CHUNK_ROWS".into());
    };
    let engine = if engine == "mariadb" {
        Engine::MariaDb
    } else {
        Engine::MySql
    };
    let chunk: u64 = chunk.parse()?;
    let server = TestServer::dedicated(engine, ServerOptions::bench())?;
    server.fresh_db("probe").await?;
    let mut c = mysql_async::Conn::from_url(server.url_for_db("probe")).await?;
    ledger::create_and_fill(&mut c, "probe", 200_000).await?;
    c.query_drop("CREATE TABLE s LIKE orders").await?;
    let mut ins = Vec::new();
    let mut com = Vec::new();
    let mut lo = 1u64;
    while lo < 200_000 {
        let hi = lo + chunk - 1;
        c.query_drop("BEGIN").await?;
        let t = Instant::now();
        c.query_drop(format!("INSERT IGNORE INTO s SELECT * FROM orders FORCE INDEX (PRIMARY) WHERE id BETWEEN {lo} AND {hi} LOCK IN SHARE MODE")).await?;
        ins.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        c.query_drop("COMMIT").await?;
        com.push(t.elapsed().as_secs_f64() * 1000.0);
        lo = hi + 1;
    }
    ins.sort_by(f64::total_cmp);
    com.sort_by(f64::total_cmp);
    let n = ins.len();
    println!("{engine:?} chunk {chunk}: insert median {:.2} ms p90 {:.2}; commit median {:.2} ms p90 {:.2} max {:.2}", ins[n/2], ins[n*9/10], com[n/2], com[n*9/10], com[n-1]);
    Ok(())
}
