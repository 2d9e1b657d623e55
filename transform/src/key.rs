//! Row keys for routing and collapsing binlog events, equal when the server considers the rows'
//! keys equal.
//!
//! The appliers route each event by a hash of its primary key and collapse events on the same
//! key. Raw bytes are wrong for that: under a case-insensitive collation `'A'` and `'a'` are the
//! same row, under PAD SPACE `'a'` and `'a '` are, a DECIMAL `1.50` equals `1.5`, and a
//! BINARY(16) value read from the binlog may have lost its trailing zero bytes. A [`KeyCodec`],
//! compiled from the table schema, encodes each key part canonically:
//!
//! * integers (any width/sign, YEAR, BIT, ENUM index, SET mask) as one 128-bit number;
//! * DECIMAL by its exact normalized value (`1.50` = `1.5`, `-0` = `0`);
//! * FLOAT/DOUBLE by value (`-0.0` = `0.0`);
//! * text through the column's collation fold (see `collation.rs`): upper-cased for `_ci`,
//!   trailing spaces dropped for PAD SPACE collations and for CHAR columns, truncated to the
//!   key's prefix length (characters) for prefix keys;
//! * BINARY(N) padded with 0x00 to N bytes (trailing zeros are kept, never stripped),
//!   VARBINARY/BLOB as bytes, truncated to the prefix length (bytes) for prefix keys;
//! * dates and times by their fields, TIMESTAMP by its UTC seconds.
//!
//! Every part is length- or width-delimited, so different keys never run together.
//!
//! **Exactness.** A [`RowKey`] says whether it is exact ([`RowKey::is_exact`]): two exact keys
//! have equal bytes if and only if the server sees equal keys. A key with non-ASCII text (or
//! control characters) under a case/accent-insensitive collation, or under a language-specific
//! collation, is folded on a best effort and is *not* exact: another spelling the server
//! considers equal may fold differently. Callers must not collapse an inexact key with anything
//! and must apply it with a barrier (all appliers drained) — or ask the server for
//! `WEIGHT_STRING()`. [`KeyCodec::is_always_exact`] tells whether a table can produce inexact
//! keys at all (only text key parts under non-binary collations can).
//!
//! [`RowKey::route`] uses a fixed hash (FNV-1a 64 with a SplitMix64 finalizer), never a
//! randomly seeded one, so routing is stable across runs and processes.

use std::hash::{Hash, Hasher};

use thiserror::Error;

use crate::charset::Charset;
use crate::collation::Collation;
use crate::schema::{ColumnType, TableSchema};
use crate::value::Value;

/// Errors building a key codec or a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The table has no primary key.
    #[error("table {table} has no primary key")]
    NoPrimaryKey {
        /// Qualified table name.
        table: String,
    },
    /// A key column index outside the table.
    #[error("key column index {index} is outside the table ({columns} columns)")]
    BadColumn {
        /// The index.
        index: usize,
        /// Column count.
        columns: usize,
    },
    /// The row is shorter than the key needs.
    #[error("row has {len} values, key needs column {index}")]
    RowTooShort {
        /// Column index needed.
        index: usize,
        /// Row length.
        len: usize,
    },
    /// A key value count different from the key's parts.
    #[error("key has {expected} parts, got {actual} values")]
    WrongArity {
        /// Parts.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// NULL in a key part (a primary key never holds NULL; a unique key with NULL never
    /// conflicts).
    #[error("NULL in key column {column}")]
    Null {
        /// Column name.
        column: String,
    },
}

/// How one key part is encoded.
#[derive(Debug, Clone, PartialEq)]
enum Encoding {
    /// Numbers, dates, times, bytes of opaque types: canonical by value.
    Plain,
    /// Text through a collation.
    Text {
        charset: Charset,
        collation: Collation,
        fixed_char: bool,
    },
    /// Binary strings.
    Binary { pad_to: Option<u32> },
}

