//! The region admin API, `/admin/v1/regions/{region}/…`: install an app version from the store
//! with a grant ⊆ what it requests, change the grant, upgrade (asking again when the new
//! version wants more), uninstall, and read the region's admin audit log. A region admin's
//! token reaches only its own region. Every action of a region admin of the region, allowed or
//! refused, is audited in `region_audit`; a caller without that role writes nothing there:
//! its refusal goes to the security log (`healthcloud security-log`), and it is slowed down
//! (429) like any refused caller.
//!
//! The same operations are methods on [`Runtime`] (`admin_…`) for the admin pages.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use healthcloud_integration::auth::{Principal, Role};
use healthcloud_integration::security::{SecurityEvent, SecurityKind};
use healthcloud_store::client::{AppVersion, StoreError};
use healthcloud_store::manifest::{Capability, Manifest};
use healthcloud_store::package::SignedPackage;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{InstallRow, Regions, Revoked, capabilities_to_json};
use crate::{Grant, Runtime};

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

    fn field(&self) -> Option<&str> {
        match self {
            AdminError::BadRequest { field, .. } | AdminError::Unprocessable { field, .. } => {
                field.as_deref()
            }
            _ => None,
        }
    }

    fn bad(field: &str, message: String) -> AdminError {
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
        let body = super::openapi::ErrorBody {
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

/// A JSON body whose rejections are [`AdminError`]s.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(AdminError::BadRequest {
                message: format!("{}: send JSON as documented", rejection.body_text()),
                field: None,
            }),
        }
    }
}

/// Query parameters whose rejections are [`AdminError`]s.
struct QueryParams<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(AdminError::BadRequest {
                message: format!(
                    "{}: see /admin/v1/openapi.json for the parameters",
                    rejection.body_text()
                ),
                field: None,
            }),
        }
    }
}

/// One requested capability and what the region does with it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CapabilityView {
    /// The capability, e.g. `patient/Observation.rs`.
    pub capability: String,
    /// Why the app says it needs it.
    pub justification: String,
    /// What it allows, in plain language.
    pub explanation: String,
    /// Whether the region grants it.
    pub granted: bool,
}

/// An upgrade waiting for approval.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingView {
    /// The version waiting.
    pub version: String,
    /// What it asks for beyond the installed version.
    pub added: Vec<CapabilityView>,
}

/// A version the store revoked.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokedView {
    /// Why.
    pub reason: String,
    /// When.
    pub at: String,
}

/// An install as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstallView {
    /// The region.
    pub region: String,
    /// `publisher/app`.
    pub app: String,
    /// The app's display name.
    pub name: String,
    /// The installed version.
    pub version: String,
    /// sha256 of its component.
    pub sha256: String,
    /// The key that signed it.
    pub key_id: String,
    /// Every capability the version requests, granted or not.
    pub requested: Vec<CapabilityView>,
    /// The granted capabilities.
    pub granted: Vec<String>,
    /// Whether the region admin allowed `outbound-http:` destinations inside the network.
    #[serde(default)]
    pub allow_internal_addresses: bool,
    /// When it was installed, and last changed.
    pub installed_at: String,
    /// When its version or grant last changed.
    pub updated_at: String,
    /// Whether it serves now on the node that answered: loaded there and not revoked (other
    /// nodes catch up within seconds).
    pub serving: bool,
    /// The store's revocation of this version.
    pub revoked: Option<RevokedView>,
    /// An upgrade waiting for approval.
    pub pending: Option<PendingView>,
    /// Where it is served.
    pub url: String,
}

/// What an upgrade did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeView {
    /// `upgraded`, or `pending` when the new version asks for more and waits for approval.
    pub status: String,
    /// The install now.
    pub install: InstallView,
}

/// One audited admin action.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// When.
    pub at: String,
    /// Who (the token's subject).
    pub actor: String,
    /// `install`, `grant`, `revoke`, `upgrade`, `approve`, `decline` or `uninstall` (callers
    /// who are not region admins of the region are in the security log instead).
    pub action: String,
    /// The app.
    pub app: Option<String>,
    /// What was asked.
    pub detail: String,
    /// `allowed`, or `refused: …`.
    pub outcome: String,
}

/// What `DELETE …/installs/{publisher}/{app}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Uninstalled {
    /// The region.
    pub region: String,
    /// `publisher/app`.
    pub app: String,
    /// Always true.
    pub uninstalled: bool,
}

/// `POST …/installs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// `publisher/app@version`.
    #[schema(
        example = "examples/hello@0.1.0",
        pattern = r"^[a-z0-9][a-z0-9-]{0,63}/[a-z0-9][a-z0-9-]{0,63}@(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
    )]
    pub app: String,
    /// The capabilities to grant: a subset of what the version requests.
    #[serde(default)]
    pub grant: Vec<String>,
    /// Allows `outbound-http:` destinations inside the network (loopback, private,
    /// link-local, metadata, …) among `grant`, which are refused otherwise. Recorded in the
    /// region's audit log.
    #[serde(default)]
    pub allow_internal_addresses: bool,
}

/// `POST …/grant` and `…/revoke`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRequest {
    /// The capability.
    pub capability: String,
    /// With a grant of an `outbound-http:` destination inside the network: allows it (it is
    /// refused otherwise). Recorded in the region's audit log.
    #[serde(default)]
    pub allow_internal_addresses: bool,
}

/// `POST …/upgrade`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The version to upgrade to.
    #[schema(
        example = "0.2.0",
        pattern = r"^(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
    )]
    pub version: String,
    /// Approves what the new version asks for beyond the installed one; without it, such an
    /// upgrade waits.
    #[serde(default)]
    pub approve: bool,
    /// With `approve`: which of the new version's requested capabilities to grant besides
    /// those carried over from the installed version.
    #[serde(default)]
    pub grant: Vec<String>,
    /// With `approve`: allows `outbound-http:` destinations inside the network among what the
    /// new version is granted. Recorded in the region's audit log.
    #[serde(default)]
    pub allow_internal_addresses: bool,
}

