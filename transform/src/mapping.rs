//! The old → new column mapping, compiled once per migration.
//!
//! Inputs: the old table's schema, the new (shadow) table's schema as the server reports it
//! after running the user's ALTER, the column renames found in the ALTER text
//! ([`parse_renames`]) and the user's `--set column = expression` clauses ([`SetClause`]).
//! The server parses the ALTER; rowshift only reads renames from it, because a rename is the
//! one change a schema diff cannot tell from "drop a column, add another".
//!
//! For every writable (non-generated) column of the new table the mapping picks one
//! [`ColumnSource`]:
//! * `--set` for that column → [`ColumnSource::Expr`] (a bare column reference becomes a copy);
//! * else a rename onto it, or an old column of the same name not renamed away →
//!   [`ColumnSource::Copy`], converted to the new type by the rules of `convert.rs`;
//! * else [`ColumnSource::Default`]: left out of the INSERT so the server fills its default.
//!
//! Compiling refuses, before any row moves: a `--set` on an unknown or generated column; a NOT
//! NULL column with no source and no default; a new primary key column that is not copied from
//! an old column ([`MappingError::PrimaryKeyNotMappable`]); a type pair that cannot be converted
//! exactly; an ALTER that renames the table.

use thiserror::Error;

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::collation::Collation;
use crate::convert::{Conversion, ConvertError, SourceType};
use crate::expr::{CompiledExpr, EvalError, ExprError};
use crate::key::{KeyCodec, KeyError, RowKey};
use crate::schema::{quote_ident, IndexDef, IndexPart, TableSchema};
use crate::value::Value;

/// Errors building a mapping.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MappingError {
    /// The ALTER text could not be tokenized.
    #[error("cannot read the ALTER statement: {message}")]
    AlterSyntax {
        /// Tokenizer message.
        message: String,
    },
    /// The ALTER renames the table itself; rowshift renames tables at cut-over only.
    #[error("the ALTER renames the table (to {new_name}); rename it after the migration instead")]
    RenamesTable {
        /// The new name as written.
        new_name: String,
    },
    /// A `--set` clause that is not `column = expression`.
    #[error("--set {text:?}: {detail}")]
    BadSet {
        /// The clause.
        text: String,
        /// What is wrong.
        detail: String,
    },
    /// A `--set` on a column the new table does not have.
    #[error("--set names column {column:?}, which the new table does not have")]
    UnknownSetColumn {
        /// Column name.
        column: String,
    },
    /// A `--set` on a generated column (the server computes those).
    #[error("--set names generated column {column:?}, which cannot be written")]
    SetGeneratedColumn {
        /// Column name.
        column: String,
    },
    /// Two `--set` clauses for one column.
    #[error("--set names column {column:?} twice")]
    DuplicateSet {
        /// Column name.
        column: String,
    },
    /// A `--set` expression that does not compile.
    #[error("--set {column}: {source}")]
    Expr {
        /// Column name.
        column: String,
        /// Why.
        source: ExprError,
    },
    /// A rename whose old column the old table does not have.
    #[error("the ALTER renames {old:?} to {new:?}, but the old table has no column {old:?}")]
    UnknownRenameSource {
        /// Old name.
        old: String,
        /// New name.
        new: String,
    },
    /// A rename whose new column the new table does not have.
    #[error("the ALTER renames {old:?} to {new:?}, but the new table has no column {new:?}")]
    RenameTargetMissing {
        /// Old name.
        old: String,
        /// New name.
        new: String,
    },
    /// One column renamed twice, or two columns renamed to one name.
    #[error("column {column:?} appears in two renames")]
    DuplicateRename {
        /// Column name.
        column: String,
    },
    /// A table without a primary key.
    #[error("table {table} has no primary key")]
    NoPrimaryKey {
        /// Qualified name.
        table: String,
    },
    /// A new primary key column that is not a copy of an old column.
    #[error("primary key column {column:?} of the new table cannot be derived from the old table: {reason}")]
    PrimaryKeyNotMappable {
        /// Column name.
        column: String,
        /// Why.
        reason: String,
    },
    /// A NOT NULL column with no default and nothing to fill it.
    #[error("new column {column:?} is NOT NULL without a default; give it a value with --set {column}=...")]
    NoSourceForNotNull {
        /// Column name.
        column: String,
    },
    /// A type change this crate cannot convert exactly.
    #[error("column {column:?}: {source}")]
    UnsupportedConversion {
        /// Column name.
        column: String,
        /// Why.
        source: ConvertError,
    },
    /// The key codec could not be built.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Errors transforming one row.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TransformError {
    /// The old row has the wrong number of columns (the schema changed under us?).
    #[error("old row has {actual} columns, the old table has {expected}")]
    RowWidth {
        /// Old table's column count.
        expected: usize,
        /// Row's.
        actual: usize,
    },
    /// Converting the value would lose data; the migration must stop before cut-over.
    #[error("column {column}: {detail}")]
    LossyConversion {
        /// New column name.
        column: String,
        /// What would be lost.
        detail: String,
    },
    /// An expression failed on this row.
    #[error("column {column}: {source}")]
    Eval {
        /// New column name.
        column: String,
        /// Why.
        source: EvalError,
    },
    /// A value whose representation does not match its column type (a decoder bug).
    #[error("column {column}: {detail}")]
    UnexpectedValue {
        /// Column name.
        column: String,
        /// What was wrong.
        detail: String,
    },
    /// The key could not be built.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Where a new column's value comes from.
#[derive(Debug, Clone)]
pub enum ColumnSource {
    /// A copy of an old column (same name, or renamed), possibly converted.
    Copy {
        /// Index of the old column.
        old_index: usize,
    },
    /// An expression over old columns (`--set`).
    Expr(Box<CompiledExpr>),
    /// Nothing: the column is left out of the INSERT and the server fills its default.
    Default,
}

/// One writable column of the new table and its source.
#[derive(Debug, Clone)]
pub struct MappedColumn {
    /// Index of the column in the new table.
    pub new_index: usize,
    /// The new column's name.
    pub name: String,
    /// Where its value comes from.
    pub source: ColumnSource,
    conversion: Option<Conversion>,
}

/// A `--set column = expression` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetClause {
    /// The new column.
    pub column: String,
    /// The expression text over old columns.
    pub expr: String,
}

