//! Bearer tokens: EdDSA-signed JWTs from a configured issuer, or tokens of the identity
//! providers it trusts besides ([`issuers`]), turned into a [`Principal`].
//! A development issuer key is generated in the data directory so `healthcloud token` can mint
//! tokens for demos and tests. Every service learns its caller the same way: the
//! [`Principal`] extractor, with the [`TokenVerifier`] its state provides (`FromRef`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::scope::{Scope, ScopeError};

pub mod issuers;
pub mod keys;
pub mod smart;

use issuers::TrustedIssuers;

/// The issuer name of development tokens.
pub const DEV_ISSUER: &str = "healthcloud-dev-issuer";

/// What a signed-in user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A health professional working in a region.
    Clinician,
    /// A patient using an app about their own care.
    Patient,
    /// A citizen looking at their own record, audit log and consent.
    Citizen,
    /// Administers one region's installs and grants.
    RegionAdmin,
    /// Administers the app store.
    StoreAdmin,
    /// An app vendor.
    Publisher,
    /// Reads every patient's audit trail and consents (and nothing else), to investigate
    /// accesses; each of those reads is audited in turn.
    SecurityOfficer,
    /// Runs the platform: configures the upstream FHIR sources and watches their health
    /// (`/admin/v1/sources`). No access to patient data.
    PlatformOperator,
    /// A backend service acting for itself, without a user (SMART Backend Services): the
    /// confidential app a region installed, with `system/` scopes within its grant. Only
    /// healthcloud's authorization server issues such tokens that reach data.
    System,
}

impl Role {
    /// Whether this role only ever reaches the user's own patient compartment.
    pub fn is_own_record_only(self) -> bool {
        matches!(self, Role::Patient | Role::Citizen)
    }

    /// Whether this role is health-care workforce reaching patients other than the user:
    /// its tokens must name who acts (an organization and/or a practitioner), since consent
    /// opt-outs name those.
    pub fn is_workforce(self) -> bool {
        matches!(self, Role::Clinician | Role::SecurityOfficer)
    }

    /// The name used in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Patient => "patient",
            Role::Citizen => "citizen",
            Role::RegionAdmin => "region-admin",
            Role::StoreAdmin => "store-admin",
            Role::Publisher => "publisher",
            Role::SecurityOfficer => "security-officer",
            Role::PlatformOperator => "platform-operator",
            Role::System => "system",
        }
    }

    /// The data scopes a development token of this role gets when none are given.
    pub fn default_scopes(self) -> &'static str {
        match self {
            Role::Clinician => "user/*.rs user/Observation.c",
            // A wildcard never reaches the audit trail or consents: their own are named.
            Role::Patient | Role::Citizen => {
                "patient/*.rs patient/AuditEvent.rs patient/Consent.cruds patient/Observation.c"
            }
            Role::SecurityOfficer => "user/AuditEvent.rs user/Consent.rs",
            Role::RegionAdmin
            | Role::StoreAdmin
            | Role::Publisher
            | Role::PlatformOperator
            | Role::System => "",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!(
                "unknown role '{s}': use clinician, patient, citizen, region-admin, store-admin, publisher, security-officer, platform-operator or system"
            )
        })
    }
}

/// The claims of a healthcloud access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The user's role.
    pub role: Role,
    /// Space-separated SMART scopes.
    #[serde(default)]
    pub scope: String,
    /// The patient in context (SMART launch context); for patients and citizens, themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The region the user works in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The user's FHIR resource, e.g. `Practitioner/123`.
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The organization the user acts for (an `Organization` id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// When `fhirUser` is a `PractitionerRole`: the practitioner it is a role of (a
    /// `Practitioner` id). PractitionerRoles are not stored here, so the token carries what
    /// consent must match: a denial of the practitioner (or of `org`) covers their roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<String>,
    /// Who the token is for (`aud`, one value or several): the FHIR API's base URL, the app
    /// cloud (`…/apps/`), one app's path (a launch), or a launcher page. Each service accepts
    /// only tokens naming it.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        serialize_with = "single_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aud: Vec<String>,
    /// The SMART app the token was issued to (`client_id`, RFC 9068): set by healthcloud's
    /// authorization server only, whose clients are the apps regions installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The encounter in context (SMART launch context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// The token's own id (`jti`): what a revocation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519, section 4.1.3).
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

fn single_or_list<S: serde::Serializer>(aud: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => serializer.serialize_str(one),
        many => many.serialize(serializer),
    }
}

