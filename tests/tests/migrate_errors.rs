//! Every bad input of `rowshift migrate`, on both engines: the run fails with a stable message
//! and a non-zero exit code, the original table (definition and every byte of its rows) is
//! unchanged, and no helper table is left behind. Also the inputs that look bad but are fine:
//! an RDS-like user without SUPER, `--drop-leftovers`, and a dry run.

mod migrate_support;

use migrate_support::*;
use mysql_async::prelude::Queryable;
use rand::rngs::SmallRng;
use rand::Rng;
use rowshift_testkit::both_engines;
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::sync::Arc;

const ROWS: u64 = 2_500;

/// `t (id, a, s)` with `ROWS` rows; `a` repeats every 100 rows, `s` has up to 40 characters.
async fn table(db: &TestDb) {
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, s VARCHAR(100) NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]).await;
    insert_rows(
        db,
        "t",
        (1..=ROWS).map(|i| {
            format!(
                "({i}, {}, {})",
                i % 100,
                if i % 9 == 0 {
                    "NULL".to_string()
                } else {
                    format!("'{}'", "é".repeat((i % 4) as usize + 1))
                }
            )
        }),
    )
    .await;
}

/// Run `rowshift migrate` on `t` and check: failed with `needle`, `t` unchanged, no helpers.
async fn fails_unchanged(
    db: &TestDb,
    table: &str,
    alter: &str,
    extra: &[&str],
    needle: &str,
) -> Outcome {
    let before = db.snapshot(table).await;
    let mut args = extra.to_vec();
    args.push("--execute");
    let o = db.migrate(table, alter, &args).await;
    o.assert_failed_with(needle);
    let after = db.snapshot(table).await;
    assert_eq!(
        after.create, before.create,
        "the table's definition changed"
    );
    after.assert_same_rows(&before, "the table's rows changed");
    db.assert_no_helpers(table).await;
    o
}

async fn table_missing(engine: Engine) {
    let db = setup(engine, "err_table_missing").await;
    let o = db
        .migrate("nosuch", "ADD COLUMN x INT", &["--execute"])
        .await;
    o.assert_failed_with("does not exist");
    db.assert_no_helpers("nosuch").await;
}

async fn no_primary_key(engine: Engine) {
    let db = setup(engine, "err_no_pk").await;
    db.exec(&[
        "CREATE TABLE np (a INT NOT NULL, b INT NULL, KEY (a))",
        "INSERT INTO np VALUES (1, 1), (1, 1), (2, NULL)",
    ])
    .await;
    fails_unchanged(&db, "np", "ADD COLUMN x INT", &[], "has no primary key").await;
}

async fn dedicated(engine: Engine, flag: &str) -> Arc<TestServer> {
    let options = ServerOptions {
        extra_args: vec![flag.to_string()],
    };
    Arc::new(
        TestServer::dedicated(engine, options)
            .unwrap_or_else(|e| panic!("cannot start a server with {flag}: {e}")),
    )
}

async fn row_image_minimal(engine: Engine) {
    let server = dedicated(engine, "--binlog-row-image=MINIMAL").await;
    let db = setup_on(server, "err_row_image").await;
    table(&db).await;
    let o = fails_unchanged(&db, "t", "ADD COLUMN x INT", &[], "binlog_row_image").await;
    assert!(o.error_line().contains("MINIMAL"), "{}", o.err);
}

async fn binlog_format_statement(engine: Engine) {
    let server = dedicated(engine, "--binlog-format=STATEMENT").await;
    let db = setup_on(server, "err_binlog_format").await;
    table(&db).await;
    let o = fails_unchanged(&db, "t", "ADD COLUMN x INT", &[], "binlog_format").await;
    assert!(o.error_line().contains("STATEMENT"), "{}", o.err);
}

/// Create `user` (for every host a TCP client from 127.0.0.1 may match) with `grants`
/// (`{u}` stands for the account).
async fn create_user(db: &TestDb, user: &str, grants: &[String]) {
    let mut c = db.conn().await;
    for host in ["%", "localhost", "127.0.0.1"] {
        let account = format!("'{user}'@'{host}'");
        c.query_drop(format!("DROP USER IF EXISTS {account}"))
            .await
            .unwrap();
        c.query_drop(format!("CREATE USER {account} IDENTIFIED BY 'Pw-{user}'"))
            .await
            .unwrap();
        for g in grants {
            c.query_drop(g.replace("{u}", &account))
                .await
                .unwrap_or_else(|e| panic!("{g}: {e}"));
        }
    }
    c.disconnect().await.unwrap();
}

