//! Binlog events → [`SourceEvent`]s. Pure: no I/O, so every rule here is unit-testable and
//! the same code serves binlog files, the live replica stream, the fuzz target and the bench.
//!
//! mysql_common parses the event structures (FORMAT_DESCRIPTION, QUERY, TABLE_MAP, rows
//! events, GTIDs, transaction payloads); this module adds what it lacks: MariaDB events, the
//! transaction/position state machine, typed values ([`super::values`]), partial JSON
//! ([`super::json_patch`]) and the refusal of binlogs a row-based migration cannot trust
//! (statement format, non-FULL row images, incidents).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mysql_common::binlog::consts::{BinlogChecksumAlg, EventFlags, EventType};
use mysql_common::binlog::events::{
    BinlogEventFooter, BinlogEventHeader, DeleteRowsEvent, DeleteRowsEventV1,
    FormatDescriptionEvent, GtidEvent, PartialUpdateRowsEvent, PreviousGtidsEvent, QueryEvent,
    RotateEvent, RowsEventData, RowsQueryEvent, TableMapEvent, TransactionPayloadReader,
    UpdateRowsEvent, UpdateRowsEventV1, WriteRowsEvent, WriteRowsEventV1, XidEvent,
};
use mysql_common::binlog::BinlogCtx;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;
use rowshift_transform::Value;

use super::columns::{compile, needs_schema, CompileError, TableInfo};
use super::json_patch::apply_diffs;
use super::mariadb::{self, types as maria};
use super::schema_cache::SchemaCache;
use super::values::{decode_value, Cursor, RawValue, ValueError};
use super::xa::{self, XaEnd, XaHold};
use crate::event::{
    AbsentColumns, EventPos, Marker, RowChange, RowKind, SourceEvent, TableRef, XaMark,
};
use crate::position::{Gtid, GtidSet, GtidState, GtidTag, Position, Uuid};

/// Largest event accepted (MySQL's `max_allowed_packet` ceiling is 1 GiB).
pub const MAX_EVENT_SIZE: u64 = 1 << 30;

/// Errors of decoding binlog events. Every variant names where it happened and, for
/// settings, what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// An XA branch whose rows were applied was rolled back, and it had too many rows to keep.
    #[error("{file}:{offset}: XA transaction {xid} was rolled back after its {rows} prepared rows were applied; rowshift keeps at most {max} rows of prepared XA transactions to undo them. The target now holds rows the source rolled back: for a migration, run it again with --abort and start it anew; for a sync, start a new backfill into a fresh target table", max = xa::MAX_HELD_ROWS)]
    XaRollbackNotUndone {
        /// File.
        file: String,
        /// Offset of the XA ROLLBACK.
        offset: u64,
        /// The XID.
        xid: String,
        /// Rows the branch had.
        rows: usize,
    },
    /// The data ends inside an event (truncated file, or the active file of a running server).
    #[error("{file}: truncated at offset {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// File.
        file: String,
        /// Offset of the incomplete event.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The file does not start with the binlog magic `\xfebin`.
    #[error("{file}: not a binlog file (missing the \\xfebin magic bytes)")]
    BadMagic {
        /// File.
        file: String,
    },
    /// An event's CRC32 does not match its bytes.
    #[error("{file}: checksum mismatch in {event} event at offset {offset}: stored {stored:#010x}, computed {computed:#010x} (corrupt file or transfer)")]
    Checksum {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Event type name.
        event: String,
        /// CRC32 stored in the event.
        stored: u32,
        /// CRC32 of the bytes.
        computed: u32,
    },
    /// An event header is impossible (size smaller than the header, larger than 1 GiB, ...).
    #[error("{file}: corrupt event header at offset {offset}: {reason}")]
    BadHeader {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An event type this decoder does not know, without the "ignorable" flag.
    #[error(
        "{file}: unknown event type {type_code} at offset {offset} (server newer than rowshift?)"
    )]
    UnknownEvent {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Event type code.
        type_code: u8,
    },
    /// An event's body does not parse.
    #[error("{file}: corrupt {event} event at offset {offset}: {reason}")]
    Corrupt {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Event type name.
        event: String,
        /// What is wrong.
        reason: String,
    },
    /// A statement changes rows: the binlog is in STATEMENT or MIXED format.
    #[error("{file}: row change logged as a statement at offset {offset} (`{statement}`): the server must use binlog_format=ROW (SET GLOBAL binlog_format='ROW', and in my.cnf)")]
    StatementFormat {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Start of the statement.
        statement: String,
    },
    /// A rows event does not carry every column.
    #[error("{file}: rows event for {table} at offset {offset} lacks columns {missing:?} in its {image} image: the server must use binlog_row_image=FULL (SET GLOBAL binlog_row_image='FULL', and in my.cnf)")]
    RowImageNotFull {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Table.
        table: String,
        /// `before` or `after`.
        image: &'static str,
        /// Missing column names (or `@N`).
        missing: Vec<String>,
    },
    /// A rows event refers to a table id with no TABLE_MAP before it.
    #[error("{file}: rows event at offset {offset} refers to table id {table_id} without a TABLE_MAP (start the stream at a transaction boundary)")]
    UnknownTable {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Table id.
        table_id: u64,
    },
    /// A TABLE_MAP cannot be used.
    #[error("{file}: TABLE_MAP for {table} at offset {offset}: {reason}")]
    BadTableMap {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Table.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A value inside a row does not decode.
    #[error(
        "{file}: rows event for {table} at offset {offset}, row {row}, column {column}: {reason}"
    )]
    BadValue {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Table.
        table: String,
        /// Row index within the event.
        row: u32,
        /// Column name (or `@N`).
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// A partial JSON update cannot be applied to the before image.
    #[error("{file}: partial JSON update of {table}.{column} at offset {offset}: {reason} (set binlog_row_value_options='' on the server to log full JSON documents)")]
    PartialJson {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The server logged an INCIDENT: events were lost, a replica must not go on.
    #[error("{file}: INCIDENT event at offset {offset}: {message} — the source lost events; restart the migration from a fresh copy")]
    Incident {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// Incident text.
        message: String,
    },
    /// Something valid that rowshift does not support.
    #[error("{file}: unsupported {what} at offset {offset}: {hint}")]
    Unsupported {
        /// File.
        file: String,
        /// Event offset.
        offset: u64,
        /// What.
        what: String,
        /// What to do about it.
        hint: String,
    },
}

impl DecodeError {
    /// A short, stable name of the error kind (used by tests and the dump's error line).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::Checksum { .. } => "checksum",
            DecodeError::BadHeader { .. } => "bad_header",
            DecodeError::UnknownEvent { .. } => "unknown_event",
            DecodeError::Corrupt { .. } => "corrupt",
            DecodeError::StatementFormat { .. } => "statement_format",
            DecodeError::RowImageNotFull { .. } => "row_image_not_full",
            DecodeError::UnknownTable { .. } => "unknown_table",
            DecodeError::BadTableMap { .. } => "bad_table_map",
            DecodeError::BadValue { .. } => "bad_value",
            DecodeError::PartialJson { .. } => "partial_json",
            DecodeError::Incident { .. } => "incident",
            DecodeError::Unsupported { .. } => "unsupported",
            DecodeError::XaRollbackNotUndone { .. } => "xa_rollback_not_undone",
        }
    }
}

/// `schema.table` filter; `schema.*` matches a whole schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFilter {
    tables: HashSet<(String, String)>,
    schemas: HashSet<String>,
}

