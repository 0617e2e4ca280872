//! Topic-based subscriptions (R4 backport) with a real webhook receiver on loopback: the
//! handshake, signed notifications for the writes a filter selects and nothing else, in
//! order, retried after failures, heartbeats; the payload held to the subscriber's grant and
//! the patient's consent at the time of delivery, each delivery in the patient's log; and the
//! attacks: a filter naming another patient, another client's subscription, an internal or
//! malformed endpoint, reserved headers, a subscriber whose install is gone.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use healthcloud_integration::service::subscriptions::SECRET_EXTENSION;
use healthcloud_integration::webhook::{SIGNATURE_HEADER, mac, signature};
use healthcloud_platform::auth::Role;
use serde_json::{Value, json};
use tokio::sync::mpsc;

on_both_backends!(
    a_new_observation_is_notified_signed_in_order_and_audited,
    the_payload_is_held_to_the_grant_and_consent_at_delivery,
    a_failed_delivery_is_retried_before_anything_after_it,
    subscriptions_are_their_owners_alone_and_checked_when_made,
    a_subscription_ends_with_its_subscribers_install,
    a_websocket_bound_with_a_token_gets_what_waited_and_what_comes,
);

const NEW_OBSERVATION: &str = "https://healthcloud.example/fhir/SubscriptionTopic/new-observation";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";

/// A webhook receiver on loopback: each notification's headers and body, in order; it
/// answers 500 to the next `fail` of them.
struct Receiver {
    url: String,
    received: mpsc::UnboundedReceiver<(HeaderMap, Value)>,
    fail: Arc<AtomicUsize>,
}

async fn receiver() -> Receiver {
    let (sender, received) = mpsc::unbounded_channel();
    let fail = Arc::new(AtomicUsize::new(0));
    let failing = fail.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let sender = sender.clone();
            let failing = failing.clone();
            async move {
                let refuse = failing
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let _ = sender.send((headers, body));
                match refuse {
                    true => StatusCode::INTERNAL_SERVER_ERROR,
                    false => StatusCode::OK,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        received,
        fail,
    }
}

impl Receiver {
    /// The next notification (within ten seconds).
    async fn next(&mut self) -> (HeaderMap, Value) {
        tokio::time::timeout(Duration::from_secs(10), self.received.recv())
            .await
            .expect("no notification within 10 s")
            .unwrap()
    }

    /// The next notification that is not a heartbeat.
    async fn next_event(&mut self) -> (HeaderMap, Value) {
        loop {
            let (headers, body) = self.next().await;
            if kind(&body) != "heartbeat" {
                return (headers, body);
            }
        }
    }

    /// Asserts nothing but heartbeats arrives for `ms`.
    async fn quiet(&mut self, ms: u64) {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        while let Ok(Some((_, body))) = tokio::time::timeout_at(until, self.received.recv()).await {
            assert_eq!(kind(&body), "heartbeat", "unexpected notification: {body}");
        }
    }
}

/// A notification's status parameter `name`.
fn parameter<'a>(body: &'a Value, name: &str) -> &'a Value {
    (body["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter())
    .find(|p| p["name"] == name)
    .unwrap_or(&Value::Null)
}

fn kind(body: &Value) -> &str {
    parameter(body, "type")["valueCode"]
        .as_str()
        .unwrap_or_default()
}

/// The focus of a notification's (one) event.
fn focus(body: &Value) -> String {
    let event = parameter(body, "notification-event");
    (event["part"].as_array().unwrap().iter())
        .find(|p| p["name"] == "focus")
        .and_then(|p| p["valueReference"]["reference"].as_str())
        .unwrap()
        .to_owned()
}

/// A Subscription to `topic` narrowed by `filter` (`Type?param=value…`), notifying `endpoint`.
fn subscription(filter: Option<&str>, endpoint: &str, content: &str) -> Value {
    let mut resource = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Tell the GP of new home readings",
        "criteria": NEW_OBSERVATION,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"), "valueCode": content}]},
            "header": ["Authorization: Bearer receiver-secret"]
        }
    });
    if let Some(filter) = filter {
        resource["_criteria"] = json!({"extension": [
            {"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": filter}]});
    }
    resource
}

fn observation(patient: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-12-01T08:00:00Z"
    })
}

