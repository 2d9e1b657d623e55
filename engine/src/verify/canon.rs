//! Canonical representations: the SQL that turns each compared column into bytes that are equal
//! on both sides exactly when the logical values are equal, and the per-row hash built on them.
//!
//! Rules (measured on MySQL 9.7 and MariaDB 10.11, see `docs/verify.md`):
//! - Both sides of a column get the *same* wrapping: when the old column's type is not the new
//!   column's type (or the old side is an expression), both are converted to the new type's
//!   canonical text (`CAST(x AS DECIMAL(p,s))`, `CAST(x AS DATETIME(6))`, `CONVERT(x USING cs)`,
//!   ...), so a legitimately converted value compares equal and nothing else does.
//! - FLOAT is always widened with `CAST(x AS DOUBLE)`: both servers print FLOAT with 6
//!   significant digits, which hides a change in the 7th.
//! - Text and binary strings are hashed as bytes (a session in `NAMES binary`), never through a
//!   collation: `'a'` vs `'A'` in a case-insensitive column and trailing spaces in VARCHAR are
//!   differences.
//! - SET: the server prints a value's labels in its own column's definition order, so when the
//!   definition changed (labels reordered, added), both sides are rebuilt over the union of
//!   both definitions' labels sorted by bytes (`CONCAT_WS(',', IF(FIND_IN_SET(label, x),
//!   label, NULL), ..)`); the report shows that form too.
//! - JSON: MySQL stores it binary and prints it canonically (keys sorted, number types kept), so
//!   MySQL-to-MySQL is hashed on the server; when a MariaDB side is involved (JSON stored as
//!   text), the documents are fetched and canonicalised in Rust ([`super::jsoncanon`]).
//! - The row hash is the CRC32 of `c1#..#cn#trailers` (strings as raw bytes, NULL as an empty
//!   piece; `CONCAT` on MySQL, `CONCAT_WS` on MariaDB, the same bytes), summed per chunk.
//!   Trailers make the concatenation unambiguous: `ISNULL(c)` for nullable columns (NULL vs
//!   empty string), and `LENGTH(c)` for string columns when there are two or more (a `#` moving
//!   from one string to the next). The chunk aggregate must not be linear over GF(2): `BIT_XOR(CRC32(..))`
//!   cannot see the same change applied to an even number of equally long rows (CRC is
//!   linear), which is exactly what a time-zone shift of a TIMESTAMP column does; an exact
//!   integer `SUM` of the CRCs does (docs/verify.md).

use super::schema::{quote_ident, ColumnInfo, Flavor, TableInfo, TableRef};
use super::{ColumnMap, ColumnMapping, VerifyError};
use crate::copy::{KeyColumn, KeyLiteral};
use serde::Serialize;

/// How one compared column is hashed.
#[derive(Debug, Clone)]
pub(crate) struct ColumnPlan {
    /// The new table's column name.
    pub name: String,
    /// The old side's SQL expression as given.
    pub old_expr: String,
    /// The new column's type.
    pub new_type: ColumnInfo,
    /// Canonical SQL on the old side.
    pub old_canon: String,
    /// Canonical SQL on the new side.
    pub new_canon: String,
    /// SQL giving the value shown in the report (old side).
    pub old_display: String,
    /// SQL giving the value shown in the report (new side).
    pub new_display: String,
    /// The value may contain any byte (strings, JSON, ENUM/SET labels).
    pub stringish: bool,
    /// Either side may be NULL.
    pub nullable: bool,
    /// JSON compared in Rust (a MariaDB side is involved).
    pub client_json: bool,
    /// Shown as hex in reports.
    pub binary: bool,
}

/// Where a column is hashed, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashedBy {
    /// In the row hash computed by the server.
    Server,
    /// Fetched and canonicalised by rowshift (JSON with a MariaDB side).
    Rowshift,
}

/// The SQL of one side.
#[derive(Debug, Clone)]
pub(crate) struct SideSql {
    /// Quoted `` `db`.`t` ``.
    pub table: String,
    /// Primary key columns (quoted names) with their literal kinds.
    pub key: Vec<KeyColumn>,
    /// `` `k1`,`k2` ``.
    pub key_list: String,
    /// The 32-bit row hash expression (summed per chunk).
    pub row_hash: String,
    /// Expressions fetched for Rust-side JSON comparison, one per client column.
    pub client_exprs: Vec<String>,
    /// Expressions shown in the report, one per compared column.
    pub display_exprs: Vec<String>,
}

