//! Traps on request: a Rust panic on `/trap`, a bare `unreachable` instruction on
//! `/unreachable`. The host must answer 500 and serve the next request from a fresh instance.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_no_route, respond_text};

struct Trap;

impl Guest for Trap {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
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
