//! An app built against the frozen `healthcloud:platform@0.1.0`, whose `search-page` has no
//! `incomplete`: it proves that the host keeps installing and serving apps built against a
//! released version after a new one. `/context` reads the launch context, `/search` searches
//! the patient in context's Observations and follows `next` to the last page.

/// Bindings of the world `healthcloud:platform/app@0.1.0`. WASI comes from the shared
/// `guest_support` bindings (the same WASI version), so its request and response helpers
/// work here too.
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "healthcloud:platform/app",
        with: {
            "wasi:http/types@0.2.12": guest_support::bindings::wasi::http::types,
            "wasi:io/error@0.2.12": guest_support::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": guest_support::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": guest_support::bindings::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": guest_support::bindings::wasi::clocks::monotonic_clock,
        },
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::healthcloud::platform::{context, fhir};
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_json, respond_no_route, respond_text};
use serde_json::{Value, json};

/// How many pages `/search` follows before it stops.
const MAX_PAGES: usize = 100;

struct Contract01;

impl Guest for Contract01 {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/context") {
            let launch = context::launch();
            let body = json!({"app-version": launch.app_version, "patient": launch.patient});
            respond_json(response_out, 200, body.to_string());
        } else if request.ends_with("/search") {
            match search() {
                Ok(found) => respond_json(response_out, 200, found.to_string()),
                Err(error) => respond_text(response_out, 503, format!("{error:?}")),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// `{"total": n, "ids": [...]}`: the first page's total and the ids on every page.
fn search() -> Result<Value, fhir::Error> {
    let mut ids = Vec::new();
    let mut total = None;
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = fhir::search("Observation", &[], cursor.as_deref())?;
        total.get_or_insert(page.total);
        for resource in &page.resources {
            let resource: Value = serde_json::from_str(resource).unwrap_or_default();
            ids.push(resource["id"].clone());
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    Ok(json!({"total": total.unwrap_or(0), "ids": ids}))
}

bindings::export!(Contract01 with_types_in bindings);