impl SetClause {
    /// Reads `column = expression`; the column may be backquoted (`` `my col` = 1 ``).
    pub fn parse(text: &str) -> Result<SetClause, MappingError> {
        let bad = |detail: &str| MappingError::BadSet {
            text: text.to_string(),
            detail: detail.to_string(),
        };
        let t = text.trim_start();
        let (column, rest) = if let Some(after) = t.strip_prefix('`') {
            let mut name = String::new();
            let mut chars = after.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '`' {
                    if matches!(chars.peek(), Some((_, '`'))) {
                        chars.next();
                        name.push('`');
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                name.push(c);
            }
            let end = end.ok_or_else(|| bad("unterminated `quoted` column name"))?;
            (name, &after[end..])
        } else {
            let end = t
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(t.len());
            (t[..end].to_string(), &t[end..])
        };
        if column.is_empty() {
            return Err(bad("expected a column name before '='"));
        }
        let rest = rest.trim_start();
        let expr = rest
            .strip_prefix('=')
            .ok_or_else(|| bad("expected '=' after the column name"))?;
        if expr.starts_with('=') {
            return Err(bad("use a single '='"));
        }
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(bad("empty expression"));
        }
        Ok(SetClause {
            column,
            expr: expr.to_string(),
        })
    }
}

/// Anything that reads as a `--set` clause: a parsed [`SetClause`] or its text
/// (`"column = expression"`).
pub trait IntoSetClause {
    /// The clause, parsed.
    fn to_set_clause(&self) -> Result<SetClause, MappingError>;
}

impl IntoSetClause for SetClause {
    fn to_set_clause(&self) -> Result<SetClause, MappingError> {
        Ok(self.clone())
    }
}

impl IntoSetClause for String {
    fn to_set_clause(&self) -> Result<SetClause, MappingError> {
        SetClause::parse(self)
    }
}

impl IntoSetClause for &str {
    fn to_set_clause(&self) -> Result<SetClause, MappingError> {
        SetClause::parse(self)
    }
}

fn word(t: &Token) -> Option<(&str, bool)> {
    match t {
        Token::Word(w) => Some((w.value.as_str(), w.quote_style.is_some())),
        _ => None,
    }
}

fn is_kw(t: Option<&&Token>, kw: &str) -> bool {
    matches!(t.and_then(|t| word(t)), Some((v, false)) if v.eq_ignore_ascii_case(kw))
}

fn ident(t: Option<&&Token>) -> Option<String> {
    t.and_then(|t| word(t)).map(|(v, _)| v.to_string())
}

/// Finds the column renames in an ALTER: `CHANGE [COLUMN] [IF EXISTS] old new ...` and
/// `RENAME COLUMN [IF EXISTS] old TO new`. Accepts a full `ALTER TABLE t ...` statement or just
/// its clause list. Refuses a table rename (`RENAME [TO|AS] name`). Uses the SQL tokenizer, so
/// commas and keywords inside quoted strings, comments and parentheses are not mistaken for
/// clause boundaries; backquoted names are unquoted (``` `a``b` ``` is ``a`b``).
pub fn parse_renames(alter: &str) -> Result<Vec<(String, String)>, MappingError> {
    let tokens = Tokenizer::new(&MySqlDialect {}, alter)
        .tokenize()
        .map_err(|e| MappingError::AlterSyntax {
            message: e.to_string(),
        })?;
    let mut clauses: Vec<Vec<&Token>> = vec![Vec::new()];
    let mut depth = 0usize;
    for t in tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                clauses.push(Vec::new());
                continue;
            }
            Token::SemiColon if depth == 0 => continue,
            _ => {}
        }
        if let Some(last) = clauses.last_mut() {
            last.push(t);
        }
    }
    // Strip `ALTER [ONLINE] [IGNORE] TABLE [IF EXISTS] name` from the first clause (a bare
    // clause list may itself start with `ALTER COLUMN ...`: that is left alone).
    if let Some(first) = clauses.first_mut() {
        if is_kw(first.first(), "ALTER") {
            let mut i = 1;
            while is_kw(first.get(i), "ONLINE") || is_kw(first.get(i), "IGNORE") {
                i += 1;
            }
            if is_kw(first.get(i), "TABLE") {
                i += 1;
                if is_kw(first.get(i), "IF") && is_kw(first.get(i + 1), "EXISTS") {
                    i += 2;
                }
                // The table name: ident [. ident]
                i += 1;
                if matches!(first.get(i), Some(Token::Period)) {
                    i += 2;
                }
                first.drain(..i.min(first.len()));
            }
        }
    }
    let mut renames = Vec::new();
    for clause in &clauses {
        let mut it = clause.iter().peekable();
        let Some(first) = it.next() else { continue };
        let first_kw = match word(first) {
            Some((v, false)) => v.to_ascii_uppercase(),
            _ => continue,
        };
        let rest: Vec<&&Token> = it.collect();
        let mut i = 0;
        let skip_if_exists = |i: &mut usize| {
            if is_kw(rest.get(*i).copied(), "IF") && is_kw(rest.get(*i + 1).copied(), "EXISTS") {
                *i += 2;
            }
        };
        match first_kw.as_str() {
            "CHANGE" => {
                if is_kw(rest.get(i).copied(), "COLUMN") {
                    i += 1;
                }
                skip_if_exists(&mut i);
                if let (Some(old), Some(new)) =
                    (ident(rest.get(i).copied()), ident(rest.get(i + 1).copied()))
                {
                    if old != new {
                        renames.push((old, new));
                    }
                }
            }
            "RENAME" => {
                if is_kw(rest.get(i).copied(), "COLUMN") {
                    i += 1;
                    skip_if_exists(&mut i);
                    let old = ident(rest.get(i).copied());
                    let to = is_kw(rest.get(i + 1).copied(), "TO");
                    let new = ident(rest.get(i + 2).copied());
                    if let (Some(old), true, Some(new)) = (old, to, new) {
                        if old != new {
                            renames.push((old, new));
                        }
                    }
                } else if is_kw(rest.get(i).copied(), "INDEX") || is_kw(rest.get(i).copied(), "KEY")
                {
                    // Index renames do not move data.
                } else {
                    if is_kw(rest.get(i).copied(), "TO") || is_kw(rest.get(i).copied(), "AS") {
                        i += 1;
                    }
                    let new_name: String = rest[i.min(rest.len())..]
                        .iter()
                        .map(|t| t.to_string())
                        .collect();
                    return Err(MappingError::RenamesTable { new_name });
                }
            }
            _ => {}
        }
    }
    Ok(renames)
}

/// For each slot of `insert`: the old column it may move its value from (a plain copy without
/// conversion, and no other slot reads that old column by copy).
fn movable_slots(columns: &[MappedColumn], insert: &[usize]) -> Vec<Option<usize>> {
    let copied_from = |slot: usize| match (&columns[slot].source, &columns[slot].conversion) {
        (ColumnSource::Copy { old_index }, None) => Some(*old_index),
        _ => None,
    };
    let reads = |oi: usize| {
        insert
            .iter()
            .filter(|&&s| matches!(columns[s].source, ColumnSource::Copy { old_index } if old_index == oi))
            .count()
    };
    insert
        .iter()
        .map(|&slot| copied_from(slot).filter(|&oi| reads(oi) == 1))
        .collect()
}

