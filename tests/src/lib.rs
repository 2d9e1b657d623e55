//! rowshift-testkit: throwaway MySQL 9.7 and MariaDB 10.11 servers for rowshift's integration
//! tests and benchmarks.
//!
//! Every server is a real `mysqld`/`mariadbd` process with its own data folder under the system
//! temp dir, a free 127.0.0.1 port, ROW binlog with FULL row image and FULL row metadata (GTID on
//! for MySQL) and a unique server id. [`TestServer::shared`] gives one server per engine per test
//! process; it is stopped and its folder removed when the last user drops it.
//! [`TestServer::dedicated`] starts a private one (extra server flags, restarts).
//!
//! This crate must never mock a server, and must never talk to anything but 127.0.0.1. A missing
//! server binary is an error that names the command installing it (`scripts/test-servers.sh`);
//! tests never skip.

pub mod ledger;
pub mod procstat;

use std::fs;
use std::io::{self, BufRead};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How a newcomer installs the servers; quoted in every "server missing" error.
pub const INSTALL_HINT: &str = "run `bash scripts/test-servers.sh` from the repository root \
(installs mariadb-server with apt and unpacks MySQL 9.7 from Debian sid into ~/.cache/rowshift)";

/// How long a server may take to answer after start.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Which server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// MySQL 9.7 (Debian sid's mysql-server-core, unpacked by `scripts/test-servers.sh`).
    MySql,
    /// MariaDB 10.11 (Debian bookworm's mariadb-server).
    MariaDb,
}

impl Engine {
    /// Both engines, for tests that run on each.
    pub const ALL: [Engine; 2] = [Engine::MySql, Engine::MariaDb];

    /// A short lowercase name, used in folder and database names.
    pub fn name(self) -> &'static str {
        match self {
            Engine::MySql => "mysql",
            Engine::MariaDb => "mariadb",
        }
    }

    /// The engine a probe's command-line argument names: `mariadb`, anything else MySQL.
    pub fn from_arg(arg: &str) -> Engine {
        if arg == "mariadb" {
            Engine::MariaDb
        } else {
            Engine::MySql
        }
    }
}

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server binary is not installed.
    #[error("{engine:?} server binary not found at {path}: {hint}", hint = INSTALL_HINT)]
    Missing {
        /// Engine asked for.
        engine: Engine,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A command of the harness failed to run.
    #[error("{what} failed: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server exited or never answered.
    #[error("{engine:?} server did not start ({reason}); last lines of {log}:\n{tail}")]
    Start {
        /// Engine.
        engine: Engine,
        /// Why we gave up.
        reason: String,
        /// The error log path.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
}

/// Why a replica could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("setting up replication ({what}): {detail}")]
pub struct ReplicationError {
    /// What was being done.
    pub what: String,
    /// The server's message or the harness's reason.
    pub detail: String,
}

/// Extra settings for a dedicated server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra command-line flags for mysqld/mariadbd, e.g. `--binlog-transaction-compression=ON`.
    pub extra_args: Vec<String>,
}

