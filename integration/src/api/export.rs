//! Bulk Data export over HTTP (FHIR Bulk Data Access IG 2.0): the kick-off at system,
//! `Patient` and `Group/[id]` level (202 and `Content-Location`), the status URL (202 with
//! `X-Progress` and `Retry-After` while running, the manifest when done, `DELETE` to cancel)
//! and the NDJSON files, each to the client that asked only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Caller, FhirState, fhir_json, parse_pairs, since_instant};
use crate::error::FhirError;
use crate::policy::AccessContext;
use crate::service::export::{ExportLevel, ExportRequest, ExportStatus, InstallCheck, manifest};

/// The NDJSON media type of the files.
const NDJSON: &str = "application/fhir+ndjson";

/// Seconds a client is asked to wait between polls.
const RETRY_AFTER_SECS: u64 = 2;

/// `GET [base]/$export`.
pub(super) async fn system(
    state: State<FhirState>,
    query: RawQuery,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    kickoff(state, ExportLevel::System, query, caller, headers).await
}

/// `GET [base]/Patient/$export`.
pub(super) async fn patients(
    state: State<FhirState>,
    query: RawQuery,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    kickoff(state, ExportLevel::Patient, query, caller, headers).await
}

/// `GET [base]/Group/[id]/$export`.
pub(super) async fn group(
    state: State<FhirState>,
    Path(id): Path<String>,
    query: RawQuery,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    kickoff(state, ExportLevel::Group(id), query, caller, headers).await
}

async fn kickoff(
    State(state): State<FhirState>,
    level: ExportLevel,
    RawQuery(query): RawQuery,
    Caller(context): Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let respond_async = (headers.get_all("prefer").iter())
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| preference.trim().eq_ignore_ascii_case("respond-async"));
    if !respond_async {
        return Err(FhirError::BadRequest(
            "an export runs asynchronously: send the header 'Prefer: respond-async'".into(),
        ));
    }
    let query = query.unwrap_or_default();
    let mut request = ExportRequest {
        url: match query.is_empty() {
            true => format!("{}/{}", state.config.base_url, level_path(&level)),
            false => format!("{}/{}?{query}", state.config.base_url, level_path(&level)),
        },
        installed: install_check(&state, &context),
        level,
        types: None,
        since: None,
        deidentify: false,
        type_filters: Vec::new(),
    };
    for (name, value) in parse_pairs(query.as_bytes()) {
        match name.as_str() {
            "_outputFormat" => {
                if !matches!(
                    value.as_str(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(FhirError::BadRequest(format!(
                        "_outputFormat '{value}' is not served: exports are {NDJSON}"
                    )));
                }
            }
            "_type" => {
                let types = request.types.get_or_insert_with(Vec::new);
                types.extend(value.split(',').map(|t| t.trim().to_owned()));
            }
            "_since" => {
                since_instant(&value)?;
                request.since = Some(value);
            }
            "_deidentify" => {
                request.deidentify = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(FhirError::BadRequest(format!(
                            "_deidentify is true or false, not '{value}'"
                        )));
                    }
                }
            }
            // `Type?search`, comma-separated; a comma inside one is written `%2C`.
            "_typeFilter" => {
                for filter in value.split(',') {
                    let Some((resource_type, search)) = filter.split_once('?') else {
                        return Err(FhirError::BadRequest(format!(
                            "_typeFilter '{filter}' is not '<Type>?<search parameters>'"
                        )));
                    };
                    let params = parse_pairs(search.as_bytes());
                    request
                        .type_filters
                        .push((resource_type.to_owned(), params));
                }
            }
            "_elements" | "includeAssociatedData" | "patient" => {
                return Err(FhirError::BadRequest(format!(
                    "'{name}' is not supported by this server's export: export whole types (_type, _typeFilter, _since) and select afterwards"
                )));
            }
            _ => {
                return Err(FhirError::BadRequest(format!(
                    "$export takes _outputFormat, _type, _typeFilter, _since and _deidentify, not '{name}'"
                )));
            }
        }
    }
    let id = state.service.export_start(&context, request).await?;
    let location = format!("{}/$export-status/{id}", state.config.base_url);
    let mut response = StatusCode::ACCEPTED.into_response();
    response.headers_mut().insert(
        header::CONTENT_LOCATION,
        HeaderValue::from_str(&location).map_err(|e| FhirError::Internal(e.into()))?,
    );
    Ok(response)
}

/// Whether the caller's install (a backend service's registration at the authorization
/// server) is still the one it is now: same install, version, package and last change (a
/// grant), and its tokens are taken (the revocation feed is current).
fn install_check(state: &FhirState, context: &AccessContext) -> InstallCheck {
    let verifier = state.verifier.clone();
    let client_id = context.principal.claims.client_id.clone();
    let stamp = move || {
        let clients = verifier.smart_clients()?;
        if clients.suspended().is_some() {
            return None;
        }
        let client = clients.get(client_id.as_deref()?)?;
        Some((
            client.installed_at.clone(),
            client.changed_at,
            client.version.clone(),
            client.digest.clone(),
        ))
    };
    let at_kickoff = stamp();
    InstallCheck(Arc::new(move || {
        at_kickoff.is_some() && stamp() == at_kickoff
    }))
}

fn level_path(level: &ExportLevel) -> String {
    match level {
        ExportLevel::System => "$export".into(),
        ExportLevel::Patient => "Patient/$export".into(),
        ExportLevel::Group(id) => format!("Group/{id}/$export"),
    }
}

/// `GET [base]/$export-status/[id]`: progress, the manifest, or why it failed.
pub(super) async fn status(
    State(state): State<FhirState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let status = state.service.export_status(&context, &id)?;
    Ok(match &status {
        ExportStatus::InProgress(progress) => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            // Progress is the server's own words (type names and counts): always valid.
            if let Ok(progress) = HeaderValue::from_str(progress) {
                headers.insert("x-progress", progress);
            }
            response
        }
        ExportStatus::Complete { .. } => {
            let base = &state.config.base_url;
            let body = manifest(&status, |name| format!("{base}/$export-file/{id}/{name}"))
                .expect("a complete export has a manifest");
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
            let expires = chrono::Utc::now()
                + chrono::Duration::from_std(crate::service::export::EXPIRES_AFTER)
                    .unwrap_or_default();
            let expires = expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            if let Ok(value) = HeaderValue::from_str(&expires) {
                response.headers_mut().insert(header::EXPIRES, value);
            }
            response
        }
        ExportStatus::Failed(why) => {
            let outcome = FhirError::BadRequest(why.clone()).to_operation_outcome();
            fhir_json(StatusCode::INTERNAL_SERVER_ERROR, outcome.to_string())
        }
    })
}

/// `DELETE [base]/$export-status/[id]`: cancels it, or deletes its files.
pub(super) async fn cancel(
    State(state): State<FhirState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    state.service.export_cancel(&context, &id)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET [base]/$export-file/[id]/[name]`: one NDJSON file, streamed from disk.
pub(super) async fn file(
    State(state): State<FhirState>,
    Path((id, name)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let path = state.service.export_file(&context, &id, &name)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| FhirError::NotFound(format!("export {id} has no file {name}")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, NDJSON),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}
