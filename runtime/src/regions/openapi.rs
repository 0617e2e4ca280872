//! The region admin API's OpenAPI document, generated from the handlers' annotations in
//! [`super::admin`] and served at `/admin/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::admin::http as admin;

pub use super::admin::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "healthcloud region admin",
        description = "A region's installs of app versions from the store: install with a grant \
                       (a subset of what the version requests), change the grant, upgrade, \
                       uninstall, and the region's admin audit log. Every call takes \
                       `Authorization: Bearer <token>` of a region admin of the region in the \
                       path (`healthcloud token --role region-admin --region REGION`). A request \
                       the schema below does not describe is refused with 400; a capability the \
                       version does not request (or that is no capability) with 422. Every error \
                       body is `ErrorBody`."
    ),
    modifiers(&BearerAuth, &RefusalBudget),
    paths(
        admin::list,
        admin::install_app,
        admin::show,
        admin::uninstall,
        admin::grant,
        admin::revoke,
        admin::upgrade,
        admin::decline_upgrade,
        admin::audit,
    ),
    components(schemas(ErrorBody))
)]
struct RegionAdminApi;

/// The `bearer` security scheme every call names.
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

/// Every operation may answer 429: a caller refused too often lately (by this API, the FHIR API
/// or a data host call) is slowed down before anything else is looked at.
struct RefusalBudget;

impl utoipa::Modify for RefusalBudget {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, schema::Type,
        };
        let response = ResponseBuilder::new()
            .description(
                "Too many refused requests from this user lately: retry after the given seconds.",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds until the next request is considered."))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .insert("429".into(), RefOr::T(response.clone()));
            }
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    RegionAdminApi::openapi()
}

pub(crate) fn router() -> Router {
    Router::new().route("/admin/v1/openapi.json", get(|| async { Json(document()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_route_is_in_the_document_with_its_error_body() {
        let document = serde_json::to_value(document()).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let install = "/admin/v1/regions/{region}/installs/{publisher}/{app}";
        for (path, methods) in [
            ("/admin/v1/regions/{region}/installs", &["get", "post"][..]),
            (install, &["get", "delete"]),
            (&format!("{install}/grant"), &["post"]),
            (&format!("{install}/revoke"), &["post"]),
            (&format!("{install}/upgrade"), &["post", "delete"]),
            ("/admin/v1/regions/{region}/audit", &["get"]),
        ] {
            for method in methods {
                let operation = &paths[path][method];
                assert!(operation.is_object(), "{method} {path} is missing");
                for status in ["401", "403", "429"] {
                    assert_eq!(
                        operation["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} does not document {status}"
                    );
                }
                assert_eq!(operation["security"][0]["bearer"], serde_json::json!([]));
            }
        }
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
