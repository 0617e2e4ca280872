//! Attacks found in review, each kept as a test of the behaviour that stops it.

mod common;

use base64::Engine;
use common::*;
use healthcloud_platform::auth::{Role, TokenRequest};
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
    // Clinicians never write consents, whatever their scopes: only the patient does.
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(
        diagnostics(&response).contains("not for a clinician"),
        "{}",
        response.body
    );

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
    let auditor = h.token(Role::SecurityOfficer, None, Some("user/AuditEvent.rs"));
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

// Tokens: who acts, who may read the audit trail and consents, and whom a token is for.
on_both_backends!(
    a_clinician_token_naming_no_actor_reads_no_opted_out_patient,
    a_practitioner_role_is_denied_by_an_opt_out_of_its_practitioner_or_organization,
    a_wildcard_clinician_scope_reads_no_audit_events_or_consents,
    a_security_officer_reads_every_log_and_that_read_is_itself_audited,
    a_wildcard_patient_scope_reaches_no_audit_log_but_a_named_one_does,
    a_token_for_another_audience_is_refused_by_the_fhir_api,
);

/// A clinician token as a foreign identity provider might issue it: signed by the trusted
/// issuer, for this API, but naming neither an organization nor a practitioner.
fn actorless_clinician(h: &Harness, scope: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    h.issuer.sign(&healthcloud_platform::auth::Claims {
        iss: "test-issuer".into(),
        sub: "mallory".into(),
        exp: now + 600,
        iat: now,
        role: Role::Clinician,
        scope: scope.into(),
        patient: None,
        region: None,
        fhir_user: None,
        org: None,
        practitioner: None,
        aud: vec![BASE.into()],
        client_id: None,
        encounter: None,
        jti: None,
    })
}

/// How many resources of `resource_type` the store holds, whoever may see them.
async fn stored(h: &Harness, resource_type: &str) -> usize {
    let query = healthcloud_integration::query::SearchQuery::parse(
        resource_type,
        &[("_count".to_owned(), "0".to_owned())],
        healthcloud_integration::query::PageLimits::default(),
    )
    .unwrap();
    h.store.search(&query).await.unwrap().total
}

async fn a_clinician_token_naming_no_actor_reads_no_opted_out_patient(h: Harness) {
    let opt_out = h
        .opt_out(&h.citizen("pat-a"), "pat-a", "Organization/gp-1", &[])
        .await;
    assert_eq!(opt_out.status, 201, "{}", opt_out.body);
    let mallory = actorless_clinician(&h, "user/*.rs user/Observation.c");
    let observations = stored(&h, "Observation").await;
    for path in [
        "Observation/a-bp-1",
        "Observation?patient=pat-a",
        "Observation?_count=100",
        "Patient/pat-a",
    ] {
        let response = h.get(path, &mallory).await;
        assert_eq!(response.status, 403, "{path}: {}", response.body);
        assert!(
            diagnostics(&response).contains("must name who acts: the 'org' claim"),
            "{path}: {}",
            response.body
        );
        assert!(
            !response.body.to_string().contains("85354-9"),
            "{path} leaked: {}",
            response.body
        );
    }
    let written = h
        .request(
            "POST",
            "Observation",
            Some(&mallory),
            Some(home_reading("pat-a")),
        )
        .await;
    assert_eq!(written.status, 403, "{}", written.body);
    assert_eq!(
        stored(&h, "Observation").await,
        observations,
        "nothing written"
    );
    // The same clinician naming their organization is held to the opt-out.
    let gp1 = clinician_as(
        &h,
        TokenRequest {
            org: Some("gp-1".into()),
            ..Default::default()
        },
    );
    let denied = h.get("Observation?patient=pat-a", &gp1).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(diagnostics(&denied).contains("consent"), "{}", denied.body);
}