/// The audience of the FHIR API served under `public_url`: its base URL, `…/fhir/r4`.
pub fn fhir_audience(public_url: &str) -> String {
    format!("{}/fhir/r4", public_url.trim_end_matches('/'))
}

/// The audience of the app cloud under `public_url` (every app it serves): `…/apps/`.
pub fn apps_audience(public_url: &str) -> String {
    format!("{}/apps/", public_url.trim_end_matches('/'))
}

/// The audience of one install under `public_url`, its path `…/apps/{region}/{app_id}/`: what a
/// launch token for that app names, so it opens that app and nothing else.
pub fn app_audience(public_url: &str, region: &str, app_id: &str) -> String {
    format!("{}{region}/{app_id}/", apps_audience(public_url))
}

/// A verified user.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The verified claims.
    pub claims: Claims,
    /// The parsed data scopes.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Refuses the token unless its `aud` names one of `accepted` (compared exactly, as RFC
    /// 7519 says): a token is for the service it was issued for, never for another one that
    /// trusts the same issuer.
    pub fn check_audience(&self, accepted: &[&str]) -> Result<(), AuthError> {
        if self
            .claims
            .aud
            .iter()
            .any(|aud| accepted.contains(&aud.as_str()))
        {
            return Ok(());
        }
        Err(AuthError::WrongAudience {
            accepted: accepted.first().copied().unwrap_or_default().to_owned(),
            got: if self.claims.aud.is_empty() {
                "none".to_owned()
            } else {
                self.claims.aud.join(", ")
            },
        })
    }
}

/// Why a token was refused (always 401).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error(
        "missing bearer token: send 'Authorization: Bearer <token>' (mint one with 'healthcloud token')"
    )]
    Missing,
    /// Past its `exp`.
    #[error("the token has expired: get a new one")]
    Expired,
    /// Issued by someone else.
    #[error("the token was not issued by this server's issuer")]
    WrongIssuer,
    /// Signature or structure invalid.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A scope in the token is malformed.
    #[error("invalid token: {0}")]
    Scope(#[from] ScopeError),
    /// A token of healthcloud's authorization server whose app was removed from the region
    /// (or revoked), or whose authorization was revoked.
    #[error(
        "the token's authorization was revoked, or its app is no longer installed in the region: authorize the app again"
    )]
    Revoked,
    /// A token of healthcloud's authorization server while no app can be confirmed as not
    /// revoked (the store's revocation feed could not be renewed): refused until it is.
    #[error("no app's token is taken now: {0}")]
    Suspended(String),
    /// The token is for another service (or names none).
    #[error(
        "the token is not for this service: its audience (aud) is {got}, and this service accepts only tokens for {accepted} (mint one with 'healthcloud token --audience {accepted}')"
    )]
    WrongAudience {
        /// The audience this service accepts.
        accepted: String,
        /// The token's audiences.
        got: String,
    },
}

/// Verifies tokens from one issuer. Cheap to clone (shared parts only): each request's
/// extractor takes it from the service's state.
#[derive(Clone)]
pub struct TokenVerifier {
    issuer: Arc<str>,
    key: Arc<DecodingKey>,
    /// Tokens verified already, by their exact text: the same bytes verify the same way, so
    /// a repeated token costs a lookup instead of a signature check. Expiry is checked on
    /// every use. Bounded: emptied when full.
    verified: Arc<Mutex<HashMap<String, Arc<Principal>>>>,
    /// Other issuers whose tokens are accepted too, verified through their published keys.
    trusted: TrustedIssuers,
    /// healthcloud's authorization server, when it runs: its issuer URL, its keys and its
    /// clients, in this process.
    authorization: Option<Arc<LocalAuthorization>>,
}

/// healthcloud's own authorization server, as a verifier trusts it.
#[derive(Debug)]
struct LocalAuthorization {
    issuer: String,
    keys: keys::SigningKeys,
    clients: smart::Clients,
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// How many verified tokens are remembered.
const VERIFIED_TOKENS: usize = 4096;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier for tokens from `issuer`, signed by the Ed25519 public key in SPKI PEM form.
    pub fn from_public_pem(issuer: &str, pem: &[u8]) -> anyhow::Result<Self> {
        Ok(TokenVerifier {
            issuer: issuer.into(),
            key: Arc::new(
                DecodingKey::from_ed_pem(pem)
                    .map_err(|e| anyhow::anyhow!("not an Ed25519 public key in PEM form: {e}"))?,
            ),
            verified: Default::default(),
            trusted: TrustedIssuers::default(),
            authorization: None,
        })
    }

