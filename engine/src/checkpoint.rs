//! The migration checkpoint: one row in `_t_ckpt` beside the shadow table, so that a crashed
//! `migrate` resumes without recopying finished ranges and without losing a change.
//!
//! What is stored is what is *applied*, never what was merely read: the binlog position comes
//! from a barrier every applier acknowledged, and the copy watermark is the upper bound of the
//! longest run of chunks that all finished. Resuming from an older checkpoint is always safe
//! (the apply is idempotent, the copy skips existing keys); resuming from a newer one would lose
//! changes, so the writer only ever moves forward what it knows is durable.

use crate::position::Position;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowshift_transform::schema::quote_ident;

/// Errors of the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A query failed.
    #[error("checkpoint table {table}: {source}")]
    Sql {
        /// The checkpoint table.
        table: String,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The stored row is not one rowshift wrote.
    #[error("checkpoint table {table} holds an unreadable checkpoint ({detail}); run `rowshift migrate --abort` and start again")]
    Corrupt {
        /// The checkpoint table.
        table: String,
        /// What is wrong.
        detail: String,
    },
}

/// One checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Binlog position applied everywhere.
    pub position: Position,
    /// The GTID set/list at that position, as the server prints it (empty when GTIDs are off).
    pub gtid: String,
    /// Upper key bound (SQL literals) of the chunks all copied; `None` before the first.
    pub copied_upto: Option<Vec<String>>,
    /// True once the whole table was copied.
    pub copy_finished: bool,
    /// Rows copied so far, over every run.
    pub rows_copied: u64,
    /// The options that shape the result (ALTER, --set): a resume with others is refused.
    pub options: String,
    /// The phase when written.
    pub phase: String,
    /// Secondary keys dropped from the shadow for the copy and built after it, one
    /// definition per line (`crate::migrate::indexes`); empty when none.
    pub deferred_indexes: String,
}

/// The checkpoint table of `db`.`table`.
pub struct CheckpointTable {
    qualified: String,
}

impl CheckpointTable {
    /// The checkpoint table `_t_ckpt` of `db`.`t`.
    pub fn new(db: &str, table: &str) -> CheckpointTable {
        CheckpointTable {
            qualified: format!(
                "{}.{}",
                quote_ident(db),
                quote_ident(&crate::cutover::names::checkpoint(table))
            ),
        }
    }

    fn err(&self) -> impl FnOnce(mysql_async::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Sql {
            table: self.qualified.clone(),
            source,
        }
    }

