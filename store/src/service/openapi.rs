//! The store API's OpenAPI document, generated from the handlers' annotations and served at
//! `/store/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{Store, catalog, publish, publishers, revocations};

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
    components(schemas(healthcloud_platform::http::ErrorBody))
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{catalog, document, publishers};
    use healthcloud_package::manifest::check_name;

    fn pattern(schema: &Value) -> regex::Regex {
        let pattern = schema["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("no pattern in {schema}"));
        regex::Regex::new(pattern).unwrap()
    }

    fn query_parameter<'a>(document: &'a Value, path: &str, name: &str) -> &'a Value {
        document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == name)
            .map(|parameter| &parameter["schema"])
            .unwrap_or_else(|| panic!("no parameter {name} of {path}"))
    }

    /// A checker draws requests from the document; the handlers must refuse exactly what it
    /// forbids. Each documented pattern against the check the handler makes, on the edges.
    #[test]
    fn the_documented_patterns_are_what_the_handlers_enforce() {
        let document = serde_json::to_value(document()).unwrap();
        let schemas = &document["components"]["schemas"];
        let publisher = &schemas["NewPublisher"]["properties"];

        let id = pattern(&publisher["id"]);
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for name in [
            "acme",
            "a",
            "0-x",
            "-acme",
            "Acme",
            "ac me",
            "h\u{0435}llo",
            "",
            "acme\n",
            &long,
            &too_long,
        ] {
            assert_eq!(
                id.is_match(name),
                check_name("id", name).is_ok(),
                "{name:?}"
            );
        }

        let display = pattern(&publisher["name"]);
        let max = publisher["name"]["maxLength"].as_u64().unwrap() as usize;
        let wide = "é".repeat(200);
        let too_wide = "é".repeat(201);
        for name in [
            "Acme",
            " Acme ",
            "   ",
            "",
            "\u{3000}",
            "a\u{1b}[2J",
            "a\tb",
            "a\n",
            "\u{7f}",
            "Ærø Sundhed",
            &wide,
            &too_wide,
        ] {
            assert_eq!(
                display.is_match(name) && name.chars().count() <= max,
                publishers::is_display_name(name),
                "{name:?}"
            );
        }

        let q = query_parameter(&document, "/store/v1/apps", "q");
        let words = pattern(q);
        let max = q["maxLength"].as_u64().unwrap() as usize;
        for text in [
            "",
            "  ",
            "blood",
            " a b c d e f g h ",
            "a b c d e f g h i",
            "a\tb\nc\rd e f g h",
            "a\tb\nc\rd e f g h\ti",
            "a\u{3000}b c d e f g h i",
            &"x".repeat(500),
            &"x".repeat(501),
        ] {
            assert_eq!(
                words.is_match(text) && text.chars().count() <= max,
                catalog::words(text).count() <= 8 && text.chars().count() <= 500,
                "{text:?}"
            );
        }

        let reason = pattern(&schemas["RevokeVersion"]["properties"]["reason"]);
        for text in ["why", " \t\n\r", "", "\u{3000}", " x "] {
            assert_eq!(
                reason.is_match(text),
                !text.trim_matches([' ', '\t', '\n', '\r']).is_empty(),
                "{text:?}"
            );
        }

        let nonce = pattern(query_parameter(&document, "/store/v1/revocations", "nonce"));
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for text in ["abc123", "", "a-b", "æ", &long, &too_long] {
            assert_eq!(
                nonce.is_match(text),
                (1..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric()),
                "{text:?}"
            );
        }

        // What `healthcloud keygen` writes matches the documented key form.
        let key = pattern(&publisher["key"]);
        for _ in 0..32 {
            let pem = healthcloud_package::keys::SecretKey::generate()
                .public()
                .to_pem();
            assert!(key.is_match(&pem), "{pem}");
        }
    }
}
