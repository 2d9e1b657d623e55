//! Throttling on the source's load, a custom query and the operator; a critical load that
//! aborts cleanly; a non-loopback HTTP address refused. The load scenarios of one engine run
//! one after the other (they share the server's Threads_running).

mod ops_support;

use mysql_async::prelude::Queryable;
use ops_support::*;
use rowshift_testkit::{Engine, TestServer};

/// Connections busy in `SELECT SLEEP(600)` (each counts in Threads_running) until stopped.
struct Sleepers {
    url: String,
    ids: Vec<u32>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sleepers {
    async fn start(server: &TestServer, n: usize) -> Sleepers {
        let mut ids = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
            ids.push(c.id());
            tasks.push(tokio::spawn(async move {
                let _ = c.query_drop("SELECT SLEEP(600)").await;
                let _ = c.disconnect().await;
            }));
        }
        // Proven running: each appears in the processlist executing its SLEEP.
        let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let busy: Option<u64> = c
                .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(600)'")
                .await
                .unwrap();
            if busy == Some(n as u64) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "sleepers never ran");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        c.disconnect().await.unwrap();
        Sleepers {
            url: server.url(),
            ids,
            tasks,
        }
    }

    async fn stop(self) {
        let mut c = mysql_async::Conn::from_url(self.url.clone()).await.unwrap();
        for id in &self.ids {
            let _ = c.query_drop(format!("KILL QUERY {id}")).await;
        }
        c.disconnect().await.unwrap();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

async fn load_throttles(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("load-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_load_{}", engine.name()), 2000).await;
    let before = rows(&server, &db).await;
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    c.query_drop(format!("CREATE TABLE `{db}`.`gate` (id INT PRIMARY KEY)"))
        .await
        .unwrap();

    // max-load: eight sleeping queries push Threads_running over 5.
    let sleepers = Sleepers::start(&server, 8).await;
    let query = format!("SELECT COUNT(*) FROM `{db}`.`gate`");
    let mut run = Run::start(
        &server,
        &db,
        &name,
        &[
            "--max-load",
            "Threads_running=5",
            "--throttle-query",
            &query,
        ],
    );
    let s = run
        .wait_status("the max-load throttle", |s| {
            s["throttled"] == true && s["phase"] == "copy"
        })
        .await;
    let reason = s["throttle_reason"].as_str().unwrap();
    assert!(reason.contains("max-load Threads_running="), "{s}");
    assert_eq!(num(&s, "rows_copied"), 0, "{s}");
    assert_eq!(s["max_load"], "Threads_running=5", "{s}");

    // The custom query takes over when the load goes.
    c.query_drop(format!("INSERT INTO `{db}`.`gate` VALUES (1)"))
        .await
        .unwrap();
    sleepers.stop().await;
    let s = run
        .wait_status("the query throttle alone", |s| {
            s["throttle_reason"]
                .as_str()
                .is_some_and(|r| r.contains("throttle query returned 1") && !r.contains("max-load"))
        })
        .await;
    assert_eq!(num(&s, "rows_copied"), 0, "{s}");

    // The operator's throttle, then a max-load raised live, then everything released.
    run.ctl_ok("throttle", None).await;
    c.query_drop(format!("DELETE FROM `{db}`.`gate`"))
        .await
        .unwrap();
    let s = run
        .wait_status("the operator's throttle alone", |s| {
            s["throttle_reason"]
                .as_str()
                .is_some_and(|r| r.contains("operator") && !r.contains("query"))
        })
        .await;
    assert_eq!(num(&s, "rows_copied"), 0, "{s}");
    let v = run.ctl_ok("max-load", Some("Threads_running=50")).await;
    assert_eq!(v["max_load"], "Threads_running=50", "{v}");
    let (code, v) = run.ctl("max-load", Some("Threads_running")).await;
    assert_ne!(code, 0, "{v}");
    run.ctl_ok("unthrottle", None).await;
    let end = run.wait().await;
    assert_eq!(end.code, 0, "stdout:\n{}\nstderr:\n{}", end.out, end.err);
    assert_eq!(rows(&server, &db).await, before);
    assert!(create_of(&server, &db).await.contains("`b`"));
    for needle in [
        "max-load Threads_running=",
        "throttle query returned 1",
        "throttled by the operator",
        "copy released",
    ] {
        assert!(
            end.err.contains(needle),
            "log lacks {needle:?}:\n{}",
            end.err
        );
    }
    c.disconnect().await.unwrap();
}

async fn critical_load_aborts(engine: Engine) {
    let server = TestServer::shared(engine);
    let name = format!("critical-{}", engine.name());
    let db = table_with_rows(&server, &format!("ops_critical_{}", engine.name()), 2000).await;
    let before = rows(&server, &db).await;
    let create_before = create_of(&server, &db).await;
    let sleepers = Sleepers::start(&server, 8).await;
    let mut run = Run::start(
        &server,
        &db,
        &name,
        &[
            "--critical-load",
            "Threads_running=5",
            // The throttled state is visible only until the grace runs out; each status poll
            // starts a `rowshift ctl` process, which a loaded machine may take a second or more
            // to run: a grace of several seconds leaves room for a few of them.
            "--critical-load-grace-ms",
            "5000",
        ],
    );
    let s = run
        .wait_status("the critical-load throttle", |s| s["throttled"] == true)
        .await;
    assert!(
        s["throttle_reason"]
            .as_str()
            .unwrap()
            .contains("critical load Threads_running="),
        "{s}"
    );
    let end = run.wait().await;
    sleepers.stop().await;
    assert_ne!(end.code, 0, "{}", end.out);
    assert!(
        end.err.contains("critical load") && end.err.contains("original table is untouched"),
        "{}",
        end.err
    );
    assert_eq!(
        tables(&server, &db).await,
        vec!["t".to_string()],
        "helpers left"
    );
    assert_eq!(rows(&server, &db).await, before);
    assert_eq!(create_of(&server, &db).await, create_before);
}

async fn load_scenarios(engine: Engine) {
    load_throttles(engine).await;
    critical_load_aborts(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mysql() {
    load_scenarios(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mariadb() {
    load_scenarios(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_a_remote_address_is_refused() {
    let server = TestServer::shared(Engine::MariaDb);
    let db = table_with_rows(&server, "ops_remote_http", 10).await;
    let run = Run::start(&server, &db, "remote-http", &["--http", "0.0.0.0:1"]);
    let end = run.wait().await;
    assert_ne!(end.code, 0, "{}", end.out);
    assert!(
        end.err.contains("not a loopback address") && end.err.contains("--http-allow-remote"),
        "{}",
        end.err
    );
    assert_eq!(tables(&server, &db).await, vec!["t".to_string()]);
}