async fn a_practitioner_role_is_denied_by_an_opt_out_of_its_practitioner_or_organization(
    h: Harness,
) {
    h.opt_out(&h.citizen("pat-a"), "pat-a", "Practitioner/dr-x", &[])
        .await;
    h.opt_out(&h.citizen("pat-b"), "pat-b", "Organization/gp-2", &[])
        .await;
    let role = |org: Option<&str>, practitioner: Option<&str>| {
        clinician_as(
            &h,
            TokenRequest {
                fhir_user: Some("PractitionerRole/role-1".into()),
                org: org.map(str::to_owned),
                practitioner: practitioner.map(str::to_owned),
                ..Default::default()
            },
        )
    };
    // As dr-x, for any organization: pat-a's opt-out of dr-x holds.
    let dr_x = role(Some("gp-9"), Some("dr-x"));
    for path in ["Observation/a-bp-1", "Observation?patient=pat-a"] {
        let response = h.get(path, &dr_x).await;
        assert_eq!(response.status, 403, "{path}: {}", response.body);
        assert!(
            diagnostics(&response).contains("consent"),
            "{}",
            response.body
        );
    }
    let everyone = h.ids("Observation?_count=100", &dr_x).await;
    assert!(
        everyone.iter().all(|id| !id.starts_with("a-")),
        "pat-a's data reached dr-x: {everyone:?}"
    );
    // For gp-2, as any practitioner: pat-b's opt-out of gp-2 holds.
    let at_gp2 = role(Some("gp-2"), Some("dr-y"));
    assert_eq!(
        h.get("Observation?patient=pat-b", &at_gp2).await.status,
        403
    );
    let everyone = h.ids("Observation?_count=100", &at_gp2).await;
    assert!(
        everyone.iter().all(|id| !id.starts_with("b-")),
        "{everyone:?}"
    );
    // A role that hides its practitioner or organization reaches nothing.
    for (org, practitioner, missing) in [
        (Some("gp-9"), None, "'practitioner' claim"),
        (None, Some("dr-x"), "'org' claim"),
    ] {
        let response = h
            .get("Observation?_count=100", &role(org, practitioner))
            .await;
        assert_eq!(response.status, 403, "{}", response.body);
        assert!(
            diagnostics(&response).contains(missing),
            "{}",
            response.body
        );
        assert!(common::ids(&response.body).is_empty());
    }
}

async fn a_wildcard_clinician_scope_reads_no_audit_events_or_consents(h: Harness) {
    let consent = h
        .opt_out(&h.citizen("pat-a"), "pat-a", "Device/some.app", &[])
        .await;
    let id = consent.body["id"].as_str().unwrap().to_owned();
    let wildcard = h.clinician();
    assert_eq!(h.get("Patient/pat-a", &wildcard).await.status, 200);
    let named = h.token(
        Role::Clinician,
        None,
        Some("user/*.cruds user/AuditEvent.rs user/Consent.cruds"),
    );
    for token in [&wildcard, &named] {
        for path in [
            "AuditEvent?patient=pat-a".to_owned(),
            "AuditEvent?_count=200".to_owned(),
            "Consent?patient=pat-a".to_owned(),
            format!("Consent/{id}"),
        ] {
            let response = h.get(&path, token).await;
            assert_eq!(response.status, 403, "{path}: {}", response.body);
            assert!(
                diagnostics(&response).contains("security officer"),
                "{path}: {}",
                response.body
            );
            assert!(common::ids(&response.body).is_empty(), "{path} leaked");
        }
    }
    // Nor can a clinician lift the patient's opt-out.
    let mut lifted = consent.body.clone();
    lifted["status"] = json!("inactive");
    let response = h
        .request("PUT", &format!("Consent/{id}"), Some(&named), Some(lifted))
        .await;
    assert_eq!(response.status, 403, "{}", response.body);
    let stored = h.get(&format!("Consent/{id}"), &h.citizen("pat-a")).await;
    assert_eq!(stored.body["status"], "active");
    assert_eq!(stored.body["meta"]["versionId"], "1");
}

