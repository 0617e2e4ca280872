//! The policy engine from the attacker's side: tokens, every scope form, compartment
//! confinement, consent opt-outs and the audit trail.

mod common;

use axum::http::{Request, StatusCode};
use common::*;
use healthcloud_integration::FhirError;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_platform::auth::{Claims, Role, TokenIssuer};
use serde_json::json;

on_both_backends!(
    bad_tokens_are_refused,
    scopes_by_type_and_wildcard,
    read_and_search_are_distinct,
    query_restricted_scopes,
    v1_scopes_are_mapped,
    patient_cannot_reach_another_patient,
    patient_scope_confines_a_clinician,
    consent_opt_out_of_an_organization,
    consent_opt_out_of_an_app,
    audit_records_allowed_and_denied_access,
    citizen_reads_only_their_own_log,
);

async fn bad_tokens_are_refused(h: Harness) {
    let unauthenticated = |response: &Response| {
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.body
        );
        assert!(response.headers.get("www-authenticate").is_some());
        diagnostics(response)
    };
    let none = h.request("GET", "Patient/pat-a", None, None).await;
    assert!(unauthenticated(&none).contains("missing bearer token"));

    let expired = h.issuer.sign(&claims(&h, "test-issuer", -600));
    assert!(unauthenticated(&h.get("Patient/pat-a", &expired).await).contains("expired"));

    let forger = TokenIssuer::generate("test-issuer").with_audience(vec![BASE.into()]);
    let forged = forger.sign(&claims(&h, "test-issuer", 600));
    assert!(unauthenticated(&h.get("Patient/pat-a", &forged).await).contains("invalid token"));

    let wrong_issuer = h.issuer.sign(&claims(&h, "https://evil.example", 600));
    assert!(
        unauthenticated(&h.get("Patient/pat-a", &wrong_issuer).await).contains("not issued by")
    );

    let mut malformed_scope = claims(&h, "test-issuer", 600);
    malformed_scope.scope = "user/Patient.sr".into();
    assert!(
        unauthenticated(
            &h.get("Patient/pat-a", &h.issuer.sign(&malformed_scope))
                .await
        )
        .contains("malformed scope")
    );

    let garbage = h.get("Patient/pat-a", "not.a.jwt").await;
    unauthenticated(&garbage);

    // An unsigned token ("alg": "none") built from a valid one.
    let valid = h.clinician();
    let payload = valid.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    unauthenticated(&h.get("Patient/pat-a", &unsigned).await);

    assert_eq!(h.get("Patient/pat-a", &valid).await.status, StatusCode::OK);
}

fn claims(_h: &Harness, issuer: &str, expires_in: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: issuer.into(),
        sub: "mallory".into(),
        exp: now + expires_in,
        iat: now - 700,
        role: Role::Clinician,
        scope: "user/*.rs".into(),
        patient: None,
        region: None,
        fhir_user: Some("Practitioner/mallory".into()),
        org: None,
        practitioner: None,
        aud: vec![common::BASE.into()],
        client_id: None,
        encounter: None,
        jti: None,
    }
}

async fn scopes_by_type_and_wildcard(h: Harness) {
    let obs_only = h.token(Role::Clinician, None, Some("user/Observation.rs"));
    assert_eq!(h.get("Observation/a-bp-1", &obs_only).await.status, 200);
    let denied = h.get("Condition/a-htn", &obs_only).await;
    assert_eq!(denied.status, 403);
    assert!(diagnostics(&denied).contains("scopes do not allow read of Condition"));
    assert_eq!(
        h.get("Condition?patient=pat-a", &obs_only).await.status,
        403
    );

    let wildcard = h.token(Role::Clinician, None, Some("user/*.rs"));
    for path in [
        "Condition/a-htn",
        "Patient/pat-c",
        "Encounter/a-visit",
        "Organization/gp-1",
    ] {
        assert_eq!(h.get(path, &wildcard).await.status, 200, "{path}");
    }
    let no_scopes = h.token(Role::Clinician, None, Some("openid fhirUser"));
    assert_eq!(h.get("Patient/pat-a", &no_scopes).await.status, 403);
    let create = h
        .request(
            "POST",
            "Observation",
            Some(&wildcard),
            Some(home_bp("pat-a")),
        )
        .await;
    assert_eq!(create.status, 403, "rs does not include c: {}", create.body);
}

