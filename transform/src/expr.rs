//! The expression language of `--set "column = expression"`.
//!
//! An expression computes a new column's value from the **old** row. It is parsed once with
//! `sqlparser` (MySQL dialect), type-checked against the old table's columns, and compiled
//! into two forms that must agree:
//! * **SQL** over the old table's quoted column names ([`CompiledExpr::sql`]), used by the
//!   copy (`INSERT INTO new (...) SELECT <sql>, ... FROM old`) and by the checksums;
//! * a **Rust evaluator** over the old row's typed values ([`CompiledExpr::eval`]), used for
//!   binlog events.
//!
//! # Language
//!
//! | construct | notes |
//! |---|---|
//! | column reference `status`, `` `odd name` `` | a column of the **old** table (case-insensitive) |
//! | integer `42`, decimal `1.50`, float `1e3` | `1.50` is DECIMAL(3,2): exact; `1e3` is DOUBLE |
//! | string `'text'` / `"text"`, `_utf8mb4'text'`, `_binary'bytes'` | text literals take the server's default utf8mb4 collation |
//! | `NULL`, `TRUE`, `FALSE` | `TRUE` is 1, `FALSE` is 0 |
//! | `+ - * /`, unary `-` | see arithmetic below |
//! | `= <> != < <= > >=` | result 1, 0 or NULL |
//! | `AND OR NOT` | three-valued logic, on numbers/conditions |
//! | `x IS NULL`, `x IS NOT NULL` | never NULL |
//! | `CASE x WHEN v THEN r ... [ELSE e] END` | simple CASE: `x = v` per WHEN |
//! | `CASE WHEN cond THEN r ... [ELSE e] END` | searched CASE |
//! | `COALESCE(a, b, ...)`, `IFNULL(a, b)` | first non-NULL |
//! | `CONCAT(a, b, ...)` | NULL if any argument is NULL |
//! | `UPPER(s)`, `LOWER(s)` | no effect on binary strings |
//!
//! Anything else (subqueries, other functions, `LIKE`, `IN`, `BETWEEN`, `%`, `DIV`, `<=>`,
//! `||`, casts, variables, placeholders, qualified names) is refused with an
//! [`ExprError::Unsupported`] naming the construct and listing the above.
//!
//! # Semantics (as MySQL's)
//! * **NULL** propagates through arithmetic, comparisons, `CONCAT`, `UPPER`/`LOWER`; `AND`
//!   is 0 if either side is 0 (else NULL if either is NULL), `OR` is 1 if either side is
//!   non-zero; `NOT NULL` is NULL.
//! * **Arithmetic**: integer `+ - *` stays integer (BIGINT; UNSIGNED if either operand is
//!   unsigned) and an overflow is an error ("BIGINT value is out of range"), as on the server;
//!   with a DECIMAL operand the result is an exact DECIMAL (scale: the larger for `+ -`, the sum
//!   for `*`, capped at 30); with a DOUBLE operand, DOUBLE. `/` always gives DECIMAL with the
//!   left operand's scale + 4 (`div_precision_increment`), rounded half away from zero, or
//!   DOUBLE; **division by zero gives NULL** (as in a SELECT, and as the copy's
//!   `INSERT IGNORE` stores it; a strict-mode `INSERT` without IGNORE would fail instead).
//!   Arithmetic on text, dates, JSON or ENUM/SET columns is refused at compile time.
//! * **Comparisons**: integers exactly; integer/DECIMAL as exact decimals; with a DOUBLE, as
//!   doubles; text with text under a collation (below); text with a number as doubles (the
//!   text's numeric prefix, `'12abc'` is 12, as MySQL reads it); DATE/DATETIME/TIMESTAMP
//!   columns with each other or with a date literal (`created_at >= '2024-01-01'`); TIME with
//!   TIME or a time literal. ENUM/SET columns compare by label (text), never with numbers.
//! * **Collations**: a comparison between a column and a literal uses the column's collation;
//!   between two literals, the server's default utf8mb4 collation (MySQL `utf8mb4_0900_ai_ci`,
//!   MariaDB `utf8mb4_general_ci`); any binary operand makes it a byte comparison.
//!   Case-insensitive collations compare with letters upper-cased (exact for ASCII; simple
//!   one-to-one Unicode case mapping beyond), PAD SPACE collations ignore trailing spaces,
//!   accent-insensitive ones fold common Latin accents.
//! * **Result types** of `CASE`, `COALESCE`, `IFNULL` are aggregated over their branches as
//!   MySQL does: any text → text (numbers formatted, `1.50` stays `1.50`); else any DOUBLE →
//!   DOUBLE; else any DECIMAL (or signed mixed with unsigned integers) → DECIMAL with the
//!   largest scale; else integer. DATE mixed with DATETIME → DATETIME.
//! * **Where MySQL 9 and MariaDB 10.11 differ** (each measured on the servers by
//!   `tests/tests/expr_agreement.rs`; the old table's flavor decides):
//!   - MariaDB keeps a DECIMAL quotient truncated to whole 9-digit words and does not round
//!     intermediate results; it rounds to the expression's scale only where a value is
//!     compared, printed or stored (`1 / 3 * 3` is `1.0000` there, `0.9999` on MySQL).
//!   - MySQL's CASE keeps each DECIMAL branch's own scale (`CASE .. THEN 1.5 ELSE 2 END` gives
//!     `2`, MariaDB `2.0`): the same stored number, a different text.
//!   - MySQL rounds a time literal compared with a TIME column to the column's precision
//!     first (`tm = '00:00:00.5'` holds for a TIME(0) `00:00:01`).
//!   - A DOUBLE turned into text follows the servers' `my_gcvt`: plain notation for exponents
//!     -15 < e <= 15, in at most 22 characters on MySQL (`1.2345678901234567e-14`), wider on
//!     MariaDB (`0.000000000000012345678901234567`). A FLOAT column prints with 6 significant
//!     digits (`CONCAT(f)` of FLOAT 0.1 is `0.1`).
//! * Comparing columns of two character sets uses the Unicode one's collation (latin1 is
//!   converted to utf8mb4); `UPPER`/`LOWER` of latin1 text know only ISO 8859-1 letters.
//! * The value is then stored in the new column with the same conversion rules as a copied
//!   column (see `convert.rs`): a value that does not fit stops the migration.
//!
//! # What is approximate
//! * String **ordering** (`<`, `>`) follows code points after folding, not the collation's
//!   weights: punctuation and non-ASCII letters can order differently than on the server.
//!   Equality is exact for ASCII text in the common collations; for non-ASCII text under
//!   case/accent-insensitive collations it is a best effort (simple case mapping, Latin accents).
//! * Simple `CASE x WHEN ...` compares `x` with each WHEN value pairwise; MySQL picks one
//!   comparison type for all WHEN values together. They differ only when WHEN values mix text
//!   and numbers.
//! * Case/accent folding maps one character to one: `utf8mb4_0900_ai_ci` also equates
//!   expansions (`'Straße' = 'strasse'`), rowshift does not.
//! * FLOAT values inside CASE/COALESCE are printed as the DOUBLE they are widened to (only a
//!   FLOAT column given directly to CONCAT/UPPER/LOWER prints as a FLOAT).
//! * The SQL form assumes the copy session has `time_zone = '+00:00'`,
//!   `div_precision_increment = 4` and the default utf8mb4 collation unchanged.

use std::borrow::Cow;
use std::cmp::Ordering;

use bigdecimal::{BigDecimal, ToPrimitive, Zero};
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart,
    UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use thiserror::Error;

use crate::charset::{Charset, CharsetError};
use crate::collation::{simple_lower, simple_upper, Collation};
use crate::convert::{format_double, gcvt, SourceType, MYSQL_EXPR_DOUBLE_WIDTH, WIDE_DOUBLE_WIDTH};
use crate::decimal;
use crate::jsontext;
use crate::schema::{quote_ident, ColumnType, Flavor, TableSchema};
use crate::temporal::{self, DateTimeParts};
use crate::value::Value;

/// What the language supports, for error messages.
pub const SUPPORTED: &str =
    "column references, literals (integers, decimals, strings, NULL, TRUE, FALSE), \
CASE [x] WHEN .. THEN .. [ELSE ..] END, COALESCE, IFNULL, CONCAT, UPPER, LOWER, + - * /, \
= <> != < <= > >=, AND, OR, NOT, IS [NOT] NULL, parentheses";

/// Errors compiling an expression.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExprError {
    /// The text is not a valid SQL expression.
    #[error("cannot parse expression {text:?}: {message}")]
    Parse {
        /// The expression text.
        text: String,
        /// The parser's message.
        message: String,
    },
    /// A construct outside the language.
    #[error("unsupported in --set expressions: {construct}; supported: {supported}")]
    Unsupported {
        /// The construct, e.g. `function NOW` or `subquery`.
        construct: String,
        /// The supported constructs.
        supported: &'static str,
    },
    /// A column the old table does not have.
    #[error("unknown column {column:?} in expression (columns of the old table are: {available})")]
    UnknownColumn {
        /// The name used.
        column: String,
        /// The old table's columns.
        available: String,
    },
    /// Operands of the wrong type for an operator or function.
    #[error("{construct}: {detail}")]
    Type {
        /// The operator or function.
        construct: String,
        /// What is wrong.
        detail: String,
    },
    /// A function called with the wrong number of arguments.
    #[error("{function} takes {expected} argument(s), got {found}")]
    ArgCount {
        /// The function.
        function: String,
        /// Expected count, e.g. `2` or `at least 1`.
        expected: String,
        /// Given count.
        found: usize,
    },
    /// A literal that cannot be read (a date literal compared with a date column, say).
    #[error("literal {literal:?}: {detail}")]
    BadLiteral {
        /// The literal.
        literal: String,
        /// What is wrong.
        detail: String,
    },
}

/// Errors evaluating a compiled expression on a row.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    /// Arithmetic overflow (BIGINT, DECIMAL(65) or DOUBLE range), as the server reports.
    #[error("{kind} value is out of range in {expr}")]
    Overflow {
        /// `BIGINT`, `BIGINT UNSIGNED`, `DECIMAL` or `DOUBLE`.
        kind: &'static str,
        /// The operation.
        expr: String,
    },
    /// The row has fewer columns than the expression reads.
    #[error("row has {len} columns, expression reads column {index}")]
    RowTooShort {
        /// Column index read.
        index: usize,
        /// Row length.
        len: usize,
    },
    /// A column value whose representation does not match the column's type.
    #[error("column {column}: unexpected value {value} for its type {expected}")]
    UnexpectedValue {
        /// Column name.
        column: String,
        /// The value (debug form).
        value: String,
        /// The column type.
        expected: String,
    },
    /// A text column's bytes are not valid in its character set.
    #[error("column {column}: {source}")]
    Charset {
        /// Column name.
        column: String,
        /// The charset error.
        source: CharsetError,
    },
}

