//! TLS for every connection of `rowshift migrate`, on both engines, against a dedicated server
//! started with a CA and a server certificate made at test time (`openssl`), the certificate
//! naming `db.example.com` (not 127.0.0.1).
//!
//! rowshift connects as a user created `REQUIRE SSL`: the server refuses any plain connection
//! of that user, so a migration that succeeds proves that every connection — binlog stream,
//! copy workers, appliers, drain markers, checkpoint writer, verification snapshots and both
//! cut-over connections — used TLS.
//! - `--ssl-mode required`: a full `--execute` migration works (byte-exact result).
//! - `--ssl-mode verify-ca` with the right CA: works; with another CA: refused.
//! - `--ssl-mode verify-identity`: the name does not match 127.0.0.1, so it fails cleanly with
//!   a clear error and changes nothing.
//! - `--ssl-mode disabled`: refused by the server (the test's control).

mod migrate_support;

use migrate_support::*;
use mysql_async::prelude::Queryable;
use rowshift_testkit::both_engines;
use rowshift_testkit::{Engine, ServerOptions, TestServer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed for the TLS tests (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `db.example.com` signed by it, in `dir`; also a second,
/// unrelated CA (`other-ca.pem`).
#[rustfmt::skip]
fn make_certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", &format!("{ca}.key"), "-out", &format!("{ca}.pem"),
                "-subj", &format!("/CN=rowshift test {ca}"),
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=db.example.com",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:db.example.com\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        ],
    );
}

struct TlsServer {
    db: TestDb,
    dir: PathBuf,
    url: String,
    password: String,
}

async fn tls_server(engine: Engine, name: &str) -> TlsServer {
    let dir = std::env::temp_dir().join(format!(
        "rowshift-tls-{name}-{}-{}",
        engine.name(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let d = dir.display();
    let server = TestServer::dedicated(
        engine,
        ServerOptions {
            extra_args: vec![
                format!("--ssl-ca={d}/ca.pem"),
                format!("--ssl-cert={d}/server.pem"),
                format!("--ssl-key={d}/server.key"),
            ],
        },
    )
    .unwrap_or_else(|e| panic!("cannot start the TLS test server: {e}"));
    let db = setup_on(Arc::new(server), name).await;
    let user = format!("rs_tls_{}", engine.name());
    let password = format!("Tls-Pw-{}", engine.name());
    let mut c = db.conn().await;
    for host in ["%", "localhost", "127.0.0.1"] {
        let account = format!("'{user}'@'{host}'");
        c.query_drop(format!("DROP USER IF EXISTS {account}"))
            .await
            .unwrap();
        c.query_drop(format!(
            "CREATE USER {account} IDENTIFIED BY '{password}' REQUIRE SSL"
        ))
        .await
        .unwrap();
        c.query_drop(format!("GRANT ALL ON *.* TO {account}"))
            .await
            .unwrap();
    }
    let have_ssl: Option<(String, String)> = c
        .query_first("SHOW GLOBAL VARIABLES LIKE 'have_ssl'")
        .await
        .unwrap();
    if let Some((_, v)) = have_ssl {
        assert_eq!(v, "YES", "the server did not enable TLS");
    }
    c.query_drop(
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, s VARCHAR(20)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.disconnect().await.unwrap();
    insert_rows(
        &db,
        "t",
        (1..=3_000).map(|i| format!("({i}, {}, 'row {i}')", i % 17)),
    )
    .await;
    let url = format!("mysql://{user}@127.0.0.1:{}", db.server.port());
    TlsServer {
        db,
        dir,
        url,
        password,
    }
}

impl TlsServer {
    async fn migrate(&self, alter: &str, extra: &[&str]) -> Outcome {
        self.db
            .migrate_as(&self.url, Some(&self.password), "t", alter, extra)
            .await
    }

    fn ca(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

async fn required_and_verify_ca_work(engine: Engine) {
    let s = tls_server(engine, "tls_ok").await;
    let db = &s.db;
    // The control: this user cannot connect without TLS.
    let o = s
        .migrate("ADD COLUMN b INT", &["--ssl-mode", "disabled"])
        .await;
    assert_ne!(o.code, 0, "a plain connection must be refused: {o:?}");
    assert!(!o.err.contains(&s.password));

    db.copy_to_oracle("t").await;
    let alter = "ADD COLUMN b INT NOT NULL DEFAULT 7";
    let o = s
        .migrate(alter, &["--execute", "--ssl-mode", "required"])
        .await;
    o.assert_ok();
    assert!(o.out.contains("verification before cut-over"), "{}", o.out);
    let mut c = db.conn().await;
    c.query_drop(format!("ALTER TABLE {} {alter}", q2(&db.oracle_db(), "t")))
        .await
        .unwrap();
    let expected = snapshot(&mut c, &db.oracle_db(), "t").await;
    c.query_drop(format!("DROP TABLE {}", db.t("_t_old")))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    assert_eq!(db.snapshot("t").await, expected);

    // verify-ca with the server's CA: a second full migration.
    let ca = s.ca("ca.pem");
    let o = s
        .migrate(
            "ADD COLUMN c INT NOT NULL DEFAULT 8",
            &["--execute", "--ssl-mode", "verify-ca", "--ssl-ca", &ca],
        )
        .await;
    o.assert_ok();
    db.assert_only_old_left("t").await;
    let mut c = db.conn().await;
    let sum: Option<u64> = c
        .query_first(format!("SELECT SUM(c) FROM {}", db.t("t")))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    assert_eq!(sum, Some(8 * 3_000));
    let _ = std::fs::remove_dir_all(&s.dir);
}

async fn wrong_name_or_ca_fails_cleanly(engine: Engine) {
    let s = tls_server(engine, "tls_bad").await;
    let db = &s.db;
    let before = db.snapshot("t").await;
    let ca = s.ca("ca.pem");
    let o = s
        .migrate(
            "ADD COLUMN b INT",
            &[
                "--execute",
                "--ssl-mode",
                "verify-identity",
                "--ssl-ca",
                &ca,
            ],
        )
        .await;
    o.assert_failed_with("cannot connect to mysql://");
    let line = o.error_line().to_ascii_lowercase();
    assert!(
        line.contains("name") || line.contains("certificate") || line.contains("tls"),
        "the error says why: {line}"
    );
    assert!(!o.err.contains(&s.password) && !o.out.contains(&s.password));
    let other = s.ca("other-ca.pem");
    let o = s
        .migrate(
            "ADD COLUMN b INT",
            &["--execute", "--ssl-mode", "verify-ca", "--ssl-ca", &other],
        )
        .await;
    o.assert_failed_with("cannot connect to mysql://");
    let o = s
        .migrate(
            "ADD COLUMN b INT",
            &["--execute", "--ssl-mode", "verify-ca"],
        )
        .await;
    o.assert_failed_with("needs --ssl-ca");
    let after = db.snapshot("t").await;
    assert_eq!(
        after.create, before.create,
        "the table's definition changed"
    );
    after.assert_same_rows(&before, "the table's rows changed");
    db.assert_no_helpers("t").await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

both_engines!(required_and_verify_ca_work, wrong_name_or_ca_fails_cleanly);
