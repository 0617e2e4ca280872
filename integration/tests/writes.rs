//! Updates, patches (JSON Patch and merge patch), conditional updates and deletes of every
//! writable type: each under the caller's scopes, compartment and the patients' consent as a
//! single call, each keeping the earlier version.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use healthcloud_platform::auth::Role;
use serde_json::{Value, json};

on_both_backends!(
    an_update_replaces_and_keeps_the_earlier_version,
    a_json_patch_changes_what_it_names,
    a_merge_patch_changes_the_elements_given,
    a_conditional_update_creates_once_then_updates,
    a_conditional_delete_deletes_the_one_match,
    writes_stay_within_the_callers_scopes_and_compartment,
    validate_says_whether_a_write_would_be_accepted,
    hostile_patches_and_writes_are_refused,
    a_reading_is_held_to_the_vital_signs_profile_it_claims,
    absolute_references_to_other_servers_are_not_filed_under_local_ids,
);

const SYSTEM: &str = "urn:oid:1.2.208.184.100.1";

fn writer(h: &Harness) -> String {
    h.token(
        Role::Clinician,
        None,
        Some("user/*.rs user/Observation.cud"),
    )
}

fn reading(patient: &str, value: &str, systolic: u32) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "identifier": [{"system": SYSTEM, "value": value}],
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-06-01T08:00:00Z",
        "valueQuantity": {"value": systolic, "unit": "mmHg"}})
}

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    token: &str,
    media: &str,
    body: &Value,
) -> Response {
    let request = Request::builder()
        .method(method)
        .uri(format!("/fhir/r4/{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", media)
        .body(Body::from(body.to_string()))
        .unwrap();
    h.send(request).await
}

async fn created(h: &Harness, token: &str, resource: Value) -> String {
    let response = h
        .request("POST", "Observation", Some(token), Some(resource))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body["id"].as_str().unwrap().to_owned()
}

async fn an_update_replaces_and_keeps_the_earlier_version(h: Harness) {
    let t = writer(&h);
    let id = created(&h, &t, reading("pat-a", "u-1", 150)).await;
    let mut changed = reading("pat-a", "u-1", 140);
    changed["id"] = json!(id);
    let response = h
        .request("PUT", &format!("Observation/{id}"), Some(&t), Some(changed))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["meta"]["versionId"], "2");
    assert_eq!(response.body["valueQuantity"]["value"], 140);
    let first = h.get(&format!("Observation/{id}/_history/1"), &t).await;
    assert_eq!(first.body["valueQuantity"]["value"], 150);
    // An imported resource of another type is writable too, by whoever's scopes allow it.
    let condition_writer = h.token(Role::Clinician, None, Some("user/Condition.rus"));
    let mut condition = h.get("Condition/a-htn", &condition_writer).await.body;
    condition["clinicalStatus"]["coding"][0]["code"] = json!("inactive");
    let response = h
        .request(
            "PUT",
            "Condition/a-htn",
            Some(&condition_writer),
            Some(condition),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        h.ids("Condition?patient=pat-a&clinical-status=inactive", &t)
            .await,
        ["a-htn"]
    );
    // If-Match names the version the change was made from.
    let mut stale = reading("pat-a", "u-1", 130);
    stale["id"] = json!(id);
    let request = Request::builder()
        .method("PUT")
        .uri(format!("/fhir/r4/Observation/{id}"))
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(Body::from(stale.to_string()))
        .unwrap();
    assert_eq!(
        h.send(request).await.status,
        StatusCode::PRECONDITION_FAILED
    );
}

