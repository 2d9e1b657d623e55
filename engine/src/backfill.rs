//! Cross-server backfill with the watermark method (design.md section 5; Netflix DBLog,
//! Debezium incremental snapshots). No locks on the source.
//!
//! For each chunk of a table, in primary-key order:
//! 1. write a *low* watermark row into the signal table `_rowshift_signal` on the source;
//! 2. `SELECT` the chunk (`WHERE pk > cursor ORDER BY pk LIMIT n`) in autocommit, so its read
//!    view starts after the low watermark committed;
//! 3. hand the rows to the sync router;
//! 4. write a *high* watermark row.
//!
//! The router ([`crate::sync::router`]) reads the binlog: between the two watermarks it
//! records every key of the table that an event touched; at the high watermark it drops those
//! keys from the chunk (the event is newer than the chunk's read) and emits the rest as upserts
//! positioned at the high watermark, in binlog order with every other change of their key.
//!
//! Why it is correct: a change committed before the low watermark is visible to the SELECT
//! (the server commits in binlog order: `binlog_order_commits`, the default on both servers),
//! so the chunk row is at least as new; a change visible to the SELECT committed before the
//! high watermark was written, so its event is inside the window and its key is dropped (the
//! event itself carries the newest image); a change after the high watermark is applied after
//! the chunk row. Rows travel as typed [`Value`]s, read as text and parsed by column type, the
//! same representation the binlog decoder gives, so the router transforms both alike.

use crate::copy::{self, KeyColumn, KeyLiteral};
use rowshift_transform::schema::{quote_ident, ColumnType, TableSchema};
use rowshift_transform::temporal;
use rowshift_transform::Value;

/// The signal table's name (in the database of the first synced source table).
pub const SIGNAL_TABLE: &str = "_rowshift_signal";

/// Errors of the backfill.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// A statement failed.
    #[error("backfill of {table}, {step}: {source}")]
    Sql {
        /// The table.
        table: String,
        /// What was being done.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The signal table could not be created or written.
    #[error("cannot write the signal table {table} on the source ({source}); the watermark backfill needs CREATE and INSERT on that database (GRANT CREATE, INSERT, DELETE ON <db>.* TO <user>)")]
    Signal {
        /// The signal table.
        table: String,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A column type the backfill cannot read yet.
    #[error("column {column} of {table} has type {kind}, which the cross-server backfill does not read yet; leave it out of the sync")]
    UnsupportedType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The type.
        kind: String,
    },
    /// A value did not parse as its column's type.
    #[error("backfill of {table}: column {column} returned {text:?}, which is not a valid {kind}")]
    BadValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The text.
        text: String,
        /// The type.
        kind: &'static str,
    },
    /// The router stopped.
    #[error("the sync router stopped during the backfill")]
    RouterStopped,
}

/// How to read one table's rows as typed values.
#[derive(Debug, Clone)]
pub struct RowReader {
    table: String,
    qualified: String,
    select: String,
    kinds: Vec<(String, ReadAs)>,
    /// The primary key, for the cursor.
    pub key: Vec<KeyColumn>,
    /// What is selected for each key column to write the cursor from: the column, or a FLOAT
    /// widened to DOUBLE (the server prints a FLOAT with 6 digits: `k > 1.23457` would skip
    /// the keys between the last row's real value and that).
    key_reads: Vec<String>,
    order_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadAs {
    Signed,
    Unsigned,
    Decimal,
    Float,
    Double,
    Bit(u8),
    Enum,
    Set,
    Year,
    Date,
    Time,
    DateTime,
    Timestamp,
    Bytes,
    Json,
}

impl RowReader {
    /// The reader of `schema` (the source table).
    pub fn new(schema: &TableSchema) -> Result<RowReader, BackfillError> {
        let qualified = format!(
            "{}.{}",
            quote_ident(&schema.schema),
            quote_ident(&schema.name)
        );
        let mut exprs = Vec::new();
        let mut kinds = Vec::new();
        for c in &schema.columns {
            let q = quote_ident(&c.name);
            let (expr, kind) = match &c.data_type {
                ColumnType::Integer { unsigned, .. } => (
                    q,
                    if *unsigned {
                        ReadAs::Unsigned
                    } else {
                        ReadAs::Signed
                    },
                ),
                ColumnType::Decimal { .. } => (q, ReadAs::Decimal),
                // Widened: the server prints a FLOAT with 6 significant digits only.
                ColumnType::Float { .. } => (format!("{q} + 0e0"), ReadAs::Float),
                ColumnType::Double { .. } => (q, ReadAs::Double),
                ColumnType::Bit { width } => (format!("{q} + 0"), ReadAs::Bit(*width)),
                ColumnType::Enum { .. } => (format!("{q} + 0"), ReadAs::Enum),
                ColumnType::Set { .. } => (format!("{q} + 0"), ReadAs::Set),
                ColumnType::Year => (format!("{q} + 0"), ReadAs::Year),
                ColumnType::Date => (q, ReadAs::Date),
                ColumnType::Time { .. } => (q, ReadAs::Time),
                ColumnType::DateTime { .. } => (q, ReadAs::DateTime),
                ColumnType::Timestamp { .. } => (q, ReadAs::Timestamp),
                ColumnType::Json => (q, ReadAs::Json),
                t if t.is_text() => (q, ReadAs::Bytes),
                ColumnType::Binary { .. }
                | ColumnType::VarBinary { .. }
                | ColumnType::Blob { .. }
                | ColumnType::Geometry { .. }
                | ColumnType::Vector { .. } => (q, ReadAs::Bytes),
                other => {
                    return Err(BackfillError::UnsupportedType {
                        table: qualified.clone(),
                        column: c.name.clone(),
                        kind: format!("{other:?}"),
                    })
                }
            };
            exprs.push(expr);
            kinds.push((c.name.clone(), kind));
        }
        let key = key_columns(schema);
        // The key columns at the end: the cursor is written from the server's own text.
        let key_reads: Vec<String> = schema
            .primary_key
            .iter()
            .zip(&key)
            .map(|(&i, k)| match schema.columns[i].data_type {
                ColumnType::Float { .. } => format!("{} + 0e0", k.name),
                _ => k.name.clone(),
            })
            .collect();
        exprs.extend(key_reads.iter().cloned());
        let order_by = key
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(RowReader {
            table: schema.qualified_name(),
            qualified,
            select: exprs.join(", "),
            kinds,
            key,
            key_reads,
            order_by,
        })
    }