#[derive(Debug, Clone, PartialEq)]
struct Part {
    column: usize,
    name: String,
    prefix: Option<u32>,
    encoding: Encoding,
}

/// Encodes key values of one table into [`RowKey`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCodec {
    parts: Vec<Part>,
    always_exact: bool,
}

/// A key, canonical under the key columns' collations. Equality and hashing use the bytes only.
#[derive(Debug, Clone, Eq)]
pub struct RowKey {
    bytes: Vec<u8>,
    exact: bool,
}

impl PartialEq for RowKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl RowKey {
    /// The canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True when byte equality is exactly the server's key equality (see the module docs).
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// A stable 64-bit hash of the key (same value in every process and run).
    pub fn stable_hash(&self) -> u64 {
        stable_hash(&self.bytes)
    }

    /// The applier (0..n) this key goes to. `n == 0` is treated as 1.
    pub fn route(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        (self.stable_hash() % n as u64) as usize
    }
}

/// FNV-1a 64 over the bytes, then the SplitMix64 finalizer so low bits spread well.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl KeyCodec {
    /// A codec for the table's primary key.
    pub fn for_primary_key(schema: &TableSchema) -> Result<KeyCodec, KeyError> {
        if schema.primary_key.is_empty() {
            return Err(KeyError::NoPrimaryKey {
                table: schema.qualified_name(),
            });
        }
        let parts: Vec<(usize, Option<u32>)> = schema
            .primary_key
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, schema.primary_key_prefixes.get(i).copied().flatten()))
            .collect();
        KeyCodec::new(schema, &parts)
    }

    /// A codec for the given key parts: `(column index, prefix length)`.
    pub fn new(schema: &TableSchema, parts: &[(usize, Option<u32>)]) -> Result<KeyCodec, KeyError> {
        let mut out = Vec::with_capacity(parts.len());
        let mut always_exact = true;
        for &(column, prefix) in parts {
            let col = schema.columns.get(column).ok_or(KeyError::BadColumn {
                index: column,
                columns: schema.columns.len(),
            })?;
            let encoding = match &col.data_type {
                ColumnType::Char {
                    charset, collation, ..
                }
                | ColumnType::VarChar {
                    charset, collation, ..
                }
                | ColumnType::Text {
                    charset, collation, ..
                } => {
                    let collation = Collation::from_name(collation);
                    if !collation.binary {
                        always_exact = false;
                    }
                    Encoding::Text {
                        charset: Charset::from_name(charset),
                        collation,
                        fixed_char: matches!(col.data_type, ColumnType::Char { .. }),
                    }
                }
                ColumnType::Binary { len } => Encoding::Binary { pad_to: Some(*len) },
                ColumnType::VarBinary { .. } | ColumnType::Blob { .. } => {
                    Encoding::Binary { pad_to: None }
                }
                _ => Encoding::Plain,
            };
            out.push(Part {
                column,
                name: col.name.clone(),
                prefix,
                encoding,
            });
        }
        Ok(KeyCodec {
            parts: out,
            always_exact,
        })
    }

    /// Number of key parts.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// True for a key without parts.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The column indexes of the key parts, in key order.
    pub fn columns(&self) -> Vec<usize> {
        self.parts.iter().map(|p| p.column).collect()
    }

    /// True when every key this codec makes is exact (no text part under a non-binary
    /// collation).
    pub fn is_always_exact(&self) -> bool {
        self.always_exact
    }

    /// The key of a full row (all columns, in ordinal order).
    pub fn key_of(&self, row: &[Value]) -> Result<RowKey, KeyError> {
        let mut key = RowKey {
            bytes: Vec::with_capacity(16 * self.parts.len()),
            exact: true,
        };
        for part in &self.parts {
            let v = row.get(part.column).ok_or(KeyError::RowTooShort {
                index: part.column,
                len: row.len(),
            })?;
            encode(part, v, &mut key)?;
        }
        Ok(key)
    }

    /// The key of a row whose key values sit at `positions` (key order), e.g. a mapped row in
    /// insert-column order: like [`KeyCodec::key_of_values`] without gathering the values.
    pub fn key_at(&self, row: &[Value], positions: &[usize]) -> Result<RowKey, KeyError> {
        if positions.len() != self.parts.len() {
            return Err(KeyError::WrongArity {
                expected: self.parts.len(),
                actual: positions.len(),
            });
        }
        let mut key = RowKey {
            bytes: Vec::with_capacity(16 * self.parts.len()),
            exact: true,
        };
        for (part, &p) in self.parts.iter().zip(positions) {
            let v = row.get(p).ok_or(KeyError::RowTooShort {
                index: p,
                len: row.len(),
            })?;
            encode(part, v, &mut key)?;
        }
        Ok(key)
    }

    /// The key of the key values alone, in key order.
    pub fn key_of_values(&self, values: &[Value]) -> Result<RowKey, KeyError> {
        if values.len() != self.parts.len() {
            return Err(KeyError::WrongArity {
                expected: self.parts.len(),
                actual: values.len(),
            });
        }
        let mut key = RowKey {
            bytes: Vec::with_capacity(16 * self.parts.len()),
            exact: true,
        };
        for (part, v) in self.parts.iter().zip(values) {
            encode(part, v, &mut key)?;
        }
        Ok(key)
    }
}

