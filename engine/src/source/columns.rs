//! TABLE_MAP → table definition and per-column decode plans.
//!
//! A plan is compiled once per TABLE_MAP (and reused while the server re-sends an identical
//! one), so the per-row hot path only matches on a small `Copy` enum.

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::collations::{Collation, CollationId};
use mysql_common::constants::ColumnType;

use crate::event::{ColumnDef, SchemaSource, TableDef, TableRef};
use crate::source::schema_cache::CachedTable;

/// How to read one column value from a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColPlan {
    /// TINYINT.
    Tiny { unsigned: bool },
    /// SMALLINT.
    Short { unsigned: bool },
    /// MEDIUMINT.
    Int24 { unsigned: bool },
    /// INT.
    Long { unsigned: bool },
    /// BIGINT.
    LongLong { unsigned: bool },
    /// FLOAT.
    Float,
    /// DOUBLE.
    Double,
    /// DECIMAL(precision, scale), binary size precomputed.
    Decimal { precision: u8, scale: u8, size: u8 },
    /// YEAR.
    Year,
    /// DATE (binlog NEWDATE).
    Date,
    /// Pre-5.6 TIME.
    Time,
    /// TIME(fsp).
    Time2 { fsp: u8 },
    /// Pre-5.6 DATETIME.
    DateTime,
    /// DATETIME(fsp).
    DateTime2 { fsp: u8 },
    /// Pre-5.6 TIMESTAMP.
    Timestamp,
    /// TIMESTAMP(fsp).
    Timestamp2 { fsp: u8 },
    /// BIT(width).
    Bit { width: u8, bytes: u8 },
    /// ENUM stored in 1 or 2 bytes.
    Enum { bytes: u8 },
    /// SET stored in 1..8 bytes.
    Set { bytes: u8 },
    /// CHAR/BINARY: length prefix of 1 or 2 bytes; BINARY(N) is re-padded with zero bytes to
    /// `pad_to` (the server strips them when logging).
    Char { len_bytes: u8, pad_to: u16 },
    /// VARCHAR/VARBINARY: length prefix of 1 or 2 bytes.
    VarChar { len_bytes: u8 },
    /// BLOB/TEXT/GEOMETRY/VECTOR: length prefix of 1..4 bytes.
    Blob { len_bytes: u8 },
    /// MySQL binary JSON: length prefix of 1..4 bytes.
    Json { len_bytes: u8 },
    /// A type the decoder cannot read (reported when a row holds a non-NULL value for it).
    Unsupported { type_code: u8 },
}

/// The compiled form of one TABLE_MAP.
#[derive(Debug)]
pub(crate) struct TableInfo {
    /// Raw TABLE_MAP body, to reuse the compiled plan when the server re-sends it unchanged.
    pub raw: Vec<u8>,
    /// Definitions shared with every row change.
    pub def: Arc<TableDef>,
    /// One plan per column.
    pub plans: Vec<ColPlan>,
    /// Number of JSON columns (partial JSON updates carry one bit per JSON column).
    pub json_columns: usize,
}

/// Short SQL name of a binlog column type.
pub(crate) fn type_name(t: ColumnType) -> &'static str {
    use ColumnType::*;
    match t {
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "decimal",
        MYSQL_TYPE_TINY => "tinyint",
        MYSQL_TYPE_SHORT => "smallint",
        MYSQL_TYPE_LONG => "int",
        MYSQL_TYPE_FLOAT => "float",
        MYSQL_TYPE_DOUBLE => "double",
        MYSQL_TYPE_NULL => "null",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        MYSQL_TYPE_LONGLONG => "bigint",
        MYSQL_TYPE_INT24 => "mediumint",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "date",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => "time",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => "datetime",
        MYSQL_TYPE_YEAR => "year",
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => "varchar",
        MYSQL_TYPE_BIT => "bit",
        MYSQL_TYPE_JSON => "json",
        MYSQL_TYPE_ENUM => "enum",
        MYSQL_TYPE_SET => "set",
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => {
            "blob"
        }
        MYSQL_TYPE_STRING => "char",
        MYSQL_TYPE_GEOMETRY => "geometry",
        MYSQL_TYPE_VECTOR => "vector",
        MYSQL_TYPE_TYPED_ARRAY => "typed_array",
        MYSQL_TYPE_UNKNOWN => "unknown",
    }
}

