//! Cut-over: swap the shadow table in for the original so that the application sees a pause of
//! milliseconds and never a missing table, and no write ever lands in the old table unapplied.
//!
//! One method for MySQL and MariaDB (MariaDB refuses `RENAME` under `LOCK TABLES`, error 1192),
//! with two connections, A (the locker) and B (the renamer):
//!
//! 1. A: `LOCK TABLES t WRITE, <t>_rs_sentry WRITE`. No application write to `t` can commit now.
//! 2. A reads the server's binlog position P; the appliers drain to P (every change of `t` is in
//!    the shadow table).
//! 3. B: `RENAME TABLE t TO _t_old, _t_new TO t, _t_trip TO <t>_rs_sentry`. The server takes the
//!    metadata locks of a statement one by one in sorted name order (bytes of the name, a prefix
//!    first), and `t` sorts before `<t>_rs_sentry`. So B waits on `t` exactly when it holds the
//!    exclusive lock of every name that sorts before `t` (`_t_new`, `_t_old` and `_t_trip` for a
//!    lowercase `t`) and the processlist shows it waiting for a table metadata lock. The
//!    processlist alone does not say which name B waits on: a purge thread, a statistics
//!    thread or anyone's query may hold `_t_new` for a moment, and then B waits there with no
//!    request on `t` yet; releasing `t` then would let queued application writes into the old
//!    table. So A also proves that B holds each earlier name: a probe connection C asks for a
//!    high-priority shared lock on it (`SHOW CREATE TABLE`), which only a *granted* exclusive
//!    lock blocks (a pending one does not). Only when every probe is blocked is B's exclusive
//!    request queued on `t` **ahead of** any application write still to come or already waiting
//!    (a pending exclusive lock blocks new shared-write grants).
//! 4. A drops the sentry and unlocks. B's rename is granted first; waiting application writes then
//!    open `t`, which is the new table.
//!
//! Safety when things die: if A's connection is lost before step 4, the server releases its locks
//! but the sentry still exists, so B's RENAME fails ("table exists") and nothing is renamed. If B
//! dies, A sees it and unlocks; nothing is renamed. If rowshift itself dies after step 4, the
//! server finishes the RENAME (it is atomic): the next run finds `_t_old` and no `_t_new` and
//! reports the cut-over as done. The RENAME is never retried blindly: an error after B was sent
//! is classified by looking at which tables exist.

use crate::conn::{ConnError, Endpoint};
use crate::position::Position;
use futures_util::FutureExt;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use names::*;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::{info, info_span, warn, Instrument};

/// Names of the tables rowshift creates beside `t`.
pub mod names {
    /// Longest table name MySQL and MariaDB accept.
    pub const MAX_NAME: usize = 64;

    /// The shadow table `_t_new`.
    pub fn shadow(t: &str) -> String {
        format!("_{t}_new")
    }
    /// The old table kept after cut-over, `_t_old`.
    pub fn old(t: &str) -> String {
        format!("_{t}_old")
    }
    /// The sentry held by the locker; it sorts after `t` because `t` is its prefix.
    pub fn sentry(t: &str) -> String {
        format!("{t}_rs_sentry")
    }
    /// The tiny table B renames onto the sentry's name: B fails while the sentry exists.
    pub fn trip(t: &str) -> String {
        format!("_{t}_trip")
    }
    /// The checkpoint table of a migration, `_t_ckpt`.
    pub fn checkpoint(t: &str) -> String {
        format!("_{t}_ckpt")
    }
    /// The longest name derived from `t`; must be at most [`MAX_NAME`] characters.
    pub fn longest_len(t: &str) -> usize {
        sentry(t).chars().count()
    }
}

