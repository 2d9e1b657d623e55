//! Dates and times: formatting as the server prints them, strict parsing of the ISO-like forms,
//! and TIMESTAMP ↔ DATETIME in UTC.
//!
//! TIMESTAMP values travel as seconds since the epoch (UTC). Converting them to DATETIME (or
//! to text) uses UTC, which matches the server only when the session that runs the copy has
//! `time_zone = '+00:00'` — the engine sets that on every session it opens.

use crate::value::Value;

/// Fields of a DATETIME (or of a DATE with zero time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTimeParts {
    /// Year.
    pub year: u16,
    /// Month 0..=12.
    pub month: u8,
    /// Day 0..=31.
    pub day: u8,
    /// Hour.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
    /// Microseconds.
    pub micros: u32,
}

impl DateTimeParts {
    /// True when the time of day is 00:00:00.000000.
    pub fn time_is_zero(&self) -> bool {
        self.hour == 0 && self.minute == 0 && self.second == 0 && self.micros == 0
    }

    /// True for `0000-00-00` (date part).
    pub fn date_is_zero(&self) -> bool {
        self.year == 0 && self.month == 0 && self.day == 0
    }

    /// The parts as a DATETIME value.
    pub fn to_datetime_value(self) -> Value {
        Value::DateTime {
            year: self.year,
            month: self.month,
            day: self.day,
            hour: self.hour,
            minute: self.minute,
            second: self.second,
            micros: self.micros,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days in a month (0 for month 0).
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            let y = year as u32;
            if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) {
                29
            } else {
                28
            }
        }
        _ => 0,
    }
}

/// A TIMESTAMP (UTC seconds) as DATETIME parts in UTC. 0 is the zero timestamp
/// `0000-00-00 00:00:00`.
pub fn timestamp_to_parts(secs: u32, micros: u32) -> DateTimeParts {
    if secs == 0 && micros == 0 {
        return DateTimeParts {
            year: 0,
            month: 0,
            day: 0,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        };
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    DateTimeParts {
        year: y as u16,
        month: m as u8,
        day: d as u8,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
        micros,
    }
}

/// DATETIME parts (UTC) as TIMESTAMP seconds; `None` outside the TIMESTAMP range
/// (1970-01-01 00:00:01 .. 2038-01-19 03:14:07 UTC) or for partial zero dates. The zero
/// datetime maps to the zero timestamp.
pub fn parts_to_timestamp(p: &DateTimeParts) -> Option<(u32, u32)> {
    if p.date_is_zero() && p.time_is_zero() {
        return Some((0, 0));
    }
    if !valid_date(p.year, p.month, p.day) {
        return None;
    }
    let days = days_from_civil(p.year as i64, p.month as u32, p.day as u32);
    let secs = days * 86_400 + p.hour as i64 * 3600 + p.minute as i64 * 60 + p.second as i64;
    if !(1..=2_147_483_647).contains(&secs) {
        return None;
    }
    Some((secs as u32, p.micros))
}

/// True for a real calendar date (no zero parts).
pub fn valid_date(year: u16, month: u8, day: u8) -> bool {
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) && year <= 9999
}

/// `YYYY-MM-DD`.
pub fn format_date(year: u16, month: u8, day: u8) -> String {
    format!("{year:04}-{month:02}-{day:02}")
}

fn push_fraction(out: &mut String, micros: u32, fsp: u8) {
    if fsp == 0 {
        return;
    }
    let digits = format!("{micros:06}");
    out.push('.');
    out.push_str(&digits[..fsp.min(6) as usize]);
}

/// `YYYY-MM-DD hh:mm:ss[.ffffff]` with `fsp` fraction digits.
pub fn format_datetime(p: &DateTimeParts, fsp: u8) -> String {
    let mut out = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    );
    push_fraction(&mut out, p.micros, fsp);
    out
}

/// `[-]hh:mm:ss[.ffffff]` with `fsp` fraction digits.
pub fn format_time(
    negative: bool,
    hours: u16,
    minutes: u8,
    seconds: u8,
    micros: u32,
    fsp: u8,
) -> String {
    let mut out = format!(
        "{}{:02}:{:02}:{:02}",
        if negative { "-" } else { "" },
        hours,
        minutes,
        seconds
    );
    push_fraction(&mut out, micros, fsp);
    out
}

fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn fraction(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u32 = s.parse().ok()?;
    for _ in s.len()..6 {
        v *= 10;
    }
    Some(v)
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DD[ T]hh:mm:ss[.f{1,6}]` strictly. Only real dates or the
/// all-zero date are accepted.
pub fn parse_datetime(s: &str) -> Option<DateTimeParts> {
    let s = s.trim();
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let year = digits(dp.next()?, 4, 4)? as u16;
    let month = digits(dp.next()?, 1, 2)? as u8;
    let day = digits(dp.next()?, 1, 2)? as u8;
    if dp.next().is_some() {
        return None;
    }
    let mut p = DateTimeParts {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    };
    if let Some(t) = time {
        let (hms, frac) = match t.find('.') {
            Some(i) => (&t[..i], Some(&t[i + 1..])),
            None => (t, None),
        };
        let mut tp = hms.split(':');
        p.hour = digits(tp.next()?, 1, 2)? as u8;
        p.minute = digits(tp.next()?, 1, 2)? as u8;
        p.second = digits(tp.next()?, 1, 2)? as u8;
        if tp.next().is_some() || p.hour > 23 || p.minute > 59 || p.second > 59 {
            return None;
        }
        if let Some(f) = frac {
            p.micros = fraction(f)?;
        }
    }
    if !(p.date_is_zero() || valid_date(p.year, p.month, p.day)) {
        return None;
    }
    Some(p)
}

/// Parses `[-]h{1,3}:mm:ss[.f{1,6}]` strictly (range ±838:59:59).
pub fn parse_time(s: &str) -> Option<Value> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = match s.find('.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut tp = hms.split(':');
    let hours = digits(tp.next()?, 1, 3)? as u16;
    let minutes = digits(tp.next()?, 2, 2)? as u8;
    let seconds = digits(tp.next()?, 2, 2)? as u8;
    if tp.next().is_some() || hours > 838 || minutes > 59 || seconds > 59 {
        return None;
    }
    let micros = match frac {
        Some(f) => fraction(f)?,
        None => 0,
    };
    if hours == 838 && (minutes, seconds) == (59, 59) && micros > 0 {
        return None;
    }
    Some(Value::Time {
        negative: negative && (hours, minutes, seconds, micros) != (0, 0, 0, 0),
        hours,
        minutes,
        seconds,
        micros,
    })
}

/// A TIME value as signed microseconds (for comparisons).
pub fn time_micros(negative: bool, hours: u16, minutes: u8, seconds: u8, micros: u32) -> i64 {
    let v =
        ((hours as i64 * 60 + minutes as i64) * 60 + seconds as i64) * 1_000_000 + micros as i64;
    if negative {
        -v
    } else {
        v
    }
}

/// DATE / DATETIME / TIMESTAMP values as DATETIME parts (TIMESTAMP in UTC).
pub fn value_to_parts(v: &Value) -> Option<DateTimeParts> {
    match *v {
        Value::Date { year, month, day } => Some(DateTimeParts {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        }),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => Some(DateTimeParts {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        }),
        Value::Timestamp { secs, micros } => Some(timestamp_to_parts(secs, micros)),
        _ => None,
    }
}

/// True when `micros` needs more than `fsp` fraction digits.
pub fn exceeds_fsp(micros: u32, fsp: u8) -> bool {
    let unit = 10u32.pow(6 - fsp.min(6) as u32);
    !micros.is_multiple_of(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-719_468i64, -1, 0, 1, 11_016, 19_723, 24_855, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn timestamps_in_utc() {
        let p = timestamp_to_parts(1_700_000_000, 250_000);
        assert_eq!(format_datetime(&p, 3), "2023-11-14 22:13:20.250");
        assert_eq!(parts_to_timestamp(&p), Some((1_700_000_000, 250_000)));
        let zero = timestamp_to_parts(0, 0);
        assert!(zero.date_is_zero());
        assert_eq!(parts_to_timestamp(&zero), Some((0, 0)));
        let too_late = parse_datetime("2038-01-19 03:14:08").unwrap();
        assert_eq!(parts_to_timestamp(&too_late), None);
        let last = parse_datetime("2038-01-19 03:14:07").unwrap();
        assert_eq!(parts_to_timestamp(&last), Some((2_147_483_647, 0)));
        assert_eq!(
            parts_to_timestamp(&parse_datetime("1970-01-01 00:00:00").unwrap()),
            None
        );
    }

    #[test]
    fn strict_parsing() {
        let p = parse_datetime("2024-02-29 23:59:59.5").unwrap();
        assert_eq!(p.micros, 500_000);
        assert!(parse_datetime("2023-02-29").is_none());
        assert!(parse_datetime("2024-13-01").is_none());
        assert!(parse_datetime("2024/01/01").is_none());
        assert!(parse_datetime("2024-01-01 24:00:00").is_none());
        assert!(parse_datetime("0000-00-00").unwrap().date_is_zero());
        assert_eq!(
            parse_time("-12:30:00.25"),
            Some(Value::Time {
                negative: true,
                hours: 12,
                minutes: 30,
                seconds: 0,
                micros: 250_000
            })
        );
        assert!(parse_time("839:00:00").is_none());
        assert!(parse_time("1:2:3").is_none());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_date(2024, 1, 2), "2024-01-02");
        assert_eq!(format_time(true, 100, 2, 3, 120_000, 2), "-100:02:03.12");
        assert_eq!(format_time(false, 1, 2, 3, 0, 0), "01:02:03");
        assert!(exceeds_fsp(1, 5));
        assert!(!exceeds_fsp(10, 5));
        assert!(!exceeds_fsp(0, 0));
        assert!(exceeds_fsp(500_000, 0));
        assert_eq!(time_micros(true, 1, 0, 0, 1), -3_600_000_001);
    }
}