async fn a_json_patch_changes_what_it_names(h: Harness) {
    let t = writer(&h);
    let id = created(&h, &t, reading("pat-a", "p-1", 150)).await;
    let path = format!("Observation/{id}");
    let patch = json!([
        {"op": "test", "path": "/status", "value": "final"},
        {"op": "replace", "path": "/status", "value": "amended"},
        {"op": "add", "path": "/note", "value": [{"text": "measured twice"}]}
    ]);
    let response = send(
        &h,
        "PATCH",
        &path,
        &t,
        "application/json-patch+json",
        &patch,
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["status"], "amended");
    assert_eq!(response.body["note"][0]["text"], "measured twice");
    assert_eq!(response.body["valueQuantity"]["value"], 150);
    assert_eq!(response.body["meta"]["versionId"], "2");
    // A failed test changes nothing (422), and neither does a patch that breaks the resource,
    // renames it or moves it to another patient's record.
    for (patch, says) in [
        (
            json!([{"op": "test", "path": "/status", "value": "final"}]),
            "cannot be applied",
        ),
        (
            json!([{"op": "remove", "path": "/code"}]),
            "Observation.code",
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            "keep the id",
        ),
        (
            json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/pat-b"}]),
            "another patient",
        ),
    ] {
        let response = send(
            &h,
            "PATCH",
            &path,
            &t,
            "application/json-patch+json",
            &patch,
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{patch}: {}",
            response.body
        );
        assert!(
            diagnostics(&response).contains(says),
            "{patch}: {}",
            response.body
        );
    }
    assert_eq!(h.get(&path, &t).await.body["meta"]["versionId"], "2");
    let response = send(
        &h,
        "PATCH",
        &path,
        &t,
        "application/json-patch+json",
        &json!({"op": "x"}),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    let parameters = json!({"resourceType": "Parameters", "parameter": []});
    let response = send(&h, "PATCH", &path, &t, "application/fhir+json", &parameters).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(diagnostics(&response).contains("FHIRPath Patch"));
}

async fn a_merge_patch_changes_the_elements_given(h: Harness) {
    let t = writer(&h);
    let mut first = reading("pat-a", "m-1", 150);
    first["note"] = json!([{"text": "left arm"}]);
    let id = created(&h, &t, first).await;
    let path = format!("Observation/{id}");
    // What fhirpy's patch(status=…, note=None) sends: plain JSON.
    let changes = json!({"status": "corrected", "note": null});
    let response = send(&h, "PATCH", &path, &t, "application/json", &changes).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["status"], "corrected");
    assert!(response.body.get("note").is_none(), "{}", response.body);
    assert_eq!(response.body["code"]["coding"][0]["code"], "8480-6");
    let response = send(
        &h,
        "PATCH",
        &path,
        &t,
        "application/merge-patch+json",
        &json!([1]),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

async fn a_conditional_update_creates_once_then_updates(h: Harness) {
    let t = writer(&h);
    let criteria = format!("Observation?identifier={SYSTEM}|c-1");
    let response = h
        .request(
            "PUT",
            &criteria,
            Some(&t),
            Some(reading("pat-a", "c-1", 150)),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let id = response.body["id"].as_str().unwrap().to_owned();
    assert!(response.headers["location"].to_str().unwrap().contains(&id));
    let response = h
        .request(
            "PUT",
            &criteria,
            Some(&t),
            Some(reading("pat-a", "c-1", 145)),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["id"], id.as_str());
    assert_eq!(response.body["meta"]["versionId"], "2");
    // The body may name the match, and nothing else.
    let mut other = reading("pat-a", "c-1", 140);
    other["id"] = json!("someone-else");
    let response = h.request("PUT", &criteria, Some(&t), Some(other)).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    // Two matches: which to change is not known.
    created(&h, &t, reading("pat-a", "c-1", 120)).await;
    let response = h
        .request(
            "PUT",
            &criteria,
            Some(&t),
            Some(reading("pat-a", "c-1", 110)),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        response.body
    );
    // A conditional patch of nothing is a 404.
    let response = send(
        &h,
        "PATCH",
        &format!("Observation?identifier={SYSTEM}|none"),
        &t,
        "application/json",
        &json!({"status": "amended"}),
    )
    .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    // Criteria that choose nothing are refused.
    let response = h
        .request(
            "PUT",
            "Observation?_count=1",
            Some(&t),
            Some(reading("pat-a", "c-2", 1)),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
}

async fn a_conditional_delete_deletes_the_one_match(h: Harness) {
    let t = writer(&h);
    let id = created(&h, &t, reading("pat-a", "d-1", 150)).await;
    let criteria = format!("Observation?identifier={SYSTEM}|d-1");
    let response = h.request("DELETE", &criteria, Some(&t), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("Observation/{id}"), &t).await.status,
        StatusCode::GONE
    );
    // Nothing left to match: nothing happens.
    let response = h.request("DELETE", &criteria, Some(&t), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    // Two matches: nothing is deleted.
    let first = created(&h, &t, reading("pat-a", "d-2", 150)).await;
    created(&h, &t, reading("pat-a", "d-2", 150)).await;
    let response = h
        .request(
            "DELETE",
            &format!("Observation?identifier={SYSTEM}|d-2"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        response.body
    );
    assert_eq!(
        h.get(&format!("Observation/{first}"), &t).await.status,
        StatusCode::OK
    );
}

async fn writes_stay_within_the_callers_scopes_and_compartment(h: Harness) {
    let t = writer(&h);
    let id = created(&h, &t, reading("pat-b", "s-1", 150)).await;
    let path = format!("Observation/{id}");
    let changes = json!({"status": "amended"});
    // The default clinician may create readings, not change them.
    let response = send(
        &h,
        "PATCH",
        &path,
        &h.clinician(),
        "application/json",
        &changes,
    )
    .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    // A citizen allowed to change their own readings cannot reach another patient's: by id,
    // by criteria (which find only their own) or by deleting.
    let citizen = h.token(
        Role::Citizen,
        Some("pat-a"),
        Some("patient/Observation.cruds"),
    );
    let response = send(&h, "PATCH", &path, &citizen, "application/json", &changes).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    let response = h.request("DELETE", &path, Some(&citizen), None).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    let criteria = format!("Observation?identifier={SYSTEM}|s-1");
    let response = send(
        &h,
        "PATCH",
        &criteria,
        &citizen,
        "application/json",
        &changes,
    )
    .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    let response = h.request("DELETE", &criteria, Some(&citizen), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    // ... and a conditional update that finds nothing of theirs creates in their own record
    // only: a body about pat-b is refused.
    let response = h
        .request(
            "PUT",
            &criteria,
            Some(&citizen),
            Some(reading("pat-b", "s-1", 99)),
        )
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let read = h.get(&path, &t).await;
    assert_eq!(read.body["status"], "final");
    assert_eq!(read.body["meta"]["versionId"], "1");
    // Patients and the audit trail are not written through the API.
    let mut patient = h.get("Patient/pat-a", &t).await.body;
    patient["gender"] = json!("female");
    let everything = h.token(Role::Clinician, None, Some("user/*.cruds"));
    let response = h
        .request("PUT", "Patient/pat-a", Some(&everything), Some(patient))
        .await;
    assert_eq!(
        response.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        response.body
    );
    assert!(diagnostics(&response).contains("population register"));
}

async fn validate_says_whether_a_write_would_be_accepted(h: Harness) {
    let t = h.clinician();
    let issue = |response: &Response| {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let issue = &response.body["issue"][0];
        (
            issue["severity"].as_str().unwrap().to_owned(),
            issue["diagnostics"].as_str().unwrap().to_owned(),
        )
    };
    let valid = reading("pat-a", "v-1", 120);
    let response = h
        .request(
            "POST",
            "Observation/$validate",
            Some(&t),
            Some(valid.clone()),
        )
        .await;
    assert_eq!(issue(&response).0, "information");
    // As a Parameters body too.
    let parameters = json!({"resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": valid.clone()}]});
    let response = h
        .request("POST", "Observation/$validate", Some(&t), Some(parameters))
        .await;
    assert_eq!(issue(&response).0, "information");
    for (change, says) in [
        (
            json!({"subjekt": {"reference": "Patient/pat-a"}}),
            "Observation.subjekt: is not an element",
        ),
        (json!({"status": null}), "Observation.status"),
        (json!({"subject": null}), "must reference the patient"),
    ] {
        let mut resource = valid.clone();
        json_patch::merge(&mut resource, &change);
        let response = h
            .request("POST", "Observation/$validate", Some(&t), Some(resource))
            .await;
        let (severity, diagnostics) = issue(&response);
        assert_eq!(severity, "error", "{change}");
        assert!(diagnostics.contains(says), "{change}: {diagnostics}");
    }
    // Nothing was stored.
    assert!(
        h.ids(&format!("Observation?identifier={SYSTEM}|v-1"), &t)
            .await
            .is_empty()
    );
    // A type's required elements come from its R4 definition.
    let goal = json!({"resourceType": "Goal", "subject": {"reference": "Patient/pat-a"},
        "description": {"text": "walk daily"}});
    let response = h
        .request("POST", "Goal/$validate", Some(&t), Some(goal))
        .await;
    assert!(
        issue(&response).1.contains("Goal.lifecycleStatus"),
        "{}",
        response.body
    );
}

async fn hostile_patches_and_writes_are_refused(h: Harness) {
    let t = writer(&h);
    let id = created(&h, &t, reading("pat-a", "h-1", 150)).await;
    let path = format!("Observation/{id}");
    // A patch that copies the resource into itself, again and again: refused before it is
    // large, nothing changed.
    let doubling: Vec<Value> = (0..40)
        .map(|i| json!({"op": "copy", "from": "", "path": format!("/note{i}")}))
        .collect();
    let response = send(
        &h,
        "PATCH",
        &path,
        &t,
        "application/json-patch+json",
        &json!(doubling),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.body
    );
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"op": "test", "path": "/status", "value": "final"}))
        .collect();
    let response = send(
        &h,
        "PATCH",
        &path,
        &t,
        "application/json-patch+json",
        &json!(many),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(h.get(&path, &t).await.body["meta"]["versionId"], "1");

    // A token that may change readings but not read them cannot read one through a patch
    // (the answer, or a `test`).
    let blind = h.token(Role::Clinician, None, Some("user/Observation.u"));
    let probe = json!([{"op": "test", "path": "/valueQuantity/value", "value": 150}]);
    let response = send(
        &h,
        "PATCH",
        &path,
        &blind,
        "application/json-patch+json",
        &probe,
    )
    .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    assert!(response.body.get("valueQuantity").is_none());

    // A writer restricted to vital signs cannot change or delete a resource that is also a
    // laboratory result.
    let both = json!({"resourceType": "Observation", "id": "a-both", "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]},
                     {"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
        "subject": {"reference": "Patient/pat-a"}});
    h.import(vec![both]).await.unwrap();
    let vital = h.token(
        Role::Clinician,
        None,
        Some(&format!(
            "user/Observation.rud?category={OBS_CATEGORY}|vital-signs"
        )),
    );
    let response = h
        .request("DELETE", "Observation/a-both", Some(&vital), None)
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let strip = json!([{"op": "remove", "path": "/category/1"}]);
    let response = send(
        &h,
        "PATCH",
        "Observation/a-both",
        &vital,
        "application/json-patch+json",
        &strip,
    )
    .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    assert_eq!(
        h.get("Observation/a-both", &t).await.body["meta"]["versionId"],
        "1"
    );

    // Shared data is not written within one patient's record.
    let citizen = h.token(Role::Citizen, Some("pat-a"), Some("patient/*.cruds"));
    let mut organization = h.get("Organization/gp-1", &t).await.body;
    organization["name"] = json!("Renamed");
    let response = h
        .request(
            "PUT",
            "Organization/gp-1",
            Some(&citizen),
            Some(organization),
        )
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    assert!(diagnostics(&response).contains("shared data"));
    let response = h
        .request("DELETE", "Organization/gp-1", Some(&citizen), None)
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    assert_eq!(h.get("Organization/gp-1", &t).await.status, StatusCode::OK);
}

async fn a_reading_is_held_to_the_vital_signs_profile_it_claims(h: Harness) {
    const BP: &str = "http://hl7.org/fhir/StructureDefinition/bp";
    const UCUM: &str = "http://unitsofmeasure.org";
    let t = writer(&h);
    let part = |code: &str, value: u32, unit: &str| {
        json!({"code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": unit}})
    };
    let pressure = |unit: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "meta": {"profile": [BP]},
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": "Patient/pat-a"},
            "effectiveDateTime": "2024-06-01T08:00:00Z",
            "component": [part("8480-6", 142, unit), part("8462-4", 91, unit)]})
    };
    // Conforming: written.
    let written = h
        .request("POST", "Observation", Some(&t), Some(pressure("mm[Hg]")))
        .await;
    assert_eq!(written.status, StatusCode::CREATED, "{}", written.body);
    // Claiming the profile without conforming: refused, naming what is wrong.
    let refused = h
        .request("POST", "Observation", Some(&t), Some(pressure("kPa")))
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused
            .body
            .to_string()
            .contains("component(8480-6).valueQuantity.code"),
        "{}",
        refused.body
    );
    // $validate against a profile the resource does not claim.
    let mut unclaimed = pressure("kPa");
    unclaimed["meta"] = json!({});
    let diagnostics = |response: &Response| {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let issue = &response.body["issue"][0];
        (
            issue["severity"].as_str().unwrap().to_owned(),
            issue.to_string(),
        )
    };
    let path = format!("Observation/$validate?profile={BP}");
    let checked = h
        .request("POST", &path, Some(&t), Some(unclaimed.clone()))
        .await;
    let (severity, said) = diagnostics(&checked);
    assert_eq!(severity, "error", "{said}");
    assert!(said.contains("profile bp"), "{said}");
    let plain = h
        .request(
            "POST",
            "Observation/$validate",
            Some(&t),
            Some(unclaimed.clone()),
        )
        .await;
    assert_eq!(diagnostics(&plain).0, "information");
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": pressure("mm[Hg]")},
        {"name": "profile", "valueUri": format!("{BP}|4.0.1")}]});
    let checked = h
        .request("POST", "Observation/$validate", Some(&t), Some(parameters))
        .await;
    assert_eq!(diagnostics(&checked).0, "information");
    // A profile not served here is refused, naming those that are.
    let unknown = h
        .request(
            "POST",
            "Observation/$validate?profile=http://example.org/mine",
            Some(&t),
            Some(unclaimed),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(
        unknown.body.to_string().contains("heartrate"),
        "{}",
        unknown.body
    );
    // The CapabilityStatement lists them.
    let metadata = h.get("metadata", &t).await;
    let observation = (metadata.body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter())
    .find(|r| r["type"] == "Observation")
    .unwrap()
    .clone();
    assert!(observation["supportedProfile"].to_string().contains(BP));
}

