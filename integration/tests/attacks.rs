//! Attacks found in review, each kept as a test of the behaviour that stops it.

mod common;

use base64::Engine;
use common::*;
use healthcloud_integration::auth::{Role, TokenRequest};
use serde_json::{Value, json};

on_both_backends!(
    absolute_fhir_user_is_still_subject_to_consent,
    probes_about_a_named_patient_reach_their_log,
    consent_does_not_confirm_resources_outside_the_compartment,
    opted_out_party_cannot_move_or_lift_the_opt_out,
    refused_searches_are_audited,
    other_patients_identifiers_stay_out_of_a_log,
    patient_data_must_name_its_patient,
    hostile_values_get_400_not_a_crash,
    concurrent_updates_never_both_win,
);

/// The patient's log as the citizen sees it.
async fn own_log(h: &Harness, patient: &str) -> Vec<Value> {
    let log = h
        .get(
            &format!("AuditEvent?patient={patient}&_count=200"),
            &h.citizen(patient),
        )
        .await;
    log.body["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn query_of(event: &Value) -> String {
    let query = event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["query"].as_str())
        .unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(query)
            .unwrap(),
    )
    .unwrap()
}

fn clinician_as(h: &Harness, request: TokenRequest) -> String {
    h.issuer.mint(Role::Clinician, request).unwrap()
}

async fn absolute_fhir_user_is_still_subject_to_consent(h: Harness) {
    let citizen = h.citizen("pat-a");
    let opt_out = h.opt_out(&citizen, "pat-a", "Practitioner/dr-x", &[]).await;
    assert_eq!(opt_out.status, 201);
    for fhir_user in [
        "Practitioner/dr-x",
        "https://idp.example/fhir/Practitioner/dr-x",
    ] {
        let token = clinician_as(
            &h,
            TokenRequest {
                fhir_user: Some(fhir_user.into()),
                ..Default::default()
            },
        );
        assert_eq!(
            h.get("Observation/a-bp-1", &token).await.status,
            403,
            "{fhir_user}"
        );
        assert_eq!(
            h.get("Observation?patient=pat-a", &token).await.status,
            403,
            "{fhir_user}"
        );
    }
}

async fn probes_about_a_named_patient_reach_their_log(h: Harness) {
    let t = h.clinician();
    for probe in [
        "Observation?patient=pat-a&code=59261-8&_count=0",
        "Observation?patient=pat-a&code=00000-0",
    ] {
        assert_eq!(h.get(probe, &t).await.status, 200);
    }
    let queries: Vec<String> = own_log(&h, "pat-a").await.iter().map(query_of).collect();
    assert!(queries.iter().any(|q| q.contains("59261-8")), "{queries:?}");
    assert!(queries.iter().any(|q| q.contains("00000-0")), "{queries:?}");
}

async fn consent_does_not_confirm_resources_outside_the_compartment(h: Harness) {
    let citizen = h.citizen("pat-a");
    h.opt_out(&citizen, "pat-a", "Organization/gp-2", &[]).await;
    let launched_on_b = clinician_as(
        &h,
        TokenRequest {
            org: Some("gp-2".into()),
            patient: Some("pat-b".into()),
            scope: Some("patient/*.rs".into()),
            ..Default::default()
        },
    );
    let response = h.get("Observation/a-bp-1", &launched_on_b).await;
    assert_eq!(response.status, 404, "{}", response.body);
    assert_eq!(
        h.get("Observation/no-such-id", &launched_on_b).await.status,
        404
    );
}

