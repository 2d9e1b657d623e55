//! Configuration layers of `rowshift migrate` / `verify`: a TOML file (`--config`), environment
//! variables (`ROWSHIFT_<FLAG>`) and flags, with command line > environment > file > default;
//! unknown keys and passwords in the wrong place are refused clearly; a real dry run on both
//! engines follows the file's options; `--ask-password` reads a password in a real terminal
//! without echoing it.

mod migrate_support;

use migrate_support::*;
use rowshift_testkit::Engine;
use std::path::PathBuf;

/// A fresh folder for this test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rowshift-cfg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("rowshift.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The line of `--print-config` output for `key`.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no `{key}` in the printed config:\n{out}"))
}

#[tokio::test]
async fn flag_beats_env_beats_file_beats_default() {
    let dir = temp_dir("precedence");
    let cfg = write_config(
        &dir,
        r#"
source = "mysql://app@db.example.com:3306"
ssl-mode = "required"
[migrate]
table = "shop.orders"
alter = "ADD COLUMN x INT"
set = ["x = 1", "y = 2"]
appliers = 3
copy_workers = 5
chunk-time-ms = 40
skip-verify = true
"#,
    );
    let o = run_rowshift_env(
        &[
            "migrate",
            "--config",
            &cfg,
            "--copy-workers",
            "8",
            "--print-config",
        ],
        &[("ROWSHIFT_APPLIERS", "6"), ("ROWSHIFT_COPY_WORKERS", "7")],
    )
    .await;
    o.assert_ok();
    assert_eq!(
        line(&o.out, "copy-workers"),
        "copy-workers = 8  # command line"
    );
    assert_eq!(
        line(&o.out, "appliers"),
        "appliers = 6  # environment ROWSHIFT_APPLIERS"
    );
    assert!(line(&o.out, "chunk-time-ms").starts_with("chunk-time-ms = 40  # config file "));
    assert!(line(&o.out, "ssl-mode").starts_with("ssl-mode = \"required\"  # config file"));
    assert!(line(&o.out, "set").starts_with("set = [\"x = 1\", \"y = 2\"]  # config file"));
    assert!(line(&o.out, "skip-verify").starts_with("skip-verify = true  # config file"));
    assert_eq!(
        line(&o.out, "cut-over-lock-wait"),
        "cut-over-lock-wait = 2  # default"
    );
    // A switch from the environment accepts yes/no.
    let o = run_rowshift_env(
        &["migrate", "--config", &cfg, "--print-config"],
        &[("ROWSHIFT_SKIP_VERIFY", "no")],
    )
    .await;
    o.assert_ok();
    assert_eq!(
        line(&o.out, "skip-verify"),
        "skip-verify = false  # environment ROWSHIFT_SKIP_VERIFY"
    );
    // The file can also be named by ROWSHIFT_CONFIG.
    let o = run_rowshift_env(
        &["migrate", "--print-config"],
        &[("ROWSHIFT_CONFIG", cfg.as_str())],
    )
    .await;
    o.assert_ok();
    assert!(line(&o.out, "appliers").starts_with("appliers = 3  # config file"));
    // verify reads the shared top-level keys and its own section; migrate's section is not its.
    let cfg2 = write_config(
        &dir,
        r#"
source = "mysql://app@db.example.com:3306"
[verify]
table = "shop.orders"
shadow = "shop._orders_new"
workers = 4
[migrate]
appliers = 9
"#,
    );
    let o = run_rowshift_env(&["verify", "--config", &cfg2, "--print-config"], &[]).await;
    o.assert_ok();
    assert!(line(&o.out, "workers").starts_with("workers = 4  # config file"));
    assert!(line(&o.out, "source").starts_with("source = \"mysql://app@db.example.com:3306\""));
    assert!(!o.out.contains("appliers"), "{}", o.out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unknown_keys_and_passwords_are_refused() {
    let dir = temp_dir("unknown");
    let cases: [(&str, &str); 5] = [
        ("[migrate]\napliers = 3\n", "unknown key `migrate.apliers`"),
        ("bogus = 1\n", "unknown key `bogus`"),
        ("[migrat]\nappliers = 3\n", "unknown section [migrat]"),
        (
            "password = \"hunter2\"\n",
            "passwords are never read from the config file",
        ),
        ("[migrate]\nexecute = \"yes\"\n", "`execute` is a switch"),
    ];
    for (text, needle) in cases {
        let cfg = write_config(&dir, text);
        let o = run_rowshift_env(
            &[
                "migrate",
                "--config",
                &cfg,
                "--source",
                "mysql://root@127.0.0.1:1",
                "--table",
                "a.b",
                "--alter",
                "ADD COLUMN x INT",
                "--print-config",
            ],
            &[],
        )
        .await;
        assert_eq!(o.code, 2, "{text}: {o:?}");
        assert!(
            o.err.contains(needle) && o.err.contains(&cfg),
            "{text}: expected {needle:?} naming the file, got {}",
            o.err
        );
        assert!(!o.err.contains("hunter2") && !o.out.contains("hunter2"));
        assert!(o.out.is_empty(), "nothing printed on stdout: {}", o.out);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every URL flag refuses a password (sync's --target and status's --source once took it, so
/// it sat in argv; binlog dump had no other way to take one).
#[tokio::test]
async fn url_passwords_are_refused_by_every_command() {
    let url = "mysql://app:S3cr3t-pw@127.0.0.1:1";
    let ok = "mysql://app@127.0.0.1:1";
    for args in [
        vec!["sync", "--source", ok, "--target", url, "--table", "a.b"],
        vec!["status", "--target", url, "--ckpt-db", "a"],
        vec!["status", "--target", ok, "--ckpt-db", "a", "--source", url],
        vec!["binlog", "dump", "--source", url],
    ] {
        let o = run_rowshift_env(&args, &[]).await;
        assert_ne!(o.code, 0, "{args:?}: {o:?}");
        assert!(
            o.err.contains("the URL holds a password"),
            "{args:?}: {}",
            o.err
        );
        assert!(
            !o.err.contains("S3cr3t") && !o.out.contains("S3cr3t"),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn url_passwords_are_refused_and_never_printed() {
    let o = run_rowshift_env(
        &[
            "migrate",
            "--source",
            "mysql://app:S3cr3t-pw@127.0.0.1:1",
            "--table",
            "a.b",
            "--alter",
            "ADD COLUMN x INT",
        ],
        &[],
    )
    .await;
    o.assert_failed_with("the URL holds a password");
    assert!(o.err.contains("--password-env") && o.err.contains("mysql://app:***@127.0.0.1:1"));
    assert!(!o.err.contains("S3cr3t") && !o.out.contains("S3cr3t"));
    // From the environment: same refusal; --print-config redacts it.
    let env = [("ROWSHIFT_SOURCE", "mysql://app:S3cr3t-pw@127.0.0.1:1")];
    let o = run_rowshift_env(&["verify", "--table", "a.b", "--shadow", "a._b_new"], &env).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.err.contains("the URL holds a password"), "{}", o.err);
    assert!(!o.err.contains("S3cr3t") && !o.out.contains("S3cr3t"));
    let o = run_rowshift_env(
        &[
            "migrate",
            "--table",
            "a.b",
            "--alter",
            "ADD COLUMN x INT",
            "--print-config",
        ],
        &env,
    )
    .await;
    o.assert_ok();
    assert!(line(&o.out, "source").contains("mysql://app:***@127.0.0.1:1"));
    assert!(!o.out.contains("S3cr3t"));
}

/// A real dry run whose connection, table, ALTER and tuning all come from the file; the plan
/// shows them; the environment and a flag override the file.
async fn dry_run_from_file(engine: Engine) {
    let db = setup(engine, "cfg_dry").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL) ENGINE=InnoDB"])
        .await;
    insert_rows(&db, "t", (1..=300).map(|i| format!("({i}, {})", i % 7))).await;
    let before = db.snapshot("t").await;
    let dir = temp_dir(&format!("dry-{}", engine.name()));
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, "\n").unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            r#"
source = "{}"
ssl-mode = "disabled"
password-file = "{}"
[migrate]
table = "{}.t"
alter = "ADD COLUMN b INT NOT NULL DEFAULT 0"
set = ["b = a * 2"]
appliers = 3
copy-workers = 5
chunk-time-ms = 40
cut-over-lock-wait = 4
"#,
            db.server.url(),
            pw_file.display(),
            db.db
        ),
    );
    let o = run_rowshift_env(&["migrate", "--config", &cfg], &[]).await;
    o.assert_ok();
    assert!(
        o.out
            .contains("copy: 5 parallel chunks of ~40 ms; 3 appliers; cut-over lock wait 4s"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("`b` ← (`a` * 2)") || o.out.contains("`b` ←"),
        "{}",
        o.out
    );
    assert!(o.out.contains("dry run"), "{}", o.out);
    let o = run_rowshift_env(
        &["migrate", "--config", &cfg, "--copy-workers", "2"],
        &[("ROWSHIFT_APPLIERS", "6"), ("ROWSHIFT_COPY_WORKERS", "7")],
    )
    .await;
    o.assert_ok();
    assert!(
        o.out
            .contains("copy: 2 parallel chunks of ~40 ms; 6 appliers"),
        "{}",
        o.out
    );
    let after = db.snapshot("t").await;
    assert_eq!(after.create, before.create);
    after.assert_same_rows(&before, "a dry run changed rows");
    db.assert_no_helpers("t").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_from_file_mysql() {
    dry_run_from_file(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_from_file_mariadb() {
    dry_run_from_file(Engine::MariaDb).await;
}

/// `--ask-password` in a real terminal (tmux): the prompt appears, the typed password is not
/// echoed, and the dry run logs in with it as a user that has a password.
async fn ask_password_in_a_terminal(engine: Engine) {
    use mysql_async::prelude::Queryable;
    let db = setup(engine, "cfg_ask").await;
    db.exec(&["CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL) ENGINE=InnoDB"])
        .await;
    let user = format!("rs_ask_{}", engine.name());
    let password = format!("Typed-Pw-{}", engine.name());
    let mut c = db.conn().await;
    for host in ["%", "localhost", "127.0.0.1"] {
        let account = format!("'{user}'@'{host}'");
        c.query_drop(format!("DROP USER IF EXISTS {account}"))
            .await
            .unwrap();
        c.query_drop(format!("CREATE USER {account} IDENTIFIED BY '{password}'"))
            .await
            .unwrap();
        c.query_drop(format!("GRANT ALL ON *.* TO {account}"))
            .await
            .unwrap();
    }
    c.disconnect().await.unwrap();
    let socket = format!("rowshift-ask-{}-{}", engine.name(), std::process::id());
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux is needed: {e}"));
        assert!(out.status.success(), "tmux {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cmd = format!(
        "env -u ROWSHIFT_PASSWORD '{}' migrate --source 'mysql://{user}@127.0.0.1:{}' --table '{}.t' --alter 'ADD COLUMN b INT' --ask-password; echo rowshift-exit=$?; exec cat",
        rowshift_testkit::rowshift_bin().display(),
        db.server.port(),
        db.db
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "rs",
        "-x",
        "160",
        "-y",
        "40",
        "sh",
        "-c",
        &cmd,
    ]);
    // The prompt is printed before the terminal's echo is turned off (rpassword), and keys
    // that arrive in between are echoed: type only once the pane's terminal echoes no more.
    let tty = tmux(&["display-message", "-p", "-t", "rs", "#{pane_tty}"]);
    let tty = tty.trim().to_string();
    let echo_off = || {
        let out = std::process::Command::new("stty")
            .args(["-F", &tty, "-a"])
            .output()
            .unwrap_or_else(|e| panic!("stty: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|flag| flag == "-echo")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut typed = false;
    let screen = loop {
        let screen = tmux(&["capture-pane", "-p", "-t", "rs"]);
        if !typed && screen.contains("password for mysql://") && echo_off() {
            tmux(&["send-keys", "-t", "rs", &password, "Enter"]);
            typed = true;
        }
        if screen.contains("rowshift-exit=") {
            break screen;
        }
        assert!(std::time::Instant::now() < deadline, "no end:\n{screen}");
        // Polling the pane; the program runs on its own.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let _ = std::process::Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .output();
    assert!(screen.contains("rowshift-exit=0"), "{screen}");
    assert!(screen.contains("dry run"), "{screen}");
    assert!(
        !screen.contains(&password),
        "the password was echoed:\n{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_password_in_a_terminal_mysql() {
    ask_password_in_a_terminal(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_password_in_a_terminal_mariadb() {
    ask_password_in_a_terminal(Engine::MariaDb).await;
}