/// Errors of the cut-over.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// Connecting failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed before the RENAME was sent; nothing was renamed, safe to retry.
    #[error("cut-over of `{table}` failed before the rename ({step}): {source}; the original table is untouched")]
    BeforeRename {
        /// The table.
        table: String,
        /// What was being done.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The appliers did not reach the locked position in time; locks released, safe to retry.
    #[error("cut-over of `{table}`: the appliers did not reach {position} within {waited:?} ({reason}); locks released, the original table is untouched")]
    DrainTimeout {
        /// The table.
        table: String,
        /// The position to reach.
        position: String,
        /// How long we waited.
        waited: Duration,
        /// Why it failed.
        reason: String,
    },
    /// The RENAME did not happen; the tables are as before.
    #[error(
        "cut-over of `{table}`: the rename was refused ({source}); the original table is untouched"
    )]
    RenameFailed {
        /// The table.
        table: String,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
    /// It is not known whether the RENAME happened: check the tables before doing anything.
    #[error("cut-over of `{table}` is in an unknown state ({detail}): run `rowshift migrate --resume` to inspect which tables exist; do not retry by hand")]
    Ambiguous {
        /// The table.
        table: String,
        /// What went wrong.
        detail: String,
    },
    /// All attempts failed.
    #[error("cut-over of `{table}` gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        /// The table.
        table: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<CutoverError>,
    },
}

impl CutoverError {
    /// True when retrying the whole cut-over is safe.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CutoverError::BeforeRename { .. }
                | CutoverError::DrainTimeout { .. }
                | CutoverError::RenameFailed { .. }
                | CutoverError::Conn(_)
        )
    }

    /// True when the attempt failed because the server could not be reached or a connection
    /// was lost (a restart): such attempts are retried until the reconnect timeout and do not
    /// count against [`CutoverConfig::attempts`].
    pub fn is_lost_connection(&self) -> bool {
        match self {
            CutoverError::Conn(ConnError::Connect { .. }) => true,
            CutoverError::BeforeRename { source, .. }
            | CutoverError::RenameFailed { source, .. } => {
                crate::migrate::reconnect::is_lost(source)
            }
            CutoverError::GaveUp { last, .. } => last.is_lost_connection(),
            _ => false,
        }
    }
}

/// Settings of the cut-over.
#[derive(Debug, Clone)]
pub struct CutoverConfig {
    /// `lock_wait_timeout` of the locker: how long application transactions may hold `t`
    /// before we give up this attempt.
    pub lock_wait: Duration,
    /// How long the appliers may take to reach the locked position.
    pub drain_timeout: Duration,
    /// Attempts before giving up.
    pub attempts: u32,
    /// First back-off between attempts (doubles each time).
    pub backoff: Duration,
    /// How long attempts that fail on a lost connection are retried (they do not count
    /// against `attempts`).
    pub reconnect_timeout: Duration,
}

impl Default for CutoverConfig {
    fn default() -> Self {
        CutoverConfig {
            lock_wait: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(3),
            attempts: 10,
            backoff: Duration::from_millis(250),
            reconnect_timeout: Duration::from_secs(300),
        }
    }
}

/// What the cut-over did.
#[derive(Debug, Clone)]
pub struct CutoverReport {
    /// How long `t` was locked (the application's write stall).
    pub lock_time: Duration,
    /// The binlog position everything was drained to.
    pub position: Position,
    /// The attempts needed.
    pub attempts: u32,
    /// The whole cut-over, from its first attempt to the rename (retries included).
    pub took: Duration,
    /// The old table's name.
    pub old_table: String,
}

