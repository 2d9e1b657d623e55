//! `rowshift sync` carries every common column type between the engines (issue 6): rows read
//! by the backfill (text parsed by column type) and rows arriving through the binlog both
//! verify equal at promote.

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, TestServer};
use std::time::{Duration, Instant};
use sync_support::*;

const DDL: &str = "CREATE TABLE `t` (
  `id` INT NOT NULL PRIMARY KEY,
  `i8` TINYINT NULL, `u64` BIGINT UNSIGNED NULL, `d` DECIMAL(20,6) NULL,
  `f` FLOAT NULL, `g` DOUBLE NULL, `b` BIT(10) NULL,
  `e` ENUM('a','b','c') NULL, `s` SET('x','y','z') NULL, `y` YEAR NULL,
  `dt` DATE NULL, `tm` TIME(3) NULL, `ts` TIMESTAMP(6) NULL, `dtm` DATETIME(6) NULL,
  `v` VARCHAR(40) CHARACTER SET utf8mb4 NULL, `c` CHAR(5) NULL,
  `vb` VARBINARY(16) NULL, `bl` BLOB NULL, `tx` TEXT NULL, `j` JSON NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// A JSON document holding DECIMAL, DATE, DATETIME scalars and nesting.
const TYPED_JSON: &str = "JSON_OBJECT('dec', CAST(1.50 AS DECIMAL(5,2)), 'd', CAST('2024-02-29' AS DATE), 'dt', CAST('2024-02-29 23:59:59.5' AS DATETIME(6)), 'arr', JSON_ARRAY(CAST(-0.000001 AS DECIMAL(10,6)), TRUE, NULL, 'x'))";

fn row(id: u32) -> String {
    format!(
        "({id}, -{}, 18446744073709551{:03}, -12345.{:06}, 1.2345678, 2.25e-3, b'1010101010', 'b', 'x,z', 2026,
          '2026-02-{:02}', '-12:34:56.789', '2026-11-24 03:04:05.{:06}', '1999-12-31 23:59:59.999999',
          'grüße 🎉 {id}', 'ab', 0x00ff00, REPEAT(0xab, 300), REPEAT('t', 100), '{{\"a\": [1, 2.5, \"x\"], \"n\": null}}')",
        id % 100,
        id % 615,
        id,
        id % 28 + 1,
        id
    )
}

async fn types_between(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_types_{}_{}", from.name(), to.name());
    src.fresh_db(&db).await.unwrap();
    tgt.fresh_db(&db).await.unwrap();
    let mut s = mysql_async::Conn::from_url(src.url()).await.unwrap();
    s.query_drop(format!("USE `{db}`")).await.unwrap();
    s.query_drop(DDL).await.unwrap();
    let rows: Vec<String> = (1..=300).map(row).collect();
    s.query_drop(format!("INSERT INTO t VALUES {}", rows.join(",")))
        .await
        .unwrap();
    s.query_drop("INSERT INTO t (id) VALUES (1000)")
        .await
        .unwrap();
    s.query_drop(format!("UPDATE t SET j = {TYPED_JSON} WHERE id % 7 = 2"))
        .await
        .unwrap();
    let args: Vec<String> = [
        "--source",
        &src.url(),
        "--target",
        &tgt.url(),
        "--table",
        &format!("{db}.t"),
        "--name",
        "types",
        "--chunk-rows",
        "70",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, "types", &mut child).await;
    // Through the binlog: inserts, updates, deletes.
    let more: Vec<String> = (301..=400).map(row).collect();
    s.query_drop(format!("INSERT INTO t VALUES {}", more.join(",")))
        .await
        .unwrap();
    s.query_drop("UPDATE t SET v = 'ça va', d = d * 2, e = 'c', s = '', b = b'1' WHERE id % 3 = 0")
        .await
        .unwrap();
    // JSON with scalars only SQL makes (MySQL keeps them typed in its binary JSON).
    s.query_drop(format!("UPDATE t SET j = {TYPED_JSON} WHERE id % 5 = 1"))
        .await
        .unwrap();
    s.query_drop("DELETE FROM t WHERE id % 10 = 7")
        .await
        .unwrap();
    let mut t = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let want: u64 = s
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: u64 = t
            .query_first(format!("SELECT COUNT(*) FROM `{db}`.t"))
            .await
            .unwrap()
            .unwrap();
        if n == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {want} rows arrived (log {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_sync(child).await;
    let (code, out, err) = promote(&args, &[]).await;
    assert_eq!(
        code,
        0,
        "promote did not say GO:\n{out}\n{err}\nlog {}",
        log.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_types() {
    types_between(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_types() {
    types_between(Engine::MariaDb, Engine::MySql).await;
}

/// A FLOAT primary key, backfilled one row per chunk: the chunk cursor and the backfill's upper
/// bound are the keys' exact values (the server prints a FLOAT with 6 digits: a cursor of
/// `1.23457` skipped the keys just below it, an upper bound of `9.87654` the highest row).
async fn float_keys_between(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_float_key_{}_{}", from.name(), to.name());
    let keys = ["1.2345671", "1.2345673", "1.2345675", "2.5", "9.8765432"];
    let rows: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("({k}, {i})"))
        .collect();
    let mut s = fresh_source_table(
        &src,
        &tgt,
        &db,
        "CREATE TABLE t (f FLOAT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    let name = format!("float_key_{}_{}", from.name(), to.name());
    let args = table_t_args(&src.url(), &tgt, &db, &name, &["--chunk-rows", "1"]);
    let log = std::env::temp_dir().join(format!("rowshift-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, &name, &mut child).await;
    stop_sync(child).await;
    let mut t = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    let q = "SELECT f + 0e0, v FROM t ORDER BY f";
    let want: Vec<(f64, i64)> = s.query(q).await.unwrap();
    let got: Vec<(f64, i64)> = t.query(q).await.unwrap();
    assert_eq!(want.len(), keys.len());
    assert_eq!(got, want, "the target's FLOAT keys (log {})", log.display());
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_float_keys() {
    float_keys_between(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_float_keys() {
    float_keys_between(Engine::MariaDb, Engine::MySql).await;
}
