//! Table schemas as the server reports them in `information_schema`.
//!
//! [`TableSchema::from_information_schema`] builds a [`TableSchema`] from rows of
//! `information_schema.COLUMNS` ([`ColumnInfoRow`]) and `information_schema.STATISTICS`
//! ([`StatisticsRow`]). The engine does the querying; this module only interprets the rows, so
//! both MySQL 9.x and MariaDB 10.11 spellings are handled here:
//!
//! * `COLUMN_DEFAULT`: MySQL reports SQL `NULL` both for "no default" and for `DEFAULT NULL`,
//!   and string defaults unquoted; MariaDB reports `DEFAULT NULL` as the text `NULL`, string
//!   defaults quoted (`'abc'`) and expressions as text (`current_timestamp()`). The raw text is
//!   kept in [`Column::default`]; [`Column::default_value`] is the normalized reading.
//! * `ENUM`/`SET` labels are parsed from `COLUMN_TYPE` (`enum('a','it''s','x,y')`), with the
//!   server's escaping (`''`, `\\`, `\0`, `\n`, `\r`, `\Z`) undone.
//! * Generated columns (`VIRTUAL GENERATED`, `STORED GENERATED`, MariaDB `PERSISTENT`) are
//!   flagged: they cannot be written, only read.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Which server family produced the `information_schema` rows. The two differ in how they
/// report defaults and in their default collations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Flavor {
    /// MySQL (8.0.13+, 9.x).
    MySql,
    /// MariaDB (10.6+).
    MariaDb,
}

impl Flavor {
    /// The collation a `_utf8mb4'...'` literal gets on a default-configured server:
    /// `utf8mb4_0900_ai_ci` on MySQL 8+/9, `utf8mb4_general_ci` on MariaDB 10.11.
    pub fn default_utf8mb4_collation(self) -> &'static str {
        match self {
            Flavor::MySql => "utf8mb4_0900_ai_ci",
            Flavor::MariaDb => "utf8mb4_general_ci",
        }
    }
}

/// One row of `information_schema.COLUMNS` (the columns rowshift reads), as plain values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ColumnInfoRow {
    /// `COLUMN_NAME`.
    pub column_name: String,
    /// `ORDINAL_POSITION` (1-based).
    pub ordinal_position: u32,
    /// `DATA_TYPE`, e.g. `varchar`, `decimal`, `enum`.
    pub data_type: String,
    /// `COLUMN_TYPE`, the full text, e.g. `enum('a','b')` or `decimal(10,2) unsigned`.
    pub column_type: String,
    /// `IS_NULLABLE`: `YES` or `NO`.
    pub is_nullable: String,
    /// `COLUMN_DEFAULT`, raw.
    pub column_default: Option<String>,
    /// `EXTRA`, e.g. `auto_increment`, `VIRTUAL GENERATED`, `DEFAULT_GENERATED`.
    pub extra: String,
    /// `CHARACTER_SET_NAME`.
    pub character_set_name: Option<String>,
    /// `COLLATION_NAME`.
    pub collation_name: Option<String>,
    /// `CHARACTER_MAXIMUM_LENGTH` (characters for text, bytes for binary types).
    pub character_maximum_length: Option<u64>,
    /// `NUMERIC_PRECISION`.
    pub numeric_precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub numeric_scale: Option<u64>,
    /// `DATETIME_PRECISION`.
    pub datetime_precision: Option<u64>,
    /// `COLUMN_KEY`: `PRI`, `UNI`, `MUL` or empty.
    pub column_key: String,
}

/// One row of `information_schema.STATISTICS`: one column (key part) of one index.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatisticsRow {
    /// `INDEX_NAME` (`PRIMARY` for the primary key).
    pub index_name: String,
    /// `SEQ_IN_INDEX` (1-based).
    pub seq_in_index: u32,
    /// `COLUMN_NAME`; `None` for a functional key part (MySQL 8.0.13+).
    pub column_name: Option<String>,
    /// `NON_UNIQUE` (0 for unique indexes).
    pub non_unique: bool,
    /// `SUB_PART`: prefix length in characters (bytes for binary columns), if a prefix index.
    pub sub_part: Option<u32>,
}

/// Integer column widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntSize {
    /// TINYINT, 1 byte.
    Tiny,
    /// SMALLINT, 2 bytes.
    Small,
    /// MEDIUMINT, 3 bytes.
    Medium,
    /// INT, 4 bytes.
    Int,
    /// BIGINT, 8 bytes.
    Big,
}

impl IntSize {
    /// Width in bits.
    pub fn bits(self) -> u32 {
        match self {
            IntSize::Tiny => 8,
            IntSize::Small => 16,
            IntSize::Medium => 24,
            IntSize::Int => 32,
            IntSize::Big => 64,
        }
    }

    /// The inclusive range of the column, as `i128` so signed and unsigned fit.
    pub fn range(self, unsigned: bool) -> (i128, i128) {
        let bits = self.bits();
        if unsigned {
            (0, (1i128 << bits) - 1)
        } else {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        }
    }

    /// The SQL type name.
    pub fn sql_name(self) -> &'static str {
        match self {
            IntSize::Tiny => "TINYINT",
            IntSize::Small => "SMALLINT",
            IntSize::Medium => "MEDIUMINT",
            IntSize::Int => "INT",
            IntSize::Big => "BIGINT",
        }
    }
}

/// TEXT/BLOB sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LobSize {
    /// TINYTEXT/TINYBLOB: 255 bytes.
    Tiny,
    /// TEXT/BLOB: 65,535 bytes.
    Regular,
    /// MEDIUMTEXT/MEDIUMBLOB: 16 MiB - 1.
    Medium,
    /// LONGTEXT/LONGBLOB: 4 GiB - 1.
    Long,
}

impl LobSize {
    /// Maximum length in bytes.
    pub fn max_bytes(self) -> u64 {
        match self {
            LobSize::Tiny => 255,
            LobSize::Regular => 65_535,
            LobSize::Medium => 16_777_215,
            LobSize::Long => 4_294_967_295,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            LobSize::Tiny => "TINY",
            LobSize::Regular => "",
            LobSize::Medium => "MEDIUM",
            LobSize::Long => "LONG",
        }
    }
}

