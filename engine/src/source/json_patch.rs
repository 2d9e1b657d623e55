//! Applies MySQL partial JSON updates (`PARTIAL_UPDATE_ROWS_EVENT`, written with
//! `binlog_row_value_options=PARTIAL_JSON`) to the before image's document.
//!
//! mysql_common parses each diff (operation, path, new value); this module parses the path
//! (`$`, `.key`, `."quoted key"`, `[N]`, `[last]`, `[last-N]`) and performs the operation.

use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use serde_json::Value as J;

use super::values::jsonb_to_json;

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leg {
    /// Object member.
    Key(String),
    /// Array element; `from_end` counts from the last element (`[last-N]`).
    Index { n: u64, from_end: bool },
}

/// Parses a MySQL JSON path as written in a JSON diff.
pub(crate) fn parse_path(path: &str) -> Result<Vec<Leg>, String> {
    let b = path.trim().as_bytes();
    if b.first() != Some(&b'$') {
        return Err(format!("JSON path `{path}` does not start with $"));
    }
    let mut legs = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b' ' => i += 1,
            b'.' => {
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                if b.get(i) == Some(&b'"') {
                    let start = i;
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        if b[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    if i >= b.len() {
                        return Err(format!("unterminated key in JSON path `{path}`"));
                    }
                    i += 1;
                    let quoted = &path.trim()[start..i];
                    let key: String = serde_json::from_str(quoted)
                        .map_err(|e| format!("bad key {quoted} in JSON path: {e}"))?;
                    legs.push(Leg::Key(key));
                } else {
                    let start = i;
                    while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                        i += 1;
                    }
                    let key = path.trim()[start..i].trim();
                    if key.is_empty() || key == "*" {
                        return Err(format!("unsupported JSON path `{path}`"));
                    }
                    legs.push(Leg::Key(key.to_owned()));
                }
            }
            b'[' => {
                let close = b[i..]
                    .iter()
                    .position(|c| *c == b']')
                    .ok_or_else(|| format!("unterminated index in JSON path `{path}`"))?;
                let inner = path.trim()[i + 1..i + close].trim();
                i += close + 1;
                let leg = if let Some(rest) = inner.strip_prefix("last") {
                    let rest = rest.trim();
                    let n = if rest.is_empty() {
                        0
                    } else {
                        rest.strip_prefix('-')
                            .and_then(|r| r.trim().parse().ok())
                            .ok_or_else(|| format!("bad index in JSON path `{path}`"))?
                    };
                    Leg::Index { n, from_end: true }
                } else {
                    Leg::Index {
                        n: inner
                            .parse()
                            .map_err(|_| format!("bad index in JSON path `{path}`"))?,
                        from_end: false,
                    }
                };
                legs.push(leg);
            }
            _ => return Err(format!("unsupported JSON path `{path}`")),
        }
    }
    Ok(legs)
}

fn resolve_index(n: u64, from_end: bool, len: usize) -> Option<usize> {
    if from_end {
        (len as u64)
            .checked_sub(1)?
            .checked_sub(n)
            .map(|x| x as usize)
    } else {
        Some(n as usize)
    }
}

fn navigate<'a>(doc: &'a mut J, legs: &[Leg]) -> Option<&'a mut J> {
    let mut cur = doc;
    for leg in legs {
        cur = match (leg, cur) {
            (Leg::Key(k), J::Object(m)) => m.get_mut(k)?,
            (Leg::Index { n, from_end }, J::Array(a)) => {
                let i = resolve_index(*n, *from_end, a.len())?;
                a.get_mut(i)?
            }
            // MySQL auto-wraps a scalar as a one-element array for `[0]`.
            (Leg::Index { n: 0, .. }, other) => other,
            _ => return None,
        };
    }
    Some(cur)
}

/// Applies `diffs` to `doc` in order.
pub(crate) fn apply_diffs(doc: &mut J, diffs: &[JsonDiff<'_>]) -> Result<(), String> {
    for d in diffs {
        let path = String::from_utf8_lossy(d.path()).into_owned();
        let legs = parse_path(&path)?;
        let value = match d.value() {
            Some(v) => Some(jsonb_to_json(v.clone(), 0).map_err(|e| format!("{e:?}"))?),
            None => None,
        };
        let op = d.operation();
        let Some((last, parent_legs)) = legs.split_last() else {
            // The whole document.
            match (op, value) {
                (JsonDiffOperation::REPLACE, Some(v)) => *doc = v,
                _ => return Err(format!("cannot {op:?} the root of a JSON document")),
            }
            continue;
        };
        let parent = navigate(doc, parent_legs)
            .ok_or_else(|| format!("JSON diff path `{path}` not found in the before image"))?;
        match (op, last, parent) {
            (JsonDiffOperation::REMOVE, Leg::Key(k), J::Object(m)) => {
                m.remove(k)
                    .ok_or_else(|| format!("JSON diff removes missing `{path}`"))?;
            }
            (JsonDiffOperation::REMOVE, Leg::Index { n, from_end }, J::Array(a)) => {
                let i = resolve_index(*n, *from_end, a.len())
                    .filter(|i| *i < a.len())
                    .ok_or_else(|| format!("JSON diff removes missing `{path}`"))?;
                a.remove(i);
            }
            (JsonDiffOperation::REPLACE, Leg::Key(k), J::Object(m)) => {
                let slot = m
                    .get_mut(k)
                    .ok_or_else(|| format!("JSON diff replaces missing `{path}`"))?;
                *slot = value.ok_or("JSON diff REPLACE without a value")?;
            }
            (JsonDiffOperation::REPLACE, Leg::Index { n, from_end }, J::Array(a)) => {
                let len = a.len();
                let slot = resolve_index(*n, *from_end, len)
                    .and_then(|i| a.get_mut(i))
                    .ok_or_else(|| format!("JSON diff replaces missing `{path}`"))?;
                *slot = value.ok_or("JSON diff REPLACE without a value")?;
            }
            (JsonDiffOperation::INSERT, Leg::Key(k), J::Object(m)) => {
                m.insert(k.clone(), value.ok_or("JSON diff INSERT without a value")?);
            }
            (JsonDiffOperation::INSERT, Leg::Index { n, from_end }, J::Array(a)) => {
                let i = resolve_index(*n, *from_end, a.len())
                    .unwrap_or(0)
                    .min(a.len());
                a.insert(i, value.ok_or("JSON diff INSERT without a value")?);
            }
            (op, _, _) => {
                return Err(format!(
                    "JSON diff {op:?} at `{path}` does not match the before image"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("$").unwrap(), vec![]);
        assert_eq!(
            parse_path("$.a[2].\"b c\"[last-1]").unwrap(),
            vec![
                Leg::Key("a".into()),
                Leg::Index {
                    n: 2,
                    from_end: false
                },
                Leg::Key("b c".into()),
                Leg::Index {
                    n: 1,
                    from_end: true
                }
            ]
        );
        assert!(parse_path("a.b").is_err());
        assert!(parse_path("$[x]").is_err());
        assert!(parse_path("$.*").is_err());
    }

    #[test]
    fn navigate_and_index() {
        let mut doc = serde_json::json!({"a": [1, 2, {"b": 3}]});
        let legs = parse_path("$.a[last].b").unwrap();
        assert_eq!(
            navigate(&mut doc, &legs).cloned(),
            Some(serde_json::json!(3))
        );
        assert!(navigate(&mut doc, &parse_path("$.x").unwrap()).is_none());
    }
}
