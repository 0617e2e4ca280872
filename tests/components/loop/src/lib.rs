//! Spins forever on `/spin`, so the host's CPU deadline must interrupt it; tries to set a
//! cookie for the platform's pages on `/cookie`.

use std::hint::black_box;

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, ResponseBody, respond_no_route, respond_text};

struct InfiniteLoop;

impl Guest for InfiniteLoop {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/spin") {
            spin();
        } else if request.ends_with("/cookie") {
            // An app trying to plant a session cookie for the platform's own pages.
            let cookie = "healthcloud_region_admin=planted; Path=/regions/; HttpOnly";
            let headers = [("content-type", "text/plain"), ("set-cookie", cookie)];
            let mut response = ResponseBody::start_with(response_out, 200, &headers);
            let _ = response.write(b"cookie set");
            response.finish();
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Never returns. `black_box` is opaque to the optimizer (it may read and write the counter
/// in any way), so every iteration must really run; and an infinite loop is defined behaviour
/// in Rust, so the loop cannot be assumed to end and be dropped either.
fn spin() -> ! {
    let mut spins: u64 = 0;
    loop {
        spins = black_box(spins).wrapping_add(1);
    }
}

guest_support::bindings::export!(InfiniteLoop);
