//! The authorization server's errors: OAuth 2.0 error responses (RFC 6749, section 5.2) at
//! the token, introspection and revocation endpoints, and pages for a person at the
//! authorization endpoint when the app cannot be told (no valid redirect URI).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth error, answered as JSON `{error, error_description}`.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// 400 `invalid_request`: a parameter is missing or malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `invalid_client`: the client is unknown or did not authenticate.
    #[error("{0}")]
    InvalidClient(String),
    /// 400 `invalid_grant`: the code or refresh token is not valid (used, expired, revoked,
    /// another client's, or its PKCE verifier or redirect URI does not match).
    #[error("{0}")]
    InvalidGrant(String),
    /// 400 `invalid_scope`: nothing asked for lies within what the region granted.
    #[error("{0}")]
    InvalidScope(String),
    /// 400 `unsupported_grant_type`.
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// 400 `unauthorized_client`: this client may not use this grant.
    #[error("{0}")]
    UnauthorizedClient(String),
    /// 500 `server_error`: logged, never described to the client.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl OAuthError {
    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::Internal(_) => "server_error",
        }
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(error: sqlx::Error) -> Self {
        OAuthError::Internal(error.into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match &self {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "authorization server error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (
            status,
            Json(json!({"error": self.code(), "error_description": self.to_string()})),
        )
            .into_response();
        no_store(&mut response);
        response
    }
}

/// Tokens and errors about them are never cached (RFC 6749, section 5.1).
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