    /// The chunk query: up to `limit` rows after `cursor` and up to `upper`, in key order.
    pub fn chunk_sql(
        &self,
        cursor: Option<&[String]>,
        upper: Option<&[String]>,
        limit: usize,
    ) -> String {
        let mut parts = Vec::new();
        if let Some(c) = cursor {
            parts.push(format!("({})", copy::after(&self.key, c)));
        }
        if let Some(u) = upper {
            parts.push(format!("({})", copy::upto(&self.key, u)));
        }
        let filter = if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        };
        format!(
            "SELECT {} FROM {}{filter} ORDER BY {} LIMIT {limit}",
            self.select, self.qualified, self.order_by
        )
    }

    /// Read one chunk on `conn` (a data session: UTC, binary names): the rows as typed values
    /// in table column order, and the cursor after the last row.
    pub async fn read_chunk(
        &self,
        conn: &mut mysql_async::Conn,
        cursor: Option<&[String]>,
        upper: Option<&[String]>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<String>>), BackfillError> {
        use mysql_async::prelude::Queryable;
        let rows: Vec<mysql_async::Row> = conn
            .query(self.chunk_sql(cursor, upper, limit))
            .await
            .map_err(|source| BackfillError::Sql {
                table: self.table.clone(),
                step: "reading a chunk",
                source,
            })?;
        let mut out = Vec::with_capacity(rows.len());
        let mut last_key = None;
        let n = self.kinds.len();
        for row in rows {
            let raw = row.unwrap_raw();
            let mut values = Vec::with_capacity(n);
            for (i, v) in raw.iter().take(n).enumerate() {
                values.push(self.parse(i, v.as_ref())?);
            }
            last_key = Some(
                raw.into_iter()
                    .skip(n)
                    .zip(&self.key)
                    .map(|(v, k)| {
                        copy::key_literal(v.unwrap_or(mysql_async::Value::NULL), &k.literal)
                    })
                    .collect::<Vec<String>>(),
            );
            out.push(values);
        }
        Ok((out, last_key))
    }

    /// `MIN` and `MAX` of a single integer primary key (for the size estimate); `None` for
    /// other keys (a decimal key's bounds do not parse as integers either).
    pub async fn key_span(&self, conn: &mut mysql_async::Conn) -> Option<crate::estimate::KeySpan> {
        match self.key.as_slice() {
            [k] if k.literal == crate::copy::KeyLiteral::Number => {
                crate::catalog::key_span(conn, &self.qualified, &k.name).await
            }
            _ => None,
        }
    }

