//! Conditional create (`If-None-Exist`, or the criteria as the query string of the POST):
//! one resource however often or at once it is sent, and the criteria held to the caller's
//! rights as any search is.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use healthcloud_platform::auth::Role;
use serde_json::{Value, json};

on_both_backends!(
    a_repeated_conditional_create_returns_the_first,
    criteria_that_match_several_or_choose_nothing_are_refused,
    requests_at_once_create_one,
    another_patients_match_is_neither_returned_nor_revealed,
    a_caller_who_may_not_search_cannot_probe_by_creating,
    a_match_counts_only_in_the_record_the_body_is_about,
    what_cannot_be_created_is_refused_before_any_search,
);

const READING: &str = "urn:oid:1.2.208.184.100.1|reading-7";

fn reading(patient: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "identifier": [{"system": "urn:oid:1.2.208.184.100.1", "value": "reading-7"}],
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-06-02T07:00:00+02:00",
        "valueQuantity": {"value": value, "unit": "kg"}
    })
}

/// POSTs `body` as a create, conditional on `if_none_exist` (a header) and `query`.
async fn create(
    h: &Harness,
    token: &str,
    body: &Value,
    if_none_exist: Option<&str>,
    query: Option<&str>,
) -> Response {
    let uri = match query {
        Some(query) => format!("/fhir/r4/Observation?{query}"),
        None => "/fhir/r4/Observation".to_owned(),
    };
    let mut request = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/fhir+json");
    if let Some(criteria) = if_none_exist {
        request = request.header("if-none-exist", criteria);
    }
    h.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

async fn readings(h: &Harness, patient: &str) -> Vec<String> {
    h.ids(
        &format!("Observation?patient={patient}&identifier={READING}"),
        &h.clinician(),
    )
    .await
}

async fn a_repeated_conditional_create_returns_the_first(h: Harness) {
    let citizen = h.citizen("pat-c");
    let criteria = format!("identifier={READING}");
    let first = create(&h, &citizen, &reading("pat-c", 81.5), Some(&criteria), None).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let id = first.body["id"].as_str().unwrap().to_owned();
    // Sent again, by header and as fhirpy's `get_or_create` sends it (criteria as the query
    // string): the first is returned, with its version, and nothing is written.
    let encoded = "identifier=urn%3Aoid%3A1.2.208.184.100.1%7Creading-7";
    for (header, query) in [(Some(criteria.as_str()), None), (None, Some(encoded))] {
        let again = create(&h, &citizen, &reading("pat-c", 99.0), header, query).await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(again.body["id"], id.as_str());
        assert_eq!(
            again.body["valueQuantity"]["value"], 81.5,
            "the first, unchanged"
        );
        assert_eq!(again.headers["etag"], "W/\"1\"");
        assert_eq!(
            again.headers["location"],
            format!("{BASE}/Observation/{id}/_history/1").as_str()
        );
    }
    assert_eq!(readings(&h, "pat-c").await, [id]);
    // The check is a search by the caller, in the patient's log like any other.
    let log = h.get("AuditEvent?patient=pat-c&_count=200", &citizen).await;
    let searches = log.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]["entity"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|entity| entity["query"].is_string())
        })
        .count();
    assert!(searches >= 3, "{}", log.body);
}

async fn criteria_that_match_several_or_choose_nothing_are_refused(h: Harness) {
    let clinician = h.clinician();
    // pat-a has several blood pressures.
    let several = create(
        &h,
        &clinician,
        &reading("pat-a", 70.0),
        Some("patient=pat-a&code=85354-9"),
        None,
    )
    .await;
    assert_eq!(several.status, 412, "{}", several.body);
    assert!(
        diagnostics(&several).contains("make the criteria select at most one"),
        "{}",
        several.body
    );
    for (header, query, fix) in [
        (
            Some(""),
            None,
            "(If-None-Exist, or the POST's query string) are empty",
        ),
        (Some("_count=1"), None, "which '_count' does not"),
        (
            Some("colour=red"),
            None,
            "unsupported search parameter 'colour'",
        ),
        (
            Some("identifier=a|1"),
            Some("identifier=a%7C2"),
            "name different criteria",
        ),
    ] {
        let refused = create(&h, &clinician, &reading("pat-a", 70.0), header, query).await;
        assert_eq!(refused.status, 400, "{header:?}: {}", refused.body);
        assert!(diagnostics(&refused).contains(fix), "{}", refused.body);
    }
    assert!(
        readings(&h, "pat-a").await.is_empty(),
        "nothing was written"
    );
}

