//! `Patient/$everything`, `Patient/$summary` and `Observation/$lastn`: made of the caller's
//! own searches (rights, compartment, consent), recorded as one access.

mod common;

use axum::http::StatusCode;
use common::*;
use healthcloud_platform::auth::Role;
use serde_json::Value;

on_both_backends!(
    everything_is_the_patients_record_as_the_caller_may_see_it,
    lastn_is_the_latest_of_each_code,
    summary_is_the_patients_ips_document_within_the_callers_rights,
);

/// `type/id` of every resource entry, and the outcome's diagnostics.
fn contents(bundle: &Value) -> (Vec<String>, Vec<String>) {
    let mut resources = Vec::new();
    let mut said = Vec::new();
    for entry in bundle["entry"].as_array().cloned().unwrap_or_default() {
        let resource = &entry["resource"];
        match entry["search"]["mode"].as_str() {
            Some("outcome") => said.extend(
                (resource["issue"].as_array().unwrap().iter())
                    .map(|i| i["diagnostics"].as_str().unwrap().to_owned()),
            ),
            _ => resources.push(format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            )),
        }
    }
    resources.sort();
    (resources, said)
}

async fn everything_is_the_patients_record_as_the_caller_may_see_it(h: Harness) {
    let t = h.clinician();
    let response = h.get("Patient/pat-a/$everything", &t).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let (resources, said) = contents(&response.body);
    for expected in [
        "Patient/pat-a",
        "Observation/a-bp-1",
        "Observation/a-hba1c-2",
        "Condition/a-htn",
        "MedicationStatement/a-metformin",
        "AllergyIntolerance/a-penicillin",
        "Encounter/a-visit",
        "DiagnosticReport/a-labs",
    ] {
        assert!(
            resources.contains(&expected.to_owned()),
            "{expected}: {resources:?}"
        );
    }
    assert!(resources.iter().all(|r| !r.contains("b-")), "{resources:?}");
    // A clinician does not read consents: that is said, nothing else is left out.
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].starts_with("Consent: not included"), "{said:?}");
    // The patient's log has one record of it.
    let log = h
        .get("AuditEvent?patient=pat-a&_count=200", &h.citizen("pat-a"))
        .await;
    assert_eq!(log.body["total"], 1, "{}", log.body);

    // _type narrows.
    let response = h.get("Patient/pat-a/$everything?_type=Condition", &t).await;
    assert_eq!(
        contents(&response.body).0,
        ["Condition/a-htn", "Patient/pat-a"]
    );
    // A citizen's own record only.
    let citizen = h.citizen("pat-a");
    assert_eq!(
        h.get("Patient/pat-b/$everything", &citizen).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("Patient/pat-a/$everything", &citizen).await.status,
        StatusCode::OK
    );
    // A type the caller may not search is left out, and said so.
    let narrow = h.token(
        Role::Clinician,
        None,
        Some("user/Patient.rs user/Observation.rs"),
    );
    let (resources, said) = contents(&h.get("Patient/pat-a/$everything", &narrow).await.body);
    assert!(
        resources
            .iter()
            .all(|r| r.starts_with("Patient/") || r.starts_with("Observation/"))
    );
    assert!(
        said.iter()
            .any(|s| s.starts_with("Condition: not included")),
        "{said:?}"
    );
    // The patient's consent holds: opted out of observations, none are included.
    let response = h
        .opt_out(
            &h.citizen("pat-b"),
            "pat-b",
            "Organization/gp-1",
            &["Observation"],
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let (resources, said) = contents(
        &h.get("Patient/pat-b/$everything", &h.clinician_of("gp-1"))
            .await
            .body,
    );
    assert!(
        resources.contains(&"Condition/b-dm2".to_owned()),
        "{resources:?}"
    );
    assert!(
        !resources.iter().any(|r| r.starts_with("Observation/")),
        "{resources:?}"
    );
    assert!(said.iter().any(|s| s.contains("consent")), "{said:?}");
    for bad in [
        "Patient/pat-a/$everything?_type=Claim2",
        "Patient/pat-a/$everything?_count=5",
        "Observation/a-bp-1/$everything",
    ] {
        let response = h.get(bad, &t).await;
        assert!(
            response.status.is_client_error(),
            "{bad}: {}",
            response.body
        );
    }
}

async fn lastn_is_the_latest_of_each_code(h: Harness) {
    let t = h.clinician();
    let latest = |path: &str| {
        let path = path.to_owned();
        let h = &h;
        let t = t.clone();
        async move {
            let response = h.get(&path, &t).await;
            assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
            contents(&response.body).0
        }
    };
    assert_eq!(
        latest("Observation/$lastn?patient=pat-a").await,
        [
            "Observation/a-bp-5",
            "Observation/a-hba1c-2",
            "Observation/a-hr-1"
        ]
    );
    assert_eq!(
        latest("Observation/$lastn?patient=pat-a&max=2&category=vital-signs").await,
        [
            "Observation/a-bp-4",
            "Observation/a-bp-5",
            "Observation/a-hr-1"
        ]
    );
    for bad in [
        "Observation/$lastn?max=0",
        "Observation/$lastn?_sort=date",
        "Condition/$lastn",
    ] {
        let response = h.get(bad, &t).await;
        assert!(
            response.status.is_client_error(),
            "{bad}: {}",
            response.body
        );
    }
    // A citizen's latest are their own.
    let own = h
        .get("Observation/$lastn?code=85354-9", &h.citizen("pat-b"))
        .await;
    assert_eq!(contents(&own.body).0, ["Observation/b-bp-3"]);
}

