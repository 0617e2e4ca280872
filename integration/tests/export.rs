//! Bulk Data export (`$export`) as a backend service drives it: the kick-off, polling, the
//! manifest and the NDJSON files; what the grant, consent and the level allow; each
//! included patient's audit record; and the attacks: another role, types outside the grant,
//! another client's status, files and cancel.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use healthcloud_platform::auth::Role;
use serde_json::{Value, json};
use tower::ServiceExt;

on_both_backends!(
    a_backend_service_exports_what_its_grant_allows,
    exports_are_refused_outside_the_grant_and_seen_by_their_client_only,
    a_group_export_holds_its_members_and_each_is_audited_once,
    a_patient_who_opted_out_of_the_service_is_left_out,
    an_export_ends_with_its_clients_install_and_a_client_holds_few_at_once,
    a_de_identified_export_names_no_one_and_keeps_each_record_whole,
    a_research_export_leaves_out_who_opted_out_of_research,
);

/// A kick-off: the response (202 and the status URL, or the refusal).
async fn kickoff(h: &Harness, path: &str, token: &str) -> Response {
    let request = Request::get(format!("/fhir/r4/{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "application/fhir+json")
        .header("prefer", "respond-async")
        .body(Body::empty())
        .unwrap();
    h.send(request).await
}

/// Polls the status URL until the export is done: its manifest.
async fn finished(h: &Harness, status_url: &str, token: &str) -> Value {
    for _ in 0..200 {
        let status = h.get(status_url, token).await;
        match status.status.as_u16() {
            202 => {
                assert_eq!(status.headers["retry-after"], "2");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            200 => return status.body,
            other => panic!("status {other}: {}", status.body),
        }
    }
    panic!("the export did not finish");
}

/// Starts an export and waits for its manifest.
async fn export(h: &Harness, path: &str, token: &str) -> (String, Value) {
    let started = kickoff(h, path, token).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let status_url = started.headers[header::CONTENT_LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(status_url.starts_with(&format!("{BASE}/$export-status/")));
    let manifest = finished(h, &status_url, token).await;
    (status_url, manifest)
}

/// The lines of every file of `manifest`, by type.
async fn download(h: &Harness, manifest: &Value, token: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_type = BTreeMap::new();
    for output in manifest["output"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let request = Request::get(url.strip_prefix("http://fhir.test").unwrap())
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/fhir+ndjson")
            .body(Body::empty())
            .unwrap();
        let response = h.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/fhir+ndjson"
        );
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let resource_type = output["type"].as_str().unwrap().to_owned();
        assert_eq!(lines.len() as u64, output["count"].as_u64().unwrap());
        assert!(
            lines
                .iter()
                .all(|r| r["resourceType"] == resource_type.as_str())
        );
        by_type.insert(resource_type, lines);
    }
    by_type
}

/// The status of a GET of `path` (any body, JSON or not).
async fn status_of(h: &Harness, path: &str, token: Option<&str>) -> u16 {
    let path = path.strip_prefix("http://fhir.test").unwrap_or(path);
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = h
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await;
    response.unwrap().status().as_u16()
}

fn ids(resources: &[Value]) -> BTreeSet<String> {
    (resources.iter())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_backend_service_exports_what_its_grant_allows(h: Harness) {
    let token = h.backend_service(
        "registry",
        "purpose:quality system/Observation.rs system/Patient.rs",
    );
    let (first, manifest) = export(&h, "$export", &token).await;
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["transactionTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(manifest["request"], format!("{BASE}/$export"));
    let files = download(&h, &manifest, &token).await;
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Observation", "Patient"],
        "every type granted that holds data, and nothing else"
    );
    // Everything a clinician's search finds, none of it twice.
    for resource_type in ["Observation", "Patient"] {
        let all = h
            .get(
                &format!("{resource_type}?_count=1000"),
                &h.token(Role::Clinician, None, Some("user/*.rs")),
            )
            .await;
        let expected: BTreeSet<String> = (all.body["entry"].as_array().unwrap().iter())
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids(&files[resource_type]), expected, "{resource_type}");
        assert_eq!(files[resource_type].len(), expected.len());
    }
    // A scope restriction of the grant holds in the files.
    let vital = h.backend_service(
        "vitals",
        "purpose:quality system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    );
    let (_, manifest) = export(&h, "$export?_type=Observation", &vital).await;
    let vital_files = download(&h, &manifest, &vital).await;
    assert!(!vital_files["Observation"].is_empty());
    for observation in &vital_files["Observation"] {
        assert_eq!(
            observation["category"][0]["coding"][0]["code"], "vital-signs",
            "{observation}"
        );
    }
    // (A client holds three exports at once.)
    let deleted = h.request("DELETE", &first, Some(&token), None).await;
    assert_eq!(deleted.status, 202);
    // `_typeFilter`: what a type's filters select (any of them), each resource once.
    let category = "category%3Dhttp://terminology.hl7.org/CodeSystem/observation-category%7C";
    let vitals_only = format!("Observation%3F{category}vital-signs");
    let (_, manifest) = export(
        &h,
        &format!("$export?_type=Observation,Patient&_typeFilter={vitals_only}"),
        &token,
    )
    .await;
    let filtered = download(&h, &manifest, &token).await;
    assert!(!filtered["Observation"].is_empty());
    assert!(filtered["Observation"].len() < files["Observation"].len());
    for observation in &filtered["Observation"] {
        assert_eq!(
            observation["category"][0]["coding"][0]["code"],
            "vital-signs"
        );
    }
    assert_eq!(
        filtered["Patient"].len(),
        files["Patient"].len(),
        "a type without a filter is whole"
    );
    let twice = format!(
        "$export?_type=Observation&_typeFilter={vitals_only},Observation%3Fstatus%3Dfinal,{vitals_only}"
    );
    let (_, manifest) = export(&h, &twice, &token).await;
    let either = download(&h, &manifest, &token).await;
    let unique = ids(&either["Observation"]);
    assert_eq!(
        unique.len(),
        either["Observation"].len(),
        "each resource once"
    );
    assert!(unique.is_superset(&ids(&filtered["Observation"])));
    // `_since`: only what changed since.
    let (_, manifest) = export(
        &h,
        "$export?_type=Patient&_since=2999-01-01T00:00:00Z",
        &token,
    )
    .await;
    assert_eq!(manifest["output"], json!([]));
}

async fn exports_are_refused_outside_the_grant_and_seen_by_their_client_only(h: Harness) {
    let token = h.backend_service("registry", "purpose:quality system/Observation.rs");
    // Not a backend service: a clinician, a citizen.
    for other in [h.clinician(), h.citizen("pat-a")] {
        let refused = kickoff(&h, "$export", &other).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    // A type outside the grant, one not served, parameters not supported, no Prefer.
    let refused = kickoff(&h, "$export?_type=Observation,Condition", &token).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.to_string().contains("Condition"));
    assert_eq!(
        kickoff(&h, "$export?_type=Nothing", &token).await.status,
        400
    );
    // A filter that is no search of an exported type, or shapes rather than selects.
    for filter in [
        "Observation%3Fnot-a-parameter%3Dx",
        "Condition%3Fcode%3Dx",
        "Observation%3F_count%3D5",
        "Observation",
        "Observation%3F_has:Observation:part-of:code%3Dx",
        "Observation%3Fsubject.name%3Dx",
    ] {
        let filtered = kickoff(&h, &format!("$export?_typeFilter={filter}"), &token).await;
        assert_eq!(filtered.status, 400, "{filter}: {}", filtered.body);
    }
    let eleven = ["Observation%3Fstatus%3Dfinal"; 11].join(",");
    let many = kickoff(&h, &format!("$export?_typeFilter={eleven}"), &token).await;
    assert_eq!(many.status, 400, "{}", many.body);
    assert_eq!(
        kickoff(&h, "$export?_outputFormat=text/csv", &token)
            .await
            .status,
        400
    );
    assert_eq!(
        kickoff(&h, "Patient/$export?_type=Organization", &token)
            .await
            .status,
        400
    );
    let plain = h.get("$export", &token).await;
    assert_eq!(plain.status, 400);
    assert!(plain.body.to_string().contains("respond-async"));

    let (status_url, manifest) = export(&h, "$export", &token).await;
    let file_url = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    let file_path = file_url.strip_prefix("http://fhir.test").unwrap();
    // Another client learns nothing of it: not its progress, its files, nor can it cancel.
    let other = h.backend_service("other", "purpose:quality system/Observation.rs");
    assert_eq!(h.get(&status_url, &other).await.status, 404);
    assert_eq!(status_of(&h, file_path, Some(&other)).await, 404);
    assert_eq!(
        h.request("DELETE", &status_url, Some(&other), None)
            .await
            .status,
        404
    );
    // Nor does a clinician, or a request without a token.
    assert_eq!(status_of(&h, file_path, Some(&h.clinician())).await, 404);
    assert_eq!(status_of(&h, file_path, None).await, 401);
    // Its own client deletes it: gone.
    assert_eq!(status_of(&h, file_path, Some(&token)).await, 200);
    let deleted = h.request("DELETE", &status_url, Some(&token), None).await;
    assert_eq!(deleted.status, 202);
    assert_eq!(h.get(&status_url, &token).await.status, 404);
    assert_eq!(status_of(&h, file_path, Some(&token)).await, 404);
    // A name that is not one of its files.
    let (status_url, _) = export(&h, "$export", &token).await;
    let id = status_url.rsplit('/').next().unwrap();
    for name in ["..%2F..%2Fetc%2Fpasswd", "Condition.ndjson", "%2E%2E"] {
        let path = format!("/fhir/r4/$export-file/{id}/{name}");
        assert_eq!(status_of(&h, &path, Some(&token)).await, 404, "{name}");
    }
}

async fn a_group_export_holds_its_members_and_each_is_audited_once(h: Harness) {
    let keeper = h.token(Role::Clinician, None, Some("user/*.rs user/Group.c"));
    let group = json!({"resourceType": "Group", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/pat-a"}},
                   {"entity": {"reference": "Patient/pat-b"}, "period": {"end": "2020-01-01"}},
                   {"entity": {"reference": "Patient/pat-c"}, "inactive": true}]});
    let created = h.request("POST", "Group", Some(&keeper), Some(group)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let group_id = created.body["id"].as_str().unwrap().to_owned();
    let token = h.backend_service(
        "registry",
        "purpose:quality system/Observation.rs system/Patient.rs system/Group.rs system/Organization.rs",
    );
    let (_, manifest) = export(&h, &format!("Group/{group_id}/$export"), &token).await;
    let files = download(&h, &manifest, &token).await;
    assert_eq!(ids(&files["Patient"]), BTreeSet::from(["pat-a".to_owned()]));
    assert!((files["Observation"].iter()).all(|o| o["subject"]["reference"] == "Patient/pat-a"));
    // Only a patient's record is exported at this level: no shared data.
    assert!(!files.contains_key("Organization"));

    // Each patient in the files has the export in their log, once; the others do not.
    let logged = |patient: &'static str| {
        let h = &h;
        async move {
            let log = h
                .get(
                    &format!("AuditEvent?patient={patient}&_count=1000"),
                    &h.citizen(patient),
                )
                .await;
            (log.body["entry"].as_array().into_iter().flatten())
                .filter(|e| {
                    (e["resource"]["entity"].as_array().into_iter().flatten())
                        .filter_map(|entity| entity["query"].as_str())
                        .filter_map(|query| BASE64.decode(query).ok())
                        .any(|query| {
                            String::from_utf8_lossy(&query).starts_with("%24export=Group%2F")
                        })
                })
                .count()
        }
    };
    assert_eq!(logged("pat-a").await, 1);
    // The record names the service as an application acting, not a person.
    let log = h.get("AuditEvent?patient=pat-a", &h.citizen("pat-a")).await;
    let agent = &log.body["entry"][0]["resource"]["agent"][0];
    assert_eq!(agent["type"]["coding"][0]["code"], "110150", "{agent}");
    assert_eq!(agent["who"]["identifier"]["value"], "registry");
    assert_eq!(logged("pat-b").await, 0);
    assert_eq!(
        logged("pat-c").await,
        0,
        "an inactive member is not exported"
    );
    // A system-level export names cohorts only when asked: their members are no one's data.
    let (_, manifest) = export(&h, "$export", &token).await;
    let types: Vec<&str> = (manifest["output"].as_array().unwrap().iter())
        .filter_map(|o| o["type"].as_str())
        .collect();
    assert!(!types.contains(&"Group"), "{types:?}");
    let (_, manifest) = export(&h, "$export?_type=Group", &token).await;
    assert_eq!(manifest["output"][0]["type"], "Group");

    // A characteristic group is refused, as is a Group the client may not read.
    let defined = json!({"resourceType": "Group", "type": "person", "actual": false});
    let created = h
        .request("POST", "Group", Some(&keeper), Some(defined))
        .await;
    let defined_id = created.body["id"].as_str().unwrap();
    let refused = kickoff(&h, &format!("Group/{defined_id}/$export"), &token).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let blind = h.backend_service("blind", "purpose:quality system/Observation.rs");
    let refused = kickoff(&h, &format!("Group/{group_id}/$export"), &blind).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}

async fn a_patient_who_opted_out_of_the_service_is_left_out(h: Harness) {
    let token = h.backend_service(
        "registry",
        "purpose:quality system/Observation.rs system/Patient.rs",
    );
    h.opt_out(
        &h.citizen("pat-a"),
        "pat-a",
        "Device/research.registry",
        &[],
    )
    .await;
    let (_, manifest) = export(&h, "Patient/$export", &token).await;
    let files = download(&h, &manifest, &token).await;
    assert!(!ids(&files["Patient"]).contains("pat-a"));
    assert!(ids(&files["Patient"]).contains("pat-b"));
    assert!(
        !(files["Observation"].iter()).any(|o| o["subject"]["reference"] == "Patient/pat-a"),
        "her readings are not in the files"
    );
}

async fn an_export_ends_with_its_clients_install_and_a_client_holds_few_at_once(h: Harness) {
    let token = h.backend_service("registry", "purpose:quality system/Observation.rs");
    let (status_url, manifest) = export(&h, "$export", &token).await;
    let file = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&h, &file, Some(&token)).await, 200);
    // The region changes its grant (the install changes): the files made under the old one
    // are gone, and the status says why.
    let mut changed = (*h.clients.get("registry").unwrap()).clone();
    changed.changed_at = 1;
    h.clients.register(changed).unwrap();
    let renewed = h.backend_service_token("registry");
    let stopped = h.get(&status_url, &renewed).await;
    assert_eq!(stopped.status, 500, "{}", stopped.body);
    assert!(
        stopped.body.to_string().contains("install changed"),
        "{}",
        stopped.body
    );
    assert_eq!(status_of(&h, &file, Some(&renewed)).await, 404);

    // At most three exports are held at once (that one still counts until deleted);
    // deleting one makes room.
    let mut held = vec![status_url];
    for _ in 0..2 {
        held.push(export(&h, "$export", &renewed).await.0);
    }
    let refused = kickoff(&h, "$export", &renewed).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.to_string().contains("DELETE"));
    let deleted = h.request("DELETE", &held[1], Some(&renewed), None).await;
    assert_eq!(deleted.status, 202);
    assert_eq!(kickoff(&h, "$export", &renewed).await.status, 202);

    // Uninstalled: its token and its exports end with it.
    let other = h.backend_service("other", "purpose:quality system/Observation.rs");
    let (status_url, _) = export(&h, "$export", &other).await;
    assert!(h.clients.remove("other"));
    assert_eq!(status_of(&h, &status_url, Some(&other)).await, 401);
}

