//! The verifier: is the new table (a shadow on the same server, or a table on another server)
//! exactly the old table with the transform applied, at one consistent point, while the
//! application keeps writing?
//!
//! Stages (each its own module):
//! 1. [`schema`]: read both tables' columns and primary keys from `information_schema`.
//! 2. [`canon`]: compile, per compared column, SQL giving a canonical representation on each
//!    side (the old side through the caller's expression), and the per-row hash on top.
//! 3. [`point`]: open one snapshot connection per worker and side (plus one for the chunk
//!    boundaries) at a consistent point: tables locked for milliseconds, a hook for migrate to
//!    drain its appliers, `START TRANSACTION WITH CONSISTENT SNAPSHOT` everywhere, unlock.
//! 4. [`checksum`]: walk the old table's primary key in chunks ([`keyrange`]: by key arithmetic
//!    for one integer column, else `ORDER BY pk LIMIT 1 OFFSET n`), and for each chunk compare
//!    `COUNT(*)` and the exact sum of 32-bit row hashes computed by each server, several chunks
//!    at once.
//! 5. [`narrow`]: for a chunk that differs, fetch per-row hashes on both sides, diff them by key,
//!    and fetch both sides' values of every differing row.
//! 6. [`report`] / [`html`]: the verdict (GO / NO-GO), a JSON document with stable field names,
//!    a self-contained HTML page and a terminal summary.
//!
//! Differences found inside the snapshots are real: no write can fall between the two sides'
//! reads. A chunk whose rows are placed differently on the two sides (keys in different
//! collations across servers) shows up as rows missing in one chunk and extra in another; those
//! are matched by key bytes and hash before reporting.

pub mod alter;
pub mod canon;
pub mod checksum;
pub mod html;
pub mod jsoncanon;
pub mod keyrange;
pub mod narrow;
pub mod point;
pub mod report;
pub mod schema;

pub use alter::mapping_for_alter;
pub use canon::HashedBy;
pub use point::{ConsistentPoint, DrainError, LockMethod, LockScope, LockStats, Standalone};
pub use report::{DiffKind, Verdict, VerifyReport};
pub use schema::{Flavor, TableRef};

use crate::conn::{ConnError, Endpoint};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, info_span, Instrument};

/// Which table an error or a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The original (source) table.
    Old,
    /// The shadow or target table.
    New,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Old => "old table",
            Side::New => "new table",
        })
    }
}

