//! Tokens from other issuers: a region's identity provider signs its users' access tokens
//! with keys it publishes as a JWKS (RFC 7517). Each trusted issuer is named by its issuer
//! URL; its `jwks_uri` comes from its OpenID discovery document
//! (`<issuer>/.well-known/openid-configuration`), over https (http only for a provider on this
//! machine). Keys are fetched on first use, again when a token names a key not seen yet (at
//! most every [`REFETCH_AFTER`], so a flood of made-up key ids cannot make us hammer the
//! provider) and once they are [`KEYS_MAX_AGE`] old, so a key the provider withdrew stops being
//! accepted. A key of another kind in the set (an encryption key, another curve) is skipped on
//! its own. Only RS256, ES256 and EdDSA signatures are accepted, each only with a key of its
//! own kind (no `none`, no HMAC with a public key).
//!
//! An external token's claims become healthcloud's [`Claims`]: `sub`, `exp`, `aud`, `scope`,
//! `patient`, `fhirUser`, `region`, `org` and `practitioner` as they are. The role comes from
//! the issuer's role claim (default `role`; one name: clinician, patient or citizen, since
//! administrators' tokens come from healthcloud's own issuer), or else from the scopes and the
//! user: `patient/` scopes only with a `patient` (and, if named, that patient as `fhirUser`)
//! are the patient's own, `user/` scopes with a Practitioner as `fhirUser` a clinician's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::{AuthError, Claims, Principal, Role, decode, validation};
use crate::scope::{Scope, ScopeContext};

/// The soonest a trusted issuer's keys are fetched again for a key id not seen yet.
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);

/// How long an issuer's keys are used before they are fetched again, so a key it withdrew
/// (after a compromise) stops being accepted even while tokens name only known keys.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

/// How long fetching an issuer's discovery document or keys may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(5);

/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: u64 = 256 * 1024;

/// One trusted issuer: where its keys are, which claim names the role, and its keys as last
/// fetched.
#[derive(Debug)]
pub struct TrustedIssuer {
    issuer: String,
    claims: ClaimNames,
    refetch_after: Duration,
    max_age: Duration,
    keys: std::sync::RwLock<Keys>,
    /// Held while the keys are fetched, so one fetch serves every request waiting for it.
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

/// An issuer's keys as last fetched.
#[derive(Default)]
struct Keys {
    by_id: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("ids", &self.by_id.keys().collect::<Vec<_>>())
            .field("fetched", &self.fetched)
            .finish()
    }
}

/// The issuers trusted besides a service's own, by issuer URL.
#[derive(Debug, Clone)]
pub struct TrustedIssuers {
    by_issuer: Arc<HashMap<String, Arc<TrustedIssuer>>>,
    refetch_after: Duration,
    max_age: Duration,
}

impl Default for TrustedIssuers {
    fn default() -> Self {
        TrustedIssuers {
            by_issuer: Default::default(),
            refetch_after: REFETCH_AFTER,
            max_age: KEYS_MAX_AGE,
        }
    }
}

impl TrustedIssuers {
    /// Trusts `issuer` (its issuer URL, exactly as its tokens' `iss`), taking the role from
    /// `role_claim`.
    pub fn with(self, issuer: &str, role_claim: &str) -> anyhow::Result<Self> {
        self.with_claims(
            issuer,
            ClaimNames {
                role: role_claim.to_owned(),
                ..ClaimNames::default()
            },
        )
    }

    /// Trusts `issuer`, reading each of healthcloud's claims from the claim `claims` names.
    pub fn with_claims(mut self, issuer: &str, claims: ClaimNames) -> anyhow::Result<Self> {
        let url = url::Url::parse(issuer)
            .map_err(|e| anyhow::anyhow!("'{issuer}' is not an issuer URL: {e}"))?;
        anyhow::ensure!(
            secure(&url),
            "'{issuer}' is not an issuer URL healthcloud can trust: it must be https (http only \
             on loopback), since its keys decide who may read patients' data"
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_DEADLINE)
            .build()?;
        let mut by_issuer = (*self.by_issuer).clone();
        by_issuer.insert(
            issuer.to_owned(),
            Arc::new(TrustedIssuer {
                issuer: issuer.to_owned(),
                claims,
                refetch_after: self.refetch_after,
                max_age: self.max_age,
                keys: Default::default(),
                fetching: Default::default(),
                http,
            }),
        );
        self.by_issuer = Arc::new(by_issuer);
        Ok(self)
    }

    /// Issuers trusted from now on fetch their keys again for an unknown key id once
    /// `after` has passed since the last fetch (default [`REFETCH_AFTER`]).
    pub fn refetch_after(mut self, after: Duration) -> Self {
        self.refetch_after = after;
        self
    }

    /// Issuers trusted from now on use their keys for at most `max_age` before fetching them
    /// again (default [`KEYS_MAX_AGE`]).
    pub fn keys_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The trusted issuer `iss`, if it is one.
    pub fn get(&self, iss: &str) -> Option<&Arc<TrustedIssuer>> {
        self.by_issuer.get(iss)
    }
}

