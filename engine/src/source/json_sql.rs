//! MySQL binary JSON documents whose scalars JSON text cannot carry: DECIMAL, DATE, TIME and
//! DATETIME values (`JSON_OBJECT('price', CAST(1.50 AS DECIMAL(5,2)))`). Written back as JSON
//! text they would change type (`1.50` DECIMAL becomes the DOUBLE `1.5`, a DATE a string), so
//! such documents become [`Value::JsonSql`]: the document plus a SQL expression built from
//! `JSON_OBJECT`, `JSON_ARRAY` and `CAST` that makes the server store the exact same document.
//! Documents without them stay [`Value::Json`] (the common, cheaper case).

use super::values::{decode_decimal, decode_jsonb, ValueError};
use crate::sqlvalue::push_hex;
use mysql_common::binlog::jsonb;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use rowshift_transform::value::JsonSql;
use rowshift_transform::Value;

/// Maximum nesting walked (MySQL allows 100).
const MAX_DEPTH: usize = 150;

/// Decode one binary JSON column value.
pub(crate) fn decode_json_value(bytes: &[u8]) -> Result<Value, ValueError> {
    let doc = decode_jsonb(bytes)?;
    let v = parse(bytes)?;
    if !has_typed_scalar(&v, 0)? {
        return Ok(Value::Json(doc));
    }
    let mut sql = String::new();
    let container = matches!(
        v,
        jsonb::Value::SmallArray(_)
            | jsonb::Value::LargeArray(_)
            | jsonb::Value::SmallObject(_)
            | jsonb::Value::LargeObject(_)
    );
    // A bare scalar is not a JSON document for the column: wrap and extract it.
    if !container {
        sql.push_str("JSON_EXTRACT(JSON_ARRAY(");
    }
    write_sql(v, &mut sql, 0)?;
    if !container {
        sql.push_str("), CONVERT('$[0]' USING utf8mb4))");
    }
    Ok(Value::JsonSql(Box::new(JsonSql { doc, sql })))
}

fn parse(bytes: &[u8]) -> Result<jsonb::Value<'_>, ValueError> {
    ParseBuf(bytes)
        .parse(())
        .map_err(|e| ValueError::Invalid(format!("binary JSON: {e}")))
}

fn invalid<E: std::fmt::Display>(e: E) -> ValueError {
    ValueError::Invalid(format!("binary JSON: {e}"))
}

fn is_typed(t: ColumnType) -> bool {
    matches!(
        t,
        ColumnType::MYSQL_TYPE_NEWDECIMAL
            | ColumnType::MYSQL_TYPE_DATE
            | ColumnType::MYSQL_TYPE_TIME
            | ColumnType::MYSQL_TYPE_DATETIME
            | ColumnType::MYSQL_TYPE_TIMESTAMP
    )
}

fn has_typed_scalar(v: &jsonb::Value<'_>, depth: usize) -> Result<bool, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::Invalid("binary JSON nested too deeply".into()));
    }
    Ok(match v {
        jsonb::Value::Opaque(o) => is_typed(o.value_type()),
        jsonb::Value::SmallArray(a) => any_typed(a.iter(), depth)?,
        jsonb::Value::LargeArray(a) => any_typed(a.iter(), depth)?,
        jsonb::Value::SmallObject(o) => any_typed(o.iter().map(|e| e.map(|(_, v)| v)), depth)?,
        jsonb::Value::LargeObject(o) => any_typed(o.iter().map(|e| e.map(|(_, v)| v)), depth)?,
        _ => false,
    })
}

fn any_typed<'a>(
    mut items: impl Iterator<Item = std::io::Result<jsonb::Value<'a>>>,
    depth: usize,
) -> Result<bool, ValueError> {
    items.try_fold(false, |found, e| {
        Ok(found || has_typed_scalar(&e.map_err(invalid)?, depth + 1)?)
    })
}

/// A utf8mb4 string expression for `bytes` (hex, so nothing needs escaping).
fn push_text(out: &mut String, bytes: &[u8]) {
    out.push_str("CONVERT(");
    push_hex(out, bytes);
    out.push_str(" USING utf8mb4)");
}