    /// The highest primary key of the table now, as literals (`None`: the table is empty).
    /// Read after the binlog start position is fixed and a [`SignalKind::Fence`] written after
    /// it committed (so every transaction logged before the position is visible), it bounds
    /// the backfill: a row with a higher key was inserted after that position, so its insert
    /// is in the stream.
    pub async fn max_key(
        &self,
        conn: &mut mysql_async::Conn,
    ) -> Result<Option<Vec<String>>, BackfillError> {
        use mysql_async::prelude::Queryable;
        let desc = self
            .key
            .iter()
            .map(|k| format!("{} DESC", k.name))
            .collect::<Vec<_>>()
            .join(", ");
        let cols = self.key_reads.join(", ");
        let row: Option<mysql_async::Row> = conn
            .query_first(format!(
                "SELECT {cols} FROM {} ORDER BY {desc} LIMIT 1",
                self.qualified
            ))
            .await
            .map_err(|source| BackfillError::Sql {
                table: self.table.clone(),
                step: "reading the highest key",
                source,
            })?;
        Ok(row.map(|r| {
            r.unwrap_raw()
                .into_iter()
                .zip(&self.key)
                .map(|(v, k)| copy::key_literal(v.unwrap_or(mysql_async::Value::NULL), &k.literal))
                .collect()
        }))
    }

    fn parse(&self, i: usize, v: Option<&mysql_async::Value>) -> Result<Value, BackfillError> {
        let (name, kind) = &self.kinds[i];
        let bytes = match v {
            None | Some(mysql_async::Value::NULL) => return Ok(Value::Null),
            Some(mysql_async::Value::Bytes(b)) => b.as_slice(),
            Some(other) => {
                // The text protocol only gives bytes; anything else is a driver surprise.
                return Err(self.bad(name, &format!("{other:?}"), "text value"));
            }
        };
        if *kind == ReadAs::Bytes {
            return Ok(Value::Bytes(bytes.to_vec()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| self.bad(name, "<bytes>", "text"))?;
        let parsed = match kind {
            ReadAs::Signed => text.parse().ok().map(Value::Int),
            ReadAs::Unsigned => text.parse().ok().map(Value::UInt),
            ReadAs::Decimal => Some(Value::Decimal(text.to_string())),
            ReadAs::Float => text.parse().ok().map(Value::Float),
            ReadAs::Double => text.parse().ok().map(Value::Double),
            ReadAs::Bit(width) => text.parse().ok().map(|bits| Value::Bit {
                bits,
                width: *width,
            }),
            ReadAs::Enum => text.parse().ok().map(Value::Enum),
            ReadAs::Set => text.parse().ok().map(Value::Set),
            ReadAs::Year => text.parse().ok().map(Value::Year),
            ReadAs::Date => temporal::parse_datetime(text).map(|p| Value::Date {
                year: p.year,
                month: p.month,
                day: p.day,
            }),
            ReadAs::Time => temporal::parse_time(text),
            ReadAs::DateTime => temporal::parse_datetime(text).map(|p| p.to_datetime_value()),
            ReadAs::Timestamp => temporal::parse_datetime(text).and_then(|p| {
                if p.date_is_zero() {
                    Some(Value::Timestamp { secs: 0, micros: 0 })
                } else {
                    temporal::parts_to_timestamp(&p)
                        .map(|(secs, micros)| Value::Timestamp { secs, micros })
                }
            }),
            ReadAs::Json => serde_json::from_str(text).ok().map(Value::Json),
            ReadAs::Bytes => None,
        };
        parsed.ok_or_else(|| self.bad(name, text, kind.name()))
    }

    fn bad(&self, column: &str, text: &str, kind: &'static str) -> BackfillError {
        BackfillError::BadValue {
            table: self.table.clone(),
            column: column.to_string(),
            text: text.chars().take(80).collect(),
            kind,
        }
    }
}

impl ReadAs {
    fn name(self) -> &'static str {
        match self {
            ReadAs::Signed | ReadAs::Unsigned => "integer",
            ReadAs::Decimal => "decimal",
            ReadAs::Float | ReadAs::Double => "floating point number",
            ReadAs::Bit(_) => "BIT",
            ReadAs::Enum => "ENUM",
            ReadAs::Set => "SET",
            ReadAs::Year => "YEAR",
            ReadAs::Date => "DATE",
            ReadAs::Time => "TIME",
            ReadAs::DateTime => "DATETIME",
            ReadAs::Timestamp => "TIMESTAMP",
            ReadAs::Bytes => "string",
            ReadAs::Json => "JSON",
        }
    }
}

/// The primary key columns of `schema` with how their values are written as literals.
pub fn key_columns(schema: &TableSchema) -> Vec<KeyColumn> {
    schema
        .primary_key
        .iter()
        .map(|&i| {
            let c = &schema.columns[i];
            let literal = match &c.data_type {
                ColumnType::Integer { .. }
                | ColumnType::Decimal { .. }
                | ColumnType::Float { .. }
                | ColumnType::Double { .. }
                | ColumnType::Year => KeyLiteral::Number,
                ColumnType::Date
                | ColumnType::Time { .. }
                | ColumnType::DateTime { .. }
                | ColumnType::Timestamp { .. } => KeyLiteral::Temporal,
                t if t.is_text() => match (t.charset(), t.collation()) {
                    (Some(cs), Some(co)) => KeyLiteral::Text {
                        charset: cs.to_string(),
                        collation: co.to_string(),
                    },
                    _ => KeyLiteral::Bytes,
                },
                _ => KeyLiteral::Bytes,
            };
            KeyColumn {
                name: quote_ident(&c.name),
                literal,
            }
        })
        .collect()
}

/// The signal table on the source: watermark and drain rows, read back from the binlog.
#[derive(Debug, Clone)]
pub struct SignalTable {
    /// Database.
    pub db: String,
}

/// What a signal row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// Low watermark of a chunk.
    Low,
    /// High watermark of a chunk.
    High,
    /// A drain marker: everything logged before it must be applied.
    Drain,
    /// A fence: committed before the backfill reads a table's highest key, so that every
    /// transaction logged before the stream's start position is visible to that read (the
    /// router ignores it).
    Fence,
}

