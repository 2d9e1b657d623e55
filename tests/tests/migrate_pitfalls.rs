//! The ways binlog migrations lose or corrupt data (design.md section 8), one test each, on
//! both engines. Every test migrates under a writer that produces exactly the dangerous kind
//! of change while the copy and the binlog apply run, and compares the result byte for byte
//! with a plain `ALTER TABLE` of the same writes (see `migrate_support`).

mod migrate_support;

use migrate_support::*;
use mysql_async::prelude::Queryable;
use rand::rngs::SmallRng;
use rand::Rng;
use rowshift_testkit::both_engines;
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::sync::Arc;

const ROWS: u64 = 3_000;

/// 'A' and 'a' are one key under a case-insensitive collation: case-only key changes, and a
/// delete plus an insert of the same key in another case, inside one transaction. Routing or
/// collapsing on raw bytes reorders them and loses or resurrects rows.
async fn case_insensitive_primary_key(engine: Engine) {
    let db = setup(engine, "pit_ci_key").await;
    db.exec(&["CREATE TABLE t (k VARCHAR(16) NOT NULL PRIMARY KEY, v INT NOT NULL, note VARCHAR(20) NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]).await;
    let key = |i: u64| {
        if i.is_multiple_of(50) {
            format!("Été{i:05}")
        } else {
            format!("Key{i:05}")
        }
    };
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| format!("('{}', {i}, 'n{i}')", key(i))),
    )
    .await;
    Scenario::new(&db, "t", "ADD COLUMN x INT NOT NULL DEFAULT 0")
        .run(Box::new(move |rng: &mut SmallRng, _| {
            let i = rng.random_range(1..=ROWS);
            let k = key(i);
            let v: i32 = rng.random_range(-1000..1000);
            match rng.random_range(0..7) {
                // The key's case flipped and flipped back in one transaction: routed by bytes,
                // 'KEY' and 'key' would land on two appliers and one of them would delete the
                // row after the other re-wrote it.
                4 => {
                    let (lo, hi) = (key(i), key(i + 40));
                    vec![
                        format!("UPDATE {{t}} SET k = UPPER(k) WHERE k BETWEEN '{lo}' AND '{hi}'"),
                        format!("UPDATE {{t}} SET k = LOWER(k), v = {v} WHERE k BETWEEN '{lo}' AND '{hi}'"),
                    ]
                }
                // The same row, its key bytes in another case (old and new key equal under the
                // collation), and a second change of it in the same transaction.
                0 => vec![
                    format!("UPDATE {{t}} SET k = UPPER(k), v = {v} WHERE k = '{k}'"),
                    format!(
                        "UPDATE {{t}} SET v = v + 1 WHERE k = '{}'",
                        k.to_lowercase()
                    ),
                ],
                1 => vec![format!("UPDATE {{t}} SET k = LOWER(k) WHERE k = '{k}'")],
                // Delete one spelling, insert another, in one transaction.
                2 => vec![
                    format!("DELETE FROM {{t}} WHERE k = '{k}'"),
                    format!(
                        "INSERT INTO {{t}} (k, v, note) VALUES ('{}', {v}, 'reborn')",
                        k.to_uppercase()
                    ),
                ],
                3 => vec![format!(
                    "UPDATE {{t}} SET k = '{}', note = 'mixed' WHERE k = '{}'",
                    mixed_case(&k, rng),
                    k.to_uppercase()
                )],
                _ => vec![format!("UPDATE {{t}} SET v = {v} WHERE k = '{k}'")],
            }
        }))
        .await;
}

fn mixed_case(s: &str, rng: &mut SmallRng) -> String {
    s.chars()
        .map(|c| {
            if rng.random_bool(0.5) {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c.to_lowercase().next().unwrap_or(c)
            }
        })
        .collect()
}