impl TrustedIssuer {
    /// Verifies `token`, which says it is this issuer's, and maps its claims.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_with_claims(token)
            .await
            .map(|(principal, _)| principal)
    }

    /// Verifies `token` as [`TrustedIssuer::verify`] does, returning its claims as they are
    /// besides (an ID token's `nonce` and `aud`, which its relying party checks).
    pub async fn verify_with_claims(
        &self,
        token: &str,
    ) -> Result<(Principal, serde_json::Map<String, Value>), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("{:?}", e.kind())))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(AuthError::Invalid(format!(
                "tokens of {} must be signed with RS256, ES256 or EdDSA, not {:?}",
                self.issuer, header.alg
            )));
        }
        let kid = header.kid.as_deref().ok_or_else(|| {
            AuthError::Invalid(format!("the token names no key (kid) of {}", self.issuer))
        })?;
        let (key, alg) = self.key(kid).await?;
        if header.alg != alg {
            return Err(AuthError::Invalid(format!(
                "key '{kid}' of {} signs with {alg:?}, not {:?}",
                self.issuer, header.alg
            )));
        }
        let mut validation = validation(alg);
        validation.set_issuer(&[&self.issuer]);
        let data = decode::<serde_json::Map<String, Value>>(token, &key, validation)?;
        let principal = self.principal(&data.claims)?;
        Ok((principal, data.claims))
    }

    /// The key `kid`: from the keys as last fetched, else fetched now (unless they were
    /// fetched moments ago).
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        let fresh = |keys: &Keys| keys.fetched.is_some_and(|at| at.elapsed() < self.max_age);
        // Known keys, fetched lately, never wait for a fetch in progress.
        {
            let keys = self.keys.read().expect("keys poisoned");
            if let Some(found) = keys.by_id.get(kid)
                && fresh(&keys)
            {
                return Ok(found.clone());
            }
        }
        let _fetching = self.fetching.lock().await;
        let missing = || AuthError::Invalid(format!("{} publishes no key '{kid}'", self.issuer));
        let stale = {
            // Fetched by another request meanwhile, or moments ago.
            let keys = self.keys.read().expect("keys poisoned");
            match keys.by_id.get(kid) {
                Some(found) if fresh(&keys) => return Ok(found.clone()),
                Some(found) => Some(found.clone()),
                None if keys
                    .fetched
                    .is_some_and(|at| at.elapsed() < self.refetch_after) =>
                {
                    return Err(missing());
                }
                None => None,
            }
        };
        let fetched = self.fetch_keys().await;
        let mut keys = self.keys.write().expect("keys poisoned");
        keys.fetched = Some(Instant::now());
        match fetched {
            Ok(by_id) => keys.by_id = by_id,
            Err(e) => {
                tracing::warn!(issuer = self.issuer, error = %e, "cannot fetch the issuer's keys");
                // A provider that cannot be reached leaves its keys as they were.
                return stale.ok_or_else(|| {
                    AuthError::Invalid(format!(
                        "the keys of {} cannot be fetched: {e}",
                        self.issuer
                    ))
                });
            }
        }
        keys.by_id.get(kid).cloned().ok_or_else(missing)
    }

    /// The issuer's signing keys now: its discovery document names where they are.
    async fn fetch_keys(&self) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let document: Value = self.get_json(&discovery).await?;
        anyhow::ensure!(
            document["issuer"] == self.issuer.as_str(),
            "its discovery document names another issuer ({})",
            document["issuer"]
        );
        let jwks_uri = document["jwks_uri"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("its discovery document has no jwks_uri"))?;
        // An https issuer's keys come over https; http only for a provider on this machine.
        let issuer_https = self.issuer.starts_with("https://");
        anyhow::ensure!(
            url::Url::parse(jwks_uri)
                .is_ok_and(|url| secure(&url) && (!issuer_https || url.scheme() == "https")),
            "its jwks_uri {jwks_uri} is not https (http only for a provider on this machine)"
        );
        let set = self.get_json(jwks_uri).await?;
        let listed = set["keys"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("its jwks_uri holds no JWK set"))?;
        // A key of a kind not used here (an encryption key, another curve) is skipped on its
        // own: it must not make the issuer's signing keys unusable.
        let parsed: Vec<Jwk> = listed
            .iter()
            .filter_map(|jwk| serde_json::from_value(jwk.clone()).ok())
            .collect();
        let mut keys = HashMap::new();
        for jwk in &parsed {
            let signs = jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|usage| *usage == jsonwebtoken::jwk::PublicKeyUse::Signature);
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                // Symmetric keys and other curves sign nothing we accept.
                _ => continue,
            };
            let verifies = jwk
                .common
                .key_operations
                .as_ref()
                .is_none_or(|ops| ops.contains(&jsonwebtoken::jwk::KeyOperations::Verify));
            let declared = jwk
                .common
                .key_algorithm
                .is_none_or(|declared| format!("{declared:?}") == format!("{alg:?}"));
            let (Some(kid), true) = (&jwk.common.key_id, signs && verifies && declared) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), (key, alg));
            }
        }
        Ok(keys)
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{url} cannot be reached: {}", e.without_url()))?;
        anyhow::ensure!(
            response.status().is_success(),
            "{url} answered {}",
            response.status()
        );
        let body = crate::http::read_limited(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("{url} sent no JSON: {e}"))
    }

    /// The external claims as healthcloud's.
    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Result<Principal, AuthError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let scope = text("scope").unwrap_or_default();
        let scopes = Scope::parse_list(&scope)?;
        let names = &self.claims;
        let patient = text(&names.patient);
        let fhir_user = text(&names.fhir_user);
        let role = match claims.get(&self.claims.role) {
            Some(Value::String(role)) => {
                let role = role.parse::<Role>().map_err(|_| {
                    AuthError::Invalid(format!(
                        "the token's {} claim '{role}' names no healthcloud role",
                        self.claims.role
                    ))
                })?;
                // Administrators are healthcloud's own issuer's to name.
                if !matches!(role, Role::Clinician | Role::Patient | Role::Citizen) {
                    return Err(AuthError::Invalid(format!(
                        "{} may not grant the role {}: administrators' tokens come from \
                         healthcloud's own issuer",
                        self.issuer,
                        role.as_str()
                    )));
                }
                role
            }
            Some(other) => {
                return Err(AuthError::Invalid(format!(
                    "the token's {} claim must be one role name, not {other}",
                    self.claims.role
                )));
            }
            // Without the claim: a patient's own token (only patient/ scopes, and the user, if
            // named, is that patient), or a practitioner's with user/ scopes.
            None if patient.is_some()
                && !scopes.is_empty()
                && scopes.iter().all(|s| s.context == ScopeContext::Patient)
                && fhir_user.as_ref().is_none_or(|user| {
                    Some(user.as_str())
                        == patient.as_ref().map(|p| format!("Patient/{p}")).as_deref()
                }) =>
            {
                Role::Patient
            }
            None if fhir_user.as_ref().is_some_and(|user| {
                user.starts_with("Practitioner/") || user.starts_with("PractitionerRole/")
            }) && scopes.iter().any(|s| s.context == ScopeContext::User) =>
            {
                Role::Clinician
            }
            None => {
                return Err(AuthError::Invalid(format!(
                    "the token of {} names no role: it needs a '{}' claim, or patient/ scopes \
                     with its patient, or user/ scopes with a Practitioner as fhirUser",
                    self.issuer, self.claims.role
                )));
            }
        };
        let aud = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: text("sub").unwrap_or_default(),
            exp: number("exp").unwrap_or_default(),
            iat: number("iat").unwrap_or_default(),
            role,
            scope,
            patient,
            region: text(&names.region),
            fhir_user,
            org: text(&names.org),
            practitioner: text(&names.practitioner),
            aud,
            // Another issuer's clients are not apps installed here.
            client_id: None,
            encounter: text("encounter"),
            jti: text("jti"),
        };
        Ok(Principal { claims, scopes })
    }
}

