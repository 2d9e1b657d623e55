//! Converting a value to the type of its new column, as the server's `INSERT ... SELECT` would,
//! refusing whenever the conversion would lose data.
//!
//! A [`Conversion`] is compiled once per column from the source's type (an old column's type, or
//! an expression's result type: [`SourceType`]) and the target [`Column`]. Compiling refuses
//! pairs this crate cannot convert exactly ([`ConvertError::Unsupported`]), so a migration
//! fails at the start rather than mid-way. Converting a value returns the value the server would
//! store, or an error when that value would differ from the source: out of range, truncated,
//! rounded, a character the target character set lacks, an ENUM/SET label the new definition
//! lacks, a NULL into a NOT NULL column. The server, in strict mode, refuses most of those too;
//! with `INSERT IGNORE` (the copy) it would clamp or truncate silently, which is why the
//! binlog path must stop instead.
//!
//! Conversions handled:
//! * integers ↔ integers of any width and sign, DECIMAL, FLOAT/DOUBLE, BIT, YEAR, and numeric
//!   text;
//! * DECIMAL(p,s) from any number, exactly (rounding that changes the value is lossy);
//! * text ↔ text across `utf8mb4`, `utf8mb3`, `latin1` (cp1252, transcoded) and `ascii`, with
//!   length checks in characters (CHAR/VARCHAR) or bytes (TEXT); text ↔ binary keeps the bytes;
//!   BINARY(N) is padded with 0x00;
//! * numbers, dates, times, ENUM/SET labels and JSON to text, formatted as MySQL does;
//! * ENUM → ENUM and SET → SET by label (exact match first, then under the new column's
//!   collation, as the server matches), text → ENUM/SET by label, numbers → ENUM by index;
//! * DATE, DATETIME(fsp), TIMESTAMP(fsp), TIME(fsp) among themselves (TIMESTAMP in UTC) and
//!   from `YYYY-MM-DD[ hh:mm:ss[.ffffff]]` / `hh:mm:ss` text;
//! * JSON from JSON or JSON text; GEOMETRY subtypes (WKB type checked); VECTOR (dimensions
//!   checked); UUID, INET4, INET6 only to themselves.

use std::borrow::Cow;

use bigdecimal::BigDecimal;
use thiserror::Error;

use crate::charset::{Charset, CharsetError};
use crate::collation::Collation;
use crate::decimal;
use crate::jsontext;
use crate::schema::{Column, ColumnType, GeometryKind};
use crate::temporal::{self, DateTimeParts};
use crate::value::Value;

/// The type of the value being converted: an old column's type, or an expression's result.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceType {
    /// A column of the old table (a copied column).
    Column(ColumnType),
    /// Always NULL.
    Null,
    /// A BIGINT result.
    Int {
        /// Unsigned.
        unsigned: bool,
    },
    /// A DECIMAL result (text in [`Value::Decimal`]).
    Decimal,
    /// A DOUBLE result.
    Double,
    /// Text in UTF-8 ([`Value::Bytes`]).
    Text,
    /// A binary string ([`Value::Bytes`]).
    Binary,
    /// A DATE result.
    Date,
    /// A DATETIME result with `fsp` fraction digits.
    DateTime {
        /// Fraction digits.
        fsp: u8,
    },
    /// A TIME result with `fsp` fraction digits.
    Time {
        /// Fraction digits.
        fsp: u8,
    },
    /// A JSON result.
    Json,
}

/// Errors compiling or applying a conversion.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConvertError {
    /// This crate cannot convert between these types (found when compiling).
    #[error("cannot convert {from} to {to}")]
    Unsupported {
        /// Source type.
        from: String,
        /// Target type.
        to: String,
    },
    /// NULL into a NOT NULL column.
    #[error("NULL into a NOT NULL column")]
    NullIntoNotNull,
    /// The value is outside the target's range.
    #[error("value {value} is out of range for {target}")]
    OutOfRange {
        /// The value, as text.
        value: String,
        /// The target type.
        target: String,
    },
    /// The target keeps fewer fraction digits than the value has.
    #[error("value {value} would be rounded to fit {target}")]
    Rounded {
        /// The value, as text.
        value: String,
        /// The target type.
        target: String,
    },
    /// The value is longer than the target allows.
    #[error("value of {length} {unit} would be truncated to {max}")]
    Truncated {
        /// Length of the value.
        length: u64,
        /// Maximum length.
        max: u64,
        /// `characters` or `bytes`.
        unit: &'static str,
    },
    /// An ENUM label that the new definition does not have.
    #[error("ENUM label {label:?} is not in the new definition")]
    EnumLabelMissing {
        /// The label.
        label: String,
    },
    /// A SET label that the new definition does not have.
    #[error("SET label {label:?} is not in the new definition")]
    SetLabelMissing {
        /// The label.
        label: String,
    },
    /// A character the target character set cannot hold, or bytes invalid in it.
    #[error(transparent)]
    Charset(#[from] CharsetError),
    /// The value does not read as the target type (text that is not a number, date, JSON...).
    #[error("{value:?} is not a valid {target}")]
    Invalid {
        /// The value, as text (shortened).
        value: String,
        /// The target type.
        target: String,
    },
    /// A geometry of another kind than the column allows.
    #[error("geometry of WKB type {found} does not fit {target}")]
    WrongGeometry {
        /// WKB type code found.
        found: u32,
        /// The target type.
        target: String,
    },
    /// A value whose representation does not match its declared type (a decoder bug).
    #[error("unexpected value {value} for a {expected} source")]
    UnexpectedValue {
        /// The value (debug form, shortened).
        value: String,
        /// The source type.
        expected: String,
    },
}

impl ConvertError {
    /// True for the errors that mean "converting would lose data" (as opposed to an
    /// unsupported type pair or a malformed value).
    pub fn is_lossy(&self) -> bool {
        !matches!(
            self,
            ConvertError::Unsupported { .. } | ConvertError::UnexpectedValue { .. }
        )
    }
}

/// What the source is, reduced to what conversion needs.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Null,
    Signed,
    Unsigned,
    Decimal,
    Float,
    Double,
    Bit,
    Enum {
        labels: Vec<String>,
        charset: Charset,
    },
    Set {
        labels: Vec<String>,
        charset: Charset,
    },
    Year,
    Date,
    Time {
        fsp: u8,
    },
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Text {
        charset: Charset,
    },
    Binary,
    Json,
    Geometry,
    Vector,
    Uuid,
    Inet4,
    Inet6,
}

impl Kind {
    fn of_column(t: &ColumnType, column_charset: Option<&str>) -> Kind {
        let cs = || Charset::from_name(column_charset.unwrap_or("utf8mb4"));
        match t {
            ColumnType::Integer { unsigned: true, .. } => Kind::Unsigned,
            ColumnType::Integer {
                unsigned: false, ..
            } => Kind::Signed,
            ColumnType::Decimal { .. } => Kind::Decimal,
            ColumnType::Float { .. } => Kind::Float,
            ColumnType::Double { .. } => Kind::Double,
            ColumnType::Bit { .. } => Kind::Bit,
            ColumnType::Enum { labels } => Kind::Enum {
                labels: labels.clone(),
                charset: cs(),
            },
            ColumnType::Set { labels } => Kind::Set {
                labels: labels.clone(),
                charset: cs(),
            },
            ColumnType::Year => Kind::Year,
            ColumnType::Date => Kind::Date,
            ColumnType::Time { fsp } => Kind::Time { fsp: *fsp },
            ColumnType::DateTime { fsp } => Kind::DateTime { fsp: *fsp },
            ColumnType::Timestamp { fsp } => Kind::Timestamp { fsp: *fsp },
            ColumnType::Char { charset, .. }
            | ColumnType::VarChar { charset, .. }
            | ColumnType::Text { charset, .. } => Kind::Text {
                charset: Charset::from_name(charset),
            },
            ColumnType::Binary { .. } | ColumnType::VarBinary { .. } | ColumnType::Blob { .. } => {
                Kind::Binary
            }
            ColumnType::Json => Kind::Json,
            ColumnType::Geometry { .. } => Kind::Geometry,
            ColumnType::Vector { .. } => Kind::Vector,
            ColumnType::Uuid => Kind::Uuid,
            ColumnType::Inet4 => Kind::Inet4,
            ColumnType::Inet6 => Kind::Inet6,
        }
    }

