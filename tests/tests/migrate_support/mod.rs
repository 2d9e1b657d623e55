//! Helpers shared by the `rowshift migrate` integration tests: a database per test and engine,
//! the CLI run, byte-exact table snapshots, helper-table checks, and a writer that changes the
//! table while the migration runs and logs every committed transaction.
//!
//! **The oracle.** What must a migrated table contain? Exactly what a blocking `ALTER TABLE`
//! would have made of the same writes. Before the migration the test copies the table into a
//! second database (`<db>_x`). The writer logs every committed transaction and whether it ran
//! against the original table or, after the cut-over, against the new one (inside the
//! transaction it reads `SHOW CREATE TABLE`; its own metadata lock pins which table `t` names).
//! Afterwards the copy replays the transactions of the original table, then the oracle steps
//! (the same ALTER, run by the server; `UPDATE`s for `--set`), then the transactions of the new
//! table. The migrated table must equal that copy byte for byte, and `_t_old` must equal the
//! copy as it was before the oracle steps.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rowshift_testkit::{rowshift_bin, Engine, TestServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// One test's database on one server.
pub struct TestDb {
    /// The server.
    pub server: Arc<TestServer>,
    /// The engine.
    pub engine: Engine,
    /// The database (its name includes the engine).
    pub db: String,
}

/// The database `<name>_<engine>` on the shared server, created fresh.
pub async fn setup(engine: Engine, name: &str) -> TestDb {
    setup_on(TestServer::shared(engine), name).await
}

/// The database `<name>_<engine>` on `server`, created fresh (with its oracle database).
pub async fn setup_on(server: Arc<TestServer>, name: &str) -> TestDb {
    let engine = server.engine();
    let db = format!("{name}_{}", engine.name());
    server.fresh_db(&db).await.unwrap();
    server.fresh_db(&format!("{db}_x")).await.unwrap();
    TestDb { server, engine, db }
}

/// `` `a`.`b` ``.
pub fn q2(db: &str, t: &str) -> String {
    format!("`{}`.`{}`", db.replace('`', "``"), t.replace('`', "``"))
}

/// The outcome of one `rowshift` run.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
}

impl Outcome {
    /// Panics unless the run succeeded.
    pub fn assert_ok(&self) {
        assert_eq!(
            self.code, 0,
            "rowshift failed\nstdout:\n{}\nstderr:\n{}",
            self.out, self.err
        );
    }

    /// Panics unless the run failed with `needle` in its error output.
    pub fn assert_failed_with(&self, needle: &str) {
        assert_ne!(
            self.code, 0,
            "rowshift succeeded but should have failed\nstdout:\n{}\nstderr:\n{}",
            self.out, self.err
        );
        assert!(
            self.err.contains(needle),
            "error output lacks {needle:?}\nstdout:\n{}\nstderr:\n{}",
            self.out,
            self.err
        );
    }

    /// The number of binlog changes the run applied (from its summary line).
    pub fn changes_applied(&self) -> u64 {
        let line = self
            .out
            .lines()
            .find(|l| l.starts_with("migrated:"))
            .unwrap_or_else(|| panic!("no summary line in {}", self.out));
        let before = line
            .split(" binlog changes applied")
            .next()
            .unwrap_or_default();
        before
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the applied count in {line}"))
    }

    /// The error line (`rowshift: error: ...`).
    pub fn error_line(&self) -> &str {
        self.err
            .lines()
            .find(|l| l.starts_with("rowshift: error:"))
            .unwrap_or("")
    }
}

