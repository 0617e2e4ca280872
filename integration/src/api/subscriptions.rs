//! Subscriptions over HTTP (the R4 backport of topic-based subscriptions): `POST
//! [base]/Subscription` makes one (201, with its secret this once), `GET` reads the caller's
//! own (another's is 404), `DELETE` ends one, `GET [base]/Subscription/[id]/$status` tells
//! where it stands. Changing one is deleting it and making another. A websocket
//! subscription's client gets a binding token (`$get-ws-binding-token`), opens
//! `[base]/$subscription-ws` and sends `bind-with-token <token>`: the handshake, then each
//! notification, arrive as text messages.

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Caller, FhirState, fhir_json, json_body};
use crate::error::FhirError;
use crate::service::FhirService;

/// How long a new websocket has to send `bind-with-token`.
const BIND_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST [base]/Subscription`.
pub(super) async fn create(
    State(state): State<FhirState>,
    Caller(context): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let resource = json_body(&state, &headers, body).await?;
    let made = state
        .service
        .subscription_create(&context, resource)
        .await?;
    let id = made["id"].as_str().unwrap_or_default().to_owned();
    let mut response = fhir_json(StatusCode::CREATED, made.to_string());
    if let Ok(location) =
        HeaderValue::from_str(&format!("{}/Subscription/{id}", state.config.base_url))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET [base]/Subscription`: the caller's subscriptions.
pub(super) async fn list(
    State(state): State<FhirState>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let base = &state.config.base_url;
    let entries: Vec<Value> = (state.service.subscription_list(&context).await?)
        .into_iter()
        .map(|resource| {
            json!({
                "fullUrl": format!("{base}/Subscription/{}", resource["id"].as_str().unwrap_or_default()),
                "resource": resource,
                "search": {"mode": "match"}
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}/Subscription")}],
    });
    // FHIR JSON has no empty arrays.
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(fhir_json(StatusCode::OK, bundle.to_string()))
}

/// `GET [base]/Subscription/[id]`.
pub(super) async fn read(
    State(state): State<FhirState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let resource = state.service.subscription_read(&context, &id).await?;
    Ok(fhir_json(StatusCode::OK, resource.to_string()))
}

/// `DELETE [base]/Subscription/[id]`.
pub(super) async fn delete(
    State(state): State<FhirState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    state.service.subscription_delete(&context, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT [base]/Subscription/[id]`: not how a subscription changes.
pub(super) async fn update() -> FhirError {
    FhirError::MethodNotAllowed(
        "a Subscription is not changed in place: DELETE it and POST another".into(),
    )
}

/// `GET [base]/Subscription/[id]/$status`.
pub(super) async fn status(
    State(state): State<FhirState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let status = state.service.subscription_status(&context, &id).await?;
    Ok(fhir_json(StatusCode::OK, status.to_string()))
}

/// `GET [base]/Subscription/[id]/$get-ws-binding-token`.
pub(super) async fn binding_token(
    State(state): State<FhirState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, FhirError> {
    let token = state
        .service
        .subscription_binding_token(&context, &id)
        .await?;
    Ok(fhir_json(StatusCode::OK, token.to_string()))
}

/// `GET [base]/$subscription-ws`: a websocket that a binding token binds to a subscription.
pub(super) async fn websocket(
    State(state): State<FhirState>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(state.service, socket))
}

async fn serve_socket(service: FhirService, mut socket: WebSocket) {
    let first = tokio::time::timeout(BIND_WITHIN, socket.recv()).await;
    let token = match &first {
        Ok(Some(Ok(Message::Text(text)))) => text.strip_prefix("bind-with-token ").map(str::trim),
        _ => None,
    };
    let Some(token) = token else {
        let _ = socket
            .send(Message::Text("send 'bind-with-token <token>' first".into()))
            .await;
        return;
    };
    let (id, handshake) = match service.subscription_bind(token).await {
        Ok(bound) => bound,
        Err(error) => {
            let _ = socket.send(Message::Text(error.to_string().into())).await;
            return;
        }
    };
    // Bound before the handshake is sent: notifications wait in the channel until the loop
    // below takes them, after it.
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    if !service.subscriptions().bind_socket(&id, sender) {
        let full = "too many websockets are bound to this subscription: close one first";
        let _ = socket.send(Message::Text(full.into())).await;
        return;
    }
    if socket
        .send(Message::Text(handshake.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            next = notifications.recv() => {
                let Some((body, sent)) = next else { break };
                let ok = socket.send(Message::Text(body.into())).await.is_ok();
                let _ = sent.send(ok);
                if !ok {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    drop(notifications);
    service.subscriptions().forget_closed_sockets();
}
