//! Schema changes through `rowshift migrate`, on both engines, each under a concurrent writer
//! (so rows travel both through the copy's SQL and through the binlog transform): after the
//! migration the table has the new definition and exactly the rows a plain `ALTER TABLE` of
//! the same writes gives, and `_t_old` holds the original table as it was at the cut-over
//! (see `migrate_support` for the oracle).

mod migrate_support;

use migrate_support::*;
use mysql_async::prelude::Queryable;
use rand::rngs::SmallRng;
use rand::Rng;
use rowshift_testkit::both_engines;
use rowshift_testkit::Engine;

const ROWS: u64 = 3_000;

const BASE_DDL: &str = "CREATE TABLE t (
  id INT NOT NULL,
  a INT NOT NULL,
  b VARCHAR(10) NULL,
  n DECIMAL(10,2) NULL,
  dt DATETIME(3) NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// The base table with `ROWS` rows: negative numbers, NULLs, empty strings, decimals.
async fn base_table(db: &TestDb) {
    db.exec(&[BASE_DDL]).await;
    insert_rows(
        db,
        "t",
        (1..=ROWS).map(|i| {
            let b = match i % 7 {
                0 => "NULL".to_string(),
                1 => "''".to_string(),
                _ => format!("'b{}'", i % 1000),
            };
            format!(
                "({i}, {}, {b}, {}.{:02}, '2025-01-01 00:00:00' + INTERVAL {i} SECOND)",
                i as i64 * 3 - 4_000,
                i / 7,
                i % 100
            )
        }),
    )
    .await;
}

/// `a = .., <b> = .., n = ..` with random values; `b` is the name of the text column; `wide`
/// gives `a` values beyond INT.
fn base_values(rng: &mut SmallRng, b: &str, wide: bool) -> String {
    let a: i64 = if wide {
        rng.random_range(-5_000_000_000..5_000_000_000)
    } else {
        rng.random_range(-100_000..100_000)
    };
    let bv = match rng.random_range(0..6) {
        0 => "NULL".to_string(),
        1 => "''".to_string(),
        2 => "'Ab'".to_string(),
        _ => format!("'w{}'", rng.random_range(0..100_000)),
    };
    let n = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        format!(
            "{}.{:02}",
            rng.random_range(-9_999..9_999),
            rng.random_range(0..100)
        )
    };
    format!("a = {a}, {b} = {bv}, n = {n}")
}

async fn add_column(engine: Engine) {
    let db = setup(engine, "chg_add_column").await;
    base_table(&db).await;
    let r = Scenario::new(
        &db,
        "t",
        "ADD COLUMN d INT NOT NULL DEFAULT 7, ADD COLUMN e VARCHAR(5) NULL",
    )
    .run(int_key_gen(ROWS, |rng, _, _| base_values(rng, "b", false)))
    .await;
    assert!(
        r.outcome.changes_applied() > 0,
        "no binlog change was applied:\n{}",
        r.outcome.out
    );
}

async fn drop_column(engine: Engine) {
    let db = setup(engine, "chg_drop_column").await;
    base_table(&db).await;
    Scenario::new(&db, "t", "DROP COLUMN b")
        .run(int_key_gen(ROWS, |rng, _, post| {
            let v = base_values(rng, "b", false);
            if post {
                // The new table has no `b`.
                v.split(", ")
                    .filter(|p| !p.starts_with("b ="))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                v
            }
        }))
        .await;
}

async fn rename_change(engine: Engine) {
    let db = setup(engine, "chg_rename_change").await;
    base_table(&db).await;
    Scenario::new(&db, "t", "CHANGE b b2 VARCHAR(10) NULL")
        .run(int_key_gen(ROWS, |rng, _, post| {
            base_values(rng, if post { "b2" } else { "b" }, false)
        }))
        .await;
}

async fn rename_column(engine: Engine) {
    let db = setup(engine, "chg_rename_column").await;
    base_table(&db).await;
    Scenario::new(&db, "t", "RENAME COLUMN b TO `b 2`, RENAME COLUMN a TO aa")
        .run(int_key_gen(ROWS, |rng, _, post| {
            let v = base_values(rng, if post { "`b 2`" } else { "b" }, false);
            if post {
                v.replacen("a = ", "aa = ", 1)
            } else {
                v
            }
        }))
        .await;
}

async fn widen_int(engine: Engine) {
    let db = setup(engine, "chg_widen_int").await;
    base_table(&db).await;
    Scenario::new(
        &db,
        "t",
        "MODIFY a BIGINT NOT NULL, MODIFY id BIGINT NOT NULL",
    )
    .run(int_key_gen(ROWS, |rng, _, post| {
        base_values(rng, "b", post)
    }))
    .await;
}