async fn absolute_references_to_other_servers_are_not_filed_under_local_ids(h: Harness) {
    let t = writer(&h);
    // A reference to this server by its absolute URL is stored as the local reference it is.
    let mut own = reading("pat-a", "abs-1", 131);
    own["subject"] = json!({"reference": "http://fhir.test/fhir/r4/Patient/pat-a"});
    let written = h.request("POST", "Observation", Some(&t), Some(own)).await;
    assert_eq!(written.status, StatusCode::CREATED, "{}", written.body);
    assert_eq!(written.body["subject"]["reference"], "Patient/pat-a");
    let found = h
        .ids(
            &format!("Observation?patient=pat-a&identifier={SYSTEM}|abs-1"),
            &t,
        )
        .await;
    assert_eq!(found.len(), 1);
    // The same type and id on another server is not this server's patient.
    let mut elsewhere = reading("pat-a", "abs-2", 132);
    elsewhere["subject"] = json!({"reference": "https://other.example/fhir/Patient/pat-a"});
    let refused = h
        .request("POST", "Observation", Some(&t), Some(elsewhere))
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("Observation.subject"),
        "{}",
        refused.body
    );
    // Imported as it is, it is in nobody's record here.
    h.import(vec![
        json!({"resourceType": "Condition", "id": "c-elsewhere",
        "code": {"text": "Astma"},
        "subject": {"reference": "https://other.example/fhir/Patient/pat-a"}}),
    ])
    .await
    .unwrap();
    let citizen = h.citizen("pat-a");
    assert!(
        !h.ids("Condition", &citizen)
            .await
            .contains(&"c-elsewhere".to_owned())
    );
    assert!(
        !(h.ids("Condition?patient=pat-a", &h.clinician()).await)
            .contains(&"c-elsewhere".to_owned())
    );
    // Patient data that names its patient elsewhere reaches no one here.
    let read = h.get("Condition/c-elsewhere", &h.clinician()).await;
    assert!(read.status.is_client_error(), "{}", read.body);
}
