//! The report as one self-contained HTML page: inline CSS and SVG, no script, no external
//! asset, so it opens offline and can be attached to a ticket.

use super::report::{DiffRow, Values, VerifyReport};
use std::fmt::Write;

/// Render the page.
pub fn render(r: &VerifyReport) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let go = r.is_go();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rowshift verify: {verdict} {old} vs {new}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }}
main {{ max-width: 1100px; margin: 0 auto; padding: 24px; }}
.verdict {{ padding: 20px 28px; border-radius: 10px; color: #fff; display: flex; align-items: baseline; gap: 24px; }}
.verdict.go {{ background: #1f8a4c; }} .verdict.nogo {{ background: #c62828; }}
.verdict h1 {{ margin: 0; font-size: 44px; letter-spacing: 1px; }}
.verdict p {{ margin: 0; font-size: 17px; opacity: .95; }}
section {{ background: #fff; border-radius: 10px; padding: 16px 22px; margin-top: 18px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
h2 {{ font-size: 18px; margin: 4px 0 12px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ text-align: left; padding: 5px 8px; border-bottom: 1px solid #e6e8eb; vertical-align: top; }}
th {{ color: #5a6470; font-weight: 600; }}
.kv th {{ width: 210px; }}
code, .val {{ font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all; }}
tr.diff td {{ background: #fdecea; }} tr.diff td.col {{ font-weight: 700; color: #b71c1c; }}
.null {{ color: #8a949e; font-style: italic; }}
.row {{ border: 1px solid #e6e8eb; border-radius: 8px; margin: 10px 0; padding: 8px 12px; }}
.kind {{ display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 700; color: #fff; background: #6d4c41; }}
.kind.changed {{ background: #ef6c00; }} .kind.missing_in_new {{ background: #c62828; }} .kind.extra_in_new {{ background: #6a1b9a; }}
.muted {{ color: #5a6470; font-size: 13px; }}
svg text {{ font-size: 11px; fill: #5a6470; }}
</style></head><body><main>
<div class="verdict {cls}" id="verdict"><h1>{verdict}</h1><p>{headline}</p></div>
"#,
        verdict = r.verdict.as_str(),
        cls = if go { "go" } else { "nogo" },
        old = esc(&r.old.table),
        new = esc(&r.new.table),
        headline = esc(&headline(r)),
    );

    // Summary.
    h.push_str("<section><h2>Summary</h2><table class=\"kv\">");
    let mut kv = |k: &str, v: String| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
    };
    kv(
        "Old table",
        format!(
            "<code>{}</code> on {} {} <span class=\"muted\">{}</span>",
            esc(&r.old.table),
            r.old.flavor,
            esc(&r.old.version),
            esc(&r.old.server)
        ),
    );
    kv(
        "New table",
        format!(
            "<code>{}</code> on {} {} <span class=\"muted\">{}</span>",
            esc(&r.new.table),
            r.new.flavor,
            esc(&r.new.version),
            esc(&r.new.server)
        ),
    );
    kv(
        "Rows compared",
        format!("{} old, {} new", group(r.rows_old), group(r.rows_new)),
    );
    kv(
        "Chunks checked",
        format!(
            "{} ({} differing)",
            group(r.chunks_checked),
            r.chunks_differing
        ),
    );
    kv(
        "Time taken",
        format!(
            "{:.2} s (checksums {:.2} s, {} rows/s)",
            r.duration_ms / 1e3,
            r.checksum_ms / 1e3,
            group(r.rows_per_second as u64)
        ),
    );
    kv(
        "Lock time",
        format!(
            "{:.1} ms held, {:.1} ms waiting ({} snapshot connections, {} attempt(s))",
            r.lock.held_ms, r.lock.wait_ms, r.lock.snapshots, r.lock.attempts
        ),
    );
    kv("Started", esc(&r.started_at));
    for note in &r.notes {
        kv("Note", esc(note));
    }
    kv(
        "Row hash",
        format!("<span class=\"muted\">{}</span>", esc(r.hash)),
    );
    h.push_str("</table></section>\n");

    // Differences.
    let d = &r.differences;
    let _ = write!(
        h,
        "<section id=\"differences\"><h2>Differences: {} row(s)</h2><p class=\"muted\">{} changed, {} missing in the new table, {} extra in the new table{}</p>",
        d.total,
        d.changed,
        d.missing_in_new,
        d.extra_in_new,
        if d.truncated {
            format!("; the first {} are listed", d.rows.len())
        } else {
            String::new()
        }
    );
    if d.rows.is_empty() {
        h.push_str("<p>None: every chunk's row count and hash matched.</p>");
    }
    let texty: Vec<&str> = r
        .columns
        .iter()
        .filter(|c| is_texty(&c.new_type))
        .map(|c| c.name.as_str())
        .collect();
    for row in &d.rows {
        diff_block(&mut h, row, &texty);
    }
    h.push_str("</section>\n");

    // Progress chart.
    h.push_str("<section><h2>Checksum progress</h2>");
    chart(&mut h, r);
    h.push_str("</section>\n");

    // Columns.
    h.push_str("<section><h2>Compared columns</h2><table><tr><th>New column</th><th>Type</th><th>Old side</th><th>Hashed by</th></tr>");
    for c in &r.columns {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.new_type),
            esc(&c.old_expr),
            match c.hashed_by {
                super::HashedBy::Server => "server",
                super::HashedBy::Rowshift => "rowshift (JSON, canonical)",
            }
        );
    }
    h.push_str("</table></section>\n");
    let _ = write!(
        h,
        "<p class=\"muted\">Generated by rowshift verify ({}).</p></main></body></html>",
        esc(r.format)
    );
    h
}

fn headline(r: &VerifyReport) -> String {
    if r.is_go() {
        format!(
            "{} and {} are equal: {} rows in {} chunks.",
            r.old.table, r.new.table, r.rows_old, r.chunks_checked
        )
    } else {
        format!(
            "{} differing row(s) between {} and {}.",
            r.differences.total, r.old.table, r.new.table
        )
    }
}

/// Text-like types, whose values are shown in quotes so leading/trailing spaces are visible.
fn is_texty(column_type: &str) -> bool {
    [
        "char",
        "varchar",
        "tinytext",
        "text",
        "mediumtext",
        "longtext",
        "enum",
        "set",
    ]
    .iter()
    .any(|t| {
        column_type == *t
            || column_type
                .strip_prefix(t)
                .is_some_and(|rest| rest.starts_with('(') || rest.starts_with(' '))
    })
}

fn diff_block(h: &mut String, row: &DiffRow, texty: &[&str]) {
    let key: Vec<String> = row
        .key
        .0
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v.as_deref().unwrap_or("NULL"))))
        .collect();
    let _ = write!(
        h,
        "<div class=\"row\"><span class=\"kind {k}\">{k}</span> <code class=\"key\">{}</code>",
        key.join(", "),
        k = row.kind.as_str()
    );
    let names: Vec<&String> = match (&row.old, &row.new) {
        (Some(v), _) | (None, Some(v)) => v.0.iter().map(|(n, _)| n).collect(),
        (None, None) => {
            h.push_str(
                " <span class=\"muted\">(values not fetched: over the report limit)</span></div>",
            );
            return;
        }
    };
    h.push_str("<table><tr><th>Column</th><th>Old</th><th>New</th></tr>");
    for name in names {
        let differs = row.differing_columns.contains(name);
        let _ = write!(
            h,
            "<tr{}><td class=\"col\"><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            if differs { " class=\"diff\"" } else { "" },
            esc(name),
            cell(&row.old, name, texty.contains(&name.as_str())),
            cell(&row.new, name, texty.contains(&name.as_str()))
        );
    }
    h.push_str("</table></div>");
}

fn cell(side: &Option<Values>, name: &str, quote: bool) -> String {
    match side.as_ref().map(|v| v.get(name)) {
        None => "<span class=\"null\">(no row)</span>".into(),
        Some(None) => String::new(),
        Some(Some(None)) => "<span class=\"null\">NULL</span>".into(),
        Some(Some(Some(v))) if quote => {
            format!("<span class=\"val\">{}</span>", esc(&quoted(v)))
        }
        Some(Some(Some(v))) => format!("<span class=\"val\">{}</span>", esc(v)),
    }
}

/// A value with its ends visible: quoted, control characters escaped.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for ch in v.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Rows checked over time as an inline SVG line, differing chunks as red dots.
fn chart(h: &mut String, r: &VerifyReport) {
    let (w, ht, left, bottom, top, right) = (1000.0f64, 260.0f64, 70.0, 30.0, 10.0, 20.0);
    let max_t = r
        .progress
        .iter()
        .map(|p| p.elapsed_ms)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let max_rows = r
        .progress
        .last()
        .map(|p| p.rows_checked)
        .unwrap_or(0)
        .max(1) as f64;
    let x = |t: f64| left + (w - left - right) * t / max_t;
    let y = |n: f64| ht - bottom - (ht - bottom - top) * n / max_rows;
    let _ = write!(
        h,
        "<svg id=\"progress\" viewBox=\"0 0 {w} {ht}\" width=\"100%\" role=\"img\" aria-label=\"rows checked over time\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        h,
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#9aa4ae\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"#9aa4ae\"/>",
        b = ht - bottom,
        r = w - right
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.2} s</text>",
            left - 6.0,
            y(max_rows * f) + 4.0,
            group((max_rows * f) as u64),
            x(max_t * f),
            ht - bottom + 16.0,
            max_t * f / 1e3
        );
    }
    let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
    for p in &r.progress {
        let _ = write!(
            points,
            " {:.1},{:.1}",
            x(p.elapsed_ms),
            y(p.rows_checked as f64)
        );
    }
    let _ = write!(
        h,
        "<polyline fill=\"none\" stroke=\"#1e6bb8\" stroke-width=\"2\" points=\"{points}\"/>"
    );
    for p in r.progress.iter().filter(|p| !p.equal) {
        let _ = write!(
            h,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"#c62828\"><title>differing chunk</title></circle>",
            x(p.elapsed_ms),
            y(p.rows_checked as f64)
        );
    }
    h.push_str("</svg><p class=\"muted\">Old-side rows checked over time; red dots mark chunks whose checksums differed.</p>");
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let head = s.len() % 3;
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    out.push_str(&s[..head]);
    let mut rest = &s[head..];
    while !rest.is_empty() {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&rest[..3]);
        rest = &rest[3..];
    }
    out
}

/// HTML-escape text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_grouping() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
        assert_eq!(quoted("a \n\"b\""), "\"a \\n\\\"b\\\"\"");
        assert!(is_texty("varchar(40)") && is_texty("enum('a')") && is_texty("text"));
        assert!(!is_texty("datetime(6)") && !is_texty("int") && !is_texty("settings"));
    }
}
