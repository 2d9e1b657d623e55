//! Server checks before reading a binlog as a replica: one small named function per rule, each
//! failing with the setting, what it must be, what it is, and the fix.

use mysql_async::prelude::Queryable;

use super::decode::Flavor;

/// A server setting that makes the binlog unusable for rowshift.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Binary logging is off.
    #[error("the server does not write a binary log (log_bin=OFF): start it with --log-bin (MySQL 8.0+ has it on by default; MariaDB needs log_bin in my.cnf)")]
    BinlogDisabled,
    /// A setting has a value rowshift cannot work with.
    #[error("{setting} is {actual}, rowshift needs {expected}: run SET GLOBAL {setting}='{expected}' and put {setting}={expected} in my.cnf (sessions already open keep the old value)")]
    InvalidSetting {
        /// Variable name.
        setting: &'static str,
        /// Required value.
        expected: &'static str,
        /// Current value.
        actual: String,
    },
    /// A preflight query failed.
    #[error("preflight query `{query}` failed")]
    Query {
        /// The query.
        query: &'static str,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
}

/// What preflight learned about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// `SELECT VERSION()`.
    pub version: String,
    /// MySQL `gtid_mode=ON` (MariaDB always logs GTIDs).
    pub gtid_mode: bool,
}

async fn var(
    conn: &mut mysql_async::Conn,
    query: &'static str,
) -> Result<Option<String>, PreflightError> {
    conn.query_first::<Option<String>, _>(query)
        .await
        .map(Option::flatten)
        .map_err(|source| PreflightError::Query { query, source })
}

/// `log_bin` must be ON.
pub async fn ensure_binlog_enabled(conn: &mut mysql_async::Conn) -> Result<(), PreflightError> {
    let v = var(conn, "SELECT CAST(@@GLOBAL.log_bin AS CHAR)").await?;
    match v.as_deref() {
        Some("1") | Some("ON") => Ok(()),
        _ => Err(PreflightError::BinlogDisabled),
    }
}

/// `binlog_format` must be ROW (STATEMENT and MIXED log row changes as SQL text).
pub async fn ensure_row_format(conn: &mut mysql_async::Conn) -> Result<(), PreflightError> {
    let v = var(conn, "SELECT @@GLOBAL.binlog_format")
        .await?
        .unwrap_or_default();
    if v.eq_ignore_ascii_case("ROW") {
        Ok(())
    } else {
        Err(PreflightError::InvalidSetting {
            setting: "binlog_format",
            expected: "ROW",
            actual: v,
        })
    }
}

/// `binlog_row_image` must be FULL (MINIMAL loses unchanged columns, NOBLOB loses BLOBs).
pub async fn ensure_full_row_image(conn: &mut mysql_async::Conn) -> Result<(), PreflightError> {
    let v = var(conn, "SELECT @@GLOBAL.binlog_row_image")
        .await?
        .unwrap_or_default();
    if v.eq_ignore_ascii_case("FULL") {
        Ok(())
    } else {
        Err(PreflightError::InvalidSetting {
            setting: "binlog_row_image",
            expected: "FULL",
            actual: v,
        })
    }
}

/// Detects the flavor and version.
pub async fn server_info(conn: &mut mysql_async::Conn) -> Result<ServerInfo, PreflightError> {
    let version = var(conn, "SELECT VERSION()").await?.unwrap_or_default();
    let flavor = if version.contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let gtid_mode = match flavor {
        Flavor::MariaDb => true,
        Flavor::MySql => var(conn, "SELECT CAST(@@GLOBAL.gtid_mode AS CHAR)")
            .await?
            .is_some_and(|v| v.eq_ignore_ascii_case("ON")),
    };
    Ok(ServerInfo {
        flavor,
        version,
        gtid_mode,
    })
}

/// Every check a binlog source needs, in order.
pub async fn check_source(conn: &mut mysql_async::Conn) -> Result<ServerInfo, PreflightError> {
    let info = server_info(conn).await?;
    ensure_binlog_enabled(conn).await?;
    ensure_row_format(conn).await?;
    ensure_full_row_image(conn).await?;
    Ok(info)
}