impl ServerOptions {
    /// Benchmark servers: a buffer pool that holds the benchmark's tables (a 1,000,000-row
    /// table and its shadow need more than the tests' 256 MB), as a production server would;
    /// `ROWSHIFT_BENCH_BUFFER_POOL` (default `1G`) changes it; `ROWSHIFT_BENCH_SERVER_ARGS` adds
    /// flags (space-separated).
    pub fn bench() -> ServerOptions {
        let pool = std::env::var("ROWSHIFT_BENCH_BUFFER_POOL").unwrap_or_else(|_| "1G".into());
        let mut extra_args = vec![format!("--innodb-buffer-pool-size={pool}")];
        extra_args.extend(
            std::env::var("ROWSHIFT_BENCH_SERVER_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string),
        );
        ServerOptions { extra_args }
    }
}

/// One running throwaway server.
#[derive(Debug)]
pub struct TestServer {
    engine: Engine,
    port: u16,
    server_id: u32,
    dir: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

static SHARED: Mutex<[Option<Weak<TestServer>>; 2]> = Mutex::new([None, None]);
static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestServer {
    /// The process-wide server of `engine`, started on first use. Panics with the install hint
    /// when the server cannot start: a missing server fails the test, it never skips it.
    pub fn shared(engine: Engine) -> Arc<TestServer> {
        let slot = match engine {
            Engine::MySql => 0,
            Engine::MariaDb => 1,
        };
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = shared[slot].as_ref().and_then(Weak::upgrade) {
            return server;
        }
        let server = match TestServer::dedicated(engine, ServerOptions::default()) {
            Ok(server) => Arc::new(server),
            Err(e) => panic!("cannot start the shared {engine:?} test server: {e}"),
        };
        shared[slot] = Some(Arc::downgrade(&server));
        server
    }

    /// Start a private server with extra options (for tests that restart or reconfigure it).
    pub fn dedicated(engine: Engine, options: ServerOptions) -> Result<TestServer, HarnessError> {
        remove_stale_folders();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rowshift-test-{}-{pid}-{n}", engine.name()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|source| HarnessError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let server_id = 1000 + (pid % 100_000) * 100 + n;
        initialize(engine, &dir)?;
        let mut last_err = None;
        for _attempt in 0..5 {
            let port = free_port()?;
            let server = TestServer {
                engine,
                port,
                server_id,
                dir: dir.clone(),
                args: options.extra_args.clone(),
                child: Mutex::new(None),
            };
            match server.start() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let port_clash = matches!(&e, HarnessError::Start { tail, .. }
                        if tail.contains("already in use") || tail.contains("Bind on TCP/IP"));
                    // Keep the folder for the next attempt; only the port changes.
                    std::mem::forget(server);
                    if !port_clash {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Start {
            engine,
            reason: "no free port".into(),
            log: dir.join("error.log"),
            tail: String::new(),
        }))
    }

    /// The engine of this server.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's `server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server's folder (data in `data/`, log in `error.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection URL as root (no password) without a default database.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Connection URL as root with `db` as default database.
    pub fn url_for_db(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// A new connection pool to this server as root.
    pub fn pool(&self) -> mysql_async::Pool {
        match mysql_async::Opts::from_url(&self.url()) {
            Ok(opts) => mysql_async::Pool::new(opts),
            Err(e) => panic!("bad test server URL {}: {e}", self.url()),
        }
    }

    /// Drop (if it exists) and create database `name`; returns the name. Tests pick a name of
    /// their own so they never clash.
    pub async fn fresh_db(&self, name: &str) -> Result<String, mysql_async::Error> {
        use mysql_async::prelude::Queryable;
        let mut conn = mysql_async::Conn::from_url(self.url()).await?;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await?;
        conn.query_drop(format!("CREATE DATABASE `{name}`")).await?;
        conn.disconnect().await?;
        Ok(name.to_string())
    }

    /// Start the server process (again) on the same folder and port and wait until it answers.
    pub fn start(&self) -> Result<(), HarnessError> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.is_some() {
            return Ok(());
        }
        let log = self.dir.join("error.log");
        let log_offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = server_command(self.engine)?;
        cmd.args(self.server_args());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut spawned = spawn_tied_to_process(cmd).map_err(|source| HarnessError::Io {
            what: format!("starting {:?}", self.engine),
            source,
        })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = spawned.try_wait() {
                return Err(self.start_error(format!("exited with {status}")));
            }
            if log_mentions_ready(&log, log_offset)
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = spawned.kill();
                let _ = spawned.wait();
                return Err(self.start_error(format!("no answer within {START_TIMEOUT:?}")));
            }
            // Polling an external process's readiness; not test synchronisation.
            std::thread::sleep(Duration::from_millis(25));
        }
        *child = Some(spawned);
        Ok(())
    }

    /// Stop the server cleanly (SIGTERM, wait for exit). The folder stays; [`start`] again.
    ///
    /// [`start`]: TestServer::start
    pub fn stop(&self) {
        self.signal_and_wait(libc::SIGTERM);
    }

    /// Kill the server abruptly (SIGKILL), like a crash. The folder stays.
    pub fn kill(&self) {
        self.signal_and_wait(libc::SIGKILL);
    }