fn user_url(db: &TestDb, user: &str) -> String {
    format!("mysql://{user}@127.0.0.1:{}", db.server.port())
}

const TABLE_PRIVILEGES: &str =
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, LOCK TABLES";

async fn missing_replication_grants(engine: Engine) {
    let db = setup(engine, "err_privileges").await;
    table(&db).await;
    let before = db.snapshot("t").await;
    let user = format!("rs_norepl_{}", engine.name());
    create_user(
        &db,
        &user,
        &[format!(
            "GRANT {TABLE_PRIVILEGES} ON `{}`.* TO {{u}}",
            db.db
        )],
    )
    .await;
    let pw = format!("Pw-{user}");
    let o = db
        .migrate_as(
            &user_url(&db, &user),
            Some(&pw),
            "t",
            "ADD COLUMN x INT",
            &["--execute"],
        )
        .await;
    o.assert_failed_with("GRANT REPLICATION");
    assert!(
        !o.err.contains(&pw) && !o.out.contains(&pw),
        "the password was printed"
    );
    // With REPLICATION CLIENT only, the missing REPLICATION SLAVE is named.
    let user2 = format!("rs_client_{}", engine.name());
    create_user(
        &db,
        &user2,
        &[
            format!("GRANT {TABLE_PRIVILEGES} ON `{}`.* TO {{u}}", db.db),
            "GRANT REPLICATION CLIENT ON *.* TO {u}".into(),
        ],
    )
    .await;
    let o = db
        .migrate_as(
            &user_url(&db, &user2),
            Some(&format!("Pw-{user2}")),
            "t",
            "ADD COLUMN x INT",
            &["--execute"],
        )
        .await;
    o.assert_failed_with("REPLICATION SLAVE");
    let after = db.snapshot("t").await;
    assert_eq!(after, before, "the table changed");
    db.assert_no_helpers("t").await;
}

async fn rds_like_user_succeeds(engine: Engine) {
    let db = setup(engine, "ok_rds_user").await;
    table(&db).await;
    let user = format!("rs_rds_{}", engine.name());
    create_user(
        &db,
        &user,
        &[
            format!("GRANT {TABLE_PRIVILEGES} ON `{}`.* TO {{u}}", db.db),
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {u}".into(),
        ],
    )
    .await;
    db.copy_to_oracle("t").await;
    let o = db
        .migrate_as(
            &user_url(&db, &user),
            Some(&format!("Pw-{user}")),
            "t",
            "ADD COLUMN x INT NOT NULL DEFAULT 5",
            &["--execute"],
        )
        .await;
    o.assert_ok();
    let mut c = db.conn().await;
    c.query_drop(format!(
        "ALTER TABLE {} ADD COLUMN x INT NOT NULL DEFAULT 5",
        q2(&db.oracle_db(), "t")
    ))
    .await
    .unwrap();
    let expected = snapshot(&mut c, &db.oracle_db(), "t").await;
    c.disconnect().await.unwrap();
    let after = db.snapshot("t").await;
    assert_eq!(after, expected);
    db.assert_only_old_left("t").await;
}

async fn foreign_keys(engine: Engine) {
    let db = setup(engine, "err_foreign_keys").await;
    db.exec(&[
        "CREATE TABLE parent (id INT NOT NULL PRIMARY KEY, name VARCHAR(10)) ENGINE=InnoDB",
        "CREATE TABLE child (id INT NOT NULL PRIMARY KEY, parent_id INT NOT NULL, CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB",
        "INSERT INTO parent VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO child VALUES (10, 1), (11, 2), (12, 2)",
    ])
    .await;
    // The referencing table and the referenced one.
    let o = fails_unchanged(&db, "child", "ADD COLUMN x INT", &[], "foreign keys").await;
    assert!(o.err.contains("fk_child_parent"), "{}", o.err);
    let o = fails_unchanged(&db, "parent", "ADD COLUMN x INT", &[], "foreign keys").await;
    assert!(o.err.contains("fk_child_parent"), "{}", o.err);
}

