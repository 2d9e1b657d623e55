//! Compare statement shapes for applying a batch of collapsed row changes, by the server's CPU
//! per applied row and the wall-clock rate, on a throwaway server holding the ledger's `orders`
//! table and a copy of it (`target`) that the probe rewrites.
//!
//! `cargo run --release -p rowshift-testkit --example applyprobe -- mysql 200000 4 500 replace,iodku,delins,prep_replace`
//!
//! Arguments: engine, rows, connections (each applies its own share of the keys, like the
//! appliers), rows per batch, and the shapes to try (comma separated):
//! - `replace`: `BEGIN`, multi-row `REPLACE` (text), `COMMIT`: three round trips (the applier's
//!   shape before this probe);
//! - `replace1`: the same three statements sent as one multi-statement query;
//! - `replace_ac`: the multi-row `REPLACE` alone in autocommit;
//! - `iodku`: multi-row `INSERT … ON DUPLICATE KEY UPDATE c = VALUES(c), …` (text, one query);
//! - `delins`: `BEGIN; DELETE … WHERE pk IN (…); INSERT …; COMMIT` as one query;
//! - `reread`, `reread_iodku`: only the keys travel; the server re-reads the rows from the
//!   source table (`REPLACE`/`INSERT … ON DUPLICATE KEY UPDATE … SELECT … WHERE id IN (…)`);
//! - `prep_replace`: a prepared multi-row `REPLACE` (binary protocol, one statement per batch
//!   size) in autocommit.
//!
//! Every pass adds one to `counter` of every row, so every statement really changes rows.
//! `PROBE_SERVER_ARGS` adds server options (default: the benches' 1 GB buffer pool);
//! `PROBE_TX_BATCHES=K` puts K batches in one transaction for the multi-statement shapes.

use mysql_async::prelude::Queryable;
use mysql_async::Value;
use rowshift_testkit::procstat::{cpu_seconds, server_pid};
use rowshift_testkit::{ledger, Engine, ServerOptions, TestServer};
use std::fmt::Write as _;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const COLS: &str = "id, customer_id, status_code, amount, counter, note, created_at, updated_at";

fn push_text(sql: &mut String, v: &Value) {
    match v {
        Value::NULL => sql.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(sql, "{i}");
        }
        Value::UInt(i) => {
            let _ = write!(sql, "{i}");
        }
        Value::Bytes(b) => {
            sql.push('\'');
            for c in String::from_utf8_lossy(b).chars() {
                if c == '\'' || c == '\\' {
                    sql.push('\\');
                }
                sql.push(c);
            }
            sql.push('\'');
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            let _ = write!(sql, "'{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}'");
        }
        other => sql.push_str(&other.as_sql(false)),
    }
}

fn values_list(sql: &mut String, rows: &[Vec<Value>]) {
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            push_text(sql, v);
        }
        sql.push(')');
    }
}

/// ` ON DUPLICATE KEY UPDATE c = VALUES(c), …` for every column but the key.
fn push_update_all(sql: &mut String) {
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    for (i, c) in COLS.split(", ").skip(1).enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "{c}=VALUES({c})");
    }
}

