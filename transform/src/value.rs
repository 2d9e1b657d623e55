//! The typed value of one column in one row, shared by the binlog decoder, the transforms and
//! the appliers. Values are never strings guessed from bytes: every MySQL/MariaDB column type
//! has an exact representation here.

use serde::{Deserialize, Serialize};

/// One column value of a row image.
///
/// Text columns (`CHAR`, `VARCHAR`, `TEXT`, `ENUM` labels once known) travel as [`Value::Bytes`]
/// in the column's own charset; the table schema says which charset. Binary columns are bytes
/// too. Writers must send them as bytes (typed parameters), never re-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed integer of any width (TINYINT..BIGINT).
    Int(i64),
    /// An unsigned integer of any width (TINYINT UNSIGNED..BIGINT UNSIGNED).
    UInt(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL as its exact decimal text with the column's scale, e.g. `-12.3400`. Never a float.
    Decimal(String),
    /// CHAR/VARCHAR/TEXT (in the column charset), BINARY/VARBINARY/BLOB, GEOMETRY (WKB with
    /// SRID prefix, as the server stores it), VECTOR.
    Bytes(Vec<u8>),
    /// BIT(n): the bits, right-aligned, plus the declared width in bits.
    Bit {
        /// The value, right-aligned.
        bits: u64,
        /// Declared width `n` of `BIT(n)`.
        width: u8,
    },
    /// ENUM as its 1-based index (0 is the empty "error" value). Labels come from the schema.
    Enum(u16),
    /// SET as its bitmask. Labels come from the schema.
    Set(u64),
    /// YEAR (0 is the zero year).
    Year(u16),
    /// DATE; zero dates (`0000-00-00`) and partial zeros survive as zeros.
    Date {
        /// Year, 0..=9999.
        year: u16,
        /// Month, 0..=12.
        month: u8,
        /// Day, 0..=31.
        day: u8,
    },
    /// TIME, possibly negative and over 24 hours (range -838:59:59 to 838:59:59).
    Time {
        /// True for a negative duration.
        negative: bool,
        /// Hours, 0..=838.
        hours: u16,
        /// Minutes.
        minutes: u8,
        /// Seconds.
        seconds: u8,
        /// Fractional microseconds.
        micros: u32,
    },
    /// DATETIME with fractional seconds; zero dates survive.
    DateTime {
        /// Year.
        year: u16,
        /// Month.
        month: u8,
        /// Day.
        day: u8,
        /// Hour.
        hour: u8,
        /// Minute.
        minute: u8,
        /// Second.
        second: u8,
        /// Fractional microseconds.
        micros: u32,
    },
    /// TIMESTAMP as the server logs it: seconds since the Unix epoch in UTC (0 is the zero
    /// timestamp), plus fractional microseconds.
    Timestamp {
        /// Seconds since 1970-01-01 00:00:00 UTC.
        secs: u32,
        /// Fractional microseconds.
        micros: u32,
    },
    /// JSON, decoded from MySQL's binary JSON (or MariaDB's JSON text) keeping number types
    /// (1.0 is not 1).
    Json(serde_json::Value),
    /// JSON holding MySQL scalar types JSON text cannot carry (DECIMAL, DATE, TIME, DATETIME
    /// inside a MySQL binary JSON document): written to the server as an expression that
    /// rebuilds the exact document, since a JSON text literal would turn `1.50` (DECIMAL) into
    /// the DOUBLE `1.5` and a DATE into a string.
    JsonSql(Box<JsonSql>),
}

/// A JSON document with MySQL-typed scalars; see [`Value::JsonSql`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSql {
    /// The document as JSON text shows it (decimals as numbers, temporals as strings): what
    /// text conversions and expressions read.
    pub doc: serde_json::Value,
    /// A SQL expression (`JSON_OBJECT`, `JSON_ARRAY`, `CAST`) that builds the exact document.
    pub sql: String,
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}