/// Everything the checksum needs, compiled once.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// The compared columns.
    pub columns: Vec<ColumnPlan>,
    /// Primary key column names (new table).
    pub key_names: Vec<String>,
    /// Why the table is compared as one chunk, when key ranges cannot be used: a text key
    /// column whose collation differs between the sides orders keys differently, so ranges
    /// bounded by the old side's keys would not partition the new side.
    pub single_chunk: Option<String>,
    /// Old side SQL.
    pub old: SideSql,
    /// New side SQL.
    pub new: SideSql,
}

impl Compiled {
    /// Number of columns compared in Rust.
    pub fn client_columns(&self) -> usize {
        self.old.client_exprs.len()
    }
}

/// Turn the mapping into explicit (old expression, new column) pairs.
pub(crate) fn resolve_mapping(
    mapping: &ColumnMapping,
    old: &TableInfo,
    new: &TableInfo,
) -> Result<Vec<ColumnMap>, VerifyError> {
    match mapping {
        ColumnMapping::Identity => {
            let only_old: Vec<String> = old
                .columns
                .iter()
                .filter(|c| new.column(&c.name).is_none())
                .map(|c| c.name.clone())
                .collect();
            let only_new: Vec<String> = new
                .columns
                .iter()
                .filter(|c| old.column(&c.name).is_none())
                .map(|c| c.name.clone())
                .collect();
            if !only_old.is_empty() || !only_new.is_empty() {
                return Err(VerifyError::ColumnsDiffer { only_old, only_new });
            }
            Ok(new
                .columns
                .iter()
                .map(|c| ColumnMap::same(&c.name))
                .collect())
        }
        ColumnMapping::ByName { set } => {
            let mut out = Vec::new();
            let mut unmapped = Vec::new();
            for c in &new.columns {
                if let Some(m) = set
                    .iter()
                    .find(|m| m.new_column.eq_ignore_ascii_case(&c.name))
                {
                    out.push(ColumnMap {
                        old_expr: m.old_expr.clone(),
                        new_column: c.name.clone(),
                    });
                } else if old.column(&c.name).is_some() {
                    out.push(ColumnMap::same(&c.name));
                } else {
                    unmapped.push(c.name.clone());
                }
            }
            if let Some(m) = set.iter().find(|m| new.column(&m.new_column).is_none()) {
                return Err(VerifyError::UnknownColumn {
                    column: m.new_column.clone(),
                });
            }
            if !unmapped.is_empty() {
                return Err(VerifyError::UnmappedColumns { columns: unmapped });
            }
            Ok(out)
        }
        ColumnMapping::Explicit(maps) => {
            for m in maps {
                if new.column(&m.new_column).is_none() {
                    return Err(VerifyError::UnknownColumn {
                        column: m.new_column.clone(),
                    });
                }
            }
            Ok(maps.clone())
        }
    }
}

