//! `ANY /apps/{region}/{publisher}/{app}/{*path}`: one request, one fresh instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use bytes::Bytes;
use healthcloud_package::manifest::Audience;
use healthcloud_platform::auth::{AuthError, Claims, Principal, Role, bearer_token};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::component::ResourceTableError;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::capability::Launch;
use crate::install::Install;
use crate::instance::InstanceState;
use crate::{Runtime, origin, reuse};

/// The app routes.
pub fn router(runtime: Runtime) -> Router {
    Router::new()
        .route("/apps/{region}/{publisher}/{app}", any(add_slash))
        .route("/apps/{region}/{publisher}/{app}/", any(serve_app))
        .route("/apps/{region}/{publisher}/{app}/{*path}", any(serve_app))
        .with_state(runtime)
}

#[derive(Debug, Deserialize)]
struct AppPath {
    region: String,
    publisher: String,
    app: String,
}

/// Relative links in an app's pages resolve against `…/{app}/`, so the root has a slash.
async fn add_slash(
    Path(AppPath {
        region,
        publisher,
        app,
    }): Path<AppPath>,
) -> Redirect {
    Redirect::permanent(&format!("/apps/{region}/{publisher}/{app}/"))
}

async fn serve_app(
    State(runtime): State<Runtime>,
    Path(AppPath {
        region,
        publisher,
        app,
    }): Path<AppPath>,
    request: Request,
) -> Response {
    let app_id = format!("{publisher}/{app}");
    let principal = match authenticate(&runtime, &region, &app_id, request.headers()).await {
        Ok(principal) => principal,
        Err(error) => {
            let mut response = failure(StatusCode::UNAUTHORIZED, &error.to_string());
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    // A user refused too often lately (by the FHIR API, a data host call or the region admin
    // API) waits before an instance starts for them.
    if let Err(limited) = runtime.inner.service.refusals().check(&principal) {
        let error = healthcloud_integration::FhirError::from(limited);
        let mut response = failure(StatusCode::TOO_MANY_REQUESTS, &error.to_string());
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(limited.retry_after_secs),
        );
        return response;
    }
    let Some(install) = runtime.installed(&region, &app_id) else {
        return failure(
            StatusCode::NOT_FOUND,
            &format!("no app {app_id} is installed in region {region}"),
        );
    };
    if let Err(refusal) = may_open(&principal.claims, &install) {
        return failure(StatusCode::FORBIDDEN, &refusal);
    }
    if let Some(refused) = runtime.refuse_to_start(&install) {
        return refused;
    }
    let cookie_authenticated = launch_token(request.headers()).is_some();
    if let Err(refused) = origin::check_cookie_request(&request, cookie_authenticated) {
        return failure(StatusCode::FORBIDDEN, &refused);
    }
    let limits = runtime.limits();
    let (mut parts, body) = request.into_parts();
    // The app never sees the user's credentials: with the bearer token it could call the
    // FHIR API as the user, outside its grant and the patient's consent for it.
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::COOKIE);
    parts.headers.remove(header::PROXY_AUTHORIZATION);
    // wasi:http requires an authority; HTTP/1.0 clients (and in-process callers) may omit it.
    if parts.uri.authority().is_none() && !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    // The body is read before an instance slot is taken, within a time limit, so slow
    // uploads cannot hold an app's slots.
    let body = match tokio::time::timeout(
        limits.host_call_timeout,
        axum::body::to_bytes(body, limits.request_bytes),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is larger than the limit of {} bytes (or broke off)",
                    limits.request_bytes
                ),
            );
        }
        Err(_) => {
            return failure(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} ms",
                    limits.host_call_timeout.as_millis()
                ),
            );
        }
    };
    let Ok(permit) = install.slots.clone().try_acquire_owned() else {
        let mut response = failure(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{app_id} is busy: all {} of its instances are serving requests; retry shortly",
                limits.concurrent_instances
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let body = Full::new(body)
        .map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
        .boxed();
    runtime
        .run(
            install,
            principal,
            http::Request::from_parts(parts, body),
            permit,
        )
        .await
}

/// The verified user of an app request: a launch cookie or bearer token whose audience is
/// this install (a launch for it) or the whole app cloud. A token for the FHIR API, another
/// app's launch token or a token for another service is refused.
async fn authenticate(
    runtime: &Runtime,
    region: &str,
    app_id: &str,
    headers: &http::HeaderMap,
) -> Result<Arc<Principal>, AuthError> {
    let token = match launch_token(headers) {
        Some(token) => token,
        None => bearer_token(headers)?,
    };
    let principal = runtime.inner.verifier.verify_request(token).await?;
    let this_app = runtime.app_audience(region, app_id);
    principal.check_audience(&[&this_app, &runtime.audience()])?;
    Ok(principal)
}

/// Whether the user may open `install` at all: only in the region the token names (a token
/// naming none opens no region's installs, whatever its role), and only when the manifest
/// declares the user's role among its audience (administrators, publishers and security
/// officers are in no app's audience).
fn may_open(claims: &Claims, install: &Install) -> Result<(), String> {
    let region = &install.identity.region;
    match &claims.region {
        Some(home) if home == region => {}
        Some(home) => {
            return Err(format!(
                "your token is for region {home}; this install belongs to region {region}"
            ));
        }
        None => {
            return Err(format!(
                "your token names no region (the region claim), so it opens no region's apps: launch {} from region {region}",
                install.identity.id
            ));
        }
    }
    let audience = &install.manifest.app.audience;
    if admits(audience, claims.role) {
        return Ok(());
    }
    let declared: Vec<&str> = audience
        .iter()
        .map(|audience| match audience {
            Audience::Clinician => "clinician",
            Audience::Patient => "patient",
            Audience::Citizen => "citizen",
        })
        .collect();
    Err(format!(
        "{} is for {} only (its manifest's audience); your token's role is {}",
        install.identity.id,
        declared.join(", "),
        claims.role.as_str()
    ))
}

/// Whether a manifest's `audience` admits users of `role`; administrators, publishers and
/// security officers are in no app's audience.
pub fn admits(audience: &[Audience], role: Role) -> bool {
    match role {
        Role::Clinician => Some(Audience::Clinician),
        Role::Patient => Some(Audience::Patient),
        Role::Citizen => Some(Audience::Citizen),
        Role::RegionAdmin
        | Role::StoreAdmin
        | Role::Publisher
        | Role::SecurityOfficer
        | Role::PlatformOperator
        | Role::System => None,
    }
    .is_some_and(|role| audience.contains(&role))
}

/// Why a request failed inside the app.
#[derive(Debug)]
enum Failure {
    Deadline,
    Memory,
    StackOverflow,
    Handles,
    NoSlot,
    Crash(String),
    ResponseTooLarge,
    ResponseBroken(String),
    GuestError(ErrorCode),
    NoResponse,
    /// The install stopped serving (uninstalled or revoked) while the request ran.
    Stopped,
    /// The response would have set a header an app may not (a redirect off its pages).
    Refused(String),
}

/// The cookie a launch sets (path-scoped to one app): the short-lived token of that launch,
/// so a browser can open the app. Like `Authorization`, the app never sees it.
pub const LAUNCH_COOKIE: &str = "healthcloud_launch";

/// The launch token in the request's cookies, when it carries no `Authorization` header.
fn launch_token(headers: &http::HeaderMap) -> Option<&str> {
    if headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    healthcloud_platform::http::cookies(headers, LAUNCH_COOKIE).next()
}

impl Runtime {
    /// Runs one request in a fresh instance of `install`.
    async fn run(
        &self,
        install: Arc<Install>,
        principal: Arc<Principal>,
        request: http::Request<
            http_body_util::combinators::BoxBody<Bytes, wasmtime_wasi_http::Error>,
        >,
        permit: OwnedSemaphorePermit,
    ) -> Response {
        let limits = self.limits().clone();
        let request_path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let reuse_key = match limits.reuse_instances {
            true => self.launch_key(&install, &principal).await,
            false => None,
        };
        // The capability contexts of this request: the launch context from the verified token,
        // the install's live grant, limits.
        let all = &self.inner.capabilities;
        let capabilities = all.instance(
            &install.capabilities,
            &Launch {
                app: &install.identity,
                grant: &install.grant,
                principal: &principal,
            },
        );
        let (mut store, proxy) = match reuse_key.as_ref().and_then(|key| install.idle.take(key)) {
            Some((mut store, proxy)) => {
                store.data_mut().renew(all, capabilities);
                (store, Some(proxy))
            }
            None => {
                let state =
                    InstanceState::new(capabilities, limits.memory_bytes, limits.table_entries);
                let mut store = Store::new(self.inner.engine.engine(), state);
                store.limiter(|state| &mut state.memory);
                (store, None)
            }
        };
        // Every epoch tick the guest yields to the executor (a spinning guest must not hold a
        // worker thread), and once its deadline has passed it is interrupted.
        let started = Instant::now();
        let deadline = limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if started.elapsed() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let (sender, receiver) = oneshot::channel();
        let handles = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|incoming| {
                Ok((
                    incoming,
                    store.data_mut().http().new_response_outparam(sender)?,
                ))
            });
        let (incoming, outparam) = match handles {
            Ok(handles) => handles,
            Err(error) => return self.failed(&install, Failure::Crash(format!("{error:#}"))),
        };
        let serving = install.clone();
        let max_idle = limits.concurrent_instances;
        // Epoch interruption stops guest code; this bounds everything else an instance may
        // wait on (a host call, a pollable, a slow upstream), so it always ends and gives
        // back its slot.
        let wall_clock = limits.deadline + limits.host_call_timeout + Duration::from_secs(1);
        let mut task = tokio::spawn(async move {
            let _permit = permit;
            let run = async {
                let proxy = match proxy {
                    Some(proxy) => proxy,
                    None => serving.pre.instantiate_async(&mut store).await?,
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await?;
                wasmtime::Result::<_>::Ok(proxy)
            };
            let result = tokio::time::timeout(wall_clock, run)
                .await
                .unwrap_or_else(|_| Err(Trap::Interrupt.into()));
            let state = store.data();
            let dropped = state.line_budget().dropped();
            let identity = &serving.identity;
            if dropped > 0 {
                tracing::warn!(
                    app = identity.id,
                    region = identity.region,
                    dropped,
                    "log lines over the per-request limit were dropped"
                );
            }
            match result {
                Ok(proxy) => {
                    // Only an instance that finished cleanly serves again, and only its own
                    // launch context.
                    if let Some(key) = reuse_key {
                        serving.idle.put(key, store, proxy, max_idle);
                    }
                    None
                }
                Err(error) => Some(classify(&error, state.memory.exceeded)),
            }
        });
        let app_origin = origin::AppOrigin {
            root: format!("/apps/{}/{}", install.identity.region, install.identity.id),
            request_path: &request_path,
            grant: &install.grant,
        };
        let answered = tokio::time::timeout(wall_clock, async {
            match receiver.await {
                Ok(Ok(response)) => collect(response, limits.response_bytes, &app_origin).await,
                Ok(Err(code)) => Err(Failure::GuestError(code)),
                Err(_) => Err(Failure::NoResponse),
            }
        });
        let answered = tokio::select! {
            answered = answered => answered.unwrap_or(Err(Failure::Deadline)),
            () = install.stop.cancelled() => Err(Failure::Stopped),
        };
        match answered {
            Ok(response) => response,
            Err(Failure::Stopped) => {
                task.abort();
                self.refuse_to_start(&install)
                    .unwrap_or_else(|| self.failed(&install, Failure::Stopped))
            }
            Err(Failure::ResponseTooLarge) => {
                task.abort();
                self.failed(&install, Failure::ResponseTooLarge)
            }
            Err(failure) => {
                // The instance's own failure (a trap, a deadline) explains a missing or
                // broken response best.
                let cause = match tokio::time::timeout(Duration::from_secs(1), &mut task).await {
                    Ok(Ok(Some(cause))) => cause,
                    _ => failure,
                };
                task.abort();
                self.failed(&install, cause)
            }
        }
    }

    /// Why no instance of `install` may start now, as the response to send: swap appeared
    /// under the engine's memory reset (503), its version was revoked by the store (410, with
    /// a page saying why), it was uninstalled (404), or the revocation feed is stale (503:
    /// fail closed).
    fn refuse_to_start(&self, install: &Install) -> Option<Response> {
        let identity = &install.identity;
        if let Some(reason) = self.inner.engine.refuses_instances() {
            return Some(failure(StatusCode::SERVICE_UNAVAILABLE, reason));
        }
        if let Some(regions) = self.regions() {
            if let Some(revoked) = regions.revocation(&identity.id, &identity.version) {
                return Some(revoked_page(install, &revoked));
            }
            if let Err(reason) = regions.feed.check_fresh(chrono::Utc::now()) {
                // The follower logs this loudly; a line per refused request would flood.
                tracing::debug!(
                    app = identity.id,
                    region = identity.region,
                    "failing closed: {reason}"
                );
                return Some(failure(StatusCode::SERVICE_UNAVAILABLE, &reason));
            }
        }
        install.stop.is_cancelled().then(|| {
            failure(
                StatusCode::NOT_FOUND,
                &format!(
                    "no app {} is installed in region {}",
                    identity.id, identity.region
                ),
            )
        })
    }

    /// The launch context an instance is reused under (see [`reuse`]); `None`, so a fresh
    /// instance serves and none is kept, when the patient's consent version cannot be read.
    async fn launch_key(
        &self,
        install: &Install,
        principal: &Arc<Principal>,
    ) -> Option<reuse::LaunchKey> {
        let grant_version = install.grant.version();
        let consent_version = match &principal.claims.patient {
            Some(patient) => match self.inner.service.consent_version(patient).await {
                Ok(version) => Some(version),
                Err(error) => {
                    tracing::warn!(%error, "consent version unreadable: no instance reuse");
                    return None;
                }
            },
            None => None,
        };
        Some(reuse::LaunchKey::new(
            principal,
            grant_version,
            consent_version,
        ))
    }

    /// The response for a failed request, logged with the app's identity.
    fn failed(&self, install: &Install, cause: Failure) -> Response {
        let limits = self.limits();
        let app = &install.identity.id;
        let (status, message) = match &cause {
            Failure::Deadline => (
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{app} ran past its deadline of {} ms and was stopped",
                    limits.deadline.as_millis()
                ),
            ),
            Failure::Memory => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{app} exceeded its memory limit of {} MiB and was stopped",
                    limits.memory_bytes >> 20
                ),
            ),
            Failure::StackOverflow => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{app} overflowed its stack (runaway recursion) and was stopped"),
            ),
            Failure::Handles => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{app} held more than {} handles at once and was stopped",
                    limits.table_entries
                ),
            ),
            Failure::NoSlot => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the app cloud is at its instance capacity; retry shortly".to_owned(),
            ),
            Failure::Crash(trap) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{app} crashed: {trap}"),
            ),
            Failure::ResponseTooLarge => (
                StatusCode::BAD_GATEWAY,
                format!(
                    "{app} answered with more than the response limit of {} MiB",
                    limits.response_bytes >> 20
                ),
            ),
            Failure::ResponseBroken(error) => (
                StatusCode::BAD_GATEWAY,
                format!("{app}'s response broke off: {error}"),
            ),
            Failure::GuestError(code) => (
                StatusCode::BAD_GATEWAY,
                format!("{app} answered with an error: {code:?}"),
            ),
            Failure::NoResponse => (
                StatusCode::BAD_GATEWAY,
                format!("{app} finished without answering"),
            ),
            Failure::Stopped => (
                StatusCode::NOT_FOUND,
                format!(
                    "{app} was uninstalled from region {} while this request ran",
                    install.identity.region
                ),
            ),
            Failure::Refused(what) => (
                StatusCode::BAD_GATEWAY,
                format!("{app} answered with {what}"),
            ),
        };
        tracing::warn!(
            app,
            version = install.identity.version,
            region = install.identity.region,
            status = status.as_u16(),
            "{message}"
        );
        let mut response = failure(status, &message);
        if matches!(cause, Failure::NoSlot) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Names what stopped an instance.