/// The static type of an expression (or sub-expression).
#[derive(Debug, Clone, PartialEq)]
pub enum ExprType {
    /// The NULL literal (or an expression that is always NULL).
    Null,
    /// BIGINT.
    Int {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// DECIMAL with this scale.
    Decimal {
        /// Digits after the point.
        scale: u8,
    },
    /// DOUBLE.
    Double,
    /// A string.
    Text(TextType),
    /// DATE.
    Date,
    /// DATETIME (TIMESTAMP columns read as DATETIME in UTC).
    DateTime {
        /// Fraction digits.
        fsp: u8,
    },
    /// TIME.
    Time {
        /// Fraction digits.
        fsp: u8,
    },
    /// JSON.
    Json,
    /// A column type without operations here (BIT, spatial, VECTOR, UUID, INET): only passed
    /// through (`COALESCE(a, b)` of two such columns of the same type) or tested for NULL.
    Column(ColumnType),
}

/// A string type: binary or not, and the collation it compares with.
#[derive(Debug, Clone, PartialEq)]
pub struct TextType {
    /// A binary string (bytes).
    pub binary: bool,
    /// The collation.
    pub collation: Collation,
    /// A literal (coercible): a column's collation wins over it.
    pub coercible: bool,
    /// ENUM/SET labels: must not be compared with numbers (the server would use ordinals).
    pub labels: bool,
}

impl ExprType {
    fn name(&self) -> String {
        match self {
            ExprType::Null => "NULL".into(),
            ExprType::Int { unsigned: false } => "BIGINT".into(),
            ExprType::Int { unsigned: true } => "BIGINT UNSIGNED".into(),
            ExprType::Decimal { scale } => format!("DECIMAL(scale {scale})"),
            ExprType::Double => "DOUBLE".into(),
            ExprType::Text(t) if t.binary => "binary string".into(),
            ExprType::Text(t) if t.labels => "ENUM/SET".into(),
            ExprType::Text(_) => "text".into(),
            ExprType::Date => "DATE".into(),
            ExprType::DateTime { .. } => "DATETIME".into(),
            ExprType::Time { .. } => "TIME".into(),
            ExprType::Json => "JSON".into(),
            ExprType::Column(c) => c.sql_name(),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(
            self,
            ExprType::Int { .. } | ExprType::Decimal { .. } | ExprType::Double
        )
    }

    fn is_temporal(&self) -> bool {
        matches!(
            self,
            ExprType::Date | ExprType::DateTime { .. } | ExprType::Time { .. }
        )
    }

    /// The conversion source type of a value of this type (for storing it in a column).
    pub fn source_type(&self) -> SourceType {
        match self {
            ExprType::Null => SourceType::Null,
            ExprType::Int { unsigned } => SourceType::Int {
                unsigned: *unsigned,
            },
            ExprType::Decimal { .. } => SourceType::Decimal,
            ExprType::Double => SourceType::Double,
            ExprType::Text(t) if t.binary => SourceType::Binary,
            ExprType::Text(_) => SourceType::Text,
            ExprType::Date => SourceType::Date,
            ExprType::DateTime { fsp } => SourceType::DateTime { fsp: *fsp },
            ExprType::Time { fsp } => SourceType::Time { fsp: *fsp },
            ExprType::Json => SourceType::Json,
            ExprType::Column(c) => SourceType::Column(c.clone()),
        }
    }
}

/// An expression compiled once: its SQL form and its evaluator.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    source: String,
    sql: String,
    root: Node,
    columns: Vec<usize>,
    flavor: Flavor,
}

/// What evaluation needs to know besides the row: the server whose SQL semantics it follows
/// where MySQL and MariaDB differ (decimal division precision, CASE result scale, double text
/// width, TIME literal rounding).
#[derive(Debug, Clone, Copy)]
struct Cx {
    flavor: Flavor,
}

impl Cx {
    /// The field width of a double turned into text by an expression.
    fn double_width(self) -> usize {
        match self.flavor {
            Flavor::MySql => MYSQL_EXPR_DOUBLE_WIDTH,
            Flavor::MariaDb => WIDE_DOUBLE_WIDTH,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    ty: ExprType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    fn sql(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// How two values are compared.
#[derive(Debug, Clone, PartialEq)]
enum CmpMode {
    AlwaysNull,
    Int,
    Decimal,
    Double,
    Text(Collation),
    DateTime,
    Time,
}

/// How a column's value is read into the evaluator.
#[derive(Debug, Clone, PartialEq)]
enum ColRead {
    Int,
    Year,
    Decimal,
    Float,
    Text(Charset),
    Binary { pad_to: Option<u32> },
    Enum(Vec<String>),
    Set(Vec<String>),
    Temporal,
    Timestamp,
    Json,
    Opaque,
}

#[derive(Debug, Clone)]
enum Lit {
    Null,
    Int(i64),
    UInt(u64),
    Dec(BigDecimal),
    Dbl(f64),
    Str(Vec<u8>),
    Val(Value),
}

#[derive(Debug, Clone)]
struct When {
    cond: Node,
    mode: CmpMode,
    result: Node,
}

#[derive(Debug, Clone)]
enum Kind {
    Col {
        index: usize,
        name: String,
        read: ColRead,
        type_name: String,
    },
    Lit {
        value: Lit,
        sql: String,
    },
    Arith {
        op: ArithOp,
        l: Box<Node>,
        r: Box<Node>,
    },
    Neg(Box<Node>),
    Cmp {
        op: CmpOp,
        l: Box<Node>,
        r: Box<Node>,
        mode: CmpMode,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull {
        x: Box<Node>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Node>>,
        whens: Vec<When>,
        otherwise: Option<Box<Node>>,
    },
    Coalesce {
        function: &'static str,
        args: Vec<Node>,
    },
    Concat(Vec<Node>),
    ChangeCase {
        x: Box<Node>,
        upper: bool,
    },
}

/// A value during evaluation. Text is UTF-8 (or bytes for binary strings); dates, JSON and
/// opaque values travel as [`Value`] (TIMESTAMP already turned into a UTC DATETIME).
#[derive(Debug, Clone)]
enum Ev<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Dec(Cow<'a, BigDecimal>),
    Dbl(f64),
    Str(Cow<'a, [u8]>),
    Val(Cow<'a, Value>),
}

impl Ev<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Ev::Null)
    }
}

fn unsupported(construct: impl Into<String>) -> ExprError {
    ExprError::Unsupported {
        construct: construct.into(),
        supported: SUPPORTED,
    }
}

fn type_error(construct: impl Into<String>, detail: impl Into<String>) -> ExprError {
    ExprError::Type {
        construct: construct.into(),
        detail: detail.into(),
    }
}

impl CompiledExpr {
    /// Parses and compiles `text` against the old table.
    pub fn compile(text: &str, old: &TableSchema) -> Result<CompiledExpr, ExprError> {
        let dialect = MySqlDialect {};
        let parse_err = |e: sqlparser::parser::ParserError| ExprError::Parse {
            text: text.to_string(),
            message: e.to_string(),
        };
        let mut parser = Parser::new(&dialect)
            .try_with_sql(text)
            .map_err(parse_err)?;
        let ast = parser.parse_expr().map_err(parse_err)?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(ExprError::Parse {
                text: text.to_string(),
                message: format!("unexpected {} after the expression", next.token),
            });
        }
        let mut ctx = Ctx {
            schema: old,
            literal_collation: Collation::from_name(old.flavor.default_utf8mb4_collation()),
            columns: Vec::new(),
        };
        let root = ctx.compile(&ast)?;
        let mut sql = String::new();
        write_sql(&root, &mut sql);
        ctx.columns.sort_unstable();
        ctx.columns.dedup();
        Ok(CompiledExpr {
            source: text.to_string(),
            sql,
            root,
            columns: ctx.columns,
            flavor: old.flavor,
        })
    }

    /// The expression as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression as SQL over the old table's quoted column names, fully parenthesized.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The result type.
    pub fn result_type(&self) -> &ExprType {
        &self.root.ty
    }

    /// Indexes of the old columns the expression reads (sorted, unique).
    pub fn referenced_columns(&self) -> &[usize] {
        &self.columns
    }

    /// `Some(index)` when the whole expression is one column reference.
    pub fn as_column(&self) -> Option<usize> {
        match &self.root.kind {
            Kind::Col { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// Evaluates the expression on an old row (all old columns, in ordinal order). Text
    /// results are UTF-8 ([`Value::Bytes`]), binary strings bytes, DECIMAL results text with
    /// the result type's scale.
    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        let cx = Cx {
            flavor: self.flavor,
        };
        let v = eval(&self.root, row, cx)?;
        // MySQL's CASE keeps each branch's own DECIMAL scale (`CASE .. THEN 1.5 ELSE 2 END`
        // gives `2`, not `2.0`); the stored value is the same, its text differs.
        if cx.flavor == Flavor::MySql
            && matches!(self.root.kind, Kind::Case { .. })
            && matches!(self.root.ty, ExprType::Decimal { .. })
        {
            return Ok(into_value(v));
        }
        let v = coerce(v, &self.root.ty, &self.root.ty, cx)?;
        Ok(into_value(v))
    }
}

struct Ctx<'s> {
    schema: &'s TableSchema,
    literal_collation: Collation,
    columns: Vec<usize>,
}

fn describe(e: &Expr) -> String {
    let text = e.to_string();
    let short: String = text.chars().take(40).collect();
    let what = match e {
        Expr::Subquery(_) | Expr::Exists { .. } => "subquery",
        Expr::In { .. } => "IN (...)",
        Expr::Between { .. } => "BETWEEN",
        Expr::Like { .. } | Expr::ILike { .. } => "LIKE",
        Expr::RLike { .. } | Expr::SimilarTo { .. } => "REGEXP",
        Expr::Cast { .. } => "CAST",
        Expr::Convert { .. } => "CONVERT",
        Expr::Collate { .. } => "COLLATE",
        Expr::Interval(_) => "INTERVAL",
        Expr::TypedString(_) => "typed literal",
        Expr::IsTrue(_) | Expr::IsFalse(_) | Expr::IsNotTrue(_) | Expr::IsNotFalse(_) => {
            "IS TRUE/FALSE"
        }
        Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => "IS [NOT] DISTINCT FROM",
        Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => "*",
        _ => "expression",
    };
    format!("{what} `{short}`")
}

impl Ctx<'_> {
    fn compile(&mut self, e: &Expr) -> Result<Node, ExprError> {
        match e {
            Expr::Identifier(ident) => self.column(&ident.value),
            Expr::CompoundIdentifier(parts) => Err(unsupported(format!(
                "qualified name `{}` (use the bare column name)",
                parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".")
            ))),
            Expr::Nested(inner) => self.compile(inner),
            Expr::Value(v) => self.literal(&v.value),
            Expr::Prefixed { prefix, value } => self.introduced(&prefix.value, value),
            Expr::UnaryOp { op, expr } => self.unary(*op, expr),
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right),
            Expr::IsNull(x) | Expr::IsNotNull(x) => {
                let x = self.compile(x)?;
                Ok(Node {
                    kind: Kind::IsNull {
                        x: Box::new(x),
                        negated: matches!(e, Expr::IsNotNull(_)),
                    },
                    ty: ExprType::Int { unsigned: false },
                })
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref()),
            Expr::Function(f) => self.function(f),
            other => Err(unsupported(describe(other))),
        }
    }

    fn column(&mut self, name: &str) -> Result<Node, ExprError> {
        let index = self
            .schema
            .column_index(name)
            .ok_or_else(|| ExprError::UnknownColumn {
                column: name.to_string(),
                available: self
                    .schema
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let col = &self.schema.columns[index];
        let text = |labels: bool| {
            ExprType::Text(TextType {
                binary: false,
                collation: Collation::from_name(
                    col.collation.as_deref().unwrap_or("utf8mb4_general_ci"),
                ),
                coercible: false,
                labels,
            })
        };
        let binary = ExprType::Text(TextType {
            binary: true,
            collation: Collation::binary(),
            coercible: false,
            labels: false,
        });
        let (read, ty) = match &col.data_type {
            ColumnType::Integer { unsigned, .. } => (
                ColRead::Int,
                ExprType::Int {
                    unsigned: *unsigned,
                },
            ),
            ColumnType::Year => (ColRead::Year, ExprType::Int { unsigned: true }),
            ColumnType::Decimal { scale, .. } => {
                (ColRead::Decimal, ExprType::Decimal { scale: *scale })
            }
            ColumnType::Float { .. } => (ColRead::Float, ExprType::Double),
            ColumnType::Double { .. } => (ColRead::Float, ExprType::Double),
            ColumnType::Char { charset, .. }
            | ColumnType::VarChar { charset, .. }
            | ColumnType::Text { charset, .. } => {
                let cs = Charset::from_name(charset);
                if !cs.is_supported() {
                    return Err(type_error(
                        format!("column {}", col.name),
                        format!("character set {charset} is not supported in expressions"),
                    ));
                }
                (ColRead::Text(cs), text(false))
            }
            ColumnType::Binary { len } => (ColRead::Binary { pad_to: Some(*len) }, binary),
            ColumnType::VarBinary { .. } | ColumnType::Blob { .. } => {
                (ColRead::Binary { pad_to: None }, binary)
            }
            ColumnType::Enum { labels } => (ColRead::Enum(labels.clone()), text(true)),
            ColumnType::Set { labels } => (ColRead::Set(labels.clone()), text(true)),
            ColumnType::Date => (ColRead::Temporal, ExprType::Date),
            ColumnType::DateTime { fsp } => (ColRead::Temporal, ExprType::DateTime { fsp: *fsp }),
            ColumnType::Timestamp { fsp } => (ColRead::Timestamp, ExprType::DateTime { fsp: *fsp }),
            ColumnType::Time { fsp } => (ColRead::Temporal, ExprType::Time { fsp: *fsp }),
            ColumnType::Json => (ColRead::Json, ExprType::Json),
            other => (ColRead::Opaque, ExprType::Column(other.clone())),
        };
        self.columns.push(index);
        Ok(Node {
            kind: Kind::Col {
                index,
                name: col.name.clone(),
                read,
                type_name: col.data_type.sql_name(),
            },
            ty,
        })
    }

    fn text_literal(&self, s: &str, binary: bool) -> Node {
        let sql = sql_string_literal(s.as_bytes(), binary);
        Node {
            kind: Kind::Lit {
                value: Lit::Str(s.as_bytes().to_vec()),
                sql,
            },
            ty: ExprType::Text(TextType {
                binary,
                collation: if binary {
                    Collation::binary()
                } else {
                    self.literal_collation.clone()
                },
                coercible: true,
                labels: false,
            }),
        }
    }

    fn literal(&self, v: &SqlValue) -> Result<Node, ExprError> {
        let lit = |value, sql: String, ty| Node {
            kind: Kind::Lit { value, sql },
            ty,
        };
        match v {
            SqlValue::Number(text, _) => {
                let bad = |detail: &str| ExprError::BadLiteral {
                    literal: text.clone(),
                    detail: detail.to_string(),
                };
                if text.contains(['e', 'E']) {
                    let f: f64 = text.parse().map_err(|_| bad("not a number"))?;
                    if !f.is_finite() {
                        return Err(bad("out of DOUBLE range"));
                    }
                    return Ok(lit(Lit::Dbl(f), text.clone(), ExprType::Double));
                }
                if !text.contains('.') {
                    if let Ok(i) = text.parse::<i64>() {
                        return Ok(lit(
                            Lit::Int(i),
                            text.clone(),
                            ExprType::Int { unsigned: false },
                        ));
                    }
                    if let Ok(u) = text.parse::<u64>() {
                        return Ok(lit(
                            Lit::UInt(u),
                            text.clone(),
                            ExprType::Int { unsigned: true },
                        ));
                    }
                }
                let d = decimal::parse(text).ok_or_else(|| bad("not a number"))?;
                let d = decimal::normalize_result(d)
                    .ok_or_else(|| bad("too many digits for DECIMAL"))?;
                let scale = decimal::scale_of(&d).clamp(0, 30) as u8;
                Ok(lit(Lit::Dec(d), text.clone(), ExprType::Decimal { scale }))
            }
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => {
                Ok(self.text_literal(s, false))
            }
            SqlValue::Boolean(b) => Ok(lit(
                Lit::Int(*b as i64),
                if *b { "TRUE" } else { "FALSE" }.into(),
                ExprType::Int { unsigned: false },
            )),
            SqlValue::Null => Ok(lit(Lit::Null, "NULL".into(), ExprType::Null)),
            SqlValue::Placeholder(p) => Err(unsupported(format!("placeholder `{p}`"))),
            SqlValue::HexStringLiteral(h) => Err(unsupported(format!("hex literal X'{h}'"))),
            other => Err(unsupported(format!("literal `{other}`"))),
        }
    }

    fn introduced(&self, prefix: &str, value: &Expr) -> Result<Node, ExprError> {
        let text = match value {
            Expr::Value(v) => match &v.value {
                SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Some(s),
                _ => None,
            },
            _ => None,
        };
        match (prefix.to_ascii_lowercase().as_str(), text) {
            ("_binary", Some(s)) => Ok(self.text_literal(s, true)),
            ("_utf8mb4", Some(s)) => Ok(self.text_literal(s, false)),
            _ => Err(unsupported(format!(
                "introducer `{prefix}` (only _utf8mb4 and _binary)"
            ))),
        }
    }

    fn unary(&mut self, op: UnaryOperator, e: &Expr) -> Result<Node, ExprError> {
        let x = self.compile(e)?;
        match op {
            UnaryOperator::Plus => {
                if !(x.ty.is_numeric() || x.ty == ExprType::Null) {
                    return Err(type_error(
                        "unary +",
                        format!("needs a number, got {}", x.ty.name()),
                    ));
                }
                Ok(x)
            }
            UnaryOperator::Minus => {
                let ty = match &x.ty {
                    ExprType::Int { .. } => ExprType::Int { unsigned: false },
                    ExprType::Decimal { .. } | ExprType::Double | ExprType::Null => x.ty.clone(),
                    other => {
                        return Err(type_error(
                            "unary -",
                            format!("needs a number, got {}", other.name()),
                        ));
                    }
                };
                Ok(Node {
                    kind: Kind::Neg(Box::new(x)),
                    ty,
                })
            }
            UnaryOperator::Not => {
                check_condition("NOT", &x)?;
                Ok(Node {
                    kind: Kind::Not(Box::new(x)),
                    ty: ExprType::Int { unsigned: false },
                })
            }
            other => Err(unsupported(format!("operator `{other}`"))),
        }
    }

    fn binary(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
    ) -> Result<Node, ExprError> {
        let arith = match op {
            BinaryOperator::Plus => Some(ArithOp::Add),
            BinaryOperator::Minus => Some(ArithOp::Sub),
            BinaryOperator::Multiply => Some(ArithOp::Mul),
            BinaryOperator::Divide => Some(ArithOp::Div),
            _ => None,
        };
        let cmp = match op {
            BinaryOperator::Eq => Some(CmpOp::Eq),
            BinaryOperator::NotEq => Some(CmpOp::Ne),
            BinaryOperator::Lt => Some(CmpOp::Lt),
            BinaryOperator::LtEq => Some(CmpOp::Le),
            BinaryOperator::Gt => Some(CmpOp::Gt),
            BinaryOperator::GtEq => Some(CmpOp::Ge),
            _ => None,
        };
        let logic = matches!(op, BinaryOperator::And | BinaryOperator::Or);
        if arith.is_none() && cmp.is_none() && !logic {
            return Err(match op {
                BinaryOperator::StringConcat => {
                    unsupported("operator `||` (it is OR in MySQL; use OR or CONCAT())")
                }
                other => unsupported(format!("operator `{other}`")),
            });
        }
        let l = self.compile(left)?;
        let r = self.compile(right)?;
        if let Some(op) = arith {
            return arith_node(op, l, r);
        }
        if let Some(op) = cmp {
            let (l, r, mode) = self.comparison(op.sql(), l, r)?;
            return Ok(Node {
                kind: Kind::Cmp {
                    op,
                    l: Box::new(l),
                    r: Box::new(r),
                    mode,
                },
                ty: ExprType::Int { unsigned: false },
            });
        }
        let name = if matches!(op, BinaryOperator::And) {
            "AND"
        } else {
            "OR"
        };
        check_condition(name, &l)?;
        check_condition(name, &r)?;
        let kind = if name == "AND" {
            Kind::And(Box::new(l), Box::new(r))
        } else {
            Kind::Or(Box::new(l), Box::new(r))
        };
        Ok(Node {
            kind,
            ty: ExprType::Int { unsigned: false },
        })
    }

    /// Picks how `l` and `r` compare; may turn a string literal into a date/time literal.
    fn comparison(&self, op: &str, l: Node, r: Node) -> Result<(Node, Node, CmpMode), ExprError> {
        use ExprType as T;
        let err = |l: &Node, r: &Node| {
            type_error(
                format!("comparison {op}"),
                format!("cannot compare {} with {}", l.ty.name(), r.ty.name()),
            )
        };
        let mode = match (&l.ty, &r.ty) {
            (T::Null, _) | (_, T::Null) => CmpMode::AlwaysNull,
            (T::Text(a), T::Text(b)) => CmpMode::Text(text_collation(a, b)),
            (T::Text(t), n) | (n, T::Text(t)) if n.is_numeric() => {
                if t.labels {
                    return Err(type_error(
                        format!("comparison {op}"),
                        "ENUM/SET columns compare with their labels as strings, not with numbers",
                    ));
                }
                CmpMode::Double
            }
            (a, b) if a.is_numeric() && b.is_numeric() => {
                if *a == T::Double || *b == T::Double {
                    CmpMode::Double
                } else if matches!(a, T::Decimal { .. }) || matches!(b, T::Decimal { .. }) {
                    CmpMode::Decimal
                } else {
                    CmpMode::Int
                }
            }
            (T::Date | T::DateTime { .. }, T::Date | T::DateTime { .. }) => CmpMode::DateTime,
            (T::Time { .. }, T::Time { .. }) => CmpMode::Time,
            (t, T::Text(_)) if t.is_temporal() => {
                let (r, mode) = temporal_literal(t, r, self.schema.flavor)?;
                return Ok((l, r, mode));
            }
            (T::Text(_), t) if t.is_temporal() => {
                let (l, mode) = temporal_literal(t, l, self.schema.flavor)?;
                return Ok((l, r, mode));
            }
            _ => return Err(err(&l, &r)),
        };
        Ok((l, r, mode))
    }

    fn case(
        &mut self,
        operand: Option<&Expr>,
        conditions: &[sqlparser::ast::CaseWhen],
        else_result: Option<&Expr>,
    ) -> Result<Node, ExprError> {
        let operand = match operand {
            Some(o) => Some(self.compile(o)?),
            None => None,
        };
        let mut whens = Vec::with_capacity(conditions.len());
        for cw in conditions {
            let cond = self.compile(&cw.condition)?;
            let result = self.compile(&cw.result)?;
            let (cond, mode) = match &operand {
                Some(x) => {
                    let (_, cond, mode) = self.comparison("CASE .. WHEN", x.clone(), cond)?;
                    (cond, mode)
                }
                None => {
                    check_condition("CASE WHEN", &cond)?;
                    (cond, CmpMode::AlwaysNull)
                }
            };
            whens.push(When { cond, mode, result });
        }
        let otherwise = match else_result {
            Some(e) => Some(Box::new(self.compile(e)?)),
            None => None,
        };
        let mut types: Vec<&ExprType> = whens.iter().map(|w| &w.result.ty).collect();
        if let Some(o) = &otherwise {
            types.push(&o.ty);
        }
        let ty = aggregate("CASE", &types, &self.literal_collation)?;
        Ok(Node {
            kind: Kind::Case {
                operand: operand.map(Box::new),
                whens,
                otherwise,
            },
            ty,
        })
    }

    fn function(&mut self, f: &sqlparser::ast::Function) -> Result<Node, ExprError> {
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(i)] => i.value.to_ascii_uppercase(),
            _ => return Err(unsupported(format!("function `{}`", f.name))),
        };
        const KNOWN: &[&str] = &["COALESCE", "IFNULL", "CONCAT", "UPPER", "LOWER"];
        if !KNOWN.contains(&name.as_str()) {
            return Err(unsupported(format!("function {name}")));
        }
        let plain = !f.uses_odbc_syntax
            && matches!(f.parameters, FunctionArguments::None)
            && f.filter.is_none()
            && f.null_treatment.is_none()
            && f.over.is_none()
            && f.within_group.is_empty();
        let list = match &f.args {
            FunctionArguments::List(list)
                if plain && list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                list
            }
            FunctionArguments::None => {
                return Err(unsupported(format!("{name} without parentheses")))
            }
            _ => return Err(unsupported(format!("{name} with modifiers"))),
        };
        let mut args = Vec::with_capacity(list.args.len());
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(self.compile(e)?),
                other => return Err(unsupported(format!("argument `{other}` of {name}"))),
            }
        }
        let count = |expected: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ExprError::ArgCount {
                    function: name.clone(),
                    expected: expected.to_string(),
                    found: args.len(),
                })
            }
        };
        match name.as_str() {
            "COALESCE" | "IFNULL" => {
                if name == "IFNULL" {
                    count("2", args.len() == 2)?;
                } else {
                    count("at least 1", !args.is_empty())?;
                }
                let types: Vec<&ExprType> = args.iter().map(|a| &a.ty).collect();
                let ty = aggregate(&name, &types, &self.literal_collation)?;
                Ok(Node {
                    kind: Kind::Coalesce {
                        function: if name == "IFNULL" {
                            "IFNULL"
                        } else {
                            "COALESCE"
                        },
                        args,
                    },
                    ty,
                })
            }
            "CONCAT" => {
                count("at least 1", !args.is_empty())?;
                let mut binary = false;
                let mut collation: Option<(Collation, bool)> = None;
                for a in &args {
                    check_textual("CONCAT", &a.ty)?;
                    if let ExprType::Text(t) = &a.ty {
                        binary |= t.binary;
                        match &collation {
                            Some((_, false)) => {}
                            _ if !t.coercible || collation.is_none() => {
                                collation = Some((t.collation.clone(), t.coercible));
                            }
                            _ => {}
                        }
                    }
                }
                let (collation, coercible) =
                    collation.unwrap_or((self.literal_collation.clone(), true));
                let ty = ExprType::Text(TextType {
                    binary,
                    collation: if binary {
                        Collation::binary()
                    } else {
                        collation
                    },
                    coercible,
                    labels: false,
                });
                Ok(Node {
                    kind: Kind::Concat(args),
                    ty,
                })
            }
            _ => {
                count("1", args.len() == 1)?;
                let x = args.remove(0);
                check_textual(&name, &x.ty)?;
                let ty = match &x.ty {
                    ExprType::Text(t) => ExprType::Text(TextType {
                        labels: false,
                        ..t.clone()
                    }),
                    ExprType::Null => ExprType::Null,
                    _ => ExprType::Text(TextType {
                        binary: false,
                        collation: self.literal_collation.clone(),
                        coercible: true,
                        labels: false,
                    }),
                };
                Ok(Node {
                    kind: Kind::ChangeCase {
                        x: Box::new(x),
                        upper: name == "UPPER",
                    },
                    ty,
                })
            }
        }
    }
}