/// Reasons a TABLE_MAP cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompileError {
    /// A column type byte is not a known type, or its metadata is missing/short.
    BadColumn { index: usize, reason: String },
    /// Optional metadata is malformed.
    BadOptionalMetadata { reason: String },
    /// The information_schema definition has another number of columns.
    ColumnCountMismatch { binlog: usize, schema: usize },
}

/// Resolved column type + raw metadata bytes of one TABLE_MAP column.
fn column_type_and_meta<'a>(
    tme: &'a TableMapEvent<'a>,
    i: usize,
) -> Result<(ColumnType, &'a [u8]), CompileError> {
    let bad = |reason: String| CompileError::BadColumn { index: i, reason };
    let ty = match tme.get_column_type(i) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(bad("no type".into())),
        Err(e) => return Err(bad(e.to_string())),
    };
    let meta = tme
        .get_column_metadata(i)
        .ok_or_else(|| bad("metadata missing or truncated".into()))?;
    Ok((ty, meta))
}

fn meta_byte(meta: &[u8], i: usize, index: usize) -> Result<u8, CompileError> {
    meta.get(i).copied().ok_or(CompileError::BadColumn {
        index,
        reason: "metadata too short".into(),
    })
}

/// Compiles the plan of one column.
fn plan_for(
    ty: ColumnType,
    meta: &[u8],
    unsigned: bool,
    binary_charset: bool,
    index: usize,
) -> Result<ColPlan, CompileError> {
    use ColumnType::*;
    let m = |i| meta_byte(meta, i, index);
    let bad = |reason: &str| CompileError::BadColumn {
        index,
        reason: reason.into(),
    };
    Ok(match ty {
        MYSQL_TYPE_TINY => ColPlan::Tiny { unsigned },
        MYSQL_TYPE_SHORT => ColPlan::Short { unsigned },
        MYSQL_TYPE_INT24 => ColPlan::Int24 { unsigned },
        MYSQL_TYPE_LONG => ColPlan::Long { unsigned },
        MYSQL_TYPE_LONGLONG => ColPlan::LongLong { unsigned },
        MYSQL_TYPE_FLOAT => ColPlan::Float,
        MYSQL_TYPE_DOUBLE => ColPlan::Double,
        MYSQL_TYPE_NEWDECIMAL => {
            let precision = m(0)?;
            let scale = m(1)?;
            if precision == 0 || precision > 81 || scale > precision || scale > 38 {
                return Err(bad("invalid DECIMAL precision/scale"));
            }
            let size =
                mysql_common::binlog::decimal::decimal_bin_size(precision as usize, scale as usize);
            ColPlan::Decimal {
                precision,
                scale,
                size: size as u8,
            }
        }
        MYSQL_TYPE_YEAR => ColPlan::Year,
        MYSQL_TYPE_NEWDATE | MYSQL_TYPE_DATE => ColPlan::Date,
        MYSQL_TYPE_TIME => ColPlan::Time,
        MYSQL_TYPE_TIME2 => ColPlan::Time2 { fsp: m(0)?.min(6) },
        MYSQL_TYPE_DATETIME => ColPlan::DateTime,
        MYSQL_TYPE_DATETIME2 => ColPlan::DateTime2 { fsp: m(0)?.min(6) },
        MYSQL_TYPE_TIMESTAMP => ColPlan::Timestamp,
        MYSQL_TYPE_TIMESTAMP2 => ColPlan::Timestamp2 { fsp: m(0)?.min(6) },
        MYSQL_TYPE_BIT => {
            let width = m(1)? as usize * 8 + m(0)? as usize;
            if width > 64 {
                return Err(bad("BIT wider than 64"));
            }
            ColPlan::Bit {
                width: width as u8,
                bytes: width.div_ceil(8) as u8,
            }
        }
        MYSQL_TYPE_ENUM => {
            let bytes = m(1)?;
            if !matches!(bytes, 1 | 2) {
                return Err(bad("ENUM pack length not 1 or 2"));
            }
            ColPlan::Enum { bytes }
        }
        MYSQL_TYPE_SET => {
            let bytes = m(1)?;
            if !(1..=8).contains(&bytes) {
                return Err(bad("SET pack length not 1..8"));
            }
            ColPlan::Set { bytes }
        }
        MYSQL_TYPE_STRING => {
            let b0 = m(0)? as usize;
            let b1 = m(1)? as usize;
            let max_len = if (b0 & 0x30) != 0x30 {
                b1 | (((b0 & 0x30) ^ 0x30) << 4)
            } else {
                b1
            };
            ColPlan::Char {
                len_bytes: if max_len < 256 { 1 } else { 2 },
                pad_to: if binary_charset { max_len as u16 } else { 0 },
            }
        }
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
            let max_len = u16::from_le_bytes([m(0)?, m(1)?]);
            ColPlan::VarChar {
                len_bytes: if max_len < 256 { 1 } else { 2 },
            }
        }
        MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR => {
            let len_bytes = m(0)?;
            if !(1..=4).contains(&len_bytes) {
                return Err(bad("BLOB length size not 1..4"));
            }
            ColPlan::Blob { len_bytes }
        }
        MYSQL_TYPE_JSON => {
            let len_bytes = m(0)?;
            if !(1..=4).contains(&len_bytes) {
                return Err(bad("JSON length size not 1..4"));
            }
            ColPlan::Json { len_bytes }
        }
        other => ColPlan::Unsupported {
            type_code: other as u8,
        },
    })
}

