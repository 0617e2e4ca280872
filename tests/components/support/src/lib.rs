//! Guest bindings of the world `healthcloud:platform/app` and the few helpers every test
//! component needs: read the incoming request's path and query, answer with a status and a
//! body.
//!
//! All components share these bindings. A component still imports only the interfaces it
//! actually calls: `wit-component` drops the imports that the linked core module never uses,
//! which matters because the host refuses at install a component importing an interface its
//! manifest does not request.
//!
//! ```ignore
//! use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
//! use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
//! use guest_support::{Request, respond_text};
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
//!         let request = Request::new(&request);
//!         if request.ends_with("/ok") {
//!             respond_text(response_out, 200, "ok");
//!         }
//!     }
//! }
//!
//! guest_support::bindings::export!(Hello);
//! ```
#![deny(missing_docs)]

/// The generated bindings: imports under `healthcloud::platform` and `wasi`, the
/// `wasi:http/incoming-handler` export under `exports`, and the `export!` macro.
#[expect(missing_docs, reason = "bindgen-generated")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/0.2.0",
        world: "healthcloud:platform/app",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "guest_support::bindings",
    });
}

use bindings::healthcloud::platform::fhir;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, OutputStream, ResponseOutparam,
};
use bindings::wasi::io::streams::StreamError;

/// The largest chunk handed to one `blocking-write-and-flush` (the call's documented limit).
pub const MAX_WRITE: usize = 4096;

/// The parts of an incoming request that the components route on.
#[derive(Debug, Clone)]
pub struct Request {
    path: String,
    query: String,
}

impl Request {
    /// Reads the path and query of `request`. The host forwards the full path
    /// (`/apps/{region}/{publisher}/{app}/rest`), so components match on its end.
    pub fn new(request: &IncomingRequest) -> Self {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_owned(), query.to_owned()),
            None => (path_with_query, String::new()),
        };
        Self { path, query }
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the path ends with `suffix`, e.g. `/ok`.
    pub fn ends_with(&self, suffix: &str) -> bool {
        self.path.ends_with(suffix)
    }

    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The query parameter `name` as a number; `default` when it is absent.
    ///
    /// # Errors
    ///
    /// The parameter's text when it is present but not a number.
    pub fn query_number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.query(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| text),
        }
    }
}

/// A response whose status and headers are sent; the body streams through [`Self::write`].
pub struct ResponseBody {
    stream: OutputStream,
    body: OutgoingBody,
}

impl ResponseBody {
    /// Sends the status and a `content-type` header, and opens the body.
    pub fn start(response_out: ResponseOutparam, status: u16, content_type: &str) -> Self {
        Self::start_with(response_out, status, &[("content-type", content_type)])
    }

    /// Sends the status and `headers`, and opens the body.
    pub fn start_with(
        response_out: ResponseOutparam,
        status: u16,
        headers: &[(&str, &str)],
    ) -> Self {
        let list: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&list).expect("valid headers");
        let response = OutgoingResponse::new(headers);
        response
            .set_status_code(status)
            .expect("the status is a valid HTTP status");
        let body = response.body().expect("the body is taken once");
        let stream = body.write().expect("the body stream is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        Self { stream, body }
    }

    /// Writes `bytes`, at most [`MAX_WRITE`] bytes per `blocking-write-and-flush`.
    ///
    /// # Errors
    ///
    /// The stream's error when the host stops taking the body (for example past its
    /// response size limit).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        for chunk in bytes.chunks(MAX_WRITE) {
            self.stream.blocking_write_and_flush(chunk)?;
        }
        Ok(())
    }

    /// Ends the body. A host that already failed the response may refuse; nothing is left to
    /// tell anyone then, so that is ignored.
    pub fn finish(self) {
        drop(self.stream);
        let _ = OutgoingBody::finish(self.body, None);
    }
}

/// Answers with `status` and `body` of type `content_type`.
pub fn respond(
    response_out: ResponseOutparam,
    status: u16,
    content_type: &str,
    body: impl AsRef<[u8]>,
) {
    let mut response = ResponseBody::start(response_out, status, content_type);
    // A failed write means the host dropped the response: there is no one left to answer.
    let _ = response.write(body.as_ref());
    response.finish();
}

/// Answers with `status` and a plain-text `body`.
pub fn respond_text(response_out: ResponseOutparam, status: u16, body: impl AsRef<[u8]>) {
    respond(response_out, status, "text/plain; charset=utf-8", body);
}

/// Answers with `status` and a JSON `body`.
pub fn respond_json(response_out: ResponseOutparam, status: u16, body: impl AsRef<[u8]>) {
    respond(response_out, status, "application/json", body);
}

/// Answers 404 naming the path: the request matched none of the component's routes.
pub fn respond_no_route(response_out: ResponseOutparam, request: &Request) {
    respond_text(response_out, 404, format!("no route: {}", request.path()));
}

/// Answers 400 naming a query parameter that is not a number.
pub fn respond_bad_number(response_out: ResponseOutparam, name: &str, text: &str) {
    respond_text(response_out, 400, format!("{name} is not a number: {text}"));
}

/// The status and plain-text body that report a FHIR call's error: 403 `denied: <reason>`,
/// 404 `not-found`, 400 `invalid: <reason>`, 503 `unavailable: <reason>`.
pub fn fhir_error(error: &fhir::Error) -> (u16, String) {
    match error {
        fhir::Error::Denied(reason) => (403, format!("denied: {reason}")),
        fhir::Error::NotFound => (404, "not-found".to_owned()),
        fhir::Error::Invalid(reason) => (400, format!("invalid: {reason}")),
        fhir::Error::Unavailable(reason) => (503, format!("unavailable: {reason}")),
    }
}

/// Answers with the status and body of [`fhir_error`].
pub fn respond_fhir_error(response_out: ResponseOutparam, error: &fhir::Error) {
    let (status, body) = fhir_error(error);
    respond_text(response_out, status, body);
}