async fn triggers(engine: Engine) {
    let db = setup(engine, "err_triggers").await;
    table(&db).await;
    db.exec(&[
        "CREATE TABLE audit (n INT)",
        "CREATE TRIGGER t_audit AFTER INSERT ON t FOR EACH ROW INSERT INTO audit VALUES (NEW.id)",
    ])
    .await;
    let o = fails_unchanged(&db, "t", "ADD COLUMN x INT", &[], "has triggers").await;
    assert!(o.err.contains("t_audit"), "{}", o.err);
}

async fn alter_rejected(engine: Engine) {
    let db = setup(engine, "err_alter_rejected").await;
    table(&db).await;
    let before_rows = db.snapshot("t").await;
    fails_unchanged(
        &db,
        "t",
        "ADD COLUMN x NOSUCHTYPE",
        &[],
        "the server rejected the ALTER",
    )
    .await;
    fails_unchanged(
        &db,
        "t",
        "DROP COLUMN nosuch",
        &[],
        "the server rejected the ALTER",
    )
    .await;
    // A second statement after a `;` is never run (it once ran on a multi-statement
    // connection: this one would have emptied the table, in a dry run as well).
    fails_unchanged(
        &db,
        "t",
        "ADD COLUMN x INT; DELETE FROM t",
        &[],
        "the server rejected the ALTER",
    )
    .await;
    let o = db
        .migrate("t", "ADD COLUMN y INT; DELETE FROM t", &[])
        .await;
    o.assert_failed_with("the server rejected the ALTER");
    db.snapshot("t")
        .await
        .assert_same_rows(&before_rows, "a dry run's `;` changed the rows");
}

async fn alter_renames_table(engine: Engine) {
    let db = setup(engine, "err_alter_renames").await;
    table(&db).await;
    fails_unchanged(&db, "t", "RENAME TO t2", &[], "renames the table").await;
    fails_unchanged(
        &db,
        "t",
        "ADD COLUMN x INT, RENAME AS t3",
        &[],
        "renames the table",
    )
    .await;
    let mut c = db.conn().await;
    let others: Vec<String> = c.exec("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ('t2', 't3')", (&db.db,)).await.unwrap();
    assert!(others.is_empty(), "{others:?}");
    c.disconnect().await.unwrap();
}

async fn alter_breaks_primary_key(engine: Engine) {
    let db = setup(engine, "err_alter_pk").await;
    table(&db).await;
    // The only key column dropped: the new table has no key to apply changes by.
    fails_unchanged(&db, "t", "DROP COLUMN id", &[], "primary key").await;
    // A new key column without a source.
    fails_unchanged(
        &db,
        "t",
        "DROP PRIMARY KEY, ADD COLUMN k INT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        &[],
        "primary key",
    )
    .await;
    // A key on a column that is not unique: rows would merge.
    fails_unchanged(
        &db,
        "t",
        "DROP PRIMARY KEY, ADD PRIMARY KEY (a)",
        &[],
        "primary key",
    )
    .await;
    // A key that stays unique but is not the old one: the verification cannot match the rows
    // (said before anything is copied; --skip-verify runs it, migrate_changes).
    fails_unchanged(
        &db,
        "t",
        "DROP PRIMARY KEY, ADD PRIMARY KEY (id, a)",
        &[],
        "--skip-verify",
    )
    .await;
    // Part of a composite key dropped: (tenant, id) → (tenant) would merge rows silently.
    db.exec(&[
        "CREATE TABLE c (tenant INT NOT NULL, id INT NOT NULL, v INT, PRIMARY KEY (tenant, id))",
        "INSERT INTO c VALUES (1, 1, 10), (1, 2, 20), (2, 1, 30)",
    ])
    .await;
    fails_unchanged(
        &db,
        "c",
        "DROP PRIMARY KEY, DROP COLUMN id, ADD PRIMARY KEY (tenant)",
        &[],
        "primary key",
    )
    .await;
    // A key made case-insensitive: 'a' and 'A' would become one row.
    db.exec(&[
        "CREATE TABLE k (code VARCHAR(10) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, v INT)",
        "INSERT INTO k VALUES ('a', 1), ('A', 2)",
    ])
    .await;
    fails_unchanged(
        &db,
        "k",
        "MODIFY code VARCHAR(10) COLLATE utf8mb4_general_ci NOT NULL",
        &[],
        "primary key",
    )
    .await;
}

