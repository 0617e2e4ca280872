//! Calls capabilities its region may not have granted, to test the call-time check: `/kv`
//! writes and reads a key, `/observations` searches Observations. Its manifest requests both
//! `kv` and `patient/Observation.rs`, so it installs; the test grants less, or revokes the
//! Observation grant while the app runs.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::healthcloud::platform::{fhir, kv};
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_fhir_error, respond_json, respond_no_route, respond_text};
use serde_json::json;

struct Ungranted;

impl Guest for Ungranted {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/kv") {
            match store_and_read() {
                Ok(()) => respond_text(response_out, 200, "stored"),
                Err(KvFailure::Call(kv::Error::Denied(reason))) => {
                    respond_text(response_out, 403, format!("denied: {reason}"));
                }
                Err(KvFailure::Call(error)) => {
                    respond_text(response_out, 500, format!("kv error: {error:?}"))
                }
                Err(KvFailure::ReadBack(value)) => {
                    respond_text(
                        response_out,
                        500,
                        format!("kv get(\"k\") after set(\"k\", b\"v\") returned {value:?}"),
                    );
                }
            }
        } else if request.ends_with("/observations") {
            match fhir::search("Observation", &[], None) {
                Ok(page) => respond_json(
                    response_out,
                    200,
                    json!({ "total": page.total }).to_string(),
                ),
                Err(error) => respond_fhir_error(response_out, &error),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Why `/kv` failed.
enum KvFailure {
    /// A kv call returned an error.
    Call(kv::Error),
    /// The read after the write did not return what was written.
    ReadBack(Option<Vec<u8>>),
}

/// `set("k", b"v")`, then `get("k")` must return `b"v"`.
fn store_and_read() -> Result<(), KvFailure> {
    kv::set("k", b"v").map_err(KvFailure::Call)?;
    match kv::get("k").map_err(KvFailure::Call)? {
        Some(value) if value == b"v" => Ok(()),
        other => Err(KvFailure::ReadBack(other)),
    }
}

guest_support::bindings::export!(Ungranted);
