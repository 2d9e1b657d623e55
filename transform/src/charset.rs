//! Character sets: decoding column bytes to UTF-8 and encoding back, as the server converts.
//!
//! Supported exactly: `binary`, `utf8mb4`, `utf8mb3` (alias `utf8`), `ascii` and `latin1`.
//! MySQL's `latin1` is Windows cp1252, not ISO-8859-1: 0x80 is `€`, and the five positions
//! cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) map to U+0081, U+008D, U+008F,
//! U+0090, U+009D. Any other character set is [`Charset::Other`]: its bytes can be copied
//! unchanged into a column of the same character set, but not transcoded.

use std::borrow::Cow;

use thiserror::Error;

/// A character set, by what this crate can do with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Charset {
    /// `binary`: bytes, no characters.
    Binary,
    /// `utf8mb4`.
    Utf8mb4,
    /// `utf8mb3` (`utf8` in older servers): UTF-8 limited to the BMP.
    Utf8mb3,
    /// `latin1` (= cp1252 in MySQL and MariaDB).
    Latin1,
    /// `ascii`.
    Ascii,
    /// Any other character set, by name.
    Other(String),
}

/// Errors converting between character sets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CharsetError {
    /// The bytes are not valid in their character set.
    #[error("invalid {charset} byte sequence at byte {offset}")]
    InvalidBytes {
        /// Character set name.
        charset: String,
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// A character has no encoding in the target character set.
    #[error("character {ch:?} (U+{code:04X}) cannot be stored in {charset}")]
    Unrepresentable {
        /// The character.
        ch: char,
        /// Its code point.
        code: u32,
        /// Target character set name.
        charset: String,
    },
    /// The character set cannot be transcoded by this crate.
    #[error("character set {charset} is not supported for conversion")]
    Unsupported {
        /// Character set name.
        charset: String,
    },
}

/// cp1252 0x80..=0x9F as MySQL maps them.
const LATIN1_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

impl Charset {
    /// Reads a character set name (`utf8` and `utf8mb3` are the same).
    pub fn from_name(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "binary" => Charset::Binary,
            "utf8mb4" => Charset::Utf8mb4,
            "utf8mb3" | "utf8" => Charset::Utf8mb3,
            "latin1" => Charset::Latin1,
            "ascii" => Charset::Ascii,
            other => Charset::Other(other.to_string()),
        }
    }

    /// The character set name.
    pub fn name(&self) -> &str {
        match self {
            Charset::Binary => "binary",
            Charset::Utf8mb4 => "utf8mb4",
            Charset::Utf8mb3 => "utf8mb3",
            Charset::Latin1 => "latin1",
            Charset::Ascii => "ascii",
            Charset::Other(n) => n,
        }
    }

    /// True if this crate can decode and encode the character set.
    pub fn is_supported(&self) -> bool {
        !matches!(self, Charset::Other(_))
    }

    /// Decodes bytes in this character set to UTF-8 text. Borrows when the bytes already are
    /// UTF-8. `binary` is decoded as UTF-8 (as the server does when it reinterprets a binary
    /// string in a UTF-8 column).
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, CharsetError> {
        let invalid = |offset| CharsetError::InvalidBytes {
            charset: self.name().to_string(),
            offset,
        };
        match self {
            Charset::Utf8mb4 | Charset::Binary => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|e| invalid(e.valid_up_to())),
            Charset::Utf8mb3 => {
                let s = std::str::from_utf8(bytes).map_err(|e| invalid(e.valid_up_to()))?;
                if let Some((off, _)) = s.char_indices().find(|(_, c)| (*c as u32) > 0xFFFF) {
                    return Err(invalid(off));
                }
                Ok(Cow::Borrowed(s))
            }
            Charset::Ascii => {
                if let Some(off) = bytes.iter().position(|b| *b >= 0x80) {
                    return Err(invalid(off));
                }
                // All ASCII: valid UTF-8.
                std::str::from_utf8(bytes)
                    .map(Cow::Borrowed)
                    .map_err(|e| invalid(e.valid_up_to()))
            }
            Charset::Latin1 => {
                if bytes.is_ascii() {
                    return std::str::from_utf8(bytes)
                        .map(Cow::Borrowed)
                        .map_err(|e| invalid(e.valid_up_to()));
                }
                Ok(Cow::Owned(bytes.iter().map(|&b| latin1_char(b)).collect()))
            }
            Charset::Other(name) => Err(CharsetError::Unsupported {
                charset: name.clone(),
            }),
        }
    }

    /// Encodes UTF-8 text into this character set. Borrows when no change is needed.
    pub fn encode<'a>(&self, text: &'a str) -> Result<Cow<'a, [u8]>, CharsetError> {
        let unrepresentable = |ch: char| CharsetError::Unrepresentable {
            ch,
            code: ch as u32,
            charset: self.name().to_string(),
        };
        match self {
            Charset::Utf8mb4 | Charset::Binary => Ok(Cow::Borrowed(text.as_bytes())),
            Charset::Utf8mb3 => match text.chars().find(|c| (*c as u32) > 0xFFFF) {
                Some(c) => Err(unrepresentable(c)),
                None => Ok(Cow::Borrowed(text.as_bytes())),
            },
            Charset::Ascii => match text.chars().find(|c| !c.is_ascii()) {
                Some(c) => Err(unrepresentable(c)),
                None => Ok(Cow::Borrowed(text.as_bytes())),
            },
            Charset::Latin1 => {
                if text.is_ascii() {
                    return Ok(Cow::Borrowed(text.as_bytes()));
                }
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    out.push(latin1_byte(c).ok_or_else(|| unrepresentable(c))?);
                }
                Ok(Cow::Owned(out))
            }
            Charset::Other(name) => Err(CharsetError::Unsupported {
                charset: name.clone(),
            }),
        }
    }

    /// Converts bytes from this character set to `to`. Borrows when the bytes are unchanged
    /// (same charset, or utf8mb3 → utf8mb4, or ASCII-only text between ASCII-compatible sets).
    /// Into `binary` the bytes are kept as they are.
    pub fn convert<'a>(
        &self,
        bytes: &'a [u8],
        to: &Charset,
    ) -> Result<Cow<'a, [u8]>, CharsetError> {
        if self == to || *to == Charset::Binary {
            return Ok(Cow::Borrowed(bytes));
        }
        if *self == Charset::Utf8mb3 && *to == Charset::Utf8mb4 {
            return Ok(Cow::Borrowed(bytes));
        }
        match self.decode(bytes)? {
            Cow::Borrowed(s) => to.encode(s),
            Cow::Owned(s) => Ok(Cow::Owned(to.encode(&s)?.into_owned())),
        }
    }

    /// Number of characters in `bytes` (bytes for `binary` and unsupported sets).
    pub fn char_count(&self, bytes: &[u8]) -> usize {
        match self {
            Charset::Utf8mb4 | Charset::Utf8mb3 => match std::str::from_utf8(bytes) {
                Ok(s) => s.chars().count(),
                Err(_) => bytes.len(),
            },
            _ => bytes.len(),
        }
    }
}

