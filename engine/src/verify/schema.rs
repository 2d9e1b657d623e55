//! What the verifier reads about a table before comparing it: the server flavour, every column
//! with its exact type, and the primary key.
//!
//! MariaDB's `JSON` is an alias of `LONGTEXT` with a `json_valid(col)` check; such columns are
//! reported here as data type `json` so both flavours look alike to the rest of the verifier.

use super::{Side, VerifyError};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use serde::Serialize;
use std::fmt;

/// The server software of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Flavor {
    /// Oracle MySQL.
    #[serde(rename = "mysql")]
    MySql,
    /// MariaDB.
    #[serde(rename = "mariadb")]
    MariaDb,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MySql => "MySQL",
            Flavor::MariaDb => "MariaDB",
        })
    }
}

/// A table named by database and table (unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRef {
    /// Database (schema) name.
    pub db: String,
    /// Table name.
    pub table: String,
}

impl TableRef {
    /// A table reference.
    pub fn new(db: &str, table: &str) -> TableRef {
        TableRef {
            db: db.to_string(),
            table: table.to_string(),
        }
    }

    /// Parse `db.table` (backticks allowed around either part).
    pub fn parse(s: &str) -> Option<TableRef> {
        let (db, table) = split_qualified(s)?;
        Some(TableRef { db, table })
    }

    /// `` `db`.`table` ``, quoted.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.db), quote_ident(&self.table))
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

fn split_qualified(s: &str) -> Option<(String, String)> {
    let s = s.trim();
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                cur.push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    if quoted || parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let table = parts.pop()?;
    let db = parts.pop()?;
    Some((db, table))
}

/// A SQL identifier in backticks, inner backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// One column of a table as `information_schema` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Lowercase `DATA_TYPE` (`int`, `varchar`, `json`, ...); `json` for MariaDB JSON too.
    pub data_type: String,
    /// Lowercase `COLUMN_TYPE`, e.g. `decimal(12,2)`, `enum('a','b')`, `int unsigned`.
    pub column_type: String,
    /// True for `UNSIGNED` numbers.
    pub unsigned: bool,
    /// Character set of a text column.
    pub charset: Option<String>,
    /// Collation of a text column.
    pub collation: Option<String>,
    /// True when the column accepts NULL.
    pub nullable: bool,
    /// `NUMERIC_PRECISION`.
    pub precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u64>,
    /// `DATETIME_PRECISION` (fractional second digits).
    pub fsp: Option<u64>,
    /// `CHARACTER_MAXIMUM_LENGTH` (characters, or bytes for binary strings).
    pub max_len: Option<u64>,
    /// ENUM/SET labels in definition order, unescaped from `COLUMN_TYPE` as the server spells
    /// them (case kept); `None` for other types or a list that does not parse.
    pub labels: Option<Vec<String>>,
}

impl ColumnInfo {
    /// Integer types of any width.
    pub fn is_integer(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
        )
    }

    /// Text types (a character set applies).
    pub fn is_text(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
        )
    }

    /// Binary string types.
    pub fn is_binary(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
        )
    }

    /// JSON (MySQL's native type or MariaDB's checked LONGTEXT).
    pub fn is_json(&self) -> bool {
        self.data_type == "json"
    }
}

/// A table's description.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Server flavour.
    pub flavor: Flavor,
    /// `VERSION()`.
    pub version: String,
    /// Columns in table order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key column names in key order.
    pub primary_key: Vec<String>,
}

