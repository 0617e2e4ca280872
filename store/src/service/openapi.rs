//! The store API's OpenAPI document, generated from the handlers' annotations and served at
//! `/store/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::{Store, catalog, error, publish, publishers, revocations};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "healthcloud app store",
        description = "Publishers and their keys, signed packages, the catalog and the revocation feed. \
                       Write calls take `Authorization: Bearer <token>` (store-admin or publisher)."
    ),
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

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    StoreApi::openapi()
}

pub(super) fn router() -> Router<Store> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}