/// Compile the comparison of `old_table` (through `maps`) with `new_table`.
pub(crate) fn compile(
    maps: &[ColumnMap],
    old: &TableInfo,
    new: &TableInfo,
    old_table: &TableRef,
    new_table: &TableRef,
) -> Result<Compiled, VerifyError> {
    let client_json_allowed = old.flavor == Flavor::MySql && new.flavor == Flavor::MySql;
    let mut columns = Vec::with_capacity(maps.len());
    for m in maps {
        let new_type = new
            .column(&m.new_column)
            .ok_or_else(|| VerifyError::UnknownColumn {
                column: m.new_column.clone(),
            })?
            .clone();
        let old_col = plain_column(&m.old_expr, old);
        let wrap = match old_col {
            Some(o) => !same_type(o, &new_type),
            None => true,
        };
        let new_expr = quote_ident(&new_type.name);
        let client_json = new_type.is_json() && !client_json_allowed;
        let (old_canon, new_canon, old_display, new_display) = if client_json {
            let o = json_text(&m.old_expr, old.flavor);
            let n = json_text(&new_expr, new.flavor);
            (o.clone(), n.clone(), o, n)
        } else {
            let (o, n) = match set_labels(old_col, &new_type) {
                Some(labels) => (
                    set_canon(&m.old_expr, &labels),
                    set_canon(&new_expr, &labels),
                ),
                None => (
                    canon(&new_type, &m.old_expr, wrap),
                    canon(&new_type, &new_expr, wrap),
                ),
            };
            let (od, nd) =
                if new_type.is_text() || matches!(new_type.data_type.as_str(), "enum" | "set") {
                    (
                        format!("CONVERT({o} USING utf8mb4)"),
                        format!("CONVERT({n} USING utf8mb4)"),
                    )
                } else {
                    (o.clone(), n.clone())
                };
            (o, n, od, nd)
        };
        let stringish = !matches!(
            class(&new_type),
            Class::Integer | Class::Number | Class::Temporal | Class::Bit
        );
        columns.push(ColumnPlan {
            name: new_type.name.clone(),
            old_expr: m.old_expr.clone(),
            nullable: new_type.nullable || old_col.map(|c| c.nullable).unwrap_or(true),
            binary: new_type.is_binary() || class(&new_type) == Class::Other,
            new_type,
            old_canon,
            new_canon,
            old_display,
            new_display,
            stringish,
            client_json,
        });
    }

    // The key: the new table's primary key, mapped to the old table's primary key.
    let mut old_key = Vec::new();
    let mut new_key = Vec::new();
    for name in &new.primary_key {
        let plan = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| VerifyError::KeyMismatch {
                reason: format!("primary key column {name} of the new table is not compared"),
            })?;
        let old_col =
            plain_column(&plan.old_expr, old).ok_or_else(|| VerifyError::KeyMismatch {
                reason: format!(
                    "primary key column {name} must map to a plain column of the old table, not {}",
                    plan.old_expr
                ),
            })?;
        let new_col = new.column(name).ok_or_else(|| VerifyError::UnknownColumn {
            column: name.clone(),
        })?;
        old_key.push(key_column(old_col)?);
        new_key.push(key_column(new_col)?);
    }
    let mapped_old: Vec<String> = old_key
        .iter()
        .map(|k| k.name.to_ascii_lowercase())
        .collect();
    let old_pk: Vec<String> = old
        .primary_key
        .iter()
        .map(|k| quote_ident(k).to_ascii_lowercase())
        .collect();
    if mapped_old != old_pk {
        return Err(VerifyError::KeyMismatch {
            reason: format!(
                "the old table's primary key ({}) is not the new table's ({})",
                old.primary_key.join(", "),
                new.primary_key.join(", ")
            ),
        });
    }

    let side = |table: &TableRef,
                flavor: Flavor,
                key: Vec<KeyColumn>,
                pick: &dyn Fn(&ColumnPlan) -> (String, String)| {
        let key_list = key
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let exprs: Vec<(String, String)> = columns.iter().map(pick).collect();
        let server: Vec<(&ColumnPlan, &str)> = columns
            .iter()
            .zip(&exprs)
            .filter(|(c, _)| !c.client_json)
            .map(|(c, e)| (c, e.0.as_str()))
            .collect();
        SideSql {
            table: table.quoted(),
            key,
            key_list,
            row_hash: row_hash(&server, flavor),
            client_exprs: columns
                .iter()
                .zip(&exprs)
                .filter(|(c, _)| c.client_json)
                .map(|(_, e)| e.0.clone())
                .collect(),
            display_exprs: exprs.iter().map(|e| e.1.clone()).collect(),
        }
    };
    let old_sql = side(old_table, old.flavor, old_key, &|c| {
        (c.old_canon.clone(), c.old_display.clone())
    });
    let new_sql = side(new_table, new.flavor, new_key, &|c| {
        (c.new_canon.clone(), c.new_display.clone())
    });
    let single_chunk = old_sql
        .key
        .iter()
        .zip(&new_sql.key)
        .find(|(o, n)| {
            matches!(o.literal, KeyLiteral::Text { .. }) && o.literal != n.literal
        })
        .map(|(o, n)| {
            let describe = |l: &KeyLiteral| match l {
                KeyLiteral::Text { collation, .. } => collation.clone(),
                other => format!("{other:?}"),
            };
            format!(
                "key column {} is {} on the old side and {} on the new side: keys order differently, so the table is compared as one chunk",
                o.name,
                describe(&o.literal),
                describe(&n.literal)
            )
        });
    Ok(Compiled {
        single_chunk,
        key_names: new.primary_key.clone(),
        columns,
        old: old_sql,
        new: new_sql,
    })
}

