//! The one error type of the integration cloud. Every variant documents its HTTP status; the
//! HTTP layer renders each as a FHIR OperationOutcome, and the app runtime maps them onto the
//! WIT `fhir` errors (`denied`, `not-found`, `invalid`, `unavailable`).

use healthcloud_platform::auth::AuthError;

/// What went wrong with a FHIR interaction.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// 400: the request is malformed or uses something we do not support.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid bearer token.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// 403: the policy engine refused (scopes, grant, role).
    #[error("access denied: {0}")]
    Forbidden(String),
    /// 403: the patient opted this party out. Says nothing else, by design.
    #[error("access denied by the patient's consent")]
    ConsentDenied,
    /// 404: no such resource, type or route (also for resources outside the caller's compartment).
    #[error("{0}")]
    NotFound(String),
    /// 405: the endpoint exists but not with this HTTP method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 410: the resource was deleted (its versions are kept).
    #[error("{0}")]
    Gone(String),
    /// 412: `If-Match` named a version that is not the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 406: the client asked for a format other than FHIR JSON (`Accept`, `_format`).
    #[error("{0}")]
    NotAcceptable(String),
    /// 409: the resource changed since the version the client named.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: the resource is not valid FHIR for this server; `path` names the element.
    #[error("{path}: {message}")]
    Invalid {
        /// FHIRPath-like location of the bad element, e.g. `Observation.code`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// 429: this user was refused too often lately; answered before any work is done, with
    /// `Retry-After`.
    #[error(
        "too many refused requests from this user: retry after {retry_after_secs} s, and ask only for data your token may reach"
    )]
    TooManyRequests {
        /// Seconds until a request is accepted again.
        retry_after_secs: u64,
    },
    /// 503: a data source did not answer.
    #[error("data source unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or database failure. Logged; the client sees only a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl FhirError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            FhirError::BadRequest(_) => 400,
            // Not the token's fault: the same token works again once the feed is renewed.
            FhirError::Unauthorized(AuthError::Suspended(_)) => 503,
            FhirError::Unauthorized(_) => 401,
            FhirError::Forbidden(_) | FhirError::ConsentDenied => 403,
            FhirError::NotFound(_) => 404,
            FhirError::MethodNotAllowed(_) => 405,
            FhirError::NotAcceptable(_) => 406,
            FhirError::Conflict(_) => 409,
            FhirError::Gone(_) => 410,
            FhirError::PreconditionFailed(_) => 412,
            FhirError::PayloadTooLarge(_) => 413,
            FhirError::Invalid { .. } => 422,
            FhirError::TooManyRequests { .. } => 429,
            FhirError::Unavailable(_) => 503,
            FhirError::Internal(_) => 500,
        }
    }

    /// Shorthand for [`FhirError::Invalid`].
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        FhirError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The OperationOutcome issue code.
    pub fn issue_code(&self) -> &'static str {
        match self {
            FhirError::BadRequest(_) => "invalid",
            FhirError::Unauthorized(_) => "login",
            FhirError::Forbidden(_) | FhirError::ConsentDenied => "forbidden",
            FhirError::NotFound(_) => "not-found",
            FhirError::Gone(_) => "deleted",
            FhirError::MethodNotAllowed(_) | FhirError::NotAcceptable(_) => "not-supported",
            FhirError::Conflict(_) | FhirError::PreconditionFailed(_) => "conflict",
            FhirError::PayloadTooLarge(_) => "too-costly",
            FhirError::Invalid { .. } => "processing",
            FhirError::TooManyRequests { .. } => "throttled",
            FhirError::Unavailable(_) => "transient",
            FhirError::Internal(_) => "exception",
        }
    }

    /// The error as a FHIR OperationOutcome.
    pub fn to_operation_outcome(&self) -> serde_json::Value {
        let mut issue = serde_json::json!({
            "severity": "error",
            "code": self.issue_code(),
            "diagnostics": self.to_string(),
        });
        if let FhirError::Invalid { path, .. } = self {
            issue["expression"] = serde_json::json!([path]);
        }
        serde_json::json!({"resourceType": "OperationOutcome", "issue": [issue]})
    }
}

impl From<sqlx::Error> for FhirError {
    fn from(error: sqlx::Error) -> Self {
        FhirError::Internal(error.into())
    }
}