    /// This verifier, accepting the tokens healthcloud's authorization server issues as
    /// `issuer`, signed with one of `keys`, to one of `clients`: only while the app is
    /// installed and its authorization not revoked.
    pub fn with_authorization_server(
        mut self,
        issuer: &str,
        keys: keys::SigningKeys,
        clients: smart::Clients,
    ) -> Self {
        self.authorization = Some(Arc::new(LocalAuthorization {
            issuer: issuer.to_owned(),
            keys,
            clients,
        }));
        self
    }

    /// The SMART web apps healthcloud's authorization server issues tokens to, when this
    /// verifier takes its tokens.
    pub fn smart_clients(&self) -> Option<&smart::Clients> {
        self.authorization.as_ref().map(|local| &local.clients)
    }

    /// The installed app a token of the authorization server was issued to: `Ok(None)` for
    /// other tokens, refused when the app is no longer installed (it was removed after the
    /// token was verified): such a token never acts as a plain user's.
    pub fn smart_client(
        &self,
        principal: &Principal,
    ) -> Result<Option<Arc<smart::Client>>, AuthError> {
        let Some(local) = &self.authorization else {
            return Ok(None);
        };
        if principal.claims.iss != local.issuer {
            return Ok(None);
        }
        principal
            .claims
            .client_id
            .as_deref()
            .and_then(|client_id| local.clients.get(client_id))
            .map(Some)
            .ok_or(AuthError::Revoked)
    }

    /// Whether what `principal` was authorized under still holds, its expiry aside: for a
    /// token of healthcloud's authorization server, that its app is installed as it was when
    /// the token was issued and the authorization was not revoked. Other issuers' tokens have
    /// nothing more to check. (What keeps acting on a token's behalf after it expires, a
    /// subscription, asks this before each act.)
    pub fn still_authorized(&self, principal: &Principal) -> Result<(), AuthError> {
        match &self.authorization {
            Some(local) if principal.claims.iss == local.issuer => {
                local.still_authorized(principal)
            }
            _ => Ok(()),
        }
    }

    /// This verifier, accepting tokens of `trusted` too.
    pub fn trusting(mut self, trusted: TrustedIssuers) -> Self {
        self.trusted = trusted;
        self
    }

