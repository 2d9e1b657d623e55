//! The harness really starts MariaDB 10.11 and MySQL 9.7 with the binlog settings rowshift needs.

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, TestServer};

async fn check_engine(engine: Engine, db: &str) {
    let server = TestServer::shared(engine);
    server.fresh_db(db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url_for_db(db))
        .await
        .unwrap();

    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    match engine {
        Engine::MySql => assert!(version.starts_with("9.7."), "MySQL version {version}"),
        Engine::MariaDb => {
            assert!(version.starts_with("10.11."), "MariaDB version {version}");
            assert!(version.contains("MariaDB"), "{version}");
        }
    }
    let (log_bin, format, image, metadata): (i64, String, String, String) = conn
        .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log_bin, 1);
    assert_eq!(format, "ROW");
    assert_eq!(image, "FULL");
    assert_eq!(metadata, "FULL");
    if engine == Engine::MySql {
        let gtid: String = conn
            .query_first("SELECT @@gtid_mode")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gtid, "ON");
    }

    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))")
        .await
        .unwrap();
    conn.exec_drop(
        "INSERT INTO t VALUES (?, ?), (?, ?)",
        (1, "one", 2, "twö 🦀"),
    )
    .await
    .unwrap();
    let rows: Vec<(i32, String)> = conn
        .query("SELECT id, name FROM t ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, "one".into()), (2, "twö 🦀".into())]);
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn mysql_starts_with_row_binlog() {
    check_engine(Engine::MySql, "harness_mysql").await;
}

#[tokio::test]
async fn mariadb_starts_with_row_binlog() {
    check_engine(Engine::MariaDb, "harness_mariadb").await;
}

#[tokio::test]
async fn dedicated_server_restarts_on_its_data() {
    let server =
        TestServer::dedicated(Engine::MariaDb, rowshift_testkit::ServerOptions::default()).unwrap();
    let db = server.fresh_db("restart").await.unwrap();
    let pool = server.pool();
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    conn.query_drop(format!("INSERT INTO `{db}`.t VALUES (42)"))
        .await
        .unwrap();
    drop(conn);
    pool.disconnect().await.unwrap();
    server.stop();
    server.start().unwrap();
    let mut conn = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let id: Option<i32> = conn
        .query_first(format!("SELECT id FROM `{db}`.t"))
        .await
        .unwrap();
    assert_eq!(id, Some(42));
    conn.disconnect().await.unwrap();
}
