//! Who calls the token, introspection and revocation endpoints. A public client names
//! itself (`client_id`); a confidential client proves it is itself with a client assertion
//! (RFC 7523, SMART's asymmetric client authentication): a JWT it signed with a key of the
//! JWK set its package registered, RS384 or ES384, naming itself as `iss` and `sub` and this
//! token endpoint as `aud`, expiring within five minutes, its `jti` never used before.

use std::sync::Arc;

use healthcloud_platform::auth::smart::Client;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{AuthorizationServer, OAuthError, hash, now};

/// The assertion type of `private_key_jwt`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live.
const MAX_ASSERTION_SECS: i64 = 300;

/// How a request authenticates its client.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ClientCredentials {
    pub client_id: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

impl ClientCredentials {
    /// The registered client these credentials prove.
    pub(crate) async fn authenticate(
        &self,
        server: &AuthorizationServer,
    ) -> Result<Arc<Client>, OAuthError> {
        let refuse = |why: String| Err(OAuthError::InvalidClient(why));
        let Some(assertion) = &self.client_assertion else {
            let Some(client_id) = &self.client_id else {
                return refuse("client_id is missing".into());
            };
            let Some(client) = server.inner.clients.get(client_id) else {
                return refuse(format!("no app '{client_id}' is installed"));
            };
            if client.jwks.is_some() {
                return refuse(format!(
                    "{client_id} is a confidential client: authenticate with a client assertion (private_key_jwt, RS384 or ES384)"
                ));
            }
            return Ok(client);
        };
        if self.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return refuse(format!("client_assertion_type must be {JWT_BEARER}"));
        }
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| OAuthError::InvalidClient("the client assertion is not a JWT".into()))?;
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return refuse(format!(
                "client assertions are signed with RS384 or ES384, not {:?}",
                header.alg
            ));
        }
        // Which client, from the assertion itself; verified below with that client's keys.
        let claimed = healthcloud_platform::auth::issuers::claimed_issuer(assertion)
            .ok_or_else(|| OAuthError::InvalidClient("the client assertion has no iss".into()))?;
        if self
            .client_id
            .as_ref()
            .is_some_and(|named| *named != claimed)
        {
            return refuse("client_id differs from the client assertion's iss".into());
        }
        let Some(client) = server.inner.clients.get(&claimed) else {
            return refuse(format!("no app '{claimed}' is installed"));
        };
        let Some(jwks) = &client.jwks else {
            return refuse(format!(
                "{claimed} is a public client: it registered no keys to assert with"
            ));
        };
        let key = key_of(jwks, header.kid.as_deref(), header.alg).ok_or_else(|| {
            OAuthError::InvalidClient(format!(
                "the client assertion names no key {claimed} registered for {:?}",
                header.alg
            ))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[server.inner.endpoints.token()]);
        validation.set_issuer(&[&claimed]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| {
                OAuthError::InvalidClient(format!(
                    "the client assertion is not valid: {:?}",
                    e.kind()
                ))
            })?
            .claims;
        if claims.sub != claims.iss {
            return refuse("the client assertion's sub must be its iss, the client id".into());
        }
        if claims.exp > now() + MAX_ASSERTION_SECS {
            return refuse(format!(
                "the client assertion lives too long: expire it within {MAX_ASSERTION_SECS} s"
            ));
        }
        // Used once: a copied assertion is refused.
        let db = &server.inner.db;
        let mut sql = db.sql("INSERT INTO oauth_assertions (jti_hash, expires_at) VALUES (");
        sql.bind_list([
            hash(&format!("{claimed} {}", claims.jti)).into(),
            (claims.exp + 60).into(),
        ])
        .push(") ON CONFLICT (jti_hash) DO NOTHING");
        if sql.query().execute(db.pool()).await?.rows_affected() != 1 {
            return refuse("the client assertion was used already (its jti)".into());
        }
        Ok(client)
    }
}

/// The key `kid` of `jwks` for `alg`.
fn key_of(jwks: &serde_json::Value, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).ok()?;
    let jwk: &Jwk = set.find(kid?)?;
    let declared = jwk
        .common
        .key_algorithm
        .map(|declared| format!("{declared:?}"));
    if declared.as_deref() != Some(&format!("{alg:?}")) {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok()
}