async fn a_de_identified_export_names_no_one_and_keeps_each_record_whole(h: Harness) {
    let token = h.backend_service(
        "research",
        "purpose:research system/Observation.rs system/Patient.rs",
    );
    // A filter that would tie pseudonyms to people is refused; one by code is not.
    for linking in [
        "Patient%3Fidentifier%3Durn:oid:1.2.208.176.1.2%7C0101701234",
        "Patient%3F_id%3Dpat-a",
        "Observation%3Fpatient%3DPatient/pat-a",
        "Patient%3Fbirthdate%3D1950-01-01",
        "Observation%3F_lastUpdated%3Dge2026-01-01",
    ] {
        let path = format!(
            "Patient/$export?_type=Patient,Observation&_deidentify=true&_typeFilter={linking}"
        );
        let refused = kickoff(&h, &path, &token).await;
        assert_eq!(refused.status, 400, "{linking}: {}", refused.body);
    }
    let by_code = "Patient/$export?_type=Observation&_deidentify=true&_typeFilter=Observation%3Fcategory%3Dvital-signs";
    let (status_url, _) = export(&h, by_code, &token).await;
    let deleted = h.request("DELETE", &status_url, Some(&token), None).await;
    assert_eq!(deleted.status, 202);
    let path = "Patient/$export?_type=Patient,Observation&_deidentify=true";
    let (_, manifest) = export(&h, path, &token).await;
    let files = download(&h, &manifest, &token).await;
    let all = serde_json::to_string(&files).unwrap();
    for identifying in [
        "pat-a",
        "pat-b",
        "pat-c",
        "7501504321",
        "Sørensen",
        "Hansen",
        "Åse",
        "gp-1",
        "identifier",
        "\"name\"",
        "a-bp-1",
    ] {
        assert!(
            !all.contains(identifying),
            "{identifying} in a de-identified export"
        );
    }
    // Each patient is known by the year of birth alone; her readings are hers, all moved by
    // the same days: the record still fits together.
    let day = |text: &str| chrono::NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").unwrap();
    let her = (files["Patient"].iter())
        .find(|p| p["birthDate"] == "1950")
        .map(|p| format!("Patient/{}", p["id"].as_str().unwrap()))
        .unwrap();
    let hers: Vec<chrono::NaiveDate> = (files["Observation"].iter())
        .filter(|o| o["subject"]["reference"] == her.as_str())
        .map(|o| day(o["effectiveDateTime"].as_str().unwrap()))
        .collect();
    let readings = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"].map(day);
    let shifts: Vec<i64> = (-183..=183)
        .filter(|days| {
            (readings.iter())
                .all(|reading| hers.contains(&(*reading + chrono::Duration::days(*days))))
        })
        .collect();
    assert_eq!(shifts.len(), 1, "{hers:?}");
    assert_ne!(shifts[0], 0, "her dates are moved");
    assert!(!all.contains("lastUpdated") && !all.contains("versionId"));
    // The same pseudonyms in the client's next export, others in another client's.
    let (_, again) = export(&h, path, &token).await;
    let again = download(&h, &again, &token).await;
    assert_eq!(ids(&again["Patient"]), ids(&files["Patient"]));
    let other = h.backend_service("elsewhere", "purpose:research system/Patient.rs");
    let (_, theirs) = export(&h, "Patient/$export?_type=Patient&_deidentify=true", &other).await;
    let theirs = download(&h, &theirs, &other).await;
    assert!(ids(&theirs["Patient"]).is_disjoint(&ids(&files["Patient"])));
    // Asked for wrongly, refused: a bad value, real write times, shared data.
    for path in [
        "$export?_deidentify=yes",
        "$export?_deidentify=true&_since=2024-01-01T00:00:00Z",
        "$export?_deidentify=true&_type=Organization",
    ] {
        assert_eq!(kickoff(&h, path, &token).await.status, 400, "{path}");
    }
}