    /// True when `v` (not NULL) has the representation of this kind.
    fn accepts(&self, v: &Value) -> bool {
        match self {
            Kind::Null => false,
            Kind::Signed | Kind::Unsigned => matches!(v, Value::Int(_) | Value::UInt(_)),
            Kind::Decimal => matches!(v, Value::Decimal(_)),
            Kind::Float | Kind::Double => matches!(v, Value::Float(_) | Value::Double(_)),
            Kind::Bit => matches!(v, Value::Bit { .. }),
            Kind::Enum { .. } => matches!(v, Value::Enum(_)),
            Kind::Set { .. } => matches!(v, Value::Set(_)),
            Kind::Year => matches!(v, Value::Year(_)),
            Kind::Date => matches!(v, Value::Date { .. }),
            Kind::Time { .. } => matches!(v, Value::Time { .. }),
            Kind::DateTime { .. } => matches!(v, Value::DateTime { .. }),
            Kind::Timestamp { .. } => matches!(v, Value::Timestamp { .. }),
            Kind::Json => matches!(v, Value::Json(_) | Value::JsonSql(_)),
            Kind::Text { .. }
            | Kind::Binary
            | Kind::Geometry
            | Kind::Vector
            | Kind::Uuid
            | Kind::Inet4
            | Kind::Inet6 => matches!(v, Value::Bytes(_)),
        }
    }

    fn is_number(&self) -> bool {
        matches!(
            self,
            Kind::Signed
                | Kind::Unsigned
                | Kind::Decimal
                | Kind::Float
                | Kind::Double
                | Kind::Bit
                | Kind::Year
        )
    }

    fn is_string(&self) -> bool {
        matches!(self, Kind::Text { .. } | Kind::Binary)
    }
}

/// The compiled target.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Int {
        min: i128,
        max: i128,
        unsigned: bool,
    },
    Decimal {
        precision: u8,
        scale: u8,
        unsigned: bool,
    },
    Float {
        unsigned: bool,
        digits: Option<(u8, u8)>,
    },
    Double {
        unsigned: bool,
        digits: Option<(u8, u8)>,
    },
    Bit {
        width: u8,
    },
    Enum {
        labels: Vec<String>,
        folded: Vec<Vec<u8>>,
        collation: Collation,
    },
    Set {
        labels: Vec<String>,
        folded: Vec<Vec<u8>>,
        collation: Collation,
    },
    Year,
    Date,
    Time {
        fsp: u8,
    },
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Text {
        charset: Charset,
        max_chars: Option<u64>,
        max_bytes: u64,
        trim_spaces_ok: bool,
    },
    Binary {
        max_bytes: u64,
        pad_to: Option<u32>,
    },
    Json,
    Geometry {
        kind: GeometryKind,
    },
    Vector {
        dimensions: u32,
    },
    Same,
}

/// A compiled conversion from one source type to one target column.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    from: Kind,
    to: Target,
    identity: bool,
    nullable: bool,
    target_name: String,
    from_name: String,
}

fn unsupported(from: &str, to: &Column) -> ConvertError {
    ConvertError::Unsupported {
        from: from.to_string(),
        to: to.data_type.sql_name(),
    }
}

impl SourceType {
    fn name(&self) -> String {
        match self {
            SourceType::Column(t) => t.sql_name(),
            other => format!("{other:?} expression"),
        }
    }
}

impl Conversion {
    /// Compiles the conversion of values of `from` into column `to`. `from_charset` is the
    /// source column's character set (for ENUM/SET sources; text types carry their own).
    pub fn new(
        from: &SourceType,
        from_charset: Option<&str>,
        to: &Column,
    ) -> Result<Conversion, ConvertError> {
        let kind = match from {
            SourceType::Column(t) => Kind::of_column(t, from_charset),
            SourceType::Null => Kind::Null,
            SourceType::Int { unsigned: true } => Kind::Unsigned,
            SourceType::Int { unsigned: false } => Kind::Signed,
            SourceType::Decimal => Kind::Decimal,
            SourceType::Double => Kind::Double,
            SourceType::Text => Kind::Text {
                charset: Charset::Utf8mb4,
            },
            SourceType::Binary => Kind::Binary,
            SourceType::Date => Kind::Date,
            SourceType::DateTime { fsp } => Kind::DateTime { fsp: *fsp },
            SourceType::Time { fsp } => Kind::Time { fsp: *fsp },
            SourceType::Json => Kind::Json,
        };
        let from_name = from.name();
        let identity = matches!(from, SourceType::Column(t) if *t == to.data_type);
        let target = if identity {
            Target::Same
        } else {
            compile_target(&kind, &from_name, to)?
        };
        Ok(Conversion {
            from: kind,
            to: target,
            identity,
            nullable: to.nullable,
            target_name: to.data_type.sql_name(),
            from_name,
        })
    }

    /// True when values pass unchanged (same type).
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// Converts one value (see the module docs).
    pub fn convert(&self, v: &Value) -> Result<Value, ConvertError> {
        if v.is_null() {
            if !self.nullable {
                return Err(ConvertError::NullIntoNotNull);
            }
            return Ok(Value::Null);
        }
        if !self.from.accepts(v) {
            return Err(self.unexpected(v));
        }
        if self.identity {
            return Ok(v.clone());
        }
        match &self.to {
            Target::Same => Ok(v.clone()),
            Target::Int { min, max, unsigned } => self.to_int(v, *min, *max, *unsigned),
            Target::Decimal {
                precision,
                scale,
                unsigned,
            } => self.to_decimal(v, *precision, *scale, *unsigned),
            Target::Float { unsigned, digits } => self.to_float(v, *unsigned, *digits, false),
            Target::Double { unsigned, digits } => self.to_float(v, *unsigned, *digits, true),
            Target::Bit { width } => self.to_bit(v, *width),
            Target::Enum {
                labels,
                folded,
                collation,
            } => self.to_enum(v, labels, folded, collation),
            Target::Set {
                labels,
                folded,
                collation,
            } => self.to_set(v, labels, folded, collation),
            Target::Year => self.to_year(v),
            Target::Date => self.to_date(v),
            Target::DateTime { fsp } => self.to_datetime(v, *fsp),
            Target::Timestamp { fsp } => self.to_timestamp(v, *fsp),
            Target::Time { fsp } => self.to_time(v, *fsp),
            Target::Text {
                charset,
                max_chars,
                max_bytes,
                trim_spaces_ok,
            } => self.to_text(v, charset, *max_chars, *max_bytes, *trim_spaces_ok),
            Target::Binary { max_bytes, pad_to } => self.to_binary(v, *max_bytes, *pad_to),
            Target::Json => self.to_json(v),
            Target::Geometry { kind } => self.to_geometry(v, *kind),
            Target::Vector { dimensions } => self.to_vector(v, *dimensions),
        }
    }

    fn unexpected(&self, v: &Value) -> ConvertError {
        ConvertError::UnexpectedValue {
            value: shorten(&format!("{v:?}")),
            expected: self.from_name.clone(),
        }
    }

    fn out_of_range(&self, value: impl ToString) -> ConvertError {
        ConvertError::OutOfRange {
            value: shorten(&value.to_string()),
            target: self.target_name.clone(),
        }
    }

    fn invalid(&self, value: impl ToString) -> ConvertError {
        ConvertError::Invalid {
            value: shorten(&value.to_string()),
            target: self.target_name.clone(),
        }
    }

    fn rounded(&self, value: impl ToString) -> ConvertError {
        ConvertError::Rounded {
            value: shorten(&value.to_string()),
            target: self.target_name.clone(),
        }
    }

    /// The source value as a number.
    fn number(&self, v: &Value) -> Result<Num, ConvertError> {
        match v {
            Value::Int(i) => Ok(Num::I(*i as i128)),
            Value::UInt(u) => Ok(Num::I(*u as i128)),
            Value::Year(y) => Ok(Num::I(*y as i128)),
            Value::Bit { bits, .. } => Ok(Num::I(*bits as i128)),
            Value::Enum(i) => Ok(Num::I(*i as i128)),
            Value::Set(m) => Ok(Num::I(*m as i128)),
            Value::Float(f) => Ok(Num::F(*f as f64)),
            Value::Double(f) => Ok(Num::F(*f)),
            Value::Decimal(s) => decimal::parse(s)
                .map(Num::D)
                .ok_or_else(|| self.unexpected(v)),
            Value::Bytes(b) => {
                let text = self.source_text(b)?;
                parse_number_text(&text).ok_or_else(|| self.invalid(&*text))
            }
            _ => Err(self.unexpected(v)),
        }
    }

    /// Text of a string source in UTF-8 (binary sources read as UTF-8).
    fn source_text<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, ConvertError> {
        match &self.from {
            Kind::Text { charset } => Ok(charset.decode(bytes)?),
            _ => Ok(String::from_utf8_lossy(bytes)),
        }
    }

