//! The appliers of a target with a unique key of its own (a migration that adds one) against
//! real MySQL 9.7 and MariaDB 10.11 servers: a batch that collides on that key is held until the
//! changes that resolve the collision come, and a collision nothing resolves is reported as a
//! duplicate with the key's name, never dropped.
//!
//! Deterministic: an urgent barrier ends a batch in the middle of a swap of two rows' values,
//! as a batch boundary inside an application's transaction does under load. Also: a DELETE by a
//! FLOAT primary key finds its row.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use rowshift_engine::apply::{ApplierSet, ApplyError, ApplyTarget, Op, COLLISION_WAIT};
use rowshift_engine::conn::Endpoint;
use rowshift_testkit::both_engines;
use rowshift_testkit::{Engine, TestServer};
use rowshift_transform::key::KeyCodec;
use rowshift_transform::schema::Flavor;
use rowshift_transform::Value;

struct Target {
    server: std::sync::Arc<TestServer>,
    db: String,
    codec: KeyCodec,
}

/// `t` (id PRIMARY KEY, u UNIQUE) with rows (1, 'a') and (2, 'b').
async fn setup(engine: Engine, name: &str) -> Target {
    setup_with(engine, name, &[
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, u VARCHAR(10) NOT NULL, UNIQUE KEY uk_u (u)) ENGINE=InnoDB",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
    ])
    .await
}

/// Database `name` with table `t` made by `stmts`, its schema's key codec.
async fn setup_with(engine: Engine, name: &str, stmts: &[&str]) -> Target {
    let server = TestServer::shared(engine);
    let db = server.fresh_db(name).await.unwrap();
    let mut c = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    for s in stmts {
        c.query_drop(*s).await.unwrap();
    }
    let flavor = match engine {
        Engine::MySql => Flavor::MySql,
        Engine::MariaDb => Flavor::MariaDb,
    };
    let schema = rowshift_engine::catalog::load_table(&mut c, flavor, &db, "t")
        .await
        .unwrap();
    let codec = KeyCodec::for_primary_key(&schema).unwrap();
    Target { server, db, codec }
}

impl Target {
    async fn appliers(&self, collision_wait: Duration) -> ApplierSet {
        let target = ApplyTarget {
            endpoint: Endpoint::new(&self.server.url()).unwrap(),
            table: format!("`{}`.`t`", self.db),
            columns: vec!["`id`".into(), "`u`".into()],
            kinds: vec![Default::default(); 2],
            key_positions: vec![0],
            max_batch: 500,
            linger: Duration::ZERO,
            // The unique key `uk_u` is the target's own: DELETE + INSERT, never REPLACE.
            replace: false,
            reconnect_timeout: Duration::from_secs(5),
            collision_wait,
        };
        ApplierSet::start(target, 1, 16).await.unwrap()
    }

    async fn set(&self, appliers: &mut ApplierSet, id: i64, u: &str) {
        let key = self.codec.key_of_values(&[Value::Int(id)]).unwrap();
        let row = vec![Value::Int(id), Value::Bytes(u.as_bytes().to_vec())];
        appliers.send(0, key, Op::Upsert(row)).await.unwrap();
    }

    async fn rows(&self) -> Vec<(i64, String)> {
        let mut c = mysql_async::Conn::from_url(self.server.url_for_db(&self.db))
            .await
            .unwrap();
        c.query("SELECT id, u FROM t ORDER BY id").await.unwrap()
    }
}

/// Row 1 takes row 2's value and row 2 row 1's, the batch cut between the two changes (an
/// urgent barrier writes at once): the first batch collides on `uk_u`, is held, and is written
/// with the second change; the barrier is acknowledged only then.
async fn swap_across_a_batch_boundary(engine: Engine) {
    let t = setup(engine, "apply_swap_boundary").await;
    let mut appliers = t.appliers(COLLISION_WAIT).await;
    t.set(&mut appliers, 1, "b").await;
    let seq = appliers.barrier().await.unwrap();
    // The barrier cannot be acknowledged while row 1's change collides with row 2.
    let early = tokio::time::timeout(Duration::from_millis(300), appliers.wait_applied(seq)).await;
    assert!(
        early.is_err(),
        "the barrier after a colliding batch was acknowledged before the batch was written"
    );
    assert_eq!(t.rows().await, vec![(1, "a".into()), (2, "b".into())]);
    t.set(&mut appliers, 2, "a").await;
    appliers.wait_applied(seq).await.unwrap();
    let seq = appliers.barrier().await.unwrap();
    appliers.wait_applied(seq).await.unwrap();
    assert_eq!(t.rows().await, vec![(1, "b".into()), (2, "a".into())]);
    appliers.finish().await.unwrap();
}

