//! The workforce, place, medication and care-process types: served, searchable by their R4
//! parameters, patient data confined to its patient's compartment by the element its
//! definition names (`Task.for`, `Appointment.participant.actor`, `Provenance.target`), and
//! resources imported before a type was served placed and indexed when the database opens.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use common::*;
use healthcloud_platform::auth::Role;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

on_both_backends!(
    shared_types_are_found_by_their_parameters,
    patient_data_of_each_type_stays_in_its_compartment,
    resources_stored_before_their_type_was_served_are_placed_when_reindexed,
    patient_data_that_names_its_patient_only_by_identifier_reaches_no_one,
    no_reference_of_a_synthea_record_dangles,
    a_documents_content_is_a_binary_in_the_patients_record,
    an_installed_app_is_the_device_consents_and_audit_records_name,
    a_cohort_is_a_group_the_workforce_keeps_and_no_patient_reads,
);

const SOR: &str = "urn:oid:1.2.208.176.1.1";
const AUTHORIZATION: &str = "urn:oid:1.2.208.176.1.3";

fn workforce() -> Vec<Value> {
    vec![
        json!({"resourceType": "Practitioner", "id": "dr-hansen",
            "identifier": [{"system": AUTHORIZATION, "value": "ABC12"}],
            "name": [{"family": "Hansen", "given": ["Karen"]}]}),
        json!({"resourceType": "PractitionerRole", "id": "dr-hansen-gp",
            "practitioner": {"reference": "Practitioner/dr-hansen"},
            "organization": {"reference": "Organization/gp-1"},
            "code": [{"coding": [{"system": "urn:oid:1.2.208.176.2.4", "code": "gp"}]}]}),
        json!({"resourceType": "Location", "id": "clinic-1", "name": "Klinikken Nørrebro",
            "identifier": [{"system": SOR, "value": "333333"}],
            "managingOrganization": {"reference": "Organization/gp-1"},
            "address": {"city": "København N"}}),
        json!({"resourceType": "Medication", "id": "med-1",
            "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "C09AA02"}]}}),
    ]
}

/// pat-a's resources of the care-process types, each in the compartment its definition names.
fn care_of(patient: &str) -> Vec<Value> {
    let me = json!({"reference": format!("Patient/{patient}")});
    let id = |kind: &str| format!("{patient}-{kind}");
    vec![
        json!({"resourceType": "Task", "id": id("task"), "status": "requested", "intent": "order",
            "for": me, "authoredOn": "2024-05-01",
            "owner": {"reference": "Practitioner/dr-hansen"}}),
        json!({"resourceType": "Appointment", "id": id("appointment"), "status": "booked",
            "start": "2024-06-01T09:00:00Z", "end": "2024-06-01T09:15:00Z",
            "participant": [{"actor": {"reference": "Practitioner/dr-hansen"}, "status": "accepted"},
                            {"actor": me, "status": "accepted"}]}),
        json!({"resourceType": "Provenance", "id": id("provenance"),
            "target": [{"reference": format!("Task/{}", id("task"))}, me],
            "recorded": "2024-05-01T10:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/dr-hansen"}}]}),
        json!({"resourceType": "DocumentReference", "id": id("document"), "status": "current",
            "subject": me, "date": "2024-05-02T08:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVq"}}]}),
        json!({"resourceType": "CarePlan", "id": id("careplan"), "status": "active",
            "intent": "plan", "subject": me, "period": {"start": "2024-01-01"}}),
        json!({"resourceType": "Goal", "id": id("goal"), "lifecycleStatus": "active",
            "description": {"text": "Blood pressure below 135/85"}, "subject": me,
            "startDate": "2024-01-01"}),
        json!({"resourceType": "EpisodeOfCare", "id": id("episode"), "status": "active",
            "patient": me, "period": {"start": "2023-11-01"}}),
    ]
}