/// `--abort` never drops another tool's shadow: pt-online-schema-change's has the same name
/// `_t_new` and is fed by triggers on the table, and a table with triggers is refused before
/// anything (dropping that shadow would break the triggers and every write to the table).
async fn abort_leaves_another_tools_shadow(engine: Engine) {
    let db = setup(engine, "err_abort_foreign").await;
    table(&db).await;
    db.exec(&[
        "CREATE TABLE `_t_new` LIKE t",
        "CREATE TRIGGER pt_osc_ins AFTER INSERT ON t FOR EACH ROW REPLACE INTO `_t_new` (id, a) VALUES (NEW.id, NEW.a)",
    ])
    .await;
    let o = db.migrate("t", "ADD COLUMN x INT", &["--abort"]).await;
    o.assert_failed_with("has triggers");
    assert_eq!(db.helper_tables("t").await, vec!["_t_new".to_string()]);
    // Without the triggers nothing says whose it is either (no checkpoint): kept, and said so.
    db.exec(&["DROP TRIGGER pt_osc_ins"]).await;
    let o = db.migrate("t", "ADD COLUMN x INT", &["--abort"]).await;
    o.assert_ok();
    assert!(
        o.out.contains("kept `") && o.out.contains("--drop-leftovers --execute"),
        "{}",
        o.out
    );
    assert_eq!(db.helper_tables("t").await, vec!["_t_new".to_string()]);
}

async fn leftovers(engine: Engine) {
    let db = setup(engine, "err_leftovers").await;
    table(&db).await;
    for name in ["_t_new", "_t_old"] {
        db.exec(&[&format!("CREATE TABLE `{name}` (id INT PRIMARY KEY)")])
            .await;
        let before = db.snapshot("t").await;
        let o = db.migrate("t", "ADD COLUMN x INT", &["--execute"]).await;
        o.assert_failed_with("leftover tables");
        assert!(
            o.err.contains(name) && o.err.contains("--drop-leftovers"),
            "{}",
            o.err
        );
        assert_eq!(db.snapshot("t").await, before);
        assert_eq!(
            db.helper_tables("t").await,
            vec![name.to_string()],
            "the leftover must stay until asked"
        );
        // A dry run changes nothing, --drop-leftovers or not (it once dropped them, the kept
        // `_t_old` of an earlier migration included).
        let o = db
            .migrate("t", "ADD COLUMN x INT", &["--drop-leftovers"])
            .await;
        o.assert_failed_with("a dry run drops nothing");
        assert_eq!(
            db.helper_tables("t").await,
            vec![name.to_string()],
            "a dry run dropped a leftover"
        );
        db.exec(&[&format!("DROP TABLE `{name}`")]).await;
    }
    // Asked: dropped, and the migration proceeds.
    db.exec(&["CREATE TABLE `_t_new` (id INT PRIMARY KEY)"])
        .await;
    db.copy_to_oracle("t").await;
    let o = db
        .migrate("t", "ADD COLUMN x INT", &["--execute", "--drop-leftovers"])
        .await;
    o.assert_ok();
    let mut c = db.conn().await;
    c.query_drop(format!(
        "ALTER TABLE {} ADD COLUMN x INT",
        q2(&db.oracle_db(), "t")
    ))
    .await
    .unwrap();
    let expected = snapshot(&mut c, &db.oracle_db(), "t").await;
    c.disconnect().await.unwrap();
    assert_eq!(db.snapshot("t").await, expected);
    db.assert_only_old_left("t").await;
}

