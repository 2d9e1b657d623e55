//! `--hooks-dir`: real shell scripts record their environment at every phase change of a real
//! migration (both engines): the events come in order with the context variables and never the
//! password; a failing `rowshift-on-before-cut-over` stops the migration with the original
//! table untouched and runs `rowshift-on-failure` with the error; a hook that outlives
//! `--hook-timeout` is killed and fails the run; a misnamed or non-executable hook is refused
//! before anything starts.

mod migrate_support;

use migrate_support::*;
use mysql_async::prelude::Queryable;
use rowshift_testkit::both_engines;
use rowshift_testkit::Engine;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const EVENTS: [&str; 8] = [
    "startup",
    "copy-start",
    "copy-done",
    "catch-up-done",
    "verify-done",
    "before-cut-over",
    "success",
    "failure",
];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rowshift-hooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("hooks")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    dir
}

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join("hooks").join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A hook for each event that appends its name to `out/order` and saves its environment.
fn recording_hooks(dir: &Path) {
    let out = dir.join("out");
    for e in EVENTS {
        script(
            dir,
            &format!("rowshift-on-{e}"),
            &format!(
                "env > '{0}/{e}.env'\necho {e} >> '{0}/order'",
                out.display()
            ),
        );
    }
}

/// `KEY=value` pairs of a saved environment.
fn env_of(dir: &Path, event: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("out").join(format!("{event}.env")))
        .unwrap_or_else(|e| panic!("hook {event} did not run: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn var(env: &[(String, String)], key: &str) -> String {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} missing from the hook's environment: {env:?}"))
}

fn order(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("out/order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn table(db: &TestDb) {
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL) ENGINE=InnoDB"])
        .await;
    insert_rows(db, "t", (1..=2_000).map(|i| format!("({i}, {})", i % 13))).await;
}

/// A user with a password, so the test can check that no hook sees it.
async fn user_with_password(db: &TestDb, user: &str, password: &str) -> String {
    let mut c = db.conn().await;
    for host in ["%", "localhost", "127.0.0.1"] {
        let account = format!("'{user}'@'{host}'");
        c.query_drop(format!("DROP USER IF EXISTS {account}"))
            .await
            .unwrap();
        c.query_drop(format!("CREATE USER {account} IDENTIFIED BY '{password}'"))
            .await
            .unwrap();
        c.query_drop(format!("GRANT ALL ON *.* TO {account}"))
            .await
            .unwrap();
    }
    c.disconnect().await.unwrap();
    format!("mysql://{user}@127.0.0.1:{}", db.server.port())
}