/// The 32-bit row hash over server-side columns `(plan, canonical expression)` on `flavor`.
///
/// The hashed bytes are the same on both flavors: every value as its text, strings as their
/// raw bytes (`CAST(.. AS BINARY)`: one binary concatenation, no per-piece charset conversion,
/// which cost MySQL 9.7 ~30 % of the hash), NULL as an empty piece, `#` between pieces, then the
/// trailers. MySQL computes it with `CONCAT(a,'#',b,..)`, about half the CPU of its
/// `CONCAT_WS`; MariaDB with `CONCAT_WS('#',..)`, its faster form (docs/verify.md).
fn row_hash(cols: &[(&ColumnPlan, &str)], flavor: Flavor) -> String {
    let strings = cols.iter().filter(|(c, _)| c.stringish).count();
    let mut parts: Vec<String> = cols
        .iter()
        .map(|(c, e)| {
            let v = if c.stringish {
                format!("CAST({e} AS BINARY)")
            } else {
                e.to_string()
            };
            // A NULL would make MySQL's whole CONCAT NULL (and the row vanish from the SUM):
            // every piece that may be NULL, a nullable column or any expression (a conversion
            // of an invalid value gives NULL), becomes '' (the trailers tell NULL from '').
            if c.nullable || !is_plain_ident(e) {
                format!("IFNULL({v},'')")
            } else {
                v
            }
        })
        .collect();
    for (c, e) in cols {
        if c.stringish && strings >= 2 {
            parts.push(format!("COALESCE(LENGTH({e}),-1)"));
        } else if c.nullable {
            parts.push(format!("ISNULL({e})"));
        }
    }
    match flavor {
        Flavor::MySql => format!("CRC32(CONCAT({}))", parts.join(",'#',")),
        Flavor::MariaDb => format!("CRC32(CONCAT_WS('#',{}))", parts.join(",")),
    }
}

/// True for one quoted column name (`` `c` ``), which holds no NULL when the column is NOT NULL.
fn is_plain_ident(e: &str) -> bool {
    e.len() >= 2
        && e.starts_with('`')
        && e.ends_with('`')
        && !e[1..e.len() - 1].replace("``", "").contains('`')
}