/// A collision no later change resolves (row 1 takes row 2's value for good): the appliers
/// stop with a duplicate error naming the key, after the collision wait, and the table keeps
/// its rows.
async fn unresolved_collision_is_a_duplicate(engine: Engine) {
    let t = setup(engine, "apply_dup_unresolved").await;
    let mut appliers = t.appliers(Duration::from_millis(500)).await;
    t.set(&mut appliers, 1, "b").await;
    let seq = appliers.barrier().await.unwrap();
    let err = appliers.wait_applied(seq).await.unwrap_err();
    let err = match err {
        ApplyError::Stopped(_) => appliers.finish().await.unwrap_err(),
        other => other,
    };
    assert!(
        matches!(err, ApplyError::Duplicate { .. }),
        "expected a duplicate error, got {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("uk_u") && text.contains("Remove the duplicates"),
        "{text}"
    );
    assert_eq!(t.rows().await, vec![(1, "a".into()), (2, "b".into())]);
}

/// The run ends (the channel closes) while a batch is held: it is written once more, and
/// reported as a duplicate when it still collides, never dropped.
async fn held_batch_at_the_end_is_reported(engine: Engine) {
    let t = setup(engine, "apply_dup_at_end").await;
    let mut appliers = t.appliers(COLLISION_WAIT).await;
    t.set(&mut appliers, 2, "a").await;
    let _ = appliers.barrier().await.unwrap();
    let err = appliers.finish().await.unwrap_err();
    assert!(
        matches!(err, ApplyError::Duplicate { .. }),
        "expected a duplicate error, got {err:?}"
    );
    assert_eq!(t.rows().await, vec![(1, "a".into()), (2, "b".into())]);
}

/// A FLOAT primary key: the appliers' DELETE names the row by its exact value. The server
/// compares a FLOAT column as a DOUBLE, so the float 0.1 written as `0.1` matched nothing and
/// the deleted row stayed in the target (before the fix).
async fn delete_by_a_float_key(engine: Engine) {
    let Target { server, db, codec } = setup_with(
        engine,
        "apply_float_key",
        &["CREATE TABLE t (f FLOAT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB"],
    )
    .await;
    let target = ApplyTarget {
        endpoint: Endpoint::new(&server.url()).unwrap(),
        table: format!("`{db}`.`t`"),
        columns: vec!["`f`".into(), "`v`".into()],
        kinds: vec![Default::default(); 2],
        key_positions: vec![0],
        max_batch: 500,
        linger: Duration::ZERO,
        replace: true,
        reconnect_timeout: Duration::from_secs(5),
        collision_wait: COLLISION_WAIT,
    };
    let mut appliers = ApplierSet::start(target, 1, 16).await.unwrap();
    for (f, v) in [(0.1f32, 1i64), (0.3, 3), (1.2345678, 4)] {
        let key = codec.key_of_values(&[Value::Float(f)]).unwrap();
        appliers
            .send(0, key, Op::Upsert(vec![Value::Float(f), Value::Int(v)]))
            .await
            .unwrap();
    }
    let seq = appliers.barrier().await.unwrap();
    appliers.wait_applied(seq).await.unwrap();
    for f in [0.1f32, 1.2345678] {
        let key = codec.key_of_values(&[Value::Float(f)]).unwrap();
        appliers
            .send(0, key, Op::Delete(vec![Value::Float(f)]))
            .await
            .unwrap();
    }
    let seq = appliers.barrier().await.unwrap();
    appliers.wait_applied(seq).await.unwrap();
    appliers.finish().await.unwrap();
    let mut c = mysql_async::Conn::from_url(server.url_for_db(&db))
        .await
        .unwrap();
    let left: Vec<i64> = c.query("SELECT v FROM t ORDER BY f").await.unwrap();
    assert_eq!(left, vec![3], "the deleted FLOAT keys are gone, 0.3 stays");
}

both_engines!(
    delete_by_a_float_key,
    swap_across_a_batch_boundary,
    unresolved_collision_is_a_duplicate,
    held_batch_at_the_end_is_reported,
);
