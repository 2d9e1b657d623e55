//! Helpers of the `ops_*` tests: a small table, a `rowshift migrate` running in the background
//! with its output in files, `rowshift ctl` calls, and polling the status with a deadline.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use rowshift_testkit::{rowshift_bin, TestServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A fresh database `name` on `server` with table `t` of `rows` rows.
pub async fn table_with_rows(server: &TestServer, name: &str, rows: u32) -> String {
    let db = server.fresh_db(name).await.unwrap();
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE `{db}`.`t` (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, s VARCHAR(64) NOT NULL) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    let mut id = 1u32;
    while id <= rows {
        let end = (id + 499).min(rows);
        let values: Vec<String> = (id..=end)
            .map(|i| format!("({i}, {}, 'row {i}')", i % 97))
            .collect();
        c.query_drop(format!(
            "INSERT INTO `{db}`.`t` (id, a, s) VALUES {}",
            values.join(",")
        ))
        .await
        .unwrap();
        id = end + 1;
    }
    c.disconnect().await.unwrap();
    db
}

/// A scratch path under the system temp dir, unique to this process and `name`.
pub fn temp_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("rs-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// The working directory of the runs of this test process (created on first use).
pub fn work_dir() -> PathBuf {
    let p = temp_path("cwd");
    std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
    p
}

/// A `rowshift migrate` running in the background.
pub struct Run {
    child: tokio::process::Child,
    /// Its control socket.
    pub socket: PathBuf,
    /// `db.t` when `ctl` finds the socket by `--table` (the default socket path).
    by_table: Option<String>,
    out: PathBuf,
    err: PathBuf,
}

/// The end of a run.
#[derive(Debug)]
pub struct Ended {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
}

impl Run {
    /// Start `rowshift migrate --execute` of `db.t` (ALTER adds a column) with `extra` flags;
    /// its control socket is a fresh path named after `name`.
    pub fn start(server: &TestServer, db: &str, name: &str, extra: &[&str]) -> Run {
        Run::spawn(server, db, name, extra, false)
    }

    /// Like [`Run::start`] on the default control socket, which `ctl --table db.t` finds.
    pub fn start_default_socket(server: &TestServer, db: &str, name: &str, extra: &[&str]) -> Run {
        Run::spawn(server, db, name, extra, true)
    }

    /// Like [`Run::start`] with another ALTER.
    pub fn start_alter(
        server: &TestServer,
        db: &str,
        name: &str,
        alter: &str,
        extra: &[&str],
    ) -> Run {
        Run::spawn_alter(server, db, name, alter, extra, false)
    }

    fn spawn(
        server: &TestServer,
        db: &str,
        name: &str,
        extra: &[&str],
        default_socket: bool,
    ) -> Run {
        let alter = "ADD COLUMN b INT NOT NULL DEFAULT 7";
        Run::spawn_alter(server, db, name, alter, extra, default_socket)
    }

    fn spawn_alter(
        server: &TestServer,
        db: &str,
        name: &str,
        alter: &str,
        extra: &[&str],
        default_socket: bool,
    ) -> Run {
        let socket = if default_socket {
            PathBuf::from(format!("/tmp/rowshift-{db}.t.sock"))
        } else {
            temp_path(&format!("{name}.sock"))
        };
        let out = temp_path(&format!("{name}.out"));
        let err = temp_path(&format!("{name}.err"));
        let table = format!("{db}.t");
        let mut args: Vec<String> = [
            "migrate",
            "--source",
            &server.url(),
            "--table",
            &table,
            "--alter",
            alter,
            "--execute",
            "--chunk-time-ms",
            "30",
            "--copy-workers",
            "1",
            "--cut-over-lock-wait",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !default_socket {
            args.extend(["--control-socket".to_string(), socket.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = tokio::process::Command::new(rowshift_bin())
            .args(&args)
            // The default postpone flag file lands in the working directory: one of this
            // process's own, so that no file of an earlier test process can hold a run.
            .current_dir(work_dir())
            .env("ROWSHIFT_LOG", "rowshift=info,warn")
            .env_remove("ROWSHIFT_PASSWORD")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run rowshift: {e}"));
        Run {
            child,
            socket,
            by_table: default_socket.then_some(table),
            out,
            err,
        }
    }

    /// The run's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Panics (with its output) when the run has ended.
    pub fn assert_running(&mut self, waiting_for: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "migrate ended ({status}) while waiting for {waiting_for}\nstdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&self.out).unwrap_or_default(),
                self.stderr()
            );
        }
    }

    /// `rowshift ctl --socket ... <command> [arg]`: (exit code, reply).
    pub async fn ctl(&self, command: &str, arg: Option<&str>) -> (i32, Value) {
        match &self.by_table {
            Some(t) => ctl_args(&["--table", t], command, arg).await,
            None => ctl(&self.socket, command, arg).await,
        }
    }

    /// `ctl <command>`, which must succeed.
    pub async fn ctl_ok(&self, command: &str, arg: Option<&str>) -> Value {
        let (code, v) = self.ctl(command, arg).await;
        assert_eq!(code, 0, "ctl {command} {arg:?} failed: {v}");
        assert_eq!(v["ok"], true, "ctl {command}: {v}");
        v
    }

    /// Poll `status` until `pred` holds; returns that status. Panics at the deadline or when
    /// the run ends first.
    pub async fn wait_status(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        let mut last = Value::Null;
        loop {
            self.assert_running(what);
            if self.socket.exists() {
                let (code, v) = self.ctl("status", None).await;
                if code == 0 {
                    if pred(&v) {
                        return v;
                    }
                    last = v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {last}\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the paused copy is idle (gate closed, no chunk in flight) and return a status
    /// read after that. The status that shows the idle copy may itself be torn: it reads its
    /// counters one after the other, and a chunk finishing between the reads shows in
    /// `chunks` but not in the `rows_copied` read before. Once idle, nothing moves until the
    /// copy is released, so the next status is consistent.
    pub async fn wait_paused_idle(&mut self, what: &str) -> Value {
        self.wait_status(what, |s| {
            s["copy_open"] == false && num(s, "chunks_in_flight") == 0
        })
        .await;
        self.ctl_ok("status", None).await
    }

    /// SIGKILL the run and reap it.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Wait for the run to end.
    pub async fn wait(mut self) -> Ended {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "migrate did not end within {DEADLINE:?}\nstderr:\n{}",
                    self.stderr()
                )
            })
            .unwrap();
        Ended {
            code: status.code().unwrap_or(-1),
            out: std::fs::read_to_string(&self.out).unwrap_or_default(),
            err: std::fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

/// `rowshift ctl --socket PATH command [arg]`: (exit code, parsed JSON reply or Null).
pub async fn ctl(socket: &Path, command: &str, arg: Option<&str>) -> (i32, Value) {
    let socket_s = socket.display().to_string();
    ctl_args(&["--socket", socket_s.as_str()], command, arg).await
}

/// `rowshift ctl <target...> command [arg]`: (exit code, JSON reply or Null).
pub async fn ctl_args(target: &[&str], command: &str, arg: Option<&str>) -> (i32, Value) {
    let mut args = vec!["ctl"];
    args.extend_from_slice(target);
    args.push(command);
    if let Some(a) = arg {
        args.push(a);
    }
    let out = tokio::process::Command::new(rowshift_bin())
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

/// Names of the tables of `db`.
pub async fn tables(server: &TestServer, db: &str) -> Vec<String> {
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let names: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    names
}

/// Rows of `db`.`t` as (id, a, s), ordered by id.
pub async fn rows(server: &TestServer, db: &str) -> Vec<(i64, i64, String)> {
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let r = c
        .query(format!("SELECT id, a, s FROM `{db}`.`t` ORDER BY id"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    r
}

/// `SHOW CREATE TABLE` of `db`.`t`.
pub async fn create_of(server: &TestServer, db: &str) -> String {
    let mut c = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let r: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE `{db}`.`t`"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    r.unwrap().1
}

/// The u64 at `key` of a status reply.
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no number {key}: {v}"))
}

/// Send one HTTP/1.1 request (`Connection: close`) to 127.0.0.1:port: (status line, body).
async fn http_request(port: u16, request: String) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// `GET path` on 127.0.0.1:port: (status line, body).
pub async fn http_get(port: u16, path: &str) -> (String, String) {
    http_request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `POST path` with `body`: (status line, body).
pub async fn http_post(port: u16, path: &str, body: &str) -> (String, String) {
    http_request(
        port,
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// The value of the sample `name` (with label `label = value` when given) in a `/metrics`
/// scrape, parsed with a Prometheus text parser; `None` when absent.
pub fn metric(body: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).ok()?;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}
