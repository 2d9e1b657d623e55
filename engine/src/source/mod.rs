//! The binlog source stage: binlog events → owned [`SourceEvent`]s in binlog order.
//!
//! - [`decode`]: the pure decoder (events → [`SourceEvent`]s, positions, typed values).
//! - [`file`]: binlog files (framing, CRC32 checks) on top of the decoder.
//! - [`stream`]: the live replica stream (mysql_async) on top of the decoder.
//! - [`preflight`]: server settings checked before streaming.
//! - [`schema_cache`]: column names/attributes from information_schema when the TABLE_MAP
//!   does not carry them.
//!
//! [`SourceEvent`]: crate::event::SourceEvent

mod columns;
pub mod decode;
pub mod file;
mod json_patch;
mod json_sql;
mod mariadb;
pub mod preflight;
pub mod reconnect;
pub mod schema_cache;
pub mod stream;
mod values;
pub mod xa;

pub use decode::{DecodeError, DecodeOptions, Decoder, Flavor, RawEvent, TableFilter};
pub use file::{decode_bytes, BinlogReader, FileError};
pub use stream::{BinlogSource, SourceConfig, SourceError, SslMode};