    fn to_int(
        &self,
        v: &Value,
        min: i128,
        max: i128,
        unsigned: bool,
    ) -> Result<Value, ConvertError> {
        let i = match self.number(v)? {
            Num::I(i) => i,
            Num::D(d) => {
                if !d.is_integer() {
                    return Err(self.rounded(decimal::format(&d)));
                }
                let text = decimal::format(&decimal::round(&d, 0));
                text.parse::<i128>().map_err(|_| self.out_of_range(&text))?
            }
            Num::F(f) => {
                if !f.is_finite() || f.abs() >= 1e38 {
                    return Err(self.out_of_range(f));
                }
                if f.fract() != 0.0 {
                    return Err(self.rounded(f));
                }
                f as i128
            }
        };
        if i < min || i > max {
            return Err(self.out_of_range(i));
        }
        Ok(if unsigned {
            Value::UInt(i as u64)
        } else {
            Value::Int(i as i64)
        })
    }

    fn as_decimal(&self, v: &Value) -> Result<BigDecimal, ConvertError> {
        match self.number(v)? {
            Num::I(i) => Ok(BigDecimal::from(i)),
            Num::D(d) => Ok(d),
            Num::F(f) => {
                if !f.is_finite() {
                    return Err(self.out_of_range(f));
                }
                decimal::parse(&format!("{f:e}")).ok_or_else(|| self.out_of_range(f))
            }
        }
    }

    fn to_decimal(
        &self,
        v: &Value,
        precision: u8,
        scale: u8,
        unsigned: bool,
    ) -> Result<Value, ConvertError> {
        let d = self.as_decimal(v)?;
        let r = decimal::round(&d, scale as i64);
        if r != d {
            return Err(self.rounded(decimal::format(&d)));
        }
        if decimal::integer_digits(&r) > (precision - scale) as u64
            || (unsigned && decimal::is_negative(&r))
        {
            return Err(self.out_of_range(decimal::format(&d)));
        }
        Ok(Value::Decimal(decimal::format(&r)))
    }

    fn to_float(
        &self,
        v: &Value,
        unsigned: bool,
        digits: Option<(u8, u8)>,
        double: bool,
    ) -> Result<Value, ConvertError> {
        let f = match self.number(v)? {
            Num::I(i) => {
                let f = i as f64;
                if f as i128 != i || (!double && (f as f32) as i128 != i) {
                    return Err(self.rounded(i));
                }
                f
            }
            Num::D(d) => {
                let f = decimal::to_f64(&d);
                let back = if double {
                    decimal::parse(&format!("{f:e}"))
                } else {
                    decimal::parse(&format!("{:e}", f as f32))
                };
                if back.as_ref() != Some(&d) {
                    return Err(self.rounded(decimal::format(&d)));
                }
                f
            }
            Num::F(f) => f,
        };
        if !f.is_finite() || (unsigned && f < 0.0) {
            return Err(self.out_of_range(f));
        }
        if let Some((m, d)) = digits {
            let limit = 10f64.powi(m as i32 - d as i32);
            let scale = 10f64.powi(d as i32);
            if (f * scale).round() / scale != f {
                return Err(self.rounded(f));
            }
            if f.abs() >= limit {
                return Err(self.out_of_range(f));
            }
        }
        if double {
            return Ok(Value::Double(f));
        }
        let g = f as f32;
        if !g.is_finite() {
            return Err(self.out_of_range(f));
        }
        if g as f64 != f {
            return Err(self.rounded(f));
        }
        Ok(Value::Float(g))
    }

    fn to_bit(&self, v: &Value, width: u8) -> Result<Value, ConvertError> {
        let i = match self.number(v)? {
            Num::I(i) => i,
            _ => return Err(self.invalid(format!("{v:?}"))),
        };
        let max = if width >= 64 {
            u64::MAX as i128
        } else {
            (1i128 << width) - 1
        };
        if i < 0 || i > max {
            return Err(self.out_of_range(i));
        }
        Ok(Value::Bit {
            bits: i as u64,
            width,
        })
    }