/// The character a latin1 byte stands for.
pub fn latin1_char(b: u8) -> char {
    match b {
        0x80..=0x9F => LATIN1_HIGH[(b - 0x80) as usize],
        _ => b as char,
    }
}

/// The latin1 byte for a character, if it has one.
pub fn latin1_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 0x80 || (0xA0..=0xFF).contains(&code) {
        return Some(code as u8);
    }
    LATIN1_HIGH
        .iter()
        .position(|&x| x == c)
        .map(|i| 0x80 + i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252() {
        assert_eq!(Charset::Latin1.decode(&[0x80]).unwrap(), "€");
        assert_eq!(Charset::Latin1.decode(&[0xE9]).unwrap(), "é");
        assert_eq!(Charset::Latin1.decode(&[0x81]).unwrap(), "\u{81}");
        assert_eq!(Charset::Latin1.decode(&[0x9F]).unwrap(), "Ÿ");
        assert_eq!(Charset::Latin1.decode(b"plain").unwrap(), "plain");
        // Round trip of every byte.
        let all: Vec<u8> = (0..=255u8).collect();
        let text = Charset::Latin1.decode(&all).unwrap().into_owned();
        assert_eq!(Charset::Latin1.encode(&text).unwrap().into_owned(), all);
    }

    #[test]
    fn latin1_to_utf8mb4_transcodes() {
        let out = Charset::Latin1
            .convert(&[b'c', 0x80, 0xE9, 0x92], &Charset::Utf8mb4)
            .unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), "c€é\u{2019}");
    }

    #[test]
    fn utf8mb4_to_latin1_refuses_unrepresentable() {
        assert_eq!(
            Charset::Utf8mb4
                .convert("é€".as_bytes(), &Charset::Latin1)
                .unwrap()
                .into_owned(),
            vec![0xE9, 0x80]
        );
        let err = Charset::Utf8mb4
            .convert("ā".as_bytes(), &Charset::Latin1)
            .unwrap_err();
        assert!(matches!(
            err,
            CharsetError::Unrepresentable { code: 0x101, .. }
        ));
        // U+0080 has no latin1 byte: 0x80 is the euro sign.
        assert!(latin1_byte('\u{80}').is_none());
    }

    #[test]
    fn utf8mb3_and_utf8mb4() {
        let bmp = "héllo ☃".as_bytes();
        assert!(matches!(
            Charset::Utf8mb3.convert(bmp, &Charset::Utf8mb4).unwrap(),
            Cow::Borrowed(_)
        ));
        let emoji = "a😀".as_bytes();
        assert!(Charset::Utf8mb4.convert(emoji, &Charset::Utf8mb3).is_err());
        assert!(Charset::Utf8mb3.decode(emoji).is_err());
        assert!(Charset::Utf8mb4.decode(&[0xC3]).is_err());
        assert_eq!(Charset::Utf8mb4.char_count("é😀a".as_bytes()), 3);
        assert_eq!(Charset::Latin1.char_count(&[0xE9, 0x41]), 2);
        assert_eq!(Charset::from_name("UTF8"), Charset::Utf8mb3);
    }

    #[test]
    fn ascii_and_other() {
        assert!(Charset::Ascii.decode(&[0x80]).is_err());
        assert!(Charset::Utf8mb4
            .convert("é".as_bytes(), &Charset::Ascii)
            .is_err());
        let gbk = Charset::from_name("gbk");
        assert!(!gbk.is_supported());
        assert!(gbk.convert(b"x", &Charset::Utf8mb4).is_err());
        assert!(matches!(
            gbk.convert(b"\x81x", &gbk).unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            Charset::Utf8mb4
                .convert(&[0xFF], &Charset::Binary)
                .unwrap()
                .into_owned(),
            vec![0xFF]
        );
    }
}
