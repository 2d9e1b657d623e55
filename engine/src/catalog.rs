//! Reading table definitions from a server's `information_schema` into
//! [`rowshift_transform::schema::TableSchema`].

use crate::estimate::KeySpan;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rowshift_transform::schema::{ColumnInfoRow, Flavor, SchemaError, StatisticsRow, TableSchema};

/// Errors of reading the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A query failed.
    #[error("reading the definition of `{schema}`.`{table}`: {source}")]
    Sql {
        /// Database.
        schema: String,
        /// Table.
        table: String,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The table does not exist.
    #[error("table `{schema}`.`{table}` does not exist: check --table (db.table) and the user's privileges on it")]
    Missing {
        /// Database.
        schema: String,
        /// Table.
        table: String,
    },
    /// The definition could not be understood.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// The server's flavor (from `VERSION()`).
pub async fn flavor(conn: &mut Conn) -> Result<(Flavor, String), mysql_async::Error> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let version = version.unwrap_or_default();
    let flavor = if version.contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok((flavor, version))
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(mysql_async::Value::NULL) | None => None,
        Some(other) => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn number(row: &Row, i: usize) -> Option<u64> {
    text(row, i).and_then(|t| t.parse().ok())
}

/// Load the definition of `schema`.`table`.
pub async fn load_table(
    conn: &mut Conn,
    flavor: Flavor,
    schema: &str,
    table: &str,
) -> Result<TableSchema, CatalogError> {
    let sql_err = |source| CatalogError::Sql {
        schema: schema.to_string(),
        table: table.to_string(),
        source,
    };
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,
                    COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, COLLATION_NAME,
                    CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,
                    DATETIME_PRECISION, COLUMN_KEY
             FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .map_err(sql_err)?;
    if rows.is_empty() {
        return Err(CatalogError::Missing {
            schema: schema.to_string(),
            table: table.to_string(),
        });
    }
    let columns: Vec<ColumnInfoRow> = rows
        .iter()
        .map(|r| ColumnInfoRow {
            column_name: text(r, 0).unwrap_or_default(),
            ordinal_position: number(r, 1).unwrap_or(0) as u32,
            data_type: text(r, 2).unwrap_or_default(),
            column_type: text(r, 3).unwrap_or_default(),
            is_nullable: text(r, 4).unwrap_or_default(),
            column_default: text(r, 5),
            extra: text(r, 6).unwrap_or_default(),
            character_set_name: text(r, 7),
            collation_name: text(r, 8),
            character_maximum_length: number(r, 9),
            numeric_precision: number(r, 10),
            numeric_scale: number(r, 11),
            datetime_precision: number(r, 12),
            column_key: text(r, 13).unwrap_or_default(),
        })
        .collect();
    let stats: Vec<Row> = conn
        .exec(
            "SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, SUB_PART
             FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (schema, table),
        )
        .await
        .map_err(sql_err)?;
    let statistics: Vec<StatisticsRow> = stats
        .iter()
        .map(|r| StatisticsRow {
            index_name: text(r, 0).unwrap_or_default(),
            seq_in_index: number(r, 1).unwrap_or(0) as u32,
            column_name: text(r, 2),
            non_unique: number(r, 3).unwrap_or(1) != 0,
            sub_part: number(r, 4).map(|n| n as u32),
        })
        .collect();
    Ok(TableSchema::from_information_schema(
        schema,
        table,
        flavor,
        &columns,
        &statistics,
    )?)
}

/// True when `schema`.`table` exists.
pub async fn table_exists(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<bool, mysql_async::Error> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await?;
    Ok(n.unwrap_or(0) > 0)
}

/// The estimated rows of a table (information_schema `TABLE_ROWS`); `None` when the server
/// has no figure or says 0 for a table that has rows (statistics not yet computed).
pub async fn estimate_rows(conn: &mut Conn, db: &str, table: &str) -> Option<u64> {
    conn.exec_first::<Option<u64>, _, _>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (db, table),
    )
    .await
    .ok()
    .flatten()
    .flatten()
    .filter(|n| *n > 0)
}

/// `MIN` and `MAX` of a table's integer primary key (`table` and `key` quoted); `None` for an
/// empty table or when the server cannot tell (the estimate then keeps the statistics).
pub async fn key_span(conn: &mut Conn, table: &str, key: &str) -> Option<KeySpan> {
    // Text protocol: the bounds arrive as digits, whatever the integer type's width and sign.
    let row: Option<(Option<String>, Option<String>)> = conn
        .query_first(format!("SELECT MIN({key}), MAX({key}) FROM {table}"))
        .await
        .ok()
        .flatten();
    let (Some(min), Some(max)) = row? else {
        return None;
    };
    Some(KeySpan {
        min: min.parse().ok()?,
        max: max.parse().ok()?,
    })
}
