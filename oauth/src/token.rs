//! The token endpoint (authorization code, refresh token), introspection, revocation and the
//! published keys.
//!
//! A code is exchanged once: presented again, everything issued from its authorization is
//! revoked (RFC 6749, section 4.1.2). A refresh token is rotated on every use; a used one
//! presented again revokes its whole family too (it was stolen, or the app is broken).
//! Access tokens name their family in `jti` (`<family>.<random>`), so introspection answers
//! for them from the family's state.

use axum::Json;
use axum::extract::{Form, State};
use axum::response::{IntoResponse, Response};
use healthcloud_platform::auth::Claims;
use healthcloud_platform::auth::smart::Client;
use healthcloud_platform::scope::Scope;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::client_auth::ClientCredentials;
use crate::error::no_store;
use crate::{
    ACCESS_TOKEN_TTL, AuthorizationServer, Granted, OAuthError, challenge_of, hash, now,
    random_token,
};

/// The token request's parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenParams {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    credentials: ClientCredentials,
}

pub(crate) async fn token(
    State(server): State<AuthorizationServer>,
    Form(params): Form<TokenParams>,
) -> Result<Response, OAuthError> {
    let client = params.credentials.authenticate(&server).await?;
    let granted = match params.grant_type.as_deref() {
        Some("authorization_code") => exchange_code(&server, &client, &params).await?,
        Some("refresh_token") => refresh(&server, &client, &params).await?,
        Some("client_credentials") => {
            let mut response =
                Json(backend_service(&server, &client, &params).await?).into_response();
            no_store(&mut response);
            return Ok(response);
        }
        Some(other) => {
            return Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type {other} is not supported: use authorization_code, refresh_token or client_credentials"
            )));
        }
        None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
    };
    let mut response = Json(issue(&server, &granted).await?).into_response();
    no_store(&mut response);
    Ok(response)
}

/// A code or refresh token (`what`), stored hashed in `table` under `key_column`.
struct Secret<'a> {
    what: &'static str,
    table: &'static str,
    key_column: &'static str,
    value: &'a str,
}

impl Secret<'_> {
    /// The grant stored with this secret, claimed for this use before anything else is
    /// checked (of two uses at once, one wins), and issued to `client`. Presented again, it
    /// revokes everything issued with its authorization: it was stolen, or the app is broken.
    async fn claim(
        &self,
        server: &AuthorizationServer,
        client: &Client,
    ) -> Result<Granted, OAuthError> {
        let Secret {
            what,
            table,
            key_column,
            value,
        } = self;
        let db = &server.inner.db;
        let mut sql = db.sql(&format!(
            "SELECT granted, expires_at FROM {table} WHERE {key_column} = "
        ));
        sql.bind(hash(value));
        let row = sql
            .query()
            .fetch_optional(db.pool())
            .await?
            .ok_or_else(|| OAuthError::InvalidGrant(format!("the {what} is not valid")))?;
        let granted: Granted = serde_json::from_str(&row.get::<String, _>(0))
            .map_err(|e| OAuthError::Internal(e.into()))?;
        // Another app's secret is refused untouched: presenting it must not spend it (and
        // so revoke the authorization of the app it belongs to).
        if granted.client_id != client.client_id {
            return Err(OAuthError::InvalidGrant(format!(
                "the {what} was issued to another app"
            )));
        }
        let mut sql = db.sql(&format!(
            "UPDATE {table} SET used = 1 WHERE {key_column} = "
        ));
        sql.bind(hash(value)).push(" AND used = 0");
        if sql.query().execute(db.pool()).await?.rows_affected() != 1 {
            revoke_family(server, &granted.family).await?;
            return Err(OAuthError::InvalidGrant(format!(
                "the {what} was used already: everything issued with it is revoked"
            )));
        }
        if row.get::<i64, _>(1) <= now() {
            return Err(OAuthError::InvalidGrant(format!("the {what} expired")));
        }
        family_alive(server, &granted.family).await?;
        if granted.installed_at != client.installed_at
            || server
                .inner
                .clients
                .is_version_revoked(&client.app, &granted.version)
        {
            revoke_family(server, &granted.family).await?;
            return Err(OAuthError::InvalidGrant(format!(
                "the app was reinstalled, or the version it was authorized under was revoked, since this {what} was issued: authorize it again"
            )));
        }
        Ok(granted)
    }
}

