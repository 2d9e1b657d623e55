//! The owned events the binlog source hands to the pipeline.
//!
//! Every row change travels together with its position ([`EventPos`]) in one value, so no
//! reordering can separate a change from where it came from. Resumable positions
//! ([`Position`]) appear only on [`SourceEvent::Commit`] and [`SourceEvent::Ddl`]: the
//! pipeline checkpoints at commit boundaries only.

use std::fmt;
use std::sync::Arc;

use rowshift_transform::Value;

use crate::position::{Gtid, GtidState, Position};
use crate::source::xa::Xid;

/// A table, by schema (database) and name, as the binlog names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Schema (database) name.
    pub schema: Arc<str>,
    /// Table name.
    pub name: Arc<str>,
}

impl TableRef {
    /// Builds a table reference.
    pub fn new(schema: &str, name: &str) -> Self {
        TableRef {
            schema: Arc::from(schema),
            name: Arc::from(name),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Where the column definitions of a [`TableDef`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaSource {
    /// Only the TABLE_MAP event: types always, names/signedness/charsets only if the server
    /// logged optional metadata (`binlog_row_metadata=FULL` for names).
    TableMap,
    /// TABLE_MAP types completed with names, signedness, charsets and ENUM/SET labels from
    /// `information_schema.COLUMNS`.
    InformationSchema,
}

/// One column of a table as the decoder knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnDef {
    /// Column name, when known (TABLE_MAP `COLUMN_NAME` metadata or information_schema).
    pub name: Option<String>,
    /// Binlog column type code, with ENUM/SET/CHAR resolved from the metadata
    /// (`mysql_common::constants::ColumnType` as `u8`).
    pub binlog_type: u8,
    /// Short SQL type name derived from the binlog type, e.g. `int`, `varchar`, `json`.
    pub type_name: &'static str,
    /// `Some(true)` for UNSIGNED numeric columns, `Some(false)` for signed ones, `None` when
    /// unknown (decoded as signed, like `mysqlbinlog` does).
    pub unsigned: Option<bool>,
    /// Collation id of a character (or ENUM/SET) column, when known.
    pub collation: Option<u16>,
    /// Character set name (`utf8mb4`, `latin1`, `binary`, ...), when known.
    pub charset: Option<String>,
    /// ENUM labels in definition order (index 1 is the first label), when known.
    pub enum_labels: Option<Vec<Vec<u8>>>,
    /// SET labels in definition order (bit 0 is the first label), when known.
    pub set_labels: Option<Vec<Vec<u8>>>,
    /// The column may hold NULL (TABLE_MAP null bitmap).
    pub nullable: bool,
    /// Part of the primary key, when known.
    pub primary_key: bool,
}

impl ColumnDef {
    /// The name, or `@N` (1-based position) when unknown, as `mysqlbinlog` prints it.
    pub fn display_name(&self, index: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("@{}", index + 1),
        }
    }

    /// True when the column's bytes are text in a known, UTF-8 compatible charset
    /// (`utf8mb4`, `utf8mb3`/`utf8`, `ascii`).
    pub fn is_utf8_text(&self) -> bool {
        matches!(
            self.charset.as_deref(),
            Some("utf8mb4" | "utf8mb3" | "utf8" | "ascii")
        )
    }
}

/// The columns of one table, in table order, shared by all row changes of that table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// The table.
    pub table: TableRef,
    /// Columns in table order (the binlog's order).
    pub columns: Vec<ColumnDef>,
    /// Where names and attributes came from.
    pub source: SchemaSource,
}

/// What a row change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// A new row (`after` only).
    Insert,
    /// A changed row (`before` and `after`).
    Update,
    /// A removed row (`before` only).
    Delete,
}

impl RowKind {
    /// `insert`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Insert => "insert",
            RowKind::Update => "update",
            RowKind::Delete => "delete",
        }
    }
}

/// The position of one event (not resumable by itself: see [`Position`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPos {
    /// Binlog file name.
    pub file: Arc<str>,
    /// Byte offset where the event starts. Events inside a compressed transaction payload
    /// carry the payload event's offset.
    pub offset: u64,
    /// Index of the row within its rows event (0 for other events).
    pub row: u32,
}

impl fmt::Display for EventPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if self.row > 0 {
            write!(f, "#{}", self.row)?;
        }
        Ok(())
    }
}

/// Columns missing from a row image (only possible when the decoder was told to accept
/// `binlog_row_image=MINIMAL|NOBLOB`; the pipeline refuses them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AbsentColumns {
    /// Column indexes not logged in the before image (their value is `Value::Null`).
    pub before: Vec<usize>,
    /// Column indexes not logged in the after image (their value is `Value::Null`).
    pub after: Vec<usize>,
}

