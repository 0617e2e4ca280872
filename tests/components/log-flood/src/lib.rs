//! Floods the host's logs on `/flood?n=N` (100,000 by default): N lines through the `log`
//! interface and N lines on stdout, then answers 200 `flooded`. The host must rate-limit
//! both without failing the request or slowing other apps.

use std::io::Write;

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::healthcloud::platform::log::{self, Level};
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_bad_number, respond_no_route, respond_text};

struct LogFlood;

impl Guest for LogFlood {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/flood") {
            match request.query_number("n", 100_000_u64) {
                Ok(lines) => {
                    flood(lines);
                    respond_text(response_out, 200, "flooded");
                }
                Err(text) => respond_bad_number(response_out, "n", &text),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Writes `lines` log lines, then `lines` stdout lines. A host may refuse stdout writes past
/// its limit; the component keeps going (`println!` would panic instead, and the point is to
/// see the host throttle a flood, not the app crash on it).
fn flood(lines: u64) {
    for line in 0..lines {
        log::write(
            Level::Info,
            "log-flood line",
            &[("line".to_owned(), line.to_string())],
        );
    }
    // Line-buffered: one write to the host per line.
    let mut stdout = std::io::stdout().lock();
    for line in 0..lines {
        let _ = writeln!(stdout, "log-flood stdout line {line}");
    }
}

guest_support::bindings::export!(LogFlood);
