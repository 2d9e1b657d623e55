// Expected outcome of decoding each binlog under ../shared/fixtures/binlogs with FULL row
// images required. Shared (via `include!`) by engine/tests/binlog_fixtures.rs (decoder) and
// tests/tests/binlog_dump_cli.rs (`include!`d from engine/tests/common/) (`rowshift binlog dump --file`).

/// Expected outcome of strict decoding (FULL row images required).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Decodes; this many row changes.
    Rows(usize),
    /// Fails with this error kind at this offset.
    Fails(&'static str, u64),
}

/// Every fixture file (path relative to the fixture folder) and its outcome.
const EXPECTED: &[(&str, Outcome)] = &[
    // (see SOURCES.md in the fixture folder for what each file holds)
    ("MyFlash/haha.000008", Outcome::Rows(1)),
    ("MyFlash/haha.000041", Outcome::Rows(192)),
    ("canal/mysql-bin.000001", Outcome::Rows(95)),
    ("canal/mysql-bin.000002", Outcome::Rows(1)),
    ("canal/tsdb/mysql-bin.000002", Outcome::Rows(1)),
    (
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000001",
        Outcome::Rows(0),
    ),
    // sysbench in STATEMENT format
    (
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000004",
        Outcome::Fails("statement_format", 391),
    ),
    (
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000005",
        Outcome::Fails("statement_format", 391),
    ),
    (
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000007",
        Outcome::Fails("statement_format", 391),
    ),
    (
        "mariadb-poc/domain_id_0/mariadb-repl-bin.000010",
        Outcome::Rows(0),
    ),
    (
        "mariadb-poc/domain_id_1/mariadb-repl-bin.000001",
        Outcome::Rows(0),
    ),
    // Aurora's event type 100 carries the ignorable flag
    (
        "mysql-binlog-connector-java/mysql-bin.aurora-padding",
        Outcome::Rows(0),
    ),
    (
        "mysql-binlog-connector-java/mysql-bin.checksum-crc32",
        Outcome::Rows(63),
    ),
    (
        "mysql-binlog-connector-java/mysql-bin.compressed",
        Outcome::Rows(1),
    ),
    (
        "mysql-binlog-connector-java/mysql-bin.sakila.gz",
        Outcome::Rows(47273),
    ),
    (
        "mysql-binlog-connector-rust/mysql-bin.000080",
        Outcome::Rows(7),
    ),
    ("mysql-cdc-rs/5.7/02_query/log.bin", Outcome::Rows(0)),
    ("mysql-cdc-rs/5.7/03_stop/log.bin", Outcome::Rows(0)),
    ("mysql-cdc-rs/5.7/04_rotate/log.bin", Outcome::Rows(0)),
    (
        "mysql-cdc-rs/5.7/05_intvar/log.bin",
        Outcome::Fails("statement_format", 768),
    ),
    (
        "mysql-cdc-rs/5.7/14_user_var/log.bin",
        Outcome::Fails("statement_format", 1049),
    ),
    ("mysql-cdc-rs/5.7/15_format_desc/log.bin", Outcome::Rows(0)),
    ("mysql-cdc-rs/5.7/16_xid/log.bin", Outcome::Rows(1)),
    ("mysql-cdc-rs/5.7/19_table_map/log.bin", Outcome::Rows(1)),
    ("mysql-cdc-rs/5.7/29_row_query/log.bin", Outcome::Rows(1)),
    (
        "mysql-cdc-rs/5.7/30_write_rows_v2/log.bin",
        Outcome::Rows(1),
    ),
    (
        "mysql-cdc-rs/5.7/31_update_rows_v2/log.bin",
        Outcome::Rows(1),
    ),
    (
        "mysql-cdc-rs/5.7/33_35_gtid_prev_gtid/log.bin",
        Outcome::Rows(1),
    ),
    ("mysql-cdc-rs/8.0/02_query/binlog.000001", Outcome::Rows(0)),
    (
        "mysql-cdc-rs/8.0/19_30_Table_map_event_Write_rows_log_event/binlog.000018",
        Outcome::Rows(1),
    ),
    (
        "mysql-cdc-rs/8.0/31_update_rows_v2/binlog.000001",
        Outcome::Rows(2),
    ),
    (
        "percona-binlog-server/data_80045_gtid/binlog.000001",
        Outcome::Rows(6),
    ),
    (
        "percona-binlog-server/data_80045_gtid/binlog.000002",
        Outcome::Rows(6),
    ),
    (
        "rust_mysql_common/binlog-invisible-columns.000001",
        Outcome::Rows(3),
    ),
    (
        "rust_mysql_common/binlog_transaction.000001",
        Outcome::Fails("statement_format", 368),
    ),
    (
        "rust_mysql_common/binlog_transaction_previous_GTID_no_tag.000001",
        Outcome::Rows(0),
    ),
    (
        "rust_mysql_common/binlog_transaction_with_GTID.000001",
        Outcome::Fails("statement_format", 424),
    ),
    (
        "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
        Outcome::Rows(1),
    ),
    // magic + 10 bytes
    (
        "rust_mysql_common/binlog_truncated_event.000001",
        Outcome::Fails("truncated", 4),
    ),
    // FDE, then 9 bytes of a PREVIOUS_GTIDS header
    (
        "rust_mysql_common/binlog_truncated_prev_gtid_event.000001",
        Outcome::Fails("truncated", 120),
    ),
    (
        "rust_mysql_common/bug11747887-bin.000003",
        Outcome::Fails("statement_format", 447),
    ),
    ("rust_mysql_common/bug32407.001", Outcome::Rows(2)),
    (
        "rust_mysql_common/bug40482-bin.000001",
        Outcome::Fails("incident", 106),
    ),
    // statement-format relay log (its corrupt QUERY comes later)
    (
        "rust_mysql_common/corrupt-relay-bin.000624",
        Outcome::Fails("statement_format", 322),
    ),
    // binlog_row_image=MINIMAL with a partial JSON update
    (
        "rust_mysql_common/json.binlog.000001",
        Outcome::Fails("row_image_not_full", 3750),
    ),
    ("rust_mysql_common/mariadb-bin.000001", Outcome::Rows(2)),
    ("rust_mysql_common/master-bin.000001", Outcome::Rows(0)),
    (
        "rust_mysql_common/minimal_row_metadata.000001",
        Outcome::Fails("row_image_not_full", 374),
    ),
    ("rust_mysql_common/mysql_type_bit.000001", Outcome::Rows(1)),
    (
        "rust_mysql_common/rpl_atomic_ddl_rollback_full.000001",
        Outcome::Rows(0),
    ),
    (
        "rust_mysql_common/rpl_atomic_ddl_rollback_table.000001",
        Outcome::Rows(0),
    ),
    // the hidden generated column is in the TABLE_MAP but not in the row
    (
        "rust_mysql_common/rpl_unfiltered_hidden_gcol.000001",
        Outcome::Fails("row_image_not_full", 979),
    ),
    ("rust_mysql_common/slave-relay-bin.000001", Outcome::Rows(0)),
    (
        "rust_mysql_common/transaction_compression.000001",
        Outcome::Rows(1),
    ),
    // NDB 5.1: deletes/updates log only the key in the before image
    (
        "rust_mysql_common/update-full-row.binlog",
        Outcome::Fails("row_image_not_full", 471),
    ),
    (
        "rust_mysql_common/update-partial-row.binlog",
        Outcome::Fails("row_image_not_full", 415),
    ),
    ("rust_mysql_common/vector.binlog", Outcome::Rows(10)),
    // pre-GA 5.2 builds, statement-based parts come first
    (
        "rust_mysql_common/ver_5_1-wl2325_r.001",
        Outcome::Fails("statement_format", 549),
    ),
    (
        "rust_mysql_common/ver_5_1-wl2325_s.001",
        Outcome::Fails("statement_format", 170),
    ),
    (
        "rust_mysql_common/ver_5_1_23.001",
        Outcome::Fails("statement_format", 776),
    ),
    (
        "rust_mysql_common/write-full-row.binlog",
        Outcome::Fails("row_image_not_full", 428),
    ),
    (
        "ybinlogp/mysql-bin.default-path",
        Outcome::Fails("statement_format", 394),
    ),
    ("zalora-binlog-parser/mysql-bin.01", Outcome::Rows(10)),
    ("zalora-binlog-parser/mysql-bin.02", Outcome::Rows(1)),
    // `DELETE FROM db.t` emptying a MEMORY table is reported as a DDL-like statement
    ("zalora-binlog-parser/mysql-bin.05", Outcome::Rows(0)),
    ("zalora-binlog-parser/mysql-bin.06", Outcome::Rows(2)),
    ("zalora-binlog-parser/mysql-bin.empty", Outcome::Rows(0)),
];
