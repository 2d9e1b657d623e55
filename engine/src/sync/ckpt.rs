//! The sync checkpoint table on the target, `_rowshift_sync_ckpt`: one row per (stream,
//! applier). A stream is one synced table of one named sync.
//!
//! Each row holds the coordinate *before which* every change routed to that applier is applied
//! (`file`, `offset`, `row_no`), the commit position its transaction started from (`resume_*`,
//! a safe place to restart the binlog), and the backfill progress the applier has passed (last
//! chunk, its cursor, done). An applier updates its row in the same transaction as the batch it
//! commits, so the row and the data can never disagree: that is what makes the apply
//! exactly-once across crashes. On restart the stream starts at the lowest `resume_*` of all
//! rows, and each applier's changes before its own coordinate are skipped.

use crate::position::Position;
use mysql_async::prelude::Queryable;
use rowshift_transform::schema::quote_ident;
use std::cmp::Ordering;

/// Name of the checkpoint table (in the database of the first target table).
pub const CKPT_TABLE: &str = "_rowshift_sync_ckpt";

/// Name of the table (beside the checkpoint table) that records, per stream, which source
/// server and which target table its checkpoint rows belong to.
pub const STREAMS_TABLE: &str = "_rowshift_sync_streams";

/// What a stream's checkpoint belongs to: its coordinates are binlog file offsets of one
/// source server, and its rows were applied into one target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIdentity {
    /// The source server (`server_uuid` on MySQL, `server_id` on MariaDB).
    pub source: String,
    /// The target table, quoted and qualified.
    pub target: String,
}

/// Errors of the checkpoint table.
#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    /// A statement failed.
    #[error("sync checkpoint table {table}, {step}: {source}")]
    Sql {
        /// The table.
        table: String,
        /// What was being done.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
}

/// A place in the binlog finer than a [`Position`]: a row of a rows event. Ordered by binlog
/// file number, offset, then row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coord {
    /// Binlog file.
    pub file: std::sync::Arc<str>,
    /// Offset of the event (or of the position after a commit, with `row` 0).
    pub offset: u64,
    /// Row within the event.
    pub row: u32,
}

fn file_number(file: &str) -> Option<u64> {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

impl Ord for Coord {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_file = match (file_number(&self.file), file_number(&other.file)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.file.cmp(&other.file),
        };
        by_file
            .then(self.offset.cmp(&other.offset))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Coord {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Coord {
    /// The coordinate of a commit position: before every event after it.
    pub fn of_position(p: &Position) -> Coord {
        Coord {
            file: p.file.as_str().into(),
            offset: p.offset,
            row: 0,
        }
    }
}

impl std::fmt::Display for Coord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}#{}", self.file, self.offset, self.row)
    }
}

/// One applier's checkpoint row.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplierCkpt {
    /// Applier number.
    pub applier: usize,
    /// Every change routed to this applier before this coordinate is applied.
    pub before: Coord,
    /// Where its current transaction started: a safe binlog start.
    pub resume: Position,
    /// Last backfill chunk fully applied by this applier (0: none).
    pub chunk: u64,
    /// The backfill cursor after that chunk (key literals), `None` before the first chunk.
    pub cursor: Option<Vec<String>>,
    /// The backfill of the table finished.
    pub backfill_done: bool,
    /// Appliers of the stream (fixed for its life: routing depends on it).
    pub appliers: usize,
    /// Seconds since the row was last written (for status).
    pub age_secs: Option<f64>,
}

/// The checkpoint table on the target.
#[derive(Debug, Clone)]
pub struct CkptTable {
    /// Database.
    pub db: String,
}

