//! What state a table is in after an earlier run, whether that run can resume, and `--abort`.

use crate::catalog;
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointTable};
use crate::cutover::names;
use crate::position::GtidState;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowshift_transform::schema::{quote_ident, TableSchema};

/// Why a resume is refused.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A query failed.
    #[error("inspecting the earlier run: {0}")]
    Sql(#[from] mysql_async::Error),
    /// A resumable migration exists but `--resume` was not given.
    #[error("a resumable migration of `{db}`.`{table}` exists (phase {phase}, {rows} rows copied): run the same command with --resume to continue it, or with --abort to drop its shadow and checkpoint")]
    ResumableExists {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// Phase of the checkpoint.
        phase: String,
        /// Rows copied.
        rows: u64,
    },
    /// `--resume` without anything to resume.
    #[error("nothing to resume for `{db}`.`{table}`: no checkpoint table `{ckpt}` (run without --resume to start)")]
    NothingToResume {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// Checkpoint table name.
        ckpt: String,
    },
    /// The options differ from the checkpoint's.
    #[error("the migration in progress was started with other options ({stored}); resume it with the same --alter/--set, or --abort it")]
    OptionsChanged {
        /// The stored options.
        stored: String,
    },
    /// The table's definition is not the one the migration started from.
    #[error("the definition of the table changed since the migration started (then: {then}; now: {now}): the shadow table was built from the old one; run with --abort and start the migration again")]
    TableChanged {
        /// The definition the checkpoint was made for.
        then: String,
        /// The definition now.
        now: String,
    },
    /// The checkpoint beside the table is an earlier migration's whose cut-over completed,
    /// with other options than this run's.
    #[error("the table `{db}`.`{table}` was migrated by an earlier run with other options ({stored}), whose cut-over completed; its checkpoint and the original table `{db}`.`{old}` are still there. Run with --abort to remove its leftovers (the old table is kept), keep or drop `{old}` yourself (or pass --drop-leftovers), then run this migration again")]
    EarlierCutOver {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// The old table.
        old: String,
        /// The earlier run's options.
        stored: String,
    },
    /// The binlog file of the checkpoint is gone.
    #[error("the checkpoint's binlog file {file} has been purged from the server: the changes since then cannot be read; run with --abort and start the migration again (raise binlog retention, e.g. binlog_expire_logs_seconds, or on RDS mysql.rds_set_configuration('binlog retention hours', 24))")]
    Purged {
        /// The missing file.
        file: String,
    },
    /// Transactions after the checkpoint's GTID set were purged from the server's binlog.
    #[error("the binlog after the checkpoint's GTID set {gtid} has been purged from the server ({purged}): the changes since then cannot be read; run with --abort and start the migration again (raise binlog retention, e.g. binlog_expire_logs_seconds, or on RDS mysql.rds_set_configuration('binlog retention hours', 24))")]
    GtidPurged {
        /// The checkpoint's GTID set.
        gtid: String,
        /// What was purged: MySQL's `gtid_purged`, or where MariaDB's oldest binlog starts.
        purged: String,
    },
    /// MariaDB: the GTID state at the checkpoint's file offset on this server is not the
    /// checkpoint's (another server's binlog under the same name, after a failover).
    #[error("the checkpoint's binlog position {position} on this server holds GTID state {here}, the checkpoint recorded {gtid}: this is not the binlog the earlier run read (a failover to another server?); resuming there could skip or replay changes: run with --abort and start again")]
    PositionMoved {
        /// The checkpoint's position.
        position: String,
        /// The state there on this server (empty: not an event boundary).
        here: String,
        /// The checkpoint's GTID state.
        gtid: String,
    },
    /// GTIDs of the checkpoint are not in the server's executed set (failover to a server
    /// that lacks them).
    #[error("the checkpoint's GTID set {gtid} is not contained in this server's gtid_executed (on MariaDB its gtid_binlog_pos; a failover to a server missing transactions, or a MariaDB replica without log_slave_updates?): resuming could lose changes; run with --abort and start again")]
    GtidGone {
        /// The checkpoint's GTID set.
        gtid: String,
    },
    /// The tables are in a state rowshift did not leave them in.
    #[error("ambiguous state of `{db}`.`{table}`: {detail}. rowshift will not guess: inspect the tables and drop the one that is not yours to keep")]
    Ambiguous {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// What was found.
        detail: String,
    },
}