/// Swap `db`.`_t_new` in for `db`.`t`, keeping the original as `_t_old`.
///
/// While `t` is locked, the locker inserts a fresh token into the sentry table (`<t>_rs_sentry`,
/// column `id`) and calls `drain(token)`, which must return once the row change inserting that
/// token has been read from the binlog and everything before it applied: the drain is proven
/// by the binlog itself, not assumed from a position.
pub async fn cut_over<F, Fut, E>(
    endpoint: &Endpoint,
    db: &str,
    table: &str,
    config: &CutoverConfig,
    mut drain: F,
) -> Result<CutoverReport, CutoverError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let span = info_span!("cutover", db, table);
    async move {
        let mut backoff = config.backoff;
        let mut last = None;
        let mut attempt = 0;
        let mut counted = 0;
        let mut first_loss: Option<Instant> = None;
        let began = Instant::now();
        while counted < config.attempts {
            attempt += 1;
            match attempt_once(endpoint, db, table, config, &mut drain).await {
                Ok(mut report) => {
                    report.attempts = attempt;
                    report.took = began.elapsed();
                    info!(
                        lock_ms = report.lock_time.as_millis() as u64,
                        attempt, "cut-over done"
                    );
                    return Ok(report);
                }
                Err(e) if e.is_retryable() => {
                    if e.is_lost_connection()
                        && first_loss.get_or_insert_with(Instant::now).elapsed()
                            < config.reconnect_timeout
                    {
                        warn!(attempt, error = %e, "cut-over attempt lost its connection; retrying");
                    } else {
                        counted += 1;
                        warn!(attempt, error = %e, "cut-over attempt failed; retrying");
                    }
                    last = Some(e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
        Err(CutoverError::GaveUp {
            table: table.to_string(),
            attempts: attempt,
            last: Box::new(last.unwrap_or(CutoverError::Ambiguous {
                table: table.to_string(),
                detail: "no attempt made".into(),
            })),
        })
    }
    .instrument(span)
    .await
}

/// The cut-over's RENAME of qualified, quoted names (the binlog carries it as written).
fn rename_statement(t: &str, old_t: &str, shadow_t: &str, trip: &str, sentry: &str) -> String {
    format!("RENAME TABLE {t} TO {old_t}, {shadow_t} TO {t}, {trip} TO {sentry}")
}

/// The statement the cut-over of `db`.`table` renames with: the router, which stops at any
/// other DDL on the table, knows its own cut-over by it.
pub fn rename_of(db: &str, table: &str) -> String {
    let name = |n: &str| format!("{}.{}", q(db), q(n));
    rename_statement(
        &name(table),
        &name(&old(table)),
        &name(&shadow(table)),
        &name(&trip(table)),
        &name(&sentry(table)),
    )
}

fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Give the shadow the table's next AUTO_INCREMENT value when it is higher than the shadow's:
/// ids the table handed out and then lost (its highest rows deleted, inserts rolled back) are
/// not in the shadow, whose counter follows its highest row, and would be handed out again
/// after the swap. Run just before the table is locked (the lock window stays as short as it
/// was): only an id lost in the few milliseconds in between can be handed out again.
async fn carry_auto_increment(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<(), mysql_async::Error> {
    if let Some(next) = next_auto_increment(conn, db, table).await? {
        raise_auto_increment(conn, db, &shadow(table), next).await?;
    }
    Ok(())
}

/// Raise the AUTO_INCREMENT counter of `db`.`table` to `next` when the table has an
/// AUTO_INCREMENT column (an ALTER may have removed it) and its counter is lower; true when it
/// was raised.
pub(crate) async fn raise_auto_increment(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
    next: u64,
) -> Result<bool, mysql_async::Error> {
    let has_column: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND EXTRA LIKE '%auto_increment%'",
            (db, table),
        )
        .await?;
    if has_column.unwrap_or(0) == 0 {
        return Ok(false);
    }
    let now = next_auto_increment(conn, db, table).await?;
    if now.is_some_and(|n| n >= next) {
        return Ok(false);
    }
    info!(
        table,
        next, "raising the AUTO_INCREMENT counter to the original table's"
    );
    conn.query_drop(format!(
        "ALTER TABLE {}.{} AUTO_INCREMENT = {next}",
        q(db),
        q(table)
    ))
    .await?;
    Ok(true)
}

/// The table's next AUTO_INCREMENT value as `SHOW CREATE TABLE` gives it (the live counter;
/// `information_schema.TABLES` may serve a cached one), `None` when it shows none.
pub(crate) async fn next_auto_increment(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<Option<u64>, mysql_async::Error> {
    let row: Option<(String, String)> = conn
        .query_first(format!("SHOW CREATE TABLE {}.{}", q(db), q(table)))
        .await?;
    Ok(row.and_then(|(_, ddl)| auto_increment_option(&ddl)))
}

/// The `AUTO_INCREMENT=N` table option of a `SHOW CREATE TABLE` text.
fn auto_increment_option(ddl: &str) -> Option<u64> {
    // The table options are on the line that closes the column list (`) ENGINE=…`), in a
    // fixed order: AUTO_INCREMENT before any COMMENT; partitioning follows on later lines.
    let options = ddl.lines().find(|l| l.starts_with(") "))?;
    let at = options.find(" AUTO_INCREMENT=")? + " AUTO_INCREMENT=".len();
    let digits: String = options[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn attempt_once<F, Fut, E>(
    endpoint: &Endpoint,
    db: &str,
    table: &str,
    config: &CutoverConfig,
    drain: &mut F,
) -> Result<CutoverReport, CutoverError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let before = |step: &'static str| {
        let table = table.to_string();
        move |source| CutoverError::BeforeRename {
            table,
            step,
            source,
        }
    };
    let t = format!("{}.{}", q(db), q(table));
    let sentry = format!("{}.{}", q(db), q(&sentry(table)));
    let trip = format!("{}.{}", q(db), q(&trip(table)));
    let shadow_t = format!("{}.{}", q(db), q(&shadow(table)));
    let old_t = format!("{}.{}", q(db), q(&old(table)));

    // The three connections at once (each is a TLS handshake and a login), before any lock.
    let (mut a, mut b, mut probe) = tokio::try_join!(
        endpoint.connect_raw(),
        endpoint.connect_raw(),
        endpoint.connect_raw()
    )?;
    // A probe that is blocked is killed at once; the timeout only bounds a lost one.
    probe
        .query_drop("SET SESSION lock_wait_timeout = 1")
        .await
        .map_err(before("preparing the probe connection"))?;
    let lower: u32 = a
        .query_first("SELECT @@lower_case_table_names")
        .await
        .map_err(before("reading lower_case_table_names"))?
        .unwrap_or(0);
    // The names B locks before `t`: it must hold them all while it waits.
    let earlier: Vec<String> = [shadow(table), old(table), names::trip(table)]
        .into_iter()
        .filter(|n| locks_before(n, table, lower != 0))
        .map(|n| format!("{}.{}", q(db), q(&n)))
        .collect();
    a.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {sentry} (id INT PRIMARY KEY) ENGINE=InnoDB"
    ))
    .await
    .map_err(before("creating the sentry table"))?;
    a.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {trip} (id INT PRIMARY KEY) ENGINE=InnoDB"
    ))
    .await
    .map_err(before("creating the trip table"))?;
    let lock_wait = config.lock_wait.as_secs().max(1);
    // A's session holds the table's write lock. If rowshift's host freezes or the network
    // drops its packets, the server sees no closed connection and would keep the lock for
    // the default `wait_timeout` (8 hours): A is only ever idle while the drain runs, so the
    // server may end it soon after that (and with it every lock: the sentry still exists, so
    // nothing is renamed).
    let idle = config.drain_timeout.as_secs() + lock_wait + 10;
    a.query_drop(format!(
        "SET SESSION lock_wait_timeout = {lock_wait}, SESSION wait_timeout = {idle}"
    ))
    .await
    .map_err(before("setting lock_wait_timeout and wait_timeout"))?;
    let b_id = b.id();
    carry_auto_increment(&mut a, db, table)
        .await
        .map_err(before("giving the shadow the table's AUTO_INCREMENT"))?;

    let locked_at = Instant::now();
    a.query_drop(format!("LOCK TABLES {t} WRITE, {sentry} WRITE"))
        .await
        .map_err(before("LOCK TABLES"))?;
    test_pause("locked").await;
    let result = locked_phase(
        &mut a,
        &mut b,
        b_id,
        Probe {
            conn: &mut probe,
            earlier: &earlier,
        },
        table,
        config,
        drain,
        locked_at,
        [&t, &sentry, &trip, &shadow_t, &old_t],
    )
    .await;
    if result.is_err() {
        // Dropping A's session releases every lock even if UNLOCK fails.
        let _ = a.query_drop("UNLOCK TABLES").await;
    }
    let _ = a.disconnect().await;
    let _ = probe.disconnect().await;
    result
}