impl CkptTable {
    /// Quoted name.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.db), quote_ident(CKPT_TABLE))
    }

    fn err(&self, step: &'static str) -> impl FnOnce(mysql_async::Error) -> CkptError + '_ {
        move |source| CkptError::Sql {
            table: self.qualified(),
            step,
            source,
        }
    }

    /// Create the table when missing.
    pub async fn create(&self, conn: &mut mysql_async::Conn) -> Result<(), CkptError> {
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (
               `stream` VARCHAR(191) NOT NULL,
               `applier` INT NOT NULL,
               `file` VARCHAR(255) NOT NULL,
               `offset` BIGINT UNSIGNED NOT NULL,
               `row_no` INT UNSIGNED NOT NULL,
               `resume_file` VARCHAR(255) NOT NULL,
               `resume_offset` BIGINT UNSIGNED NOT NULL,
               `chunk` BIGINT UNSIGNED NOT NULL DEFAULT 0,
               `cursor_keys` TEXT NULL,
               `backfill_done` TINYINT NOT NULL DEFAULT 0,
               `appliers` INT NOT NULL,
               `updated` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
               PRIMARY KEY (`stream`, `applier`)
             ) ENGINE=InnoDB",
            self.qualified()
        ))
        .await
        .map_err(self.err("creating it"))
    }

    fn streams_qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.db), quote_ident(STREAMS_TABLE))
    }

    /// Create the table of stream identities when missing.
    pub async fn create_streams(&self, conn: &mut mysql_async::Conn) -> Result<(), CkptError> {
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (
               `stream` VARCHAR(191) NOT NULL PRIMARY KEY,
               `source_server` VARCHAR(255) NOT NULL,
               `target_table` VARCHAR(1024) NOT NULL
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            self.streams_qualified()
        ))
        .await
        .map_err(self.err("creating the streams table"))
    }

    /// The recorded identity of `stream` (`None` for a stream started by an older rowshift).
    pub async fn identity(
        &self,
        conn: &mut mysql_async::Conn,
        stream: &str,
    ) -> Result<Option<StreamIdentity>, CkptError> {
        let row: Option<(String, String)> = conn
            .exec_first(
                format!(
                    "SELECT `source_server`, `target_table` FROM {} WHERE `stream` = ?",
                    self.streams_qualified()
                ),
                (stream,),
            )
            .await
            .map_err(self.err("reading the stream's identity"))?;
        Ok(row.map(|(source, target)| StreamIdentity { source, target }))
    }

    /// Record the identity of `stream`.
    pub async fn set_identity(
        &self,
        conn: &mut mysql_async::Conn,
        stream: &str,
        id: &StreamIdentity,
    ) -> Result<(), CkptError> {
        conn.exec_drop(
            format!(
                "REPLACE INTO {} (`stream`, `source_server`, `target_table`) VALUES (?, ?, ?)",
                self.streams_qualified()
            ),
            (stream, &id.source, &id.target),
        )
        .await
        .map_err(self.err("recording the stream's identity"))
    }

    /// The rows of `stream`, by applier.
    pub async fn load(
        &self,
        conn: &mut mysql_async::Conn,
        stream: &str,
    ) -> Result<Vec<ApplierCkpt>, CkptError> {
        let rows: Vec<mysql_async::Row> = conn
            .exec(
                format!(
                    "SELECT `applier`, `file`, `offset`, `row_no`, `resume_file`, `resume_offset`,
                            `chunk`, `cursor_keys`, `backfill_done`, `appliers`,
                            TIMESTAMPDIFF(MICROSECOND, `updated`, CURRENT_TIMESTAMP(6)) / 1e6
                     FROM {} WHERE `stream` = ? ORDER BY `applier`",
                    self.qualified()
                ),
                (stream,),
            )
            .await
            .map_err(self.err("reading it"))?;
        Ok(rows.into_iter().filter_map(parse_row).collect())
    }

    /// All streams in the table (for status).
    pub async fn streams(&self, conn: &mut mysql_async::Conn) -> Result<Vec<String>, CkptError> {
        conn.query(format!(
            "SELECT DISTINCT `stream` FROM {} ORDER BY `stream`",
            self.qualified()
        ))
        .await
        .map_err(self.err("listing streams"))
    }

    /// First rows of a new stream: nothing applied, starting at `start`.
    pub async fn init(
        &self,
        conn: &mut mysql_async::Conn,
        stream: &str,
        appliers: usize,
        start: &Position,
    ) -> Result<(), CkptError> {
        let mut sql = format!(
            "INSERT INTO {} (`stream`, `applier`, `file`, `offset`, `row_no`, `resume_file`, `resume_offset`, `appliers`) VALUES ",
            self.qualified()
        );
        for i in 0..appliers {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({}, {i}, {}, {}, 0, {}, {}, {appliers})",
                str_lit(stream),
                str_lit(&start.file),
                start.offset,
                str_lit(&start.file),
                start.offset
            ));
        }
        conn.query_drop(sql)
            .await
            .map_err(self.err("creating the stream's rows"))
    }

    /// Record that the backfill of `stream` is complete (a snapshot backfill done before the
    /// stream started).
    pub async fn mark_backfilled(
        &self,
        conn: &mut mysql_async::Conn,
        stream: &str,
    ) -> Result<(), CkptError> {
        conn.exec_drop(
            format!(
                "UPDATE {} SET `backfill_done` = 1 WHERE `stream` = ?",
                self.qualified()
            ),
            (stream,),
        )
        .await
        .map_err(self.err("recording the snapshot backfill"))
    }

    /// Delete the rows of `stream`.
    pub async fn delete(
        &self,
        conn: &mut mysql_async::Conn,
        stream: &str,
    ) -> Result<(), CkptError> {
        conn.exec_drop(
            format!("DELETE FROM {} WHERE `stream` = ?", self.qualified()),
            (stream,),
        )
        .await
        .map_err(self.err("deleting the stream's rows"))
    }

    /// The `UPDATE` an applier runs inside its batch transaction.
    pub fn update_sql(&self, stream: &str, c: &ApplierCkpt) -> String {
        let cursor = match &c.cursor {
            Some(keys) => str_lit(&serde_json::to_string(keys).unwrap_or_default()),
            None => "NULL".into(),
        };
        format!(
            "UPDATE {} SET `file` = {}, `offset` = {}, `row_no` = {}, `resume_file` = {}, `resume_offset` = {}, `chunk` = {}, `cursor_keys` = {cursor}, `backfill_done` = {} WHERE `stream` = {} AND `applier` = {}",
            self.qualified(),
            str_lit(&c.before.file),
            c.before.offset,
            c.before.row,
            str_lit(&c.resume.file),
            c.resume.offset,
            c.chunk,
            u8::from(c.backfill_done),
            str_lit(stream),
            c.applier
        )
    }
}

