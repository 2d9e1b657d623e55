//! Every binlog under `../shared/fixtures/binlogs` (see SOURCES.md there) decodes, or fails
//! with the error its content calls for; values are checked against the upstream
//! expectations named in SOURCES.md.
//!
//! Skips (printing why) only when the fixture folder is absent.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rowshift_engine::event::{Marker, RowKind, SourceEvent};
use rowshift_engine::position::{Gtid, GtidState};
use rowshift_engine::source::{decode_bytes, DecodeError, DecodeOptions, TableFilter};
use rowshift_transform::Value;

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binlogs");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: fixture folder {} is absent (the shared/ folder is not checked out beside the repo)",
            dir.display()
        );
        None
    }
}

fn files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            files(&p, base, out);
        } else if p.file_name().is_some_and(|n| n != "SOURCES.md") {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Reads a fixture, un-gzipping `.gz` files.
fn read(dir: &Path, rel: &str) -> (String, Vec<u8>) {
    let raw = std::fs::read(dir.join(rel)).unwrap();
    let name = Path::new(rel)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if let Some(stem) = name.strip_suffix(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        (stem.to_owned(), out)
    } else {
        (name, raw)
    }
}

fn decode(dir: &Path, rel: &str, full: bool) -> (Vec<SourceEvent>, Result<(), DecodeError>) {
    decode_tables(dir, rel, full, None)
}

fn decode_tables(
    dir: &Path,
    rel: &str,
    full: bool,
    tables: Option<TableFilter>,
) -> (Vec<SourceEvent>, Result<(), DecodeError>) {
    let (name, bytes) = read(dir, rel);
    let mut events = Vec::new();
    let r = decode_bytes(
        &name,
        &bytes,
        DecodeOptions {
            require_full_row_image: full,
            tables,
        },
        |e| events.push(e),
    );
    (events, r)
}

/// The row changes of one table, decoded with a filter naming only it, as text.
fn filtered_rows(dir: &Path, rel: &str, schema: &str, table: &str) -> Vec<String> {
    let filter = TableFilter::of_tables([(schema, table)]);
    let (events, r) = decode_tables(dir, rel, true, Some(filter));
    assert!(r.is_ok(), "{rel} filtered to {schema}.{table}: {r:?}");
    rows(&events).iter().map(|r| format!("{r:?}")).collect()
}

fn rows(events: &[SourceEvent]) -> Vec<&rowshift_engine::event::RowChange> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Rows(r) => Some(r),
            _ => None,
        })
        .collect()
}

include!("common/fixture_outcomes.rs");

use Outcome::*;

fn error_offset(e: &DecodeError) -> u64 {
    match e {
        DecodeError::Truncated { offset, .. }
        | DecodeError::Checksum { offset, .. }
        | DecodeError::BadHeader { offset, .. }
        | DecodeError::UnknownEvent { offset, .. }
        | DecodeError::Corrupt { offset, .. }
        | DecodeError::StatementFormat { offset, .. }
        | DecodeError::RowImageNotFull { offset, .. }
        | DecodeError::UnknownTable { offset, .. }
        | DecodeError::BadTableMap { offset, .. }
        | DecodeError::BadValue { offset, .. }
        | DecodeError::PartialJson { offset, .. }
        | DecodeError::Incident { offset, .. }
        | DecodeError::Unsupported { offset, .. }
        | DecodeError::XaRollbackNotUndone { offset, .. } => *offset,
        DecodeError::BadMagic { .. } => 0,
    }
}

