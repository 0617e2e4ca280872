//! HTML for app pages: escaping for HTML built by hand, and a page layout with a base style.
//!
//! Everything that comes from data (patient names, codes, display texts, form input) must be
//! escaped before it goes into a page; a template engine that escapes by default (e.g. `maud`)
//! does this for you.
//!
//! [`Layout`] wraps a page's content in a whole document (title, [`BASE_STYLE`] and the app's
//! own CSS, a header naming the app) with no script and no external asset, which is what the
//! `content-security-policy` of [`Response::html`](crate::Response::html) allows. It takes
//! the content as HTML already escaped, so it works with any template engine:
//!
//! ```
//! use healthcloud_sdk::html::{Layout, escape};
//!
//! const LAYOUT: Layout = Layout {
//!     app_name: "Blood pressure monitor",
//!     style: "#latest { font-size: 1.25rem; }",
//! };
//!
//! let name = "Åse <Sørensen>";
//! let page = LAYOUT.page(
//!     &format!("Blood pressure of {name}"),
//!     &format!("<h1>Blood pressure: {}</h1>", escape(name)),
//! );
//! assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\">"));
//! assert!(page.contains("<title>Blood pressure of Åse &lt;Sørensen&gt; – Blood pressure monitor</title>"));
//! assert!(page.contains("<main><h1>Blood pressure: Åse &lt;Sørensen&gt;</h1></main>"));
//! ```

use crate::fhir::{self, Withheld};

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

/// Why a platform call failed, as an escaped `<p role="alert">` for the user; `data` names
/// what was being read, e.g. "diabetes data". A denial or unavailable data reads as
/// [`Withheld::sentence`] says it (class `denied` / `unavailable`); anything else is the app's
/// fault (class `error`), without the platform's detail.
pub fn failure_notice(error: &fhir::Error, data: &str) -> String {
    let (class, text) = match Withheld::from_error(error.clone()) {
        Ok(withheld) => (withheld.kind(), withheld.sentence(data)),
        Err(fhir::Error::NotFound) => ("error", "The patient's record was not found.".to_owned()),
        Err(_) => (
            "error",
            "Something went wrong in this app. Please contact its vendor.".to_owned(),
        ),
    };
    format!("<p class=\"{class}\" role=\"alert\">{}</p>", escape(&text))
}

/// The style every page of a [`Layout`] starts with: a readable column of text, the header
/// naming the app, data tables (`caption`, `td.number` for figures, `tr.flagged` rows and
/// `.flag` marks for results that need attention), and the notices of a read that did not
/// happen (`.denied`, `.unavailable`; `.error` for anything else).
pub const BASE_STYLE: &str = "
body { font-family: system-ui, sans-serif; line-height: 1.5; margin: 0 auto; max-width: 48rem; padding: 1rem; color: #1b1b1b; }
header p { margin: 0; color: #555; }
.flag { color: #8a1c12; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: 600; padding: .5rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.flagged { background: #fdecea; }
.denied, .unavailable, .error { border-left: .25rem solid #8a1c12; background: #fdecea; padding: .5rem 1rem; }
";

/// How an app's pages look: one self-contained document per page, in English, styled by
/// [`BASE_STYLE`] and then the app's own `style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The app's name: after every page's title, and in the header of every page.
    pub app_name: &'static str,
    /// The app's own CSS, after [`BASE_STYLE`] (so it can override it).
    pub style: &'static str,
}

impl Layout {
    /// A whole page: `title – app name` as its title (escaped here), and `main_html`, which
    /// must already be escaped, as its `main` element.
    pub fn page(&self, title: &str, main_html: &str) -> String {
        let app_name = escape(self.app_name);
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} – {app_name}</title><style>{BASE_STYLE}{style}</style></head>\
             <body><header><p>{app_name}</p></header><main>{main_html}</main></body></html>",
            title = escape(title),
            style = self.style,
        )
    }

    /// The page for a platform call that ended the request, headed by the app's name, with
    /// [`failure_notice`]: answer it with [`Error::status_code`](crate::fhir::Error::status_code).
    pub fn failure_page(&self, error: &fhir::Error, data: &str) -> String {
        let heading = escape(self.app_name);
        self.page(
            "Not available",
            &format!("<h1>{heading}</h1>{}", failure_notice(error, data)),
        )
    }

    /// The page for a request without a patient in context, which an app about one patient
    /// cannot answer: answer it with status `400`.
    pub fn no_patient_page(&self) -> String {
        self.page(
            "No patient selected",
            "<h1>No patient selected</h1><p class=\"error\">A patient must be selected to use \
             this app. Open it from the patient's record.</p>",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn a_failure_notice_says_denied_with_the_escaped_reason_or_asks_to_retry() {
        let denied = failure_notice(&fhir::Error::Denied("opted <b>out</b>".into()), "lab data");
        assert_eq!(
            denied,
            "<p class=\"denied\" role=\"alert\">Access to lab data was denied: opted &lt;b&gt;out&lt;/b&gt;</p>"
        );
        let unavailable = failure_notice(&fhir::Error::Unavailable("timeout".into()), "lab data");
        assert!(
            unavailable.starts_with("<p class=\"unavailable\""),
            "{unavailable}"
        );
        assert!(
            !unavailable.contains("timeout"),
            "internal detail stays out: {unavailable}"
        );
        let invalid = failure_notice(&fhir::Error::Invalid("bad param".into()), "lab data");
        assert!(invalid.contains("class=\"error\"") && !invalid.contains("bad param"));
    }

    const LAYOUT: Layout = Layout {
        app_name: "Bo & Co",
        style: "dl { margin: 0; }",
    };

    #[test]
    fn a_page_is_one_document_with_the_base_style_then_the_apps() {
        let page = LAYOUT.page("Readings of <Åse>", "<h1>Readings</h1>");
        assert_eq!(
            page,
            format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <title>Readings of &lt;Åse&gt; – Bo &amp; Co</title>\
                 <style>{BASE_STYLE}dl {{ margin: 0; }}</style></head>\
                 <body><header><p>Bo &amp; Co</p></header><main><h1>Readings</h1></main></body>\
                 </html>"
            )
        );
        assert!(!page.contains("<script"));
        assert!(!page.contains("<link"));
    }

    #[test]
    fn the_base_style_covers_tables_and_withheld_data() {
        for selector in [
            "body {",
            "table {",
            "tr.flagged {",
            ".flag {",
            ".denied, .unavailable",
        ] {
            assert!(BASE_STYLE.contains(selector), "{selector}");
        }
        // Inside `<style>` nothing is escaped: the style must not be able to end the element.
        assert!(!BASE_STYLE.contains('<'));
    }

    #[test]
    fn the_no_patient_page_asks_for_a_patient() {
        let page = LAYOUT.no_patient_page();
        assert!(page.contains("<title>No patient selected – Bo &amp; Co</title>"));
        assert!(page.contains(
            "<main><h1>No patient selected</h1><p class=\"error\">A patient must be selected to \
             use this app. Open it from the patient's record.</p></main>"
        ));
    }
}