async fn widen_varchar(engine: Engine) {
    let db = setup(engine, "chg_widen_varchar").await;
    base_table(&db).await;
    Scenario::new(&db, "t", "MODIFY b VARCHAR(100) NULL")
        .run(int_key_gen(ROWS, |rng, _, post| {
            let v = base_values(rng, "b", false);
            if post && rng.random_bool(0.5) {
                let a = v.split(", ").next().unwrap_or("a = 0").to_string();
                format!("{a}, b = 'a value longer than the old ten characters'")
            } else {
                v
            }
        }))
        .await;
}

/// Plain secondary keys are left out of the copy and built after it (`--index-build
/// after-copy`): the oracle's comparison of `SHOW CREATE TABLE` proves they come
/// back exactly as the ALTER defines them (prefix, DESC, comment, order among the others); a
/// unique key stays in the shadow throughout.
async fn add_index(engine: Engine) {
    let db = setup(engine, "chg_add_index").await;
    base_table(&db).await;
    db.exec(&["ALTER TABLE t ADD INDEX idx_dt (dt)"]).await;
    let mut scenario = Scenario::new(
        &db,
        "t",
        "ADD INDEX idx_a (a), ADD INDEX `idx b,n` (b(4), n DESC) COMMENT 'b, then n', ADD UNIQUE KEY u_id_a (id, a)",
    );
    scenario.extra = vec!["--index-build", "after-copy"];
    let result = scenario
        .run(int_key_gen(ROWS, |rng, _, _| base_values(rng, "b", false)))
        .await;
    assert!(
        result
            .outcome
            .out
            .contains("indexes: `idx_dt`, `idx_a`, `idx b,n` built after the copy"),
        "{}",
        result.outcome.out
    );
}

/// `--index-build during-copy` (the default) keeps every key in the shadow while the copy
/// inserts.
async fn add_index_during_copy(engine: Engine) {
    let db = setup(engine, "chg_add_index_during").await;
    base_table(&db).await;
    let mut scenario = Scenario::new(&db, "t", "ADD INDEX idx_a (a), ADD INDEX idx_b_n (b, n)");
    scenario.extra = vec!["--index-build", "during-copy"];
    let result = scenario
        .run(int_key_gen(ROWS, |rng, _, _| base_values(rng, "b", false)))
        .await;
    assert!(
        !result.outcome.out.contains("built after the copy"),
        "{}",
        result.outcome.out
    );
}

async fn add_not_null_with_set(engine: Engine) {
    let db = setup(engine, "chg_add_not_null_set").await;
    base_table(&db).await;
    let mut s = Scenario::new(&db, "t", "ADD COLUMN total BIGINT NOT NULL");
    s.extra = vec!["--set", "total = a * 2 + id"];
    s.oracle = vec![
        "ALTER TABLE {t} ADD COLUMN total BIGINT NULL".into(),
        "UPDATE {t} SET total = a * 2 + id".into(),
        "ALTER TABLE {t} MODIFY total BIGINT NOT NULL".into(),
    ];
    let r = s
        .run(int_key_gen(ROWS, |rng, id, post| {
            let v = base_values(rng, "b", false);
            if post {
                // The application fills the new column itself after the cut-over.
                format!("{v}, total = {}", rng.random_range(0..1000) + id)
            } else {
                v
            }
        }))
        .await;
    assert!(
        r.outcome.out.contains("`total` ← ((`a` * 2) + `id`)"),
        "{}",
        r.outcome.out
    );
}

async fn set_from_dropped_column(engine: Engine) {
    let db = setup(engine, "chg_set_from_dropped").await;
    base_table(&db).await;
    let mut s = Scenario::new(&db, "t", "ADD COLUMN label VARCHAR(40) NULL, DROP COLUMN b");
    s.extra = vec!["--set", "label = CASE WHEN b IS NULL THEN 'none' WHEN b = '' THEN 'empty' ELSE CONCAT(UPPER(b), '-', a) END"];
    s.oracle = vec![
        "ALTER TABLE {t} ADD COLUMN label VARCHAR(40) NULL".into(),
        "UPDATE {t} SET label = CASE WHEN b IS NULL THEN 'none' WHEN b = '' THEN 'empty' ELSE CONCAT(UPPER(b), '-', a) END".into(),
        "ALTER TABLE {t} DROP COLUMN b".into(),
    ];
    s.run(int_key_gen(ROWS, |rng, _, post| {
        let v = base_values(rng, "b", false);
        if post {
            v.replacen(", b = ", ", label = ", 1)
        } else {
            v
        }
    }))
    .await;
}