impl TableFilter {
    /// Parses `db.t,db2.*`. Names are case-sensitive, as on Linux servers.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut f = TableFilter::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (db, t) = item
                .split_once('.')
                .ok_or_else(|| format!("`{item}` is not schema.table"))?;
            if db.is_empty() || t.is_empty() {
                return Err(format!("`{item}` is not schema.table"));
            }
            if t == "*" {
                f.schemas.insert(db.to_owned());
            } else {
                f.tables.insert((db.to_owned(), t.to_owned()));
            }
        }
        Ok(f)
    }

    /// Exactly these `(schema, table)` pairs.
    pub fn of_tables<'a>(tables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        TableFilter {
            tables: tables
                .into_iter()
                .map(|(d, t)| (d.to_owned(), t.to_owned()))
                .collect(),
            schemas: HashSet::new(),
        }
    }

    /// True when `schema.table` passes.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schemas.contains(schema)
            || self.tables.contains(&(schema.to_owned(), table.to_owned()))
    }
}

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Refuse rows events whose images lack columns (`binlog_row_image` MINIMAL/NOBLOB).
    /// The pipeline needs full images; `false` (dump only) fills missing columns with NULL and
    /// lists them in [`RowChange::absent`].
    pub require_full_row_image: bool,
    /// Only decode rows of these tables (`None`: all).
    pub tables: Option<TableFilter>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            require_full_row_image: true,
            tables: None,
        }
    }
}

/// One framed event: its header, its body without the checksum, and where it starts.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// The 19-byte header.
    pub header: BinlogEventHeader,
    /// The body without the trailing CRC32 (and, for FORMAT_DESCRIPTION, without the
    /// checksum-algorithm byte).
    pub body: &'a [u8],
    /// Offset of the event in its file.
    pub offset: u64,
    /// For FORMAT_DESCRIPTION only: its footer (checksum algorithm).
    pub fde_footer: Option<BinlogEventFooter>,
}

/// Server family, from the FORMAT_DESCRIPTION's server version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MySQL (or Percona Server).
    MySql,
    /// MariaDB.
    MariaDb,
}

/// A compressed transaction being replayed.
#[derive(Debug, Clone, Copy)]
struct Payload {
    /// Offset of the TRANSACTION_PAYLOAD event.
    offset: u64,
    /// Offset after it (the commit position of the transaction inside).
    end: u64,
    /// Live streams: inner bytes still expected from the server.
    remaining: u64,
    /// Row changes of the payload so far: every inner event's rows share the payload's
    /// offset, so their row numbers go on from the previous event's (`(offset, row)` stays
    /// unique, which the stream's consumers dedupe and resume by).
    rows: u32,
}

/// Event type name for messages.
pub fn event_name(code: u8) -> String {
    match code {
        maria::ANNOTATE_ROWS => "ANNOTATE_ROWS".into(),
        maria::BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT".into(),
        maria::GTID => "MARIADB_GTID".into(),
        maria::GTID_LIST => "GTID_LIST".into(),
        maria::START_ENCRYPTION => "START_ENCRYPTION".into(),
        maria::QUERY_COMPRESSED => "QUERY_COMPRESSED".into(),
        maria::WRITE_ROWS_COMPRESSED_V1..=maria::DELETE_ROWS_COMPRESSED => "ROWS_COMPRESSED".into(),
        41 => "HEARTBEAT_V2".into(),
        c => match EventType::try_from(c) {
            Ok(t) => format!("{t:?}").trim_end_matches("_EVENT").to_owned(),
            Err(_) => format!("type {c}"),
        },
    }
}

/// What a QUERY event's statement is, by its first keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryKind {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    XaStart,
    XaEnd,
    XaFinish,
    Dml,
    Other,
}

/// Skips whitespace and comments (keeping the code inside `/*!NNNNN ... */`).
fn skip_noise(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(rest) = t.strip_prefix("/*!") {
            s = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        } else if let Some(rest) = t.strip_prefix("/*") {
            s = rest.split_once("*/").map(|x| x.1).unwrap_or("");
        } else if t.starts_with("--") || t.starts_with('#') {
            s = t.split_once('\n').map(|x| x.1).unwrap_or("");
        } else {
            return t;
        }
    }
}

pub(crate) fn classify_query(q: &str) -> QueryKind {
    let s = skip_noise(q);
    let mut words = s
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" => QueryKind::Begin,
        "START" => QueryKind::Begin,
        "COMMIT" => QueryKind::Commit,
        "ROLLBACK" => match words.next().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("TO") => QueryKind::Savepoint,
            Some("WORK") | None => QueryKind::Rollback,
            Some(_) => QueryKind::Rollback,
        },
        "SAVEPOINT" | "RELEASE" => QueryKind::Savepoint,
        "XA" => match words.next().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("START" | "BEGIN") => QueryKind::XaStart,
            Some("END") => QueryKind::XaEnd,
            _ => QueryKind::XaFinish,
        },
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" | "WITH" => QueryKind::Dml,
        _ => QueryKind::Other,
    }
}

/// Reads a MySQL packed (length-encoded) integer.
fn lenenc(c: &mut Cursor<'_>) -> Result<u64, ValueError> {
    let [b] = {
        let s = c.take(1)?;
        [s[0]]
    };
    Ok(match b {
        0..=250 => b as u64,
        252 => c.uint_le(2)?,
        253 => c.uint_le(3)?,
        254 => c.uint_le(8)?,
        _ => return Err(ValueError::Invalid("bad packed integer".into())),
    })
}

#[inline]
fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Table maps of filtered-out tables remembered at most (see `Decoder::dropped`).
const MAX_DROPPED_MAPS: usize = 4096;

/// The binlog decoder: feed it events in order, it appends [`SourceEvent`]s.
#[derive(Debug)]
pub struct Decoder {
    opts: DecodeOptions,
    fde: Arc<FormatDescriptionEvent<'static>>,
    flavor: Flavor,
    file: Arc<str>,
    tables: HashMap<u64, TableInfo>,
    /// TABLE_MAP bodies of tables the filter dropped, by table id: a busy source maps every
    /// table again in every transaction, and these are recognised without parsing.
    dropped: HashMap<u64, Box<[u8]>>,
    schema: SchemaCache,
    /// GTID of the transaction being read (set by a GTID event, taken by its commit).
    txn_gtid: Option<Gtid>,
    in_txn: bool,
    gtid_state: GtidState,
    last_commit: Position,
    payload: Option<Payload>,
    /// Decompress TRANSACTION_PAYLOAD events here (files) or expect the inner events from the
    /// caller (live streams, where mysql_async decompresses them).
    inline_payloads: bool,
    /// Offset where the next event is expected (streams: for events with log_pos 0).
    next_offset: u64,
    /// Rows of prepared XA branches, to undo at `XA ROLLBACK`.
    xa: XaHold,
}

impl Decoder {
    /// A decoder for events of the binlog file `file`, which decompresses transaction payloads
    /// itself.
    pub fn new(file: &str, opts: DecodeOptions) -> Self {
        Decoder {
            opts,
            fde: Arc::new(FormatDescriptionEvent::new(
                mysql_common::binlog::consts::BinlogVersion::Version4,
            )),
            flavor: Flavor::MySql,
            file: Arc::from(file),
            tables: HashMap::new(),
            dropped: HashMap::new(),
            schema: SchemaCache::new(),
            txn_gtid: None,
            in_txn: false,
            gtid_state: GtidState::Unknown,
            last_commit: Position::at(file, 4),
            payload: None,
            inline_payloads: true,
            next_offset: 4,
            xa: XaHold::default(),
        }
    }