fn write_sql(v: jsonb::Value<'_>, out: &mut String, depth: usize) -> Result<(), ValueError> {
    use std::fmt::Write;
    if depth > MAX_DEPTH {
        return Err(ValueError::Invalid("binary JSON nested too deeply".into()));
    }
    let w = |r: std::fmt::Result| r.map_err(invalid);
    match v {
        // SQL NULL inside JSON_ARRAY/JSON_OBJECT is JSON null.
        jsonb::Value::Null => out.push_str("NULL"),
        jsonb::Value::Bool(b) => out.push_str(if b { "TRUE" } else { "FALSE" }),
        jsonb::Value::I16(x) => w(write!(out, "{x}"))?,
        jsonb::Value::U16(x) => w(write!(out, "{x}"))?,
        jsonb::Value::I32(x) => w(write!(out, "{x}"))?,
        jsonb::Value::U32(x) => w(write!(out, "{x}"))?,
        jsonb::Value::I64(x) => w(write!(out, "{x}"))?,
        jsonb::Value::U64(x) => w(write!(out, "{x}"))?,
        // An `e` literal is a DOUBLE (a plain `1.5` would be a DECIMAL).
        jsonb::Value::F64(x) => {
            if !x.is_finite() {
                return Err(ValueError::Invalid("binary JSON: non-finite double".into()));
            }
            w(write!(out, "{x:e}"))?
        }
        jsonb::Value::String(s) => push_text(out, s.str_raw()),
        jsonb::Value::SmallArray(a) => write_array(a.iter(), out, depth)?,
        jsonb::Value::LargeArray(a) => write_array(a.iter(), out, depth)?,
        jsonb::Value::SmallObject(o) => write_object(o.iter(), out, depth)?,
        jsonb::Value::LargeObject(o) => write_object(o.iter(), out, depth)?,
        o @ jsonb::Value::Opaque(_) => write_opaque(o, out)?,
    }
    Ok(())
}

fn write_array<'a>(
    items: impl Iterator<Item = std::io::Result<jsonb::Value<'a>>>,
    out: &mut String,
    depth: usize,
) -> Result<(), ValueError> {
    out.push_str("JSON_ARRAY(");
    for (n, e) in items.enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_sql(e.map_err(invalid)?, out, depth + 1)?;
    }
    out.push(')');
    Ok(())
}

fn write_object<'a>(
    items: impl Iterator<Item = std::io::Result<(jsonb::ObjectKey<'a>, jsonb::Value<'a>)>>,
    out: &mut String,
    depth: usize,
) -> Result<(), ValueError> {
    out.push_str("JSON_OBJECT(");
    for (n, e) in items.enumerate() {
        let (k, v) = e.map_err(invalid)?;
        if n > 0 {
            out.push(',');
        }
        push_text(out, k.value_raw());
        out.push(',');
        write_sql(v, out, depth + 1)?;
    }
    out.push(')');
    Ok(())
}

/// A typed scalar as a `CAST`; any other opaque value as the text MySQL prints for it (its
/// type cannot be rebuilt by an expression; the verification compares it).
fn write_opaque(v: jsonb::Value<'_>, out: &mut String) -> Result<(), ValueError> {
    use std::fmt::Write;
    let jsonb::Value::Opaque(o) = &v else {
        return Ok(());
    };
    let t = o.value_type();
    if t == ColumnType::MYSQL_TYPE_NEWDECIMAL {
        // Packed as precision, scale, then the binary DECIMAL.
        let data = o.data_raw();
        let (Some(&p), Some(&s)) = (data.first(), data.get(1)) else {
            return Err(ValueError::Invalid("binary JSON: short DECIMAL".into()));
        };
        let text = decode_decimal(&data[2..], p, s)?;
        return write!(out, "CAST('{text}' AS DECIMAL({p},{s}))").map_err(invalid);
    }
    let cast = match t {
        ColumnType::MYSQL_TYPE_DATE => Some("DATE"),
        ColumnType::MYSQL_TYPE_TIME => Some("TIME(6)"),
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_TIMESTAMP => Some("DATETIME(6)"),
        _ => None,
    };
    let text = match serde_json::Value::from(v.parse().map_err(invalid)?) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    match cast {
        Some(cast) => {
            out.push_str("CAST(");
            push_text(out, text.as_bytes());
            write!(out, " AS {cast})").map_err(invalid)
        }
        None => {
            push_text(out, text.as_bytes());
            Ok(())
        }
    }
}
