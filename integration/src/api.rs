//! The FHIR R4 REST API, mounted at `/fhir/r4`: a thin HTTP layer over [`FhirService`].

mod bundle;
mod export;
mod subscriptions;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use healthcloud_platform::auth::smart::{AuthorizationEndpoints, Clients};
use healthcloud_platform::auth::{AuthError, Principal, TokenVerifier};
use healthcloud_platform::scope::Interaction;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::audit::SOURCE_SYSTEM;
use crate::error::FhirError;
use crate::params::{ParamDef, ParamKind, TYPES};
use crate::policy::{AccessContext, AppIdentity};
use crate::query::{MAX_OFFSET, PageLimits, served_type};
use crate::service::subscriptions::Delivery;
use crate::service::{Change, Creation, FhirService, Written};
use crate::shape::{Presentation, PresentationParams, admits_json, check_format, json_only};
use crate::store::{HistoryCursor, Incomplete, Omission, SearchPage, StoredResource, Version};
use crate::webhook::EndpointPolicy;

/// Settings of the FHIR API.
#[derive(Debug, Clone)]
pub struct FhirConfig {
    /// The public base URL of the FHIR API, e.g. `http://127.0.0.1:8080/fhir/r4`: every
    /// link we return is absolute on it, because clients refuse links to other hosts.
    pub base_url: String,
    /// The audience (`aud`) a token must name to be accepted here: by default the base URL
    /// ([`healthcloud_platform::auth::fhir_audience`]), so a launch token for one app, or a token for
    /// another service trusting the same issuer, is refused.
    pub audience: String,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// Origins (`scheme://host[:port]`, see [`origin`]) of browser apps whose pages may call
    /// this API: each gets CORS answers, preflights included. Tokens travel as bearer
    /// headers, never cookies, so credentials are not allowed.
    pub cors_origins: Vec<String>,
    /// healthcloud's authorization server, when one issues tokens for this API: advertised
    /// in `.well-known/smart-configuration` and the CapabilityStatement.
    pub authorization: Option<AuthorizationEndpoints>,
    /// Which endpoints subscriptions may notify (by default public `https` ones only).
    pub subscription_endpoints: EndpointPolicy,
}