/// Errors of a verification: it could not reach a verdict (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed.
    #[error("verify, {side} ({step}): {source}")]
    Sql {
        /// Which side.
        side: Side,
        /// What was being done.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The table does not exist.
    #[error("the {side} {table} does not exist")]
    TableMissing {
        /// Which side.
        side: Side,
        /// `db.table`.
        table: String,
    },
    /// Chunks need a primary key.
    #[error("the {side} {table} has no primary key: rowshift verify needs one to chunk by")]
    NoPrimaryKey {
        /// Which side.
        side: Side,
        /// `db.table`.
        table: String,
    },
    /// The identity mapping was asked for but the tables' columns differ.
    #[error("the tables' columns differ (only in the old table: [{}]; only in the new table: [{}]): give the --alter/--set of the migration", only_old.join(", "), only_new.join(", "))]
    ColumnsDiffer {
        /// Columns only in the old table.
        only_old: Vec<String>,
        /// Columns only in the new table.
        only_new: Vec<String>,
    },
    /// New columns that neither exist in the old table nor have an expression.
    #[error("no old-side value for new column(s) [{}]: give --set <column>=<expression over the old table>", columns.join(", "))]
    UnmappedColumns {
        /// The columns.
        columns: Vec<String>,
    },
    /// A mapping names a column the new table does not have.
    #[error("the new table has no column {column}")]
    UnknownColumn {
        /// The column.
        column: String,
    },
    /// The primary keys cannot be matched.
    #[error("cannot match the primary keys: {reason}")]
    KeyMismatch {
        /// Why.
        reason: String,
    },
    /// A primary key column type that cannot bound a range.
    #[error("primary key column {column} of type {data_type} is not supported for chunking")]
    UnsupportedKey {
        /// The column.
        column: String,
        /// Its type.
        data_type: String,
    },
    /// Old and new are the same table.
    #[error("the old and the new table are the same table ({table})")]
    SameTable {
        /// `db.table`.
        table: String,
    },
    /// The consistent point could not be taken.
    #[error("could not lock {tables} after {attempts} attempt(s) (writes may hold it: retry at a quieter moment or raise the lock wait): {source}")]
    Lock {
        /// The tables.
        tables: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: mysql_async::Error,
    },
    /// The drain hook failed.
    #[error("waiting for the new table to catch up failed: {source}")]
    Drain {
        /// The hook's error.
        #[source]
        source: DrainError,
    },
    /// The server returned something that is not what the query produces.
    #[error("verify, {side}: unexpected {what} from the server: {value:?}")]
    BadValue {
        /// Which side.
        side: Side,
        /// What was read.
        what: &'static str,
        /// The value, as text.
        value: String,
    },
    /// A table definition could not be read (for an `--alter` mapping).
    #[error("{side}: {source}")]
    Catalog {
        /// Which side.
        side: Side,
        /// The catalog's error.
        #[source]
        source: crate::catalog::CatalogError,
    },
    /// The ALTER/--set mapping could not be compiled.
    #[error("cannot map the old table's columns to the new one: {source}")]
    Mapping {
        /// The transform's error.
        #[source]
        source: rowshift_transform::mapping::MappingError,
    },
    /// A checksum worker stopped without a result.
    #[error("a checksum worker stopped unexpectedly")]
    WorkerStopped,
    /// A setting is out of range.
    #[error("invalid setting {setting}: {reason}")]
    InvalidConfig {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl VerifyError {
    pub(crate) fn sql(side: Side, step: &'static str) -> impl FnOnce(mysql_async::Error) -> Self {
        move |source| VerifyError::Sql { side, step, source }
    }
}

/// One compared column: a SQL expression over the old table, and the new column it must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    /// SQL over the old table's columns (e.g. `` `status_code` `` or a `CASE`).
    pub old_expr: String,
    /// The new table's column name (unquoted).
    pub new_column: String,
}

impl ColumnMap {
    /// The column compared with the same-named old column.
    pub fn same(name: &str) -> ColumnMap {
        ColumnMap {
            old_expr: schema::quote_ident(name),
            new_column: name.to_string(),
        }
    }
}

/// How old rows map to new rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnMapping {
    /// Both tables have the same columns (by name); each is compared with its namesake.
    Identity,
    /// Same-named columns compared with each other; `set` gives the expression of new columns
    /// (or overrides); old columns absent from the new table are ignored (dropped by an ALTER).
    ByName {
        /// Expressions for new columns.
        set: Vec<ColumnMap>,
    },
    /// Exactly these columns (e.g. the transform's `select_exprs()` with its new columns).
    Explicit(Vec<ColumnMap>),
}

/// Where the new table is.
#[derive(Debug, Clone)]
pub enum NewTable {
    /// On the source server (a shadow table).
    Shadow(TableRef),
    /// On another server.
    Remote {
        /// The other server.
        endpoint: Endpoint,
        /// The table there.
        table: TableRef,
    },
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    /// The server holding the old table.
    pub source: Endpoint,
    /// The old (original) table.
    pub table: TableRef,
    /// The new table.
    pub new: NewTable,
    /// How columns map.
    pub mapping: ColumnMapping,
}