const TAG_NUMBER: u8 = 1;
const TAG_DECIMAL: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_TEXT: u8 = 4;
const TAG_BYTES: u8 = 5;
const TAG_TEMPORAL: u8 = 6;
const TAG_OTHER: u8 = 7;

fn push_len_prefixed(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode(part: &Part, v: &Value, key: &mut RowKey) -> Result<(), KeyError> {
    let out = &mut key.bytes;
    match v {
        Value::Null => {
            return Err(KeyError::Null {
                column: part.name.clone(),
            })
        }
        Value::Int(i) => number(out, *i as i128),
        Value::UInt(u) => number(out, *u as i128),
        Value::Year(y) => number(out, *y as i128),
        Value::Bit { bits, .. } => number(out, *bits as i128),
        Value::Enum(i) => number(out, *i as i128),
        Value::Set(m) => number(out, *m as i128),
        Value::Float(f) => float(out, *f as f64),
        Value::Double(f) => float(out, *f),
        Value::Decimal(s) => push_len_prefixed(out, TAG_DECIMAL, normalize_decimal(s).as_bytes()),
        Value::Bytes(b) => match &part.encoding {
            Encoding::Text {
                charset,
                collation,
                fixed_char,
            } => {
                let mut folded = Vec::with_capacity(b.len());
                let exact = match charset.decode(b) {
                    Ok(text) => {
                        let text = match part.prefix {
                            Some(n) => match text.char_indices().nth(n as usize) {
                                Some((end, _)) => std::borrow::Cow::Owned(text[..end].to_string()),
                                None => text,
                            },
                            None => text,
                        };
                        collation.fold_into(&text, *fixed_char, &mut folded)
                    }
                    Err(_) => {
                        // Bytes the charset does not decode (or an unsupported charset):
                        // keep them, but only a binary collation makes that exact.
                        let raw = match part.prefix {
                            Some(n) => &b[..b.len().min(n as usize)],
                            None => &b[..],
                        };
                        folded.extend_from_slice(raw);
                        collation.binary && !collation.pad_space
                    }
                };
                key.exact &= exact;
                push_len_prefixed(out, TAG_TEXT, &folded);
            }
            Encoding::Binary { pad_to } => {
                let mut raw = std::borrow::Cow::Borrowed(&b[..]);
                if let Some(n) = pad_to {
                    if raw.len() < *n as usize {
                        raw.to_mut().resize(*n as usize, 0);
                    }
                }
                if let Some(p) = part.prefix {
                    if raw.len() > p as usize {
                        raw.to_mut().truncate(p as usize);
                    }
                }
                push_len_prefixed(out, TAG_BYTES, &raw);
            }
            Encoding::Plain => push_len_prefixed(out, TAG_BYTES, b),
        },
        Value::Date { year, month, day } => {
            out.push(TAG_TEMPORAL);
            out.push(0);
            out.extend_from_slice(&year.to_be_bytes());
            out.push(*month);
            out.push(*day);
        }
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => {
            out.push(TAG_TEMPORAL);
            out.push(1);
            out.extend_from_slice(&year.to_be_bytes());
            out.extend_from_slice(&[*month, *day, *hour, *minute, *second]);
            out.extend_from_slice(&micros.to_be_bytes());
        }
        Value::Timestamp { secs, micros } => {
            out.push(TAG_TEMPORAL);
            out.push(2);
            out.extend_from_slice(&secs.to_be_bytes());
            out.extend_from_slice(&micros.to_be_bytes());
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let total =
                crate::temporal::time_micros(*negative, *hours, *minutes, *seconds, *micros);
            out.push(TAG_TEMPORAL);
            out.push(3);
            out.extend_from_slice(&total.to_be_bytes());
        }
        Value::Json(j) => push_len_prefixed(out, TAG_OTHER, j.to_string().as_bytes()),
        Value::JsonSql(j) => push_len_prefixed(out, TAG_OTHER, j.sql.as_bytes()),
    }
    Ok(())
}

fn number(out: &mut Vec<u8>, v: i128) {
    out.push(TAG_NUMBER);
    out.extend_from_slice(&v.to_be_bytes());
}

fn float(out: &mut Vec<u8>, f: f64) {
    let f = if f == 0.0 { 0.0 } else { f };
    out.push(TAG_FLOAT);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
}

/// Canonical decimal text: no `+`, no leading zeros, no trailing fraction zeros, no `-0`.
pub fn normalize_decimal(s: &str) -> String {
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.is_empty();
    let mut out = String::with_capacity(s.len());
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::{table, table_with};
    use std::collections::HashSet;

    fn s(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    fn codec_for(col_type: &str, collation: &str) -> KeyCodec {
        let t = table_with(&[("k", col_type)], &["k"], |r| {
            if r.character_set_name.is_some() {
                r.collation_name = Some(collation.into());
                r.character_set_name =
                    Some(collation.split('_').next().unwrap_or("utf8mb4").into());
            }
        });
        KeyCodec::for_primary_key(&t).unwrap()
    }

    fn key(c: &KeyCodec, v: Value) -> RowKey {
        c.key_of(&[v]).unwrap()
    }

    #[test]
    fn key_at_equals_key_of_values() {
        let t = table(&[("a", "int"), ("b", "varchar(10)")], &["b", "a"]);
        let c = KeyCodec::for_primary_key(&t).unwrap();
        // A row in some other column order: b at 2, a at 0.
        let row = [Value::Int(7), Value::Null, s("x")];
        assert_eq!(
            c.key_at(&row, &[2, 0]).unwrap(),
            c.key_of_values(&[s("x"), Value::Int(7)]).unwrap()
        );
        assert!(matches!(
            c.key_at(&row, &[2]),
            Err(KeyError::WrongArity { .. })
        ));
        assert!(matches!(
            c.key_at(&row, &[2, 5]),
            Err(KeyError::RowTooShort { .. })
        ));
    }

    #[test]
    fn ci_collation_folds_case() {
        let c = codec_for("varchar(10)", "utf8mb4_0900_ai_ci");
        assert_eq!(key(&c, s("A")), key(&c, s("a")));
        assert_eq!(key(&c, s("Hello")), key(&c, s("hELLO")));
        assert_ne!(key(&c, s("a")), key(&c, s("b")));
        // 0900 collations are NO PAD.
        assert_ne!(key(&c, s("a")), key(&c, s("a ")));
        assert!(key(&c, s("a")).is_exact());
        assert!(!c.is_always_exact());
    }

    #[test]
    fn pad_space_ignores_trailing_spaces() {
        let c = codec_for("varchar(10)", "utf8mb4_general_ci");
        assert_eq!(key(&c, s("a")), key(&c, s("A  ")));
        let c = codec_for("varchar(10)", "latin1_bin");
        assert_eq!(key(&c, s("a")), key(&c, s("a ")));
        assert_ne!(key(&c, s("a")), key(&c, s("A")));
        // CHAR drops trailing spaces even under a NO PAD collation.
        let c = codec_for("char(5)", "utf8mb4_0900_ai_ci");
        assert_eq!(key(&c, s("a")), key(&c, s("a  ")));
    }

    #[test]
    fn binary_collation_is_exact_bytes() {
        let c = codec_for("varchar(10)", "utf8mb4_bin");
        assert!(c.is_always_exact());
        let k = key(&c, s("é"));
        assert!(k.is_exact());
        assert_ne!(k, key(&c, s("É")));
    }

    #[test]
    fn non_ascii_ci_keys_are_inexact() {
        let c = codec_for("varchar(10)", "utf8mb4_0900_ai_ci");
        let k = key(&c, s("é"));
        assert!(!k.is_exact());
        assert_eq!(k, key(&c, s("É")), "best-effort fold still merges case");
        assert!(!key(&c, s("a\u{1}")).is_exact());
        let c = codec_for("varchar(10)", "utf8mb4_tr_0900_ai_ci");
        assert!(!key(&c, s("i")).is_exact());
    }

    #[test]
    fn latin1_text_is_decoded_before_folding() {
        let c = codec_for("varchar(10)", "latin1_swedish_ci");
        assert_eq!(key(&c, Value::Bytes(vec![b'A', b'B'])), key(&c, s("ab")));
    }

    #[test]
    fn binary_n_keeps_and_pads_trailing_zeros() {
        let t = table(&[("k", "binary(4)")], &["k"]);
        let c = KeyCodec::for_primary_key(&t).unwrap();
        let full = key(&c, Value::Bytes(vec![1, 2, 0, 0]));
        let stripped = key(&c, Value::Bytes(vec![1, 2]));
        assert_eq!(
            full, stripped,
            "binlog may strip trailing zeros of BINARY(N)"
        );
        assert_ne!(full, key(&c, Value::Bytes(vec![1, 2, 0, 1])));
        let t = table(&[("k", "varbinary(4)")], &["k"]);
        let c = KeyCodec::for_primary_key(&t).unwrap();
        assert_ne!(
            key(&c, Value::Bytes(vec![1, 2, 0])),
            key(&c, Value::Bytes(vec![1, 2]))
        );
        assert!(c.is_always_exact());
    }

    #[test]
    fn decimal_keys_by_value() {
        let c = codec_for("decimal(10,2)", "");
        assert_eq!(
            key(&c, Value::Decimal("1.50".into())),
            key(&c, Value::Decimal("1.5".into()))
        );
        assert_eq!(
            key(&c, Value::Decimal("-0.00".into())),
            key(&c, Value::Decimal("0".into()))
        );
        assert_eq!(
            key(&c, Value::Decimal("007.10".into())),
            key(&c, Value::Decimal("7.1".into()))
        );
        assert_ne!(
            key(&c, Value::Decimal("1.51".into())),
            key(&c, Value::Decimal("1.5".into()))
        );
        assert_ne!(
            key(&c, Value::Decimal("-1".into())),
            key(&c, Value::Decimal("1".into()))
        );
        assert_eq!(normalize_decimal("+0012.3400"), "12.34");
        assert_eq!(normalize_decimal("-0.000"), "0");
        assert_eq!(normalize_decimal("100"), "100");
    }

    #[test]
    fn integers_and_floats_by_value() {
        let c = codec_for("bigint", "");
        assert_eq!(key(&c, Value::Int(5)), key(&c, Value::UInt(5)));
        assert_ne!(key(&c, Value::Int(-1)), key(&c, Value::UInt(u64::MAX)));
        let c = codec_for("double", "");
        assert_eq!(key(&c, Value::Double(0.0)), key(&c, Value::Double(-0.0)));
        assert_eq!(key(&c, Value::Float(0.5)), key(&c, Value::Double(0.5)));
    }

    #[test]
    fn composite_keys_do_not_run_together() {
        let t = table(&[("a", "varchar(10)"), ("b", "varchar(10)")], &["a", "b"]);
        let c = KeyCodec::for_primary_key(&t).unwrap();
        let k1 = c.key_of(&[s("ab"), s("c")]).unwrap();
        let k2 = c.key_of(&[s("a"), s("bc")]).unwrap();
        assert_ne!(k1, k2);
        assert_eq!(c.key_of_values(&[s("AB"), s("C")]).unwrap(), k1);
        assert!(matches!(
            c.key_of_values(&[s("a")]),
            Err(KeyError::WrongArity { .. })
        ));
        assert!(matches!(
            c.key_of(&[s("a")]),
            Err(KeyError::RowTooShort { .. })
        ));
        assert!(matches!(
            c.key_of(&[Value::Null, s("a")]),
            Err(KeyError::Null { .. })
        ));
    }

    #[test]
    fn prefix_keys_truncate() {
        let mut t = table(&[("k", "varchar(10)")], &["k"]);
        t.primary_key_prefixes = vec![Some(3)];
        let c = KeyCodec::for_primary_key(&t).unwrap();
        assert_eq!(key(&c, s("abcd")), key(&c, s("ABCE")));
        assert_ne!(key(&c, s("abd")), key(&c, s("abc")));
        assert_eq!(key(&c, s("héllo")), key(&c, s("HÉLp")));
    }

    #[test]
    fn temporal_keys() {
        let c = codec_for("datetime(6)", "");
        let dt = |micros| Value::DateTime {
            year: 2024,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            micros,
        };
        assert_eq!(key(&c, dt(1)), key(&c, dt(1)));
        assert_ne!(key(&c, dt(1)), key(&c, dt(2)));
        let c = codec_for("time", "");
        let t = |negative| Value::Time {
            negative,
            hours: 0,
            minutes: 0,
            seconds: 0,
            micros: 0,
        };
        assert_eq!(key(&c, t(true)), key(&c, t(false)), "-00:00:00 is 00:00:00");
    }

    /// `stable_hash(b"abc")`, pinned: routing must never change between releases.
    const PINNED_ABC: u64 = 996_580_060_897_260_808;

    #[test]
    fn routing_is_stable_and_spread() {
        let c = codec_for("bigint", "");
        let k = key(&c, Value::Int(42));
        // Fixed hash: the same value in every run (guards against a seeded hasher).
        assert_eq!(k.stable_hash(), stable_hash(k.as_bytes()));
        assert_eq!(stable_hash(b""), stable_hash(b""));
        assert_eq!(stable_hash(b"abc"), PINNED_ABC);
        assert_eq!(k.route(0), 0);
        assert_eq!(k.route(1), 0);
        let mut buckets = [0usize; 4];
        for i in 0..4000 {
            buckets[key(&c, Value::Int(i)).route(4)] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
        // Case variants route together under a _ci collation.
        let c = codec_for("varchar(10)", "utf8mb4_general_ci");
        assert_eq!(key(&c, s("Key")).route(8), key(&c, s("kEY ")).route(8));
        let set: HashSet<RowKey> = [key(&c, s("x")), key(&c, s("X"))].into_iter().collect();
        assert_eq!(set.len(), 1);
    }
}