/// The probe connection of an attempt and the names B must hold before it can wait on `t`.
struct Probe<'a> {
    conn: &'a mut Conn,
    earlier: &'a [String],
}

#[allow(clippy::too_many_arguments)]
async fn locked_phase<F, Fut, E>(
    a: &mut Conn,
    b: &mut Conn,
    b_id: u32,
    mut probe: Probe<'_>,
    table: &str,
    config: &CutoverConfig,
    drain: &mut F,
    locked_at: Instant,
    [t, sentry, trip, shadow_t, old_t]: [&String; 5],
) -> Result<CutoverReport, CutoverError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let token = drain_token();
    a.query_drop(format!("INSERT INTO {sentry} (id) VALUES ({token})"))
        .await
        .map_err(|source| CutoverError::BeforeRename {
            table: table.to_string(),
            step: "writing the drain marker",
            source,
        })?;
    let position = server_position(a)
        .await
        .map_err(|source| CutoverError::BeforeRename {
            table: table.to_string(),
            step: "reading the binlog position",
            source,
        })?;
    match tokio::time::timeout(config.drain_timeout, drain(token)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(CutoverError::DrainTimeout {
                table: table.to_string(),
                position: position.to_string(),
                waited: locked_at.elapsed(),
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(CutoverError::DrainTimeout {
                table: table.to_string(),
                position: position.to_string(),
                waited: config.drain_timeout,
                reason: "timed out".into(),
            })
        }
    }
    // B's RENAME; A releases `t` only once B provably waits on it (see the module docs).
    let rename = rename_statement(t, old_t, shadow_t, trip, sentry);
    b.query_drop("SET SESSION lock_wait_timeout = 60")
        .await
        .map_err(|source| CutoverError::BeforeRename {
            table: table.to_string(),
            step: "preparing the rename connection",
            source,
        })?;
    let rename_fut = b.query_drop(rename);
    tokio::pin!(rename_fut);
    // Wait until B is queued on the metadata lock of `t`, or finished (with an error).
    let queued_deadline = Instant::now() + config.lock_wait.max(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            res = &mut rename_fut => {
                return match res {
                    Ok(()) => Err(CutoverError::Ambiguous {
                        table: table.to_string(),
                        detail: "the rename finished while the table was still locked".into(),
                    }),
                    Err(source) => Err(CutoverError::RenameFailed { table: table.to_string(), source }),
                };
            }
            waiting = rename_queued_on_t(a, b_id, &mut probe) => {
                match waiting {
                    Ok(true) => break,
                    Ok(false) if Instant::now() < queued_deadline => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok(false) => {
                        let _ = a.query_drop(format!("KILL QUERY {b_id}")).await;
                        return Err(CutoverError::DrainTimeout {
                            table: table.to_string(),
                            position: position.to_string(),
                            waited: config.lock_wait,
                            reason: "the rename never queued on the table lock".into(),
                        });
                    }
                    Err(source) => {
                        let _ = a.query_drop(format!("KILL QUERY {b_id}")).await;
                        return Err(CutoverError::BeforeRename { table: table.to_string(), step: "watching the rename", source });
                    }
                }
            }
        }
    }
    test_pause("queued").await;
    // Release: drop the sentry (B would fail without this) and unlock; B goes first.
    let released = match a.query_drop(format!("DROP TABLE {sentry}")).await {
        // Refused by the server: the sentry stands, so B's RENAME can only fail; unlock at
        // once rather than keep `t` locked while B waits out its lock wait. A lost
        // connection may have dropped it before the reply was lost.
        Err(e) => {
            let lost = crate::source::reconnect::is_lost(&e);
            if !lost {
                let _ = a.query_drop("UNLOCK TABLES").await;
            }
            Err((lost, e))
        }
        Ok(()) => a.query_drop("UNLOCK TABLES").await.map_err(|e| (true, e)),
    };
    if let Err((dropped, e)) = released {
        let outcome = (&mut rename_fut).await;
        return match outcome {
            // The sentry still exists: B's RENAME fails as a whole, nothing renamed. Once it is
            // dropped, only the server's refusal says so; a lost connection leaves the RENAME
            // free to run on the server (A's locks end with its session).
            Err(source) if !dropped || !crate::source::reconnect::is_lost(&source) => {
                Err(CutoverError::RenameFailed {
                    table: table.to_string(),
                    source,
                })
            }
            Err(source) => Err(CutoverError::Ambiguous {
                table: table.to_string(),
                detail: format!(
                    "the release (drop the sentry, unlock) failed on a lost or refused connection ({e}) and the rename's connection was lost ({source}): the rename may have happened"
                ),
            }),
            Ok(()) => Err(CutoverError::Ambiguous {
                table: table.to_string(),
                detail: format!("the release failed ({e}) but the rename reported success"),
            }),
        };
    }
    let lock_time = locked_at.elapsed();
    match rename_fut.await {
        Ok(()) => {
            test_pause("renamed").await;
            // The trip table now carries the sentry's name; it is ours and empty.
            let _ = a.query_drop(format!("DROP TABLE IF EXISTS {sentry}")).await;
            Ok(CutoverReport {
                lock_time,
                position,
                attempts: 0,
                took: Duration::ZERO,
                old_table: old(table),
            })
        }
        Err(source) => Err(CutoverError::Ambiguous {
            table: table.to_string(),
            detail: format!("the rename failed after the unlock: {source}"),
        }),
    }
}