async fn read_and_search_are_distinct(h: Harness) {
    let read_only = h.token(Role::Clinician, None, Some("user/Observation.r"));
    assert_eq!(h.get("Observation/a-bp-1", &read_only).await.status, 200);
    assert_eq!(
        h.get("Observation?patient=pat-a", &read_only).await.status,
        403
    );
    let search_only = h.token(Role::Clinician, None, Some("user/Observation.s"));
    assert_eq!(
        h.get("Observation?patient=pat-a", &search_only)
            .await
            .status,
        200
    );
    assert_eq!(h.get("Observation/a-bp-1", &search_only).await.status, 403);
}

async fn query_restricted_scopes(h: Harness) {
    let labs = h.token(
        Role::Clinician,
        None,
        Some(&format!(
            "user/Observation.rs?category={OBS_CATEGORY}|laboratory"
        )),
    );
    // The restriction is ANDed into every search, whatever the client asks for.
    let mut all = h.ids("Observation", &labs).await;
    all.sort();
    assert_eq!(all, ["a-hba1c-1", "a-hba1c-2"]);
    assert!(h.ids("Observation?code=85354-9", &labs).await.is_empty());
    assert!(h.ids("Observation?_id=a-bp-1", &labs).await.is_empty());
    assert_eq!(h.get("Observation/a-hba1c-1", &labs).await.status, 200);
    let outside = h.get("Observation/a-bp-1", &labs).await;
    assert_eq!(
        outside.status, 403,
        "a read outside the restriction is denied"
    );

    // Two scopes on the same type: their restrictions are alternatives.
    let two = h.token(
        Role::Clinician,
        None,
        Some("user/Observation.rs?code=8867-4 user/Observation.rs?code=29463-7"),
    );
    let mut both = h.ids("Observation", &two).await;
    both.sort();
    assert_eq!(both, ["a-hr-1", "b-weight-1"]);

    // A restriction the server cannot apply grants nothing rather than everything.
    let unknown = h.token(
        Role::Clinician,
        None,
        Some("user/Observation.rs?colour=red"),
    );
    assert_eq!(h.get("Observation", &unknown).await.status, 403);
}

async fn v1_scopes_are_mapped(h: Harness) {
    let v1 = h.token(
        Role::Clinician,
        Some("pat-a"),
        Some("patient/Observation.read"),
    );
    assert_eq!(h.get("Observation/a-bp-1", &v1).await.status, 200);
    assert_eq!(h.ids("Observation?code=8867-4", &v1).await, ["a-hr-1"]);
    assert_eq!(
        h.request("POST", "Observation", Some(&v1), Some(home_bp("pat-a")))
            .await
            .status,
        403
    );
    let write = h.token(
        Role::Clinician,
        Some("pat-a"),
        Some("patient/Observation.write"),
    );
    assert_eq!(
        h.request("POST", "Observation", Some(&write), Some(home_bp("pat-a")))
            .await
            .status,
        201
    );
    assert_eq!(
        h.get("Observation/a-bp-1", &write).await.status,
        403,
        "write does not read"
    );
}