/// Numeric columns as the SIGNEDNESS optional metadata counts them.
fn is_signedness_numeric(t: ColumnType) -> bool {
    t.is_numeric_type()
}

/// Columns that the charset optional metadata (DEFAULT_CHARSET / COLUMN_CHARSET) counts:
/// character columns, and VECTOR (logged with the binary charset by MySQL 9).
fn is_charset_column(t: ColumnType) -> bool {
    t.is_character_type() || t == ColumnType::MYSQL_TYPE_VECTOR
}

/// Charset name of a collation id (MySQL's and MariaDB's shared ids below 256).
pub(crate) fn charset_of(collation: u16) -> Option<String> {
    if collation == 63 {
        return Some("binary".into());
    }
    let id = CollationId::from(collation);
    if id == CollationId::UNKNOWN_COLLATION_ID {
        return None;
    }
    Some(Collation::from(id).charset().to_owned())
}

/// What the optional metadata of a TABLE_MAP provides.
#[derive(Debug, Default)]
struct OptMeta {
    names: Option<Vec<String>>,
    /// Per numeric column (in order): unsigned.
    signedness: Option<Vec<bool>>,
    /// Per character column (in order): collation id.
    charsets: Option<Vec<u16>>,
    /// Per ENUM/SET column (in order): collation id.
    enum_set_charsets: Option<Vec<u16>>,
    enum_labels: Option<Vec<Vec<Vec<u8>>>>,
    set_labels: Option<Vec<Vec<Vec<u8>>>>,
    primary_key: Option<Vec<u64>>,
}

