//! Chunk boundaries by key arithmetic for a single integer primary key.
//!
//! Finding the boundary `n` rows ahead (`ORDER BY pk LIMIT 1 OFFSET n`) reads every index entry
//! of the old table once more, on top of the checksums' own pass: about a sixth of the server's
//! work. With one integer key column the boundary can be computed instead: the next chunk starts
//! at the first key after the previous chunk (one index seek, so gaps in the keys are skipped)
//! and spans `rows / density` key values, where the density (rows per key value, at most 1) is
//! measured on the chunks already compared. Until a chunk has been measured the keys are taken
//! as dense, which can only make chunks smaller than wished.
//!
//! A span wider than the largest chunk could hold too many rows where keys turn dense again; such
//! a chunk is bounded by the old `OFFSET` probe within its range, which reads at most that many
//! entries. Keys that are not integers after all (a `DECIMAL` key with fractions) fall back to
//! the `OFFSET` finder for that chunk. Every chunk is `(lower, upper]` with increasing bounds, so
//! the chunks partition both sides whatever the estimate.

use super::canon::{Compiled, SideSql};
use super::{Side, VerifyError};
use crate::copy::{after, key_literal, upto, KeyLiteral};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use std::collections::HashMap;

/// How much a chunk's key span may grow over the previous one's.
const MAX_GROWTH: f64 = 8.0;

/// Plans `(lower, upper]` chunks over one integer key column of the old side.
#[derive(Debug)]
pub(crate) struct KeyRanges {
    /// The largest key on the old side's snapshot.
    max: i128,
    /// Rows per key value, from the last measured chunk.
    density: f64,
    /// The span given to the previous chunk.
    last_step: i128,
    /// Span of every chunk handed out and not measured yet, by chunk number.
    spans: HashMap<u64, i128>,
}

impl KeyRanges {
    /// Key arithmetic for this table, or `None` when the old side's key is not one integer
    /// column (or the table is empty: one open chunk covers it).
    pub(crate) async fn open(
        finder: &mut Conn,
        compiled: &Compiled,
    ) -> Result<Option<KeyRanges>, VerifyError> {
        let side = &compiled.old;
        if compiled.single_chunk.is_some()
            || side.key.len() != 1
            || side.key[0].literal != KeyLiteral::Number
        {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {k} FROM {t} FORCE INDEX (PRIMARY) ORDER BY {k} DESC LIMIT 1",
            k = side.key_list,
            t = side.table
        );
        let max = first_value(finder, sql, "finding the largest key").await?;
        Ok(max.as_ref().and_then(as_int).map(KeyRanges::new))
    }

    fn new(max: i128) -> KeyRanges {
        KeyRanges {
            max,
            density: 1.0,
            last_step: 0,
            spans: HashMap::new(),
        }
    }

    /// The upper bound of chunk `index`, which starts after `lower`; `None` for the last chunk.
    pub(crate) async fn next_upper(
        &mut self,
        finder: &mut Conn,
        side: &SideSql,
        index: u64,
        lower: Option<&[Value]>,
        chunk_rows: u64,
        max_chunk_rows: u64,
    ) -> Result<Option<Vec<Value>>, VerifyError> {
        let filter = where_clause(side, lower, None);
        let sql = format!(
            "SELECT {k} FROM {t} FORCE INDEX (PRIMARY) {filter} ORDER BY {k} LIMIT 1",
            k = side.key_list,
            t = side.table
        );
        let Some(first) = first_value(finder, sql, "finding the next key").await? else {
            return Ok(None);
        };
        let Some(first) = as_int(&first) else {
            return offset_boundary(finder, side, lower, None, chunk_rows).await;
        };
        let Some(mut step) = self.step(first, chunk_rows) else {
            return Ok(None);
        };
        let mut upper = vec![int_value(first + step - 1)];
        if step > max_chunk_rows as i128 {
            let capped = offset_boundary(finder, side, lower, Some(&upper), max_chunk_rows).await?;
            if let Some(c) = capped {
                match c.first().and_then(as_int) {
                    Some(k) if k >= first => step = k - first + 1,
                    _ => return Ok(Some(c)),
                }
                upper = c;
            }
        }
        self.spans.insert(index, step);
        self.last_step = step;
        Ok(Some(upper))
    }

    /// Record the old side's row count of a compared chunk.
    pub(crate) fn measured(&mut self, index: u64, rows: u64) {
        if let Some(span) = self.spans.remove(&index) {
            if rows > 0 && span > 0 {
                self.density = (rows as f64 / span as f64).min(1.0);
            }
        }
    }

    /// Key values to give a chunk starting at `first`, or `None` when it reaches the last key.
    fn step(&self, first: i128, chunk_rows: u64) -> Option<i128> {
        let wished = chunk_rows.max(1) as f64 / self.density;
        let cap = (self.last_step as f64 * MAX_GROWTH).max(chunk_rows as f64);
        // `as` saturates, and no key span is wider than 2^65.
        let step = (wished.min(cap).ceil() as i128).max(1);
        (first.saturating_add(step - 1) < self.max).then_some(step)
    }
}

/// An integer key value, from the server's text or a binary value.
fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// A key bound as the server's text would give it.
fn int_value(k: i128) -> Value {
    Value::Bytes(k.to_string().into_bytes())
}

/// `WHERE` of the rows after `lower` and up to `upper`, or nothing.
fn where_clause(side: &SideSql, lower: Option<&[Value]>, upper: Option<&[Value]>) -> String {
    match range_sql(side, lower, upper) {
        Some(r) => format!("WHERE {r}"),
        None => String::new(),
    }
}