    fn source_label<'a>(
        &self,
        labels: &'a [String],
        index: u16,
        v: &Value,
    ) -> Result<&'a str, ConvertError> {
        labels
            .get(index as usize - 1)
            .map(|s| s.as_str())
            .ok_or_else(|| self.unexpected(v))
    }

    fn to_enum(
        &self,
        v: &Value,
        labels: &[String],
        folded: &[Vec<u8>],
        coll: &Collation,
    ) -> Result<Value, ConvertError> {
        match (v, &self.from) {
            (Value::Enum(0), _) => Ok(Value::Enum(0)),
            (Value::Enum(i), Kind::Enum { labels: old, .. }) => {
                let label = self.source_label(old, *i, v)?;
                find_label(label, labels, folded, coll)
                    .map(|i| Value::Enum(i as u16 + 1))
                    .ok_or_else(|| ConvertError::EnumLabelMissing {
                        label: label.to_string(),
                    })
            }
            (Value::Bytes(b), _) => {
                let text = self.source_text(b)?;
                if let Some(i) = find_label(&text, labels, folded, coll) {
                    return Ok(Value::Enum(i as u16 + 1));
                }
                // The server then reads a number as an index.
                match text.trim().parse::<usize>() {
                    Ok(n) if n >= 1 && n <= labels.len() => Ok(Value::Enum(n as u16)),
                    _ => Err(ConvertError::EnumLabelMissing {
                        label: text.into_owned(),
                    }),
                }
            }
            _ => match self.number(v)? {
                Num::I(n) if n >= 1 && n <= labels.len() as i128 => Ok(Value::Enum(n as u16)),
                n => Err(self.out_of_range(n.to_text())),
            },
        }
    }

    fn to_set(
        &self,
        v: &Value,
        labels: &[String],
        folded: &[Vec<u8>],
        coll: &Collation,
    ) -> Result<Value, ConvertError> {
        let missing = |label: &str| ConvertError::SetLabelMissing {
            label: label.to_string(),
        };
        match (v, &self.from) {
            (Value::Set(mask), Kind::Set { labels: old, .. }) => {
                let mut out = 0u64;
                for (bit, label) in old.iter().enumerate() {
                    if mask & (1u64 << bit) != 0 {
                        let i = find_label(label, labels, folded, coll)
                            .ok_or_else(|| missing(label))?;
                        out |= 1u64 << i;
                    }
                }
                if old.len() < 64 && mask >> old.len() != 0 {
                    return Err(self.unexpected(v));
                }
                Ok(Value::Set(out))
            }
            (Value::Bytes(b), _) => {
                let text = self.source_text(b)?;
                let mut out = 0u64;
                if !text.is_empty() {
                    for item in text.split(',') {
                        let i =
                            find_label(item, labels, folded, coll).ok_or_else(|| missing(item))?;
                        out |= 1u64 << i;
                    }
                }
                Ok(Value::Set(out))
            }
            _ => match self.number(v)? {
                Num::I(n) if n >= 0 && (labels.len() >= 64 || n < (1i128 << labels.len())) => {
                    Ok(Value::Set(n as u64))
                }
                n => Err(self.out_of_range(n.to_text())),
            },
        }
    }

    fn to_year(&self, v: &Value) -> Result<Value, ConvertError> {
        if let Value::Year(y) = v {
            return Ok(Value::Year(*y));
        }
        let n = match self.number(v)? {
            Num::I(i) => i,
            other => return Err(self.invalid(other.to_text())),
        };
        // Two-digit years (1..=99) would be remapped to 19xx/20xx: that changes the value.
        if n == 0 && !matches!(v, Value::Bytes(_)) {
            return Ok(Value::Year(0));
        }
        if (1901..=2155).contains(&n) {
            return Ok(Value::Year(n as u16));
        }
        Err(self.out_of_range(n))
    }

    /// DATE/DATETIME/TIMESTAMP (or date text) as DATETIME parts.
    fn parts(&self, v: &Value) -> Result<DateTimeParts, ConvertError> {
        if let Some(p) = temporal::value_to_parts(v) {
            return Ok(p);
        }
        match v {
            Value::Bytes(b) => {
                let text = self.source_text(b)?;
                temporal::parse_datetime(&text).ok_or_else(|| self.invalid(&*text))
            }
            _ => Err(self.unexpected(v)),
        }
    }

    fn to_date(&self, v: &Value) -> Result<Value, ConvertError> {
        let p = self.parts(v)?;
        if !p.time_is_zero() {
            return Err(self.rounded(temporal::format_datetime(&p, 6)));
        }
        Ok(Value::Date {
            year: p.year,
            month: p.month,
            day: p.day,
        })
    }

    fn to_datetime(&self, v: &Value, fsp: u8) -> Result<Value, ConvertError> {
        let p = self.parts(v)?;
        if temporal::exceeds_fsp(p.micros, fsp) {
            return Err(self.rounded(temporal::format_datetime(&p, 6)));
        }
        Ok(p.to_datetime_value())
    }

    fn to_timestamp(&self, v: &Value, fsp: u8) -> Result<Value, ConvertError> {
        let (secs, micros) = match v {
            Value::Timestamp { secs, micros } => (*secs, *micros),
            _ => {
                let p = self.parts(v)?;
                temporal::parts_to_timestamp(&p)
                    .ok_or_else(|| self.out_of_range(temporal::format_datetime(&p, 6)))?
            }
        };
        if temporal::exceeds_fsp(micros, fsp) {
            return Err(self.rounded(format!("{secs}.{micros:06}")));
        }
        Ok(Value::Timestamp { secs, micros })
    }

    fn to_time(&self, v: &Value, fsp: u8) -> Result<Value, ConvertError> {
        let t = match v {
            Value::Time { .. } => v.clone(),
            Value::Bytes(b) => {
                let text = self.source_text(b)?;
                temporal::parse_time(&text).ok_or_else(|| self.invalid(&*text))?
            }
            _ => return Err(self.unexpected(v)),
        };
        if let Value::Time { micros, .. } = t {
            if temporal::exceeds_fsp(micros, fsp) {
                return Err(self.rounded(format!("{t:?}")));
            }
        }
        Ok(t)
    }

    /// The source value as text (UTF-8) for a text target; `Err` for values without one.
    fn as_text<'a>(&'a self, v: &'a Value) -> Result<Cow<'a, str>, ConvertError> {
        Ok(match (v, &self.from) {
            (Value::Bytes(b), Kind::Text { charset }) => charset.decode(b)?,
            (Value::Int(i), _) => Cow::Owned(i.to_string()),
            (Value::UInt(u), _) => Cow::Owned(u.to_string()),
            (Value::Decimal(s), _) => Cow::Borrowed(s.as_str()),
            (Value::Double(f), _) => Cow::Owned(format_double(*f)),
            (Value::Float(f), _) => Cow::Owned(format_float(*f)),
            (Value::Year(y), _) => Cow::Owned(format!("{y:04}")),
            (Value::Enum(0), _) => Cow::Borrowed(""),
            (Value::Enum(i), Kind::Enum { labels, .. }) => {
                Cow::Borrowed(self.source_label(labels, *i, v)?)
            }
            (Value::Set(mask), Kind::Set { labels, .. }) => Cow::Owned(set_text(labels, *mask)),
            (Value::Date { year, month, day }, _) => {
                Cow::Owned(temporal::format_date(*year, *month, *day))
            }
            (Value::DateTime { .. }, Kind::DateTime { fsp })
            | (Value::Timestamp { .. }, Kind::Timestamp { fsp }) => {
                let p = self.parts(v)?;
                Cow::Owned(temporal::format_datetime(&p, *fsp))
            }
            (
                Value::Time {
                    negative,
                    hours,
                    minutes,
                    seconds,
                    micros,
                },
                Kind::Time { fsp },
            ) => Cow::Owned(temporal::format_time(
                *negative, *hours, *minutes, *seconds, *micros, *fsp,
            )),
            (Value::Json(j), _) => Cow::Owned(jsontext::to_mysql_text(j)),
            (Value::JsonSql(j), _) => Cow::Owned(jsontext::to_mysql_text(&j.doc)),
            _ => return Err(self.unexpected(v)),
        })
    }

    fn to_text(
        &self,
        v: &Value,
        charset: &Charset,
        max_chars: Option<u64>,
        max_bytes: u64,
        trim_spaces_ok: bool,
    ) -> Result<Value, ConvertError> {
        let mut bytes: Vec<u8> = match (v, &self.from) {
            (Value::Bytes(b), Kind::Text { charset: from }) => {
                from.convert(b, charset)?.into_owned()
            }
            (Value::Bytes(b), _) => {
                // Binary into text: the bytes are read as the target character set.
                charset.decode(b)?;
                b.clone()
            }
            _ => {
                let text = self.as_text(v)?;
                charset.encode(&text)?.into_owned()
            }
        };
        let chars = charset.char_count(&bytes) as u64;
        let over_chars = max_chars.is_some_and(|m| chars > m);
        let over_bytes = bytes.len() as u64 > max_bytes;
        if over_chars || over_bytes {
            // Only trailing spaces over the limit: the server drops them with a note; where
            // trailing spaces do not count (PAD SPACE, CHAR), that loses nothing.
            let trimmed_len = bytes.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
            let trimmed_chars = charset.char_count(&bytes[..trimmed_len]) as u64;
            let fits =
                max_chars.is_none_or(|m| trimmed_chars <= m) && trimmed_len as u64 <= max_bytes;
            if trim_spaces_ok && fits {
                let keep_chars = max_chars.unwrap_or(u64::MAX);
                let mut len = trimmed_len;
                let mut count = trimmed_chars;
                while len < bytes.len() && count < keep_chars && (len as u64) < max_bytes {
                    len += 1;
                    count += 1;
                }
                bytes.truncate(len);
            } else if over_chars {
                return Err(ConvertError::Truncated {
                    length: chars,
                    max: max_chars.unwrap_or(0),
                    unit: "characters",
                });
            } else {
                return Err(ConvertError::Truncated {
                    length: bytes.len() as u64,
                    max: max_bytes,
                    unit: "bytes",
                });
            }
        }
        Ok(Value::Bytes(bytes))
    }

    fn to_binary(
        &self,
        v: &Value,
        max_bytes: u64,
        pad_to: Option<u32>,
    ) -> Result<Value, ConvertError> {
        let mut bytes: Vec<u8> = match (v, &self.from) {
            (Value::Bytes(b), _) => b.clone(),
            (Value::Enum(i), Kind::Enum { labels, charset }) if *i > 0 => charset
                .encode(self.source_label(labels, *i, v)?)?
                .into_owned(),
            (Value::Set(m), Kind::Set { labels, charset }) => {
                charset.encode(&set_text(labels, *m))?.into_owned()
            }
            _ => self.as_text(v)?.into_owned().into_bytes(),
        };
        if bytes.len() as u64 > max_bytes {
            return Err(ConvertError::Truncated {
                length: bytes.len() as u64,
                max: max_bytes,
                unit: "bytes",
            });
        }
        if let Some(n) = pad_to {
            bytes.resize(n as usize, 0);
        }
        Ok(Value::Bytes(bytes))
    }

    fn to_json(&self, v: &Value) -> Result<Value, ConvertError> {
        match v {
            Value::Json(_) | Value::JsonSql(_) => Ok(v.clone()),
            Value::Bytes(b) => {
                let text = self.source_text(b)?;
                serde_json::from_str(&text)
                    .map(Value::Json)
                    .map_err(|_| self.invalid(&*text))
            }
            _ => Err(self.unexpected(v)),
        }
    }

    fn to_geometry(&self, v: &Value, kind: GeometryKind) -> Result<Value, ConvertError> {
        let Value::Bytes(b) = v else {
            return Err(self.unexpected(v));
        };
        if let Some(want) = kind.wkb_type() {
            let found = wkb_type(b).ok_or_else(|| self.invalid("malformed geometry"))?;
            if found != want {
                return Err(ConvertError::WrongGeometry {
                    found,
                    target: self.target_name.clone(),
                });
            }
        }
        Ok(v.clone())
    }

    fn to_vector(&self, v: &Value, dimensions: u32) -> Result<Value, ConvertError> {
        let Value::Bytes(b) = v else {
            return Err(self.unexpected(v));
        };
        if b.len() % 4 != 0 {
            return Err(self.invalid("vector bytes not a multiple of 4"));
        }
        if b.len() / 4 > dimensions as usize {
            return Err(self.out_of_range(format!("vector of {} dimensions", b.len() / 4)));
        }
        Ok(v.clone())
    }
}

/// A number read from a source value.
#[derive(Debug, Clone, PartialEq)]
enum Num {
    I(i128),
    D(BigDecimal),
    F(f64),
}

impl Num {
    fn to_text(&self) -> String {
        match self {
            Num::I(i) => i.to_string(),
            Num::D(d) => decimal::format(d),
            Num::F(f) => format_double(*f),
        }
    }
}

