//! Binlog decode throughput: rowshift's decoder on a binlog of 1,000,000+ row events written by
//! a throwaway server during setup, next to mysql_common's own row decoder, plain file reading
//! and `mariadb-binlog --base64-output=decode-rows -v` on the same file.
//!
//! Run: `cargo bench -p rowshift-benches --bench decode` (env `ROWSHIFT_BENCH_ENGINE=mysql` or
//! `mariadb`, default mariadb so that mariadb-binlog reads the same file). Results:
//! benches/README.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mysql_async::prelude::Queryable;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::EventData;
use mysql_common::binlog::BinlogFile;
use rowshift_engine::event::SourceEvent;
use rowshift_engine::source::{decode_bytes, DecodeOptions};
use rowshift_testkit::{Engine, ServerOptions, TestServer};

/// Row events in the generated binlog.
const ROWS: u64 = 1_000_000;
/// Rows per INSERT ... SELECT transaction.
const BATCH: u64 = 50_000;

fn engine() -> Engine {
    match std::env::var("ROWSHIFT_BENCH_ENGINE").as_deref() {
        Ok("mysql") => Engine::MySql,
        _ => Engine::MariaDb,
    }
}

/// Writes `ROWS` inserts into a fresh binlog file on a dedicated server and copies the file to
/// `target/bench-data/`. Reuses a previous copy when `ROWSHIFT_BENCH_REUSE=1`.
fn generate(engine: Engine) -> PathBuf {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&out_dir).expect("create target/bench-data");
    let out = out_dir.join(format!("decode-{}.binlog", engine.name()));
    if std::env::var("ROWSHIFT_BENCH_REUSE").as_deref() == Ok("1") && out.exists() {
        return out;
    }
    let server = TestServer::dedicated(engine, ServerOptions::default()).expect("start server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let file = rt.block_on(async {
        let mut c = mysql_async::Conn::from_url(server.url()).await.expect("connect");
        c.query_drop("SET time_zone = '+00:00'").await.expect("tz");
        if engine == Engine::MySql {
            c.query_drop("SET cte_max_recursion_depth = 100000000")
                .await
                .expect("cte depth");
        }
        c.query_drop("CREATE DATABASE bench").await.expect("db");
        c.query_drop("USE bench").await.expect("use");
        c.query_drop(
            "CREATE TABLE bench.t (
                id BIGINT PRIMARY KEY,
                a INT NOT NULL,
                b VARCHAR(64) NOT NULL,
                c DATETIME(6) NOT NULL,
                d DECIMAL(12,2) NOT NULL,
                e DOUBLE NOT NULL,
                f TINYINT UNSIGNED NULL
            ) DEFAULT CHARSET=utf8mb4",
        )
        .await
        .expect("table");
        c.query_drop("FLUSH BINARY LOGS").await.expect("flush");
        let row: mysql_async::Row = match c.query_first("SHOW BINARY LOG STATUS").await {
            Ok(Some(r)) => r,
            _ => c
                .query_first("SHOW MASTER STATUS")
                .await
                .expect("status")
                .expect("binlog on"),
        };
        let file: String = row.get("File").expect("File");
        let mut start = 0;
        while start < ROWS {
            let (lo, hi) = (start + 1, start + BATCH);
            // A source of numbers lo..=hi: MariaDB's sequence engine, MySQL's recursive CTE.
            let (with, from) = match engine {
                Engine::MariaDb => (String::new(), format!("(SELECT seq AS n FROM seq_{lo}_to_{hi}) s")),
                Engine::MySql => (
                    format!(
                        "WITH RECURSIVE s(n) AS (SELECT {lo} UNION ALL SELECT n + 1 FROM s WHERE n < {hi})"
                    ),
                    "s".to_string(),
                ),
            };
            let q = format!(
                "INSERT INTO bench.t {with}
                 SELECT n, n * 7 % 1000003, CONCAT('row-', n, '-', REPEAT('x', n % 20)),
                        TIMESTAMP('2024-01-01') + INTERVAL n SECOND + INTERVAL n % 1000000 MICROSECOND,
                        (n % 100000) / 100, n / 3, IF(n % 10 = 0, NULL, n % 256) FROM {from}"
            );
            c.query_drop(q).await.expect("insert");
            start += BATCH;
        }
        c.query_drop("FLUSH BINARY LOGS").await.expect("flush");
        c.disconnect().await.ok();
        file
    });
    std::fs::copy(server.dir().join("data").join(&file), &out).expect("copy binlog");
    out
}

