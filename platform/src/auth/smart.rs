//! healthcloud's authorization server as every service sees it: where it answers and what it
//! supports (the FHIR API advertises it in `.well-known/smart-configuration` and the
//! CapabilityStatement's `oauth-uris` extension), and its [`Clients`] — the SMART apps regions
//! installed, and the authorizations revoked — which the server issues tokens to and every
//! service's [`TokenVerifier`](crate::auth::TokenVerifier) asks on each request, so a removed
//! app or a revoked authorization stops working at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::auth::Role;
use crate::scope::{Purpose, Scope, ScopeContext};

/// The authorization server's endpoints under one public URL: its issuer is `…/oauth2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationEndpoints {
    issuer: String,
}

/// The SMART capabilities the authorization server has, each exercised by a test.
pub const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-patient",
    "permission-v2",
    "sso-openid-connect",
];

/// The scopes it grants besides data scopes.
const SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
];

impl AuthorizationEndpoints {
    /// The endpoints of the authorization server under `public_url` (e.g.
    /// `https://health.example`).
    pub fn under(public_url: &str) -> Self {
        AuthorizationEndpoints {
            issuer: format!("{}/oauth2", public_url.trim_end_matches('/')),
        }
    }

    /// The issuer URL: `iss` of its tokens, and where its OpenID discovery document is.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where users authorize apps.
    pub fn authorize(&self) -> String {
        format!("{}/authorize", self.issuer)
    }

    /// Where apps get tokens.
    pub fn token(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// RFC 7662 token introspection.
    pub fn introspect(&self) -> String {
        format!("{}/introspect", self.issuer)
    }

    /// RFC 7009 token revocation.
    pub fn revoke(&self) -> String {
        format!("{}/revoke", self.issuer)
    }

    /// The public keys of its tokens, a JWK set.
    pub fn jwks(&self) -> String {
        format!("{}/.well-known/jwks.json", self.issuer)
    }

    /// `.well-known/smart-configuration` of the FHIR API it authorizes for.
    pub fn smart_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks(),
            "authorization_endpoint": self.authorize(),
            "token_endpoint": self.token(),
            "introspection_endpoint": self.introspect(),
            "revocation_endpoint": self.revoke(),
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "response_types_supported": ["code"],
            "scopes_supported": SCOPES,
            "code_challenge_methods_supported": ["S256"],
            "capabilities": CAPABILITIES,
        })
    }

    /// The CapabilityStatement's `oauth-uris` extension (for clients that read the
    /// endpoints there, as SMART v1 did).
    pub fn oauth_uris_extension(&self) -> Value {
        json!({
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": self.authorize()},
                {"url": "token", "valueUri": self.token()},
                {"url": "introspect", "valueUri": self.introspect()},
                {"url": "revoke", "valueUri": self.revoke()},
            ]
        })
    }
}

/// One registered SMART app.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Its client id.
    pub client_id: String,
    /// Its display name, on the consent page.
    pub name: String,
    /// The app it is, `publisher/app` (audit records and consents name it as
    /// `Device/publisher.app`).
    pub app: String,
    /// The installed version.
    pub version: String,
    /// When the region installed it: a reinstall is another registration, and the
    /// authorizations of the one before end.
    pub installed_at: String,
    /// When its install last changed (a version, a grant), seconds since the epoch: access
    /// tokens issued before are refused, and the app refreshes them under what holds now.
    pub changed_at: i64,
    /// sha256 of its signed package.
    pub digest: String,
    /// Id of the publisher key that signed it.
    pub publisher_key: String,
    /// The region that installed it: its tokens work in that region only.
    pub region: String,
    /// Whom it is for (its manifest's audience): users of another role cannot authorize it.
    pub audience: Vec<Role>,
    /// The redirect URIs it registered; a request must name one of them exactly.
    pub redirect_uris: Vec<String>,
    /// Where an EHR launches it (none for a backend service).
    pub launch_url: Option<String>,
    /// The web origins of its pages, answered with CORS by the FHIR API while it is
    /// installed.
    pub origins: Vec<String>,
    /// What it asked for, each with the vendor's justification (shown on the consent page).
    pub requested: Vec<(Scope, String)>,
    /// What the region granted it: no token carries a data scope outside it.
    pub grant: Vec<Scope>,
    /// The purpose of use the region granted a backend service, if any: what it exports
    /// for, and what a patient's consent opts out of.
    pub purpose: Option<Purpose>,
    /// A confidential client's public keys (a JWK set): it authenticates with assertions
    /// they verify (`private_key_jwt`). `None`: a public client.
    pub jwks: Option<Value>,
}

impl Client {
    /// The granted part of `asked`: each data scope that lies within one the region granted.
    pub fn narrow(&self, asked: &[Scope]) -> Vec<Scope> {
        asked
            .iter()
            .filter(|scope| self.grant.iter().any(|granted| scope.within(granted)))
            .cloned()
            .collect()
    }