/// A region admin acting on one region: made only by [`Runtime::authorize_admin`] from a
/// verified token, or by [`Admin::system`] for the platform's own start-up work.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Admin {
    /// Who (the token's subject).
    pub actor: String,
    /// The region.
    pub region: String,
}

impl Admin {
    /// The platform itself acting in `region` (e.g. `up` installing the example apps on first
    /// start): never for anything a request asked for.
    pub fn system(actor: &str, region: &str) -> Admin {
        Admin {
            actor: actor.to_owned(),
            region: region.to_owned(),
        }
    }
}

impl Runtime {
    /// The caller as a region admin of `region`. A refusal is recorded in the security log,
    /// not in the region's audit log: only callers with a role in a region write there.
    pub async fn authorize_admin(
        &self,
        principal: &Principal,
        region: &str,
    ) -> Result<Admin, AdminError> {
        self.authorize_admin_for(principal, region, &format!("administer region {region}"))
            .await
    }

    /// [`Runtime::authorize_admin`], with what was asked (`GET /admin/v1/…`) for the security
    /// log. A caller refused too often lately (here or by the FHIR API) gets 429.
    async fn authorize_admin_for(
        &self,
        principal: &Principal,
        region: &str,
        asked: &str,
    ) -> Result<Admin, AdminError> {
        let refusals = self.inner.service.refusals();
        if let Err(limited) = refusals.check(principal) {
            return Err(AdminError::TooManyRequests {
                message: healthcloud_integration::FhirError::from(limited).to_string(),
                retry_after_secs: limited.retry_after_secs,
            });
        }
        let admin = authorize(principal, region);
        if let Err(error) = &admin {
            let log = self.inner.service.security_log();
            let mut events = vec![SecurityEvent::new(
                SecurityKind::RegionAdmin,
                principal,
                None,
                asked,
                error.to_string(),
            )];
            if refusals.charge(principal) {
                events.push(SecurityEvent::new(
                    SecurityKind::RateLimited,
                    principal,
                    None,
                    asked,
                    "too many refused requests in a row: further requests are answered 429",
                ));
            }
            for event in &events {
                if let Err(error) = log.record(event).await {
                    tracing::error!(%error, "cannot write the security log");
                }
            }
        }
        admin
    }
}

/// The caller, who must be a region admin of `region`.
fn authorize(principal: &Principal, region: &str) -> Result<Admin, AdminError> {
    let claims = &principal.claims;
    if claims.role != Role::RegionAdmin {
        return Err(AdminError::Forbidden(format!(
            "this needs a region-admin token for region {region}; yours is for role {} (mint one with `healthcloud token --role region-admin --region {region}`)",
            claims.role.as_str()
        )));
    }
    match &claims.region {
        Some(home) if home == region => Ok(Admin::system(&claims.sub, region)),
        Some(home) => Err(AdminError::Forbidden(format!(
            "your token administers region {home}, not {region}: use a region-admin token of {region} (mint one with `healthcloud token --role region-admin --region {region}`)"
        ))),
        None => Err(AdminError::Forbidden(format!(
            "a region admin's token must name its region (mint one with `healthcloud token --role region-admin --region {region}`)"
        ))),
    }
}

pub(crate) fn router(runtime: Runtime) -> Router {
    let install = "/admin/v1/regions/{region}/installs/{publisher}/{app}";
    Router::new()
        .route(
            "/admin/v1/regions/{region}/installs",
            get(list).post(install_app),
        )
        .route(install, get(show).delete(uninstall))
        .route(&format!("{install}/grant"), post(grant))
        .route(&format!("{install}/revoke"), post(revoke))
        .route(
            &format!("{install}/upgrade"),
            post(upgrade).delete(decline_upgrade),
        )
        .route("/admin/v1/regions/{region}/audit", get(audit))
        .with_state(runtime)
}

#[derive(Debug, Deserialize)]
struct RegionPath {
    region: String,
}

#[derive(Debug, Deserialize)]
struct InstallPath {
    region: String,
    publisher: String,
    app: String,
}

/// The caller, a region admin of the path's region (refusals are audited).
struct RegionAdmin(Admin);

/// The caller, a region admin of the path's region, and the path's app (`publisher/app`).
struct InstallAdmin(Admin, String);

impl FromRequestParts<Runtime> for RegionAdmin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, runtime: &Runtime) -> Result<Self, AdminError> {
        let Path(RegionPath { region }) = Path::from_request_parts(parts, runtime)
            .await
            .map_err(|e| AdminError::NotFound(e.body_text()))?;
        Ok(RegionAdmin(runtime.admin(parts, &region).await?))
    }
}

impl FromRequestParts<Runtime> for InstallAdmin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, runtime: &Runtime) -> Result<Self, AdminError> {
        let Path(InstallPath {
            region,
            publisher,
            app,
        }) = Path::from_request_parts(parts, runtime)
            .await
            .map_err(|e| AdminError::NotFound(e.body_text()))?;
        let admin = runtime.admin(parts, &region).await?;
        Ok(InstallAdmin(admin, format!("{publisher}/{app}")))
    }
}

impl Runtime {
    /// The region admin behind the request's bearer token; a refusal goes to the security
    /// log.
    async fn admin(&self, parts: &Parts, region: &str) -> Result<Admin, AdminError> {
        let principal =
            healthcloud_integration::api::authenticate(&self.inner.verifier, &parts.headers)
                .map_err(|e| AdminError::Unauthorized(e.to_string()))?;
        let asked = format!("{} {}", parts.method, parts.uri.path());
        self.authorize_admin_for(&principal, region, &asked).await
    }
}

