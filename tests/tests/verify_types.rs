//! The verifier finds every injected difference, by exact key and column, for every column type
//! on both engines; equal tables (including a JSON document whose members were reordered) are GO.

mod verify_support;

use mysql_async::prelude::Queryable;
use rowshift_engine::verify::{DiffKind, Verdict};
use rowshift_testkit::{Engine, TestServer};
use std::collections::BTreeSet;
use verify_support::*;

const ROWS: u32 = 60;

/// Row id → (statement on the new table, the column(s) that must be reported).
fn injections() -> Vec<(u32, &'static str, Vec<&'static str>)> {
    vec![
        (1, "ti = ti + 1", vec!["ti"]),
        (2, "si = si + 1", vec!["si"]),
        (3, "i = i + 1", vec!["i"]),
        (4, "bi = bi + 1", vec!["bi"]),
        (5, "ub = ub - 1", vec!["ub"]),
        (6, "dec1 = dec1 + 0.0001", vec!["dec1"]),
        // 7.5 -> 7.50000048: FLOAT prints both as 7.5; only a widened value shows it.
        (7, "f = 7.5000005", vec!["f"]),
        (8, "d = d + 1e-12", vec!["d"]),
        (9, "b = b'111111111111'", vec!["b"]),
        (10, "e = 'red'", vec!["e"]),
        (11, "st = 'a,b,c'", vec!["st"]),
        (12, "y = 1999", vec!["y"]),
        (13, "dt = dt + INTERVAL 1 DAY", vec!["dt"]),
        (14, "tm = '12:34:56.123457'", vec!["tm"]),
        (15, "dtm = dtm + INTERVAL 1 MICROSECOND", vec!["dtm"]),
        (16, "ts = ts + INTERVAL 1 MICROSECOND", vec!["ts"]),
        (17, "ch = 'x17'", vec!["ch"]),
        (18, "vc = 'v18x'", vec!["vc"]),
        (19, "tx = 'text 19!'", vec!["tx"]),
        (20, "bn = X'01020305'", vec!["bn"]),
        (21, "vb = X'00'", vec!["vb"]),
        (22, "bl = CONCAT(bl, X'00')", vec!["bl"]),
        (
            23,
            "j = '{\"k\": 23, \"name\": \"m\", \"list\": [1, 2.5, \"x\"]}'",
            vec!["j"],
        ),
        // Old side holds NULL here (set before the copy).
        (26, "vc = ''", vec!["vc"]),
        (27, "vc = 'v27 '", vec!["vc"]),
        (28, "ci = 'ABC'", vec!["ci"]),
        // Old side holds ('a#', 'b'): the '#' moves between two strings.
        (30, "vc = 'a', tx = '#b'", vec!["vc", "tx"]),
        // The same shift on two rows of equal length: invisible to BIT_XOR(CRC32(..)).
        (40, "dtm = dtm + INTERVAL 1 HOUR", vec!["dtm"]),
        (41, "dtm = dtm + INTERVAL 1 HOUR", vec!["dtm"]),
    ]
}