/// Spatial column kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GeometryKind {
    /// GEOMETRY (any kind).
    Geometry,
    /// POINT.
    Point,
    /// LINESTRING.
    LineString,
    /// POLYGON.
    Polygon,
    /// MULTIPOINT.
    MultiPoint,
    /// MULTILINESTRING.
    MultiLineString,
    /// MULTIPOLYGON.
    MultiPolygon,
    /// GEOMETRYCOLLECTION (MySQL also says GEOMCOLLECTION).
    GeometryCollection,
}

impl GeometryKind {
    /// The WKB geometry type code this kind accepts (`None` for GEOMETRY: any).
    pub fn wkb_type(self) -> Option<u32> {
        match self {
            GeometryKind::Geometry => None,
            GeometryKind::Point => Some(1),
            GeometryKind::LineString => Some(2),
            GeometryKind::Polygon => Some(3),
            GeometryKind::MultiPoint => Some(4),
            GeometryKind::MultiLineString => Some(5),
            GeometryKind::MultiPolygon => Some(6),
            GeometryKind::GeometryCollection => Some(7),
        }
    }
}

/// The type of a column, covering every MySQL 9 and MariaDB 10.11 column type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// TINYINT .. BIGINT, optionally UNSIGNED.
    Integer {
        /// Width.
        size: IntSize,
        /// UNSIGNED (or ZEROFILL, which implies it).
        unsigned: bool,
    },
    /// DECIMAL(p,s).
    Decimal {
        /// Total digits, 1..=65.
        precision: u8,
        /// Digits after the point, 0..=30.
        scale: u8,
        /// UNSIGNED (deprecated, but still accepted).
        unsigned: bool,
    },
    /// FLOAT (4 bytes).
    Float {
        /// UNSIGNED (deprecated).
        unsigned: bool,
        /// `FLOAT(M,D)` digits, if declared (deprecated).
        digits: Option<(u8, u8)>,
    },
    /// DOUBLE (8 bytes).
    Double {
        /// UNSIGNED (deprecated).
        unsigned: bool,
        /// `DOUBLE(M,D)` digits, if declared (deprecated).
        digits: Option<(u8, u8)>,
    },
    /// BIT(n), n in 1..=64.
    Bit {
        /// Width in bits.
        width: u8,
    },
    /// ENUM with its labels in definition order (index 1 is `labels[0]`).
    Enum {
        /// Labels, unescaped, in UTF-8.
        labels: Vec<String>,
    },
    /// SET with its labels (bit 0 is `labels[0]`).
    Set {
        /// Labels, unescaped, in UTF-8.
        labels: Vec<String>,
    },
    /// YEAR.
    Year,
    /// DATE.
    Date,
    /// TIME(fsp).
    Time {
        /// Fractional seconds digits, 0..=6.
        fsp: u8,
    },
    /// DATETIME(fsp).
    DateTime {
        /// Fractional seconds digits, 0..=6.
        fsp: u8,
    },
    /// TIMESTAMP(fsp).
    Timestamp {
        /// Fractional seconds digits, 0..=6.
        fsp: u8,
    },
    /// CHAR(len).
    Char {
        /// Length in characters.
        len: u32,
        /// Character set name, e.g. `utf8mb4`.
        charset: String,
        /// Collation name, e.g. `utf8mb4_0900_ai_ci`.
        collation: String,
    },
    /// VARCHAR(len).
    VarChar {
        /// Length in characters.
        len: u32,
        /// Character set name.
        charset: String,
        /// Collation name.
        collation: String,
    },
    /// BINARY(len): fixed length, padded with 0x00.
    Binary {
        /// Length in bytes.
        len: u32,
    },
    /// VARBINARY(len).
    VarBinary {
        /// Length in bytes.
        len: u32,
    },
    /// TINYTEXT, TEXT, MEDIUMTEXT, LONGTEXT (MariaDB's JSON is a LONGTEXT).
    Text {
        /// Size class.
        size: LobSize,
        /// Character set name.
        charset: String,
        /// Collation name.
        collation: String,
    },
    /// TINYBLOB, BLOB, MEDIUMBLOB, LONGBLOB.
    Blob {
        /// Size class.
        size: LobSize,
    },
    /// JSON (MySQL's binary JSON).
    Json,
    /// Spatial types.
    Geometry {
        /// Which spatial type.
        kind: GeometryKind,
    },
    /// VECTOR(n) (MySQL 9).
    Vector {
        /// Number of 4-byte float dimensions.
        dimensions: u32,
    },
    /// MariaDB UUID.
    Uuid,
    /// MariaDB INET4.
    Inet4,
    /// MariaDB INET6.
    Inet6,
}

impl ColumnType {
    /// True for the types that hold text in a character set (CHAR, VARCHAR, TEXT).
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            ColumnType::Char { .. } | ColumnType::VarChar { .. } | ColumnType::Text { .. }
        )
    }

    /// True for binary string types (BINARY, VARBINARY, BLOB).
    pub fn is_binary_string(&self) -> bool {
        matches!(
            self,
            ColumnType::Binary { .. } | ColumnType::VarBinary { .. } | ColumnType::Blob { .. }
        )
    }

    /// The character set of a text type.
    pub fn charset(&self) -> Option<&str> {
        match self {
            ColumnType::Char { charset, .. }
            | ColumnType::VarChar { charset, .. }
            | ColumnType::Text { charset, .. } => Some(charset),
            _ => None,
        }
    }

    /// The collation of a text type.
    pub fn collation(&self) -> Option<&str> {
        match self {
            ColumnType::Char { collation, .. }
            | ColumnType::VarChar { collation, .. }
            | ColumnType::Text { collation, .. } => Some(collation),
            _ => None,
        }
    }

    /// A short SQL spelling of the type, for messages (not a full column definition).
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::Integer { size, unsigned } => {
                format!(
                    "{}{}",
                    size.sql_name(),
                    if *unsigned { " UNSIGNED" } else { "" }
                )
            }
            ColumnType::Decimal {
                precision,
                scale,
                unsigned,
            } => format!(
                "DECIMAL({precision},{scale}){}",
                if *unsigned { " UNSIGNED" } else { "" }
            ),
            ColumnType::Float { .. } => "FLOAT".into(),
            ColumnType::Double { .. } => "DOUBLE".into(),
            ColumnType::Bit { width } => format!("BIT({width})"),
            ColumnType::Enum { labels } => format!("ENUM({} labels)", labels.len()),
            ColumnType::Set { labels } => format!("SET({} labels)", labels.len()),
            ColumnType::Year => "YEAR".into(),
            ColumnType::Date => "DATE".into(),
            ColumnType::Time { fsp } => format!("TIME({fsp})"),
            ColumnType::DateTime { fsp } => format!("DATETIME({fsp})"),
            ColumnType::Timestamp { fsp } => format!("TIMESTAMP({fsp})"),
            ColumnType::Char { len, charset, .. } => format!("CHAR({len}) {charset}"),
            ColumnType::VarChar { len, charset, .. } => format!("VARCHAR({len}) {charset}"),
            ColumnType::Binary { len } => format!("BINARY({len})"),
            ColumnType::VarBinary { len } => format!("VARBINARY({len})"),
            ColumnType::Text { size, charset, .. } => format!("{}TEXT {charset}", size.prefix()),
            ColumnType::Blob { size } => format!("{}BLOB", size.prefix()),
            ColumnType::Json => "JSON".into(),
            ColumnType::Geometry { kind } => format!("{kind:?}").to_uppercase(),
            ColumnType::Vector { dimensions } => format!("VECTOR({dimensions})"),
            ColumnType::Uuid => "UUID".into(),
            ColumnType::Inet4 => "INET4".into(),
            ColumnType::Inet6 => "INET6".into(),
        }
    }
}

