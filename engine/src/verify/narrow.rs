//! Narrowing a differing chunk down to rows: per-row hashes of the chunk from both sides are
//! diffed by primary key here, in Rust, and both sides' values of each differing row fetched.
//!
//! Keys are matched by their bytes (the text protocol's rendering), not through a collation, so
//! `'a'` on one side and `'A'` on the other are two different keys: one missing, one extra.

use super::canon::{Compiled, SideSql};
use super::jsoncanon;
use super::report::DiffKind;
use super::{Side, VerifyError};
use crate::copy::{key_literal, KeyLiteral};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use std::collections::HashMap;

/// A key's bytes, column by column.
pub(crate) type KeyBytes = Vec<Vec<u8>>;

/// One row's fingerprint: its key, its server-side hash, and its Rust-side JSON columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowPrint {
    /// The key as the server sent it (for literals).
    pub key: Vec<Value>,
    /// The key's bytes (for matching).
    pub key_bytes: KeyBytes,
    /// 32-bit row hash (CRC32) computed by the server.
    pub hash: u64,
    /// Canonical JSON of the client-side columns.
    pub client: Vec<Option<String>>,
}

impl RowPrint {
    fn same_content(&self, other: &RowPrint) -> bool {
        self.hash == other.hash && self.client == other.client
    }
}

/// A differing row, with both sides' shown values once fetched.
#[derive(Debug, Clone)]
pub(crate) struct FoundDiff {
    /// What differs.
    pub kind: DiffKind,
    /// The key (old side's rendering when present).
    pub key: Vec<Value>,
    /// The key's bytes.
    pub key_bytes: KeyBytes,
    /// The old row's fingerprint.
    pub old_print: Option<RowPrint>,
    /// The new row's fingerprint.
    pub new_print: Option<RowPrint>,
    /// The old row's shown values (one per compared column), when fetched.
    pub old_values: Option<Vec<Option<Vec<u8>>>>,
    /// The new row's shown values, when fetched.
    pub new_values: Option<Vec<Option<Vec<u8>>>>,
}

/// Diff two chunks' fingerprints by key.
pub(crate) fn diff_rows(old: Vec<RowPrint>, new: Vec<RowPrint>) -> Vec<FoundDiff> {
    let mut by_key: HashMap<KeyBytes, RowPrint> = HashMap::with_capacity(new.len());
    let mut new_order = Vec::with_capacity(new.len());
    for r in new {
        new_order.push(r.key_bytes.clone());
        by_key.insert(r.key_bytes.clone(), r);
    }
    let mut out = Vec::new();
    for o in old {
        match by_key.remove(&o.key_bytes) {
            Some(n) if n.same_content(&o) => {}
            Some(n) => out.push(FoundDiff {
                kind: DiffKind::Changed,
                key: o.key.clone(),
                key_bytes: o.key_bytes.clone(),
                old_print: Some(o),
                new_print: Some(n),
                old_values: None,
                new_values: None,
            }),
            None => out.push(FoundDiff {
                kind: DiffKind::MissingInNew,
                key: o.key.clone(),
                key_bytes: o.key_bytes.clone(),
                old_print: Some(o),
                new_print: None,
                old_values: None,
                new_values: None,
            }),
        }
    }
    for k in new_order {
        if let Some(n) = by_key.remove(&k) {
            out.push(FoundDiff {
                kind: DiffKind::ExtraInNew,
                key: n.key.clone(),
                key_bytes: k,
                old_print: None,
                new_print: Some(n),
                old_values: None,
                new_values: None,
            });
        }
    }
    out
}

/// Match rows reported missing in one chunk and extra in another (the two sides ordered the
/// key differently): equal content cancels, different content becomes one changed row.
pub(crate) fn reconcile(diffs: Vec<FoundDiff>) -> Vec<FoundDiff> {
    let mut extras: HashMap<KeyBytes, FoundDiff> = HashMap::new();
    let mut rest = Vec::with_capacity(diffs.len());
    for d in diffs {
        if d.kind == DiffKind::ExtraInNew {
            extras.insert(d.key_bytes.clone(), d);
        } else {
            rest.push(d);
        }
    }
    let mut out = Vec::with_capacity(rest.len() + extras.len());
    for mut d in rest {
        if d.kind == DiffKind::MissingInNew {
            if let Some(extra) = extras.remove(&d.key_bytes) {
                let same = match (&d.old_print, &extra.new_print) {
                    (Some(o), Some(n)) => o.same_content(n),
                    _ => false,
                };
                if same {
                    continue;
                }
                d.kind = DiffKind::Changed;
                d.new_print = extra.new_print;
                d.new_values = extra.new_values;
            }
        }
        out.push(d);
    }
    out.extend(extras.into_values());
    out.sort_by(|a, b| key_order(&a.key_bytes, &b.key_bytes));
    out
}

