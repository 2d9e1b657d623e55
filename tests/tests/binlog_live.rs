//! The live binlog source against real MySQL 9.7 and MariaDB 10.11 servers: every column type
//! (NULLs, extremes, 4-byte UTF-8, empty strings, zero dates, negative TIME, JSON types)
//! inserted, updated and deleted, and the decoded images compared with what `SELECT` returns;
//! compressed transactions; rows over 16 MB; GTID resume; information_schema fallback; TLS;
//! and the clear errors for unusable settings.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowshift_engine::event::{ColumnDef, RowChange, RowKind, SourceEvent};
use rowshift_engine::position::{GtidState, Position, StartPosition};
use rowshift_engine::source::stream::current_position;
use rowshift_engine::source::{BinlogSource, Flavor, SourceConfig, SourceError, SslMode};
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use rowshift_transform::Value;

type Sel = mysql_async::Value;

fn flavor(e: Engine) -> Flavor {
    match e {
        Engine::MySql => Flavor::MySql,
        Engine::MariaDb => Flavor::MariaDb,
    }
}

async fn conn(server: &TestServer) -> Conn {
    let mut c = Conn::from_url(server.url()).await.unwrap();
    // Raw column bytes back (latin1 stays latin1), TIMESTAMPs in UTC, zero dates allowed.
    c.query_drop("SET time_zone = '+00:00', sql_mode = '', character_set_results = binary")
        .await
        .unwrap();
    c
}

/// Reads every event from `start` to the current end.
async fn read_from(server: &TestServer, start: StartPosition) -> Vec<SourceEvent> {
    let mut cfg = SourceConfig::new(server.url());
    cfg.start = start;
    cfg.until_end = true;
    cfg.ssl_mode = SslMode::Disabled;
    cfg.server_id = 900_000 + rand_id();
    cfg.heartbeat = Duration::from_secs(2);
    let mut src = BinlogSource::connect(cfg).await.unwrap();
    let mut out = Vec::new();
    while let Some(ev) = src.next().await.unwrap() {
        out.push(ev);
    }
    src.close().await;
    out
}

fn rand_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 1000) * 100 + N.fetch_add(1, Ordering::SeqCst)
}

fn rows_of<'a>(events: &'a [SourceEvent], db: &str, table: &str) -> Vec<&'a RowChange> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Rows(r) if &*r.table.schema == db && &*r.table.name == table => Some(r),
            _ => None,
        })
        .collect()
}

/// Days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// True when the decoded `v` is the value `SELECT` returned (binary protocol) for `col`.
fn same(v: &Value, s: &Sel, col: &ColumnDef) -> bool {
    match (v, s) {
        (Value::Null, Sel::NULL) => true,
        (Value::Int(a), Sel::Int(b)) => a == b,
        (Value::Int(a), Sel::UInt(b)) => *a >= 0 && *a as u64 == *b,
        (Value::UInt(a), Sel::UInt(b)) => a == b,
        (Value::UInt(a), Sel::Int(b)) => *b >= 0 && *a == *b as u64,
        (Value::Float(a), Sel::Float(b)) => a.to_bits() == b.to_bits(),
        (Value::Double(a), Sel::Double(b)) => a.to_bits() == b.to_bits(),
        (Value::Decimal(a), Sel::Bytes(b)) => a.as_bytes() == &b[..],
        (Value::Bytes(a), Sel::Bytes(b)) => a == b,
        (Value::Year(a), Sel::Int(b)) => *a as i64 == *b,
        (Value::Year(a), Sel::UInt(b)) => *a as u64 == *b,
        (Value::Bit { bits, .. }, Sel::Bytes(b)) => {
            b.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64) == *bits
        }
        (Value::Enum(i), Sel::Bytes(b)) => match &col.enum_labels {
            Some(_) if *i == 0 => b.is_empty(),
            Some(l) => l.get(*i as usize - 1).is_some_and(|x| x == b),
            None => false,
        },
        (Value::Set(mask), Sel::Bytes(b)) => match &col.set_labels {
            Some(l) => {
                let parts: Vec<&[u8]> = l
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, x)| &x[..])
                    .collect();
                parts.join(&b","[..]) == *b
            }
            None => false,
        },
        (Value::Date { year, month, day }, Sel::Date(y, m, d, 0, 0, 0, 0)) => {
            (*year, *month, *day) == (*y, *m, *d)
        }
        (
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            },
            Sel::Date(y, mo, d, h, mi, s, us),
        ) => {
            (*year, *month, *day, *hour, *minute, *second, *micros)
                == (*y, *mo, *d, *h, *mi, *s, *us)
        }
        (Value::Timestamp { secs, micros }, Sel::Date(y, mo, d, h, mi, s, us)) => {
            if *secs == 0 {
                return (*y, *mo, *d, *h, *mi, *s, *us) == (0, 0, 0, 0, 0, 0, 0) && *micros == 0;
            }
            let days = *secs as i64 / 86_400;
            let rem = *secs as i64 % 86_400;
            let (cy, cm, cd) = civil_from_days(days);
            (cy, cm, cd) == (*y as i64, *mo as u32, *d as u32)
                && rem == *h as i64 * 3600 + *mi as i64 * 60 + *s as i64
                && micros == us
        }
        (
            Value::Time {
                negative,
                hours,
                minutes,
                seconds,
                micros,
            },
            Sel::Time(neg, days, h, mi, s, us),
        ) => {
            let zero = *hours == 0 && *minutes == 0 && *seconds == 0 && *micros == 0;
            (negative == neg || zero)
                && *hours as u32 == days * 24 + *h as u32
                && (minutes, seconds, micros) == (mi, s, us)
        }
        (Value::Json(j), Sel::Bytes(b)) => {
            serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|x| x == *j)
        }
        _ => false,
    }
}

