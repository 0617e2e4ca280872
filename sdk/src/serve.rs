//! The `wasi:http/incoming-handler` glue behind [`serve!`](crate::serve): the only place that
//! touches `wasi:http` and `wasi:io`. Everything it calls into is plain Rust.

use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::http::{Method, Request, Response};

/// The largest request body an app accepts; larger bodies are answered `413` before the
/// handler runs. Forms and JSON of health apps are far smaller, and the whole body is held in
/// the instance's memory.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// The most bytes one `blocking-write-and-flush` call may write (a WASI limit).
const MAX_WRITE: usize = 4096;
/// How many bytes to ask for per read of the request body.
const READ_CHUNK: u64 = 64 * 1024;

/// Reads `request`, answers it with `handler`, and writes the response to `response_out`.
pub fn serve(
    request: IncomingRequest,
    response_out: ResponseOutparam,
    handler: impl FnOnce(Request) -> Response,
) {
    let response = match read_request(&request) {
        Ok(request) => {
            let is_head = request.method == Method::Head;
            let mut response = handler(request);
            if is_head {
                response.body.clear();
            }
            response
        }
        Err(failure) => failure.response(),
    };
    send(response, response_out);
}

enum ReadFailure {
    TooLarge,
    Unreadable(String),
}

impl ReadFailure {
    fn response(&self) -> Response {
        match self {
            ReadFailure::TooLarge => Response::text(format!(
                "The request body is larger than this app accepts ({MAX_REQUEST_BODY} bytes)."
            ))
            .with_status(413),
            ReadFailure::Unreadable(reason) => {
                Response::text(format!("The request body could not be read: {reason}"))
                    .with_status(400)
            }
        }
    }
}

fn read_request(incoming: &IncomingRequest) -> Result<Request, ReadFailure> {
    let target = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    let mut request = Request::new(method(incoming.method()), &target);
    request.headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    request.body = read_body(incoming)?;
    Ok(request)
}

fn read_body(incoming: &IncomingRequest) -> Result<Vec<u8>, ReadFailure> {
    let unreadable = || ReadFailure::Unreadable("the body was already consumed".to_owned());
    let body = incoming.consume().map_err(|()| unreadable())?;
    let mut bytes = Vec::new();
    {
        // The stream is a child of `body` and must be dropped before `body` is finished.
        let stream = body.stream().map_err(|()| unreadable())?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => {
                    if bytes.len() + chunk.len() > MAX_REQUEST_BODY {
                        return Err(ReadFailure::TooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(error)) => {
                    return Err(ReadFailure::Unreadable(error.to_debug_string()));
                }
            }
        }
    }
    // Trailers are not used by any app; finishing tells the host we are done with the body.
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn method(method: WasiMethod) -> Method {
    match method {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Options => Method::Options,
        WasiMethod::Connect => Method::Other("CONNECT".to_owned()),
        WasiMethod::Trace => Method::Other("TRACE".to_owned()),
        WasiMethod::Other(name) => Method::Other(name),
    }
}

fn send(response: Response, response_out: ResponseOutparam) {
    let (outgoing, body) = match head(&response) {
        Ok(head) => (head, response.body),
        // The app built a response the host cannot carry (a forbidden or malformed header, a
        // status outside 100..=599): answer 500 and say why, rather than trap.
        Err(reason) => {
            let fallback =
                Response::text(format!("The app produced an invalid response: {reason}"))
                    .with_status(500);
            match head(&fallback) {
                Ok(head) => (head, fallback.body),
                Err(_) => return,
            }
        }
    };
    let Ok(outgoing_body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    {
        let Ok(stream) = outgoing_body.write() else {
            return;
        };
        for chunk in body.chunks(MAX_WRITE) {
            // A failed write means the client went away; there is no one left to tell.
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        // The stream is a child of the body and must be dropped before the body is finished.
    }
    // Nothing useful can be done if finishing fails: the response head has already been sent.
    let _ = OutgoingBody::finish(outgoing_body, None);
}

fn head(response: &Response) -> Result<OutgoingResponse, String> {
    let entries: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into_bytes()))
        .collect();
    let headers = Fields::from_list(&entries).map_err(|error| format!("headers: {error:?}"))?;
    let outgoing = OutgoingResponse::new(headers);
    outgoing
        .set_status_code(response.status)
        .map_err(|()| format!("status {} is not a valid status code", response.status))?;
    Ok(outgoing)
}
