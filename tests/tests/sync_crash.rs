//! `rowshift sync` survives SIGKILL (issue 6): killed at 10 moments chosen by a seeded random
//! generator, spread over the backfill and the streaming phase, and restarted each time while
//! the ledger load runs. At the end promote verifies the target equals the source (GO), and
//! the ledger invariant and the transformed column hold on the target.

mod sync_support;

use rand::{Rng, SeedableRng};
use rowshift_testkit::ledger::{self, LedgerLoad};
use rowshift_testkit::{Engine, TestServer};
use std::time::{Duration, Instant};
use sync_support::*;

const ROWS: u64 = 60_000;
const KILLS: usize = 10;

async fn killed_and_restarted(from: Engine, to: Engine) {
    let src = TestServer::shared(from);
    let tgt = TestServer::shared(to);
    let db = format!("sync_crash_{}_{}", from.name(), to.name());
    src.fresh_db(&db).await.unwrap();
    tgt.fresh_db(&db).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(src.url()).await.unwrap();
    ledger::create_and_fill(&mut conn, &db, ROWS).await.unwrap();
    // Paced: the debug build of sync (two directions at once on a 2-core machine) must keep
    // up with the load, or the watermark backfill crawls behind a growing lag and the test
    // measures the machine instead of crash safety.
    let load = LedgerLoad::start_paced(&src.url(), &db, ROWS, 2, 23, Some(150));
    load.wait_for_commits(100).await;

    let name = "crash";
    let mut args = sync_args(&src, &tgt, &db, name);
    // Small chunks: the backfill spans several kills.
    let i = args.iter().position(|a| a == "--chunk-rows").unwrap();
    args[i + 1] = "200".into();
    let log = std::env::temp_dir().join(format!("rowshift-{db}.log"));
    let _ = std::fs::remove_file(&log);
    let mut tconn = mysql_async::Conn::from_url(tgt.url()).await.unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(20_261_124);
    let (mut in_backfill, mut in_streaming) = (0, 0);
    for kill in 0..KILLS {
        let mut child = spawn_sync(&args, &log);
        // Wait until this run has started (the checkpoint rows exist) so the kill lands in
        // the pipeline, not in the setup.
        let deadline = Instant::now() + Duration::from_secs(120);
        while backfill_state(&mut tconn, &db, name).await.0 == 0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sync ended before its kill: {status:?} (log {})",
                    log.display()
                );
            }
            assert!(Instant::now() < deadline, "sync did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first half of the kills comes early in each run (the backfill), the rest later
        // (streaming, once the backfill is done).
        let delay = if kill < KILLS / 2 {
            Duration::from_millis(rng.random_range(300..1_500))
        } else {
            if kill == KILLS / 2 {
                wait_backfill(&tgt, &db, name, &mut child).await;
            }
            Duration::from_millis(rng.random_range(300..3_000))
        };
        tokio::select! {
            status = child.wait() => panic!("sync ended before its kill: {status:?} (log {})", log.display()),
            _ = tokio::time::sleep(delay) => {}
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        if backfill_state(&mut tconn, &db, name).await.1 {
            in_streaming += 1;
        } else {
            in_backfill += 1;
        }
    }
    assert!(
        in_backfill >= 2 && in_streaming >= 2,
        "kills not spread: {in_backfill} in the backfill, {in_streaming} while streaming"
    );

    // A last run follows the load to its end; then promote.
    let mut child = spawn_sync(&args, &log);
    wait_backfill(&tgt, &db, name, &mut child).await;
    load.wait_for_commits(200).await;
    let report = load.stop().await;
    assert!(report.committed > 300);
    stop_and_promote(child, &args, &log).await;
    assert_target_correct(&tgt, &db, ROWS).await;
    assert_same_counts(&src, &tgt, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_to_mariadb_killed_ten_times() {
    killed_and_restarted(Engine::MySql, Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_to_mysql_killed_ten_times() {
    killed_and_restarted(Engine::MariaDb, Engine::MySql).await;
}