/// The collation of a text comparison: binary wins, then the non-literal side's, then (two
/// columns of different character sets) the Unicode one, which the other is converted to.
fn text_collation(a: &TextType, b: &TextType) -> Collation {
    if a.binary || b.binary {
        return Collation::binary();
    }
    if a.coercible && !b.coercible {
        return b.collation.clone();
    }
    if b.coercible && !a.coercible {
        return a.collation.clone();
    }
    let charset = |c: &Collation| c.name.split('_').next().unwrap_or("").to_string();
    let unicode = |c: &Collation| charset(c).starts_with("utf8");
    if charset(&a.collation) != charset(&b.collation)
        && unicode(&a.collation) != unicode(&b.collation)
    {
        return if unicode(&a.collation) {
            a.collation.clone()
        } else {
            b.collation.clone()
        };
    }
    if a.collation.binary || b.collation.binary {
        // Same coercibility, one `_bin`: MySQL uses the `_bin` collation.
        return if a.collation.binary {
            a.collation.clone()
        } else {
            b.collation.clone()
        };
    }
    a.collation.clone()
}

/// Turns a string literal compared with a temporal into a temporal literal.
fn temporal_literal(
    t: &ExprType,
    node: Node,
    flavor: Flavor,
) -> Result<(Node, CmpMode), ExprError> {
    let Kind::Lit {
        value: Lit::Str(bytes),
        sql,
    } = &node.kind
    else {
        return Err(type_error(
            "comparison",
            format!(
                "a {} can be compared only with dates/times or a literal",
                t.name()
            ),
        ));
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let bad = |detail: &str| ExprError::BadLiteral {
        literal: text.clone(),
        detail: detail.to_string(),
    };
    if let ExprType::Time { .. } = t {
        let v = temporal::parse_time(&text).ok_or_else(|| bad("not a time (hh:mm:ss[.ffffff])"))?;
        // MySQL stores the literal as a value of the TIME operand's precision first (rounding
        // the fraction): '00:00:00.5' equals a TIME(0) '00:00:01' there, not on MariaDB.
        let v = match (flavor, t) {
            (Flavor::MySql, ExprType::Time { fsp }) => round_time(v, *fsp),
            _ => v,
        };
        return Ok((
            Node {
                kind: Kind::Lit {
                    value: Lit::Val(v),
                    sql: sql.clone(),
                },
                ty: ExprType::Time { fsp: 6 },
            },
            CmpMode::Time,
        ));
    }
    let p = temporal::parse_datetime(&text)
        .ok_or_else(|| bad("not a date (YYYY-MM-DD[ hh:mm:ss[.ffffff]])"))?;
    Ok((
        Node {
            kind: Kind::Lit {
                value: Lit::Val(p.to_datetime_value()),
                sql: sql.clone(),
            },
            ty: ExprType::DateTime { fsp: 6 },
        },
        CmpMode::DateTime,
    ))
}

/// A TIME value rounded (half away from zero) to `fsp` fractional digits.
fn round_time(v: Value, fsp: u8) -> Value {
    let Value::Time {
        negative,
        hours,
        minutes,
        seconds,
        micros,
    } = v
    else {
        return v;
    };
    let unit = 10i64.pow(6 - u32::from(fsp.min(6)));
    let total = temporal::time_micros(false, hours, minutes, seconds, micros);
    let total = (total + unit / 2) / unit * unit;
    let secs = total / 1_000_000;
    Value::Time {
        negative: negative && total != 0,
        hours: (secs / 3600) as u16,
        minutes: (secs / 60 % 60) as u8,
        seconds: (secs % 60) as u8,
        micros: (total % 1_000_000) as u32,
    }
}

fn check_condition(construct: &str, n: &Node) -> Result<(), ExprError> {
    if n.ty.is_numeric() || n.ty == ExprType::Null {
        Ok(())
    } else {
        Err(type_error(
            construct,
            format!(
                "needs a condition or a number, got {} (compare it explicitly)",
                n.ty.name()
            ),
        ))
    }
}

fn check_textual(construct: &str, t: &ExprType) -> Result<(), ExprError> {
    if matches!(t, ExprType::Column(_)) {
        return Err(type_error(
            construct,
            format!("cannot turn {} into text", t.name()),
        ));
    }
    Ok(())
}

fn arith_node(op: ArithOp, l: Node, r: Node) -> Result<Node, ExprError> {
    use ExprType as T;
    for side in [&l, &r] {
        if !(side.ty.is_numeric() || side.ty == T::Null) {
            return Err(type_error(
                format!("operator {}", op.sql()),
                format!("needs numbers, got {}", side.ty.name()),
            ));
        }
    }
    let scale = |t: &T| match t {
        T::Decimal { scale } => *scale,
        _ => 0,
    };
    let ty = match (&l.ty, &r.ty) {
        (T::Null, T::Null) => T::Null,
        (a, b) if *a == T::Double || *b == T::Double => T::Double,
        (a, b) if op == ArithOp::Div => {
            let _ = b;
            T::Decimal {
                scale: (scale(a) as u32 + 4).min(30) as u8,
            }
        }
        (T::Null, t) | (t, T::Null) => t.clone(),
        (T::Int { unsigned: a }, T::Int { unsigned: b }) => T::Int { unsigned: *a || *b },
        (a, b) => {
            let s = match op {
                ArithOp::Mul => (scale(a) as u32 + scale(b) as u32).min(30),
                _ => scale(a).max(scale(b)) as u32,
            };
            T::Decimal { scale: s as u8 }
        }
    };
    Ok(Node {
        kind: Kind::Arith {
            op,
            l: Box::new(l),
            r: Box::new(r),
        },
        ty,
    })
}

/// The result type of CASE / COALESCE / IFNULL branches (see the module docs).
fn aggregate(
    construct: &str,
    types: &[&ExprType],
    literal: &Collation,
) -> Result<ExprType, ExprError> {
    use ExprType as T;
    let non_null: Vec<&ExprType> = types.iter().copied().filter(|t| **t != T::Null).collect();
    let Some(first) = non_null.first() else {
        return Ok(T::Null);
    };
    if non_null.iter().all(|t| t == first) {
        return Ok(match first {
            T::Text(t) => T::Text(TextType {
                labels: false,
                ..t.clone()
            }),
            other => (*other).clone(),
        });
    }
    if let Some(T::Column(c)) = non_null.iter().find(|t| matches!(t, T::Column(_))) {
        return Err(type_error(
            construct,
            format!(
                "a {} column can only be combined with columns of the same type",
                c.sql_name()
            ),
        ));
    }
    let texts: Vec<&TextType> = non_null
        .iter()
        .filter_map(|t| match t {
            T::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    let any_temporal = non_null.iter().any(|t| t.is_temporal());
    let any_json = non_null.iter().any(|t| **t == T::Json);
    let all_temporal = non_null.iter().all(|t| t.is_temporal());
    let as_text = |texts: &[&TextType]| {
        let binary = texts.iter().any(|t| t.binary);
        let chosen = texts
            .iter()
            .find(|t| !t.coercible)
            .or_else(|| texts.first());
        T::Text(TextType {
            binary,
            collation: if binary {
                Collation::binary()
            } else {
                chosen.map_or_else(|| literal.clone(), |t| t.collation.clone())
            },
            coercible: chosen.is_none_or(|t| t.coercible),
            labels: false,
        })
    };
    if !texts.is_empty() || any_json || (any_temporal && !all_temporal) {
        return Ok(as_text(&texts));
    }
    if all_temporal {
        let max_fsp = non_null
            .iter()
            .map(|t| match t {
                T::DateTime { fsp } | T::Time { fsp } => *fsp,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let has_time = non_null.iter().any(|t| matches!(t, T::Time { .. }));
        if has_time {
            return Ok(as_text(&[]));
        }
        return Ok(T::DateTime { fsp: max_fsp });
    }
    // All numeric.
    if non_null.iter().any(|t| **t == T::Double) {
        return Ok(T::Double);
    }
    let max_scale = non_null
        .iter()
        .map(|t| match t {
            T::Decimal { scale } => *scale,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let any_decimal = non_null.iter().any(|t| matches!(t, T::Decimal { .. }));
    let signed = non_null.iter().any(|t| **t == T::Int { unsigned: false });
    let unsigned = non_null.iter().any(|t| **t == T::Int { unsigned: true });
    if any_decimal || (signed && unsigned) {
        return Ok(T::Decimal { scale: max_scale });
    }
    Ok(T::Int { unsigned })
}

/// A string literal in SQL: `_utf8mb4'...'` (or `_binary'...'`), with quotes doubled; as hex
/// (`_utf8mb4 X'...'`) when it holds a backslash or control characters, so the text reads the
/// same whatever `sql_mode` (NO_BACKSLASH_ESCAPES) says.
fn sql_string_literal(bytes: &[u8], binary: bool) -> String {
    let introducer = if binary { "_binary" } else { "_utf8mb4" };
    let plain = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(|c| c == '\\' || c.is_control()));
    match plain {
        Some(s) => format!("{introducer}'{}'", s.replace('\'', "''")),
        None => {
            let mut out = format!("{introducer} X'");
            for b in bytes {
                out.push_str(&format!("{b:02X}"));
            }
            out.push('\'');
            out
        }
    }
}

fn write_sql(n: &Node, out: &mut String) {
    match &n.kind {
        Kind::Col { name, .. } => out.push_str(&quote_ident(name)),
        Kind::Lit { sql, .. } => out.push_str(sql),
        Kind::Arith { op, l, r } => {
            out.push('(');
            write_sql(l, out);
            out.push(' ');
            out.push_str(op.sql());
            out.push(' ');
            write_sql(r, out);
            out.push(')');
        }
        Kind::Neg(x) => {
            out.push_str("(-");
            write_sql(x, out);
            out.push(')');
        }
        Kind::Cmp { op, l, r, .. } => {
            out.push('(');
            write_sql(l, out);
            out.push(' ');
            out.push_str(op.sql());
            out.push(' ');
            write_sql(r, out);
            out.push(')');
        }
        Kind::And(l, r) | Kind::Or(l, r) => {
            out.push('(');
            write_sql(l, out);
            out.push_str(if matches!(n.kind, Kind::And(..)) {
                " AND "
            } else {
                " OR "
            });
            write_sql(r, out);
            out.push(')');
        }
        Kind::Not(x) => {
            out.push_str("(NOT ");
            write_sql(x, out);
            out.push(')');
        }
        Kind::IsNull { x, negated } => {
            out.push('(');
            write_sql(x, out);
            out.push_str(if *negated {
                " IS NOT NULL)"
            } else {
                " IS NULL)"
            });
        }
        Kind::Case {
            operand,
            whens,
            otherwise,
        } => {
            out.push_str("CASE");
            if let Some(x) = operand {
                out.push(' ');
                write_sql(x, out);
            }
            for w in whens {
                out.push_str(" WHEN ");
                write_sql(&w.cond, out);
                out.push_str(" THEN ");
                write_sql(&w.result, out);
            }
            if let Some(e) = otherwise {
                out.push_str(" ELSE ");
                write_sql(e, out);
            }
            out.push_str(" END");
        }
        Kind::Coalesce { function, args } => write_call(function, args, out),
        Kind::Concat(args) => write_call("CONCAT", args, out),
        Kind::ChangeCase { x, upper } => write_call(
            if *upper { "UPPER" } else { "LOWER" },
            std::slice::from_ref(x.as_ref()),
            out,
        ),
    }
}

fn write_call(name: &str, args: &[Node], out: &mut String) {
    out.push_str(name);
    out.push('(');
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_sql(a, out);
    }
    out.push(')');
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn read_col<'a>(
    v: &'a Value,
    read: &'a ColRead,
    name: &str,
    type_name: &str,
) -> Result<Ev<'a>, EvalError> {
    let unexpected = || EvalError::UnexpectedValue {
        column: name.to_string(),
        value: format!("{v:?}").chars().take(64).collect(),
        expected: type_name.to_string(),
    };
    if v.is_null() {
        return Ok(Ev::Null);
    }
    Ok(match (read, v) {
        (ColRead::Int, Value::Int(i)) => Ev::Int(*i),
        (ColRead::Int, Value::UInt(u)) => Ev::UInt(*u),
        (ColRead::Year, Value::Year(y)) => Ev::UInt(*y as u64),
        (ColRead::Decimal, Value::Decimal(s)) => {
            Ev::Dec(Cow::Owned(decimal::parse(s).ok_or_else(unexpected)?))
        }
        (ColRead::Float, Value::Float(f)) => Ev::Dbl(*f as f64),
        (ColRead::Float, Value::Double(f)) => Ev::Dbl(*f),
        (ColRead::Text(cs), Value::Bytes(b)) => match cs.decode(b) {
            Ok(Cow::Borrowed(s)) => Ev::Str(Cow::Borrowed(s.as_bytes())),
            Ok(Cow::Owned(s)) => Ev::Str(Cow::Owned(s.into_bytes())),
            Err(source) => {
                return Err(EvalError::Charset {
                    column: name.to_string(),
                    source,
                })
            }
        },
        (ColRead::Binary { pad_to }, Value::Bytes(b)) => match pad_to {
            Some(n) if b.len() < *n as usize => {
                let mut padded = b.clone();
                padded.resize(*n as usize, 0);
                Ev::Str(Cow::Owned(padded))
            }
            _ => Ev::Str(Cow::Borrowed(b)),
        },
        (ColRead::Enum(_), Value::Enum(0)) => Ev::Str(Cow::Borrowed(b"")),
        (ColRead::Enum(labels), Value::Enum(i)) => Ev::Str(Cow::Borrowed(
            labels
                .get(*i as usize - 1)
                .ok_or_else(unexpected)?
                .as_bytes(),
        )),
        (ColRead::Set(labels), Value::Set(mask)) => {
            let mut out = Vec::new();
            for (bit, l) in labels.iter().enumerate() {
                if mask & (1u64 << bit) != 0 {
                    if !out.is_empty() {
                        out.push(b',');
                    }
                    out.extend_from_slice(l.as_bytes());
                }
            }
            Ev::Str(Cow::Owned(out))
        }
        (ColRead::Temporal, Value::Date { .. } | Value::DateTime { .. } | Value::Time { .. }) => {
            Ev::Val(Cow::Borrowed(v))
        }
        (ColRead::Timestamp, Value::Timestamp { secs, micros }) => Ev::Val(Cow::Owned(
            temporal::timestamp_to_parts(*secs, *micros).to_datetime_value(),
        )),
        (ColRead::Json, Value::Json(_) | Value::JsonSql(_)) => Ev::Val(Cow::Borrowed(v)),
        (ColRead::Opaque, _) => Ev::Val(Cow::Borrowed(v)),
        _ => return Err(unexpected()),
    })
}

fn lit_ev(l: &Lit) -> Ev<'_> {
    match l {
        Lit::Null => Ev::Null,
        Lit::Int(i) => Ev::Int(*i),
        Lit::UInt(u) => Ev::UInt(*u),
        Lit::Dec(d) => Ev::Dec(Cow::Borrowed(d)),
        Lit::Dbl(f) => Ev::Dbl(*f),
        Lit::Str(s) => Ev::Str(Cow::Borrowed(s)),
        Lit::Val(v) => Ev::Val(Cow::Borrowed(v)),
    }
}

fn eval<'a>(n: &'a Node, row: &'a [Value], cx: Cx) -> Result<Ev<'a>, EvalError> {
    match &n.kind {
        Kind::Col {
            index,
            name,
            read,
            type_name,
        } => {
            let v = row.get(*index).ok_or(EvalError::RowTooShort {
                index: *index,
                len: row.len(),
            })?;
            read_col(v, read, name, type_name)
        }
        Kind::Lit { value, .. } => Ok(lit_ev(value)),
        Kind::Arith { op, l, r } => {
            let a = eval(l, row, cx)?;
            if a.is_null() {
                return Ok(Ev::Null);
            }
            let b = eval(r, row, cx)?;
            if b.is_null() {
                return Ok(Ev::Null);
            }
            arith(*op, a, b, &n.ty, cx)
        }
        Kind::Neg(x) => {
            let v = eval(x, row, cx)?;
            Ok(match v {
                Ev::Null => Ev::Null,
                Ev::Int(i) => Ev::Int(
                    i.checked_neg()
                        .ok_or_else(|| overflow("BIGINT", "unary -"))?,
                ),
                Ev::UInt(u) => {
                    let neg = -(u as i128);
                    Ev::Int(i64::try_from(neg).map_err(|_| overflow("BIGINT", "unary -"))?)
                }
                Ev::Dec(d) => Ev::Dec(Cow::Owned(-d.into_owned())),
                Ev::Dbl(f) => Ev::Dbl(-f),
                other => other,
            })
        }
        Kind::Cmp { op, l, r, mode } => {
            let a = observe(eval(l, row, cx)?, &l.ty, cx);
            let b = observe(eval(r, row, cx)?, &r.ty, cx);
            Ok(match compare(mode, &a, &b) {
                None => Ev::Null,
                Some(o) => Ev::Int(op.test(o) as i64),
            })
        }
        Kind::And(l, r) => {
            let a = truth(&eval(l, row, cx)?);
            if a == Some(false) {
                return Ok(Ev::Int(0));
            }
            let b = truth(&eval(r, row, cx)?);
            Ok(match (a, b) {
                (_, Some(false)) => Ev::Int(0),
                (Some(true), Some(true)) => Ev::Int(1),
                _ => Ev::Null,
            })
        }
        Kind::Or(l, r) => {
            let a = truth(&eval(l, row, cx)?);
            if a == Some(true) {
                return Ok(Ev::Int(1));
            }
            let b = truth(&eval(r, row, cx)?);
            Ok(match (a, b) {
                (_, Some(true)) => Ev::Int(1),
                (Some(false), Some(false)) => Ev::Int(0),
                _ => Ev::Null,
            })
        }
        Kind::Not(x) => Ok(match truth(&eval(x, row, cx)?) {
            None => Ev::Null,
            Some(t) => Ev::Int((!t) as i64),
        }),
        Kind::IsNull { x, negated } => {
            let v = eval(x, row, cx)?;
            Ok(Ev::Int((v.is_null() != *negated) as i64))
        }
        Kind::Case {
            operand,
            whens,
            otherwise,
        } => {
            let x = match operand {
                Some(o) => Some(observe(eval(o, row, cx)?, &o.ty, cx)),
                None => None,
            };
            for w in whens {
                let c = observe(eval(&w.cond, row, cx)?, &w.cond.ty, cx);
                let hit = match &x {
                    Some(x) => compare(&w.mode, x, &c) == Some(Ordering::Equal),
                    None => truth(&c) == Some(true),
                };
                if hit {
                    return case_result(eval(&w.result, row, cx)?, &w.result.ty, &n.ty, cx);
                }
            }
            match otherwise {
                Some(e) => case_result(eval(e, row, cx)?, &e.ty, &n.ty, cx),
                None => Ok(Ev::Null),
            }
        }
        Kind::Coalesce { args, .. } => {
            for a in args {
                let v = eval(a, row, cx)?;
                if !v.is_null() {
                    return coerce(v, &a.ty, &n.ty, cx);
                }
            }
            Ok(Ev::Null)
        }
        Kind::Concat(args) => {
            let mut out = Vec::new();
            for a in args {
                let v = eval(a, row, cx)?;
                if v.is_null() {
                    return Ok(Ev::Null);
                }
                out.extend_from_slice(&arg_text(&v, a, cx));
            }
            Ok(Ev::Str(Cow::Owned(out)))
        }
        Kind::ChangeCase { x, upper } => {
            let v = eval(x, row, cx)?;
            if v.is_null() {
                return Ok(Ev::Null);
            }
            let bytes = arg_text(&v, x, cx);
            if matches!(&n.ty, ExprType::Text(t) if t.binary) {
                return Ok(Ev::Str(Cow::Owned(bytes.into_owned())));
            }
            let text = String::from_utf8_lossy(&bytes);
            // latin1's case tables know only ISO 8859-1 letters: 'ÿ', 'Œ', 'Š' stay as they are.
            let latin1 =
                matches!(&x.ty, ExprType::Text(t) if t.collation.name.starts_with("latin1_"));
            let mapped: String = text
                .chars()
                .map(|c| match (*upper, latin1) {
                    (true, true) => latin1_upper(c),
                    (false, true) => latin1_lower(c),
                    (true, false) => simple_upper(c),
                    (false, false) => simple_lower(c),
                })
                .collect();
            Ok(Ev::Str(Cow::Owned(mapped.into_bytes())))
        }
    }
}

fn overflow(kind: &'static str, expr: impl Into<String>) -> EvalError {
    EvalError::Overflow {
        kind,
        expr: expr.into(),
    }
}

fn truth(v: &Ev) -> Option<bool> {
    match v {
        Ev::Null => None,
        Ev::Int(i) => Some(*i != 0),
        Ev::UInt(u) => Some(*u != 0),
        Ev::Dec(d) => Some(!d.is_zero()),
        Ev::Dbl(f) => Some(*f != 0.0),
        Ev::Str(s) => Some(text_to_f64(s) != 0.0),
        Ev::Val(_) => Some(true),
    }
}

fn to_i128(v: &Ev) -> i128 {
    match v {
        Ev::Int(i) => *i as i128,
        Ev::UInt(u) => *u as i128,
        Ev::Dec(d) => d.to_i128().unwrap_or(0),
        Ev::Dbl(f) => *f as i128,
        _ => 0,
    }
}

fn to_dec<'a>(v: &'a Ev) -> Cow<'a, BigDecimal> {
    match v {
        Ev::Int(i) => Cow::Owned(BigDecimal::from(*i)),
        Ev::UInt(u) => Cow::Owned(BigDecimal::from(*u)),
        Ev::Dec(d) => Cow::Borrowed(d.as_ref()),
        Ev::Dbl(f) => Cow::Owned(decimal::parse(&format!("{f:e}")).unwrap_or_default()),
        _ => Cow::Owned(BigDecimal::zero()),
    }
}

fn to_f64(v: &Ev) -> f64 {
    match v {
        Ev::Int(i) => *i as f64,
        Ev::UInt(u) => *u as f64,
        Ev::Dec(d) => decimal::to_f64(d),
        Ev::Dbl(f) => *f,
        Ev::Str(s) => text_to_f64(s),
        _ => 0.0,
    }
}

/// The numeric prefix of text as a double, as MySQL reads text in a numeric context
/// (`' 12abc'` is 12, `'abc'` is 0).
fn text_to_f64(s: &[u8]) -> f64 {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let s = &s[start..];
    match decimal::scan_number(s) {
        Some((len, _)) => std::str::from_utf8(&s[..len])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0),
        None => 0.0,
    }
}