/// A JSON document as text on `flavor` (MySQL: its canonical print; MariaDB: the stored text).
fn json_text(expr: &str, flavor: Flavor) -> String {
    match flavor {
        Flavor::MySql => format!("CAST({expr} AS CHAR)"),
        Flavor::MariaDb => expr.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Integer,
    /// DECIMAL, FLOAT, DOUBLE.
    Number,
    Temporal,
    Bit,
    Text,
    Binary,
    Label,
    Json,
    Other,
}

fn class(c: &ColumnInfo) -> Class {
    if c.is_integer() {
        return Class::Integer;
    }
    match c.data_type.as_str() {
        "decimal" | "numeric" | "float" | "double" | "real" => Class::Number,
        "year" | "date" | "time" | "datetime" | "timestamp" => Class::Temporal,
        "bit" => Class::Bit,
        "enum" | "set" => Class::Label,
        "json" => Class::Json,
        _ if c.is_text() => Class::Text,
        _ if c.is_binary() => Class::Binary,
        _ => Class::Other,
    }
}

/// True when both columns print the same logical value the same way without conversion.
fn same_type(old: &ColumnInfo, new: &ColumnInfo) -> bool {
    match (class(old), class(new)) {
        (Class::Integer, Class::Integer) => true,
        (Class::Text, Class::Text) => {
            old.charset == new.charset && (old.data_type == "char") == (new.data_type == "char")
        }
        (Class::Label, Class::Label) => old.charset == new.charset,
        (Class::Binary, Class::Binary) => {
            match (old.data_type == "binary", new.data_type == "binary") {
                (false, false) => true,
                (true, true) => old.max_len == new.max_len,
                _ => false,
            }
        }
        (a, b) if a == b => {
            old.data_type == new.data_type && old.scale == new.scale && old.fsp == new.fsp
        }
        _ => false,
    }
}

/// The canonical SQL of `expr` as a value of `target`'s type; `wrap` converts explicitly.
fn canon(target: &ColumnInfo, expr: &str, wrap: bool) -> String {
    let fsp = target.fsp.unwrap_or(0).min(6);
    match class(target) {
        Class::Integer if wrap => {
            let to = if target.unsigned {
                "UNSIGNED"
            } else {
                "SIGNED"
            };
            format!("CAST({expr} AS {to})")
        }
        Class::Number => match target.data_type.as_str() {
            "float" if wrap => format!("CAST(CAST({expr} AS FLOAT) AS DOUBLE)"),
            "float" => format!("CAST({expr} AS DOUBLE)"),
            "double" | "real" if wrap => format!("CAST({expr} AS DOUBLE)"),
            "decimal" | "numeric" if wrap => format!(
                "CAST({expr} AS DECIMAL({},{}))",
                target.precision.unwrap_or(65).min(65),
                target.scale.unwrap_or(0).min(30)
            ),
            _ => expr.to_string(),
        },
        Class::Bit => format!("CAST({expr} AS UNSIGNED)"),
        Class::Temporal if wrap => match target.data_type.as_str() {
            "year" => format!("CAST({expr} AS UNSIGNED)"),
            "date" => format!("CAST({expr} AS DATE)"),
            "time" => format!("CAST({expr} AS TIME({fsp}))"),
            _ => format!("CAST({expr} AS DATETIME({fsp}))"),
        },
        Class::Text | Class::Label if wrap => {
            let cs = target
                .charset
                .as_deref()
                .filter(|c| is_plain_name(c))
                .unwrap_or("utf8mb4");
            let converted = format!("CONVERT({expr} USING {cs})");
            if target.data_type == "char" {
                format!("TRIM(TRAILING ' ' FROM {converted})")
            } else {
                converted
            }
        }
        Class::Binary if wrap && target.data_type == "binary" => {
            format!("CAST({expr} AS BINARY({}))", target.max_len.unwrap_or(1))
        }
        Class::Json if wrap => format!("CAST({expr} AS JSON)"),
        _ => expr.to_string(),
    }
}

/// The labels a SET column is compared over when its definition changed (labels reordered,
/// added, removed): the union of both sides' labels, sorted by bytes. `None` when the old side
/// is not a plain SET column, the definitions are equal (the values print alike), or a label
/// cannot be trusted: `information_schema` prints a character its charset cannot hold (an emoji)
/// as `?`, and an empty label adds nothing to `CONCAT_WS`; such columns keep the plain
/// comparison, which may report a reordering but never hides a difference.
fn set_labels(old: Option<&ColumnInfo>, new: &ColumnInfo) -> Option<Vec<String>> {
    let old = old?;
    if old.data_type != "set" || new.data_type != "set" {
        return None;
    }
    let (old_labels, new_labels) = (old.labels.as_ref()?, new.labels.as_ref()?);
    if old_labels == new_labels {
        return None;
    }
    let mut labels: Vec<String> = old_labels.iter().chain(new_labels).cloned().collect();
    if labels
        .iter()
        .any(|l| l.is_empty() || l.contains(['?', ',']))
    {
        return None;
    }
    labels.sort();
    labels.dedup();
    Some(labels)
}

/// A SET value independent of the column's label order: its labels, in the order of `labels`,
/// joined by `,` (UTF-8 bytes, so both sides agree whatever their charsets). Labels are matched
/// by bytes (`'a'` is not `'A'`) and written as hex literals, so no quote in a label can break
/// the SQL. NULL stays NULL; the empty set is `''`.
fn set_canon(expr: &str, labels: &[String]) -> String {
    let value = format!("CAST(CONVERT({expr} USING utf8mb4) AS BINARY)");
    let parts: Vec<String> = labels
        .iter()
        .map(|l| {
            let mut hex = String::new();
            crate::sqlvalue::push_hex(&mut hex, l.as_bytes());
            format!("IF(FIND_IN_SET({hex},{value}),{hex},NULL)")
        })
        .collect();
    format!("IF({expr} IS NULL,NULL,CONCAT_WS(',',{}))", parts.join(","))
}

/// The old table's column when `expr` is just a column reference.
fn plain_column<'a>(expr: &str, old: &'a TableInfo) -> Option<&'a ColumnInfo> {
    let e = expr.trim();
    let name = if let Some(inner) = e.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
        if inner.replace("``", "").contains('`') {
            return None;
        }
        inner.replace("``", "`")
    } else if !e.is_empty()
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    {
        e.to_string()
    } else {
        return None;
    };
    old.column(&name)
}