fn read_opt_meta(tme: &TableMapEvent<'_>, ncols: usize) -> Result<OptMeta, CompileError> {
    let bad = |e: std::io::Error| CompileError::BadOptionalMetadata {
        reason: e.to_string(),
    };
    let mut out = OptMeta::default();
    let mut have_charset = false;
    let mut have_es_charset = false;
    let mut have_pk = false;
    for field in tme.iter_optional_meta() {
        match field.map_err(bad)? {
            OptionalMetadataField::Signedness(_) => {}
            OptionalMetadataField::DefaultCharset(_) | OptionalMetadataField::ColumnCharset(_) => {
                have_charset = true
            }
            OptionalMetadataField::EnumAndSetDefaultCharset(_)
            | OptionalMetadataField::EnumAndSetColumnCharset(_) => have_es_charset = true,
            OptionalMetadataField::ColumnName(n) => {
                let mut names = Vec::with_capacity(ncols);
                for name in n.iter_names() {
                    names.push(name.map_err(bad)?.name().into_owned());
                }
                out.names = Some(names);
            }
            OptionalMetadataField::EnumStrValue(v) => {
                let mut all = Vec::new();
                for e in v.iter_values() {
                    let e = e.map_err(bad)?;
                    all.push(e.values().iter().map(|x| x.value_raw().to_vec()).collect());
                }
                out.enum_labels = Some(all);
            }
            OptionalMetadataField::SetStrValue(v) => {
                let mut all = Vec::new();
                for e in v.iter_values() {
                    let e = e.map_err(bad)?;
                    all.push(e.values().iter().map(|x| x.value_raw().to_vec()).collect());
                }
                out.set_labels = Some(all);
            }
            OptionalMetadataField::SimplePrimaryKey(_)
            | OptionalMetadataField::PrimaryKeyWithPrefix(_) => have_pk = true,
            OptionalMetadataField::GeometryType(_)
            | OptionalMetadataField::ColumnVisibility(_)
            | OptionalMetadataField::Dimensionality(_) => {}
        }
    }
    let ex = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(bad)?;
    let mut numeric = 0usize;
    let mut character = 0usize;
    let mut enum_set = 0usize;
    for i in 0..ncols {
        if let Ok(Some(t)) = tme.get_column_type(i) {
            if is_signedness_numeric(t) {
                numeric += 1;
            } else if is_charset_column(t) {
                character += 1;
            } else if t.is_enum_or_set_type() {
                enum_set += 1;
            }
        }
    }
    let sign: Vec<bool> = ex.iter_signedness().take(numeric).collect();
    if numeric > 0 && sign.len() == numeric {
        out.signedness = Some(sign);
    }
    if have_charset {
        let cs: Result<Vec<u16>, _> = ex.iter_charset().take(character).collect();
        out.charsets = Some(cs.map_err(bad)?);
    }
    if have_es_charset {
        let cs: Result<Vec<u16>, _> = ex.iter_enum_and_set_charset().take(enum_set).collect();
        out.enum_set_charsets = Some(cs.map_err(bad)?);
    }
    if have_pk {
        let pk: Result<Vec<u64>, _> = ex.iter_primary_key().collect();
        out.primary_key = Some(pk.map_err(bad)?);
    }
    Ok(out)
}

/// True when the TABLE_MAP lacks something only information_schema can supply: column
/// names, signedness of numeric columns, charsets of character columns, or ENUM/SET labels.
pub(crate) fn needs_schema(tme: &TableMapEvent<'_>) -> bool {
    let ncols = tme.columns_count() as usize;
    let Ok(meta) = read_opt_meta(tme, ncols) else {
        return true;
    };
    let mut has_numeric = false;
    let mut has_char = false;
    let mut has_enum = false;
    let mut has_set = false;
    for i in 0..ncols {
        match tme.get_column_type(i) {
            Ok(Some(t)) => {
                has_numeric |= is_signedness_numeric(t);
                has_char |= is_charset_column(t);
                has_enum |= t == ColumnType::MYSQL_TYPE_ENUM;
                has_set |= t == ColumnType::MYSQL_TYPE_SET;
            }
            _ => return true,
        }
    }
    meta.names.is_none()
        || (has_numeric && meta.signedness.is_none())
        || (has_char && meta.charsets.is_none())
        || (has_enum && meta.enum_labels.is_none())
        || (has_set && meta.set_labels.is_none())
}