async fn a_research_export_leaves_out_who_opted_out_of_research(h: Harness) {
    let research = h.backend_service(
        "study",
        "purpose:research system/Patient.rs system/Observation.rs",
    );
    let quality = h.backend_service(
        "registry",
        "purpose:quality system/Patient.rs system/Observation.rs",
    );
    // A service the region granted no purpose exports nothing.
    let aimless = h.backend_service("aimless", "system/Patient.rs");
    let refused = kickoff(&h, "Patient/$export", &aimless).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("purpose:research"),
        "{}",
        refused.body
    );

    // pat-a opts out of research: no research export holds her, a quality registry's does.
    let opted = h
        .opt_out(&h.citizen("pat-a"), "pat-a", "PurposeOfUse/HRESCH", &[])
        .await;
    assert_eq!(opted.status, 201, "{}", opted.body);
    let (_, manifest) = export(&h, "Patient/$export", &research).await;
    let files = download(&h, &manifest, &research).await;
    assert!(!ids(&files["Patient"]).contains("pat-a"));
    assert!(ids(&files["Patient"]).contains("pat-b"));
    assert!(!(files["Observation"].iter()).any(|o| o["subject"]["reference"] == "Patient/pat-a"));
    // Not by a de-identified one either: pseudonyms do not lift an opt-out.
    let (_, manifest) = export(
        &h,
        "Patient/$export?_deidentify=true&_type=Patient",
        &research,
    )
    .await;
    assert_eq!(
        download(&h, &manifest, &research).await["Patient"].len(),
        files["Patient"].len()
    );
    let (_, manifest) = export(&h, "Patient/$export", &quality).await;
    let files = download(&h, &manifest, &quality).await;
    assert!(ids(&files["Patient"]).contains("pat-a"));
    // Nor does a read by the research service reach her.
    let read = h.get("Patient/pat-a", &research).await;
    assert_eq!(read.status, 403, "{}", read.body);

    // Each included patient's log says what the export was for.
    let log = h
        .get("AuditEvent?patient=pat-b&_count=1000", &h.citizen("pat-b"))
        .await;
    let purposes: BTreeSet<String> = (log.body["entry"].as_array().into_iter().flatten())
        .filter_map(|e| e["resource"]["purposeOfEvent"][0]["coding"][0]["code"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        purposes,
        BTreeSet::from(["HQUALIMP".to_owned(), "HRESCH".to_owned()])
    );
    // Hers names only the quality registry's export.
    let log = h
        .get("AuditEvent?patient=pat-a&_count=1000", &h.citizen("pat-a"))
        .await;
    assert!(!(log.body["entry"].as_array().into_iter().flatten()).any(
        |e| e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "HRESCH"
            && e["resource"]["outcome"] == "0"
    ));
}
