//! Answers with headers that act on the whole origin the app shares with the platform, to
//! test the host's allow-list: `/headers` sets caching, site-data, HSTS, cookie, CORS and
//! framing headers; `/redirect?to=URL` redirects anywhere; `/cache?value=V` sets
//! `Cache-Control: V`.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, ResponseBody, respond_no_route, respond_text};

struct HostileHeaders;

/// Every header `/headers` sends: each one would act beyond the app's own pages.
const HOSTILE: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "public, max-age=31536000, immutable"),
    ("clear-site-data", "\"cookies\", \"storage\", \"cache\""),
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains; preload",
    ),
    (
        "set-cookie",
        "healthcloud_region_admin=planted; Path=/regions/; HttpOnly",
    ),
    ("access-control-allow-origin", "https://evil.example"),
    ("access-control-allow-credentials", "true"),
    ("content-security-policy", "frame-ancestors *"),
    ("x-frame-options", "ALLOWALL"),
    ("refresh", "0; url=https://evil.example/"),
    ("x-hostile", "kept?"),
];

impl Guest for HostileHeaders {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/headers") {
            answer(response_out, 200, HOSTILE, "<p>hostile headers</p>");
        } else if request.ends_with("/redirect") {
            let to = request.query("to").unwrap_or_default();
            answer(response_out, 303, &[("location", &to)], "see other");
        } else if request.ends_with("/cache") {
            let value = request.query("value").unwrap_or_default();
            answer(response_out, 200, &[("cache-control", &value)], "cached?");
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

fn answer(response_out: ResponseOutparam, status: u16, headers: &[(&str, &str)], body: &str) {
    let mut response = ResponseBody::start_with(response_out, status, headers);
    let _ = response.write(body.as_bytes());
    response.finish();
}

guest_support::bindings::export!(HostileHeaders);
