//! `rowshift binlog dump --file` on every binlog under `../shared/fixtures/binlogs`: exit 0 and
//! the expected number of row lines, or exit 2 with the expected error naming file and
//! offset; plus value spot checks of the JSON format (docs/binlog-dump.md).
//!
//! Skips (printing why) only when the fixture folder is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use rowshift_testkit::rowshift_bin;

include!("../../engine/tests/common/fixture_outcomes.rs");

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binlogs");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: fixture folder {} is absent", dir.display());
        None
    }
}

fn dump(path: &Path, extra: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(rowshift_bin())
        .args(["binlog", "dump", "--file"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_row(v: &serde_json::Value) -> bool {
    matches!(v["type"].as_str(), Some("insert" | "update" | "delete"))
}

#[test]
fn every_fixture_dumps_or_fails_clearly() {
    let Some(dir) = fixtures() else { return };
    let mut failures = Vec::new();
    for (rel, want) in EXPECTED {
        let (code, lines, stderr) = dump(&dir.join(rel), &[]);
        match want {
            Outcome::Rows(n) => {
                let rows = lines.iter().filter(|l| is_row(l)).count();
                if code != 0 || rows != *n {
                    failures.push(format!(
                        "{rel}: exit {code}, {rows} rows (want {n}): {stderr}"
                    ));
                }
            }
            Outcome::Fails(kind, offset) => {
                let name = Path::new(rel).file_name().unwrap().to_string_lossy();
                let offset_text = format!("offset {offset}");
                if code != 2
                    || !stderr.contains(name.trim_end_matches(".gz"))
                    || (*kind != "bad_magic" && !stderr.contains(&offset_text))
                {
                    failures.push(format!(
                        "{rel}: exit {code} (want 2, {kind} at {offset}): {stderr}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_values_follow_the_documented_format() {
    let Some(dir) = fixtures() else { return };
    let (code, lines, _) = dump(&dir.join("rust_mysql_common/mariadb-bin.000001"), &[]);
    assert_eq!(code, 0);
    let row = &lines[0];
    assert_eq!(row["type"], "insert");
    assert_eq!(row["schema"], "toddy_test");
    assert_eq!(row["table"], "outbox");
    assert_eq!(
        row["columns"],
        serde_json::json!(["id", "topic", "event_type", "event", "created"])
    );
    // text column → string, ENUM → label, BLOB → hex, TIMESTAMP → UTC text
    assert_eq!(
        row["after"],
        serde_json::json!([62, "foo", "JSON", {"hex": "7b22666f6f223a317d"}, "2022-04-20 22:18:04Z"])
    );
    assert_eq!(row["gtid"], "0-1-1");
    let commit = &lines[1];
    assert_eq!(commit["type"], "commit");
    assert_eq!(commit["pos"]["gtid_set"], "0-1-1");
    assert_eq!(commit["xid"], 800);

    let (_, lines, _) = dump(&dir.join("rust_mysql_common/mysql_type_bit.000001"), &[]);
    let row = lines.iter().find(|l| is_row(l)).unwrap();
    assert_eq!(
        row["after"],
        serde_json::json!(["b'100'", "foo", "b'00100000'"])
    );

    // --allow-partial-images: MINIMAL image, unsigned INT, absent columns listed
    let (code, lines, _) = dump(
        &dir.join("rust_mysql_common/minimal_row_metadata.000001"),
        &["--allow-partial-images"],
    );
    assert_eq!(code, 0);
    let row = lines.iter().find(|l| is_row(l)).unwrap();
    assert_eq!(row["after"][4], 3_230_202_323u64);
    assert_eq!(row["absent_after"], serde_json::json!([1, 3]));

    // --all-events shows MariaDB's GTID_LIST, BINLOG_CHECKPOINT and ANNOTATE_ROWS
    let (_, lines, _) = dump(
        &dir.join("rust_mysql_common/mariadb-bin.000001"),
        &["--all-events"],
    );
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for e in ["format", "gtid_state", "binlog_checkpoint", "rows_query"] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    // --tables filters row changes
    let (_, lines, _) = dump(
        &dir.join("rust_mysql_common/vector.binlog"),
        &["--tables", "dtb.foo"],
    );
    assert!(lines
        .iter()
        .filter(|l| is_row(l))
        .all(|l| l["table"] == "foo"));
    assert_eq!(lines.iter().filter(|l| is_row(l)).count(), 4);
}

/// `--source` on both engines: start at a file offset and at a GTID state, stop at the end.
#[test]
fn dump_from_live_servers() {
    use mysql_async::prelude::Queryable;
    use rowshift_testkit::{Engine, TestServer};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for engine in Engine::ALL {
        let server = TestServer::shared(engine);
        let db = format!("binlog_cli_{}", engine.name());
        let (file, pos, gtid) = rt.block_on(async {
            server.fresh_db(&db).await.unwrap();
            let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
            c.query_drop(format!(
                "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, s VARCHAR(10), d DECIMAL(5,2))"
            ))
            .await
            .unwrap();
            let flavor = match engine {
                Engine::MySql => rowshift_engine::source::Flavor::MySql,
                Engine::MariaDb => rowshift_engine::source::Flavor::MariaDb,
            };
            let p = rowshift_engine::source::stream::current_position(&mut c, flavor)
                .await
                .unwrap();
            c.query_drop(format!("INSERT INTO `{db}`.t VALUES (1, 'é', 1.50)"))
                .await
                .unwrap();
            c.query_drop(format!("UPDATE `{db}`.t SET d = -2 WHERE id = 1"))
                .await
                .unwrap();
            (p.file, p.offset, p.gtid.to_string())
        });
        for start in [format!("{file}:{pos}"), format!("gtid:{gtid}")] {
            let out = Command::new(rowshift_bin())
                .args([
                    "binlog",
                    "dump",
                    "--source",
                    &server.url(),
                    "--start",
                    &start,
                ])
                .args(["--until-end", "--ssl-mode", "disabled", "--tables"])
                .arg(format!("{db}.t"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{engine:?} {start}: {stderr}");
            let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let rows: Vec<_> = lines.iter().filter(|l| is_row(l)).collect();
            assert_eq!(rows.len(), 2, "{engine:?} {start}: {lines:?}");
            assert_eq!(rows[0]["after"], serde_json::json!([1, "é", "1.50"]));
            assert_eq!(rows[1]["before"][2], "1.50");
            assert_eq!(rows[1]["after"][2], "-2.00");
            assert_eq!(rows[0]["columns"], serde_json::json!(["id", "s", "d"]));
            let commits = lines.iter().filter(|l| l["type"] == "commit").count();
            assert!(commits >= 2, "{engine:?} {start}: {lines:?}");
        }
    }
}