fn arith<'a>(
    op: ArithOp,
    a: Ev<'a>,
    b: Ev<'a>,
    ty: &ExprType,
    cx: Cx,
) -> Result<Ev<'a>, EvalError> {
    let what = || format!("{:?} {} {:?}", DisplayEv(&a), op.sql(), DisplayEv(&b));
    match ty {
        ExprType::Double => {
            let (x, y) = (to_f64(&a), to_f64(&b));
            let r = match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => {
                    if y == 0.0 {
                        return Ok(Ev::Null);
                    }
                    x / y
                }
            };
            if !r.is_finite() {
                return Err(overflow("DOUBLE", what()));
            }
            Ok(Ev::Dbl(r))
        }
        ExprType::Decimal { scale } => {
            let (x, y) = (to_dec(&a), to_dec(&b));
            // MySQL rounds every result to its type's scale. MariaDB keeps the exact result
            // (a quotient truncated at whole 9-digit words) and rounds only where the value is
            // observed: compared, printed, stored (see `observe`).
            let mariadb = cx.flavor == Flavor::MariaDb;
            let r = match op {
                ArithOp::Add => x.as_ref() + y.as_ref(),
                ArithOp::Sub => x.as_ref() - y.as_ref(),
                ArithOp::Mul => x.as_ref() * y.as_ref(),
                ArithOp::Div if mariadb => {
                    let places = decimal::mariadb_quotient_scale(
                        decimal::scale_of(&x),
                        decimal::scale_of(&y),
                    );
                    match decimal::div_truncated(&x, &y, places) {
                        Some(q) if q.is_zero() => BigDecimal::zero(),
                        Some(q) => q,
                        None => return Ok(Ev::Null),
                    }
                }
                ArithOp::Div => match decimal::div(&x, &y, *scale as i64) {
                    Some(q) => q,
                    None => return Ok(Ev::Null),
                },
            };
            let r = decimal::normalize_result(r).ok_or_else(|| overflow("DECIMAL", what()))?;
            if mariadb {
                return Ok(Ev::Dec(Cow::Owned(r)));
            }
            Ok(Ev::Dec(Cow::Owned(decimal::round(&r, *scale as i64))))
        }
        ExprType::Int { unsigned } => {
            let (x, y) = (to_i128(&a), to_i128(&b));
            let r = match op {
                ArithOp::Add => x.checked_add(y),
                ArithOp::Sub => x.checked_sub(y),
                ArithOp::Mul => x.checked_mul(y),
                ArithOp::Div => None,
            };
            let kind = if *unsigned {
                "BIGINT UNSIGNED"
            } else {
                "BIGINT"
            };
            let r = r.ok_or_else(|| overflow(kind, what()))?;
            if *unsigned {
                u64::try_from(r)
                    .map(Ev::UInt)
                    .map_err(|_| overflow(kind, what()))
            } else {
                i64::try_from(r)
                    .map(Ev::Int)
                    .map_err(|_| overflow(kind, what()))
            }
        }
        _ => Ok(Ev::Null),
    }
}

