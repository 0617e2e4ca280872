//! What an app may do to the origin it shares with the platform and every other app.
//!
//! Apps are served from the platform's own origin (`/apps/{region}/{publisher}/{app}/…`), so
//! a response header an app sets is a header of the platform's origin. An app's response
//! therefore passes an allow-list ([`confine_response`]): caching is kept private, a
//! redirect stays on the app's own path or goes to a host the region granted it, framing is
//! limited to the platform's own pages, and nothing origin-wide (HSTS, `Clear-Site-Data`,
//! cookies, CORS) gets through. A request authenticated by the launch cookie that changes
//! something must come from the platform's own pages ([`check_cookie_request`]).

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use healthcloud_platform::http::SecurityHeaders;
use url::Url;

use crate::capability::Grant;

/// The response headers an app may set. Everything else is dropped: `Set-Cookie` and
/// `Clear-Site-Data` (the platform's sessions), `Strict-Transport-Security` (origin-wide),
/// `Access-Control-*` (other sites reading patient data), `Refresh` and `Link` (redirects
/// and preloads around the `Location` check), `WWW-Authenticate` (credential prompts).
const ALLOWED_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_ENCODING,
    header::CONTENT_DISPOSITION,
    header::CONTENT_SECURITY_POLICY,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
    header::LOCATION,
    header::RETRY_AFTER,
    header::ALLOW,
    header::X_FRAME_OPTIONS,
];

/// The platform's policy for every app page, enforced beside any policy of the app's own
/// (browsers enforce every `Content-Security-Policy` header, so an app can add restrictions
/// but never lift these): no access to the platform's origin (sandbox without
/// `allow-same-origin`), and framed only by the platform's own pages.
const PLATFORM_CSP: &str =
    "sandbox allow-forms allow-scripts allow-popups allow-downloads; frame-ancestors 'self'";

/// The platform's security headers on every app page: its policy beside the app's, and
/// `nosniff`. Caching and framing are decided per response, from what the app asked for.
const APP_PAGE_HEADERS: SecurityHeaders = SecurityHeaders {
    content_security_policy: PLATFORM_CSP,
    referrer_policy: None,
    default_cache_control: None,
};

/// What caches may do with an app's response unless the app asks for something at least as
/// strict: app pages hold patient data, so no shared cache may keep them and no browser
/// cache may store them.
const PRIVATE_NO_STORE: &str = "private, no-store";

/// The app a response comes from, and the request it answers.
pub(crate) struct AppOrigin<'a> {
    /// `/apps/{region}/{publisher}/{app}`: the app's own pages are this path and below it.
    pub root: String,
    /// The request's path and query, against which relative redirects resolve.
    pub request_path: &'a str,
    /// The install's live grant (its `outbound-http:<host>` entries may be redirected to).
    pub grant: &'a Grant,
}

/// Confines an app's response headers to what an app may set on the shared origin, and
/// adds the platform's own. A redirect (`Location`) outside the app's own pages and its
/// granted hosts is refused: the error names it, and the whole response is replaced by the
/// caller (a half-confined redirect would be a broken page at best).
pub(crate) fn confine_response(headers: &mut HeaderMap, app: &AppOrigin<'_>) -> Result<(), String> {
    let mut confined = HeaderMap::with_capacity(headers.len() + 4);
    for name in ALLOWED_HEADERS {
        for value in headers.get_all(name) {
            confined.append(name.clone(), value.clone());
        }
    }
    if let Some(location) = confined.remove(header::LOCATION) {
        if headers.get_all(header::LOCATION).iter().count() > 1 {
            return Err("more than one Location header".to_owned());
        }
        confined.insert(header::LOCATION, confine_location(&location, app)?);
    }
    let cache_control = confined
        .get_all(header::CACHE_CONTROL)
        .iter()
        .map(|value| value.to_str().unwrap_or("public"))
        .collect::<Vec<_>>()
        .join(",");
    if !at_least_private_no_store(&cache_control) {
        confined.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(PRIVATE_NO_STORE),
        );
    }
    // DENY is stricter than SAMEORIGIN and kept; anything else (ALLOWALL, ALLOW-FROM …) is
    // the platform's SAMEORIGIN. Exactly one value either way: browsers ignore the header
    // when its values conflict.
    let deny = confined
        .get_all(header::X_FRAME_OPTIONS)
        .iter()
        .any(|value| value.as_bytes().eq_ignore_ascii_case(b"deny"));
    confined.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static(if deny { "DENY" } else { "SAMEORIGIN" }),
    );
    APP_PAGE_HEADERS.apply(&mut confined);
    *headers = confined;
    Ok(())
}