async fn exchange_code(
    server: &AuthorizationServer,
    client: &Client,
    params: &TokenParams,
) -> Result<Granted, OAuthError> {
    let code = Secret {
        what: "code",
        table: "oauth_codes",
        key_column: "code_hash",
        value: params
            .code
            .as_deref()
            .ok_or_else(|| OAuthError::InvalidRequest("code is missing".into()))?,
    };
    let granted = code.claim(server, client).await?;
    if params.redirect_uri.as_deref() != Some(granted.redirect_uri.as_str()) {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri differs from the authorization request's".into(),
        ));
    }
    let verifier = params.code_verifier.as_deref().unwrap_or_default();
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed || challenge_of(verifier) != granted.code_challenge {
        return Err(OAuthError::InvalidGrant(
            "the code_verifier does not match the code_challenge (PKCE)".into(),
        ));
    }
    Ok(granted)
}

async fn refresh(
    server: &AuthorizationServer,
    client: &Client,
    params: &TokenParams,
) -> Result<Granted, OAuthError> {
    let refresh_token = Secret {
        what: "refresh token",
        table: "oauth_refresh_tokens",
        key_column: "token_hash",
        value: params
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?,
    };
    let mut granted = refresh_token.claim(server, client).await?;
    // A narrower scope may be asked for; never a wider one.
    if let Some(asked) = &params.scope {
        let had: Vec<&str> = granted.scope.split_whitespace().collect();
        if let Some(extra) = asked.split_whitespace().find(|one| !had.contains(one)) {
            return Err(OAuthError::InvalidScope(format!(
                "{extra} was not granted by the original authorization"
            )));
        }
        granted.scope = asked.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    // Still within what the region grants the app now.
    let data = Scope::parse_list(&granted.scope).map_err(|e| OAuthError::Internal(e.into()))?;
    if client.narrow(&data).len() != data.len() {
        return Err(OAuthError::InvalidGrant(
            "the region no longer grants the app what this authorization holds: authorize again"
                .into(),
        ));
    }
    Ok(granted)
}

/// SMART Backend Services: a confidential client (authenticated by its assertion) gets a
/// token for itself, with the `system/` scopes asked for that its region grants it. No user,
/// no refresh token: it asks again when the token expires.
async fn backend_service(
    server: &AuthorizationServer,
    client: &Client,
    params: &TokenParams,
) -> Result<serde_json::Value, OAuthError> {
    if client.jwks.is_none() {
        return Err(OAuthError::UnauthorizedClient(
            "client_credentials is for backend services, which authenticate with their keys (private_key_jwt)".into(),
        ));
    }
    let asked = Scope::parse_list(params.scope.as_deref().unwrap_or_default())
        .map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
    let granted: Vec<Scope> = client
        .narrow(&asked)
        .into_iter()
        .filter(|scope| scope.context == healthcloud_platform::scope::ScopeContext::System)
        .collect();
    if granted.is_empty() {
        return Err(OAuthError::InvalidScope(
            "ask for system/ scopes the region granted the app".into(),
        ));
    }
    let family = random_token();
    let db = &server.inner.db;
    let mut sql = db.sql("INSERT INTO oauth_families (family, client_id, created_at) VALUES (");
    sql.bind_list([
        family.clone().into(),
        client.client_id.clone().into(),
        now().into(),
    ])
    .push(")");
    sql.query().execute(db.pool()).await?;
    let scope = granted
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let now = now();
    let ttl = ACCESS_TOKEN_TTL.as_secs() as i64;
    let claims = Claims {
        iss: server.inner.endpoints.issuer().to_owned(),
        sub: client.client_id.clone(),
        exp: now + ttl,
        iat: now,
        role: healthcloud_platform::auth::Role::System,
        scope: scope.clone(),
        patient: None,
        region: Some(client.region.clone()),
        fhir_user: None,
        org: None,
        practitioner: None,
        aud: vec![server.inner.fhir_base.clone()],
        client_id: Some(client.client_id.clone()),
        encounter: None,
        jti: Some(format!("{family}.{}", random_token())),
    };
    Ok(serde_json::json!({
        "access_token": server.inner.keys.sign(&claims),
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    }))
}

async fn family_alive(server: &AuthorizationServer, family: &str) -> Result<(), OAuthError> {
    if family_revoked(server, family).await? {
        return Err(OAuthError::InvalidGrant(
            "the authorization was revoked".into(),
        ));
    }
    Ok(())
}

async fn family_revoked(server: &AuthorizationServer, family: &str) -> Result<bool, OAuthError> {
    let db = &server.inner.db;
    let mut sql = db.sql("SELECT revoked_at FROM oauth_families WHERE family = ");
    sql.bind(family);
    let row = sql.query().fetch_optional(db.pool()).await?;
    Ok(row.is_none_or(|row| row.get::<Option<i64>, _>(0).is_some()))
}

async fn revoke_family(server: &AuthorizationServer, family: &str) -> Result<(), OAuthError> {
    let db = &server.inner.db;
    let mut sql = db.sql("UPDATE oauth_families SET revoked_at = ");
    sql.bind(now())
        .push(" WHERE family = ")
        .bind(family)
        .push(" AND revoked_at IS NULL");
    sql.query().execute(db.pool()).await?;
    // Its access tokens stop here at once; other nodes learn of it within
    // [`crate::REVOCATIONS_POLLED_EVERY`].
    server.inner.clients.revoke_family(family);
    Ok(())
}

/// The token response for `granted`: an access token, an ID token when `openid` was
/// granted, a new refresh token when `offline_access` or `online_access` was.
async fn issue(server: &AuthorizationServer, granted: &Granted) -> Result<Value, OAuthError> {
    let client = server
        .inner
        .clients
        .get(&granted.client_id)
        .ok_or_else(|| OAuthError::InvalidClient("the app was removed".into()))?;
    let now = now();
    let ttl = ACCESS_TOKEN_TTL.as_secs() as i64;
    let user = &granted.user;
    let claims = Claims {
        iss: server.inner.endpoints.issuer().to_owned(),
        sub: user.sub.clone(),
        exp: now + ttl,
        iat: now,
        role: user.role,
        scope: granted.scope.clone(),
        patient: granted.patient.clone(),
        region: Some(client.region.clone()),
        fhir_user: user.fhir_user.clone(),
        org: user.org.clone(),
        practitioner: user.practitioner.clone(),
        aud: vec![server.inner.fhir_base.clone()],
        client_id: Some(client.client_id.clone()),
        encounter: granted.encounter.clone(),
        jti: Some(format!("{}.{}", granted.family, random_token())),
    };
    let mut answer = json!({
        "access_token": server.inner.keys.sign(&claims),
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": granted.scope,
        "need_patient_banner": true,
    });
    if let Some(patient) = &granted.patient {
        answer["patient"] = json!(patient);
    }
    if let Some(encounter) = &granted.encounter {
        answer["encounter"] = json!(encounter);
    }
    let scopes: Vec<&str> = granted.scope.split_whitespace().collect();
    if scopes.contains(&"openid") {
        let mut id_token = json!({
            "iss": server.inner.endpoints.issuer(),
            "sub": user.sub,
            "aud": client.client_id,
            "exp": now + ttl,
            "iat": now,
        });
        if let Some(nonce) = &granted.nonce {
            id_token["nonce"] = json!(nonce);
        }
        if let (true, Some(fhir_user)) = (scopes.contains(&"fhirUser"), &user.fhir_user) {
            // An absolute URL, as SMART asks.
            id_token["fhirUser"] = json!(format!("{}/{fhir_user}", server.inner.fhir_base));
        }
        answer["id_token"] = json!(server.inner.keys.sign(&id_token));
    }
    if (scopes.contains(&"offline_access") || scopes.contains(&"online_access"))
        && granted.until > now
    {
        let refresh_token = random_token();
        let db = &server.inner.db;
        let mut sql = db.sql(
            "INSERT INTO oauth_refresh_tokens (token_hash, family, granted, expires_at) VALUES (",
        );
        sql.bind_list([
            hash(&refresh_token).into(),
            granted.family.clone().into(),
            serde_json::to_string(granted)
                .map_err(|e| OAuthError::Internal(e.into()))?
                .into(),
            granted.until.into(),
        ])
        .push(")");
        sql.query().execute(db.pool()).await?;
        answer["refresh_token"] = json!(refresh_token);
    }
    Ok(answer)
}

/// The parameters of introspection and revocation.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenOnly {
    token: Option<String>,
    #[serde(flatten)]
    credentials: ClientCredentials,
}