    /// The issuer whose tokens this accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` and returns who it is.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_shared(token).map(Arc::unwrap_or_clone)
    }

    /// Verifies `token`, of this verifier's issuer or of a trusted one (whose keys may have
    /// to be fetched first), and returns who it is, shared with the verifier's memory of it.
    pub async fn verify_request(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        // A token seen before costs a lookup, whoever issued it.
        if let Some(known) = self.remembered(token, |iss| {
            iss == &*self.issuer || self.trusted.get(iss).is_some() || self.is_authorization(iss)
        }) {
            return known;
        }
        let claimed = issuers::claimed_issuer(token);
        if let (Some(iss), Some(local)) = (&claimed, &self.authorization)
            && self.is_authorization(iss)
        {
            let principal = Arc::new(verify_with_keys(token, iss, &local.keys)?);
            local.still_authorized(&principal)?;
            self.remember(token, &principal);
            return Ok(principal);
        }
        let external = match claimed {
            Some(iss) if *iss != *self.issuer => self.trusted.get(&iss).cloned(),
            _ => None,
        };
        let Some(external) = external else {
            return self.verify_shared(token);
        };
        let principal = Arc::new(external.verify(token).await?);
        self.remember(token, &principal);
        Ok(principal)
    }

    /// Verifies `token` of this verifier's own issuer and returns who it is, shared with the
    /// verifier's memory of it: no copy for a token seen before.
    pub fn verify_shared(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        if let Some(known) = self.remembered(token, |iss| iss == &*self.issuer) {
            return known;
        }
        let principal = Arc::new(self.verify_signed(token)?);
        self.remember(token, &principal);
        Ok(principal)
    }

    /// The verified token `token`, if it was verified before as the token of an issuer
    /// `accepted` here (a clone that trusts other issuers shares this memory): still valid, or
    /// expired now.
    fn remembered(
        &self,
        token: &str,
        accepted: impl Fn(&str) -> bool,
    ) -> Option<Result<Arc<Principal>, AuthError>> {
        let now = chrono::Utc::now().timestamp();
        let known = self
            .verified
            .lock()
            .expect("token cache poisoned")
            .get(token)
            .filter(|principal| accepted(&principal.claims.iss))
            .cloned();
        // A token of the authorization server whose key was retired since is checked again
        // (and refused); its app and authorization are checked on every use.
        let known = known.filter(|principal| match &self.authorization {
            Some(local) if local.issuer == principal.claims.iss => {
                jsonwebtoken::decode_header(token)
                    .ok()
                    .and_then(|header| header.kid)
                    .is_some_and(|kid| local.keys.decoding_key(&kid).is_some())
            }
            _ => true,
        });
        if let (Some(principal), Some(local)) = (&known, &self.authorization)
            && local.issuer == principal.claims.iss
            && let Err(refused) = local.still_authorized(principal)
        {
            return Some(Err(refused));
        }
        if let Some(principal) = known {
            // Expiry as the signature check judges it (with its leeway); a `nbf` it accepted
            // stays satisfied, since time only moves on.
            if principal.claims.exp.saturating_add(LEEWAY_SECS as i64) <= now {
                self.verified
                    .lock()
                    .expect("token cache poisoned")
                    .remove(token);
                return Some(Err(AuthError::Expired));
            }
            return Some(Ok(principal));
        }
        None
    }

    fn is_authorization(&self, iss: &str) -> bool {
        self.authorization
            .as_ref()
            .is_some_and(|local| local.issuer == iss)
    }

    fn remember(&self, token: &str, principal: &Arc<Principal>) {
        let mut verified = self.verified.lock().expect("token cache poisoned");
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_owned(), principal.clone());
    }

    fn verify_signed(&self, token: &str) -> Result<Principal, AuthError> {
        let data = decode::<Claims>(token, &self.key, validation(Algorithm::EdDSA))?;
        // Checked here rather than by jsonwebtoken so a foreign issuer gets its own message.
        if data.claims.iss != *self.issuer {
            return Err(AuthError::WrongIssuer);
        }
        let scopes = Scope::parse_list(&data.claims.scope)?;
        Ok(Principal {
            claims: data.claims,
            scopes,
        })
    }
}

impl LocalAuthorization {
    /// Refuses a token whose app is no longer installed (in the token's region) or whose
    /// authorization was revoked.
    fn still_authorized(&self, principal: &Principal) -> Result<(), AuthError> {
        if let Some(reason) = self.clients.suspended() {
            return Err(AuthError::Suspended(reason));
        }
        let claims = &principal.claims;
        let installed = claims
            .client_id
            .as_deref()
            .and_then(|client_id| self.clients.get(client_id))
            .is_some_and(|client| {
                claims.region.as_deref() == Some(client.region.as_str())
                    // Issued under what the install is now.
                    && claims.iat >= client.changed_at
            });
        let revoked =
            smart::token_family(claims).is_none_or(|family| self.clients.is_revoked(family));
        if !installed || revoked {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }
}

/// A token of healthcloud's authorization server `issuer`: ES256 with one of `keys`, named
/// by its `kid`.
fn verify_with_keys(
    token: &str,
    issuer: &str,
    keys: &keys::SigningKeys,
) -> Result<Principal, AuthError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| AuthError::Invalid(format!("{:?}", e.kind())))?;
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.decoding_key(kid))
        .ok_or_else(|| {
            AuthError::Invalid(format!(
                "the token names no key {issuer} signs with (a retired key, or none)"
            ))
        })?;
    let mut validation = validation(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    let data = decode::<Claims>(token, &key, validation)?;
    let scopes = Scope::parse_list(&data.claims.scope)?;
    Ok(Principal {
        claims: data.claims,
        scopes,
    })
}

/// How every token is checked, whoever issued it: signed with `alg` only, `exp` (and `nbf`)
/// within [`LEEWAY_SECS`], `exp`, `iss` and `sub` present. The audience is not checked here:
/// each service checks it against its own ([`Principal::check_audience`]), so a token that
/// names one must not be refused here for naming it.
fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.validate_aud = false;
    validation
}

/// `token`'s claims, if `key` signed it and `validation` accepts it.
fn decode<C: serde::de::DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    validation: Validation,
) -> Result<jsonwebtoken::TokenData<C>, AuthError> {
    jsonwebtoken::decode::<C>(token, key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        kind => AuthError::Invalid(format!("{kind:?}")),
    })
}

