//! A source behind a slow link (a throttling TCP proxy on 127.0.0.1, 1 MB/s towards rowshift):
//! one binlog event of 6 MB takes about 6 s to arrive, and the server sends no heartbeat while
//! it sends it. The sync's usual wait (three 500 ms heartbeats) runs out first; the connection
//! made again must wait longer each time, or it reads the same event again and again forever
//! (before the fix, the row never arrived from the MySQL source; the MariaDB source got it
//! through anyway).

mod sync_support;

use mysql_async::prelude::Queryable;
use rowshift_testkit::{Engine, TestServer};
use std::time::{Duration, Instant};
use sync_support::{fresh_source_table, spawn_sync, stop_sync, table_t_args, wait_backfill};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy to `port` that passes the server's bytes on at `rate` bytes per second; returns
/// its own port.
async fn slow_proxy(port: u16, rate: f64) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    // Rate shaping of the link, not synchronisation.
                    tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate)).await;
                }
                up.abort();
            });
        }
    });
    own
}

async fn large_event_over_a_slow_link(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_slow_{}_{}", from.name(), to.name());
    let rows: Vec<String> = (1..=10).map(|i| format!("({i}, 'small')")).collect();
    let mut s = fresh_source_table(
        &src,
        &tgt,
        &db,
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, b LONGBLOB NOT NULL) ENGINE=InnoDB",
        &rows,
    )
    .await;
    let proxy = slow_proxy(src.port(), 1_000_000.0).await;
    let slow_url = src
        .url()
        .replace(&format!(":{}", src.port()), &format!(":{proxy}"));
    let name = format!("slow_{}_{}", from.name(), to.name());
    let args = table_t_args(&slow_url, &tgt, &db, &name, &[]);
    let log = std::env::temp_dir().join(format!("rowshift-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, &name, &mut child).await;
    s.query_drop("INSERT INTO t VALUES (100, REPEAT('x', 6000000))")
        .await
        .unwrap();
    let mut t = mysql_async::Conn::from_url(tgt.url_for_db(&db))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let len: Option<u64> = t
            .query_first("SELECT LENGTH(b) FROM t WHERE id = 100")
            .await
            .unwrap();
        if len == Some(6_000_000) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "sync ended: {status:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the 6 MB row never reached the target; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_sync(child).await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_large_event_over_a_slow_link() {
    large_event_over_a_slow_link(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_large_event_over_a_slow_link() {
    large_event_over_a_slow_link(Engine::MariaDb, Engine::MySql).await;
}