/// A column default, normalized across MySQL and MariaDB spellings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnDefault {
    /// No default: an INSERT that leaves the column out fails in strict mode (unless the
    /// column is AUTO_INCREMENT or generated).
    None,
    /// `DEFAULT NULL`.
    Null,
    /// A literal default, unquoted and unescaped (`abc`, `0`, `1.50`, `b'101'`).
    Literal(String),
    /// An expression default (`CURRENT_TIMESTAMP`, `(uuid())`), as the server prints it.
    Expression(String),
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name, as defined.
    pub name: String,
    /// `ORDINAL_POSITION` (1-based). `columns[i].ordinal == i + 1`.
    pub ordinal: u32,
    /// The type.
    pub data_type: ColumnType,
    /// NULL allowed.
    pub nullable: bool,
    /// `COLUMN_DEFAULT` raw, as `information_schema` gave it.
    pub default: Option<String>,
    /// The default, normalized for the server flavor.
    pub default_value: ColumnDefault,
    /// VIRTUAL or STORED generated column: cannot be written.
    pub generated: bool,
    /// AUTO_INCREMENT.
    pub auto_increment: bool,
    /// INVISIBLE column (MySQL 8.0.23+, MariaDB 10.3+): not in `SELECT *`, still writable by name.
    pub invisible: bool,
    /// Character set (text, ENUM and SET columns).
    pub charset: Option<String>,
    /// Collation (text, ENUM and SET columns).
    pub collation: Option<String>,
}

impl Column {
    /// True when the server can fill the column by itself on an INSERT that leaves it out:
    /// it has a default (including `DEFAULT NULL`), is AUTO_INCREMENT, or is generated.
    pub fn has_implicit_value(&self) -> bool {
        self.generated || self.auto_increment || self.default_value != ColumnDefault::None
    }

    /// The column name quoted with backticks.
    pub fn quoted_name(&self) -> String {
        quote_ident(&self.name)
    }
}

/// One key part of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPart {
    /// The column index in [`TableSchema::columns`]; `None` for a functional key part.
    pub column: Option<usize>,
    /// Prefix length (characters for text, bytes for binary), if a prefix key part.
    pub sub_part: Option<u32>,
}

/// A secondary index (or unique key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Index name.
    pub name: String,
    /// UNIQUE.
    pub unique: bool,
    /// Key parts in key order.
    pub parts: Vec<IndexPart>,
}

impl IndexDef {
    /// The column indexes of the key parts, or `None` when a part is functional.
    pub fn column_indexes(&self) -> Option<Vec<usize>> {
        self.parts.iter().map(|p| p.column).collect()
    }
}

/// A table: its columns and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Database (schema) name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// The server family the schema was read from.
    pub flavor: Flavor,
    /// Columns in ordinal order.
    pub columns: Vec<Column>,
    /// Primary key column indexes, in key order (empty when the table has no primary key).
    pub primary_key: Vec<usize>,
    /// Prefix lengths of the primary key parts, aligned with `primary_key`.
    pub primary_key_prefixes: Vec<Option<u32>>,
    /// UNIQUE secondary keys.
    pub unique_keys: Vec<IndexDef>,
    /// Non-unique secondary indexes.
    pub indexes: Vec<IndexDef>,
}

/// Errors reading a schema from `information_schema` rows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// No COLUMNS rows were given.
    #[error("table {table} has no columns in information_schema (does it exist?)")]
    NoColumns {
        /// Qualified table name.
        table: String,
    },
    /// Ordinal positions are not 1..=n without gaps or duplicates.
    #[error("table {table}: column ordinal positions are not 1..={count} (found {found})")]
    BadOrdinals {
        /// Qualified table name.
        table: String,
        /// Number of columns.
        count: usize,
        /// The ordinal that did not fit.
        found: u32,
    },
    /// A DATA_TYPE this crate does not know.
    #[error("column {column}: unknown data type {data_type:?} (column type {column_type:?})")]
    UnknownType {
        /// Column name.
        column: String,
        /// `DATA_TYPE`.
        data_type: String,
        /// `COLUMN_TYPE`.
        column_type: String,
    },
    /// COLUMN_TYPE could not be parsed.
    #[error("column {column}: cannot parse column type {column_type:?}: {detail}")]
    BadColumnType {
        /// Column name.
        column: String,
        /// `COLUMN_TYPE`.
        column_type: String,
        /// What was wrong.
        detail: String,
    },
    /// A text column without a character set or collation.
    #[error("column {column}: text type without character set / collation")]
    MissingCharset {
        /// Column name.
        column: String,
    },
    /// A STATISTICS row names a column the table does not have.
    #[error("index {index} names unknown column {column}")]
    UnknownIndexColumn {
        /// Index name.
        index: String,
        /// Column name.
        column: String,
    },
}

/// Quotes an identifier with backticks, doubling any backtick inside: ``a`b`` → ```` `a``b` ````.
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('`');
    for c in ident.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