/// An issuer's signing key: the development issuer, or a test's own.
#[derive(Clone)]
pub struct TokenIssuer {
    issuer: String,
    signing: SigningKey,
    /// The audience of tokens whose request names none (see [`TokenIssuer::with_audience`]).
    audience: Vec<String>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// What a minted token says (see [`TokenIssuer::mint`]).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The user's id (defaults to the role name).
    pub sub: Option<String>,
    /// Scopes (defaults to [`Role::default_scopes`]).
    pub scope: Option<String>,
    /// Patient in context.
    pub patient: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// `fhirUser` claim.
    pub fhir_user: Option<String>,
    /// Organization.
    pub org: Option<String>,
    /// The practitioner of a `PractitionerRole` `fhir_user`.
    pub practitioner: Option<String>,
    /// Who the token is for (default: the issuer's [`TokenIssuer::with_audience`]).
    pub audience: Vec<String>,
    /// Lifetime in seconds (default one hour).
    pub ttl_secs: Option<i64>,
}

impl TokenIssuer {
    /// A fresh random issuer key (for tests and for creating the development key).
    pub fn generate(issuer: &str) -> Self {
        TokenIssuer {
            issuer: issuer.to_owned(),
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
            audience: Vec::new(),
        }
    }

    /// This issuer, minting tokens for `audience` when a request names none (a deployment's
    /// FHIR API and app cloud, say).
    pub fn with_audience(mut self, audience: Vec<String>) -> Self {
        self.audience = audience;
        self
    }

    /// Loads the development issuer key from `data_dir`, creating it (mode 0600) on first use.
    pub fn dev(data_dir: &Path) -> anyhow::Result<Self> {
        let path = dev_key_path(data_dir);
        if let Ok(pem) = std::fs::read_to_string(&path) {
            let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                anyhow::anyhow!("{} is not an Ed25519 private key: {e}", path.display())
            })?;
            return Ok(TokenIssuer {
                issuer: DEV_ISSUER.to_owned(),
                signing,
                audience: Vec::new(),
            });
        }
        std::fs::create_dir_all(data_dir)?;
        let issuer = TokenIssuer::generate(DEV_ISSUER);
        let pem = issuer
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode the issuer key: {e}"))?;
        write_private(&path, pem.as_bytes())?;
        Ok(issuer)
    }

    /// The verifier matching this issuer.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_public_pem(&self.issuer, self.public_pem().as_bytes())
            .expect("a freshly encoded Ed25519 public key parses")
    }

    /// The public key in SPKI PEM form.
    pub fn public_pem(&self) -> String {
        self.signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key encodes")
    }

    /// The raw public key bytes (for publishing a JWK).
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs arbitrary claims (tests use this to forge wrong-issuer or expired tokens).
    pub fn sign(&self, claims: &Claims) -> String {
        let der = self
            .signing
            .to_pkcs8_der()
            .expect("an Ed25519 private key encodes");
        let key = EncodingKey::from_ed_der(der.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key)
            .expect("signing with a valid Ed25519 key succeeds")
    }

    /// Mints a token for `role`. Patients and citizens must name their patient; a workforce
    /// token names its actor, by default the practitioner with the user's id
    /// (`fhirUser: Practitioner/<sub>`); every token names its audience.
    pub fn mint(&self, role: Role, request: TokenRequest) -> Result<String, String> {
        let scope = request
            .scope
            .unwrap_or_else(|| role.default_scopes().to_owned());
        Scope::parse_list(&scope).map_err(|e| e.to_string())?;
        if role.is_own_record_only() && request.patient.is_none() {
            return Err(format!(
                "a {} token needs --patient <Patient id>: it only ever reaches that patient's record",
                role.as_str()
            ));
        }
        let sub = request.sub.unwrap_or_else(|| role.as_str().to_owned());
        let mut fhir_user = request.fhir_user;
        if role.is_workforce() && fhir_user.is_none() && request.org.is_none() {
            if !is_fhir_id(&sub) {
                return Err(format!(
                    "a {} token needs its actor: --fhir-user Practitioner/<id> and/or --org <Organization id> (the user id '{sub}' is no FHIR id to default to)",
                    role.as_str()
                ));
            }
            fhir_user = Some(format!("Practitioner/{sub}"));
        }
        let audience = if request.audience.is_empty() {
            self.audience.clone()
        } else {
            request.audience
        };
        if audience.is_empty() {
            return Err(
                "a token needs an audience: --audience <the FHIR API's base URL, or an app's URL>"
                    .to_owned(),
            );
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub,
            exp: now + request.ttl_secs.unwrap_or(3600),
            iat: now,
            role,
            scope,
            patient: request.patient,
            region: request.region,
            fhir_user,
            org: request.org,
            practitioner: request.practitioner,
            aud: audience,
            client_id: None,
            encounter: None,
            jti: None,
        };
        Ok(self.sign(&claims))
    }
}