/// Two rows swap the values of a unique secondary key in one transaction (through a third
/// value, as the server requires). Applied out of order, or replaced row by row, one of them
/// is deleted; copied against a lagging shadow, one of them collides.
async fn unique_key_swap(engine: Engine) {
    let db = setup(engine, "pit_unique_swap").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, u VARCHAR(20) NOT NULL, v INT NOT NULL, UNIQUE KEY uk_u (u)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]).await;
    insert_rows(&db, "t", (1..=ROWS).map(|i| format!("({i}, 'u{i}', {i})"))).await;
    let mut next = ROWS + 10;
    Scenario::new(&db, "t", "ADD COLUMN x INT NOT NULL DEFAULT 0, MODIFY u VARCHAR(30) NOT NULL")
        .run(Box::new(move |rng: &mut SmallRng, _| {
            let a = rng.random_range(1..=ROWS);
            let b = rng.random_range(1..=ROWS);
            match rng.random_range(0..10) {
                0 => {
                    next += 1;
                    vec![format!("INSERT INTO {{t}} (id, u, v) VALUES ({next}, 'new{next}', 0)"), format!("DELETE FROM {{t}} WHERE id = {b}")]
                }
                1 => vec![format!("UPDATE {{t}} SET v = v + 1 WHERE id = {a}")],
                _ if a == b => vec![format!("UPDATE {{t}} SET v = v - 1 WHERE id = {a}")],
                _ => vec![
                    format!("SET @ua = (SELECT u FROM {{t}} WHERE id = {a})"),
                    format!("SET @ub = (SELECT u FROM {{t}} WHERE id = {b})"),
                    format!("UPDATE {{t}} SET u = CONCAT('tmp-', id) WHERE id = {a} AND @ub IS NOT NULL"),
                    format!("UPDATE {{t}} SET u = @ua WHERE id = {b} AND @ua IS NOT NULL"),
                    format!("UPDATE {{t}} SET u = @ub WHERE id = {a} AND @ub IS NOT NULL AND @ua IS NOT NULL"),
                ],
            }
        }))
        .await;
}

/// The same swaps while the ALTER adds the unique key (the old table has none, its values
/// are unique). The copy of a row that took a value meets, in the shadow, the row that gave
/// it up and whose newer image the appliers have not written yet: the collision is not a
/// duplicate of the table, so the chunk is retried once the appliers have passed it, and the
/// migration must not stop as lossy. The appliers meet the same collisions (a batch that ends
/// inside a swap, or the older change of a row whose newer image the copy wrote) and hold the
/// batch until the changes that resolve them come (`apply_collisions` tests that alone).
async fn added_unique_key_swap(engine: Engine) {
    let db = setup(engine, "pit_added_unique_swap").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, u VARCHAR(20) NOT NULL, v INT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]).await;
    insert_rows(&db, "t", (1..=ROWS).map(|i| format!("({i}, 'u{i}', {i})"))).await;
    Scenario::new(&db, "t", "ADD UNIQUE KEY uk_u (u)")
        .run(Box::new(move |rng: &mut SmallRng, _| {
            let a = rng.random_range(1..=ROWS);
            let b = rng.random_range(1..=ROWS);
            if a == b {
                return vec![format!("UPDATE {{t}} SET v = v + 1 WHERE id = {a}")];
            }
            vec![
                format!("SET @ua = (SELECT u FROM {{t}} WHERE id = {a})"),
                format!("SET @ub = (SELECT u FROM {{t}} WHERE id = {b})"),
                format!("UPDATE {{t}} SET u = CONCAT('tmp-', id) WHERE id = {a}"),
                format!("UPDATE {{t}} SET u = @ua WHERE id = {b}"),
                format!("UPDATE {{t}} SET u = @ub WHERE id = {a}"),
            ]
        }))
        .await;
}

/// The server's time zone is +05:30 and the application writes TIMESTAMPs in it. Binlog
/// TIMESTAMPs are UTC: an applier session in the server's zone would shift every applied value.
async fn timestamps_in_non_utc_zone(engine: Engine) {
    let options = ServerOptions {
        extra_args: vec!["--default-time-zone=+05:30".into()],
    };
    let server = Arc::new(TestServer::dedicated(engine, options).unwrap_or_else(|e| panic!("{e}")));
    let db = setup_on(server, "pit_timestamp_tz").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NOT NULL DEFAULT '2001-02-03 04:05:06', dt DATETIME(6) NULL) ENGINE=InnoDB"]).await;
    let stamp = |i: u64| {
        // Spread over 1970..2038, including the range ends in +05:30.
        match i % 97 {
            0 => "'1970-01-01 05:30:01.000000'".to_string(),
            1 => "'2038-01-19 08:44:07.999999'".to_string(),
            2 => "NULL".to_string(),
            _ => format!(
                "FROM_UNIXTIME({}.{:06})",
                (i * 715_827) % 2_147_000_000 + 1,
                (i * 7919) % 1_000_000
            ),
        }
    };
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| {
            format!(
                "({i}, {}, '2010-10-10 10:10:{:02}', '2020-01-01 00:00:00' + INTERVAL {i} MINUTE)",
                stamp(i),
                i % 60
            )
        }),
    )
    .await;
    let r = Scenario::new(
        &db,
        "t",
        "ADD COLUMN x INT NULL, MODIFY dt DATETIME(6) NOT NULL DEFAULT '2000-01-01 00:00:00'",
    )
    .run(int_key_gen(ROWS, move |rng, id, _| {
        let s = stamp(rng.random_range(0..100_000));
        format!(
            "ts = {s}, ts0 = '2030-06-0{} 23:59:{:02}', dt = '1999-12-31 23:59:59.{:06}'",
            rng.random_range(1..=9),
            id % 60,
            id
        )
    }))
    .await;
    assert!(r.outcome.changes_applied() > 0);
    // The same instants, read in UTC.
    let mut c = db.conn().await;
    use mysql_async::prelude::Queryable;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let utc: Option<String> = c
        .query_first("SELECT CAST(ts0 AS CHAR) FROM t WHERE id = 5")
        .await
        .unwrap();
    assert!(utc.is_some());
    let expected: Option<String> = c
        .query_first(format!(
            "SELECT CAST(ts0 AS CHAR) FROM {} WHERE id = 5",
            q2(&db.oracle_db(), "t")
        ))
        .await
        .unwrap();
    assert_eq!(utc, expected);
    c.disconnect().await.unwrap();
}

