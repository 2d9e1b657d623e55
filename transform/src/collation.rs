//! A model of MySQL/MariaDB collations good enough to compare and key strings the way the
//! server does for the common cases, and honest about when it is not.
//!
//! A collation is read from its name ([`Collation::from_name`]):
//! * `binary` charset and `*_bin` collations compare bytes (code points);
//! * `*_ci` collations are case-insensitive, `*_ai_*` (and the legacy `general_ci`,
//!   `unicode_ci`, `swedish_ci`, ...) accent-insensitive, `*_cs` / `*_as_*` sensitive;
//! * PAD SPACE collations (all the pre-8.0 ones, MariaDB's default ones, and `*_bin` except
//!   `*_0900_bin`) ignore trailing spaces; NO PAD collations (`*_0900_*`, `*_nopad_*`) do not.
//!
//! Folding ([`Collation::fold`]) maps a string to a form in which equal strings (under the
//! collation) have equal bytes: trailing spaces stripped for PAD SPACE, letters upper-cased for
//! case-insensitive collations (one-to-one Unicode simple case mapping; ASCII is exact), and
//! common Latin accents removed for accent-insensitive ones.
//!
//! **Exactness.** For the *generic* collations (`general_ci`, `unicode_ci`, `unicode_520_ci`,
//! `0900_ai_ci`, `0900_as_ci`, `0900_as_cs`, `swedish_ci`, `uca1400_*`, and every `_bin` /
//! `binary`), two strings of printable ASCII are equal on the server exactly when their folds
//! are equal. Anything else (non-ASCII text in a non-binary collation, control characters, or a
//! language-specific collation such as `utf8mb4_tr_0900_ai_ci` or `utf8mb4_hu_0900_ai_ci` with
//! its contractions) is folded on a best effort and reported as *inexact*: the caller must not
//! rely on byte equality of such folds (see `key.rs`).

use std::cmp::Ordering;

/// The comparison properties of a collation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collation {
    /// The collation name (lower case), or `binary`.
    pub name: String,
    /// Compares bytes / code points (`binary`, `*_bin`).
    pub binary: bool,
    /// Case-insensitive.
    pub case_insensitive: bool,
    /// Accent-insensitive.
    pub accent_insensitive: bool,
    /// PAD SPACE: trailing spaces are ignored in comparisons.
    pub pad_space: bool,
    /// A generic collation (no language tailoring): folds of printable ASCII are exact.
    pub generic: bool,
}

impl Collation {
    /// The `binary` collation (of the `binary` character set): bytes, NO PAD.
    pub fn binary() -> Collation {
        Collation {
            name: "binary".into(),
            binary: true,
            case_insensitive: false,
            accent_insensitive: false,
            pad_space: false,
            generic: true,
        }
    }

    /// Reads a collation's properties from its name.
    pub fn from_name(name: &str) -> Collation {
        let name = name.to_ascii_lowercase();
        if name == "binary" {
            return Collation::binary();
        }
        let rest = match name.find('_') {
            Some(i) => &name[i + 1..],
            None => "",
        };
        let no_pad = name.contains("0900") || name.contains("nopad");
        let bin = name.ends_with("_bin");
        let ci = name.ends_with("_ci");
        let explicit_as = rest.contains("_as_") || rest.starts_with("as_");
        let explicit_ai = rest.contains("_ai_") || rest.starts_with("ai_");
        // Legacy `_ci` collations (general_ci, unicode_ci, swedish_ci, ...) ignore accents;
        // `_as_ci` does not; `_cs` never does.
        let accent_insensitive = !bin && (explicit_ai || (ci && !explicit_as));
        const GENERIC: &[&str] = &[
            "general_ci",
            "general_cs",
            "general_mysql500_ci",
            "general_nopad_ci",
            "bin",
            "nopad_bin",
            "unicode_ci",
            "unicode_nopad_ci",
            "unicode_520_ci",
            "unicode_520_nopad_ci",
            "0900_ai_ci",
            "0900_as_ci",
            "0900_as_cs",
            "0900_bin",
            "swedish_ci",
            "uca1400_ai_ci",
            "uca1400_ai_cs",
            "uca1400_as_ci",
            "uca1400_as_cs",
            "uca1400_nopad_ai_ci",
            "uca1400_nopad_ai_cs",
            "uca1400_nopad_as_ci",
            "uca1400_nopad_as_cs",
        ];
        Collation {
            binary: bin,
            case_insensitive: ci,
            accent_insensitive,
            pad_space: !no_pad,
            generic: GENERIC.contains(&rest),
            name,
        }
    }

    /// Appends the fold of `text` to `out` and returns whether the fold is exact (see the
    /// module docs). `fixed_char` strips trailing spaces whatever the PAD attribute (CHAR
    /// columns never keep them).
    pub fn fold_into(&self, text: &str, fixed_char: bool, out: &mut Vec<u8>) -> bool {
        let text = if self.pad_space || fixed_char {
            text.trim_end_matches(' ')
        } else {
            text
        };
        if self.binary {
            out.extend_from_slice(text.as_bytes());
            return true;
        }
        let mut exact = self.generic;
        let mut buf = [0u8; 4];
        for c in text.chars() {
            if c.is_ascii() {
                if !(' '..='~').contains(&c) {
                    exact = false;
                }
                let c = if self.case_insensitive {
                    c.to_ascii_uppercase()
                } else {
                    c
                };
                out.push(c as u8);
                continue;
            }
            exact = false;
            let mut c = c;
            if self.accent_insensitive {
                c = strip_accent(c);
            }
            if self.case_insensitive {
                c = simple_upper(c);
            }
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        exact
    }

    /// The fold of `text` as a new vector, and whether it is exact.
    pub fn fold(&self, text: &str) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(text.len());
        let exact = self.fold_into(text, false, &mut out);
        (out, exact)
    }

