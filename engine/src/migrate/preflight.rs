//! Checks made before anything is changed: each returns a [`PreflightError`] that names the
//! problem and what to do, and none of them writes.

use crate::catalog;
use crate::cutover::names;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowshift_transform::schema::TableSchema;

/// Why a migration cannot start. Nothing has been changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// A setting has the wrong value.
    #[error("server setting {setting} is {actual}, rowshift needs {expected}: {fix}")]
    InvalidSetting {
        /// The variable.
        setting: &'static str,
        /// Needed value.
        expected: &'static str,
        /// Current value.
        actual: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// The table has no primary key.
    #[error("table {table} has no primary key: rowshift needs one to copy in ranges and apply changes by key; add a PRIMARY KEY first")]
    NoPrimaryKey {
        /// The table.
        table: String,
    },
    /// Foreign keys involve the table.
    #[error("table {table} has foreign keys ({constraints}): rowshift refuses, because renaming tables at cut-over breaks or silently re-points them; drop the foreign keys first")]
    ForeignKeys {
        /// The table.
        table: String,
        /// Constraint names.
        constraints: String,
    },
    /// Triggers exist on the table.
    #[error("table {table} has triggers ({triggers}): they would not follow the table through the cut-over; drop them first and recreate them after")]
    Triggers {
        /// The table.
        table: String,
        /// Trigger names.
        triggers: String,
    },
    /// A privilege is missing.
    #[error("the user lacks a privilege for {what}: {grant} (server said: {detail})")]
    MissingPrivilege {
        /// What needed it.
        what: &'static str,
        /// The GRANT that fixes it.
        grant: String,
        /// The server's message.
        detail: String,
    },
    /// Tables of an earlier run are in the way.
    #[error("leftover tables from an earlier rowshift run exist: {tables}. If that run is not resumable, pass --drop-leftovers with --execute to drop them (a dry run drops nothing; the old table `{old}` is the original data of an earlier cut-over: keep a backup)")]
    Leftovers {
        /// The tables found.
        tables: String,
        /// The old table's name.
        old: String,
    },
    /// The table name is too long for the helper tables' names.
    #[error("table name `{table}` is too long: rowshift's helper table `{longest}` would exceed 64 characters")]
    NameTooLong {
        /// The table.
        table: String,
        /// The longest derived name.
        longest: String,
    },
    /// A query failed.
    #[error("preflight check {check} failed: {source}")]
    Sql {
        /// Which check.
        check: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
}

fn sql(check: &'static str) -> impl FnOnce(mysql_async::Error) -> PreflightError {
    move |source| PreflightError::Sql { check, source }
}

/// Binlog on, ROW format, FULL row image.
pub async fn binlog_settings(conn: &mut Conn) -> Result<(), PreflightError> {
    let (log_bin, format, image): (Option<String>, Option<String>, Option<String>) = conn
        .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
        .await
        .map_err(sql("binlog settings"))?
        .unwrap_or((None, None, None));
    if log_bin.as_deref() != Some("1") {
        return Err(PreflightError::InvalidSetting {
            setting: "log_bin",
            expected: "ON",
            actual: log_bin.unwrap_or_else(|| "unknown".into()),
            fix: "start the server with --log-bin (on RDS: enable automated backups)",
        });
    }
    if !format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
    {
        return Err(PreflightError::InvalidSetting {
            setting: "binlog_format",
            expected: "ROW",
            actual: format.unwrap_or_else(|| "unknown".into()),
            fix: "SET GLOBAL binlog_format = 'ROW' (and in the config file; on RDS in the parameter group); sessions opened before keep the old format",
        });
    }
    if !image
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("FULL"))
    {
        return Err(PreflightError::InvalidSetting {
            setting: "binlog_row_image",
            expected: "FULL",
            actual: image.unwrap_or_else(|| "unknown".into()),
            fix: "SET GLOBAL binlog_row_image = 'FULL' (MINIMAL and NOBLOB images lose columns rowshift must copy)",
        });
    }
    Ok(())
}