/// Whether `cache_control` keeps the response out of every cache at least as firmly as
/// `private, no-store`: it says `no-store` and does not invite shared caches (`public`,
/// `s-maxage`). `no-store` alone qualifies; `public`, `max-age=…`, `no-cache` do not.
fn at_least_private_no_store(cache_control: &str) -> bool {
    let directives: Vec<String> = cache_control
        .split(',')
        .map(|directive| {
            let name = directive.split('=').next().unwrap_or_default();
            name.trim().to_ascii_lowercase()
        })
        .collect();
    let has = |name: &str| directives.iter().any(|d| d == name);
    has("no-store") && !has("public") && !has("s-maxage")
}

/// The `Location` an app may send: a relative reference that resolves (against the request,
/// as a browser resolves it) to the app's own pages, rewritten to that resolved path so the
/// browser follows exactly what was checked; or an absolute `http`/`https` URL on a host the
/// region granted the app (`outbound-http:<host>`).
fn confine_location(location: &HeaderValue, app: &AppOrigin<'_>) -> Result<HeaderValue, String> {
    let text = location
        .to_str()
        .map_err(|_| "a Location that is not visible ASCII (percent-encode it)".to_owned())?;
    let shown: String = text.chars().take(200).collect();
    let outside = || {
        format!(
            "a redirect to {shown}, which is neither under {root}/ nor on a host the region \
             granted it (outbound-http:<host>); redirect within the app's own path",
            root = app.root
        )
    };
    match Url::parse(text) {
        Ok(absolute) => {
            let granted = matches!(absolute.scheme(), "http" | "https")
                && absolute.username().is_empty()
                && absolute.password().is_none()
                && absolute
                    .host_str()
                    .zip(absolute.port_or_known_default())
                    .is_some_and(|(host, port)| app.grant.allows_outbound_host(host, port));
            if granted {
                HeaderValue::from_str(absolute.as_str()).map_err(|_| outside())
            } else {
                Err(outside())
            }
        }
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            // Resolved as a browser does (WHATWG URL: `\` as `/`, dot segments, `//host`).
            let base = Url::parse(&format!("http://platform.invalid{}", app.request_path))
                .map_err(|_| outside())?;
            let resolved = base.join(text).map_err(|_| outside())?;
            let own_page = resolved.origin() == base.origin()
                && (resolved.path() == app.root
                    || resolved
                        .path()
                        .strip_prefix(app.root.as_str())
                        .is_some_and(|rest| rest.starts_with('/')));
            if !own_page {
                return Err(outside());
            }
            let mut path = resolved.path().to_owned();
            if let Some(query) = resolved.query() {
                path.push('?');
                path.push_str(query);
            }
            if let Some(fragment) = resolved.fragment() {
                path.push('#');
                path.push_str(fragment);
            }
            HeaderValue::from_str(&path).map_err(|_| outside())
        }
        Err(_) => Err(outside()),
    }
}

/// Refuses a request that changes something (any method but GET, HEAD and OPTIONS) and is
/// authenticated only by the launch cookie, unless the browser says it comes from a page of
/// this origin (`Sec-Fetch-Site: same-origin`, and an `Origin` naming this host). The cookie
/// is `SameSite=Strict`, but another port on the same host is the same site, and a page
/// there could otherwise post as the user. Requests with `Authorization: Bearer` are not
/// affected: no browser adds that header on its own.
pub(crate) fn check_cookie_request(
    request: &axum::extract::Request,
    cookie_authenticated: bool,
) -> Result<(), String> {
    let (method, headers) = (request.method(), request.headers());
    if !cookie_authenticated || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let site = headers.get("sec-fetch-site");
    let origin = headers.get(header::ORIGIN);
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the URI's authority.
    let host = match headers.get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    };
    let site_ok = site.is_none_or(|site| site.as_bytes() == b"same-origin");
    let origin_ok = origin.is_none_or(|origin| {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        host.is_some_and(|host| authority.is_some_and(|a| a.eq_ignore_ascii_case(host)))
    });
    if (site.is_some() || origin.is_some()) && site_ok && origin_ok {
        return Ok(());
    }
    let from = match (origin.and_then(|o| o.to_str().ok()), site) {
        (Some(origin), _) => format!("Origin {}", origin.chars().take(100).collect::<String>()),
        (None, Some(site)) => format!("Sec-Fetch-Site {}", site.to_str().unwrap_or("?")),
        (None, None) => "no Origin or Sec-Fetch-Site header".to_owned(),
    };
    Err(format!(
        "a {method} request with the launch cookie must come from this server's own pages \
         (Origin of this host or Sec-Fetch-Site: same-origin); this one has {from}. Another \
         client sends the token as Authorization: Bearer instead"
    ))
}

#[cfg(test)]
mod tests {
    use healthcloud_package::manifest::Capability;

    use super::*;

