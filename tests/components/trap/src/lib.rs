//! Traps on request: a Rust panic on `/trap`, a bare `unreachable` instruction on
//! `/unreachable`. The host must answer 500 and serve the next request from a fresh instance.
//! `/count` tells how many requests this instance has served, so a test can see whether the
//! host reused it; `/headers` lists the request header names the host passed on.

use std::sync::atomic::{AtomicU32, Ordering};

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_no_route, respond_text};

struct Trap;

/// Requests this instance has served.
static SERVED: AtomicU32 = AtomicU32::new(0);

impl Guest for Trap {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        // The header names the host passed on, lower-case, one per line.
        let header_names: Vec<String> = request
            .headers()
            .entries()
            .into_iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        let request = Request::new(&request);
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        if request.ends_with("/headers") {
            respond_text(response_out, 200, header_names.join("\n"));
        } else if request.ends_with("/count") {
            respond_text(response_out, 200, served.to_string());
        } else if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/trap") {
            // Panics abort on wasm32-wasip2: the message goes to stderr, then `unreachable`.
            panic!("the trap component panics on purpose");
        } else if request.ends_with("/unreachable") {
            core::arch::wasm32::unreachable();
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

guest_support::bindings::export!(Trap);