/// Run `rowshift` with `args` and extra environment variables.
pub async fn run_rowshift_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = tokio::process::Command::new(rowshift_bin());
    cmd.args(args)
        .env("ROWSHIFT_LOG", "rowshift=info,warn")
        .env_remove("ROWSHIFT_PASSWORD")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run rowshift: {e}"));
    Outcome {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl TestDb {
    /// A root connection (default session settings) with this database selected.
    pub async fn conn(&self) -> Conn {
        let mut c = Conn::from_url(self.server.url()).await.unwrap();
        c.query_drop(format!("USE `{}`", self.db)).await.unwrap();
        c
    }

    /// Run statements as root in this database.
    pub async fn exec(&self, stmts: &[&str]) {
        let mut c = self.conn().await;
        for s in stmts {
            c.query_drop(*s)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        c.disconnect().await.unwrap();
    }

    /// `` `db`.`t` ``.
    pub fn t(&self, table: &str) -> String {
        q2(&self.db, table)
    }

    /// The oracle database.
    pub fn oracle_db(&self) -> String {
        format!("{}_x", self.db)
    }

    /// `rowshift migrate --execute` of `table` with small chunks, plus `extra` arguments.
    pub async fn migrate(&self, table: &str, alter: &str, extra: &[&str]) -> Outcome {
        self.migrate_as(&self.server.url(), None, table, alter, extra)
            .await
    }

    /// Like [`TestDb::migrate`], connecting with `url` (and `password` through the environment).
    pub async fn migrate_as(
        &self,
        url: &str,
        password: Option<&str>,
        table: &str,
        alter: &str,
        extra: &[&str],
    ) -> Outcome {
        let full = format!("{}.{table}", self.db);
        let mut args = vec![
            "migrate",
            "--source",
            url,
            "--table",
            &full,
            "--alter",
            alter,
            "--chunk-time-ms",
            "30",
            "--cut-over-lock-wait",
            "5",
        ];
        args.extend_from_slice(extra);
        let env: Vec<(&str, &str)> = password
            .map(|p| vec![("ROWSHIFT_PASSWORD", p)])
            .unwrap_or_default();
        run_rowshift_env(&args, &env).await
    }

    /// Tables of the database whose names are rowshift helper names for `table`.
    pub async fn helper_tables(&self, table: &str) -> Vec<String> {
        let mut c = self.conn().await;
        let names: Vec<String> = c
            .exec("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", (&self.db,))
            .await
            .unwrap();
        c.disconnect().await.unwrap();
        let helpers = [
            format!("_{table}_new"),
            format!("_{table}_old"),
            format!("{table}_rs_sentry"),
            format!("_{table}_trip"),
            format!("_{table}_ckpt"),
        ];
        names.into_iter().filter(|n| helpers.contains(n)).collect()
    }

    /// Panics if any helper table of `table` exists.
    pub async fn assert_no_helpers(&self, table: &str) {
        let h = self.helper_tables(table).await;
        assert!(h.is_empty(), "helper tables left behind: {h:?}");
    }

    /// Panics unless the helper tables of `table` are exactly `_table_old`.
    pub async fn assert_only_old_left(&self, table: &str) {
        let h = self.helper_tables(table).await;
        assert_eq!(
            h,
            vec![format!("_{table}_old")],
            "helper tables after a migration"
        );
    }

    /// A byte-exact snapshot of `db`.`table`.
    pub async fn snapshot(&self, table: &str) -> Snapshot {
        let mut c = self.conn().await;
        let s = snapshot(&mut c, &self.db, table).await;
        c.disconnect().await.unwrap();
        s
    }

    /// Copy `table` (definition and rows) into the oracle database.
    pub async fn copy_to_oracle(&self, table: &str) {
        let x = q2(&self.oracle_db(), table);
        let mut c = self.conn().await;
        // Generated columns cannot be written: the server computes them in the copy too.
        let cols: Vec<String> = c
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND EXTRA NOT LIKE '%VIRTUAL GENERATED%' AND EXTRA NOT LIKE '%STORED GENERATED%' ORDER BY ORDINAL_POSITION",
                (&self.db, table),
            )
            .await
            .unwrap();
        let cols: Vec<String> = cols
            .iter()
            .map(|c| format!("`{}`", c.replace('`', "``")))
            .collect();
        let cols = cols.join(", ");
        for s in [
            format!("DROP TABLE IF EXISTS {x}"),
            format!("CREATE TABLE {x} LIKE {}", self.t(table)),
            format!(
                "INSERT INTO {x} ({cols}) SELECT {cols} FROM {}",
                self.t(table)
            ),
        ] {
            c.query_drop(&s)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        c.disconnect().await.unwrap();
    }
}

/// A table's definition (as `SHOW CREATE TABLE` prints it, without AUTO_INCREMENT and with
/// the table's own name replaced by `T`) and all rows, ordered by primary key, as the text
/// protocol returns them through a `binary` connection: byte-exact.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Normalized definition.
    pub create: String,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
}

impl Snapshot {
    /// Panics with the first differing rows unless `self` and `other` hold the same rows.
    pub fn assert_same_rows(&self, other: &Snapshot, what: &str) {
        if self.rows == other.rows {
            return;
        }
        let mut shown = 0;
        let mut msg = format!(
            "{what}: {} rows vs {} rows expected\n",
            self.rows.len(),
            other.rows.len()
        );
        let n = self.rows.len().max(other.rows.len());
        for i in 0..n {
            let (a, b) = (self.rows.get(i), other.rows.get(i));
            if a != b {
                msg.push_str(&format!(
                    "  row {i}: got {}\n          want {}\n",
                    show_row(a),
                    show_row(b)
                ));
                shown += 1;
                if shown >= 8 {
                    break;
                }
            }
        }
        panic!("{msg}");
    }
}

/// A row for messages: text where printable, hex otherwise.
pub fn show_row(r: Option<&Vec<Value>>) -> String {
    let Some(r) = r else { return "(none)".into() };
    let cells: Vec<String> = r
        .iter()
        .map(|v| match v {
            Value::NULL => "NULL".into(),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if !s.chars().any(char::is_control) => format!("'{s}'"),
                _ => format!(
                    "X'{}'",
                    b.iter().map(|x| format!("{x:02X}")).collect::<String>()
                ),
            },
            other => format!("{other:?}"),
        })
        .collect();
    format!("({})", cells.join(", "))
}