/// What an earlier run left.
#[derive(Debug)]
pub enum PriorState {
    /// No earlier run.
    Fresh,
    /// A run stopped before its cut-over; its checkpoint.
    Resumable(Checkpoint),
    /// A run did its cut-over (the RENAME happened) and died before cleaning up; the options
    /// fingerprint its checkpoint holds (empty when the checkpoint table is empty).
    CutOverDone(String),
}

/// Inspect the tables beside `db`.`table`.
pub async fn inspect(conn: &mut Conn, db: &str, table: &str) -> Result<PriorState, ResumeError> {
    let t = catalog::table_exists(conn, db, table).await?;
    let shadow = catalog::table_exists(conn, db, &names::shadow(table)).await?;
    let old = catalog::table_exists(conn, db, &names::old(table)).await?;
    let ckpt = catalog::table_exists(conn, db, &names::checkpoint(table)).await?;
    if !ckpt {
        return Ok(PriorState::Fresh);
    }
    let ambiguous = |detail: &str| ResumeError::Ambiguous {
        db: db.to_string(),
        table: table.to_string(),
        detail: detail.to_string(),
    };
    match (t, shadow, old) {
        (true, true, false) => {
            let stored = CheckpointTable::new(db, table).load(conn).await?;
            match stored {
                Some(c) => Ok(PriorState::Resumable(c)),
                None => Err(ambiguous("the checkpoint table is empty")),
            }
        }
        (true, false, true) => {
            let stored = CheckpointTable::new(db, table).load_options(conn).await?;
            Ok(PriorState::CutOverDone(stored.unwrap_or_default()))
        }
        (true, true, true) => Err(ambiguous(
            "the shadow table and an old table both exist next to the table",
        )),
        (false, _, _) => Err(ambiguous("the table itself is missing")),
        (true, false, false) => Err(ambiguous(
            "a checkpoint exists but neither the shadow nor the old table",
        )),
    }
}