#[utoipa::path(get, path = "/admin/v1/regions/{region}/installs",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the region's installs", body = Vec<InstallView>),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the path does not name a region", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn list(
    State(runtime): State<Runtime>,
    RegionAdmin(admin): RegionAdmin,
) -> Result<Json<Vec<InstallView>>, AdminError> {
    Ok(Json(runtime.admin_list(&admin).await?))
}

#[utoipa::path(post, path = "/admin/v1/regions/{region}/installs",
    request_body = InstallRequest,
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`.")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "installed", body = InstallView),
        (status = 400, description = "the body or a parameter is not as described", body = super::openapi::ErrorBody),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the store has no such version", body = super::openapi::ErrorBody),
        (status = 409, description = "installed already, yanked, or the store does not vouch for its signature", body = super::openapi::ErrorBody),
        (status = 410, description = "the store revoked the version", body = super::openapi::ErrorBody),
        (status = 422, description = "the grant names what the version does not request, or the component does not verify or would not install", body = super::openapi::ErrorBody),
        (status = 502, description = "the store could not be asked", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn install_app(
    State(runtime): State<Runtime>,
    RegionAdmin(admin): RegionAdmin,
    Body(request): Body<InstallRequest>,
) -> Result<(StatusCode, Json<InstallView>), AdminError> {
    let view = runtime
        .admin_install_allowing(
            &admin,
            &request.app,
            &request.grant,
            request.allow_internal_addresses,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = InstallView),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn show(
    State(runtime): State<Runtime>,
    InstallAdmin(admin, app): InstallAdmin,
) -> Result<Json<InstallView>, AdminError> {
    Ok(Json(runtime.admin_show(&admin, &app).await?))
}

#[utoipa::path(delete, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "uninstalled, its kv state deleted", body = Uninstalled),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn uninstall(
    State(runtime): State<Runtime>,
    InstallAdmin(admin, app): InstallAdmin,
) -> Result<Json<Uninstalled>, AdminError> {
    runtime.admin_uninstall(&admin, &app).await?;
    Ok(Json(Uninstalled {
        region: admin.region,
        app,
        uninstalled: true,
    }))
}

#[utoipa::path(post, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}/grant",
    request_body = CapabilityRequest,
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "granted (or granted already)", body = InstallView),
        (status = 400, description = "the body or a parameter is not as described", body = super::openapi::ErrorBody),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = super::openapi::ErrorBody),
        (status = 422, description = "the installed version does not request that capability", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn grant(
    State(runtime): State<Runtime>,
    InstallAdmin(admin, app): InstallAdmin,
    Body(request): Body<CapabilityRequest>,
) -> Result<Json<InstallView>, AdminError> {
    let view = runtime.admin_set_grant_allowing(
        &admin,
        &app,
        &request.capability,
        true,
        request.allow_internal_addresses,
    );
    Ok(Json(view.await?))
}

#[utoipa::path(post, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}/revoke",
    request_body = CapabilityRequest,
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "no longer granted", body = InstallView),
        (status = 400, description = "the body or a parameter is not as described", body = super::openapi::ErrorBody),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = super::openapi::ErrorBody),
        (status = 409, description = "the capability is not granted", body = super::openapi::ErrorBody),
        (status = 422, description = "not a capability", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn revoke(
    State(runtime): State<Runtime>,
    InstallAdmin(admin, app): InstallAdmin,
    Body(request): Body<CapabilityRequest>,
) -> Result<Json<InstallView>, AdminError> {
    let view = runtime.admin_set_grant_allowing(&admin, &app, &request.capability, false, false);
    Ok(Json(view.await?))
}

#[utoipa::path(post, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}/upgrade",
    request_body = UpgradeRequest,
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "upgraded", body = UpgradeView),
        (status = 202, description = "the new version asks for more: it waits for approval", body = UpgradeView),
        (status = 400, description = "the body or a parameter is not as described", body = super::openapi::ErrorBody),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the app is not installed, or the store has no such version", body = super::openapi::ErrorBody),
        (status = 409, description = "not newer than the installed version, yanked, changed meanwhile, or the store does not vouch for its signature", body = super::openapi::ErrorBody),
        (status = 410, description = "the store revoked the version", body = super::openapi::ErrorBody),
        (status = 422, description = "the grant names what the version does not request, or the component does not verify or would not install", body = super::openapi::ErrorBody),
        (status = 502, description = "the store could not be asked", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn upgrade(
    State(runtime): State<Runtime>,
    InstallAdmin(admin, app): InstallAdmin,
    Body(request): Body<UpgradeRequest>,
) -> Result<(StatusCode, Json<UpgradeView>), AdminError> {
    let view = runtime.admin_upgrade(&admin, &app, &request).await?;
    let status = if view.status == "pending" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

#[utoipa::path(delete, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}/upgrade",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the waiting upgrade is forgotten", body = InstallView),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = super::openapi::ErrorBody),
        (status = 409, description = "no upgrade is waiting", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn decline_upgrade(
    State(runtime): State<Runtime>,
    InstallAdmin(admin, app): InstallAdmin,
) -> Result<Json<InstallView>, AdminError> {
    Ok(Json(runtime.admin_decline_upgrade(&admin, &app).await?))
}

/// `GET …/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// How many entries, newest first: 1 to 1000.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

#[utoipa::path(get, path = "/admin/v1/regions/{region}/audit",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the region's admin audit log, newest first", body = Vec<AuditEntry>),
        (status = 400, description = "the body or a parameter is not as described", body = super::openapi::ErrorBody),
        (status = 401, description = "no valid token", body = super::openapi::ErrorBody),
        (status = 403, description = "not a region admin of this region", body = super::openapi::ErrorBody),
        (status = 404, description = "the path does not name a region", body = super::openapi::ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = super::openapi::ErrorBody)))]
