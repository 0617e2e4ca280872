//! `POST /fhir/r4` with a `batch` or `transaction` Bundle. A batch's entries are each answered
//! as the same request alone would be: they are sent through this API's own routes, with the
//! caller's token. A transaction's writes go to [`FhirService::transaction`] (all or none);
//! its reads follow, once the writes are in.
//!
//! [`FhirService::transaction`]: crate::service::FhirService::transaction

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Caller, FhirState, fhir_json, json_body, parse_etag, parse_pairs, patch_change};
use crate::error::FhirError;
use crate::service::Change;
use crate::service::transaction::{MAX_ENTRIES, Target, TxDone, TxWrite};
use healthcloud_platform::scope::Interaction;

/// The most bytes the answers of one Bundle's entries may take.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// One entry's request, read from the Bundle.
#[derive(Debug)]
struct Entry {
    method: Method,
    /// `Type` or `Type/id`, relative to the FHIR base.
    path: String,
    query: Option<String>,
    full_url: Option<String>,
    resource: Option<Value>,
    /// `ifNoneExist`, `ifMatch`, `ifNoneMatch`, `ifModifiedSince`, as HTTP headers.
    headers: Vec<(&'static str, String)>,
}

impl Entry {
    /// The entry's request as written, for messages.
    fn describe(&self) -> String {
        match &self.query {
            Some(query) => format!("{} {}?{query}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }

    /// `(type, id)` of the path.
    fn target(&self) -> (&str, Option<&str>) {
        match self.path.split_once('/') {
            Some((resource_type, id)) => (resource_type, Some(id)),
            None => (&self.path, None),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body of a PATCH: a Binary holding a JSON Patch (or merge patch), as FHIR Bundles
    /// carry them.
    fn patch(&self) -> Result<(String, Vec<u8>), FhirError> {
        let binary = self
            .resource
            .as_ref()
            .filter(|r| r["resourceType"] == "Binary");
        let (Some(media), Some(data)) = (
            binary.and_then(|b| b["contentType"].as_str()),
            binary.and_then(|b| b["data"].as_str()),
        ) else {
            return Err(FhirError::BadRequest(
                "a PATCH entry's resource is a Binary with contentType application/json-patch+json and the patch, base64-encoded, as data".into(),
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| FhirError::BadRequest(format!("the Binary's data is not base64: {e}")))?;
        Ok((media.to_owned(), bytes))
    }
}

/// Reads entry `i` of a Bundle posted to `base`.
fn entry(i: usize, value: &Value, base: &str) -> Result<Entry, FhirError> {
    let bad = |why: &str| FhirError::BadRequest(format!("entry {i}: {why}"));
    let request = value.get("request").ok_or_else(|| bad("has no request"))?;
    let method = match request["method"].as_str() {
        Some("GET") => Method::GET,
        Some("POST") => Method::POST,
        Some("PUT") => Method::PUT,
        Some("PATCH") => Method::PATCH,
        Some("DELETE") => Method::DELETE,
        _ => {
            return Err(bad(
                "request.method must be GET, POST, PUT, PATCH or DELETE",
            ));
        }
    };
    let url = request["url"]
        .as_str()
        .ok_or_else(|| bad("has no request.url"))?;
    let url = url
        .strip_prefix(base)
        .unwrap_or(url)
        .trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (url, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let is_type = |t: &str| t.starts_with(|c: char| c.is_ascii_uppercase());
    if path.contains("://") || !(1..=2).contains(&segments.len()) || !is_type(segments[0]) {
        return Err(bad(&format!(
            "request.url '{url}' is not Type, Type/id or Type?criteria relative to this server"
        )));
    }
    let mut headers = Vec::new();
    for (field, header) in [
        ("ifNoneExist", "if-none-exist"),
        ("ifMatch", "if-match"),
        ("ifNoneMatch", "if-none-match"),
        ("ifModifiedSince", "if-modified-since"),
    ] {
        if let Some(value) = request[field].as_str() {
            headers.push((header, value.to_owned()));
        }
    }
    Ok(Entry {
        method,
        path: path.to_owned(),
        query,
        full_url: value["fullUrl"].as_str().map(str::to_owned),
        resource: value.get("resource").cloned(),
        headers,
    })
}

pub(super) async fn bundle(
    State(state): State<FhirState>,
    Caller(context): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let read = async {
        let bundle = json_body(&state, &headers, body).await?;
        let transaction = match (bundle["resourceType"].as_str(), bundle["type"].as_str()) {
            (Some("Bundle"), Some("batch")) => false,
            (Some("Bundle"), Some("transaction")) => true,
            _ => {
                return Err(FhirError::BadRequest(
                    "the base takes a Bundle of type batch or transaction".into(),
                ));
            }
        };
        let values = bundle["entry"].as_array().cloned().unwrap_or_default();
        if values.len() > MAX_ENTRIES {
            return Err(FhirError::BadRequest(format!(
                "a Bundle may hold at most {MAX_ENTRIES} entries; this one holds {}",
                values.len()
            )));
        }
        Ok((transaction, values))
    };
    let (transaction, values) = match read.await {
        Ok(read) => read,
        Err(error) => {
            let refused = (Interaction::Create, "Bundle", None);
            return Err(state.service.refused(&context, refused, error).await);
        }
    };
    let base = state.config.base_url.clone();
    let authorization = headers.get(header::AUTHORIZATION).cloned();
    let entries: Vec<Result<Entry, FhirError>> = (values.iter().enumerate())
        .map(|(i, value)| entry(i, value, &base))
        .collect();
    // What the entries' answers may take in all, held in memory until the Bundle is sent.
    let mut budget = MAX_ANSWER_BYTES;
    let answers = match transaction {
        false => {
            let mut answers = Vec::with_capacity(entries.len());
            for entry in entries {
                answers.push(match entry {
                    Ok(entry) => send(&state, authorization.as_ref(), &entry, &mut budget).await,
                    Err(error) => error_entry(&error),
                });
            }
            answers
        }
        true => {
            let entries = match entries.into_iter().collect::<Result<Vec<Entry>, _>>() {
                Ok(entries) => entries,
                Err(error) => {
                    let refused = (Interaction::Create, "Bundle", None);
                    return Err(state.service.refused(&context, refused, error).await);
                }
            };
            match transact(
                &state,
                &context,
                authorization.as_ref(),
                &entries,
                &mut budget,
            )
            .await
            {
                Ok(answers) => answers,
                Err((i, error)) => return Err(failed_entry(i, entries.get(i), error)),
            }
        }
    };
    let kind = match transaction {
        true => "transaction-response",
        false => "batch-response",
    };
    let mut response = json!({"resourceType": "Bundle", "type": kind});
    super::with_entries(&mut response, answers);
    Ok(fhir_json(StatusCode::OK, response.to_string()))
}

/// The transaction's writes, all or none, then its reads; each entry's answer.
async fn transact(
    state: &FhirState,
    context: &crate::policy::AccessContext,
    authorization: Option<&HeaderValue>,
    entries: &[Entry],
    budget: &mut usize,
) -> Result<Vec<Value>, (usize, FhirError)> {
    let mut writes = Vec::new();
    let mut positions = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.method == Method::GET {
            continue;
        }
        writes.push(write(entry).map_err(|e| (i, e))?);
        positions.push(i);
    }
    let done = (state.service.transaction(context, writes))
        .await
        .map_err(|(i, error)| (positions.get(i).copied().unwrap_or(0), error))?;
    let mut answers: Vec<Option<Value>> = vec![None; entries.len()];
    for (position, done) in positions.into_iter().zip(done) {
        let (resource_type, _) = entries[position].target();
        answers[position] = Some(written_entry(&state.config.base_url, resource_type, done));
    }
    for (i, entry) in entries.iter().enumerate() {
        if entry.method == Method::GET {
            answers[i] = Some(send(state, authorization, entry, budget).await);
        }
    }
    Ok(answers.into_iter().flatten().collect())
}

/// A transaction entry as the write it asks for.
fn write(entry: &Entry) -> Result<TxWrite, FhirError> {
    let (resource_type, id) = entry.target();
    let resource_type = resource_type.to_owned();
    let target = match (id, &entry.query) {
        (Some(id), None) => Some(Target::Id(id.to_owned())),
        (None, Some(query)) => Some(Target::Criteria(parse_pairs(query.as_bytes()))),
        _ => None,
    };
    for ignored in ["if-none-match", "if-modified-since"] {
        if entry.header(ignored).is_some() {
            return Err(FhirError::BadRequest(format!(
                "{}: {ignored} is for reads; a write takes ifMatch or ifNoneExist",
                entry.describe()
            )));
        }
    }
    let resource = || {
        entry
            .resource
            .clone()
            .ok_or_else(|| FhirError::BadRequest(format!("{} has no resource", entry.describe())))
    };
    let if_match = match entry.header("if-match") {
        None => None,
        Some(etag) => Some(parse_etag(etag).ok_or_else(|| {
            FhirError::BadRequest("ifMatch must be a version ETag like W/\"2\"".into())
        })?),
    };
    Ok(match (&entry.method, target) {
        (&Method::POST, None) if id.is_none() => TxWrite::Create {
            resource_type,
            full_url: entry.full_url.clone(),
            resource: resource()?,
            if_none_exist: (entry.header("if-none-exist")).map(|c| parse_pairs(c.as_bytes())),
        },
        (&Method::PUT, Some(target)) => TxWrite::Update {
            resource_type,
            target,
            change: Change::Replace(resource()?),
            if_match,
        },
        (&Method::PATCH, Some(target)) => {
            let (media, bytes) = entry.patch()?;
            TxWrite::Update {
                resource_type,
                target,
                change: patch_change(&media, &bytes)?,
                if_match,
            }
        }
        (&Method::DELETE, Some(target)) => TxWrite::Delete {
            resource_type,
            target,
        },
        _ => {
            return Err(FhirError::BadRequest(format!(
                "{} is not a write a transaction takes: POST Type, PUT/PATCH/DELETE Type/id or Type?criteria",
                entry.describe()
            )));
        }
    })
}

/// The answer entry of a transaction's write.
fn written_entry(base: &str, resource_type: &str, done: TxDone) -> Value {
    let version = |id: &str, version_id: i64| {
        json!({
            "location": format!("{base}/{resource_type}/{id}/_history/{version_id}"),
            "etag": format!("W/\"{version_id}\""),
        })
    };
    let (status, response, resource) = match done {
        TxDone::Written(written, created) => (
            if created { "201 Created" } else { "200 OK" },
            version(&written.id, written.version_id),
            Some(written.content),
        ),
        TxDone::Exists(existing) => (
            "200 OK",
            version(&existing.id, existing.version_id),
            Some(existing.content),
        ),
        TxDone::Deleted(_) => ("204 No Content", json!({}), None),
    };
    let mut response = response;
    response["status"] = json!(status);
    let mut answer = json!({"response": response});
    if let Some(content) = resource.and_then(|c| serde_json::from_str::<Value>(&c).ok()) {
        answer["fullUrl"] = json!(format!(
            "{base}/{resource_type}/{}",
            content["id"].as_str().unwrap_or_default()
        ));
        answer["resource"] = content;
    }
    answer
}

/// The error of the transaction's entry `i`, naming it.
fn failed_entry(i: usize, entry: Option<&Entry>, error: FhirError) -> FhirError {
    let Some(entry) = entry else {
        return error;
    };
    let failed = format!(
        "transaction entry {i} ({}) failed, nothing was written",
        entry.describe()
    );
    let why = format!("{failed}: {error}");
    match error {
        FhirError::Invalid { path, message } => {
            FhirError::invalid(path, format!("{failed}: {message}"))
        }
        FhirError::BadRequest(_) => FhirError::BadRequest(why),
        FhirError::Forbidden(_) => FhirError::Forbidden(why),
        FhirError::NotFound(_) => FhirError::NotFound(why),
        FhirError::Conflict(_) => FhirError::Conflict(why),
        FhirError::PreconditionFailed(_) => FhirError::PreconditionFailed(why),
        FhirError::MethodNotAllowed(_) => FhirError::MethodNotAllowed(why),
        FhirError::Gone(_) => FhirError::Gone(why),
        // The rest say nothing more about the entry than they do alone.
        other => other,
    }
}

/// A batch entry that could not be read, as its answer.
fn error_entry(error: &FhirError) -> Value {
    json!({"response": {
        "status": status_line(StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST)),
        "outcome": error.to_operation_outcome(),
    }})
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

/// Sends `entry` through this API's routes as a request of its own, with the caller's token;
/// its answer as a Bundle entry.
async fn send(
    state: &FhirState,
    authorization: Option<&HeaderValue>,
    entry: &Entry,
    budget: &mut usize,
) -> Value {
    // Nothing more is run once the answers can hold no more.
    if *budget == 0 {
        let error = FhirError::PayloadTooLarge(format!(
            "{}: not run: the answers of a Bundle may hold {MAX_ANSWER_BYTES} bytes in all, and \
             the entries before it took them: send it on its own",
            entry.describe()
        ));
        return error_entry(&error);
    }
    let uri = match &entry.query {
        Some(query) => format!("/{}?{query}", entry.path),
        None => format!("/{}", entry.path),
    };
    let mut request = Request::builder().method(entry.method.clone()).uri(uri);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    for (name, value) in &entry.headers {
        request = request.header(*name, value);
    }
    let body = match (&entry.method, &entry.resource) {
        (&Method::PATCH, Some(_)) => match entry.patch() {
            Ok((media, bytes)) => {
                request = request.header(header::CONTENT_TYPE, media);
                Body::from(bytes)
            }
            Err(error) => return error_entry(&error),
        },
        (_, Some(resource)) => {
            request = request.header(header::CONTENT_TYPE, "application/fhir+json");
            Body::from(resource.to_string())
        }
        (_, None) => Body::empty(),
    };
    let request = match request.body(body) {
        Ok(request) => request,
        Err(e) => return error_entry(&FhirError::BadRequest(format!("a bad entry: {e}"))),
    };
    let response = match super::routes(state.clone()).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let headers = response.headers().clone();
    // An answer that does not fit is left out, what happened is not: a write that was done
    // keeps its status, location and version.
    let bytes = match axum::body::to_bytes(response.into_body(), *budget).await {
        Ok(bytes) => {
            *budget -= bytes.len();
            bytes
        }
        Err(_) => {
            *budget = 0;
            let outcome = FhirError::PayloadTooLarge(format!(
                "{}: its answer is left out: the answers of a Bundle may hold {MAX_ANSWER_BYTES} \
                 bytes in all",
                entry.describe()
            ))
            .to_operation_outcome();
            axum::body::Bytes::from(outcome.to_string())
        }
    };
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let mut answer = json!({"response": {"status": status_line(status)}});
    for (name, field) in [(header::LOCATION, "location"), (header::ETAG, "etag")] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            answer["response"][field] = json!(value);
        }
    }
    // An HTTP date in the header, an instant in the Bundle.
    let modified = (headers.get(header::LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok());
    if let Some(modified) = modified {
        answer["response"]["lastModified"] = json!(modified.to_utc().to_rfc3339());
    }
    match body {
        Some(body) if !status.is_success() || body["resourceType"] == "OperationOutcome" => {
            answer["response"]["outcome"] = body
        }
        Some(body) => answer["resource"] = body,
        None => {}
    }
    answer
}