impl TableInfo {
    /// The column named `name` (case-insensitive, as MySQL column names are).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// The server flavour and version on `conn`.
pub async fn flavor(conn: &mut Conn, side: Side) -> Result<(Flavor, String), VerifyError> {
    let version: Option<Row> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(VerifyError::sql(side, "reading the server version"))?;
    let version = version
        .as_ref()
        .and_then(|r| r.as_ref(0))
        .and_then(text)
        .unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok((flavor, version))
}

/// Read `table`'s columns and primary key.
pub async fn read_table(
    conn: &mut Conn,
    side: Side,
    table: &TableRef,
) -> Result<TableInfo, VerifyError> {
    let (flavor, version) = flavor(conn, side).await?;
    let params = (table.db.as_str(), table.table.as_str());
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME,
                    IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION,
                    CHARACTER_MAXIMUM_LENGTH
             FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
             ORDER BY ORDINAL_POSITION",
            params,
        )
        .await
        .map_err(VerifyError::sql(side, "reading the columns"))?;
    if rows.is_empty() {
        return Err(VerifyError::TableMissing {
            side,
            table: table.to_string(),
        });
    }
    let json_checked = if flavor == Flavor::MariaDb {
        mariadb_json_columns(conn, side, table).await?
    } else {
        Vec::new()
    };
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        let get = |i: usize| row.as_ref(i).and_then(text);
        let num = |i: usize| get(i).and_then(|s| s.parse::<u64>().ok());
        let name = get(0).unwrap_or_default();
        let raw_type = get(2).unwrap_or_default();
        let labels = type_labels(&raw_type);
        let column_type = raw_type.to_ascii_lowercase();
        let mut data_type = get(1).unwrap_or_default().to_ascii_lowercase();
        if data_type == "longtext" && json_checked.iter().any(|j| j == &name) {
            data_type = "json".into();
        }
        columns.push(ColumnInfo {
            unsigned: column_type.contains("unsigned"),
            charset: get(3),
            collation: get(4),
            nullable: get(5).as_deref() == Some("YES"),
            precision: num(6),
            scale: num(7),
            fsp: num(8),
            max_len: num(9),
            labels,
            name,
            data_type,
            column_type,
        });
    }
    let key: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'
             ORDER BY ORDINAL_POSITION",
            params,
        )
        .await
        .map_err(VerifyError::sql(side, "reading the primary key"))?;
    let primary_key: Vec<String> = key
        .iter()
        .filter_map(|r| r.as_ref(0).and_then(text))
        .collect();
    if primary_key.is_empty() {
        return Err(VerifyError::NoPrimaryKey {
            side,
            table: table.to_string(),
        });
    }
    Ok(TableInfo {
        flavor,
        version,
        columns,
        primary_key,
    })
}

/// Columns of a MariaDB table that carry the `json_valid(col)` check of its JSON alias.
async fn mariadb_json_columns(
    conn: &mut Conn,
    side: Side,
    table: &TableRef,
) -> Result<Vec<String>, VerifyError> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (table.db.as_str(), table.table.as_str()),
        )
        .await
        .map_err(VerifyError::sql(side, "reading check constraints"))?;
    Ok(rows
        .iter()
        .filter_map(|r| r.as_ref(0).and_then(text))
        .filter_map(|clause| json_valid_column(&clause))
        .collect())
}

/// The column of a `json_valid(`col`)` check clause.
fn json_valid_column(clause: &str) -> Option<String> {
    let inner = clause
        .trim()
        .strip_prefix("json_valid(")?
        .strip_suffix(')')?
        .trim();
    let name = inner.strip_prefix('`')?.strip_suffix('`')?;
    Some(name.replace("``", "`"))
}

/// The labels of `enum('a','it''s')` / `set(...)` as `COLUMN_TYPE` prints them: single-quoted,
/// `'` doubled, backslash escapes (`\\`, `\0`, `\n`, ...) as in SQL string literals.
pub(crate) fn type_labels(column_type: &str) -> Option<Vec<String>> {
    let lower = column_type.get(..5)?.to_ascii_lowercase();
    let list = if lower == "enum(" {
        &column_type[5..]
    } else if lower.starts_with("set(") {
        &column_type[4..]
    } else {
        return None;
    };
    let list = list.trim_end().strip_suffix(')')?;
    let mut labels = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => label.push(match chars.next()? {
                    '0' => '\0',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'Z' => '\u{1a}',
                    other => other,
                }),
                c => label.push(c),
            }
        }
        labels.push(label);
        match chars.next() {
            None => return Some(labels),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// A server value as text (metadata only: names, types, numbers).
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_parse_with_and_without_backticks() {
        assert_eq!(
            TableRef::parse("shop.orders"),
            Some(TableRef::new("shop", "orders"))
        );
        assert_eq!(
            TableRef::parse("`my.db`.`t``x`"),
            Some(TableRef::new("my.db", "t`x"))
        );
        assert_eq!(TableRef::parse("orders"), None);
        assert_eq!(TableRef::parse("a.b.c"), None);
        assert_eq!(TableRef::new("a", "t`x").quoted(), "`a`.`t``x`");
    }

    #[test]
    fn mariadb_json_checks_are_recognised() {
        assert_eq!(json_valid_column("json_valid(`doc`)"), Some("doc".into()));
        assert_eq!(json_valid_column("json_valid(`a``b`)"), Some("a`b".into()));
        assert_eq!(json_valid_column("`x` > 0"), None);
    }

    #[test]
    fn enum_and_set_labels_are_unescaped() {
        assert_eq!(
            type_labels("set('it''s','b\\\\s','Ab','x\"y')"),
            Some(vec![
                "it's".into(),
                "b\\s".into(),
                "Ab".into(),
                "x\"y".into()
            ])
        );
        assert_eq!(
            type_labels("enum('a,b','')"),
            Some(vec!["a,b".into(), String::new()])
        );
        assert_eq!(type_labels("SET('X')"), Some(vec!["X".into()]));
        assert_eq!(type_labels("varchar(3)"), None);
        assert_eq!(type_labels("set('a"), None);
        assert_eq!(type_labels("set('a'b')"), None);
    }
}