/// Compiles a TABLE_MAP into a [`TableInfo`], completing it with `cached` (information_schema)
/// where the TABLE_MAP's optional metadata is silent.
pub(crate) fn compile(
    tme: &TableMapEvent<'_>,
    raw: &[u8],
    cached: Option<&CachedTable>,
) -> Result<TableInfo, CompileError> {
    let ncols = tme.columns_count() as usize;
    if let Some(c) = cached {
        if c.columns.len() != ncols {
            return Err(CompileError::ColumnCountMismatch {
                binlog: ncols,
                schema: c.columns.len(),
            });
        }
    }
    let meta = read_opt_meta(tme, ncols)?;
    let table = TableRef::new(&tme.database_name(), &tme.table_name());
    let nullable = tme.null_bitmask();
    let mut columns = Vec::with_capacity(ncols);
    let mut plans = Vec::with_capacity(ncols);
    let (mut numeric, mut character, mut enum_set, mut enums, mut sets) = (0, 0, 0, 0, 0);
    let mut json_columns = 0;
    let mut used_cache = false;
    for i in 0..ncols {
        let (ty, raw_meta) = column_type_and_meta(tme, i)?;
        let from_cache = cached.and_then(|c| c.columns.get(i));
        let mut def = ColumnDef {
            name: meta.names.as_ref().and_then(|n| n.get(i).cloned()),
            binlog_type: ty as u8,
            type_name: type_name(ty),
            nullable: nullable.get(i).map(|b| *b).unwrap_or(true),
            ..ColumnDef::default()
        };
        if def.name.is_none() {
            if let Some(c) = from_cache {
                def.name = Some(c.name.clone());
                used_cache = true;
            }
        }
        if is_signedness_numeric(ty) {
            def.unsigned = meta
                .signedness
                .as_ref()
                .and_then(|s| s.get(numeric).copied());
            numeric += 1;
        }
        if def.unsigned.is_none() && ty.is_numeric_type() {
            if let Some(c) = from_cache {
                def.unsigned = Some(c.unsigned);
                used_cache = true;
            }
        }
        if is_charset_column(ty) {
            def.collation = meta
                .charsets
                .as_ref()
                .and_then(|s| s.get(character).copied());
            character += 1;
        } else if ty.is_enum_or_set_type() {
            def.collation = meta
                .enum_set_charsets
                .as_ref()
                .and_then(|s| s.get(enum_set).copied());
            enum_set += 1;
        }
        def.charset = def.collation.and_then(charset_of);
        if def.charset.is_none() {
            if let Some(c) = from_cache {
                if c.charset.is_some() {
                    def.charset = c.charset.clone();
                    def.collation = c.collation;
                    used_cache = true;
                }
            }
        }
        if ty == ColumnType::MYSQL_TYPE_ENUM {
            def.enum_labels = meta
                .enum_labels
                .as_ref()
                .and_then(|l| l.get(enums).cloned());
            enums += 1;
            if def.enum_labels.is_none() {
                if let Some(c) = from_cache {
                    def.enum_labels = c.labels.clone();
                    used_cache = true;
                }
            }
        }
        if ty == ColumnType::MYSQL_TYPE_SET {
            def.set_labels = meta.set_labels.as_ref().and_then(|l| l.get(sets).cloned());
            sets += 1;
            if def.set_labels.is_none() {
                if let Some(c) = from_cache {
                    def.set_labels = c.labels.clone();
                    used_cache = true;
                }
            }
        }
        def.primary_key = match &meta.primary_key {
            Some(pk) => pk.contains(&(i as u64)),
            None => from_cache.is_some_and(|c| c.primary_key),
        };
        if ty == ColumnType::MYSQL_TYPE_JSON {
            json_columns += 1;
        }
        let binary = def.charset.as_deref() == Some("binary");
        let plan = plan_for(ty, raw_meta, def.unsigned.unwrap_or(false), binary, i)?;
        plans.push(plan);
        columns.push(def);
    }
    Ok(TableInfo {
        raw: raw.to_vec(),
        def: Arc::new(TableDef {
            table,
            columns,
            source: if used_cache {
                SchemaSource::InformationSchema
            } else {
                SchemaSource::TableMap
            },
        }),
        plans,
        json_columns,
    })
}