/// latin1 (cp1252: '€' is 0x80) and utf8mb4 text, CHAR padding and raw bytes written during
/// the migration: a writer session that re-encodes bytes breaks them.
async fn latin1_and_utf8mb4_data(engine: Engine) {
    let db = setup(engine, "pit_charsets").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, l VARCHAR(20) CHARACTER SET latin1 NULL, c CHAR(6) CHARACTER SET latin1 NULL, u VARCHAR(20) CHARACTER SET utf8mb4 NULL, b VARBINARY(20) NULL, bn BINARY(4) NULL) ENGINE=InnoDB"]).await;
    const L: &[&str] = &[
        "'€'",
        "'café'",
        "'Œ‰ÿ'",
        "_latin1 X'81'",
        "_latin1 X'00FF'",
        "''",
        "NULL",
        "'tab\tend'",
        "'back\\\\slash'",
    ];
    const U: &[&str] = &[
        "'😀'",
        "'日本語'",
        "'é'",
        "'🏳️‍🌈 flag'",
        "''",
        "NULL",
        "'a''quote'",
    ];
    const B: &[&str] = &["X'00'", "X'00FF80'", "X''", "NULL", "X'E282AC'", "X'C3'"];
    let row = |pick: &mut dyn FnMut(usize) -> usize| {
        format!(
            "l = {}, c = {}, u = {}, b = {}, bn = {}",
            L[pick(L.len())],
            ["'ab '", "'é'", "' '", "NULL"][pick(4)],
            U[pick(U.len())],
            B[pick(B.len())],
            ["X'01'", "X'0100'", "X'00000000'", "NULL"][pick(4)]
        )
    };
    let mut c = db.conn().await;
    use mysql_async::prelude::Queryable;
    for i in 1..=ROWS {
        if i % 500 == 1 {
            c.query_drop("BEGIN").await.unwrap();
        }
        let mut k = i as usize;
        let values = row(&mut |n| {
            k = k.wrapping_mul(31).wrapping_add(7);
            k % n
        });
        c.query_drop(format!("INSERT INTO t SET id = {i}, {values}"))
            .await
            .unwrap();
        if i % 500 == 0 || i == ROWS {
            c.query_drop("COMMIT").await.unwrap();
        }
    }
    c.disconnect().await.unwrap();
    Scenario::new(&db, "t", "ADD COLUMN x INT NULL")
        .run(int_key_gen(ROWS, move |rng, _, _| {
            row(&mut |n| rng.random_range(0..n))
        }))
        .await;
}

/// JSON written during the migration keeps its types and exact numbers: 1.0 is a DOUBLE, 1 an
/// integer, big integers stay exact, nesting stays.
async fn json_types(engine: Engine) {
    json_documents(engine, "pit_json", &[]).await;
}