async fn audit(
    State(runtime): State<Runtime>,
    RegionAdmin(admin): RegionAdmin,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, AdminError> {
    if !(1..=1000).contains(&query.limit) {
        return Err(AdminError::bad(
            "limit",
            "limit is 1 to 1000 entries".into(),
        ));
    }
    Ok(Json(runtime.admin_audit_log(&admin, query.limit).await?))
}

/// A version the store offers for install: the signed package, the manifest it signs, and
/// the store's verdicts checked.
struct Offered {
    signed: SignedPackage,
    manifest: Manifest,
}

fn parse_capabilities(field: &str, names: &[String]) -> Result<Vec<Capability>, AdminError> {
    names
        .iter()
        .map(|name| {
            Capability::parse(name).map_err(|e| AdminError::Unprocessable {
                message: e.to_string(),
                field: Some(field.into()),
            })
        })
        .collect()
}

/// Refuses capabilities `manifest` does not request, naming every one.
fn check_requested(
    field: &str,
    manifest: &Manifest,
    grant: &[Capability],
) -> Result<(), AdminError> {
    let requested = manifest.capabilities();
    let extra: Vec<String> = grant
        .iter()
        .filter(|c| !requested.contains(c))
        .map(|c| format!("'{c}'"))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    let asked: Vec<String> = requested.iter().map(ToString::to_string).collect();
    Err(AdminError::Unprocessable {
        message: format!(
            "{} {} not requested by {} {}; a region grants a subset of what the app requests: {}",
            extra.join(", "),
            if extra.len() == 1 { "is" } else { "are" },
            manifest.full_id(),
            manifest.app.version,
            if asked.is_empty() {
                "nothing".to_owned()
            } else {
                asked.join(", ")
            }
        ),
        field: Some(field.into()),
    })
}

fn store_error(version: &AppVersion, error: StoreError) -> AdminError {
    match error.status() {
        Some(StatusCode::NOT_FOUND) => AdminError::NotFound(format!(
            "the store has no {version}: check the id and version in the catalog"
        )),
        Some(StatusCode::GONE) => AdminError::Gone(format!("the store revoked {version}")),
        _ => AdminError::Store(format!("cannot ask the store about {version}: {error}")),
    }
}

/// Refuses a version the feed revoked while it was being prepared.
fn not_revoked_meanwhile(regions: &Regions, version: &AppVersion) -> Result<(), AdminError> {
    let id = format!("{}/{}", version.publisher, version.app);
    match regions.revocation(&id, &version.version.to_string()) {
        Some(revoked) => Err(AdminError::Gone(format!(
            "{version} was revoked by the store at {} while it was being installed: {}",
            revoked.at, revoked.reason
        ))),
        None => Ok(()),
    }
}

impl Runtime {
    fn regions_or_unavailable(&self) -> Result<&Regions, AdminError> {
        self.regions().ok_or_else(|| {
            AdminError::Unavailable(
                "this node does not serve region installs: start it with `healthcloud up` or `healthcloud serve runtime`".into(),
            )
        })
    }

    /// Asks the store for `version` and checks that it may be installed: not revoked (by the
    /// store or as this node knows from the feed), not yanked, and its key vouched for by the
    /// store's signed version record (under the pinned key), before any component byte.
    async fn offered(&self, version: &AppVersion) -> Result<Offered, AdminError> {
        let regions = self.regions_or_unavailable()?;
        let published = regions
            .store()
            .version(version)
            .await
            .map_err(|e| store_error(version, e))?;
        let id = format!("{}/{}", version.publisher, version.app);
        let revoked = published
            .revoked
            .map(|r| (r.reason, r.at.to_rfc3339()))
            .or_else(|| {
                regions
                    .revocation(&id, &version.version.to_string())
                    .map(|r| (r.reason, r.at))
            });
        if let Some((reason, at)) = revoked {
            return Err(AdminError::Gone(format!(
                "{version} was revoked by the store at {at}: {reason}; install a later version"
            )));
        }
        if published.yanked_at.is_some() {
            return Err(AdminError::Conflict(format!(
                "{version} was yanked by its publisher and is not for new installs; install a later version"
            )));
        }
        match published.signature.as_deref() {
            Some("valid") => {}
            other => {
                return Err(AdminError::Conflict(format!(
                    "the store does not vouch for the signature of {version}: {}",
                    other.unwrap_or("no verdict")
                )));
            }
        }
        let (signed, record) = (published.signed, published.record);
        signed.verify().map_err(|e| AdminError::Unprocessable {
            message: format!("{version} does not verify: {e}"),
            field: None,
        })?;
        let manifest = signed.package.manifest();
        if manifest.full_id() != id || manifest.app.version != version.version {
            return Err(AdminError::Unprocessable {
                message: format!(
                    "the store answered {} {} when asked for {version}",
                    manifest.full_id(),
                    manifest.app.version
                ),
                field: None,
            });
        }
        self.check_vouched(version, record.as_ref(), &signed)
            .await?;
        Ok(Offered { signed, manifest })
    }

    /// Downloads (or reads from disk) the component, verifies and compiles it for `region`.
    async fn prepare_offered(
        &self,
        region: &str,
        offered: &Offered,
        grant: Grant,
    ) -> Result<std::sync::Arc<crate::Install>, AdminError> {
        let regions = self.regions_or_unavailable()?;
        let component = regions
            .component(&offered.signed)
            .await
            .map_err(|e| AdminError::Store(format!("{e:#}")))?;
        self.prepare_package(region, offered.signed.clone(), component, grant)
            .await
            .map_err(|e| AdminError::Unprocessable {
                message: format!("{e:#}"),
                field: None,
            })
    }

    /// The region's installs.
    pub async fn admin_list(&self, admin: &Admin) -> Result<Vec<InstallView>, AdminError> {
        let regions = self.regions_or_unavailable()?;
        let rows = regions.rows(Some(&admin.region)).await?;
        rows.iter().map(|row| self.view(regions, row)).collect()
    }

    /// One install.
    pub async fn admin_show(&self, admin: &Admin, app: &str) -> Result<InstallView, AdminError> {
        let regions = self.regions_or_unavailable()?;
        let row = self.existing(regions, admin, app).await?;
        self.view(regions, &row)
    }

    async fn existing(
        &self,
        regions: &Regions,
        admin: &Admin,
        app: &str,
    ) -> Result<InstallRow, AdminError> {
        regions.row(&admin.region, app).await?.ok_or_else(|| {
            AdminError::NotFound(format!(
                "no app {app} is installed in region {}: `healthcloud region list --region {}` shows what is",
                admin.region, admin.region
            ))
        })
    }

    fn view(&self, regions: &Regions, row: &InstallRow) -> Result<InstallView, AdminError> {
        let signed = SignedPackage::from_json(row.package.as_bytes())
            .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?;
        let manifest = signed.package.manifest();
        let capability_view = |requested: &healthcloud_store::manifest::RequestedCapability| {
            let capability = Capability::parse(&requested.name).ok();
            CapabilityView {
                capability: requested.name.clone(),
                justification: requested.justification.clone(),
                explanation: capability
                    .as_ref()
                    .map(Capability::explain)
                    .unwrap_or_default(),
                granted: capability.is_some_and(|c| row.granted.contains(&c)),
            }
        };
        let pending = match &row.pending {
            Some(pending) => {
                let next = SignedPackage::from_json(pending.package.as_bytes())
                    .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?
                    .package
                    .manifest();
                Some(PendingView {
                    version: pending.version.clone(),
                    added: next
                        .requested
                        .iter()
                        .filter(|r| {
                            Capability::parse(&r.name).is_ok_and(|c| pending.added.contains(&c))
                        })
                        .map(capability_view)
                        .collect(),
                })
            }
            None => None,
        };
        let revoked = regions.revocation(&row.app, &row.version);
        let serving = revoked.is_none()
            && self
                .installed(&row.region, &row.app)
                .is_some_and(|install| {
                    install.identity.version == row.version && !install.stop.is_cancelled()
                });
        Ok(InstallView {
            region: row.region.clone(),
            app: row.app.clone(),
            name: manifest.app.name.clone(),
            version: row.version.clone(),
            sha256: row.sha256.clone(),
            key_id: signed.signature.key_id.to_string(),
            requested: manifest.requested.iter().map(capability_view).collect(),
            granted: row.granted.iter().map(ToString::to_string).collect(),
            allow_internal_addresses: row.allow_internal_addresses,
            installed_at: row.installed_at.clone(),
            updated_at: row.updated_at.clone(),
            serving,
            revoked: revoked.map(|Revoked { reason, at }| RevokedView { reason, at }),
            pending,
            url: format!("/apps/{}/{}/", row.region, row.app),
        })
    }

    /// Installs `app` (`publisher/app@version`) from the store in the admin's region with
    /// `grant` ⊆ what it requests: downloaded, verified (digest, signature, the store's
    /// verdict on the key, revocations), validated and compiled before it is recorded.
    /// `outbound-http:` destinations inside the network are refused: see
    /// [`Runtime::admin_install_allowing`].
    pub async fn admin_install(
        &self,
        admin: &Admin,
        app: &str,
        grant: &[String],
    ) -> Result<InstallView, AdminError> {
        self.admin_install_allowing(admin, app, grant, false).await
    }

    /// [`Runtime::admin_install`], where `allow_internal_addresses` is the admin's explicit
    /// allowance for `outbound-http:` destinations inside the network (loopback, private,
    /// link-local, metadata, …) in `grant`; the audit record says so.
    pub async fn admin_install_allowing(
        &self,
        admin: &Admin,
        app: &str,
        grant: &[String],
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let action = Action {
            admin,
            name: "install",
            app: app.split('@').next(),
            detail: allowing(with_grant(app.to_owned(), grant), allow_internal_addresses),
        };
        let result = self
            .install_inner(&action, app, grant, allow_internal_addresses)
            .await;
        self.audit_refusal(&action, &result).await;
        result
    }

    async fn install_inner(
        &self,
        action: &Action<'_>,
        app: &str,
        grant: &[String],
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let admin = action.admin;
        let regions = self.regions_or_unavailable()?;
        let version: AppVersion = app.parse().map_err(|e| AdminError::bad("app", e))?;
        let grant = parse_capabilities("grant", grant)?;
        let id = format!("{}/{}", version.publisher, version.app);
        if let Some(row) = regions.row(&admin.region, &id).await? {
            return Err(AdminError::Conflict(format!(
                "{id} {} is already installed in region {}: upgrade it (`healthcloud region upgrade --region {} --app {version}`) or uninstall it first",
                row.version, admin.region, admin.region
            )));
        }
        let offered = self.offered(&version).await?;
        check_requested("grant", &offered.manifest, &grant)?;
        check_destinations("grant", &grant, allow_internal_addresses)?;
        let install = self
            .prepare_offered(
                &admin.region,
                &offered,
                Grant::new(grant.clone()).allowing_internal_addresses(allow_internal_addresses),
            )
            .await?;
        let db = regions.db();
        let now = now();
        let mut write = db.begin_write().await?;
        not_revoked_meanwhile(regions, &version)?;
        let mut insert = db.sql(
            "INSERT INTO region_installs (region, app, version, sha256, package, granted, \
             allow_internal_addresses, installed_at, updated_at) VALUES (",
        );
        insert
            .bind(admin.region.as_str())
            .push(", ")
            .bind(id.as_str())
            .push(", ")
            .bind(version.version.to_string())
            .push(", ")
            .bind(offered.signed.package.component.sha256.as_str())
            .push(", ")
            .bind(offered.signed.to_json())
            .push(", ")
            .bind(capabilities_to_json(&grant))
            .push(", ")
            .bind(i64::from(allow_internal_addresses))
            .push(", ")
            .bind(now.as_str())
            .push(", ")
            .bind(now.as_str())
            .push(") ON CONFLICT (region, app) DO NOTHING");
        let inserted = insert
            .query()
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(AdminError::Conflict(format!(
                "{id} was installed in region {} by someone else just now: list the installs and upgrade if needed",
                admin.region
            )));
        }
        changed(regions, &mut write.tx, action).await?;
        // Committed and served under the sync lock: a sync that read the rows before this
        // commit must not then take the new install for an uninstalled one.
        let serving = regions.syncing.lock().await;
        write.commit().await?;
        self.put_install(install);
        drop(serving);
        self.admin_show(admin, &id).await
    }

    /// Grants (`grant = true`) or revokes one capability; the change applies to the next host
    /// call on every node.
    /// An `outbound-http:` destination inside the network is refused: see
    /// [`Runtime::admin_set_grant_allowing`].
    pub async fn admin_set_grant(
        &self,
        admin: &Admin,
        app: &str,
        capability: &str,
        grant: bool,
    ) -> Result<InstallView, AdminError> {
        self.admin_set_grant_allowing(admin, app, capability, grant, false)
            .await
    }

    /// [`Runtime::admin_set_grant`], where `allow_internal_addresses` (with a grant) is the
    /// admin's explicit allowance for an `outbound-http:` destination inside the network,
    /// needed for each such grant. The audit record says so.
    pub async fn admin_set_grant_allowing(
        &self,
        admin: &Admin,
        app: &str,
        capability: &str,
        grant: bool,
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let allow_internal_addresses = grant && allow_internal_addresses;
        let action = Action {
            admin,
            name: if grant { "grant" } else { "revoke" },
            app: Some(app),
            detail: allowing(capability.to_owned(), allow_internal_addresses),
        };
        let result = self
            .set_grant_inner(&action, app, capability, grant, allow_internal_addresses)
            .await;
        self.audit_refusal(&action, &result).await;
        result
    }

    async fn set_grant_inner(
        &self,
        action: &Action<'_>,
        app: &str,
        capability: &str,
        grant: bool,
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let admin = action.admin;
        let regions = self.regions_or_unavailable()?;
        let capability = Capability::parse(capability).map_err(|e| AdminError::Unprocessable {
            message: e.to_string(),
            field: Some("capability".into()),
        })?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        let row = locked_row(regions, &mut write.tx, admin, app).await?;
        let mut granted = row.granted.clone();
        if grant {
            let manifest = SignedPackage::from_json(row.package.as_bytes())
                .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?
                .package
                .manifest();
            check_requested("capability", &manifest, std::slice::from_ref(&capability))?;
            // Each internal destination is allowed explicitly, whatever was allowed before.
            check_destinations(
                "capability",
                std::slice::from_ref(&capability),
                allow_internal_addresses,
            )?;
            if !granted.contains(&capability) {
                granted.push(capability);
            }
        } else if granted.contains(&capability) {
            granted.retain(|c| c != &capability);
        } else {
            let now: Vec<String> = granted.iter().map(ToString::to_string).collect();
            return Err(AdminError::Conflict(format!(
                "'{capability}' is not granted to {app} in region {}, so there is nothing to revoke; granted now: {}",
                admin.region,
                if now.is_empty() {
                    "nothing".to_owned()
                } else {
                    now.join(", ")
                }
            )));
        }
        let allowed = row.allow_internal_addresses || allow_internal_addresses;
        if granted != row.granted || allowed != row.allow_internal_addresses {
            let mut update = db.sql("UPDATE region_installs SET granted = ");
            update
                .bind(capabilities_to_json(&granted))
                .push(", allow_internal_addresses = ")
                .bind(i64::from(allowed))
                .push(", updated_at = ")
                .bind(now())
                .push(" WHERE region = ")
                .bind(admin.region.as_str())
                .push(" AND app = ")
                .bind(app);
            update.query().execute(&mut *write.tx).await?;
            changed(regions, &mut write.tx, action).await?;
        }
        write.commit().await?;
        if let Some(install) = self.installed(&admin.region, app)
            && install.identity.version == row.version
        {
            install.grant.set_internal_addresses(allowed);
            install.grant.replace(granted);
        }
        self.admin_show(admin, app).await
    }

    /// Uninstalls: the next request is a 404 on every node, in-flight ones are interrupted,
    /// and the install's kv state is deleted.
    pub async fn admin_uninstall(&self, admin: &Admin, app: &str) -> Result<(), AdminError> {
        let action = Action {
            admin,
            name: "uninstall",
            app: Some(app),
            detail: String::new(),
        };
        let result = self.uninstall_inner(&action, app).await;
        self.audit_refusal(&action, &result).await;
        result
    }

    async fn uninstall_inner(&self, action: &Action<'_>, app: &str) -> Result<(), AdminError> {
        let admin = action.admin;
        let regions = self.regions_or_unavailable()?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        locked_row(regions, &mut write.tx, admin, app).await?;
        for table in ["region_installs", "app_kv"] {
            let mut delete = db.sql(&format!("DELETE FROM {table} WHERE region = "));
            delete
                .bind(admin.region.as_str())
                .push(" AND app = ")
                .bind(app);
            delete.query().execute(&mut *write.tx).await?;
        }
        changed(regions, &mut write.tx, action).await?;
        write.commit().await?;
        self.uninstall(&admin.region, app);
        Ok(())
    }

    /// Upgrades to `request.version`. The grant carries over as far as the new version still
    /// requests it. When the new version asks for capabilities the installed one did not, the
    /// installed version keeps serving and the upgrade waits until it is approved
    /// (`approve`, granting any of `grant`).
    pub async fn admin_upgrade(
        &self,
        admin: &Admin,
        app: &str,
        request: &UpgradeRequest,
    ) -> Result<UpgradeView, AdminError> {
        let name = if request.approve {
            "approve"
        } else {
            "upgrade"
        };
        let action = Action {
            admin,
            name,
            app: Some(app),
            detail: allowing(
                with_grant(format!("to {}", request.version), &request.grant),
                request.approve && request.allow_internal_addresses,
            ),
        };
        let result = self.upgrade_inner(&action, app, request).await;
        self.audit_refusal(&action, &result).await;
        result
    }

    async fn upgrade_inner(
        &self,
        action: &Action<'_>,
        app: &str,
        request: &UpgradeRequest,
    ) -> Result<UpgradeView, AdminError> {
        let admin = action.admin;
        let regions = self.regions_or_unavailable()?;
        let current = self.existing(regions, admin, app).await?;
        let version: AppVersion = format!("{app}@{}", request.version)
            .parse()
            .map_err(|e| AdminError::bad("version", e))?;
        let installed: semver::Version = current
            .version
            .parse()
            .map_err(|e| anyhow::anyhow!("a stored version: {e}"))?;
        if version.version <= installed {
            return Err(AdminError::Conflict(format!(
                "{} is not newer than the installed {installed}: an upgrade goes to a later version",
                version.version
            )));
        }
        let extra = parse_capabilities("grant", &request.grant)?;
        if !request.approve && !extra.is_empty() {
            return Err(AdminError::bad(
                "grant",
                "granting capabilities with an upgrade is part of approving it: add approve".into(),
            ));
        }
        let offered = self.offered(&version).await?;
        check_requested("grant", &offered.manifest, &extra)?;
        let old = SignedPackage::from_json(current.package.as_bytes())
            .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?
            .package
            .manifest()
            .capabilities();
        let new = offered.manifest.capabilities();
        let added: Vec<Capability> = new.iter().filter(|c| !old.contains(c)).cloned().collect();
        // What the region grants now, as far as the new version requests it, and what the
        // approval adds.
        let carried = |granted_now: &[Capability]| {
            let mut granted: Vec<Capability> = granted_now
                .iter()
                .filter(|c| new.contains(c))
                .cloned()
                .collect();
            for capability in &extra {
                if !granted.contains(capability) {
                    granted.push(capability.clone());
                }
            }
            granted
        };
        let waits = !added.is_empty() && !request.approve;
        // What the approval adds needs its own allowance; what carries over had it.
        check_destinations(
            "grant",
            &extra,
            request.approve && request.allow_internal_addresses,
        )?;
        let allowed = current.allow_internal_addresses
            || (request.approve && request.allow_internal_addresses);
        // Validated and compiled either way: a broken version is refused now, not on approval.
        let install = self
            .prepare_offered(
                &admin.region,
                &offered,
                Grant::new(carried(&current.granted)).allowing_internal_addresses(allowed),
            )
            .await?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        let row = locked_row(regions, &mut write.tx, admin, app).await?;
        not_revoked_meanwhile(regions, &version)?;
        if row.version != current.version {
            return Err(AdminError::Conflict(format!(
                "{app} changed to {} while upgrading: list the install and try again",
                row.version
            )));
        }
        // From the locked row: a grant removed while this compiled stays removed.
        let granted = carried(&row.granted);
        let allowed = allowed || row.allow_internal_addresses;
        install.grant.replace(granted.clone());
        install.grant.set_internal_addresses(allowed);
        let sha256 = offered.signed.package.component.sha256.as_str();
        let package = offered.signed.to_json();
        let mut update = db.sql("UPDATE region_installs SET ");
        if waits {
            update
                .push("pending_version = ")
                .bind(version.version.to_string())
                .push(", pending_sha256 = ")
                .bind(sha256)
                .push(", pending_package = ")
                .bind(package)
                .push(", pending_added = ")
                .bind(capabilities_to_json(&added));
        } else {
            update
                .push("version = ")
                .bind(version.version.to_string())
                .push(", sha256 = ")
                .bind(sha256)
                .push(", package = ")
                .bind(package)
                .push(", granted = ")
                .bind(capabilities_to_json(&granted))
                .push(", allow_internal_addresses = ")
                .bind(i64::from(allowed))
                .push(", pending_version = NULL, pending_sha256 = NULL, pending_package = NULL, pending_added = NULL");
        }
        update
            .push(", updated_at = ")
            .bind(now())
            .push(" WHERE region = ")
            .bind(admin.region.as_str())
            .push(" AND app = ")
            .bind(app);
        update.query().execute(&mut *write.tx).await?;
        changed(regions, &mut write.tx, action).await?;
        let serving = regions.syncing.lock().await;
        write.commit().await?;
        if !waits {
            self.put_install(install);
        }
        drop(serving);
        Ok(UpgradeView {
            status: if waits { "pending" } else { "upgraded" }.into(),
            install: self.admin_show(admin, app).await?,
        })
    }

    /// Declines a pending upgrade: the installed version keeps serving and the pending one is
    /// forgotten.
    pub async fn admin_decline_upgrade(
        &self,
        admin: &Admin,
        app: &str,
    ) -> Result<InstallView, AdminError> {
        let action = Action {
            admin,
            name: "decline",
            app: Some(app),
            detail: String::new(),
        };
        let result = self.decline_inner(&action, app).await;
        self.audit_refusal(&action, &result).await;
        result
    }

    async fn decline_inner(
        &self,
        action: &Action<'_>,
        app: &str,
    ) -> Result<InstallView, AdminError> {
        let admin = action.admin;
        let regions = self.regions_or_unavailable()?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        let row = locked_row(regions, &mut write.tx, admin, app).await?;
        let Some(pending) = row.pending else {
            return Err(AdminError::Conflict(format!(
                "{app} has no upgrade waiting for approval in region {}",
                admin.region
            )));
        };
        let mut update = db.sql(
            "UPDATE region_installs SET pending_version = NULL, pending_sha256 = NULL, \
             pending_package = NULL, pending_added = NULL, updated_at = ",
        );
        update
            .bind(now())
            .push(" WHERE region = ")
            .bind(admin.region.as_str())
            .push(" AND app = ")
            .bind(app);
        update.query().execute(&mut *write.tx).await?;
        changed(regions, &mut write.tx, action).await?;
        write.commit().await?;
        tracing::info!(
            region = admin.region,
            app,
            declined = pending.version,
            "upgrade declined"
        );
        self.admin_show(admin, app).await
    }

    /// The region's audit log, newest first.
    pub async fn admin_audit_log(
        &self,
        admin: &Admin,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AdminError> {
        let regions = self.regions_or_unavailable()?;
        let db = regions.db();
        let mut select = db.sql(
            "SELECT at, actor, action, app, detail, outcome FROM region_audit WHERE region = ",
        );
        select
            .bind(admin.region.as_str())
            .push(" ORDER BY id DESC LIMIT ")
            .bind(limit.clamp(1, 1000));
        Ok(select
            .query()
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|row| AuditEntry {
                at: row.get(0),
                actor: row.get(1),
                action: row.get(2),
                app: row.get(3),
                detail: row.get(4),
                outcome: row.get(5),
            })
            .collect())
    }

    /// Records a refused admin action (an allowed one is recorded in its own transaction). A
    /// failure to record is logged: the action was refused either way.
    async fn audit_refusal<T>(
        &self,
        action: &Action<'_>,
        result: &Result<T, impl std::fmt::Display>,
    ) {
        let (Some(regions), Err(error)) = (self.regions(), result) else {
            return;
        };
        let written = async {
            let mut write = regions.db().begin_write().await?;
            audited(regions, &mut write.tx, action, &format!("refused: {error}")).await?;
            write.commit().await
        };
        if let Err(error) = written.await {
            tracing::error!(%error, "cannot write the region admin audit record");
        }
    }
}

