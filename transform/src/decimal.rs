//! Exact decimal helpers over [`bigdecimal::BigDecimal`].
//!
//! `bigdecimal` rather than `rust_decimal`: MySQL's DECIMAL holds up to 65 digits with up to
//! 30 after the point, and `rust_decimal`'s 96-bit mantissa stops at 28-29 digits. Division is
//! done here on integers (`BigInt` quotient and remainder) so that rounding to the result scale
//! is exact, as MySQL's is (half away from zero).

use std::str::FromStr;

use bigdecimal::num_bigint::{BigInt, Sign};
use bigdecimal::{BigDecimal, RoundingMode, Signed, Zero};

/// Largest scale MySQL keeps for a decimal result (`DECIMAL_MAX_SCALE`).
pub const MAX_SCALE: i64 = 30;
/// Most digits a DECIMAL can hold (`DECIMAL_MAX_PRECISION`).
pub const MAX_PRECISION: u64 = 65;
/// Largest exponent accepted when reading text (anything larger cannot fit a DECIMAL anyway).
const MAX_EXPONENT: i64 = 200;

/// Parses a decimal number strictly: optional sign, digits with an optional point, optional
/// exponent (bounded). No surrounding spaces.
pub fn parse(text: &str) -> Option<BigDecimal> {
    let (len, _) = scan_number(text.as_bytes())?;
    if len != text.len() {
        return None;
    }
    BigDecimal::from_str(text).ok()
}

/// Scans the longest numeric prefix of `bytes` (sign, digits, point, exponent). Returns its
/// length and whether it had an exponent. `None` when there are no digits.
pub(crate) fn scan_number(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < bytes.len() && bytes[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        digits += j - frac_start;
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return None;
    }
    let mut has_exp = false;
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'-' || bytes[j] == b'+') {
            j += 1;
        }
        let exp_start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            // Bound the exponent so a hostile "1e999999999" cannot allocate gigabytes.
            let exp_text = std::str::from_utf8(&bytes[exp_start..j]).ok()?;
            let exp: i64 = exp_text.parse().unwrap_or(i64::MAX);
            if exp > MAX_EXPONENT {
                return None;
            }
            i = j;
            has_exp = true;
        }
    }
    Some((i, has_exp))
}

/// Formats with exactly the value's scale, never in exponent notation: `-12.3400`, `0.5`, `100`.
pub fn format(d: &BigDecimal) -> String {
    let (int, scale) = d.as_bigint_and_exponent();
    let negative = int.sign() == Sign::Minus;
    let digits = int.magnitude().to_string();
    let mut out = String::with_capacity(digits.len() + 3);
    if negative {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(&digits);
        if digits != "0" {
            for _ in 0..(-scale) {
                out.push('0');
            }
        }
        return out;
    }
    let scale = scale as usize;
    if digits.len() > scale {
        out.push_str(&digits[..digits.len() - scale]);
        out.push('.');
        out.push_str(&digits[digits.len() - scale..]);
    } else {
        out.push_str("0.");
        for _ in 0..(scale - digits.len()) {
            out.push('0');
        }
        out.push_str(&digits);
    }
    out
}

/// Rounds half away from zero to `scale` digits after the point (or pads with zeros).
pub fn round(d: &BigDecimal, scale: i64) -> BigDecimal {
    d.with_scale_round(scale, RoundingMode::HalfUp)
}

/// The scale of a value (digits after the point; negative for `1E+2` forms).
pub fn scale_of(d: &BigDecimal) -> i64 {
    d.as_bigint_and_exponent().1
}

/// Number of digits before the point (0 for values below 1).
pub fn integer_digits(d: &BigDecimal) -> u64 {
    let (int, scale) = d.as_bigint_and_exponent();
    if int.is_zero() {
        return 0;
    }
    let total = int.magnitude().to_string().len() as i64;
    (total - scale).max(0) as u64
}

/// `a / b` rounded half away from zero to `scale` digits; `None` when `b` is zero.
pub fn div(a: &BigDecimal, b: &BigDecimal, scale: i64) -> Option<BigDecimal> {
    if b.is_zero() {
        return None;
    }
    let (ia, sa) = a.as_bigint_and_exponent();
    let (ib, sb) = b.as_bigint_and_exponent();
    // a/b * 10^scale = ia * 10^(sb - sa + scale) / ib
    let k = sb - sa + scale;
    let ten = BigInt::from(10u8);
    let (num, den) = if k >= 0 {
        (ia * num_pow(&ten, k as u64), ib)
    } else {
        (ia, ib * num_pow(&ten, (-k) as u64))
    };
    let negative = (num.sign() == Sign::Minus) != (den.sign() == Sign::Minus);
    let num = num.abs();
    let den = den.abs();
    let mut q = &num / &den;
    let r = &num - &q * &den;
    if r * 2u8 >= den {
        q += 1u8;
    }
    if negative {
        q = -q;
    }
    Some(BigDecimal::new(q, scale))
}

