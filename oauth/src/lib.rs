//! healthcloud's SMART on FHIR authorization server, under `/oauth2/`.
//!
//! - **Authorization code with PKCE** (S256 only): `authorize.rs` checks the request (a
//!   client the region registered, one of its redirect URIs exactly, `aud` naming the FHIR
//!   API), sends the user to sign in at the region's OpenID Connect provider (`login.rs`),
//!   shows what the app asks for and what the region granted in plain words, and returns a
//!   code bound to the browser, the client, the redirect URI and the PKCE challenge.
//! - **EHR launch** (`launch` carries the patient, and the encounter, the EHR chose, created
//!   with [`AuthorizationServer::launch`]) and **standalone launch** (the patient's own
//!   record for patients; the patient a clinician names).
//! - **Tokens** (`token.rs`): ES256 JWT access tokens for the FHIR API (`aud`, the granted
//!   scopes, `patient`/`encounter`, `fhirUser`, the region and `client_id`), an OpenID
//!   `id_token`, and refresh tokens that rotate on every use (a used one presented again
//!   revokes everything issued from that authorization); introspection and revocation.
//! - **Keys** rotate ([`healthcloud_platform::auth::keys`]) and are published at
//!   `/oauth2/.well-known/jwks.json`, named by the discovery document.
//!
//! Codes, refresh tokens and launch ids are random, 256 bits, and stored only as hashes. A
//! client is an app a region installed ([`Clients`]): its grant bounds every token it gets.

#![deny(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use healthcloud_platform::auth::keys::SigningKeys;
use healthcloud_platform::auth::smart::{AuthorizationEndpoints, REMEMBER_REVOKED};
use healthcloud_platform::db::{Database, Migrations};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod authorize;
mod client_auth;
mod error;
pub mod login;
mod token;

pub use error::OAuthError;
pub use healthcloud_platform::auth::issuers::ClaimNames;
pub use healthcloud_platform::auth::smart::{Client, Clients};
pub use login::IdentityProviderConfig;

/// How long an access token lives.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(600);

/// How long an authorization with `offline_access` may be refreshed, from the user's consent:
/// each refresh rotates the token, never extending this.
pub const OFFLINE_ACCESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long an authorization with `online_access` may be refreshed, from the user's consent.
pub const ONLINE_ACCESS_TTL: Duration = Duration::from_secs(3600);

/// How often the signing keys are read again (a rotation another node wrote into a shared
/// key directory); shorter than [`healthcloud_platform::auth::keys::PROPAGATION`].
pub const KEYS_RELOADED_EVERY: Duration = Duration::from_secs(60);

/// How often the revocations other nodes recorded are read.
pub const REVOCATIONS_POLLED_EVERY: Duration = Duration::from_millis(500);

/// How long an authorization code may wait to be exchanged.
const CODE_TTL_SECS: i64 = 60;

/// How long a user may take to sign in and decide.
const REQUEST_TTL_SECS: i64 = 600;

/// How long an EHR launch id may wait for the app to use it.
const LAUNCH_TTL_SECS: i64 = 300;

/// How the authorization server is set up.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The public URL it is served under, e.g. `https://health.example`: its issuer is
    /// `…/oauth2`.
    pub public_url: String,
    /// The FHIR API's base URL: the only audience it issues tokens for.
    pub fhir_base: String,
    /// The region's identity provider, where users sign in. Without one, no user can
    /// authorize an app (the development launcher's tokens still work on loopback).
    pub identity_provider: Option<IdentityProviderConfig>,
    /// The apps it issues tokens to: the regions' SMART web app installs, kept by the app
    /// cloud.
    pub clients: Clients,
}

/// The authorization server. Cheap to clone.
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: AuthorizationEndpoints,
    fhir_base: String,
    keys: SigningKeys,
    clients: Clients,
    db: Database,
    login: Option<login::IdentityProvider>,
    /// Whether cookies are sent over https only.
    secure_cookies: bool,
}

impl AuthorizationServer {
    /// Brings `db` to the authorization server's schema and opens its signing keys in
    /// `data_dir/oauth-keys` (created on first use).
    pub async fn open(db: Database, data_dir: &Path, config: OAuthConfig) -> anyhow::Result<Self> {
        db.apply(
            Migrations {
                sqlite: sqlx::migrate!("./migrations/sqlite"),
                postgres: sqlx::migrate!("./migrations/postgres"),
            },
            "authorization server",
        )
        .await?;
        let keys = SigningKeys::open(&data_dir.join("oauth-keys"))?;
        let endpoints = AuthorizationEndpoints::under(&config.public_url);
        let login = config
            .identity_provider
            .map(|provider| login::IdentityProvider::new(provider, &endpoints))
            .transpose()?;
        let server = AuthorizationServer {
            inner: Arc::new(Inner {
                secure_cookies: config.public_url.starts_with("https://"),
                endpoints,
                fhir_base: config.fhir_base.trim_end_matches('/').to_owned(),
                keys,
                clients: config.clients,
                db,
                login,
            }),
        };
        let since = now() - REMEMBER_REVOKED.as_secs() as i64;
        server.learn_revocations(since).await?;
        tokio::spawn(poll_revocations(Arc::downgrade(&server.inner), now()));
        tokio::spawn(housekeeping(Arc::downgrade(&server.inner)));
        Ok(server)
    }

