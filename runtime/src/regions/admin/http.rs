//! The region admin API over HTTP: routes, extractors whose rejections are [`AdminError`]s,
//! and the handlers, whose annotations make the OpenAPI document.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use healthcloud_platform::auth::Principal;
use serde::Deserialize;

use super::{
    Admin, AdminError, AuditEntry, CapabilityRequest, ErrorBody, InstallRequest, InstallView,
    RegionAdminService, Uninstalled, UpgradeRequest, UpgradeView,
};

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

/// The region admin routes, `/admin/v1/regions/{region}/…`.
pub(crate) fn router(service: RegionAdminService) -> Router {
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
        .with_state(service)
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

impl FromRequestParts<RegionAdminService> for RegionAdmin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &RegionAdminService,
    ) -> Result<Self, AdminError> {
        let Path(RegionPath { region }) = Path::from_request_parts(parts, service)
            .await
            .map_err(|e| AdminError::NotFound(e.body_text()))?;
        Ok(RegionAdmin(admin(service, parts, &region).await?))
    }
}

impl FromRequestParts<RegionAdminService> for InstallAdmin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &RegionAdminService,
    ) -> Result<Self, AdminError> {
        let Path(InstallPath {
            region,
            publisher,
            app,
        }) = Path::from_request_parts(parts, service)
            .await
            .map_err(|e| AdminError::NotFound(e.body_text()))?;
        let admin = admin(service, parts, &region).await?;
        Ok(InstallAdmin(admin, format!("{publisher}/{app}")))
    }
}

/// The region admin behind the request's bearer token; a refusal goes to the security log.
async fn admin(
    service: &RegionAdminService,
    parts: &mut Parts,
    region: &str,
) -> Result<Admin, AdminError> {
    let principal = Principal::from_request_parts(parts, &service.runtime)
        .await
        .map_err(|e| AdminError::Unauthorized(e.to_string()))?;
    let asked = format!("{} {}", parts.method, parts.uri.path());
    service.authorize_for(&principal, region, &asked).await
}

#[utoipa::path(get, path = "/admin/v1/regions/{region}/installs",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the region's installs", body = Vec<InstallView>),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the path does not name a region", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn list(
    State(service): State<RegionAdminService>,
    RegionAdmin(admin): RegionAdmin,
) -> Result<Json<Vec<InstallView>>, AdminError> {
    Ok(Json(service.list(&admin).await?))
}

#[utoipa::path(post, path = "/admin/v1/regions/{region}/installs",
    request_body = InstallRequest,
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`.")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "installed", body = InstallView),
        (status = 400, description = "the body or a parameter is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the store has no such version", body = ErrorBody),
        (status = 409, description = "installed already, yanked, or the store does not vouch for its signature", body = ErrorBody),
        (status = 410, description = "the store revoked the version", body = ErrorBody),
        (status = 422, description = "the grant names what the version does not request, or the component does not verify or would not install", body = ErrorBody),
        (status = 502, description = "the store could not be asked", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn install_app(
    State(service): State<RegionAdminService>,
    RegionAdmin(admin): RegionAdmin,
    Body(request): Body<InstallRequest>,
) -> Result<(StatusCode, Json<InstallView>), AdminError> {
    let view = service
        .install_allowing(
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
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn show(
    State(service): State<RegionAdminService>,
    InstallAdmin(admin, app): InstallAdmin,
) -> Result<Json<InstallView>, AdminError> {
    Ok(Json(service.show(&admin, &app).await?))
}

#[utoipa::path(delete, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}",
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "uninstalled, its kv state deleted", body = Uninstalled),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn uninstall(
    State(service): State<RegionAdminService>,
    InstallAdmin(admin, app): InstallAdmin,
) -> Result<Json<Uninstalled>, AdminError> {
    service.uninstall(&admin, &app).await?;
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
        (status = 400, description = "the body or a parameter is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = ErrorBody),
        (status = 422, description = "the installed version does not request that capability", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn grant(
    State(service): State<RegionAdminService>,
    InstallAdmin(admin, app): InstallAdmin,
    Body(request): Body<CapabilityRequest>,
) -> Result<Json<InstallView>, AdminError> {
    let view = service.set_grant_allowing(
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
        (status = 400, description = "the body or a parameter is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = ErrorBody),
        (status = 409, description = "the capability is not granted", body = ErrorBody),
        (status = 422, description = "not a capability", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn revoke(
    State(service): State<RegionAdminService>,
    InstallAdmin(admin, app): InstallAdmin,
    Body(request): Body<CapabilityRequest>,
) -> Result<Json<InstallView>, AdminError> {
    let view = service.set_grant_allowing(&admin, &app, &request.capability, false, false);
    Ok(Json(view.await?))
}

#[utoipa::path(post, path = "/admin/v1/regions/{region}/installs/{publisher}/{app}/upgrade",
    request_body = UpgradeRequest,
    params(("region" = String, Path, description = "The region, e.g. `hovedstaden`."), ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "upgraded", body = UpgradeView),
        (status = 202, description = "the new version asks for more: it waits for approval", body = UpgradeView),
        (status = 400, description = "the body or a parameter is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the app is not installed, or the store has no such version", body = ErrorBody),
        (status = 409, description = "not newer than the installed version, yanked, changed meanwhile, or the store does not vouch for its signature", body = ErrorBody),
        (status = 410, description = "the store revoked the version", body = ErrorBody),
        (status = 422, description = "the grant names what the version does not request, or the component does not verify or would not install", body = ErrorBody),
        (status = 502, description = "the store could not be asked", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn upgrade(
    State(service): State<RegionAdminService>,
    InstallAdmin(admin, app): InstallAdmin,
    Body(request): Body<UpgradeRequest>,
) -> Result<(StatusCode, Json<UpgradeView>), AdminError> {
    let view = service.upgrade(&admin, &app, &request).await?;
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
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the app is not installed in this region", body = ErrorBody),
        (status = 409, description = "no upgrade is waiting", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn decline_upgrade(
    State(service): State<RegionAdminService>,
    InstallAdmin(admin, app): InstallAdmin,
) -> Result<Json<InstallView>, AdminError> {
    Ok(Json(service.decline_upgrade(&admin, &app).await?))
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
        (status = 400, description = "the body or a parameter is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a region admin of this region", body = ErrorBody),
        (status = 404, description = "the path does not name a region", body = ErrorBody),
        (status = 503, description = "this node does not serve region installs", body = ErrorBody)))]
async fn audit(
    State(service): State<RegionAdminService>,
    RegionAdmin(admin): RegionAdmin,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, AdminError> {
    if !(1..=1000).contains(&query.limit) {
        return Err(AdminError::bad(
            "limit",
            "limit is 1 to 1000 entries".into(),
        ));
    }
    Ok(Json(service.audit_log(&admin, query.limit).await?))
}
