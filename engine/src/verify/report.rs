//! The verification report: a JSON document with stable field names (documented in
//! `docs/verify.md`; `format` names its version), the terminal summary, and the data of the HTML
//! page ([`super::html`]).
//!
//! Values are shown as text: numbers, dates and text as the server prints their canonical form
//! (DATETIME with 6 fractional digits, FLOAT widened to DOUBLE, text converted to UTF-8), JSON
//! documents compared in Rust in their canonical form, and binary strings (BINARY, VARBINARY,
//! BLOB, spatial) as `0x`-prefixed hex. SQL NULL is JSON `null`.

use super::canon::{Compiled, HashedBy};
use super::checksum::{ChunkRecord, Outcome};
use super::jsoncanon;
use super::narrow::FoundDiff;
use super::point::LockStats;
use super::schema::{TableInfo, TableRef};
use crate::conn::Endpoint;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `format` field of every report this version writes.
pub const FORMAT: &str = "rowshift-verify/1";

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Equal: safe to go on.
    #[serde(rename = "GO")]
    Go,
    /// Differences found.
    #[serde(rename = "NO-GO")]
    NoGo,
}

impl Verdict {
    /// `GO` / `NO-GO`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Go => "GO",
            Verdict::NoGo => "NO-GO",
        }
    }
}

/// What differs about one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In both tables with different values.
    Changed,
    /// In the old table only.
    MissingInNew,
    /// In the new table only.
    ExtraInNew,
}

impl DiffKind {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Changed => "changed",
            DiffKind::MissingInNew => "missing_in_new",
            DiffKind::ExtraInNew => "extra_in_new",
        }
    }
}

/// Column name → shown value, in column order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(pub Vec<(String, Option<String>)>);

impl Values {
    /// The value of `column`.
    pub fn get(&self, column: &str) -> Option<&Option<String>> {
        self.0.iter().find(|(c, _)| c == column).map(|(_, v)| v)
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One table of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Server URL, password removed.
    pub server: String,
    /// `mysql` or `mariadb`.
    pub flavor: super::Flavor,
    /// `VERSION()`.
    pub version: String,
    /// `db.table`.
    pub table: String,
}

/// One compared column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    /// The new table's column.
    pub name: String,
    /// The old side's expression.
    pub old_expr: String,
    /// The new column's type.
    pub new_type: String,
    /// Where it is hashed.
    pub hashed_by: HashedBy,
}

/// One differing row.
#[derive(Debug, Clone, Serialize)]
pub struct DiffRow {
    /// What differs.
    pub kind: DiffKind,
    /// The primary key.
    pub key: Values,
    /// Columns whose shown values differ (empty for missing/extra rows).
    pub differing_columns: Vec<String>,
    /// The old row (`null` when missing there or not fetched).
    pub old: Option<Values>,
    /// The new row.
    pub new: Option<Values>,
}

/// The differing rows.
#[derive(Debug, Clone, Serialize)]
pub struct Differences {
    /// Differing rows found (all of them, reported or not).
    pub total: u64,
    /// Rows in both tables with different values.
    pub changed: u64,
    /// Rows only in the old table.
    pub missing_in_new: u64,
    /// Rows only in the new table.
    pub extra_in_new: u64,
    /// True when `rows` lists fewer than `total` (see `max_reported_rows`).
    pub truncated: bool,
    /// The rows, by key.
    pub rows: Vec<DiffRow>,
}

/// One point of the progress chart.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressPoint {
    /// Milliseconds since the checksums started.
    pub elapsed_ms: f64,
    /// Old-side rows checked so far.
    pub rows_checked: u64,
    /// Whether this chunk matched.
    pub equal: bool,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Report format and version: [`FORMAT`].
    pub format: &'static str,
    /// GO or NO-GO.
    pub verdict: Verdict,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Whole run, ms.
    pub duration_ms: f64,
    /// Checksums only (after the consistent point), ms.
    pub checksum_ms: f64,
    /// Old-side rows compared per second of checksums.
    pub rows_per_second: f64,
    /// The old table.
    pub old: SideReport,
    /// The new table.
    pub new: SideReport,
    /// Both tables on one server.
    pub same_server: bool,
    /// Primary key columns.
    pub key_columns: Vec<String>,
    /// Compared columns.
    pub columns: Vec<ColumnReport>,
    /// The per-row hash and chunk aggregate.
    pub hash: &'static str,
    /// Chunks compared.
    pub chunks_checked: u64,
    /// Chunks whose checksums differed.
    pub chunks_differing: u64,
    /// Rows in the old table at the consistent point.
    pub rows_old: u64,
    /// Rows in the new table at the consistent point.
    pub rows_new: u64,
    /// The consistent point's lock.
    pub lock: LockStats,
    /// Differing rows.
    pub differences: Differences,
    /// Checksum progress, in finishing order.
    pub progress: Vec<ProgressPoint>,
    /// Remarks on how the comparison was done (e.g. why the table was one chunk).
    pub notes: Vec<String>,
}