/// Writes an Observation as a clinician: its id.
async fn write(h: &Harness, patient: &str, category: &str) -> String {
    let written = h
        .request(
            "POST",
            "Observation",
            Some(&h.clinician()),
            Some(observation(patient, category)),
        )
        .await;
    assert_eq!(written.status, 201, "{}", written.body);
    written.body["id"].as_str().unwrap().to_owned()
}

/// Makes a subscription with `token`: its id and secret, after checking the handshake.
async fn subscribe(
    h: &Harness,
    token: &str,
    receiver: &mut Receiver,
    resource: Value,
) -> (String, String) {
    let made = h
        .request("POST", "Subscription", Some(token), Some(resource))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let secret = (made.body["extension"].as_array().unwrap().iter())
        .find(|e| e["url"] == SECRET_EXTENSION)
        .and_then(|e| e["valueString"].as_str())
        .unwrap()
        .to_owned();
    let (headers, handshake) = receiver.next().await;
    assert_eq!(kind(&handshake), "handshake", "{handshake}");
    assert_signed(&headers, &handshake, &secret);
    (id, secret)
}

/// The notification carries the subscriber's own header and a valid signature of its body.
fn assert_signed(headers: &HeaderMap, body: &Value, secret: &str) {
    assert_eq!(headers["authorization"], "Bearer receiver-secret");
    assert_eq!(headers["content-type"], "application/fhir+json");
    let signed = headers[SIGNATURE_HEADER].to_str().unwrap();
    let t: i64 = signed
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    // The body as sent is the body as parsed, serialized the same way (preserve_order).
    assert_eq!(signed, signature(secret, t, body.to_string().as_bytes()));
    assert_ne!(
        signed,
        signature("another secret", t, body.to_string().as_bytes())
    );
}

/// Waits until the subscription's `$status` is `expected` (the receiver has a notification
/// before the sender hears its answer and notes it).
async fn await_status(h: &Harness, id: &str, token: &str, expected: (&str, i64)) {
    for _ in 0..100 {
        let (status, events) = status_of(h, id, token).await;
        if (status.as_str(), events) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_of(h, id, token).await,
        (expected.0.to_owned(), expected.1)
    );
}