/// Check that `ckpt` can be resumed on this server with `options`.
pub async fn validate(
    conn: &mut Conn,
    ckpt: &Checkpoint,
    options: &str,
) -> Result<(), ResumeError> {
    let (stored, stored_table) = split_table(&ckpt.options);
    let (wanted, table) = split_table(options);
    if stored != wanted {
        return Err(ResumeError::OptionsChanged {
            stored: stored.replace('\n', "; "),
        });
    }
    if stored_table != table {
        return Err(ResumeError::TableChanged {
            then: stored_table.to_string(),
            now: table.to_string(),
        });
    }
    // GTIDs first: after a failover the file names say little, the GTID set says exactly
    // whether this server holds every transaction the checkpoint has applied.
    let is_mysql_gtid = ckpt.gtid.contains(':');
    if is_mysql_gtid {
        let contained: Option<i64> = conn
            .exec_first(
                "SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed)",
                (&ckpt.gtid,),
            )
            .await?;
        if contained != Some(1) {
            return Err(ResumeError::GtidGone {
                gtid: ckpt.gtid.clone(),
            });
        }
    }
    match gtid_start(conn, ckpt).await? {
        Some(GtidState::MariaDb(want)) => {
            // The stream starts from the GTID list: this server's binlog must have reached
            // every domain's GTID of it (the server itself refuses, in strict mode, a GTID its
            // binlog lacks, and a list whose binlog was purged).
            let have: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await?;
            let have = match GtidState::parse(&have.unwrap_or_default()) {
                Ok(GtidState::MariaDb(list)) => list,
                _ => Default::default(),
            };
            let reached = want
                .iter()
                .all(|g| have.get(g.domain).is_some_and(|h| h.seq >= g.seq));
            if !reached {
                return Err(ResumeError::GtidGone {
                    gtid: ckpt.gtid.clone(),
                });
            }
            // The oldest binlog must start at or before the list in every domain it has.
            let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
            if let Some(oldest) = logs.first().and_then(|r| r.get::<String, _>(0)) {
                let starts: Option<Option<String>> = conn
                    .exec_first("SELECT BINLOG_GTID_POS(?, 4)", (&oldest,))
                    .await?;
                let starts = starts.flatten().unwrap_or_default();
                if let Ok(GtidState::MariaDb(first)) = GtidState::parse(&starts) {
                    let kept = first
                        .iter()
                        .all(|f| want.get(f.domain).is_some_and(|w| w.seq >= f.seq));
                    if !kept {
                        return Err(ResumeError::GtidPurged {
                            gtid: ckpt.gtid.clone(),
                            purged: format!("its oldest binlog {oldest} starts after {starts}"),
                        });
                    }
                }
            }
            return Ok(());
        }
        Some(_) => {
            // The stream starts from the GTID set (not the file offset, which names another
            // server's bytes after a failover): every purged transaction must be in it.
            let (covered, purged): (Option<i64>, Option<String>) = conn
                .exec_first(
                    "SELECT GTID_SUBSET(@@GLOBAL.gtid_purged, ?), @@GLOBAL.gtid_purged",
                    (&ckpt.gtid,),
                )
                .await?
                .unwrap_or((None, None));
            if covered != Some(1) {
                return Err(ResumeError::GtidPurged {
                    gtid: ckpt.gtid.clone(),
                    purged: format!(
                        "gtid_purged {}",
                        purged.unwrap_or_default().replace('\n', "")
                    ),
                });
            }
            return Ok(());
        }
        None => {}
    }
    let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    let present = logs
        .iter()
        .filter_map(|r| r.get::<String, _>(0))
        .any(|f| f == ckpt.position.file);
    if !present {
        return Err(ResumeError::Purged {
            file: ckpt.position.file.clone(),
        });
    }
    // MariaDB with an empty GTID list (no GTID logged before the checkpoint, stored as an
    // empty text): the state at the checkpoint's offset on this server must be empty too.
    if ckpt.gtid.is_empty() && is_mariadb(conn).await? {
        let here = maria_state_at(conn, ckpt).await?;
        if here.as_deref() != Some("") {
            return Err(ResumeError::PositionMoved {
                position: ckpt.position.to_string(),
                here: here.unwrap_or_default(),
                gtid: ckpt.gtid.clone(),
            });
        }
    }
    Ok(())
}

/// The server is MariaDB.
async fn is_mariadb(conn: &mut Conn) -> Result<bool, ResumeError> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    Ok(version.is_some_and(|v| v.contains("MariaDB")))
}

/// Where a resumed stream starts from a GTID state instead of the checkpoint's file offset
/// (`None`: the offset).
/// - MySQL: the checkpoint's GTID set, when the server runs with `gtid_mode = ON` (a GTID
///   dump needs it).
/// - MariaDB: the checkpoint's GTID list, when the GTID state at the checkpoint's offset on
///   this server is not that list: the binlog there is not the one the earlier run read (a
///   failover to a replica, whose binlog holds the same transactions at other offsets).
pub async fn gtid_start(
    conn: &mut Conn,
    ckpt: &Checkpoint,
) -> Result<Option<GtidState>, ResumeError> {
    match GtidState::parse(&ckpt.gtid) {
        Ok(gtid @ GtidState::MySql(_)) => Ok(gtid_mode_on(conn).await?.then_some(gtid)),
        Ok(GtidState::MariaDb(list)) if !list.is_empty() => {
            let here = maria_state_at(conn, ckpt).await?.unwrap_or_default();
            let same = matches!(GtidState::parse(&here), Ok(GtidState::MariaDb(h)) if h == list);
            Ok((!same).then_some(GtidState::MariaDb(list)))
        }
        _ => Ok(None),
    }
}

/// MySQL runs with `gtid_mode = ON` (a GTID dump needs it).
pub async fn gtid_mode_on(conn: &mut Conn) -> Result<bool, ResumeError> {
    let on: Option<i64> = conn.query_first("SELECT @@GLOBAL.gtid_mode = 'ON'").await?;
    Ok(on == Some(1))
}