/// Tuning of a verification.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// Chunks compared at once (each uses one snapshot connection per side).
    pub workers: usize,
    /// Wished duration of one chunk's checksum.
    pub target_chunk_time: Duration,
    /// First chunk size in rows.
    pub initial_chunk_rows: u64,
    /// Largest chunk in rows (a differing chunk's per-row hashes are held in memory).
    pub max_chunk_rows: u64,
    /// Longest wait for the tables' lock per attempt (whole seconds, at least 1).
    pub lock_wait_timeout: Duration,
    /// Attempts to take the lock.
    pub lock_attempts: u32,
    /// How to lock.
    pub lock_method: LockMethod,
    /// Differing rows whose values are fetched and reported (all are counted).
    pub max_reported_rows: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            workers: 2,
            target_chunk_time: Duration::from_millis(250),
            initial_chunk_rows: 5_000,
            max_chunk_rows: 200_000,
            lock_wait_timeout: Duration::from_secs(2),
            lock_attempts: 3,
            lock_method: LockMethod::LockTables,
            max_reported_rows: 1_000,
        }
    }
}

impl VerifyConfig {
    /// Check the settings.
    pub fn validate(&self) -> Result<(), VerifyError> {
        if self.workers == 0 || self.workers > 64 {
            return Err(VerifyError::InvalidConfig {
                setting: "workers",
                reason: "must be 1..=64",
            });
        }
        if self.initial_chunk_rows == 0 || self.max_chunk_rows < self.initial_chunk_rows {
            return Err(VerifyError::InvalidConfig {
                setting: "chunk rows",
                reason: "need 1 <= initial_chunk_rows <= max_chunk_rows",
            });
        }
        if self.lock_attempts == 0 {
            return Err(VerifyError::InvalidConfig {
                setting: "lock_attempts",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// Compare the old table (through the mapping) with the new one at a consistent point taken
/// through `point`, and report.
pub async fn run(
    plan: VerifyPlan,
    point: &mut impl ConsistentPoint,
    config: VerifyConfig,
) -> Result<VerifyReport, VerifyError> {
    config.validate()?;
    let (new_endpoint, new_table, same_server) = match &plan.new {
        NewTable::Shadow(t) => (plan.source.clone(), t.clone(), true),
        NewTable::Remote { endpoint, table } => (endpoint.clone(), table.clone(), false),
    };
    if same_server && new_table == plan.table {
        return Err(VerifyError::SameTable {
            table: plan.table.to_string(),
        });
    }
    let span = info_span!("verify", old = %plan.table, new = %new_table, same_server);
    async move {
        let started = Instant::now();
        let started_at = SystemTime::now();

        let mut meta = plan.source.connect().await?;
        let old_info = schema::read_table(&mut meta, Side::Old, &plan.table).await?;
        let _ = meta.disconnect().await;
        let mut meta = new_endpoint.connect().await?;
        let new_info = schema::read_table(&mut meta, Side::New, &new_table).await?;
        let _ = meta.disconnect().await;

        let maps = canon::resolve_mapping(&plan.mapping, &old_info, &new_info)?;
        let compiled = Arc::new(canon::compile(
            &maps,
            &old_info,
            &new_info,
            &plan.table,
            &new_table,
        )?);

        let workers = config.workers;
        let snaps = point::open(
            point,
            point::Request {
                old: &plan.source,
                new: &new_endpoint,
                same_server,
                old_table: &compiled.old.table,
                new_table: &compiled.new.table,
                n_old: workers + 1,
                n_new: workers,
            },
            &config,
        )
        .await?;
        let lock = snaps.lock.clone();
        let outcome = checksum::check_all(compiled.clone(), snaps, &config).await?;
        let report = report::build(report::Inputs {
            compiled: &compiled,
            old: (&plan.source, &old_info, &plan.table),
            new: (&new_endpoint, &new_info, &new_table),
            same_server,
            started_at,
            duration: started.elapsed(),
            lock,
            outcome,
            max_reported: config.max_reported_rows,
        });
        info!(
            verdict = ?report.verdict,
            rows = report.rows_old,
            differences = report.differences.total,
            "verification finished"
        );
        Ok(report)
    }
    .instrument(span)
    .await
}