/// JSON DECIMAL numbers (from `CAST(.. AS DECIMAL)` into JSON_OBJECT/JSON_ARRAY) keep their
/// type and every digit, and DATE/TIME/DATETIME scalars inside MySQL JSON stay temporal. JSON
/// text cannot carry these types (a text literal makes `1.50` the DOUBLE `1.5`), so the binlog
/// path writes such documents as JSON_OBJECT/JSON_ARRAY/CAST expressions
/// (engine/src/source/json_sql.rs). MariaDB stores JSON as text.
async fn json_decimals(engine: Engine) {
    let db = json_documents(
        engine,
        "pit_json_dec",
        &[
            "JSON_OBJECT('dec', CAST(1.50 AS DECIMAL(5,2)), 'int', 1, 'dbl', 1.5e0)",
            "JSON_ARRAY(CAST('12345678901234567890.123456789' AS DECIMAL(30,9)), CAST(-0.000001 AS DECIMAL(10,6)))",
            "JSON_OBJECT('d', CAST('2024-02-29' AS DATE), 't', CAST('-838:59:58.999999' AS TIME(6)), 'dt', CAST('2024-02-29 23:59:59.5' AS DATETIME(6)), 'nested', JSON_ARRAY(TRUE, FALSE, NULL, 'x', JSON_OBJECT('k', CAST(0 AS DECIMAL(1,0)))))",
            "JSON_EXTRACT(JSON_ARRAY(CAST(-7.25 AS DECIMAL(4,2))), '$[0]')",
        ],
    )
    .await;
    if engine == Engine::MySql {
        // Printed JSON cannot tell a DATE from a string: MySQL's own JSON comparison can
        // (values of different types are never equal).
        let mut c = db.conn().await;
        let differing: Option<u64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM `{}`.t a JOIN `{}`.t b USING (id) WHERE NOT (a.j <=> b.j)",
                db.db,
                db.oracle_db()
            ))
            .await
            .unwrap();
        assert_eq!(differing, Some(0), "JSON scalar types changed");
    }
}

async fn json_documents(engine: Engine, name: &str, extra: &[&'static str]) -> TestDb {
    let db = setup(engine, name).await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, j JSON NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]).await;
    let docs: Vec<&str> = vec![
        "'1'",
        "'1.0'",
        "'-0.5e-3'",
        "'18446744073709551615'",
        "'-9223372036854775808'",
        "'123456789012345678901234567890'",
        "'{\"a\": 1.0, \"b\": [1, 2.5, {\"c\": null, \"d\": [true, false]}], \"é\": \"ü\\\\u00e9\"}'",
        "'[]'",
        "'{}'",
        "'\"text\"'",
        "'null'",
        "NULL",
        "JSON_OBJECT('int', 1, 'dbl', 1.5e0, 'neg', -0.25e0, 'big', 9007199254740993)",
        "'{\"nested\": {\"deeper\": {\"deepest\": [1, [2, [3, [4.25]]]]}}}'",
    ];
    let mut docs = docs;
    docs.extend_from_slice(extra);
    let n = docs.len() as u64;
    let all = docs.clone();
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| format!("({i}, {})", all[(i % n) as usize])),
    )
    .await;
    Scenario::new(&db, "t", "ADD COLUMN x INT NULL")
        .run(int_key_gen(ROWS, move |rng, _, _| {
            format!("j = {}", docs[rng.random_range(0..docs.len())])
        }))
        .await;
    db
}

/// ENUM and SET travel as ordinals and bitmasks; with the definition reordered they must be
/// mapped by label, as the server's ALTER does.
async fn enum_set_relabelled(engine: Engine) {
    let db = setup(engine, "pit_enum_set").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, e ENUM('a','b','c') NOT NULL DEFAULT 'a', s SET('x','y','z') NULL) ENGINE=InnoDB"]).await;
    const E: &[&str] = &["'a'", "'b'", "'c'"];
    const S: &[&str] = &["''", "'x'", "'y,z'", "'x,y,z'", "'z'", "NULL"];
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| format!("({i}, {}, {})", E[(i % 3) as usize], S[(i % 6) as usize])),
    )
    .await;
    Scenario::new(
        &db,
        "t",
        "MODIFY e ENUM('c','b','a','d') NOT NULL DEFAULT 'a', MODIFY s SET('z','y','x','w') NULL",
    )
    .run(int_key_gen(ROWS, |rng, _, post| {
        let e = if post && rng.random_bool(0.2) {
            "'d'"
        } else {
            E[rng.random_range(0..3)]
        };
        let s = if post && rng.random_bool(0.2) {
            "'w,x'"
        } else {
            S[rng.random_range(0..S.len())]
        };
        format!("e = {e}, s = {s}")
    }))
    .await;
}