/// Counts row changes decoded by rowshift.
fn rowshift_decode(name: &str, bytes: &[u8]) -> u64 {
    let mut rows = 0u64;
    decode_bytes(name, bytes, DecodeOptions::default(), |e| {
        if let SourceEvent::Rows(r) = e {
            rows += 1;
            std::hint::black_box(r);
        }
    })
    .expect("decode");
    rows
}

/// Counts rows decoded by mysql_common's `BinlogFile` + `RowsEventData::rows` (its own
/// `BinlogRow` values).
fn mysql_common_decode(bytes: &[u8]) -> u64 {
    let mut file = BinlogFile::new(BinlogVersion::Version4, bytes).expect("magic");
    let mut rows = 0u64;
    while let Some(ev) = file.next() {
        let ev = ev.expect("event");
        if let Ok(Some(EventData::RowsEvent(re))) = ev.read_data() {
            let tme = file.reader().get_tme(re.table_id()).expect("table map");
            for row in re.rows(tme) {
                std::hint::black_box(row.expect("row"));
                rows += 1;
            }
        }
    }
    rows
}

/// CPU seconds (user + system) of the calling thread, from /proc (10 ms resolution).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    // Fields after the command name start with the state (field 3); utime and stime are
    // fields 14 and 15, in clock ticks (100 per second on Linux).
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let (utime, stime) = (tick(11), tick(12));
    (utime + stime) as f64 / 100.0
}

fn mariadb_binlog(path: &Path) -> bool {
    Command::new("mariadb-binlog")
        .args(["--base64-output=decode-rows", "-v"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let path = generate(engine);
    let bytes = std::fs::read(&path).expect("read binlog");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let rows = rowshift_decode(&name, &bytes);
    assert!(rows >= ROWS, "only {rows} row events in {}", path.display());
    let mb = bytes.len() as f64 / 1e6;
    eprintln!(
        "binlog {} ({}): {rows} row events, {mb:.1} MB",
        path.display(),
        engine.name()
    );

    let mut g = c.benchmark_group("decode_rows");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(rows));
    g.bench_function(BenchmarkId::new("rowshift", engine.name()), |b| {
        b.iter(|| rowshift_decode(&name, &bytes))
    });
    g.bench_function(BenchmarkId::new("mysql_common_rows", engine.name()), |b| {
        b.iter(|| mysql_common_decode(&bytes))
    });
    if mariadb_binlog(&path) {
        g.bench_function(
            BenchmarkId::new("mariadb_binlog_decode_rows_v", engine.name()),
            |b| b.iter(|| assert!(mariadb_binlog(&path))),
        );
    } else {
        eprintln!("mariadb-binlog cannot read {} (skipped)", path.display());
    }
    g.finish();

    let mut g = c.benchmark_group("read_file");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(BenchmarkId::new("std_fs_read", engine.name()), |b| {
        b.iter(|| std::hint::black_box(std::fs::read(&path).expect("read")).len())
    });
    g.bench_function(BenchmarkId::new("rowshift_decode", engine.name()), |b| {
        b.iter(|| rowshift_decode(&name, &bytes))
    });
    g.finish();

    // Plain measurements for the README: wall time and this thread's CPU time (the machine is
    // shared, so CPU time is the honest "one core" figure).
    for (what, f) in [
        (
            "rowshift",
            &(|| rowshift_decode(&name, &bytes)) as &dyn Fn() -> u64,
        ),
        ("mysql_common", &|| mysql_common_decode(&bytes)),
    ] {
        let (t, cpu) = (Instant::now(), thread_cpu_secs());
        let n = f();
        let (wall, cpu) = (t.elapsed().as_secs_f64(), thread_cpu_secs() - cpu);
        eprintln!(
            "{what} single pass: {n} rows, wall {wall:.2} s ({:.0} rows/s, {:.1} MB/s), \
             cpu {cpu:.2} s ({:.0} rows/s per CPU-second, {:.1} MB/s)",
            n as f64 / wall,
            mb / wall,
            n as f64 / cpu,
            mb / cpu
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
