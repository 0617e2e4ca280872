//! Creates `wasi:http` `fields` resources on `/flood?n=N` (1,000,000 by default) and keeps
//! every one, so the host's per-instance resource table fills up. The host must stop it with
//! a trap or an error (500) before the table exhausts its memory.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{Fields, IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_bad_number, respond_no_route, respond_text};

struct HandleFlood;

impl Guest for HandleFlood {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/flood") {
            match request.query_number("n", 1_000_000_usize) {
                Ok(count) => {
                    let held = flood(count);
                    respond_text(response_out, 200, format!("created {held} fields"));
                }
                Err(text) => respond_bad_number(response_out, "n", &text),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Creates `count` handles and holds them all until it has made the last one.
fn flood(count: usize) -> usize {
    let mut held = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        held.push(Fields::new());
    }
    held.len()
}

guest_support::bindings::export!(HandleFlood);
