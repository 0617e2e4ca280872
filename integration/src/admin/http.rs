//! The sources admin API over HTTP: routes, and the extractors whose rejections are
//! [`SourceAdminError`]s.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use healthcloud_platform::auth::{Principal, TokenVerifier};

use super::{SourceAdminError, SourceRemoved, SourceView, SourcesAdmin};
use crate::sources_file::SourceEntry;

/// The routes, `/admin/v1/sources…`.
pub(super) fn router(admin: SourcesAdmin) -> Router {
    Router::new()
        .route("/admin/v1/sources", get(list))
        .route(
            "/admin/v1/sources/{name}",
            get(show).put(put).delete(remove),
        )
        .route("/admin/v1/sources/{name}/check", post(check))
        .with_state(admin)
}

impl FromRef<SourcesAdmin> for TokenVerifier {
    fn from_ref(admin: &SourcesAdmin) -> TokenVerifier {
        admin.verifier().clone()
    }
}

/// The caller, a platform operator (refusals go to the security log).
struct Operator;

impl FromRequestParts<SourcesAdmin> for Operator {
    type Rejection = SourceAdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        admin: &SourcesAdmin,
    ) -> Result<Self, SourceAdminError> {
        let principal = Principal::from_request_parts(parts, admin)
            .await
            .map_err(|e| SourceAdminError::Unauthorized(e.to_string()))?;
        let asked = format!("{} {}", parts.method, parts.uri.path());
        admin.authorize(&principal, &asked).await?;
        Ok(Operator)
    }
}

/// A JSON source whose rejections are [`SourceAdminError`]s.
struct Body(SourceEntry);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = SourceAdminError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<SourceEntry>::from_request(request, state).await {
            Ok(Json(entry)) => Ok(Body(entry)),
            Err(rejection) => Err(SourceAdminError::BadRequest {
                message: format!(
                    "{}: send a source as JSON with the keys of a [[source]] table of \
                     sources.toml (base, and optionally organization, auth, token-file, types, \
                     deadline-secs, max-concurrent, max-response-bytes)",
                    rejection.body_text()
                ),
                field: None,
            }),
        }
    }
}

/// `GET /admin/v1/sources`: every source with its health.
async fn list(State(admin): State<SourcesAdmin>, _: Operator) -> Json<Vec<SourceView>> {
    Json(admin.list().await)
}

/// `GET /admin/v1/sources/{name}`.
async fn show(
    State(admin): State<SourcesAdmin>,
    _: Operator,
    Path(name): Path<String>,
) -> Result<Json<SourceView>, SourceAdminError> {
    Ok(Json(admin.show(&name).await?))
}

/// `POST /admin/v1/sources/{name}/check`: its CapabilityStatement read now (502 naming what
/// happened when it cannot be).
async fn check(
    State(admin): State<SourcesAdmin>,
    _: Operator,
    Path(name): Path<String>,
) -> Result<Json<SourceView>, SourceAdminError> {
    Ok(Json(admin.check(&name).await?))
}

/// `PUT /admin/v1/sources/{name}`: 201 added, 200 replaced.
async fn put(
    State(admin): State<SourcesAdmin>,
    _: Operator,
    Path(name): Path<String>,
    Body(entry): Body,
) -> Result<(StatusCode, Json<SourceView>), SourceAdminError> {
    let (replaced, view) = admin.put(&name, entry).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)))
}

/// `DELETE /admin/v1/sources/{name}`.
async fn remove(
    State(admin): State<SourcesAdmin>,
    _: Operator,
    Path(name): Path<String>,
) -> Result<Json<SourceRemoved>, SourceAdminError> {
    Ok(Json(admin.remove(&name).await?))
}