/// The primary key columns of `db`.`table`, quoted, in key order.
pub async fn primary_key(c: &mut Conn, db: &str, table: &str) -> Vec<String> {
    let cols: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .unwrap();
    cols.iter()
        .map(|c| format!("`{}`", c.replace('`', "``")))
        .collect()
}

/// See [`Snapshot`].
pub async fn snapshot(c: &mut Conn, db: &str, table: &str) -> Snapshot {
    let create = show_create(c, db, table).await;
    let mut order = primary_key(c, db, table).await;
    if order.is_empty() {
        let n: Option<u64> = c.exec_first("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", (db, table)).await.unwrap();
        order = (1..=n.unwrap_or(1)).map(|i| i.to_string()).collect();
    }
    c.query_drop("SET NAMES binary").await.unwrap();
    let rows: Vec<Row> = c
        .query(format!(
            "SELECT * FROM {} ORDER BY {}",
            q2(db, table),
            order.join(", ")
        ))
        .await
        .unwrap();
    c.query_drop("SET NAMES utf8mb4").await.unwrap();
    Snapshot {
        create,
        rows: rows.into_iter().map(Row::unwrap).collect(),
    }
}

/// `SHOW CREATE TABLE` with AUTO_INCREMENT removed and the name replaced by `T`.
pub async fn show_create(c: &mut Conn, db: &str, table: &str) -> String {
    let row: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE {}", q2(db, table)))
        .await
        .unwrap();
    normalize_create(&row.unwrap_or_default().1, table)
}

fn normalize_create(create: &str, table: &str) -> String {
    let mut s = create.replacen(
        &format!("CREATE TABLE `{}`", table.replace('`', "``")),
        "CREATE TABLE `T`",
        1,
    );
    while let Some(i) = s.find(" AUTO_INCREMENT=") {
        let end = s[i + 16..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |e| i + 16 + e);
        s.replace_range(i..end, "");
    }
    s
}

/// One committed transaction of the [`Writer`].
#[derive(Debug, Clone)]
pub struct Txn {
    /// True when it ran against the new table (after the cut-over).
    pub post: bool,
    /// Its statements, with `{t}` for the table.
    pub stmts: Vec<String>,
}

/// Makes the next transaction's statements (`{t}` stands for the table). `post` is true once
/// the writer has seen the new table.
pub type Gen = Box<dyn FnMut(&mut SmallRng, bool) -> Vec<String> + Send>;

/// A single application session that writes the table in transactions until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    committed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<Vec<Txn>>,
}

/// Session statements the writer (and the oracle replay) run first.
pub type Session = Vec<String>;

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