async fn shared_types_are_found_by_their_parameters(h: Harness) {
    h.import(workforce()).await.unwrap();
    let t = h.clinician();
    assert_eq!(h.ids("Practitioner?family=hans", &t).await, ["dr-hansen"]);
    assert_eq!(
        h.ids(
            &format!("Practitioner?identifier={AUTHORIZATION}|ABC12"),
            &t
        )
        .await,
        ["dr-hansen"]
    );
    assert_eq!(
        h.ids("PractitionerRole?practitioner=Practitioner/dr-hansen", &t)
            .await,
        ["dr-hansen-gp"]
    );
    assert_eq!(
        h.ids("Location?organization=gp-1&address-city=k%C3%B8benhavn", &t)
            .await,
        ["clinic-1"]
    );
    assert_eq!(
        h.ids("Medication?code=http://www.whocc.no/atc|C09AA02", &t)
            .await,
        ["med-1"]
    );
    // The practitioner a token names as its user is readable (SMART's `fhirUser`).
    let read = h.get("Practitioner/dr-hansen", &t).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["name"][0]["given"][0], "Karen");
}

async fn patient_data_of_each_type_stays_in_its_compartment(h: Harness) {
    h.import(workforce()).await.unwrap();
    h.import(care_of("pat-a")).await.unwrap();
    h.import(care_of("pat-b")).await.unwrap();
    let t = h.clinician();
    for (search, expected) in [
        (
            "Task?patient=pat-a&owner=Practitioner/dr-hansen",
            "pat-a-task",
        ),
        (
            "Appointment?patient=pat-a&date=2024-06",
            "pat-a-appointment",
        ),
        ("Provenance?patient=pat-a", "pat-a-provenance"),
        (
            "DocumentReference?patient=pat-a&status=current",
            "pat-a-document",
        ),
        ("CarePlan?patient=pat-a&date=ge2024-03-01", "pat-a-careplan"),
        ("Goal?patient=pat-a&lifecycle-status=active", "pat-a-goal"),
        ("EpisodeOfCare?patient=pat-a", "pat-a-episode"),
    ] {
        assert_eq!(h.ids(search, &t).await, [expected], "{search}");
    }
    // pat-a sees their own of every type, and nothing of pat-b's: not in a search, and a read
    // of pat-b's answers as if it did not exist.
    let citizen = h.citizen("pat-a");
    for resource in care_of("pat-b") {
        let kind = resource["resourceType"].as_str().unwrap();
        let own = h.ids(kind, &citizen).await;
        assert_eq!(own.len(), 1, "{kind}: {own:?}");
        assert!(own[0].starts_with("pat-a-"), "{kind}: {own:?}");
        let theirs = h
            .get(
                &format!("{kind}/{}", resource["id"].as_str().unwrap()),
                &citizen,
            )
            .await;
        assert_eq!(theirs.status, 404, "{kind}: {}", theirs.body);
    }
}