    fn signal_and_wait(&self, signal: i32) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid, signal) };
            }
            let _ = c.wait();
        }
    }

    fn start_error(&self, reason: String) -> HarnessError {
        let log = self.dir.join("error.log");
        let tail = fs::read_to_string(&log)
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .unwrap_or_default();
        HarnessError::Start {
            engine: self.engine,
            reason,
            log,
            tail,
        }
    }

    fn server_args(&self) -> Vec<String> {
        let d = self.dir.display();
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={d}/data"),
            "--user=root".into(),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={d}/mysqld.sock"),
            format!("--pid-file={d}/mysqld.pid"),
            format!("--log-error={d}/error.log"),
            format!("--log-bin={d}/data/binlog"),
            // Each server its own temporary folder: concurrent bootstraps clash in /tmp.
            format!("--tmpdir={d}"),
            format!("--server-id={}", self.server_id),
            "--binlog-format=ROW".into(),
            "--binlog-row-image=FULL".into(),
            "--binlog-row-metadata=FULL".into(),
            "--max-connections=1000".into(),
            "--innodb-buffer-pool-size=256M".into(),
            // Throwaway servers: durability of the OS cache is enough, and much faster.
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
            "--character-set-server=utf8mb4".into(),
        ];
        match self.engine {
            Engine::MySql => {
                let root = mysql_root();
                args.extend([
                    format!("--basedir={}/usr", root.display()),
                    format!("--lc-messages-dir={}/usr/share/mysql", root.display()),
                    "--mysqlx=OFF".into(),
                    "--secure-file-priv=".into(),
                    "--gtid-mode=ON".into(),
                    "--enforce-gtid-consistency=ON".into(),
                ]);
            }
            // A replica logs what it replicates (MySQL's default; a MariaDB failover candidate
            // needs it to be promoted with the primary's GTIDs in its own binlog).
            Engine::MariaDb => args.push("--log-slave-updates=ON".into()),
        }
        args.extend(self.args.iter().cloned());
        args
    }
}

/// The replication user the harness creates on a primary.
const REPL_USER: &str = "rowshift_repl";
const REPL_PASSWORD: &str = "rowshift-repl-pw";

