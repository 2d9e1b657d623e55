//! The per-value hot path: one binlog-encoded column value → one [`Value`].
//!
//! mysql_common's own row decoder (`BinlogRow`) builds a `Column` (schema, table and name
//! strings) for every column of every row and re-parses the optional metadata per row, and it
//! loses YEAR 0, negative old-style TIME and the type of TIMESTAMP/DECIMAL values (it returns
//! them as text). This module decodes straight from the row bytes with a plan compiled once
//! per TABLE_MAP, and reuses mysql_common's codecs for the hard parts: DECIMAL
//! (`decimal::Decimal`), packed temporal values (`binlog::misc`), binary JSON (`jsonb`) and
//! JSON diffs (`jsondiff`).

use mysql_common::binlog::decimal::Decimal;
use mysql_common::binlog::jsonb;
use mysql_common::binlog::jsondiff::JsonDiff;
use mysql_common::binlog::misc::my_timestamp_from_binary;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use rowshift_transform::Value;

use super::columns::ColPlan;

/// Why one value could not be read. Context (file, offset, table, column) is added by the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueError {
    /// The row image ends inside the value.
    Truncated,
    /// The bytes are not a valid value of the type.
    Invalid(String),
    /// The column type cannot be decoded.
    Unsupported(u8),
}

/// A value as read from a row image: partial JSON updates stay diffs until they are applied
/// to the before image.
#[derive(Debug)]
pub(crate) enum RawValue<'a> {
    /// A complete value.
    Full(Value),
    /// A list of JSON diffs (PARTIAL_UPDATE_ROWS after image).
    JsonDiffs(Vec<JsonDiff<'a>>),
}

/// A byte cursor with checked reads.
pub(crate) struct Cursor<'a> {
    pub buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if self.buf.len() < n {
            return Err(ValueError::Truncated);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ValueError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Little-endian unsigned integer of `n` (1..=8) bytes.
    #[inline]
    pub fn uint_le(&mut self, n: usize) -> Result<u64, ValueError> {
        let s = self.take(n)?;
        let mut v = 0u64;
        for (i, b) in s.iter().enumerate() {
            v |= (*b as u64) << (8 * i);
        }
        Ok(v)
    }
}

#[inline]
fn length_prefixed<'a>(c: &mut Cursor<'a>, len_bytes: u8) -> Result<&'a [u8], ValueError> {
    let n = c.uint_le(len_bytes as usize)? as usize;
    c.take(n)
}

