//! Changes while the cut-over is postponed. XA transactions: a prepared branch is in the
//! binlog (and applied to the shadow) before it is committed or rolled back; a rolled-back
//! branch must be undone in the shadow, a committed one kept, and the migrated table must hold
//! exactly the source's rows. And the verification runs again when a postponed cut-over is
//! released: a shadow that went wrong while waiting is never swapped in.

mod ops_support;

use mysql_async::prelude::Queryable;
use ops_support::*;
use rowshift_testkit::{Engine, TestServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn shadow_a(server: &TestServer, db: &str, id: i64) -> Option<i64> {
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let v: Option<i64> = c
        .query_first(format!("SELECT a FROM `{db}`.`_t_new` WHERE id = {id}"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    v
}

/// A migration of a fresh 300-row table `t` in `mig_<what>_<engine>` (run name
/// `<what>-<engine>`), waiting at its postponed cut-over; with the source rows and a
/// connection to the database.
async fn postponed(
    engine: Engine,
    what: &str,
) -> (
    Arc<TestServer>,
    String,
    Run,
    Vec<(i64, i64, String)>,
    mysql_async::Conn,
) {
    let server = TestServer::shared(engine);
    let name = format!("{what}-{}", engine.name());
    let db = table_with_rows(&server, &format!("mig_{what}_{}", engine.name()), 300).await;
    let mut run = Run::start(&server, &db, &name, &["--postpone-cut-over"]);
    run.wait_status("the postponed cut-over", |s| s["phase"] == "postponed")
        .await;
    let before = rows(&server, &db).await;
    let c = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    (server, db, run, before, c)
}

/// Wait until the shadow holds `a` for each `(id, a)` while `run` goes on.
async fn wait_shadow(run: &mut Run, server: &TestServer, db: &str, want: &[(i64, i64)]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut all = true;
        for (id, a) in want {
            all &= shadow_a(server, db, *id).await == Some(*a);
        }
        if all {
            return;
        }
        run.assert_running("the changes in the shadow");
        assert!(Instant::now() < deadline, "the shadow never held {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rows` with `a` raised by `delta` for each `(id, delta)`.
fn plus(rows: &[(i64, i64, String)], deltas: &[(i64, i64)]) -> Vec<(i64, i64, String)> {
    let mut out = rows.to_vec();
    for r in &mut out {
        r.1 += deltas
            .iter()
            .filter(|d| d.0 == r.0)
            .map(|d| d.1)
            .sum::<i64>();
    }
    out
}

async fn xa_branches(engine: Engine) {
    let (server, db, mut run, before, mut c) = postponed(engine, "xa").await;
    let a_of = |id: i64| before.iter().find(|r| r.0 == id).map(|r| r.1).unwrap();

    // Prepared, applied to the shadow, then rolled back: updates, a delete, an insert, and one
    // key changed twice and deleted and re-inserted (undone newest first).
    for q in [
        "XA START 'rs1'",
        "UPDATE t SET a = a + 100 WHERE id <= 20",
        "DELETE FROM t WHERE id BETWEEN 21 AND 25",
        "INSERT INTO t (id, a, s) VALUES (1001, 1, 'xa')",
        "UPDATE t SET a = a * 2 WHERE id = 40",
        "UPDATE t SET a = a + 7, s = 'twice' WHERE id = 40",
        "DELETE FROM t WHERE id = 41",
        "INSERT INTO t (id, a, s) VALUES (41, -1, 'again')",
        "XA END 'rs1'",
        "XA PREPARE 'rs1'",
    ] {
        c.query_drop(q).await.unwrap();
    }
    // Wait until the prepared rows reached the shadow, so the rollback has something to undo.
    wait_shadow(&mut run, &server, &db, &[(1, a_of(1) + 100), (1001, 1)]).await;
    c.query_drop("XA ROLLBACK 'rs1'").await.unwrap();
    // Committed after a prepare (with a branch qualifier and format ID), and in one phase.
    for q in [
        "XA START 'rs2','b',7",
        "UPDATE t SET a = a + 1 WHERE id = 30",
        "XA END 'rs2','b',7",
        "XA PREPARE 'rs2','b',7",
        "XA COMMIT 'rs2','b',7",
        "XA START 'rs3'",
        "UPDATE t SET a = a + 2 WHERE id = 31",
        "XA END 'rs3'",
        "XA COMMIT 'rs3' ONE PHASE",
        // Prepared and rolled back before rowshift could apply anything in between.
        "XA START 'rs4'",
        "DELETE FROM t WHERE id = 32",
        "XA END 'rs4'",
        "XA PREPARE 'rs4'",
        "XA ROLLBACK 'rs4'",
        "UPDATE t SET a = a + 3 WHERE id = 33",
    ] {
        c.query_drop(q).await.unwrap();
    }
    c.disconnect().await.unwrap();
    let want = plus(&before, &[(30, 1), (31, 2), (33, 3)]);
    assert_eq!(
        rows(&server, &db).await,
        want,
        "the source after the XA branches"
    );

    run.ctl_ok("cut-over", None).await;
    let end = run.wait().await;
    assert_eq!(end.code, 0, "{}\n{}", end.out, end.err);
    assert!(end.out.contains("GO"), "{}", end.out);
    assert!(
        tables(&server, &db).await.contains(&"_t_old".to_string()),
        "the old table is kept"
    );
    assert_eq!(
        rows(&server, &db).await,
        want,
        "the migrated table holds the source's rows"
    );
}

/// A branch prepared while rowshift runs, rowshift killed, the branch rolled back, the run
/// resumed: the checkpoint kept its restart point before the branch, so the resumed run reads
/// the branch again and undoes it at the rollback; the migrated table is the source's. The
/// result must be right wherever the checkpoint stood at the kill; that the restart point is
/// held back at all is shown deterministically by `binlog_live::xa_resume_point` (here an idle
/// run may not have checkpointed past the prepare yet, so this test alone would not always
/// catch a checkpoint that moves past it).
async fn xa_rolled_back_across_a_restart(engine: Engine) {
    let (server, db, mut run, before, mut c) = postponed(engine, "xarestart").await;
    let a_of = |id: i64| before.iter().find(|r| r.0 == id).map(|r| r.1).unwrap();
    c.query_drop(
        "XA START 'rsk'; UPDATE t SET a = a + 100 WHERE id <= 10; DELETE FROM t WHERE id = 11; \
         INSERT INTO t (id, a, s) VALUES (1001, 1, 'xa'); XA END 'rsk'; XA PREPARE 'rsk'",
    )
    .await
    .unwrap();
    // A commit after the prepare, so that the checkpoint has somewhere past the branch to go.
    let mut other = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    other
        .query_drop("UPDATE t SET a = a + 5 WHERE id = 50")
        .await
        .unwrap();
    wait_shadow(
        &mut run,
        &server,
        &db,
        &[(1, a_of(1) + 100), (1001, 1), (50, a_of(50) + 5)],
    )
    .await;
    run.kill().await;
    c.query_drop("XA ROLLBACK 'rsk'").await.unwrap();
    let want = plus(&before, &[(50, 5)]);
    assert_eq!(
        rows(&server, &db).await,
        want,
        "the source after the rollback"
    );

    let mut resumed = Run::start(
        &server,
        &db,
        &format!("xarestart-{}", engine.name()),
        &["--resume"],
    );
    // The killed run's flag file is still there: the resumed run, though not told to
    // postpone, must not cut over behind the operator's back.
    resumed
        .wait_status("the leftover flag file holds the resumed cut-over", |s| {
            s["phase"] == "postponed"
        })
        .await;
    assert!(
        resumed
            .stderr()
            .contains("left by an earlier postponed run"),
        "{}",
        resumed.stderr()
    );
    resumed.ctl_ok("cut-over", None).await;
    let end = resumed.wait().await;
    assert_eq!(end.code, 0, "{}\n{}", end.out, end.err);
    assert!(end.out.contains("GO"), "{}", end.out);
    assert_eq!(
        rows(&server, &db).await,
        want,
        "the migrated table holds the source's rows"
    );
    assert!(tables(&server, &db).await.contains(&"_t_old".to_string()));
}

/// A branch prepared on the table when the postponed cut-over is released: the verification
/// waits for it to end instead of reporting its (uncommitted) rows, then says GO.
async fn verification_waits_for_a_prepared_branch(engine: Engine) {
    let (server, db, mut run, before, mut c) = postponed(engine, "xawait").await;
    let a_of = |id: i64| before.iter().find(|r| r.0 == id).map(|r| r.1).unwrap();
    c.query_drop(
        "XA START 'rw'; UPDATE t SET a = a + 9 WHERE id = 5; XA END 'rw'; XA PREPARE 'rw'",
    )
    .await
    .unwrap();
    wait_shadow(&mut run, &server, &db, &[(5, a_of(5) + 9)]).await;
    run.ctl_ok("cut-over", None).await;
    let deadline = Instant::now() + DEADLINE;
    while !run
        .stderr()
        .contains("waiting for an XA transaction prepared on the table to end")
    {
        run.assert_running("the wait for the prepared XA transaction");
        assert!(
            Instant::now() < deadline,
            "no wait for the prepared branch:\n{}",
            run.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.query_drop("XA COMMIT 'rw'").await.unwrap();
    let end = run.wait().await;
    assert_eq!(end.code, 0, "{}\n{}", end.out, end.err);
    assert!(end.out.contains("GO"), "{}", end.out);
    assert_eq!(rows(&server, &db).await, plus(&before, &[(5, 9)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_waits_for_a_prepared_branch_mysql() {
    verification_waits_for_a_prepared_branch(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_waits_for_a_prepared_branch_mariadb() {
    verification_waits_for_a_prepared_branch(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_rolled_back_across_a_restart_mysql() {
    xa_rolled_back_across_a_restart(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_rolled_back_across_a_restart_mariadb() {
    xa_rolled_back_across_a_restart(Engine::MariaDb).await;
}

/// A shadow changed behind rowshift's back while the cut-over waits: the verification after
/// the release finds the row and the cut-over is refused; the table is untouched.
async fn reverified_after_postponement(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("reverify-{}", engine.name());
    let db = table_with_rows(&server, &format!("mig_reverify_{}", engine.name()), 300).await;
    let before = rows(&server, &db).await;
    let create_before = create_of(&server, &db).await;
    let mut run = Run::start(&server, &db, &name, &["--postpone-cut-over"]);
    run.wait_status("the postponed cut-over", |s| s["phase"] == "postponed")
        .await;
    let mut c = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    c.query_drop("UPDATE _t_new SET a = a + 1 WHERE id = 77")
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    run.ctl_ok("cut-over", None).await;
    let end = run.wait().await;
    assert_ne!(end.code, 0, "{}\n{}", end.out, end.err);
    assert!(
        end.err.contains("verifying again after the postponement")
            && end.err.contains("NO-GO")
            && end.err.contains("changed         id=77  columns: a"),
        "{}",
        end.err
    );
    assert_eq!(tables(&server, &db).await, vec!["t".to_string()]);
    assert_eq!(rows(&server, &db).await, before);
    assert_eq!(create_of(&server, &db).await, create_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverified_after_postponement_mysql() {
    reverified_after_postponement(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverified_after_postponement_mariadb() {
    reverified_after_postponement(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_branches_mysql() {
    xa_branches(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_branches_mariadb() {
    xa_branches(Engine::MariaDb).await;
}