async fn resources_stored_before_their_type_was_served_are_placed_when_reindexed(h: Harness) {
    h.import(care_of("pat-a")).await.unwrap();
    // As a Task stood before Task was served: indexed by nothing but a guessed compartment
    // (it has neither `subject` nor `patient`, so none), queued by the migration.
    let db = h.store.database();
    for sql in [
        "UPDATE resources SET patient_id = NULL WHERE id = 'pat-a-task'",
        "DELETE FROM search_token WHERE resource_id = 'pat-a-task'",
        "DELETE FROM search_date WHERE resource_id = 'pat-a-task'",
        "INSERT INTO reindex_queue (resource_type, resource_id) VALUES ('Task', 'pat-a-task')",
    ] {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
    let citizen = h.citizen("pat-a");
    assert!(h.ids("Task", &citizen).await.is_empty(), "not placed yet");
    assert_eq!(h.store.reindex_queued().await.unwrap(), 1);
    assert_eq!(h.ids("Task", &citizen).await, ["pat-a-task"]);
    assert_eq!(
        h.ids("Task?patient=pat-a&authored-on=2024-05", &h.clinician())
            .await,
        ["pat-a-task"]
    );
}

async fn patient_data_that_names_its_patient_only_by_identifier_reaches_no_one(h: Harness) {
    // Imported as data sometimes is: the patient named by CPR number, not as Patient/<id>.
    // Placed in no compartment, it would escape pat-a's consent, confinement and log.
    let by_cpr = json!({"type": "Patient", "identifier": {"system": CPR, "value": "7501504321"}});
    let document = json!({"resourceType": "DocumentReference", "id": "unplaced-document",
        "status": "current", "subject": by_cpr,
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGVq"}}]});
    let observation = json!({"resourceType": "Observation", "id": "unplaced-reading",
        "status": "final", "code": {"text": "weight"}, "subject": by_cpr});
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": document}, {"resource": observation}]});
    let mut importer = healthcloud_integration::import::Importer::new(&h.store);
    importer.add(bundle).await.unwrap();
    let report = importer.finish().await.unwrap();
    assert_eq!(report.unplaced.get("DocumentReference"), Some(&1));
    assert_eq!(report.unplaced.get("Observation"), Some(&1));
    // pat-a opts the clinician's organization out; neither a search by the CPR number nor a
    // search of everything nor a read reaches the unplaced data.
    h.opt_out(&h.citizen("pat-a"), "pat-a", "Organization/gp-1", &[])
        .await;
    let clinician = h.clinician_of("gp-1");
    for search in [
        format!("DocumentReference?patient:identifier={CPR}|7501504321"),
        "DocumentReference".to_owned(),
        format!("Observation?subject:identifier={CPR}|7501504321"),
        "Observation?code=weight".to_owned(),
    ] {
        let found = h.get(&search, &clinician).await;
        assert!(
            !ids(&found.body).iter().any(|id| id.starts_with("unplaced")),
            "{search}: {}",
            found.body
        );
    }
    for read in [
        "DocumentReference/unplaced-document",
        "Observation/unplaced-reading",
    ] {
        let answer = h.get(read, &h.clinician()).await;
        assert_eq!(answer.status, 403, "{read}: {}", answer.body);
    }
}

/// A patient's record as Synthea writes it (one Bundle: the care, the claims, the imaging, the
/// devices, and a Provenance naming all of it), with the organizations and practitioners it
/// refers to.
fn synthea_record() -> Vec<Value> {
    let me = json!({"reference": "Patient/pat-c"});
    let visit = json!({"reference": "Encounter/s-visit"});
    let targets: Vec<Value> = [
        "Encounter/s-visit",
        "Condition/s-condition",
        "Claim/s-claim",
        "ExplanationOfBenefit/s-eob",
        "ImagingStudy/s-imaging",
        "MedicationAdministration/s-given",
        "SupplyDelivery/s-supply",
        "Media/s-media",
        "Device/s-device",
        "Patient/pat-c",
    ]
    .iter()
    .map(|r| json!({"reference": r}))
    .collect();
    vec![
        json!({"resourceType": "Organization", "id": "s-hospital", "name": "Synthea Hospital"}),
        json!({"resourceType": "Practitioner", "id": "s-doctor", "name": [{"family": "Doe"}]}),
        json!({"resourceType": "Location", "id": "s-ward", "name": "Ward 3",
            "managingOrganization": {"reference": "Organization/s-hospital"}}),
        json!({"resourceType": "Medication", "id": "s-drug",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313782"}]}}),
        json!({"resourceType": "Encounter", "id": "s-visit", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": me, "serviceProvider": {"reference": "Organization/s-hospital"},
            "participant": [{"individual": {"reference": "Practitioner/s-doctor"}}],
            "location": [{"location": {"reference": "Location/s-ward"}}]}),
        json!({"resourceType": "Condition", "id": "s-condition", "subject": me, "encounter": visit,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195662009"}]}}),
        json!({"resourceType": "Claim", "id": "s-claim", "status": "active", "use": "claim",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
            "patient": me, "created": "2024-05-01T10:00:00Z", "priority": {"coding": [{"code": "normal"}]},
            "provider": {"reference": "Organization/s-hospital"},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "Public"}}],
            "item": [{"sequence": 1, "productOrService": {"text": "visit"}, "encounter": [visit]}]}),
        json!({"resourceType": "ExplanationOfBenefit", "id": "s-eob", "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
            "use": "claim", "patient": me, "created": "2024-05-01T10:00:00Z",
            "insurer": {"display": "Public"}, "provider": {"reference": "Practitioner/s-doctor"},
            "claim": {"reference": "Claim/s-claim"}, "outcome": "complete",
            "insurance": [{"focal": true, "coverage": {"display": "Public"}}]}),
        json!({"resourceType": "ImagingStudy", "id": "s-imaging", "status": "available", "subject": me,
            "encounter": visit, "started": "2024-05-01T10:10:00Z",
            "series": [{"uid": "1.2.3", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"}}]}),
        json!({"resourceType": "MedicationAdministration", "id": "s-given", "status": "completed",
            "medicationReference": {"reference": "Medication/s-drug"}, "subject": me, "context": visit,
            "effectiveDateTime": "2024-05-01T10:20:00Z"}),
        json!({"resourceType": "SupplyDelivery", "id": "s-supply", "status": "completed", "patient": me,
            "suppliedItem": {"quantity": {"value": 1}}}),
        json!({"resourceType": "Media", "id": "s-media", "status": "completed", "subject": me,
            "encounter": visit, "content": {"contentType": "image/jpeg"}}),
        json!({"resourceType": "Device", "id": "s-device", "status": "active", "patient": me,
            "deviceName": [{"name": "Glucose meter", "type": "user-friendly-name"}]}),
        json!({"resourceType": "Provenance", "id": "s-provenance", "recorded": "2024-05-01T11:00:00Z",
            "target": targets,
            "agent": [{"who": {"reference": "Practitioner/s-doctor"},
                "onBehalfOf": {"reference": "Organization/s-hospital"}}]}),
    ]
}

/// Every literal reference in `value`.
fn references_in(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => found.push(reference.clone()),
                    _ => references_in(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references_in(item, found)),
        _ => {}
    }
}

async fn no_reference_of_a_synthea_record_dangles(h: Harness) {
    let record = synthea_record();
    h.import(record.clone()).await.unwrap();
    let t = h.clinician();
    let mut checked = 0;
    for resource in &record {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let read = h.get(&path, &t).await;
        assert_eq!(read.status, 200, "{path}: {}", read.body);
        let mut references = Vec::new();
        references_in(&read.body, &mut references);
        for reference in references {
            let target = h.get(&reference, &t).await;
            assert_eq!(
                target.status, 200,
                "{path} refers to {reference}: {}",
                target.body
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} references");
    // The new types are in their patient's compartment: the patient finds them, no one else.
    let own = h.citizen("pat-c");
    for path in [
        "Claim?patient=pat-c",
        "ImagingStudy?patient=pat-c",
        "Device?patient=pat-c",
    ] {
        assert_eq!(h.ids(path, &own).await.len(), 1, "{path}");
    }
    assert!(h.ids("Claim", &h.citizen("pat-a")).await.is_empty());
    assert_eq!(
        h.ids("ExplanationOfBenefit?claim=Claim/s-claim", &t).await,
        ["s-eob"]
    );
}

/// A Binary read with `accept`: status, headers and the bytes as they came.
async fn read_binary(
    h: &Harness,
    path: &str,
    token: &str,
    accept: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let request = Request::builder()
        .uri(format!("/fhir/r4/{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

async fn a_documents_content_is_a_binary_in_the_patients_record(h: Harness) {
    let writer = h.token(
        Role::Clinician,
        None,
        Some("user/*.rs user/Binary.c user/DocumentReference.c"),
    );
    let pdf = b"%PDF-1.4 discharge letter".to_vec();
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let binary = |patient: &str, media: &str, bytes: &[u8]| {
        json!({"resourceType": "Binary", "contentType": media,
            "securityContext": {"reference": format!("Patient/{patient}")},
            "data": base64(bytes)})
    };
    let created = h
        .request(
            "POST",
            "Binary",
            Some(&writer),
            Some(binary("pat-a", "application/pdf", &pdf)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let document = json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": "Patient/pat-a"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
        "content": [{"attachment": {"contentType": "application/pdf", "url": format!("Binary/{id}")}}]});
    let created = h
        .request("POST", "DocumentReference", Some(&writer), Some(document))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let url = created.body["content"][0]["attachment"]["url"]
        .as_str()
        .unwrap()
        .to_owned();

    // The attachment's URL reads the content as it is, for whoever may read the record.
    let t = h.clinician();
    let (status, headers, bytes) = read_binary(&h, &url, &t, "application/pdf").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, pdf);
    assert_eq!(headers[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(headers[header::CONTENT_DISPOSITION], "attachment");
    // As FHIR JSON when asked so.
    let (status, _, bytes) = read_binary(&h, &url, &t, "application/fhir+json").await;
    assert_eq!(status, StatusCode::OK);
    let resource: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resource["data"], base64(&pdf));
    // Found in the patient's record, and read in the patient's log.
    assert_eq!(
        h.ids("Binary?patient=pat-a", &t).await,
        std::slice::from_ref(&id)
    );
    let log = h
        .get("AuditEvent?patient=pat-a&_count=200", &h.citizen("pat-a"))
        .await;
    assert!(
        log.body.to_string().contains(&format!("Binary/{id}")),
        "{}",
        log.body
    );
    // Not for another patient: the same 404 as any resource outside their record.
    let other = h.citizen("pat-b");
    let (status, _, bytes) = read_binary(&h, &url, &other, "application/pdf").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(!String::from_utf8_lossy(&bytes).contains("PDF"));

    // Content that would run in a browser is served so that it cannot act on this origin.
    let page = b"<script>fetch('/fhir/r4/Patient')</script>";
    let created = h
        .request(
            "POST",
            "Binary",
            Some(&writer),
            Some(binary("pat-a", "text/html", page)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let path = format!("Binary/{}", created.body["id"].as_str().unwrap());
    let (status, headers, _) = read_binary(&h, &path, &t, "text/html").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_DISPOSITION], "attachment");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        (headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap()).starts_with("sandbox"),
        "{headers:?}"
    );
    // JSON that would pass for this API's own answer is served as bytes only.
    let json = b"{\"resourceType\": \"Bundle\"}";
    let created = h
        .request(
            "POST",
            "Binary",
            Some(&writer),
            Some(binary("pat-a", "application/fhir+json", json)),
        )
        .await;
    let path = format!("Binary/{}", created.body["id"].as_str().unwrap());
    let (status, headers, bytes) = read_binary(&h, &path, &t, "*/*").await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, &json[..]));
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    // Other resources, and the type's history and searches, stay JSON only.
    for path in [
        "Patient/pat-a",
        "Binary/_history",
        "Binary/_search",
        "Binary",
    ] {
        let (status, _, _) = read_binary(&h, path, &t, "application/pdf").await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{path}");
    }

    // A Binary must say whose record it is in, and hold what it says.
    let mut unplaced = binary("pat-a", "application/pdf", &pdf);
    unplaced["securityContext"] = json!({"reference": "DocumentReference/x"});
    let mut bad_data = binary("pat-a", "application/pdf", &pdf);
    bad_data["data"] = json!("not base64!");
    let mut bad_media = binary("pat-a", "application/pdf", &pdf);
    bad_media["contentType"] = json!("pdf\r\nSet-Cookie: x=1");
    for (bad, element) in [
        (unplaced, "securityContext"),
        (bad_data, "Binary.data"),
        (bad_media, "Binary.contentType"),
    ] {
        let response = h.request("POST", "Binary", Some(&writer), Some(bad)).await;
        assert_eq!(response.status, 422, "{}", response.body);
        assert!(
            response.body.to_string().contains(element),
            "{}",
            response.body
        );
    }
}

async fn an_installed_app_is_the_device_consents_and_audit_records_name(h: Harness) {
    use healthcloud_integration::service::AppRecord;
    let app = |version| AppRecord {
        id: "examples/bp-monitor",
        name: "Blood pressure monitor",
        version,
        description: "Home blood pressure readings and their trend.",
    };
    assert!(h.service.register_app(&app("0.1.0")).await.unwrap());
    // The same version again, or an older one installed elsewhere, changes nothing.
    assert!(!h.service.register_app(&app("0.1.0")).await.unwrap());
    assert!(!h.service.register_app(&app("0.0.9")).await.unwrap());
    let t = h.clinician();
    let device = h.get("Device/examples.bp-monitor", &t).await;
    assert_eq!(device.status, StatusCode::OK, "{}", device.body);
    assert_eq!(
        device.body["deviceName"][0]["name"],
        "Blood pressure monitor"
    );
    assert_eq!(device.body["manufacturer"], "examples");
    assert_eq!(device.body["version"][0]["value"], "0.1.0");
    assert_eq!(
        h.ids(
            "Device?identifier=urn:healthcloud:app|examples/bp-monitor",
            &t
        )
        .await,
        ["examples.bp-monitor"]
    );
    // A newer version is recorded as a new version of the Device, the earlier kept.
    assert!(h.service.register_app(&app("0.2.0")).await.unwrap());
    let history = h.get("Device/examples.bp-monitor/_history", &t).await;
    assert_eq!(history.body["total"], 2, "{}", history.body);
    // It is no patient's data: a token confined to a patient's record does not reach it.
    let citizen = h.citizen("pat-a");
    let response = h.get("Device/examples.bp-monitor", &citizen).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    // Only the platform records apps: a client cannot write a Device that is in no record.
    let writer = h.token(Role::Clinician, None, Some("user/*.rs user/Device.cu"));
    let forged = json!({"resourceType": "Device", "id": "examples.evil",
        "identifier": [{"system": "urn:healthcloud:app", "value": "examples/evil"}],
        "deviceName": [{"name": "Blood pressure monitor", "type": "user-friendly-name"}]});
    for (method, path) in [
        ("POST", "Device"),
        ("PUT", "Device/examples.evil"),
        ("PUT", "Device/examples.bp-monitor"),
    ] {
        let response = h
            .request(method, path, Some(&writer), Some(forged.clone()))
            .await;
        assert!(
            response.status.is_client_error(),
            "{method} {path}: {}",
            response.body
        );
    }
    assert_eq!(
        h.get("Device/examples.evil", &t).await.status,
        StatusCode::NOT_FOUND
    );
    let device = h.get("Device/examples.bp-monitor", &t).await;
    assert_eq!(
        device.body["deviceName"][0]["name"],
        "Blood pressure monitor"
    );
    assert_eq!(device.body["version"][0]["value"], "0.2.0");
}

async fn a_cohort_is_a_group_the_workforce_keeps_and_no_patient_reads(h: Harness) {
    h.import(vec![
        json!({"resourceType": "Patient", "id": "pat-a"}),
        json!({"resourceType": "Patient", "id": "pat-b"}),
    ])
    .await
    .unwrap();
    let cohort = json!({"resourceType": "Group", "type": "person", "actual": true,
        "code": {"coding": [{"system": "urn:example:cohorts", "code": "hypertension"}]},
        "managingEntity": {"reference": "Organization/gp-1"},
        "member": [{"entity": {"reference": "Patient/pat-a"}},
                   {"entity": {"reference": "Patient/pat-b"}}]});
    let t = h.token(Role::Clinician, None, Some("user/*.rs user/Group.cu"));
    let created = h.request("POST", "Group", Some(&t), Some(cohort)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    for search in [
        "Group?member=Patient/pat-a",
        "Group?code=urn:example:cohorts|hypertension&actual=true&type=person",
        "Group?managing-entity=Organization/gp-1",
    ] {
        assert_eq!(
            h.ids(search, &t).await,
            std::slice::from_ref(&id),
            "{search}"
        );
    }
    assert!(h.ids("Group?member=Patient/nobody", &t).await.is_empty());

    // A patient's own token, even with every patient scope, does not learn who is in it, nor
    // that they are.
    let citizen = h.token(Role::Citizen, Some("pat-a"), Some("patient/*.rs"));
    for path in [
        format!("Group/{id}"),
        "Group?member=Patient/pat-a".to_owned(),
        format!("Group/{id}/_history"),
    ] {
        let refused = h.get(&path, &citizen).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
    }
    let own = h
        .get("Patient?_id=pat-a&_revinclude=Group:member", &citizen)
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let types: Vec<&str> = (own.body["entry"].as_array().unwrap().iter())
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    assert!(!types.contains(&"Group"), "{}", own.body);
    let probe = h
        .get(&format!("Patient?_has:Group:member:_id={id}"), &citizen)
        .await;
    assert!(
        probe.status == 403 || probe.body["total"] == 0,
        "membership leaks through _has: {} {}",
        probe.status,
        probe.body
    );
    // The workforce's own token with only patient scopes: the same.
    let confined = h.token(Role::Clinician, Some("pat-a"), Some("patient/*.rs"));
    assert_eq!(h.get(&format!("Group/{id}"), &confined).await.status, 403);
}