/// What is known of `token`: an access token of ours (its claims, if its signature,
/// expiry and family hold) or a live refresh token.
async fn lookup(
    server: &AuthorizationServer,
    token: &str,
) -> Result<Option<(String, Value)>, OAuthError> {
    if let Some(claims) = access_token_claims(server, token) {
        let family = claims
            .jti
            .as_deref()
            .and_then(|jti| jti.split_once('.'))
            .map(|(family, _)| family.to_owned())
            .unwrap_or_default();
        let mut answer =
            serde_json::to_value(&claims).map_err(|e| OAuthError::Internal(e.into()))?;
        answer["token_type"] = json!("Bearer");
        return Ok(Some((family, answer)));
    }
    let db = &server.inner.db;
    let mut sql =
        db.sql("SELECT granted FROM oauth_refresh_tokens WHERE used = 0 AND token_hash = ");
    sql.bind(hash(token)).push(" AND expires_at > ").bind(now());
    let Some(row) = sql.query().fetch_optional(db.pool()).await? else {
        return Ok(None);
    };
    let granted: Granted = serde_json::from_str(&row.get::<String, _>(0))
        .map_err(|e| OAuthError::Internal(e.into()))?;
    Ok(Some((
        granted.family.clone(),
        json!({
            "client_id": granted.client_id,
            "scope": granted.scope,
            "sub": granted.user.sub,
            "patient": granted.patient,
            "token_type": "refresh_token",
        }),
    )))
}