/// The row hash, as named in reports.
pub const HASH: &str = "CRC32 of 'c1#..#cn#trailers' (canonical columns, strings as bytes, NULL as '', ISNULL/LENGTH trailers), SUM per chunk, with COUNT(*)";

pub(crate) struct Inputs<'a> {
    pub compiled: &'a Compiled,
    pub old: (&'a Endpoint, &'a TableInfo, &'a TableRef),
    pub new: (&'a Endpoint, &'a TableInfo, &'a TableRef),
    pub same_server: bool,
    pub started_at: SystemTime,
    pub duration: Duration,
    pub lock: LockStats,
    pub outcome: Outcome,
    pub max_reported: usize,
}

pub(crate) fn build(i: Inputs<'_>) -> VerifyReport {
    let c = i.compiled;
    let side = |(e, info, t): (&Endpoint, &TableInfo, &TableRef)| SideReport {
        server: e.to_string(),
        flavor: info.flavor,
        version: info.version.clone(),
        table: t.to_string(),
    };
    let columns = c
        .columns
        .iter()
        .map(|p| ColumnReport {
            name: p.name.clone(),
            old_expr: p.old_expr.clone(),
            new_type: p.new_type.column_type.clone(),
            hashed_by: if p.client_json {
                HashedBy::Rowshift
            } else {
                HashedBy::Server
            },
        })
        .collect();
    let o = i.outcome;
    let count = |k: DiffKind| o.diffs.iter().filter(|d| d.kind == k).count() as u64;
    let total = o.diffs.len() as u64;
    let differences = Differences {
        total,
        changed: count(DiffKind::Changed),
        missing_in_new: count(DiffKind::MissingInNew),
        extra_in_new: count(DiffKind::ExtraInNew),
        truncated: o.diffs.len() > i.max_reported,
        rows: o
            .diffs
            .iter()
            .take(i.max_reported)
            .map(|d| diff_row(c, d))
            .collect(),
    };
    let mut rows = 0u64;
    let progress = o
        .chunks
        .iter()
        .map(|ch: &ChunkRecord| {
            rows += ch.rows_old;
            ProgressPoint {
                elapsed_ms: ch.finished_ms,
                rows_checked: rows,
                equal: ch.equal,
            }
        })
        .collect();
    let secs = o.duration.as_secs_f64();
    VerifyReport {
        format: FORMAT,
        // Row differences, or anything the counts and checksums saw that the narrowing did
        // not explain: never a GO.
        verdict: if total == 0 && o.unexplained.is_empty() && o.rows_old == o.rows_new {
            Verdict::Go
        } else {
            Verdict::NoGo
        },
        started_at: rfc3339(i.started_at),
        duration_ms: i.duration.as_secs_f64() * 1e3,
        checksum_ms: secs * 1e3,
        rows_per_second: if secs > 0.0 {
            o.rows_old as f64 / secs
        } else {
            0.0
        },
        old: side(i.old),
        new: side(i.new),
        same_server: i.same_server,
        key_columns: c.key_names.clone(),
        columns,
        hash: HASH,
        chunks_checked: o.chunks.len() as u64,
        chunks_differing: o.chunks.iter().filter(|ch| !ch.equal).count() as u64,
        rows_old: o.rows_old,
        rows_new: o.rows_new,
        lock: i.lock,
        differences,
        progress,
        notes: c
            .single_chunk
            .iter()
            .cloned()
            .chain((!o.unexplained.is_empty()).then(|| {
                format!(
                    "chunks {:?}: their row counts or checksums differ but no differing row was found (distinct keys that print alike, such as FLOAT values, hide rows from the row-by-row comparison): NO-GO",
                    o.unexplained
                )
            }))
            .chain((o.rows_old != o.rows_new).then(|| {
                format!(
                    "the old side holds {} rows and the new side {}: NO-GO",
                    o.rows_old, o.rows_new
                )
            }))
            .collect(),
    }
}

fn diff_row(c: &Compiled, d: &FoundDiff) -> DiffRow {
    let key = Values(
        c.key_names
            .iter()
            .zip(&d.key)
            .map(|(n, v)| (n.clone(), super::narrow::value_bytes(v).map(|b| lossy(&b))))
            .collect(),
    );
    let show = |vals: &Option<Vec<Option<Vec<u8>>>>| -> Option<Values> {
        let vals = vals.as_ref()?;
        Some(Values(
            c.columns
                .iter()
                .zip(vals)
                .map(|(p, v)| {
                    let shown = v.as_ref().map(|b| {
                        if p.client_json {
                            jsoncanon::comparable(Some(b)).unwrap_or_default()
                        } else if p.binary {
                            hex(b)
                        } else {
                            lossy(b)
                        }
                    });
                    (p.name.clone(), shown)
                })
                .collect(),
        ))
    };
    let old = show(&d.old_values);
    let new = show(&d.new_values);
    let differing_columns = match (&old, &new) {
        (Some(o), Some(n)) => {
            o.0.iter()
                .zip(&n.0)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0.clone())
                .collect()
        }
        _ => Vec::new(),
    };
    DiffRow {
        kind: d.kind,
        key,
        differing_columns,
        old,
        new,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for byte in b {
        let _ = write!(s, "{byte:02X}");
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a system time.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The JSON written when no verdict could be reached (exit code 2).
pub fn cannot_verify_json(reason: &str) -> String {
    serde_json::json!({
        "format": FORMAT,
        "verdict": "CANNOT-VERIFY",
        "reason": reason,
    })
    .to_string()
}

impl VerifyReport {
    /// True for GO.
    pub fn is_go(&self) -> bool {
        self.verdict == Verdict::Go
    }

    /// The report as a pretty-printed JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| cannot_verify_json(&e.to_string()))
    }

    /// The report as a self-contained HTML page.
    pub fn to_html(&self) -> String {
        super::html::render(self)
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "rowshift verify: {}  {} ({} {}) vs {} ({} {})",
            self.verdict.as_str(),
            self.old.table,
            self.old.flavor,
            self.old.version,
            self.new.table,
            self.new.flavor,
            self.new.version
        );
        let _ = writeln!(
            s,
            "  rows: {} old / {} new in {} chunks ({} differing)",
            self.rows_old, self.rows_new, self.chunks_checked, self.chunks_differing
        );
        let _ = writeln!(
            s,
            "  time: {:.2} s (checksums {:.2} s, {:.0} rows/s); lock held {:.1} ms, waited {:.1} ms",
            self.duration_ms / 1e3,
            self.checksum_ms / 1e3,
            self.rows_per_second,
            self.lock.held_ms,
            self.lock.wait_ms
        );
        let d = &self.differences;
        let _ = writeln!(
            s,
            "  differences: {} ({} changed, {} missing in new, {} extra in new)",
            d.total, d.changed, d.missing_in_new, d.extra_in_new
        );
        for row in d.rows.iter().take(20) {
            let key: Vec<String> = row
                .key
                .0
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("NULL")))
                .collect();
            let _ = write!(s, "    {:<15} {}", row.kind.as_str(), key.join(","));
            if !row.differing_columns.is_empty() {
                let _ = write!(s, "  columns: {}", row.differing_columns.join(", "));
            }
            s.push('\n');
            for col in &row.differing_columns {
                let show = |side: &Option<Values>| -> String {
                    match side.as_ref().and_then(|v| v.get(col)) {
                        Some(Some(v)) => format!("{v:?}"),
                        Some(None) => "NULL".into(),
                        None => "-".into(),
                    }
                };
                let _ = writeln!(
                    s,
                    "      {col}: old {}  new {}",
                    show(&row.old),
                    show(&row.new)
                );
            }
        }
        for note in &self.notes {
            let _ = writeln!(s, "  note: {note}");
        }
        if d.rows.len() > 20 || d.truncated {
            let _ = writeln!(
                s,
                "    ... (all {} listed in the JSON/HTML report)",
                d.rows.len()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        assert_eq!(rfc3339(t), "2026-01-01T00:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn values_keep_column_order_and_nulls() {
        let v = Values(vec![("z".into(), Some("1".into())), ("a".into(), None)]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"z":"1","a":null}"#);
        assert_eq!(hex(&[0, 0xAB]), "0x00AB");
        let j: serde_json::Value = serde_json::from_str(&cannot_verify_json("x")).unwrap();
        assert_eq!(j["verdict"], "CANNOT-VERIFY");
    }
}