fn classify(error: &wasmtime::Error, memory_exceeded: bool) -> Failure {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Failure::Deadline,
            Trap::StackOverflow => Failure::StackOverflow,
            // A guest whose allocation failed aborts; the limiter saw why.
            _ if memory_exceeded => Failure::Memory,
            trap => Failure::Crash(format!("wasm trap: {trap}")),
        };
    }
    if memory_exceeded {
        return Failure::Memory;
    }
    if error.downcast_ref::<ResourceTableError>().is_some() {
        return Failure::Handles;
    }
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return Failure::NoSlot;
    }
    Failure::Crash(format!("{error:#}"))
}

/// The guest's response, its body read up to `max` bytes, its headers confined to what an
/// app may set on the shared origin.
async fn collect(
    response: http::Response<HyperOutgoingBody>,
    max: usize,
    app: &origin::AppOrigin<'_>,
) -> Result<Response, Failure> {
    let (mut parts, body) = response.into_parts();
    let body = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(Failure::ResponseTooLarge);
        }
        Err(error) => return Err(Failure::ResponseBroken(error.to_string())),
    };
    // An app's pages share the platform's origin: only an allow-list of its headers gets
    // through (no cookies, no origin-wide policies, redirects on its own pages), with the
    // platform's sandbox, framing and caching policies added. Content-Length and
    // Transfer-Encoding are not on the list: the collected body sets its own length.
    origin::confine_response(&mut parts.headers, app).map_err(Failure::Refused)?;
    Ok(Response::from_parts(parts, axum::body::Body::from(body)))
}