struct DisplayEv<'x, 'a>(&'x Ev<'a>);

impl std::fmt::Debug for DisplayEv<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Ev::Null => write!(f, "NULL"),
            Ev::Int(i) => write!(f, "{i}"),
            Ev::UInt(u) => write!(f, "{u}"),
            Ev::Dec(d) => write!(f, "{}", decimal::format(d)),
            Ev::Dbl(x) => write!(f, "{}", format_double(*x)),
            Ev::Str(s) => write!(f, "'{}'", String::from_utf8_lossy(s)),
            Ev::Val(v) => write!(f, "{v:?}"),
        }
    }
}

fn compare(mode: &CmpMode, a: &Ev, b: &Ev) -> Option<Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    match mode {
        CmpMode::AlwaysNull => None,
        CmpMode::Int => Some(to_i128(a).cmp(&to_i128(b))),
        CmpMode::Decimal => Some(to_dec(a).as_ref().cmp(to_dec(b).as_ref())),
        CmpMode::Double => to_f64(a).partial_cmp(&to_f64(b)),
        CmpMode::Text(coll) => {
            let (Ev::Str(x), Ev::Str(y)) = (a, b) else {
                return None;
            };
            if coll.binary {
                let (x, y) = if coll.pad_space {
                    (trim_spaces(x), trim_spaces(y))
                } else {
                    (x.as_ref(), y.as_ref())
                };
                return Some(x.cmp(y));
            }
            Some(coll.compare(&String::from_utf8_lossy(x), &String::from_utf8_lossy(y)))
        }
        CmpMode::DateTime => {
            let (Ev::Val(x), Ev::Val(y)) = (a, b) else {
                return None;
            };
            let px: Option<DateTimeParts> = temporal::value_to_parts(x);
            let py = temporal::value_to_parts(y);
            Some(px?.cmp(&py?))
        }
        CmpMode::Time => {
            let t = |v: &Value| match *v {
                Value::Time {
                    negative,
                    hours,
                    minutes,
                    seconds,
                    micros,
                } => Some(temporal::time_micros(
                    negative, hours, minutes, seconds, micros,
                )),
                _ => None,
            };
            let (Ev::Val(x), Ev::Val(y)) = (a, b) else {
                return None;
            };
            Some(t(x)?.cmp(&t(y)?))
        }
    }
}

