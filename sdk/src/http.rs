//! Requests and responses as plain values. Nothing here calls WASI, so everything is
//! testable on the native target; `serve.rs` converts to and from `wasi:http`.

use std::fmt;

use serde::Serialize;

use crate::fhir;

/// The first path segment of every app's mount point, `/apps/{region}/{publisher}/{app}`.
const MOUNT_ROOT: &str = "apps";
/// How many path segments the mount point has: `apps`, region, publisher, app.
const MOUNT_SEGMENTS: usize = 4;

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: routed like `GET`, answered without a body.
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other method, by name.
    Other(String),
}

impl Method {
    /// The method's name as on the wire, e.g. `GET`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(name) => name,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An incoming request, with the app's mount point already stripped from the path.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path after the app's mount point, always starting with `/` (`/` for the app's
    /// root). Not percent-decoded.
    pub path: String,
    /// The query string's parameters in order, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The headers in order, names lowercase; values that are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The whole request body.
    pub body: Vec<u8>,
    /// `/apps/{region}/{publisher}/{app}`, or empty when the request did not come through
    /// the app cloud (e.g. under `wasmtime serve`).
    mount_path: String,
    /// Path parameters bound by the [`Router`](crate::Router), percent-decoded.
    params: Vec<(String, String)>,
}

impl Request {
    /// A request for `target`, the path and query exactly as the host forwards them, e.g.
    /// `/apps/hovedstaden/examples/bp-monitor/api/readings?days=30`.
    ///
    /// A path under `/apps/{region}/{publisher}/{app}` is split into the mount point
    /// ([`mount_path`](Self::mount_path)) and the rest ([`path`](Self::path)); any other path
    /// is used as is.
    pub fn new(method: Method, target: &str) -> Request {
        let (raw_path, raw_query) = match target.split_once('?') {
            Some((path, query)) => (path, query),
            None => (target, ""),
        };
        let (mount_path, path) = split_mount(raw_path);
        Request {
            method,
            path,
            query: parse_pairs(raw_query.as_bytes()),
            headers: Vec::new(),
            body: Vec::new(),
            mount_path,
            params: Vec::new(),
        }
    }

    /// Sets header `name` (lowercased) to `value`, replacing any previous value.
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        set_header(&mut self.headers, name, value);
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        first_value(&self.query, name)
    }

    /// The value of path parameter `name` bound by the router (`/readings/{id}`).
    pub fn param(&self, name: &str) -> Option<&str> {
        first_value(&self.params, name)
    }

    /// The app's mount point, `/apps/{region}/{publisher}/{app}` (no trailing slash), or ""
    /// when the request did not come through the app cloud.
    pub fn mount_path(&self) -> &str {
        &self.mount_path
    }

    /// An absolute path to `path` within this app, for links, form actions and redirects:
    /// `req.app_url("/measurements")` is `/apps/hovedstaden/examples/bp-monitor/measurements`.
    ///
    /// Relative URLs break under the mount point (`/apps/r/p/app` has no trailing slash, so
    /// `measurements` would resolve to `/apps/r/p/measurements`); build them with this.
    pub fn app_url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.mount_path)
        } else {
            format!("{}/{path}", self.mount_path)
        }
    }

    /// The body parsed as an HTML form (`application/x-www-form-urlencoded`).
    ///
    /// A request without a content type is parsed as a form too; any other content type
    /// (e.g. `multipart/form-data`) is an error.
    pub fn form(&self) -> Result<Form, FormError> {
        if let Some(content_type) = self.header("content-type") {
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(FormError(format!(
                    "expected an application/x-www-form-urlencoded form, got {essence}"
                )));
            }
        }
        Ok(Form {
            fields: parse_pairs(&self.body),
        })
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }
}

/// Splits `/apps/{region}/{publisher}/{app}/rest` into the mount point and `/rest`.
fn split_mount(raw_path: &str) -> (String, String) {
    let mut segments = raw_path.splitn(MOUNT_SEGMENTS + 2, '/');
    let leading = segments.next();
    let mount: Vec<&str> = segments.by_ref().take(MOUNT_SEGMENTS).collect();
    let mounted = leading == Some("")
        && mount.len() == MOUNT_SEGMENTS
        && mount[0] == MOUNT_ROOT
        && mount.iter().all(|segment| !segment.is_empty());
    if !mounted {
        let path = if raw_path.starts_with('/') {
            raw_path.to_owned()
        } else {
            format!("/{raw_path}")
        };
        return (String::new(), path);
    }
    let rest = segments.next().unwrap_or_default();
    (format!("/{}", mount.join("/")), format!("/{rest}"))
}