impl TableSchema {
    /// Builds a schema from `information_schema.COLUMNS` rows (any order) and
    /// `information_schema.STATISTICS` rows (any order) of one table.
    pub fn from_information_schema(
        schema: &str,
        name: &str,
        flavor: Flavor,
        columns: &[ColumnInfoRow],
        statistics: &[StatisticsRow],
    ) -> Result<TableSchema, SchemaError> {
        let table = format!("{}.{}", quote_ident(schema), quote_ident(name));
        if columns.is_empty() {
            return Err(SchemaError::NoColumns { table });
        }
        let mut rows: Vec<&ColumnInfoRow> = columns.iter().collect();
        rows.sort_by_key(|r| r.ordinal_position);
        let mut cols = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.ordinal_position as usize != i + 1 {
                return Err(SchemaError::BadOrdinals {
                    table,
                    count: rows.len(),
                    found: row.ordinal_position,
                });
            }
            cols.push(parse_column(row, flavor)?);
        }
        let mut out = TableSchema {
            schema: schema.to_string(),
            name: name.to_string(),
            flavor,
            columns: cols,
            primary_key: Vec::new(),
            primary_key_prefixes: Vec::new(),
            unique_keys: Vec::new(),
            indexes: Vec::new(),
        };
        out.add_indexes(statistics)?;
        Ok(out)
    }

    fn add_indexes(&mut self, statistics: &[StatisticsRow]) -> Result<(), SchemaError> {
        // Group by index name, keeping first-appearance order of the names.
        let mut order: Vec<&str> = Vec::new();
        for row in statistics {
            if !order.contains(&row.index_name.as_str()) {
                order.push(&row.index_name);
            }
        }
        for index_name in order {
            let mut parts: Vec<&StatisticsRow> = statistics
                .iter()
                .filter(|r| r.index_name == index_name)
                .collect();
            parts.sort_by_key(|r| r.seq_in_index);
            let mut def = IndexDef {
                name: index_name.to_string(),
                unique: parts.iter().all(|p| !p.non_unique),
                parts: Vec::with_capacity(parts.len()),
            };
            for p in parts {
                let column = match &p.column_name {
                    None => None,
                    Some(c) => Some(self.column_index(c).ok_or_else(|| {
                        SchemaError::UnknownIndexColumn {
                            index: index_name.to_string(),
                            column: c.clone(),
                        }
                    })?),
                };
                def.parts.push(IndexPart {
                    column,
                    sub_part: p.sub_part,
                });
            }
            if index_name == "PRIMARY" {
                for part in &def.parts {
                    if let Some(c) = part.column {
                        self.primary_key.push(c);
                        self.primary_key_prefixes.push(part.sub_part);
                    }
                }
            } else if def.unique {
                self.unique_keys.push(def);
            } else {
                self.indexes.push(def);
            }
        }
        Ok(())
    }

    /// `` `schema`.`table` ``.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The index of the column with this name (column names are case-insensitive in MySQL).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|c| c.name.to_lowercase() == name.to_lowercase())
            })
    }

    /// The column with this name (case-insensitive).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.column_index(name).map(|i| &self.columns[i])
    }

    /// Indexes of the columns that can be written (not generated), in ordinal order.
    pub fn writable_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| !self.columns[i].generated)
            .collect()
    }
}

fn parse_column(row: &ColumnInfoRow, flavor: Flavor) -> Result<Column, SchemaError> {
    let data_type = parse_type(row)?;
    let extra = row.extra.to_ascii_lowercase();
    let generated = extra.contains("virtual generated")
        || extra.contains("stored generated")
        || extra.contains("persistent generated");
    let auto_increment = extra.contains("auto_increment");
    let invisible = extra.contains("invisible");
    let nullable = row.is_nullable.eq_ignore_ascii_case("YES");
    let default_value = if generated {
        ColumnDefault::None
    } else {
        normalize_default(row.column_default.as_deref(), nullable, &extra, flavor)
    };
    let (charset, collation) = match &data_type {
        ColumnType::Char {
            charset, collation, ..
        }
        | ColumnType::VarChar {
            charset, collation, ..
        }
        | ColumnType::Text {
            charset, collation, ..
        } => (Some(charset.clone()), Some(collation.clone())),
        _ => (row.character_set_name.clone(), row.collation_name.clone()),
    };
    Ok(Column {
        name: row.column_name.clone(),
        ordinal: row.ordinal_position,
        data_type,
        nullable,
        default: row.column_default.clone(),
        default_value,
        generated,
        auto_increment,
        invisible,
        charset,
        collation,
    })
}

/// Normalizes `COLUMN_DEFAULT` for the flavor (see the module docs).
fn normalize_default(
    raw: Option<&str>,
    nullable: bool,
    extra: &str,
    flavor: Flavor,
) -> ColumnDefault {
    match flavor {
        Flavor::MySql => match raw {
            None if nullable => ColumnDefault::Null,
            None => ColumnDefault::None,
            Some(s) => {
                if extra.contains("default_generated") || is_current_timestamp(s) {
                    ColumnDefault::Expression(s.to_string())
                } else {
                    ColumnDefault::Literal(s.to_string())
                }
            }
        },
        Flavor::MariaDb => match raw {
            None if nullable => ColumnDefault::Null,
            None => ColumnDefault::None,
            Some(s) if s.eq_ignore_ascii_case("NULL") => ColumnDefault::Null,
            Some(s) if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') => {
                ColumnDefault::Literal(unescape_sql_string(&s[1..s.len() - 1]))
            }
            Some(s) if is_numeric_literal(s) || is_bit_or_hex_literal(s) => {
                ColumnDefault::Literal(s.to_string())
            }
            Some(s) => ColumnDefault::Expression(s.to_string()),
        },
    }
}

fn is_current_timestamp(s: &str) -> bool {
    let l = s.trim().to_ascii_lowercase();
    let base = l
        .strip_prefix("current_timestamp")
        .or_else(|| l.strip_prefix("now"));
    match base {
        Some("") => true,
        Some(rest) => {
            rest.starts_with('(')
                && rest.ends_with(')')
                && rest[1..rest.len() - 1].chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn is_numeric_literal(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("");
    let digits_ok = !(int.is_empty() && frac.is_empty())
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit());
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        }
    };
    digits_ok && exp_ok
}