/// `a / b` truncated toward zero to `scale` digits; `None` when `b` is zero.
pub fn div_truncated(a: &BigDecimal, b: &BigDecimal, scale: i64) -> Option<BigDecimal> {
    if b.is_zero() {
        return None;
    }
    let (ia, sa) = a.as_bigint_and_exponent();
    let (ib, sb) = b.as_bigint_and_exponent();
    let k = sb - sa + scale;
    let ten = BigInt::from(10u8);
    let (num, den) = if k >= 0 {
        (ia * num_pow(&ten, k as u64), ib)
    } else {
        (ia, ib * num_pow(&ten, (-k) as u64))
    };
    // BigInt division truncates toward zero.
    Some(BigDecimal::new(num / den, scale))
}

/// The digits after the point of MariaDB's `a / b` (its `decimal_div` with
/// `div_precision_increment = 4`, not rounded afterwards): both operands' scales rounded up to
/// whole 9-digit words, plus what remains of the increment, rounded up to a word.
pub fn mariadb_quotient_scale(scale_a: i64, scale_b: i64) -> i64 {
    let word = |s: i64| (s.max(0) + 8) / 9 * 9;
    let (fa, fb) = (word(scale_a), word(scale_b));
    let incr = (4 - (fa - scale_a.max(0)) - (fb - scale_b.max(0))).max(0);
    word(fa + fb + incr)
}

fn num_pow(base: &BigInt, exp: u64) -> BigInt {
    let mut out = BigInt::from(1u8);
    for _ in 0..exp {
        out *= base;
    }
    out
}

/// Caps the scale at [`MAX_SCALE`] (rounding) and checks the total digits against
/// [`MAX_PRECISION`]. `None` on overflow.
pub fn normalize_result(d: BigDecimal) -> Option<BigDecimal> {
    let d = if scale_of(&d) > MAX_SCALE {
        round(&d, MAX_SCALE)
    } else {
        d
    };
    let scale = scale_of(&d).max(0) as u64;
    if integer_digits(&d) + scale > MAX_PRECISION {
        return None;
    }
    Some(d)
}

/// The value as an `f64` (nearest).
pub fn to_f64(d: &BigDecimal) -> f64 {
    format(d).parse::<f64>().unwrap_or(f64::NAN)
}

/// True when negative (and not zero).
pub fn is_negative(d: &BigDecimal) -> bool {
    d.is_negative()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> BigDecimal {
        parse(s).unwrap()
    }

    #[test]
    fn mariadb_division_keeps_whole_words() {
        assert_eq!(mariadb_quotient_scale(0, 0), 9);
        assert_eq!(mariadb_quotient_scale(3, 0), 9);
        assert_eq!(mariadb_quotient_scale(9, 0), 18);
        assert_eq!(mariadb_quotient_scale(7, 2), 18);
        assert_eq!(
            format(&div_truncated(&d("1"), &d("3"), 9).unwrap()),
            "0.333333333"
        );
        assert_eq!(
            format(&div_truncated(&d("-2"), &d("3"), 2).unwrap()),
            "-0.66"
        );
        assert!(div_truncated(&d("1"), &d("0"), 2).is_none());
    }

    #[test]
    fn parse_and_format_keep_scale() {
        for s in [
            "-12.3400",
            "0.5",
            "100",
            "0",
            "-0.001",
            "12345678901234567890.123456789",
        ] {
            assert_eq!(format(&d(s)), s);
        }
        assert_eq!(format(&d("1e2")), "100");
        assert_eq!(format(&d("1.5e-3")), "0.0015");
        assert!(parse("1e999999999").is_none());
        assert!(parse("abc").is_none());
        assert!(parse("1.2.3").is_none());
        assert!(parse(" 1").is_none());
        assert!(parse(".").is_none());
        assert_eq!(format(&d(".5")), "0.5");
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(format(&round(&d("2.5"), 0)), "3");
        assert_eq!(format(&round(&d("-2.5"), 0)), "-3");
        assert_eq!(format(&round(&d("1.2345"), 3)), "1.235");
        assert_eq!(format(&round(&d("1.2"), 3)), "1.200");
    }

    #[test]
    fn division_is_exact() {
        assert_eq!(format(&div(&d("1"), &d("3"), 4).unwrap()), "0.3333");
        assert_eq!(format(&div(&d("2"), &d("3"), 4).unwrap()), "0.6667");
        assert_eq!(format(&div(&d("-2"), &d("3"), 4).unwrap()), "-0.6667");
        assert_eq!(
            format(&div(&d("5.05"), &d("0.014"), 6).unwrap()),
            "360.714286"
        );
        assert!(div(&d("1"), &d("0.00"), 4).is_none());
        assert_eq!(format(&div(&d("10.00"), &d("-4"), 6).unwrap()), "-2.500000");
    }

    #[test]
    fn digits_and_caps() {
        assert_eq!(integer_digits(&d("123.45")), 3);
        assert_eq!(integer_digits(&d("0.45")), 0);
        assert_eq!(integer_digits(&d("-1e3")), 4);
        let tiny = &d("0.0000000000000001") * &d("0.0000000000000001");
        assert_eq!(scale_of(&normalize_result(tiny).unwrap()), 30);
        let huge = d(&"9".repeat(66));
        assert!(normalize_result(huge).is_none());
        assert_eq!(to_f64(&d("0.1")), 0.1);
    }
}
