//! XA transactions: a prepared branch's rows are in the binlog at `XA PREPARE`, before anyone
//! knows whether it will commit. rowshift applies them there (the rows stay locked on the
//! source until the branch ends, so nothing else changes them in between) and keeps a copy;
//! when `XA ROLLBACK` follows, the decoder emits the inverse changes (each row back to its
//! before image, newest first) so the target ends where the source does.
//!
//! The copies are bounded ([`MAX_HELD_ROWS`] over all prepared branches); a branch past the
//! bound is remembered by its XID only, and its rollback stops the run with what to do.

use crate::event::{RowChange, RowKind};
use crate::position::Position;
use std::collections::HashMap;

/// Rows kept over all prepared XA branches at once.
pub const MAX_HELD_ROWS: usize = 100_000;

/// An XA transaction identifier: format ID, global transaction ID and branch qualifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xid {
    /// formatID (1 unless given).
    pub format_id: i64,
    /// gtrid bytes.
    pub gtrid: Vec<u8>,
    /// bqual bytes (empty unless given).
    pub bqual: Vec<u8>,
}

impl std::fmt::Display for Xid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        write!(
            f,
            "X'{}',X'{}',{}",
            hex(&self.gtrid),
            hex(&self.bqual),
            self.format_id
        )
    }
}

/// The XID of an `XA_PREPARE_LOG_EVENT` body (one_phase, formatID, gtrid and bqual lengths,
/// then the bytes; the same layout on MySQL and MariaDB).
pub fn xid_of_prepare(body: &[u8]) -> Option<Xid> {
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(body.get(i..i + 4)?.try_into().ok()?))
    };
    let format_id = i64::from(u32_at(1)? as i32);
    let g = u32_at(5)? as usize;
    let b = u32_at(9)? as usize;
    let data = body.get(13..13 + g + b)?;
    Some(Xid {
        format_id,
        gtrid: data[..g].to_vec(),
        bqual: data[g..].to_vec(),
    })
}

/// True when an `XA_PREPARE_LOG_EVENT` body is a one-phase commit (its first byte), which
/// ends the branch at once.
pub fn is_one_phase(body: &[u8]) -> bool {
    body.first() == Some(&1)
}

/// How an `XA COMMIT|ROLLBACK` statement ends a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XaEnd {
    /// `XA COMMIT xid` (a prepared branch) or `XA COMMIT xid ONE PHASE`.
    Commit(Xid),
    /// `XA ROLLBACK xid`.
    Rollback(Xid),
}

/// Parses `XA COMMIT xid [ONE PHASE]` / `XA ROLLBACK xid` as the servers log them
/// (`X'..',X'..',n`; quoted strings and defaults are accepted too). `None` for other text.
pub fn parse_end(query: &str) -> Option<XaEnd> {
    let q = query.trim_start();
    let rest = strip_word(q, "XA")?;
    let (commit, rest) = match strip_word(rest, "COMMIT") {
        Some(r) => (true, r),
        None => (false, strip_word(rest, "ROLLBACK")?),
    };
    let mut s = rest.trim_start();
    let gtrid = parse_string(&mut s)?;
    let mut bqual = Vec::new();
    let mut format_id = 1i64;
    if let Some(r) = s.trim_start().strip_prefix(',') {
        s = r.trim_start();
        bqual = parse_string(&mut s)?;
        if let Some(r) = s.trim_start().strip_prefix(',') {
            let r = r.trim_start();
            let end = r
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(r.len());
            format_id = r[..end].parse().ok()?;
            s = &r[end..];
        }
    }
    let tail = s.trim().trim_end_matches(';').trim();
    let ok_tail = tail.is_empty() || (commit && tail.eq_ignore_ascii_case("ONE PHASE"));
    if !ok_tail {
        return None;
    }
    let xid = Xid {
        format_id,
        gtrid,
        bqual,
    };
    Some(if commit {
        XaEnd::Commit(xid)
    } else {
        XaEnd::Rollback(xid)
    })
}

fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(|c: char| c.is_whitespace()))
        .then(|| rest.trim_start())
}

/// One XID part: `X'hex'`, `0xhex`, `'text'` or `"text"` (doubled quotes and backslash
/// escapes of the quote allowed).
fn parse_string(s: &mut &str) -> Option<Vec<u8>> {
    let t = *s;
    if let Some(r) = t.strip_prefix("X'").or_else(|| t.strip_prefix("x'")) {
        let end = r.find('\'')?;
        let bytes = decode_hex(&r[..end])?;
        *s = &r[end + 1..];
        return Some(bytes);
    }
    if let Some(r) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let end = r.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(r.len());
        let bytes = decode_hex(&r[..end])?;
        *s = &r[end..];
        return Some(bytes);
    }
    let quote = t.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut out = Vec::new();
    let mut chars = t[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            let (_, e) = chars.next()?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(e.encode_utf8(&mut buf).as_bytes());
        } else if c == quote {
            if t[1 + i + 1..].starts_with(quote) {
                chars.next();
                out.push(quote as u8);
            } else {
                *s = &t[1 + i + 1..];
                return Some(out);
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    None
}

fn decode_hex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The change that undoes `r` (its before image back; the after image of an insert gone).
pub fn inverse(mut r: RowChange) -> RowChange {
    r.kind = match r.kind {
        RowKind::Insert => RowKind::Delete,
        RowKind::Update => RowKind::Update,
        RowKind::Delete => RowKind::Insert,
    };
    std::mem::swap(&mut r.before, &mut r.after);
    if let Some(a) = &mut r.absent {
        std::mem::swap(&mut a.before, &mut a.after);
    }
    r
}

/// What is kept of one XA branch.
#[derive(Debug)]
enum Held {
    /// Its rows for the watched tables, in binlog order.
    Rows(Vec<RowChange>),
    /// It had more rows than could be kept: how many.
    TooMany(usize),
}

/// Rows of XA branches: the one being read, and the prepared ones awaiting their end.
#[derive(Debug, Default)]
pub struct XaHold {
    /// The branch being read (between `XA START` and `XA PREPARE`); `None` outside one.
    current: Option<Held>,
    prepared: HashMap<Xid, Held>,
    /// Rows kept in `prepared`.
    held_rows: usize,
    /// The commit before each branch in `prepared`, oldest branch first.
    before: Vec<(Xid, Position)>,
}

impl XaHold {
    /// An XA branch starts: its rows are kept from now on.
    pub fn start(&mut self) {
        if self.current.is_none() {
            self.current = Some(Held::Rows(Vec::new()));
        }
    }

    /// True while inside an XA branch.
    pub fn in_branch(&self) -> bool {
        self.current.is_some()
    }

    /// Keep a copy of `r` (a row of the current branch), within the bound.
    pub fn keep(&mut self, r: &RowChange) {
        let over = match &mut self.current {
            None => return,
            Some(Held::TooMany(n)) => {
                *n += 1;
                return;
            }
            Some(Held::Rows(rows)) if self.held_rows + rows.len() < MAX_HELD_ROWS => {
                rows.push(r.clone());
                return;
            }
            Some(Held::Rows(rows)) => rows.len() + 1,
        };
        // Over the bound: count the branch's rows from here on, keep none of them.
        self.current = Some(Held::TooMany(over));
    }

    /// The current branch was prepared as `xid`: keep its rows until it ends. `before` is the
    /// commit before the branch, where a restarted stream finds it again.
    pub fn prepared(&mut self, xid: Xid, before: &Position) {
        let held = match self.current.take() {
            None => return,
            Some(Held::Rows(rows)) if rows.is_empty() => return,
            Some(held) => held,
        };
        self.before.retain(|(x, _)| *x != xid);
        self.before.push((xid.clone(), before.clone()));
        if let Held::Rows(rows) = &held {
            self.held_rows += rows.len();
        }
        if let Some(Held::Rows(old)) = self.prepared.insert(xid, held) {
            self.held_rows -= old.len();
        }
    }

    /// Where a restarted stream must begin to read every open prepared branch again: the commit
    /// before the oldest one; `None` when no kept branch is open.
    pub fn resume_before(&self) -> Option<&Position> {
        self.before.first().map(|(_, p)| p)
    }

    /// A transaction ended: a branch still being read (no `XA PREPARE`: a plain commit or
    /// `XA COMMIT .. ONE PHASE`) keeps nothing.
    pub fn ended(&mut self) {
        self.current = None;
    }

    /// The branch `xid` ended. For a rollback of a branch whose rows were kept: the changes
    /// undoing them, newest first (`Ok(None)`: nothing of this branch was applied).
    /// `Err(rows)`: it had too many rows to keep.
    pub fn finish(&mut self, end: &XaEnd) -> Result<Option<Vec<RowChange>>, usize> {
        let (xid, rollback) = match end {
            XaEnd::Commit(x) => (x, false),
            XaEnd::Rollback(x) => (x, true),
        };
        let held = self.prepared.remove(xid);
        self.before.retain(|(x, _)| x != xid);
        if let Some(Held::Rows(rows)) = &held {
            self.held_rows -= rows.len();
        }
        match (held, rollback) {
            (Some(Held::Rows(rows)), true) => {
                Ok(Some(rows.into_iter().rev().map(inverse).collect()))
            }
            (Some(Held::TooMany(n)), true) => Err(n),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventPos, SchemaSource, TableDef, TableRef};
    use rowshift_transform::value::Value;
    use std::sync::Arc;

    fn xid(g: &str) -> Xid {
        Xid {
            format_id: 1,
            gtrid: g.as_bytes().to_vec(),
            bqual: Vec::new(),
        }
    }

    #[test]
    fn ends_parse_as_the_servers_log_them() {
        let full = |g: &str, b: &str, f: i64| Xid {
            format_id: f,
            gtrid: g.as_bytes().to_vec(),
            bqual: b.as_bytes().to_vec(),
        };
        let cases = [
            (
                "XA ROLLBACK X'6162',X'',1",
                Some(XaEnd::Rollback(xid("ab"))),
            ),
            (
                "XA COMMIT X'6162',X'7a',7",
                Some(XaEnd::Commit(full("ab", "z", 7))),
            ),
            (
                "XA COMMIT X'6162',X'',1 ONE PHASE",
                Some(XaEnd::Commit(xid("ab"))),
            ),
            ("xa rollback 'ab'", Some(XaEnd::Rollback(xid("ab")))),
            (
                "XA ROLLBACK 'it''s', 'q', 3",
                Some(XaEnd::Rollback(full("it's", "q", 3))),
            ),
            ("XA ROLLBACK 0x6162", Some(XaEnd::Rollback(xid("ab")))),
            ("XA END 'ab'", None),
            ("XA ROLLBACK X'6'", None),
            ("XA ROLLBACK 'ab' garbage", None),
            ("XA ROLLBACK", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_end(text), want, "{text}");
        }
    }

    #[test]
    fn prepare_body_gives_the_xid() {
        let mut body = vec![0u8];
        body.extend_from_slice(&7i32.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(b"abz");
        assert_eq!(
            xid_of_prepare(&body),
            Some(Xid {
                format_id: 7,
                gtrid: b"ab".to_vec(),
                bqual: b"z".to_vec()
            })
        );
        assert_eq!(xid_of_prepare(&body[..14]), None);
        assert_eq!(xid_of_prepare(&[]), None);
    }

    fn row(kind: RowKind, before: Option<i64>, after: Option<i64>, n: u32) -> RowChange {
        let img = |v: Option<i64>| v.map(|x| vec![Value::Int(1), Value::Int(x)]);
        RowChange {
            table: TableRef::new("d", "t"),
            kind,
            before: img(before),
            after: img(after),
            columns: Arc::new(TableDef {
                table: TableRef::new("d", "t"),
                columns: Vec::new(),
                source: SchemaSource::TableMap,
            }),
            pos: EventPos {
                file: Arc::from("b.000001"),
                offset: 100,
                row: n,
            },
            gtid: None,
            absent: None,
        }
    }

    #[test]
    fn rollback_undoes_newest_first() {
        let mut h = XaHold::default();
        h.start();
        assert!(h.in_branch());
        let rows = [
            row(RowKind::Insert, None, Some(5), 0),
            row(RowKind::Update, Some(5), Some(6), 1),
            row(RowKind::Delete, Some(6), None, 2),
        ];
        for r in &rows {
            h.keep(r);
        }
        h.prepared(xid("a"), &at(10));
        assert!(!h.in_branch());
        let undo = h
            .finish(&XaEnd::Rollback(xid("a")))
            .unwrap()
            .expect("rows kept");
        let kinds: Vec<_> = undo.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [RowKind::Insert, RowKind::Update, RowKind::Delete]);
        assert_eq!(undo[0].after, rows[2].before);
        assert_eq!(undo[1].before, rows[1].after);
        assert_eq!(undo[1].after, rows[1].before);
        assert_eq!(undo[2].before, rows[0].after);
        assert_eq!(undo[2].after, None);
        // Once ended, nothing is kept.
        assert_eq!(h.finish(&XaEnd::Rollback(xid("a"))), Ok(None));
        assert_eq!(h.held_rows, 0);
    }

    fn at(offset: u64) -> Position {
        Position::at("binlog.000001", offset)
    }

    #[test]
    fn restarts_begin_before_the_oldest_open_branch() {
        let mut h = XaHold::default();
        let branch = |h: &mut XaHold, name: &str, before: u64| {
            h.start();
            h.keep(&row(RowKind::Insert, None, Some(before as i64), 0));
            h.prepared(xid(name), &at(before));
        };
        assert_eq!(h.resume_before(), None);
        branch(&mut h, "a", 100);
        branch(&mut h, "b", 200);
        assert_eq!(h.resume_before(), Some(&at(100)));
        assert!(h.finish(&XaEnd::Commit(xid("a"))).is_ok());
        assert_eq!(h.resume_before(), Some(&at(200)));
        // A branch without kept rows holds nothing back.
        h.start();
        h.prepared(xid("empty"), &at(300));
        assert!(h.finish(&XaEnd::Rollback(xid("b"))).is_ok());
        assert_eq!(h.resume_before(), None);
        // Handed to a new connection's decoder, the kept branches go with it.
        branch(&mut h, "c", 400);
        let taken = std::mem::take(&mut h);
        assert_eq!(taken.resume_before(), Some(&at(400)));
    }

    #[test]
    fn commit_and_unknown_branches_undo_nothing() {
        let mut h = XaHold::default();
        h.start();
        h.keep(&row(RowKind::Insert, None, Some(1), 0));
        h.prepared(xid("c"), &at(10));
        assert_eq!(h.finish(&XaEnd::Commit(xid("c"))), Ok(None));
        assert_eq!(h.finish(&XaEnd::Rollback(xid("other"))), Ok(None));
        // A one-phase commit ends the branch without a prepare.
        h.start();
        h.keep(&row(RowKind::Insert, None, Some(2), 0));
        h.ended();
        assert!(!h.in_branch());
        assert_eq!(h.held_rows, 0);
    }

    #[test]
    fn branches_past_the_bound_are_refused_at_rollback() {
        let mut h = XaHold::default();
        h.start();
        for i in 0..=MAX_HELD_ROWS {
            h.keep(&row(RowKind::Insert, None, Some(i as i64), 0));
        }
        h.prepared(xid("big"), &at(10));
        assert_eq!(h.held_rows, 0);
        assert!(h.finish(&XaEnd::Rollback(xid("big"))).is_err());
    }
}