impl Writer {
    /// Start writing `db`.`table` with transactions from `gen`.
    pub async fn start(
        db: &TestDb,
        table: &str,
        session: Session,
        seed: u64,
        mut gen: Gen,
    ) -> Writer {
        let mut conn = db.conn().await;
        for s in &session {
            conn.query_drop(s).await.unwrap();
        }
        let t = db.t(table);
        let original = show_create(&mut conn, &db.db, table).await;
        let (tx, rx) = watch::channel(0u64);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (dbname, tname) = (db.db.clone(), table.to_string());
        let task = tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut log = Vec::new();
            let mut post = false;
            let mut pending: Option<Vec<String>> = None;
            while !stop2.load(Ordering::Relaxed) {
                let stmts = match pending.take() {
                    Some(s) => s,
                    None => gen(&mut rng, post),
                };
                conn.query_drop("BEGIN").await.unwrap();
                let mut failed = None;
                for s in &stmts {
                    if let Err(e) = conn.query_drop(s.replace("{t}", &t)).await {
                        failed = Some((s.clone(), e));
                        break;
                    }
                }
                if let Some((s, e)) = failed {
                    conn.query_drop("ROLLBACK").await.unwrap();
                    if matches!(server_code(&e), Some(1213 | 1205)) {
                        // Deadlock or lock wait timeout: the same transaction again.
                        pending = Some(stmts);
                        continue;
                    }
                    // A statement for the old table that the new one refuses: the table was
                    // switched between generating and running it.
                    if !post && show_create(&mut conn, &dbname, &tname).await != original {
                        post = true;
                        continue;
                    }
                    panic!("writer statement {s} failed: {e}");
                }
                let now = show_create(&mut conn, &dbname, &tname).await;
                let is_post = now != original;
                if let Err(e) = conn.query_drop("COMMIT").await {
                    panic!("writer COMMIT failed: {e}");
                }
                post = is_post;
                log.push(Txn {
                    post: is_post,
                    stmts,
                });
                tx.send_modify(|n| *n += 1);
            }
            let _ = conn.disconnect().await;
            log
        });
        Writer {
            stop,
            committed: rx,
            task,
        }
    }

    /// Transactions committed so far.
    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Wait until at least `n` transactions committed in total.
    pub async fn wait_for(&mut self, n: u64) {
        let r = self.committed.wait_for(|c| *c >= n).await;
        assert!(r.is_ok(), "the writer stopped before {n} commits");
    }

    /// Wait for `n` more commits.
    pub async fn wait_more(&mut self, n: u64) {
        let target = self.committed() + n;
        self.wait_for(target).await;
    }

    /// Stop and return the log of committed transactions, in commit order.
    pub async fn stop(self) -> Vec<Txn> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Replay `txns` (those with `post == post`) on `db`.`table` with `session`.
pub async fn replay(c: &mut Conn, db: &str, table: &str, txns: &[Txn], post: bool) {
    let t = q2(db, table);
    for txn in txns.iter().filter(|x| x.post == post) {
        c.query_drop("BEGIN").await.unwrap();
        for s in &txn.stmts {
            let s = s.replace("{t}", &t);
            c.query_drop(&s)
                .await
                .unwrap_or_else(|e| panic!("oracle replay of {s}: {e}"));
        }
        c.query_drop("COMMIT").await.unwrap();
    }
}

/// A migration under a concurrent writer, checked against the oracle (see the module docs).
pub struct Scenario<'a> {
    /// The database.
    pub db: &'a TestDb,
    /// The table.
    pub table: &'a str,
    /// The ALTER given to rowshift.
    pub alter: &'a str,
    /// Extra arguments (`--set ...`).
    pub extra: Vec<&'a str>,
    /// Oracle steps with `{t}` for the oracle table; empty means `ALTER TABLE {t} <alter>`.
    pub oracle: Vec<String>,
    /// Session statements of the writer and the replay.
    pub session: Session,
    /// Writer seed.
    pub seed: u64,
}

/// What a [`Scenario`] saw.
pub struct ScenarioResult {
    /// The CLI run.
    pub outcome: Outcome,
    /// The writer's log.
    pub txns: Vec<Txn>,
    /// The migrated table.
    pub after: Snapshot,
}

