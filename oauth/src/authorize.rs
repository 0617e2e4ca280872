//! The authorization endpoint, the identity provider's callback and the consent decision.
//!
//! A request whose client or redirect URI is not registered gets a page, never a redirect
//! (RFC 6749, section 4.1.2.1): the URI cannot be trusted with an answer. Every other error
//! goes back to the app's redirect URI with `error` and its `state`. The request waits in
//! `oauth_requests` while the user signs in, bound to the browser by a cookie (so a code
//! cannot be obtained through another person's sign-in), and is used once.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use healthcloud_package::manifest::Capability;
use healthcloud_platform::auth::{Role, is_fhir_id};
use healthcloud_platform::scope::{Scope, ScopeContext};
use serde::{Deserialize, Serialize};

use crate::login::User;
use crate::{
    AuthorizationServer, CODE_TTL_SECS, Client, Granted, OFFLINE_ACCESS_TTL, ONLINE_ACCESS_TTL,
    REQUEST_TTL_SECS, hash, now, random_token,
};

/// The parameters of an authorization request, as sent (query or form).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    aud: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    launch: Option<String>,
    nonce: Option<String>,
}

/// A checked request, waiting for the user.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    scope: String,
    code_challenge: String,
    nonce: Option<String>,
    /// The EHR launch's context.
    launch: Option<LaunchContext>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LaunchContext {
    patient: String,
    encounter: Option<String>,
}

pub(crate) async fn authorize_get(
    State(server): State<AuthorizationServer>,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    authorize(server, params).await
}

pub(crate) async fn authorize_post(
    State(server): State<AuthorizationServer>,
    Form(params): Form<AuthorizeParams>,
) -> Response {
    authorize(server, params).await
}

/// An answer to the app at its redirect URI.
struct Answer<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
}

impl Answer<'_> {
    fn error(&self, code: &str, description: &str) -> Response {
        self.with(&[("error", code), ("error_description", description)])
    }

    fn with(&self, pairs: &[(&str, &str)]) -> Response {
        // Registered URIs are checked to be URLs (`Clients::register`).
        let Ok(mut url) = url::Url::parse(self.redirect_uri) else {
            return page_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The app's redirect URI is not a URL.",
            );
        };
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(pairs);
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
        }
        Redirect::to(url.as_str()).into_response()
    }
}

async fn authorize(server: AuthorizationServer, params: AuthorizeParams) -> Response {
    let Some(client) = params
        .client_id
        .as_deref()
        .and_then(|id| server.inner.clients.get(id))
    else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "No app with this client_id is installed in any region here: the app's link is wrong, or the app was removed.",
        );
    };
    let Some(redirect_uri) = params.redirect_uri.as_deref().filter(|uri| {
        client
            .redirect_uris
            .iter()
            .any(|registered| registered == uri)
    }) else {
        return page_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "{} asked to send its answer to an address it did not register (redirect_uri): nothing was sent. Its vendor must register the address with the app.",
                client.name
            ),
        );
    };
    let answer = Answer {
        redirect_uri,
        state: params.state.as_deref(),
    };
    if params.response_type.as_deref() != Some("code") {
        return answer.error(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let challenge = params.code_challenge.as_deref().unwrap_or_default();
    if params.code_challenge_method.as_deref() != Some("S256")
        || challenge.len() != 43
        || URL_SAFE_NO_PAD.decode(challenge).is_err()
    {
        return answer.error(
            "invalid_request",
            "PKCE is required: send code_challenge (S256 of the verifier, base64url) with code_challenge_method=S256",
        );
    }
    let audience = params.aud.as_deref().map(|aud| aud.trim_end_matches('/'));
    if audience != Some(server.inner.fhir_base.as_str()) {
        return answer.error(
            "invalid_request",
            &format!(
                "aud must be the FHIR server's base URL, {}",
                server.inner.fhir_base
            ),
        );
    }
    let scope = params.scope.clone().unwrap_or_default();
    if let Err(error) = Scope::parse_list(&scope) {
        return answer.error("invalid_scope", &error.to_string());
    }
    let launch = match &params.launch {
        Some(launch) => match take_launch(&server, &client.client_id, launch).await {
            Ok(Some(context)) => Some(context),
            Ok(None) => {
                return answer.error(
                    "invalid_request",
                    "the launch is unknown, was used already or expired: launch the app again from the EHR",
                );
            }
            Err(error) => return internal(error),
        },
        None if has_scope(&scope, "launch") => {
            return answer.error(
                "invalid_request",
                "the launch scope needs the launch parameter the EHR gave the app",
            );
        }
        None => None,
    };
    let Some(login) = &server.inner.login else {
        return page_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Nobody can sign in here yet: this server has no identity provider configured (start it with --identity-provider).",
        );
    };
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state: params.state.clone(),
        scope,
        code_challenge: challenge.to_owned(),
        nonce: params.nonce.clone(),
        launch,
    };
    let (id, browser, nonce, verifier) = (
        random_token(),
        random_token(),
        random_token(),
        random_token(),
    );
    let sign_in = match login.sign_in_url(&id, &nonce, &verifier).await {
        Ok(url) => url,
        Err(error) => return page_error(StatusCode::BAD_GATEWAY, &error.to_string()),
    };
    let db = &server.inner.db;
    let mut sql = db.sql("INSERT INTO oauth_requests (id, browser, request, login_nonce, login_verifier, expires_at) VALUES (");
    sql.bind_list([
        id.clone().into(),
        hash(&browser).into(),
        serde_json::to_string(&pending)
            .expect("a request serializes")
            .into(),
        nonce.into(),
        verifier.into(),
        (now() + REQUEST_TTL_SECS).into(),
    ])
    .push(")");
    if let Err(error) = sql.query().execute(db.pool()).await {
        return internal(error.into());
    }
    let mut response = Redirect::to(&sign_in).into_response();
    let cookie = cookie::Cookie::build((browser_cookie(&id), browser))
        .path("/oauth2/")
        .http_only(true)
        // Sent along when the identity provider sends the browser back (a top-level GET).
        .same_site(cookie::SameSite::Lax)
        .secure(server.inner.secure_cookies)
        .max_age(cookie::time::Duration::seconds(REQUEST_TTL_SECS))
        .build();
    if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The cookie that binds request `id` (one of ours: 43 base64url characters) to its browser.