    fn app_origin(grant: &Grant) -> AppOrigin<'_> {
        AppOrigin {
            root: "/apps/r/p/a".to_owned(),
            request_path: "/apps/r/p/a/notes/edit?id=1",
            grant,
        }
    }

    fn location(value: &str, grant: &[&str]) -> Result<String, String> {
        let grant = Grant::new(
            grant
                .iter()
                .map(|c| Capability::parse(c).unwrap())
                .collect(),
        );
        confine_location(&HeaderValue::from_str(value).unwrap(), &app_origin(&grant))
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn redirects_stay_on_the_apps_own_pages() {
        assert_eq!(
            location("saved?id=2", &[]).unwrap(),
            "/apps/r/p/a/notes/saved?id=2"
        );
        assert_eq!(location("../", &[]).unwrap(), "/apps/r/p/a/");
        assert_eq!(location("/apps/r/p/a", &[]).unwrap(), "/apps/r/p/a");
        assert_eq!(
            location("/apps/r/p/a/x#top", &[]).unwrap(),
            "/apps/r/p/a/x#top"
        );
        for escape in [
            "../../../../other/app/",
            "/apps/r/p/ab/",
            "/apps/r/p/a/%2e%2e/b/",
            "/regions/r/",
            "//evil.example/",
            "/\\evil.example/",
            "\\\\evil.example/",
            "https://evil.example/",
            "javascript:alert(1)",
            "http://platform.invalid/apps/r/p/a/",
        ] {
            let refused = location(escape, &[]).unwrap_err();
            assert!(
                refused.contains("under /apps/r/p/a/"),
                "{escape}: {refused}"
            );
        }
    }

    #[test]
    fn redirects_may_go_to_granted_hosts_only() {
        let grant = &["outbound-http:partner.example"];
        assert_eq!(
            location("https://partner.example/callback", grant).unwrap(),
            "https://partner.example/callback"
        );
        assert!(location("https://partner.example.evil.example/", grant).is_err());
        assert!(location("https://user@partner.example/", grant).is_err());
        assert!(location("ftp://partner.example/", grant).is_err());
        let with_port = &["outbound-http:partner.example:8443"];
        assert!(location("https://partner.example:8443/", with_port).is_ok());
        assert!(location("https://partner.example/", with_port).is_err());
    }

    #[test]
    fn framing_is_the_platforms_whatever_the_app_sends() {
        let grant = Grant::default();
        let framing = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            confine_response(&mut headers, &app_origin(&grant)).unwrap();
            let sent: Vec<_> = headers.get_all(header::X_FRAME_OPTIONS).iter().collect();
            let policies: Vec<_> = headers
                .get_all(header::CONTENT_SECURITY_POLICY)
                .iter()
                .collect();
            assert_eq!(policies, [PLATFORM_CSP]);
            sent.iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(framing(&[]), ["SAMEORIGIN"]);
        assert_eq!(framing(&["ALLOWALL"]), ["SAMEORIGIN"]);
        assert_eq!(framing(&["DENY"]), ["DENY"]);
        assert_eq!(framing(&["ALLOWALL", "deny"]), ["DENY"]);
    }

    #[test]
    fn caching_is_private_unless_the_app_is_stricter() {
        for strict in [
            "no-store",
            "private, no-store",
            "no-store, max-age=0",
            "No-Store",
        ] {
            assert!(at_least_private_no_store(strict), "{strict}");
        }
        for loose in [
            "",
            "public",
            "public, no-store",
            "max-age=31536000",
            "private, max-age=60",
            "no-cache",
            "s-maxage=60, no-store",
        ] {
            assert!(!at_least_private_no_store(loose), "{loose}");
        }
    }

    #[test]
    fn cookie_requests_that_change_something_need_this_origin() {
        let request = |method: Method, pairs: &[(&str, &str)]| {
            let mut request = axum::extract::Request::builder()
                .method(method)
                .uri("/apps/r/p/a/")
                .header(header::HOST, "localhost:8080");
            for (name, value) in pairs {
                request = request.header(*name, *value);
            }
            request.body(axum::body::Body::empty()).unwrap()
        };
        let allowed = |method, pairs: &[(&str, &str)], cookie| {
            check_cookie_request(&request(method, pairs), cookie).is_ok()
        };
        let same = [
            ("origin", "http://localhost:8080"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(allowed(Method::POST, &same, true));
        assert!(allowed(
            Method::POST,
            &[("sec-fetch-site", "same-origin")],
            true
        ));
        assert!(allowed(
            Method::POST,
            &[("origin", "http://localhost:8080")],
            true
        ));
        for refused in [
            &[][..],
            &[("origin", "http://localhost:9999")],
            &[("origin", "null")],
            &[("sec-fetch-site", "same-site")],
            &[
                ("origin", "http://localhost:8080"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            let message =
                check_cookie_request(&request(Method::DELETE, refused), true).unwrap_err();
            assert!(message.contains("Authorization: Bearer"), "{message}");
        }
        let cross = [("origin", "http://evil.example")];
        assert!(allowed(Method::GET, &cross, true));
        assert!(allowed(Method::POST, &cross, false));
        // HTTP/2: the authority instead of Host.
        let h2 = axum::extract::Request::post("http://localhost:8080/apps/r/p/a/")
            .header("origin", "http://localhost:8080")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(check_cookie_request(&h2, true).is_ok());
    }
}
