//! The progress display of `rowshift migrate`:
//! - in a real terminal (a tmux pane, 160×40): the copy bar moves (two captures show different
//!   row counts), log lines print above the bars without garbling them, and the final summary
//!   appears; the last capture is printed (the README shows one);
//! - without a terminal: plain status lines every `--status-interval`, no escape codes, and
//!   with `--log-format json` each log record a whole JSON line between them;
//! - `rowshift sync` in a terminal (MySQL → MariaDB and MariaDB → MySQL): the backfill bar moves (two captures show
//!   different row counts), then the streaming line counts the applied events of new writes;
//!   a SIGTERM leaves the bars finished and the checkpoint kept.

mod migrate_support;
mod sync_support;

use migrate_support::*;
use mysql_async::prelude::Queryable;
use rowshift_testkit::both_engines;
use rowshift_testkit::{rowshift_bin, Engine};
use std::process::Command;
use std::time::{Duration, Instant};

/// `t` with `2^doublings * 1000` rows of about 100 bytes.
async fn big_table(db: &TestDb, doublings: u32) {
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, pad VARCHAR(100) NOT NULL) ENGINE=InnoDB"])
        .await;
    insert_rows(
        db,
        "t",
        (1..=1_000).map(|i| format!("({i}, {}, REPEAT('x', 90))", i % 100)),
    )
    .await;
    for k in 0..doublings {
        let n = 1_000u64 << k;
        let t = db.t("t");
        db.exec(&[&format!(
            "INSERT INTO {t} (id, a, pad) SELECT id + {n}, a, pad FROM {t}"
        )])
        .await;
    }
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux is needed (scripts/test-servers.sh installs it): {e}")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "rs"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The row count on the copy bar's line, if one is shown.
fn copy_rows(screen: &str) -> Option<String> {
    bar_rows(screen, "copy [")
}

/// The row count on the bar line starting with `start`, if one is shown.
fn bar_rows(screen: &str, start: &str) -> Option<String> {
    screen
        .lines()
        .rfind(|l| l.trim_start().starts_with(start) && l.contains(" rows"))
        .and_then(|l| l.split(']').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|pos| pos.split('/').next().unwrap_or("").to_string())
}

async fn bar_moves_in_a_terminal(engine: Engine) {
    let db = setup(engine, "progress_tty").await;
    big_table(&db, 8).await; // 256,000 rows
    let socket = format!("rowshift-test-{}-{}", engine.name(), std::process::id());
    let tmux = Tmux { socket };
    let table = format!("{}.t", db.db);
    let cmd = format!(
        "ROWSHIFT_LOG=rowshift=info '{}' migrate --source '{}' --table '{table}' --alter 'ADD COLUMN b INT NOT NULL DEFAULT 3' --execute --copy-workers 1 --chunk-time-ms 20; echo rowshift-exit=$?; exec cat",
        rowshift_bin().display(),
        db.server.url()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "rs",
        "-x",
        "160",
        "-y",
        "40",
        "sh",
        "-c",
        &cmd,
    ]);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen: Vec<String> = Vec::new();
    let final_screen = loop {
        let screen = tmux.capture();
        if let Some(rows) = copy_rows(&screen) {
            if seen.last() != Some(&rows) {
                seen.push(rows);
                if seen.len() == 2 {
                    println!("terminal capture during the copy ({engine:?}):\n{screen}");
                }
            }
        }
        if screen.contains("rowshift-exit=") {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "rowshift did not finish in the terminal:\n{screen}"
        );
        // Polling the pane for a new frame; the migration runs on its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("final terminal capture ({engine:?}):\n{final_screen}");
    assert!(
        final_screen.contains("rowshift-exit=0"),
        "rowshift failed:\n{final_screen}"
    );
    assert!(
        seen.len() >= 2,
        "the copy bar should move between two captures; row counts seen: {seen:?}\n{final_screen}"
    );
    for needle in [
        "migrated: 256000 rows copied",
        "cut-over: began",
        "table locked",
        "phases: ",
        "copy [",
        "done in",
    ] {
        assert!(
            final_screen.contains(needle),
            "{needle:?} missing from the final screen:\n{final_screen}"
        );
    }
    // Logs print above the bars, never inside one.
    for line in final_screen.lines() {
        if line.contains(" INFO ") {
            assert!(
                !line.contains("[="),
                "a log line is mixed with a bar: {line}"
            );
        }
    }
    db.assert_only_old_left("t").await;
}