fn is_bit_or_hex_literal(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    (l.starts_with("b'") && l.ends_with('\''))
        || (l.starts_with("x'") && l.ends_with('\''))
        || (l.starts_with("0x") && l.len() > 2 && l[2..].chars().all(|c| c.is_ascii_hexdigit()))
}

/// Undoes MySQL string-literal escaping (`''`, `\\`, `\'`, `\0`, `\n`, `\r`, `\t`, `\b`, `\Z`;
/// any other `\x` is `x`).
pub(crate) fn unescape_sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                }
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('0') => out.push('\0'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('b') => out.push('\u{8}'),
                Some('Z') => out.push('\u{1a}'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// Parses the label list of `enum(...)` / `set(...)`: the text between the outer parentheses,
/// a comma-separated list of single-quoted labels.
pub(crate) fn parse_labels(list: &str) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    let bytes: Vec<char> = list.chars().collect();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            if labels.is_empty() {
                return Err("empty label list".into());
            }
            return Err("trailing comma in label list".into());
        }
        if bytes[i] != '\'' {
            return Err(format!("expected a quoted label at character {i}"));
        }
        i += 1;
        let mut raw = String::new();
        let mut closed = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c == '\\' && i + 1 < bytes.len() {
                raw.push(c);
                raw.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if c == '\'' {
                if i + 1 < bytes.len() && bytes[i + 1] == '\'' {
                    raw.push_str("''");
                    i += 2;
                    continue;
                }
                closed = true;
                i += 1;
                break;
            }
            raw.push(c);
            i += 1;
        }
        if !closed {
            return Err("unterminated label".into());
        }
        labels.push(unescape_sql_string(&raw));
        while i < bytes.len() && bytes[i].is_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            return Ok(labels);
        }
        if bytes[i] != ',' {
            return Err(format!("expected ',' between labels at character {i}"));
        }
        i += 1;
    }
}

/// The numbers inside the first `(...)` of a column type: `decimal(10,2)` → `[10, 2]`.
fn type_args(column_type: &str) -> Option<Vec<u64>> {
    let open = column_type.find('(')?;
    let close = column_type[open..].find(')')? + open;
    column_type[open + 1..close]
        .split(',')
        .map(|p| p.trim().parse::<u64>().ok())
        .collect()
}

/// The text between the outer parentheses of `enum(...)` / `set(...)`.
fn label_list(column_type: &str) -> Option<&str> {
    let open = column_type.find('(')?;
    let close = column_type.rfind(')')?;
    if close <= open {
        return None;
    }
    Some(&column_type[open + 1..close])
}

fn parse_type(row: &ColumnInfoRow) -> Result<ColumnType, SchemaError> {
    let dt = row.data_type.trim().to_ascii_lowercase();
    let ct_lower = row.column_type.to_ascii_lowercase();
    let unsigned = ct_lower.contains(" unsigned") || ct_lower.contains(" zerofill");
    let bad = |detail: &str| SchemaError::BadColumnType {
        column: row.column_name.clone(),
        column_type: row.column_type.clone(),
        detail: detail.to_string(),
    };
    let to_u8 =
        |v: u64, what: &str| u8::try_from(v).map_err(|_| bad(&format!("{what} {v} too large")));
    let to_u32 =
        |v: u64, what: &str| u32::try_from(v).map_err(|_| bad(&format!("{what} {v} too large")));
    let args = type_args(&ct_lower);
    let arg = |i: usize| args.as_ref().and_then(|a| a.get(i).copied());
    let fsp = || -> Result<u8, SchemaError> {
        let v = row.datetime_precision.or_else(|| arg(0)).unwrap_or(0);
        if v > 6 {
            return Err(bad("fractional seconds precision above 6"));
        }
        to_u8(v, "fsp")
    };
    let text = |make: &dyn Fn(String, String) -> ColumnType| -> Result<ColumnType, SchemaError> {
        match (&row.character_set_name, &row.collation_name) {
            (Some(cs), Some(co)) => Ok(make(cs.to_ascii_lowercase(), co.to_ascii_lowercase())),
            _ => Err(SchemaError::MissingCharset {
                column: row.column_name.clone(),
            }),
        }
    };
    let char_len = || -> Result<u32, SchemaError> {
        match row.character_maximum_length.or_else(|| arg(0)) {
            Some(v) => to_u32(v, "length"),
            None => Ok(1),
        }
    };
    let int = |size| Ok(ColumnType::Integer { size, unsigned });
    let float_digits = || match (arg(0), arg(1)) {
        (Some(m), Some(d)) => Ok(Some((to_u8(m, "digits")?, to_u8(d, "decimals")?))),
        _ => Ok(None),
    };
    match dt.as_str() {
        "tinyint" | "bool" | "boolean" => int(IntSize::Tiny),
        "smallint" => int(IntSize::Small),
        "mediumint" => int(IntSize::Medium),
        "int" | "integer" => int(IntSize::Int),
        "bigint" => int(IntSize::Big),
        "decimal" | "numeric" | "dec" | "fixed" => {
            let precision = row.numeric_precision.or_else(|| arg(0)).unwrap_or(10);
            let scale = row.numeric_scale.or_else(|| arg(1)).unwrap_or(0);
            if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                return Err(bad("precision/scale out of range"));
            }
            Ok(ColumnType::Decimal {
                precision: to_u8(precision, "precision")?,
                scale: to_u8(scale, "scale")?,
                unsigned,
            })
        }
        "float" => Ok(ColumnType::Float {
            unsigned,
            digits: float_digits()?,
        }),
        "double" | "real" | "double precision" => Ok(ColumnType::Double {
            unsigned,
            digits: float_digits()?,
        }),
        "bit" => {
            let width = arg(0).or(row.numeric_precision).unwrap_or(1);
            if width == 0 || width > 64 {
                return Err(bad("BIT width out of 1..=64"));
            }
            Ok(ColumnType::Bit {
                width: to_u8(width, "width")?,
            })
        }
        "enum" | "set" => {
            let list = label_list(&row.column_type).ok_or_else(|| bad("no label list"))?;
            let labels = parse_labels(list).map_err(|e| bad(&e))?;
            if dt == "enum" {
                if labels.len() > 65_535 {
                    return Err(bad("too many ENUM labels"));
                }
                Ok(ColumnType::Enum { labels })
            } else {
                if labels.len() > 64 {
                    return Err(bad("too many SET labels"));
                }
                Ok(ColumnType::Set { labels })
            }
        }
        "year" => Ok(ColumnType::Year),
        "date" => Ok(ColumnType::Date),
        "time" => Ok(ColumnType::Time { fsp: fsp()? }),
        "datetime" => Ok(ColumnType::DateTime { fsp: fsp()? }),
        "timestamp" => Ok(ColumnType::Timestamp { fsp: fsp()? }),
        "char" | "nchar" => {
            let len = char_len()?;
            text(&|charset, collation| ColumnType::Char {
                len,
                charset,
                collation,
            })
        }
        "varchar" | "nvarchar" => {
            let len = char_len()?;
            text(&|charset, collation| ColumnType::VarChar {
                len,
                charset,
                collation,
            })
        }
        "binary" => Ok(ColumnType::Binary { len: char_len()? }),
        "varbinary" => Ok(ColumnType::VarBinary { len: char_len()? }),
        "tinytext" | "text" | "mediumtext" | "longtext" => {
            let size = match dt.as_str() {
                "tinytext" => LobSize::Tiny,
                "text" => LobSize::Regular,
                "mediumtext" => LobSize::Medium,
                _ => LobSize::Long,
            };
            text(&|charset, collation| ColumnType::Text {
                size,
                charset,
                collation,
            })
        }
        "tinyblob" => Ok(ColumnType::Blob {
            size: LobSize::Tiny,
        }),
        "blob" => Ok(ColumnType::Blob {
            size: LobSize::Regular,
        }),
        "mediumblob" => Ok(ColumnType::Blob {
            size: LobSize::Medium,
        }),
        "longblob" => Ok(ColumnType::Blob {
            size: LobSize::Long,
        }),
        "json" => Ok(ColumnType::Json),
        "geometry" => geometry(GeometryKind::Geometry),
        "point" => geometry(GeometryKind::Point),
        "linestring" => geometry(GeometryKind::LineString),
        "polygon" => geometry(GeometryKind::Polygon),
        "multipoint" => geometry(GeometryKind::MultiPoint),
        "multilinestring" => geometry(GeometryKind::MultiLineString),
        "multipolygon" => geometry(GeometryKind::MultiPolygon),
        "geometrycollection" | "geomcollection" => geometry(GeometryKind::GeometryCollection),
        "vector" => Ok(ColumnType::Vector {
            dimensions: to_u32(arg(0).unwrap_or(2048), "dimensions")?,
        }),
        "uuid" => Ok(ColumnType::Uuid),
        "inet4" => Ok(ColumnType::Inet4),
        "inet6" => Ok(ColumnType::Inet6),
        _ => Err(SchemaError::UnknownType {
            column: row.column_name.clone(),
            data_type: row.data_type.clone(),
            column_type: row.column_type.clone(),
        }),
    }
}

