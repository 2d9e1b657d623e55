//! Column names and attributes per table, for TABLE_MAP events that do not carry them.
//!
//! MySQL logs column names only with `binlog_row_metadata=FULL` (MINIMAL, the default, still
//! logs signedness and charsets); MariaDB logs nothing by default. The live source then reads
//! `information_schema.COLUMNS` once per table and keeps the result here, matched to the
//! TABLE_MAP by column position. Any DDL clears the cache so the next TABLE_MAP re-reads it.
//!
//! Caveat: information_schema describes the table *now*. A stream that lags behind a DDL can
//! see rows logged under the old definition; the column count is checked and a mismatch is an
//! error (`binlog_row_metadata=FULL` on the server avoids the question entirely).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;

use crate::event::TableRef;

/// One column as information_schema describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CachedColumn {
    /// Column name.
    pub name: String,
    /// `DATA_TYPE`, e.g. `int`, `varchar`, `json`.
    pub data_type: String,
    /// UNSIGNED numeric column.
    pub unsigned: bool,
    /// Charset name; `binary` for BINARY/VARBINARY/BLOB columns.
    pub charset: Option<String>,
    /// Collation id, when the server lists it.
    pub collation: Option<u16>,
    /// ENUM or SET labels in definition order.
    pub labels: Option<Vec<Vec<u8>>>,
    /// Part of the primary key.
    pub primary_key: bool,
}

/// The columns of one table, in table order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CachedTable {
    /// Columns by ordinal position.
    pub columns: Vec<CachedColumn>,
}

/// Errors of reading a table definition from the server.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The query failed.
    #[error("reading information_schema.COLUMNS for {table} failed")]
    Query {
        /// The table.
        table: TableRef,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
}

/// Table definitions by table, filled lazily by the live source.
#[derive(Debug, Default)]
pub struct SchemaCache {
    tables: HashMap<TableRef, Arc<CachedTable>>,
}

impl SchemaCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached definition of `table`.
    pub fn get(&self, table: &TableRef) -> Option<&Arc<CachedTable>> {
        self.tables.get(table)
    }

    /// Stores the definition of `table`.
    pub fn insert(&mut self, table: TableRef, def: CachedTable) {
        self.tables.insert(table, Arc::new(def));
    }

    /// Forgets every table (after any DDL).
    pub fn clear(&mut self) {
        self.tables.clear();
    }

    /// Number of cached tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// Splits `enum('a','it''s')` / `set(...)` into its labels.
pub fn parse_labels(column_type: &str) -> Option<Vec<Vec<u8>>> {
    let open = column_type.find('(')?;
    let close = column_type.rfind(')')?;
    if close <= open {
        return None;
    }
    let inner = &column_type.as_bytes()[open + 1..close];
    let mut labels = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\'' {
            i += 1;
            continue;
        }
        i += 1;
        let mut label = Vec::new();
        while i < inner.len() {
            if inner[i] == b'\'' {
                if inner.get(i + 1) == Some(&b'\'') {
                    label.push(b'\'');
                    i += 2;
                    continue;
                }
                i += 1;
                break;
            }
            label.push(inner[i]);
            i += 1;
        }
        labels.push(label);
    }
    Some(labels)
}

/// Builds one column from an information_schema row.
pub fn column_from_row(
    name: String,
    data_type: String,
    column_type: &str,
    charset: Option<String>,
    collation_id: Option<u64>,
    column_key: &str,
) -> CachedColumn {
    let data_type = data_type.to_ascii_lowercase();
    let binary_type = matches!(
        data_type.as_str(),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
    );
    let labels = if data_type == "enum" || data_type == "set" {
        parse_labels(column_type)
    } else {
        None
    };
    CachedColumn {
        name,
        unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
        charset: if binary_type {
            Some("binary".into())
        } else {
            charset
        },
        collation: if binary_type {
            Some(63)
        } else {
            collation_id.and_then(|c| u16::try_from(c).ok())
        },
        labels,
        primary_key: column_key.eq_ignore_ascii_case("PRI"),
        data_type,
    }
}

/// Reads the columns of `table` from `information_schema`.
pub async fn load_table(
    conn: &mut mysql_async::Conn,
    table: &TableRef,
) -> Result<CachedTable, SchemaError> {
    type Row = (String, String, String, Option<String>, Option<u64>, String);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.CHARACTER_SET_NAME, co.ID, c.COLUMN_KEY \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME \
             WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION",
            (&*table.schema, &*table.name),
        )
        .await
        .map_err(|source| SchemaError::Query {
            table: table.clone(),
            source,
        })?;
    Ok(CachedTable {
        columns: rows
            .into_iter()
            .map(|(name, dt, ct, cs, coll, key)| column_from_row(name, dt, &ct, cs, coll, &key))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(
            parse_labels("enum('a','it''s','')").unwrap(),
            vec![b"a".to_vec(), b"it's".to_vec(), b"".to_vec()]
        );
        assert_eq!(parse_labels("set('x,y','z')").unwrap().len(), 2);
        assert!(parse_labels("int").is_none());
    }

    #[test]
    fn binary_columns_get_binary_charset() {
        let c = column_from_row(
            "b".into(),
            "VARBINARY".into(),
            "varbinary(4)",
            None,
            None,
            "",
        );
        assert_eq!(c.charset.as_deref(), Some("binary"));
        let u = column_from_row("u".into(), "int".into(), "int unsigned", None, None, "PRI");
        assert!(u.unsigned && u.primary_key);
    }
}