/// TEST-ONLY hook, never set in production: `ROWSHIFT_TEST_PAUSE_IN_CUTOVER=<stage>:<file>`
/// makes the cut-over create `<file>` at `<stage>` and wait while the file exists, so that a
/// test can SIGKILL rowshift at exactly that moment (tests/tests/migrate_recovery.rs). Stages:
/// `locked` (A holds the table lock, nothing sent to B yet), `queued` (B's RENAME waits on the
/// lock) and `renamed` (the RENAME is done, the sentry not yet cleaned up).
async fn test_pause(stage: &str) {
    let Ok(hook) = std::env::var("ROWSHIFT_TEST_PAUSE_IN_CUTOVER") else {
        return;
    };
    let Some((wanted, file)) = hook.split_once(':') else {
        return;
    };
    if wanted != stage {
        return;
    }
    let file = std::path::PathBuf::from(file);
    if let Err(e) = std::fs::write(&file, b"rowshift cut-over paused (test hook)\n") {
        warn!(stage, file = %file.display(), error = %e, "test hook: cannot create the pause file");
        return;
    }
    warn!(stage, file = %file.display(), "test hook: cut-over paused while the file exists");
    while file.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A token unlikely to repeat between attempts and runs.
pub fn drain_token() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or(1);
    (nanos & 0x7fff_ffff).max(1)
}

