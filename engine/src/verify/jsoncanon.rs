//! Canonical JSON text, for comparing documents across servers that print JSON differently.
//!
//! MySQL prints its binary JSON with keys ordered by length then bytes and `", "`/`": "`
//! separators, and decodes `\u00e9` escapes; MariaDB keeps the text the application wrote.
//! Both are parsed here and printed again with object members sorted by key bytes, no spaces,
//! and numbers kept as their type: an integer stays an integer and `1.0` stays a float, so
//! `1` and `1.0` differ (as they do in MySQL's binary JSON), while `1e2` and `100.0` agree.

use serde_json::Value;
use std::fmt::Write;

/// The canonical text of a JSON document given as bytes; `None` when the bytes are not JSON
/// (then the raw bytes are compared instead, prefixed so they never equal a valid document).
pub fn canonical(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let mut out = String::with_capacity(bytes.len());
    write_value(&mut out, &value);
    Some(out)
}

/// The comparison form of a fetched JSON column value: canonical text, the raw bytes marked
/// `invalid:` when they do not parse, `None` for SQL NULL.
pub fn comparable(bytes: Option<&[u8]>) -> Option<String> {
    let bytes = bytes?;
    Some(canonical(bytes).unwrap_or_else(|| format!("invalid:{}", String::from_utf8_lossy(bytes))))
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                write_float(out, f);
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// Floats always show a point or exponent so they never print like integers; `-0.0` is `0.0`.
fn write_float(out: &mut String, f: f64) {
    let f = if f == 0.0 { 0.0 } else { f };
    let text = format!("{f:?}");
    out.push_str(&text);
    if !text.contains(['.', 'e', 'E']) && f.is_finite() {
        out.push_str(".0");
    }
}

fn write_string(out: &mut String, s: &str) {
    // serde_json's escaping is deterministic; a String always serialises.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_order_and_spacing_do_not_matter() {
        let mysql = br#"{"b": 2, "aa": 3, "long key": {"y": true, "x": null}}"#;
        let mariadb = br#"{"long key":{"x":null,"y":true},"aa":3,"b":2}"#;
        assert_eq!(canonical(mysql), canonical(mariadb));
        assert_eq!(
            canonical(mysql).unwrap(),
            r#"{"aa":3,"b":2,"long key":{"x":null,"y":true}}"#
        );
    }

    #[test]
    fn number_types_and_escapes() {
        assert_ne!(canonical(b"1"), canonical(b"1.0"));
        assert_eq!(canonical(b"1e2"), canonical(b"100.0"));
        assert_eq!(canonical(b"-0.0"), canonical(b"0.0"));
        assert_eq!(canonical(b"[0.1]").unwrap(), "[0.1]");
        assert_eq!(canonical(br#""a\u00e9""#), canonical("\"aé\"".as_bytes()));
        assert_ne!(canonical(br#"{"a":1}"#), canonical(br#"{"a":2}"#));
        assert_eq!(canonical(b"{oops"), None);
        assert_eq!(comparable(Some(b"{oops")).unwrap(), "invalid:{oops");
        assert_eq!(comparable(None), None);
    }
}