fn col<T: mysql_async::prelude::FromValue>(r: &mysql_async::Row, i: usize) -> Option<T> {
    r.get_opt::<T, _>(i)?.ok()
}

fn parse_row(r: mysql_async::Row) -> Option<ApplierCkpt> {
    let applier: i64 = col(&r, 0)?;
    let file: String = col(&r, 1)?;
    let offset: u64 = col(&r, 2)?;
    let row: u32 = col(&r, 3)?;
    let resume_file: String = col(&r, 4)?;
    let resume_offset: u64 = col(&r, 5)?;
    let chunk: u64 = col(&r, 6)?;
    let cursor: Option<String> = col(&r, 7)?;
    let done: i64 = col(&r, 8)?;
    let appliers: i64 = col(&r, 9)?;
    let age: Option<f64> = col::<Option<f64>>(&r, 10).flatten();
    Some(ApplierCkpt {
        applier: usize::try_from(applier).ok()?,
        before: Coord {
            file: file.into(),
            offset,
            row,
        },
        resume: Position::at(resume_file, resume_offset),
        chunk,
        cursor: cursor.and_then(|c| serde_json::from_str(&c).ok()),
        backfill_done: done != 0,
        appliers: usize::try_from(appliers).ok()?,
        age_secs: age,
    })
}

/// A string literal (hex, so any byte is safe).
pub fn str_lit(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let mut out = String::from("0x");
    for b in s.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coords_order_across_files() {
        let a = Coord {
            file: "binlog.000009".into(),
            offset: 900,
            row: 3,
        };
        let b = Coord {
            file: "binlog.000010".into(),
            offset: 4,
            row: 0,
        };
        assert!(a < b);
        let c = Coord {
            row: 4,
            ..a.clone()
        };
        assert!(a < c && c < b);
        assert_eq!(str_lit("ab"), "0x6162");
    }
}
