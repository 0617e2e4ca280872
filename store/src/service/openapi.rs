//! The store API's OpenAPI document, generated from the handlers' annotations and served at
//! `/store/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{Store, catalog, error, publish, publishers, revocations};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "healthcloud app store",
        description = "Publishers and their keys, signed packages, the catalog and the revocation feed. \
                       Write calls take `Authorization: Bearer <token>` (store-admin or publisher). \
                       A request the schema below does not describe is refused with 400; one that is \
                       well formed but cannot be acted on (a key that is not a usable ed25519 key, a \
                       compromise date in the future, a component that would not install) with 422. \
                       Every error body is `ErrorBody`."
    ),
    modifiers(&BearerAuth),
    paths(
        publishers::register,
        publishers::show,
        publishers::add_key,
        publishers::revoke_key,
        publish::publish,
        catalog::list,
        catalog::show,
        catalog::version,
        catalog::component,
        catalog::yank,
        catalog::revoke,
        revocations::feed,
        revocations::feed_key,
    ),
    components(schemas(error::ErrorBody))
)]
struct StoreApi;

/// The `bearer` security scheme the write calls name: a token from `healthcloud token`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    StoreApi::openapi()
}

pub(super) fn router() -> Router<Store> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}