async fn every_difference_is_found(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("verify_types_{}", engine.name()))
        .await
        .unwrap();
    let mut c = connect(&server.url_for_db(&db)).await;
    create_all_types(&mut c, "t").await;
    fill_all_types(&mut c, "t", ROWS).await;
    c.query_drop("UPDATE t SET vc = NULL WHERE id = 26")
        .await
        .unwrap();
    c.query_drop("UPDATE t SET vc = 'a#', tx = 'b' WHERE id = 30")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE _t_new LIKE t").await.unwrap();
    c.query_drop("INSERT INTO _t_new SELECT * FROM t")
        .await
        .unwrap();

    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    assert_eq!(report.verdict, Verdict::Go, "{}", report.summary());
    assert_eq!(report.rows_old, u64::from(ROWS));
    assert_eq!(report.rows_new, u64::from(ROWS));
    assert!(report.chunks_checked >= 5, "{}", report.summary());

    for (id, set, _) in injections() {
        c.query_drop(format!("UPDATE _t_new SET {set} WHERE id = {id}"))
            .await
            .unwrap();
    }
    // Semantically equal JSON with its members in another order: not a difference.
    c.query_drop(
        "UPDATE _t_new SET j = '{\"list\": [1, 2.5, \"x\"], \"name\": \"n\", \"k\": 29}' WHERE id = 29",
    )
    .await
    .unwrap();
    c.query_drop("DELETE FROM _t_new WHERE id = 24")
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO _t_new VALUES {}", row_values(1000)))
        .await
        .unwrap();

    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    println!("{}", report.summary());
    assert_eq!(report.verdict, Verdict::NoGo);
    let rows = by_key(&report);
    let mut expected: Vec<String> = injections()
        .iter()
        .map(|(id, _, _)| id.to_string())
        .collect();
    expected.push("24".into());
    expected.push("1000".into());
    expected.sort();
    let mut found: Vec<String> = rows.keys().cloned().collect();
    found.sort();
    assert_eq!(found, expected, "{}", report.summary());
    assert_eq!(report.differences.total, expected.len() as u64);
    for (id, _, columns) in injections() {
        let row = rows[&id.to_string()];
        assert_eq!(row.kind, DiffKind::Changed, "row {id}");
        assert_eq!(row.differing_columns, columns, "row {id}: {row:?}");
    }
    assert_eq!(rows["24"].kind, DiffKind::MissingInNew);
    assert!(rows["24"].new.is_none() && rows["24"].old.is_some());
    assert_eq!(rows["1000"].kind, DiffKind::ExtraInNew);
    assert!(rows["1000"].old.is_none() && rows["1000"].new.is_some());

    // Both sides' values are in the report, exactly.
    let show = |id: &str, col: &str| {
        let r = rows[id];
        (
            r.old.as_ref().unwrap().get(col).unwrap().clone(),
            r.new.as_ref().unwrap().get(col).unwrap().clone(),
        )
    };
    assert_eq!(
        show("15", "dtm"),
        (
            Some("2024-05-06 07:08:09.123456".into()),
            Some("2024-05-06 07:08:09.123457".into())
        )
    );
    assert_eq!(show("26", "vc"), (None, Some(String::new())));
    assert_eq!(show("27", "vc"), (Some("v27".into()), Some("v27 ".into())));
    assert_eq!(show("28", "ci"), (Some("abc".into()), Some("ABC".into())));
    assert_eq!(
        show("20", "bn"),
        (Some("0x01020304".into()), Some("0x01020305".into()))
    );
    let extra = rows["1000"].new.as_ref().unwrap();
    assert_eq!(extra.get("ti"), Some(&Some("0".to_string())));
    assert_eq!(report.rows_old, u64::from(ROWS));
    assert_eq!(report.rows_new, u64::from(ROWS));

    // The JSON document and the HTML page carry the same verdict and keys.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["verdict"], "NO-GO");
    assert_eq!(json["differences"]["total"], expected.len() as u64);
    let html = report.to_html();
    assert!(html.contains("NO-GO") && html.contains("id=15"));
    c.disconnect().await.unwrap();
}