fn parse_pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).into_owned().collect()
}

/// Sets header `name`, lowercased, to `value`: the one header of that name.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    let name = name.to_ascii_lowercase();
    headers.retain(|(n, _)| *n != name);
    headers.push((name, value.to_owned()));
}

/// The first value of header `name`, compared case-insensitively.
fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn first_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The fields of a submitted HTML form, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// `(name, value)` pairs, percent-decoded, `+` decoded as a space.
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        first_value(&self.fields, name)
    }

    /// The first value of field `name`, trimmed, or `None` when missing or blank.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// Why a request body is not a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError(String);

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormError {}

/// A response: status, headers and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order; [`with_header`](Self::with_header) keeps names unique.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// For HTML that shows patient data: nothing may be loaded from elsewhere, no script runs,
/// forms post only back to the app cloud, and no other site may frame the page.
const HTML_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'self'; base-uri 'none'";

impl Response {
    /// An empty response with `status`.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200` with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Response {
        Response::status(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// `200` with an HTML body, which must already be escaped (see [`crate::html`]).
    ///
    /// Sets a strict `content-security-policy` (no scripts, no external assets; inline
    /// `<style>` and SVG are fine) and `cache-control: no-store`, since app pages show
    /// patient data.
    pub fn html(body: impl Into<String>) -> Response {
        Response::status(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_header("content-security-policy", HTML_CONTENT_SECURITY_POLICY)
            .with_header("cache-control", "no-store")
            .with_body(body.into())
    }

    /// `200` with `value` as a JSON body and `cache-control: no-store`; `500` if `value`
    /// cannot be serialized.
    pub fn json(value: &impl Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::status(200)
                .with_header("content-type", "application/json")
                .with_header("cache-control", "no-store")
                .with_body(body),
            Err(error) => Response::text(format!("the response could not be serialized: {error}"))
                .with_status(500),
        }
    }

    /// `status` with a JSON error body, `{"error": kind, "message": message}`: `kind` is a
    /// short machine-readable name (e.g. `no-patient`), `message` says what went wrong.
    pub fn json_error(status: u16, kind: &str, message: &str) -> Response {
        Response::json(&serde_json::json!({ "error": kind, "message": message }))
            .with_status(status)
    }

    /// A failed FHIR call as a [`json_error`](Self::json_error): the error's
    /// [status](fhir::Error::status_code), [kind](fhir::Error::kind) and text, e.g. `403`
    /// `{"error": "denied", "message": "access denied: the patient opted out"}`.
    pub fn json_fhir_error(error: &fhir::Error) -> Response {
        Response::json_error(error.status_code(), error.kind(), &error.to_string())
    }

    /// `303 See Other` to `location`: after a form post, the browser then loads `location`
    /// with `GET`. Build in-app locations with [`Request::app_url`].
    pub fn redirect(location: impl Into<String>) -> Response {
        Response::status(303).with_header("location", &location.into())
    }

    /// Replaces the status code.
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// Sets header `name` (lowercased) to `value`, replacing any previous value.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        set_header(&mut self.headers, name, value);
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body as text, lossily (for tests and logs).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_point_is_stripped() {
        let req = Request::new(
            Method::Get,
            "/apps/hovedstaden/examples/bp-monitor/api/readings?days=30&x=a%20b",
        );
        assert_eq!(req.path, "/api/readings");
        assert_eq!(req.mount_path(), "/apps/hovedstaden/examples/bp-monitor");
        assert_eq!(req.query_param("days"), Some("30"));
        assert_eq!(req.query_param("x"), Some("a b"));
        assert_eq!(
            req.app_url("/measurements"),
            "/apps/hovedstaden/examples/bp-monitor/measurements"
        );
    }

    #[test]
    fn the_app_root_is_slash_with_or_without_trailing_slash() {
        for target in [
            "/apps/r/examples/hello",
            "/apps/r/examples/hello/",
            "/apps/r/examples/hello?q=1",
        ] {
            let req = Request::new(Method::Get, target);
            assert_eq!(req.path, "/", "{target}");
            assert_eq!(req.mount_path(), "/apps/r/examples/hello", "{target}");
        }
        assert_eq!(
            Request::new(Method::Get, "/apps/r/examples/hello/a/b/").path,
            "/a/b/"
        );
    }

    #[test]
    fn paths_outside_the_app_cloud_are_used_as_is() {
        for (target, path) in [
            ("/", "/"),
            ("/api/readings", "/api/readings"),
            ("/apps/too/short", "/apps/too/short"),
            ("/apps//examples/x/y", "/apps//examples/x/y"),
            ("/application/a/b/c", "/application/a/b/c"),
            ("", "/"),
        ] {
            let req = Request::new(Method::Get, target);
            assert_eq!(req.path, path, "{target}");
            assert_eq!(req.mount_path(), "");
        }
        assert_eq!(Request::new(Method::Get, "/x").app_url("/"), "/");
    }

    #[test]
    fn forms_are_decoded_and_checked_for_their_content_type() {
        let req = Request::new(Method::Post, "/measurements")
            .with_header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .with_body("systolic=142&diastolic=+91+&note=h%C3%B8j+puls&date=");
        let form = req.form().unwrap();
        assert_eq!(form.get("systolic"), Some("142"));
        assert_eq!(form.non_empty("diastolic"), Some("91"));
        assert_eq!(form.get("note"), Some("høj puls"));
        assert_eq!(form.get("date"), Some(""));
        assert_eq!(form.non_empty("date"), None);
        assert_eq!(form.get("missing"), None);

        let multipart = req.with_header("content-type", "multipart/form-data; boundary=x");
        assert!(
            multipart
                .form()
                .unwrap_err()
                .to_string()
                .contains("multipart")
        );
    }

    #[test]
    fn a_failed_fhir_call_is_a_json_error_with_its_status_and_kind() {
        let denied = Response::json_fhir_error(&fhir::Error::Denied("opted out".into()));
        assert_eq!(denied.status, 403);
        assert_eq!(
            denied.body_text(),
            r#"{"error":"denied","message":"access denied: opted out"}"#
        );
        let unavailable = Response::json_fhir_error(&fhir::Error::Unavailable("timeout".into()));
        assert_eq!(unavailable.status, 503);
        assert_eq!(
            unavailable.body_text(),
            r#"{"error":"unavailable","message":"data unavailable: timeout"}"#
        );
        assert_eq!(
            Response::json_fhir_error(&fhir::Error::NotFound).status,
            404
        );
    }

    #[test]
    fn headers_are_case_insensitive_and_unique() {
        let response = Response::text("hi")
            .with_header("X-Thing", "1")
            .with_header("x-thing", "2");
        assert_eq!(response.header("X-THING"), Some("2"));
        assert_eq!(
            response
                .headers
                .iter()
                .filter(|(n, _)| n == "x-thing")
                .count(),
            1
        );
        let req = Request::new(Method::Get, "/")
            .with_header("Accept", "text/html")
            .with_header("X-Thing", "1")
            .with_header("x-thing", "2");
        assert_eq!(req.header("accept"), Some("text/html"));
        assert_eq!(
            req.headers,
            [
                ("accept".to_owned(), "text/html".to_owned()),
                ("x-thing".to_owned(), "2".to_owned())
            ]
        );
    }

    #[test]
    fn response_builders_set_status_and_content_type() {
        let html = Response::html("<p>x</p>");
        assert_eq!(html.status, 200);
        assert_eq!(
            html.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(html.header("content-security-policy").is_some());
        assert_eq!(html.header("cache-control"), Some("no-store"));

        let json = Response::json(&serde_json::json!({"a": [1, 2]}));
        assert_eq!(json.header("content-type"), Some("application/json"));
        assert_eq!(json.body_text(), r#"{"a":[1,2]}"#);

        let redirect = Response::redirect("/apps/r/p/a/");
        assert_eq!(redirect.status, 303);
        assert_eq!(redirect.header("location"), Some("/apps/r/p/a/"));

        let error = Response::json_error(400, "no-patient", "a patient must be selected");
        assert_eq!(error.status, 400);
        assert_eq!(error.header("content-type"), Some("application/json"));
        assert_eq!(
            error.body_text(),
            r#"{"error":"no-patient","message":"a patient must be selected"}"#
        );

        assert_eq!(Response::status(204).body, b"");
        assert_eq!(Response::text("x").with_status(418).status, 418);
    }
}