/// Whether `id` is a FHIR resource id (`[A-Za-z0-9\-\.]{1,64}`): what a token's `patient`,
/// `fhirUser` and `org` name, and the FHIR API accepts in a URL.
pub fn is_fhir_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The token of a request's `Authorization: Bearer` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(AuthError::Missing)
}

/// The caller of a request: its bearer token, verified by the [`TokenVerifier`] of the
/// service's state. A service renders the refusal in its own error body (a FHIR
/// OperationOutcome, the JSON [`ErrorBody`](crate::http::ErrorBody)); taken as
/// `Result<Principal, AuthError>`, it lets a handler decide when a missing token counts.
impl<S> FromRequestParts<S> for Principal
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let token = bearer_token(&parts.headers)?;
        let principal = TokenVerifier::from_ref(state).verify_request(token).await?;
        Ok(Arc::unwrap_or_clone(principal))
    }
}

/// A refusal on its own: 401 with the JSON [`ErrorBody`](crate::http::ErrorBody) and a
/// bearer challenge (RFC 6750: no error code when the request carried no credentials).
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let challenge = match self {
            AuthError::Missing => "Bearer realm=\"healthcloud\"",
            _ => "Bearer realm=\"healthcloud\", error=\"invalid_token\"",
        };
        let body = crate::http::ErrorBody::new(self.to_string());
        let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