fn key_column(c: &ColumnInfo) -> Result<KeyColumn, VerifyError> {
    let literal = match class(c) {
        Class::Integer | Class::Number => KeyLiteral::Number,
        Class::Temporal if c.data_type == "year" => KeyLiteral::Number,
        Class::Temporal => KeyLiteral::Temporal,
        Class::Text => match (&c.charset, &c.collation) {
            (Some(charset), Some(collation)) => KeyLiteral::Text {
                charset: charset.clone(),
                collation: collation.clone(),
            },
            _ => KeyLiteral::Bytes,
        },
        Class::Binary | Class::Bit => KeyLiteral::Bytes,
        Class::Label | Class::Json | Class::Other => {
            return Err(VerifyError::UnsupportedKey {
                column: c.name.clone(),
                data_type: c.column_type.clone(),
            })
        }
    };
    Ok(KeyColumn {
        name: quote_ident(&c.name),
        literal,
    })
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, data_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type: data_type.into(),
            column_type: data_type.into(),
            unsigned: false,
            charset: None,
            collation: None,
            nullable: false,
            precision: None,
            scale: None,
            fsp: None,
            max_len: None,
            labels: None,
        }
    }

    fn text(name: &str, data_type: &str, charset: &str) -> ColumnInfo {
        ColumnInfo {
            charset: Some(charset.into()),
            collation: Some(format!("{charset}_bin")),
            ..col(name, data_type)
        }
    }

    fn table(flavor: Flavor, columns: Vec<ColumnInfo>) -> TableInfo {
        TableInfo {
            flavor,
            version: String::new(),
            primary_key: vec![columns[0].name.clone()],
            columns,
        }
    }

    #[test]
    fn same_types_are_hashed_raw_and_floats_widened() {
        let mut note = text("note", "varchar", "utf8mb4");
        note.nullable = true;
        let cols = vec![col("id", "bigint"), col("f", "float"), note];
        let old = table(Flavor::MySql, cols.clone());
        let new = table(Flavor::MariaDb, cols);
        let maps = resolve_mapping(&ColumnMapping::Identity, &old, &new).unwrap();
        let c = compile(
            &maps,
            &old,
            &new,
            &TableRef::new("d", "t"),
            &TableRef::new("d", "u"),
        )
        .unwrap();
        assert_eq!(c.columns[0].old_canon, "`id`");
        assert_eq!(c.columns[1].new_canon, "CAST(`f` AS DOUBLE)");
        assert_eq!(
            c.new.row_hash,
            "CRC32(CONCAT_WS('#',`id`,IFNULL(CAST(`f` AS DOUBLE),''),IFNULL(CAST(`note` AS BINARY),''),ISNULL(`note`)))"
        );
        // The same bytes on MySQL, built with CONCAT.
        assert_eq!(
            c.old.row_hash,
            "CRC32(CONCAT(`id`,'#',IFNULL(CAST(`f` AS DOUBLE),''),'#',IFNULL(CAST(`note` AS BINARY),''),'#',ISNULL(`note`)))"
        );
        assert_eq!(c.new.table, "`d`.`u`");
        assert_eq!(c.new.key_list, "`id`");
    }

    #[test]
    fn changed_types_are_converted_on_both_sides() {
        let mut old_amount = col("amount", "decimal");
        old_amount.scale = Some(2);
        let mut new_amount = col("amount", "decimal");
        new_amount.precision = Some(14);
        new_amount.scale = Some(4);
        let old = table(
            Flavor::MySql,
            vec![col("id", "int"), old_amount, text("s", "varchar", "latin1")],
        );
        let new = table(
            Flavor::MySql,
            vec![
                col("id", "bigint"),
                new_amount,
                text("s", "char", "utf8mb4"),
            ],
        );
        let maps = resolve_mapping(&ColumnMapping::Identity, &old, &new).unwrap();
        let c = compile(
            &maps,
            &old,
            &new,
            &TableRef::new("d", "t"),
            &TableRef::new("d", "u"),
        )
        .unwrap();
        assert_eq!(c.columns[0].old_canon, "`id`");
        assert_eq!(c.columns[1].old_canon, "CAST(`amount` AS DECIMAL(14,4))");
        assert_eq!(c.columns[1].new_canon, "CAST(`amount` AS DECIMAL(14,4))");
        assert_eq!(
            c.columns[2].old_canon,
            "TRIM(TRAILING ' ' FROM CONVERT(`s` USING utf8mb4))"
        );
    }

    #[test]
    fn two_strings_get_length_trailers_and_json_goes_to_rust_with_mariadb() {
        let cols = vec![
            col("id", "int"),
            text("a", "varchar", "utf8mb4"),
            text("b", "text", "utf8mb4"),
            col("doc", "json"),
        ];
        let old = table(Flavor::MySql, cols.clone());
        let new = table(Flavor::MariaDb, cols);
        let maps = resolve_mapping(&ColumnMapping::Identity, &old, &new).unwrap();
        let c = compile(
            &maps,
            &old,
            &new,
            &TableRef::new("d", "t"),
            &TableRef::new("d", "u"),
        )
        .unwrap();
        assert!(c
            .old
            .row_hash
            .contains("COALESCE(LENGTH(`a`),-1),'#',COALESCE(LENGTH(`b`),-1)"));
        assert!(!c.old.row_hash.contains("doc"));
        assert_eq!(c.old.client_exprs, vec!["CAST(`doc` AS CHAR)".to_string()]);
        assert_eq!(c.new.client_exprs, vec!["`doc`".to_string()]);
    }

    #[test]
    fn reordered_sets_compare_over_sorted_labels() {
        let set = |labels: &[&str]| ColumnInfo {
            nullable: true,
            labels: Some(labels.iter().map(|l| l.to_string()).collect()),
            column_type: "set(..)".into(),
            ..text("s", "set", "utf8mb4")
        };
        let old = table(
            Flavor::MySql,
            vec![col("id", "int"), set(&["x", "y", "it's"])],
        );
        let new = table(
            Flavor::MariaDb,
            vec![col("id", "int"), set(&["it's", "y", "x", "w"])],
        );
        let maps = resolve_mapping(&ColumnMapping::Identity, &old, &new).unwrap();
        let c = compile(
            &maps,
            &old,
            &new,
            &TableRef::new("d", "t"),
            &TableRef::new("d", "u"),
        )
        .unwrap();
        let v = "CAST(CONVERT(`s` USING utf8mb4) AS BINARY)";
        let expected = format!(
            "IF(`s` IS NULL,NULL,CONCAT_WS(',',\
             IF(FIND_IN_SET(X'69742773',{v}),X'69742773',NULL),\
             IF(FIND_IN_SET(X'77',{v}),X'77',NULL),\
             IF(FIND_IN_SET(X'78',{v}),X'78',NULL),\
             IF(FIND_IN_SET(X'79',{v}),X'79',NULL)))"
        );
        assert_eq!(c.columns[1].old_canon, expected);
        assert_eq!(c.columns[1].new_canon, expected);
        assert_eq!(
            c.columns[1].new_display,
            format!("CONVERT({expected} USING utf8mb4)")
        );

        // Equal definitions, or a label information_schema may have mangled: plain comparison.
        let same = table(
            Flavor::MySql,
            vec![col("id", "int"), set(&["x", "y", "it's"])],
        );
        let c = compile(
            &maps,
            &old,
            &same,
            &TableRef::new("d", "t"),
            &TableRef::new("d", "u"),
        )
        .unwrap();
        assert_eq!(c.columns[1].new_canon, "`s`");
        let odd = table(Flavor::MySql, vec![col("id", "int"), set(&["y", "x", "?"])]);
        let c = compile(
            &maps,
            &old,
            &odd,
            &TableRef::new("d", "t"),
            &TableRef::new("d", "u"),
        )
        .unwrap();
        assert_eq!(c.columns[1].new_canon, "`s`");
    }

    #[test]
    fn mappings_resolve_and_refuse() {
        let old = table(Flavor::MySql, vec![col("id", "int"), col("code", "int")]);
        let new = table(
            Flavor::MySql,
            vec![col("id", "int"), col("status", "varchar")],
        );
        assert!(matches!(
            resolve_mapping(&ColumnMapping::Identity, &old, &new),
            Err(VerifyError::ColumnsDiffer { .. })
        ));
        assert!(matches!(
            resolve_mapping(&ColumnMapping::ByName { set: vec![] }, &old, &new),
            Err(VerifyError::UnmappedColumns { .. })
        ));
        let set = vec![ColumnMap {
            old_expr: "CASE code WHEN 1 THEN 'a' END".into(),
            new_column: "status".into(),
        }];
        let maps = resolve_mapping(&ColumnMapping::ByName { set }, &old, &new).unwrap();
        assert_eq!(maps[0].old_expr, "`id`");
        assert_eq!(maps[1].new_column, "status");
        assert!(plain_column("`id`", &old).is_some());
        assert!(plain_column("code", &old).is_some());
        assert!(plain_column("code + 1", &old).is_none());
    }
}