async fn a_security_officer_reads_every_log_and_that_read_is_itself_audited(h: Harness) {
    h.opt_out(&h.citizen("pat-b"), "pat-b", "Device/some.app", &[])
        .await;
    assert_eq!(h.get("Patient/pat-a", &h.clinician()).await.status, 200);
    let officer = h.token(Role::SecurityOfficer, None, None);
    let log = h.get("AuditEvent?patient=pat-a&_count=200", &officer).await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(
        log.body.to_string().contains("clinician-user"),
        "the officer sees the clinician's read: {}",
        log.body
    );
    assert_eq!(
        h.ids("Consent?patient=pat-b", &officer).await.len(),
        1,
        "and every patient's consents"
    );
    // Reading the trail is an access like any other: it lands in the patient's own log.
    let own = own_log(&h, "pat-a").await;
    let audited = own.iter().any(|event| {
        event["agent"][0]["role"][0]["text"] == "security-officer"
            && event["entity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|entity| entity["description"] == "AuditEvent")
    });
    assert!(
        audited,
        "the officer's read is not in pat-a's log: {own:#?}"
    );
    // The role reaches nothing else, and never through a wildcard.
    let response = h.get("Observation?patient=pat-a", &officer).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(common::ids(&response.body).is_empty());
    let wildcard = h.token(Role::SecurityOfficer, None, Some("user/*.rs"));
    assert_eq!(
        h.get("AuditEvent?patient=pat-a", &wildcard).await.status,
        403
    );
}

async fn a_wildcard_patient_scope_reaches_no_audit_log_but_a_named_one_does(h: Harness) {
    assert_eq!(h.get("Patient/pat-a", &h.clinician()).await.status, 200);
    let wildcard = h.token(Role::Citizen, Some("pat-a"), Some("patient/*.rs"));
    let response = h.get("AuditEvent?patient=pat-a", &wildcard).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(common::ids(&response.body).is_empty());
    let named = h.token(Role::Citizen, Some("pat-a"), Some("patient/AuditEvent.rs"));
    assert!(!h.ids("AuditEvent?patient=pat-a", &named).await.is_empty());
}

async fn a_token_for_another_audience_is_refused_by_the_fhir_api(h: Harness) {
    let events = stored(&h, "AuditEvent").await;
    let for_audience = |audience: Vec<String>| {
        h.issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    audience,
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let launch_token = for_audience(vec!["http://fhir.test/apps/r1/examples/hello/".into()]);
    let other_server = for_audience(vec!["http://elsewhere.test/fhir/r4".into()]);
    let mut claims = h.issuer.verifier().verify(&h.clinician()).unwrap().claims;
    claims.aud.clear();
    let no_audience = h.issuer.sign(&claims);
    for (what, token) in [
        ("an app's launch token", &launch_token),
        ("another FHIR server's token", &other_server),
        ("a token without aud", &no_audience),
    ] {
        for path in ["Patient/pat-a", "Observation?patient=pat-a"] {
            let response = h.get(path, token).await;
            assert_eq!(response.status, 401, "{what}, {path}: {}", response.body);
            assert!(
                diagnostics(&response).contains(&format!(
                    "accepts only tokens for {BASE} (mint one with 'healthcloud token --audience {BASE}')"
                )),
                "{what}: {}",
                response.body
            );
            assert_eq!(
                response.headers["www-authenticate"],
                "Bearer realm=\"healthcloud\", error=\"invalid_token\""
            );
            assert!(
                !response.body.to_string().contains("Sørensen"),
                "{what} leaked"
            );
        }
    }
    assert_eq!(
        stored(&h, "AuditEvent").await,
        events,
        "nothing was recorded"
    );
    // A token naming this API among other audiences (as identity providers issue them) is
    // accepted.
    let listed = for_audience(vec!["http://elsewhere.test/".into(), BASE.into()]);
    assert_eq!(h.get("Patient/pat-a", &listed).await.status, 200);
}

fn home_reading(patient: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-06-01T07:30:00+02:00"
    })
}