/// Decodes one non-NULL value.
#[inline]
pub(crate) fn decode_value<'a>(
    plan: ColPlan,
    c: &mut Cursor<'a>,
    partial_json: bool,
) -> Result<RawValue<'a>, ValueError> {
    let v = match plan {
        ColPlan::Tiny { unsigned } => {
            let [b] = c.array::<1>()?;
            if unsigned {
                Value::UInt(b as u64)
            } else {
                Value::Int(b as i8 as i64)
            }
        }
        ColPlan::Short { unsigned } => {
            let a = c.array::<2>()?;
            if unsigned {
                Value::UInt(u16::from_le_bytes(a) as u64)
            } else {
                Value::Int(i16::from_le_bytes(a) as i64)
            }
        }
        ColPlan::Int24 { unsigned } => {
            let v = c.uint_le(3)? as u32;
            if unsigned {
                Value::UInt(v as u64)
            } else {
                Value::Int(((v << 8) as i32 >> 8) as i64)
            }
        }
        ColPlan::Long { unsigned } => {
            let a = c.array::<4>()?;
            if unsigned {
                Value::UInt(u32::from_le_bytes(a) as u64)
            } else {
                Value::Int(i32::from_le_bytes(a) as i64)
            }
        }
        ColPlan::LongLong { unsigned } => {
            let a = c.array::<8>()?;
            if unsigned {
                Value::UInt(u64::from_le_bytes(a))
            } else {
                Value::Int(i64::from_le_bytes(a))
            }
        }
        ColPlan::Float => Value::Float(f32::from_le_bytes(c.array::<4>()?)),
        ColPlan::Double => Value::Double(f64::from_le_bytes(c.array::<8>()?)),
        ColPlan::Decimal {
            precision,
            scale,
            size,
        } => {
            let bytes = c.take(size as usize)?;
            Value::Decimal(decode_decimal(bytes, precision, scale)?)
        }
        ColPlan::Year => {
            let [y] = c.array::<1>()?;
            Value::Year(if y == 0 { 0 } else { 1900 + y as u16 })
        }
        ColPlan::Date => {
            let v = c.uint_le(3)? as u32;
            Value::Date {
                year: (v >> 9) as u16,
                month: ((v >> 5) & 15) as u8,
                day: (v & 31) as u8,
            }
        }
        ColPlan::Time => {
            let v = c.uint_le(3)? as u32;
            let signed = (v << 8) as i32 >> 8;
            let abs = signed.unsigned_abs();
            Value::Time {
                negative: signed < 0,
                hours: (abs / 10000) as u16,
                minutes: ((abs / 100) % 100) as u8,
                seconds: (abs % 100) as u8,
                micros: 0,
            }
        }
        ColPlan::Time2 { fsp } => {
            let n = 3 + (fsp as usize).div_ceil(2);
            let bytes = c.take(n)?;
            time_from_packed(time2_packed(bytes, fsp))
        }
        ColPlan::DateTime => {
            let v = u64::from_le_bytes(c.array::<8>()?);
            let d = v / 1_000_000;
            let t = v % 1_000_000;
            Value::DateTime {
                year: (d / 10000) as u16,
                month: ((d / 100) % 100) as u8,
                day: (d % 100) as u8,
                hour: (t / 10000) as u8,
                minute: ((t / 100) % 100) as u8,
                second: (t % 100) as u8,
                micros: 0,
            }
        }
        ColPlan::DateTime2 { fsp } => {
            let n = 5 + (fsp as usize).div_ceil(2);
            let bytes = c.take(n)?;
            datetime_from_packed(datetime2_packed(bytes, fsp))
        }
        ColPlan::Timestamp => Value::Timestamp {
            secs: u32::from_le_bytes(c.array::<4>()?),
            micros: 0,
        },
        ColPlan::Timestamp2 { fsp } => {
            let n = 4 + (fsp as usize).div_ceil(2);
            let bytes = c.take(n)?;
            let (secs, usec) = my_timestamp_from_binary(bytes, fsp)
                .map_err(|e| ValueError::Invalid(e.to_string()))?;
            if !(0..1_000_000).contains(&usec) {
                return Err(ValueError::Invalid(
                    "TIMESTAMP fraction out of range".into(),
                ));
            }
            Value::Timestamp {
                secs: secs as u32,
                micros: usec as u32,
            }
        }
        ColPlan::Bit { width, bytes } => {
            let s = c.take(bytes as usize)?;
            let mut v = 0u64;
            for b in s {
                v = (v << 8) | *b as u64;
            }
            Value::Bit { bits: v, width }
        }
        ColPlan::Enum { bytes } => Value::Enum(c.uint_le(bytes as usize)? as u16),
        ColPlan::Set { bytes } => Value::Set(c.uint_le(bytes as usize)?),
        ColPlan::Char { len_bytes, pad_to } => {
            let s = length_prefixed(c, len_bytes)?;
            let mut v = Vec::with_capacity(s.len().max(pad_to as usize));
            v.extend_from_slice(s);
            if v.len() < pad_to as usize {
                v.resize(pad_to as usize, 0);
            }
            Value::Bytes(v)
        }
        ColPlan::VarChar { len_bytes } | ColPlan::Blob { len_bytes } => {
            Value::Bytes(length_prefixed(c, len_bytes)?.to_vec())
        }
        ColPlan::Json { len_bytes } => {
            let s = length_prefixed(c, len_bytes)?;
            if partial_json {
                let mut buf = ParseBuf(s);
                let mut diffs = Vec::new();
                while !buf.is_empty() {
                    let d: JsonDiff<'a> = buf
                        .parse(())
                        .map_err(|e| ValueError::Invalid(format!("JSON diff: {e}")))?;
                    diffs.push(d);
                }
                return Ok(RawValue::JsonDiffs(diffs));
            }
            super::json_sql::decode_json_value(s)?
        }
        ColPlan::Unsupported { type_code } => return Err(ValueError::Unsupported(type_code)),
    };
    Ok(RawValue::Full(v))
}

