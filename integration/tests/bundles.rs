//! Batch and transaction Bundles at the base: a transaction's writes all happen or none does,
//! its entries refer to each other by `urn:uuid:`, and every entry is held to the caller's
//! scopes, compartment and the patients' consent as the same request alone would be.

mod common;

use axum::http::StatusCode;
use common::*;
use healthcloud_platform::auth::Role;
use serde_json::{Value, json};

on_both_backends!(
    a_transaction_creates_resources_that_refer_to_each_other,
    a_transaction_that_fails_anywhere_writes_nothing,
    a_transaction_updates_patches_and_deletes,
    a_conditional_create_in_a_transaction_resolves_to_the_match,
    a_batch_answers_each_entry_alone,
    a_citizens_transaction_stays_in_their_record,
    a_failed_transaction_is_in_the_logs_of_what_it_read,
    transaction_odds_and_ends,
);

const SYSTEM: &str = "urn:oid:1.2.208.184.100.1";

fn writer(h: &Harness) -> String {
    h.token(
        Role::Clinician,
        None,
        Some("user/*.rs user/Observation.cud user/Encounter.cu user/Condition.c"),
    )
}

fn reading(patient: &str, value: &str, systolic: u32) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "identifier": [{"system": SYSTEM, "value": value}],
        "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-06-01T08:00:00Z",
        "valueQuantity": {"value": systolic, "unit": "mmHg"}})
}

fn encounter(patient: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient}")}})
}

fn post(full_url: &str, resource: Value) -> Value {
    let resource_type = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource,
        "request": {"method": "POST", "url": resource_type}})
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

async fn submit(h: &Harness, token: &str, bundle: Value) -> Response {
    h.request("POST", "/fhir/r4", Some(token), Some(bundle))
        .await
}