    /// Learns of the authorizations revoked (on any node) at `since` or later; returns the
    /// latest revocation time seen.
    async fn learn_revocations(&self, since: i64) -> anyhow::Result<i64> {
        let db = &self.inner.db;
        let mut sql = db.sql("SELECT family, revoked_at FROM oauth_families WHERE revoked_at >= ");
        sql.bind(since);
        let mut latest = since;
        for row in sql.query().fetch_all(db.pool()).await? {
            let family: String = sqlx::Row::get(&row, 0);
            let at: i64 = sqlx::Row::get(&row, 1);
            self.inner.clients.revoke_family(&family);
            latest = latest.max(at);
        }
        Ok(latest)
    }

    /// Where it answers.
    pub fn endpoints(&self) -> &AuthorizationEndpoints {
        &self.inner.endpoints
    }

    /// Its signing keys (for the verifiers of the services its tokens are for).
    pub fn keys(&self) -> &SigningKeys {
        &self.inner.keys
    }

    /// The clients it knows.
    pub fn clients(&self) -> &Clients {
        &self.inner.clients
    }

    /// An EHR launch of `client_id` for `patient` (and `encounter`): the `launch` value the
    /// EHR hands the app, valid once, for a few minutes.
    pub async fn launch(
        &self,
        client_id: &str,
        patient: &str,
        encounter: Option<&str>,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.inner.clients.get(client_id).is_some(),
            "no app with client id '{client_id}' is installed"
        );
        let id = random_token();
        let context = serde_json::json!({ "patient": patient, "encounter": encounter });
        let mut sql = self
            .inner
            .db
            .sql("INSERT INTO oauth_launches (id_hash, client_id, context, expires_at) VALUES (");
        sql.bind_list([
            hash(&id).into(),
            client_id.into(),
            context.to_string().into(),
            (now() + LAUNCH_TTL_SECS).into(),
        ])
        .push(")");
        sql.query().execute(self.inner.db.pool()).await?;
        Ok(id)
    }

    /// The routes under `/oauth2/`. The endpoints a browser app calls itself (token,
    /// introspection, revocation, keys, discovery) answer CORS for the installed apps' pages;
    /// the pages a person sees do not.
    pub fn router(&self) -> Router {
        let clients = self.inner.clients.clone();
        let apps = tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::predicate(
                move |origin: &axum::http::HeaderValue, _: &axum::http::request::Parts| {
                    origin
                        .to_str()
                        .is_ok_and(|origin| clients.serves_origin(origin))
                },
            ))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::ACCEPT,
            ])
            .max_age(Duration::from_secs(600));
        let called_by_apps = Router::new()
            .route("/oauth2/token", post(token::token))
            .route("/oauth2/introspect", post(token::introspect))
            .route("/oauth2/revoke", post(token::revoke))
            .route("/oauth2/.well-known/jwks.json", get(token::jwks))
            .route(
                "/oauth2/.well-known/openid-configuration",
                get(token::openid_configuration),
            )
            .layer(apps);
        Router::new()
            .route(
                "/oauth2/authorize",
                get(authorize::authorize_get).post(authorize::authorize_post),
            )
            .route("/oauth2/login/callback", get(authorize::login_callback))
            .route("/oauth2/consent", post(authorize::consent))
            .merge(called_by_apps)
            .with_state(self.clone())
    }
}

/// What one authorization granted: kept with its code and its refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Granted {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    pub user: login::User,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The app's OpenID nonce, echoed in the ID token.
    pub nonce: Option<String>,
    pub family: String,
    /// The app's version and install it was authorized under: a reinstall, or the store's
    /// revocation of that version, ends it.
    pub version: String,
    pub installed_at: String,
    /// When its refresh tokens stop working, whatever their rotation (seconds since the
    /// epoch).
    pub until: i64,
}

/// Now and then, while the server is in use: reads the signing keys again, and deletes the
/// requests, codes, launches and client assertions past their time, so abandoned sign-ins
/// do not pile up (off the request path).
async fn housekeeping(server: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(KEYS_RELOADED_EVERY).await;
        let Some(inner) = server.upgrade() else {
            return;
        };
        if let Err(error) = inner.keys.reload() {
            tracing::warn!(error = format!("{error:#}"), "signing keys not read again");
        }
        if let Err(error) = forget_expired(&inner.db).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "expired authorization rows not deleted"
            );
        }
    }
}

/// Deletes the rows past their time. A client assertion's row outlives the assertion by a
/// minute (its `exp` is checked with leeway), so a copy of it is still refused meanwhile.
async fn forget_expired(db: &Database) -> anyhow::Result<()> {
    for table in [
        "oauth_requests",
        "oauth_codes",
        "oauth_launches",
        "oauth_assertions",
    ] {
        let mut sql = db.sql(&format!("DELETE FROM {table} WHERE expires_at <= "));
        sql.bind(now());
        sql.query().execute(db.pool()).await?;
    }
    Ok(())
}

/// Reads the revocations other nodes record, while the server is in use.
async fn poll_revocations(server: std::sync::Weak<Inner>, mut since: i64) {
    loop {
        tokio::time::sleep(REVOCATIONS_POLLED_EVERY).await;
        let Some(inner) = server.upgrade() else {
            return;
        };
        let server = AuthorizationServer { inner };
        // A second's overlap: a revocation recorded within the second last read is read again.
        match server.learn_revocations(since).await {
            Ok(latest) => since = latest,
            Err(error) => tracing::warn!(%error, "revocations not read"),
        }
    }
}

/// The PKCE S256 challenge of `verifier`.
fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 256 random bits, base64url: codes, refresh tokens, launch ids, request ids.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a secret: its SHA-256, base64url.
fn hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
