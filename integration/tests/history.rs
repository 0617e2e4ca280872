//! The `_history` of a whole type: every version the caller may read (as it was, in their
//! compartment, under the patients' consent), deletions included, newest first and in pages.

mod common;

use axum::http::StatusCode;
use common::*;
use healthcloud_platform::auth::Role;
use serde_json::{Value, json};

on_both_backends!(
    a_types_history_holds_what_the_caller_may_read_newest_first,
    the_systems_history_holds_every_type_the_caller_may_search,
);

fn reading(patient: &str, value: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "identifier": [{"system": "urn:test", "value": value}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 60, "unit": "/min"}})
}

/// Every page of the history `first`, following its `next` links (at most 10).
async fn pages(h: &Harness, first: &str, token: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut url = Some(first.to_owned());
    while let Some(at) = url.take().filter(|_| pages.len() < 10) {
        let page = h.get(&at, token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        url = (page.body["link"].as_array().unwrap().iter())
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str().map(str::to_owned));
        pages.push(page.body);
    }
    pages
}

/// `(method, id)` of each entry.
fn described(bundle: &Value) -> Vec<(String, String)> {
    (bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter())
    .map(|e| {
        let url = e["fullUrl"].as_str().unwrap();
        let id = url.split('/').rev().nth(2).unwrap().to_owned();
        (e["request"]["method"].as_str().unwrap().to_owned(), id)
    })
    .collect()
}