/// The origin `text` names (`https://app.example`, a port when not the scheme's own), as
/// browsers send it in `Origin`; an error naming the fix for anything else (a path, `*`,
/// another scheme).
pub fn origin(text: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "'{text}' is not a web origin ({why}): give scheme://host[:port], e.g. https://app.example.dk"
        ))
    };
    let Ok(url) = url::Url::parse(text) else {
        return refuse("not a URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return refuse("the scheme must be http or https");
    }
    if url.host().is_none() {
        return refuse("it has no host");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return refuse("an origin has no path, query or fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("an origin has no user name or password");
    }
    Ok(url.origin().ascii_serialization())
}

/// The CORS answers for `origins`, and for the pages of the SMART web apps in `apps` while
/// they are installed: the FHIR interactions and the headers SMART clients send, and the
/// headers they read back; no credentials.
fn cors(origins: Vec<String>, apps: Option<Clients>) -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    let allowed = move |origin: &HeaderValue, _: &axum::http::request::Parts| {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        origins.iter().any(|configured| configured == origin)
            || apps.as_ref().is_some_and(|apps| apps.serves_origin(origin))
    };
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::predicate(allowed))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::ACCEPT,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::HeaderName::from_static("if-none-exist"),
            header::HeaderName::from_static("prefer"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::CONTENT_LOCATION,
            header::HeaderName::from_static("preference-applied"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Shared state of the FHIR API.
#[derive(Debug, Clone)]
pub struct FhirState {
    /// The policy-checked data service.
    pub service: FhirService,
    /// Verifies bearer tokens.
    pub verifier: TokenVerifier,
    /// Settings.
    pub config: Arc<FhirConfig>,
}

/// The FHIR API routes, to be nested at `/fhir/r4`. Subscriptions start being delivered
/// (once per service) under this API's view of callers.
pub fn router(state: FhirState) -> Router {
    let verifier = state.verifier.clone();
    state.service.start_subscriptions(Delivery {
        policy: state.config.subscription_endpoints,
        base_url: state.config.base_url.clone(),
        resolve: Arc::new(move |principal| {
            verifier.still_authorized(&principal)?;
            access_context(&verifier, principal)
        }),
    });
    let origins = state.config.cors_origins.clone();
    let apps = state.verifier.smart_clients().cloned();
    let router = interactions()
        .route("/", post(bundle::bundle))
        .layer(axum::middleware::from_fn(json_only_accepted))
        .with_state(state);
    match origins.is_empty() && apps.is_none() {
        true => router,
        false => router.layer(cors(origins, apps)),
    }
}

/// The FHIR API at `/fhir/r4`, its base with a trailing slash too (where some clients post
/// their Bundles).
pub fn mount(state: FhirState) -> Router {
    let base = router(state.clone()).map_request(|mut request: axum::extract::Request| {
        *request.uri_mut() = axum::http::Uri::from_static("/");
        request
    });
    Router::new()
        .nest("/fhir/r4", router(state))
        .route_service("/fhir/r4/", base)
}

/// The routes a batch Bundle's entries are sent through: every interaction but the Bundle.
fn routes(state: FhirState) -> Router {
    interactions()
        .layer(axum::middleware::from_fn(json_only_accepted))
        .with_state(state)
}

fn interactions() -> Router<FhirState> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route(
            "/{resource_type}",
            get(search_get)
                .post(create)
                .put(update_where)
                .patch(update_where)
                .delete(delete_where),
        )
        .route("/{resource_type}/_search", post(search_post))
        .route("/{resource_type}/$validate", post(validate_resource))
        .route("/$export", get(export::system))
        .route("/Patient/$export", get(export::patients))
        .route("/Group/{id}/$export", get(export::group))
        .route(
            "/$export-status/{id}",
            get(export::status).delete(export::cancel),
        )
        .route("/$export-file/{id}/{name}", get(export::file))
        .route(
            "/Subscription",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/Subscription/{id}",
            get(subscriptions::read)
                .put(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/Subscription/{id}/$status", get(subscriptions::status))
        .route(
            "/Subscription/{id}/$get-ws-binding-token",
            get(subscriptions::binding_token),
        )
        .route("/$subscription-ws", get(subscriptions::websocket))
        .route("/_history", get(system_history))
        .route("/{resource_type}/_history", get(type_history))
        .route("/{resource_type}/$lastn", get(lastn))
        .route("/{resource_type}/{id}/$everything", get(everything))
        .route("/{resource_type}/{id}/$summary", get(summary))
        .route(
            "/{resource_type}/{id}",
            get(read).put(update).patch(update).delete(delete),
        )
        .route("/{resource_type}/{id}/_history", get(history))
        .route(
            "/{resource_type}/{id}/_history/{version}",
            get(read_version),
        )
        .fallback(|| async { FhirError::NotFound("no such FHIR endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            FhirError::MethodNotAllowed(
                "this interaction is not supported on this endpoint (see /fhir/r4/metadata)".into(),
            )
        })
}

/// Renders errors as OperationOutcome.
impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        if let FhirError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "FHIR request failed");
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = fhir_json(status, self.to_operation_outcome().to_string());
        if let FhirError::TooManyRequests { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: no error code when the request carried no credentials at all.
            let challenge = match self {
                FhirError::Unauthorized(AuthError::Missing) => "Bearer realm=\"healthcloud\"",
                _ => "Bearer realm=\"healthcloud\", error=\"invalid_token\"",
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

fn fhir_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The caller of a FHIR request as the policy engine sees it: the platform's authenticated
/// [`Principal`], holding a token for this API's audience. Refusals are OperationOutcomes.
struct Caller(AccessContext);

impl FromRequestParts<FhirState> for Caller {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, state: &FhirState) -> Result<Self, FhirError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.check_audience(&[&state.config.audience])?;
        access_context(&state.verifier, principal).map(Caller)
    }
}

/// The access of `principal` (verified): a SMART app's token makes the app act (audited and
/// opted out of under its name), within what its region grants it now.
fn access_context(
    verifier: &TokenVerifier,
    principal: Principal,
) -> Result<AccessContext, FhirError> {
    if let Some(client) = verifier.smart_client(&principal)? {
        return Ok(AccessContext {
            principal,
            app: Some(AppIdentity {
                id: client.app.clone(),
                version: client.version.clone(),
                digest: client.digest.clone(),
                publisher_key: client.publisher_key.clone(),
                region: client.region.clone(),
            }),
            grant: Some(client.grant.clone()),
            purpose: client.purpose,
        });
    }
    Ok(AccessContext::user(principal))
}

impl FromRef<FhirState> for TokenVerifier {
    fn from_ref(state: &FhirState) -> TokenVerifier {
        state.verifier.clone()
    }
}

async fn read(
    State(state): State<FhirState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let resource = (resource_type.as_str(), id.as_str(), None);
    read_presented(&state, &context, resource, query, &headers).await
}

/// The versions of a resource the caller may read, newest first, as a `history` Bundle in
/// pages (`_count`, `_offset`): each with how it came to be (created, updated, deleted).
async fn history(
    State(state): State<FhirState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let page =
        history_page(query.as_deref(), state.service.page_limits()).and_then(|page| {
            match (
        page.since,
        page.cursor,
    ) {
        (None, None) => Ok((page.count, page.offset)),
        _ => Err(FhirError::BadRequest(
            "_since and _cursor are for the history of a type; a resource's is paged by _offset"
                .into(),
        )),
    }
        });
    let (count, offset) = match page {
        Ok(page) => page,
        Err(error) => {
            let refused = (Interaction::Read, resource_type.as_str(), Some(id.as_str()));
            return Err(state.service.refused(&context, refused, error).await);
        }
    };
    let (versions, total) = (state.service)
        .history(&context, &resource_type, &id, (count, offset))
        .await?;
    let base = &state.config.base_url;
    let entries: Vec<Value> = (versions.into_iter())
        .map(|version| history_entry(base, (&resource_type, &id), version))
        .collect();
    let link = |offset: usize| {
        format!("{base}/{resource_type}/{id}/_history?_count={count}&_offset={offset}")
    };
    let mut links = vec![json!({"relation": "self", "url": link(offset)})];
    if offset + count < total {
        links.push(json!({"relation": "next", "url": link(offset + count)}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle", "type": "history", "total": total, "link": links,
    });
    with_entries(&mut bundle, entries);
    Ok(fhir_json(StatusCode::OK, bundle.to_string()))
}

/// Sets a Bundle's entries; none are left out (FHIR JSON has no empty arrays).
pub(crate) fn with_entries(bundle: &mut Value, entries: Vec<Value>) {
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
}

/// A version as an entry of a history Bundle: how it came to be, and the resource (unless it
/// is a deletion).
fn history_entry(base: &str, (resource_type, id): (&str, &str), version: Version) -> Value {
    let number = version.version_id;
    let url = format!("{base}/{resource_type}/{id}/_history/{number}");
    let modified = chrono::DateTime::from_timestamp_millis(version.last_updated)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let (method, request_url, status) = match (&version.content, number) {
        (None, _) => ("DELETE", format!("{resource_type}/{id}"), "204"),
        (Some(_), 1) => ("POST", resource_type.to_owned(), "201"),
        (Some(_), _) => ("PUT", format!("{resource_type}/{id}"), "200"),
    };
    let mut entry = json!({
        "fullUrl": url,
        "request": {"method": method, "url": request_url},
        "response": {"status": status, "etag": format!("W/\"{number}\""), "lastModified": modified},
    });
    if let Some(content) = &version.content
        && let Ok(resource) = serde_json::from_str::<Value>(content)
    {
        entry["resource"] = resource;
    }
    entry
}

/// `GET [type]/_history`: the versions of a type the caller may read, newest first, in pages
/// (`_count`, and `_cursor` as the `next` link gives it; `_since` for those written since).
async fn type_history(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    history_of(&state, &context, Some(&resource_type), query.as_deref()).await
}

/// `GET /_history`: the versions of every type the caller may search, newest first, the
/// types they may not left out; paged as a type's.
async fn system_history(
    State(state): State<FhirState>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    history_of(&state, &context, None, query.as_deref()).await
}

/// A history Bundle of a type, or of the system (`None`).
async fn history_of(
    state: &FhirState,
    context: &AccessContext,
    resource_type: Option<&str>,
    query: Option<&str>,
) -> Result<Response, FhirError> {
    let asked = history_page(query, state.service.page_limits()).and_then(|page| {
        match page.offset {
            0 => Ok(page),
            _ => Err(FhirError::BadRequest(
                "a type's or the system's history is paged by its next links (_cursor), not _offset".into(),
            )),
        }
    });
    let HistoryPage {
        count,
        since,
        cursor,
        ..
    } = match asked {
        Ok(asked) => asked,
        Err(error) => {
            let refused = (
                Interaction::Search,
                resource_type.unwrap_or("Resource"),
                None,
            );
            return Err(state.service.refused(context, refused, error).await);
        }
    };
    let crate::service::HistoryVersions {
        versions,
        more,
        not_included,
    } = (state.service)
        .type_history(context, resource_type, (count, cursor.clone()), since)
        .await?;
    let base = &state.config.base_url;
    let path = match resource_type {
        Some(resource_type) => format!("{base}/{resource_type}/_history"),
        None => format!("{base}/_history"),
    };
    let link = |cursor: Option<&HistoryCursor>| {
        let mut url = format!("{path}?_count={count}");
        if let Some(since) = since {
            url.push_str(&format!("&_since={}", crate::date::instant(since)));
        }
        if let Some(cursor) = cursor {
            let HistoryCursor {
                last_updated,
                resource_type,
                id,
                version_id,
            } = cursor;
            url.push_str(&format!(
                "&_cursor={last_updated}:{resource_type}:{id}:{version_id}"
            ));
        }
        url
    };
    let mut links = vec![json!({"relation": "self", "url": link(cursor.as_ref())})];
    if let (true, Some((resource_type, id, last))) = (more, versions.last()) {
        let next = HistoryCursor {
            last_updated: last.last_updated,
            resource_type: (*resource_type).to_owned(),
            id: id.clone(),
            version_id: last.version_id,
        };
        links.push(json!({"relation": "next", "url": link(Some(&next))}));
    }
    let mut entries: Vec<Value> = (versions.into_iter())
        .map(|(resource_type, id, version)| history_entry(base, (resource_type, &id), version))
        .collect();
    // What the page cannot hold is said in an entry of its own: the request it would take
    // and a warning.
    if let Some(not_included) = not_included {
        let asked = path
            .trim_start_matches(base.as_str())
            .trim_start_matches('/');
        entries.push(json!({
            "request": {"method": "GET", "url": asked},
            "response": {"status": "200", "outcome": {"resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "incomplete", "diagnostics": not_included}]}},
        }));
    }
    let mut bundle = json!({"resourceType": "Bundle", "type": "history", "link": links});
    with_entries(&mut bundle, entries);
    Ok(fhir_json(StatusCode::OK, bundle.to_string()))
}

/// The page `_history` is asked for: `_count` (clamped to the largest page) and `_offset`.
fn history_page(query: Option<&str>, limits: PageLimits) -> Result<HistoryPage, FhirError> {
    let (mut count, mut offset) = (limits.default_count.min(limits.max_count), 0);
    let (mut since, mut cursor) = (None, None);
    for (name, value) in parse_pairs(query.unwrap_or_default().as_bytes()) {
        let number = || {
            value.parse::<usize>().map_err(|_| {
                FhirError::BadRequest(format!(
                    "{name} must be a non-negative integer, not '{value}'"
                ))
            })
        };
        match name.as_str() {
            "_count" => count = number()?.clamp(1, limits.max_count),
            "_offset" => offset = number()?.min(MAX_OFFSET),
            "_since" => since = Some(since_instant(&value)?.lo),
            "_cursor" => {
                let mut parts = value.splitn(4, ':');
                let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(at), Some(resource_type), Some(id), Some(version))
                        if healthcloud_platform::auth::is_fhir_id(id)
                            && TYPES.iter().any(|t| t.name == resource_type) =>
                    {
                        at.parse()
                            .ok()
                            .zip(version.parse().ok())
                            .map(|(at, version)| HistoryCursor {
                                last_updated: at,
                                resource_type: resource_type.to_owned(),
                                id: id.to_owned(),
                                version_id: version,
                            })
                    }
                    _ => None,
                };
                cursor = Some(parsed.ok_or_else(|| {
                    FhirError::BadRequest(format!(
                        "_cursor '{value}' is not one this server wrote: follow the next link"
                    ))
                })?);
            }
            "_format" => {}
            _ => {
                return Err(FhirError::BadRequest(format!(
                    "_history takes no parameter '{name}': only _count, _offset (of a resource's), _since and _cursor (of a type's)"
                )));
            }
        }
    }
    Ok(HistoryPage {
        count,
        offset,
        since,
        cursor,
    })
}

/// What a `_history` request asks for.
struct HistoryPage {
    count: usize,
    offset: usize,
    /// Only versions written at or after this instant (epoch ms).
    since: Option<i64>,
    /// A type's history: after this version (the last of the previous page).
    cursor: Option<HistoryCursor>,
}

/// `vread`: a version of a resource, the current one or one kept in its history.
async fn read_version(
    State(state): State<FhirState>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let resource = (resource_type.as_str(), id.as_str(), Some(version.as_str()));
    read_presented(&state, &context, resource, query, &headers).await
}

/// A read (of `version`, when given: the current one or one kept), presented as its
/// result parameters ask (`_summary`, `_elements`, `_pretty`, `_format`); any other parameter
/// is refused, and audited as a refused read. With `Last-Modified`; 304 when the client's
/// copy is current (`If-None-Match`, else `If-Modified-Since`), after the same checks and
/// audit as any read.
async fn read_presented(
    state: &FhirState,
    context: &AccessContext,
    (resource_type, id, version): (&str, &str, Option<&str>),
    query: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, FhirError> {
    let presentation = match read_presentation(resource_type, query.as_deref()) {
        Ok(presentation) => presentation,
        Err(error) => {
            let refused = (Interaction::Read, resource_type, Some(id));
            return Err(state.service.refused(context, refused, error).await);
        }
    };
    let resource = match version {
        None => state.service.read(context, resource_type, id).await?,
        Some(version) => {
            let Ok(number) = version.parse() else {
                let error =
                    FhirError::NotFound(format!("{resource_type}/{id} has no version '{version}'"));
                let refused = (Interaction::Read, resource_type, Some(id));
                return Err(state.service.refused(context, refused, error).await);
            };
            (state.service)
                .read_version(context, resource_type, id, number)
                .await?
        }
    };
    let modified = last_updated(&resource.content);
    let current = match headers.get(header::IF_NONE_MATCH) {
        Some(tags) => tags.to_str().is_ok_and(|tags| {
            (tags.split(',').map(str::trim))
                .any(|tag| tag == "*" || parse_etag(tag) == Some(resource.version_id))
        }),
        None => match (modified, headers.get(header::IF_MODIFIED_SINCE)) {
            (Some(modified), Some(since)) => since
                .to_str()
                .ok()
                .and_then(|since| chrono::DateTime::parse_from_rfc2822(since).ok())
                // Whole seconds: a copy from the second the resource last changed in may be
                // older than that change, so only an earlier second counts as unchanged.
                .is_some_and(|since| modified.timestamp() < since.timestamp()),
            _ => false,
        },
    };
    let native = resource_type == "Binary" && wants_native(headers, query.as_deref());
    let mut response = match current {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false if native => binary_content(&resource.content)?,
        false => {
            let content = presentation.apply(resource_type, resource.content)?;
            fhir_json(StatusCode::OK, content)
        }
    };
    if let Some(modified) = modified
        && let Ok(value) =
            HeaderValue::from_str(&modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
    {
        response.headers_mut().insert(header::LAST_MODIFIED, value);
    }
    Ok(with_version(response, resource.version_id))
}

/// Whether a read of a Binary asks for its content as it is (FHIR's "native form") rather
/// than the Binary resource: an `Accept` that names no JSON, and no `_format`.
fn wants_native(headers: &HeaderMap, query: Option<&str>) -> bool {
    let format = parse_pairs(query.unwrap_or_default().as_bytes())
        .into_iter()
        .any(|(name, _)| name == "_format");
    let accept: Vec<&str> = (headers.get_all(header::ACCEPT).iter())
        .filter_map(|value| value.to_str().ok())
        .collect();
    !format
        && !accept.is_empty()
        && !accept
            .iter()
            .any(|a| a.to_ascii_lowercase().contains("json"))
}

/// A Binary's content as it is, typed by its `contentType`. It is served so that it cannot act
/// on this origin, whatever it holds: downloaded rather than shown, not sniffed, and sandboxed
/// with nothing allowed should a browser render it anyway.
fn binary_content(content: &str) -> Result<Response, FhirError> {
    use base64::Engine as _;
    let binary: Value = serde_json::from_str(content).map_err(|e| FhirError::Internal(e.into()))?;
    let bytes = match binary["data"].as_str() {
        Some(data) => (base64::engine::general_purpose::STANDARD.decode(data))
            .map_err(|e| FhirError::Internal(e.into()))?,
        None => Vec::new(),
    };
    // Content a browser or client would act on (markup, script, JSON that would pass for
    // this API's own answer) is served as bytes only.
    let active = |media: &str| {
        let media = media.to_ascii_lowercase();
        ["html", "xml", "script", "json", "svg"]
            .iter()
            .any(|kind| media.contains(kind))
    };
    let media = (binary["contentType"].as_str())
        .filter(|media| crate::validate::is_media_type(media) && !active(media))
        .unwrap_or("application/octet-stream");
    let headers = [
        (header::CONTENT_TYPE, media),
        (header::CONTENT_DISPOSITION, "attachment"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ),
    ];
    let mut response = (StatusCode::OK, bytes).into_response();
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| FhirError::Internal(e.into()))?;
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

/// `meta.lastUpdated` of a stored resource, when it has a valid one.
fn last_updated(content: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    #[derive(serde::Deserialize)]
    struct Resource {
        meta: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "lastUpdated")]
        last_updated: Option<String>,
    }
    let resource: Resource = serde_json::from_str(content).ok()?;
    let text = resource.meta?.last_updated?;
    let parsed = chrono::DateTime::parse_from_rfc3339(&text).ok()?;
    Some(parsed.with_timezone(&chrono::Utc))
}

/// The result parameters of a read.
fn read_presentation(resource_type: &str, query: Option<&str>) -> Result<Presentation, FhirError> {
    let mut presentation = PresentationParams::default();
    for (name, value) in parse_pairs(query.unwrap_or_default().as_bytes()) {
        let taken = !matches!(name.as_str(), "_total" | "_totalMethod")
            && presentation.take(resource_type, &name, &value)?;
        if !taken {
            return Err(FhirError::BadRequest(format!(
                "a read takes no parameter '{name}': only _summary, _elements, _pretty and _format"
            )));
        }
    }
    match presentation.finish()? {
        (_, true) => Err(FhirError::BadRequest(
            "_summary=count counts the matches of a search, not a read".into(),
        )),
        (presentation, false) => Ok(presentation),
    }
}

/// Refuses, before anything else, a request whose `Accept` or `_format` admits no JSON (this
/// server answers FHIR JSON only, and says so rather than sending what was not asked for),
/// and marks every answer `Cache-Control: no-store`: patient data is not to be kept by a
/// browser or proxy, where the next user of the machine would be served it unchecked and
/// unaudited (a client revalidates with `If-None-Match` itself).
async fn json_only_accepted(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let query = request.uri().query().unwrap_or_default().as_bytes();
    let format = parse_pairs(query)
        .into_iter()
        .find(|(name, _)| name == "_format")
        .map(|(_, value)| value);
    if let Some(Err(refused)) = format.as_deref().map(check_format) {
        return refused.into_response();
    }
    let accept: Vec<&str> = (request.headers().get_all(header::ACCEPT).iter())
        .map(|value| value.to_str().unwrap_or_default())
        .collect();
    // `_format` overrides `Accept` (a browser's link sends its own `Accept`). A Binary is
    // read as its content in any other format (`read` decides).
    let binary_read = request.method() == axum::http::Method::GET && {
        // The API's own paths (nested at its base): `/Binary/<id>` and its versions.
        let after = request.uri().path().strip_prefix("/Binary/");
        let parts: Vec<&str> = after.map(|a| a.split('/').collect()).unwrap_or_default();
        match parts.as_slice() {
            [id] | [id, "_history", _] => healthcloud_platform::auth::is_fhir_id(id),
            _ => false,
        }
    };
    // An export's files are NDJSON, whatever else the client accepts.
    let export_file = request.method() == axum::http::Method::GET
        && request.uri().path().starts_with("/$export-file/");
    if format.is_none() && !accept.is_empty() && !binary_read && !export_file {
        let admitted = accept.iter().flat_map(|a| a.split(',')).any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            // `;q=0` refuses the range.
            let refused = parts.any(|p| {
                let p = p.to_ascii_lowercase();
                p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0)
            });
            admits_json(&media) && !refused
        });
        if !admitted {
            return json_only(&accept.join(", ")).into_response();
        }
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn search_get(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let params = parse_pairs(query.as_deref().unwrap_or_default().as_bytes());
    search(&state, &context, &resource_type, params).await
}

async fn search_post(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let form = async {
        let form = read_body(&state, body).await?;
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form.is_empty() && !is_form {
            return Err(FhirError::BadRequest(
                "POST _search takes an application/x-www-form-urlencoded body".into(),
            ));
        }
        Ok(form)
    };
    let form = match form.await {
        Ok(form) => form,
        Err(error) => {
            let refused = (Interaction::Search, resource_type.as_str(), None);
            return Err(state.service.refused(&context, refused, error).await);
        }
    };
    let mut params = parse_pairs(query.as_deref().unwrap_or_default().as_bytes());
    params.extend(parse_pairs(&form));
    search(&state, &context, &resource_type, params).await
}

/// A `_since` value: an instant (a date and a time), not a day.
fn since_instant(value: &str) -> Result<crate::date::DateRange, FhirError> {
    crate::date::parse(value)
        .filter(|_| value.len() > 10)
        .ok_or_else(|| {
            FhirError::BadRequest(format!(
                "_since must be an instant like 2024-03-01T10:00:00Z, not '{value}'"
            ))
        })
}

fn parse_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

async fn search(
    state: &FhirState,
    context: &AccessContext,
    resource_type: &str,
    params: Vec<(String, String)>,
) -> Result<Response, FhirError> {
    let (query, page) = state
        .service
        .search_params(context, resource_type, &params)
        .await?;
    let (count, offset, link_params) = (query.count, query.offset, query.link_params);
    let presentation = query.presentation;

    let base = &state.config.base_url;
    let link = |offset: usize| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        url.extend_pairs(&link_params);
        url.append_pair("_count", &count.to_string());
        url.append_pair("_offset", &offset.to_string());
        format!("{base}/{resource_type}?{}", url.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": link(offset)})];
    if count > 0 && offset + count < page.total && offset + count <= MAX_OFFSET {
        links.push(json!({"relation": "next", "url": link(offset + count)}));
    }
    if offset > 0 && count > 0 {
        // From past the end, "previous" is the last real page.
        let last_page = page.total.saturating_sub(1) / count * count;
        let previous = offset.saturating_sub(count).min(last_page);
        links.push(json!({"relation": "previous", "url": link(previous)}));
    }
    searchset(state, resource_type, &page, links, &presentation)
}

/// Refuses `operation` on another type than Patient: no such route.
fn on_patient(operation: &str, resource_type: &str) -> Result<(), FhirError> {
    match resource_type {
        "Patient" => Ok(()),
        _ => Err(FhirError::NotFound(format!(
            "{operation} is an operation on Patient, not {resource_type}"
        ))),
    }
}

/// `Patient/[id]/$everything` (`_type`, `_since`): the patient's record as the caller may see
/// it, the patient as the match and the rest included.
async fn everything(
    State(state): State<FhirState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let asked = (|| {
        on_patient("$everything", &resource_type)?;
        let (mut types, mut since, mut presentation) = (None, None, PresentationParams::default());
        for (name, value) in parse_pairs(query.as_deref().unwrap_or_default().as_bytes()) {
            match name.as_str() {
                "_type" => types = Some(value.split(',').map(|t| t.trim().to_owned()).collect()),
                "_since" => {
                    since_instant(&value)?;
                    since = Some(value);
                }
                "_format" | "_pretty" => {
                    presentation.take("Patient", &name, &value)?;
                }
                _ => {
                    return Err(FhirError::BadRequest(format!(
                        "$everything takes _type, _since, _format and _pretty, not '{name}'"
                    )));
                }
            }
        }
        Ok::<_, FhirError>((types, since, presentation.finish()?.0))
    })();
    let (types, since, presentation): (Option<Vec<String>>, Option<String>, Presentation) =
        match asked {
            Ok(asked) => asked,
            Err(error) => {
                let refused = (Interaction::Search, "Patient", Some(id.as_str()));
                return Err(state.service.refused(&context, refused, error).await);
            }
        };
    let page = (state.service)
        .everything(&context, &id, types.as_deref(), since.as_deref())
        .await?;
    let base = &state.config.base_url;
    let url = format!(
        "{base}/Patient/{id}/$everything{}",
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    searchset(
        &state,
        "Patient",
        &page,
        vec![json!({"relation": "self", "url": url})],
        &presentation,
    )
}

/// `Patient/[id]/$summary` (`_format`, `_pretty`): the patient's International Patient
/// Summary, a FHIR document Bundle.
async fn summary(
    State(state): State<FhirState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let asked = (|| {
        on_patient("$summary", &resource_type)?;
        let mut presentation = PresentationParams::default();
        for (name, value) in parse_pairs(query.as_deref().unwrap_or_default().as_bytes()) {
            if !matches!(name.as_str(), "_format" | "_pretty")
                || !presentation.take("Patient", &name, &value)?
            {
                return Err(FhirError::BadRequest(format!(
                    "$summary takes _format and _pretty, not '{name}'"
                )));
            }
        }
        Ok(presentation.finish()?.0)
    })();
    let presentation = match asked {
        Ok(presentation) => presentation,
        Err(error) => {
            let refused = (Interaction::Search, "Patient", Some(id.as_str()));
            return Err(state.service.refused(&context, refused, error).await);
        }
    };
    let document = state.service.summary(&context, &id).await?;
    let body = match presentation.pretty {
        true => serde_json::to_string_pretty(&document),
        false => serde_json::to_string(&document),
    };
    Ok(fhir_json(
        StatusCode::OK,
        body.map_err(|e| FhirError::Internal(e.into()))?,
    ))
}

/// `Observation/$lastn` (`max`, and the search parameters of Observation): the latest `max`
/// (default 1) observations of each code the search finds.
async fn lastn(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let mut params = parse_pairs(query.as_deref().unwrap_or_default().as_bytes());
    let asked = (|| {
        if resource_type != "Observation" {
            return Err(FhirError::NotFound(format!(
                "$lastn is an operation on Observation, not {resource_type}"
            )));
        }
        let mut max = 1;
        if let Some(position) = params.iter().position(|(name, _)| name == "max") {
            let (_, value) = params.remove(position);
            max = value
                .parse()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    FhirError::BadRequest(format!(
                        "max must be a number from 1 to 100, not '{value}'"
                    ))
                })?;
        }
        Ok(max)
    })();
    let max = match asked {
        Ok(max) => max,
        Err(error) => {
            let refused = (Interaction::Search, resource_type.as_str(), None);
            return Err(state.service.refused(&context, refused, error).await);
        }
    };
    let page = state.service.lastn(&context, &params, max).await?;
    let base = &state.config.base_url;
    let url = format!(
        "{base}/Observation/$lastn{}",
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let links = vec![json!({"relation": "self", "url": url})];
    searchset(
        &state,
        "Observation",
        &page,
        links,
        &Presentation::default(),
    )
}

/// A searchset Bundle of `page`: its matches, what was included beside them, and an outcome
/// entry for what is missing or was left out.
fn searchset(
    state: &FhirState,
    resource_type: &str,
    page: &SearchPage,
    links: Vec<Value>,
    presentation: &Presentation,
) -> Result<Response, FhirError> {
    let base = &state.config.base_url;
    let matches = (page.resources.iter()).map(|r| (resource_type, r, "match"));
    let included = (page.included.iter()).map(|i| (i.resource_type, &i.resource, "include"));
    let listed: Vec<(&str, &StoredResource, &'static str)> = matches.chain(included).collect();
    let raw: Vec<Box<RawValue>> = listed
        .iter()
        .map(|(_, r, _)| RawValue::from_string(r.content.clone()))
        .collect::<Result<_, _>>()
        .map_err(|e| FhirError::Internal(e.into()))?;
    let mut entry: Vec<Entry<'_>> = listed
        .iter()
        .zip(&raw)
        .map(|((resource_type, r, mode), content)| Entry {
            full_url: Some(format!("{base}/{resource_type}/{}", r.id)),
            resource: content,
            search: SearchMode { mode },
        })
        .collect();
    // A partial answer says so, source by source, in an outcome entry; so does what the
    // includes left out.
    let outcome = search_outcome(&page.incomplete, &page.omissions)?;
    if let Some(outcome) = &outcome {
        entry.push(Entry {
            full_url: None,
            resource: outcome,
            search: SearchMode { mode: "outcome" },
        });
    }
    let bundle = Bundle {
        resource_type: "Bundle",
        kind: "searchset",
        total: presentation.total.then_some(page.total),
        link: links,
        entry,
    };
    let body = match presentation.pretty {
        // Entries are embedded as they are: indented as a whole, they are read back first.
        true => {
            serde_json::to_value(&bundle).and_then(|bundle| serde_json::to_string_pretty(&bundle))
        }
        false => serde_json::to_string(&bundle),
    };
    let body = body.map_err(|e| FhirError::Internal(e.into()))?;
    Ok(fhir_json(StatusCode::OK, body))
}

/// A searchset Bundle whose entries embed the stored JSON as-is, without parsing it again.
#[derive(serde::Serialize)]
struct Bundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    /// Left out when asked (`_total=none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
    link: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry<'a>>,
}

/// The OperationOutcome of a partial answer: one warning per missing part, naming its source
/// (`details.coding`, system `urn:healthcloud:source`) and what happened; and one issue per
/// thing the includes left out.
fn search_outcome(
    incomplete: &[Incomplete],
    omissions: &[Omission],
) -> Result<Option<Box<RawValue>>, FhirError> {
    if incomplete.is_empty() && omissions.is_empty() {
        return Ok(None);
    }
    let missing = incomplete.iter().map(|missing| {
        json!({
            "severity": "warning",
            "code": missing.code,
            "details": {
                "coding": [{"system": SOURCE_SYSTEM, "code": missing.source}],
                "text": format!("partial answer: source '{}' is missing", missing.source)
            },
            "diagnostics": missing.diagnostics,
        })
    });
    let left_out = omissions.iter().map(|omission| {
        json!({
            "severity": omission.severity,
            "code": omission.code,
            "diagnostics": omission.diagnostics,
        })
    });
    let issues: Vec<Value> = missing.chain(left_out).collect();
    let outcome = json!({"resourceType": "OperationOutcome", "issue": issues});
    RawValue::from_string(outcome.to_string())
        .map(Some)
        .map_err(|e| FhirError::Internal(e.into()))
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl", skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    resource: &'a RawValue,
    search: SearchMode,
}

#[derive(serde::Serialize)]
struct SearchMode {
    mode: &'static str,
}

async fn create(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let request = async {
        let criteria = conditional_criteria(&headers, query.as_deref())?;
        let answer = preferred_return(&headers)?;
        Ok((json_body(&state, &headers, body).await?, (criteria, answer)))
    };
    let (resource, (criteria, answer)) = match request.await {
        Ok(request) => request,
        Err(error) => {
            let refused = (Interaction::Create, resource_type.as_str(), None);
            return Err(state.service.refused(&context, refused, error).await);
        }
    };
    let (status, id, version_id, content) = match criteria {
        None => {
            let written = (state.service)
                .create(&context, &resource_type, resource)
                .await?;
            let Written {
                id,
                version_id,
                content,
            } = written;
            (StatusCode::CREATED, id, version_id, content)
        }
        Some(criteria) => {
            match (state.service)
                .create_unless_exists(&context, &resource_type, resource, &criteria)
                .await?
            {
                Creation::Created(Written {
                    id,
                    version_id,
                    content,
                }) => (StatusCode::CREATED, id, version_id, content),
                Creation::Exists(existing) => (
                    StatusCode::OK,
                    existing.id,
                    existing.version_id,
                    existing.content,
                ),
            }
        }
    };
    let outcome = match status {
        StatusCode::CREATED => format!("created {resource_type}/{id} (version {version_id})"),
        _ => format!("{resource_type}/{id} matches If-None-Exist: nothing was created"),
    };
    let version = (
        state.config.base_url.as_str(),
        resource_type.as_str(),
        id.as_str(),
        version_id,
    );
    Ok(answer.respond(status, content, version, &outcome))
}

/// What a write answers with (`Prefer: return=…`): the resource as stored (the default),
/// nothing, or an OperationOutcome saying what was done. Which was honoured is said in
/// `Preference-Applied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    Representation,
    Minimal,
    Outcome,
    /// No `return` preference was given.
    Default,
}

/// The `return` preference of a write's `Prefer` headers. Other preferences are not applied,
/// and `Preference-Applied` does not name them.
fn preferred_return(headers: &HeaderMap) -> Result<Return, FhirError> {
    let mut chosen = Return::Default;
    for value in headers.get_all("prefer") {
        let text = value.to_str().map_err(|_| {
            FhirError::BadRequest("Prefer must be visible ASCII, e.g. return=minimal".into())
        })?;
        for preference in text.split([',', ';']).map(str::trim) {
            let Some(("return", value)) = preference
                .split_once('=')
                .map(|(name, value)| (name.trim(), value.trim().trim_matches('"')))
            else {
                continue;
            };
            chosen = match value {
                "representation" => Return::Representation,
                "minimal" => Return::Minimal,
                "OperationOutcome" => Return::Outcome,
                _ => {
                    return Err(FhirError::BadRequest(format!(
                        "Prefer: return={value} is not one of minimal, representation, OperationOutcome"
                    )));
                }
            };
        }
    }
    Ok(chosen)
}

impl Return {
    /// The answer of a write that left `content` at version `version_id` of `resource_type/id`
    /// (on the server at `base`), `Location` naming that version; `done` says what happened.
    fn respond(
        self,
        status: StatusCode,
        content: String,
        (base, resource_type, id, version_id): (&str, &str, &str, i64),
        done: &str,
    ) -> Response {
        let (body, applied) = match self {
            Return::Default => (content, None),
            Return::Representation => (content, Some("return=representation")),
            Return::Minimal => (String::new(), Some("return=minimal")),
            Return::Outcome => {
                let outcome = json!({"resourceType": "OperationOutcome", "issue": [{
                    "severity": "information", "code": "informational", "diagnostics": done
                }]});
                (outcome.to_string(), Some("return=OperationOutcome"))
            }
        };
        let mut response = match body.is_empty() {
            true => status.into_response(),
            false => fhir_json(status, body),
        };
        if let Some(applied) = applied {
            response.headers_mut().insert(
                header::HeaderName::from_static("preference-applied"),
                HeaderValue::from_static(applied),
            );
        }
        let location = format!("{base}/{resource_type}/{id}/_history/{version_id}");
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        with_version(response, version_id)
    }
}

/// The search a create is conditional on: the `If-None-Exist` header (FHIR's conditional
/// create) or the request's query string (`POST [type]?[criteria]`, as fhirpy's
/// `get_or_create` sends it); both at once must agree.
fn conditional_criteria(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Vec<(String, String)>>, FhirError> {
    let header = match headers.get("if-none-exist") {
        None => None,
        Some(value) => Some(parse_pairs(
            value
                .to_str()
                .map_err(|_| {
                    FhirError::BadRequest(
                        "If-None-Exist must be a visible-ASCII query string".into(),
                    )
                })?
                .trim_start_matches('?')
                .as_bytes(),
        )),
    };
    // `_format` was held to JSON before (`json_only_accepted`); it chooses nothing.
    let query = query
        .map(|q| {
            let mut pairs = parse_pairs(q.as_bytes());
            pairs.retain(|(name, _)| name != "_format");
            pairs
        })
        .filter(|pairs| !pairs.is_empty());
    match (header, query) {
        (Some(header), Some(query)) if header != query => Err(FhirError::BadRequest(
            "the If-None-Exist header and the query string name different criteria: give one of them".into(),
        )),
        (header, query) => Ok(header.or(query)),
    }
}

/// `PUT` (the whole resource) or `PATCH` (a patch) of `[type]/[id]`.
async fn update(
    State(state): State<FhirState>,
    Path((resource_type, id)): Path<(String, String)>,
    method: Method,
    Caller(context): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let change = requested_change(&state, &method, &headers, body).await;
    let target = (resource_type.as_str(), Target::Id(&id));
    change_resource(&state, &context, target, &headers, change).await
}

/// `PUT` or `PATCH` of `[type]?criteria`: of the one resource the criteria find.
async fn update_where(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    Caller(context): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let change = requested_change(&state, &method, &headers, body).await;
    let criteria = parse_pairs(query.unwrap_or_default().as_bytes());
    let target = (resource_type.as_str(), Target::Criteria(&criteria));
    change_resource(&state, &context, target, &headers, change).await
}

/// The change a `PUT` (the whole resource) or a `PATCH` (a patch) asks for.
async fn requested_change(
    state: &FhirState,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Change, FhirError> {
    match *method == Method::PATCH {
        true => patch_body(state, headers, body).await,
        false => json_body(state, headers, body).await.map(Change::Replace),
    }
}

/// Which resource a change is for: one by id, or the one a conditional update's criteria find.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Id(&'a str),
    Criteria(&'a [(String, String)]),
}

/// Applies `change` (a replacement or a patch) to `target`, answering as `Prefer` asks; a
/// request refused before it reached the resource (a bad body or header) is audited too.
async fn change_resource(
    state: &FhirState,
    context: &AccessContext,
    (resource_type, target): (&str, Target<'_>),
    headers: &HeaderMap,
    change: Result<Change, FhirError>,
) -> Result<Response, FhirError> {
    let request = (|| {
        let if_match = match headers.get(header::IF_MATCH) {
            None => None,
            Some(value) => Some(value.to_str().ok().and_then(parse_etag).ok_or_else(|| {
                FhirError::BadRequest("If-Match must be a version ETag like W/\"2\"".into())
            })?),
        };
        if if_match.is_some() && matches!(target, Target::Criteria(_)) {
            return Err(FhirError::BadRequest(
                "If-Match names a version of one resource: send it to [type]/[id], not with criteria".into(),
            ));
        }
        Ok((change?, if_match, preferred_return(headers)?))
    })();
    let (change, if_match, answer) = match request {
        Ok(request) => request,
        Err(error) => {
            let id = match target {
                Target::Id(id) => Some(id),
                Target::Criteria(_) => None,
            };
            let refused = (Interaction::Update, resource_type, id);
            return Err(state.service.refused(context, refused, error).await);
        }
    };
    let (written, created) = match target {
        Target::Id(id) => {
            let written = (state.service)
                .update(context, resource_type, id, change, if_match)
                .await?;
            (written, false)
        }
        Target::Criteria(criteria) => {
            (state.service)
                .update_where(context, resource_type, criteria, change)
                .await?
        }
    };
    let Written {
        id,
        version_id,
        content,
    } = written;
    let (status, done) = match created {
        true => (StatusCode::CREATED, "created"),
        false => (StatusCode::OK, "updated"),
    };
    let done = format!("{done} {resource_type}/{id} (version {version_id})");
    let version = (
        state.config.base_url.as_str(),
        resource_type,
        id.as_str(),
        version_id,
    );
    Ok(answer.respond(status, content, version, &done))
}

async fn delete(
    State(state): State<FhirState>,
    Path((resource_type, id)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    state.service.delete(&context, &resource_type, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes the one resource the query's criteria find (204 also when none does).
async fn delete_where(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let criteria = parse_pairs(query.unwrap_or_default().as_bytes());
    (state.service)
        .delete_where(&context, &resource_type, &criteria)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn with_version(mut response: Response, version_id: i64) -> Response {
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version_id}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn parse_etag(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"').parse().ok()
}

async fn read_body(state: &FhirState, body: Body) -> Result<Bytes, FhirError> {
    let limit = state.config.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        FhirError::PayloadTooLarge(format!(
            "the request body is larger than the limit of {limit} bytes"
        ))
    })
}

async fn json_body(state: &FhirState, headers: &HeaderMap, body: Body) -> Result<Value, FhirError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media != "application/fhir+json" && media != "application/json" {
        return Err(FhirError::BadRequest(format!(
            "unsupported Content-Type '{content_type}': send application/fhir+json"
        )));
    }
    let bytes = read_body(state, body).await?;
    let mut json = serde_json::from_slice(&bytes)
        .map_err(|e| FhirError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    localize(&mut json, &state.config.base_url);
    Ok(json)
}

/// Makes references to this server relative (`{base}/Patient/1` becomes `Patient/1`): what is
/// stored names a resource here as `Type/id`, and by an absolute URL only one elsewhere.
fn localize(value: &mut Value, base: &str) {
    let base = base.trim_end_matches('/');
    crate::params::for_each_reference(value, &mut |reference| {
        if let Some(local) = (reference.strip_prefix(base))
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
        {
            *reference = local.to_owned();
        }
    });
}

/// `$validate`: whether a resource (the body, or the `resource` parameter of a Parameters
/// body) would be accepted by a write here, and (`profile`, in the query or the Parameters)
/// whether it conforms to a profile served here, as an OperationOutcome; nothing is stored
/// and no data is read.
async fn validate_resource(
    State(state): State<FhirState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    Caller(_): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let type_def = served_type(&resource_type)?;
    let body = json_body(&state, &headers, body).await?;
    let mut profile = None;
    for (name, value) in parse_pairs(query.as_deref().unwrap_or_default().as_bytes()) {
        match name.as_str() {
            "profile" => profile = Some(value),
            "_format" | "_pretty" => {}
            _ => {
                return Err(FhirError::BadRequest(format!(
                    "$validate takes profile, not '{name}'"
                )));
            }
        }
    }
    let parameter = |name: &str| {
        (body["parameter"].as_array().into_iter().flatten()).find(|p| p["name"] == name)
    };
    let resource = match body.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => {
            if let Some(asked) = parameter("profile") {
                profile = asked["valueUri"]
                    .as_str()
                    .or(asked["valueCanonical"].as_str())
                    .map(str::to_owned);
            }
            parameter("resource")
                .map(|p| p["resource"].clone())
                .ok_or_else(|| {
                    FhirError::BadRequest("the Parameters have no 'resource' parameter".into())
                })?
        }
        _ => body,
    };
    let profile = match profile {
        None => None,
        Some(url) => Some(crate::profiles::served(type_def.name, &url).ok_or_else(|| {
            let served: Vec<&str> = (crate::profiles::PROFILES.iter())
                .filter(|p| crate::profiles::served(type_def.name, p.url).is_some())
                .map(|p| p.url)
                .collect();
            FhirError::BadRequest(format!(
                "profile '{url}' is not served here; {} resources are checked against {}",
                type_def.name,
                match served.is_empty() {
                    true => "their R4 definition only".to_owned(),
                    false => served.join(", "),
                }
            ))
        })?),
    };
    let checked = crate::service::acceptable(type_def, &resource)
        .and_then(|_| profile.map_or(Ok(()), |profile| profile.check(&resource)));
    let outcome = match checked {
        Ok(_) if !type_def.writable() => json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "not-supported",
            "diagnostics": format!(
                "the {0} is valid FHIR R4, but a {0} is not written through this API",
                type_def.name
            )
        }]}),
        Ok(_) => json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": format!("the {} is valid for this server", type_def.name)
        }]}),
        Err(error) => error.to_operation_outcome(),
    };
    Ok(fhir_json(StatusCode::OK, outcome.to_string()))
}

