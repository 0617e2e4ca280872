//! Searches the patient in context's Observations through the SDK, as a vendor's app does, and
//! reports what the first page tells the app: whether the answer is complete, which sources
//! are missing from it, and where each resource came from.

use healthcloud_sdk::{Request, Response, Router, fhir};
use serde_json::{Value, json};

healthcloud_sdk::serve!(|request| {
    Router::new()
        .get("/ok", |_| Response::text("ok"))
        .get("/search", search)
        .handle(request)
});

/// `{"complete", "total", "ids", "origins", "incomplete"}` of the first page of
/// `Observation?_count=100`.
fn search(_request: Request) -> Response {
    match fhir::search("Observation").count(100).first_page::<Value>() {
        Ok(page) => Response::json(&json!({
            "complete": page.is_complete(),
            "total": page.total,
            "ids": page.resources.iter().map(|r| &r["id"]).collect::<Vec<_>>(),
            "origins": page.resources.iter().map(|r| &r["meta"]["source"]).collect::<Vec<_>>(),
            "incomplete": page.incomplete,
        })),
        Err(error) => Response::text(error.to_string()).with_status(error.status_code()),
    }
}