/// The condition of `(lower, upper]` on one side, `None` when unbounded.
pub(crate) fn range_sql(
    side: &SideSql,
    lower: Option<&[Value]>,
    upper: Option<&[Value]>,
) -> Option<String> {
    let lits = |vals: &[Value]| -> Vec<String> {
        vals.iter()
            .zip(&side.key)
            .map(|(v, k)| key_literal(v.clone(), &k.literal))
            .collect()
    };
    let mut parts = Vec::new();
    if let Some(l) = lower {
        parts.push(format!("({})", after(&side.key, &lits(l))));
    }
    if let Some(u) = upper {
        parts.push(format!("({})", upto(&side.key, &lits(u))));
    }
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

/// The key of the `rows`-th row after `lower` (and up to `upper`) on the old side; `None` when
/// fewer rows are there.
pub(crate) async fn offset_boundary(
    conn: &mut Conn,
    side: &SideSql,
    lower: Option<&[Value]>,
    upper: Option<&[Value]>,
    rows: u64,
) -> Result<Option<Vec<Value>>, VerifyError> {
    let sql = format!(
        "SELECT {k} FROM {t} FORCE INDEX (PRIMARY) {filter} ORDER BY {k} LIMIT 1 OFFSET {}",
        rows.saturating_sub(1),
        k = side.key_list,
        t = side.table,
        filter = where_clause(side, lower, upper),
    );
    let row: Option<Row> = conn.query_first(sql).await.map_err(VerifyError::sql(
        Side::Old,
        "finding the next chunk boundary",
    ))?;
    Ok(row.map(|r| {
        r.unwrap_raw()
            .into_iter()
            .map(|v| v.unwrap_or(Value::NULL))
            .collect()
    }))
}

/// The first column of the first row, if any.
async fn first_value(
    conn: &mut Conn,
    sql: String,
    doing: &'static str,
) -> Result<Option<Value>, VerifyError> {
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(VerifyError::sql(Side::Old, doing))?;
    Ok(row.and_then(|r| r.unwrap_raw().into_iter().next().flatten()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plan chunks over `keys` (sorted), measuring each chunk right after handing it out.
    fn plan(keys: &[i128], chunk_rows: u64) -> Vec<(i128, Option<i128>, u64)> {
        let mut r = KeyRanges::new(*keys.last().expect("keys"));
        let mut out = Vec::new();
        let mut lower: Option<i128> = None;
        for index in 0.. {
            let first = keys
                .iter()
                .copied()
                .find(|k| lower.is_none_or(|l| *k > l))
                .expect("a key after lower");
            let upper = r.step(first, chunk_rows).map(|s| first + s - 1);
            let rows = keys
                .iter()
                .filter(|k| lower.is_none_or(|l| **k > l) && upper.is_none_or(|u| **k <= u))
                .count() as u64;
            out.push((first, upper, rows));
            if let Some(u) = upper {
                r.spans.insert(index, u - first + 1);
                r.last_step = u - first + 1;
                r.measured(index, rows);
            } else {
                break;
            }
            lower = upper;
        }
        out
    }

    #[test]
    fn dense_keys_give_wished_chunks() {
        let keys: Vec<i128> = (1..=10_000).collect();
        let chunks = plan(&keys, 1_000);
        assert_eq!(chunks.len(), 10);
        assert!(chunks.iter().all(|c| c.2 == 1_000), "{chunks:?}");
        assert_eq!(chunks.iter().map(|c| c.2).sum::<u64>(), 10_000);
    }

    #[test]
    fn sparse_keys_widen_the_span() {
        let keys: Vec<i128> = (0..10_000).map(|i| -5_000_000 + i * 1_000).collect();
        let chunks = plan(&keys, 1_000);
        assert_eq!(chunks.iter().map(|c| c.2).sum::<u64>(), 10_000);
        // Dense at first (1 row per chunk), then growing by at most 8x, then about 1000 rows.
        assert_eq!(chunks[0].2, 1);
        assert!(chunks.len() < 20, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.2 <= 1_000), "{chunks:?}");
    }

    #[test]
    fn gaps_are_skipped_and_the_last_chunk_is_open() {
        let mut keys: Vec<i128> = (1..=2_500).collect();
        keys.extend([1_i128 << 62, (1 << 62) + 1, u64::MAX as i128]);
        let chunks = plan(&keys, 1_000);
        assert_eq!(chunks.iter().map(|c| c.2).sum::<u64>(), keys.len() as u64);
        assert_eq!(chunks.last().map(|c| c.1), Some(None));
        assert!(chunks.len() <= 5, "{chunks:?}");
    }

    #[test]
    fn one_key_is_one_open_chunk() {
        let chunks = plan(&[7], 1_000);
        assert_eq!(chunks, vec![(7, None, 1)]);
    }

    #[test]
    fn key_values_parse_from_text_and_binary() {
        assert_eq!(as_int(&Value::Bytes(b"-42".to_vec())), Some(-42));
        assert_eq!(
            as_int(&Value::Bytes(b"18446744073709551615".to_vec())),
            Some(u64::MAX as i128)
        );
        assert_eq!(as_int(&Value::Bytes(b"1.50".to_vec())), None);
        assert_eq!(as_int(&Value::UInt(3)), Some(3));
        assert_eq!(as_int(&Value::NULL), None);
        assert_eq!(int_value(-3), Value::Bytes(b"-3".to_vec()));
    }
}