/// The compiled old → new mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    old: TableSchema,
    new: TableSchema,
    columns: Vec<MappedColumn>,
    insert: Vec<usize>,
    insert_names: Vec<String>,
    dropped: Vec<usize>,
    new_pk_slots: Vec<usize>,
    old_key: KeyCodec,
    new_key: KeyCodec,
    /// Per output slot (insert order): the old column whose value [`Mapping::apply_owned`] may
    /// move instead of cloning (a plain copy, no conversion, the only slot reading it).
    movable: Vec<Option<usize>>,
}

fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl Mapping {
    /// Compiles the mapping (see the module docs). `sets` are [`SetClause`]s or their text.
    pub fn new<S: IntoSetClause>(
        old: &TableSchema,
        new: &TableSchema,
        renames: &[(String, String)],
        sets: &[S],
    ) -> Result<Mapping, MappingError> {
        let sets: Vec<SetClause> = sets
            .iter()
            .map(|s| s.to_set_clause())
            .collect::<Result<_, _>>()?;
        if old.primary_key.is_empty() {
            return Err(MappingError::NoPrimaryKey {
                table: old.qualified_name(),
            });
        }
        if new.primary_key.is_empty() {
            return Err(MappingError::NoPrimaryKey {
                table: new.qualified_name(),
            });
        }
        // Renames: validate, and index new name → old column.
        let mut rename_to_old: Vec<(usize, usize)> = Vec::new(); // (new index, old index)
        for (old_name, new_name) in renames {
            let oi =
                old.column_index(old_name)
                    .ok_or_else(|| MappingError::UnknownRenameSource {
                        old: old_name.clone(),
                        new: new_name.clone(),
                    })?;
            let ni =
                new.column_index(new_name)
                    .ok_or_else(|| MappingError::RenameTargetMissing {
                        old: old_name.clone(),
                        new: new_name.clone(),
                    })?;
            if rename_to_old.iter().any(|(n, _)| *n == ni) {
                return Err(MappingError::DuplicateRename {
                    column: new_name.clone(),
                });
            }
            if rename_to_old.iter().any(|(_, o)| *o == oi) {
                return Err(MappingError::DuplicateRename {
                    column: old_name.clone(),
                });
            }
            rename_to_old.push((ni, oi));
        }
        let renamed_away = |oi: usize| rename_to_old.iter().any(|(_, o)| *o == oi);
        // Sets: validate.
        let mut set_for: Vec<(usize, &SetClause)> = Vec::new();
        for s in &sets {
            let ni = new
                .column_index(&s.column)
                .ok_or_else(|| MappingError::UnknownSetColumn {
                    column: s.column.clone(),
                })?;
            if new.columns[ni].generated {
                return Err(MappingError::SetGeneratedColumn {
                    column: s.column.clone(),
                });
            }
            if set_for.iter().any(|(n, _)| *n == ni) {
                return Err(MappingError::DuplicateSet {
                    column: s.column.clone(),
                });
            }
            set_for.push((ni, s));
        }

        let mut columns = Vec::new();
        for (ni, col) in new.columns.iter().enumerate() {
            if col.generated {
                continue;
            }
            let mut source = if let Some((_, s)) = set_for.iter().find(|(n, _)| *n == ni) {
                let e =
                    CompiledExpr::compile(&s.expr, old).map_err(|source| MappingError::Expr {
                        column: col.name.clone(),
                        source,
                    })?;
                ColumnSource::Expr(Box::new(e))
            } else if let Some((_, oi)) = rename_to_old.iter().find(|(n, _)| *n == ni) {
                ColumnSource::Copy { old_index: *oi }
            } else {
                match old.column_index(&col.name) {
                    Some(oi) if !renamed_away(oi) => ColumnSource::Copy { old_index: oi },
                    _ => ColumnSource::Default,
                }
            };
            // `--set c = other_col` is a copy.
            if let ColumnSource::Expr(e) = &source {
                if let Some(oi) = e.as_column() {
                    source = ColumnSource::Copy { old_index: oi };
                }
            }
            let unsupported = |source| MappingError::UnsupportedConversion {
                column: col.name.clone(),
                source,
            };
            let conversion = match &source {
                ColumnSource::Copy { old_index } => {
                    let oc = &old.columns[*old_index];
                    Some(
                        Conversion::new(
                            &SourceType::Column(oc.data_type.clone()),
                            oc.charset.as_deref(),
                            col,
                        )
                        .map_err(unsupported)?,
                    )
                }
                ColumnSource::Expr(e) => Some(
                    Conversion::new(&e.result_type().source_type(), None, col)
                        .map_err(unsupported)?,
                ),
                ColumnSource::Default => {
                    if new.primary_key.contains(&ni) {
                        return Err(MappingError::PrimaryKeyNotMappable {
                            column: col.name.clone(),
                            reason: "it has no counterpart in the old table (a new column)".into(),
                        });
                    }
                    if !col.nullable && !col.has_implicit_value() {
                        return Err(MappingError::NoSourceForNotNull {
                            column: col.name.clone(),
                        });
                    }
                    None
                }
            };
            columns.push(MappedColumn {
                new_index: ni,
                name: col.name.clone(),
                source,
                conversion,
            });
        }

        // The new primary key must be copied from old columns.
        let mut new_pk_slots = Vec::with_capacity(new.primary_key.len());
        for &ni in &new.primary_key {
            let name = new.columns[ni].name.clone();
            let slot = columns
                .iter()
                .position(|m| m.new_index == ni)
                .ok_or_else(|| MappingError::PrimaryKeyNotMappable {
                    column: name.clone(),
                    reason: "it is a generated column".into(),
                })?;
            match &columns[slot].source {
                ColumnSource::Copy { .. } => new_pk_slots.push(slot),
                ColumnSource::Expr(_) => {
                    return Err(MappingError::PrimaryKeyNotMappable {
                        column: name,
                        reason: "it is computed by a --set expression; key columns must be copied"
                            .into(),
                    })
                }
                ColumnSource::Default => {
                    return Err(MappingError::PrimaryKeyNotMappable {
                        column: name,
                        reason: "it has no counterpart in the old table (a new column)".into(),
                    })
                }
            }
        }

        let insert: Vec<usize> = (0..columns.len())
            .filter(|&i| !matches!(columns[i].source, ColumnSource::Default))
            .collect();
        let insert_names = insert.iter().map(|&i| columns[i].name.clone()).collect();
        let dropped = (0..old.columns.len())
            .filter(|&oi| {
                let target = rename_to_old
                    .iter()
                    .find(|(_, o)| *o == oi)
                    .map(|(n, _)| new.columns[*n].name.as_str())
                    .unwrap_or(old.columns[oi].name.as_str());
                new.column_index(target).is_none()
            })
            .collect();
        let movable = movable_slots(&columns, &insert);
        Ok(Mapping {
            movable,
            old_key: KeyCodec::for_primary_key(old)?,
            new_key: KeyCodec::for_primary_key(new)?,
            old: old.clone(),
            new: new.clone(),
            columns,
            insert,
            insert_names,
            dropped,
            new_pk_slots,
        })
    }

    /// The old table's schema.
    pub fn old_schema(&self) -> &TableSchema {
        &self.old
    }

    /// The new table's schema.
    pub fn new_schema(&self) -> &TableSchema {
        &self.new
    }

    /// Every writable column of the new table with its source, in new-table order.
    pub fn columns(&self) -> &[MappedColumn] {
        &self.columns
    }

    /// The source of a new column (by name, case-insensitive); `None` for unknown or generated
    /// columns.
    pub fn source_of(&self, new_column: &str) -> Option<&ColumnSource> {
        self.columns
            .iter()
            .find(|m| same_name(&m.name, new_column))
            .map(|m| &m.source)
    }

    /// The new columns the copy and the appliers write, in order (unquoted names).
    pub fn insert_columns(&self) -> &[String] {
        &self.insert_names
    }

    /// `` `a`, `b`, `c` ``: the quoted insert column list.
    pub fn insert_column_list(&self) -> String {
        self.insert_names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The SQL expressions over the old table giving each insert column, in
    /// [`Mapping::insert_columns`] order: for `INSERT INTO new (cols) SELECT exprs FROM old`.
    pub fn select_exprs(&self) -> Vec<String> {
        self.insert
            .iter()
            .map(|&i| match &self.columns[i].source {
                ColumnSource::Copy { old_index } => quote_ident(&self.old.columns[*old_index].name),
                ColumnSource::Expr(e) => e.sql().to_string(),
                ColumnSource::Default => "DEFAULT".to_string(),
            })
            .collect()
    }

    /// Names of the old columns that no longer exist in the new table.
    pub fn dropped_columns(&self) -> Vec<&str> {
        self.dropped
            .iter()
            .map(|&i| self.old.columns[i].name.as_str())
            .collect()
    }

    /// Unique keys of the new table (its primary key included, as `PRIMARY`) that were not
    /// already unique in the old table on the same source columns with the same collations and
    /// prefixes. Copying into such a key can merge rows (`INSERT IGNORE` skips, `REPLACE`
    /// deletes): the engine must refuse or check for duplicates first.
    pub fn added_unique_keys(&self) -> Vec<IndexDef> {
        let new_primary = IndexDef {
            name: "PRIMARY".into(),
            unique: true,
            parts: self
                .new
                .primary_key
                .iter()
                .zip(&self.new.primary_key_prefixes)
                .map(|(c, p)| IndexPart {
                    column: Some(*c),
                    sub_part: *p,
                })
                .collect(),
        };
        let old_primary = IndexDef {
            name: "PRIMARY".into(),
            unique: true,
            parts: self
                .old
                .primary_key
                .iter()
                .zip(&self.old.primary_key_prefixes)
                .map(|(c, p)| IndexPart {
                    column: Some(*c),
                    sub_part: *p,
                })
                .collect(),
        };
        let old_keys: Vec<&IndexDef> = std::iter::once(&old_primary)
            .chain(self.old.unique_keys.iter())
            .collect();
        std::iter::once(&new_primary)
            .chain(self.new.unique_keys.iter())
            .filter(|k| !self.unique_in_old(k, &old_keys))
            .cloned()
            .collect()
    }

    /// True when an old unique key covers the same source columns (with the same prefixes and
    /// collations) as new key `k`: then `k` cannot merge rows.
    fn unique_in_old(&self, k: &IndexDef, old_keys: &[&IndexDef]) -> bool {
        let mut mapped: Vec<(usize, Option<u32>)> = Vec::new();
        for part in &k.parts {
            let Some(ni) = part.column else { return false };
            let Some(m) = self.columns.iter().find(|m| m.new_index == ni) else {
                return false;
            };
            let ColumnSource::Copy { old_index } = m.source else {
                return false;
            };
            let old_coll = self.old.columns[old_index]
                .collation
                .as_deref()
                .map(Collation::from_name);
            let new_coll = self.new.columns[ni]
                .collation
                .as_deref()
                .map(Collation::from_name);
            let looser = match (&old_coll, &new_coll) {
                (Some(o), Some(n)) => {
                    (n.case_insensitive && !o.case_insensitive)
                        || (n.accent_insensitive && !o.accent_insensitive)
                        || (n.pad_space && !o.pad_space)
                        || (!n.binary && o.binary)
                }
                (None, Some(n)) => !n.binary,
                _ => false,
            };
            if looser {
                return false;
            }
            mapped.push((old_index, part.sub_part));
        }
        mapped.sort_unstable();
        old_keys.iter().any(|ok| {
            let mut cols: Vec<(usize, Option<u32>)> = Vec::new();
            for p in &ok.parts {
                match p.column {
                    Some(c) => cols.push((c, p.sub_part)),
                    None => return false,
                }
            }
            cols.sort_unstable();
            // A new key that contains every part of an old unique key (each at least as long)
            // is unique too.
            cols.iter().all(|&(oc, old_prefix)| {
                mapped.iter().any(|&(mc, new_prefix)| {
                    mc == oc
                        && match (new_prefix, old_prefix) {
                            (None, _) => true,
                            (Some(_), None) => false,
                            (Some(n), Some(o)) => n >= o,
                        }
                })
            })
        })
    }

    /// The new row for an old row: values of [`Mapping::insert_columns`], in that order.
    pub fn apply(&self, old_row: &[Value]) -> Result<Vec<Value>, TransformError> {
        let mut out = Vec::with_capacity(self.insert.len());
        self.apply_into(old_row, &mut out)?;
        Ok(out)
    }

    /// Like [`Mapping::apply`], writing into `out` (cleared first) so a caller can reuse it.
    pub fn apply_into(
        &self,
        old_row: &[Value],
        out: &mut Vec<Value>,
    ) -> Result<(), TransformError> {
        self.check_width(old_row)?;
        out.clear();
        out.reserve(self.insert.len());
        for &slot in &self.insert {
            out.push(self.value_of(&self.columns[slot], old_row)?);
        }
        Ok(())
    }

    /// Like [`Mapping::apply`], taking the old row by value: plain copies move their value out
    /// of it instead of cloning (no allocation for strings, decimals, blobs). Expressions and
    /// conversions read the intact row first.
    pub fn apply_owned(&self, mut old_row: Vec<Value>) -> Result<Vec<Value>, TransformError> {
        self.check_width(&old_row)?;
        let mut out = Vec::with_capacity(self.insert.len());
        for (&slot, mv) in self.insert.iter().zip(&self.movable) {
            out.push(match mv {
                Some(_) => Value::Null,
                None => self.value_of(&self.columns[slot], &old_row)?,
            });
        }
        for (o, mv) in out.iter_mut().zip(&self.movable) {
            if let Some(oi) = mv {
                *o = std::mem::replace(&mut old_row[*oi], Value::Null);
            }
        }
        Ok(out)
    }

    fn check_width(&self, old_row: &[Value]) -> Result<(), TransformError> {
        if old_row.len() != self.old.columns.len() {
            return Err(TransformError::RowWidth {
                expected: self.old.columns.len(),
                actual: old_row.len(),
            });
        }
        Ok(())
    }

    fn value_of(&self, m: &MappedColumn, old_row: &[Value]) -> Result<Value, TransformError> {
        let convert = |v: &Value| match &m.conversion {
            Some(c) => c.convert(v).map_err(|e| {
                if e.is_lossy() {
                    TransformError::LossyConversion {
                        column: m.name.clone(),
                        detail: e.to_string(),
                    }
                } else {
                    TransformError::UnexpectedValue {
                        column: m.name.clone(),
                        detail: e.to_string(),
                    }
                }
            }),
            None => Ok(v.clone()),
        };
        match &m.source {
            ColumnSource::Copy { old_index } => convert(&old_row[*old_index]),
            ColumnSource::Expr(e) => {
                let v = e.eval(old_row).map_err(|source| TransformError::Eval {
                    column: m.name.clone(),
                    source,
                })?;
                convert(&v)
            }
            ColumnSource::Default => Ok(Value::Null),
        }
    }

    /// The new primary key's values for an old row (converted to the new types), in key order.
    pub fn new_key_values(&self, old_row: &[Value]) -> Result<Vec<Value>, TransformError> {
        self.check_width(old_row)?;
        self.new_pk_slots
            .iter()
            .map(|&slot| self.value_of(&self.columns[slot], old_row))
            .collect()
    }

    /// The old columns whose change moves a row to another key: the old primary key's and
    /// those the new primary key is copied from (it may differ: `DROP PRIMARY KEY, ADD PRIMARY
    /// KEY (id, region)`, or a former unique column). An update changing any of them must
    /// delete the row's before image in the new table; comparing the old key alone left the
    /// old row beside the new one when only a new key column changed.
    pub fn key_source_columns(&self) -> Vec<usize> {
        let mut cols = self.old.primary_key.clone();
        for old_index in self.new_key_sources() {
            if !cols.contains(&old_index) {
                cols.push(old_index);
            }
        }
        cols
    }

    /// The old columns the new primary key's columns are copied from, in key order (every new
    /// key column is a copy: [`Mapping::new`] refuses others).
    pub fn new_key_sources(&self) -> Vec<usize> {
        self.new_pk_slots
            .iter()
            .filter_map(|&slot| match self.columns[slot].source {
                ColumnSource::Copy { old_index } => Some(old_index),
                _ => None,
            })
            .collect()
    }

    /// The new table's primary key of an old row, for routing and collapsing.
    pub fn key_of_old(&self, old_row: &[Value]) -> Result<RowKey, TransformError> {
        let values = self.new_key_values(old_row)?;
        Ok(self.new_key.key_of_values(&values)?)
    }

    /// Positions, within [`Mapping::insert_columns`], of the new primary key columns (key
    /// order): pick them out of an [`Mapping::apply`] result.
    pub fn key_positions_in_insert(&self) -> Vec<usize> {
        self.new_pk_slots
            .iter()
            .filter_map(|slot| self.insert.iter().position(|s| s == slot))
            .collect()
    }

    /// The key codec of the new table's primary key.
    pub fn new_key_codec(&self) -> &KeyCodec {
        &self.new_key
    }

    /// The key codec of the old table's primary key (for chunk bounds on the old table).
    pub fn old_key_codec(&self) -> &KeyCodec {
        &self.old_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::{table, table_with};

    const NO_SETS: &[SetClause] = &[];

    fn set(text: &str) -> SetClause {
        SetClause::parse(text).unwrap()
    }

    fn s(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    #[test]
    fn renames_with_backquotes_and_quoted_commas() {
        let r = parse_renames(
            "ALTER TABLE `db`.`t` CHANGE COLUMN `a``b` `c,d` INT COMMENT 'x, CHANGE e f', \
             RENAME COLUMN g TO `h h`, MODIFY x ENUM('a,b','RENAME COLUMN p TO q'), \
             CHANGE same same BIGINT",
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                ("a`b".to_string(), "c,d".to_string()),
                ("g".to_string(), "h h".to_string())
            ]
        );
    }

    #[test]
    fn renames_in_bare_clause_lists_and_comments() {
        let r = parse_renames(
            "change old_name new_name varchar(10) /* , RENAME TO x */ # , rename to y\n, ADD z INT",
        )
        .unwrap();
        assert_eq!(r, vec![("old_name".to_string(), "new_name".to_string())]);
        let r = parse_renames("CHANGE IF EXISTS a b INT, RENAME COLUMN IF EXISTS c TO d").unwrap();
        assert_eq!(r.len(), 2);
        let r =
            parse_renames("ALTER ONLINE IGNORE TABLE t RENAME COLUMN a TO b, RENAME INDEX i TO j;")
                .unwrap();
        assert_eq!(r, vec![("a".to_string(), "b".to_string())]);
        assert!(parse_renames("ADD COLUMN x INT").unwrap().is_empty());
        let r = parse_renames("ALTER COLUMN c SET DEFAULT 1, CHANGE a b INT").unwrap();
        assert_eq!(r, vec![("a".to_string(), "b".to_string())]);
        let r = parse_renames("ALTER TABLE IF EXISTS db.t CHANGE a b INT").unwrap();
        assert_eq!(r, vec![("a".to_string(), "b".to_string())]);
        assert!(matches!(
            parse_renames("ADD c VARCHAR(5) DEFAULT 'unterminated"),
            Err(MappingError::AlterSyntax { .. })
        ));
    }

    #[test]
    fn table_renames_are_refused() {
        for alter in [
            "RENAME TO t2",
            "ALTER TABLE t ADD x INT, RENAME AS t2",
            "ALTER TABLE t RENAME t2",
            "rename to other_db.t2",
        ] {
            assert!(
                matches!(parse_renames(alter), Err(MappingError::RenamesTable { .. })),
                "{alter}"
            );
        }
        match parse_renames("RENAME TO `new``t`") {
            Err(MappingError::RenamesTable { new_name }) => assert!(new_name.contains("new")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_clause_parsing() {
        assert_eq!(
            set("status = CASE code WHEN 1 THEN 'a=b' END"),
            SetClause {
                column: "status".into(),
                expr: "CASE code WHEN 1 THEN 'a=b' END".into()
            }
        );
        assert_eq!(set("`my ``col`=1").column, "my `col");
        assert_eq!(set("`my ``col`=1").expr, "1");
        assert_eq!(set(" total=a = b").expr, "a = b");
        assert!(SetClause::parse("= 1").is_err());
        assert!(SetClause::parse("x 1").is_err());
        assert!(SetClause::parse("x = ").is_err());
        assert!(SetClause::parse("x == 1").is_err());
        assert!(SetClause::parse("`x = 1").is_err());
    }

    fn old_orders() -> TableSchema {
        table(
            &[
                ("id", "bigint"),
                ("status_code", "tinyint"),
                ("name", "varchar(20)"),
                ("price", "decimal(10,2)"),
                ("legacy", "int"),
            ],
            &["id"],
        )
    }

    #[test]
    fn key_sources_include_the_new_primary_key_columns() {
        let old = old_orders();
        // Same key: only the old key's column.
        let m = Mapping::new(&old, &old, &[], &[] as &[SetClause]).unwrap();
        assert_eq!(m.key_source_columns(), vec![0]);
        // (id) -> (id, status_code): a change of status_code moves the row too.
        let widened = table(
            &[
                ("id", "bigint"),
                ("status_code", "tinyint"),
                ("name", "varchar(20)"),
                ("price", "decimal(10,2)"),
                ("legacy", "int"),
            ],
            &["id", "status_code"],
        );
        let m = Mapping::new(&old, &widened, &[], &[] as &[SetClause]).unwrap();
        assert_eq!(m.key_source_columns(), vec![0, 1]);
        // A renamed column in the new key is found through the rename.
        let renamed = table(
            &[
                ("id", "bigint"),
                ("status_code", "tinyint"),
                ("customer", "varchar(20)"),
                ("price", "decimal(10,2)"),
                ("legacy", "int"),
            ],
            &["customer", "id"],
        );
        let renames = parse_renames("CHANGE name customer VARCHAR(20)").unwrap();
        let m = Mapping::new(&old, &renamed, &renames, &[] as &[SetClause]).unwrap();
        assert_eq!(m.key_source_columns(), vec![0, 2]);
    }

    #[test]
    fn copy_rename_expr_default_and_drop() {
        let old = old_orders();
        let new = table_with(
            &[
                ("id", "bigint"),
                ("order_status", "enum('new','packed','shipped')"),
                ("status_code", "tinyint"),
                ("customer", "varchar(40)"),
                ("price", "decimal(12,2)"),
                ("note", "varchar(10)"),
                ("total", "decimal(12,2)"),
            ],
            &["id"],
            |_| {},
        );
        let renames = parse_renames("CHANGE name customer VARCHAR(40)").unwrap();
        let m = Mapping::new(
            &old,
            &new,
            &renames,
            &[
                set("order_status = CASE status_code WHEN 1 THEN 'packed' WHEN 2 THEN 'shipped' ELSE 'new' END"),
                set("total = price * 2"),
            ],
        )
        .unwrap();
        assert_eq!(
            m.insert_columns(),
            &[
                "id",
                "order_status",
                "status_code",
                "customer",
                "price",
                "total"
            ]
        );
        assert_eq!(
            m.insert_column_list(),
            "`id`, `order_status`, `status_code`, `customer`, `price`, `total`"
        );
        assert_eq!(
            m.select_exprs(),
            vec![
                "`id`".to_string(),
                "CASE `status_code` WHEN 1 THEN _utf8mb4'packed' WHEN 2 THEN _utf8mb4'shipped' ELSE _utf8mb4'new' END"
                    .to_string(),
                "`status_code`".to_string(),
                "`name`".to_string(),
                "`price`".to_string(),
                "(`price` * 2)".to_string(),
            ]
        );
        assert!(matches!(m.source_of("note"), Some(ColumnSource::Default)));
        assert!(matches!(
            m.source_of("customer"),
            Some(ColumnSource::Copy { old_index: 2 })
        ));
        assert_eq!(m.dropped_columns(), vec!["legacy"]);
        let row = vec![
            Value::Int(1),
            Value::Int(2),
            s("Bob"),
            Value::Decimal("9.99".into()),
            Value::Int(0),
        ];
        assert_eq!(
            m.apply(&row).unwrap(),
            vec![
                Value::Int(1),
                Value::Enum(3),
                Value::Int(2),
                s("Bob"),
                Value::Decimal("9.99".into()),
                Value::Decimal("19.98".into()),
            ]
        );
        let mut buf = Vec::new();
        m.apply_into(&row, &mut buf).unwrap();
        assert_eq!(buf.len(), 6);
        // The owning variant moves plain copies and still evaluates expressions over the
        // intact row (`total = price * 2` reads `price`, which is also copied).
        assert_eq!(m.apply_owned(row.clone()).unwrap(), buf);
        assert!(m.apply_owned(row[..3].to_vec()).is_err());
        assert!(matches!(
            m.apply(&row[..3]),
            Err(TransformError::RowWidth {
                expected: 5,
                actual: 3
            })
        ));
    }

    #[test]
    fn sets_given_as_text() {
        let old = old_orders();
        let new = table(&[("id", "bigint"), ("name", "varchar(20)")], &["id"]);
        let sets = vec!["name = LOWER(name)".to_string()];
        let m = Mapping::new(&old, &new, &[], &sets).unwrap();
        assert!(matches!(m.source_of("name"), Some(ColumnSource::Expr(_))));
        assert!(matches!(
            Mapping::new(&old, &new, &[], &["name LOWER(name)"]),
            Err(MappingError::BadSet { .. })
        ));
    }

    #[test]
    fn set_overrides_same_name_copy_and_bare_column_is_copy() {
        let old = old_orders();
        let new = table(
            &[
                ("id", "bigint"),
                ("name", "varchar(20)"),
                ("price", "decimal(10,2)"),
            ],
            &["id"],
        );
        let m = Mapping::new(
            &old,
            &new,
            &[],
            &[set("name = UPPER(name)"), set("price = `price`")],
        )
        .unwrap();
        assert!(matches!(m.source_of("name"), Some(ColumnSource::Expr(_))));
        assert!(matches!(
            m.source_of("price"),
            Some(ColumnSource::Copy { old_index: 3 })
        ));
        let row = vec![
            Value::Int(1),
            Value::Int(0),
            s("bob"),
            Value::Decimal("1.00".into()),
            Value::Int(0),
        ];
        assert_eq!(m.apply(&row).unwrap()[1], s("BOB"));
    }

    #[test]
    fn renamed_away_column_is_not_copied_by_name() {
        // CHANGE a b INT, ADD COLUMN a INT: new `a` is a fresh column.
        let old = table(&[("id", "int"), ("a", "int")], &["id"]);
        let new = table(&[("id", "int"), ("b", "int"), ("a", "int")], &["id"]);
        let m = Mapping::new(
            &old,
            &new,
            &parse_renames("CHANGE a b INT, ADD COLUMN a INT").unwrap(),
            NO_SETS,
        )
        .unwrap();
        assert!(matches!(
            m.source_of("b"),
            Some(ColumnSource::Copy { old_index: 1 })
        ));
        assert!(matches!(m.source_of("a"), Some(ColumnSource::Default)));
        assert!(m.dropped_columns().is_empty());
        // A swap by renames.
        let new = table(&[("id", "int"), ("b", "int"), ("a", "int")], &["id"]);
        let old = table(&[("id", "int"), ("a", "int"), ("b", "int")], &["id"]);
        let m = Mapping::new(
            &old,
            &new,
            &parse_renames("RENAME COLUMN a TO b, RENAME COLUMN b TO a").unwrap(),
            NO_SETS,
        )
        .unwrap();
        assert!(matches!(
            m.source_of("b"),
            Some(ColumnSource::Copy { old_index: 1 })
        ));
        assert!(matches!(
            m.source_of("a"),
            Some(ColumnSource::Copy { old_index: 2 })
        ));
    }

    #[test]
    fn set_errors() {
        let old = old_orders();
        let new = table_with(
            &[("id", "bigint"), ("g", "int"), ("name", "varchar(20)")],
            &["id"],
            |r| {
                if r.column_name == "g" {
                    r.extra = "VIRTUAL GENERATED".into();
                }
            },
        );
        assert!(matches!(
            Mapping::new(&old, &new, &[], &[set("nope = 1")]),
            Err(MappingError::UnknownSetColumn { .. })
        ));
        assert!(matches!(
            Mapping::new(&old, &new, &[], &[set("g = 1")]),
            Err(MappingError::SetGeneratedColumn { .. })
        ));
        assert!(matches!(
            Mapping::new(&old, &new, &[], &[set("name = 'a'"), set("NAME = 'b'")]),
            Err(MappingError::DuplicateSet { .. })
        ));
        assert!(matches!(
            Mapping::new(&old, &new, &[], &[set("name = NOW()")]),
            Err(MappingError::Expr { .. })
        ));
        // Generated columns are left out of the insert.
        let m = Mapping::new(&old, &new, &[], NO_SETS).unwrap();
        assert_eq!(m.insert_columns(), &["id", "name"]);
        assert!(m.source_of("g").is_none());
    }

    #[test]
    fn rename_errors() {
        let old = old_orders();
        let new = table(&[("id", "bigint"), ("customer", "varchar(20)")], &["id"]);
        assert!(matches!(
            Mapping::new(&old, &new, &[("nope".into(), "customer".into())], NO_SETS),
            Err(MappingError::UnknownRenameSource { .. })
        ));
        assert!(matches!(
            Mapping::new(&old, &new, &[("name".into(), "nope".into())], NO_SETS),
            Err(MappingError::RenameTargetMissing { .. })
        ));
        assert!(matches!(
            Mapping::new(
                &old,
                &new,
                &[
                    ("name".into(), "customer".into()),
                    ("legacy".into(), "customer".into())
                ],
                NO_SETS
            ),
            Err(MappingError::DuplicateRename { .. })
        ));
    }

    #[test]
    fn not_null_without_source_or_default() {
        let old = table(&[("id", "int")], &["id"]);
        let new = table_with(&[("id", "int"), ("c", "int")], &["id"], |r| {
            if r.column_name == "c" {
                r.is_nullable = "NO".into();
            }
        });
        assert_eq!(
            Mapping::new(&old, &new, &[], NO_SETS).unwrap_err(),
            MappingError::NoSourceForNotNull { column: "c".into() }
        );
        assert!(Mapping::new(&old, &new, &[], &[set("c = id * 10")]).is_ok());
        let new = table_with(&[("id", "int"), ("c", "int")], &["id"], |r| {
            if r.column_name == "c" {
                r.is_nullable = "NO".into();
                r.column_default = Some("0".into());
            }
        });
        let m = Mapping::new(&old, &new, &[], NO_SETS).unwrap();
        assert_eq!(m.insert_columns(), &["id"]);
    }

    #[test]
    fn owned_apply_converts_moved_values() {
        // Widened, narrowed and unchanged copies plus an expression over a moved column: the
        // owning variant gives what `apply` gives, and refuses what it refuses.
        let old = table(
            &[
                ("id", "int"),
                ("n", "int"),
                ("s", "varchar(10)"),
                ("d", "decimal(5,2)"),
            ],
            &["id"],
        );
        let new = table(
            &[
                ("id", "bigint"),
                ("n", "tinyint"),
                ("s", "varchar(20)"),
                ("d", "decimal(5,2)"),
                ("twice", "bigint"),
            ],
            &["id"],
        );
        let m = Mapping::new(&old, &new, &[], &[set("twice = n * 2")]).unwrap();
        let row = vec![
            Value::Int(7),
            Value::Int(100),
            s("abc"),
            Value::Decimal("1.50".into()),
        ];
        let want = m.apply(&row).unwrap();
        assert_eq!(want[0], Value::Int(7));
        assert_eq!(m.apply_owned(row).unwrap(), want);
        let too_big = vec![Value::Int(1), Value::Int(300), s("x"), Value::Null];
        assert!(matches!(
            m.apply(&too_big),
            Err(TransformError::LossyConversion { .. })
        ));
        assert!(matches!(
            m.apply_owned(too_big),
            Err(TransformError::LossyConversion { .. })
        ));
        // A decoder bug (a number where a string belongs) is caught on the moving path too.
        let wrong = vec![Value::Int(1), Value::Int(1), Value::Int(5), Value::Null];
        assert!(matches!(
            m.apply_owned(wrong),
            Err(TransformError::UnexpectedValue { .. })
        ));
    }

    #[test]
    fn primary_key_must_be_copied() {
        let old = table(&[("id", "int"), ("email", "varchar(50)")], &["id"]);
        let new = table(&[("id", "int"), ("email", "varchar(50)")], &["email"]);
        assert!(Mapping::new(&old, &new, &[], NO_SETS).is_ok());
        // INT into BINARY(16) is the number's text, zero-padded: a copy, so allowed.
        let new = table(&[("id", "int"), ("uuid", "binary(4)")], &["uuid"]);
        let m = Mapping::new(&old, &new, &[], &[set("uuid = id")]).unwrap();
        assert_eq!(
            m.apply(&[Value::Int(42), s("x")]).unwrap()[1],
            Value::Bytes(vec![b'4', b'2', 0, 0])
        );
        assert_eq!(
            m.apply_owned(vec![Value::Int(42), s("x")]).unwrap(),
            m.apply(&[Value::Int(42), s("x")]).unwrap()
        );
        let new = table(&[("id", "int"), ("k", "bigint")], &["k"]);
        match Mapping::new(&old, &new, &[], &[set("k = id * 2")]) {
            Err(MappingError::PrimaryKeyNotMappable { column, reason }) => {
                assert_eq!(column, "k");
                assert!(reason.contains("expression"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Mapping::new(&old, &new, &[], NO_SETS),
            Err(MappingError::PrimaryKeyNotMappable { .. })
        ));
        // `--set k = id` is a copy: fine.
        assert!(Mapping::new(&old, &new, &[], &[set("k = id")]).is_ok());
        let no_pk = table(&[("id", "int")], &[]);
        assert!(matches!(
            Mapping::new(&old, &no_pk, &[], NO_SETS),
            Err(MappingError::NoPrimaryKey { .. })
        ));
    }

    #[test]
    fn keys_of_old_rows_follow_new_pk_and_collation() {
        let old = table_with(&[("id", "int"), ("code", "varchar(10)")], &["id"], |r| {
            if r.column_name == "code" {
                r.collation_name = Some("utf8mb4_bin".into());
            }
        });
        let new = table_with(
            &[("id", "bigint"), ("code", "varchar(10)")],
            &["code"],
            |r| {
                if r.column_name == "code" {
                    r.collation_name = Some("utf8mb4_general_ci".into());
                }
            },
        );
        let m = Mapping::new(&old, &new, &[], NO_SETS).unwrap();
        let k1 = m.key_of_old(&[Value::Int(1), s("ab")]).unwrap();
        let k2 = m.key_of_old(&[Value::Int(2), s("AB ")]).unwrap();
        assert_eq!(k1, k2);
        assert_eq!(
            m.new_key_values(&[Value::Int(1), s("ab")]).unwrap(),
            vec![s("ab")]
        );
        assert_eq!(m.key_positions_in_insert(), vec![1]);
        assert!(m.key_of_old(&[Value::Int(1), Value::Null]).is_err());
        // A case-sensitive unique column turned case-insensitive can merge rows.
        let added = m.added_unique_keys();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].name, "PRIMARY");
    }

    #[test]
    fn added_unique_keys_detects_new_uniqueness() {
        let old = table(&[("id", "int"), ("email", "varchar(50)")], &["id"]);
        let mut new = table(&[("id", "int"), ("email", "varchar(50)")], &["id"]);
        assert!(Mapping::new(&old, &new, &[], NO_SETS)
            .unwrap()
            .added_unique_keys()
            .is_empty());
        new.unique_keys.push(IndexDef {
            name: "uniq_email".into(),
            unique: true,
            parts: vec![IndexPart {
                column: Some(1),
                sub_part: None,
            }],
        });
        let m = Mapping::new(&old, &new, &[], NO_SETS).unwrap();
        let added = m.added_unique_keys();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].name, "uniq_email");
        // Already unique in the old table: fine. A key containing the PK is unique too.
        let mut old2 = old.clone();
        old2.unique_keys = new.unique_keys.clone();
        assert!(Mapping::new(&old2, &new, &[], NO_SETS)
            .unwrap()
            .added_unique_keys()
            .is_empty());
        let mut new3 = table(&[("id", "int"), ("email", "varchar(50)")], &["id"]);
        new3.unique_keys.push(IndexDef {
            name: "id_email".into(),
            unique: true,
            parts: vec![
                IndexPart {
                    column: Some(1),
                    sub_part: None,
                },
                IndexPart {
                    column: Some(0),
                    sub_part: None,
                },
            ],
        });
        assert!(Mapping::new(&old, &new3, &[], NO_SETS)
            .unwrap()
            .added_unique_keys()
            .is_empty());
    }

    #[test]
    fn lossy_conversions_stop_the_row() {
        let old = table(
            &[("id", "int"), ("n", "varchar(20)"), ("e", "enum('a','b')")],
            &["id"],
        );
        let new = table(
            &[("id", "int"), ("n", "varchar(3)"), ("e", "enum('a')")],
            &["id"],
        );
        let m = Mapping::new(&old, &new, &[], NO_SETS).unwrap();
        assert!(m.apply(&[Value::Int(1), s("abc"), Value::Enum(1)]).is_ok());
        match m.apply(&[Value::Int(1), s("abcd"), Value::Enum(1)]) {
            Err(TransformError::LossyConversion { column, detail }) => {
                assert_eq!(column, "n");
                assert!(detail.contains("truncated"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        match m.apply(&[Value::Int(1), s("a"), Value::Enum(2)]) {
            Err(TransformError::LossyConversion { column, detail }) => {
                assert_eq!(column, "e");
                assert!(detail.contains("\"b\""), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // Expression results are converted too.
        let new = table(
            &[("id", "int"), ("n", "varchar(3)"), ("e", "enum('a','b')")],
            &["id"],
        );
        let m = Mapping::new(
            &old,
            &new,
            &[],
            &[set("n = CONCAT(n, '!!!')"), set("e = 'c'")],
        )
        .unwrap();
        assert!(matches!(
            m.apply(&[Value::Int(1), s("x"), Value::Enum(1)]),
            Err(TransformError::LossyConversion { .. })
        ));
        // Evaluation errors name the column.
        let m = Mapping::new(
            &old,
            &table(&[("id", "int"), ("x", "bigint")], &["id"]),
            &[],
            &[set("x = id * 9223372036854775807")],
        )
        .unwrap();
        assert!(matches!(
            m.apply(&[Value::Int(2), s("x"), Value::Enum(1)]),
            Err(TransformError::Eval { .. })
        ));
    }

    #[test]
    fn type_changes_convert_on_copy() {
        let old = table(&[("id", "int"), ("n", "int"), ("t", "varchar(5)")], &["id"]);
        let new = table_with(
            &[
                ("id", "bigint unsigned"),
                ("n", "bigint"),
                ("t", "varchar(10)"),
            ],
            &["id"],
            |r| {
                if r.column_name == "t" {
                    r.character_set_name = Some("latin1".into());
                    r.collation_name = Some("latin1_swedish_ci".into());
                }
            },
        );
        let m = Mapping::new(&old, &new, &[], NO_SETS).unwrap();
        assert_eq!(
            m.apply(&[Value::Int(5), Value::Int(-1), s("é")]).unwrap(),
            vec![Value::UInt(5), Value::Int(-1), Value::Bytes(vec![0xE9])]
        );
        assert!(matches!(
            m.apply(&[Value::Int(-5), Value::Int(1), s("x")]),
            Err(TransformError::LossyConversion { .. })
        ));
        assert!(matches!(
            m.apply(&[Value::Int(5), Value::Int(1), Value::Int(3)]),
            Err(TransformError::UnexpectedValue { .. })
        ));
        let incompatible = table(
            &[("id", "int"), ("n", "json"), ("t", "varchar(5)")],
            &["id"],
        );
        assert!(matches!(
            Mapping::new(&old, &incompatible, &[], NO_SETS),
            Err(MappingError::UnsupportedConversion { .. })
        ));
    }
}
