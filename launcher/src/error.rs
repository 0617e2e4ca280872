//! The launcher's one error type: every page failure becomes an HTML page that says what
//! happened and what to do next.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use healthcloud_integration::FhirError;
use healthcloud_package::client::ClientError;
use healthcloud_runtime::regions::admin::AdminError;

/// Why a page or a form failed; each variant documents its status.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// 401: no session cookie for this page, or its token no longer verifies (sessions last
    /// ten minutes).
    #[error("{0}")]
    NoSession(String),
    /// 403: the session's user may not use this page.
    #[error("{0}")]
    Forbidden(String),
    /// 403: a form that changes something came from another origin (or the browser said it
    /// did), so nothing was done.
    #[error(
        "this form was sent from a page on another site, or one this server did not serve, so nothing was done"
    )]
    CrossSite,
    /// 403: the request did not come over loopback, or named no `Host`: the launcher mints
    /// tokens for any role, so only the machine it runs on may reach it.
    #[error(
        "the launch pages answer only requests from this machine (over loopback, with a Host header)"
    )]
    NotLocal,
    /// 400: a form or address the pages never produce.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such page, install or version.
    #[error("{0}")]
    NotFound(String),
    /// The service behind the page refused (region admin, store, FHIR), with its status and
    /// its message; `back` is the page to return to.
    #[error("{message}")]
    Refused {
        /// The service's status.
        status: StatusCode,
        /// Its message, which names the fix.
        message: String,
        /// The page the form was on.
        back: String,
    },
    /// 500: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl PageError {
    /// A region admin operation's refusal, shown with a way back to `back`.
    pub fn admin(error: AdminError, back: &str) -> PageError {
        let message = error.public_message();
        if let AdminError::Internal(internal) = &error {
            tracing::error!(error = format!("{internal:#}"), "region admin page failed");
        }
        let status = error.status();
        PageError::Refused {
            status,
            message,
            back: back.to_owned(),
        }
    }

    /// A FHIR interaction's refusal.
    pub fn fhir(error: FhirError, back: &str) -> PageError {
        if let FhirError::Internal(cause) = &error {
            tracing::error!(error = format!("{cause:#}"), "a FHIR call of a page failed");
        }
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let message = match &error {
            FhirError::Internal(_) => "the integration cloud failed; it logged the details".into(),
            other => other.to_string(),
        };
        PageError::Refused {
            status,
            message,
            back: back.to_owned(),
        }
    }

    /// The store API's refusal (or its silence).
    pub fn store(error: ClientError, back: &str) -> PageError {
        let status = error.status().unwrap_or(StatusCode::BAD_GATEWAY);
        let message = match &error {
            ClientError::Refused { message, .. } => message.clone(),
            other => {
                tracing::error!(error = %other, "a store call of a page failed");
                format!("the store could not be asked: {other}")
            }
        };
        PageError::Refused {
            status,
            message,
            back: back.to_owned(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            PageError::NoSession(_) => StatusCode::UNAUTHORIZED,
            PageError::Forbidden(_) | PageError::CrossSite | PageError::NotLocal => {
                StatusCode::FORBIDDEN
            }
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Refused { status, .. } => *status,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the reader can do about it.
    fn next_step(&self) -> &'static str {
        match self {
            PageError::NoSession(_) => {
                "Open the launch page, choose the role this page is for and launch again. A session lasts ten minutes."
            }
            PageError::Forbidden(_) => {
                "Launch again from the launch page as someone who may use this page."
            }
            PageError::CrossSite => {
                "Open the page on this server and use its form there. If you did not mean to send anything, there is nothing to do."
            }
            PageError::NotLocal => {
                "Open the launch page in a browser on the machine running healthcloud, at the address it printed (http://127.0.0.1:PORT/)."
            }
            PageError::BadRequest(_) => {
                "Use the forms on the pages; go back, reload the page and try again."
            }
            PageError::NotFound(_) => "Check the address, or start again from the launch page.",
            PageError::Refused { status, .. } => match *status {
                StatusCode::UNAUTHORIZED => {
                    "Your session ended: launch again from the launch page."
                }
                StatusCode::FORBIDDEN => {
                    "Launch again as someone who may do this, or ask someone who may."
                }
                status if status.is_server_error() => {
                    "Try again in a moment; if it keeps failing, the server's log has the details."
                }
                _ => "The message says what to change. Go back: the page shows the current state.",
            },
            PageError::Internal(_) => {
                "Try again; if it keeps failing, the server's log has the details."
            }
        }
    }

    fn heading(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "The request could not be used",
            StatusCode::UNAUTHORIZED => "Not signed in",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "It changed meanwhile",
            StatusCode::GONE => "No longer available",
            status if status.is_server_error() => "Something went wrong",
            _ => "That did not work",
        }
    }
}

#[derive(Template)]
#[template(path = "launch/error.html")]
struct ErrorPage<'a> {
    heading: &'a str,
    message: String,
    next_step: &'a str,
    back: Option<&'a str>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = match &self {
            PageError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "a launcher page failed");
                "the page could not be made; the server logged the details".to_owned()
            }
            other => sentence(&other.to_string()),
        };
        let back = match &self {
            PageError::Refused { back, .. } => Some(back.as_str()),
            _ => None,
        };
        super::render(
            self.status(),
            &ErrorPage {
                heading: self.heading(),
                message,
                next_step: self.next_step(),
                back,
            },
        )
    }
}

/// `text` as a sentence: the services' messages start in lower case, to follow a colon.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A submitted form, or the page saying it could not be read.
pub fn form<T>(
    form: Result<axum::extract::Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<T, PageError> {
    form.map(|axum::extract::Form(form)| form)
        .map_err(|e| PageError::BadRequest(format!("the form is unreadable: {e}")))
}