/// Apply `rows` (one connection's share) in batches with `shape`.
async fn apply(
    conn: &mut mysql_async::Conn,
    shape: &str,
    rows: &[Vec<Value>],
    batch: usize,
    tx_batches: usize,
) -> Res<()> {
    let mut sql = String::new();
    let mut stmt: Option<(usize, mysql_async::Statement)> = None;
    let mut in_tx = 0usize;
    let chunks: Vec<&[Vec<Value>]> = rows.chunks(batch).collect();
    let last = chunks.len().saturating_sub(1);
    for (ci, chunk) in chunks.into_iter().enumerate() {
        sql.clear();
        let begin = in_tx == 0;
        in_tx += 1;
        let commit = in_tx == tx_batches || ci == last;
        if commit {
            in_tx = 0;
        }
        match shape {
            "replace" => {
                sql.push_str(&format!("REPLACE INTO target ({COLS}) VALUES "));
                values_list(&mut sql, chunk);
                conn.query_drop("BEGIN").await?;
                conn.query_drop(&sql).await?;
                conn.query_drop("COMMIT").await?;
            }
            "replace_ac" => {
                sql.push_str(&format!("REPLACE INTO target ({COLS}) VALUES "));
                values_list(&mut sql, chunk);
                conn.query_drop(&sql).await?;
            }
            "replace1" | "iodku" | "delins" => {
                if begin {
                    sql.push_str("BEGIN;");
                }
                match shape {
                    "replace1" => {
                        sql.push_str(&format!("REPLACE INTO target ({COLS}) VALUES "));
                        values_list(&mut sql, chunk);
                    }
                    "iodku" => {
                        sql.push_str(&format!("INSERT INTO target ({COLS}) VALUES "));
                        values_list(&mut sql, chunk);
                        push_update_all(&mut sql);
                    }
                    _ => {
                        sql.push_str("DELETE FROM target WHERE id IN (");
                        for (i, r) in chunk.iter().enumerate() {
                            if i > 0 {
                                sql.push(',');
                            }
                            push_text(&mut sql, &r[0]);
                        }
                        sql.push_str(");");
                        sql.push_str(&format!("INSERT INTO target ({COLS}) VALUES "));
                        values_list(&mut sql, chunk);
                    }
                }
                if commit {
                    sql.push_str(";COMMIT");
                }
                conn.query_drop(&sql).await?;
            }
            "reread" | "reread_iodku" => {
                // Re-read the changed keys from the source table on the server (the source
                // holds the newest image): only the keys travel.
                sql.push_str(&format!(
                    "REPLACE INTO target ({COLS}) SELECT {COLS} FROM orders WHERE id IN ("
                ));
                if shape == "reread_iodku" {
                    sql.clear();
                    sql.push_str(&format!(
                        "INSERT INTO target ({COLS}) SELECT {COLS} FROM orders WHERE id IN ("
                    ));
                }
                for (i, r) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    push_text(&mut sql, &r[0]);
                }
                sql.push(')');
                if shape == "reread_iodku" {
                    push_update_all(&mut sql);
                }
                conn.query_drop(&sql).await?;
            }
            "prep_replace" => {
                let n = chunk.len();
                if stmt.as_ref().map(|(k, _)| *k) != Some(n) {
                    let mut q = format!("REPLACE INTO target ({COLS}) VALUES ");
                    for i in 0..n {
                        if i > 0 {
                            q.push(',');
                        }
                        q.push_str("(?,?,?,?,?,?,?,?)");
                    }
                    if let Some((_, old)) = stmt.take() {
                        conn.close(old).await?;
                    }
                    stmt = Some((n, conn.prep(q).await?));
                }
                let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
                if let Some((_, s)) = &stmt {
                    conn.exec_drop(s, params).await?;
                }
            }
            other => return Err(format!("unknown shape {other}").into()),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, rows, conns, batch, shapes] = args.as_slice() else {
        return Err("usage: applyprobe mysql|mariadb ROWS CONNECTIONS BATCH SHAPE[,SHAPE]".into());
    };
    let engine = if engine == "mariadb" {
        Engine::MariaDb
    } else {
        Engine::MySql
    };
    let rows: u64 = rows.parse()?;
    let conns: usize = conns.parse()?;
    let batch: usize = batch.parse()?;
    let tx_batches: usize = std::env::var("PROBE_TX_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let options = match std::env::var("PROBE_SERVER_ARGS") {
        Ok(a) => ServerOptions {
            extra_args: a.split_whitespace().map(str::to_string).collect(),
        },
        Err(_) => ServerOptions::bench(),
    };
    let server = TestServer::dedicated(engine, options)?;
    server.fresh_db("probe").await?;
    let url = server.url_for_db("probe");
    let mut conn = mysql_async::Conn::from_url(url.clone()).await?;
    ledger::create_and_fill(&mut conn, "probe", rows)
        .await
        .map_err(|e| e.to_string())?;
    conn.query_drop("CREATE TABLE target LIKE orders").await?;
    conn.query_drop("INSERT INTO target SELECT * FROM orders")
        .await?;
    let mut all: Vec<Vec<Value>> = conn
        .exec_map(
            format!("SELECT {COLS} FROM orders ORDER BY id"),
            (),
            |r: mysql_async::Row| r.unwrap(),
        )
        .await?;
    let pid = server_pid(server.port()).ok_or("server pid not found")?;
    // Each connection takes every `conns`-th batch of keys, like the router's key hashing.
    for (pass, shape) in shapes
        .split(',')
        .cycle()
        .take(shapes.split(',').count() * 2)
        .enumerate()
    {
        for r in all.iter_mut() {
            if let Value::Int(c) = &mut r[4] {
                *c += 1;
            }
        }
        // The source moves too (outside the measured window), for the re-reading shapes.
        conn.query_drop("UPDATE orders SET counter = counter + 1")
            .await?;
        let mut shares: Vec<Vec<Vec<Value>>> = vec![Vec::new(); conns];
        for (i, r) in all.iter().enumerate() {
            shares[(i / batch) % conns].push(r.clone());
        }
        let cpu0 = cpu_seconds(&pid).unwrap_or(0.0);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for share in shares {
            let url = url.clone();
            let shape = shape.to_string();
            tasks.push(tokio::spawn(async move {
                let mut c = mysql_async::Conn::from_url(url).await?;
                c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                apply(&mut c, &shape, &share, batch, tx_batches).await?;
                c.disconnect().await?;
                Res::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let wall = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
        let n = all.len() as f64;
        println!(
            "pass {pass} {shape:>12}: {n:.0} rows in {wall:.2} s = {:>7.0} rows/s; server CPU {cpu:.2} s = {:.1} us/row",
            n / wall,
            cpu * 1e6 / n
        );
    }
    let expected: Option<i64> = conn.query_first("SELECT MIN(t.counter - o.counter) = MAX(t.counter - o.counter) FROM orders o JOIN target t USING (id)").await?;
    println!("target equals the source: {}", expected == Some(1));
    Ok(())
}