#[test]
fn every_fixture_has_its_expected_outcome() {
    let Some(dir) = fixtures() else { return };
    let mut all = Vec::new();
    files(&dir, &dir, &mut all);
    let expected: BTreeMap<&str, Outcome> = EXPECTED.iter().copied().collect();
    let unlisted: Vec<&String> = all
        .iter()
        .filter(|f| !expected.contains_key(f.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "fixtures without an expected outcome: {unlisted:?}"
    );
    let mut failures = Vec::new();
    for (rel, want) in EXPECTED {
        if !all.iter().any(|f| f == rel) {
            failures.push(format!("{rel}: listed but missing"));
            continue;
        }
        let (events, r) = decode(&dir, rel, true);
        let got = match &r {
            Ok(()) => Rows(rows(&events).len()),
            Err(e) => Fails(e.kind(), error_offset(e)),
        };
        if got != *want {
            failures.push(format!("{rel}: expected {want:?}, got {got:?} ({r:?})"));
        }
        // Every error names the file and an offset in its message.
        if let Err(e) = r {
            let msg = e.to_string();
            let name = Path::new(rel).file_name().unwrap().to_string_lossy();
            assert!(
                msg.contains(name.trim_end_matches(".gz")),
                "{rel}: error does not name the file: {msg}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A filter keeps exactly the named table's changes, in order, whatever the other tables do
/// (the decoder recognises a table map it saw before, kept or dropped, without parsing it).
#[test]
fn a_table_filter_keeps_exactly_that_tables_rows() {
    let Some(dir) = fixtures() else { return };
    let mut checked = 0;
    for (rel, want) in EXPECTED {
        if !matches!(want, Rows(n) if *n > 0) {
            continue;
        }
        let (events, r) = decode(&dir, rel, true);
        assert!(r.is_ok(), "{rel}: {r:?}");
        let all = rows(&events);
        let mut tables: Vec<(String, String)> = all
            .iter()
            .map(|r| (r.table.schema.to_string(), r.table.name.to_string()))
            .collect();
        tables.sort();
        tables.dedup();
        for (schema, table) in &tables {
            let expected: Vec<String> = all
                .iter()
                .filter(|r| *r.table.schema == **schema && *r.table.name == **table)
                .map(|r| format!("{r:?}"))
                .collect();
            let got = filtered_rows(&dir, rel, schema, table);
            assert_eq!(got, expected, "{rel}: rows of {schema}.{table}");
            checked += 1;
        }
    }
    assert!(checked > 5, "only {checked} tables checked");
}

#[test]
fn lenient_decoding_of_partial_images() {
    let Some(dir) = fixtures() else { return };
    for (rel, n) in [
        ("rust_mysql_common/minimal_row_metadata.000001", 1),
        ("rust_mysql_common/rpl_unfiltered_hidden_gcol.000001", 1),
        ("rust_mysql_common/update-full-row.binlog", 7),
        ("rust_mysql_common/update-partial-row.binlog", 7),
        ("rust_mysql_common/write-full-row.binlog", 7),
    ] {
        let (events, r) = decode(&dir, rel, false);
        assert!(r.is_ok(), "{rel}: {r:?}");
        assert_eq!(rows(&events).len(), n, "{rel}");
    }
}

#[test]
fn mariadb_full_metadata_names_charsets_and_gtids() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(&dir, "rust_mysql_common/mariadb-bin.000001", true);
    r.unwrap();
    // GTID_LIST and BINLOG_CHECKPOINT are reported, not dropped.
    assert!(events.iter().any(|e| matches!(
        e,
        SourceEvent::Marker {
            marker: Marker::GtidState(GtidState::MariaDb(_)),
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        SourceEvent::Marker {
            marker: Marker::BinlogCheckpoint { .. },
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        SourceEvent::Marker {
            marker: Marker::RowsQuery { .. },
            ..
        }
    )));
    let rs = rows(&events);
    assert_eq!(rs.len(), 2);
    let r = rs[0];
    assert_eq!(&*r.table.schema, "toddy_test");
    assert_eq!(&*r.table.name, "outbox");
    let cols = &r.columns.columns;
    let names: Vec<_> = cols.iter().map(|c| c.name.clone().unwrap()).collect();
    assert_eq!(names, ["id", "topic", "event_type", "event", "created"]);
    let pk: Vec<_> = cols.iter().map(|c| c.primary_key).collect();
    assert_eq!(pk, [true, false, false, false, false]);
    let collations: Vec<_> = cols.iter().map(|c| c.collation).collect();
    assert_eq!(collations, [None, Some(45), Some(45), Some(63), None]);
    assert_eq!(cols[1].charset.as_deref(), Some("utf8mb4"));
    assert_eq!(
        cols[2].enum_labels.as_ref().unwrap()[1],
        b"JSON".to_vec(),
        "ENUM_STR_VALUE labels"
    );
    assert_eq!(
        r.after.as_ref().unwrap(),
        &vec![
            Value::Int(62),
            Value::Bytes(b"foo".to_vec()),
            Value::Enum(2),
            Value::Bytes(br#"{"foo":1}"#.to_vec()),
            Value::Timestamp {
                secs: 1_650_493_084,
                micros: 0
            },
        ]
    );
    assert_eq!(r.gtid.unwrap().to_string(), "0-1-1");
    let commits: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Commit { pos, gtid, xid, .. } => Some((pos.clone(), *gtid, *xid)),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[1].0.offset, 1074);
    assert_eq!(commits[1].0.gtid.to_string(), "0-1-2");
    assert_eq!(commits[1].2, Some(820));
    assert!(commits[0].0 < commits[1].0);
}

#[test]
fn vector_column_bytes() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(&dir, "rust_mysql_common/vector.binlog", true);
    r.unwrap();
    let rs = rows(&events);
    let foo: Vec<_> = rs.iter().filter(|r| &*r.table.name == "foo").collect();
    assert_eq!(
        foo[0].after.as_ref().unwrap(),
        &vec![
            Value::UInt(1),
            Value::Bytes(vec![205, 204, 140, 63, 205, 204, 12, 64, 51, 51, 83, 64])
        ]
    );
    assert_eq!(
        foo[1].after.as_ref().unwrap(),
        &vec![
            Value::UInt(2),
            Value::Bytes(vec![0, 0, 128, 63, 0, 0, 128, 191, 0, 0, 0, 0])
        ]
    );
    // f32 1.1, 2.2, 3.3
    if let Value::Bytes(b) = &foo[0].after.as_ref().unwrap()[1] {
        let f: Vec<f32> = b
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(f, [1.1, 2.2, 3.3]);
    }
    let bar = rs.iter().find(|r| &*r.table.name == "bar").unwrap();
    let cols = &bar.columns.columns;
    assert_eq!(cols[2].name.as_deref(), Some("foo"));
    assert_eq!(
        cols[2].charset.as_deref(),
        Some("utf8mb4"),
        "TEXT after a VECTOR"
    );
    assert_eq!(cols[0].unsigned, Some(true), "SERIAL is BIGINT UNSIGNED");
    assert!(rs.iter().any(|r| r.kind == RowKind::Delete));
}

#[test]
fn minimal_row_metadata_unsigned_and_charset() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(&dir, "rust_mysql_common/minimal_row_metadata.000001", false);
    r.unwrap();
    let rs = rows(&events);
    let after = rs[0].after.as_ref().unwrap();
    assert_eq!(after[4], Value::UInt(3_230_202_323));
    assert_eq!(rs[0].columns.columns[4].unsigned, Some(true));
    assert_eq!(
        rs[0].columns.columns[2].collation,
        Some(255),
        "utf8mb4_0900_ai_ci"
    );
    assert_eq!(rs[0].absent.as_ref().unwrap().after, vec![1, 3]);
}

#[test]
fn bit_columns() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(&dir, "rust_mysql_common/mysql_type_bit.000001", true);
    r.unwrap();
    let rs = rows(&events);
    assert_eq!(
        rs[0].after.as_ref().unwrap(),
        &vec![
            Value::Bit { bits: 4, width: 3 },
            Value::Bytes(b"foo".to_vec()),
            Value::Bit { bits: 32, width: 8 }
        ]
    );
}

#[test]
fn json_documents_and_partial_update() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(&dir, "rust_mysql_common/json.binlog.000001", false);
    // The partial update's before image (MINIMAL) lacks the JSON column: a clear error.
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "partial_json", "{e}");
    assert_eq!(error_offset(&e), 3750);
    let rs = rows(&events);
    assert_eq!(rs.len(), 12);
    let first = rs[0].after.as_ref().unwrap();
    assert_eq!(
        first[1],
        Value::Json(serde_json::json!({"age": 24, "data": "xxxxxxxxxx", "name": "Joe"}))
    );
    if let Value::Json(j) = &first[1] {
        assert!(j["age"].is_i64(), "JSON integers stay integers");
    }
    let upd = rs.iter().find(|r| r.kind == RowKind::Update).unwrap();
    assert_eq!(
        upd.after.as_ref().unwrap()[1],
        Value::Json(serde_json::json!({"age": 25, "data": "xxxxxxxxxx", "name": "Joe"}))
    );
}

#[test]
fn compressed_transaction_payload() {
    let Some(dir) = fixtures() else { return };
    for (rel, table, kind) in [
        (
            "rust_mysql_common/transaction_compression.000001",
            "tb1",
            RowKind::Insert,
        ),
        (
            "mysql-binlog-connector-java/mysql-bin.compressed",
            "movies",
            RowKind::Update,
        ),
    ] {
        let (events, r) = decode(&dir, rel, true);
        r.unwrap();
        let rs = rows(&events);
        assert_eq!(rs.len(), 1, "{rel}");
        assert_eq!(&*rs[0].table.name, table, "{rel}");
        assert_eq!(rs[0].kind, kind);
        // The commit inside the payload resumes after the payload event.
        let commit = events
            .iter()
            .find_map(|e| match e {
                SourceEvent::Commit { pos, .. } => Some(pos.clone()),
                _ => None,
            })
            .unwrap();
        assert!(commit.offset > rs[0].pos.offset, "{rel}");
    }
    let (events, _) = decode(
        &dir,
        "rust_mysql_common/transaction_compression.000001",
        true,
    );
    assert_eq!(
        rows(&events)[0].after.as_ref().unwrap(),
        &vec![Value::Int(1)]
    );
    let commit = events
        .iter()
        .find_map(|e| match e {
            SourceEvent::Commit { pos, xid, .. } => Some((pos.offset, *xid)),
            _ => None,
        })
        .unwrap();
    assert_eq!(commit, (431, Some(462)));
}

#[test]
fn tagged_gtids() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(
        &dir,
        "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
        true,
    );
    r.unwrap();
    let begin_gtid = events
        .iter()
        .find_map(|e| match e {
            SourceEvent::Begin { gtid, .. } => *gtid,
            _ => None,
        })
        .unwrap();
    match begin_gtid {
        Gtid::MySql { sid, tag, gno } => {
            assert_eq!(sid.to_string(), "55778904-0299-11f1-b1b8-4ef0c4956feb");
            assert_eq!(tag.unwrap().as_str(), "mytag");
            assert_eq!(gno, 3);
        }
        other => panic!("{other:?}"),
    }
    let commit = events
        .iter()
        .find_map(|e| match e {
            SourceEvent::Commit { pos, .. } => Some(pos.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        commit.gtid.to_string(),
        "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-3"
    );
    assert_eq!(
        rows(&events)[0].after.as_ref().unwrap()[2],
        Value::Decimal("250.00".into())
    );

    let (events, r) = decode(
        &dir,
        "rust_mysql_common/binlog_transaction_previous_GTID_no_tag.000001",
        true,
    );
    r.unwrap();
    let prev = events
        .iter()
        .find_map(|e| match e {
            SourceEvent::Marker {
                marker: Marker::GtidState(g),
                ..
            } => Some(g.to_string()),
            _ => None,
        })
        .unwrap();
    assert_eq!(prev, "b9b88c66-0755-11f1-9899-4a9da94c4d71:1-2");
}

#[test]
fn mariadb_statement_format_and_ddl_gtids() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(
        &dir,
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000010",
        true,
    );
    r.unwrap();
    let ddl: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Ddl { gtid, pos, .. } => Some((gtid.unwrap().to_string(), pos.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ddl.len(), 10);
    assert_eq!(ddl[0].0, "0-10-292197");
    assert_eq!(ddl[9].0, "0-10-292206");
    assert_eq!(ddl[9].1.gtid.to_string(), "0-10-292206");

    let (_, r) = decode(
        &dir,
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000004",
        true,
    );
    let e = r.unwrap_err();
    assert!(e.to_string().contains("binlog_format=ROW"), "{e}");
}

#[test]
fn sakila_types() {
    let Some(dir) = fixtures() else { return };
    let (events, r) = decode(
        &dir,
        "mysql-binlog-connector-java/mysql-bin.sakila.gz",
        true,
    );
    r.unwrap();
    let film = rows(&events)
        .into_iter()
        .find(|r| &*r.table.name == "film")
        .unwrap();
    let a = film.after.as_ref().unwrap();
    assert_eq!(a[0], Value::Int(1));
    assert_eq!(a[1], Value::Bytes(b"ACADEMY DINOSAUR".to_vec()));
    assert_eq!(a[3], Value::Year(2006));
    assert_eq!(a[7], Value::Decimal("0.99".into()));
    assert_eq!(a[9], Value::Decimal("20.99".into()));
    assert_eq!(a[10], Value::Enum(2));
    assert_eq!(a[11], Value::Set(12));
}

#[test]
fn corrupted_bytes_are_errors_not_panics() {
    let Some(dir) = fixtures() else { return };
    let (name, bytes) = read(&dir, "rust_mysql_common/mariadb-bin.000001");
    // Flip one byte inside a checksummed event: checksum error naming the offset.
    let mut b = bytes.clone();
    b[700] ^= 0x40;
    let e = decode_bytes(&name, &b, DecodeOptions::default(), |_| {}).unwrap_err();
    assert_eq!(e.kind(), "checksum", "{e}");
    // Truncate at every length: never a panic.
    for len in 0..bytes.len() {
        let _ = decode_bytes(&name, &bytes[..len], DecodeOptions::default(), |_| {});
    }
    // Not a binlog.
    let e = decode_bytes("x", b"\x00bin1234", DecodeOptions::default(), |_| {}).unwrap_err();
    assert_eq!(e.kind(), "bad_magic");
}

/// Inputs the fuzzer (fuzz/, target `decode_file`) found to panic or exhaust memory, kept as
/// regressions: each must decode to a result (here: an error) without panicking.
#[test]
fn fuzz_regressions_are_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        for full in [true, false] {
            let r = decode_bytes(
                "fuzz.000001",
                &bytes,
                DecodeOptions {
                    require_full_row_image: full,
                    tables: None,
                },
                |_| {},
            );
            assert!(r.is_err(), "{}", entry.path().display());
        }
        n += 1;
    }
    assert!(n >= 2);
}