fn access_token_claims(server: &AuthorizationServer, token: &str) -> Option<Claims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let key = server.inner.keys.decoding_key(header.kid.as_deref()?)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[server.inner.endpoints.issuer()]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .ok()
        .map(|data| data.claims)
}

/// RFC 7662: `{active: false}` for anything not live; the token's claims otherwise, to the
/// app it was issued to.
pub(crate) async fn introspect(
    State(server): State<AuthorizationServer>,
    Form(params): Form<TokenOnly>,
) -> Result<Response, OAuthError> {
    let client = params
        .credentials
        .authenticate(&server)
        .await?
        .client_id
        .clone();
    let inactive = || {
        let mut response = Json(json!({"active": false})).into_response();
        no_store(&mut response);
        response
    };
    let Some(token) = params.token.as_deref() else {
        return Err(OAuthError::InvalidRequest("token is missing".into()));
    };
    let Some((family, mut answer)) = lookup(&server, token).await? else {
        return Ok(inactive());
    };
    if answer["client_id"] != client.as_str() || family_revoked(&server, &family).await? {
        return Ok(inactive());
    }
    answer["active"] = json!(true);
    let mut response = Json(answer).into_response();
    no_store(&mut response);
    Ok(response)
}

/// RFC 7009: the token's whole authorization is revoked (its refresh tokens and access
/// tokens). Always 200, whether the token was known or not.
pub(crate) async fn revoke(
    State(server): State<AuthorizationServer>,
    Form(params): Form<TokenOnly>,
) -> Result<Response, OAuthError> {
    let client = params
        .credentials
        .authenticate(&server)
        .await?
        .client_id
        .clone();
    let Some(token) = params.token.as_deref() else {
        return Err(OAuthError::InvalidRequest("token is missing".into()));
    };
    if let Some((family, answer)) = lookup(&server, token).await?
        && answer["client_id"] == client.as_str()
    {
        revoke_family(&server, &family).await?;
    }
    Ok(().into_response())
}

pub(crate) async fn jwks(State(server): State<AuthorizationServer>) -> Json<Value> {
    Json(server.inner.keys.jwks())
}

/// OpenID Connect discovery for the ID tokens it issues.
pub(crate) async fn openid_configuration(State(server): State<AuthorizationServer>) -> Json<Value> {
    let endpoints = &server.inner.endpoints;
    Json(json!({
        "issuer": endpoints.issuer(),
        "authorization_endpoint": endpoints.authorize(),
        "token_endpoint": endpoints.token(),
        "introspection_endpoint": endpoints.introspect(),
        "revocation_endpoint": endpoints.revoke(),
        "jwks_uri": endpoints.jwks(),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
    }))
}
