//! The catalog's web pages at `/store`.

use axum::Router;

use super::Store;

pub(super) fn router() -> Router<Store> {
    Router::new()
}
