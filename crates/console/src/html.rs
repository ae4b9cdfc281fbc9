//! Building HTML by hand: escaping, the page shell, times, and small pieces the pages share.
//! Plain strings keep the console free of a template engine and its build time.

use std::fmt::Write;

use chrono::{DateTime, Utc};

/// The stylesheet, embedded in the binary.
pub const CSS: &str = include_str!("../assets/console.css");
/// The script (sortable tables, local times, live progress), embedded in the binary.
pub const JS: &str = include_str!("../assets/console.js");

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// `text` escaped for a URL path segment or query value.
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An instant: UTC in the markup (readable without JS), shown in the viewer's zone by the
/// script, with UTC on hover.
pub fn time(t: DateTime<Utc>) -> String {
    let utc = curfew_core::view::utc(t);
    format!(r#"<time datetime="{utc}" title="{utc}">{utc}</time>"#)
}

/// An optional instant, or a dash.
pub fn maybe_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".to_string(), time)
}

/// The sections in the header, with their paths.
const NAV: [(&str, &str); 7] = [
    ("Fleet", "/"),
    ("Schedules", "/schedules"),
    ("Operations", "/operations"),
    ("Stop / start", "/run"),
    ("Overrides", "/overrides"),
    ("Audit", "/audit"),
    ("Savings", "/savings"),
];

/// A whole page: `title`, the header with `current` marked, and `body`.
pub fn page(title: &str, current: &str, body: &str) -> String {
    let mut nav = String::new();
    for (name, href) in NAV {
        let here = if name == current {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(nav, r#"<a href="{href}"{here}>{name}</a>"#);
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · curfew</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body>
<header><span class="brand">curfew</span><nav>{nav}</nav></header>
<main>
<h1>{title}</h1>
{body}
</main>
<footer class="muted">Times are in your time zone (hover one for UTC); without JavaScript they are in UTC.</footer>
</body>
</html>
"#,
        title = esc(title),
    )
}

/// A page saying one thing (an error, a refusal).
pub fn message_page(title: &str, message: &str) -> String {
    page(
        title,
        "",
        &format!(r#"<p class="error" role="alert">{}</p>"#, esc(message)),
    )
}

/// `<th>`s for a header row.
pub fn header(columns: &[&str]) -> String {
    let mut out = String::from("<thead><tr>");
    for c in columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(c));
    }
    out.push_str("</tr></thead>");
    out
}

/// A text input for a selector with its label, and the error next to it when there is one.
pub fn selector_field(value: &str, error: Option<&str>) -> String {
    let (invalid, message) = match error {
        Some(e) => (
            r#" aria-invalid="true" aria-describedby="select-error""#,
            format!(
                r#"<span class="field-error" id="select-error" role="alert">{}</span>"#,
                esc(e)
            ),
        ),
        None => ("", String::new()),
    };
    format!(
        r#"<label for="select">Selector</label>
<input id="select" name="select" value="{}" placeholder="kind=nodegroup,tag:env=dev" spellcheck="false" autocomplete="off"{invalid}>
{message}"#,
        esc(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn url_values_are_percent_encoded() {
        assert_eq!(
            url("tag:env=dev,name=a b"),
            "tag%3Aenv%3Ddev%2Cname%3Da%20b"
        );
    }
}
