//! Values as SQL literals for the text protocol: exact, charset-neutral (bytes as hex), for a
//! session in [`crate::conn::DATA_SESSION`] (UTC time zone, `NAMES binary`).
//!
//! Literals instead of prepared statements let an applier send one multi-row statement of any
//! size without preparing a statement per batch shape.

use rowshift_transform::Value;
use std::fmt::Write;

/// How a column's placeholder must be wrapped for the server to accept bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiteralKind {
    /// Any column: the literal as is.
    #[default]
    Plain,
    /// A MySQL JSON column: refuses `binary` strings, so text is marked utf8mb4.
    Json,
}

/// Append `value` as a SQL literal to `out`.
pub fn push_literal(out: &mut String, value: &Value, kind: LiteralKind) {
    match value {
        Value::Null => out.push_str("NULL"),
        Value::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Value::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Float(v) => push_float(out, f64::from(*v), format!("{v:?}")),
        Value::Double(v) => push_float(out, *v, format!("{v:?}")),
        Value::Decimal(text) => {
            // Decoded decimals are digits, sign and point only; anything else is quoted.
            if !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                out.push_str(text);
            } else {
                push_hex(out, text.as_bytes());
            }
        }
        Value::Bytes(bytes) => push_bytes(out, bytes, kind),
        Value::Bit { bits, .. } => {
            let _ = write!(out, "{bits}");
        }
        Value::Enum(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Set(mask) => {
            let _ = write!(out, "{mask}");
        }
        Value::Year(y) => {
            let _ = write!(out, "{y}");
        }
        Value::Date { year, month, day } => {
            let _ = write!(out, "'{year:04}-{month:02}-{day:02}'");
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let sign = if *negative { "-" } else { "" };
            let _ = write!(
                out,
                "'{sign}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}'"
            );
        }
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => {
            let _ = write!(
                out,
                "'{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{micros:06}'"
            );
        }
        Value::Timestamp { secs, micros } => {
            if *secs == 0 && *micros == 0 {
                out.push_str("'0000-00-00 00:00:00'");
            } else {
                let (y, mo, d, h, mi, s) = civil_from_epoch(i64::from(*secs));
                let _ = write!(
                    out,
                    "'{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{micros:06}'"
                );
            }
        }
        Value::Json(json) => {
            let text = json.to_string();
            push_bytes(out, text.as_bytes(), kind);
        }
    }
}

fn push_float(out: &mut String, v: f64, repr: String) {
    if v.is_finite() {
        out.push_str(&repr);
    } else {
        out.push_str("NULL");
    }
}

fn push_bytes(out: &mut String, bytes: &[u8], kind: LiteralKind) {
    match kind {
        LiteralKind::Plain => push_hex(out, bytes),
        LiteralKind::Json => {
            out.push_str("CONVERT(");
            push_hex(out, bytes);
            out.push_str(" USING utf8mb4)");
        }
    }
}

/// Append `X'…'` (or `''` for empty bytes, which `X''` also is).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out.push('\'');
}

/// UTC civil time of a Unix timestamp (Howard Hinnant's days-to-civil algorithm).
pub fn civil_from_epoch(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: Value) -> String {
        let mut s = String::new();
        push_literal(&mut s, &v, LiteralKind::Plain);
        s
    }

    #[test]
    fn literals_are_exact() {
        assert_eq!(lit(Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(lit(Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(
            lit(Value::Decimal("-0.000000000000000000000000000001".into())),
            "-0.000000000000000000000000000001"
        );
        assert_eq!(lit(Value::Bytes(b"a'\\\0".to_vec())), "X'61275C00'");
        assert_eq!(lit(Value::Bytes(vec![])), "X''");
        assert_eq!(lit(Value::Double(0.1)), "0.1");
        assert_eq!(lit(Value::Double(1e300)), "1e300");
        assert_eq!(lit(Value::Null), "NULL");
        assert_eq!(
            lit(Value::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0
            }),
            "'-838:59:59.000000'"
        );
        assert_eq!(
            lit(Value::Date {
                year: 0,
                month: 0,
                day: 0
            }),
            "'0000-00-00'"
        );
        let mut s = String::new();
        push_literal(
            &mut s,
            &Value::Json(serde_json::json!({"a": 1.0})),
            LiteralKind::Json,
        );
        assert_eq!(s, "CONVERT(X'7B2261223A312E307D' USING utf8mb4)");
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(
            lit(Value::Timestamp { secs: 0, micros: 0 }),
            "'0000-00-00 00:00:00'"
        );
        assert_eq!(
            lit(Value::Timestamp { secs: 1, micros: 5 }),
            "'1970-01-01 00:00:01.000005'"
        );
        assert_eq!(
            lit(Value::Timestamp {
                secs: 2_147_483_647,
                micros: 999_999
            }),
            "'2038-01-19 03:14:07.999999'"
        );
        assert_eq!(civil_from_epoch(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
