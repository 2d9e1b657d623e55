//! The progress display of `rowshift migrate`:
//! - in a real terminal (a tmux pane, 160×40): the copy bar moves (two captures show different
//!   row counts), log lines print above the bars without garbling them, and the final summary
//!   appears; the last capture is printed (the README shows one);
//! - without a terminal: plain status lines every `--status-interval`, no escape codes, and
//!   with `--log-format json` each log record a whole JSON line between them.

mod migrate_support;

use migrate_support::*;
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
    screen
        .lines()
        .find(|l| l.trim_start().starts_with("copy [") && l.contains(" rows"))
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
        "cut-over: table locked",
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

macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    super::$name(Engine::MySql).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb() {
                    super::$name(Engine::MariaDb).await;
                }
            }
        )*
    };
}

both_engines!(
    bar_moves_in_a_terminal,
    plain_status_lines_without_a_terminal
);