async fn lossy_conversion(engine: Engine) {
    let db = setup(engine, "err_lossy").await;
    table(&db).await;
    // Ids 1700 and 2300 hold the only values longer than 5 characters.
    db.exec(&["UPDATE t SET s = 'much too long' WHERE id IN (1700, 2300)"])
        .await;
    let o = fails_unchanged(&db, "t", "MODIFY s VARCHAR(5) NULL", &[], "lossy").await;
    let line = o.error_line();
    assert!(
        line.contains("`id`=1700") || line.contains("`id`=2300"),
        "the offending key is not named: {line}"
    );
    assert!(line.contains("'s'"), "the column is not named: {line}");
    // Out of range, a NULL into NOT NULL, and a character the new charset cannot hold. The
    // copy runs chunks in parallel, so which offending rows are named first varies: any key.
    fails_unchanged(
        &db,
        "t",
        "MODIFY a DECIMAL(2,1) NOT NULL",
        &[],
        "offending keys: `id`=",
    )
    .await;
    fails_unchanged(
        &db,
        "t",
        "MODIFY s VARCHAR(100) NOT NULL",
        &[],
        "cannot be null",
    )
    .await;
    db.exec(&["UPDATE t SET s = 'snow ☃' WHERE id = 77"]).await;
    fails_unchanged(
        &db,
        "t",
        "MODIFY s VARCHAR(100) CHARACTER SET latin1 NULL",
        &[],
        "`id`=77",
    )
    .await;
}

/// A lossy chunk while the copy yields (`--pace gentle`: one worker copies, the others wait):
/// the failed worker must end the waiting ones, or the dispatcher, with chunks left and no
/// worker taking them, would wait forever. The offending row is in the first chunk of many.
async fn lossy_while_gentle(engine: Engine) {
    let db = setup(engine, "err_lossy_gentle").await;
    db.exec(&["CREATE TABLE g (id INT NOT NULL PRIMARY KEY, s VARCHAR(100) NULL) ENGINE=InnoDB"])
        .await;
    insert_rows(&db, "g", (1..=40_000).map(|i| format!("({i}, 'ok')"))).await;
    db.exec(&["UPDATE g SET s = 'much too long' WHERE id = 100"])
        .await;
    fails_unchanged(
        &db,
        "g",
        "MODIFY s VARCHAR(5) NULL",
        &["--pace", "gentle", "--copy-workers", "3"],
        "`id`=100",
    )
    .await;
}

async fn unique_over_duplicates(engine: Engine) {
    let db = setup(engine, "err_unique_dup").await;
    table(&db).await;
    let o = fails_unchanged(&db, "t", "ADD UNIQUE KEY uk_a (a)", &[], "Duplicate entry").await;
    assert!(o.error_line().contains("uk_a"), "{}", o.err);
}

async fn dry_run(engine: Engine) {
    let db = setup(engine, "ok_dry_run").await;
    table(&db).await;
    let before = db.snapshot("t").await;
    let o = db
        .migrate("t", "ADD COLUMN x INT NOT NULL", &["--set", "x = a * 2"])
        .await;
    o.assert_ok();
    assert!(o.out.contains("dry run"), "{}", o.out);
    assert!(
        o.out.contains("`x` ← (`a` * 2)"),
        "the plan shows the mapping: {}",
        o.out
    );
    assert_eq!(db.snapshot("t").await, before);
    db.assert_no_helpers("t").await;
    // A dry run still reports what a real run would refuse.
    let o = db
        .migrate("t", "ADD COLUMN y INT NOT NULL", &["--set", "y = NOW()"])
        .await;
    o.assert_failed_with("NOW");
    db.assert_no_helpers("t").await;
}

/// The server's statistics say 50 times the table's rows (persistent statistics edited, as
/// MySQL 9.7's own figure was 3.4 times off for the benchmark's table): the plan's estimate is
/// capped by the integer key's span. MySQL only: MariaDB keeps a table's statistics in its
/// dictionary cache (`FLUSH TABLES` does not reload edited ones), so the figure cannot be
/// staged there; the estimate's logic is unit-tested in the engine (`estimate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_estimate_capped_by_the_key_span_mysql() {
    let db = setup(Engine::MySql, "ok_dry_estimate").await;
    table(&db).await;
    let inflated = ROWS * 50;
    db.exec(&[
        "ALTER TABLE t STATS_AUTO_RECALC = 0",
        &format!(
            "UPDATE mysql.innodb_table_stats SET n_rows = {inflated} WHERE database_name = '{}' AND table_name = 't'",
            db.db
        ),
        "FLUSH TABLES t",
    ])
    .await;
    let mut c = db.conn().await;
    let said: Option<u64> = c
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'",
            (&db.db,),
        )
        .await
        .unwrap();
    assert_eq!(said, Some(inflated), "the statistics were not inflated");
    let o = db
        .migrate("t", "ADD COLUMN x INT NOT NULL", &["--set", "x = a * 2"])
        .await;
    o.assert_ok();
    assert!(
        o.out.contains(&format!("({ROWS} rows estimated)")),
        "the estimate is the key span, not the statistics' {inflated}: {}",
        o.out
    );
    db.assert_no_helpers("t").await;
}

