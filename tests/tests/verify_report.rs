//! The HTML report in a real browser: headless Chromium renders the page (no network, no
//! script needed) and the rendered DOM shows the verdict and the differing key; the JSON
//! document keeps its documented field names; the `rowshift verify` binary exits 0/1/2.

mod verify_support;

use mysql_async::prelude::Queryable;
use rowshift_engine::verify::Verdict;
use rowshift_testkit::{Engine, TestServer};
use std::path::{Path, PathBuf};
use std::process::Command;
use verify_support::*;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rowshift-verify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run headless Chromium on `page` with `extra` flags; returns stdout.
fn chromium(page: &Path, profile: &Path, extra: &[&str]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install it with `bash scripts/test-servers.sh`")
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn table_pair(engine: Engine, db_name: &str) -> (std::sync::Arc<TestServer>, String) {
    let server = TestServer::shared(engine);
    let db = server.fresh_db(db_name).await.unwrap();
    let mut c = connect(&server.url_for_db(&db)).await;
    create_all_types(&mut c, "t").await;
    fill_all_types(&mut c, "t", 50).await;
    c.query_drop("CREATE TABLE _t_new LIKE t").await.unwrap();
    c.query_drop("INSERT INTO _t_new SELECT * FROM t")
        .await
        .unwrap();
    c.query_drop("UPDATE _t_new SET vc = 'v42 ', tx = 'changed <b>&</b>' WHERE id = 42")
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    (server, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_chromium() {
    let (server, db) = table_pair(Engine::MariaDb, "verify_report_html").await;
    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    assert_eq!(report.verdict, Verdict::NoGo);

    let dir = scratch_dir("html");
    let page = dir.join("report.html");
    std::fs::write(&page, report.to_html()).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script"),
        "the page must work without script"
    );
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "no external assets"
    );

    let dom = chromium(&page, &dir.join("profile-dom"), &["--dump-dom"]);
    assert!(
        dom.contains(r#"<div class="verdict nogo" id="verdict"><h1>NO-GO</h1>"#),
        "{dom}"
    );
    assert!(dom.contains(r#"<code class="key">id=42</code>"#), "{dom}");
    // Side-by-side values, escaped, trailing space visible inside the quotes.
    assert!(dom.contains("\"v42 \""), "{dom}");
    assert!(dom.contains("changed &lt;b&gt;&amp;&lt;/b&gt;"), "{dom}");
    assert!(dom.contains("<svg id=\"progress\""), "{dom}");

    let png = dir.join("report.png");
    chromium(
        &page,
        &dir.join("profile-shot"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,900",
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_keeps_its_field_names() {
    let (server, db) = table_pair(Engine::MySql, "verify_report_json").await;
    let report = verify_shadow(&server.url(), &db, "t", "_t_new").await;
    let j: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(j["format"], "rowshift-verify/1");
    assert_eq!(j["verdict"], "NO-GO");
    for field in [
        "started_at",
        "duration_ms",
        "checksum_ms",
        "rows_per_second",
        "same_server",
        "key_columns",
        "columns",
        "hash",
        "chunks_checked",
        "chunks_differing",
        "rows_old",
        "rows_new",
        "progress",
    ] {
        assert!(!j[field].is_null(), "missing {field}");
    }
    assert_eq!(j["old"]["table"], format!("{db}.t"));
    assert_eq!(j["old"]["flavor"], "mysql");
    assert!(j["lock"]["held_ms"].as_f64().unwrap() >= 0.0);
    let row = &j["differences"]["rows"][0];
    assert_eq!(j["differences"]["total"], 1);
    assert_eq!(row["kind"], "changed");
    assert_eq!(row["key"]["id"], "42");
    assert_eq!(row["differing_columns"], serde_json::json!(["vc", "tx"]));
    assert_eq!(row["old"]["vc"], "v42");
    assert_eq!(row["new"]["vc"], "v42 ");
    assert_eq!(row["new"]["ts"], "2024-05-06 07:08:09.654321");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_exit_codes() {
    let (server, db) = table_pair(Engine::MySql, "verify_report_cli").await;
    let dir = scratch_dir("cli");
    let run = |shadow: &str, report: &Path| {
        Command::new(rowshift_testkit::rowshift_bin())
            .args([
                "verify",
                "--source",
                &server.url(),
                "--table",
                &format!("{db}.t"),
            ])
            .args(["--shadow", &format!("{db}.{shadow}")])
            .arg("--report")
            .arg(report)
            .output()
            .unwrap()
    };
    // Differences: exit 1, with the key on the terminal and in the JSON report.
    let json = dir.join("r.json");
    let out = run("_t_new", &json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("NO-GO") && stdout.contains("id=42"),
        "{stdout}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["differences"]["rows"][0]["key"]["id"], "42");

    // Equal: exit 0.
    let mut c = connect(&server.url_for_db(&db)).await;
    c.query_drop("UPDATE _t_new SET vc = 'v42', tx = 'text 42' WHERE id = 42")
        .await
        .unwrap();
    let out = run("_t_new", &dir.join("r.html"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(std::fs::read_to_string(dir.join("r.html"))
        .unwrap()
        .contains(">GO</h1>"));

    // Cannot verify (no such shadow): exit 2 with the reason, also in the JSON report.
    let out = run("no_such_table", &json);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["verdict"], "CANNOT-VERIFY");
    c.disconnect().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