/// MySQL commits in binlog order (`binlog_order_commits = ON`, the default; MariaDB always
/// does). The watermark backfill relies on it: a chunk read after its low watermark committed
/// must see every transaction logged before that watermark.
pub async fn binlog_order_commits(conn: &mut Conn) -> Result<(), PreflightError> {
    let on: Option<i64> = conn
        .query_first("SELECT @@GLOBAL.binlog_order_commits")
        .await
        .map_err(sql("binlog_order_commits"))?;
    if on == Some(0) {
        return Err(PreflightError::InvalidSetting {
            setting: "binlog_order_commits",
            expected: "ON",
            actual: "OFF".into(),
            fix: "SET GLOBAL binlog_order_commits = ON (on RDS in the parameter group) for the backfill: with it OFF a transaction can commit after one logged behind it, so a backfill chunk could miss a change and keep an older row on the target",
        });
    }
    Ok(())
}

/// REPLICATION CLIENT (position) and REPLICATION SLAVE (binlog stream) are granted.
pub async fn replication_privileges(conn: &mut Conn) -> Result<(), PreflightError> {
    if let Err(e) = crate::cutover::server_position(conn).await {
        return Err(PreflightError::MissingPrivilege {
            what: "reading the binlog position",
            grant: "GRANT REPLICATION CLIENT, REPLICATION SLAVE ON *.* TO <user>".into(),
            detail: e.to_string(),
        });
    }
    let grants: Vec<String> = conn
        .query("SHOW GRANTS")
        .await
        .map_err(sql("SHOW GRANTS"))?;
    let all = grants.join(" ").to_ascii_uppercase();
    let ok = all.contains("ALL PRIVILEGES ON *.*")
        || all.contains("REPLICATION SLAVE")
        || all.contains("REPLICATION REPLICA");
    if !ok {
        return Err(PreflightError::MissingPrivilege {
            what: "reading the binlog as a replica",
            grant: "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO <user>".into(),
            detail: "SHOW GRANTS lists no REPLICATION SLAVE".into(),
        });
    }
    Ok(())
}

/// The table has a primary key, no foreign keys and no triggers, and short enough a name.
pub async fn table_shape(conn: &mut Conn, schema: &TableSchema) -> Result<(), PreflightError> {
    let table = schema.qualified_name();
    let longest = names::sentry(&schema.name);
    if longest.chars().count() > names::MAX_NAME {
        return Err(PreflightError::NameTooLong {
            table: schema.name.clone(),
            longest,
        });
    }
    if schema.primary_key.is_empty() {
        return Err(PreflightError::NoPrimaryKey { table });
    }
    let fks: Vec<String> = conn
        .exec(
            "SELECT DISTINCT CONSTRAINT_NAME FROM information_schema.KEY_COLUMN_USAGE
             WHERE REFERENCED_TABLE_NAME IS NOT NULL AND (
               (TABLE_SCHEMA = ? AND TABLE_NAME = ?) OR
               (REFERENCED_TABLE_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?))",
            (&schema.schema, &schema.name, &schema.schema, &schema.name),
        )
        .await
        .map_err(sql("foreign keys"))?;
    if !fks.is_empty() {
        return Err(PreflightError::ForeignKeys {
            table,
            constraints: fks.join(", "),
        });
    }
    let triggers: Vec<String> = conn
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
             WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?",
            (&schema.schema, &schema.name),
        )
        .await
        .map_err(sql("triggers"))?;
    if !triggers.is_empty() {
        return Err(PreflightError::Triggers {
            table,
            triggers: triggers.join(", "),
        });
    }
    Ok(())
}

/// The helper tables rowshift would create beside `table`.
pub fn helper_tables(table: &str) -> Vec<String> {
    vec![
        names::shadow(table),
        names::old(table),
        names::sentry(table),
        names::trip(table),
        names::checkpoint(table),
    ]
}

/// Helper tables of an earlier run; dropped when `drop` is set, else an error.
pub async fn leftovers(
    conn: &mut Conn,
    db: &str,
    table: &str,
    drop: bool,
) -> Result<(), PreflightError> {
    let mut found = Vec::new();
    for name in helper_tables(table) {
        if catalog::table_exists(conn, db, &name)
            .await
            .map_err(sql("leftover tables"))?
        {
            found.push(name);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    if !drop {
        return Err(PreflightError::Leftovers {
            tables: found
                .iter()
                .map(|t| format!("`{db}`.`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            old: names::old(table),
        });
    }
    for name in found {
        tracing::warn!(table = %name, "dropping leftover table (--drop-leftovers)");
        conn.query_drop(format!(
            "DROP TABLE {}.{}",
            rowshift_transform::schema::quote_ident(db),
            rowshift_transform::schema::quote_ident(&name)
        ))
        .await
        .map_err(sql("dropping leftover tables"))?;
    }
    Ok(())
}