impl SignalKind {
    fn as_str(self) -> &'static str {
        match self {
            SignalKind::Low => "low",
            SignalKind::High => "high",
            SignalKind::Drain => "drain",
            SignalKind::Fence => "fence",
        }
    }

    /// Parse the `kind` column.
    pub fn parse(b: &[u8]) -> Option<SignalKind> {
        match b {
            b"low" => Some(SignalKind::Low),
            b"high" => Some(SignalKind::High),
            b"drain" => Some(SignalKind::Drain),
            b"fence" => Some(SignalKind::Fence),
            _ => None,
        }
    }
}

impl SignalTable {
    /// Quoted name.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.db), quote_ident(SIGNAL_TABLE))
    }

    /// Create the table when missing. An existing table is not created again (`CREATE TABLE
    /// IF NOT EXISTS` is written to the binlog, and under semi-synchronous replication waits
    /// for a replica's acknowledgement like any commit); an `INSERT … SELECT` of no row then
    /// checks that it may be written (it is refused on a read-only server or without the
    /// INSERT privilege the watermarks need, and logs nothing).
    pub async fn create(&self, conn: &mut mysql_async::Conn) -> Result<(), BackfillError> {
        use mysql_async::prelude::Queryable;
        let err = |source| BackfillError::Signal {
            table: self.qualified(),
            source,
        };
        let exists: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&self.db, SIGNAL_TABLE),
            )
            .await
            .map_err(err)?;
        if exists.unwrap_or(0) > 0 {
            return conn
                .query_drop(format!(
                    "INSERT INTO {t} SELECT * FROM {t} WHERE 1 = 0",
                    t = self.qualified()
                ))
                .await
                .map_err(err);
        }
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (
               `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
               `run` BIGINT NOT NULL,
               `tbl` INT NOT NULL,
               `kind` VARCHAR(8) NOT NULL,
               `chunk` BIGINT NOT NULL,
               `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
             ) ENGINE=InnoDB",
            self.qualified()
        ))
        .await
        .map_err(err)
    }

    /// Write one signal row (autocommit: committed when this returns).
    pub async fn write(
        &self,
        conn: &mut mysql_async::Conn,
        run: u64,
        table: usize,
        kind: SignalKind,
        chunk: u64,
    ) -> Result<(), BackfillError> {
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!(
            "INSERT INTO {} (`run`, `tbl`, `kind`, `chunk`) VALUES ({run}, {table}, '{}', {chunk})",
            self.qualified(),
            kind.as_str()
        ))
        .await
        .map_err(|source| BackfillError::Signal {
            table: self.qualified(),
            source,
        })
    }

    /// Delete this run's rows (housekeeping; the binlog keeps them).
    pub async fn clear(&self, conn: &mut mysql_async::Conn, run: u64) {
        use mysql_async::prelude::Queryable;
        let _ = conn
            .query_drop(format!(
                "DELETE FROM {} WHERE `run` = {run}",
                self.qualified()
            ))
            .await;
    }
}

/// A decoded signal row: (run, table index, kind, chunk), from its after image
/// (`id, run, tbl, kind, chunk, at`).
pub fn decode_signal(after: &[Value]) -> Option<(u64, usize, SignalKind, u64)> {
    let int = |v: &Value| match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::UInt(u) => Some(*u),
        _ => None,
    };
    let run = int(after.get(1)?)?;
    let tbl = int(after.get(2)?)? as usize;
    let kind = match after.get(3)? {
        Value::Bytes(b) => SignalKind::parse(b)?,
        _ => return None,
    };
    let chunk = int(after.get(4)?)?;
    Some((run, tbl, kind, chunk))
}
