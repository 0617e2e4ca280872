//! Writes a marker to stdout and stderr on `/print?marker=M`, to test that guest output
//! reaches the host log only for an app that holds the `log` capability.

use std::io::Write;

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_no_route, respond_text};

struct StdoutLeak;

impl Guest for StdoutLeak {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/print") {
            let marker = request.query("marker").unwrap_or_default();
            // Write errors are ignored: a host may refuse the bytes, the answer is the same.
            let _ = writeln!(std::io::stdout(), "stdout-leak stdout {marker}");
            let _ = std::io::stdout().flush();
            let _ = writeln!(std::io::stderr(), "stdout-leak stderr {marker}");
            let _ = std::io::stderr().flush();
            respond_text(response_out, 200, "printed");
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

guest_support::bindings::export!(StdoutLeak);