async fn opted_out_party_cannot_move_or_lift_the_opt_out(h: Harness) {
    let created = h
        .opt_out(
            &h.citizen("pat-a"),
            "pat-a",
            "Organization/gp-2",
            &["Observation"],
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let writer = |org: &str| {
        clinician_as(
            &h,
            TokenRequest {
                org: Some(org.into()),
                scope: Some("user/*.rs user/Consent.cruds".into()),
                ..Default::default()
            },
        )
    };

    let mut moved = created.body.clone();
    moved["patient"] = json!({"reference": "Patient/pat-c"});
    let response = h
        .request(
            "PUT",
            &format!("Consent/{id}"),
            Some(&writer("gp-1")),
            Some(moved),
        )
        .await;
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(diagnostics(&response).contains("cannot move to another patient"));

    let mut lifted = created.body.clone();
    lifted["status"] = json!("inactive");
    let gp2 = writer("gp-2");
    assert_eq!(
        h.request("PUT", &format!("Consent/{id}"), Some(&gp2), Some(lifted))
            .await
            .status,
        403
    );
    assert_eq!(
        h.request("DELETE", &format!("Consent/{id}"), Some(&gp2), None)
            .await
            .status,
        403
    );
    assert_eq!(
        h.get("Observation/a-bp-1", &gp2).await.status,
        403,
        "the opt-out still holds"
    );
    let attempts = own_log(&h, "pat-a").await;
    assert!(
        attempts
            .iter()
            .any(|e| e["subtype"][0]["code"] == "update" && e["outcome"] == "4"),
        "pat-a sees the attempts"
    );
}

async fn refused_searches_are_audited(h: Harness) {
    let citizen = h.citizen("pat-a");
    for refused in ["Observation?colour=red", "Observation?_count=1&_count=2"] {
        assert_eq!(h.get(refused, &citizen).await.status, 400);
    }
    let unreadable = axum::http::Request::builder()
        .method("POST")
        .uri("/fhir/r4/Observation")
        .header("authorization", format!("Bearer {citizen}"))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("120/80"))
        .unwrap();
    assert_eq!(h.send(unreadable).await.status, 400);
    let auditor = h.token(Role::Clinician, None, Some("user/AuditEvent.rs"));
    let events = h
        .get(
            "AuditEvent?agent:identifier=urn:healthcloud:user|citizen-user&_count=200",
            &auditor,
        )
        .await;
    let refused: Vec<String> = events.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|e| e["outcome"] == "4")
        .map(query_of)
        .collect();
    assert!(
        refused.iter().any(|q| q.contains("colour=red")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|q| q.contains("_count=2")),
        "{refused:?}"
    );
}

async fn other_patients_identifiers_stay_out_of_a_log(h: Harness) {
    let search = format!("Patient?identifier={CPR}|7501504321,{CPR}|6107624322");
    assert_eq!(h.ids(&search, &h.clinician()).await.len(), 2);
    for (patient, other_cpr) in [("pat-a", "6107624322"), ("pat-b", "7501504321")] {
        let queries: Vec<String> = own_log(&h, patient).await.iter().map(query_of).collect();
        assert!(
            queries.iter().any(|q| q.starts_with("identifier=")),
            "{patient} sees the search: {queries:?}"
        );
        assert!(
            queries.iter().all(|q| !q.contains(other_cpr)),
            "{patient}'s log names another patient: {queries:?}"
        );
    }
}

async fn patient_data_must_name_its_patient(h: Harness) {
    let t = h.token(Role::Clinician, None, Some("user/*.rs user/Observation.c"));
    for subject in [
        format!("Patient?identifier={CPR}|6107624322"),
        "#contained".into(),
        "urn:uuid:0b6a7d1e-0000-4000-8000-000000000000".into(),
    ] {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": subject}});
        let response = h.request("POST", "Observation", Some(&t), Some(obs)).await;
        assert_eq!(response.status, 422, "{subject}: {}", response.body);
        assert_eq!(
            response.body["issue"][0]["expression"][0],
            "Observation.subject"
        );
    }
}

async fn hostile_values_get_400_not_a_crash(h: Harness) {
    let t = h.clinician();
    let many = vec!["x"; 150].join(",");
    for path in [
        "Observation?date=a%C3%A9".to_owned(),
        "Observation?date=%C3%A9".to_owned(),
        "Observation?_offset=9223372036854775808".to_owned(),
        "Observation?_offset=18446744073709551615".to_owned(),
        format!("Observation?code={many}"),
    ] {
        let response = h.get(&path, &t).await;
        assert_eq!(response.status, 400, "{path}: {}", response.body);
    }
    let deep = h.get("Observation?_offset=10000000", &t).await;
    assert_eq!(deep.status, 200);
    assert!(common::ids(&deep.body).is_empty());
}

async fn concurrent_updates_never_both_win(h: Harness) {
    let citizen = h.citizen("pat-a");
    let created = h.opt_out(&citizen, "pat-a", "Organization/gp-2", &[]).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let put = |status: &str| {
        let mut body = created.body.clone();
        body["status"] = json!(status);
        axum::http::Request::builder()
            .method("PUT")
            .uri(format!("/fhir/r4/Consent/{id}"))
            .header("authorization", format!("Bearer {citizen}"))
            .header("content-type", "application/fhir+json")
            .header("if-match", "W/\"1\"")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let (first, second) = tokio::join!(h.send(put("inactive")), h.send(put("rejected")));
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses[0], 200, "{} / {}", first.body, second.body);
    assert!(
        [409, 412].contains(&statuses[1]),
        "both updates of version 1 won: {statuses:?}"
    );
    let stored = h.get(&format!("Consent/{id}"), &citizen).await;
    assert_eq!(stored.body["meta"]["versionId"], "2");
}