/// DECIMAL: an exact decimal string with the column's scale.
pub(crate) fn decode_decimal(bytes: &[u8], precision: u8, scale: u8) -> Result<String, ValueError> {
    // Fast path: up to 18 digits fit an i64 (the common DECIMAL(p<=18, s)).
    if precision <= 18 {
        if let Some(s) = decimal_fast(bytes, precision as usize, scale as usize) {
            return Ok(s);
        }
    }
    let d = Decimal::read_bin(bytes, precision as usize, scale as usize, false)
        .map_err(|e| ValueError::Invalid(format!("DECIMAL: {e}")))?;
    Ok(d.to_string())
}

const DIG_PER_DEC: usize = 9;
const DIG_TO_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Reads the big-endian group of `n` bytes.
fn be_group(b: &[u8]) -> u32 {
    let mut v = 0u32;
    for x in b {
        v = (v << 8) | *x as u32;
    }
    v
}

/// Decodes a DECIMAL of at most 18 digits without allocating intermediate digit buffers.
fn decimal_fast(bytes: &[u8], precision: usize, scale: usize) -> Option<String> {
    let intg = precision - scale;
    let (intg0, intg0x) = (intg / DIG_PER_DEC, intg % DIG_PER_DEC);
    let (frac0, frac0x) = (scale / DIG_PER_DEC, scale % DIG_PER_DEC);
    let size = intg0 * 4 + DIG_TO_BYTES[intg0x] + frac0 * 4 + DIG_TO_BYTES[frac0x];
    if bytes.len() != size || size == 0 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..size].copy_from_slice(bytes);
    let negative = buf[0] & 0x80 == 0;
    buf[0] ^= 0x80;
    if negative {
        for b in &mut buf[..size] {
            *b = !*b;
        }
    }
    let mut pos = 0;
    let mut int_part: u64 = 0;
    let take = |n: usize, pos: &mut usize| {
        let v = be_group(&buf[*pos..*pos + n]);
        *pos += n;
        v
    };
    if intg0x > 0 {
        let v = take(DIG_TO_BYTES[intg0x], &mut pos);
        if v >= 10u32.pow(intg0x as u32) {
            return None;
        }
        int_part = v as u64;
    }
    for _ in 0..intg0 {
        let v = take(4, &mut pos);
        if v >= 1_000_000_000 {
            return None;
        }
        int_part = int_part * 1_000_000_000 + v as u64;
    }
    let mut frac_part: u64 = 0;
    for _ in 0..frac0 {
        let v = take(4, &mut pos);
        if v >= 1_000_000_000 {
            return None;
        }
        frac_part = frac_part * 1_000_000_000 + v as u64;
    }
    if frac0x > 0 {
        let v = take(DIG_TO_BYTES[frac0x], &mut pos);
        if v >= 10u32.pow(frac0x as u32) {
            return None;
        }
        frac_part = frac_part * 10u64.pow(frac0x as u32) + v as u64;
    }
    let zero = int_part == 0 && frac_part == 0;
    let mut s = String::with_capacity(precision + 3);
    if negative && !zero {
        s.push('-');
    }
    push_digits(&mut s, int_part, 1);
    if scale > 0 {
        s.push('.');
        push_digits(&mut s, frac_part, scale);
    }
    Some(s)
}