async fn json_member_order_is_go(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("verify_json_{}", engine.name()))
        .await
        .unwrap();
    let mut c = connect(&server.url_for_db(&db)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, j JSON NULL)")
        .await
        .unwrap();
    c.query_drop(
        "INSERT INTO t VALUES (1, '{\"a\": 1, \"bb\": {\"x\": [1, 2.0], \"y\": null}}'), \
         (2, '[1, 1.0, \"s\"]'), (3, NULL), (4, '\"a\\\\u00e9\"')",
    )
    .await
    .unwrap();
    c.query_drop("CREATE TABLE t2 LIKE t").await.unwrap();
    c.query_drop(
        "INSERT INTO t2 VALUES (1, '{\"bb\": {\"y\": null, \"x\": [1, 2.0]}, \"a\": 1}'), \
         (2, '[1,1.0,\"s\"]'), (3, NULL), (4, '\"aé\"')",
    )
    .await
    .unwrap();
    let report = verify_shadow(&server.url(), &db, "t", "t2").await;
    assert_eq!(report.verdict, Verdict::Go, "{}", report.summary());

    // A changed value, and a number whose type changed (1.0 is not 1), are differences.
    c.query_drop(
        "UPDATE t2 SET j = '{\"bb\": {\"y\": null, \"x\": [1, 2.5]}, \"a\": 1}' WHERE id = 1",
    )
    .await
    .unwrap();
    // (MySQL's UPDATE calls [1, 1.0] and [1, 1] equal and changes nothing: re-insert.)
    c.query_drop("DELETE FROM t2 WHERE id = 2").await.unwrap();
    c.query_drop("INSERT INTO t2 VALUES (2, '[1, 1, \"s\"]')")
        .await
        .unwrap();
    let report = verify_shadow(&server.url(), &db, "t", "t2").await;
    assert_eq!(report.verdict, Verdict::NoGo);
    let rows = by_key(&report);
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), vec!["1", "2"]);
    assert_eq!(rows["1"].differing_columns, vec!["j"]);
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_difference_is_found_on_mysql() {
    every_difference_is_found(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_difference_is_found_on_mariadb() {
    every_difference_is_found(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_member_order_is_go_on_mysql() {
    json_member_order_is_go(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_member_order_is_go_on_mariadb() {
    json_member_order_is_go(Engine::MariaDb).await;
}

/// A SET whose definition was reordered (and widened, and moved to another charset) prints the
/// same labels in another order: GO; a really different value, or `''` against NULL, is NO-GO,
/// reported in one label order on both sides.
async fn reordered_set_definition(engine: Engine) {
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("verify_set_order_{}", engine.name()))
        .await
        .unwrap();
    let mut c = connect(&server.url_for_db(&db)).await;
    c.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, \
         s SET('x','y','z','it''s','caf\u{e9}') CHARACTER SET latin1 NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "CREATE TABLE t2 (id INT PRIMARY KEY, \
         s SET('z','caf\u{e9}','y','x','w','it''s') CHARACTER SET utf8mb4 NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO t VALUES (1, ''), (2, 'y,z'), (3, 'x,y,z'), (4, 'it''s,x'), \
         (5, 'caf\u{e9},z'), (6, NULL), (7, 'z')",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO t2 SELECT * FROM t")
        .await
        .unwrap();
    let report = verify_shadow(&server.url(), &db, "t", "t2").await;
    assert_eq!(report.verdict, Verdict::Go, "{}", report.summary());
    assert_eq!(report.rows_new, 7);

    c.query_drop("UPDATE t2 SET s = NULL WHERE id = 1")
        .await
        .unwrap();
    c.query_drop("UPDATE t2 SET s = 'z' WHERE id = 2")
        .await
        .unwrap();
    c.query_drop("UPDATE t2 SET s = 'w,x,y,z' WHERE id = 3")
        .await
        .unwrap();
    c.query_drop("UPDATE t2 SET s = '' WHERE id = 6")
        .await
        .unwrap();
    let report = verify_shadow(&server.url(), &db, "t", "t2").await;
    assert_eq!(report.verdict, Verdict::NoGo, "{}", report.summary());
    let rows = by_key(&report);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec!["1", "2", "3", "6"],
        "{}",
        report.summary()
    );
    let show = |id: &str| {
        let r = rows[id];
        assert_eq!(r.kind, DiffKind::Changed, "row {id}");
        assert_eq!(r.differing_columns, vec!["s"], "row {id}");
        (
            r.old.as_ref().unwrap().get("s").cloned().unwrap(),
            r.new.as_ref().unwrap().get("s").cloned().unwrap(),
        )
    };
    assert_eq!(show("1"), (Some(String::new()), None));
    assert_eq!(show("2"), (Some("y,z".into()), Some("z".into())));
    assert_eq!(show("3"), (Some("x,y,z".into()), Some("w,x,y,z".into())));
    assert_eq!(show("6"), (None, Some(String::new())));
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_set_definition_on_mysql() {
    reordered_set_definition(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_set_definition_on_mariadb() {
    reordered_set_definition(Engine::MariaDb).await;
}

/// The migration's transform on the old side: `--alter` renames/retypes and `--set` fills a new
/// column; the mapping comes from the transform crate's `select_exprs()`.
async fn transform_is_applied_on_the_old_side(engine: Engine) {
    use rowshift_engine::conn::Endpoint;
    use rowshift_engine::verify::{self, NewTable, Standalone, TableRef, VerifyPlan};
    let server = TestServer::shared(engine);
    let db = server
        .fresh_db(&format!("verify_transform_{}", engine.name()))
        .await
        .unwrap();
    let mut c = connect(&server.url_for_db(&db)).await;
    c.query_drop(
        "CREATE TABLE o (id BIGINT PRIMARY KEY, status_code TINYINT NOT NULL, \
         amount DECIMAL(10,2) NULL, note VARCHAR(20) CHARACTER SET latin1 NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO o VALUES (1, 1, 1.50, 'caf\u{e9}'), (2, 2, 2.00, NULL), (3, 1, NULL, 'x')",
    )
    .await
    .unwrap();
    let alter = "ADD COLUMN order_status VARCHAR(16) NULL, MODIFY amount DECIMAL(12,4) NULL, \
                 CHANGE note remark VARCHAR(20) CHARACTER SET utf8mb4 NULL";
    let set = "order_status = CASE status_code WHEN 1 THEN 'packed' ELSE 'new' END";
    c.query_drop("CREATE TABLE _o_new LIKE o").await.unwrap();
    c.query_drop(format!("ALTER TABLE _o_new {alter}"))
        .await
        .unwrap();
    c.query_drop(
        "INSERT INTO _o_new (id, status_code, amount, remark, order_status) \
         SELECT id, status_code, amount, note, \
                CASE status_code WHEN 1 THEN 'packed' ELSE 'new' END FROM o",
    )
    .await
    .unwrap();
    let source = Endpoint::new(&server.url()).unwrap();
    let table = TableRef::new(&db, "o");
    let new = NewTable::Shadow(TableRef::new(&db, "_o_new"));
    let mapping = verify::mapping_for_alter(&source, &table, &new, alter, &[set.to_string()])
        .await
        .unwrap();
    let plan = VerifyPlan {
        source,
        table,
        new,
        mapping,
    };
    let report = verify::run(plan.clone(), &mut Standalone, small_chunks())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Go, "{}", report.summary());
    assert_eq!(report.columns.len(), 5);

    c.query_drop("UPDATE _o_new SET order_status = 'shipped' WHERE id = 2")
        .await
        .unwrap();
    c.query_drop("UPDATE _o_new SET remark = 'cafe' WHERE id = 1")
        .await
        .unwrap();
    let report = verify::run(plan, &mut Standalone, small_chunks())
        .await
        .unwrap();
    let rows = by_key(&report);
    assert_eq!(rows["1"].differing_columns, vec!["remark"]);
    assert_eq!(
        rows["1"].old.as_ref().unwrap().get("remark"),
        Some(&Some("caf\u{e9}".to_string()))
    );
    assert_eq!(rows["2"].differing_columns, vec!["order_status"]);
    assert_eq!(rows.len(), 2);
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_is_applied_on_the_old_side_on_mysql() {
    transform_is_applied_on_the_old_side(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_is_applied_on_the_old_side_on_mariadb() {
    transform_is_applied_on_the_old_side(Engine::MariaDb).await;
}

/// The same bytes changed on two rows of equal length (hour 10 -> 11) cancel in `BIT_XOR(CRC32(..))` (CRC is linear
/// over GF(2)); the verifier's exact `SUM` of the CRCs must still see it. The table is small, so
/// both rows fall into one chunk and nothing else differs.
async fn equal_shift_on_two_rows_is_found(engine: Engine) {
    let (server, db, mut c) = fresh_db(engine, "verify_linear").await;
    c.query_drop(
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, at DATETIME(6) NOT NULL, n INT NOT NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO t VALUES (1, '2026-01-01 10:00:00.000001', 7), (2, '2026-03-04 10:22:33.444444', 8), (3, '2026-05-06 12:00:00', 9)",
    )
    .await
    .unwrap();
    copy_t_to_shadow(&mut c).await;
    c.query_drop("UPDATE _t_new SET at = at + INTERVAL 1 HOUR WHERE id IN (1, 2)")
        .await
        .unwrap();
    // The guard is needed: the XOR of the CRCs is the same on both tables.
    let xor = "SELECT BIT_XOR(CRC32(CONCAT_WS('#', id, at, n)))";
    let old: Option<u64> = c.query_first(format!("{xor} FROM t")).await.unwrap();
    let new: Option<u64> = c.query_first(format!("{xor} FROM _t_new")).await.unwrap();
    assert_eq!(old, new, "BIT_XOR(CRC32) is expected to miss this change");

    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    assert_eq!(report.verdict, Verdict::NoGo, "{}", report.summary());
    let mut found: Vec<String> = by_key(&report).keys().cloned().collect();
    found.sort();
    assert_eq!(found, vec!["1".to_string(), "2".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_shift_on_two_rows_is_found_on_mysql() {
    equal_shift_on_two_rows_is_found(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_shift_on_two_rows_is_found_on_mariadb() {
    equal_shift_on_two_rows_is_found(Engine::MariaDb).await;
}

/// Zero and invalid dates (a non-strict session stores them) hash apart from each other, from
/// valid dates and from NULL, and a microsecond across a second boundary is seen; an equal copy
/// verifies GO. (Guards any cheaper hashing of temporal values: `TO_SECONDS` is NULL for all of
/// these dates, and must not make them collide.)
async fn zero_and_invalid_dates(engine: Engine) {
    let (server, db, mut c) = fresh_db(engine, "verify_zero_dates").await;
    // Zero and invalid dates need a non-strict session.
    c.query_drop("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        .await
        .unwrap();
    c.query_drop(
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, at DATETIME(6) NOT NULL, ts TIMESTAMP(6) NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO t VALUES (1, '0000-00-00 00:00:00', NULL), (2, '2026-02-30 10:00:00', NULL), \
         (3, '2026-01-01 00:00:00.999999', '2026-01-01 00:00:00.999999'), (4, '0000-00-00 00:00:00', '0000-00-00 00:00:00'), \
         (5, '2026-02-31 00:00:00', NULL), (6, '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01')",
    )
    .await
    .unwrap();
    copy_t_to_shadow(&mut c).await;
    let equal = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    assert_eq!(equal.verdict, Verdict::Go, "{}", equal.summary());
    for q in [
        "UPDATE _t_new SET at = '2026-02-30 10:00:00' WHERE id = 1",
        "UPDATE _t_new SET at = '2026-02-31 10:00:00' WHERE id = 2",
        "UPDATE _t_new SET at = '2026-01-01 00:00:01', ts = '2026-01-01 00:00:01' WHERE id = 3",
        "UPDATE _t_new SET ts = NULL WHERE id = 4",
        "UPDATE _t_new SET at = '0000-00-00 00:00:00' WHERE id = 5",
    ] {
        c.query_drop(q).await.unwrap();
    }
    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    assert_eq!(report.verdict, Verdict::NoGo, "{}", report.summary());
    let found: Vec<String> = by_key(&report).keys().cloned().collect();
    assert_eq!(found, ["1", "2", "3", "4", "5"].map(String::from).to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_invalid_dates_on_mysql() {
    zero_and_invalid_dates(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_invalid_dates_on_mariadb() {
    zero_and_invalid_dates(Engine::MariaDb).await;
}

/// Chunks planned by key arithmetic (one integer key column) cover every row whatever the keys'
/// spread: the extremes of the type, negative keys, dense runs, keys a billion apart; rows
/// missing below the old side's smallest key and extra above its largest are found.
async fn integer_keys_with_gaps(engine: Engine, unsigned: bool) {
    let server = TestServer::shared(engine);
    let sign = if unsigned { "u" } else { "s" };
    let db = server
        .fresh_db(&format!("verify_intkeys_{sign}_{}", engine.name()))
        .await
        .unwrap();
    let mut c = connect(&server.url_for_db(&db)).await;
    let (ty, lowest, highest, below_max): (&str, i128, i128, i128) = if unsigned {
        ("BIGINT UNSIGNED", 0, u64::MAX as i128, u64::MAX as i128 - 1)
    } else {
        (
            "BIGINT",
            i64::MIN as i128,
            i64::MAX as i128,
            i64::MAX as i128 - 1,
        )
    };
    c.query_drop(format!(
        "CREATE TABLE t (id {ty} NOT NULL PRIMARY KEY, n INT NOT NULL)"
    ))
    .await
    .unwrap();
    let mut keys: Vec<i128> = vec![lowest, below_max];
    let base: i128 = if unsigned {
        1_000
    } else {
        -1_000_000_000_000_000
    };
    keys.extend((0..60).map(|i| base + i));
    keys.extend((1_000..1_200).filter(|k| k % 7 != 0));
    keys.extend((1..=40).map(|i| 5_000 + i * 1_000_000_000));
    keys.extend([1_i128 << 62, (1 << 62) + 1]);
    keys.sort();
    keys.dedup();
    let values: Vec<String> = keys
        .iter()
        .map(|k| format!("({k}, {})", k.rem_euclid(1000)))
        .collect();
    // The shadow misses a row below the smallest key, has one above the largest, and differs
    // in a dense run and between two keys a billion apart.
    c.query_drop(format!(
        "INSERT INTO t VALUES {}; CREATE TABLE _t_new LIKE t; \
         INSERT INTO _t_new SELECT * FROM t; DELETE FROM _t_new WHERE id = {lowest}; \
         INSERT INTO _t_new VALUES ({highest}, 1); \
         UPDATE _t_new SET n = n + 1 WHERE id IN (1100, 20000005000)",
        values.join(",")
    ))
    .await
    .unwrap();

    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    assert_eq!(report.verdict, Verdict::NoGo, "{}", report.summary());
    assert_eq!(report.rows_old, keys.len() as u64, "{}", report.summary());
    assert!(report.chunks_checked > 3, "{}", report.summary());
    let found: BTreeSet<String> = by_key(&report).keys().cloned().collect();
    let wished: BTreeSet<String> = [lowest, highest, 1100, 20_000_005_000]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(found, wished, "{}", report.summary());
    assert_eq!(report.differences.missing_in_new, 1);
    assert_eq!(report.differences.extra_in_new, 1);
    assert_eq!(report.differences.changed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_keys_with_gaps_on_mysql() {
    integer_keys_with_gaps(Engine::MySql, false).await;
    integer_keys_with_gaps(Engine::MySql, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_keys_with_gaps_on_mariadb() {
    integer_keys_with_gaps(Engine::MariaDb, false).await;
    integer_keys_with_gaps(Engine::MariaDb, true).await;
}

/// A FLOAT key prints with 6 significant digits, so two distinct keys can print alike and the
/// row-by-row narrowing, which matches rows by that text, once found nothing: the phantom row
/// on the new side (a delete the apply missed) was reported GO. Counts and checksums that
/// differ with no differing row found are now a NO-GO.
async fn float_key_phantom_row_is_no_go(engine: Engine) {
    let (server, db, mut c) = fresh_db(engine, "verify_float_key").await;
    c.query_drop("CREATE TABLE t (k FLOAT NOT NULL PRIMARY KEY, v INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (123456.8, 1)")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE t2 LIKE t").await.unwrap();
    c.query_drop("INSERT INTO t2 VALUES (123456.7, 1), (123456.8, 1)")
        .await
        .unwrap();
    let n: u64 = c
        .query_first("SELECT COUNT(DISTINCT k) FROM t2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2, "two distinct keys on the new side");
    let report = verify_shadow(&server.url(), &db, "t", "t2").await;
    assert_eq!(report.verdict, Verdict::NoGo, "{}", report.summary());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("1 rows and the new side 2")),
        "{:?}",
        report.notes
    );
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_key_phantom_row_is_no_go_on_mysql() {
    float_key_phantom_row_is_no_go(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_key_phantom_row_is_no_go_on_mariadb() {
    float_key_phantom_row_is_no_go(Engine::MariaDb).await;
}
