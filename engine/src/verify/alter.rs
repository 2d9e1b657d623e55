//! The compared columns of a migration given as `--alter`/`--set`: both tables' definitions are
//! read from the servers, renames come from the ALTER text, and the transform crate compiles the
//! mapping; its `select_exprs()` (the SQL the copy runs on the old table) become the old-side
//! expressions, zipped with the new columns they fill.
//!
//! New columns left to their default (no old source, no `--set`) are not compared: the old
//! side has no expression for them.

use super::{ColumnMap, ColumnMapping, NewTable, Side, TableRef, VerifyError};
use crate::catalog;
use crate::conn::Endpoint;
use rowshift_transform::mapping::{parse_renames, Mapping};

/// The mapping of `ALTER TABLE t <alter>` with `sets` (`"col = expression"`).
pub async fn mapping_for_alter(
    source: &Endpoint,
    table: &TableRef,
    new: &NewTable,
    alter: &str,
    sets: &[String],
) -> Result<ColumnMapping, VerifyError> {
    let (new_endpoint, new_table) = match new {
        NewTable::Shadow(t) => (source, t),
        NewTable::Remote { endpoint, table } => (endpoint, table),
    };
    let old = load(source, Side::Old, table).await?;
    let new = load(new_endpoint, Side::New, new_table).await?;
    let renames = parse_renames(alter).map_err(|source| VerifyError::Mapping { source })?;
    let mapping = Mapping::new(&old, &new, &renames, sets)
        .map_err(|source| VerifyError::Mapping { source })?;
    Ok(ColumnMapping::Explicit(
        mapping
            .insert_columns()
            .iter()
            .zip(mapping.select_exprs())
            .filter(|(_, expr)| expr != "DEFAULT")
            .map(|(column, expr)| ColumnMap {
                old_expr: expr,
                new_column: column.clone(),
            })
            .collect(),
    ))
}

async fn load(
    endpoint: &Endpoint,
    side: Side,
    table: &TableRef,
) -> Result<rowshift_transform::schema::TableSchema, VerifyError> {
    let mut conn = endpoint.connect().await?;
    let (flavor, _) = catalog::flavor(&mut conn)
        .await
        .map_err(VerifyError::sql(side, "reading the server version"))?;
    let schema = catalog::load_table(&mut conn, flavor, &table.db, &table.table)
        .await
        .map_err(|source| VerifyError::Catalog { side, source })?;
    let _ = conn.disconnect().await;
    Ok(schema)
}