/// The body of a PATCH: a JSON Patch (`application/json-patch+json`), or the changed elements
/// as a merge patch (`application/merge-patch+json`, or the JSON fhirpy's `patch()` sends).
async fn patch_body(
    state: &FhirState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Change, FhirError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let bytes = read_body(state, body).await?;
    patch_change(&media, &bytes)
}

/// A PATCH body of media type `media` as the change it asks for.
fn patch_change(media: &str, bytes: &[u8]) -> Result<Change, FhirError> {
    let merge = match media {
        "application/json-patch+json" => false,
        "application/merge-patch+json" | "application/json" | "application/fhir+json" => true,
        _ => {
            return Err(FhirError::BadRequest(format!(
                "unsupported Content-Type '{media}' for PATCH: send a JSON Patch \
                 (application/json-patch+json) or the changed elements \
                 (application/merge-patch+json)"
            )));
        }
    };
    if !merge {
        return serde_json::from_slice(bytes)
            .map(Change::JsonPatch)
            .map_err(|e| FhirError::BadRequest(format!("the body is not a JSON Patch: {e}")));
    }
    let changes: Value = serde_json::from_slice(bytes)
        .map_err(|e| FhirError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    match changes.get("resourceType").and_then(Value::as_str) {
        _ if !changes.is_object() => Err(FhirError::BadRequest(
            "a merge patch is a JSON object of the elements to change".into(),
        )),
        Some("Parameters") => Err(FhirError::BadRequest(
            "FHIRPath Patch (a Parameters body) is not supported: send a JSON Patch \
             (application/json-patch+json) or the changed elements (application/merge-patch+json)"
                .into(),
        )),
        _ => Ok(Change::Merge(changes)),
    }
}

async fn metadata(State(state): State<FhirState>) -> Response {
    fhir_json(
        StatusCode::OK,
        capability_statement(&state.config.base_url, state.config.authorization.as_ref())
            .to_string(),
    )
}

/// The CapabilityStatement, generated from the same table that drives search and indexing.
pub fn capability_statement(
    base_url: &str,
    authorization: Option<&AuthorizationEndpoints>,
) -> Value {
    let resources: Vec<Value> = TYPES
        .iter()
        .map(|t| {
            let mut interactions = vec![
                json!({"code": "read"}),
                json!({"code": "vread"}),
                json!({"code": "history-instance"}),
                json!({"code": "search-type"}),
            ];
            if t.writable() {
                interactions.push(json!({"code": "create"}));
                interactions.push(json!({"code": "update"}));
                interactions.push(json!({"code": "patch"}));
                interactions.push(json!({"code": "delete"}));
            }
            interactions.push(json!({"code": "history-type"}));
            let mut params = vec![json!({"name": "_id", "type": "token",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
                "documentation": "The resource id"})];
            params.extend(t.all_params().map(|p| {
                let mut param = json!({"name": p.name, "type": p.kind.fhir_type(), "documentation": p.documentation()});
                if let Some(canonical) = p.canonical(t.name) {
                    param["definition"] = json!(canonical);
                }
                param
            }));
            let is_reference = |p: &&ParamDef| matches!(p.kind, ParamKind::Reference { .. });
            let includes: Vec<String> = (t.all_params().filter(is_reference))
                .map(|p| format!("{}:{}", t.name, p.name))
                .collect();
            let revincludes: Vec<String> = (TYPES.iter())
                .flat_map(|other| other.all_params().filter(is_reference).map(move |p| (other, p)))
                .filter(|(_, p)| match p.kind {
                    ParamKind::Reference { target: Some(only) } => only == t.name,
                    _ => true,
                })
                .map(|(other, p)| format!("{}:{}", other.name, p.name))
                .collect();
            let mut operations = vec![json!({"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"})];
            match t.name {
                "Patient" => operations.extend([
                    json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}),
                    json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}),
                    json!({"name": "summary", "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"}),
                ]),
                "Observation" => operations.push(json!({"name": "lastn", "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"})),
                "Group" => operations.push(json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"})),
                _ => {}
            }
            let mut resource = json!({
                "type": t.name,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": false,
                "conditionalCreate": t.writable(),
                "conditionalUpdate": t.writable(),
                "conditionalDelete": if t.writable() { "single" } else { "not-supported" },
                "operation": operations,
                "searchParam": params,
            });
            // FHIR JSON has no empty arrays: a type nothing refers to has no revincludes.
            for (key, values) in [("searchInclude", includes), ("searchRevInclude", revincludes)] {
                if !values.is_empty() {
                    resource[key] = json!(values);
                }
            }
            if t.sortable_by_date() {
                resource["documentation"] = json!("_sort=date and _sort=-date are supported");
            }
            let profiles: Vec<&str> = (crate::profiles::PROFILES.iter())
                .filter(|p| crate::profiles::served(t.name, p.url).is_some())
                .map(|p| p.url)
                .collect();
            if !profiles.is_empty() {
                resource["supportedProfile"] = json!(profiles);
            }
            resource
        })
        .collect();
    let mut resources = resources;
    // Topic-based subscriptions (the R4 backport): the topics as canonical URLs.
    resources.push(json!({
        "type": "Subscription",
        "supportedProfile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"],
        "interaction": [{"code": "create"}, {"code": "read"}, {"code": "delete"}, {"code": "search-type"}],
        "operation": [{"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"}],
        "extension": (crate::topics::TOPICS.iter()).map(|topic| json!({
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
            "valueCanonical": topic.url,
        })).collect::<Vec<_>>(),
        "documentation": "rest-hook channels; payloads empty, id-only or full-resource; notifications signed (X-Healthcloud-Signature); each subscriber sees and deletes only its own",
    }));
    let mut security = json!({
        "cors": true,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
        "description": "Bearer JWTs with SMART App Launch v2 scopes; see .well-known/smart-configuration"
    });
    if let Some(authorization) = authorization {
        security["extension"] = json!([authorization.oauth_uris_extension()]);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": {"name": "healthcloud", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "healthcloud integration cloud", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": security,
            "interaction": [
                {"code": "transaction", "documentation": "All entries or none; urn:uuid references resolved; at most 500 entries"},
                {"code": "batch", "documentation": "Each entry as the same request alone"},
                {"code": "history-system", "documentation": "The versions of every type the caller may search, newest first; _since, _count, paged by next links"}
            ],
            "resource": resources,
            "operation": [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", "documentation": "Bulk Data export for backend services (system/ scopes and a purpose of use): _type, _typeFilter, _since, _outputFormat=application/fhir+ndjson, _deidentify; Prefer: respond-async"}
            ],
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": "Page size (clamped to the server maximum)"},
                {"name": "_offset", "type": "number", "documentation": "Paging offset, as used in next links"},
                {"name": "_include", "type": "special", "documentation": "Type:parameter[:Target], and _include:iterate; each included resource is one the caller could search for, and what is left out is counted in an OperationOutcome entry"},
                {"name": "_revinclude", "type": "special", "documentation": "Type:parameter[:Target], and _revinclude:iterate"},
                {"name": "_has", "type": "special", "documentation": "_has:Type:reference:parameter=value (nestable); the reverse search may match at most 200 resources"}
            ]
        }]
    })
}

async fn smart_configuration(State(state): State<FhirState>) -> Json<Value> {
    if let Some(authorization) = &state.config.authorization {
        return Json(authorization.smart_configuration());
    }
    Json(json!({
        // Tokens come from the configured issuer (in development: `healthcloud token`); no
        // authorization server runs here, so none is advertised.
        "issuer": state.verifier.issuer(),
        "fhir_base": state.config.base_url,
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "patient/*.cruds", "user/*.cruds", "system/*.cruds"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "capabilities": [
            "permission-patient", "permission-user", "permission-v1", "permission-v2"
        ]
    }))
}
