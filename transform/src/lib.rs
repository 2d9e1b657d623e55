//! rowshift-transform: table schemas, the old-to-new column mapping derived from an ALTER, and
//! row transforms compiled once and applied per row.
//!
//! This crate is pure: it must not do I/O (no sockets, files, clocks or threads). Everything
//! here is a function of its inputs so it can be unit-tested directly.
//!
//! Modules, in the order data flows through them:
//! * [`schema`]: [`schema::TableSchema`] from `information_schema` rows (MySQL and MariaDB
//!   spellings), column types, defaults, keys; [`schema::quote_ident`].
//! * [`mapping`]: [`mapping::parse_renames`] reads column renames from the ALTER text;
//!   [`mapping::Mapping`] picks, for each new column, a copy, an expression or the default, and
//!   gives the copy's SQL ([`mapping::Mapping::select_exprs`]) and the per-row transform
//!   ([`mapping::Mapping::apply`]).
//! * [`expr`]: the `--set column = expression` language, compiled to SQL and to a Rust
//!   evaluator that agree.
//! * [`convert`]: storing a value into a column of another type as the server would, refusing
//!   lossy conversions.
//! * [`key`]: collation-aware primary keys ([`key::RowKey`]) for routing and collapsing events.
//! * Helpers: [`charset`] (utf8mb4/utf8mb3/latin1=cp1252/ascii transcoding), [`collation`]
//!   (case/accent/pad folding), [`decimal`] (exact DECIMAL arithmetic), [`temporal`] (dates,
//!   times, TIMESTAMP in UTC), [`jsontext`] (JSON printed as MySQL prints it), and [`value`]
//!   (the shared typed [`Value`]).

#![warn(missing_docs)]

pub mod charset;
pub mod collation;
pub mod convert;
pub mod ddl;
pub mod decimal;
pub mod expr;
pub mod jsontext;
pub mod key;
pub mod mapping;
pub mod schema;
pub mod temporal;
pub mod value;

pub use value::Value;