/// Values that do not fit arrive through the binlog during the migration: the run stops
/// before the cut-over and names the column; the application's table keeps every write.
async fn lossy_during_migration(engine: Engine) {
    let db = setup(engine, "err_lossy_binlog").await;
    table(&db).await;
    let create = db.snapshot("t").await.create;
    let mut writer = Writer::start(
        &db,
        "t",
        Vec::new(),
        3,
        Box::new(|rng: &mut SmallRng, _| {
            let id = rng.random_range(1..=ROWS);
            let s = if rng.random_range(0..50) == 0 {
                "'a value much too long'"
            } else {
                "'ok'"
            };
            vec![format!("UPDATE {{t}} SET s = {s} WHERE id = {id}")]
        }),
    )
    .await;
    writer.wait_for(10).await;
    let o = db
        .migrate("t", "MODIFY s VARCHAR(5) NULL", &["--execute"])
        .await;
    writer.wait_more(5).await;
    let txns = writer.stop().await;
    assert!(
        txns.iter().all(|t| !t.post),
        "nothing may reach a new table"
    );
    assert_ne!(o.code, 0, "{}\n{}", o.out, o.err);
    let line = o.error_line();
    assert!(
        line.contains("`s`") || line.contains("'s'") || line.contains("column s"),
        "the column is not named: {}",
        o.err
    );
    assert!(
        line.contains("lossy") || line.contains("truncat"),
        "{}",
        o.err
    );
    assert_eq!(db.snapshot("t").await.create, create);
    db.assert_no_helpers("t").await;
}

/// Duplicates of a new UNIQUE key are created by the application during the migration.
async fn unique_duplicate_during_migration(engine: Engine) {
    let db = setup(engine, "err_unique_binlog").await;
    table(&db).await;
    db.exec(&["UPDATE t SET a = id"]).await;
    let mut writer = Writer::start(
        &db,
        "t",
        Vec::new(),
        4,
        Box::new(|rng: &mut SmallRng, _| {
            let id = rng.random_range(1..=ROWS);
            let a = if rng.random_range(0..40) == 0 {
                1
            } else {
                rng.random_range(10_000..1_000_000)
            };
            vec![format!("UPDATE {{t}} SET a = {a} WHERE id = {id}")]
        }),
    )
    .await;
    writer.wait_for(10).await;
    let o = db
        .migrate("t", "ADD UNIQUE KEY uk_a (a)", &["--execute"])
        .await;
    writer.wait_more(5).await;
    let txns = writer.stop().await;
    assert!(
        txns.iter().all(|t| !t.post),
        "nothing may reach a new table"
    );
    o.assert_failed_with("Duplicate entry");
    db.assert_no_helpers("t").await;
}

/// This test's postpone flag file (absent until a test writes it).
fn postpone_flag(db: &TestDb) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "rowshift-test-{}-{}.postpone",
        db.db,
        std::process::id()
    ))
}

/// `migrate --execute` of `t` with `alter`, its cut-over postponed while `flag` exists, in the
/// background.
fn spawn_postponed(
    db: &TestDb,
    flag: &std::path::Path,
    alter: &str,
    extra: &[&str],
) -> tokio::task::JoinHandle<Outcome> {
    let mut args: Vec<String> = [
        "migrate",
        "--source",
        &db.server.url(),
        "--table",
        &format!("{}.t", db.db),
        "--alter",
        alter,
        "--postpone-flag-file",
        &flag.display().to_string(),
        "--execute",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_rowshift_env(&args, &[]).await
    })
}