/// Keys in a readable order: numbers numerically, anything else by bytes.
fn key_order(a: &KeyBytes, b: &KeyBytes) -> std::cmp::Ordering {
    let num = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<i128>().ok();
    for (x, y) in a.iter().zip(b) {
        let o = match (num(x), num(y)) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Fetch a chunk's fingerprints on one side.
pub(crate) async fn fetch_prints(
    conn: &mut Conn,
    side_sql: &SideSql,
    side: Side,
    range: &str,
    client_columns: usize,
) -> Result<Vec<RowPrint>, VerifyError> {
    let mut select = vec![side_sql.key_list.clone(), side_sql.row_hash.clone()];
    select.extend(side_sql.client_exprs.iter().cloned());
    let sql = format!(
        "SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE {range}",
        select.join(","),
        side_sql.table
    );
    let rows: Vec<Row> = conn
        .query(sql)
        .await
        .map_err(VerifyError::sql(side, "fetching per-row hashes"))?;
    let nkey = side_sql.key.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = row
            .unwrap_raw()
            .into_iter()
            .map(|v| v.unwrap_or(Value::NULL));
        let key: Vec<Value> = values.by_ref().take(nkey).collect();
        let hash = parse_u64(values.next().unwrap_or(Value::NULL), side, "row hash")?;
        let client: Vec<Option<String>> = values
            .take(client_columns)
            .map(|v| jsoncanon::comparable(value_bytes(&v).as_deref()))
            .collect();
        out.push(RowPrint {
            key_bytes: key
                .iter()
                .map(|v| value_bytes(v).unwrap_or_default())
                .collect(),
            key,
            hash,
            client,
        });
    }
    Ok(out)
}

/// Fetch the shown values of the row with `key` on one side; `None` when it is not there.
pub(crate) async fn fetch_values(
    conn: &mut Conn,
    side_sql: &SideSql,
    side: Side,
    key: &[Value],
) -> Result<Option<Vec<Option<Vec<u8>>>>, VerifyError> {
    let mut conds = Vec::new();
    for (k, v) in side_sql.key.iter().zip(key) {
        let lit = key_literal(v.clone(), &k.literal);
        conds.push(format!("{} = {lit}", k.name));
        if matches!(k.literal, KeyLiteral::Text { .. }) {
            // The collation may call 'a' and 'A' equal: pin the exact bytes.
            let mut hex = String::new();
            crate::sqlvalue::push_hex(&mut hex, &value_bytes(v).unwrap_or_default());
            conds.push(format!("CAST({} AS BINARY) = {hex}", k.name));
        }
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE {} LIMIT 1",
        side_sql.display_exprs.join(","),
        side_sql.table,
        conds.join(" AND ")
    );
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(VerifyError::sql(side, "fetching a differing row"))?;
    Ok(row.map(|r| {
        r.unwrap_raw()
            .into_iter()
            .map(|v| value_bytes(&v.unwrap_or(Value::NULL)))
            .collect()
    }))
}

/// Fill in the shown values of `diffs` (up to `budget` rows), on the snapshots of this chunk.
pub(crate) async fn fetch_all_values(
    old: &mut Conn,
    new: &mut Conn,
    compiled: &Compiled,
    diffs: &mut [FoundDiff],
    budget: &std::sync::atomic::AtomicUsize,
) -> Result<(), VerifyError> {
    use std::sync::atomic::Ordering;
    for d in diffs.iter_mut() {
        let left = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1));
        if left.is_err() {
            break;
        }
        if d.old_print.is_some() {
            d.old_values = fetch_values(old, &compiled.old, Side::Old, &d.key).await?;
        }
        if let Some(n) = &d.new_print {
            d.new_values = fetch_values(new, &compiled.new, Side::New, &n.key).await?;
        }
    }
    Ok(())
}

/// A value's bytes as the text protocol sends them; `None` for NULL.
pub(crate) fn value_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(b.clone()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::UInt(u) => Some(u.to_string().into_bytes()),
        other => Some(other.as_sql(true).into_bytes()),
    }
}

/// A number the query computes (COUNT, hashes).
pub(crate) fn parse_u64(v: Value, side: Side, what: &'static str) -> Result<u64, VerifyError> {
    match v {
        Value::UInt(u) => Ok(u),
        Value::Int(i) if i >= 0 => Ok(i as u64),
        Value::Bytes(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| VerifyError::BadValue {
                side,
                what,
                value: String::from_utf8_lossy(&b).into_owned(),
            }),
        other => Err(VerifyError::BadValue {
            side,
            what,
            value: format!("{other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, hash: u64) -> RowPrint {
        RowPrint {
            key: vec![Value::Bytes(key.as_bytes().to_vec())],
            key_bytes: vec![key.as_bytes().to_vec()],
            hash,
            client: vec![],
        }
    }

    #[test]
    fn rows_diff_by_key() {
        let old = vec![p("1", 10), p("2", 20), p("3", 30)];
        let new = vec![p("1", 10), p("2", 21), p("4", 40)];
        let d = diff_rows(old, new);
        let kinds: Vec<(DiffKind, &[u8])> = d
            .iter()
            .map(|d| (d.kind, d.key_bytes[0].as_slice()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (DiffKind::Changed, b"2".as_slice()),
                (DiffKind::MissingInNew, b"3".as_slice()),
                (DiffKind::ExtraInNew, b"4".as_slice())
            ]
        );
    }

    #[test]
    fn misplaced_rows_cancel_or_merge() {
        // Chunk 1 on the new side lacks "b" (ordered into chunk 2 there), with equal content;
        // "c" moved too but its content differs.
        let mut d = diff_rows(vec![p("b", 1), p("c", 2)], vec![]);
        d.extend(diff_rows(vec![], vec![p("b", 1), p("c", 3), p("z", 9)]));
        let r = reconcile(d);
        let kinds: Vec<(DiffKind, &[u8])> = r
            .iter()
            .map(|d| (d.kind, d.key_bytes[0].as_slice()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (DiffKind::Changed, b"c".as_slice()),
                (DiffKind::ExtraInNew, b"z".as_slice())
            ]
        );
    }

    #[test]
    fn counts_parse_strictly() {
        assert_eq!(
            parse_u64(Value::Bytes(b"42".to_vec()), Side::Old, "n").unwrap(),
            42
        );
        assert!(parse_u64(Value::Bytes(b"x".to_vec()), Side::Old, "n").is_err());
        assert!(parse_u64(Value::NULL, Side::New, "n").is_err());
    }
}
