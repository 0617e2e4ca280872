//! The development launcher of `healthcloud up`: a launch page at `/` (like a SMART EHR
//! launch) and the pages each demo role lands on, for people trying the system in a browser.
//!
//! - [`launch_page`]: `GET /` picks region, role, patient and app; `POST /launch` mints a
//!   short-lived token bound to that context and opens the app or the role's page with it.
//! - [`region_admin`]: `/regions/{region}/` grants and revokes capabilities, approves upgrades,
//!   uninstalls, and reads the region's admin audit log, through the runtime's `admin_*`
//!   methods (audited, applied on every node).
//! - [`store_admin`]: `/store-admin/` revokes published versions through the store's API with
//!   the session's own store-admin token.
//! - [`citizen`]: `/citizen/` shows who looked at the citizen's data and opts apps out, through
//!   the integration cloud's [`FhirService`] with the citizen's verified token.
//!
//! Only mounted with the development issuer, and only on a listener bound to a loopback
//! address: the launcher mints tokens of any role with its key, which a real issuer would
//! never hand out, so [`Launch::new`] refuses any other listener and every request must come
//! from a loopback peer (its connection's address, never a header) and name its `Host`. Pages are server-rendered (askama, escaping on), carry no
//! script and a strict content security policy. Sessions are cookies holding the minted token
//! ([`session`]), verified on every request; forms that change anything are refused when sent
//! from another origin.

#![deny(missing_docs)]

mod citizen;
mod error;
mod launch_page;
mod region_admin;
mod session;
mod store_admin;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use healthcloud_integration::FhirService;
use healthcloud_platform::auth::{TokenIssuer, TokenVerifier};
use healthcloud_platform::http::{SecurityHeaders, stylesheet};
use healthcloud_runtime::Runtime;

use error::PageError;

/// Nothing but this origin's stylesheets may load (the store's, which the pages build on, and
/// the launcher's own): no script, no framing, forms post only back here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../templates/launch/launch.css");

/// What the launcher is built from.
pub struct LaunchConfig {
    /// The development issuer: mints the launch tokens.
    pub issuer: TokenIssuer,
    /// Verifies them again on every request (the same verifier as the FHIR API).
    pub verifier: TokenVerifier,
    /// The integration cloud's data service, for the citizen page and the patient list.
    pub service: FhirService,
    /// The app cloud: installs and the region admin operations.
    pub runtime: Runtime,
    /// Where the store's API answers in this process (`…/store/v1` below it).
    pub store_url: String,
    /// The public base URL: its origin is the one forms may come from, and `https` makes the
    /// cookies `Secure`.
    pub public_url: String,
    /// The regions to offer even when nothing is installed in them (from `app-cloud.toml`).
    pub regions: Vec<String>,
    /// The address the server's listener is bound to: the launcher exists only on loopback.
    pub listen_addr: SocketAddr,
    /// healthcloud's SMART authorization server, when it runs: the launch page then launches
    /// the regions' SMART web apps as an EHR does (a launch id for the chosen patient).
    pub authorization: Option<healthcloud_oauth::AuthorizationServer>,
}

/// Whether the launcher may be mounted on a listener bound to `addr`: only a loopback address
/// keeps everyone but this machine's users away from a page that mints any role's token.
pub fn mountable_on(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The launcher's state; cheap to clone.
#[derive(Clone)]
pub struct Launch {
    inner: Arc<Inner>,
}

struct Inner {
    config: LaunchConfig,
    /// `scheme://host[:port]` of the public URL.
    public_origin: String,
    /// Whether cookies get `Secure` (only over https: browsers drop them on plain http).
    secure_cookies: bool,
}

impl Launch {
    /// The launcher over `config`.
    pub fn new(config: LaunchConfig) -> anyhow::Result<Launch> {
        if !mountable_on(config.listen_addr) {
            anyhow::bail!(
                "the launch pages mint tokens for any role, so they are served only on a loopback \
                 address, not on {}: listen on 127.0.0.1 (--addr 127.0.0.1:PORT), or configure a \
                 real issuer (--issuer) for other addresses",
                config.listen_addr
            );
        }
        let url = reqwest::Url::parse(&config.public_url).map_err(|e| {
            anyhow::anyhow!(
                "the public URL '{}' is not a URL ({e}): pass one like http://127.0.0.1:8080",
                config.public_url
            )
        })?;
        Ok(Launch {
            inner: Arc::new(Inner {
                public_origin: url.origin().ascii_serialization(),
                secure_cookies: url.scheme() == "https",
                config,
            }),
        })
    }

    fn config(&self) -> &LaunchConfig {
        &self.inner.config
    }

    fn runtime(&self) -> &Runtime {
        &self.inner.config.runtime
    }

    /// Every region to offer: configured ones and any with installs, sorted.
    fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = self.config().regions.clone();
        regions.extend(
            self.runtime()
                .installs()
                .iter()
                .map(|install| install.identity.region.clone()),
        );
        regions.sort();
        regions.dedup();
        regions
    }

    /// Every installed app by id (`publisher/app`), with the regions serving it.
    fn installed_apps(&self) -> BTreeMap<String, InstalledApp> {
        let mut apps: BTreeMap<String, InstalledApp> = BTreeMap::new();
        for install in self.runtime().installs() {
            let identity = &install.identity;
            apps.entry(identity.id.clone())
                .or_insert_with(|| InstalledApp {
                    name: install.manifest.app.name.clone(),
                    regions: Vec::new(),
                })
                .regions
                .push(identity.region.clone());
        }
        // Backend services have no launch URL: nothing a person opens.
        for client in self
            .runtime()
            .smart_clients()
            .all()
            .into_iter()
            .filter(|client| client.launch_url.is_some())
        {
            apps.entry(client.app.clone())
                .or_insert_with(|| InstalledApp {
                    name: format!("{} (SMART web app)", client.name),
                    regions: Vec::new(),
                })
                .regions
                .push(client.region.clone());
        }
        for app in apps.values_mut() {
            app.regions.sort();
        }
        apps
    }
}