/// A duplicate of the new UNIQUE key made after the copy, and then nothing more: the appliers
/// hold the colliding batch, find nothing that resolves it, and the migration stops with the
/// duplicate's key and value (not "the router stopped": the router, waiting for a quiet source,
/// learns of the applier's failure by itself), while its cut-over is postponed.
async fn unique_duplicate_after_the_copy(engine: Engine) {
    let db = setup(engine, "err_unique_after_copy").await;
    table(&db).await;
    db.exec(&["UPDATE t SET a = id"]).await;
    let flag = postpone_flag(&db);
    std::fs::write(&flag, b"").unwrap();
    let run = spawn_postponed(&db, &flag, "ADD UNIQUE KEY uk_a (a)", &[]);
    // Wait for the copy to be done (every row in the shadow).
    let mut c = db.conn().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let rows: Option<u64> = c
            .query_first("SELECT COUNT(*) FROM `_t_new`")
            .await
            .unwrap_or(None);
        if rows == Some(ROWS) {
            break;
        }
        assert!(!run.is_finished(), "the migration ended before its copy");
        assert!(std::time::Instant::now() < deadline, "the copy never ended");
        // Polling the server for a condition another process makes true.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.query_drop("UPDATE t SET a = 2 WHERE id = 1")
        .await
        .unwrap();
    let o = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the migration did not stop within 120 s of the duplicate")
        .unwrap();
    let _ = std::fs::remove_file(&flag);
    o.assert_failed_with("rows collide under a unique key the ALTER adds");
    assert!(o.error_line().contains("uk_a"), "{}", o.err);
    db.assert_no_helpers("t").await;
    let a: Option<u64> = c.query_first("SELECT a FROM t WHERE id = 1").await.unwrap();
    assert_eq!(a, Some(2), "the application's row must stay as it wrote it");
    c.disconnect().await.unwrap();
}

/// A DDL on the table while the migration runs stops it before the cut-over (the shadow would
/// lose the change), whatever the statement looks like; a DDL on a table of the same name in
/// another database does not.
async fn ddl_during_migration(engine: Engine) {
    let db = setup(engine, "err_ddl_during").await;
    table(&db).await;
    db.copy_to_oracle("t").await;
    let flag = postpone_flag(&db);
    let run = spawn_postponed(&db, &flag, "ADD COLUMN x INT", &["--chunk-time-ms", "30"]);
    // The shadow has rows: the binlog stream started before the copy.
    let mut c = db.conn().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let exists: Option<u64> = c.exec_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = '_t_new'", (&db.db,)).await.unwrap();
        if exists == Some(1) {
            let rows: Option<u64> = c
                .query_first("SELECT COUNT(*) FROM (SELECT 1 FROM `_t_new` LIMIT 1) x")
                .await
                .unwrap_or(None);
            if rows == Some(1) {
                break;
            }
        }
        assert!(
            !run.is_finished(),
            "the migration ended before its copy started"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started"
        );
        // Polling the server for a condition another process makes true.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Same name, other database (session default: this one): not ours.
    c.query_drop(format!(
        "ALTER TABLE {} ADD COLUMN other_db INT",
        q2(&db.oracle_db(), "t")
    ))
    .await
    .unwrap();
    // Ours, in a form the old text heuristic missed.
    c.query_drop("/* app deploy */ CREATE INDEX idx_app ON t (a)")
        .await
        .unwrap();
    let _ = std::fs::remove_file(&flag);
    let o = run.await.unwrap();
    o.assert_failed_with("altered during the migration");
    assert!(o.error_line().contains("CREATE INDEX idx_app"), "{}", o.err);
    assert!(
        !o.error_line().contains("other_db"),
        "a DDL of another database stopped it: {}",
        o.err
    );
    db.assert_no_helpers("t").await;
    let idx: Option<String> = c.exec_first("SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' AND INDEX_NAME = 'idx_app' LIMIT 1", (&db.db,)).await.unwrap();
    assert_eq!(
        idx.as_deref(),
        Some("idx_app"),
        "the application's index must stay"
    );
    c.disconnect().await.unwrap();
}

both_engines!(
    table_missing,
    no_primary_key,
    row_image_minimal,
    binlog_format_statement,
    missing_replication_grants,
    rds_like_user_succeeds,
    foreign_keys,
    triggers,
    alter_rejected,
    alter_renames_table,
    alter_breaks_primary_key,
    leftovers,
    abort_leaves_another_tools_shadow,
    lossy_conversion,
    lossy_while_gentle,
    unique_over_duplicates,
    dry_run,
    lossy_during_migration,
    unique_duplicate_during_migration,
    unique_duplicate_after_the_copy,
    ddl_during_migration,
);
