//! Fetches whatever URL it is asked for on `/fetch?url=URL`, to test that the host lets
//! outgoing HTTP reach only the hosts the manifest lists and the region granted (here
//! `example.org` alone): answers 200 with the upstream status as the body, or 502
//! `error: <error-code>` when the host refuses or the request fails.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::outgoing_handler;
use guest_support::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingRequest, ResponseOutparam, Scheme,
};
use guest_support::{Request, respond_no_route, respond_text};

struct Outbound;

impl Guest for Outbound {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/fetch") {
            let Some(url) = request.query("url") else {
                return respond_text(response_out, 400, "missing query parameter: url");
            };
            let outgoing = match outgoing_request(&url) {
                Ok(outgoing) => outgoing,
                Err(reason) => return respond_text(response_out, 400, reason),
            };
            match fetch(outgoing) {
                Ok(status) => respond_text(response_out, 200, status.to_string()),
                Err(code) => respond_text(response_out, 502, format!("error: {code:?}")),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// A `GET` of `url`, which must be absolute (`scheme://host[:port]/path?query`).
fn outgoing_request(url: &str) -> Result<OutgoingRequest, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|error| format!("invalid url {url}: {error}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("invalid url {url}: not absolute"));
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let path_with_query = uri.path_and_query().map_or("/", |path| path.as_str());
    let outgoing = OutgoingRequest::new(Fields::new());
    let set = [
        outgoing.set_method(&Method::Get),
        outgoing.set_scheme(Some(&scheme)),
        outgoing.set_authority(Some(authority.as_str())),
        outgoing.set_path_with_query(Some(path_with_query)),
    ];
    if set.iter().any(Result::is_err) {
        return Err(format!("invalid url {url}: the host refused its parts"));
    }
    Ok(outgoing)
}

/// Sends `outgoing` and waits for the response's status. Either step may fail with the
/// host's error code (e.g. `HttpRequestDenied` for a host that was not granted).
fn fetch(outgoing: OutgoingRequest) -> Result<u16, ErrorCode> {
    let future = outgoing_handler::handle(outgoing, None)?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(response)) => response.map(|response| response.status()),
        Some(Err(())) => Err(ErrorCode::InternalError(Some(
            "the response was already taken".to_owned(),
        ))),
        None => Err(ErrorCode::InternalError(Some(
            "the response is not ready after waiting for it".to_owned(),
        ))),
    }
}

guest_support::bindings::export!(Outbound);