async fn plain_status_lines_without_a_terminal(engine: Engine) {
    let db = setup(engine, "progress_plain").await;
    big_table(&db, 6).await; // 64,000 rows
    let o = db
        .migrate(
            "t",
            "ADD COLUMN b INT NOT NULL DEFAULT 3",
            &[
                "--execute",
                "--copy-workers",
                "1",
                "--status-interval",
                "100ms",
            ],
        )
        .await;
    o.assert_ok();
    let status: Vec<&str> = o
        .err
        .lines()
        .filter(|l| l.contains("] copied ") && l.contains(" rows/s"))
        .collect();
    assert!(status.len() >= 2, "status lines every 100 ms:\n{}", o.err);
    assert!(o.err.contains("rowshift: phase copy"), "{}", o.err);
    assert!(
        !o.err.contains('\u{1b}'),
        "no escape codes off a terminal:\n{}",
        o.err
    );
    assert!(o.out.contains("migrated: 64000 rows copied"), "{}", o.out);
    assert!(o.out.contains("phases: "), "{}", o.out);
    db.assert_only_old_left("t").await;
    // With --log-format json every log record is one whole JSON line, status lines apart.
    let o = db
        .migrate(
            "t",
            "ADD COLUMN c INT NOT NULL DEFAULT 4",
            &[
                "--execute",
                "--drop-leftovers",
                "--log-format",
                "json",
                "--status-interval",
                "100ms",
            ],
        )
        .await;
    o.assert_ok();
    let mut records = 0;
    for l in o.err.lines() {
        if l.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line is not whole JSON ({e}): {l}"));
            assert!(v.get("level").is_some(), "{l}");
            records += 1;
        } else {
            assert!(
                l.starts_with('[') || l.starts_with("rowshift: phase "),
                "neither a log record nor a status line: {l}"
            );
        }
    }
    assert!(records > 0, "no JSON log records:\n{}", o.err);
    db.assert_only_old_left("t").await;
}

/// The applied events on the sync's streaming line, if one is shown.
fn streaming_events(screen: &str) -> Option<u64> {
    let line = screen
        .lines()
        .rfind(|l| l.trim_start().starts_with("streaming "))?;
    let before = &line[..line.find(" events applied")?];
    before.split_whitespace().last()?.parse().ok()
}

/// Poll the pane until `pred` holds on a capture (the sync must not have ended).
async fn wait_screen(tmux: &Tmux, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let screen = tmux.capture();
        if pred(&screen) {
            return screen;
        }
        assert!(
            !screen.contains("rowshift-exit="),
            "rowshift ended while waiting for {what}:\n{screen}"
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{screen}"
        );
        // Polling the pane for a new frame; the sync runs on its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sync_bars_in_a_terminal(from: Engine, to: Engine) {
    let db = setup(from, "progress_sync").await;
    big_table(&db, 8).await; // 256,000 rows
    let target = rowshift_testkit::TestServer::shared(to);
    target.fresh_db(&db.db).await.unwrap();
    let socket = format!("rowshift-sync-test-{}-{}", from.name(), std::process::id());
    let tmux = Tmux { socket };
    let table = format!("{}.t", db.db);
    let cmd = format!(
        "ROWSHIFT_LOG=rowshift=info '{}' sync --source '{}' --target '{}' --table '{table}' --name bars --chunk-rows 1000; echo rowshift-exit=$?; exec cat",
        rowshift_bin().display(),
        db.server.url(),
        target.url(),
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "rs",
        "-x",
        "160",
        "-y",
        "40",
        "sh",
        "-c",
        &cmd,
    ]);

    // The backfill bar moves: two captures with different row counts, a percentage shown.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let screen = tmux.capture();
        if let Some(rows) = bar_rows(&screen, "backfill [") {
            if seen.last() != Some(&rows) {
                seen.push(rows);
                if seen.len() == 2 {
                    println!(
                        "terminal capture during the backfill ({from:?} -> {to:?}):\n{screen}"
                    );
                    assert!(screen.contains("%), ETA "), "{screen}");
                    break;
                }
            }
        }
        assert!(
            !screen.contains("rowshift-exit=") && !screen.contains("streaming "),
            "the backfill bar was not seen moving (row counts seen: {seen:?}):\n{screen}"
        );
        assert!(Instant::now() < deadline, "no backfill bar:\n{screen}");
        // Polling the pane for a new frame; the sync runs on its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After the backfill: the streaming line counts the applied events of new writes.
    wait_screen(&tmux, "the streaming line", |s| {
        streaming_events(s).is_some()
    })
    .await;
    db.exec(&[&format!(
        "UPDATE {} SET a = a + 1 WHERE id <= 20",
        db.t("t")
    )])
    .await;
    let screen = wait_screen(&tmux, "20 applied events on the streaming line", |s| {
        streaming_events(s).is_some_and(|n| n >= 20)
    })
    .await;
    println!("terminal capture while streaming ({from:?} -> {to:?}):\n{screen}");
    for needle in ["backfill [", "done in", "events/s", "lag "] {
        assert!(screen.contains(needle), "{needle:?} missing:\n{screen}");
    }

    // SIGTERM: the sync stops cleanly and keeps its checkpoint.
    // The pane's shell runs rowshift as its only child.
    let shell = tmux.run(&["display-message", "-p", "-t", "rs", "#{pane_pid}"]);
    let shell = shell.trim();
    let pid: i32 = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("the pane's shell {shell} has no child"))
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the rowshift process this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let final_screen = wait_screen_end(&tmux).await;
    println!("final terminal capture ({from:?} -> {to:?}):\n{final_screen}");
    assert!(
        final_screen.contains("rowshift-exit=0"),
        "sync failed:\n{final_screen}"
    );
    assert!(
        final_screen.contains("sync stopped; checkpoint kept"),
        "{final_screen}"
    );
    // The target holds what the source holds.
    let sql = format!("SELECT COUNT(*), CAST(SUM(a) AS SIGNED) FROM {}", db.t("t"));
    let mut s = mysql_async::Conn::from_url(db.server.url()).await.unwrap();
    let mut t = mysql_async::Conn::from_url(target.url()).await.unwrap();
    let a: Option<(i64, i64)> = s.query_first(&sql).await.unwrap();
    let b: Option<(i64, i64)> = t.query_first(&sql).await.unwrap();
    assert_eq!(a, Some((256_000, a.map_or(0, |x| x.1))), "{a:?}");
    assert_eq!(a, b, "target differs from source");
}