/// BINARY(N) keys whose values end in zero bytes (the binlog may drop them), including key
/// changes that differ only in those bytes.
async fn binary_primary_key(engine: Engine) {
    let db = setup(engine, "pit_binary_key").await;
    db.exec(&["CREATE TABLE t (k BINARY(8) NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB"])
        .await;
    // Two bytes of i, then zeros; a few keys that are all zeros but one.
    let key = |i: u64| format!("X'{:04X}'", i);
    insert_rows(&db, "t", (1..=ROWS).map(|i| format!("({}, {i})", key(i)))).await;
    insert_rows(
        &db,
        "t",
        [
            "(X'00', -1)".to_string(),
            "(X'0000000000000001', -2)".to_string(),
            "(X'FFFFFFFFFFFFFFFF', -3)".to_string(),
        ],
    )
    .await;
    let mut next = 0u64;
    Scenario::new(&db, "t", "ADD COLUMN x INT NOT NULL DEFAULT 5")
        .run(Box::new(move |rng: &mut SmallRng, _| {
            let i = rng.random_range(1..=ROWS);
            let k = key(i);
            let v: i32 = rng.random_range(-1000..1000);
            next += 1;
            match rng.random_range(0..6) {
                // The key changes only in bytes that were trailing zeros, then changes back.
                0 => vec![format!("UPDATE {{t}} SET k = X'{i:04X}{next:012X}' WHERE k = {k}"), format!("UPDATE {{t}} SET v = v + 1 WHERE k = X'{i:04X}{next:012X}'")],
                5 => vec![format!("UPDATE {{t}} SET k = {k} WHERE k = X'{i:04X}{:012X}'", next - 1)],
                1 => vec![format!("DELETE FROM {{t}} WHERE k = {k}")],
                2 => vec![format!("INSERT INTO {{t}} (k, v) VALUES (X'{:06X}', {v}) ON DUPLICATE KEY UPDATE v = {v}", 0x80_0000 + next)],
                3 => vec![format!("UPDATE {{t}} SET k = X'{:06X}' WHERE k = {k}", 0x90_0000 + next)],
                _ => vec![format!("UPDATE {{t}} SET v = {v} WHERE k = {k}")],
            }
        }))
        .await;
}

/// DECIMAL keys: chunk bounds and key comparisons on exact values (1.5 is 1.500).
async fn decimal_primary_key(engine: Engine) {
    let db = setup(engine, "pit_decimal_key").await;
    db.exec(&[
        "CREATE TABLE t (k DECIMAL(12,3) NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
    ])
    .await;
    let key = |i: u64| format!("{}.{:03}", i as i64 - 1500, (i * 37) % 1000);
    insert_rows(&db, "t", (1..=ROWS).map(|i| format!("({}, {i})", key(i)))).await;
    let mut next = 0u64;
    Scenario::new(
        &db,
        "t",
        "ADD COLUMN x INT NOT NULL DEFAULT 5, MODIFY v BIGINT NOT NULL",
    )
    .run(Box::new(move |rng: &mut SmallRng, _| {
        let k = key(rng.random_range(1..=ROWS));
        let v: i32 = rng.random_range(-1000..1000);
        next += 1;
        match rng.random_range(0..5) {
            0 => vec![format!("UPDATE {{t}} SET k = k + 100000.5 WHERE k = {k}")],
            1 => vec![format!("DELETE FROM {{t}} WHERE k = {k}")],
            2 => vec![format!(
                "INSERT INTO {{t}} (k, v) VALUES (-{next}.25, {v}) ON DUPLICATE KEY UPDATE v = {v}"
            )],
            _ => vec![format!("UPDATE {{t}} SET v = {v} WHERE k = {k}0")],
        }
    }))
    .await;
}

/// VIRTUAL and STORED generated columns are never written (the server computes them); the
/// migration keeps them, including one whose expression the ALTER changes and a new one.
async fn generated_columns(engine: Engine) {
    let db = setup(engine, "pit_generated").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(20) NULL, g INT AS (a * 2) VIRTUAL, s VARCHAR(40) AS (CONCAT(b, '!')) STORED, KEY idx_g (g)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]).await;
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| {
            format!(
                "({i}, {}, {}, DEFAULT, DEFAULT)",
                i as i64 - 100,
                if i % 5 == 0 {
                    "NULL".into()
                } else {
                    format!("'b{i}'")
                }
            )
        }),
    )
    .await;
    Scenario::new(&db, "t", "ADD COLUMN d INT NOT NULL DEFAULT 1, MODIFY g BIGINT AS (a * 3) VIRTUAL, ADD COLUMN h INT AS (a + 1) STORED")
        .run(int_key_gen(ROWS, |rng, _, _| {
            let a: i32 = rng.random_range(-100_000..100_000);
            let b = if rng.random_bool(0.2) { "NULL".to_string() } else { format!("'w{}'", rng.random_range(0..1000)) };
            format!("a = {a}, b = {b}")
        }))
        .await;
}

both_engines!(
    json_decimals,
    case_insensitive_primary_key,
    unique_key_swap,
    added_unique_key_swap,
    timestamps_in_non_utc_zone,
    latin1_and_utf8mb4_data,
    json_types,
    enum_set_relabelled,
    binary_primary_key,
    decimal_primary_key,
    generated_columns,
);