fn statuses(response: &Response) -> Vec<String> {
    (response.body["entry"].as_array().unwrap().iter())
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_transaction_creates_resources_that_refer_to_each_other(h: Harness) {
    let t = writer(&h);
    let visit = "urn:uuid:6f1c3a52-0d1e-4d7b-9a33-1b2c3d4e5f60";
    let mut observation = reading("pat-a", "t-1", 150);
    observation["encounter"] = json!({"reference": visit});
    let response = submit(
        &h,
        &t,
        bundle(
            "transaction",
            vec![
                post("urn:uuid:obs", observation),
                post(visit, encounter("pat-a")),
            ],
        ),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["type"], "transaction-response");
    assert_eq!(statuses(&response), ["201 Created", "201 Created"]);
    let entries = response.body["entry"].as_array().unwrap();
    let encounter_id = entries[1]["resource"]["id"].as_str().unwrap();
    assert!(
        entries[1]["response"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Encounter/{encounter_id}/_history/1"))
    );
    // The reference now names the new encounter, as stored.
    let found = h
        .get(&format!("Observation?identifier={SYSTEM}|t-1"), &t)
        .await;
    assert_eq!(
        found.body["entry"][0]["resource"]["encounter"]["reference"],
        format!("Encounter/{encounter_id}").as_str()
    );
    assert_eq!(
        h.ids(
            &format!("Observation?encounter=Encounter/{encounter_id}"),
            &t
        )
        .await
        .len(),
        1
    );
    // A urn:uuid no entry has is refused, and nothing is written.
    let mut dangling = reading("pat-a", "t-2", 150);
    dangling["encounter"] = json!({"reference": "urn:uuid:nobody"});
    let response = submit(
        &h,
        &t,
        bundle("transaction", vec![post("urn:uuid:x", dangling)]),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert!(diagnostics(&response).contains("urn:uuid:nobody"));
}

async fn a_transaction_that_fails_anywhere_writes_nothing(h: Harness) {
    let t = writer(&h);
    let invalid = json!({"resourceType": "Observation", "status": "final",
        "subject": {"reference": "Patient/pat-a"}});
    let denied = json!({"resourceType": "Procedure", "status": "completed",
        "subject": {"reference": "Patient/pat-a"}});
    for (second, status, says) in [
        (
            invalid,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Observation.code",
        ),
        (denied, StatusCode::FORBIDDEN, "transaction entry 1"),
    ] {
        let entries = vec![
            post("urn:uuid:a", reading("pat-a", "f-1", 150)),
            post("urn:uuid:b", second),
        ];
        let response = submit(&h, &t, bundle("transaction", entries)).await;
        assert_eq!(response.status, status, "{}", response.body);
        assert!(diagnostics(&response).contains(says), "{}", response.body);
        assert!(diagnostics(&response).contains("nothing was written"));
        assert!(
            h.ids(&format!("Observation?identifier={SYSTEM}|f-1"), &t)
                .await
                .is_empty(),
            "the first entry was written"
        );
    }
    // The same resource twice in one transaction is refused.
    let id = {
        let created = h
            .request(
                "POST",
                "Observation",
                Some(&t),
                Some(reading("pat-a", "f-2", 150)),
            )
            .await;
        created.body["id"].as_str().unwrap().to_owned()
    };
    let delete = json!({"request": {"method": "DELETE", "url": format!("Observation/{id}")}});
    let response = submit(&h, &t, bundle("transaction", vec![delete.clone(), delete])).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(
        h.get(&format!("Observation/{id}"), &t).await.status,
        StatusCode::OK
    );
}

async fn a_transaction_updates_patches_and_deletes(h: Harness) {
    let t = writer(&h);
    let mut ids = Vec::new();
    for value in ["u-1", "u-2", "u-3"] {
        let created = h
            .request(
                "POST",
                "Observation",
                Some(&t),
                Some(reading("pat-a", value, 150)),
            )
            .await;
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    let mut replaced = reading("pat-a", "u-1", 140);
    replaced["id"] = json!(ids[0]);
    let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    let entries = vec![
        json!({"resource": replaced, "request": {"method": "PUT", "url": format!("Observation/{}", ids[0]), "ifMatch": "W/\"1\""}}),
        json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
            "request": {"method": "PATCH", "url": format!("Observation/{}", ids[1])}}),
        json!({"request": {"method": "DELETE", "url": format!("Observation?identifier={SYSTEM}|u-3")}}),
        json!({"request": {"method": "GET", "url": format!("Observation/{}", ids[1])}}),
    ];
    let response = submit(&h, &t, bundle("transaction", entries)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        statuses(&response),
        ["200 OK", "200 OK", "204 No Content", "200 OK"]
    );
    // The read came after the writes.
    assert_eq!(response.body["entry"][3]["resource"]["status"], "amended");
    assert_eq!(response.body["entry"][3]["response"]["etag"], "W/\"2\"");
    assert_eq!(
        h.get(&format!("Observation/{}", ids[0]), &t).await.body["valueQuantity"]["value"],
        140
    );
    assert_eq!(
        h.get(&format!("Observation/{}", ids[2]), &t).await.status,
        StatusCode::GONE
    );
}

async fn a_conditional_create_in_a_transaction_resolves_to_the_match(h: Harness) {
    let t = writer(&h);
    let existing = h
        .request(
            "POST",
            "Encounter",
            Some(&t),
            Some({
                let mut visit = encounter("pat-a");
                visit["identifier"] = json!([{"system": SYSTEM, "value": "visit-9"}]);
                visit
            }),
        )
        .await;
    assert_eq!(existing.status, StatusCode::CREATED, "{}", existing.body);
    let existing_id = existing.body["id"].as_str().unwrap().to_owned();
    let mut visit = encounter("pat-a");
    visit["identifier"] = json!([{"system": SYSTEM, "value": "visit-9"}]);
    let mut observation = reading("pat-a", "cc-1", 150);
    observation["encounter"] = json!({"reference": "urn:uuid:visit"});
    let entries = vec![
        json!({"fullUrl": "urn:uuid:visit", "resource": visit,
            "request": {"method": "POST", "url": "Encounter", "ifNoneExist": format!("identifier={SYSTEM}|visit-9")}}),
        post("urn:uuid:obs", observation),
    ];
    let response = submit(&h, &t, bundle("transaction", entries)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(statuses(&response), ["200 OK", "201 Created"]);
    assert_eq!(
        response.body["entry"][1]["resource"]["encounter"]["reference"],
        format!("Encounter/{existing_id}").as_str()
    );
    assert_eq!(
        h.ids(&format!("Encounter?identifier={SYSTEM}|visit-9"), &t)
            .await,
        [existing_id]
    );
}

async fn a_batch_answers_each_entry_alone(h: Harness) {
    let t = writer(&h);
    let denied = json!({"resourceType": "Procedure", "status": "completed",
        "subject": {"reference": "Patient/pat-a"}});
    let entries = vec![
        post("urn:uuid:a", reading("pat-a", "b-1", 150)),
        post("urn:uuid:b", denied),
        json!({"request": {"method": "GET", "url": "Observation?patient=pat-a&code=59261-8"}}),
        json!({"request": {"method": "GET", "url": "Patient/nobody"}}),
        json!({"request": {"method": "TRACE", "url": "Patient"}}),
    ];
    let response = submit(&h, &t, bundle("batch", entries)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["type"], "batch-response");
    assert_eq!(
        statuses(&response),
        [
            "201 Created",
            "403 Forbidden",
            "200 OK",
            "404 Not Found",
            "400 Bad Request"
        ]
    );
    let entries = response.body["entry"].as_array().unwrap();
    assert_eq!(
        entries[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(entries[2]["resource"]["type"], "searchset");
    assert_eq!(entries[2]["resource"]["total"], 2);
    // The first entry stands though the second was refused.
    assert_eq!(
        h.ids(&format!("Observation?identifier={SYSTEM}|b-1"), &t)
            .await
            .len(),
        1
    );
    // Not a batch or transaction: refused.
    let response = submit(
        &h,
        &t,
        json!({"resourceType": "Bundle", "type": "collection"}),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    // No token, no entry is looked at.
    let response = h
        .request("POST", "", None, Some(bundle("batch", vec![])))
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    // The base with a trailing slash, as some clients write it.
    let response = h
        .request("POST", "/fhir/r4/", Some(&t), Some(bundle("batch", vec![])))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

async fn a_citizens_transaction_stays_in_their_record(h: Harness) {
    let citizen = h.token(
        Role::Citizen,
        Some("pat-a"),
        Some("patient/*.rs patient/Observation.cud"),
    );
    // Their own reading, then one for pat-b: all refused.
    let entries = vec![
        post("urn:uuid:a", reading("pat-a", "c-1", 150)),
        post("urn:uuid:b", reading("pat-b", "c-2", 150)),
    ];
    let response = submit(&h, &citizen, bundle("transaction", entries)).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let t = writer(&h);
    assert!(
        h.ids(&format!("Observation?identifier={SYSTEM}|c-1"), &t)
            .await
            .is_empty()
    );
    // Deleting another patient's reading by id: not found for them, nothing deleted.
    let entries = vec![json!({"request": {"method": "DELETE", "url": "Observation/b-bp-1"}})];
    let response = submit(&h, &citizen, bundle("transaction", entries)).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    assert_eq!(h.get("Observation/b-bp-1", &t).await.status, StatusCode::OK);
    // A batch's reads are held to their compartment one by one.
    let entries = vec![
        json!({"request": {"method": "GET", "url": "Observation/b-bp-1"}}),
        json!({"request": {"method": "GET", "url": "Observation/a-bp-1"}}),
    ];
    let response = submit(&h, &citizen, bundle("batch", entries)).await;
    assert_eq!(statuses(&response), ["404 Not Found", "200 OK"]);
}

async fn a_failed_transaction_is_in_the_logs_of_what_it_read(h: Harness) {
    let t = h.token(
        Role::Clinician,
        None,
        Some("user/*.rs user/Condition.u user/Observation.u"),
    );
    // Entry 0 tests pat-b's diagnosis (it holds); entry 1 fails: nothing is written, and
    // pat-b's log says the diagnosis was reached for a change that was not made.
    let probe = json!([{"op": "test", "path": "/code/coding/0/code", "value": "44054006"}]);
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(probe.to_string());
    let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data});
    let entries = vec![
        json!({"resource": binary, "request": {"method": "PATCH", "url": "Condition/b-dm2"}}),
        json!({"resource": binary,
            "request": {"method": "PATCH", "url": "Observation/a-bp-1", "ifMatch": "W/\"999\""}}),
    ];
    let response = submit(&h, &t, bundle("transaction", entries)).await;
    assert!(response.status.is_client_error(), "{}", response.body);
    let log = h
        .get("AuditEvent?patient=pat-b&_count=200", &h.citizen("pat-b"))
        .await;
    let updates: Vec<&Value> = (log.body["entry"].as_array().unwrap().iter())
        .map(|e| &e["resource"])
        .filter(|e| e["action"] == "U")
        .collect();
    assert_eq!(updates.len(), 1, "{}", log.body);
    assert_ne!(
        updates[0]["outcome"], "0",
        "recorded as not done: {}",
        updates[0]
    );
}

async fn transaction_odds_and_ends(h: Harness) {
    let t = writer(&h);
    // Nothing to do.
    let response = submit(&h, &t, bundle("transaction", vec![])).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    // Read conditions on a write are refused, not ignored.
    let mut entry = post("urn:uuid:a", reading("pat-a", "o-1", 150));
    entry["request"]["ifNoneMatch"] = json!("*");
    let response = submit(&h, &t, bundle("transaction", vec![entry])).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    // A JSON Patch's values may name entries by fullUrl too.
    let created = h
        .request(
            "POST",
            "Observation",
            Some(&t),
            Some(reading("pat-a", "o-2", 150)),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let patch =
        json!([{"op": "add", "path": "/encounter", "value": {"reference": "urn:uuid:visit"}}]);
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    let entries = vec![
        post("urn:uuid:visit", encounter("pat-a")),
        json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
            "request": {"method": "PATCH", "url": format!("Observation/{id}")}}),
    ];
    let response = submit(&h, &t, bundle("transaction", entries)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let visit = response.body["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap();
    assert_eq!(
        response.body["entry"][1]["resource"]["encounter"]["reference"],
        format!("Encounter/{visit}").as_str()
    );
}