/// One row change, with everything needed to apply it and to say where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The table changed.
    pub table: TableRef,
    /// Insert, update or delete.
    pub kind: RowKind,
    /// Before image, in table column order (update and delete).
    pub before: Option<Vec<Value>>,
    /// After image, in table column order (insert and update).
    pub after: Option<Vec<Value>>,
    /// Column definitions of the table at the time of the change.
    pub columns: Arc<TableDef>,
    /// Where the change was read.
    pub pos: EventPos,
    /// GTID of the transaction, when GTIDs are on.
    pub gtid: Option<Gtid>,
    /// Columns missing from the images; `None` for full images (the normal case).
    pub absent: Option<Box<AbsentColumns>>,
}

/// Where an XA branch is, as the stream reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum XaMark {
    /// The rows up to the next commit belong to an XA branch (`XA START`).
    Start,
    /// The branch read since [`XaMark::Start`] was prepared under this XID (the commit that
    /// follows is its `XA PREPARE`): its rows are logged, but the source has not committed
    /// them yet and may still roll them back.
    Prepared(Box<Xid>),
    /// `XA COMMIT` or `XA ROLLBACK` of this XID (any undo rows follow).
    Ended(Box<Xid>),
}

/// Extra events the source reports so that nothing is dropped silently; the pipeline may
/// ignore them.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// FORMAT_DESCRIPTION: the server that wrote the binlog.
    Format {
        /// Server version string, e.g. `9.7.0` or `10.11.6-MariaDB-log`.
        server_version: String,
        /// Binlog format version (4 for every supported server).
        binlog_version: u16,
        /// True when events carry CRC32 checksums.
        checksum: bool,
    },
    /// PREVIOUS_GTIDS (MySQL) or GTID_LIST (MariaDB): the GTID state at the start of a file.
    GtidState(GtidState),
    /// MariaDB BINLOG_CHECKPOINT: the oldest binlog file still needed for crash recovery.
    BinlogCheckpoint {
        /// File name.
        file: String,
    },
    /// MySQL ROWS_QUERY or MariaDB ANNOTATE_ROWS: the statement that produced the rows that
    /// follow.
    RowsQuery {
        /// The statement text (lossy UTF-8).
        query: String,
    },
    /// STOP: the server stopped (end of this file).
    Stop,
    /// An XA branch's boundary: which rows a prepared branch holds, until it ends.
    Xa(XaMark),
    /// An event with no meaning for row replication (INTVAR, RAND, USER_VAR, ignorable
    /// events, ...), reported by name.
    Skipped {
        /// Event type name.
        event: String,
    },
}

/// One event of the source, in binlog order.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A transaction starts.
    Begin {
        /// GTID of the transaction, when GTIDs are on.
        gtid: Option<Gtid>,
        /// Where.
        pos: EventPos,
        /// Event timestamp (seconds since the epoch).
        timestamp: u32,
    },
    /// One row change.
    Rows(RowChange),
    /// A transaction committed: `pos` is a safe resume point.
    Commit {
        /// Position after the commit (GTID state includes this transaction).
        pos: Position,
        /// GTID of the transaction.
        gtid: Option<Gtid>,
        /// XID of the commit, for transactional engines.
        xid: Option<u64>,
        /// Event timestamp.
        timestamp: u32,
        /// Where a restarted stream must begin instead of `pos`, while an XA branch prepared
        /// earlier has not ended: the commit before the oldest such branch, so that the branch's
        /// rows are read (and kept) again and a later `XA ROLLBACK` can still undo them.
        /// `None`: `pos`.
        resume: Option<Box<Position>>,
    },
    /// A DDL (or other non-row) statement, committed on its own: `pos` is a safe resume point.
    Ddl {
        /// Default schema of the session that ran it (may differ from the table's schema).
        schema: String,
        /// Statement text (lossy UTF-8).
        query: String,
        /// Position after the statement.
        pos: Position,
        /// GTID of the statement.
        gtid: Option<Gtid>,
        /// Event timestamp.
        timestamp: u32,
    },
    /// The server had nothing new for a while (live streams only).
    Heartbeat {
        /// The server's current coordinate.
        pos: EventPos,
    },
    /// The server switched to another binlog file.
    Rotate {
        /// Next file name.
        next_file: String,
        /// Offset in the next file.
        offset: u64,
    },
    /// Anything else, reported for completeness.
    Marker {
        /// What.
        marker: Marker,
        /// Where.
        pos: EventPos,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_sizes_stay_small() {
        // Moved several times per row on the hot path.
        let row = std::mem::size_of::<RowChange>();
        let ev = std::mem::size_of::<SourceEvent>();
        assert!(
            row <= 208 && ev <= 208,
            "RowChange {row} B, SourceEvent {ev} B"
        );
        eprintln!(
            "RowChange {row} B, SourceEvent {ev} B, Value {} B",
            std::mem::size_of::<Value>()
        );
    }
}