fn browser_cookie(id: &str) -> String {
    format!("hc-authorize-{}", id.get(..16).unwrap_or(id))
}

/// Whether `id` can be a request id this server made ([`random_token`]).
fn is_request_id(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|one| one == wanted)
}

/// The context of EHR launch `launch` for `client_id`, used up by this call.
async fn take_launch(
    server: &AuthorizationServer,
    client_id: &str,
    launch: &str,
) -> anyhow::Result<Option<LaunchContext>> {
    let db = &server.inner.db;
    let mut sql = db.sql("UPDATE oauth_launches SET used = 1 WHERE id_hash = ");
    sql.bind(hash(launch))
        .push(" AND client_id = ")
        .bind(client_id)
        .push(" AND used = 0 AND expires_at > ")
        .bind(now());
    if sql.query().execute(db.pool()).await?.rows_affected() != 1 {
        return Ok(None);
    }
    let mut sql = db.sql("SELECT context FROM oauth_launches WHERE id_hash = ");
    sql.bind(hash(launch));
    let context: String = sqlx::Row::get(&sql.query().fetch_one(db.pool()).await?, 0);
    Ok(Some(serde_json::from_str(&context)?))
}

/// A waiting request, if it is still valid and this browser's.
async fn pending(
    server: &AuthorizationServer,
    id: &str,
    headers: &HeaderMap,
) -> anyhow::Result<Option<(Pending, String, String, Option<User>)>> {
    if !is_request_id(id) {
        return Ok(None);
    }
    let name = browser_cookie(id);
    let browsers: Vec<String> = healthcloud_platform::http::cookies(headers, &name)
        .map(hash)
        .collect();
    let db = &server.inner.db;
    let mut sql = db.sql(
        "SELECT browser, request, login_nonce, login_verifier, user_claims FROM oauth_requests WHERE id = ",
    );
    sql.bind(id).push(" AND expires_at > ").bind(now());
    let Some(row) = sql.query().fetch_optional(db.pool()).await? else {
        return Ok(None);
    };
    use sqlx::Row;
    let browser: String = row.get(0);
    if !browsers.contains(&browser) {
        return Ok(None);
    }
    let request: String = row.get(1);
    let user: Option<String> = row.get(4);
    Ok(Some((
        serde_json::from_str(&request)?,
        row.get(2),
        row.get(3),
        user.map(|user| serde_json::from_str(&user)).transpose()?,
    )))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

pub(crate) async fn login_callback(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let id = params.state.unwrap_or_default();
    let (request, nonce, verifier, _) = match pending(&server, &id, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return expired(),
        Err(error) => return internal(error),
    };
    let answer = Answer {
        redirect_uri: &request.redirect_uri,
        state: request.state.as_deref(),
    };
    let (Some(code), None) = (params.code, params.error) else {
        return answer.error("access_denied", "the user did not sign in");
    };
    let Some(login) = &server.inner.login else {
        return expired();
    };
    let user = match login.finish(&code, &verifier, &nonce).await {
        Ok(user) => user,
        Err(error) => return page_error(StatusCode::FORBIDDEN, &error.to_string()),
    };
    let Some(client) = server.inner.clients.get(&request.client_id) else {
        return answer.error("access_denied", "the app was removed");
    };
    if !client.audience.contains(&user.role) {
        return answer.error(
            "access_denied",
            &format!(
                "{} is not for a {}: its manifest names whom it is for",
                client.name,
                user.role.as_str()
            ),
        );
    }
    if user.role.is_own_record_only()
        && let Some(launch) = &request.launch
        && Some(&launch.patient) != user.patient.as_ref()
    {
        return answer.error(
            "access_denied",
            "the app was launched for another patient than the signed-in one",
        );
    }
    // A clinician's data is the region's: the provider must say where they work.
    if user.role == Role::Clinician && user.region.as_deref() != Some(client.region.as_str()) {
        return answer.error(
            "access_denied",
            "the signed-in clinician does not work in the region that installed the app (the identity provider names no region, or another)",
        );
    }
    let db = &server.inner.db;
    let mut sql = db.sql("UPDATE oauth_requests SET user_claims = ");
    sql.bind(serde_json::to_string(&user).expect("a user serializes"))
        .push(" WHERE id = ")
        .bind(id.as_str())
        .push(" AND user_claims IS NULL");
    match sql.query().execute(db.pool()).await {
        Ok(done) if done.rows_affected() == 1 => {}
        Ok(_) => return expired(),
        Err(error) => return internal(error.into()),
    }
    consent_page(&client, &request, &user, &id)
}

/// One line of the consent page.
struct Item {
    what: String,
    why: String,
    granted: bool,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    app_name: &'a str,
    app: &'a str,
    region: &'a str,
    user: &'a str,
    role: &'a str,
    patient: Option<&'a str>,
    items: Vec<Item>,
    extras: Vec<&'static str>,
    request: &'a str,
    ask_patient: bool,
}

fn consent_page(client: &Client, request: &Pending, user: &User, id: &str) -> Response {
    let asked = Scope::parse_list(&request.scope).unwrap_or_default();
    let granted = client.narrow_for(&asked, user.role);
    let items = asked
        .iter()
        .map(|scope| Item {
            what: Capability::Data(scope.clone()).explain(),
            why: client
                .requested
                .iter()
                .find(|(requested, _)| scope.within(requested))
                .map(|(_, why)| why.clone())
                .unwrap_or_default(),
            granted: granted.contains(scope),
        })
        .collect();
    let mut extras = Vec::new();
    if has_scope(&request.scope, "openid") || has_scope(&request.scope, "fhirUser") {
        extras.push("Know who you are (your user id and your FHIR record).");
    }
    if has_scope(&request.scope, "offline_access") {
        extras.push(
            "Keep access after you close it, for up to 30 days, unless you or the region revoke it.",
        );
    } else if has_scope(&request.scope, "online_access") {
        extras.push("Keep access while you use it, for up to an hour.");
    }
    let patient = request
        .launch
        .as_ref()
        .map(|launch| launch.patient.as_str())
        .or(user
            .patient
            .as_deref()
            .filter(|_| user.role.is_own_record_only()));
    let page = ConsentPage {
        app_name: &client.name,
        app: &client.app,
        region: &client.region,
        user: user.fhir_user.as_deref().unwrap_or(&user.sub),
        role: user.role.as_str(),
        patient,
        items,
        extras,
        request: id,
        ask_patient: patient.is_none() && has_scope(&request.scope, "launch/patient"),
    };
    match page.render() {
        Ok(html) => with_page_headers((StatusCode::OK, Html(html)).into_response()),
        Err(error) => internal(error.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConsentForm {
    request: String,
    decision: String,
    patient: Option<String>,
}

pub(crate) async fn consent(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let (request, _, _, user) = match pending(&server, &form.request, &headers).await {
        Ok(Some((request, nonce, verifier, Some(user)))) => (request, nonce, verifier, user),
        Ok(_) => return expired(),
        Err(error) => return internal(error),
    };
    // Used once: a second submission finds nothing.
    let db = &server.inner.db;
    let mut sql = db.sql("DELETE FROM oauth_requests WHERE id = ");
    sql.bind(form.request.as_str());
    match sql.query().execute(db.pool()).await {
        Ok(done) if done.rows_affected() == 1 => {}
        Ok(_) => return expired(),
        Err(error) => return internal(error.into()),
    }
    let answer = Answer {
        redirect_uri: &request.redirect_uri,
        state: request.state.as_deref(),
    };
    if form.decision != "allow" {
        return answer.error("access_denied", "the user denied the app access");
    }
    let Some(client) = server.inner.clients.get(&request.client_id) else {
        return answer.error("access_denied", "the app was removed");
    };
    let asked = Scope::parse_list(&request.scope).unwrap_or_default();
    // The region's grant, and what the user's role can hold at all.
    let data = client.narrow_for(&asked, user.role);
    if data.is_empty() {
        return answer.error(
            "invalid_scope",
            "nothing the app asked for lies within what the region granted it",
        );
    }
    let patient = match (&request.launch, user.role.is_own_record_only()) {
        (Some(launch), _) => Some(launch.patient.clone()),
        (None, true) => user.patient.clone(),
        (None, false) => form.patient.clone().filter(|patient| is_fhir_id(patient)),
    };
    if patient.is_none() && data.iter().any(|s| s.context == ScopeContext::Patient) {
        return answer.error(
            "invalid_request",
            "patient/ scopes need a patient: launch the app from the EHR, or ask for launch/patient",
        );
    }
    let mut scope: Vec<String> = request
        .scope
        .split_whitespace()
        .filter(|one| {
            matches!(
                *one,
                "openid" | "fhirUser" | "offline_access" | "online_access"
            ) || (*one == "launch" && request.launch.is_some())
                || (*one == "launch/patient" && patient.is_some())
        })
        .map(str::to_owned)
        .collect();
    scope.extend(data.iter().map(ToString::to_string));
    let granted = Granted {
        client_id: client.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: scope.join(" "),
        user,
        patient,
        encounter: request.launch.and_then(|launch| launch.encounter),
        nonce: request.nonce.clone(),
        family: random_token(),
        version: client.version.clone(),
        installed_at: client.installed_at.clone(),
        until: now()
            + if has_scope(&request.scope, "offline_access") {
                OFFLINE_ACCESS_TTL
            } else {
                ONLINE_ACCESS_TTL
            }
            .as_secs() as i64,
    };
    let code = random_token();
    if let Err(error) = store_code(&server, &granted, &code).await {
        return internal(error);
    }
    answer.with(&[
        ("code", code.as_str()),
        ("iss", server.inner.endpoints.issuer()),
    ])
}

async fn store_code(
    server: &AuthorizationServer,
    granted: &Granted,
    code: &str,
) -> anyhow::Result<()> {
    let mut tx = server.inner.db.begin_write().await?;
    let db = &server.inner.db;
    let mut sql = db.sql("INSERT INTO oauth_families (family, client_id, created_at) VALUES (");
    sql.bind_list([
        granted.family.clone().into(),
        granted.client_id.clone().into(),
        now().into(),
    ])
    .push(")");
    sql.query().execute(&mut *tx.tx).await?;
    let mut sql =
        db.sql("INSERT INTO oauth_codes (code_hash, family, granted, expires_at) VALUES (");
    sql.bind_list([
        hash(code).into(),
        granted.family.clone().into(),
        serde_json::to_string(granted)?.into(),
        (now() + CODE_TTL_SECS).into(),
    ])
    .push(")");
    sql.query().execute(&mut *tx.tx).await?;
    tx.commit().await?;
    Ok(())
}

fn expired() -> Response {
    page_error(
        StatusCode::BAD_REQUEST,
        "This sign-in is unknown, expired, was finished already, or was started in another browser: open the app again.",
    )
}

fn internal(error: anyhow::Error) -> Response {
    tracing::error!(error = format!("{error:#}"), "authorization failed");
    page_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side; the server logged the details. Try again.",
    )
}

/// A page for the person in the browser, when the app cannot be told.
fn page_error(status: StatusCode, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    with_page_headers(
        (
            status,
            Html(format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Cannot authorize · healthcloud</title></head><body><main><h1>The app cannot be authorized</h1><p>{escaped}</p></main></body></html>"
            )),
        )
            .into_response(),
    )
}

/// The authorization pages are never framed (no clickjacking of the Allow button), run no
/// script and are not cached.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