/// Reads numeric text as the server does when storing it into a numeric column, strictly:
/// surrounding spaces allowed, anything else must be a number.
fn parse_number_text(text: &str) -> Option<Num> {
    let t = text.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n' || c == '\r');
    let (len, has_exp) = decimal::scan_number(t.as_bytes())?;
    if len != t.len() {
        return None;
    }
    if has_exp {
        return t.parse::<f64>().ok().map(Num::F);
    }
    if let Ok(i) = t.parse::<i128>() {
        return Some(Num::I(i));
    }
    decimal::parse(t).map(Num::D)
}

/// Finds a label: exact bytes first, then equal under the collation.
fn find_label(
    label: &str,
    labels: &[String],
    folded: &[Vec<u8>],
    coll: &Collation,
) -> Option<usize> {
    if let Some(i) = labels.iter().position(|l| l == label) {
        return Some(i);
    }
    let (f, _) = coll.fold(label);
    folded.iter().position(|l| *l == f)
}

fn set_text(labels: &[String], mask: u64) -> String {
    let mut out = String::new();
    for (bit, label) in labels.iter().enumerate() {
        if mask & (1u64 << bit) != 0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(label);
        }
    }
    out
}

/// The WKB geometry type of a MySQL geometry value (4-byte SRID, then WKB).
fn wkb_type(b: &[u8]) -> Option<u32> {
    if b.len() < 9 {
        return None;
    }
    let raw: [u8; 4] = [b[5], b[6], b[7], b[8]];
    match b[4] {
        0 => Some(u32::from_be_bytes(raw)),
        1 => Some(u32::from_le_bytes(raw)),
        _ => None,
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        return s.to_string();
    }
    let mut out: String = s.chars().take(61).collect();
    out.push_str("...");
    out
}

/// Field width of a double printed by an expression on MySQL (`CONCAT(x)` of a DOUBLE):
/// `MAX_DOUBLE_STR_LENGTH`; observed on MySQL 9.7 (15 digits for `-3.3333333333333334e-301`).
pub const MYSQL_EXPR_DOUBLE_WIDTH: usize = 22;
/// A width so large that only MySQL's exponent rule decides the format (MariaDB's expressions,
/// and text columns of MySQL and MariaDB, wide enough for any double).
pub const WIDE_DOUBLE_WIDTH: usize = 330;
/// `MAX_DECPT_FOR_F_FORMAT` of `my_gcvt`: plain notation for exponents up to this.
const MAX_DECPT_FOR_F_FORMAT: i32 = 15;

/// Significant digits of `x` (> 0) as the `dtoa` mode 4 of MySQL gives them for `ndigits`:
/// the shortest round-trip digits when they are at most `ndigits`, else `x` rounded to
/// `ndigits` digits; trailing zeros removed. Returns the digits and `decpt` (the value is
/// `0.digits × 10^decpt`).
fn dtoa_digits(x: f64, ndigits: usize) -> (String, i32) {
    let split = |sci: String| -> (String, i32) {
        let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let digits = digits.trim_end_matches('0').to_string();
        (digits, exp.parse::<i32>().unwrap_or(0) + 1)
    };
    let (digits, decpt) = split(format!("{x:e}"));
    if digits.len() <= ndigits.max(1) {
        return (digits, decpt);
    }
    split(format!("{:.*e}", ndigits.max(1) - 1, x))
}

/// MySQL's and MariaDB's `my_gcvt`: `x` as text in at most `width` characters, choosing
/// between plain (`0.000001`, `123.5`) and exponent (`1e-15`, `1.5e20`) notation exactly as
/// the server does. `float` is `MY_GCVT_ARG_FLOAT`: a FLOAT value (passed widened), printed
/// with at most 6 significant digits.
pub fn gcvt(x: f64, width: usize, float: bool) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let negative = x.is_sign_negative() && x != 0.0;
    let mut width = width as i32 - i32::from(negative);
    let ndigits = if float { width.min(6) } else { width }.max(1) as usize;
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    let (mut digits, mut decpt) = dtoa_digits(a, ndigits);
    let len = digits.len() as i32;
    let exp_len =
        1 + i32::from(decpt >= 101 || decpt <= -99) + i32::from(decpt >= 11 || decpt <= -9);
    let f_len = if decpt <= 0 {
        len - decpt + 2
    } else if decpt < len {
        len + 1
    } else {
        decpt
    };
    let have_space = f_len <= width;
    let force_e = decpt <= 0 && width <= 2 - decpt && width >= 3 + exp_len;
    let f_format = (have_space
        // my_gcvt's `decpt >= -1 || (decpt == -2 && (len > 1 || !force_e))`, under `!force_e`.
        || (decpt <= width && (decpt >= -1 || decpt == -2) && !force_e))
        && (!have_space
            || (decpt > -MAX_DECPT_FOR_F_FORMAT
                && (decpt <= MAX_DECPT_FOR_F_FORMAT || len > decpt)));
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if f_format {
        width -= i32::from(decpt < len) + if decpt <= 0 { 1 - decpt } else { 0 };
        if width < len {
            // Keep `width - decpt` digits after the point.
            let places = (width.max(decpt) - decpt).max(0) as usize;
            let text = format!("{a:.places$}");
            let all: String = text.chars().filter(char::is_ascii_digit).collect();
            let int_len = text.find('.').unwrap_or(text.len()) as i32;
            let trimmed = all.trim_start_matches('0');
            let lead = all.len() - trimmed.len();
            decpt = int_len - lead as i32;
            digits = trimmed.trim_end_matches('0').to_string();
            if digits.is_empty() {
                return "0".into();
            }
        }
        let len = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..-decpt {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt < len {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            for _ in len..decpt {
                out.push('0');
            }
        }
    } else {
        let mut e = decpt - 1;
        if e < 0 {
            width -= 1;
        }
        width -= 1 + exp_len;
        if len > 1 {
            width -= 1;
        }
        if width < len {
            let (d, p) = dtoa_digits(a, width.max(1) as usize);
            digits = d;
            e = p - 1;
        }
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push_str(&e.to_string());
    }
    out
}

/// A DOUBLE as MySQL and MariaDB print it into a wide text column (`0.1`, `100`, `1e20`,
/// `0.00000015`, `1e-15`).
pub fn format_double(f: f64) -> String {
    gcvt(f, WIDE_DOUBLE_WIDTH, false)
}

/// A FLOAT as MySQL and MariaDB print it (at most 6 significant digits: `1.23457`).
pub fn format_float(f: f32) -> String {
    gcvt(f64::from(f), WIDE_DOUBLE_WIDTH, true)
}