/// The summary's sections by title: the `Type/id` of each entry, or the empty reason's code.
fn sections(document: &Value) -> Vec<(String, Result<Vec<String>, String>)> {
    let entries = document["entry"].as_array().unwrap();
    let resource_at = |url: &str| {
        let entry = entries.iter().find(|e| e["fullUrl"] == url).unwrap();
        let r = &entry["resource"];
        format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        )
    };
    let composition = &entries[0]["resource"];
    assert_eq!(composition["resourceType"], "Composition", "{document}");
    (composition["section"].as_array().unwrap().iter())
        .map(|section| {
            let title = section["title"].as_str().unwrap().to_owned();
            let content = match section["entry"].as_array() {
                Some(refs) => Ok(refs
                    .iter()
                    .map(|r| resource_at(r["reference"].as_str().unwrap()))
                    .collect()),
                None => Err(section["emptyReason"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned()),
            };
            (title, content)
        })
        .collect()
}

async fn summary_is_the_patients_ips_document_within_the_callers_rights(h: Harness) {
    let t = h.clinician();
    let response = h.get("Patient/pat-a/$summary", &t).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let document = &response.body;
    assert_eq!(document["type"], "document");
    let composition = &document["entry"][0]["resource"];
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    let patient = &document["entry"][1];
    assert_eq!(patient["resource"]["id"], "pat-a");
    assert_eq!(composition["subject"]["reference"], patient["fullUrl"]);
    assert_eq!(
        sections(document),
        [
            (
                "Medication Summary".into(),
                Ok(vec!["MedicationStatement/a-metformin".into()])
            ),
            (
                "Allergies and Intolerances".into(),
                Ok(vec!["AllergyIntolerance/a-penicillin".into()])
            ),
            ("Problem List".into(), Ok(vec!["Condition/a-htn".into()])),
        ]
    );
    // Every reference inside points into the document: it reads on its own, anywhere.
    let text = document.to_string();
    assert!(!text.contains("\"reference\":\"Patient/"), "{text}");
    // One access in the patient's log.
    let log = h
        .get("AuditEvent?patient=pat-a&_count=200", &h.citizen("pat-a"))
        .await;
    assert_eq!(log.body["total"], 1, "{}", log.body);

    // The patient themself; not someone else.
    let citizen = h.citizen("pat-a");
    assert_eq!(
        h.get("Patient/pat-a/$summary", &citizen).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("Patient/pat-b/$summary", &citizen).await.status,
        StatusCode::NOT_FOUND
    );
    // Sections the caller may not search are withheld, and say so; the rest is made.
    let narrow = h.token(
        Role::Clinician,
        None,
        Some("user/Patient.rs user/Condition.rs"),
    );
    let response = h.get("Patient/pat-a/$summary", &narrow).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        sections(&response.body),
        [
            ("Medication Summary".into(), Err("withheld".into())),
            ("Allergies and Intolerances".into(), Err("withheld".into())),
            ("Problem List".into(), Ok(vec!["Condition/a-htn".into()])),
        ]
    );
    // Without the Patient there is no summary.
    let no_patient = h.token(Role::Clinician, None, Some("user/Condition.rs"));
    assert_eq!(
        h.get("Patient/pat-a/$summary", &no_patient).await.status,
        StatusCode::FORBIDDEN
    );
    // The patient's consent holds: opted out of their problems for gp-1, that section is
    // withheld from gp-1's clinicians.
    let response = h
        .opt_out(
            &h.citizen("pat-b"),
            "pat-b",
            "Organization/gp-1",
            &["Condition"],
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let response = h
        .get("Patient/pat-b/$summary", &h.clinician_of("gp-1"))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let summary = sections(&response.body);
    assert_eq!(summary[2], ("Problem List".into(), Err("withheld".into())));
    assert!(
        !response.body.to_string().contains("b-dm2"),
        "{}",
        response.body
    );
    for bad in [
        "Patient/pat-a/$summary?_count=5",
        "Observation/a-bp-1/$summary",
        // One patient's summary, never two mixed.
        "Patient/pat-a,pat-b/$summary",
        "Patient/pat-a,pat-b/$everything",
    ] {
        let response = h.get(bad, &t).await;
        assert!(
            response.status.is_client_error(),
            "{bad}: {}",
            response.body
        );
    }
}
