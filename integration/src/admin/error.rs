//! The sources admin API's one error type, answered as the platform's JSON `ErrorBody`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use healthcloud_platform::http::ErrorBody;

/// Why a sources admin request failed; each variant documents its status. Bodies are JSON
/// `{"error": …, "field": …}`.
#[derive(Debug, thiserror::Error)]
pub enum SourceAdminError {
    /// 400: the body is not JSON of a source; `field` names the offending key.
    #[error("{message}")]
    BadRequest {
        /// What is wrong and how to fix it.
        message: String,
        /// The key, e.g. `base`.
        field: Option<String>,
    },
    /// 401: no valid token for this server.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not a platform operator.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no source of that name.
    #[error("{0}")]
    NotFound(String),
    /// 409: the source is configured on the command line, not in the file.
    #[error("{0}")]
    Conflict(String),
    /// 422: the source's settings cannot be used (a token file that cannot be read).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: this caller was refused too often lately; answered with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// What to do.
        message: String,
        /// Seconds until a request is accepted again.
        retry_after_secs: u64,
    },
    /// 502: the source did not give its CapabilityStatement; the message names it and what
    /// happened, never its own answer.
    #[error("{0}")]
    Upstream(String),
    /// 500: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl SourceAdminError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SourceAdminError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            SourceAdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            SourceAdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            SourceAdminError::NotFound(_) => StatusCode::NOT_FOUND,
            SourceAdminError::Conflict(_) => StatusCode::CONFLICT,
            SourceAdminError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SourceAdminError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            SourceAdminError::Upstream(_) => StatusCode::BAD_GATEWAY,
            SourceAdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for SourceAdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            SourceAdminError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "sources admin request failed");
                ErrorBody::new("internal error; see the server's log")
            }
            SourceAdminError::BadRequest { message, field } => ErrorBody {
                error: message.clone(),
                field: field.clone(),
            },
            other => ErrorBody::new(other.to_string()),
        };
        let mut response = (status, Json(body)).into_response();
        if let SourceAdminError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"healthcloud\""),
            );
        }
        response
    }
}