async fn a_types_history_holds_what_the_caller_may_read_newest_first(h: Harness) {
    let writer = h.token(
        Role::Clinician,
        None,
        Some("user/*.rs user/Observation.cud"),
    );
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut ids = Vec::new();
    for (patient, value) in [("pat-a", "h-a"), ("pat-b", "h-b")] {
        let created = h
            .request(
                "POST",
                "Observation",
                Some(&writer),
                Some(reading(patient, value)),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        ids.push(created.body["id"].as_str().unwrap().to_owned());
        // Each write its own millisecond: the order is by when they were written.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut changed = reading("pat-a", "h-a");
    changed["id"] = json!(ids[0]);
    changed["status"] = json!("amended");
    let path = format!("Observation/{}", ids[0]);
    let response = h.request("PUT", &path, Some(&writer), Some(changed)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let path = format!("Observation/{}", ids[1]);
    let response = h.request("DELETE", &path, Some(&writer), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);

    let since = since.replace('+', "%2B");
    let history = h
        .get(
            &format!("Observation/_history?_since={since}"),
            &h.clinician(),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["type"], "history");
    let expected: Vec<(String, String)> = [
        ("DELETE", &ids[1]),
        ("PUT", &ids[0]),
        ("POST", &ids[1]),
        ("POST", &ids[0]),
    ]
    .iter()
    .map(|(m, id)| (m.to_string(), id.to_string()))
    .collect();
    assert_eq!(described(&history.body), expected);

    // In pages, following `next`.
    let first = format!("Observation/_history?_since={since}&_count=1");
    let seen = pages(&h, &first, &h.clinician()).await;
    assert_eq!(
        seen.iter().flat_map(described).collect::<Vec<_>>(),
        expected
    );

    // A citizen sees their own record's versions only.
    let own = h
        .get(
            &format!("Observation/_history?_since={since}"),
            &h.citizen("pat-a"),
        )
        .await;
    assert_eq!(
        described(&own.body),
        [
            ("PUT".into(), ids[0].clone()),
            ("POST".into(), ids[0].clone())
        ]
    );
    // A clinician pat-b opted out of observations sees none of pat-b's, deleted or not.
    let response = h
        .opt_out(
            &h.citizen("pat-b"),
            "pat-b",
            "Organization/gp-1",
            &["Observation"],
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let opted_out = h
        .get(
            &format!("Observation/_history?_since={since}"),
            &h.clinician_of("gp-1"),
        )
        .await;
    assert_eq!(
        described(&opted_out.body),
        [
            ("PUT".into(), ids[0].clone()),
            ("POST".into(), ids[0].clone())
        ]
    );
    // What is asked is checked.
    for bad in [
        "Observation/_history?_since=yesterday",
        "Observation/_history?code=x",
        "Observation/a-bp-1/_history?_since=2024-01-01T00:00:00Z",
    ] {
        let response = h.get(bad, &h.clinician()).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            response.body
        );
    }
    // Reading resources one by one is not listing them: a type's history takes search.
    let reader = h.token(Role::Clinician, None, Some("user/Observation.r"));
    let response = h.get("Observation/_history", &reader).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    // A resource moved to another patient's record by a re-import: its earlier version is
    // nobody's to list, as it is nobody's to read by version.
    let moved = |patient: &str| {
        json!({"resourceType": "Observation", "id": "moved", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{patient}")}})
    };
    h.import(vec![moved("pat-a")]).await.unwrap();
    h.import(vec![moved("pat-c")]).await.unwrap();
    let listed = |bundle: &Value| {
        (described(bundle).into_iter())
            .filter(|(_, id)| id == "moved")
            .count()
    };
    let own = h.get("Observation/_history", &h.citizen("pat-a")).await;
    assert_eq!(listed(&own.body), 0, "{}", own.body);
    let own = h.get("Observation/_history", &h.citizen("pat-c")).await;
    assert_eq!(listed(&own.body), 1, "{}", own.body);
    // Without read access to the type, no history.
    let response = h
        .get(
            "Observation/_history",
            &h.token(Role::Clinician, None, Some("user/Patient.rs")),
        )
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

/// `type/id` of each entry.
fn versioned(bundle: &Value) -> Vec<String> {
    (bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter())
    .map(|e| {
        let url = e["fullUrl"].as_str().unwrap();
        let mut parts = url.rsplit('/').skip(2);
        let id = parts.next().unwrap();
        format!("{}/{id}", parts.next().unwrap())
    })
    .collect()
}

async fn the_systems_history_holds_every_type_the_caller_may_search(h: Harness) {
    let writer = h.token(
        Role::Clinician,
        None,
        Some("user/*.rs user/Observation.c user/Condition.c"),
    );
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let since = since.replace('+', "%2B");
    let condition = json!({"resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
        "subject": {"reference": "Patient/pat-b"}});
    let mut written = Vec::new();
    for (resource_type, body) in [
        ("Observation", reading("pat-a", "s-a")),
        ("Condition", condition),
        ("Observation", reading("pat-b", "s-b")),
    ] {
        let created = h
            .request("POST", resource_type, Some(&writer), Some(body))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        written.push(format!(
            "{resource_type}/{}",
            created.body["id"].as_str().unwrap()
        ));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let newest_first: Vec<String> = written.iter().rev().cloned().collect();
    let url = format!("_history?_since={since}");
    let history = h.get(&url, &h.clinician()).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["type"], "history");
    assert_eq!(versioned(&history.body), newest_first);
    // In pages, across types, following `next`.
    let first = format!("_history?_since={since}&_count=1");
    let seen = pages(&h, &first, &h.clinician()).await;
    assert_eq!(
        seen.iter().flat_map(versioned).collect::<Vec<_>>(),
        newest_first
    );
    // Only the types the caller may search.
    let conditions = h.token(Role::Clinician, None, Some("user/Condition.rs"));
    let history = h
        .get(&format!("_history?_since={since}"), &conditions)
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(versioned(&history.body), [written[1].clone()]);
    // A citizen: their own record only, and the log of who read it.
    let own = h
        .get(&format!("_history?_since={since}"), &h.citizen("pat-a"))
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let (log, record): (Vec<String>, Vec<String>) =
        (versioned(&own.body).into_iter()).partition(|r| r.starts_with("AuditEvent/"));
    assert_eq!(record, [written[0].clone()]);
    assert!(!log.is_empty());
    // Someone who may search no type of data gets none.
    let operator = h.token(Role::PlatformOperator, None, None);
    let response = h.get("_history", &operator).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    for bad in [
        "_history?_cursor=1:Nothing:x:1",
        "_history?_offset=5",
        "_history?_type=Observation",
    ] {
        let response = h.get(bad, &h.clinician()).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            response.body
        );
    }
}