impl Scenario<'_> {
    /// A scenario with the default oracle and no extra arguments.
    pub fn new<'a>(db: &'a TestDb, table: &'a str, alter: &'a str) -> Scenario<'a> {
        Scenario {
            db,
            table,
            alter,
            extra: Vec::new(),
            oracle: Vec::new(),
            session: Vec::new(),
            seed: 7,
        }
    }

    /// Run: oracle copy, writer, migrate, more writes after the cut-over, stop, replay, compare.
    pub async fn run(self, gen: Gen) -> ScenarioResult {
        let db = self.db;
        db.copy_to_oracle(self.table).await;
        let original_create = db.snapshot(self.table).await.create;
        let mut writer = Writer::start(db, self.table, self.session.clone(), self.seed, gen).await;
        writer.wait_for(20).await;
        let mut extra = self.extra.clone();
        extra.push("--execute");
        let outcome = db.migrate(self.table, self.alter, &extra).await;
        outcome.assert_ok();
        // The application keeps writing, now to the new table.
        writer.wait_more(20).await;
        let txns = writer.stop().await;
        eprintln!(
            "{} transactions during the migration, {} after; summary: {}",
            txns.iter().filter(|t| !t.post).count(),
            txns.iter().filter(|t| t.post).count(),
            outcome
                .out
                .lines()
                .find(|l| l.starts_with("migrated:"))
                .unwrap_or("-")
        );
        assert!(
            txns.iter().any(|t| t.post),
            "no transaction reached the new table"
        );
        assert!(
            txns.iter().any(|t| !t.post),
            "no transaction ran during the migration"
        );

        // The oracle.
        let xdb = db.oracle_db();
        let mut c = Conn::from_url(db.server.url()).await.unwrap();
        for s in &self.session {
            c.query_drop(s).await.unwrap();
        }
        replay(&mut c, &xdb, self.table, &txns, false).await;
        let old_expected = snapshot(&mut c, &xdb, self.table).await;
        let x = q2(&xdb, self.table);
        let oracle = if self.oracle.is_empty() {
            vec![format!("ALTER TABLE {{t}} {}", self.alter)]
        } else {
            self.oracle.clone()
        };
        for s in &oracle {
            let s = s.replace("{t}", &x);
            c.query_drop(&s)
                .await
                .unwrap_or_else(|e| panic!("oracle step {s}: {e}"));
        }
        replay(&mut c, &xdb, self.table, &txns, true).await;
        let expected = snapshot(&mut c, &xdb, self.table).await;
        c.disconnect().await.unwrap();

        let mut conn = db.conn().await;
        for s in &self.session {
            conn.query_drop(s).await.unwrap();
        }
        let after = snapshot(&mut conn, &db.db, self.table).await;
        let old_name = format!("_{}_old", self.table);
        let old = snapshot(&mut conn, &db.db, &old_name).await;
        conn.disconnect().await.unwrap();
        assert_eq!(
            after.create, expected.create,
            "the migrated table's definition differs from a plain ALTER's"
        );
        after.assert_same_rows(
            &expected,
            "migrated table vs. a plain ALTER of the same writes",
        );
        assert_eq!(
            old.create, original_create,
            "_old keeps the original definition"
        );
        old.assert_same_rows(&old_expected, "_old vs. the original table at the cut-over");
        db.assert_only_old_left(self.table).await;
        ScenarioResult {
            outcome,
            txns,
            after,
        }
    }
}

/// A standard generator for a table with an integer key `id` in `1..=rows`: updates (sometimes
/// of the key), deletes, inserts above `rows` and re-inserts, with the column values from
/// `values(rng, id, post)` (a `col = value, ...` list usable in INSERT ... SET and UPDATE).
pub fn int_key_gen<F>(rows: u64, mut values: F) -> Gen
where
    F: FnMut(&mut SmallRng, u64, bool) -> String + Send + 'static,
{
    use rand::Rng;
    let mut next_id = rows + 1_000;
    Box::new(move |rng: &mut SmallRng, post: bool| {
        let mut stmts = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let id = rng.random_range(1..=rows + 200);
            let choice = rng.random_range(0..100);
            let vals = values(rng, id, post);
            let s = if choice < 55 {
                format!("UPDATE {{t}} SET {vals} WHERE id = {id}")
            } else if choice < 65 {
                format!("DELETE FROM {{t}} WHERE id = {id}")
            } else if choice < 72 {
                // A key change.
                next_id += 1;
                format!("UPDATE {{t}} SET id = {next_id} WHERE id = {id}")
            } else if choice < 85 {
                format!("INSERT INTO {{t}} SET id = {id}, {vals} ON DUPLICATE KEY UPDATE {vals}")
            } else {
                next_id += 1;
                let vals = values(rng, next_id, post);
                format!("INSERT INTO {{t}} SET id = {next_id}, {vals}")
            };
            stmts.push(s);
        }
        stmts
    })
}

/// `INSERT INTO table VALUES ...` of `rows` tuples, in batches.
pub async fn insert_rows(db: &TestDb, table: &str, rows: impl IntoIterator<Item = String>) {
    let mut c = db.conn().await;
    let rows: Vec<String> = rows.into_iter().collect();
    for chunk in rows.chunks(500) {
        c.query_drop(format!(
            "INSERT INTO {} VALUES {}",
            db.t(table),
            chunk.join(",")
        ))
        .await
        .unwrap();
    }
    c.disconnect().await.unwrap();
}