const CHARSET_DDL: &str = "CREATE TABLE t (
  id INT NOT NULL PRIMARY KEY,
  s VARCHAR(20) CHARACTER SET latin1 NULL,
  u VARCHAR(20) CHARACTER SET utf8mb3 NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// latin1 values (MySQL's latin1 is cp1252: '€' is 0x80; 0x81 has no cp1252 character).
const LATIN1: &[&str] = &[
    "'café'",
    "'€uro'",
    "'naïve Œuvre'",
    "'ÿ‰Ÿ'",
    "'plain'",
    "''",
    "NULL",
    "_latin1 X'81'",
    "_latin1 X'9D8D'",
    "'Ab'",
];
const UTF8MB3: &[&str] = &["'日本語'", "'über'", "'x'", "''", "NULL", "'ẞ ǅ'"];

async fn charset_change(engine: Engine) {
    let db = setup(engine, "chg_charset").await;
    db.exec(&[CHARSET_DDL]).await;
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| {
            format!(
                "({i}, {}, {})",
                LATIN1[i as usize % LATIN1.len()],
                UTF8MB3[i as usize % UTF8MB3.len()]
            )
        }),
    )
    .await;
    Scenario::new(&db, "t", "MODIFY s VARCHAR(20) CHARACTER SET utf8mb4 NULL, MODIFY u VARCHAR(20) CHARACTER SET utf8mb4 NULL")
        .run(int_key_gen(ROWS, |rng, _, post| {
            let s = LATIN1[rng.random_range(0..LATIN1.len())];
            let u = UTF8MB3[rng.random_range(0..UTF8MB3.len())];
            if post && rng.random_bool(0.3) {
                "s = '😀 four bytes', u = '𝄞'".to_string()
            } else {
                format!("s = {s}, u = {u}")
            }
        }))
        .await;
    // Spot checks of the stored bytes: '€' is now U+20AC in UTF-8, 0x81 is U+0081.
    let mut c = db.conn().await;
    use mysql_async::prelude::Queryable;
    let hex: Vec<String> = c
        .query("SELECT DISTINCT HEX(s) FROM t WHERE s LIKE '%uro' OR s = _utf8mb4 X'C281'")
        .await
        .unwrap();
    assert!(hex.contains(&"E282AC75726F".to_string()), "{hex:?}");
    assert!(hex.contains(&"C281".to_string()), "{hex:?}");
    c.disconnect().await.unwrap();
}

const COMPOSITE_DDL: &str = "CREATE TABLE t (
  tenant INT NOT NULL,
  id INT NOT NULL,
  v VARCHAR(20) NULL,
  w BIGINT NOT NULL,
  PRIMARY KEY (tenant, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

async fn composite_primary_key(engine: Engine) {
    let db = setup(engine, "chg_composite_pk").await;
    db.exec(&[COMPOSITE_DDL]).await;
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| format!("({}, {i}, 'v{i}', {})", i % 5, i * 11)),
    )
    .await;
    let mut next = ROWS * 10;
    Scenario::new(
        &db,
        "t",
        "MODIFY v VARCHAR(50) NULL, ADD COLUMN z INT NOT NULL DEFAULT 3",
    )
    .run(Box::new(move |rng: &mut SmallRng, _post: bool| {
        let mut stmts = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let id = rng.random_range(1..=ROWS);
            let key = format!("tenant = {} AND id = {id}", id % 5);
            let w: i64 = rng.random_range(-1_000_000..1_000_000);
            next += 1;
            stmts.push(match rng.random_range(0..10) {
                0..=4 => format!("UPDATE {{t}} SET v = 'u{w}', w = {w} WHERE {key}"),
                5 => format!("DELETE FROM {{t}} WHERE {key}"),
                6 => format!("UPDATE {{t}} SET tenant = tenant + 10 WHERE {key}"),
                7 => format!("UPDATE {{t}} SET id = {next} WHERE {key}"),
                _ => format!(
                    "INSERT INTO {{t}} (tenant, id, v, w) VALUES ({}, {next}, NULL, {w})",
                    next % 7
                ),
            });
        }
        stmts
    }))
    .await;
}

