//! Users sign in at the region's OpenID Connect provider: the authorization server is its
//! client (authorization code with PKCE and a nonce, the client secret sent as HTTP Basic),
//! its endpoints found through `<issuer>/.well-known/openid-configuration`. The ID token is
//! verified with the provider's published keys, as any trusted issuer's token is
//! ([`TrustedIssuers`]), and must name this client as its audience and carry the nonce of
//! this sign-in. Its claims become the user: the role from the configured claim (clinician,
//! patient or citizen), `fhirUser`, `org`, `practitioner`, `region` and, for a patient,
//! `patient`.

use std::sync::Arc;
use std::time::Duration;

use healthcloud_platform::auth::issuers::{ClaimNames, TrustedIssuers};
use healthcloud_platform::auth::smart::AuthorizationEndpoints;
use healthcloud_platform::auth::{Claims, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;

/// How long a call to the provider may take.
const PROVIDER_DEADLINE: Duration = Duration::from_secs(10);

/// Largest answer read from the provider.
const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// The region's identity provider.
#[derive(Debug, Clone)]
pub struct IdentityProviderConfig {
    /// Its issuer URL (https; http only on loopback).
    pub issuer: String,
    /// healthcloud's client id there.
    pub client_id: String,
    /// healthcloud's client secret there.
    pub client_secret: String,
    /// Which ID token claims carry the user's role, FHIR user, patient, organization,
    /// practitioner and region (by default, claims of those names).
    pub claims: ClaimNames,
}

/// A signed-in user, as the provider vouched for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The provider's id of the user.
    pub sub: String,
    /// Their role.
    pub role: Role,
    /// Their FHIR resource (`Practitioner/…`, `Patient/…`).
    pub fhir_user: Option<String>,
    /// The organization they act for.
    pub org: Option<String>,
    /// The practitioner of a `PractitionerRole` `fhir_user`.
    pub practitioner: Option<String>,
    /// The region they work in.
    pub region: Option<String>,
    /// For a patient or citizen: their own record.
    pub patient: Option<String>,
}

impl User {
    fn from_claims(claims: Claims) -> User {
        User {
            sub: claims.sub,
            role: claims.role,
            fhir_user: claims.fhir_user,
            org: claims.org,
            practitioner: claims.practitioner,
            region: claims.region,
            patient: claims.patient,
        }
    }
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug)]
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: String,
}

/// The identity provider as the authorization server uses it.
pub(crate) struct IdentityProvider {
    config: IdentityProviderConfig,
    redirect_uri: String,
    trusted: TrustedIssuers,
    http: reqwest::Client,
    discovered: OnceCell<Arc<Discovered>>,
}

/// Why a sign-in failed (shown to the user; the provider's own answer is logged).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    #[error("the identity provider {issuer} cannot be used now: {reason}")]
    Provider { issuer: String, reason: String },
    #[error("the identity provider's answer about you was refused: {0}")]
    Refused(String),
}

impl IdentityProvider {
    pub(crate) fn new(
        config: IdentityProviderConfig,
        endpoints: &AuthorizationEndpoints,
    ) -> anyhow::Result<Self> {
        let trusted =
            TrustedIssuers::default().with_claims(&config.issuer, config.claims.clone())?;
        Ok(IdentityProvider {
            redirect_uri: format!("{}/login/callback", endpoints.issuer()),
            trusted,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(PROVIDER_DEADLINE)
                .build()?,
            discovered: OnceCell::new(),
            config,
        })
    }

    fn provider_error(&self, reason: impl Into<String>) -> LoginError {
        LoginError::Provider {
            issuer: self.config.issuer.clone(),
            reason: reason.into(),
        }
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, LoginError> {
        self.discovered
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let document = self.get_json(self.http.get(&url)).await?;
                if document["issuer"] != self.config.issuer.as_str() {
                    return Err(self.provider_error(format!(
                        "its discovery document names another issuer ({})",
                        document["issuer"]
                    )));
                }
                let endpoint = |name: &str| {
                    document[name].as_str().map(str::to_owned).ok_or_else(|| {
                        self.provider_error(format!("its discovery document has no {name}"))
                    })
                };
                Ok(Arc::new(Discovered {
                    authorization_endpoint: endpoint("authorization_endpoint")?,
                    token_endpoint: endpoint("token_endpoint")?,
                }))
            })
            .await
            .cloned()
    }

    /// Where the browser signs in, coming back with `state`.
    pub(crate) async fn sign_in_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, LoginError> {
        let discovered = self.discovered().await?;
        let mut url = url::Url::parse(&discovered.authorization_endpoint)
            .map_err(|e| self.provider_error(format!("its authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &crate::challenge_of(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// The user the provider's `code` stands for, checked against this sign-in's `nonce`.
    pub(crate) async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<User, LoginError> {
        let discovered = self.discovered().await?;
        let request = self
            .http
            .post(&discovered.token_endpoint)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", verifier),
            ]);
        let answer = self.get_json(request).await?;
        let id_token = answer["id_token"]
            .as_str()
            .ok_or_else(|| self.provider_error("its token answer has no id_token"))?;
        let issuer = self
            .trusted
            .get(&self.config.issuer)
            .expect("the provider is trusted");
        let (principal, claims) = issuer
            .verify_with_claims(id_token)
            .await
            .map_err(|e| LoginError::Refused(e.to_string()))?;
        let names_us = match claims.get("aud") {
            Some(Value::String(one)) => *one == self.config.client_id,
            Some(Value::Array(many)) => many.iter().any(|aud| *aud == *self.config.client_id),
            _ => false,
        };
        if !names_us {
            return Err(LoginError::Refused(
                "the ID token is not for healthcloud (its aud)".into(),
            ));
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(LoginError::Refused(
                "the ID token is not of this sign-in (its nonce)".into(),
            ));
        }
        let user = User::from_claims(principal.claims);
        if user.role.is_own_record_only() && user.patient.is_none() {
            return Err(LoginError::Refused(format!(
                "a {} must have their patient record named (a 'patient' claim)",
                user.role.as_str()
            )));
        }
        Ok(user)
    }

    async fn get_json(&self, request: reqwest::RequestBuilder) -> Result<Value, LoginError> {
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                self.provider_error(format!("it cannot be reached ({})", e.without_url()))
            })?;
        let status = response.status();
        let body = healthcloud_platform::http::read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| self.provider_error(e.to_string()))?;
        if !status.is_success() {
            tracing::warn!(
                issuer = self.config.issuer,
                %status,
                body = String::from_utf8_lossy(&body[..body.len().min(500)]).as_ref(),
                "the identity provider refused"
            );
            return Err(self.provider_error(format!("it answered {status}")));
        }
        serde_json::from_slice(&body).map_err(|_| self.provider_error("it sent no JSON"))
    }
}