impl TestServer {
    /// A new dedicated server of `primary`'s engine, replicating from it with the server's own
    /// replication (GTID auto-position on MySQL, `MASTER_USE_GTID=slave_pos` on MariaDB) from
    /// the primary's first binlog, with both replication threads running when this returns.
    /// Create what the replica must see on the primary afterwards.
    pub async fn replica_of(primary: &TestServer) -> Result<TestServer, ReplicationError> {
        use mysql_async::prelude::Queryable;
        let err = |what: &str| {
            let what = what.to_string();
            move |e: mysql_async::Error| ReplicationError {
                what: what.clone(),
                detail: e.to_string(),
            }
        };
        let replica =
            TestServer::dedicated(primary.engine, ServerOptions::default()).map_err(|e| {
                ReplicationError {
                    what: "starting the replica server".into(),
                    detail: e.to_string(),
                }
            })?;
        let mut p = mysql_async::Conn::from_url(primary.url())
            .await
            .map_err(err("connecting to the primary"))?;
        for stmt in [
            format!("CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'"),
            format!("GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'"),
        ] {
            p.query_drop(stmt)
                .await
                .map_err(err("creating the replication user"))?;
        }
        let _ = p.disconnect().await;
        let mut r = mysql_async::Conn::from_url(replica.url())
            .await
            .map_err(err("connecting to the replica"))?;
        let (change, start) = match primary.engine {
            Engine::MySql => (
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, SOURCE_USER='{REPL_USER}', SOURCE_PASSWORD='{REPL_PASSWORD}', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1",
                    primary.port
                ),
                "START REPLICA",
            ),
            Engine::MariaDb => (
                format!(
                    "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos",
                    primary.port
                ),
                "START SLAVE",
            ),
        };
        r.query_drop(change)
            .await
            .map_err(err("CHANGE REPLICATION SOURCE / CHANGE MASTER"))?;
        r.query_drop(start)
            .await
            .map_err(err("START REPLICA / START SLAVE"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (io, sql, last_error) = replica_threads(&mut r)
                .await
                .map_err(err("reading the replica status"))?;
            if io == "Yes" && sql == "Yes" {
                break;
            }
            if Instant::now() > deadline {
                return Err(ReplicationError {
                    what: "waiting for the replication threads".into(),
                    detail: format!("IO {io}, SQL {sql}, last error: {last_error}"),
                });
            }
            // Polling the replica's own start-up; not test synchronisation.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = r.disconnect().await;
        Ok(replica)
    }

    /// Stop the SQL (applier) thread of this replica: the IO thread keeps receiving, nothing is
    /// applied, the replica falls behind.
    pub async fn stop_replica_sql_thread(&self) -> Result<(), mysql_async::Error> {
        self.replica_statement("STOP REPLICA SQL_THREAD", "STOP SLAVE SQL_THREAD")
            .await
    }

    /// Start the SQL thread of this replica again.
    pub async fn start_replica_sql_thread(&self) -> Result<(), mysql_async::Error> {
        self.replica_statement("START REPLICA SQL_THREAD", "START SLAVE SQL_THREAD")
            .await
    }

    async fn replica_statement(
        &self,
        mysql: &str,
        mariadb: &str,
    ) -> Result<(), mysql_async::Error> {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::from_url(self.url()).await?;
        c.query_drop(match self.engine {
            Engine::MySql => mysql,
            Engine::MariaDb => mariadb,
        })
        .await?;
        c.disconnect().await
    }
}

/// (IO thread running, SQL thread running, last error) of a replica.
async fn replica_threads(
    c: &mut mysql_async::Conn,
) -> Result<(String, String, String), mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    // MySQL 8.4+ knows only SHOW REPLICA STATUS; MariaDB 10.11 both.
    let row: Option<mysql_async::Row> = c.query_first("SHOW REPLICA STATUS").await?;
    let Some(row) = row else {
        return Ok(("No".into(), "No".into(), "no replica status".into()));
    };
    let get = |names: &[&str]| -> String {
        names
            .iter()
            .find_map(|n| row.get_opt::<Option<String>, _>(*n).and_then(Result::ok))
            .flatten()
            .unwrap_or_default()
    };
    Ok((
        get(&["Slave_IO_Running", "Replica_IO_Running"]),
        get(&["Slave_SQL_Running", "Replica_SQL_Running"]),
        format!("{} {}", get(&["Last_IO_Error"]), get(&["Last_SQL_Error"])),
    ))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_and_wait(libc::SIGKILL);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Where `scripts/test-servers.sh` unpacked MySQL.
pub fn mysql_root() -> PathBuf {
    if let Ok(root) = std::env::var("ROWSHIFT_MYSQL_ROOT") {
        return PathBuf::from(root);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/rowshift/mysql-sid")
}

/// A command running a program of the unpacked MySQL through its own dynamic loader.
pub fn mysql_tool(program: &str) -> Result<Command, HarnessError> {
    let root = mysql_root();
    let loader = root.join("usr/lib64/ld-linux-x86-64.so.2");
    let binary = if program == "mysqld" {
        root.join("usr/sbin/mysqld")
    } else {
        root.join("usr/bin").join(program)
    };
    for path in [&loader, &binary] {
        if !path.exists() {
            return Err(HarnessError::Missing {
                engine: Engine::MySql,
                path: path.clone(),
            });
        }
    }
    let mut cmd = Command::new(loader);
    cmd.arg("--library-path").arg(format!(
        "{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu",
        root.display()
    ));
    cmd.arg(binary);
    Ok(cmd)
}

fn server_command(engine: Engine) -> Result<Command, HarnessError> {
    match engine {
        Engine::MySql => mysql_tool("mysqld"),
        Engine::MariaDb => Ok(Command::new(find_in_path(engine, "mariadbd")?)),
    }
}

fn find_in_path(engine: Engine, program: &str) -> Result<PathBuf, HarnessError> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| HarnessError::Missing {
            engine,
            path: PathBuf::from(program),
        })
}

/// Create the system tables in `dir/data`.
fn initialize(engine: Engine, dir: &Path) -> Result<(), HarnessError> {
    let data = dir.join("data");
    let mut cmd = match engine {
        Engine::MySql => {
            let root = mysql_root();
            let mut cmd = mysql_tool("mysqld")?;
            cmd.args([
                "--no-defaults".to_string(),
                "--initialize-insecure".into(),
                format!("--datadir={}", data.display()),
                format!("--basedir={}/usr", root.display()),
                format!("--lc-messages-dir={}/usr/share/mysql", root.display()),
                "--user=root".into(),
            ]);
            cmd
        }
        Engine::MariaDb => {
            let mut cmd = Command::new(find_in_path(engine, "mariadb-install-db")?);
            cmd.args([
                "--no-defaults".to_string(),
                format!("--datadir={}", data.display()),
                "--user=root".into(),
                "--auth-root-authentication-method=normal".into(),
                "--skip-test-db".into(),
                format!("--tmpdir={}", dir.display()),
            ]);
            cmd
        }
    };
    let out = cmd.output().map_err(|source| HarnessError::Io {
        what: format!("initializing {engine:?} in {}", data.display()),
        source,
    })?;
    if !out.status.success() {
        let mut tail = String::from_utf8_lossy(&out.stderr).into_owned();
        tail.push_str(&String::from_utf8_lossy(&out.stdout));
        return Err(HarnessError::Start {
            engine,
            reason: format!("initialization exited with {}", out.status),
            log: data,
            tail,
        });
    }
    Ok(())
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|source| HarnessError::Io {
        what: "finding a free port".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| HarnessError::Io {
            what: "finding a free port".into(),
            source,
        })
}

