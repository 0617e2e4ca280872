//! What the services' HTTP layers share: the JSON error body of the store and region admin
//! APIs, the security headers of the HTML the platform serves, and cookies.

use axum::http::header::InvalidHeaderValue;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The JSON body of a refusal by the store API or the region admin API:
/// `{"error": …, "field": …}`. (The FHIR API answers with an OperationOutcome instead.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and how to fix it.
    pub error: String,
    /// The offending field, when there is one (e.g. `grant`, `package.app.version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    /// A body naming no field.
    pub fn new(error: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            field: None,
        }
    }
}

/// The security headers put on HTML the platform serves (its own pages, or an app's
/// responses): what differs between them is the policy; `nosniff` is always sent.
#[derive(Debug, Clone, Copy)]
pub struct SecurityHeaders {
    /// The `Content-Security-Policy`, added beside any the response carries already (a
    /// browser enforces every policy it is sent, so the response cannot loosen this one).
    pub content_security_policy: &'static str,
    /// The `Referrer-Policy`, when one is set.
    pub referrer_policy: Option<&'static str>,
    /// The `Cache-Control` of a response that names none.
    pub default_cache_control: Option<&'static str>,
}

impl SecurityHeaders {
    /// Puts these headers on `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(self.content_security_policy),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(policy) = self.referrer_policy {
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static(policy));
        }
        if let Some(cache_control) = self.default_cache_control {
            headers
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static(cache_control));
        }
    }

    /// A layer that puts these headers on every response of the router it wraps.
    pub fn layer(
        self,
    ) -> tower::util::MapResponseLayer<impl Fn(Response) -> Response + Clone + Send + Sync + 'static>
    {
        tower::util::MapResponseLayer::new(move |mut response: Response| {
            self.apply(response.headers_mut());
            response
        })
    }
}

/// A page's stylesheet, compiled into the binary: cached for five minutes.
pub fn stylesheet(css: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        css,
    )
        .into_response()
}

/// Why an answer's body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum LimitedReadError {
    /// It says, or turned out, to be larger than the limit; what came is dropped.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The connection failed while the body streamed in.
    #[error("the answer broke off: {0}")]
    Transport(#[from] reqwest::Error),
}

/// `listener` with `TCP_NODELAY` on every connection it accepts: a small answer goes out at
/// once instead of waiting for the peer's delayed ACK (a download's last segment otherwise
/// stalls ~40 ms).
pub fn without_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    fn no_delay(tcp: &mut tokio::net::TcpStream) {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    }
    axum::serve::ListenerExt::tap_io(listener, no_delay)
}

/// An HTTP answer's body as it streams in, refused as soon as it exceeds `limit` bytes (or
/// announces it will), so nothing larger than the limit is ever held.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, LimitedReadError> {
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit) {
        return Err(LimitedReadError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(LimitedReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The values of every cookie named `name` in the request's `Cookie` headers, in the order
/// sent (a page elsewhere on the origin may have set one of the same name).
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(move |cookie| cookie.name() == name)
        .filter_map(|cookie| cookie.value_raw())
}

/// A `Set-Cookie` value for a session: `value` under `name`, sent back only to `path`, for
/// `max_age_secs` (0 removes it), never to scripts (`HttpOnly`) nor from other sites
/// (`SameSite=Strict`), and only over HTTPS when `secure`. An error when `name`, `value` or
/// `path` cannot be in a header.
pub fn session_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
    secure: bool,
) -> Result<HeaderValue, InvalidHeaderValue> {
    // Written out rather than by the cookie crate's `Display`, which orders the attributes
    // differently: the attributes stay in the order clients and tests have seen.
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("healthcloud_citizen_x=1; healthcloud_citizen=a.b.c"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("other=2;broken"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("healthcloud_citizen=d.e.f"),
        );
        let found = |name| cookies(&headers, name).collect::<Vec<_>>();
        assert_eq!(found("healthcloud_citizen"), ["a.b.c", "d.e.f"]);
        assert_eq!(found("other"), ["2"]);
        assert!(found("healthcloud").is_empty());
    }

    #[test]
    fn security_headers_keep_a_cache_control_the_response_chose() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
        SecurityHeaders {
            content_security_policy: "default-src 'none'",
            referrer_policy: Some("same-origin"),
            default_cache_control: Some("no-store"),
        }
        .apply(&mut headers);
        assert_eq!(headers[header::CACHE_CONTROL], "public");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
    }

    #[test]
    fn error_bodies_name_a_field_only_when_there_is_one() {
        let body = serde_json::to_value(ErrorBody::new("no")).unwrap();
        assert_eq!(body, serde_json::json!({"error": "no"}));
    }
}
