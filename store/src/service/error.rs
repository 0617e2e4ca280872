//! The store API's one error type.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use healthcloud_platform::http::ErrorBody;

use healthcloud_package::package::PackageError;

/// Why a store request failed; each variant documents its status. Bodies are JSON
/// `{"error": …, "field": …}`; internal errors are logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// 400: malformed request; `field` names the offending field when there is one.
    #[error("{message}")]
    BadRequest {
        /// What is wrong and how to fix it.
        message: String,
        /// The field path, e.g. `package.app.version`.
        field: Option<String>,
    },
    /// 401: no valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token or key may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with what exists (versions are immutable and only go up).
    #[error("{0}")]
    Conflict(String),
    /// 410: revoked by the store admin.
    #[error("{0}")]
    Gone(String),
    /// 408: the upload took too long.
    #[error("{0}")]
    Timeout(String),
    /// 413: over the size cap.
    #[error("{0}")]
    TooLarge(String),
    /// 422: well formed, but it cannot be acted on: a key that is not a usable ed25519 key,
    /// a compromise date in the future, a component that fails the runtime's install-time
    /// check. `field` names the offending field when there is one.
    #[error("{message}")]
    Unprocessable {
        /// What is wrong and how to fix it.
        message: String,
        /// The field path, e.g. `key`.
        field: Option<String>,
    },
    /// 500: logged, never leaked.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl StoreError {
    /// A 400 without a field.
    pub fn bad_request(message: impl Into<String>) -> StoreError {
        StoreError::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            StoreError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            StoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Gone(_) => StatusCode::GONE,
            StoreError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            StoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Internal(error.into())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        StoreError::Internal(error.into())
    }
}

impl From<PackageError> for StoreError {
    fn from(error: PackageError) -> Self {
        match error {
            PackageError::Manifest(e) => StoreError::BadRequest {
                message: e.to_string(),
                field: Some(e.path),
            },
            PackageError::Format(_) | PackageError::ComponentMismatch(_) => {
                StoreError::bad_request(error.to_string())
            }
            PackageError::Key(_) | PackageError::KeyIdMismatch { .. } => {
                StoreError::Forbidden(error.to_string())
            }
        }
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = match &self {
            StoreError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "store request failed");
                "internal error; the store logged the details".to_owned()
            }
            other => other.to_string(),
        };
        let field = match self {
            StoreError::BadRequest { field, .. } | StoreError::Unprocessable { field, .. } => field,
            _ => None,
        };
        (status, Json(ErrorBody { error, field })).into_response()
    }
}

/// A JSON request body whose rejection is a [`StoreError`] (JSON, naming the fix) rather
/// than axum's plain-text one.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = StoreError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, StoreError> {
        let Json(value) = Json::<T>::from_request(request, state)
            .await
            .map_err(json_rejection)?;
        Ok(JsonBody(value))
    }
}

/// An optional JSON body (absent when the request has no `Content-Type`), rejected like
/// [`JsonBody`] when it is there but not as described.
impl<S, T> axum::extract::OptionalFromRequest<S> for JsonBody<T>
where
    Json<T>:
        axum::extract::OptionalFromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = StoreError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, StoreError> {
        let value =
            <Json<T> as axum::extract::OptionalFromRequest<S>>::from_request(request, state)
                .await
                .map_err(json_rejection)?;
        Ok(value.map(|Json(value)| JsonBody(value)))
    }
}

fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> StoreError {
    StoreError::bad_request(format!(
        "{}: send a JSON body as /store/v1/openapi.json describes",
        rejection.body_text()
    ))
}

/// Query parameters whose rejection is a [`StoreError`] naming the parameter's form.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = StoreError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, StoreError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| {
                    StoreError::bad_request(format!(
                        "{}: see /store/v1/openapi.json for the parameters",
                        rejection.body_text()
                    ))
                })?;
        Ok(QueryParams(value))
    }
}