fn geometry(kind: GeometryKind) -> Result<ColumnType, SchemaError> {
    Ok(ColumnType::Geometry { kind })
}

/// Test helpers shared by the crate's unit tests: build schemas from short descriptions.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A COLUMNS row for `name` of `column_type` with sensible derived fields.
    pub fn col(ordinal: u32, name: &str, column_type: &str) -> ColumnInfoRow {
        let ct = column_type.to_ascii_lowercase();
        let data_type = ct.split(['(', ' ']).next().unwrap_or("").to_string();
        let is_text = matches!(
            data_type.as_str(),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        );
        ColumnInfoRow {
            column_name: name.to_string(),
            ordinal_position: ordinal,
            data_type,
            column_type: column_type.to_string(),
            is_nullable: "YES".into(),
            column_default: None,
            extra: String::new(),
            character_set_name: is_text.then(|| "utf8mb4".to_string()),
            collation_name: is_text.then(|| "utf8mb4_0900_ai_ci".to_string()),
            character_maximum_length: None,
            numeric_precision: None,
            numeric_scale: None,
            datetime_precision: None,
            column_key: String::new(),
        }
    }

    /// A table `db.t` with the given columns (`(name, column_type)`), primary key on the named
    /// columns, all columns nullable except the key.
    pub fn table(columns: &[(&str, &str)], pk: &[&str]) -> TableSchema {
        table_with(columns, pk, |_| {})
    }

    /// Like [`table`], letting the caller adjust each row.
    pub fn table_with(
        columns: &[(&str, &str)],
        pk: &[&str],
        adjust: impl Fn(&mut ColumnInfoRow),
    ) -> TableSchema {
        let rows: Vec<ColumnInfoRow> = columns
            .iter()
            .enumerate()
            .map(|(i, (n, t))| {
                let mut r = col(i as u32 + 1, n, t);
                if pk.contains(n) {
                    r.is_nullable = "NO".into();
                }
                adjust(&mut r);
                r
            })
            .collect();
        let stats: Vec<StatisticsRow> = pk
            .iter()
            .enumerate()
            .map(|(i, c)| StatisticsRow {
                index_name: "PRIMARY".into(),
                seq_in_index: i as u32 + 1,
                column_name: Some(c.to_string()),
                non_unique: false,
                sub_part: None,
            })
            .collect();
        TableSchema::from_information_schema("db", "t", Flavor::MySql, &rows, &stats)
            .expect("test schema")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::col;
    use super::*;

    fn one(row: ColumnInfoRow, flavor: Flavor) -> Column {
        let t = TableSchema::from_information_schema("db", "t", flavor, &[row], &[]).unwrap();
        t.columns.into_iter().next().unwrap()
    }

    #[test]
    fn quote_ident_doubles_backticks() {
        assert_eq!(quote_ident("a"), "`a`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_ident("``"), "``````");
        assert_eq!(quote_ident("with space,comma"), "`with space,comma`");
    }

    #[test]
    fn qualified_name_quotes_both_parts() {
        let t = super::testing::table(&[("id", "int")], &["id"]);
        assert_eq!(t.qualified_name(), "`db`.`t`");
        let mut t2 = t.clone();
        t2.schema = "my`db".into();
        t2.name = "t`1".into();
        assert_eq!(t2.qualified_name(), "`my``db`.`t``1`");
    }

    #[test]
    fn enum_labels_with_quotes_commas_and_escapes() {
        let c = one(
            col(
                1,
                "e",
                r"enum('a','it''s','x,y','back\\slash','','new\nline',' sp ')",
            ),
            Flavor::MySql,
        );
        assert_eq!(
            c.data_type,
            ColumnType::Enum {
                labels: vec![
                    "a".into(),
                    "it's".into(),
                    "x,y".into(),
                    "back\\slash".into(),
                    "".into(),
                    "new\nline".into(),
                    " sp ".into()
                ]
            }
        );
    }

    #[test]
    fn enum_label_with_parenthesis_and_quote_comma() {
        let c = one(col(1, "e", "enum('a)','b'',c','(d)')"), Flavor::MariaDb);
        assert_eq!(
            c.data_type,
            ColumnType::Enum {
                labels: vec!["a)".into(), "b',c".into(), "(d)".into()]
            }
        );
    }

    #[test]
    fn set_labels_and_bad_lists() {
        let c = one(col(1, "s", "set('r','w','x')"), Flavor::MySql);
        assert_eq!(
            c.data_type,
            ColumnType::Set {
                labels: vec!["r".into(), "w".into(), "x".into()]
            }
        );
        assert!(parse_labels("'a',").is_err());
        assert!(parse_labels("'a").is_err());
        assert!(parse_labels("a").is_err());
        assert!(parse_labels("").is_err());
        assert!(parse_labels("'a' 'b'").is_err());
    }

    #[test]
    fn integer_and_decimal_types() {
        let c = one(col(1, "a", "int unsigned"), Flavor::MySql);
        assert_eq!(
            c.data_type,
            ColumnType::Integer {
                size: IntSize::Int,
                unsigned: true
            }
        );
        let c = one(col(1, "a", "tinyint(3) unsigned zerofill"), Flavor::MariaDb);
        assert_eq!(
            c.data_type,
            ColumnType::Integer {
                size: IntSize::Tiny,
                unsigned: true
            }
        );
        let c = one(col(1, "a", "bigint(20)"), Flavor::MariaDb);
        assert_eq!(
            c.data_type,
            ColumnType::Integer {
                size: IntSize::Big,
                unsigned: false
            }
        );
        let mut r = col(1, "d", "decimal(10,2) unsigned");
        r.numeric_precision = Some(10);
        r.numeric_scale = Some(2);
        let c = one(r, Flavor::MySql);
        assert_eq!(
            c.data_type,
            ColumnType::Decimal {
                precision: 10,
                scale: 2,
                unsigned: true
            }
        );
        // Falls back to COLUMN_TYPE when NUMERIC_* are missing.
        let c = one(col(1, "d", "decimal(65,30)"), Flavor::MySql);
        assert_eq!(
            c.data_type,
            ColumnType::Decimal {
                precision: 65,
                scale: 30,
                unsigned: false
            }
        );
        assert_eq!(IntSize::Medium.range(false), (-8_388_608, 8_388_607));
        assert_eq!(IntSize::Big.range(true), (0, u64::MAX as i128));
    }

    #[test]
    fn other_types_parse() {
        let cases: Vec<(&str, ColumnType)> = vec![
            ("bit(5)", ColumnType::Bit { width: 5 }),
            ("year", ColumnType::Year),
            ("date", ColumnType::Date),
            ("time(3)", ColumnType::Time { fsp: 3 }),
            ("datetime(6)", ColumnType::DateTime { fsp: 6 }),
            ("timestamp", ColumnType::Timestamp { fsp: 0 }),
            ("binary(16)", ColumnType::Binary { len: 16 }),
            ("varbinary(255)", ColumnType::VarBinary { len: 255 }),
            (
                "mediumblob",
                ColumnType::Blob {
                    size: LobSize::Medium,
                },
            ),
            ("json", ColumnType::Json),
            (
                "point",
                ColumnType::Geometry {
                    kind: GeometryKind::Point,
                },
            ),
            (
                "geomcollection",
                ColumnType::Geometry {
                    kind: GeometryKind::GeometryCollection,
                },
            ),
            ("vector(3)", ColumnType::Vector { dimensions: 3 }),
            ("uuid", ColumnType::Uuid),
            ("inet6", ColumnType::Inet6),
            (
                "float(7,4)",
                ColumnType::Float {
                    unsigned: false,
                    digits: Some((7, 4)),
                },
            ),
            (
                "double unsigned",
                ColumnType::Double {
                    unsigned: true,
                    digits: None,
                },
            ),
        ];
        for (ct, expected) in cases {
            assert_eq!(
                one(col(1, "c", ct), Flavor::MySql).data_type,
                expected,
                "{ct}"
            );
        }
    }

    #[test]
    fn text_types_carry_charset_and_collation() {
        let mut r = col(1, "s", "varchar(20)");
        r.character_maximum_length = Some(20);
        r.character_set_name = Some("latin1".into());
        r.collation_name = Some("latin1_swedish_ci".into());
        let c = one(r, Flavor::MariaDb);
        assert_eq!(
            c.data_type,
            ColumnType::VarChar {
                len: 20,
                charset: "latin1".into(),
                collation: "latin1_swedish_ci".into()
            }
        );
        assert_eq!(c.charset.as_deref(), Some("latin1"));
        let mut r = col(1, "s", "text");
        r.character_set_name = None;
        assert!(matches!(
            TableSchema::from_information_schema("d", "t", Flavor::MySql, &[r], &[]),
            Err(SchemaError::MissingCharset { .. })
        ));
    }

    #[test]
    fn unknown_type_is_an_error() {
        let r = col(1, "x", "frobnicate(3)");
        assert!(matches!(
            TableSchema::from_information_schema("d", "t", Flavor::MySql, &[r], &[]),
            Err(SchemaError::UnknownType { .. })
        ));
    }

    #[test]
    fn mysql_defaults() {
        let mut r = col(1, "a", "int");
        r.column_default = None;
        assert_eq!(
            one(r.clone(), Flavor::MySql).default_value,
            ColumnDefault::Null
        );
        r.is_nullable = "NO".into();
        assert_eq!(
            one(r.clone(), Flavor::MySql).default_value,
            ColumnDefault::None
        );
        r.column_default = Some("0".into());
        assert_eq!(
            one(r.clone(), Flavor::MySql).default_value,
            ColumnDefault::Literal("0".into())
        );
        let mut s = col(1, "s", "varchar(10)");
        s.column_default = Some("it's".into());
        assert_eq!(
            one(s.clone(), Flavor::MySql).default_value,
            ColumnDefault::Literal("it's".into())
        );
        // A literal string "NULL" is a literal on MySQL (SQL NULL means no default).
        s.column_default = Some("NULL".into());
        assert_eq!(
            one(s, Flavor::MySql).default_value,
            ColumnDefault::Literal("NULL".into())
        );
        let mut t = col(1, "ts", "timestamp");
        t.column_default = Some("CURRENT_TIMESTAMP".into());
        t.extra = "DEFAULT_GENERATED on update CURRENT_TIMESTAMP".into();
        let c = one(t, Flavor::MySql);
        assert_eq!(
            c.default_value,
            ColumnDefault::Expression("CURRENT_TIMESTAMP".into())
        );
        assert!(!c.generated, "DEFAULT_GENERATED is not a generated column");
    }

    #[test]
    fn mariadb_defaults() {
        let mut r = col(1, "a", "varchar(10)");
        r.column_default = Some("NULL".into());
        assert_eq!(
            one(r.clone(), Flavor::MariaDb).default_value,
            ColumnDefault::Null
        );
        r.column_default = Some("'NULL'".into());
        assert_eq!(
            one(r.clone(), Flavor::MariaDb).default_value,
            ColumnDefault::Literal("NULL".into())
        );
        r.column_default = Some("'it''s'".into());
        assert_eq!(
            one(r.clone(), Flavor::MariaDb).default_value,
            ColumnDefault::Literal("it's".into())
        );
        r.column_default = Some("''".into());
        assert_eq!(
            one(r.clone(), Flavor::MariaDb).default_value,
            ColumnDefault::Literal("".into())
        );
        r.is_nullable = "NO".into();
        r.column_default = None;
        assert_eq!(one(r, Flavor::MariaDb).default_value, ColumnDefault::None);
        let mut n = col(1, "n", "decimal(5,2)");
        n.column_default = Some("-1.50".into());
        assert_eq!(
            one(n, Flavor::MariaDb).default_value,
            ColumnDefault::Literal("-1.50".into())
        );
        let mut t = col(1, "ts", "timestamp");
        t.column_default = Some("current_timestamp()".into());
        assert_eq!(
            one(t, Flavor::MariaDb).default_value,
            ColumnDefault::Expression("current_timestamp()".into())
        );
        let mut b = col(1, "b", "bit(3)");
        b.column_default = Some("b'101'".into());
        assert_eq!(
            one(b, Flavor::MariaDb).default_value,
            ColumnDefault::Literal("b'101'".into())
        );
    }

    #[test]
    fn generated_and_auto_increment_flags() {
        let mut r = col(1, "g", "int");
        r.extra = "VIRTUAL GENERATED".into();
        let c = one(r.clone(), Flavor::MySql);
        assert!(c.generated && c.has_implicit_value());
        r.extra = "STORED GENERATED".into();
        assert!(one(r.clone(), Flavor::MariaDb).generated);
        r.extra = "auto_increment".into();
        r.is_nullable = "NO".into();
        let c = one(r.clone(), Flavor::MySql);
        assert!(!c.generated && c.auto_increment && c.has_implicit_value());
        r.extra = "INVISIBLE".into();
        let c = one(r, Flavor::MySql);
        assert!(c.invisible && !c.has_implicit_value());
    }

    #[test]
    fn indexes_grouped_and_ordered() {
        let rows = vec![
            col(1, "id", "int"),
            col(2, "Email", "varchar(100)"),
            col(3, "a", "int"),
            col(4, "b", "int"),
        ];
        let st = |name: &str, seq, c: Option<&str>, non_unique, sub_part| StatisticsRow {
            index_name: name.into(),
            seq_in_index: seq,
            column_name: c.map(|s| s.to_string()),
            non_unique,
            sub_part,
        };
        let stats = vec![
            st("ab", 2, Some("b"), true, None),
            st("PRIMARY", 2, Some("a"), false, None),
            st("uniq_email", 1, Some("email"), false, Some(10)),
            st("PRIMARY", 1, Some("id"), false, None),
            st("ab", 1, Some("a"), true, None),
            st("func", 1, None, true, None),
        ];
        // Rows out of order too.
        let mut shuffled = rows.clone();
        shuffled.reverse();
        let t = TableSchema::from_information_schema("db", "t", Flavor::MySql, &shuffled, &stats)
            .unwrap();
        assert_eq!(t.columns[0].name, "id");
        assert_eq!(t.primary_key, vec![0, 2]);
        assert_eq!(t.primary_key_prefixes, vec![None, None]);
        assert_eq!(t.unique_keys.len(), 1);
        assert_eq!(t.unique_keys[0].parts[0].column, Some(1));
        assert_eq!(t.unique_keys[0].parts[0].sub_part, Some(10));
        assert_eq!(t.indexes.len(), 2);
        assert_eq!(t.indexes[0].column_indexes(), Some(vec![2, 3]));
        assert_eq!(t.indexes[1].column_indexes(), None);
        let bad = vec![st("x", 1, Some("nope"), true, None)];
        assert!(matches!(
            TableSchema::from_information_schema("db", "t", Flavor::MySql, &rows, &bad),
            Err(SchemaError::UnknownIndexColumn { .. })
        ));
    }

    #[test]
    fn ordinals_must_be_contiguous() {
        let rows = vec![col(1, "a", "int"), col(3, "b", "int")];
        assert!(matches!(
            TableSchema::from_information_schema("db", "t", Flavor::MySql, &rows, &[]),
            Err(SchemaError::BadOrdinals { found: 3, .. })
        ));
        assert!(matches!(
            TableSchema::from_information_schema("db", "t", Flavor::MySql, &[], &[]),
            Err(SchemaError::NoColumns { .. })
        ));
    }

    #[test]
    fn column_lookup_is_case_insensitive() {
        let t = super::testing::table(&[("Id", "int"), ("Name", "varchar(5)")], &["Id"]);
        assert_eq!(t.column_index("name"), Some(1));
        assert_eq!(t.column_index("ID"), Some(0));
        assert_eq!(t.column_index("nope"), None);
        assert_eq!(t.writable_columns(), vec![0, 1]);
    }
}
