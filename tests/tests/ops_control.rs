//! Live control of a running migration through `rowshift ctl` and HTTP: the flag-file
//! throttle, chunk size and pause/resume taking effect within one chunk, `/metrics` counters
//! moving, and a postponed cut-over released by `ctl cut-over`.

mod ops_support;

use ops_support::*;
use rowshift_testkit::{Engine, TestServer};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const ROWS: u32 = 5000;

/// The value of `rowshift_rows_copied_total` in a `/metrics` scrape (parsed with a Prometheus
/// text parser), and the parsed samples' metric names.
fn rows_copied_metric(body: &str) -> (f64, Vec<String>) {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let names: Vec<String> = scrape.samples.iter().map(|s| s.metric.clone()).collect();
    let value = scrape
        .samples
        .iter()
        .find(|s| s.metric == "rowshift_rows_copied_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("rows_copied is not a number: {:?}", s.value),
        })
        .unwrap_or_else(|| panic!("no rowshift_rows_copied_total in\n{body}"));
    (value, names)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn control(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("ctl-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_ctl_{}", engine.name()), ROWS).await;
    let before = rows(&server, &db).await;
    let hold = temp_path(&format!("{name}.hold"));
    std::fs::write(&hold, "hold").unwrap();
    let postpone = temp_path(&format!("{name}.postpone"));
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let (hold_s, postpone_s) = (hold.display().to_string(), postpone.display().to_string());
    let mut run = Run::start(
        &server,
        &db,
        &name,
        &[
            "--throttle-flag-file",
            &hold_s,
            "--postpone-flag-file",
            &postpone_s,
            "--http",
            &http,
            "--copy-nice-ratio",
            "1",
        ],
    );

    // The flag file holds the copy from its first chunk on.
    let s = run
        .wait_status("the flag-file throttle", |s| {
            s["throttled"] == true && s["phase"] == "copy"
        })
        .await;
    assert!(
        s["throttle_reason"].as_str().unwrap().contains(&hold_s),
        "the reason names the flag file: {s}"
    );
    assert_eq!(num(&s, "rows_copied"), 0, "{s}");
    assert!(s["gentle"].is_boolean(), "the pace is in the status: {s}");
    // The server's statistics, capped by the integer key's span (ids 1..=ROWS).
    assert!(num(&s, "rows_estimate") <= u64::from(ROWS), "{s}");

    // Pause, chunk size 20, then the flag goes: still held by the pause.
    run.ctl_ok("pause", None).await;
    run.ctl_ok("chunk-size", Some("20")).await;
    std::fs::remove_file(&hold).unwrap();
    let s = run
        .wait_status("the flag-file throttle to go", |s| s["throttled"] == false)
        .await;
    assert_eq!(s["copy_open"], false, "paused: {s}");
    assert_eq!(num(&s, "rows_copied"), 0, "paused before any chunk: {s}");

    // Resume: every chunk has 20 rows.
    run.ctl_ok("resume", None).await;
    run.wait_status("60 rows copied", |s| num(s, "rows_copied") >= 60)
        .await;
    let v = run.ctl_ok("pause", None).await;
    assert_eq!(v["paused"], true, "{v}");
    let s = run.wait_paused_idle("the paused copy to be idle").await;
    let held = num(&s, "rows_copied");
    assert!(held < u64::from(ROWS), "paused before the end: {s}");
    assert_eq!(held % 20, 0, "every chunk had 20 rows: {s}");
    // Over 1 % of the key span copied: the estimate is the density found so far, scaled to
    // the span (every id exists), whatever the statistics said.
    assert_eq!(num(&s, "rows_estimate"), u64::from(ROWS), "{s}");
    assert_eq!(num(&s, "last_chunk_rows"), 20, "{s}");
    assert_eq!(s["chunk_setting"]["mode"], "rows", "{s}");
    // While paused, rows_copied stays put (observed over ten status reads).
    for _ in 0..10 {
        let s = run.ctl_ok("status", None).await;
        assert_eq!(
            num(&s, "rows_copied"),
            held,
            "the copy moved while paused: {s}"
        );
        assert_eq!(s["phase"], "copy", "{s}");
    }
    // /metrics: a Prometheus text scrape; the counter reaches the paused value. The counter is
    // fed on a 250 ms tick and the chunk histogram from a channel, each in its own turn of the
    // feed: wait for both.
    let deadline = Instant::now() + DEADLINE;
    let first = loop {
        let (status, body) = http_get(port, "/metrics").await;
        assert!(status.contains("200"), "{status}\n{body}");
        let (v, names) = rows_copied_metric(&body);
        for m in [
            "rowshift_events_total",
            "rowshift_throttled",
            "rowshift_throttle_reason",
            "rowshift_apply_lag_seconds",
            "rowshift_apply_batches_total",
            "rowshift_apply_lag_events",
        ] {
            assert!(names.iter().any(|n| n == m), "{m} missing in\n{body}");
        }
        if v as u64 == held && body.contains("rowshift_chunk_seconds_bucket") {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {held} rows with the chunk histogram:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, body) = http_get(port, "/status").await;
    assert!(status.contains("200"), "{status}");
    let st: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(st["paused"], true, "{st}");

    // While paused, a new chunk size applies to every chunk dispatched after it. Chunks
    // dispatched before the change keep the old size: with the one worker, the chunk it holds
    // at its gate (the dispatcher finds the next bounds again when the setting changed); the
    // bound below allows three.
    let chunks = num(&s, "chunks");
    let copied = num(&s, "rows_copied");
    run.ctl_ok("chunk-size", Some("50")).await;
    let (status, body) = http_post(port, "/resume", "").await;
    assert!(status.contains("200"), "{status} {body}");
    run.wait_status("a 50-row chunk", |s| {
        num(s, "last_chunk_rows") == 50 || num(s, "rows_copied") >= u64::from(ROWS)
    })
    .await;
    // Counted while paused and idle again: `status` reads its counters one after the other, so
    // a chunk that finishes during a read can show in `chunks` and not yet in `rows_copied`.
    run.ctl_ok("pause", None).await;
    let s = run
        .wait_paused_idle("the paused copy to be idle again")
        .await;
    // Every chunk but the table's last has exactly its size; the last may be short, so the
    // sizes are checked while it has not been copied.
    if num(&s, "rows_copied") < u64::from(ROWS) {
        let (n, rows) = (num(&s, "chunks") - chunks, num(&s, "rows_copied") - copied);
        // n chunks after the resume, `old` of them (20 rows), the rest new (50 rows).
        let old = (50 * n).saturating_sub(rows) / 30;
        assert_eq!(
            20 * old + 50 * (n - old),
            rows,
            "only 20 and 50-row chunks: {s}"
        );
        assert!(
            old <= 3,
            "{old} chunks of the old size after the resume: {s}"
        );
        assert_eq!(num(&s, "last_chunk_rows"), 50, "{s}");
    }
    run.ctl_ok("resume", None).await;
    // The counter moved.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, body) = http_get(port, "/metrics").await;
        let (v, _) = rows_copied_metric(&body);
        if v > first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows_copied_total did not move:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bad command is refused with a reason, over both interfaces.
    let (code, v) = run.ctl("chunk-size", Some("many")).await;
    assert_ne!(code, 0, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    let (status, body) = http_post(port, "/dance", "").await;
    assert!(status.contains("400"), "{status} {body}");
    assert!(body.contains("unknown command"), "{body}");
    run.ctl_ok("chunk-size", Some("auto")).await;

    // The postponed cut-over waits for `ctl cut-over`.
    run.wait_status("the postponed cut-over", |s| s["phase"] == "postponed")
        .await;
    let t = tables(&server, &db).await;
    assert!(
        t.contains(&"_t_new".to_string()) && !t.contains(&"_t_old".to_string()),
        "not cut over while postponed: {t:?}"
    );
    let v = run.ctl_ok("status", None).await;
    assert_eq!(v["postponed"], true, "{v}");
    // A throttle holds the released cut-over until it goes.
    run.ctl_ok("throttle", None).await;
    run.wait_status("the operator's throttle", |s| s["throttled"] == true)
        .await;
    run.ctl_ok("cut-over", None).await;
    assert!(
        !postpone.exists(),
        "cut-over deletes the postpone flag file"
    );
    run.wait_status("the cut-over held by the throttle", |s| {
        s["phase"] == "throttled"
    })
    .await;
    let t = tables(&server, &db).await;
    assert!(
        !t.contains(&"_t_old".to_string()),
        "cut over while throttled: {t:?}"
    );
    run.ctl_ok("unthrottle", None).await;
    let socket = run.socket.clone();
    let end = run.wait().await;
    assert_eq!(end.code, 0, "stdout:\n{}\nstderr:\n{}", end.out, end.err);
    assert!(
        end.out.contains("cut-over: began") && end.out.contains("table locked"),
        "{}",
        end.out
    );
    let t = tables(&server, &db).await;
    assert!(t.contains(&"_t_old".to_string()), "{t:?}");
    assert_eq!(rows(&server, &db).await, before, "rows changed");
    assert!(create_of(&server, &db).await.contains("`b`"));
    assert!(!socket.exists(), "the control socket is removed at the end");
    assert!(
        end.err.contains("copy paused by the operator")
            && end.err.contains("copy throttled")
            && end.err.contains("copy released"),
        "state changes are logged:\n{}",
        end.err
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_mysql() {
    control(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_mariadb() {
    control(Engine::MariaDb).await;
}

/// `ctl postpone` holds a cut-over that no flag file holds; `ctl abort` then stops the
/// migration, leaving the table untouched and no helper table behind.
async fn postpone_then_abort(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("abort-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_abort_{}", engine.name()), 300).await;
    let before = rows(&server, &db).await;
    let create_before = create_of(&server, &db).await;
    let hold = temp_path(&format!("{name}.hold"));
    std::fs::write(&hold, "hold").unwrap();
    let hold_s = hold.display().to_string();
    // The default socket, found by `ctl --table db.t`.
    let mut run =
        Run::start_default_socket(&server, &db, &name, &["--throttle-flag-file", &hold_s]);
    run.wait_status("the flag-file throttle", |s| s["throttled"] == true)
        .await;
    let v = run.ctl_ok("postpone", None).await;
    assert_eq!(v["postponed"], true, "{v}");
    std::fs::remove_file(&hold).unwrap();
    run.wait_status("the postponed cut-over", |s| s["phase"] == "postponed")
        .await;
    assert!(
        run.socket.metadata().unwrap().permissions().mode() & 0o777 == 0o600,
        "the control socket is private"
    );
    run.ctl_ok("abort", None).await;
    let run_socket = run.socket.clone();
    let end = run.wait().await;
    assert_ne!(end.code, 0, "{}", end.err);
    assert!(
        end.err.contains("aborted by the operator")
            && end.err.contains("original table is untouched"),
        "{}",
        end.err
    );
    assert_eq!(tables(&server, &db).await, vec!["t".to_string()]);
    assert_eq!(rows(&server, &db).await, before);
    assert_eq!(create_of(&server, &db).await, create_before);
    assert!(
        !run_socket.exists(),
        "the control socket is removed at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postpone_then_abort_mysql() {
    postpone_then_abort(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postpone_then_abort_mariadb() {
    postpone_then_abort(Engine::MariaDb).await;
}

/// The pace changes while the index build waits: the application writes the table during the
/// copy (the pace is gentle), stops, and the build's `ALTER` waits on a lock the test holds
/// while the pace turns full. The run must keep answering `ctl status` (a borrow of the pace
/// held across the build once blocked the pace's sender and, with it, the whole runtime) and
/// finish once the lock goes.
async fn pace_changes_during_index_build(engine: Engine) {
    use mysql_async::prelude::Queryable;
    let server = TestServer::shared(engine);
    let name = format!("ctl-pace-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_pace_{}", engine.name()), ROWS).await;
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    conn.query_drop(format!("ALTER TABLE `{db}`.`t` ADD KEY `ka` (`a`)"))
        .await
        .unwrap();
    // The copy-done hook says the copy is done and waits for the test.
    let hooks = temp_path(&format!("{name}.hooks"));
    let _ = std::fs::remove_dir_all(&hooks);
    std::fs::create_dir_all(&hooks).unwrap();
    let (copied, release) = (hooks.join("copied"), hooks.join("release"));
    let hook = hooks.join("rowshift-on-copy-done");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n",
            copied.display(),
            release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The application: updates as fast as one connection goes, until the copy is done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, db, stop) = (server.url(), db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::from_url(url).await.unwrap();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                c.query_drop(format!(
                    "UPDATE `{db}`.`t` SET a = a + 1 WHERE id = {}",
                    i % ROWS + 1
                ))
                .await
                .unwrap();
            }
        })
    };
    let hooks_s = hooks.display().to_string();
    let mut run = Run::start(&server, &db, &name, &["--hooks-dir", &hooks_s]);
    run.wait_status("the copy", |s| s["phase"] == "copy").await;
    let deadline = Instant::now() + DEADLINE;
    while !copied.exists() {
        run.assert_running("the copy-done hook");
        assert!(Instant::now() < deadline, "the copy never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    // Hold the shadow: the build's ALTER waits for this lock.
    let mut locker = mysql_async::Conn::from_url(server.url()).await.unwrap();
    locker
        .query_drop(format!("LOCK TABLES `{db}`.`_t_new` READ"))
        .await
        .unwrap();
    std::fs::write(&release, b"").unwrap();
    let s = run
        .wait_status("the index build", |s| s["phase"] == "indexes")
        .await;
    assert!(s["gentle"].is_boolean(), "{s}");
    // No more writes: the pace turns full while the build waits, and the run still answers.
    run.wait_status("the pace to turn full during the build", |s| {
        s["phase"] == "indexes" && s["gentle"] == false
    })
    .await;
    locker.query_drop("UNLOCK TABLES").await.unwrap();
    let end = run.wait().await;
    assert_eq!(end.code, 0, "{}\n{}", end.out, end.err);
    assert!(end.out.contains("built after the copy"), "{}", end.out);
    assert!(create_of(&server, &db).await.contains("KEY `ka`"));
    let _ = std::fs::remove_dir_all(&hooks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pace_changes_during_index_build_mysql() {
    pace_changes_during_index_build(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pace_changes_during_index_build_mariadb() {
    pace_changes_during_index_build(Engine::MariaDb).await;
}

/// A run killed in the middle of its copy and resumed, where the ALTER renames the primary key
/// column and widens it: the resumed run clears the shadow's rows above the copy's watermark
/// by the key's new name (it used the old name: "unknown column", and the migration could
/// only be aborted), and the migrated table holds the source's rows, changed ones included.
async fn resume_with_a_renamed_key(engine: Engine) {
    use mysql_async::prelude::Queryable;
    let server = TestServer::shared(engine);
    let name = format!("rename-key-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_rename_key_{}", engine.name()), ROWS).await;
    let hold = temp_path(&format!("{name}.hold"));
    std::fs::write(&hold, "hold").unwrap();
    let hold_s = hold.display().to_string();
    let alter = "CHANGE id k BIGINT NOT NULL";
    let mut run = Run::start_alter(
        &server,
        &db,
        &name,
        alter,
        &["--throttle-flag-file", &hold_s],
    );
    run.wait_status("the flag-file throttle", |s| {
        s["throttled"] == true && s["phase"] == "copy"
    })
    .await;
    run.ctl_ok("pause", None).await;
    run.ctl_ok("chunk-size", Some("20")).await;
    std::fs::remove_file(&hold).unwrap();
    run.ctl_ok("resume", None).await;
    run.wait_status("100 rows copied", |s| num(s, "rows_copied") >= 100)
        .await;
    run.ctl_ok("pause", None).await;
    run.wait_paused_idle("the paused copy to be idle").await;
    // The checkpoint has a copy watermark inside the table (it is written as the binlog
    // position moves: writes to the table make it move).
    let mut c = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        c.query_drop("UPDATE t SET a = a + 1 WHERE id = 2")
            .await
            .unwrap();
        let w: Option<Option<String>> = c
            .query_first("SELECT copied_upto FROM `_t_ckpt` WHERE id = 1")
            .await
            .unwrap();
        if w.flatten().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no copy watermark checkpointed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.kill().await;
    // Rows above and below the watermark change while rowshift is down.
    c.query_drop(
        "UPDATE t SET a = a + 1000 WHERE id IN (5, 250); DELETE FROM t WHERE id IN (6, 251)",
    )
    .await
    .unwrap();
    let want: Vec<(i64, i64, String)> = rows(&server, &db).await;
    let resumed = Run::start_alter(&server, &db, &name, alter, &["--resume"]);
    let end = resumed.wait().await;
    assert_eq!(end.code, 0, "{}\n{}", end.out, end.err);
    let got: Vec<(i64, i64, String)> = c.query("SELECT k, a, s FROM t ORDER BY k").await.unwrap();
    assert_eq!(got, want, "the migrated table holds the source's rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_a_renamed_key_mysql() {
    resume_with_a_renamed_key(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_a_renamed_key_mariadb() {
    resume_with_a_renamed_key(Engine::MariaDb).await;
}

/// A postponement made while the cut-over is being prepared (here by the
/// `rowshift-on-before-cut-over` hook itself, which creates the postpone flag file again on
/// its first run) holds the cut-over again; `ctl cut-over` then releases it, the hook runs
/// again, and the cut-over happens. (Before the fix the flag was only looked at before the
/// hook.)
async fn postponed_by_the_before_cut_over_hook(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("repostpone-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_repostpone_{}", engine.name()), 300).await;
    let dir = temp_path(&format!("{name}.hooks"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let postpone = temp_path(&format!("{name}.postpone"));
    let _ = std::fs::remove_file(&postpone);
    let (once, count) = (dir.join("once"), dir.join("count"));
    let hook = dir.join("rowshift-on-before-cut-over");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ ! -e '{once}' ]; then touch '{once}' '{postpone}'; fi\necho run >> '{count}'\n",
            once = once.display(),
            postpone = postpone.display(),
            count = count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (dir_s, postpone_s) = (dir.display().to_string(), postpone.display().to_string());
    let mut run = Run::start(
        &server,
        &db,
        &name,
        &["--postpone-flag-file", &postpone_s, "--hooks-dir", &dir_s],
    );
    // The run makes the flag file at its start: released once, the hook postpones again.
    run.wait_status("the postponed cut-over", |s| s["phase"] == "postponed")
        .await;
    run.ctl_ok("cut-over", None).await;
    let hook_runs = || {
        std::fs::read_to_string(&count)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    run.wait_status("the cut-over postponed by its hook", |s| {
        s["phase"] == "postponed" && hook_runs() == 1
    })
    .await;
    assert!(postpone.exists());
    let t = tables(&server, &db).await;
    assert!(
        t.contains(&"_t_new".to_string()) && !t.contains(&"_t_old".to_string()),
        "not cut over while postponed: {t:?}"
    );
    run.ctl_ok("cut-over", None).await;
    let end = run.wait().await;
    assert_eq!(end.code, 0, "stdout:\n{}\nstderr:\n{}", end.out, end.err);
    assert!(tables(&server, &db).await.contains(&"_t_old".to_string()));
    let runs = std::fs::read_to_string(&count).unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "the hook runs again after the release"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_by_the_before_cut_over_hook_mysql() {
    postponed_by_the_before_cut_over_hook(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_by_the_before_cut_over_hook_mariadb() {
    postponed_by_the_before_cut_over_hook(Engine::MariaDb).await;
}
