//! Searches across references: `_include`, `_revinclude` (with `:iterate`), chained
//! parameters and `_has`. Every resource they bring or rely on is one the caller could have
//! searched for: the caller's scopes, compartment and the patients' consent hold for each,
//! what is left out is counted, and the patients reached are in the search's record.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

on_both_backends!(
    includes_bring_what_the_matches_refer_to,
    revincludes_bring_what_refers_to_the_matches,
    an_included_resource_outside_the_callers_rights_is_left_out_and_counted,
    chained_parameters_search_through_references,
    has_finds_resources_referred_to_by_matches,
    joins_hold_the_joined_type_to_consent_and_compartment,
    malformed_includes_and_chains_are_400s,
    a_chain_matching_too_many_is_refused,
    includes_and_joins_are_bounded,
    a_chain_names_no_other_patient_in_a_log,
);

/// `(type/id, search mode)` of every entry.
fn entries(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let resource = &e["resource"];
            (
                format!(
                    "{}/{}",
                    resource["resourceType"].as_str().unwrap(),
                    resource["id"].as_str().unwrap_or("")
                ),
                e["search"]["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn included(bundle: &Value) -> Vec<String> {
    let mut found: Vec<String> = entries(bundle)
        .into_iter()
        .filter(|(_, mode)| mode == "include")
        .map(|(name, _)| name)
        .collect();
    found.sort();
    found
}

fn outcome(bundle: &Value) -> Vec<String> {
    (bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter())
    .filter(|e| e["search"]["mode"] == "outcome")
    .flat_map(|e| {
        e["resource"]["issue"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    })
    .map(|issue| issue["diagnostics"].as_str().unwrap_or_default().to_owned())
    .collect()
}

async fn ok(h: &Harness, path: &str, token: &str) -> Value {
    let response = h.get(path, token).await;
    assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
    response.body
}

async fn includes_bring_what_the_matches_refer_to(h: Harness) {
    let t = h.clinician();
    let bundle = ok(
        &h,
        "Observation?patient=pat-a&code=85354-9&_include=Observation:patient",
        &t,
    )
    .await;
    assert_eq!(ids(&bundle).len(), 6, "{bundle}");
    assert_eq!(included(&bundle), ["Patient/pat-a"]);
    // Matches are counted, included resources are not; the include travels in the links.
    assert_eq!(bundle["total"], 5);
    let link = bundle["link"][0]["url"].as_str().unwrap();
    assert!(link.contains("_include=Observation%3Apatient"), "{link}");

    let bundle = ok(
        &h,
        "Patient?_id=pat-a,pat-b&_include=Patient:general-practitioner",
        &t,
    )
    .await;
    assert_eq!(
        included(&bundle),
        ["Organization/gp-1", "Organization/gp-2"]
    );
    // A target type narrows: Patient's practitioners are Organizations here, none Practitioner.
    let bundle = ok(
        &h,
        "Patient?_id=pat-a&_include=Patient:general-practitioner:Practitioner",
        &t,
    )
    .await;
    assert!(included(&bundle).is_empty(), "{bundle}");

    // :iterate follows references of what was included.
    let bundle = ok(
        &h,
        "DiagnosticReport?_id=a-labs&_include=DiagnosticReport:result&_include:iterate=Observation:patient",
        &t,
    )
    .await;
    assert_eq!(
        included(&bundle),
        ["Observation/a-hba1c-1", "Patient/pat-a"]
    );
    // Without :iterate, an include of another type's references is refused, not ignored.
    let response = h
        .get(
            "DiagnosticReport?_id=a-labs&_include=Observation:patient",
            &t,
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(diagnostics(&response).contains("_include:iterate"));

    // _summary shapes included resources too; _summary=count includes nothing.
    let bundle = ok(
        &h,
        "Observation?_id=a-bp-1&_include=Observation:patient&_summary=true",
        &t,
    )
    .await;
    let patient = (bundle["entry"].as_array().unwrap().iter())
        .find(|e| e["search"]["mode"] == "include")
        .unwrap();
    assert_eq!(patient["resource"]["meta"]["tag"][0]["code"], "SUBSETTED");
    assert_eq!(patient["fullUrl"], format!("{BASE}/Patient/pat-a").as_str());
    let bundle = ok(
        &h,
        "Observation?patient=pat-a&_include=Observation:patient&_summary=count",
        &t,
    )
    .await;
    assert!(bundle.get("entry").is_none(), "{bundle}");
}

async fn revincludes_bring_what_refers_to_the_matches(h: Harness) {
    let t = h.clinician();
    let bundle = ok(
        &h,
        "Patient?_id=pat-a&_revinclude=Condition:patient&_revinclude=AllergyIntolerance:patient",
        &t,
    )
    .await;
    assert_eq!(ids(&bundle)[0], "pat-a");
    assert_eq!(
        included(&bundle),
        ["AllergyIntolerance/a-penicillin", "Condition/a-htn"]
    );
    // The report that refers to an observation, through :iterate from the patient.
    let bundle = ok(
        &h,
        "Patient?_id=pat-a&_revinclude=Observation:patient&_revinclude:iterate=DiagnosticReport:result",
        &t,
    )
    .await;
    let found = included(&bundle);
    assert!(
        found.contains(&"DiagnosticReport/a-labs".to_owned()),
        "{found:?}"
    );
    assert_eq!(found.len(), 9, "{found:?}");
    // An organization's patients, through the reference that points at it.
    let bundle = ok(
        &h,
        "Organization?_id=gp-2&_revinclude=Patient:general-practitioner",
        &t,
    )
    .await;
    assert_eq!(included(&bundle), ["Patient/pat-b", "Patient/pat-c"]);
}

async fn an_included_resource_outside_the_callers_rights_is_left_out_and_counted(h: Harness) {
    // pat-a's report names one of pat-b's readings as a result (a misfiled reference).
    let report = json!({"resourceType": "DiagnosticReport", "id": "a-mixed", "status": "final",
        "subject": {"reference": "Patient/pat-a"},
        "code": {"coding": [{"system": LOINC, "code": "24323-8"}]},
        "result": [{"reference": "Observation/a-hba1c-1"}, {"reference": "Observation/b-bp-1"},
                   {"reference": "Observation/nowhere"}]});
    h.import(vec![report]).await.unwrap();
    let path = "DiagnosticReport?_id=a-mixed&_include=DiagnosticReport:result";

    // The citizen sees their own reading; pat-b's, and the one that does not exist, are
    // counted alike (the count cannot tell them apart).
    let bundle = ok(&h, path, &h.citizen("pat-a")).await;
    assert_eq!(included(&bundle), ["Observation/a-hba1c-1"]);
    let said = outcome(&bundle);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("2 referenced resource(s) not included"),
        "{said:?}"
    );
    // Nothing about pat-b reached pat-b's log (it was not read for the citizen) or pat-a's.
    let log = h
        .get("AuditEvent?patient=pat-b&_count=200", &h.citizen("pat-b"))
        .await;
    assert!(
        !log.body.to_string().contains("DiagnosticReport"),
        "{}",
        log.body
    );

    // A clinician pat-b opted out of observations: the same include leaves pat-b's out.
    let clinician = h.clinician_of("gp-1");
    let response = h
        .opt_out(
            &h.citizen("pat-b"),
            "pat-b",
            "Organization/gp-1",
            &["Observation"],
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let bundle = ok(&h, path, &clinician).await;
    assert_eq!(included(&bundle), ["Observation/a-hba1c-1"]);

    // A token that may read observations but not patients: the patient is left out, and the
    // outcome says why.
    let scoped = h.token(
        healthcloud_platform::auth::Role::Clinician,
        None,
        Some("user/Observation.rs"),
    );
    let bundle = ok(
        &h,
        "Observation?_id=a-bp-1&_include=Observation:patient",
        &scoped,
    )
    .await;
    assert!(included(&bundle).is_empty(), "{bundle}");
    let said = outcome(&bundle).join(" ");
    assert!(said.contains("_include=Observation:patient"), "{said}");
    // Nor in reverse: the organization's patients stay out.
    let scoped = h.token(
        healthcloud_platform::auth::Role::Clinician,
        None,
        Some("user/Observation.rs user/Organization.rs"),
    );
    let bundle = ok(
        &h,
        "Organization?_id=gp-2&_revinclude=Patient:general-practitioner",
        &scoped,
    )
    .await;
    assert_eq!(
        entries(&bundle)[0],
        ("Organization/gp-2".into(), "match".into())
    );
    assert!(included(&bundle).is_empty(), "{bundle}");
    assert!(outcome(&bundle).join(" ").contains("nothing included"));
}

async fn chained_parameters_search_through_references(h: Harness) {
    let t = h.clinician();
    let mut found = h
        .ids(
            &format!("Observation?patient.identifier={CPR}|6107624322"),
            &t,
        )
        .await;
    found.sort();
    assert_eq!(found, ["b-bp-1", "b-bp-2", "b-bp-3", "b-weight-1"]);
    assert_eq!(
        h.ids("Condition?patient:Patient.name=birgit", &t).await,
        ["c-asthma"]
    );
    // Two links: the patients whose GP is named Lægehuset.
    let mut found = h
        .ids(
            "Condition?patient.general-practitioner:Organization.name=L%C3%A6gehuset",
            &t,
        )
        .await;
    found.sort();
    assert_eq!(found, ["b-dm2", "c-asthma"]);
    // A chain that finds nothing matches nothing.
    assert!(
        h.ids("Observation?patient.name=nobody", &t)
            .await
            .is_empty()
    );
    // Chains combine with the other parameters.
    assert_eq!(
        h.ids("Observation?patient.name=hansen&code=29463-7", &t)
            .await,
        ["b-weight-1"]
    );
}

async fn has_finds_resources_referred_to_by_matches(h: Harness) {
    let t = h.clinician();
    assert_eq!(
        h.ids("Patient?_has:Observation:patient:code=29463-7", &t)
            .await,
        ["pat-b"]
    );
    assert_eq!(
        h.ids(
            "Patient?_has:Condition:patient:clinical-status=resolved",
            &t
        )
        .await,
        ["pat-c"]
    );
    // Nested: observations in a report.
    assert_eq!(
        h.ids("Observation?_has:DiagnosticReport:result:code=24323-8", &t)
            .await,
        ["a-hba1c-1"]
    );
    assert!(
        h.ids("Patient?_has:Observation:patient:code=0000-0", &t)
            .await
            .is_empty()
    );
    // With ids, only what refers to them is searched: many readings elsewhere do not count
    // against the limit.
    let readings: Vec<Value> = (0..201)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("many-{i}"), "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                "subject": {"reference": "Patient/pat-c"}})
        })
        .collect();
    h.import(readings).await.unwrap();
    assert_eq!(
        h.ids(
            "Patient?_id=pat-b&_has:Observation:patient:code=29463-7",
            &t
        )
        .await,
        ["pat-b"]
    );
    let response = h
        .get("Patient?_has:Observation:patient:code=29463-7", &t)
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

async fn joins_hold_the_joined_type_to_consent_and_compartment(h: Harness) {
    // A citizen's chain reaches only their own record: no other patient is found by name.
    let citizen = h.citizen("pat-a");
    assert!(
        h.ids("Observation?patient.name=hansen", &citizen)
            .await
            .is_empty()
    );
    assert!(
        h.ids("Patient?_has:Observation:patient:code=29463-7", &citizen)
            .await
            .is_empty()
    );
    // pat-b opted gp-1 out of observations only: the patient record stays readable, but
    // whether pat-b has a weight reading must not be found through it.
    let clinician = h.clinician_of("gp-1");
    let response = h
        .opt_out(
            &h.citizen("pat-b"),
            "pat-b",
            "Organization/gp-1",
            &["Observation"],
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(h.ids("Patient?_id=pat-b", &clinician).await, ["pat-b"]);
    assert!(
        h.ids("Observation?code=29463-7", &clinician)
            .await
            .is_empty()
    );
    assert!(
        h.ids("Patient?_has:Observation:patient:code=29463-7", &clinician)
            .await
            .is_empty()
    );
    // A type the caller may not search cannot be joined either.
    let scoped = h.token(
        healthcloud_platform::auth::Role::Clinician,
        None,
        Some("user/Observation.rs"),
    );
    let response = h.get("Observation?patient.name=hansen", &scoped).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);

    // A clinician's chain is in the log of the patients it reached, though none of their
    // observations matched.
    let t = h.clinician();
    assert!(
        h.ids("Observation?patient.name=birgit", &t)
            .await
            .is_empty()
    );
    let log = h
        .get("AuditEvent?patient=pat-c&_count=200", &h.citizen("pat-c"))
        .await;
    let described: Vec<&Value> = (log.body["entry"].as_array().unwrap().iter())
        .map(|e| &e["resource"]["entity"][1]["description"])
        .collect();
    assert!(
        described.contains(&&json!("Observation")),
        "the chain is not in pat-c's log: {}",
        log.body
    );
}

async fn malformed_includes_and_chains_are_400s(h: Harness) {
    let t = h.clinician();
    for (path, says) in [
        ("Observation?_include=*", "name each reference"),
        ("Observation?_include=Observation", "Type:parameter"),
        (
            "Observation?_include=Observation:code",
            "no reference parameter 'code'",
        ),
        ("Observation?_include=Nothing:patient", "not a served type"),
        (
            "Observation?_include=Observation:patient:Organization",
            "refers only to Patient",
        ),
        (
            "Patient?_revinclude=Observation:encounter",
            "does not refer to Patient",
        ),
        (
            "Observation?code.name=x",
            "only reference parameters can be chained",
        ),
        ("Observation?subject.name=x", "name one"),
        (
            "Observation?patient._count=3",
            "end it with a search parameter",
        ),
        (
            "Observation?patient.nothing=3",
            "unsupported search parameter 'nothing'",
        ),
        (
            "Patient?_has:Observation:code:code=1",
            "no reference parameter 'code'",
        ),
        (
            "Patient?_has:Observation:patient",
            "_has:Type:reference:parameter",
        ),
        (
            "Task?owner:Task.owner:Task.owner:Task.owner:Task.owner:Task.status=x",
            "at most 3 references deep",
        ),
    ] {
        let response = h.get(path, &t).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            response.body
        );
        let text = diagnostics(&response);
        assert!(text.contains(says), "{path}: {text}");
    }
}

async fn a_chain_matching_too_many_is_refused(h: Harness) {
    let people: Vec<Value> = (0..201)
        .map(|i| {
            json!({"resourceType": "Patient", "id": format!("many-{i}"),
                "name": [{"family": "Mange"}]})
        })
        .collect();
    h.import(people).await.unwrap();
    let response = h
        .get("Observation?patient.name=mange", &h.clinician())
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    let text = diagnostics(&response);
    assert!(text.contains("matches 201 Patient"), "{text}");
    assert!(text.contains("narrower"), "{text}");
}

async fn includes_and_joins_are_bounded(h: Harness) {
    let t = h.clinician();
    // The same include many times is one include.
    let repeated = "&_include=Observation:patient".repeat(50);
    let bundle = ok(&h, &format!("Observation?_id=a-bp-1{repeated}"), &t).await;
    assert_eq!(included(&bundle), ["Patient/pat-a"]);
    // More than ten different ones, or more than four joins, are refused.
    let many: String = [
        "Observation:patient",
        "Observation:subject",
        "Observation:encounter",
        "Observation:patient:Patient",
        "Observation:subject:Patient",
        "Observation:encounter:Encounter",
    ]
    .iter()
    .flat_map(|i| [format!("&_include={i}"), format!("&_include:iterate={i}")])
    .collect();
    let response = h.get(&format!("Observation?_id=a-bp-1{many}"), &t).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    let joins = "&patient.name=a".repeat(5);
    let response = h.get(&format!("Observation?code=x{joins}"), &t).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
}

async fn a_chain_names_no_other_patient_in_a_log(h: Harness) {
    // Two CPR numbers, or one of nobody's: pat-a's log gets the search, without the other
    // number.
    let t = h.clinician();
    let path = format!("Observation?patient.identifier={CPR}|7501504321,{CPR}|6107624322");
    assert!(!h.ids(&path, &t).await.is_empty());
    let path = format!("Observation?patient.identifier={CPR}|7501504321,{CPR}|0000000000");
    assert!(!h.ids(&path, &t).await.is_empty());
    // What a search is not about names someone else too.
    let path = format!("Patient?identifier:not={CPR}|6107624322&family=S%C3%B8rensen");
    assert_eq!(h.ids(&path, &t).await, ["pat-a"]);
    let log = h
        .get("AuditEvent?patient=pat-a&_count=200", &h.citizen("pat-a"))
        .await;
    use base64::Engine;
    let queries: Vec<String> = (log.body["entry"].as_array().unwrap().iter())
        .filter_map(|e| e["resource"]["entity"][1]["query"].as_str())
        .map(|q| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(q).unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert!(
        queries.iter().any(|q| q.contains("patient.identifier")),
        "{queries:?}"
    );
    for query in &queries {
        assert!(
            !query.contains("6107624322") && !query.contains("0000000000"),
            "{query}"
        );
    }
}