/// Poll the pane until the command printed its exit code.
async fn wait_screen_end(tmux: &Tmux) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let screen = tmux.capture();
        if screen.contains("rowshift-exit=") {
            return screen;
        }
        assert!(Instant::now() < deadline, "rowshift did not end:\n{screen}");
        // Polling the pane for a new frame.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Without a terminal `rowshift sync` prints a plain status line every `--status-interval`:
/// the backfill's rows (growing, with the estimate) and then the applied events.
async fn sync_plain_status_lines(from: Engine, to: Engine) {
    let db = setup(from, "progress_sync_plain").await;
    big_table(&db, 6).await; // 64,000 rows
    let target = rowshift_testkit::TestServer::shared(to);
    target.fresh_db(&db.db).await.unwrap();
    let table = format!("{}.t", db.db);
    let args: Vec<String> = [
        "--source",
        &db.server.url(),
        "--target",
        &target.url(),
        "--table",
        &table,
        "--name",
        "plain",
        "--chunk-rows",
        "1000",
        "--status-interval",
        "100ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = std::env::temp_dir().join(format!("rowshift-{}.log", db.db));
    let _ = std::fs::remove_file(&log);
    let mut child = sync_support::spawn_sync(&args, &log);
    sync_support::wait_backfill(&target, &db.db, "plain", &mut child).await;
    db.exec(&[&format!(
        "UPDATE {} SET a = a + 1 WHERE id <= 20",
        db.t("t")
    )])
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let streaming_applied = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("[streaming]"))
            .filter_map(|l| {
                let before = &l[..l.find(" events applied")?];
                before.split_whitespace().last()?.parse::<u64>().ok()
            })
            .max()
    };
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if streaming_applied(&text).is_some_and(|n| n >= 20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no streaming status line with 20 applied events:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling the log
    }
    sync_support::stop_sync(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let backfill: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("[ backfill] backfill "))
        .collect();
    println!("backfill status lines:\n{}", backfill.join("\n"));
    let counts: std::collections::BTreeSet<&str> = backfill
        .iter()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert!(
        counts.len() >= 2,
        "backfill status lines with growing row counts:\n{text}"
    );
    assert!(
        backfill
            .iter()
            .any(|l| l.contains("rows/s") && l.contains("/~")),
        "{text}"
    );
    assert!(text.contains("rowshift: phase streaming"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes off a terminal:\n{text}"
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_plain_status_lines_mysql_to_mariadb() {
    sync_plain_status_lines(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_bars_in_a_terminal_mysql_to_mariadb() {
    sync_bars_in_a_terminal(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_bars_in_a_terminal_mariadb_to_mysql() {
    sync_bars_in_a_terminal(Engine::MariaDb, Engine::MySql).await;
}

both_engines!(
    bar_moves_in_a_terminal,
    plain_status_lines_without_a_terminal
);