fn compile_target(kind: &Kind, from_name: &str, to: &Column) -> Result<Target, ConvertError> {
    let no = || Err(unsupported(from_name, to));
    let numeric_ok = kind.is_number()
        || kind.is_string()
        || *kind == Kind::Null
        || matches!(kind, Kind::Enum { .. } | Kind::Set { .. });
    let collation =
        || Collation::from_name(to.collation.as_deref().unwrap_or("utf8mb4_general_ci"));
    Ok(match &to.data_type {
        ColumnType::Integer { size, unsigned } => {
            if !numeric_ok {
                return no();
            }
            let (min, max) = size.range(*unsigned);
            Target::Int {
                min,
                max,
                unsigned: *unsigned,
            }
        }
        ColumnType::Decimal {
            precision,
            scale,
            unsigned,
        } => {
            if !(kind.is_number() || kind.is_string() || *kind == Kind::Null) {
                return no();
            }
            Target::Decimal {
                precision: *precision,
                scale: *scale,
                unsigned: *unsigned,
            }
        }
        ColumnType::Float { unsigned, digits } | ColumnType::Double { unsigned, digits } => {
            if !(kind.is_number() || kind.is_string() || *kind == Kind::Null) {
                return no();
            }
            if matches!(to.data_type, ColumnType::Float { .. }) {
                Target::Float {
                    unsigned: *unsigned,
                    digits: *digits,
                }
            } else {
                Target::Double {
                    unsigned: *unsigned,
                    digits: *digits,
                }
            }
        }
        ColumnType::Bit { width } => {
            if !matches!(kind, Kind::Bit | Kind::Signed | Kind::Unsigned | Kind::Null) {
                return no();
            }
            Target::Bit { width: *width }
        }
        ColumnType::Enum { labels } => {
            if !matches!(
                kind,
                Kind::Enum { .. }
                    | Kind::Text { .. }
                    | Kind::Binary
                    | Kind::Signed
                    | Kind::Unsigned
                    | Kind::Null
            ) {
                return no();
            }
            let collation = collation();
            Target::Enum {
                folded: labels.iter().map(|l| collation.fold(l).0).collect(),
                labels: labels.clone(),
                collation,
            }
        }
        ColumnType::Set { labels } => {
            if !matches!(
                kind,
                Kind::Set { .. }
                    | Kind::Text { .. }
                    | Kind::Binary
                    | Kind::Signed
                    | Kind::Unsigned
                    | Kind::Null
            ) {
                return no();
            }
            let collation = collation();
            Target::Set {
                folded: labels.iter().map(|l| collation.fold(l).0).collect(),
                labels: labels.clone(),
                collation,
            }
        }
        ColumnType::Year => {
            if !matches!(
                kind,
                Kind::Year
                    | Kind::Signed
                    | Kind::Unsigned
                    | Kind::Decimal
                    | Kind::Text { .. }
                    | Kind::Null
            ) {
                return no();
            }
            Target::Year
        }
        ColumnType::Date | ColumnType::DateTime { .. } | ColumnType::Timestamp { .. } => {
            if !matches!(
                kind,
                Kind::Date
                    | Kind::DateTime { .. }
                    | Kind::Timestamp { .. }
                    | Kind::Text { .. }
                    | Kind::Null
            ) {
                return no();
            }
            match &to.data_type {
                ColumnType::Date => Target::Date,
                ColumnType::DateTime { fsp } => Target::DateTime { fsp: *fsp },
                ColumnType::Timestamp { fsp } => Target::Timestamp { fsp: *fsp },
                _ => return no(),
            }
        }
        ColumnType::Time { fsp } => {
            if !matches!(kind, Kind::Time { .. } | Kind::Text { .. } | Kind::Null) {
                return no();
            }
            Target::Time { fsp: *fsp }
        }
        ColumnType::Char {
            len,
            charset,
            collation: coll,
        }
        | ColumnType::VarChar {
            len,
            charset,
            collation: coll,
        } => text_target(
            kind,
            from_name,
            to,
            charset,
            Some(*len as u64),
            u64::MAX,
            coll,
        )?,
        ColumnType::Text {
            size,
            charset,
            collation: coll,
        } => text_target(kind, from_name, to, charset, None, size.max_bytes(), coll)?,
        ColumnType::Binary { len } => binary_target(kind, from_name, to, *len as u64, Some(*len))?,
        ColumnType::VarBinary { len } => binary_target(kind, from_name, to, *len as u64, None)?,
        ColumnType::Blob { size } => binary_target(kind, from_name, to, size.max_bytes(), None)?,
        ColumnType::Json => {
            if !matches!(
                kind,
                Kind::Json | Kind::Text { .. } | Kind::Binary | Kind::Null
            ) {
                return no();
            }
            Target::Json
        }
        ColumnType::Geometry { kind: g } => {
            if !matches!(kind, Kind::Geometry | Kind::Null) {
                return no();
            }
            Target::Geometry { kind: *g }
        }
        ColumnType::Vector { dimensions } => {
            if !matches!(kind, Kind::Vector | Kind::Binary | Kind::Null) {
                return no();
            }
            Target::Vector {
                dimensions: *dimensions,
            }
        }
        ColumnType::Uuid | ColumnType::Inet4 | ColumnType::Inet6 => {
            let same = matches!(
                (kind, &to.data_type),
                (Kind::Uuid, ColumnType::Uuid)
                    | (Kind::Inet4, ColumnType::Inet4)
                    | (Kind::Inet6, ColumnType::Inet6)
                    | (Kind::Null, _)
            );
            if !same {
                return no();
            }
            Target::Same
        }
    })
}

fn text_target(
    kind: &Kind,
    from_name: &str,
    to: &Column,
    charset: &str,
    max_chars: Option<u64>,
    max_bytes: u64,
    collation: &str,
) -> Result<Target, ConvertError> {
    let charset = Charset::from_name(charset);
    let ok_kind = !matches!(
        kind,
        Kind::Bit | Kind::Geometry | Kind::Vector | Kind::Uuid | Kind::Inet4 | Kind::Inet6
    );
    let same_charset = matches!(kind, Kind::Text { charset: c } if *c == charset);
    let transcodable = charset.is_supported() || same_charset;
    let from_ok = match kind {
        Kind::Text { charset: c } => c.is_supported() || *c == charset,
        _ => true,
    };
    if !ok_kind || !transcodable || !from_ok {
        return Err(unsupported(from_name, to));
    }
    let coll = Collation::from_name(collation);
    let is_char = matches!(to.data_type, ColumnType::Char { .. });
    Ok(Target::Text {
        charset,
        max_chars,
        max_bytes,
        trim_spaces_ok: coll.pad_space || is_char,
    })
}