/// MariaDB: the GTID state at the checkpoint's binlog position on this server (`None` when
/// that file is missing or the offset is not an event boundary).
async fn maria_state_at(conn: &mut Conn, ckpt: &Checkpoint) -> Result<Option<String>, ResumeError> {
    let here: Option<Option<String>> = conn
        .exec_first(
            "SELECT BINLOG_GTID_POS(?, ?)",
            (&ckpt.position.file, ckpt.position.offset),
        )
        .await?;
    Ok(here.flatten())
}

/// The fingerprint of what shapes the result: the options and the table's definition.
pub fn options_fingerprint(alter: &str, sets: &[String], table: &TableSchema) -> String {
    let mut s = format!("alter={alter}");
    for set in sets {
        s.push_str("\nset=");
        s.push_str(set);
    }
    s.push_str(TABLE_LINE);
    s.push_str(&table_fingerprint(table));
    s
}

const TABLE_LINE: &str = "\ntable=";

/// Whether two fingerprints name the same `--alter` and `--set` (whatever the table was).
pub fn same_options(a: &str, b: &str) -> bool {
    split_table(a).0 == split_table(b).0
}

/// The `--alter` and `--set` of a fingerprint, on one line.
pub fn options_line(fingerprint: &str) -> String {
    match split_table(fingerprint).0 {
        "" => "unknown: its checkpoint table is empty".to_string(),
        o => o.replace('\n', "; "),
    }
}

/// The options part and the table part of a fingerprint.
fn split_table(fingerprint: &str) -> (&str, &str) {
    fingerprint
        .split_once(TABLE_LINE)
        .unwrap_or((fingerprint, ""))
}

/// One line describing what of a table's definition the shadow and the mapping depend on:
/// columns (name, type, nullability, collation) and the primary and unique keys.
fn table_fingerprint(t: &TableSchema) -> String {
    let columns: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {:?}{}{}",
                quote_ident(&c.name),
                c.data_type,
                if c.nullable { " NULL" } else { " NOT NULL" },
                c.collation
                    .as_deref()
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let key = |cols: &[usize]| -> String {
        cols.iter()
            .filter_map(|&i| t.columns.get(i))
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(",")
    };
    let uniques: Vec<String> = t
        .unique_keys
        .iter()
        .map(|k| format!("{:?}", k).replace('\n', " "))
        .collect();
    format!(
        "{}; PRIMARY KEY ({}); unique {}",
        columns.join(", "),
        key(&t.primary_key),
        uniques.join(" ")
    )
    .replace('\n', " ")
}

/// What `--abort` dropped, and the shadow it kept.
#[derive(Debug, Default)]
pub struct Aborted {
    /// Tables dropped.
    pub dropped: Vec<String>,
    /// A `_t_new` with no checkpoint beside it: nothing shows rowshift made it.
    pub kept_shadow: Option<String>,
}

/// Drop what a migration of `db`.`table` created — shadow, checkpoint, sentry, trip — and
/// never the table itself nor an old table (the user's data). The shadow is dropped only with
/// the checkpoint that says a run of rowshift made it: a `_t_new` alone may be another tool's
/// or the user's table.
pub async fn abort(conn: &mut Conn, db: &str, table: &str) -> Result<Aborted, ResumeError> {
    let mut done = Aborted::default();
    let shadow = names::shadow(table);
    let ours = catalog::table_exists(conn, db, &names::checkpoint(table)).await?;
    if !ours && catalog::table_exists(conn, db, &shadow).await? {
        done.kept_shadow = Some(shadow.clone());
    }
    for name in [
        shadow,
        names::checkpoint(table),
        names::sentry(table),
        names::trip(table),
    ] {
        if done.kept_shadow.as_ref() == Some(&name) {
            continue;
        }
        if catalog::table_exists(conn, db, &name).await? {
            conn.query_drop(format!(
                "DROP TABLE {}.{}",
                quote_ident(db),
                quote_ident(&name)
            ))
            .await?;
            done.dropped.push(name);
        }
    }
    Ok(done)
}