async fn requests_at_once_create_one(h: Harness) {
    let citizen = h.citizen("pat-b");
    let criteria = format!("identifier={READING}");
    let body = reading("pat-b", 90.0);
    let attempts = (0..6).map(|_| create(&h, &citizen, &body, Some(&criteria), None));
    let answers = futures_util::future::join_all(attempts).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(created, 1, "exactly one creates");
    for answer in &answers {
        // The others found it, or were told it appeared while they checked.
        assert!(
            [200, 201, 412].contains(&answer.status.as_u16()),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(readings(&h, "pat-b").await.len(), 1);
}

async fn another_patients_match_is_neither_returned_nor_revealed(h: Harness) {
    let criteria = format!("identifier={READING}");
    let created = create(
        &h,
        &h.citizen("pat-a"),
        &reading("pat-a", 60.0),
        Some(&criteria),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // pat-b's own conditional create, with criteria pat-a's reading matches: pat-b cannot
    // see it, so it is not there for them; their own is created and pat-a's never shown.
    let citizen = h.citizen("pat-b");
    let own = create(&h, &citizen, &reading("pat-b", 75.0), Some(&criteria), None).await;
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(own.body["subject"]["reference"], "Patient/pat-b");
    assert_ne!(own.body["id"], created.body["id"]);
    // Naming pat-a in the criteria searches pat-b's own record, where nothing matches: the
    // answer (a create) is the same whether pat-a has such a reading or not.
    let probe = create(
        &h,
        &citizen,
        &reading("pat-b", 75.0),
        Some(&format!("patient=pat-a&identifier={READING}")),
        None,
    )
    .await;
    assert_eq!(probe.status, 201, "{}", probe.body);
    assert_eq!(probe.body["subject"]["reference"], "Patient/pat-b");
    assert_eq!(readings(&h, "pat-a").await.len(), 1);
    assert_eq!(readings(&h, "pat-b").await.len(), 2);
}

async fn a_caller_who_may_not_search_cannot_probe_by_creating(h: Harness) {
    let criteria = format!("identifier={READING}");
    let created = create(
        &h,
        &h.citizen("pat-c"),
        &reading("pat-c", 60.0),
        Some(&criteria),
        None,
    )
    .await;
    assert_eq!(created.status, 201);
    // A device that may only create pat-c's Observations learns nothing from the criteria:
    // the search is refused, so neither a 200 (it exists) nor a 201 (it does not) answers.
    let writer = h.token(Role::Citizen, Some("pat-c"), Some("patient/Observation.c"));
    let probe = create(&h, &writer, &reading("pat-c", 61.0), Some(&criteria), None).await;
    assert_eq!(probe.status, 403, "{}", probe.body);
    assert!(probe.body.get("valueQuantity").is_none());
    // Without criteria it may still create.
    let plain = create(&h, &writer, &reading("pat-c", 61.0), None, None).await;
    assert_eq!(plain.status, 201, "{}", plain.body);
    assert_eq!(readings(&h, "pat-c").await.len(), 2);
}

async fn a_match_counts_only_in_the_record_the_body_is_about(h: Harness) {
    let criteria = format!("identifier={READING}");
    let clinician = h.clinician();
    let in_b = create(
        &h,
        &clinician,
        &reading("pat-b", 80.0),
        Some(&criteria),
        None,
    )
    .await;
    assert_eq!(in_b.status, 201, "{}", in_b.body);
    // The same clinician, the same criteria, for pat-a: pat-b's reading is not pat-a's, so
    // pat-a's is created (a get-or-create client would otherwise file pat-a's data under B).
    let in_a = create(
        &h,
        &clinician,
        &reading("pat-a", 70.0),
        Some(&criteria),
        None,
    )
    .await;
    assert_eq!(in_a.status, 201, "{}", in_a.body);
    assert_eq!(in_a.body["subject"]["reference"], "Patient/pat-a");
    assert_eq!(readings(&h, "pat-a").await.len(), 1);
    assert_eq!(readings(&h, "pat-b").await.len(), 1);
    // Several matches are refused, and the refused create is in the patient's log.
    let again = create(&h, &clinician, &reading("pat-b", 81.0), None, None).await;
    assert_eq!(again.status, 201);
    let several = create(
        &h,
        &clinician,
        &reading("pat-b", 82.0),
        Some(&criteria),
        None,
    )
    .await;
    assert_eq!(several.status, 412, "{}", several.body);
    let log = h
        .get("AuditEvent?patient=pat-b&_count=200", &h.citizen("pat-b"))
        .await;
    let refused_creates = log.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["action"] == "C" && e["resource"]["outcome"] == "4")
        .count();
    assert_eq!(refused_creates, 1, "{}", log.body);
}

async fn what_cannot_be_created_is_refused_before_any_search(h: Harness) {
    let criteria = format!("identifier={READING}");
    let created = create(
        &h,
        &h.citizen("pat-c"),
        &reading("pat-c", 60.0),
        Some(&criteria),
        None,
    )
    .await;
    assert_eq!(created.status, 201);
    // A reader who may search but not create is told so, not shown the match.
    let reader = h.token(
        healthcloud_platform::auth::Role::Citizen,
        Some("pat-c"),
        Some("patient/Observation.rs"),
    );
    let refused = create(&h, &reader, &reading("pat-c", 61.0), Some(&criteria), None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.get("valueQuantity").is_none());
    // An invalid body is refused though a match exists.
    let mut invalid = reading("pat-c", 61.0);
    invalid["status"] = json!("done");
    let refused = create(&h, &h.citizen("pat-c"), &invalid, Some(&criteria), None).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    // A type no one may create answers 405 whatever the criteria find.
    let request = Request::builder()
        .method("POST")
        .uri("/fhir/r4/Patient")
        .header("authorization", format!("Bearer {}", h.clinician()))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "_id=pat-a")
        .body(Body::from(
            json!({"resourceType": "Patient", "id": "x"}).to_string(),
        ))
        .unwrap();
    assert_eq!(h.send(request).await.status, 405);
    // `_format` in the query string is a format, not a criterion: a plain create.
    let plain = create(
        &h,
        &h.citizen("pat-c"),
        &reading("pat-c", 62.0),
        None,
        Some("_format=json"),
    )
    .await;
    assert_eq!(plain.status, 201, "{}", plain.body);
    assert_eq!(readings(&h, "pat-c").await.len(), 2);
}
