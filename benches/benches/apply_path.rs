//! rowshift's own CPU per applied row event, without I/O: transform to the new shape
//! (`Mapping`), the new key and its applier (`KeyCodec`, `RowKey::route`), collapsing per key,
//! and the SQL text of a batch. Each stage is measured the way the appliers did it before the
//! apply-rate work (`before`) and the way they do it now (`after`).
//!
//! `cargo bench -p rowshift-benches --bench apply_path`. Results: benches/README.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rowshift_engine::apply::{write_batch, ApplyTarget, Op, Pending};
use rowshift_engine::conn::Endpoint;
use rowshift_transform::key::{KeyCodec, RowKey};
use rowshift_transform::mapping::Mapping;
use rowshift_transform::schema::{ColumnInfoRow, Flavor, StatisticsRow, TableSchema};
use rowshift_transform::Value;
use std::collections::HashMap;
use std::hint::black_box;

const BATCH: usize = 500;

/// The ledger's `orders` table (tests/src/ledger.rs) as `information_schema` would describe it.
fn orders(name: &str) -> TableSchema {
    let cols: [(&str, &str, &str); 8] = [
        ("id", "bigint", "bigint"),
        ("customer_id", "int", "int"),
        ("status_code", "tinyint", "tinyint"),
        ("amount", "decimal", "decimal(12,2)"),
        ("counter", "bigint", "bigint"),
        ("note", "varchar", "varchar(64)"),
        ("created_at", "datetime", "datetime(6)"),
        ("updated_at", "timestamp", "timestamp(6)"),
    ];
    let rows: Vec<ColumnInfoRow> = cols
        .iter()
        .enumerate()
        .map(|(i, (n, dt, ct))| ColumnInfoRow {
            column_name: n.to_string(),
            ordinal_position: i as u32 + 1,
            data_type: dt.to_string(),
            column_type: ct.to_string(),
            is_nullable: if *n == "note" { "YES" } else { "NO" }.into(),
            column_default: None,
            extra: String::new(),
            character_set_name: (*dt == "varchar").then(|| "utf8mb4".into()),
            collation_name: (*dt == "varchar").then(|| "utf8mb4_0900_ai_ci".into()),
            character_maximum_length: (*dt == "varchar").then_some(64),
            numeric_precision: (*dt == "decimal").then_some(12),
            numeric_scale: (*dt == "decimal").then_some(2),
            datetime_precision: ct.ends_with("(6)").then_some(6),
            column_key: if *n == "id" { "PRI" } else { "" }.into(),
        })
        .collect();
    let stats = vec![StatisticsRow {
        index_name: "PRIMARY".into(),
        seq_in_index: 1,
        column_name: Some("id".into()),
        non_unique: false,
        sub_part: None,
    }];
    TableSchema::from_information_schema("bench", name, Flavor::MySql, &rows, &stats)
        .expect("orders schema")
}

/// A decoded after-image of `orders`, as the source hands it over.
fn row(id: i64) -> Vec<Value> {
    vec![
        Value::Int(id),
        Value::Int(id % 9973),
        Value::Int(id % 5),
        Value::Decimal(format!("{}.{:02}", id % 1000, id % 100)),
        Value::Int(id * 10 + 1),
        Value::Bytes(format!("order {id}").into_bytes()),
        Value::DateTime {
            year: 2026,
            month: 1,
            day: 1,
            hour: 1,
            minute: 2,
            second: 3,
            micros: 456_789,
        },
        Value::Timestamp {
            secs: 1_795_500_000,
            micros: 123_456,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let old = orders("orders");
    let new = orders("_orders_new");
    let mapping = Mapping::new::<String>(&old, &new, &[], &[]).expect("mapping");
    let codec = KeyCodec::for_primary_key(&new).expect("codec");
    let key_positions = mapping.key_positions_in_insert();
    let rows: Vec<Vec<Value>> = (1..=BATCH as i64).map(row).collect();
    let target = ApplyTarget {
        endpoint: Endpoint::new("mysql://root@127.0.0.1:3306").expect("endpoint"),
        table: "`bench`.`_orders_new`".into(),
        columns: mapping
            .insert_columns()
            .iter()
            .map(|c| rowshift_transform::schema::quote_ident(c))
            .collect(),
        kinds: vec![Default::default(); 8],
        key_positions: key_positions.clone(),
        max_batch: BATCH,
        linger: std::time::Duration::ZERO,
        replace: true,
        reconnect_timeout: std::time::Duration::from_secs(1),
        collision_wait: rowshift_engine::apply::COLLISION_WAIT,
    };

    let mut g = c.benchmark_group("transform_key_route");
    g.throughput(Throughput::Elements(BATCH as u64));
    // Before: borrow the decoded row, clone every value, gather the key values into a Vec.
    g.bench_function("before", |b| {
        b.iter_batched(
            || rows.clone(),
            |input| {
                for r in input {
                    let new_row = mapping.apply(&r).expect("apply");
                    drop(r);
                    let kv: Vec<Value> =
                        key_positions.iter().map(|&i| new_row[i].clone()).collect();
                    let key = codec.key_of_values(&kv).expect("key");
                    black_box((key.route(4), key, new_row));
                }
            },
            BatchSize::SmallInput,
        )
    });
    // After: move the values out of the decoded row, encode the key in place.
    g.bench_function("after", |b| {
        b.iter_batched(
            || rows.clone(),
            |input| {
                for r in input {
                    let new_row = mapping.apply_owned(r).expect("apply");
                    let key = codec.key_at(&new_row, &key_positions).expect("key");
                    black_box((key.route(4), key, new_row));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let changes: Vec<(RowKey, Op)> = rows
        .iter()
        .map(|r| {
            (
                codec.key_at(r, &key_positions).expect("key"),
                Op::Upsert(r.clone()),
            )
        })
        .collect();
    let mut g = c.benchmark_group("collapse");
    g.throughput(Throughput::Elements(BATCH as u64));
    // Before: HashMap<RowKey, Op> plus the order of keys (a key clone per change).
    g.bench_function("before", |b| {
        let mut map: HashMap<RowKey, Op> = HashMap::new();
        let mut order: Vec<RowKey> = Vec::new();
        b.iter_batched(
            || changes.clone(),
            |input| {
                for (key, op) in input {
                    if map.insert(key.clone(), op).is_none() {
                        order.push(key);
                    }
                }
                let ops: Vec<&Op> = order.iter().filter_map(|k| map.get(k)).collect();
                black_box(ops.len());
                map.clear();
                order.clear();
            },
            BatchSize::SmallInput,
        )
    });
    // After: key → index into the ops vector.
    g.bench_function("after", |b| {
        let mut pending = Pending::default();
        b.iter_batched(
            || changes.clone(),
            |input| {
                for (key, op) in input {
                    pending.put(key, op);
                }
                black_box(pending.ops.len());
                pending.clear();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let ops: Vec<Op> = changes.into_iter().map(|(_, op)| op).collect();
    let mut g = c.benchmark_group("batch_sql");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("replace_500", |b| {
        let mut sql = String::new();
        b.iter(|| {
            sql.clear();
            black_box(write_batch(&mut sql, &target, &ops, None));
            black_box(sql.len());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
