//! What a command running beside the ledger load costs the application: the load's commits/s
//! in windows without and with the command, on a throwaway server.
//!
//! `cargo run --release -p rowshift-testkit --example loadprobe -- mariadb|mysql ROWS SECS CMD...`
//! The command runs with `{url}` replaced by the server's URL (for example
//! `target/release/rowshift binlog dump --source {url} --tables bench.orders --stop-never`);
//! its output is discarded. Windows: baseline, with the command, baseline again.

use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::procstat::{server_pid, CpuSince};
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, rows, secs, cmd @ ..] = args.as_slice() else {
        return Err("usage: loadprobe mariadb|mysql ROWS SECS CMD...".into());
    };
    if cmd.is_empty() {
        return Err("usage: loadprobe mariadb|mysql ROWS SECS CMD...".into());
    }
    let engine = Engine::from_arg(engine);
    let rows: u64 = rows.parse()?;
    let window = Duration::from_secs(secs.parse()?);
    let server = TestServer::dedicated(engine, ServerOptions::bench())?;
    server.fresh_db("bench").await?;
    let mut conn = mysql_async::Conn::from_url(server.url_for_db("bench")).await?;
    ledger::create_and_fill(&mut conn, "bench", rows).await?;
    let spid = server_pid(server.port()).unwrap_or_default();
    let load = LedgerLoad::start(&server.url(), "bench", rows, 4, 7);
    let mut marks = vec![load.elapsed()];
    let mut cpus = Vec::new();
    // Row lock waits per window: do the application's transactions queue on the command's locks?
    let mut status = vec![row_lock_status(&mut conn).await?];
    for phase in 0..3 {
        let cpu = CpuSince::start(&[&spid, "self"]);
        let child = if phase == 1 {
            let argv: Vec<String> = cmd
                .iter()
                .map(|a| a.replace("{url}", &server.url()))
                .collect();
            Some(
                tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdout(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()?,
            )
        } else {
            None
        };
        // A measuring window of the load, not synchronisation.
        tokio::time::sleep(window).await;
        let mut tool_cpu = 0.0;
        if let Some(mut c) = child {
            if let Some(pid) = c.id() {
                tool_cpu = rowshift_testkit::procstat::cpu_seconds(&pid.to_string()).unwrap_or(0.0);
            }
            c.kill().await?;
        }
        let used = cpu.used();
        cpus.push((used[0], used[1], tool_cpu));
        marks.push(load.elapsed());
        status.push(row_lock_status(&mut conn).await?);
    }
    let report = load.stop().await;
    for (i, name) in ["baseline", "with the command", "baseline again"]
        .iter()
        .enumerate()
    {
        let (from, to) = (marks[i], marks[i + 1]);
        let s = (to - from).as_secs_f64();
        println!(
            "{name:>17}: {:>8.0} txn/s, p95 {:>6.2} ms, worst {:>7.1} ms; CPU cores: server {:.2}, load clients {:.2}, command {:.2}",
            report.rate(from, to),
            report.quantile(0.95, from, to).unwrap_or_default().as_secs_f64() * 1e3,
            report.worst(from, to).as_secs_f64() * 1e3,
            cpus[i].0 / s,
            cpus[i].1 / s,
            cpus[i].2 / s,
        );
        println!(
            "{:>17}  row lock waits {:.0}/s, waited {:.0} ms/s",
            "",
            (status[i + 1].0 - status[i].0) as f64 / s,
            (status[i + 1].1 - status[i].1) as f64 / s,
        );
    }
    // When the slowest commits ended (load clock), to tell periodic server stalls from the
    // command's effect.
    let mut slow: Vec<_> = report
        .latencies
        .iter()
        .filter(|(_, l)| *l > Duration::from_millis(20))
        .collect();
    slow.sort();
    for (end, l) in slow.iter().take(40) {
        println!(
            "slow commit: ended at {:.3} s, took {:.1} ms",
            end.as_secs_f64(),
            l.as_secs_f64() * 1e3
        );
    }
    println!(
        "windows: {:?}",
        marks
            .iter()
            .map(|m| format!("{:.3}", m.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The server's `Innodb_row_lock_waits` and `Innodb_row_lock_time` (ms) counters.
async fn row_lock_status(
    conn: &mut mysql_async::Conn,
) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    use mysql_async::prelude::Queryable;
    let rows: Vec<(String, String)> = conn
        .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_row_lock_waits', 'Innodb_row_lock_time')")
        .await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((get("Innodb_row_lock_waits"), get("Innodb_row_lock_time")))
}