/// Appends `v` in decimal, left-padded with zeros to `min_width` digits (no `fmt` machinery:
/// this is on the per-row hot path).
fn push_digits(s: &mut String, mut v: u64, min_width: usize) {
    let mut buf = [b'0'; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = buf.len().saturating_sub(min_width.min(buf.len())).min(i);
    for &b in &buf[start..] {
        s.push(b as char);
    }
}

/// TIME(fsp) binary → packed `(int_part << 24) + micros`, as MySQL's
/// `my_time_packed_from_binary`. (mysql_common's version underflows an unsigned fraction for
/// negative TIME(1)/TIME(2) values with a fraction, so this one is ours.) `bytes` holds
/// exactly `3 + ceil(fsp / 2)` bytes.
fn time2_packed(b: &[u8], fsp: u8) -> i64 {
    const TIMEF_INT_OFS: i64 = 0x80_0000;
    const TIMEF_OFS: i64 = 0x8000_0000_0000;
    let be = |s: &[u8]| s.iter().fold(0i64, |a, x| (a << 8) | *x as i64);
    match fsp {
        1 | 2 => {
            let mut intpart = be(&b[..3]) - TIMEF_INT_OFS;
            let mut frac = b[3] as i64;
            if intpart < 0 && frac > 0 {
                intpart += 1;
                frac -= 0x100;
            }
            (intpart << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut intpart = be(&b[..3]) - TIMEF_INT_OFS;
            let mut frac = be(&b[3..5]);
            if intpart < 0 && frac > 0 {
                intpart += 1;
                frac -= 0x10000;
            }
            (intpart << 24) + frac * 100
        }
        5 | 6 => be(&b[..6]) - TIMEF_OFS,
        _ => (be(&b[..3]) - TIMEF_INT_OFS) << 24,
    }
}

/// DATETIME(fsp) binary → packed `(int_part << 24) + micros`, as MySQL's
/// `my_datetime_packed_from_binary` (ours: wrapping arithmetic, so corrupt bytes give a wrong
/// value, never an overflow panic). `b` holds exactly `5 + ceil(fsp / 2)` bytes.
fn datetime2_packed(b: &[u8], fsp: u8) -> i64 {
    const DATETIMEF_INT_OFS: i64 = 0x80_0000_0000;
    let be = |s: &[u8]| s.iter().fold(0i64, |a, x| (a << 8) | *x as i64);
    let intpart = be(&b[..5]) - DATETIMEF_INT_OFS;
    let frac = match fsp {
        1 | 2 => (b[5] as i8) as i64 * 10_000,
        3 | 4 => i16::from_be_bytes([b[5], b[6]]) as i64 * 100,
        5 | 6 => (be(&b[5..8]) << 40) >> 40,
        _ => 0,
    };
    intpart.wrapping_shl(24).wrapping_add(frac)
}

fn time_from_packed(tmp: i64) -> Value {
    let negative = tmp < 0;
    let tmp = tmp.unsigned_abs();
    let hms = tmp >> 24;
    Value::Time {
        negative,
        hours: ((hms >> 12) % (1 << 10)) as u16,
        minutes: ((hms >> 6) % (1 << 6)) as u8,
        seconds: (hms % (1 << 6)) as u8,
        micros: (tmp % (1 << 24)) as u32,
    }
}

fn datetime_from_packed(tmp: i64) -> Value {
    let tmp = tmp.unsigned_abs();
    let micros = (tmp % (1 << 24)) as u32;
    let ymdhms = tmp >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    Value::DateTime {
        year: (ym / 13) as u16,
        month: (ym % 13) as u8,
        day: (ymd % (1 << 5)) as u8,
        hour: (hms >> 12) as u8,
        minute: ((hms >> 6) % (1 << 6)) as u8,
        second: (hms % (1 << 6)) as u8,
        micros,
    }
}

/// Maximum JSON nesting accepted (MySQL allows 100).
const MAX_JSON_DEPTH: usize = 150;

/// MySQL binary JSON → `serde_json::Value`, keeping number types: integers stay integers,
/// doubles stay doubles (`1.0` is not `1`).
pub(crate) fn decode_jsonb(bytes: &[u8]) -> Result<serde_json::Value, ValueError> {
    let v: jsonb::Value<'_> = ParseBuf(bytes)
        .parse(())
        .map_err(|e| ValueError::Invalid(format!("binary JSON: {e}")))?;
    jsonb_to_json(v, 0)
}

fn invalid<E: std::fmt::Display>(e: E) -> ValueError {
    ValueError::Invalid(format!("binary JSON: {e}"))
}

/// Converts one decoded jsonb value.
pub(crate) fn jsonb_to_json(
    v: jsonb::Value<'_>,
    depth: usize,
) -> Result<serde_json::Value, ValueError> {
    use serde_json::Value as J;
    if depth > MAX_JSON_DEPTH {
        return Err(ValueError::Invalid("binary JSON nested too deeply".into()));
    }
    Ok(match v {
        jsonb::Value::Null => J::Null,
        jsonb::Value::Bool(b) => J::Bool(b),
        jsonb::Value::I16(x) => J::from(x),
        jsonb::Value::U16(x) => J::from(x),
        jsonb::Value::I32(x) => J::from(x),
        jsonb::Value::U32(x) => J::from(x),
        jsonb::Value::I64(x) => J::from(x),
        jsonb::Value::U64(x) => J::from(x),
        jsonb::Value::F64(x) => serde_json::Number::from_f64(x)
            .map(J::Number)
            .ok_or_else(|| ValueError::Invalid("binary JSON: non-finite double".into()))?,
        jsonb::Value::String(s) => J::String(
            std::str::from_utf8(s.str_raw())
                .map_err(invalid)?
                .to_owned(),
        ),
        jsonb::Value::SmallArray(a) => {
            let mut out = Vec::with_capacity(a.element_count().min(4096) as usize);
            for e in a.iter() {
                out.push(jsonb_to_json(e.map_err(invalid)?, depth + 1)?);
            }
            J::Array(out)
        }
        jsonb::Value::LargeArray(a) => {
            let mut out = Vec::with_capacity(a.element_count().min(4096) as usize);
            for e in a.iter() {
                out.push(jsonb_to_json(e.map_err(invalid)?, depth + 1)?);
            }
            J::Array(out)
        }
        jsonb::Value::SmallObject(o) => {
            let mut out = serde_json::Map::new();
            for e in o.iter() {
                let (k, v) = e.map_err(invalid)?;
                let key = std::str::from_utf8(k.value_raw())
                    .map_err(invalid)?
                    .to_owned();
                out.insert(key, jsonb_to_json(v, depth + 1)?);
            }
            J::Object(out)
        }
        jsonb::Value::LargeObject(o) => {
            let mut out = serde_json::Map::new();
            for e in o.iter() {
                let (k, v) = e.map_err(invalid)?;
                let key = std::str::from_utf8(k.value_raw())
                    .map_err(invalid)?
                    .to_owned();
                out.insert(key, jsonb_to_json(v, depth + 1)?);
            }
            J::Object(out)
        }
        o @ jsonb::Value::Opaque(_) => opaque_to_json(o)?,
    })
}

/// Opaque JSON scalars: DECIMAL becomes a JSON number (through `f64`: more than 17
/// significant digits are not kept), DATE/TIME/DATETIME/TIMESTAMP become strings as MySQL
/// prints them, anything else `base64:type<N>:<data>` as MySQL prints it.
fn opaque_to_json(v: jsonb::Value<'_>) -> Result<serde_json::Value, ValueError> {
    use mysql_common::binlog::jsonb::{JsonDom, JsonNumber, JsonScalar};
    let is_decimal = v.field_type() == Some(ColumnType::MYSQL_TYPE_NEWDECIMAL);
    let dom = v.parse().map_err(invalid)?;
    if is_decimal {
        if let JsonDom::Scalar(JsonScalar::Number(JsonNumber::Decimal(d))) = &dom {
            let text = d.to_string();
            let f: f64 = text.parse().map_err(invalid)?;
            return serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .ok_or_else(|| ValueError::Invalid("binary JSON: decimal out of range".into()));
        }
    }
    Ok(serde_json::Value::from(dom))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], p: u8, s: u8) -> String {
        let slow = Decimal::read_bin(bytes, p as usize, s as usize, false)
            .unwrap()
            .to_string();
        let fast = decode_decimal(bytes, p, s).unwrap();
        assert_eq!(slow, fast, "p={p} s={s} {bytes:?}");
        fast
    }

    /// Test-only encoder of MySQL's binary DECIMAL at (p, s).
    fn enc(text: &str, p: usize, s: usize) -> Vec<u8> {
        let negative = text.starts_with('-');
        let t = text.trim_start_matches('-');
        let (i, f) = t.split_once('.').unwrap_or((t, ""));
        let intg = p - s;
        let i = format!("{i:0>intg$}");
        let f = format!("{f:0<s$}");
        let mut out = Vec::new();
        let mut put = |digits: &str| {
            if digits.is_empty() {
                return;
            }
            let n = DIG_TO_BYTES[digits.len()];
            let v: u32 = digits.parse().unwrap();
            out.extend_from_slice(&v.to_be_bytes()[4 - n..]);
        };
        let lead = intg % DIG_PER_DEC;
        put(&i[..lead]);
        for c in i.as_bytes()[lead..].chunks(DIG_PER_DEC) {
            put(std::str::from_utf8(c).unwrap());
        }
        for c in f.as_bytes().chunks(DIG_PER_DEC) {
            put(std::str::from_utf8(c).unwrap());
        }
        if negative {
            for b in &mut out {
                *b = !*b;
            }
        }
        out[0] ^= 0x80;
        assert_eq!(
            out.len(),
            mysql_common::binlog::decimal::decimal_bin_size(p, s)
        );
        out
    }

    #[test]
    fn decimal_fast_path_agrees_with_mysql_common() {
        for (text, p, s) in [
            ("1.50", 5, 2),
            ("-1.50", 5, 2),
            ("0.00", 5, 2),
            ("123456789012.345678", 18, 6),
            ("-999999999999999999", 18, 0),
            ("0.000000001", 10, 9),
            ("-0.5", 2, 1),
        ] {
            let b = enc(text, p, s);
            assert_eq!(dec(&b, p as u8, s as u8), text);
        }
    }

    #[test]
    fn negative_fractional_time() {
        // TIME(2) '-00:00:01.50': the server stores int part -2 (floor) and fraction -50 as 0xce.
        // (my_time_packed_to_binary: OFS - 2 = 0x7ffffe, (char)-50 = 0xce.)
        let v = time_from_packed(time2_packed(&[0x7f, 0xff, 0xfe, 0xce], 2));
        assert_eq!(
            v,
            Value::Time {
                negative: true,
                hours: 0,
                minutes: 0,
                seconds: 1,
                micros: 500_000
            }
        );
        let v = time_from_packed(time2_packed(&[0x80, 0x10, 0x83, 0x00, 0x64], 3));
        assert_eq!(
            v,
            Value::Time {
                negative: false,
                hours: 1,
                minutes: 2,
                seconds: 3,
                micros: 10_000
            }
        );
    }

    #[test]
    fn ints_and_temporals() {
        let mut c = Cursor {
            buf: &[0xff, 0xff, 0x7f],
        };
        assert_eq!(
            decode_value(ColPlan::Int24 { unsigned: false }, &mut c, false)
                .map(|v| match v {
                    RawValue::Full(v) => v,
                    _ => Value::Null,
                })
                .unwrap(),
            Value::Int(8_388_607)
        );
        let mut c = Cursor { buf: &[0x00] };
        match decode_value(ColPlan::Year, &mut c, false).unwrap() {
            RawValue::Full(v) => assert_eq!(v, Value::Year(0)),
            _ => panic!(),
        }
        let mut c = Cursor { buf: &[1, 2] };
        assert_eq!(
            decode_value(ColPlan::Long { unsigned: true }, &mut c, false).err(),
            Some(ValueError::Truncated)
        );
    }
}
