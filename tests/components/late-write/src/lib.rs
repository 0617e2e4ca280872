//! Writes an Observation for the patient in context naming a marker (`/write?marker=M`), to
//! test that a write that runs past the host-call time limit is cancelled and never lands.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::healthcloud::platform::{context, fhir};
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_fhir_error, respond_no_route, respond_text};
use serde_json::json;

struct LateWrite;

impl Guest for LateWrite {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/write") {
            let marker = request.query("marker").unwrap_or_default();
            let patient = context::launch().patient.unwrap_or_default();
            let observation = json!({
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": marker},
                "subject": {"reference": format!("Patient/{patient}")},
                "effectiveDateTime": "2026-01-01T09:00:00Z",
                "valueString": marker,
            });
            match fhir::create(&observation.to_string()) {
                Ok(_) => respond_text(response_out, 201, "written"),
                Err(error) => respond_fhir_error(response_out, &error),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

guest_support::bindings::export!(LateWrite);