    /// What a user of `role` may get of `asked`: the region's grant, and only scopes of a
    /// context the role can hold (`user/` for clinicians; never `system/`).
    pub fn narrow_for(&self, asked: &[Scope], role: Role) -> Vec<Scope> {
        self.narrow(asked)
            .into_iter()
            .filter(|scope| match scope.context {
                ScopeContext::Patient => true,
                ScopeContext::User => role == Role::Clinician,
                ScopeContext::System => false,
            })
            .collect()
    }
}

/// The authorization (token family) an access token of the authorization server was issued
/// with: its `jti` is `<family>.<random>`.
pub fn token_family(claims: &crate::auth::Claims) -> Option<&str> {
    claims
        .jti
        .as_deref()
        .and_then(|jti| jti.split_once('.'))
        .map(|(family, _)| family)
}

/// How long a revoked authorization is remembered: past it, every access token issued with it
/// has expired anyway.
pub const REMEMBER_REVOKED: Duration = Duration::from_secs(3600);

/// The registered clients, by client id, and the authorizations revoked lately. Cheap to
/// clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_id: Arc<RwLock<HashMap<String, Arc<Client>>>>,
    /// Revoked authorizations (token families), with when this process learned of it.
    revoked: Arc<RwLock<HashMap<String, Instant>>>,
    /// Why no app's token is taken now, if none is: the store's revocation feed could not
    /// be renewed, so no app can be confirmed as not revoked (fail closed, as hosted apps).
    suspended: Arc<RwLock<Option<String>>>,
    /// Versions the store revoked (`publisher/app`, version): what was authorized under one
    /// never works again, whatever is installed later.
    revoked_versions: Arc<RwLock<HashSet<(String, String)>>>,
}

impl Clients {
    /// Registers `client`, replacing an earlier registration under its id. Its redirect URIs
    /// must be absolute URLs without a fragment (RFC 6749, section 3.1.2).
    pub fn register(&self, client: Client) -> Result<(), String> {
        for uri in &client.redirect_uris {
            match url::Url::parse(uri) {
                Ok(url) if url.fragment().is_none() && !url.cannot_be_a_base() => {}
                _ => {
                    return Err(format!(
                        "redirect URI '{uri}' of {} is not an absolute URL without a fragment",
                        client.client_id
                    ));
                }
            }
        }
        self.by_id
            .write()
            .expect("clients poisoned")
            .insert(client.client_id.clone(), Arc::new(client));
        Ok(())
    }

    /// Removes `client_id`; returns whether it was registered.
    pub fn remove(&self, client_id: &str) -> bool {
        self.by_id
            .write()
            .expect("clients poisoned")
            .remove(client_id)
            .is_some()
    }

    /// Keeps only the clients `keep` says yes to; returns how many were removed.
    pub fn retain(&self, mut keep: impl FnMut(&Client) -> bool) -> usize {
        let mut by_id = self.by_id.write().expect("clients poisoned");
        let before = by_id.len();
        by_id.retain(|_, client| keep(client));
        before - by_id.len()
    }

    /// Every registered client.
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.by_id
            .read()
            .expect("clients poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Whether `origin` is the origin of a registered app's pages.
    pub fn serves_origin(&self, origin: &str) -> bool {
        self.by_id
            .read()
            .expect("clients poisoned")
            .values()
            .any(|client| client.origins.iter().any(|own| own == origin))
    }

    /// Records that the store revoked `app` (`publisher/app`) `version`.
    pub fn revoke_version(&self, app: &str, version: &str) {
        self.revoked_versions
            .write()
            .expect("revocations poisoned")
            .insert((app.to_owned(), version.to_owned()));
    }

    /// Whether the store revoked `app` `version`.
    pub fn is_version_revoked(&self, app: &str, version: &str) -> bool {
        self.revoked_versions
            .read()
            .expect("revocations poisoned")
            .contains(&(app.to_owned(), version.to_owned()))
    }

    /// Refuses every app's tokens for `reason` from now on, or (`None`) takes them again.
    pub fn suspend(&self, reason: Option<String>) {
        *self.suspended.write().expect("suspension poisoned") = reason;
    }

    /// Why every app's tokens are refused now, if they are.
    pub fn suspended(&self) -> Option<String> {
        self.suspended.read().expect("suspension poisoned").clone()
    }

    /// Revokes authorization `family`: its access tokens are refused from now on.
    pub fn revoke_family(&self, family: &str) {
        let mut revoked = self.revoked.write().expect("revocations poisoned");
        revoked.retain(|_, at| at.elapsed() < REMEMBER_REVOKED);
        revoked.insert(family.to_owned(), Instant::now());
    }

    /// Whether authorization `family` was revoked.
    pub fn is_revoked(&self, family: &str) -> bool {
        self.revoked
            .read()
            .expect("revocations poisoned")
            .contains_key(family)
    }

    /// The client `client_id`, if registered.
    pub fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        self.by_id
            .read()
            .expect("clients poisoned")
            .get(client_id)
            .cloned()
    }
}
