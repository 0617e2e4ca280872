//! Answers `/big?mb=N` with 200 and N MiB of body (16 by default), more than the host's
//! response size cap allows.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{
    MAX_WRITE, Request, ResponseBody, respond_bad_number, respond_no_route, respond_text,
};

const MIB: usize = 1 << 20;

struct BigResponse;

impl Guest for BigResponse {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/big") {
            match request.query_number("mb", 16) {
                Ok(mb) => stream(response_out, mb),
                Err(text) => respond_bad_number(response_out, "mb", &text),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Streams `mb` MiB of `x`, one chunk at a time, without holding the whole body. Stops when
/// the host refuses a write (it may fail the response once the cap is passed).
fn stream(response_out: ResponseOutparam, mb: usize) {
    let chunk = [b'x'; MAX_WRITE];
    let mut response = ResponseBody::start(response_out, 200, "text/plain; charset=utf-8");
    for _ in 0..mb.saturating_mul(MIB / MAX_WRITE) {
        if response.write(&chunk).is_err() {
            return;
        }
    }
    response.finish();
}

guest_support::bindings::export!(BigResponse);