/// One admin action as the audit log records it.
struct Action<'a> {
    admin: &'a Admin,
    /// `install`, `grant`, …
    name: &'a str,
    app: Option<&'a str>,
    detail: String,
}

/// Writes `action`'s audit record with `outcome` in `tx`.
async fn audited(
    regions: &Regions,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    action: &Action<'_>,
    outcome: &str,
) -> sqlx::Result<()> {
    let admin = action.admin;
    tracing::info!(
        region = admin.region,
        actor = admin.actor,
        action = action.name,
        app = action.app,
        detail = action.detail,
        outcome,
        "region admin action"
    );
    let db = regions.db();
    let mut insert = db
        .sql("INSERT INTO region_audit (at, region, actor, action, app, detail, outcome) VALUES (");
    insert
        .bind(now())
        .push(", ")
        .bind(admin.region.as_str())
        .push(", ")
        .bind(admin.actor.as_str())
        .push(", ")
        .bind(action.name)
        .push(", ");
    match action.app {
        Some(app) => insert.bind(app),
        None => insert.push("NULL"),
    };
    insert
        .push(", ")
        .bind(action.detail.trim())
        .push(", ")
        .bind(outcome)
        .push(")");
    insert.query().execute(&mut **tx).await?;
    Ok(())
}

/// The install row of `app` in the admin's region, locked for update on PostgreSQL (SQLite
/// writers are serialised already).
async fn locked_row(
    regions: &Regions,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    admin: &Admin,
    app: &str,
) -> Result<InstallRow, AdminError> {
    let db = regions.db();
    let mut select = db.sql(&format!(
        "SELECT {} FROM region_installs WHERE region = ",
        super::INSTALL_COLUMNS
    ));
    select
        .bind(admin.region.as_str())
        .push(" AND app = ")
        .bind(app);
    if db.backend() == healthcloud_integration::db::Backend::Postgres {
        select.push(" FOR UPDATE");
    }
    let row = select.query().fetch_optional(&mut **tx).await?;
    match row {
        Some(row) => Ok(super::install_row(&row)?),
        None => Err(AdminError::NotFound(format!(
            "no app {app} is installed in region {}: `healthcloud region list --region {}` shows what is",
            admin.region, admin.region
        ))),
    }
}