    /// A decoder for a live stream: the caller passes the inner events of transaction payloads
    /// after the payload event itself (as mysql_async yields them).
    pub fn new_for_stream(file: &str, offset: u64, gtid: GtidState, opts: DecodeOptions) -> Self {
        let mut d = Decoder::new(file, opts);
        d.inline_payloads = false;
        d.next_offset = offset;
        d.last_commit = Position {
            file: file.to_owned(),
            offset,
            gtid: gtid.clone(),
        };
        d.gtid_state = gtid;
        d
    }

    /// Sets the GTID state the stream starts from.
    pub fn set_gtid_state(&mut self, gtid: GtidState) {
        self.last_commit.gtid = gtid.clone();
        self.gtid_state = gtid;
    }

    /// Accounts for an event *before* the requested start offset (a MySQL stream started at
    /// `file:offset` is requested from the start of the file so that the GTID state at the
    /// offset is known): FORMAT_DESCRIPTION and ROTATE are applied, PREVIOUS_GTIDS and GTID
    /// events build the GTID state (every transaction that began before a commit boundary
    /// committed before it); everything else is ignored.
    pub fn skip_event(&mut self, ev: RawEvent<'_>) -> Result<(), DecodeError> {
        let code = ev.header.event_type_raw();
        let mut sink = Vec::new();
        match code {
            4 | 15 | 35 => self.decode(ev, &mut sink)?,
            33 | 42 => {
                self.decode(ev, &mut sink)?;
                if let Some(g) = self.txn_gtid.take() {
                    if !self.gtid_state.is_known() {
                        self.gtid_state = GtidState::MySql(GtidSet::new());
                    }
                    self.gtid_state.add(&g);
                }
            }
            _ => {
                if ev.header.log_pos() != 0 {
                    self.next_offset = ev.header.log_pos() as u64;
                }
            }
        }
        self.last_commit.gtid = self.gtid_state.clone();
        Ok(())
    }

    /// Hand over the prepared XA branches kept so far, for a stream that goes on from the last
    /// commit on another connection.
    pub fn take_xa_hold(&mut self) -> XaHold {
        std::mem::take(&mut self.xa)
    }

    /// Keep the prepared XA branches of an earlier stream that ended at the commit this one
    /// starts from (a branch it was reading is read again from its start).
    pub fn keep_xa_hold(&mut self, mut hold: XaHold) {
        hold.ended();
        self.xa = hold;
    }

    /// Marks `offset` of the current file as the last commit boundary (the stream's start).
    pub fn start_at(&mut self, offset: u64) {
        self.in_txn = false;
        self.txn_gtid = None;
        self.last_commit = Position {
            file: self.file(),
            offset,
            gtid: self.gtid_state.clone(),
        };
    }

    /// The last commit position: where a restart resumes.
    pub fn position(&self) -> &Position {
        &self.last_commit
    }

    /// True while the inner events of a compressed transaction are expected (live streams).
    pub fn in_payload(&self) -> bool {
        self.payload.is_some()
    }

