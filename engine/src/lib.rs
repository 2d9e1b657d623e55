//! rowshift-engine: the pipeline that changes a live table's schema without stopping writes.
//!
//! ```text
//!  binlog ─► source ─► router ─► N appliers ─► shadow/target table
//!  (server)  (decode,  (filter,   (per-key order,      ▲
//!            position) transform, batch, collapse)     │
//!                      hash key)        │              │
//!                                   barriers ─► applied position ─► checkpoint
//!  copy (chunked INSERT … SELECT, high-water mark) ─────┘
//!  verify (chunk checksums) · cutover (two-connection atomic RENAME)
//! ```
//!
//! Stages talk through typed messages over bounded channels (backpressure, bounded memory),
//! never through shared mutable state; counters for progress are atomics read by the display.
//!
//! The source stage ([`source`]) reads the row-based binlog as a replica
//! ([`source::BinlogSource`]) or from a file ([`source::BinlogReader`]); both run the same pure
//! decoder ([`source::Decoder`]) and yield [`event::SourceEvent`]s in binlog order:
//! `Begin`, `Rows(RowChange)` (typed before/after images of `rowshift_transform::Value`, each
//! paired with its [`event::EventPos`]), `Commit{pos}` and `Ddl{pos}` (the only resumable
//! [`position::Position`]s), `Heartbeat`, `Rotate` and informational `Marker`s. It refuses
//! binlogs a row migration cannot trust (STATEMENT/MIXED format, non-FULL row images,
//! incidents) with a definite error naming the file, offset and setting.
//!
//! Invariants:
//! - Per-key order: every change of one primary key goes to the same applier, in binlog order.
//! - Positions advance at commit boundaries only ([`position`]).
//! - The applied position is the lowest barrier every applier acknowledged: what is *applied*,
//!   never what was merely read.
//! - Drains are proven: a marker row written to the sentry table is read back from the binlog.
//!
//! Errors: a `thiserror` enum per module; transient ones (lost connection, lock timeout) are
//! retried, definite ones stop the run with what to do, and an ambiguous cut-over is never
//! retried blindly.
//!
//! This crate does the I/O; pure logic (schemas, mappings, expressions, values) lives in
//! `rowshift-transform`. It must not print to the terminal (that is the CLI's job).

pub mod apply;
pub mod backfill;
pub mod catalog;
pub mod checkpoint;
pub mod conn;
pub mod control;
pub mod copy;
pub mod cutover;
pub mod estimate;
pub mod event;
pub mod hooks;
pub mod metrics;
pub mod migrate;
pub mod position;
pub mod source;
pub mod sqlvalue;
pub mod sync;
pub mod throttle;
pub mod verify;