/// Whether a request that changes something comes from a page of this server (`origin`: the
/// public URL's). SameSite cookies alone do not suffice: another port on the same host is the
/// same *site*, so the browser's `Sec-Fetch-Site` and `Origin` decide.
fn same_origin(headers: &axum::http::HeaderMap, origin: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let Some(sent) = headers.get(header::ORIGIN) else {
        // Browsers send Origin with every POST; a client without one is no browser, and sends
        // only the cookies it chose to.
        return true;
    };
    let Ok(sent) = sent.to_str() else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    sent == origin
        || host.is_some_and(|host| {
            sent.strip_prefix("http://")
                .or_else(|| sent.strip_prefix("https://"))
                == Some(host)
        })
}

/// An installed app and the regions that installed it.
struct InstalledApp {
    name: String,
    regions: Vec<String>,
}

/// The launch page, the role pages and their stylesheet.
pub fn router(launch: Launch) -> Router {
    Router::new()
        .merge(launch_page::router())
        .merge(region_admin::router())
        .merge(store_admin::router())
        .merge(citizen::router())
        .route(
            "/static/launch.css",
            get(|| async { stylesheet(STYLESHEET) }),
        )
        .layer(middleware::from_fn_with_state(
            launch.clone(),
            refuse_cross_site,
        ))
        .layer(PAGE_HEADERS.layer())
        .with_state(launch)
}

/// Whether the request was addressed to this server by a name it answers to: the public URL's
/// host, or a loopback name on its port. A page on another name that resolves here (DNS
/// rebinding) would otherwise be "same origin" with its own forms.
fn addressed_here(headers: &axum::http::HeaderMap, public_origin: &str) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // Browsers always send one; without it the request's target cannot be judged.
        return false;
    };
    let Ok(public) = reqwest::Url::parse(public_origin) else {
        return false;
    };
    let port = public.port_or_known_default();
    let authority = match public.port() {
        Some(port) => format!("{}:{port}", public.host_str().unwrap_or_default()),
        None => public.host_str().unwrap_or_default().to_owned(),
    };
    if host.eq_ignore_ascii_case(&authority) {
        return true;
    }
    let (name, sent_port) = match host.rsplit_once(':') {
        Some((name, sent)) if !name.ends_with(':') => (name, sent.parse().ok()),
        _ => (host, Some(80)),
    };
    sent_port == port
        && ["localhost", "127.0.0.1", "[::1]"].contains(&name.to_ascii_lowercase().as_str())
}

/// Whether the connection came from this machine. Judged by the peer address the listener
/// accepted, which no header can change; a request served without one (not through
/// `into_make_service_with_connect_info`) is refused rather than trusted.
fn from_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback())
}

async fn refuse_cross_site(State(launch): State<Launch>, request: Request, next: Next) -> Response {
    if !from_loopback(&request) || !request.headers().contains_key(header::HOST) {
        tracing::warn!(
            peer = ?request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
            host = ?request.headers().get(header::HOST),
            "refused a request for the launch pages from another machine or without a Host"
        );
        return PageError::NotLocal.into_response();
    }
    if !addressed_here(request.headers(), &launch.inner.public_origin) {
        tracing::warn!(
            host = ?request.headers().get(header::HOST),
            "refused a request for the launch pages under another host name"
        );
        return PageError::CrossSite.into_response();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        && !same_origin(request.headers(), &launch.inner.public_origin)
    {
        tracing::warn!(
            path = %request.uri().path(),
            origin = ?request.headers().get(header::ORIGIN),
            fetch_site = ?request.headers().get("sec-fetch-site"),
            "refused a cross-origin form"
        );
        return PageError::CrossSite.into_response();
    }
    next.run(request).await
}

/// The launch pages' headers. They show patients, audit logs and grants: never kept by
/// caches unless a response says otherwise (the stylesheet).
const PAGE_HEADERS: SecurityHeaders = SecurityHeaders {
    content_security_policy: CONTENT_SECURITY_POLICY,
    referrer_policy: Some("same-origin"),
    default_cache_control: Some("no-store"),
};

/// Renders `page` with `status`; a template failure is logged and answered with a plain 500.
fn render(status: axum::http::StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a launcher page failed to render");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render; the server logged the details",
            )
                .into_response()
        }
    }
}

/// An RFC 3339 time as people read it: `2026-11-01 09:30 UTC` (or as given when unreadable).
fn readable_time(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|time| {
            time.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_owned())
}

/// Whether `id` is safe in a URL path segment and a cookie path as it is: the ids of regions,
/// publishers and apps are.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id != "."
        && id != ".."
}

/// `text` percent-encoded for a URL query value or path segment.
fn urlencode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests;