    /// Offset where the next event is expected.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The server family of the current file.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The current FORMAT_DESCRIPTION.
    pub fn fde(&self) -> &FormatDescriptionEvent<'static> {
        &self.fde
    }

    /// True when events after the current FORMAT_DESCRIPTION end with a CRC32.
    pub fn checksums(&self) -> bool {
        matches!(
            self.fde.footer().get_checksum_alg(),
            Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
        )
    }

    /// The schema cache (information_schema definitions) used for TABLE_MAPs without full
    /// metadata.
    pub fn schema_cache_mut(&mut self) -> &mut SchemaCache {
        &mut self.schema
    }

    /// For a TABLE_MAP event: the table, if its optional metadata lacks names/attributes and
    /// the schema cache has nothing for it yet (the live source then reads information_schema
    /// before passing the event on).
    pub fn table_needing_schema(&self, ev: &RawEvent<'_>) -> Option<TableRef> {
        if ev.header.event_type_raw() != EventType::TABLE_MAP_EVENT as u8
            || self.known_table_map(ev.body)
        {
            return None;
        }
        let fde = self.fde.clone();
        check_table_map(ev.body, self.short_table_id()).ok()?;
        let tme = self.parse::<TableMapEvent<'_>>(&fde, ev).ok()?;
        let table = TableRef::new(&tme.database_name(), &tme.table_name());
        if let Some(f) = &self.opts.tables {
            if !f.matches(&table.schema, &table.name) {
                return None;
            }
        }
        if self.schema.get(&table).is_some() || !needs_schema(&tme) {
            return None;
        }
        Some(table)
    }

    /// True when this TABLE_MAP body is the one last seen for its table id (kept or dropped by
    /// the filter): nothing about the table changed, so it need not be parsed again.
    fn known_table_map(&self, body: &[u8]) -> bool {
        let id_len = if self.short_table_id() { 4 } else { 6 };
        let Some(id) = body.get(..id_len) else {
            return false;
        };
        let mut le = [0u8; 8];
        le[..id_len].copy_from_slice(id);
        let id = u64::from_le_bytes(le);
        self.tables.get(&id).is_some_and(|t| *t.raw == *body)
            || self.dropped.get(&id).is_some_and(|raw| **raw == *body)
    }

    /// Pre-5.1.? servers log 4-byte table ids (TABLE_MAP post-header of 6 bytes).
    fn short_table_id(&self) -> bool {
        self.fde
            .get_event_type_header_length(EventType::TABLE_MAP_EVENT)
            == 6
    }

    fn file(&self) -> String {
        self.file.to_string()
    }

    /// The binlog file the events being decoded belong to (follows ROTATE events).
    pub fn current_file(&self) -> &str {
        &self.file
    }

    fn corrupt(&self, ev: &RawEvent<'_>, reason: impl std::fmt::Display) -> DecodeError {
        DecodeError::Corrupt {
            file: self.file(),
            offset: ev.offset,
            event: event_name(ev.header.event_type_raw()),
            reason: reason.to_string(),
        }
    }

    /// Parses `ev` as `T` with the current FORMAT_DESCRIPTION. The result borrows `fde` and
    /// the event, not the decoder.
    fn parse<'a, T>(
        &self,
        fde: &'a FormatDescriptionEvent<'a>,
        ev: &RawEvent<'a>,
    ) -> Result<T, DecodeError>
    where
        T: MyDeserialize<'a, Ctx = BinlogCtx<'a>>,
    {
        self.parse_as(fde, ev, ev.header.event_type_raw())
    }

    fn parse_as<'a, T>(
        &self,
        fde: &'a FormatDescriptionEvent<'a>,
        ev: &RawEvent<'a>,
        type_code: u8,
    ) -> Result<T, DecodeError>
    where
        T: MyDeserialize<'a, Ctx = BinlogCtx<'a>>,
    {
        let ctx = BinlogCtx::new(BinlogEventHeader::LEN + ev.body.len(), fde, type_code);
        let mut buf = ParseBuf(ev.body);
        buf.parse::<T>(ctx).map_err(|e| self.corrupt(ev, e))
    }

    fn event_pos(&self, ev: &RawEvent<'_>, row: u32) -> EventPos {
        EventPos {
            file: self.file.clone(),
            offset: self.payload.map(|p| p.offset).unwrap_or(ev.offset),
            row,
        }
    }

    fn end_offset(&self, ev: &RawEvent<'_>) -> u64 {
        match self.payload {
            Some(p) => p.end,
            None => ev.offset + ev.header.event_size() as u64,
        }
    }

    /// A transaction starts here unless one is open already.
    fn begin(&mut self, ev: &RawEvent<'_>, out: &mut Vec<SourceEvent>) {
        if !self.in_txn {
            self.in_txn = true;
            out.push(SourceEvent::Begin {
                gtid: self.txn_gtid,
                pos: self.event_pos(ev, 0),
                timestamp: ev.header.timestamp(),
            });
        }
    }

    /// `XA COMMIT` / `XA ROLLBACK`: a rolled-back branch whose rows were applied gets them
    /// undone (inverse changes, newest first) in this transaction.
    fn xa_finish(
        &mut self,
        ev: &RawEvent<'_>,
        text: &str,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), DecodeError> {
        let end = xa::parse_end(text);
        if let Some(XaEnd::Commit(x) | XaEnd::Rollback(x)) = &end {
            self.marker(ev, Marker::Xa(XaMark::Ended(Box::new(x.clone()))), out);
        }
        let undo = match end {
            Some(end) => self
                .xa
                .finish(&end)
                .map_err(|rows| DecodeError::XaRollbackNotUndone {
                    file: self.file(),
                    offset: ev.offset,
                    xid: match &end {
                        XaEnd::Commit(x) | XaEnd::Rollback(x) => x.to_string(),
                    },
                    rows,
                })?,
            None => None,
        };
        if let Some(undo) = undo {
            self.begin(ev, out);
            for (i, mut r) in undo.into_iter().enumerate() {
                r.pos = self.event_pos(ev, u32::try_from(i).unwrap_or(u32::MAX));
                r.gtid = self.txn_gtid;
                out.push(SourceEvent::Rows(r));
            }
        }
        self.commit(ev, None, out);
        Ok(())
    }

    /// An XA branch starts: its rows are kept, and the stream says so.
    fn xa_start(&mut self, ev: &RawEvent<'_>, out: &mut Vec<SourceEvent>) {
        if !self.xa.in_branch() {
            self.marker(ev, Marker::Xa(XaMark::Start), out);
        }
        self.xa.start();
    }

    fn commit(&mut self, ev: &RawEvent<'_>, xid: Option<u64>, out: &mut Vec<SourceEvent>) {
        // After XA PREPARE the branch was handed over already; any other end keeps nothing.
        self.xa.ended();
        let gtid = self.txn_gtid.take();
        if let Some(g) = &gtid {
            self.gtid_state.add(g);
        }
        self.in_txn = false;
        self.last_commit = Position {
            file: self.file(),
            offset: self.end_offset(ev),
            gtid: self.gtid_state.clone(),
        };
        out.push(SourceEvent::Commit {
            pos: self.last_commit.clone(),
            gtid,
            xid,
            timestamp: ev.header.timestamp(),
            resume: self.xa.resume_before().cloned().map(Box::new),
        });
    }

    fn marker(&self, ev: &RawEvent<'_>, marker: Marker, out: &mut Vec<SourceEvent>) {
        out.push(SourceEvent::Marker {
            marker,
            pos: self.event_pos(ev, 0),
        });
    }

    fn skipped(&self, ev: &RawEvent<'_>, out: &mut Vec<SourceEvent>) {
        self.marker(
            ev,
            Marker::Skipped {
                event: event_name(ev.header.event_type_raw()),
            },
            out,
        );
    }

    /// Decodes one event, appending what it means to `out`.
    pub fn decode(
        &mut self,
        ev: RawEvent<'_>,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), DecodeError> {
        let code = ev.header.event_type_raw();
        // Live streams: inner events of a compressed transaction follow the payload event.
        if let Some(p) = self.payload {
            if !self.inline_payloads {
                let inner_allowed = !matches!(code, 4 | 15 | 27 | 33 | 34 | 40 | 41 | 42);
                if !inner_allowed || p.remaining < ev.header.event_size() as u64 {
                    return Err(self.corrupt(
                        &ev,
                        format!(
                            "transaction payload ended early ({} bytes of inner events missing): the payload could not be decompressed",
                            p.remaining
                        ),
                    ));
                }
            }
        }
        let r = self.decode_inner(&ev, out);
        if !self.inline_payloads {
            if let Some(p) = &mut self.payload {
                if code != EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
                    p.remaining -= ev.header.event_size() as u64;
                    if p.remaining == 0 {
                        self.payload = None;
                    }
                }
            }
        }
        if ev.header.log_pos() != 0 && self.payload.is_none() {
            self.next_offset = ev.header.log_pos() as u64;
        }
        r
    }

    fn decode_inner(
        &mut self,
        ev: &RawEvent<'_>,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), DecodeError> {
        let code = ev.header.event_type_raw();
        let fde = self.fde.clone();
        match code {
            15 => self.format_description(ev, out),
            4 => {
                let re: RotateEvent<'_> = self.parse(&fde, ev)?;
                let next_file = re.name().into_owned();
                let offset = re.position();
                let fake = ev.header.log_pos() == 0
                    || ev
                        .header
                        .flags()
                        .contains(EventFlags::LOG_EVENT_ARTIFICIAL_F);
                if !fake {
                    self.tables.clear();
                    self.dropped.clear();
                }
                out.push(SourceEvent::Rotate {
                    next_file: next_file.clone(),
                    offset,
                });
                if !self.inline_payloads {
                    // Streams continue in the next file; files end here.
                    self.file = Arc::from(next_file.as_str());
                    self.next_offset = offset;
                    if self.last_commit.file != next_file && !self.in_txn {
                        self.last_commit.file = next_file;
                        self.last_commit.offset = offset;
                    }
                }
                Ok(())
            }
            2 | maria::QUERY_COMPRESSED => self.query(ev, out),
            16 => {
                let x: XidEvent = self.parse(&fde, ev)?;
                self.commit(ev, Some(x.xid), out);
                Ok(())
            }
            19 => self.table_map(ev),
            23..=25
            | 30..=32
            | 39
            | maria::WRITE_ROWS_COMPRESSED_V1..=maria::DELETE_ROWS_COMPRESSED => {
                let first = out.len();
                self.rows(ev, out)?;
                if self.xa.in_branch() {
                    for e in &out[first..] {
                        if let SourceEvent::Rows(r) = e {
                            self.xa.keep(r);
                        }
                    }
                }
                Ok(())
            }
            20..=22 => Err(DecodeError::Unsupported {
                file: self.file(),
                offset: ev.offset,
                what: "pre-GA rows event (MySQL 5.1.5-5.1.17)".into(),
                hint: "binlogs of pre-GA MySQL 5.1 builds cannot be decoded".into(),
            }),
            33 | 42 => {
                let g: GtidEvent = self.parse(&fde, ev)?;
                let tag = match g.tag() {
                    Some(t) => Some(GtidTag::new(t.as_str()).map_err(|e| self.corrupt(ev, e))?),
                    None => None,
                };
                self.txn_gtid = Some(Gtid::MySql {
                    sid: Uuid(g.sid()),
                    tag,
                    gno: g.gno(),
                });
                Ok(())
            }
            34 => {
                self.txn_gtid = None;
                Ok(())
            }
            35 => {
                check_previous_gtids(ev.body).map_err(|e| self.corrupt(ev, e))?;
                let p: PreviousGtidsEvent<'_> = self.parse(&fde, ev)?;
                let mut set = GtidSet::new();
                for sid in p.sids() {
                    let tag = match sid.tag() {
                        Some(t) => Some(GtidTag::new(t.as_str()).map_err(|e| self.corrupt(ev, e))?),
                        None => None,
                    };
                    for iv in sid.intervals() {
                        set.add_interval(Uuid(sid.uuid()), tag, iv.start(), iv.end());
                    }
                }
                let merged = match std::mem::take(&mut self.gtid_state) {
                    GtidState::MySql(mut mine) => {
                        for (u, t, s, e) in set.intervals() {
                            mine.add_interval(u, t, s, e);
                        }
                        mine
                    }
                    _ => set.clone(),
                };
                self.gtid_state = GtidState::MySql(merged);
                if !self.in_txn {
                    self.last_commit.gtid = self.gtid_state.clone();
                }
                self.marker(ev, Marker::GtidState(GtidState::MySql(set)), out);
                Ok(())
            }
            26 => {
                let msg = String::from_utf8_lossy(ev.body.get(2..).unwrap_or(&[]))
                    .trim_start_matches(|c: char| c.is_control())
                    .to_owned();
                Err(DecodeError::Incident {
                    file: self.file(),
                    offset: ev.offset,
                    message: if msg.is_empty() {
                        "lost events".into()
                    } else {
                        msg
                    },
                })
            }
            27 | 41 => {
                out.push(SourceEvent::Heartbeat {
                    pos: EventPos {
                        file: self.file.clone(),
                        offset: ev.header.log_pos() as u64,
                        row: 0,
                    },
                });
                Ok(())
            }
            3 => {
                self.marker(ev, Marker::Stop, out);
                Ok(())
            }
            29 => {
                let q: RowsQueryEvent<'_> = self.parse(&fde, ev)?;
                self.marker(
                    ev,
                    Marker::RowsQuery {
                        query: q.query().into_owned(),
                    },
                    out,
                );
                Ok(())
            }
            38 => {
                // XA PREPARE: the prepared branch's rows were logged; treat it as the commit
                // boundary (XA COMMIT/ROLLBACK follow as separate groups) and keep the rows
                // until the branch ends.
                match xa::xid_of_prepare(ev.body) {
                    // MySQL logs `XA COMMIT .. ONE PHASE` as this event with its one-phase
                    // flag: the branch commits here and nothing is kept.
                    Some(_) if xa::is_one_phase(ev.body) => {}
                    Some(xid) => {
                        self.marker(ev, Marker::Xa(XaMark::Prepared(Box::new(xid.clone()))), out);
                        self.xa.prepared(xid, &self.last_commit);
                    }
                    None => return Err(self.corrupt(ev, "short XA_PREPARE event")),
                }
                self.commit(ev, None, out);
                Ok(())
            }
            40 => self.transaction_payload(ev, out),
            18 => {
                let q = String::from_utf8_lossy(ev.body);
                Err(DecodeError::StatementFormat {
                    file: self.file(),
                    offset: ev.offset,
                    statement: format!("LOAD DATA ... ({} bytes)", q.len()),
                })
            }
            1 | 5..=14 | 17 | 28 | 36 | 37 => {
                self.skipped(ev, out);
                Ok(())
            }
            maria::ANNOTATE_ROWS => {
                self.marker(
                    ev,
                    Marker::RowsQuery {
                        query: String::from_utf8_lossy(ev.body).into_owned(),
                    },
                    out,
                );
                Ok(())
            }
            maria::BINLOG_CHECKPOINT => {
                let file = mariadb::parse_checkpoint(ev.body)
                    .ok_or_else(|| self.corrupt(ev, "short BINLOG_CHECKPOINT"))?;
                self.marker(ev, Marker::BinlogCheckpoint { file }, out);
                Ok(())
            }
            maria::GTID => {
                let g = mariadb::parse_gtid(ev.body, ev.header.server_id())
                    .ok_or_else(|| self.corrupt(ev, "short GTID event"))?;
                self.flavor = Flavor::MariaDb;
                self.txn_gtid = Some(Gtid::MariaDb(g.gtid));
                if g.flags & mariadb::FL_PREPARED_XA != 0 {
                    self.xa_start(ev, out);
                }
                if g.flags & mariadb::FL_STANDALONE == 0 {
                    // A MariaDB GTID event stands for BEGIN.
                    self.in_txn = true;
                    out.push(SourceEvent::Begin {
                        gtid: self.txn_gtid,
                        pos: self.event_pos(ev, 0),
                        timestamp: ev.header.timestamp(),
                    });
                }
                Ok(())
            }
            maria::GTID_LIST => {
                let list = mariadb::parse_gtid_list(ev.body)
                    .ok_or_else(|| self.corrupt(ev, "short GTID_LIST event"))?;
                self.flavor = Flavor::MariaDb;
                let merged = match std::mem::take(&mut self.gtid_state) {
                    GtidState::MariaDb(mut mine) => {
                        for g in list.iter() {
                            let newer = mine.get(g.domain).is_none_or(|m| m.seq < g.seq);
                            if newer {
                                mine.update(g);
                            }
                        }
                        mine
                    }
                    _ => list.clone(),
                };
                self.gtid_state = GtidState::MariaDb(merged);
                if !self.in_txn {
                    self.last_commit.gtid = self.gtid_state.clone();
                }
                self.marker(ev, Marker::GtidState(GtidState::MariaDb(list)), out);
                Ok(())
            }
            maria::START_ENCRYPTION => Err(DecodeError::Unsupported {
                file: self.file(),
                offset: ev.offset,
                what: "encrypted binlog (START_ENCRYPTION)".into(),
                hint: "read it through the server (--source), which decrypts it".into(),
            }),
            _ => {
                if ev.header.flags_raw() & EventFlags::LOG_EVENT_IGNORABLE_F.bits() != 0 {
                    self.skipped(ev, out);
                    Ok(())
                } else {
                    Err(DecodeError::UnknownEvent {
                        file: self.file(),
                        offset: ev.offset,
                        type_code: code,
                    })
                }
            }
        }
    }

    fn format_description(
        &mut self,
        ev: &RawEvent<'_>,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), DecodeError> {
        let current = self.fde.clone();
        let fde: FormatDescriptionEvent<'_> = self.parse(&current, ev)?;
        let mut fde = fde.into_owned();
        if let Some(f) = ev.fde_footer {
            fde = fde.with_footer(f);
        }
        let alg = fde.footer().get_checksum_alg();
        let checksum = match alg {
            Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) => true,
            Ok(_) => false,
            Err(e) => return Err(self.corrupt(ev, format!("unknown checksum algorithm {}", e.0))),
        };
        let server_version = fde.server_version().trim_end_matches('\0').to_owned();
        self.flavor = if server_version.contains("MariaDB") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let binlog_version = fde.binlog_version() as u16;
        self.fde = Arc::new(fde);
        self.marker(
            ev,
            Marker::Format {
                server_version,
                binlog_version,
                checksum,
            },
            out,
        );
        Ok(())
    }

    fn query(&mut self, ev: &RawEvent<'_>, out: &mut Vec<SourceEvent>) -> Result<(), DecodeError> {
        let code = ev.header.event_type_raw();
        let fde = self.fde.clone();
        let q: QueryEvent<'_> = self.parse_as(&fde, ev, EventType::QUERY_EVENT as u8)?;
        let schema = q.schema().into_owned();
        let text = if code == maria::QUERY_COMPRESSED {
            let raw = mariadb::uncompress(q.query_raw(), MAX_EVENT_SIZE as usize)
                .map_err(|e| self.corrupt(ev, e))?;
            String::from_utf8_lossy(&raw).into_owned()
        } else {
            q.query().into_owned()
        };
        match classify_query(&text) {
            QueryKind::Begin => self.begin(ev, out),
            QueryKind::XaStart => {
                self.xa_start(ev, out);
                self.begin(ev, out);
            }
            QueryKind::XaFinish => self.xa_finish(ev, &text, out)?,
            QueryKind::Commit | QueryKind::Rollback => self.commit(ev, None, out),
            QueryKind::XaEnd | QueryKind::Savepoint => self.marker(
                ev,
                Marker::Skipped {
                    event: format!("QUERY {}", truncate(&text, 60)),
                },
                out,
            ),
            QueryKind::Dml if !self.in_txn && is_memory_table_reset(&text) => {
                // The server empties a MEMORY table after a restart and logs it as
                // `DELETE FROM db.t` even with binlog_format=ROW: a TRUNCATE in effect.
                self.ddl(ev, schema, text, out);
            }
            QueryKind::Dml => {
                return Err(DecodeError::StatementFormat {
                    file: self.file(),
                    offset: ev.offset,
                    statement: truncate(&text, 80),
                })
            }
            QueryKind::Other => self.ddl(ev, schema, text, out),
        }
        Ok(())
    }

    fn ddl(&mut self, ev: &RawEvent<'_>, schema: String, text: String, out: &mut Vec<SourceEvent>) {
        // Table definitions may have changed: forget cached ones.
        self.schema.clear();
        if self.in_txn {
            // A DDL inside a transaction (CREATE TABLE ... SELECT): not a commit boundary, so
            // it carries the previous commit's position.
            out.push(SourceEvent::Ddl {
                schema,
                query: text,
                pos: self.last_commit.clone(),
                gtid: self.txn_gtid,
                timestamp: ev.header.timestamp(),
            });
            return;
        }
        let gtid = self.txn_gtid.take();
        if let Some(g) = &gtid {
            self.gtid_state.add(g);
        }
        self.last_commit = Position {
            file: self.file(),
            offset: self.end_offset(ev),
            gtid: self.gtid_state.clone(),
        };
        out.push(SourceEvent::Ddl {
            schema,
            query: text,
            pos: self.last_commit.clone(),
            gtid,
            timestamp: ev.header.timestamp(),
        });
    }

    fn table_map(&mut self, ev: &RawEvent<'_>) -> Result<(), DecodeError> {
        if self.known_table_map(ev.body) {
            return Ok(());
        }
        let fde = self.fde.clone();
        check_table_map(ev.body, self.short_table_id()).map_err(|e| self.corrupt(ev, e))?;
        let tme: TableMapEvent<'_> = self.parse(&fde, ev)?;
        let id = tme.table_id();
        let table = TableRef::new(&tme.database_name(), &tme.table_name());
        if let Some(f) = &self.opts.tables {
            if !f.matches(&table.schema, &table.name) {
                self.tables.remove(&id);
                // Bounded: a server with very many tables (or table ids handed out anew)
                // only costs parsing again.
                if self.dropped.len() >= MAX_DROPPED_MAPS {
                    self.dropped.clear();
                }
                self.dropped.insert(id, ev.body.into());
                return Ok(());
            }
        }
        self.dropped.remove(&id);
        let cached = self.schema.get(&table).cloned();
        let info = compile(&tme, ev.body, cached.as_deref()).map_err(|e| {
            let reason = match e {
                CompileError::BadColumn { index, reason } => {
                    format!("column {}: {reason}", index + 1)
                }
                CompileError::BadOptionalMetadata { reason } => {
                    format!("optional metadata: {reason}")
                }
                CompileError::ColumnCountMismatch { binlog, schema } => format!(
                    "the binlog has {binlog} columns but information_schema has {schema} (the table changed since this event; set binlog_row_metadata=FULL so the binlog carries its own column names)"
                ),
            };
            DecodeError::BadTableMap {
                file: self.file(),
                offset: ev.offset,
                table: table.to_string(),
                reason,
            }
        })?;
        self.tables.insert(id, info);
        Ok(())
    }

    fn rows(&mut self, ev: &RawEvent<'_>, out: &mut Vec<SourceEvent>) -> Result<(), DecodeError> {
        let code = ev.header.event_type_raw();
        let fde = self.fde.clone();
        let (as_code, compressed) = match code {
            maria::WRITE_ROWS_COMPRESSED_V1 => (23, true),
            maria::UPDATE_ROWS_COMPRESSED_V1 => (24, true),
            maria::DELETE_ROWS_COMPRESSED_V1 => (25, true),
            maria::WRITE_ROWS_COMPRESSED => (30, true),
            maria::UPDATE_ROWS_COMPRESSED => (31, true),
            maria::DELETE_ROWS_COMPRESSED => (32, true),
            c => (c, false),
        };
        let data = match as_code {
            23 => RowsEventData::WriteRowsEventV1(
                self.parse_as::<WriteRowsEventV1<'_>>(&fde, ev, 23)?,
            ),
            24 => RowsEventData::UpdateRowsEventV1(
                self.parse_as::<UpdateRowsEventV1<'_>>(&fde, ev, 24)?,
            ),
            25 => RowsEventData::DeleteRowsEventV1(
                self.parse_as::<DeleteRowsEventV1<'_>>(&fde, ev, 25)?,
            ),
            30 => RowsEventData::WriteRowsEvent(self.parse_as::<WriteRowsEvent<'_>>(&fde, ev, 30)?),
            31 => {
                RowsEventData::UpdateRowsEvent(self.parse_as::<UpdateRowsEvent<'_>>(&fde, ev, 31)?)
            }
            32 => {
                RowsEventData::DeleteRowsEvent(self.parse_as::<DeleteRowsEvent<'_>>(&fde, ev, 32)?)
            }
            _ => RowsEventData::PartialUpdateRowsEvent(
                self.parse_as::<PartialUpdateRowsEvent<'_>>(&fde, ev, 39)?,
            ),
        };
        let table_id = data.table_id();
        let Some(info) = self.tables.get(&table_id) else {
            if table_id == 0x00ff_ffff || data.rows_data().is_empty() {
                // Dummy end-of-statement event.
                return Ok(());
            }
            if self.opts.tables.is_some() {
                // A table the filter dropped at its TABLE_MAP.
                return Ok(());
            }
            return Err(DecodeError::UnknownTable {
                file: self.file(),
                offset: ev.offset,
                table_id,
            });
        };
        let ncols = info.plans.len();
        if data.num_columns() as usize != ncols {
            return Err(DecodeError::BadTableMap {
                file: self.file(),
                offset: ev.offset,
                table: info.def.table.to_string(),
                reason: format!(
                    "rows event has {} columns, TABLE_MAP has {ncols}",
                    data.num_columns()
                ),
            });
        }
        let kind = match as_code {
            23 | 30 => RowKind::Insert,
            25 | 32 => RowKind::Delete,
            _ => RowKind::Update,
        };
        let present_before: Option<Vec<bool>> = data
            .columns_before_image()
            .map(|b| b.iter().by_vals().collect());
        let present_after: Option<Vec<bool>> = data
            .columns_after_image()
            .map(|b| b.iter().by_vals().collect());
        let missing = |p: &Option<Vec<bool>>| -> Vec<usize> {
            p.as_ref()
                .map(|v| (0..ncols).filter(|i| !v[*i]).collect())
                .unwrap_or_default()
        };
        let absent_before = missing(&present_before);
        let absent_after = missing(&present_after);
        if self.opts.require_full_row_image {
            for (image, absent) in [("before", &absent_before), ("after", &absent_after)] {
                if !absent.is_empty() {
                    return Err(DecodeError::RowImageNotFull {
                        file: self.file(),
                        offset: ev.offset,
                        table: info.def.table.to_string(),
                        image,
                        missing: absent
                            .iter()
                            .map(|i| info.def.columns[*i].display_name(*i))
                            .collect(),
                    });
                }
            }
        }
        let absent = if absent_before.is_empty() && absent_after.is_empty() {
            None
        } else {
            Some(Box::new(AbsentColumns {
                before: absent_before,
                after: absent_after,
            }))
        };
        let inflated;
        let rows_data: &[u8] = if compressed {
            inflated = mariadb::uncompress(data.rows_data(), MAX_EVENT_SIZE as usize)
                .map_err(|e| self.corrupt(ev, e))?;
            &inflated
        } else {
            data.rows_data()
        };
        let partial = as_code == 39;
        let mut cur = Cursor { buf: rows_data };
        let mut row: u32 = self.payload.map_or(0, |p| p.rows);
        let file = self.file.clone();
        let pos_offset = self.payload.map(|p| p.offset).unwrap_or(ev.offset);
        let gtid = self.txn_gtid;
        let err_ctx = |row: u32, col: Option<usize>, reason: String| DecodeError::BadValue {
            file: file.to_string(),
            offset: ev.offset,
            table: info.def.table.to_string(),
            row,
            column: match col {
                Some(i) => info.def.columns[i].display_name(i),
                None => "-".into(),
            },
            reason,
        };
        while !cur.buf.is_empty() {
            let left = cur.buf.len();
            let before = match &present_before {
                Some(p) => Some(
                    read_image(info, p, &mut cur, false)
                        .map_err(|(c, e)| err_ctx(row, c, describe(e)))?
                        .0,
                ),
                None => None,
            };
            let after = match &present_after {
                Some(p) => {
                    let (mut img, diffs) = read_image(info, p, &mut cur, partial)
                        .map_err(|(c, e)| err_ctx(row, c, describe(e)))?;
                    for (i, d) in diffs {
                        let column = info.def.columns[i].display_name(i);
                        let perr = |reason: String| DecodeError::PartialJson {
                            file: file.to_string(),
                            offset: ev.offset,
                            table: info.def.table.to_string(),
                            column: column.clone(),
                            reason,
                        };
                        let mut doc = match before.as_ref().and_then(|b| b.get(i)) {
                            Some(Value::Json(j)) => j.clone(),
                            Some(Value::JsonSql(_)) => {
                                return Err(perr(
                                    "a partial update of a document holding DECIMAL or temporal values cannot be applied exactly; set binlog_row_value_options='' on the source so full documents are logged".into(),
                                ))
                            }
                            Some(Value::Null) => {
                                return Err(perr(
                                    "the before image has no value for the column".into(),
                                ))
                            }
                            _ => return Err(perr("the before image is missing".into())),
                        };
                        apply_diffs(&mut doc, &d).map_err(perr)?;
                        img[i] = Value::Json(doc);
                    }
                    Some(img)
                }
                None => None,
            };
            if cur.buf.len() == left {
                // A row image without a single byte (no column logged): the rest of the event
                // would repeat it forever.
                return Err(err_ctx(row, None, "row image holds no column".into()));
            }
            out.push(SourceEvent::Rows(RowChange {
                table: info.def.table.clone(),
                kind,
                before,
                after,
                columns: info.def.clone(),
                pos: EventPos {
                    file: file.clone(),
                    offset: pos_offset,
                    row,
                },
                gtid,
                absent: absent.clone(),
            }));
            row = row.saturating_add(1);
        }
        if let Some(p) = self.payload.as_mut() {
            p.rows = row;
        }
        Ok(())
    }

    fn transaction_payload(
        &mut self,
        ev: &RawEvent<'_>,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), DecodeError> {
        let tpe = parse_payload_header(ev.body).map_err(|e| self.corrupt(ev, e))?;
        let end = ev.offset + ev.header.event_size() as u64;
        // The uncompressed size is only logged for compressed payloads.
        let limit = if tpe.compression == 255 {
            tpe.payload.len() as u64
        } else {
            tpe.uncompressed_size
        };
        if !self.inline_payloads {
            if limit > 0 {
                self.payload = Some(Payload {
                    offset: ev.offset,
                    end,
                    remaining: limit,
                    rows: 0,
                });
            }
            return Ok(());
        }
        let reader = match tpe.compression {
            0 => {
                TransactionPayloadReader::new_zstd(tpe.payload).map_err(|e| self.corrupt(ev, e))?
            }
            255 => TransactionPayloadReader::new_uncompressed(tpe.payload),
            other => {
                return Err(DecodeError::Unsupported {
                    file: self.file(),
                    offset: ev.offset,
                    what: format!("transaction payload compression type {other}"),
                    hint: "only ZSTD (0) and none (255) exist in MySQL 8.0-9.x".into(),
                })
            }
        };
        let mut framer = super::file::Framer::new(reader, self.file(), ev.offset, false);
        framer.set_limit(limit);
        self.payload = Some(Payload {
            offset: ev.offset,
            end,
            remaining: 0,
            rows: 0,
        });
        let r = (|| {
            while let Some(inner) = framer.next_event()? {
                let code = inner.header.event_type_raw();
                if matches!(code, 4 | 15 | 27 | 33 | 34 | 40 | 41 | 42) {
                    return Err(self.corrupt(
                        ev,
                        format!("{} inside a transaction payload", event_name(code)),
                    ));
                }
                let inner = RawEvent {
                    offset: ev.offset,
                    ..inner
                };
                self.decode_inner(&inner, out)?;
            }
            Ok(())
        })();
        self.payload = None;
        r
    }
}

/// `DELETE FROM [db.]t` with nothing after the table name: the statement the server logs when
/// it empties a MEMORY table on first use after a restart.
pub(crate) fn is_memory_table_reset(q: &str) -> bool {
    let s = skip_noise(q);
    if !s
        .get(..11)
        .is_some_and(|p| p.eq_ignore_ascii_case("DELETE FROM"))
    {
        return false;
    }
    let name = s[11..].trim();
    // one or two identifiers separated by a dot, nothing else
    let mut parts = 0;
    let mut chars = name.chars().peekable();
    while chars.peek().is_some() {
        match chars.peek() {
            Some('`') => {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '`' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return false;
                }
            }
            Some(c) if c.is_alphanumeric() || *c == '_' || *c == '$' => {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    chars.next();
                }
            }
            _ => return false,
        }
        parts += 1;
        match chars.next() {
            None => break,
            Some('.') if parts == 1 => {}
            _ => return false,
        }
    }
    (1..=2).contains(&parts) && !name.ends_with('.')
}