/// Where the development issuer's private key lives.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-issuer-key.pem")
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIENCE: &str = "http://fhir.test/fhir/r4";

    fn test_issuer() -> TokenIssuer {
        TokenIssuer::generate(DEV_ISSUER).with_audience(vec![AUDIENCE.into()])
    }

    #[test]
    fn a_remembered_token_is_only_ever_its_exact_bytes_and_still_expires() {
        let issuer = test_issuer();
        let verifier = issuer.verifier();
        let token = issuer
            .mint(Role::Clinician, TokenRequest::default())
            .unwrap();
        let first = verifier.verify(&token).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), first, "remembered");
        // One character inside the signature changed: checked, and refused.
        let mut forged = token.clone().into_bytes();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(verifier.verify(&forged).is_err());
        // A remembered token past its expiry (and the leeway) is refused.
        let mut claims = first.claims.clone();
        claims.exp = chrono::Utc::now().timestamp() - 1;
        verifier.verified.lock().unwrap().insert(
            token.clone(),
            Arc::new(Principal {
                claims,
                scopes: first.scopes.clone(),
            }),
        );
        assert!(verifier.verify(&token).is_ok(), "within the leeway");
        let mut claims = first.claims.clone();
        claims.exp = chrono::Utc::now().timestamp() - LEEWAY_SECS as i64 - 1;
        verifier.verified.lock().unwrap().insert(
            token.clone(),
            Arc::new(Principal {
                claims,
                scopes: first.scopes,
            }),
        );
        assert_eq!(verifier.verify(&token), Err(AuthError::Expired));
    }

    #[test]
    fn minted_tokens_verify_and_carry_context() {
        let issuer = test_issuer();
        let token = issuer
            .mint(
                Role::Patient,
                TokenRequest {
                    patient: Some("p1".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let principal = issuer.verifier().verify(&token).unwrap();
        assert_eq!(principal.claims.role, Role::Patient);
        assert_eq!(principal.claims.patient.as_deref(), Some("p1"));
        assert_eq!(principal.scopes.len(), 4);
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let issuer = test_issuer();
        let verifier = issuer.verifier();
        let request = || TokenRequest {
            patient: Some("p1".into()),
            ..Default::default()
        };

        let forger = test_issuer();
        let forged = forger.mint(Role::Citizen, request()).unwrap();
        assert!(matches!(
            verifier.verify(&forged),
            Err(AuthError::Invalid(_))
        ));

        let expired = issuer
            .mint(
                Role::Citizen,
                TokenRequest {
                    ttl_secs: Some(-3600),
                    ..request()
                },
            )
            .unwrap();
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));

        let foreign = TokenIssuer {
            issuer: "someone-else".into(),
            ..issuer.clone()
        };
        let token = foreign.mint(Role::Citizen, request()).unwrap();
        assert_eq!(verifier.verify(&token), Err(AuthError::WrongIssuer));

        let mut tampered = issuer.mint(Role::Citizen, request()).unwrap();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(verifier.verify(&tampered).is_err());
    }

    #[test]
    fn patient_tokens_need_a_patient_and_bad_scopes_are_refused() {
        let issuer = test_issuer();
        assert!(issuer.mint(Role::Citizen, TokenRequest::default()).is_err());
        let bad = TokenRequest {
            scope: Some("user/Observation.sr".into()),
            ..Default::default()
        };
        assert!(
            issuer
                .mint(Role::Clinician, bad)
                .unwrap_err()
                .contains("malformed scope")
        );
    }

    #[test]
    fn dev_key_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenIssuer::dev(dir.path()).unwrap();
        let second = TokenIssuer::dev(dir.path()).unwrap();
        assert_eq!(first.public_pem(), second.public_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dev_key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

#[cfg(test)]
mod audience_and_actor_tests {
    use super::*;

    #[test]
    fn audiences_are_one_string_or_a_list_and_checked_exactly() {
        let issuer = TokenIssuer::generate(DEV_ISSUER);
        let verifier = issuer.verifier();
        let one = issuer
            .mint(
                Role::Citizen,
                TokenRequest {
                    patient: Some("p1".into()),
                    audience: vec!["https://x.test/fhir/r4".into()],
                    ..Default::default()
                },
            )
            .unwrap();
        let principal = verifier.verify(&one).unwrap();
        assert_eq!(principal.claims.aud, ["https://x.test/fhir/r4"]);
        assert!(
            principal
                .check_audience(&["https://x.test/fhir/r4"])
                .is_ok()
        );
        let refused = principal
            .check_audience(&["https://x.test/fhir/r4/"])
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("--audience https://x.test/fhir/r4/"),
            "{refused}"
        );
        // A token a real identity provider issued with a list of audiences verifies.
        let mut claims = principal.claims.clone();
        claims.aud = vec!["https://a.test/".into(), "https://x.test/fhir/r4".into()];
        let listed = issuer.sign(&claims);
        let text = String::from_utf8(
            base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                listed.split('.').nth(1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(
            text.contains(r#""aud":["https://a.test/","https://x.test/fhir/r4"]"#),
            "{text}"
        );
        let principal = verifier.verify(&listed).unwrap();
        assert!(
            principal
                .check_audience(&["https://x.test/fhir/r4"])
                .is_ok()
        );
        // No audience at all: refused by every service.
        claims.aud.clear();
        let none = verifier.verify(&issuer.sign(&claims)).unwrap();
        let refused = none
            .check_audience(&["https://x.test/fhir/r4"])
            .unwrap_err();
        assert!(
            refused.to_string().contains("audience (aud) is none"),
            "{refused}"
        );
    }

    #[test]
    fn minting_without_an_audience_is_refused() {
        let issuer = TokenIssuer::generate(DEV_ISSUER);
        let error = issuer
            .mint(Role::Clinician, TokenRequest::default())
            .unwrap_err();
        assert!(error.contains("--audience"), "{error}");
    }

    #[test]
    fn workforce_tokens_always_name_their_actor() {
        let issuer = TokenIssuer::generate(DEV_ISSUER).with_audience(vec!["a".into()]);
        let verifier = issuer.verifier();
        let default = issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    sub: Some("dr-hansen".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let claims = verifier.verify(&default).unwrap().claims;
        assert_eq!(claims.fhir_user.as_deref(), Some("Practitioner/dr-hansen"));
        let with_org = issuer
            .mint(
                Role::SecurityOfficer,
                TokenRequest {
                    org: Some("region-hovedstaden".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let claims = verifier.verify(&with_org).unwrap().claims;
        assert_eq!(claims.fhir_user, None);
        assert_eq!(claims.org.as_deref(), Some("region-hovedstaden"));
        let error = issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    sub: Some("dr hansen@example".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(error.contains("--fhir-user"), "{error}");
    }
}
