//! Helpers shared by the verifier's integration tests: an all-types table, its rows, and a
//! verification run with small chunks so that several chunks and workers are exercised.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use rowshift_engine::conn::Endpoint;
use rowshift_engine::verify::{
    self, ColumnMapping, NewTable, Standalone, TableRef, VerifyConfig, VerifyPlan, VerifyReport,
};
use std::collections::BTreeMap;

/// Every column type the verifier must compare exactly.
pub const ALL_TYPES_DDL: &str = "CREATE TABLE `{name}` (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT NULL, si SMALLINT NULL, i INT NULL, bi BIGINT NULL, ub BIGINT UNSIGNED NULL,
  dec1 DECIMAL(12,4) NULL, f FLOAT NULL, d DOUBLE NULL, b BIT(12) NULL,
  e ENUM('red','green','blue') NULL, st SET('a','b','c') NULL, y YEAR NULL, dt DATE NULL,
  tm TIME(6) NULL, dtm DATETIME(6) NULL, ts TIMESTAMP(6) NULL, ch CHAR(10) NULL,
  vc VARCHAR(40) NULL, tx TEXT NULL, bn BINARY(4) NULL, vb VARBINARY(16) NULL, bl BLOB NULL,
  j JSON NULL, ci VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Create the all-types table `name` in the connection's database.
pub async fn create_all_types(conn: &mut mysql_async::Conn, name: &str) {
    conn.query_drop(ALL_TYPES_DDL.replace("{name}", name))
        .await
        .unwrap();
}

/// The VALUES tuple of row `k` (deterministic, the same SQL on both engines).
pub fn row_values(k: u32) -> String {
    let label = ["red", "green", "blue"][(k % 3) as usize];
    format!(
        "({k}, {ti}, {si}, {i}, {bi}, {ub}, {k}.1234, {k}.5, {k}e0 / 3, {k}, '{label}', 'a,c', {y}, \
         '2024-01-01' + INTERVAL {k} DAY, '12:34:56.123456', '2024-05-06 07:08:09.123456', \
         '2024-05-06 07:08:09.654321', 'c{k}', 'v{k}', 'text {k}', X'01020304', \
         UNHEX(CONCAT('00FF', HEX({k}))), REPEAT(X'AB', {k}), \
         '{{\"k\": {k}, \"name\": \"n\", \"list\": [1, 2.5, \"x\"]}}', 'abc')",
        ti = k % 100,
        si = k * 7,
        i = k * 1000 - 5,
        bi = u64::from(k) * 1_000_000_000_000,
        ub = u64::MAX - u64::from(k),
        y = 2000 + k % 150,
    )
}

/// Insert rows `1..=n` into `name`.
pub async fn fill_all_types(conn: &mut mysql_async::Conn, name: &str, n: u32) {
    let rows: Vec<String> = (1..=n).map(row_values).collect();
    conn.query_drop(format!("INSERT INTO `{name}` VALUES {}", rows.join(",")))
        .await
        .unwrap();
}

/// A fresh database `<prefix>_<engine>` on the shared server of `engine`, and a UTC session in
/// it.
pub async fn fresh_db(
    engine: rowshift_testkit::Engine,
    prefix: &str,
) -> (
    std::sync::Arc<rowshift_testkit::TestServer>,
    String,
    mysql_async::Conn,
) {
    let server = rowshift_testkit::TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("{prefix}_{}", engine.name()))
        .await
        .unwrap();
    let c = connect(&server.url_for_db(&db)).await;
    (server, db, c)
}

/// `_t_new`: a copy of table `t` (definition and rows) in the connection's database.
pub async fn copy_t_to_shadow(c: &mut mysql_async::Conn) {
    c.query_drop("CREATE TABLE _t_new LIKE t").await.unwrap();
    c.query_drop("INSERT INTO _t_new SELECT * FROM t")
        .await
        .unwrap();
}

/// A connection to `db` with UTC time zone (TIMESTAMP literals mean the same on every server).
pub async fn connect(url: &str) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c
}

/// Small chunks, two workers: many chunks even on a small table.
pub fn small_chunks() -> VerifyConfig {
    VerifyConfig {
        workers: 2,
        initial_chunk_rows: 7,
        max_chunk_rows: 13,
        ..VerifyConfig::default()
    }
}

/// Verify `db.old` against the shadow `db.new` on the same server.
pub async fn verify_shadow(url: &str, db: &str, old: &str, new: &str) -> VerifyReport {
    let plan = VerifyPlan {
        source: Endpoint::new(url).unwrap(),
        table: TableRef::new(db, old),
        new: NewTable::Shadow(TableRef::new(db, new)),
        mapping: ColumnMapping::Identity,
    };
    verify::run(plan, &mut Standalone, small_chunks())
        .await
        .unwrap()
}

/// Reported rows by their single-column key value.
pub fn by_key(report: &VerifyReport) -> BTreeMap<String, &verify::report::DiffRow> {
    report
        .differences
        .rows
        .iter()
        .map(|r| {
            let key = r.key.0[0].1.clone().unwrap_or_default();
            (key, r)
        })
        .collect()
}