/// The header of a TRANSACTION_PAYLOAD event.
struct PayloadHeader<'a> {
    payload: &'a [u8],
    compression: u64,
    uncompressed_size: u64,
}

/// Parses a TRANSACTION_PAYLOAD header: `(type, length, value)` fields up to the end mark
/// (type 0), then the payload. (mysql_common's parser panics on truncated or unknown fields.)
fn parse_payload_header(body: &[u8]) -> Result<PayloadHeader<'_>, String> {
    let trunc = || "truncated TRANSACTION_PAYLOAD header".to_string();
    let mut b = ParseBuf(body);
    let (mut size, mut compression, mut uncompressed_size) = (None, None, 0);
    loop {
        let t = b.checked_eat_lenenc_int().ok_or_else(trunc)?;
        if t == 0 {
            break;
        }
        let len = b.checked_eat_lenenc_int().ok_or_else(trunc)?;
        if len > b.len() as u64 {
            return Err(trunc());
        }
        let mut v = ParseBuf(b.eat(len as usize));
        let mut val = || v.checked_eat_lenenc_int().ok_or_else(trunc);
        match t {
            1 => size = Some(val()?),
            2 => compression = Some(val()?),
            3 => uncompressed_size = val()?,
            _ => {}
        }
    }
    let size = size.ok_or("TRANSACTION_PAYLOAD without a payload size")?;
    let compression = compression.ok_or("TRANSACTION_PAYLOAD without a compression type")?;
    if size > b.len() as u64 {
        return Err(format!(
            "TRANSACTION_PAYLOAD size {size} exceeds the {} bytes left",
            b.len()
        ));
    }
    Ok(PayloadHeader {
        payload: b.eat(size as usize),
        compression,
        uncompressed_size,
    })
}