fn assert_image(
    what: &str,
    decoded: &[Value],
    selected: &[Sel],
    cols: &[ColumnDef],
    names: &[String],
) {
    assert_eq!(decoded.len(), selected.len(), "{what}: column count");
    for (i, (v, s)) in decoded.iter().zip(selected).enumerate() {
        assert!(
            same(v, s, &cols[i]),
            "{what}: column {} decoded {v:?} but SELECT returned {s:?}",
            names[i]
        );
    }
}

/// Snapshot of a table: id → values of every column, via the binary protocol.
async fn snapshot(c: &mut Conn, db: &str, table: &str) -> BTreeMap<i64, Vec<Sel>> {
    let rows: Vec<mysql_async::Row> = c
        .exec(format!("SELECT * FROM `{db}`.`{table}` ORDER BY id"), ())
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            let vals = r.unwrap();
            let id = match &vals[0] {
                Sel::Int(i) => *i,
                Sel::UInt(u) => *u as i64,
                other => panic!("id {other:?}"),
            };
            (id, vals)
        })
        .collect()
}

fn column_names(r: &RowChange) -> Vec<String> {
    r.columns
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| c.display_name(i))
        .collect()
}

/// All-types table. MariaDB's JSON is LONGTEXT; BIT(64) and friends as on MySQL.
fn all_types_ddl(engine: Engine) -> String {
    let json = match engine {
        Engine::MySql => "JSON",
        Engine::MariaDb => "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    };
    format!(
        "CREATE TABLE t (
            id INT PRIMARY KEY,
            y YEAR NULL,
            ti TINYINT NULL, tiu TINYINT UNSIGNED NULL,
            si SMALLINT NULL, siu SMALLINT UNSIGNED NULL,
            mi MEDIUMINT NULL, miu MEDIUMINT UNSIGNED NULL,
            i INT NULL, iu INT UNSIGNED NULL,
            bi BIGINT NULL, biu BIGINT UNSIGNED NULL,
            d65 DECIMAL(65,30) NULL, d10 DECIMAL(10,2) NULL, du DECIMAL(5,0) UNSIGNED NULL,
            f FLOAT NULL, dbl DOUBLE NULL,
            b1 BIT(1) NULL, b13 BIT(13) NULL, b64 BIT(64) NULL,
            e ENUM('a','b','it''s') NULL, s SET('x','y','z') NULL,
            dt DATE NULL, tm TIME NULL, tm6 TIME(6) NULL, tm3 TIME(3) NULL,
            dtm DATETIME NULL, dtm6 DATETIME(6) NULL, dtm2 DATETIME(2) NULL,
            ts TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
            c CHAR(10) CHARACTER SET utf8mb4 NULL, c255 CHAR(255) CHARACTER SET utf8mb4 NULL,
            vc VARCHAR(300) CHARACTER SET utf8mb4 NULL, l1 VARCHAR(20) CHARACTER SET latin1 NULL,
            tx TEXT CHARACTER SET utf8mb4 NULL, lt LONGTEXT CHARACTER SET utf8mb4 NULL,
            bn BINARY(8) NULL, vb VARBINARY(100) NULL, bl BLOB NULL, mb MEDIUMBLOB NULL,
            j {json} NULL, g GEOMETRY NULL,
            tm1 TIME(1) NULL, tm2 TIME(2) NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
}

const INSERTS: &[&str] = &[
    // all NULL
    "INSERT INTO t (id) VALUES (1)",
    // minimum values
    "INSERT INTO t VALUES (2, 1901, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
        -9223372036854775808, 0,
        -99999999999999999999999999999999999.999999999999999999999999999999, -99999999.99, 0,
        -3.40282E+38, -1.7976931348623157E+308,
        b'0', b'0', b'0',
        'a', '', '1000-01-01', '-838:59:59', '-838:59:59.000000', '-00:00:00.001',
        '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000', '1000-01-01 00:00:00.01',
        '1970-01-01 00:00:01', '1970-01-01 00:00:01.000001',
        '', '', '', '', '', '', x'00', x'', x'', x'', '[]', ST_GeomFromText('POINT(0 0)'), '-838:59:59.0', '-00:00:00.01')",
    // maximum values
    "INSERT INTO t VALUES (3, 2155, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647,
        4294967295, 9223372036854775807, 18446744073709551615,
        99999999999999999999999999999999999.999999999999999999999999999999, 99999999.99, 99999,
        3.40282E+38, 1.7976931348623157E+308,
        b'1', b'1111111111111', b'1111111111111111111111111111111111111111111111111111111111111111',
        'it''s', 'x,y,z', '9999-12-31', '838:59:59', '838:59:59.000000', '838:59:59.999',
        '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.99',
        '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999',
        'abcdefghij', REPEAT('é', 255), REPEAT('x', 300), 'Ünïcödé',
        REPEAT('t', 60000), REPEAT('L', 100000), x'0102030405060708', REPEAT(x'ff', 100),
        REPEAT(x'00ff', 30000), REPEAT(x'ab', 70000),
        '{\"a\": 1.0, \"b\": 1, \"c\": [true, false, null, \"x\"], \"d\": {\"e\": 1.5e300, \"f\": -7}, \"u\": 18446744073709551615}',
        ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'), '838:59:59.9', '-00:00:01.50')",
    // special: 4-byte UTF-8, zero dates, trailing zero bytes in BINARY, negative small TIME
    "INSERT INTO t (id, dt, dtm, ts, tm, tm6, c, vc, tx, l1, bn, e, s, j, y, d10, f, dbl, b13, tm1, tm2)
        VALUES (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '-00:00:01',
        '-12:34:56.789012', '😀', 'a😀b', '𝄞 music', 'café', x'61', '', 'x,z',
        '{\"k\": \"😀\", \"n\": null, \"big\": 12345678901234567890}', 0, 0.5, 0.1, 0.1, b'1010',
        '-00:00:00.5', '-12:00:00.99')",
];

const UPDATES: &[&str] = &[
    "UPDATE t SET ti = ti + 1, vc = CONCAT(vc, '!'), j = '{\"changed\": true}' WHERE id = 2",
    "UPDATE t SET y = 2000, e = 'b', s = 'y', tm = '00:00:00', bn = x'0000' WHERE id = 1",
    "UPDATE t SET ti = NULL, lt = NULL, mb = NULL, j = NULL, g = NULL WHERE id = 3",
];

const DELETES: &[&str] = &["DELETE FROM t WHERE id IN (2, 4)"];

/// Runs the round trip on `server` in database `db`.
async fn round_trip(server: &TestServer, db: &str) {
    server.fresh_db(db).await.unwrap();
    let mut c = conn(server).await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop(all_types_ddl(server.engine())).await.unwrap();
    let start = current_position(&mut c, flavor(server.engine()))
        .await
        .unwrap();
    for q in INSERTS {
        c.query_drop(*q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    let s1 = snapshot(&mut c, db, "t").await;
    for q in UPDATES {
        c.query_drop(*q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    let s2 = snapshot(&mut c, db, "t").await;
    for q in DELETES {
        c.query_drop(*q).await.unwrap();
    }
    // One transaction of several row events (in one TRANSACTION_PAYLOAD when compressed).
    c.query_drop(
        "CREATE TABLE m (id INT PRIMARY KEY, v INT); INSERT INTO m VALUES (1, 0), (2, 0), (3, 0); \
         BEGIN; UPDATE m SET v = 1 WHERE id = 1; UPDATE m SET v = 2 WHERE id = 2; \
         INSERT INTO m VALUES (4, 4), (5, 5); DELETE FROM m WHERE id = 3; COMMIT",
    )
    .await
    .unwrap();
    let events = read_from(
        server,
        StartPosition::File {
            file: start.file.clone(),
            offset: start.offset,
        },
    )
    .await;
    let rows = rows_of(&events, db, "t");
    assert_eq!(rows.len(), INSERTS.len() + UPDATES.len() + 2, "{events:#?}");
    for r in &rows {
        let names = column_names(r);
        assert_eq!(names[0], "id", "column names known");
        let cols = &r.columns.columns;
        let id = match &r.before.as_ref().or(r.after.as_ref()).unwrap()[0] {
            Value::Int(i) => *i,
            other => panic!("{other:?}"),
        };
        let what = format!("{:?} id={id} on {:?}", r.kind, server.engine());
        match r.kind {
            RowKind::Insert => {
                assert_image(&what, r.after.as_ref().unwrap(), &s1[&id], cols, &names)
            }
            RowKind::Update => {
                assert_image(&what, r.before.as_ref().unwrap(), &s1[&id], cols, &names);
                assert_image(&what, r.after.as_ref().unwrap(), &s2[&id], cols, &names);
            }
            RowKind::Delete => {
                assert_image(&what, r.before.as_ref().unwrap(), &s2[&id], cols, &names)
            }
        }
    }
    // Types are exact, not guessed: spot checks of the extremes.
    let max = rows[2].after.as_ref().unwrap();
    assert_eq!(max[11], Value::UInt(u64::MAX));
    assert_eq!(max[10], Value::Int(i64::MAX));
    assert_eq!(
        max[12],
        Value::Decimal("99999999999999999999999999999999999.999999999999999999999999999999".into())
    );
    let min = rows[1].after.as_ref().unwrap();
    assert_eq!(min[10], Value::Int(i64::MIN));
    assert_eq!(
        min[23],
        Value::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 0
        }
    );
    let special = rows[3].after.as_ref().unwrap();
    assert_eq!(special[31], Value::Bytes("😀".as_bytes().to_vec()));
    assert_eq!(
        special[22],
        Value::Date {
            year: 0,
            month: 0,
            day: 0
        }
    );
    assert_eq!(
        special[37],
        Value::Bytes(b"a\0\0\0\0\0\0\0".to_vec()),
        "BINARY(8) padded"
    );
    assert_eq!(
        special[34],
        Value::Bytes(b"caf\xe9".to_vec()),
        "latin1 bytes"
    );
    if server.engine() == Engine::MySql {
        if let Value::Json(j) = &max[41] {
            assert!(j["a"].is_f64(), "JSON 1.0 stays a double: {j}");
            assert!(
                j["b"].is_u64() || j["b"].is_i64(),
                "JSON 1 stays an integer: {j}"
            );
        } else {
            panic!("{:?}", max[41]);
        }
    }
    // Every row change has a position of its own, in stream order: consumers dedupe and
    // resume by it (sync skips a change at or before the last one it sent).
    let coords: Vec<(String, u64, u32)> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Rows(r) => Some((r.pos.file.to_string(), r.pos.offset, r.pos.row)),
            _ => None,
        })
        .collect();
    for w in coords.windows(2) {
        assert!(w[0] < w[1], "row positions {:?} then {:?}", w[0], w[1]);
    }
    assert_eq!(
        rows_of(&events, db, "m").len(),
        3 + 2 + 2 + 1,
        "the multi-statement transaction's rows"
    );
    // Every change carries a position; commits are in order.
    let commits: Vec<&Position> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Commit { pos, .. } => Some(pos),
            _ => None,
        })
        .collect();
    assert!(commits.len() >= INSERTS.len() + UPDATES.len() + DELETES.len());
    for w in commits.windows(2) {
        assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_all_types_mysql() {
    let server = TestServer::shared(Engine::MySql);
    round_trip(&server, "binlog_rt_mysql").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_all_types_mariadb() {
    let server = TestServer::shared(Engine::MariaDb);
    round_trip(&server, "binlog_rt_mariadb").await;
}

/// `binlog_transaction_compression=ON`: the same round trip through TRANSACTION_PAYLOAD
/// events, plus a 20 MB row.
#[tokio::test(flavor = "multi_thread")]
async fn round_trip_compressed_transactions_mysql() {
    let server = TestServer::dedicated(
        Engine::MySql,
        ServerOptions {
            extra_args: vec![
                "--binlog-transaction-compression=ON".into(),
                "--max-allowed-packet=256M".into(),
            ],
        },
    )
    .unwrap();
    round_trip(&server, "binlog_rt_zstd").await;
    large_row(&server, "binlog_big_zstd").await;
}

/// Rows over 16 MB span several protocol packets.
async fn large_row(server: &TestServer, db: &str) {
    server.fresh_db(db).await.unwrap();
    let mut c = conn(server).await;
    c.query_drop("SET GLOBAL max_allowed_packet = 268435456")
        .await
        .unwrap();
    drop(c);
    let mut c = conn(server).await;
    c.query_drop(format!(
        "CREATE TABLE `{db}`.big (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT)"
    ))
    .await
    .unwrap();
    let start = current_position(&mut c, flavor(server.engine()))
        .await
        .unwrap();
    let blob: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let text = "ü".repeat(5_000_000);
    c.exec_drop(
        format!("INSERT INTO `{db}`.big VALUES (1, ?, ?)"),
        (blob.clone(), text.clone()),
    )
    .await
    .unwrap();
    c.exec_drop(format!("UPDATE `{db}`.big SET id = 2 WHERE id = 1"), ())
        .await
        .unwrap();
    let events = read_from(
        server,
        StartPosition::File {
            file: start.file,
            offset: start.offset,
        },
    )
    .await;
    let rows = rows_of(&events, db, "big");
    assert_eq!(rows.len(), 2);
    let after = rows[0].after.as_ref().unwrap();
    assert_eq!(after[1], Value::Bytes(blob.clone()));
    assert_eq!(after[2], Value::Bytes(text.clone().into_bytes()));
    let upd = rows[1];
    assert_eq!(upd.before.as_ref().unwrap()[1], Value::Bytes(blob.clone()));
    assert_eq!(upd.after.as_ref().unwrap()[0], Value::Int(2));
    assert_eq!(upd.after.as_ref().unwrap()[1], Value::Bytes(blob));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_rows_mysql() {
    let server = TestServer::shared(Engine::MySql);
    large_row(&server, "binlog_big_mysql").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_rows_mariadb() {
    let server = TestServer::shared(Engine::MariaDb);
    large_row(&server, "binlog_big_mariadb").await;
}

/// Starting from the GTID state after transaction A yields B and C, not A.
async fn gtid_resume(server: &TestServer, db: &str) {
    server.fresh_db(db).await.unwrap();
    let mut c = conn(server).await;
    c.query_drop(format!(
        "CREATE TABLE `{db}`.g (id INT PRIMARY KEY, v VARCHAR(10))"
    ))
    .await
    .unwrap();
    let before = current_position(&mut c, flavor(server.engine()))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.g VALUES (1, 'a')"))
        .await
        .unwrap();
    let after_a = current_position(&mut c, flavor(server.engine()))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.g VALUES (2, 'b')"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.g VALUES (3, 'c')"))
        .await
        .unwrap();
    assert!(after_a.gtid.is_known(), "{after_a:?}");

    // The commit position of A, as the source reports it, is the resume point.
    let events = read_from(
        server,
        StartPosition::File {
            file: before.file.clone(),
            offset: before.offset,
        },
    )
    .await;
    let commit_a = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Commit { pos, .. } => Some(pos.clone()),
            _ => None,
        })
        .next()
        .unwrap();
    assert_eq!(
        commit_a.gtid, after_a.gtid,
        "commit position carries the GTID state"
    );
    assert_eq!(commit_a.offset, after_a.offset);
    assert_eq!(commit_a.file, after_a.file);

    let resumed = read_from(server, StartPosition::Gtid(commit_a.gtid.clone())).await;
    let ids: Vec<Value> = rows_of(&resumed, db, "g")
        .iter()
        .map(|r| r.after.as_ref().unwrap()[0].clone())
        .collect();
    assert_eq!(ids, vec![Value::Int(2), Value::Int(3)]);
    // GTIDs of the resumed stream extend the start state.
    let last = resumed
        .iter()
        .rev()
        .find_map(|e| match e {
            SourceEvent::Commit { pos, .. } => Some(pos.clone()),
            _ => None,
        })
        .unwrap();
    assert!(commit_a < last);
    match (&last.gtid, server.engine()) {
        (GtidState::MySql(_), Engine::MySql) | (GtidState::MariaDb(_), Engine::MariaDb) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gtid_resume_mysql() {
    // A server of its own: the test compares the server's position right after its insert with
    // the commit position the stream reports, which a concurrent test's commit would move.
    let server = TestServer::dedicated(Engine::MySql, ServerOptions::default()).unwrap();
    gtid_resume(&server, "binlog_gtid_mysql").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gtid_resume_mariadb() {
    // A server of its own: the test compares the server's position right after its insert with
    // the commit position the stream reports, which a concurrent test's commit would move.
    let server = TestServer::dedicated(Engine::MariaDb, ServerOptions::default()).unwrap();
    gtid_resume(&server, "binlog_gtid_mariadb").await;
}

/// A stream resumed at the end of a binlog file that ends without a ROTATE (the server was
/// killed; its restart opened the next file) must deliver every event of the next file, whose
/// offsets start again at 4. On MySQL with GTIDs a `file:offset` start reads the file from its
/// start to learn the GTID state and skips the events below the offset: those of the *next*
/// file were once skipped too, so a run that reconnected after a crash lost the writes made
/// after the restart (up to the old file's length).
async fn resume_at_the_end_of_a_crashed_file(engine: Engine) {
    let server = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let db = server.fresh_db("binlog_crashed_file").await.unwrap();
    let mut c = conn(&server).await;
    c.query_drop(format!(
        "CREATE TABLE `{db}`.k (id INT PRIMARY KEY, pad VARCHAR(200))"
    ))
    .await
    .unwrap();
    // Make the old file long, so that the next file's first transactions lie below its end.
    for i in 0..100 {
        c.query_drop(format!(
            "INSERT INTO `{db}`.k VALUES ({i}, REPEAT('x', 200))"
        ))
        .await
        .unwrap();
    }
    let end_of_old = current_position(&mut c, flavor(engine)).await.unwrap();
    assert!(end_of_old.offset > 10_000, "{end_of_old:?}");
    drop(c);
    server.kill();
    server.start().unwrap();
    let mut c = conn(&server).await;
    for i in 1000..1005 {
        c.query_drop(format!("INSERT INTO `{db}`.k VALUES ({i}, 'after')"))
            .await
            .unwrap();
    }
    let now = current_position(&mut c, flavor(engine)).await.unwrap();
    assert_ne!(now.file, end_of_old.file, "the restart opened a new file");
    assert!(
        now.offset < end_of_old.offset,
        "the new file's writes lie below the old file's end: {now:?} vs {end_of_old:?}"
    );
    let events = read_from(
        &server,
        StartPosition::File {
            file: end_of_old.file.clone(),
            offset: end_of_old.offset,
        },
    )
    .await;
    let ids: Vec<Value> = rows_of(&events, &db, "k")
        .iter()
        .map(|r| r.after.as_ref().unwrap()[0].clone())
        .collect();
    assert_eq!(
        ids,
        (1000..1005).map(Value::Int).collect::<Vec<_>>(),
        "every write after the restart, none before it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_at_the_end_of_a_crashed_file_mysql() {
    resume_at_the_end_of_a_crashed_file(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_at_the_end_of_a_crashed_file_mariadb() {
    resume_at_the_end_of_a_crashed_file(Engine::MariaDb).await;
}

/// A position in a purged binlog file is a definite error with what to do, not a reconnect
/// loop: the server answers every new dump request with the same error 1236 (which once
/// counted as a lost connection, so migrate and sync retried it until their timeout).
async fn purged_position_is_a_definite_error(engine: Engine) {
    use futures_util::StreamExt;
    use rowshift_engine::source::reconnect;
    let server = TestServer::dedicated(engine, ServerOptions::default()).unwrap();
    let db = server.fresh_db("binlog_purged").await.unwrap();
    let mut c = conn(&server).await;
    c.query_drop(format!("CREATE TABLE `{db}`.p (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.p VALUES (1)"))
        .await
        .unwrap();
    let old = current_position(&mut c, flavor(engine)).await.unwrap();
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.p VALUES (2)"))
        .await
        .unwrap();
    // MariaDB keeps a file until its binlog checkpoint moved on: purge until it is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = current_position(&mut c, flavor(engine)).await.unwrap();
        assert_ne!(now.file, old.file);
        c.query_drop(format!("PURGE BINARY LOGS TO '{}'", now.file))
            .await
            .unwrap();
        let files: Vec<String> = c
            .query::<mysql_async::Row, _>("SHOW BINARY LOGS")
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| r.get::<String, _>(0))
            .collect();
        if !files.contains(&old.file.to_string()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is never purged: {files:?}",
            old.file
        );
        c.query_drop("FLUSH BINARY LOGS").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut cfg = SourceConfig::new(server.url());
    cfg.ssl_mode = SslMode::Disabled;
    cfg.server_id = 900_000 + rand_id();
    cfg.heartbeat = Duration::from_secs(2);
    // A reconnect timeout far longer than the test's deadline: only a definite error ends it.
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        match reconnect::open(cfg, &old, Duration::from_secs(3600)).await {
            Err(e) => reconnect::error_chain(&e),
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break reconnect::error_chain(&e),
                    None => break "the stream ended".to_string(),
                }
            },
        }
    })
    .await
    .expect("a purged position must fail, not reconnect forever");
    assert!(
        outcome.contains("cannot be resumed from") || outcome.contains("purged"),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purged_position_is_a_definite_error_mysql() {
    purged_position_is_a_definite_error(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purged_position_is_a_definite_error_mariadb() {
    purged_position_is_a_definite_error(Engine::MariaDb).await;
}

/// Without `binlog_row_metadata=FULL` names, signedness and labels come from
/// information_schema, and the round trip still holds.
async fn minimal_metadata(engine: Engine) {
    let server = TestServer::dedicated(
        engine,
        ServerOptions {
            extra_args: vec!["--binlog-row-metadata=MINIMAL".into()],
        },
    )
    .unwrap();
    round_trip(&server, "binlog_rt_minimal").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_metadata_uses_information_schema_mysql() {
    minimal_metadata(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_metadata_uses_information_schema_mariadb() {
    minimal_metadata(Engine::MariaDb).await;
}

/// A session writing in STATEMENT format or with a MINIMAL row image makes the source fail
/// with an error naming the setting.
async fn unusable_sessions(server: &TestServer, db: &str) {
    server.fresh_db(db).await.unwrap();
    let mut c = conn(server).await;
    c.query_drop(format!(
        "CREATE TABLE `{db}`.u (id INT PRIMARY KEY, a INT, b INT)"
    ))
    .await
    .unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.u VALUES (1, 1, 1)"))
        .await
        .unwrap();
    for (setting, expect) in [
        ("binlog_row_image = 'MINIMAL'", "binlog_row_image=FULL"),
        ("binlog_format = 'STATEMENT'", "binlog_format=ROW"),
    ] {
        let start = current_position(&mut c, flavor(server.engine()))
            .await
            .unwrap();
        let mut w = conn(server).await;
        w.query_drop(format!("SET SESSION {setting}"))
            .await
            .unwrap();
        w.query_drop(format!("UPDATE `{db}`.u SET a = a + 1 WHERE id = 1"))
            .await
            .unwrap();
        drop(w);
        let mut cfg = SourceConfig::new(server.url());
        cfg.start = StartPosition::File {
            file: start.file,
            offset: start.offset,
        };
        cfg.until_end = true;
        cfg.ssl_mode = SslMode::Disabled;
        cfg.server_id = 910_000 + rand_id();
        let mut src = BinlogSource::connect(cfg).await.unwrap();
        let err = loop {
            match src.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{setting}: no error"),
                Err(e) => break e,
            }
        };
        assert!(!err.is_transient());
        assert!(err.to_string().contains(expect), "{setting}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_sessions_are_clear_errors_mysql() {
    // A server of its own: the statement-format and MINIMAL-image events it writes make every
    // stream that reads through them fail, and the other tests of this binary read the shared
    // server's binlog at the same time.
    let server = TestServer::dedicated(Engine::MySql, ServerOptions::default()).unwrap();
    unusable_sessions(&server, "binlog_bad_mysql").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_sessions_are_clear_errors_mariadb() {
    // A server of its own: the statement-format and MINIMAL-image events it writes make every
    // stream that reads through them fail, and the other tests of this binary read the shared
    // server's binlog at the same time.
    let server = TestServer::dedicated(Engine::MariaDb, ServerOptions::default()).unwrap();
    unusable_sessions(&server, "binlog_bad_mariadb").await;
}

/// A server without a binary log is refused by preflight with the fix in the message.
#[tokio::test(flavor = "multi_thread")]
async fn server_without_binlog_is_refused() {
    let server = TestServer::dedicated(
        Engine::MariaDb,
        ServerOptions {
            extra_args: vec!["--skip-log-bin".into()],
        },
    )
    .unwrap();
    let mut cfg = SourceConfig::new(server.url());
    cfg.ssl_mode = SslMode::Disabled;
    let err = match BinlogSource::connect(cfg).await {
        Ok(_) => panic!("connected to a server without binlog"),
        Err(e) => e,
    };
    assert!(matches!(err, SourceError::Preflight(_)), "{err}");
    assert!(err.to_string().contains("log_bin"), "{err}");
}

/// TLS with `ssl-mode=required` against MySQL's auto-generated certificate; verify-identity
/// refuses that self-signed certificate.
#[tokio::test(flavor = "multi_thread")]
async fn tls_modes_mysql() {
    let server = TestServer::shared(Engine::MySql);
    let db = "binlog_tls_mysql";
    server.fresh_db(db).await.unwrap();
    let mut c = conn(&server).await;
    c.query_drop(format!("CREATE TABLE `{db}`.s (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let start = current_position(&mut c, Flavor::MySql).await.unwrap();
    c.query_drop(format!("INSERT INTO `{db}`.s VALUES (7)"))
        .await
        .unwrap();
    let mut cfg = SourceConfig::new(server.url());
    cfg.start = StartPosition::File {
        file: start.file.clone(),
        offset: start.offset,
    };
    cfg.until_end = true;
    cfg.ssl_mode = SslMode::Required;
    cfg.server_id = 920_000 + rand_id();
    let mut src = BinlogSource::connect(cfg.clone()).await.unwrap();
    let mut got = Vec::new();
    while let Some(ev) = src.next().await.unwrap() {
        got.push(ev);
    }
    assert_eq!(rows_of(&got, db, "s").len(), 1);
    let mut tls: Conn =
        rowshift_engine::source::stream::connect(&server.url(), SslMode::Required, None)
            .await
            .unwrap();
    let cipher: Option<(String, String)> = tls
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    assert!(!cipher.unwrap().1.is_empty(), "the connection uses TLS");

    cfg.ssl_mode = SslMode::VerifyIdentity;
    cfg.server_id = 920_000 + rand_id();
    assert!(
        BinlogSource::connect(cfg).await.is_err(),
        "a self-signed certificate must not pass verify-identity"
    );
}

/// An idle `--stop-never` stream receives heartbeats (the source's liveness check depends on
/// them) and reports the server's coordinate.
async fn heartbeats(server: &TestServer) {
    let mut cfg = SourceConfig::new(server.url());
    cfg.ssl_mode = SslMode::Disabled;
    cfg.until_end = false;
    cfg.heartbeat = Duration::from_millis(500);
    cfg.server_id = 930_000 + rand_id();
    let mut src = BinlogSource::connect(cfg).await.unwrap();
    let mut seen = 0;
    while seen < 2 {
        match src.next().await.unwrap() {
            Some(SourceEvent::Heartbeat { pos }) => {
                assert!(pos.offset >= 4, "{pos}");
                seen += 1;
            }
            Some(_) => {}
            None => panic!("stream ended"),
        }
    }
    src.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_mysql() {
    heartbeats(&TestServer::shared(Engine::MySql)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_mariadb() {
    heartbeats(&TestServer::shared(Engine::MariaDb)).await;
}

/// MySQL `binlog_row_value_options=PARTIAL_JSON`: JSON_SET/REPLACE/REMOVE/ARRAY_INSERT updates
/// logged as diffs are applied to the before image and equal what SELECT returns.
#[tokio::test(flavor = "multi_thread")]
async fn partial_json_updates_mysql() {
    let server = TestServer::shared(Engine::MySql);
    let db = "binlog_pjson_mysql";
    server.fresh_db(db).await.unwrap();
    let mut c = conn(&server).await;
    c.query_drop(format!(
        "CREATE TABLE `{db}`.p (id INT PRIMARY KEY, j JSON, k INT)"
    ))
    .await
    .unwrap();
    c.query_drop(format!(
        "INSERT INTO `{db}`.p VALUES (1, '{{\"a\": 1, \"b\": [1, 2, 3], \"c\": {{\"d\": \"x\"}}, \"long\": \"{}\"}}', 0)",
        "y".repeat(200)
    ))
    .await
    .unwrap();
    let start = current_position(&mut c, Flavor::MySql).await.unwrap();
    c.query_drop("SET SESSION binlog_row_value_options = 'PARTIAL_JSON'")
        .await
        .unwrap();
    let updates = [
        "UPDATE p SET j = JSON_SET(j, '$.a', 5) WHERE id = 1",
        "UPDATE p SET j = JSON_REPLACE(j, '$.c.d', 'zz') WHERE id = 1",
        "UPDATE p SET j = JSON_REMOVE(j, '$.b[1]') WHERE id = 1",
        "UPDATE p SET j = JSON_ARRAY_INSERT(j, '$.b[0]', 0) WHERE id = 1",
        "UPDATE p SET j = JSON_SET(j, '$.new', 1.5), k = k + 1 WHERE id = 1",
    ];
    let mut snaps = Vec::new();
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    for q in updates {
        c.query_drop(q).await.unwrap();
        snaps.push(snapshot(&mut c, db, "p").await[&1].clone());
    }
    let events = read_from(
        &server,
        StartPosition::File {
            file: start.file,
            offset: start.offset,
        },
    )
    .await;
    let rows = rows_of(&events, db, "p");
    assert_eq!(rows.len(), updates.len());
    for (r, snap) in rows.iter().zip(&snaps) {
        let names = column_names(r);
        assert_image(
            "partial JSON update",
            r.after.as_ref().unwrap(),
            snap,
            &r.columns.columns,
            &names,
        );
    }
}

/// An XA branch prepared and not yet ended holds the restart point back: every commit after
/// the `XA PREPARE` names, as `resume`, the commit before the branch. A stream restarted there
/// reads the branch again and undoes it at `XA ROLLBACK`; one restarted after the prepare (the
/// commit's own position) has nothing to undo with.
async fn xa_resume_point(server: &TestServer, db: &str) {
    let mut c = conn(server).await;
    c.query_drop(format!(
        "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.x (id INT PRIMARY KEY, s VARCHAR(10) NOT NULL); \
         INSERT INTO `{db}`.x VALUES (1, 'one')"
    ))
    .await
    .unwrap();
    let before = current_position(&mut c, flavor(server.engine()))
        .await
        .unwrap();
    let file = |p: &Position| StartPosition::File {
        file: p.file.clone(),
        offset: p.offset,
    };
    for q in [
        "XA START 'rsresume'".to_string(),
        format!("UPDATE `{db}`.x SET s = 'xa' WHERE id = 1"),
        format!("INSERT INTO `{db}`.x VALUES (2, 'xa')"),
        "XA END 'rsresume'".to_string(),
        "XA PREPARE 'rsresume'".to_string(),
    ] {
        c.query_drop(q).await.unwrap();
    }
    let mut other = conn(server).await;
    other
        .query_drop(format!("INSERT INTO `{db}`.x VALUES (3, 'after')"))
        .await
        .unwrap();

    // The commit of row 3 (after the prepare) holds the restart point before the branch.
    let events = read_from(server, file(&before)).await;
    let row3_at = rows_of(&events, db, "x")
        .iter()
        .find(|r| r.after.as_ref().is_some_and(|a| a[0] == Value::Int(3)))
        .map(|r| r.pos.clone())
        .expect("row 3 in the binlog");
    let (commit3, resume) = events
        .iter()
        .find_map(|e| match e {
            SourceEvent::Commit { pos, resume, .. }
                if (pos.file.as_str(), pos.offset) > (&*row3_at.file, row3_at.offset) =>
            {
                Some((pos.clone(), resume.clone()))
            }
            _ => None,
        })
        .expect("the commit of row 3");
    let resume = *resume.expect("an open XA branch holds the restart point back");
    assert!(
        resume >= before && resume < commit3,
        "{resume:?} vs {commit3:?}"
    );

    c.query_drop("XA ROLLBACK 'rsresume'").await.unwrap();
    // A one-phase commit keeps nothing (MySQL logs it as an XA_PREPARE event).
    c.query_drop(format!(
        "XA START 'rsone'; INSERT INTO `{db}`.x VALUES (4, 'one'); XA END 'rsone'; \
         XA COMMIT 'rsone' ONE PHASE"
    ))
    .await
    .unwrap();
    // Restarted before the branch: its rows, then their undo at the rollback (newest first),
    // and no restart point held back after it.
    let again = read_from(server, file(&resume)).await;
    let kinds: Vec<(RowKind, Value)> = rows_of(&again, db, "x")
        .iter()
        .map(|r| {
            let img = r.after.as_ref().or(r.before.as_ref()).unwrap();
            (r.kind, img[0].clone())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (RowKind::Update, Value::Int(1)),
            (RowKind::Insert, Value::Int(2)),
            (RowKind::Insert, Value::Int(3)),
            (RowKind::Delete, Value::Int(2)),
            (RowKind::Update, Value::Int(1)),
            (RowKind::Insert, Value::Int(4)),
        ]
    );
    let undo = rows_of(&again, db, "x")[4];
    assert_eq!(
        undo.after.as_ref().unwrap()[1],
        Value::Bytes(b"one".to_vec())
    );
    let last = again.iter().rev().find_map(|e| match e {
        SourceEvent::Commit { resume, .. } => Some(resume.clone()),
        _ => None,
    });
    assert_eq!(last, Some(None), "the branches ended: nothing held back");
    // Restarted after the prepare, the rollback finds nothing kept to undo.
    let late = read_from(server, file(&commit3)).await;
    let ids: Vec<RowKind> = rows_of(&late, db, "x").iter().map(|r| r.kind).collect();
    assert_eq!(
        ids,
        vec![RowKind::Insert],
        "only the one-phase branch's row"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn xa_resume_point_mysql() {
    let server = TestServer::shared(Engine::MySql);
    xa_resume_point(&server, "binlog_xa_resume_mysql").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn xa_resume_point_mariadb() {
    let server = TestServer::shared(Engine::MariaDb);
    xa_resume_point(&server, "binlog_xa_resume_mariadb").await;
}