    /// Create the table (empty).
    pub async fn create(&self, conn: &mut Conn) -> Result<(), CheckpointError> {
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (
               id TINYINT NOT NULL PRIMARY KEY,
               file VARCHAR(512) NOT NULL,
               file_offset BIGINT UNSIGNED NOT NULL,
               gtid TEXT NOT NULL,
               copied_upto TEXT NULL,
               copy_finished TINYINT NOT NULL,
               rows_copied BIGINT UNSIGNED NOT NULL,
               options TEXT NOT NULL,
               phase VARCHAR(32) NOT NULL,
               deferred_indexes TEXT NOT NULL,
               updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
             ) ENGINE=InnoDB",
            self.qualified
        ))
        .await
        .map_err(self.err())
    }

    /// Write `ckpt` (replacing the previous one).
    ///
    /// In a transaction committed by its own round trip: a killed run's write that the server
    /// finishes after the client died is rolled back, so it can never land over what a resumed
    /// run reads or writes (as [`crate::apply::run_batch`] for the appliers).
    pub async fn save(&self, conn: &mut Conn, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
        conn.query_drop("BEGIN").await.map_err(self.err())?;
        let mut result = self.write(conn, ckpt).await;
        if result.is_ok() {
            result = conn.query_drop("COMMIT").await.map_err(self.err());
        }
        if result.is_err() {
            let _ = conn.query_drop("ROLLBACK").await;
        }
        result
    }

    async fn write(&self, conn: &mut Conn, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
        let upto = ckpt.copied_upto.as_ref().map(|v| encode_literals(v));
        conn.exec_drop(
            format!(
                "REPLACE INTO {} (id, file, file_offset, gtid, copied_upto, copy_finished, rows_copied, options, phase, deferred_indexes)
                 VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.qualified
            ),
            (
                &ckpt.position.file,
                ckpt.position.offset,
                &ckpt.gtid,
                upto,
                u8::from(ckpt.copy_finished),
                ckpt.rows_copied,
                &ckpt.options,
                &ckpt.phase,
                &ckpt.deferred_indexes,
            ),
        )
        .await
        .map_err(self.err())
    }

    /// The options fingerprint alone (what a finished run's leftover checkpoint is compared
    /// by; it reads with any version of the table).
    pub async fn load_options(&self, conn: &mut Conn) -> Result<Option<String>, CheckpointError> {
        conn.query_first(format!(
            "SELECT options FROM {} WHERE id = 1",
            self.qualified
        ))
        .await
        .map_err(self.err())
    }

    /// The stored checkpoint, if any.
    pub async fn load(&self, conn: &mut Conn) -> Result<Option<Checkpoint>, CheckpointError> {
        type Row = (
            String,
            u64,
            String,
            Option<String>,
            u8,
            u64,
            String,
            String,
            String,
        );
        let row: Option<Row> = conn
            .query_first(format!(
                "SELECT file, file_offset, gtid, copied_upto, copy_finished, rows_copied, options, phase, deferred_indexes FROM {} WHERE id = 1",
                self.qualified
            ))
            .await
            .map_err(self.err())?;
        let Some((file, offset, gtid, upto, finished, rows, options, phase, deferred_indexes)) =
            row
        else {
            return Ok(None);
        };
        let copied_upto = match upto {
            Some(text) => Some(
                decode_literals(&text).ok_or_else(|| CheckpointError::Corrupt {
                    table: self.qualified.clone(),
                    detail: format!("copied_upto {text:?} is not a list of key literals"),
                })?,
            ),
            None => None,
        };
        Ok(Some(Checkpoint {
            position: Position::at(file, offset),
            gtid,
            copied_upto,
            copy_finished: finished != 0,
            rows_copied: rows,
            options,
            phase,
            deferred_indexes,
        }))
    }
}

/// Key literals joined with a separator that cannot occur inside them (they are rowshift's own
/// literals: digits, quoted temporals, hex strings, CONVERT(... USING cs) COLLATE co).
fn encode_literals(v: &[String]) -> String {
    v.join("\n")
}

/// Decode and validate literals written by [`encode_literals`]: only rowshift's own literal
/// forms are accepted, since they are pasted into SQL again.
pub fn decode_literals(text: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = text.split('\n').map(str::to_string).collect();
    parts.iter().all(|p| is_key_literal(p)).then_some(parts)
}

/// True for the literal forms of [`crate::copy::key_literal`].
pub fn is_key_literal(s: &str) -> bool {
    let number = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b));
    let temporal = s.len() >= 2
        && s.starts_with('\'')
        && s.ends_with('\'')
        && s[1..s.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-:. ".contains(&b));
    let hex = |h: &str| {
        h.starts_with("X'")
            && h.ends_with('\'')
            && h.len() >= 3
            && h[2..h.len() - 1].bytes().all(|b| b.is_ascii_hexdigit())
    };
    let converted = s
        .strip_prefix("CONVERT(")
        .and_then(|rest| {
            let (h, tail) = rest.split_once(" USING ")?;
            let (cs, co) = tail.split_once(") COLLATE ")?;
            let plain = |n: &str| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            };
            Some(hex(h) && plain(cs) && plain(co))
        })
        .unwrap_or(false);
    s == "NULL" || number || temporal || hex(s) || converted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_literals_come_back() {
        let v = vec![
            "42".to_string(),
            "'2026-01-01 00:00:00'".into(),
            "X'00FF'".into(),
            "CONVERT(X'41' USING utf8mb4) COLLATE utf8mb4_general_ci".into(),
        ];
        assert_eq!(decode_literals(&encode_literals(&v)), Some(v));
        assert_eq!(decode_literals("1; DROP TABLE t"), None);
        assert_eq!(decode_literals("'a' OR 1=1"), None);
        assert_eq!(
            decode_literals("CONVERT(X'41' USING utf8mb4) COLLATE x; DROP"),
            None
        );
    }
}