    /// Compares two UTF-8 strings under this collation (approximate ordering: by folded code
    /// points; equality is exact where [`Collation::fold`] is).
    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        let (fa, _) = self.fold(a);
        let (fb, _) = self.fold(b);
        fa.cmp(&fb)
    }
}

/// One-to-one upper-case mapping (MySQL never maps one character to several: `ß` stays `ß`).
pub(crate) fn simple_upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// One-to-one lower-case mapping.
pub(crate) fn simple_lower(c: char) -> char {
    let mut low = c.to_lowercase();
    match (low.next(), low.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Removes the accent of common Latin-1 / Latin Extended-A letters (best effort).
fn strip_accent(c: char) -> char {
    match c {
        'À'..='Å' => 'A',
        'à'..='å' => 'a',
        'Ç' => 'C',
        'ç' => 'c',
        'È'..='Ë' => 'E',
        'è'..='ë' => 'e',
        'Ì'..='Ï' => 'I',
        'ì'..='ï' => 'i',
        'Ñ' => 'N',
        'ñ' => 'n',
        'Ò'..='Ö' | 'Ø' => 'O',
        'ò'..='ö' | 'ø' => 'o',
        'Ù'..='Ü' => 'U',
        'ù'..='ü' => 'u',
        'Ý' | 'Ÿ' => 'Y',
        'ý' | 'ÿ' => 'y',
        'Š' => 'S',
        'š' => 's',
        'Ž' => 'Z',
        'ž' => 'z',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_from_names() {
        let c = Collation::from_name("utf8mb4_0900_ai_ci");
        assert!(c.case_insensitive && c.accent_insensitive && !c.pad_space && c.generic);
        let c = Collation::from_name("utf8mb4_general_ci");
        assert!(c.case_insensitive && c.accent_insensitive && c.pad_space && c.generic);
        let c = Collation::from_name("utf8mb4_0900_as_cs");
        assert!(!c.case_insensitive && !c.accent_insensitive && !c.binary);
        let c = Collation::from_name("utf8mb4_0900_as_ci");
        assert!(c.case_insensitive && !c.accent_insensitive);
        let c = Collation::from_name("latin1_bin");
        assert!(c.binary && c.pad_space);
        let c = Collation::from_name("utf8mb4_0900_bin");
        assert!(c.binary && !c.pad_space);
        let c = Collation::from_name("utf8mb4_nopad_bin");
        assert!(c.binary && !c.pad_space);
        assert!(!Collation::from_name("utf8mb4_tr_0900_ai_ci").generic);
        assert!(!Collation::from_name("utf8mb4_hungarian_ci").generic);
        assert!(Collation::binary().binary && !Collation::binary().pad_space);
    }

    #[test]
    fn ci_pad_space_fold() {
        let c = Collation::from_name("utf8mb4_general_ci");
        assert_eq!(c.fold("Abc  "), (b"ABC".to_vec(), true));
        assert_eq!(c.fold("aBC").0, c.fold("ABC ").0);
        assert_eq!(c.compare("a", "A "), Ordering::Equal);
        assert_eq!(c.compare("a", "b"), Ordering::Less);
    }

    #[test]
    fn no_pad_keeps_trailing_spaces() {
        let c = Collation::from_name("utf8mb4_0900_ai_ci");
        assert_ne!(c.fold("a ").0, c.fold("a").0);
        assert_eq!(c.fold("a").0, c.fold("A").0);
        // A CHAR column drops trailing spaces whatever the collation.
        let mut out = Vec::new();
        assert!(c.fold_into("a  ", true, &mut out));
        assert_eq!(out, b"A");
    }

    #[test]
    fn binary_collations_keep_case() {
        let c = Collation::from_name("utf8mb4_bin");
        assert_ne!(c.fold("a").0, c.fold("A").0);
        assert_eq!(c.fold("a ").0, c.fold("a").0, "utf8mb4_bin is PAD SPACE");
        let b = Collation::binary();
        assert_ne!(b.fold("a ").0, b.fold("a").0);
        assert!(b.fold("é").1, "binary folds are always exact");
    }

    #[test]
    fn non_ascii_is_inexact_but_folded() {
        let c = Collation::from_name("utf8mb4_0900_ai_ci");
        let (e1, x1) = c.fold("é");
        let (e2, _) = c.fold("E");
        assert!(!x1);
        assert_eq!(e1, e2, "accent-insensitive: é folds like E");
        let (s1, _) = c.fold("ß");
        assert_eq!(s1, "ß".as_bytes(), "no one-to-many case mapping");
        let cs = Collation::from_name("utf8mb4_0900_as_ci");
        assert_ne!(cs.fold("é").0, cs.fold("e").0);
        assert_eq!(cs.fold("é").0, cs.fold("É").0);
        // Control characters make a fold inexact (they are ignorable in UCA collations).
        assert!(!c.fold("a\u{1}").1);
        // Language-specific collations are never exact.
        assert!(!Collation::from_name("utf8mb4_tr_0900_ai_ci").fold("i").1);
    }
}