/// The page a person sees when the app they opened was revoked (every value escaped).
#[derive(Template)]
#[template(path = "revoked.html")]
struct RevokedPage<'a> {
    name: &'a str,
    app: &'a str,
    version: &'a str,
    reason: &'a str,
    at: &'a str,
}

/// 410: the page a person sees when the app they opened was revoked.
fn revoked_page(install: &Install, revoked: &crate::Revoked) -> Response {
    let page = RevokedPage {
        name: &install.manifest.app.name,
        app: &install.identity.id,
        version: &install.identity.version,
        reason: &revoked.reason,
        at: &revoked.at,
    };
    let page = match page.render() {
        Ok(page) => page,
        Err(error) => {
            tracing::error!(%error, "cannot render the revoked page");
            return failure(
                StatusCode::GONE,
                &format!("{} was revoked", install.identity.id),
            );
        }
    };
    (
        StatusCode::GONE,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        ],
        page,
    )
        .into_response()
}

fn failure(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revoked_page_escapes_what_the_publisher_and_the_store_wrote() {
        let page = RevokedPage {
            name: "<b>Loop</b>",
            app: "acme/loop",
            version: "1.0.0",
            reason: "\"unsafe\" & <script>alert(1)</script>",
            at: "2026-01-01T00:00:00Z",
        }
        .render()
        .unwrap();
        assert!(
            page.contains("<h1>&#60;b&#62;Loop&#60;/b&#62; was revoked</h1>")
                || page.contains("<h1>&lt;b&gt;Loop&lt;/b&gt; was revoked</h1>"),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("version 1.0.0 of acme/loop at 2026-01-01T00:00:00Z"));
    }

    #[test]
    fn only_the_roles_a_manifest_declares_open_its_app() {
        let audience = [Audience::Clinician, Audience::Citizen];
        assert!(admits(&audience, Role::Clinician));
        assert!(admits(&audience, Role::Citizen));
        assert!(!admits(&audience, Role::Patient));
        for role in [
            Role::RegionAdmin,
            Role::StoreAdmin,
            Role::Publisher,
            Role::SecurityOfficer,
            Role::PlatformOperator,
            Role::System,
        ] {
            assert!(!admits(&audience, role), "{role:?}");
        }
    }
}
