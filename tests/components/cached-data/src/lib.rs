//! Keeps patient data in its memory and answers from it without a host call, to test that
//! a reused instance never serves after the patient's consent changed: `/remember` searches
//! the Observations of the patient in context and keeps their ids; `/recall` answers with
//! what it kept, calling no capability at all.

use std::sync::Mutex;

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::healthcloud::platform::fhir;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_fhir_error, respond_json, respond_no_route, respond_text};
use serde_json::Value;

/// What `/remember` read, kept for as long as this instance lives.
static REMEMBERED: Mutex<Option<String>> = Mutex::new(None);

struct CachedData;

impl Guest for CachedData {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/remember") {
            match fhir::search("Observation", &[], None) {
                Ok(page) => {
                    let ids: Vec<Value> = page
                        .resources
                        .iter()
                        .filter_map(|r| serde_json::from_str::<Value>(r).ok())
                        .map(|r| r["id"].clone())
                        .collect();
                    let kept = Value::Array(ids).to_string();
                    *REMEMBERED.lock().unwrap() = Some(kept.clone());
                    respond_json(response_out, 200, kept);
                }
                Err(error) => respond_fhir_error(response_out, &error),
            }
        } else if request.ends_with("/recall") {
            match REMEMBERED.lock().unwrap().clone() {
                Some(kept) => respond_json(response_out, 200, kept),
                None => respond_text(response_out, 404, "nothing remembered"),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

guest_support::bindings::export!(CachedData);