fn trim_spaces(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    &b[..end]
}

/// A value as text bytes (UTF-8, or the bytes of a binary string), as MySQL converts it.
/// `UPPER` of one character in latin1 (ISO 8859-1 letters only, as the server's tables).
fn latin1_upper(c: char) -> char {
    match c {
        'a'..='z' => c.to_ascii_uppercase(),
        '\u{E0}'..='\u{FE}' if c != '\u{F7}' => char::from_u32(c as u32 - 0x20).unwrap_or(c),
        _ => c,
    }
}

/// `LOWER` of one character in latin1 (ISO 8859-1 letters only, as the server's tables).
fn latin1_lower(c: char) -> char {
    match c {
        'A'..='Z' => c.to_ascii_lowercase(),
        '\u{C0}'..='\u{DE}' if c != '\u{D7}' => char::from_u32(c as u32 + 0x20).unwrap_or(c),
        _ => c,
    }
}

/// A decimal as the server sees it where the value is observed (compared, printed, stored):
/// MariaDB rounds its exact intermediate results to the expression's scale there; MySQL's
/// values already have it.
fn observe<'a>(v: Ev<'a>, ty: &ExprType, cx: Cx) -> Ev<'a> {
    match (&v, ty) {
        (Ev::Dec(d), ExprType::Decimal { scale })
            if cx.flavor == Flavor::MariaDb && decimal::scale_of(d) != i64::from(*scale) =>
        {
            Ev::Dec(Cow::Owned(decimal::round(d, i64::from(*scale))))
        }
        _ => v,
    }
}

/// A CASE branch's value as the CASE's result: MySQL keeps a DECIMAL branch's own scale
/// (an INT branch stays without decimals); otherwise as [`coerce`].
fn case_result<'a>(v: Ev<'a>, from: &ExprType, to: &ExprType, cx: Cx) -> Result<Ev<'a>, EvalError> {
    if cx.flavor == Flavor::MySql && matches!(to, ExprType::Decimal { .. }) {
        return Ok(match v {
            Ev::Null => Ev::Null,
            Ev::Dec(d) => Ev::Dec(d),
            other => Ev::Dec(Cow::Owned(to_dec(&other).into_owned())),
        });
    }
    coerce(v, from, to, cx)
}

/// The text of an argument of CONCAT/UPPER/LOWER: a FLOAT column prints as a FLOAT (6
/// significant digits), not as the DOUBLE it is widened to.
fn arg_text<'a>(v: &'a Ev<'a>, arg: &Node, cx: Cx) -> Cow<'a, [u8]> {
    if let (Ev::Dbl(f), Kind::Col { type_name, .. }) = (v, &arg.kind) {
        if type_name == "FLOAT" {
            return Cow::Owned(gcvt(*f, cx.double_width(), true).into_bytes());
        }
    }
    text_bytes(v, &arg.ty, cx)
}

fn text_bytes<'a>(v: &'a Ev<'a>, ty: &ExprType, cx: Cx) -> Cow<'a, [u8]> {
    match v {
        Ev::Null => Cow::Borrowed(b""),
        Ev::Int(i) => Cow::Owned(i.to_string().into_bytes()),
        Ev::UInt(u) => Cow::Owned(u.to_string().into_bytes()),
        Ev::Dec(d) => match observe(Ev::Dec(Cow::Borrowed(d.as_ref())), ty, cx) {
            Ev::Dec(d) => Cow::Owned(decimal::format(&d).into_bytes()),
            _ => Cow::Owned(decimal::format(d).into_bytes()),
        },
        Ev::Dbl(f) => Cow::Owned(gcvt(*f, cx.double_width(), false).into_bytes()),
        Ev::Str(s) => Cow::Borrowed(s.as_ref()),
        Ev::Val(v) => {
            let fsp = match ty {
                ExprType::DateTime { fsp } | ExprType::Time { fsp } => *fsp,
                _ => 0,
            };
            let text = match v.as_ref() {
                Value::Date { year, month, day } => temporal::format_date(*year, *month, *day),
                Value::DateTime { .. } => match temporal::value_to_parts(v) {
                    Some(p) => temporal::format_datetime(&p, fsp),
                    None => String::new(),
                },
                Value::Time {
                    negative,
                    hours,
                    minutes,
                    seconds,
                    micros,
                } => temporal::format_time(*negative, *hours, *minutes, *seconds, *micros, fsp),
                Value::Json(j) => jsontext::to_mysql_text(j),
                Value::JsonSql(j) => jsontext::to_mysql_text(&j.doc),
                _ => String::new(),
            };
            Cow::Owned(text.into_bytes())
        }
    }
}

/// Converts a branch value to the aggregated result type.
fn coerce<'a>(v: Ev<'a>, from: &ExprType, to: &ExprType, cx: Cx) -> Result<Ev<'a>, EvalError> {
    if v.is_null() {
        return Ok(Ev::Null);
    }
    Ok(match to {
        ExprType::Decimal { scale } => {
            let d = to_dec(&v);
            if matches!(&v, Ev::Dec(_)) && decimal::scale_of(&d) == *scale as i64 {
                return Ok(v);
            }
            Ev::Dec(Cow::Owned(decimal::round(&d, *scale as i64)))
        }
        ExprType::Double => Ev::Dbl(to_f64(&v)),
        ExprType::Text(_) => match v {
            Ev::Str(s) => Ev::Str(s),
            other => Ev::Str(Cow::Owned(text_bytes(&other, from, cx).into_owned())),
        },
        ExprType::DateTime { .. } => match v {
            Ev::Val(val) if matches!(val.as_ref(), Value::Date { .. }) => {
                match temporal::value_to_parts(&val) {
                    Some(p) => Ev::Val(Cow::Owned(p.to_datetime_value())),
                    None => Ev::Val(val),
                }
            }
            other => other,
        },
        _ => v,
    })
}