fn log_mentions_ready(log: &Path, offset: u64) -> bool {
    let Ok(file) = fs::File::open(log) else {
        return false;
    };
    let mut reader = io::BufReader::new(file);
    if io::Seek::seek(&mut reader, io::SeekFrom::Start(offset)).is_err() {
        return false;
    }
    reader
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("ready for connections"))
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` so that it is killed when this test process dies, even by SIGKILL.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, so every server is forked by
/// one launcher thread that lives as long as the process.
fn spawn_tied_to_process(cmd: Command) -> io::Result<Child> {
    static LAUNCHER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-launcher".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: only async-signal-safe prctl(2) runs between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| panic!("cannot start the launcher thread: {e}"));
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    launcher
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("launcher thread gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("launcher thread gone"))?
}

/// Remove folders left by earlier test processes that died without cleaning up.
fn remove_stale_folders() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("rowshift-test-") else {
                continue;
            };
            let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

/// The `rowshift` binary built by `cargo test` for this workspace.
pub fn rowshift_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    // target/<profile>/deps/<test-binary> → target/<profile>/rowshift
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("rowshift"))
        .unwrap_or_else(|| PathBuf::from("rowshift"));
    // `cargo test` builds no binary target of the CLI: a `rowshift` left by an earlier build
    // would be run as it was, whatever the sources say now. Build it once per test process
    // (a no-op when it is up to date).
    static BUILD: OnceLock<bool> = OnceLock::new();
    let built = BUILD.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = bin.components().any(|c| c.as_os_str() == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "rowshift-cli", "--bin", "rowshift"]);
        // Without the variables `cargo test` gives this crate's tests (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR, ...): build scripts that watch them (ring's) would run again,
        // and the next `cargo test` would rebuild everything below them once more.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || name == "CARGO_TARGET_TMPDIR"
                || name == "OUT_DIR"
            {
                cmd.env_remove(name.as_ref());
            }
        }
        if release {
            cmd.arg("--release");
        }
        cmd.status().map(|s| s.success()).unwrap_or(false)
    });
    assert!(
        *built && bin.exists(),
        "cannot build {}: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// The copy watermark (an integer key) in the checkpoint of migrate's run on `db`.`table`,
/// once it holds one.
pub async fn copy_watermark(conn: &mut mysql_async::Conn, db: &str, table: &str) -> Option<u64> {
    use mysql_async::prelude::Queryable;
    let w: Option<Option<String>> = conn
        .query_first(format!(
            "SELECT copied_upto FROM `{db}`.`_{table}_ckpt` WHERE id = 1"
        ))
        .await
        .unwrap_or(None);
    w.flatten().and_then(|w| w.parse().ok())
}

/// A hooks folder (for `--hooks-dir`) whose `copy-start` hook waits until the returned file
/// exists: the copy does not start before the test creates it. `tag` names the folder.
pub fn gated_copy_start_hook(tag: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rowshift-{tag}-hooks-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let release = dir.join("release");
    let hook = dir.join("rowshift-on-copy-start");
    let script = format!(
        "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n",
        release.display()
    );
    fs::write(&hook, script).unwrap_or_else(|e| panic!("{}: {e}", hook.display()));
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", hook.display()));
    (dir, release)
}

/// Run `rowshift` with `args`; returns (exit code, stdout, stderr).
pub async fn run_rowshift(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(rowshift_bin())
        .args(args)
        .env("ROWSHIFT_LOG", "rowshift=info,warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run rowshift: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two `#[tokio::test]`s per named `async fn(Engine)` of the calling test file: `NAME::mysql`
/// and `NAME::mariadb`.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    super::$name($crate::Engine::MySql).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb() {
                    super::$name($crate::Engine::MariaDb).await;
                }
            }
        )*
    };
}
