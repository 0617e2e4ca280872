//! Where healthcloud's authorization server answers, and what it supports: shared by the
//! server itself and by the FHIR API, which advertises it (`.well-known/smart-configuration`
//! and the CapabilityStatement's `oauth-uris` extension).

use serde_json::{Value, json};

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
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none"],
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