async fn patient_cannot_reach_another_patient(h: Harness) {
    // A citizen's token names every scope it can, yet reaches only its own compartment.
    let a = h.token(
        Role::Citizen,
        Some("pat-a"),
        Some(
            "user/*.cruds system/*.cruds patient/*.cruds patient/AuditEvent.rs patient/Consent.cruds",
        ),
    );
    assert_eq!(h.get("Patient/pat-a", &a).await.status, 200);
    for path in [
        "Patient/pat-b",
        "Observation/b-bp-1",
        "Condition/b-dm2",
        "Immunization/b-flu",
        "MedicationRequest/b-ramipril",
    ] {
        let response = h.get(path, &a).await;
        assert_eq!(response.status, 404, "{path}: {}", response.body);
    }
    let searches = [
        "Patient?_id=pat-b".to_owned(),
        format!("Patient?identifier={CPR}|6107624322"),
        "Patient?name=bent".to_owned(),
        "Patient?general-practitioner=gp-2".to_owned(),
        "Observation?patient=pat-b".to_owned(),
        "Observation?subject=Patient/pat-b".to_owned(),
        "Observation?_id=b-bp-1,b-bp-2".to_owned(),
        "Observation?code=29463-7".to_owned(),
        "Condition?code=44054006".to_owned(),
        "AuditEvent?patient=pat-b".to_owned(),
        "Consent?patient=pat-b".to_owned(),
    ];
    for path in &searches {
        let response = h.get(path, &a).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.body["total"], 0,
            "{path} leaked: {}",
            response.body
        );
    }
    assert_eq!(h.ids("Patient", &a).await, ["pat-a"]);
    let mut own = h.ids("Observation?_count=100", &a).await;
    own.retain(|id| !id.starts_with("a-"));
    assert!(own.is_empty(), "only A's observations: {own:?}");

    // Writes into B's compartment are refused and nothing is stored.
    let write = h
        .request("POST", "Observation", Some(&a), Some(home_bp("pat-b")))
        .await;
    assert_eq!(write.status, 403, "{}", write.body);
    let opt_out_for_b = h.opt_out(&a, "pat-b", "Organization/gp-1", &[]).await;
    assert_eq!(opt_out_for_b.status, 403);
    let clinician = h.clinician();
    assert_eq!(
        h.get("Observation?patient=pat-b", &clinician).await.body["total"],
        4
    );
    let security_officer = h.token(Role::SecurityOfficer, None, None);
    assert_eq!(
        h.get("Consent?patient=pat-b", &security_officer).await.body["total"],
        0
    );

    // A patient token without a patient reaches nothing.
    let mut claims = claims(&h, "test-issuer", 600);
    claims.role = Role::Patient;
    let anonymous = h.issuer.sign(&claims);
    assert_eq!(h.get("Patient/pat-a", &anonymous).await.status, 403);
}

async fn patient_scope_confines_a_clinician(h: Harness) {
    let launched = h.token(Role::Clinician, Some("pat-b"), Some("patient/*.rs"));
    assert_eq!(h.get("Observation/b-bp-1", &launched).await.status, 200);
    assert_eq!(h.get("Observation/a-bp-1", &launched).await.status, 404);
    assert_eq!(
        h.get("Observation?patient=pat-a", &launched).await.body["total"],
        0
    );
    assert_eq!(h.get("Observation", &launched).await.body["total"], 4);
}

