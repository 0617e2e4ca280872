//! Escaping for HTML built by hand. Everything that comes from data (patient names, codes,
//! display texts, form input) must be escaped before it goes into a page; a template engine
//! that escapes by default (e.g. `maud`) does this for you.

/// Escapes `text` for use in HTML text and in quoted attribute values.
///
/// ```
/// assert_eq!(
///     healthcloud_sdk::html::escape(r#"<b>Ærø & "Søn"</b>"#),
///     "&lt;b&gt;Ærø &amp; &quot;Søn&quot;&lt;/b&gt;"
/// );
/// ```
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            super::escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
    }
}
