//! Time SQL expressions on a throwaway server holding the ledger's `orders` table, to compare
//! per-row costs (e.g. checksum expressions) on both engines.
//!
//! `cargo run --release -p rowshift-testkit --example sqlprobe -- mysql 1000000 "SELECT COUNT(*) FROM orders" ...`
//! Each query runs three times; the median wall time is printed, with the median CPU time the server
//! process spent on it (`/proc/<pid>/stat`, robust to other load); an `EXPLAIN` prints its plan. `PROBE_SERVER_ARGS` adds
//! server options.

use mysql_async::prelude::Queryable;
use rowshift_testkit::procstat::cpu_seconds;
use rowshift_testkit::{ledger, Engine, ServerOptions, TestServer};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (engine, rows, queries) = match args.as_slice() {
        [e, r, q @ ..] if !q.is_empty() => (Engine::from_arg(e), r.parse::<u64>()?, q),
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
    // The server's CPU time (user + system, all threads) around each query: unlike wall time,
    // not inflated by other processes on a busy machine.
    let pid_file: Option<String> = conn.query_first("SELECT @@pid_file").await?;
    let server_pid = pid_file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|p| p.trim().parse::<u32>().ok());
    for q in queries {
        if q.to_ascii_uppercase().starts_with("EXPLAIN") {
            let rows: Vec<mysql_async::Row> = conn.query(q.as_str()).await?;
            for r in rows {
                let cells: Vec<String> = r
                    .unwrap_raw()
                    .into_iter()
                    .map(|v| v.map(|v| v.as_sql(true)).unwrap_or_default())
                    .collect();
                println!("  plan: {}", cells.join(" | "));
            }
            continue;
        }
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..3 {
            let before = server_pid.and_then(|p| cpu_seconds(&p.to_string()));
            let t = Instant::now();
            let _: Vec<mysql_async::Row> = conn.query(q.as_str()).await?;
            times.push(t.elapsed().as_secs_f64());
            if let (Some(pid), Some(before)) = (server_pid, before) {
                if let Some(after) = cpu_seconds(&pid.to_string()) {
                    cpu.push(after - before);
                }
            }
        }
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        match cpu.get(cpu.len() / 2) {
            Some(c) if cpu.len() == 3 => {
                println!("{:>7.3} s  (server cpu {c:.2} s)  {q}", times[1])
            }
            _ => println!("{:>7.3} s  {q}", times[1]),
        }
    }
    Ok(())
}