/// The new primary key adds a column to the old one: an update of that column alone moves the
/// row to another key of the new table, though the old key stays (the before image must be
/// deleted from the shadow: deciding by the old key alone left the old row beside the new one,
/// a duplicate of `id` after the cut-over).
async fn primary_key_widened(engine: Engine) {
    let db = setup(engine, "chg_pk_widened").await;
    db.exec(&["CREATE TABLE t (
  id INT NOT NULL,
  v INT NOT NULL,
  w BIGINT NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"])
        .await;
    insert_rows(
        &db,
        "t",
        (1..=ROWS).map(|i| format!("({i}, {}, {})", i % 7, i * 3)),
    )
    .await;
    let mut next = ROWS * 10;
    // The verification matches rows by primary key and refuses a changed one (see
    // migrate_errors::alter_breaks_primary_key): the oracle compares the result instead.
    Scenario {
        extra: vec!["--skip-verify"],
        ..Scenario::new(&db, "t", "DROP PRIMARY KEY, ADD PRIMARY KEY (id, v)")
    }
    .run(Box::new(move |rng: &mut SmallRng, _post: bool| {
        let mut stmts = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let id = rng.random_range(1..=ROWS);
            let w: i64 = rng.random_range(-1_000_000..1_000_000);
            next += 1;
            stmts.push(match rng.random_range(0..10) {
                0..=5 => format!("UPDATE {{t}} SET v = v + 1 WHERE id = {id}"),
                6 => format!("UPDATE {{t}} SET w = {w} WHERE id = {id}"),
                7 => format!("DELETE FROM {{t}} WHERE id = {id}"),
                _ => format!("INSERT INTO {{t}} (id, v, w) VALUES ({next}, 1, {w})"),
            });
        }
        stmts
    }))
    .await;
}

/// An INVISIBLE column (MySQL 8.0.23+, MariaDB 10.3+: left out of `SELECT *`) is copied and
/// its changes applied like any other, and keeps its invisibility.
async fn invisible_column(engine: Engine) {
    let db = setup(engine, "chg_invisible").await;
    base_table(&db).await;
    db.exec(&[
        "ALTER TABLE t ADD COLUMN h INT NULL INVISIBLE",
        "UPDATE t SET h = id * 2 WHERE id % 3 <> 0",
    ])
    .await;
    let r = Scenario::new(&db, "t", "ADD COLUMN w INT NOT NULL DEFAULT 5")
        .run(int_key_gen(ROWS, |rng, id, _| {
            let h = if rng.random_bool(0.2) {
                "NULL".to_string()
            } else {
                (id as i64 * 7 + rng.random_range(0..1000)).to_string()
            };
            format!("{}, h = {h}", base_values(rng, "b", false))
        }))
        .await;
    assert!(r.after.create.contains("INVISIBLE"), "{}", r.after.create);
    // `SELECT *` (the scenario's comparison) leaves the column out: compare it by name.
    let mut c = db.conn().await;
    let hidden = |d: &str| format!("SELECT id, h FROM `{d}`.t ORDER BY id");
    let got: Vec<(i64, Option<i64>)> = c.query(hidden(&db.db)).await.unwrap();
    let want: Vec<(i64, Option<i64>)> = c.query(hidden(&db.oracle_db())).await.unwrap();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the invisible column differs from a plain ALTER's"
    );
    c.disconnect().await.unwrap();
}

/// Ids the table handed out and then lost (its highest rows deleted) are not handed out again
/// by the migrated table: the shadow's counter follows its highest row, so the cut-over gives
/// it the table's AUTO_INCREMENT first. (Before, the next insert after the cut-over got id 91.)
async fn auto_increment_kept(engine: Engine) {
    let db = setup(engine, "chg_auto_increment").await;
    db.exec(&[
        "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
    ])
    .await;
    insert_rows(&db, "t", (1..=100).map(|i| format!("({i}, {i})"))).await;
    db.exec(&["DELETE FROM t WHERE id > 90"]).await;
    let out = db
        .migrate("t", "ADD COLUMN w INT NOT NULL DEFAULT 0", &["--execute"])
        .await;
    out.assert_ok();
    let mut c = db.conn().await;
    c.query_drop("INSERT INTO t (v) VALUES (0)").await.unwrap();
    let id: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(id, Some(101), "the migrated table handed out an id again");
    let rows: Option<u64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(rows, Some(91));
    c.disconnect().await.unwrap();
}

both_engines!(
    auto_increment_kept,
    invisible_column,
    add_column,
    drop_column,
    rename_change,
    rename_column,
    widen_int,
    widen_varchar,
    add_index,
    add_index_during_copy,
    add_not_null_with_set,
    set_from_dropped_column,
    charset_change,
    composite_primary_key,
    primary_key_widened,
);