fn binary_target(
    kind: &Kind,
    from_name: &str,
    to: &Column,
    max_bytes: u64,
    pad_to: Option<u32>,
) -> Result<Target, ConvertError> {
    if matches!(
        kind,
        Kind::Bit | Kind::Geometry | Kind::Uuid | Kind::Inet4 | Kind::Inet6
    ) {
        return Err(unsupported(from_name, to));
    }
    Ok(Target::Binary { max_bytes, pad_to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::table;

    /// Conversion from a column of type `from` into a column of type `to` (both nullable).
    fn conv(from: &str, to: &str) -> Conversion {
        let old = table(&[("c", from)], &[]);
        let new = table(&[("c", to)], &[]);
        Conversion::new(
            &SourceType::Column(old.columns[0].data_type.clone()),
            old.columns[0].charset.as_deref(),
            &new.columns[0],
        )
        .unwrap()
    }

    fn conv_cs(from: (&str, &str, &str), to: (&str, &str, &str)) -> Conversion {
        let mk = |(t, cs, co): (&str, &str, &str)| {
            crate::schema::testing::table_with(&[("c", t)], &[], |r| {
                r.character_set_name = Some(cs.into());
                r.collation_name = Some(co.into());
            })
        };
        let old = mk(from);
        let new = mk(to);
        Conversion::new(
            &SourceType::Column(old.columns[0].data_type.clone()),
            old.columns[0].charset.as_deref(),
            &new.columns[0],
        )
        .unwrap()
    }

    fn bytes(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn int_widening_and_narrowing() {
        let c = conv("int", "bigint");
        assert_eq!(c.convert(&Value::Int(-5)).unwrap(), Value::Int(-5));
        let c = conv("tinyint", "int unsigned");
        assert_eq!(c.convert(&Value::Int(7)).unwrap(), Value::UInt(7));
        assert!(matches!(
            c.convert(&Value::Int(-1)),
            Err(ConvertError::OutOfRange { .. })
        ));
        let c = conv("bigint", "smallint");
        assert_eq!(c.convert(&Value::Int(32_767)).unwrap(), Value::Int(32_767));
        assert!(c.convert(&Value::Int(32_768)).unwrap_err().is_lossy());
        let c = conv("bigint unsigned", "bigint");
        assert!(c.convert(&Value::UInt(u64::MAX)).is_err());
        assert_eq!(c.convert(&Value::UInt(5)).unwrap(), Value::Int(5));
        let c = conv("int", "mediumint unsigned");
        assert_eq!(
            c.convert(&Value::Int(16_777_215)).unwrap(),
            Value::UInt(16_777_215)
        );
        assert!(c.convert(&Value::Int(16_777_216)).is_err());
    }

    #[test]
    fn identity_is_a_clone() {
        let c = conv("varchar(10)", "varchar(10)");
        assert!(c.is_identity());
        assert_eq!(c.convert(&bytes("x")).unwrap(), bytes("x"));
        // Even an identity checks the value's representation (a decoder bug must not pass).
        assert!(matches!(
            c.convert(&Value::Int(1)),
            Err(ConvertError::UnexpectedValue { .. })
        ));
        assert!(!c.convert(&Value::Int(1)).unwrap_err().is_lossy());
    }

    #[test]
    fn decimal_targets_are_exact() {
        let c = conv("int", "decimal(5,2)");
        assert_eq!(
            c.convert(&Value::Int(123)).unwrap(),
            Value::Decimal("123.00".into())
        );
        assert!(matches!(
            c.convert(&Value::Int(1000)),
            Err(ConvertError::OutOfRange { .. })
        ));
        let c = conv("decimal(10,4)", "decimal(10,2)");
        assert_eq!(
            c.convert(&Value::Decimal("-1.2300".into())).unwrap(),
            Value::Decimal("-1.23".into())
        );
        assert!(matches!(
            c.convert(&Value::Decimal("1.2345".into())),
            Err(ConvertError::Rounded { .. })
        ));
        let c = conv("decimal(10,2)", "decimal(12,2) unsigned");
        assert!(c.convert(&Value::Decimal("-0.01".into())).is_err());
        assert_eq!(
            c.convert(&Value::Decimal("0.00".into())).unwrap(),
            Value::Decimal("0.00".into())
        );
        let c = conv("double", "decimal(5,1)");
        assert_eq!(
            c.convert(&Value::Double(0.1)).unwrap(),
            Value::Decimal("0.1".into())
        );
        assert!(c.convert(&Value::Double(0.15)).is_err());
        let c = conv("decimal(5,2)", "int");
        assert_eq!(
            c.convert(&Value::Decimal("12.00".into())).unwrap(),
            Value::Int(12)
        );
        assert!(matches!(
            c.convert(&Value::Decimal("12.50".into())),
            Err(ConvertError::Rounded { .. })
        ));
    }

    #[test]
    fn float_and_double() {
        let c = conv("float", "double");
        assert_eq!(
            c.convert(&Value::Float(0.1)).unwrap(),
            Value::Double(0.1f32 as f64)
        );
        let c = conv("double", "float");
        assert_eq!(c.convert(&Value::Double(0.5)).unwrap(), Value::Float(0.5));
        assert!(c.convert(&Value::Double(0.1)).is_err());
        assert!(c.convert(&Value::Double(1e300)).is_err());
        let c = conv("bigint", "double");
        assert_eq!(
            c.convert(&Value::Int(1 << 53)).unwrap(),
            Value::Double(9_007_199_254_740_992.0)
        );
        assert!(c.convert(&Value::Int((1 << 53) + 1)).is_err());
        let c = conv("decimal(10,3)", "double");
        assert_eq!(
            c.convert(&Value::Decimal("1.250".into())).unwrap(),
            Value::Double(1.25)
        );
        let c = conv("double", "int");
        assert_eq!(c.convert(&Value::Double(3.0)).unwrap(), Value::Int(3));
        assert!(c.convert(&Value::Double(3.5)).is_err());
        let c = conv("double", "double unsigned");
        assert!(c.convert(&Value::Double(-1.0)).is_err());
    }

    #[test]
    fn text_to_number() {
        let c = conv("varchar(10)", "int");
        assert_eq!(c.convert(&bytes(" 42 ")).unwrap(), Value::Int(42));
        assert!(matches!(
            c.convert(&bytes("42abc")),
            Err(ConvertError::Invalid { .. })
        ));
        assert!(c.convert(&bytes("")).is_err());
        assert!(c.convert(&bytes("1.5")).is_err());
        let c = conv("varchar(10)", "decimal(6,3)");
        assert_eq!(
            c.convert(&bytes("1.5")).unwrap(),
            Value::Decimal("1.500".into())
        );
        assert_eq!(
            c.convert(&bytes("1e2")).unwrap(),
            Value::Decimal("100.000".into())
        );
    }

    #[test]
    fn varchar_widening_and_truncation() {
        let c = conv("varchar(10)", "varchar(20)");
        assert_eq!(c.convert(&bytes("héllo")).unwrap(), bytes("héllo"));
        let c = conv("varchar(10)", "varchar(3)");
        assert_eq!(
            c.convert(&bytes("héy")).unwrap(),
            bytes("héy"),
            "3 characters, 4 bytes"
        );
        assert!(matches!(
            c.convert(&bytes("abcd")),
            Err(ConvertError::Truncated {
                length: 4,
                max: 3,
                ..
            })
        ));
        // utf8mb4_0900_ai_ci is NO PAD: trailing spaces count.
        assert!(c.convert(&bytes("ab  ")).is_err());
        let c = conv_cs(
            ("varchar(10)", "utf8mb4", "utf8mb4_general_ci"),
            ("varchar(3)", "utf8mb4", "utf8mb4_general_ci"),
        );
        assert_eq!(c.convert(&bytes("ab    ")).unwrap(), bytes("ab "));
        let c = conv("text", "tinytext");
        assert!(c.convert(&Value::Bytes(vec![b'a'; 256])).is_err());
        assert!(c.convert(&Value::Bytes(vec![b'a'; 255])).is_ok());
    }

    #[test]
    fn charset_conversions() {
        let c = conv_cs(
            ("varchar(10)", "latin1", "latin1_swedish_ci"),
            ("varchar(10)", "utf8mb4", "utf8mb4_0900_ai_ci"),
        );
        assert_eq!(
            c.convert(&Value::Bytes(vec![0x80, 0xE9])).unwrap(),
            bytes("€é")
        );
        let c = conv_cs(
            ("varchar(10)", "utf8mb3", "utf8mb3_general_ci"),
            ("varchar(10)", "utf8mb4", "utf8mb4_general_ci"),
        );
        assert_eq!(c.convert(&bytes("☃")).unwrap(), bytes("☃"));
        let c = conv_cs(
            ("varchar(10)", "utf8mb4", "utf8mb4_general_ci"),
            ("varchar(10)", "latin1", "latin1_swedish_ci"),
        );
        assert_eq!(
            c.convert(&bytes("é€")).unwrap(),
            Value::Bytes(vec![0xE9, 0x80])
        );
        assert!(matches!(
            c.convert(&bytes("😀")),
            Err(ConvertError::Charset(_))
        ));
        let c = conv_cs(
            ("varchar(10)", "utf8mb4", "utf8mb4_general_ci"),
            ("varchar(10)", "utf8mb3", "utf8mb3_general_ci"),
        );
        assert!(c.convert(&bytes("a😀")).unwrap_err().is_lossy());
    }

    #[test]
    fn binary_targets() {
        let c = conv("varbinary(4)", "binary(6)");
        assert_eq!(
            c.convert(&Value::Bytes(vec![1, 0])).unwrap(),
            Value::Bytes(vec![1, 0, 0, 0, 0, 0])
        );
        let c = conv("varchar(10)", "varbinary(3)");
        assert_eq!(c.convert(&bytes("é")).unwrap(), bytes("é"));
        assert!(c.convert(&bytes("éé")).is_err());
        let c = conv("varbinary(10)", "varchar(10)");
        assert!(c.convert(&Value::Bytes(vec![0xFF])).is_err());
        assert_eq!(c.convert(&bytes("ok")).unwrap(), bytes("ok"));
        let c = conv("int", "varbinary(10)");
        assert_eq!(c.convert(&Value::Int(-12)).unwrap(), bytes("-12"));
    }

    #[test]
    fn enum_by_label_not_ordinal() {
        let c = conv("enum('a','b','c')", "enum('c','b','a','d')");
        assert_eq!(c.convert(&Value::Enum(1)).unwrap(), Value::Enum(3));
        assert_eq!(c.convert(&Value::Enum(3)).unwrap(), Value::Enum(1));
        assert_eq!(c.convert(&Value::Enum(0)).unwrap(), Value::Enum(0));
        let c = conv("enum('a','b')", "enum('a')");
        assert_eq!(
            c.convert(&Value::Enum(2)).unwrap_err(),
            ConvertError::EnumLabelMissing { label: "b".into() }
        );
        // Case-insensitive collation: 'A' matches 'a' as the server would.
        let c = conv("enum('A','x,y')", "enum('a','x,y')");
        assert_eq!(c.convert(&Value::Enum(1)).unwrap(), Value::Enum(1));
        assert_eq!(c.convert(&Value::Enum(2)).unwrap(), Value::Enum(2));
        // Out-of-range ordinal is a decoder bug, not data.
        assert!(matches!(
            c.convert(&Value::Enum(9)),
            Err(ConvertError::UnexpectedValue { .. })
        ));
    }

    #[test]
    fn enum_text_and_numbers() {
        let c = conv("varchar(10)", "enum('new','packed','shipped')");
        assert_eq!(c.convert(&bytes("packed")).unwrap(), Value::Enum(2));
        assert_eq!(c.convert(&bytes("3")).unwrap(), Value::Enum(3));
        assert!(c.convert(&bytes("lost")).is_err());
        let c = conv("enum('x','y')", "varchar(5)");
        assert_eq!(c.convert(&Value::Enum(2)).unwrap(), bytes("y"));
        assert_eq!(c.convert(&Value::Enum(0)).unwrap(), bytes(""));
        let c = conv("tinyint", "enum('a','b')");
        assert_eq!(c.convert(&Value::Int(2)).unwrap(), Value::Enum(2));
        assert!(c.convert(&Value::Int(3)).is_err());
        let c = conv("enum('a','b')", "int");
        assert_eq!(c.convert(&Value::Enum(2)).unwrap(), Value::Int(2));
    }

    #[test]
    fn set_by_label() {
        let c = conv("set('r','w','x')", "set('x','w','r','s')");
        assert_eq!(c.convert(&Value::Set(0b011)).unwrap(), Value::Set(0b110));
        assert_eq!(c.convert(&Value::Set(0)).unwrap(), Value::Set(0));
        let c = conv("set('r','w')", "set('r')");
        assert_eq!(
            c.convert(&Value::Set(0b10)).unwrap_err(),
            ConvertError::SetLabelMissing { label: "w".into() }
        );
        let c = conv("set('r','w')", "varchar(10)");
        assert_eq!(c.convert(&Value::Set(0b11)).unwrap(), bytes("r,w"));
        let c = conv("varchar(10)", "set('r','w')");
        assert_eq!(c.convert(&bytes("w,r")).unwrap(), Value::Set(0b11));
        assert_eq!(c.convert(&bytes("")).unwrap(), Value::Set(0));
    }

    #[test]
    fn temporal_conversions() {
        let c = conv("date", "datetime");
        assert_eq!(
            c.convert(&Value::Date {
                year: 2024,
                month: 2,
                day: 29
            })
            .unwrap(),
            Value::DateTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0
            }
        );
        let c = conv("datetime(6)", "datetime(3)");
        let dt = |micros| Value::DateTime {
            year: 2024,
            month: 1,
            day: 1,
            hour: 1,
            minute: 2,
            second: 3,
            micros,
        };
        assert_eq!(c.convert(&dt(123_000)).unwrap(), dt(123_000));
        assert!(matches!(
            c.convert(&dt(123_400)),
            Err(ConvertError::Rounded { .. })
        ));
        let c = conv("datetime", "date");
        assert!(c.convert(&dt(0)).is_err());
        let c = conv("timestamp", "datetime");
        assert_eq!(
            c.convert(&Value::Timestamp {
                secs: 86_400,
                micros: 0
            })
            .unwrap(),
            Value::DateTime {
                year: 1970,
                month: 1,
                day: 2,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0
            }
        );
        let c = conv("datetime", "timestamp");
        assert_eq!(
            c.convert(&Value::DateTime {
                year: 1970,
                month: 1,
                day: 2,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0
            })
            .unwrap(),
            Value::Timestamp {
                secs: 86_400,
                micros: 0
            }
        );
        assert!(c
            .convert(&Value::DateTime {
                year: 2040,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0
            })
            .is_err());
        let c = conv("varchar(30)", "datetime(2)");
        assert_eq!(
            c.convert(&bytes("2024-01-01 01:02:03.12")).unwrap(),
            dt(120_000)
        );
        assert!(c.convert(&bytes("yesterday")).is_err());
        let c = conv("time(6)", "time");
        assert!(c
            .convert(&Value::Time {
                negative: false,
                hours: 1,
                minutes: 0,
                seconds: 0,
                micros: 5
            })
            .is_err());
        let c = conv("datetime(3)", "varchar(30)");
        assert_eq!(
            c.convert(&dt(120_000)).unwrap(),
            bytes("2024-01-01 01:02:03.120")
        );
        let c = conv("int", "year");
        assert_eq!(c.convert(&Value::Int(2024)).unwrap(), Value::Year(2024));
        assert!(
            c.convert(&Value::Int(24)).is_err(),
            "2-digit years change meaning"
        );
        assert!(c.convert(&Value::Int(2156)).is_err());
        assert!(Conversion::new(
            &SourceType::Column(ColumnType::DateTime { fsp: 0 }),
            None,
            &table(&[("c", "time")], &[]).columns[0]
        )
        .is_err());
    }

    #[test]
    fn not_null_targets_refuse_null() {
        let old = table(&[("c", "int")], &[]);
        let new = table(&[("c", "int")], &["c"]);
        let c = Conversion::new(
            &SourceType::Column(old.columns[0].data_type.clone()),
            None,
            &new.columns[0],
        )
        .unwrap();
        assert_eq!(
            c.convert(&Value::Null).unwrap_err(),
            ConvertError::NullIntoNotNull
        );
        assert_eq!(
            conv("int", "bigint").convert(&Value::Null).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn unsupported_pairs_fail_at_compile_time() {
        let t = table(
            &[
                ("a", "json"),
                ("b", "int"),
                ("c", "point"),
                ("d", "uuid"),
                ("e", "bit(3)"),
            ],
            &[],
        );
        let src = |i: usize| SourceType::Column(t.columns[i].data_type.clone());
        assert!(matches!(
            Conversion::new(&src(0), None, &t.columns[1]),
            Err(ConvertError::Unsupported { .. })
        ));
        assert!(Conversion::new(&src(1), None, &t.columns[2]).is_err());
        assert!(Conversion::new(&src(3), None, &t.columns[1]).is_err());
        assert!(Conversion::new(
            &src(4),
            None,
            &table(&[("x", "varchar(3)")], &[]).columns[0]
        )
        .is_err());
        assert!(Conversion::new(&src(1), None, &t.columns[4]).is_ok());
    }

    #[test]
    fn json_and_geometry_and_vector() {
        let c = conv("json", "text");
        let j: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[true]}"#).unwrap();
        assert_eq!(
            c.convert(&Value::Json(j.clone())).unwrap(),
            bytes(r#"{"a": [true], "b": 1}"#)
        );
        let c = conv("text", "json");
        assert_eq!(
            c.convert(&bytes(r#"{"b":1,"a":[true]}"#)).unwrap(),
            Value::Json(j)
        );
        assert!(c.convert(&bytes("{nope")).is_err());
        let c = conv("geometry", "point");
        let mut point = vec![0, 0, 0, 0, 1, 1, 0, 0, 0];
        point.extend_from_slice(&[0; 16]);
        assert!(c.convert(&Value::Bytes(point.clone())).is_ok());
        let mut line = point.clone();
        line[5] = 2;
        assert!(matches!(
            c.convert(&Value::Bytes(line)),
            Err(ConvertError::WrongGeometry { found: 2, .. })
        ));
        let c = conv("vector(4)", "vector(2)");
        assert!(c.convert(&Value::Bytes(vec![0; 8])).is_ok());
        assert!(c.convert(&Value::Bytes(vec![0; 12])).is_err());
    }

    #[test]
    fn bit_conversions() {
        let c = conv("bit(8)", "bit(4)");
        assert_eq!(
            c.convert(&Value::Bit {
                bits: 0b1111,
                width: 8
            })
            .unwrap(),
            Value::Bit {
                bits: 0b1111,
                width: 4
            }
        );
        assert!(c
            .convert(&Value::Bit {
                bits: 0b1_0000,
                width: 8
            })
            .is_err());
        let c = conv("bit(8)", "int");
        assert_eq!(
            c.convert(&Value::Bit {
                bits: 200,
                width: 8
            })
            .unwrap(),
            Value::Int(200)
        );
    }

    #[test]
    fn number_text_formats() {
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(100.0), "100");
        assert_eq!(format_double(-1.5), "-1.5");
        assert_eq!(format_double(1e20), "1e20");
        assert_eq!(format_double(1.5e-7), "0.00000015");
        assert_eq!(format_double(1e-15), "0.000000000000001");
        assert_eq!(format_double(1e-16), "1e-16");
        assert_eq!(format_double(1e-14), "0.00000000000001");
        assert_eq!(format_double(1e15), "1e15");
        assert_eq!(format_double(1234567890123456.7), "1234567890123456.8");
        assert_eq!(format_double(-0.000001), "-0.000001");
        assert_eq!(format_double(-0.0), "0");
        assert_eq!(
            gcvt(-1e-300 / 3.0, MYSQL_EXPR_DOUBLE_WIDTH, false),
            "-3.33333333333333e-301"
        );
        assert_eq!(
            gcvt(1.2345678901234567e-14, MYSQL_EXPR_DOUBLE_WIDTH, false),
            "1.2345678901234567e-14"
        );
        assert_eq!(
            gcvt(1.2345678901234567e-14, WIDE_DOUBLE_WIDTH, false),
            "0.000000000000012345678901234567"
        );
        assert_eq!(
            gcvt(0.1 + 0.2, MYSQL_EXPR_DOUBLE_WIDTH, false),
            "0.30000000000000004"
        );
        assert_eq!(format_float(1.234_567_8), "1.23457");
        assert_eq!(format_float(3.25), "3.25");
        assert_eq!(format_double(0.00001), "0.00001");
        assert_eq!(format_double(0.0), "0");
        assert_eq!(format_double(123456789012345.0), "123456789012345");
        assert_eq!(format_float(0.1), "0.1");
        let c = conv("double", "varchar(20)");
        assert_eq!(c.convert(&Value::Double(2.5)).unwrap(), bytes("2.5"));
        let c = conv("decimal(6,2)", "varchar(20)");
        assert_eq!(
            c.convert(&Value::Decimal("-3.10".into())).unwrap(),
            bytes("-3.10")
        );
    }
}
