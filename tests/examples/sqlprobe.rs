//! Time SQL expressions on a throwaway server holding the ledger's `orders` table, to compare
//! per-row costs (e.g. checksum expressions) on both engines.
//!
//! `cargo run --release -p rowshift-testkit --example sqlprobe -- mysql 1000000 "SELECT COUNT(*) FROM orders" ...`
//! Each query runs three times; the median wall time is printed. `PROBE_SERVER_ARGS` adds
//! server options.

use mysql_async::prelude::Queryable;
use rowshift_testkit::{ledger, Engine, ServerOptions, TestServer};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (engine, rows, queries) = match args.as_slice() {
        [e, r, q @ ..] if !q.is_empty() => (
            if e == "mariadb" {
                Engine::MariaDb
            } else {
                Engine::MySql
            },
            r.parse::<u64>()?,
            q,
        ),
        _ => return Err("usage: sqlprobe mysql|mariadb ROWS QUERY...".into()),
    };
    // Extra server options, e.g. PROBE_SERVER_ARGS="--innodb-buffer-pool-size=1G".
    let extra_args: Vec<String> = std::env::var("PROBE_SERVER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let server = TestServer::dedicated(engine, ServerOptions { extra_args })?;
    server.fresh_db("probe").await?;
    let mut conn = mysql_async::Conn::from_url(server.url_for_db("probe")).await?;
    ledger::create_and_fill(&mut conn, "probe", rows).await?;
    for q in queries {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let _: Vec<mysql_async::Row> = conn.query(q.as_str()).await?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!("{:>7.3} s  {q}", times[1]);
    }
    Ok(())
}
