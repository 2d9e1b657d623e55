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
            if *v < 0 {
                out.push('-');
            }
            push_uint(out, v.unsigned_abs());
        }
        Value::UInt(v) => push_uint(out, *v),
        // The float's exact value: a FLOAT column compares as a DOUBLE, so `0.1` would not
        // match the stored 0.100000001490116… (a DELETE by such a key would miss its row);
        // stored into a FLOAT it rounds back to the same float.
        Value::Float(v) => {
            let exact = f64::from(*v);
            push_float(out, exact, format!("{exact:?}"))
        }
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
            out.push('\'');
            push_date(out, u32::from(*year), u32::from(*month), u32::from(*day));
            out.push('\'');
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
            out.push('\'');
            push_date(out, u32::from(*year), u32::from(*month), u32::from(*day));
            out.push(' ');
            push_clock(
                out,
                u32::from(*hour),
                u32::from(*minute),
                u32::from(*second),
                *micros,
            );
            out.push('\'');
        }
        Value::Timestamp { secs, micros } => {
            if *secs == 0 && *micros == 0 {
                out.push_str("'0000-00-00 00:00:00'");
            } else {
                let (y, mo, d, h, mi, s) = civil_from_epoch(i64::from(*secs));
                out.push('\'');
                push_date(out, y as u32, mo, d);
                out.push(' ');
                push_clock(out, h, mi, s, *micros);
                out.push('\'');
            }
        }
        Value::Json(json) => {
            let text = json.to_string();
            push_bytes(out, text.as_bytes(), kind);
        }
        Value::JsonSql(j) => out.push_str(&j.sql),
    }
}

/// Decimal digits of `v`, without the formatting machinery (the appliers' hot path).
fn push_uint(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// `v` zero-padded to at least `width` digits.
fn push_padded(out: &mut String, v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut i = buf.len();
    let mut v = v;
    while v > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    for &b in &buf[start..] {
        out.push(char::from(b));
    }
}

/// `YYYY-MM-DD`.
fn push_date(out: &mut String, year: u32, month: u32, day: u32) {
    push_padded(out, year, 4);
    out.push('-');
    push_padded(out, month, 2);
    out.push('-');
    push_padded(out, day, 2);
}

/// `HH:MM:SS.ffffff`.
fn push_clock(out: &mut String, hour: u32, minute: u32, second: u32, micros: u32) {
    push_padded(out, hour, 2);
    out.push(':');
    push_padded(out, minute, 2);
    out.push(':');
    push_padded(out, second, 2);
    out.push('.');
    push_padded(out, micros, 6);
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
    fn hand_formatting_matches_fmt() {
        for v in [0i64, 1, -1, 9, 10, -10, 99_999, i64::MAX, i64::MIN, 1 << 40] {
            assert_eq!(lit(Value::Int(v)), v.to_string());
        }
        for v in [0u64, 7, 10, u64::MAX] {
            assert_eq!(lit(Value::UInt(v)), v.to_string());
        }
        let dt = |year, month, day, hour, minute, second, micros| Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        };
        assert_eq!(lit(dt(0, 0, 0, 0, 0, 0, 0)), "'0000-00-00 00:00:00.000000'");
        assert_eq!(
            lit(dt(9999, 12, 31, 23, 59, 59, 999_999)),
            "'9999-12-31 23:59:59.999999'"
        );
        assert_eq!(
            lit(dt(987, 1, 2, 3, 4, 5, 60)),
            "'0987-01-02 03:04:05.000060'"
        );
        assert_eq!(
            lit(Value::Date {
                year: 2026,
                month: 11,
                day: 4
            }),
            "'2026-11-04'"
        );
        assert_eq!(
            lit(Value::Timestamp {
                secs: 1_700_000_000,
                micros: 5
            }),
            "'2023-11-14 22:13:20.000005'"
        );
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
