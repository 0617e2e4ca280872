//! The region admin API's one error type and the JSON body every refusal carries.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Every refusal of the region admin API is the platform's JSON error body.
pub use healthcloud_platform::http::ErrorBody;

/// Why an admin request failed; each variant documents its status. Bodies are JSON
/// `{"error": …, "field": …}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400: malformed request; `field` names the offending field.
    #[error("{message}")]
    BadRequest {
        /// What is wrong and how to fix it.
        message: String,
        /// The field, e.g. `grant`.
        field: Option<String>,
    },
    /// 401: no valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not a region admin of this region.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such install or version.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with what is installed, or the store does not vouch for the version.
    #[error("{0}")]
    Conflict(String),
    /// 410: the store revoked the version.
    #[error("{0}")]
    Gone(String),
    /// 422: the grant asks for what the app does not request, or the component fails the
    /// install-time check.
    #[error("{message}")]
    Unprocessable {
        /// What is wrong and how to fix it.
        message: String,
        /// The field, e.g. `grant`.
        field: Option<String>,
    },
    /// 429: this caller was refused too often lately (here, by the FHIR API or a data host
    /// call); answered with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// What to do.
        message: String,
        /// Seconds until a request is accepted again.
        retry_after_secs: u64,
    },
    /// 502: the store could not be asked.
    #[error("{0}")]
    Store(String),
    /// 503: this node does not serve region installs.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, never leaked.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        AdminError::Internal(error.into())
    }
}

impl AdminError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Gone(_) => StatusCode::GONE,
            AdminError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Store(_) => StatusCode::BAD_GATEWAY,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(super) fn field(&self) -> Option<&str> {
        match self {
            AdminError::BadRequest { field, .. } | AdminError::Unprocessable { field, .. } => {
                field.as_deref()
            }
            _ => None,
        }
    }

    pub(super) fn bad(field: &str, message: String) -> AdminError {
        AdminError::BadRequest {
            message,
            field: Some(field.into()),
        }
    }

    /// What the client is told: internal errors are logged, never shown.
    pub fn public_message(&self) -> String {
        match self {
            AdminError::Internal(_) => "internal error; see the server's log".into(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "admin request failed");
        }
        let body = ErrorBody {
            error: self.public_message(),
            field: self.field().map(str::to_owned),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let AdminError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}