/// Checks the counts inside a TABLE_MAP body (column count, metadata length, ENUM/SET label
/// counts of the optional metadata) against its length before mysql_common parses it:
/// mysql_common reserves vectors from those counts alone.
fn check_table_map(body: &[u8], short_table_id: bool) -> Result<(), String> {
    let bad = |what: &str| format!("TABLE_MAP {what} exceeds the event size");
    let mut b = ParseBuf(body);
    let id_len = if short_table_id { 4 } else { 6 };
    if !b.checked_skip(id_len + 2) {
        return Err(bad("header"));
    }
    for what in ["schema name", "table name"] {
        let n = b.checked_eat_u8().ok_or_else(|| bad(what))? as usize;
        if !b.checked_skip(n + 1) {
            return Err(bad(what));
        }
    }
    let ncols = b
        .checked_eat_lenenc_int()
        .ok_or_else(|| bad("column count"))?;
    if ncols > b.len() as u64 || !b.checked_skip(ncols as usize) {
        return Err(bad("column count"));
    }
    let meta = b.checked_eat_lenenc_int().ok_or_else(|| bad("metadata"))?;
    if meta > b.len() as u64 || !b.checked_skip(meta as usize) {
        return Err(bad("metadata"));
    }
    if !b.checked_skip((ncols as usize).div_ceil(8)) {
        return Err(bad("null bitmap"));
    }
    while !b.is_empty() {
        let t = b.checked_eat_u8().ok_or_else(|| bad("optional metadata"))?;
        let l = b
            .checked_eat_lenenc_int()
            .ok_or_else(|| bad("optional metadata"))?;
        if l > b.len() as u64 {
            return Err(bad("optional metadata"));
        }
        let mut v = ParseBuf(b.eat(l as usize));
        // 5 = SET_STR_VALUE, 6 = ENUM_STR_VALUE: per column, a count and that many strings.
        if t == 5 || t == 6 {
            while !v.is_empty() {
                let n = v
                    .checked_eat_lenenc_int()
                    .ok_or_else(|| bad("label count"))?;
                if n > v.len() as u64 {
                    return Err(bad("label count"));
                }
                for _ in 0..n {
                    let sl = v.checked_eat_lenenc_int().ok_or_else(|| bad("label"))?;
                    if sl > v.len() as u64 || !v.checked_skip(sl as usize) {
                        return Err(bad("label"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Checks the counts inside a PREVIOUS_GTIDS body against its length before mysql_common
/// parses it (mysql_common sizes its vectors from the counts alone, so a corrupt count would
/// ask for terabytes).
fn check_previous_gtids(body: &[u8]) -> Result<(), String> {
    let short = || "PREVIOUS_GTIDS counts exceed the event size".to_string();
    let header = u64::from_le_bytes(
        body.get(..8)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let tagged = (header >> 56) != 0;
    let n_sids = if tagged {
        (header >> 8) & ((1u64 << 48) - 1)
    } else {
        header & ((1u64 << 56) - 1)
    };
    let mut buf = ParseBuf(&body[8..]);
    // Every entry holds at least a 16-byte UUID and an 8-byte interval count.
    if n_sids > (buf.len() / 24) as u64 {
        return Err(short());
    }
    for _ in 0..n_sids {
        if !buf.checked_skip(16) {
            return Err(short());
        }
        if tagged {
            let n = mysql_common::misc::read_varlen_uint(&mut buf).map_err(|e| e.to_string())?;
            if n > buf.len() as u64 || !buf.checked_skip(n as usize) {
                return Err(short());
            }
        }
        let n = buf.checked_eat_u64_le().ok_or_else(short)?;
        if n > (buf.len() / 16) as u64 || !buf.checked_skip(n as usize * 16) {
            return Err(short());
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        format!("{t}...")
    } else {
        t
    }
}

fn describe(e: ValueError) -> String {
    match e {
        ValueError::Truncated => "row data ends inside the value".into(),
        ValueError::Invalid(s) => s,
        ValueError::Unsupported(t) => format!("column type {t} is not supported"),
    }
}

type Diffs<'a> = Vec<(usize, Vec<mysql_common::binlog::jsondiff::JsonDiff<'a>>)>;

/// Reads one row image: (values in table order, partial JSON diffs by column).
fn read_image<'a>(
    info: &TableInfo,
    present: &[bool],
    cur: &mut Cursor<'a>,
    partial_event: bool,
) -> Result<(Vec<Value>, Diffs<'a>), (Option<usize>, ValueError)> {
    let ncols = info.plans.len();
    let mut partial_bits: Option<&[u8]> = None;
    if partial_event {
        let opts = lenenc(cur).map_err(|e| (None, e))?;
        if opts & 1 != 0 {
            let n = info.json_columns.div_ceil(8);
            partial_bits = Some(cur.take(n).map_err(|e| (None, e))?);
        }
    }
    let npresent = present.iter().filter(|p| **p).count();
    let nulls = cur.take(npresent.div_ceil(8)).map_err(|e| (None, e))?;
    let mut values = Vec::with_capacity(ncols);
    let mut diffs = Vec::new();
    let mut image_idx = 0;
    let mut json_idx = 0;
    for (i, plan) in info.plans.iter().enumerate() {
        let is_json = matches!(plan, super::columns::ColPlan::Json { .. });
        let partial_col = is_json && partial_bits.is_some_and(|b| bit(b, json_idx));
        if is_json {
            json_idx += 1;
        }
        if !present[i] {
            values.push(Value::Null);
            continue;
        }
        let null = bit(nulls, image_idx);
        image_idx += 1;
        if null {
            values.push(Value::Null);
            continue;
        }
        match decode_value(*plan, cur, partial_col).map_err(|e| (Some(i), e))? {
            RawValue::Full(v) => values.push(v),
            RawValue::JsonDiffs(d) => {
                values.push(Value::Null);
                diffs.push((i, d));
            }
        }
    }
    Ok((values, diffs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_classification() {
        assert_eq!(classify_query("BEGIN"), QueryKind::Begin);
        assert_eq!(classify_query("  commit"), QueryKind::Commit);
        assert_eq!(classify_query("ROLLBACK"), QueryKind::Rollback);
        assert_eq!(classify_query("ROLLBACK TO sp1"), QueryKind::Savepoint);
        assert_eq!(
            classify_query("/* x */ INSERT INTO t VALUES (1)"),
            QueryKind::Dml
        );
        assert_eq!(classify_query("/*!40000 DELETE FROM t */"), QueryKind::Dml);
        assert_eq!(
            classify_query("# comment\nUPDATE t SET a=1"),
            QueryKind::Dml
        );
        assert_eq!(classify_query("CREATE TABLE t (a int)"), QueryKind::Other);
        assert_eq!(classify_query("XA START 'x'"), QueryKind::XaStart);
        assert_eq!(classify_query("XA COMMIT 'x'"), QueryKind::XaFinish);
        assert_eq!(classify_query("insert_helper()"), QueryKind::Other);
        assert!(is_memory_table_reset("DELETE FROM `test_db`.`filler`"));
        assert!(is_memory_table_reset("DELETE FROM t"));
        assert!(!is_memory_table_reset("DELETE FROM t WHERE a=1"));
        assert!(!is_memory_table_reset("DELETE FROM `a`.`b`.`c`"));
    }

    #[test]
    fn table_filter() {
        let f = TableFilter::parse("db.t, other.*").unwrap();
        assert!(f.matches("db", "t"));
        assert!(!f.matches("db", "u"));
        assert!(f.matches("other", "anything"));
        assert!(TableFilter::parse("nodot").is_err());
        let f = TableFilter::of_tables([("db", "t"), ("db", "_t_sentry")]);
        assert!(f.matches("db", "t") && f.matches("db", "_t_sentry"));
        assert!(!f.matches("db", "_t_new") && !f.matches("DB", "t"));
    }
}