async fn status_of(h: &Harness, id: &str, token: &str) -> (String, i64) {
    let status = h.get(&format!("Subscription/{id}/$status"), token).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let value = |name: &str| {
        (status.body["parameter"].as_array().unwrap().iter())
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    (
        value("status")["valueCode"].as_str().unwrap().to_owned(),
        value("events-since-subscription-start")["valueString"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

async fn a_new_observation_is_notified_signed_in_order_and_audited(h: Harness) {
    let mut receiver = receiver().await;
    let token = h.backend_service("monitor", "purpose:treatment system/Observation.rs");
    let filter = "Observation?patient=Patient/pat-a&category=vital-signs";
    let resource = subscription(Some(filter), &receiver.url, "full-resource");
    let (id, secret) = subscribe(&h, &token, &mut receiver, resource).await;

    let first = write(&h, "pat-a", "vital-signs").await;
    let (headers, body) = receiver.next_event().await;
    assert_signed(&headers, &body, &secret);
    assert_eq!(kind(&body), "event-notification");
    assert_eq!(body["type"], "history");
    assert_eq!(focus(&body), format!("{BASE}/Observation/{first}"));
    assert_eq!(body["entry"][1]["resource"]["id"], first.as_str());
    assert_eq!(
        parameter(&body, "events-since-subscription-start")["valueString"],
        "1"
    );

    // Another patient's reading, and a lab result of hers, are not what the filter selects;
    // the next of her readings is the next notification.
    write(&h, "pat-b", "vital-signs").await;
    write(&h, "pat-a", "laboratory").await;
    let second = write(&h, "pat-a", "vital-signs").await;
    let (_, body) = receiver.next_event().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{second}"));
    assert_eq!(
        parameter(&body, "events-since-subscription-start")["valueString"],
        "2"
    );
    // An update of a reading is no new one.
    let writer = h.token(Role::Clinician, None, Some("user/Observation.cru"));
    let mut changed = observation("pat-a", "vital-signs");
    changed["id"] = json!(second);
    let updated = h
        .request(
            "PUT",
            &format!("Observation/{second}"),
            Some(&writer),
            Some(changed),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    receiver.quiet(1500).await;

    // The subscriber reads it back without its secret; $status counts what was sent.
    let read = h.get(&format!("Subscription/{id}"), &token).await;
    assert_eq!(read.status, 200);
    assert!(!read.body.to_string().contains(&secret));
    assert_eq!(read.body["status"], "active");
    await_status(&h, &id, &token, ("active", 2)).await;
    let listed = h.get("Subscription", &token).await;
    assert_eq!(listed.body["total"], 1);

    // Each delivery is in her log, naming the subscription and the service.
    let log = h
        .get("AuditEvent?patient=pat-a&_count=1000", &h.citizen("pat-a"))
        .await;
    let delivered: Vec<&Value> = (log.body["entry"].as_array().unwrap().iter())
        .map(|e| &e["resource"])
        .filter(|event| {
            (event["entity"].as_array().into_iter().flatten())
                .filter_map(|entity| entity["query"].as_str())
                .filter_map(|query| BASE64.decode(query).ok())
                .any(|query| {
                    String::from_utf8_lossy(&query) == format!("subscription=Subscription%2F{id}")
                })
        })
        .collect();
    assert_eq!(delivered.len(), 2, "{}", log.body);
    assert_eq!(
        delivered[0]["agent"][0]["who"]["identifier"]["value"],
        "monitor"
    );

    // Deleted: nothing more.
    let deleted = h
        .request("DELETE", &format!("Subscription/{id}"), Some(&token), None)
        .await;
    assert_eq!(deleted.status, 204);
    write(&h, "pat-a", "vital-signs").await;
    receiver.quiet(1500).await;
}

async fn the_payload_is_held_to_the_grant_and_consent_at_delivery(h: Harness) {
    let mut receiver = receiver().await;
    // Granted vital signs only, subscribed to every new observation.
    let token = h.backend_service(
        "vitals",
        "purpose:treatment system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    );
    let resource = subscription(None, &receiver.url, "id-only");
    let (_, _) = subscribe(&h, &token, &mut receiver, resource).await;
    write(&h, "pat-a", "laboratory").await;
    let vital = write(&h, "pat-a", "vital-signs").await;
    let (_, body) = receiver.next_event().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{vital}"));
    assert_eq!(
        body["entry"].as_array().unwrap().len(),
        1,
        "id-only carries no resource"
    );

    // She opts out of the service after it subscribed: her readings are no longer told;
    // another patient's still are.
    let opted = h
        .opt_out(&h.citizen("pat-a"), "pat-a", "Device/research.vitals", &[])
        .await;
    assert_eq!(opted.status, 201, "{}", opted.body);
    write(&h, "pat-a", "vital-signs").await;
    let others = write(&h, "pat-b", "vital-signs").await;
    let (_, body) = receiver.next_event().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{others}"));
    receiver.quiet(1000).await;
}

async fn a_failed_delivery_is_retried_before_anything_after_it(h: Harness) {
    let mut receiver = receiver().await;
    let token = h.backend_service("monitor", "purpose:treatment system/Observation.rs");
    let mut resource = subscription(
        Some("Observation?patient=Patient/pat-a"),
        &receiver.url,
        "id-only",
    );
    resource["channel"]["extension"] = json!([
        {"url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": 1}]);
    let (id, _) = subscribe(&h, &token, &mut receiver, resource).await;

    // A heartbeat comes when nothing happens.
    let (_, heartbeat) = receiver.next().await;
    assert_eq!(kind(&heartbeat), "heartbeat");

    receiver.fail.store(2, Ordering::SeqCst);
    let first = write(&h, "pat-a", "vital-signs").await;
    let second = write(&h, "pat-a", "vital-signs").await;
    // Refused twice: the same notification comes again, and the next only after it.
    for _ in 0..3 {
        let (_, body) = receiver.next_event().await;
        assert_eq!(focus(&body), format!("{BASE}/Observation/{first}"));
    }
    let (_, body) = receiver.next_event().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{second}"));
    await_status(&h, &id, &token, ("active", 2)).await;
}

async fn subscriptions_are_their_owners_alone_and_checked_when_made(h: Harness) {
    let mut receiver = receiver().await;
    // A citizen may follow her own record (with no patient named: hers is all she reaches),
    // not another's.
    let own = subscription(None, &receiver.url, "id-only");
    let (id, _) = subscribe(&h, &h.citizen("pat-a"), &mut receiver, own).await;
    let other = subscription(
        Some("Observation?patient=Patient/pat-b"),
        &receiver.url,
        "full-resource",
    );
    let refused = h
        .request(
            "POST",
            "Subscription",
            Some(&h.citizen("pat-a")),
            Some(other),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    write(&h, "pat-b", "vital-signs").await;
    let mine = write(&h, "pat-a", "vital-signs").await;
    let (_, body) = receiver.next_event().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{mine}"));

    // Another subscriber learns nothing of it and cannot end it; nor does a narrower token
    // of the same user take over what the broader one made.
    let narrower = h.token(Role::Citizen, Some("pat-a"), Some("patient/Patient.rs"));
    for stranger in [h.citizen("pat-b"), h.clinician(), narrower] {
        assert_eq!(
            h.get(&format!("Subscription/{id}"), &stranger).await.status,
            404
        );
        assert_eq!(
            h.get(&format!("Subscription/{id}/$status"), &stranger)
                .await
                .status,
            404
        );
        let delete = h
            .request(
                "DELETE",
                &format!("Subscription/{id}"),
                Some(&stranger),
                None,
            )
            .await;
        assert_eq!(delete.status, 404);
        assert_eq!(h.get("Subscription", &stranger).await.body["total"], 0);
    }
    let changed = h
        .request(
            "PUT",
            &format!("Subscription/{id}"),
            Some(&h.citizen("pat-a")),
            Some(json!({})),
        )
        .await;
    assert_eq!(changed.status, 405);

    // What is refused when it is made, and says why.
    let clinician = h.token(Role::Clinician, None, Some("user/Observation.rs"));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"criteria": "https://example.org/topic"}),
            "not a topic of this server",
        ),
        (
            json!({"_criteria": {"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": "Observation?_id=x"}]}}),
            "not a filter of this topic",
        ),
        (
            json!({"_criteria": {"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": "Patient?name=x"}]}}),
            "the topic is about Observation",
        ),
        (
            json!({"channel": {"type": "email", "endpoint": receiver.url}}),
            "use rest-hook",
        ),
        (
            json!({"channel": {"type": "rest-hook", "endpoint": "https://user:pw@hooks.example.org/"}}),
            "no user name",
        ),
        (
            json!({"channel": {"type": "rest-hook", "endpoint": receiver.url, "header": ["Content-Type: text/plain"]}}),
            "set by healthcloud",
        ),
        (
            json!({"channel": {"type": "rest-hook", "endpoint": receiver.url, "header": ["X: a\r\nInjected: b"]}}),
            "not a valid header",
        ),
        (
            json!({"channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/closed"}}),
            "did not take the handshake",
        ),
    ];
    for (change, says) in cases {
        let mut resource = subscription(None, &receiver.url, "id-only");
        for (key, value) in change.as_object().unwrap() {
            resource[key] = value.clone();
        }
        let refused = h
            .request("POST", "Subscription", Some(&clinician), Some(resource))
            .await;
        assert!(
            refused.status == 400 || refused.status == 422,
            "{change}: {} {}",
            refused.status,
            refused.body
        );
        assert!(
            refused.body.to_string().contains(says),
            "{change}: {}",
            refused.body
        );
    }
    // A token that may not search the topic's type.
    let blind = h.token(Role::Clinician, None, Some("user/Patient.rs"));
    let resource = subscription(None, &receiver.url, "id-only");
    let refused = h
        .request("POST", "Subscription", Some(&blind), Some(resource))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}