/// Marks the installs changed, for every node, and records `action` as allowed: in the
/// transaction of the change, so no change commits without its audit record.
async fn changed(
    regions: &Regions,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    action: &Action<'_>,
) -> Result<(), AdminError> {
    sqlx::query("UPDATE region_changes SET seq = seq + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    regions.db().notify(tx, super::CHANNEL).await?;
    audited(regions, tx, action, "allowed").await?;
    Ok(())
}

/// An audit detail that records the admin's allowance for internal addresses.
fn allowing(detail: String, allow_internal_addresses: bool) -> String {
    if allow_internal_addresses {
        format!("{detail} allowing internal addresses")
    } else {
        detail
    }
}

/// Refuses `outbound-http:` destinations inside the network without the admin's allowance.
fn check_destinations(
    field: &str,
    grant: &[Capability],
    allow_internal_addresses: bool,
) -> Result<(), AdminError> {
    crate::install::check_destinations(grant, allow_internal_addresses).map_err(|e| {
        AdminError::Unprocessable {
            message: e.to_string(),
            field: Some(field.into()),
        }
    })
}

/// An audit detail: `what`, and what it grants if anything.
fn with_grant(what: String, grant: &[String]) -> String {
    if grant.is_empty() {
        what
    } else {
        format!("{what} granting {}", grant.join(" "))
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