/// Which claim of another issuer's tokens carries each of healthcloud's: by default the
/// same names (`role`, `fhirUser`, `patient`, `org`, `practitioner`, `region`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The user's role (clinician, patient or citizen).
    pub role: String,
    /// The user's FHIR resource.
    pub fhir_user: String,
    /// A patient's own record.
    pub patient: String,
    /// The organization the user acts for.
    pub org: String,
    /// The practitioner of a `PractitionerRole` user.
    pub practitioner: String,
    /// The region the user works in.
    pub region: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            role: "role".into(),
            fhir_user: "fhirUser".into(),
            patient: "patient".into(),
            org: "org".into(),
            practitioner: "practitioner".into(),
            region: "region".into(),
        }
    }
}

impl ClaimNames {
    /// These names with `mapping` applied: each `NAME=CLAIM` reads healthcloud's `NAME`
    /// (role, fhirUser, patient, org, practitioner or region) from the claim `CLAIM`.
    pub fn mapped(mut self, mapping: &[String]) -> Result<Self, String> {
        for entry in mapping {
            let Some((name, claim)) = entry.split_once('=').filter(|(_, claim)| !claim.is_empty())
            else {
                return Err(format!(
                    "'{entry}' is not NAME=CLAIM (e.g. org=hospital_org)"
                ));
            };
            let slot = match name {
                "role" => &mut self.role,
                "fhirUser" => &mut self.fhir_user,
                "patient" => &mut self.patient,
                "org" => &mut self.org,
                "practitioner" => &mut self.practitioner,
                "region" => &mut self.region,
                _ => {
                    return Err(format!(
                        "'{name}' is no claim healthcloud reads: map role, fhirUser, patient, org, practitioner or region"
                    ));
                }
            };
            *slot = claim.to_owned();
        }
        Ok(self)
    }
}

/// Whether keys may be fetched from `url`: over https, or over http from this machine.
fn secure(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// The issuer a token says it is from (`iss`), read without verifying anything: only to pick
/// the keys that then verify it.
pub fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}