async fn consent_opt_out_of_an_organization(h: Harness) {
    let gp2 = h.clinician_of("gp-2");
    let gp1 = h.clinician_of("gp-1");
    assert_eq!(h.get("Observation/a-bp-1", &gp2).await.status, 200);

    let citizen = h.citizen("pat-a");
    let created = h.opt_out(&citizen, "pat-a", "Organization/gp-2", &[]).await;
    assert_eq!(created.status, 201, "{}", created.body);

    let denied = h.get("Observation/a-bp-1", &gp2).await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        diagnostics(&denied),
        "access denied by the patient's consent"
    );
    assert_eq!(h.get("Patient/pat-a", &gp2).await.status, 403);
    let all = h.ids("Observation?_count=100", &gp2).await;
    assert!(
        all.iter().all(|id| !id.starts_with("a-")),
        "searches skip the patient: {all:?}"
    );
    assert_eq!(all.len(), 4);
    assert_eq!(h.get("Observation?patient=pat-a", &gp2).await.status, 403);
    assert_eq!(
        h.get("Observation/a-bp-1", &gp1).await.status,
        200,
        "other organizations unaffected"
    );

    // The citizen withdraws the opt-out.
    let mut withdrawn = created.body.clone();
    withdrawn["status"] = json!("inactive");
    let id = created.body["id"].as_str().unwrap();
    let stale = h
        .send(
            Request::builder()
                .method("PUT")
                .uri(format!("/fhir/r4/Consent/{id}"))
                .header("authorization", format!("Bearer {citizen}"))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"7\"")
                .body(axum::body::Body::from(withdrawn.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    let updated = h
        .request(
            "PUT",
            &format!("Consent/{id}"),
            Some(&citizen),
            Some(withdrawn),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["meta"]["versionId"], "2");
    assert_eq!(
        h.ids("Consent?patient=pat-a&status=inactive", &citizen)
            .await,
        [id]
    );
    assert!(
        h.ids("Consent?patient=pat-a&status=active", &citizen)
            .await
            .is_empty()
    );
    assert_eq!(h.get("Observation/a-bp-1", &gp2).await.status, 200);

    // Deleting an active opt-out lifts it too.
    let again = h
        .opt_out(&citizen, "pat-a", "Organization/gp-2", &["Observation"])
        .await;
    assert_eq!(h.get("Observation/a-bp-1", &gp2).await.status, 403);
    assert_eq!(
        h.get("Condition/a-htn", &gp2).await.status,
        200,
        "limited to Observation"
    );
    let id = again.body["id"].as_str().unwrap();
    assert_eq!(
        h.request("DELETE", &format!("Consent/{id}"), Some(&citizen), None)
            .await
            .status,
        204
    );
    assert_eq!(h.get("Observation/a-bp-1", &gp2).await.status, 200);
}

async fn consent_opt_out_of_an_app(h: Harness) {
    let citizen = h.citizen("pat-a");
    let created = h
        .opt_out(&citizen, "pat-a", "Device/examples/bp-monitor", &[])
        .await;
    assert_eq!(
        created.status, 422,
        "Device ids are FHIR ids: {}",
        created.body
    );
    let created = h.opt_out(&citizen, "pat-a", "Device/bp-monitor", &[]).await;
    assert_eq!(created.status, 201, "{}", created.body);

    let principal = h
        .issuer
        .verifier()
        .verify(&h.token(Role::Clinician, Some("pat-a"), Some("user/*.rs")))
        .unwrap();
    let app = |id: &str| AccessContext {
        principal: principal.clone(),
        app: Some(AppIdentity {
            id: id.into(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            publisher_key: "key".into(),
            region: "hovedstaden".into(),
        }),
        grant: Some(
            healthcloud_platform::scope::Scope::parse_list("patient/Observation.rs").unwrap(),
        ),
        purpose: None,
    };
    let blocked = app("bp-monitor");
    let err = h
        .service
        .read(&blocked, "Observation", "a-bp-1")
        .await
        .unwrap_err();
    assert!(matches!(err, FhirError::ConsentDenied), "{err}");
    let query = SearchQuery::parse("Observation", &[], PageLimits::default()).unwrap();
    assert!(matches!(
        h.service.search(&blocked, query.clone()).await.unwrap_err(),
        FhirError::ConsentDenied
    ));

    let other_app = app("diabetes-overview");
    assert_eq!(
        h.service
            .read(&other_app, "Observation", "a-bp-1")
            .await
            .unwrap()
            .id,
        "a-bp-1"
    );
    // The grant is intersected with the token: no Condition grant, no Condition data.
    assert_eq!(
        h.service
            .read(&other_app, "Condition", "a-htn")
            .await
            .unwrap_err()
            .status(),
        403
    );
    // The clinician without the app is not affected by the app opt-out.
    assert_eq!(
        h.get("Observation/a-bp-1", &h.clinician()).await.status,
        200
    );
}

async fn audit_records_allowed_and_denied_access(h: Harness) {
    let reader = h.token(Role::Clinician, None, Some("user/Observation.rs"));
    assert_eq!(h.get("Observation/a-bp-1", &reader).await.status, 200);
    assert_eq!(h.get("Condition/a-htn", &reader).await.status, 403);
    assert_eq!(
        h.get("Observation?patient=pat-b&code=85354-9", &reader)
            .await
            .status,
        200
    );

    let auditor = h.token(Role::SecurityOfficer, None, Some("user/AuditEvent.rs"));
    let log = h
        .get(
            "AuditEvent?patient=pat-a&agent:identifier=urn:healthcloud:user|clinician-user&_count=50",
            &auditor,
        )
        .await;
    assert_eq!(log.status, 200);
    let events: Vec<_> = log.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    let read = events
        .iter()
        .find(|e| e["subtype"][0]["code"] == "read" && e["outcome"] == "0")
        .expect("allowed read audited");
    assert_eq!(read["entity"][1]["what"]["reference"], "Observation/a-bp-1");
    assert_eq!(
        read["agent"][0]["who"]["identifier"]["value"],
        "clinician-user"
    );
    let denied = events
        .iter()
        .find(|e| e["outcome"] == "4")
        .expect("denied read audited");
    assert_eq!(denied["entity"][1]["what"]["reference"], "Condition/a-htn");
    assert!(
        denied["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("access denied")
    );

    let b_log = h
        .get("AuditEvent?patient=pat-b&date=ge2020", &auditor)
        .await;
    let search = b_log.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["subtype"][0]["code"] == "search-type")
        .unwrap();
    let query = search["resource"]["entity"][1]["query"].as_str().unwrap();
    use base64::Engine;
    let query = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(query)
            .unwrap(),
    )
    .unwrap();
    assert!(query.contains("patient=pat-b"), "{query}");
    assert!(
        h.ids("AuditEvent?patient=pat-b&date=lt2020", &auditor)
            .await
            .is_empty()
    );
}

async fn citizen_reads_only_their_own_log(h: Harness) {
    let clinician = h.clinician();
    assert_eq!(h.get("Patient/pat-a", &clinician).await.status, 200);
    assert_eq!(h.get("Patient/pat-b", &clinician).await.status, 200);

    let a = h.citizen("pat-a");
    let own = h.get("AuditEvent?patient=pat-a", &a).await;
    assert_eq!(own.status, 200);
    let entries = own.body["entry"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["agent"][0]["who"]["identifier"]["value"] == "clinician-user"),
        "A sees the clinician's read: {}",
        own.body
    );
    assert!(
        entries
            .iter()
            .all(|e| e["resource"]["entity"][0]["what"]["reference"] == "Patient/pat-a")
    );

    let b_events = h
        .ids(
            "AuditEvent?patient=pat-b",
            &h.token(Role::SecurityOfficer, None, Some("user/AuditEvent.rs")),
        )
        .await;
    assert!(!b_events.is_empty());
    assert_eq!(h.get("AuditEvent?patient=pat-b", &a).await.body["total"], 0);
    assert_eq!(
        h.get(&format!("AuditEvent/{}", b_events[0]), &a)
            .await
            .status,
        404
    );
    let mut everything = h.ids("AuditEvent?_count=200", &a).await;
    everything.retain(|id| b_events.contains(id));
    assert!(
        everything.is_empty(),
        "an unfiltered search shows only A's own log"
    );
    // Without an AuditEvent scope, a clinician cannot read anyone's log.
    let no_audit = h.token(Role::Clinician, None, Some("user/Observation.rs"));
    assert_eq!(
        h.get("AuditEvent?patient=pat-a", &no_audit).await.status,
        403
    );
}

fn home_bp(patient: &str) -> serde_json::Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-06-01T07:30:00+02:00",
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 131, "unit": "mmHg"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 84, "unit": "mmHg"}}
        ]
    })
}