async fn hooks_follow_the_phases(engine: Engine) {
    let db = setup(engine, "hooks_ok").await;
    table(&db).await;
    let dir = temp_dir(&format!("ok-{}", engine.name()));
    recording_hooks(&dir);
    let user = format!("rs_hooks_{}", engine.name());
    let password = format!("Hook-Secret-{}", engine.name());
    let url = user_with_password(&db, &user, &password).await;
    let hooks = dir.join("hooks").display().to_string();
    let o = db
        .migrate_as(
            &url,
            Some(&password),
            "t",
            "ADD COLUMN b INT NOT NULL DEFAULT 1",
            &["--execute", "--hooks-dir", &hooks],
        )
        .await;
    o.assert_ok();
    assert_eq!(
        order(&dir),
        EVENTS[..7].to_vec(),
        "hooks in phase order, no failure hook"
    );
    for e in &EVENTS[..7] {
        let env = env_of(&dir, e);
        assert_eq!(var(&env, "ROWSHIFT_HOOK"), *e);
        assert_eq!(var(&env, "ROWSHIFT_DATABASE"), db.db);
        assert_eq!(var(&env, "ROWSHIFT_TABLE"), "t");
        assert!(var(&env, "ROWSHIFT_ELAPSED_SECONDS").parse::<u64>().is_ok());
        assert!(
            env.iter()
                .all(|(k, v)| !v.contains(&password) && k != "ROWSHIFT_PASSWORD"),
            "hook {e} saw the password"
        );
    }
    assert_eq!(var(&env_of(&dir, "copy-start"), "ROWSHIFT_PHASE"), "copy");
    assert_eq!(
        var(&env_of(&dir, "copy-start"), "ROWSHIFT_ROWS_COPIED"),
        "0"
    );
    assert_eq!(
        var(&env_of(&dir, "copy-done"), "ROWSHIFT_ROWS_COPIED"),
        "2000"
    );
    assert_eq!(
        var(&env_of(&dir, "success"), "ROWSHIFT_ROWS_COPIED"),
        "2000"
    );
    assert_eq!(var(&env_of(&dir, "verify-done"), "ROWSHIFT_VERIFY"), "go");
    assert_eq!(
        var(&env_of(&dir, "before-cut-over"), "ROWSHIFT_PHASE"),
        "cut-over"
    );
    db.assert_only_old_left("t").await;
    // A dry run runs no hook (the old table dropped first: a dry run drops nothing).
    db.exec(&["DROP TABLE `_t_old`"]).await;
    std::fs::remove_file(dir.join("out/order")).unwrap();
    let o = db
        .migrate("t", "ADD COLUMN c INT", &["--hooks-dir", &hooks])
        .await;
    o.assert_ok();
    assert!(
        order(&dir).is_empty(),
        "a dry run ran hooks: {:?}",
        order(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn failing_before_cut_over_aborts(engine: Engine) {
    let db = setup(engine, "hooks_veto").await;
    table(&db).await;
    let before = db.snapshot("t").await;
    let dir = temp_dir(&format!("veto-{}", engine.name()));
    recording_hooks(&dir);
    // A second hook for the same event, run after the recording one: it vetoes.
    script(
        &dir,
        "rowshift-on-before-cut-over-veto",
        "echo 'not during business hours' >&2\nexit 3",
    );
    let hooks = dir.join("hooks").display().to_string();
    let o = db
        .migrate(
            "t",
            "ADD COLUMN b INT NOT NULL DEFAULT 1",
            &["--execute", "--hooks-dir", &hooks],
        )
        .await;
    o.assert_failed_with("rowshift-on-before-cut-over-veto failed");
    assert!(o.err.contains("not during business hours"), "{}", o.err);
    assert_eq!(
        order(&dir),
        [
            "startup",
            "copy-start",
            "copy-done",
            "catch-up-done",
            "verify-done",
            "before-cut-over",
            "failure"
        ]
    );
    let failure = env_of(&dir, "failure");
    assert!(var(&failure, "ROWSHIFT_ERROR").contains("rowshift-on-before-cut-over-veto"));
    let after = db.snapshot("t").await;
    assert_eq!(
        after.create, before.create,
        "the table's definition changed"
    );
    after.assert_same_rows(&before, "the table's rows changed");
    db.assert_no_helpers("t").await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn slow_hook_times_out(engine: Engine) {
    let db = setup(engine, "hooks_slow").await;
    table(&db).await;
    let dir = temp_dir(&format!("slow-{}", engine.name()));
    recording_hooks(&dir);
    // Far longer than the run takes on the slowest machine: a run that waited for the hook
    // instead of killing it shows in the elapsed time without a tight bound.
    script(&dir, "rowshift-on-copy-done", "exec sleep 600");
    let hooks = dir.join("hooks").display().to_string();
    let started = std::time::Instant::now();
    let o = db
        .migrate(
            "t",
            "ADD COLUMN b INT",
            &["--execute", "--hooks-dir", &hooks, "--hook-timeout", "1s"],
        )
        .await;
    o.assert_failed_with("did not finish within 1s");
    assert!(started.elapsed().as_secs() < 300, "the hook was not killed");
    assert!(order(&dir).ends_with(&["failure".to_string()]));
    db.assert_no_helpers("t").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The throttled / unthrottled hooks follow the throttler: the copy starts throttled by a flag
/// file, the throttled hook removes the flag, the copy is released and the unthrottled hook
/// runs; the migration finishes.
async fn throttle_hooks_follow_the_throttler(engine: Engine) {
    let db = setup(engine, "hooks_throttle").await;
    table(&db).await;
    let dir = temp_dir(&format!("throttle-{}", engine.name()));
    let out = dir.join("out");
    let flag = dir.join("throttle.flag");
    std::fs::write(&flag, "").unwrap();
    for e in ["throttled", "unthrottled"] {
        script(
            &dir,
            &format!("rowshift-on-{e}"),
            &format!(
                "env > '{0}/{e}.env'\necho {e} >> '{0}/order'\nrm -f '{1}'",
                out.display(),
                flag.display()
            ),
        );
    }
    let hooks = dir.join("hooks").display().to_string();
    let flag_arg = flag.display().to_string();
    let o = db
        .migrate(
            "t",
            "ADD COLUMN b INT NOT NULL DEFAULT 1",
            &[
                "--execute",
                "--hooks-dir",
                &hooks,
                "--throttle-flag-file",
                &flag_arg,
            ],
        )
        .await;
    o.assert_ok();
    assert_eq!(order(&dir), vec!["throttled", "unthrottled"]);
    let reason = var(&env_of(&dir, "throttled"), "ROWSHIFT_THROTTLE_REASON");
    assert!(reason.contains("flag"), "reason: {reason}");
    db.assert_only_old_left("t").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_hook_files_are_refused_before_anything_runs() {
    let dir = temp_dir("bad");
    script(&dir, "rowshift-on-copy-finished", "exit 0");
    let hooks = dir.join("hooks").display().to_string();
    let args = [
        "migrate",
        "--source",
        "mysql://root@127.0.0.1:1",
        "--table",
        "a.b",
        "--alter",
        "ADD COLUMN x INT",
        "--hooks-dir",
        &hooks,
    ];
    let o = run_rowshift_env(&args, &[]).await;
    o.assert_failed_with("names no known event");
    assert!(
        o.err.contains("rowshift-on-copy-done"),
        "lists the known names: {}",
        o.err
    );
    std::fs::remove_file(dir.join("hooks/rowshift-on-copy-finished")).unwrap();
    std::fs::write(dir.join("hooks/rowshift-on-success"), "#!/bin/sh\n").unwrap();
    let o = run_rowshift_env(&args, &[]).await;
    o.assert_failed_with("is not executable");
    let mut missing = args.to_vec();
    missing[8] = "/nonexistent/rowshift-hooks";
    let o = run_rowshift_env(&missing, &[]).await;
    o.assert_failed_with("--hooks-dir /nonexistent/rowshift-hooks");
    let _ = std::fs::remove_dir_all(&dir);
}

both_engines!(
    throttle_hooks_follow_the_throttler,
    hooks_follow_the_phases,
    failing_before_cut_over_aborts,
    slow_hook_times_out
);