fn into_value(v: Ev) -> Value {
    match v {
        Ev::Null => Value::Null,
        Ev::Int(i) => Value::Int(i),
        Ev::UInt(u) => Value::UInt(u),
        Ev::Dec(d) => Value::Decimal(decimal::format(&d)),
        Ev::Dbl(f) => Value::Double(f),
        Ev::Str(s) => Value::Bytes(s.into_owned()),
        Ev::Val(v) => v.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::{table, table_with};
    use crate::schema::Flavor;

    fn schema() -> TableSchema {
        table(
            &[
                ("id", "bigint"),
                ("qty", "int unsigned"),
                ("price", "decimal(10,2)"),
                ("ratio", "double"),
                ("name", "varchar(20)"),
                ("status", "enum('new','packed','shipped')"),
                ("created", "datetime"),
                ("bin", "varbinary(10)"),
                ("flags", "bit(4)"),
                ("doc", "json"),
                ("t", "time"),
                ("code", "tinyint"),
            ],
            &["id"],
        )
    }

    fn row() -> Vec<Value> {
        vec![
            Value::Int(7),
            Value::UInt(3),
            Value::Decimal("19.99".into()),
            Value::Double(0.5),
            Value::Bytes(b"Alice".to_vec()),
            Value::Enum(2),
            Value::DateTime {
                year: 2024,
                month: 3,
                day: 1,
                hour: 12,
                minute: 0,
                second: 0,
                micros: 0,
            },
            Value::Bytes(b"Ab".to_vec()),
            Value::Bit { bits: 5, width: 4 },
            Value::Json(serde_json::json!({"k": 1})),
            Value::Time {
                negative: false,
                hours: 1,
                minutes: 30,
                seconds: 0,
                micros: 0,
            },
            Value::Int(1),
        ]
    }

    fn nulls() -> Vec<Value> {
        vec![Value::Null; 12]
    }

    fn ev(text: &str) -> Value {
        ev_row(text, &row())
    }

    fn ev_row(text: &str, r: &[Value]) -> Value {
        CompiledExpr::compile(text, &schema())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(r)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn sql(text: &str) -> String {
        CompiledExpr::compile(text, &schema())
            .unwrap()
            .sql()
            .to_string()
    }

    fn err(text: &str) -> ExprError {
        CompiledExpr::compile(text, &schema()).unwrap_err()
    }

    fn s(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    fn d(text: &str) -> Value {
        Value::Decimal(text.into())
    }

    #[test]
    fn literals() {
        assert_eq!(ev("42"), Value::Int(42));
        assert_eq!(ev("18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(ev("99999999999999999999"), d("99999999999999999999"));
        assert_eq!(ev("1.50"), d("1.50"));
        assert_eq!(ev("1e3"), Value::Double(1000.0));
        assert_eq!(ev("'it''s'"), s("it's"));
        assert_eq!(ev("\"dq\""), s("dq"));
        assert_eq!(ev("NULL"), Value::Null);
        assert_eq!(ev("TRUE"), Value::Int(1));
        assert_eq!(ev("FALSE"), Value::Int(0));
        assert_eq!(ev("_binary'x'"), s("x"));
        assert_eq!(sql("'it''s'"), "_utf8mb4'it''s'");
        assert_eq!(sql("'a\\\\b'"), "_utf8mb4 X'615C62'");
        assert_eq!(sql("_binary'x'"), "_binary'x'");
        assert_eq!(sql("TRUE"), "TRUE");
        assert_eq!(sql("1.50"), "1.50");
    }

    #[test]
    fn column_references_quote_names() {
        let t = table(
            &[("id", "int"), ("odd`name", "int"), ("Sel ect", "int")],
            &["id"],
        );
        let e = CompiledExpr::compile("`odd``name` + `Sel ect`", &t).unwrap();
        assert_eq!(e.sql(), "(`odd``name` + `Sel ect`)");
        assert_eq!(e.referenced_columns(), &[1, 2]);
        assert_eq!(
            e.eval(&[Value::Int(0), Value::Int(2), Value::Int(3)])
                .unwrap(),
            Value::Int(5)
        );
        let e = CompiledExpr::compile("ID", &t).unwrap();
        assert_eq!(e.as_column(), Some(0));
        assert_eq!(e.sql(), "`id`");
        assert!(matches!(err("nope + 1"), ExprError::UnknownColumn { .. }));
    }

    #[test]
    fn integer_arithmetic() {
        assert_eq!(ev("id + 1"), Value::Int(8));
        assert_eq!(ev("id - 10"), Value::Int(-3));
        assert_eq!(ev("id * 3"), Value::Int(21));
        assert_eq!(ev("-id"), Value::Int(-7));
        assert_eq!(ev("- -id"), Value::Int(7));
        assert_eq!(ev("+id"), Value::Int(7));
        assert_eq!(sql("-id - -1"), "((-`id`) - (-1))");
        // Unsigned operand: unsigned result; going below zero is an error, as on the server.
        assert_eq!(ev("qty + 1"), Value::UInt(4));
        let e = CompiledExpr::compile("qty - 4", &schema()).unwrap();
        assert!(matches!(
            e.eval(&row()),
            Err(EvalError::Overflow {
                kind: "BIGINT UNSIGNED",
                ..
            })
        ));
        let e = CompiledExpr::compile("9223372036854775807 + id", &schema()).unwrap();
        assert!(matches!(
            e.eval(&row()),
            Err(EvalError::Overflow { kind: "BIGINT", .. })
        ));
        assert_eq!(ev("2 + 3 * 4"), Value::Int(14));
        assert_eq!(ev("(2 + 3) * 4"), Value::Int(20));
        assert_eq!(sql("2 + 3 * 4"), "(2 + (3 * 4))");
    }

    #[test]
    fn division_is_decimal_and_by_zero_is_null() {
        assert_eq!(ev("1 / 3"), d("0.3333"));
        assert_eq!(ev("2 / 3"), d("0.6667"));
        assert_eq!(ev("id / 2"), d("3.5000"));
        assert_eq!(ev("price / 3"), d("6.663333"));
        assert_eq!(ev("5.05 / 0.014"), d("360.714286"));
        assert_eq!(ev("id / 0"), Value::Null);
        assert_eq!(ev("price / 0.0"), Value::Null);
        assert_eq!(ev("ratio / 0"), Value::Null);
        assert_eq!(ev("ratio / 2"), Value::Double(0.25));
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        assert_eq!(ev("price + 0.01"), d("20.00"));
        assert_eq!(ev("price * 3"), d("59.97"));
        assert_eq!(ev("price * 1.5"), d("29.985"));
        assert_eq!(ev("0.1 + 0.2"), d("0.3"));
        assert_eq!(ev("price - id"), d("12.99"));
        assert_eq!(ev("-price"), d("-19.99"));
        assert_eq!(ev("ratio + 1"), Value::Double(1.5));
        assert_eq!(ev("price + ratio"), Value::Double(20.49));
    }

    #[test]
    fn null_propagation() {
        let n = nulls();
        for e in [
            "id + 1",
            "price * 2",
            "name = 'x'",
            "CONCAT(name, 'x')",
            "UPPER(name)",
            "-id",
            "NOT id",
            "id / 0 + 1",
        ] {
            assert_eq!(ev_row(e, &n), Value::Null, "{e}");
        }
        assert_eq!(ev("NULL + 1"), Value::Null);
        assert_eq!(ev("CONCAT('a', NULL)"), Value::Null);
        assert_eq!(ev_row("id IS NULL", &n), Value::Int(1));
        assert_eq!(ev_row("id IS NOT NULL", &n), Value::Int(0));
        assert_eq!(ev("id IS NULL"), Value::Int(0));
        assert_eq!(ev("NULL = NULL"), Value::Null);
        assert_eq!(ev("NULL <> 1"), Value::Null);
    }

    #[test]
    fn three_valued_logic() {
        assert_eq!(ev("1 AND NULL"), Value::Null);
        assert_eq!(ev("0 AND NULL"), Value::Int(0));
        assert_eq!(ev("NULL AND 0"), Value::Int(0));
        assert_eq!(ev("1 OR NULL"), Value::Int(1));
        assert_eq!(ev("NULL OR 1"), Value::Int(1));
        assert_eq!(ev("0 OR NULL"), Value::Null);
        assert_eq!(ev("NOT NULL"), Value::Null);
        assert_eq!(ev("NOT 0"), Value::Int(1));
        assert_eq!(ev("NOT 2.5"), Value::Int(0));
        assert_eq!(ev("id > 1 AND qty < 5"), Value::Int(1));
        assert_eq!(ev("id > 100 OR qty < 1"), Value::Int(0));
        assert_eq!(
            sql("id > 1 AND NOT qty < 5"),
            "((`id` > 1) AND (NOT (`qty` < 5)))"
        );
    }

    #[test]
    fn every_comparison_operator() {
        let cases = [
            ("id = 7", 1),
            ("id <> 7", 0),
            ("id != 7", 0),
            ("id < 8", 1),
            ("id <= 7", 1),
            ("id > 7", 0),
            ("id >= 7", 1),
            ("price > 19.9", 1),
            ("price = 19.990", 1),
            ("ratio = 0.5", 1),
            ("qty = 3", 1),
            ("18446744073709551615 > id", 1),
            ("-1 < qty", 1),
        ];
        for (e, want) in cases {
            assert_eq!(ev(e), Value::Int(want), "{e}");
        }
        assert_eq!(sql("id != 7"), "(`id` <> 7)");
    }

    #[test]
    fn string_comparisons_follow_collation() {
        // utf8mb4_0900_ai_ci (test schema): case-insensitive, NO PAD.
        assert_eq!(ev("name = 'ALICE'"), Value::Int(1));
        assert_eq!(ev("name = 'alice '"), Value::Int(0));
        assert_eq!(ev("name < 'bob'"), Value::Int(1));
        assert_eq!(ev("name > 'Bob'"), Value::Int(0));
        // Binary strings compare bytes.
        assert_eq!(ev("bin = 'ab'"), Value::Int(0));
        assert_eq!(ev("bin = 'Ab'"), Value::Int(1));
        assert_eq!(ev("_binary'A' = 'a'"), Value::Int(0));
        // PAD SPACE collation on a general_ci column.
        let t = table_with(&[("id", "int"), ("n", "varchar(5)")], &["id"], |r| {
            if r.column_name == "n" {
                r.collation_name = Some("utf8mb4_general_ci".into());
            }
        });
        let e = CompiledExpr::compile("n = 'abc   '", &t).unwrap();
        assert_eq!(e.eval(&[Value::Int(1), s("ABC")]).unwrap(), Value::Int(1));
        // A _bin column is case-sensitive.
        let t = table_with(&[("id", "int"), ("n", "varchar(5)")], &["id"], |r| {
            if r.column_name == "n" {
                r.collation_name = Some("utf8mb4_bin".into());
            }
        });
        let e = CompiledExpr::compile("n = 'abc'", &t).unwrap();
        assert_eq!(e.eval(&[Value::Int(1), s("ABC")]).unwrap(), Value::Int(0));
    }

    #[test]
    fn literal_only_comparison_uses_flavor_default() {
        let mk = |flavor| {
            let mut t = table(&[("id", "int")], &["id"]);
            t.flavor = flavor;
            CompiledExpr::compile("'a' = 'A '", &t)
                .unwrap()
                .eval(&[Value::Int(1)])
                .unwrap()
        };
        // MySQL: utf8mb4_0900_ai_ci is NO PAD; MariaDB: utf8mb4_general_ci is PAD SPACE.
        assert_eq!(mk(Flavor::MySql), Value::Int(0));
        assert_eq!(mk(Flavor::MariaDb), Value::Int(1));
    }

    #[test]
    fn text_number_comparison_is_double() {
        let t = table(&[("id", "int"), ("v", "varchar(10)")], &["id"]);
        let e = CompiledExpr::compile("v = 12", &t).unwrap();
        assert_eq!(e.eval(&[Value::Int(1), s("12abc")]).unwrap(), Value::Int(1));
        assert_eq!(e.eval(&[Value::Int(1), s(" 12.0")]).unwrap(), Value::Int(1));
        assert_eq!(e.eval(&[Value::Int(1), s("x")]).unwrap(), Value::Int(0));
        let e = CompiledExpr::compile("v = 0", &t).unwrap();
        assert_eq!(e.eval(&[Value::Int(1), s("abc")]).unwrap(), Value::Int(1));
    }

    #[test]
    fn enum_columns_are_labels() {
        assert_eq!(ev("status = 'packed'"), Value::Int(1));
        assert_eq!(ev("status = 'PACKED'"), Value::Int(1));
        assert_eq!(ev("CONCAT(status, '!')"), s("packed!"));
        assert!(matches!(err("status = 2"), ExprError::Type { .. }));
        assert!(matches!(err("status + 1"), ExprError::Type { .. }));
    }

    #[test]
    fn date_comparisons() {
        assert_eq!(ev("created >= '2024-03-01'"), Value::Int(1));
        assert_eq!(ev("created < '2024-03-01 12:00:00.5'"), Value::Int(1));
        assert_eq!(ev("'2025-01-01' > created"), Value::Int(1));
        assert_eq!(ev("t > '01:00:00'"), Value::Int(1));
        assert_eq!(
            sql("created >= '2024-03-01'"),
            "(`created` >= _utf8mb4'2024-03-01')"
        );
        assert!(matches!(
            err("created > 'soon'"),
            ExprError::BadLiteral { .. }
        ));
        assert!(matches!(err("created > 20240101"), ExprError::Type { .. }));
        assert!(matches!(err("created > name"), ExprError::Type { .. }));
        assert!(matches!(err("created + 1"), ExprError::Type { .. }));
    }

    #[test]
    fn case_simple_and_searched() {
        let e = "CASE code WHEN 1 THEN 'packed' WHEN 2 THEN 'shipped' END";
        assert_eq!(ev(e), s("packed"));
        let mut r = row();
        r[11] = Value::Int(2);
        assert_eq!(ev_row(e, &r), s("shipped"));
        r[11] = Value::Int(3);
        assert_eq!(ev_row(e, &r), Value::Null);
        r[11] = Value::Null;
        assert_eq!(ev_row(e, &r), Value::Null);
        assert_eq!(
            sql(e),
            "CASE `code` WHEN 1 THEN _utf8mb4'packed' WHEN 2 THEN _utf8mb4'shipped' END"
        );
        assert_eq!(ev("CASE WHEN id > 5 THEN 'big' ELSE 'small' END"), s("big"));
        assert_eq!(ev("CASE WHEN NULL THEN 1 ELSE 2 END"), Value::Int(2));
        assert_eq!(
            sql("CASE WHEN id > 5 THEN 1 ELSE 2 END"),
            "CASE WHEN (`id` > 5) THEN 1 ELSE 2 END"
        );
        assert_eq!(
            ev("CASE name WHEN 'alice' THEN 1 ELSE 0 END"),
            Value::Int(1)
        );
        assert!(matches!(
            err("CASE WHEN name THEN 1 END"),
            ExprError::Type { .. }
        ));
    }

    #[test]
    fn case_result_type_aggregation() {
        // Integer and decimal branches: DECIMAL with the larger scale; MySQL keeps a branch's
        // own scale (`1`), MariaDB pads (`1.00`).
        assert_eq!(ev("CASE WHEN id > 5 THEN 1 ELSE 2.50 END"), d("1"));
        let mut maria = schema();
        maria.flavor = Flavor::MariaDb;
        assert_eq!(
            CompiledExpr::compile("CASE WHEN id > 5 THEN 1 ELSE 2.50 END", &maria)
                .unwrap()
                .eval(&row())
                .unwrap(),
            d("1.00")
        );
        // Integer and text: text.
        assert_eq!(ev("CASE WHEN id > 5 THEN 1 ELSE 'x' END"), s("1"));
        assert_eq!(ev("CASE WHEN id > 5 THEN 1.5 ELSE 'x' END"), s("1.5"));
        // Integer and double: double.
        assert_eq!(
            ev("CASE WHEN id > 5 THEN 1 ELSE 1e0 END"),
            Value::Double(1.0)
        );
        // Signed and unsigned: decimal.
        assert_eq!(ev("CASE WHEN id > 5 THEN qty ELSE -1 END"), d("3"));
        // NULL branches do not count.
        assert_eq!(ev("CASE WHEN id > 5 THEN NULL ELSE 2.5 END"), Value::Null);
        assert_eq!(ev("CASE WHEN id < 5 THEN NULL ELSE 2 END"), Value::Int(2));
        assert_eq!(
            CompiledExpr::compile("CASE WHEN id > 5 THEN 1 ELSE 2.50 END", &schema())
                .unwrap()
                .result_type(),
            &ExprType::Decimal { scale: 2 }
        );
    }

    #[test]
    fn flavor_differences_seen_on_servers() {
        let eval_on = |flavor, text: &str, row: &[Value]| {
            let mut t = schema();
            t.flavor = flavor;
            CompiledExpr::compile(text, &t).unwrap().eval(row).unwrap()
        };
        // MariaDB keeps a quotient to whole 9-digit words and rounds only where observed.
        assert_eq!(eval_on(Flavor::MySql, "1 / 3 * 3", &row()), d("0.9999"));
        assert_eq!(eval_on(Flavor::MariaDb, "1 / 3 * 3", &row()), d("1.0000"));
        assert_eq!(
            eval_on(Flavor::MariaDb, "1 / 3 * 3 = 1", &row()),
            Value::Int(1)
        );
        assert_eq!(
            eval_on(Flavor::MariaDb, "CONCAT(id / 7 * 7)", &row()),
            s("7.0000")
        );
        assert_eq!(
            eval_on(Flavor::MariaDb, "CONCAT(0 / 7)", &row()),
            s("0.0000")
        );
        // Doubles as text: MySQL's expressions print in 22 characters, MariaDB's wider.
        assert_eq!(
            eval_on(Flavor::MySql, "CONCAT(1e-7)", &row()),
            s("0.0000001")
        );
        assert_eq!(
            eval_on(Flavor::MySql, "CONCAT(1.2345678901234567e-14)", &row()),
            s("1.2345678901234567e-14")
        );
        assert_eq!(
            eval_on(Flavor::MariaDb, "CONCAT(1.2345678901234567e-14)", &row()),
            s("0.000000000000012345678901234567")
        );
        // MySQL rounds a TIME literal to the column's precision before comparing.
        let t0 = Value::Time {
            negative: false,
            hours: 0,
            minutes: 0,
            seconds: 1,
            micros: 0,
        };
        let mut r = row();
        r[10] = t0;
        assert_eq!(
            eval_on(Flavor::MySql, "t = '00:00:00.5'", &r),
            Value::Int(1)
        );
        assert_eq!(
            eval_on(Flavor::MariaDb, "t = '00:00:00.5'", &r),
            Value::Int(0)
        );
    }

    #[test]
    fn latin1_case_mapping_and_mixed_charsets() {
        let t = table_with(
            &[("id", "int"), ("l", "varchar(10)"), ("u", "varchar(10)")],
            &["id"],
            |r| {
                if r.column_name == "l" {
                    r.character_set_name = Some("latin1".into());
                    r.collation_name = Some("latin1_swedish_ci".into());
                }
                if r.column_name == "u" {
                    r.collation_name = Some("utf8mb4_0900_ai_ci".into());
                }
            },
        );
        let ev =
            |text: &str, row: &[Value]| CompiledExpr::compile(text, &t).unwrap().eval(row).unwrap();
        // 'ÿ' (0xFF) and 'Œ' (0x8C) have no case partner in latin1's tables.
        let r = [
            Value::Int(1),
            Value::Bytes(vec![0xFF, 0x8C, 0xE9]),
            s("a  "),
        ];
        assert_eq!(ev("UPPER(l)", &r), s("ÿŒÉ"));
        assert_eq!(ev("LOWER(l)", &r), s("ÿŒé"));
        // latin1 against utf8mb4: compared in the utf8mb4 column's (NO PAD) collation.
        let r = [Value::Int(1), Value::Bytes(b"a ".to_vec()), s("a  ")];
        assert_eq!(ev("l < u", &r), Value::Int(1));
    }

    #[test]
    fn coalesce_and_ifnull() {
        let n = nulls();
        assert_eq!(ev_row("COALESCE(name, 'anon')", &n), s("anon"));
        assert_eq!(ev("COALESCE(name, 'anon')"), s("Alice"));
        assert_eq!(ev_row("COALESCE(NULL, id, 3)", &n), Value::Int(3));
        assert_eq!(ev_row("IFNULL(price, 0)", &n), d("0.00"));
        assert_eq!(ev("IFNULL(price, 0)"), d("19.99"));
        assert_eq!(ev_row("COALESCE(NULL, NULL)", &n), Value::Null);
        assert_eq!(sql("ifnull(price, 0)"), "IFNULL(`price`, 0)");
        assert!(matches!(err("IFNULL(price)"), ExprError::ArgCount { .. }));
        assert!(matches!(
            err("COALESCE()"),
            ExprError::ArgCount { .. } | ExprError::Parse { .. }
        ));
        // Opaque columns pass through COALESCE when all branches have their type.
        let t = table(&[("id", "int"), ("a", "bit(4)"), ("b", "bit(4)")], &["id"]);
        let e = CompiledExpr::compile("COALESCE(a, b)", &t).unwrap();
        assert_eq!(
            e.eval(&[Value::Int(1), Value::Null, Value::Bit { bits: 3, width: 4 }])
                .unwrap(),
            Value::Bit { bits: 3, width: 4 }
        );
        assert!(CompiledExpr::compile("COALESCE(a, 1)", &t).is_err());
    }

    #[test]
    fn concat_upper_lower() {
        assert_eq!(ev("CONCAT(name, '-', id, '-', price)"), s("Alice-7-19.99"));
        assert_eq!(ev("CONCAT(created)"), s("2024-03-01 12:00:00"));
        assert_eq!(ev("CONCAT(ratio)"), s("0.5"));
        assert_eq!(ev("CONCAT(doc)"), s(r#"{"k": 1}"#));
        assert_eq!(ev("CONCAT(t)"), s("01:30:00"));
        assert_eq!(ev("UPPER(name)"), s("ALICE"));
        assert_eq!(ev("lower(name)"), s("alice"));
        assert_eq!(
            ev("UPPER('straße é')"),
            s("STRAßE É"),
            "one-to-one case mapping only"
        );
        assert_eq!(ev("UPPER(bin)"), s("Ab"), "no effect on binary strings");
        assert_eq!(ev("UPPER(12)"), s("12"));
        assert_eq!(sql("concat(name, 'x')"), "CONCAT(`name`, _utf8mb4'x')");
        assert!(matches!(err("CONCAT(flags)"), ExprError::Type { .. }));
        assert!(matches!(
            err("UPPER(name, name)"),
            ExprError::ArgCount { .. }
        ));
    }

    #[test]
    fn latin1_columns_read_as_text() {
        let t = table_with(&[("id", "int"), ("n", "varchar(5)")], &["id"], |r| {
            if r.column_name == "n" {
                r.character_set_name = Some("latin1".into());
                r.collation_name = Some("latin1_swedish_ci".into());
            }
        });
        let e = CompiledExpr::compile("CONCAT(n, '€')", &t).unwrap();
        assert_eq!(
            e.eval(&[Value::Int(1), Value::Bytes(vec![0xE9, 0x80])])
                .unwrap(),
            s("é€€")
        );
    }

    #[test]
    fn timestamp_columns_read_in_utc() {
        let t = table(&[("id", "int"), ("ts", "timestamp")], &["id"]);
        let e = CompiledExpr::compile("CONCAT(ts)", &t).unwrap();
        assert_eq!(
            e.eval(&[
                Value::Int(1),
                Value::Timestamp {
                    secs: 86_400,
                    micros: 0
                }
            ])
            .unwrap(),
            s("1970-01-02 00:00:00")
        );
        let e = CompiledExpr::compile("ts < '1970-01-03'", &t).unwrap();
        assert_eq!(
            e.eval(&[
                Value::Int(1),
                Value::Timestamp {
                    secs: 86_400,
                    micros: 0
                }
            ])
            .unwrap(),
            Value::Int(1)
        );
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let cases = [
            ("(SELECT 1)", "subquery"),
            ("id IN (1, 2)", "IN"),
            ("id BETWEEN 1 AND 2", "BETWEEN"),
            ("name LIKE 'a%'", "LIKE"),
            ("NOW()", "NOW"),
            ("id % 2", "%"),
            ("id DIV 2", "DIV"),
            ("id <=> 2", "<=>"),
            ("name || 'x'", "||"),
            ("CAST(id AS CHAR)", "CAST"),
            ("t.id", "qualified"),
            ("X'41'", "hex"),
            ("_latin1'x'", "introducer"),
            ("COUNT(DISTINCT id)", "COUNT"),
            ("CONCAT(DISTINCT name)", "modifiers"),
        ];
        for (e, word) in cases {
            match CompiledExpr::compile(e, &schema()) {
                Err(ExprError::Unsupported {
                    construct,
                    supported,
                }) => {
                    assert!(construct.contains(word), "{e}: {construct}");
                    assert!(supported.contains("COALESCE"));
                }
                other => panic!("{e}: {other:?}"),
            }
        }
        let msg = err("NOW()").to_string();
        assert!(
            msg.contains("NOW") && msg.contains("supported: column references"),
            "{msg}"
        );
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(err("id +"), ExprError::Parse { .. }));
        assert!(matches!(err("id id"), ExprError::Parse { .. }));
        assert!(matches!(err("'unterminated"), ExprError::Parse { .. }));
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(matches!(err(&deep), ExprError::Parse { .. }));
    }

    #[test]
    fn type_errors() {
        assert!(matches!(err("name + 1"), ExprError::Type { .. }));
        assert!(matches!(err("name AND 1"), ExprError::Type { .. }));
        assert!(matches!(err("-name"), ExprError::Type { .. }));
        assert!(matches!(err("doc = 1"), ExprError::Type { .. }));
        assert!(matches!(err("flags = 1"), ExprError::Type { .. }));
        assert!(CompiledExpr::compile("flags IS NULL", &schema()).is_ok());
    }

    #[test]
    fn result_types_map_to_source_types() {
        let ty = |e: &str| {
            CompiledExpr::compile(e, &schema())
                .unwrap()
                .result_type()
                .source_type()
        };
        assert_eq!(ty("id + 1"), SourceType::Int { unsigned: false });
        assert_eq!(ty("price / 2"), SourceType::Decimal);
        assert_eq!(ty("CONCAT(name)"), SourceType::Text);
        assert_eq!(ty("CONCAT(bin, name)"), SourceType::Binary);
        assert_eq!(ty("NULL"), SourceType::Null);
        assert_eq!(
            ty("COALESCE(created, created)"),
            SourceType::DateTime { fsp: 0 }
        );
    }
}
