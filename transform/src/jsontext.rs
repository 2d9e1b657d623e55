//! JSON printed the way MySQL prints a JSON value as text (`CAST(j AS CHAR)`, or a JSON
//! column copied into a text column): `{"a": 1, "bb": [1, 2]}` — a space after `:` and `,`,
//! object keys in MySQL's storage order (shorter keys first, then by bytes), doubles with a
//! fraction (`1.0`). Approximate for doubles whose shortest form MySQL prints differently
//! (MySQL uses up to 17 significant digits and switches to exponent notation at 1e15).

use serde_json::Value as Json;

/// Formats a JSON value as MySQL does.
pub fn to_mysql_text(v: &Json) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else if let Some(f) = n.as_f64() {
                let s = format!("{f:?}");
                out.push_str(&s);
            } else {
                out.push_str(&n.to_string());
            }
        }
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, out);
                out.push_str(": ");
                if let Some(v) = map.get(*k) {
                    write(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_spacing_and_key_order() {
        let v: Json =
            serde_json::from_str(r#"{"bb":[1,2.5,"x"],"a":null,"c":{"z":true,"yy":1.0}}"#).unwrap();
        assert_eq!(
            to_mysql_text(&v),
            r#"{"a": null, "c": {"z": true, "yy": 1.0}, "bb": [1, 2.5, "x"]}"#
        );
        let s: Json = serde_json::from_str(r#""q\"\\\n\u0001""#).unwrap();
        assert_eq!(to_mysql_text(&s), r#""q\"\\\n\u0001""#);
    }
}