/// The processlist state of a session waiting for a table's metadata lock (MySQL and MariaDB;
/// schema, tablespace, global and backup locks have states of their own).
const WAITING_FOR_TABLE: &str = "Waiting for table metadata lock";

/// The processlist state of session `id`, when it runs a statement.
async fn state_of(a: &mut Conn, id: u32) -> Result<Option<String>, mysql_async::Error> {
    let state: Option<Option<String>> = a
        .exec_first(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .await?;
    Ok(state.flatten())
}

/// True once B waits for a table metadata lock while holding the exclusive lock of every name
/// that sorts before `t`: then the lock it waits for is `t`'s (see the module docs).
async fn rename_queued_on_t(
    a: &mut Conn,
    b_id: u32,
    probe: &mut Probe<'_>,
) -> Result<bool, mysql_async::Error> {
    if state_of(a, b_id).await?.as_deref() != Some(WAITING_FOR_TABLE) {
        return Ok(false);
    }
    let earlier = probe.earlier;
    for name in earlier {
        if !held_exclusively(a, probe, name).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// True when a granted exclusive metadata lock blocks a high-priority shared lock on `name`:
/// the probe's `SHOW CREATE TABLE` waits for it (seen in the processlist, then killed) or times
/// out. It returns at once (a definition, or "doesn't exist") when nobody holds the name
/// exclusively, even while someone *waits* for the exclusive lock.
async fn held_exclusively(
    a: &mut Conn,
    probe: &mut Probe<'_>,
    name: &str,
) -> Result<bool, mysql_async::Error> {
    let probe_id = probe.conn.id();
    let mut show = Box::pin(probe.conn.query_drop(format!("SHOW CREATE TABLE {name}")));
    loop {
        if let Some(res) = (&mut show).now_or_never() {
            return match res {
                // Timed out waiting: the lock is held.
                Err(mysql_async::Error::Server(e)) if e.code == 1205 => Ok(true),
                // A definition, "doesn't exist" or any other answer: not blocked.
                Ok(()) | Err(mysql_async::Error::Server(_)) => Ok(false),
                Err(e) => Err(e),
            };
        }
        if state_of(a, probe_id).await?.as_deref() == Some(WAITING_FOR_TABLE) {
            a.query_drop(format!("KILL QUERY {probe_id}")).await?;
            // Interrupted (1317), or finished just before the kill: either way it was blocked.
            let _ = show.await;
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether the server locks table `name` before table `t` of the same database: metadata
/// locks are taken in the byte order of their names, each followed by a NUL (so a prefix comes
/// first), lowercased where `lower_case_table_names` is set.
fn locks_before(name: &str, t: &str, lowercase: bool) -> bool {
    let key = |n: &str| {
        let mut k = if lowercase {
            n.to_lowercase().into_bytes()
        } else {
            n.as_bytes().to_vec()
        };
        k.push(0);
        k
    };
    key(name) < key(t)
}

/// The server's current binlog coordinates (MySQL 8.2+ `SHOW BINARY LOG STATUS`, else
/// `SHOW MASTER STATUS`).
pub async fn server_position(conn: &mut Conn) -> Result<Position, mysql_async::Error> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(row) => row,
        Err(_) => conn.query_first("SHOW MASTER STATUS").await?,
    };
    let Some(row) = row else {
        return Err(mysql_async::Error::Other(
            "binary logging is off (SHOW MASTER STATUS is empty)".into(),
        ));
    };
    let file: Option<String> = row.get(0);
    let offset: Option<u64> = row.get(1);
    Ok(Position::at(file.unwrap_or_default(), offset.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_increment_option_is_read_from_the_table_options() {
        let ddl = "CREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `c` varchar(9) DEFAULT ') AUTO_INCREMENT=5',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=101 DEFAULT CHARSET=utf8mb4 COMMENT=' AUTO_INCREMENT=7'\n/*!50100 PARTITION BY RANGE (`id`)\n(PARTITION p0 VALUES LESS THAN (10) ENGINE = InnoDB) */";
        assert_eq!(auto_increment_option(ddl), Some(101));
        let none = "CREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        assert_eq!(auto_increment_option(none), None);
    }

    use super::*;

    #[test]
    fn lock_order_is_by_bytes_with_a_prefix_first() {
        // A lowercase table: the underscore names come first, the sentry (t is its prefix) after.
        assert!(locks_before(&shadow("orders"), "orders", false));
        assert!(locks_before(&old("orders"), "orders", false));
        assert!(locks_before(&trip("orders"), "orders", false));
        assert!(!locks_before(&sentry("orders"), "orders", false));
        // An uppercase or digit first letter sorts before '_': B takes `t` first.
        assert!(!locks_before(&shadow("Orders"), "Orders", false));
        assert!(!locks_before(&old("9t"), "9t", false));
        // lower_case_table_names: the server compares the lowercased names.
        assert!(locks_before(&shadow("Orders"), "Orders", true));
    }
}