async fn a_subscription_ends_with_its_subscribers_install(h: Harness) {
    let mut receiver = receiver().await;
    let token = h.backend_service("monitor", "purpose:treatment system/Observation.rs");
    let resource = subscription(None, &receiver.url, "full-resource");
    let (id, _) = subscribe(&h, &token, &mut receiver, resource).await;
    let registered = h.clients.get("monitor").unwrap();
    // The region uninstalls it: nothing more is told, even once it is installed again.
    assert!(h.clients.remove("monitor"));
    write(&h, "pat-a", "vital-signs").await;
    receiver.quiet(1500).await;
    h.clients.register((*registered).clone()).unwrap();
    let token = h.backend_service_token("monitor");
    write(&h, "pat-a", "vital-signs").await;
    receiver.quiet(1000).await;
    let status = h.get(&format!("Subscription/{id}"), &token).await;
    assert_eq!(status.body["status"], "off", "{}", status.body);
    assert!(
        status.body["error"]
            .as_str()
            .unwrap()
            .contains("authorization ended")
    );
}

async fn a_websocket_bound_with_a_token_gets_what_waited_and_what_comes(h: Harness) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    // The FHIR API on loopback, for the websocket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = h.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let token = h.backend_service("monitor", "purpose:treatment system/Observation.rs");
    let mut resource = subscription(Some("Observation?patient=Patient/pat-a"), "", "id-only");
    resource["channel"] = json!({"type": "websocket", "payload": "application/fhir+json"});
    let made = h
        .request("POST", "Subscription", Some(&token), Some(resource))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    // What happens before a socket is bound waits for it.
    let waited = write(&h, "pat-a", "vital-signs").await;

    let binding = h
        .get(&format!("Subscription/{id}/$get-ws-binding-token"), &token)
        .await;
    assert_eq!(binding.status, 200, "{}", binding.body);
    let value = |name: &str| {
        (binding.body["parameter"].as_array().unwrap().iter())
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let bind_token = value("token")["valueString"].as_str().unwrap().to_owned();
    assert_eq!(
        value("websocket-url")["valueUrl"],
        "ws://fhir.test/fhir/r4/$subscription-ws"
    );
    let url = format!("ws://{address}/fhir/r4/$subscription-ws");

    // A forged or altered token binds nothing; nor does one made with the real key that
    // claims to last longer than a token is made to.
    let key: String = sqlx::query_scalar("SELECT binding_key FROM subscriptions WHERE id = $1")
        .bind(&id)
        .fetch_one(h.store.database().pool())
        .await
        .unwrap();
    let far = chrono::Utc::now().timestamp_millis() + 24 * 3600 * 1000;
    let lasting = format!("{id}.{far}.{}", mac(&key, far, id.as_bytes()));
    for forged in [
        format!("{id}.9999999999999.00"),
        format!("{bind_token}0"),
        "x".into(),
        lasting,
    ] {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        socket
            .send(Message::text(format!("bind-with-token {forged}")))
            .await
            .unwrap();
        let answer = socket.next().await.unwrap().unwrap();
        assert!(
            answer
                .to_text()
                .unwrap()
                .contains("not a valid binding token"),
            "{answer}"
        );
    }

    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket
        .send(Message::text(format!("bind-with-token {bind_token}")))
        .await
        .unwrap();
    let mut next = async || -> Value {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("no message within 10 s")
            .unwrap()
            .unwrap();
        serde_json::from_str(message.to_text().unwrap()).unwrap()
    };
    assert_eq!(kind(&next().await), "handshake");
    let body = next().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{waited}"));
    let later = write(&h, "pat-a", "vital-signs").await;
    write(&h, "pat-b", "vital-signs").await;
    let body = next().await;
    assert_eq!(focus(&body), format!("{BASE}/Observation/{later}"));

    // A few sockets at most are bound to one subscription.
    let mut more = Vec::new();
    for _ in 0..3 {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let bind = format!("bind-with-token {bind_token}");
        socket.send(Message::text(bind)).await.unwrap();
        let handshake = socket.next().await.unwrap().unwrap();
        assert!(
            handshake.to_text().unwrap().contains("handshake"),
            "{handshake}"
        );
        more.push(socket);
    }
    let (mut fifth, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let bind = format!("bind-with-token {bind_token}");
    fifth.send(Message::text(bind)).await.unwrap();
    let refused = fifth.next().await.unwrap().unwrap();
    assert!(
        refused.to_text().unwrap().contains("too many websockets"),
        "{refused}"
    );

    // Another subscriber gets no token for it; a rest-hook subscription has none.
    let other = h.backend_service("other", "purpose:treatment system/Observation.rs");
    let refused = h
        .get(&format!("Subscription/{id}/$get-ws-binding-token"), &other)
        .await;
    assert_eq!(refused.status, 404);
    let mut receiver = receiver().await;
    let hook_subscription = subscription(None, &receiver.url, "id-only");
    let (hook, _) = subscribe(&h, &token, &mut receiver, hook_subscription).await;
    let refused = h
        .get(
            &format!("Subscription/{hook}/$get-ws-binding-token"),
            &token,
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
}
