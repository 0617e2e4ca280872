//! The REST surface: create, update, error bodies, metadata, and Bundle import.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use healthcloud_integration::import::Importer;
use healthcloud_integration::query::{PageLimits, SearchQuery};
use serde_json::{Value, json};

on_both_backends!(
    create_assigns_id_version_and_location,
    invalid_requests_get_operation_outcomes,
    metadata_describes_the_server,
    transaction_bundles_resolve_references,
    a_bad_bundle_keeps_nothing,
    repeated_ids_and_relative_references,
    reads_honour_result_parameters_and_formats_other_than_json_are_not_acceptable,
    writes_answer_as_preferred,
    a_current_copy_is_answered_304,
    earlier_versions_are_kept_and_a_deletion_answers_410,
    a_version_filed_under_another_patient_is_not_this_resources,
    history_is_served_in_pages,
);

fn measurement(patient: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": "client-chosen", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-06-02T07:00:00+02:00",
        "valueQuantity": {"value": 81.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

async fn create_assigns_id_version_and_location(h: Harness) {
    let citizen = h.citizen("pat-c");
    let created = h
        .request(
            "POST",
            "Observation",
            Some(&citizen),
            Some(measurement("pat-c")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen", "the server assigns ids");
    assert_eq!(created.body["meta"]["versionId"], "1");
    assert!(
        created.body["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let location = created.headers.get("location").unwrap().to_str().unwrap();
    assert_eq!(location, format!("{BASE}/Observation/{id}/_history/1"));
    assert_eq!(created.headers.get("etag").unwrap(), "W/\"1\"");

    let read = h.get(&format!("Observation/{id}"), &h.clinician()).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);
    let at_location = h.get(location, &h.clinician()).await;
    assert_eq!(
        (at_location.status, &at_location.body),
        (axum::http::StatusCode::OK, &created.body)
    );
    assert_eq!(
        h.get(&format!("Observation/{id}/_history/2"), &h.clinician())
            .await
            .status,
        404
    );
    assert_eq!(
        h.ids("Observation?patient=pat-c&code=29463-7", &citizen)
            .await,
        [id]
    );

    // application/json is accepted as well as application/fhir+json.
    let plain = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/fhir/r4/Observation")
                .header("authorization", format!("Bearer {citizen}"))
                .header("content-type", "application/json; charset=utf-8")
                .body(Body::from(measurement("pat-c").to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(plain.status, 201);
    assert_eq!(
        h.request(
            "POST",
            "Patient",
            Some(&citizen),
            Some(json!({"resourceType": "Patient"}))
        )
        .await
        .status,
        405
    );
}

async fn invalid_requests_get_operation_outcomes(h: Harness) {
    let citizen = h.citizen("pat-c");
    let mut bad = measurement("pat-c");
    bad["effectiveDateTime"] = json!("tomorrow-ish");
    let response = h
        .request("POST", "Observation", Some(&citizen), Some(bad))
        .await;
    assert_eq!(response.status, 422);
    assert_eq!(
        response.body["issue"][0]["expression"][0],
        "Observation.effectiveDateTime"
    );

    let mut no_status = measurement("pat-c");
    no_status.as_object_mut().unwrap().remove("status");
    let response = h
        .request("POST", "Observation", Some(&citizen), Some(no_status))
        .await;
    assert_eq!(response.status, 422);
    assert!(diagnostics(&response).starts_with("Observation.status"));

    let wrong_type = h
        .request(
            "POST",
            "Observation",
            Some(&citizen),
            Some(json!({"resourceType": "Condition"})),
        )
        .await;
    assert_eq!(wrong_type.status, 422);

    let send = |content_type: &str, body: Body| {
        Request::builder()
            .method("POST")
            .uri("/fhir/r4/Observation")
            .header("authorization", format!("Bearer {citizen}"))
            .header("content-type", content_type)
            .body(body)
            .unwrap()
    };
    let not_json = h
        .send(send(
            "application/fhir+json",
            Body::from("{\"resourceType\": "),
        ))
        .await;
    assert_eq!(not_json.status, 400);
    assert!(diagnostics(&not_json).contains("not valid JSON"));
    let xml = h
        .send(send("application/fhir+xml", Body::from("<Observation/>")))
        .await;
    assert_eq!(xml.status, 400);
    let huge = format!(
        "{{\"resourceType\": \"Observation\", \"note\": [{{\"text\": \"{}\"}}]}}",
        "x".repeat(100_000)
    );
    let too_large = h
        .send(send("application/fhir+json", Body::from(huge)))
        .await;
    assert_eq!(too_large.status, 413);
    assert!(diagnostics(&too_large).contains("larger than the limit"));

    let missing = h.get("Observation/does-not-exist", &citizen).await;
    assert_eq!(missing.status, 404);
    diagnostics(&missing);
    assert_eq!(
        h.get("Observation/..%2F..%2Fetc", &citizen).await.status,
        404
    );
    let no_route = h.get("Observation/a/b/c", &citizen).await;
    assert_eq!(no_route.status, 404);
    diagnostics(&no_route);
    let not_allowed = h
        .request("POST", "Observation/a-bp-1", Some(&citizen), None)
        .await;
    assert_eq!(not_allowed.status, 405);
    diagnostics(&not_allowed);
    let no_update = h
        .request(
            "PUT",
            "AuditEvent/a-bp-1",
            Some(&h.clinician()),
            Some(measurement("pat-a")),
        )
        .await;
    assert_eq!(no_update.status, 405, "{}", no_update.body);
    assert!(diagnostics(&no_update).contains("update is not supported for AuditEvent"));
}

async fn metadata_describes_the_server(h: Harness) {
    let response = h.request("GET", "metadata", None, None).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers["content-type"],
        "application/fhir+json; charset=utf-8"
    );
    let cs = response.body;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(
        cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let find = |t: &str| {
        resources
            .iter()
            .find(|r| r["type"] == t)
            .unwrap_or_else(|| panic!("{t} missing"))
    };
    let names = |r: &Value| {
        r["searchParam"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let interactions = |r: &Value| {
        r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(find("Observation")),
        [
            "_id",
            "patient",
            "subject",
            "code",
            "category",
            "date",
            "identifier",
            "status",
            "encounter",
            "component-code",
            "combo-code",
            "value-quantity",
            "component-value-quantity",
            "code-value-quantity",
            "component-code-value-quantity",
            "_source",
            "_lastUpdated",
            "_tag",
            "_security",
            "_profile"
        ]
    );
    assert_eq!(find("Observation")["conditionalCreate"], true);
    assert_eq!(find("Patient")["conditionalCreate"], false);
    let writable = [
        "read",
        "vread",
        "history-instance",
        "search-type",
        "create",
        "update",
        "patch",
        "delete",
        "history-type",
    ];
    assert_eq!(interactions(find("Observation")), writable);
    assert_eq!(find("Observation")["conditionalDelete"], "single");
    assert_eq!(find("Patient")["conditionalUpdate"], false);
    // What _include and _revinclude accept, per type.
    assert!(
        find("Observation")["searchInclude"]
            .as_array()
            .unwrap()
            .contains(&json!("Observation:patient"))
    );
    assert!(
        find("Patient")["searchRevInclude"]
            .as_array()
            .unwrap()
            .contains(&json!("Observation:patient"))
    );
    assert_eq!(
        interactions(find("Patient")),
        [
            "read",
            "vread",
            "history-instance",
            "search-type",
            "history-type"
        ]
    );
    assert_eq!(interactions(find("Consent")), writable);
    assert_eq!(
        names(find("AuditEvent")),
        [
            "_id",
            "patient",
            "date",
            "agent",
            "_source",
            "_lastUpdated",
            "_tag",
            "_security",
            "_profile"
        ]
    );
    assert_eq!(resources.len(), 39);
    // Subscriptions name the topics a client may subscribe to.
    let subscription = (resources.iter())
        .find(|r| r["type"] == "Subscription")
        .unwrap();
    let topics: Vec<&str> = (subscription["extension"].as_array().unwrap().iter())
        .filter_map(|e| e["valueCanonical"].as_str())
        .collect();
    assert!(topics.contains(&"https://healthcloud.example/fhir/SubscriptionTopic/new-observation"));
    // Each parameter names its definition in R4, but a Binary's place in a record (this
    // server's own).
    for resource in resources {
        for param in resource["searchParam"].as_array().into_iter().flatten() {
            if resource["type"] == "Binary" && param["name"] == "patient" {
                assert!(param.get("definition").is_none());
                continue;
            }
            let definition = param["definition"].as_str().unwrap_or_default();
            assert!(
                definition.starts_with("http://hl7.org/fhir/SearchParameter/"),
                "{}: {param}",
                resource["type"]
            );
        }
    }

    // Every advertised parameter is accepted by the search parser, and nothing else is.
    for resource in resources {
        let t = resource["type"].as_str().unwrap();
        for name in names(resource) {
            let value = match resource["searchParam"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name.as_str())
                .unwrap()["type"]
                .as_str()
                .unwrap()
            {
                "date" => "2024",
                "quantity" | "number" => "ge7.5",
                "composite" => "http://loinc.org|8480-6$ge180",
                // A bare id: whatever type the parameter refers to.
                _ => "x",
            };
            SearchQuery::parse(t, &[(name.clone(), value.into())], PageLimits::default())
                .unwrap_or_else(|e| panic!("{t}?{name}={value}: {e}"));
        }
    }

    let smart = h
        .request("GET", ".well-known/smart-configuration", None, None)
        .await;
    assert_eq!(smart.status, 200);
    assert!(
        smart.body["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("permission-v2"))
    );
}

async fn transaction_bundles_resolve_references(h: Harness) {
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
             "resource": {"resourceType": "Patient", "identifier": [{"system": CPR, "value": "6502904325"}], "name": [{"family": "Synthea", "given": ["Sam"]}], "birthDate": "1990-02-05",
                          "managingOrganization": {"reference": "Organization?identifier=urn:oid:1.2.208.176.1.1|111111"}},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                          "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}, "effectiveDateTime": "2024-01-01T00:00:00Z",
                          "valueQuantity": {"value": 61, "unit": "/min"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
             "resource": {"resourceType": "Claim", "status": "active", "use": "claim", "created": "2024-01-01",
                          "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
                          "priority": {"coding": [{"code": "normal"}]}, "provider": {"reference": "Organization?identifier=urn:oid:1.2.208.176.1.1|111111"},
                          "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "Public"}}],
                          "patient": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
             "request": {"method": "POST", "url": "Claim"}},
            {"fullUrl": "urn:uuid:44444444-4444-4444-8444-444444444444",
             "resource": {"resourceType": "Organization", "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "111111"}], "name": "duplicate of gp-1"},
             "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=urn:oid:1.2.208.176.1.1|111111"}}
        ]
    });
    let mut importer = Importer::new(&h.store);
    importer.add(bundle).await.unwrap();
    let report = importer.finish().await.unwrap();
    assert_eq!(
        report.resources(),
        3,
        "the conditional create matched gp-1 and was skipped"
    );
    assert_eq!(report.by_type.get("Claim"), Some(&1));

    let t = h.clinician();
    let patients = h
        .get(&format!("Patient?identifier={CPR}|6502904325"), &t)
        .await;
    let patient = &patients.body["entry"][0]["resource"];
    let id = patient["id"].as_str().unwrap();
    assert_eq!(
        patient["managingOrganization"]["reference"],
        "Organization/gp-1"
    );
    let obs = h.get(&format!("Observation?patient={id}"), &t).await;
    assert_eq!(obs.body["total"], 1);
    assert_eq!(
        obs.body["entry"][0]["resource"]["subject"]["reference"],
        format!("Patient/{id}")
    );
    assert_eq!(
        h.get("Organization?name=duplicate", &t).await.body["total"],
        0
    );
}

async fn a_bad_bundle_keeps_nothing(h: Harness) {
    let t = h.clinician();
    let before = h.get("Observation", &t).await.body["total"].clone();
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "ok"}, "subject": {"reference": "Patient/pat-a"}}, "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "bad"}, "subject": {"reference": "Patient/pat-a"},
                "component": [{"code": {"text": "s"}, "valueQuantity": {"value": "high"}}]}, "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let mut importer = Importer::new(&h.store);
    let err = importer.add(bundle).await.unwrap_err();
    assert_eq!(err.status(), 422);
    assert!(
        err.to_string()
            .starts_with("Bundle.entry[1].resource.component[0].valueQuantity.value"),
        "{err}"
    );
    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:missing"}}, "request": {"method": "POST", "url": "Observation"}}]});
    let err = importer.add(dangling).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Bundle.entry[0].resource.subject.reference"),
        "{err}"
    );
    assert_eq!(importer.finish().await.unwrap().resources(), 0);
    assert_eq!(h.get("Observation", &t).await.body["total"], before);
}

async fn repeated_ids_and_relative_references(h: Harness) {
    let patient = |id: &str, family: &str| json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
    let collection = |resources: Vec<Value>| {
        json!({"resourceType": "Bundle", "type": "collection",
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
    };
    let mut importer = Importer::new(&h.store);
    let twice = collection(vec![patient("p-dup", "One"), patient("p-dup", "Two")]);
    let err = importer.add(twice).await.unwrap_err();
    assert!(
        err.to_string().starts_with("Bundle.entry[1].resource.id"),
        "{err}"
    );
    // Across Bundles of one import the later one wins, like two PUTs in a row.
    importer
        .add(collection(vec![patient("p-again", "Earlier")]))
        .await
        .unwrap();
    importer
        .add(collection(vec![patient("p-again", "Later")]))
        .await
        .unwrap();
    // A relative reference resolves against an entry's absolute fullUrl, even when POST
    // gives the entry a new id.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "http://example.org/fhir/Patient/p9", "resource": {"resourceType": "Patient", "name": [{"family": "Relative"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "http://example.org/fhir/Observation/o9", "resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "weight"}, "subject": {"reference": "Patient/p9"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    importer.add(transaction).await.unwrap();
    importer.finish().await.unwrap();

    let t = h.clinician();
    let again = h.get("Patient/p-again", &t).await;
    assert_eq!(again.body["name"][0]["family"], "Later");
    assert_eq!(
        h.get("Patient/p-dup", &t).await.status,
        404,
        "the refused Bundle left nothing"
    );
    let relative = h.get("Patient?name=relative", &t).await;
    let id = relative.body["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "p9");
    assert_eq!(
        h.get(&format!("Observation?patient={id}"), &t).await.body["total"],
        1
    );
}

async fn reads_honour_result_parameters_and_formats_other_than_json_are_not_acceptable(h: Harness) {
    let t = h.clinician();
    let with_accept = |path: &str, accept: &str| {
        Request::builder()
            .uri(format!("/fhir/r4/{path}"))
            .header("authorization", format!("Bearer {t}"))
            .header("accept", accept)
            .body(Body::empty())
            .unwrap()
    };
    for accept in [
        "application/fhir+xml",
        "application/xml, text/turtle",
        "application/fhir+json;q=0, application/fhir+xml",
    ] {
        for path in ["Patient/pat-a", "Patient?_id=pat-a", "metadata"] {
            let refused = h.send(with_accept(path, accept)).await;
            assert_eq!(refused.status, 406, "{path} {accept}: {}", refused.body);
            assert!(
                diagnostics(&refused).contains("FHIR JSON only"),
                "{}",
                refused.body
            );
        }
    }
    for accept in [
        "application/fhir+json",
        "application/json",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ] {
        let read = h.send(with_accept("Patient/pat-a", accept)).await;
        assert_eq!(read.status, 200, "{accept}: {}", read.body);
    }
    assert_eq!(h.get("Patient/pat-a?_format=xml", &t).await.status, 406);
    assert_eq!(
        h.get("metadata?_format=application/fhir%2Bxml", &t)
            .await
            .status,
        406
    );
    let put = h
        .request("PUT", "Consent/x?_format=xml", Some(&t), Some(json!({})))
        .await;
    assert_eq!(put.status, 406, "{}", put.body);
    // Two Accept lines: JSON in either is enough; `Q=0` refuses as `q=0` does.
    let two_lines = Request::builder()
        .uri("/fhir/r4/Patient/pat-a")
        .header("authorization", format!("Bearer {t}"))
        .header("accept", "application/fhir+xml")
        .header("accept", "application/fhir+json")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(two_lines).await.status, 200);
    let refused = h
        .send(with_accept("Patient/pat-a", "application/fhir+json; Q=0"))
        .await;
    assert_eq!(refused.status, 406);
    // A subset read back cannot be written: it lacks what was left out.
    let citizen = h.citizen("pat-c");
    let mut subset = measurement("pat-c");
    subset["meta"] = json!({"tag": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}]});
    let written = h
        .request("POST", "Observation", Some(&citizen), Some(subset))
        .await;
    assert_eq!(written.status, 422, "{}", written.body);
    assert!(
        diagnostics(&written).contains("SUBSETTED"),
        "{}",
        written.body
    );
    let read = h.get("Patient/pat-a?_format=json", &t).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"][0]["family"], "Sørensen");
    // `_format` overrides `Accept`, both ways.
    let overridden = (h.send(with_accept(
        "Patient/pat-a?_format=json",
        "application/fhir+xml",
    )))
    .await;
    assert_eq!(overridden.status, 200, "{}", overridden.body);
    let overridden = (h.send(with_accept(
        "Patient/pat-a?_format=xml",
        "application/fhir+json",
    )))
    .await;
    assert_eq!(overridden.status, 406, "{}", overridden.body);
    // `_elements` and `_summary` on a read: a subset, tagged.
    let subset = h.get("Patient/pat-a?_elements=birthDate", &t).await;
    assert_eq!(subset.status, 200, "{}", subset.body);
    assert_eq!(subset.body["birthDate"], "1950-03-15");
    assert!(subset.body.get("name").is_none(), "{}", subset.body);
    assert_eq!(subset.body["meta"]["tag"][0]["code"], "SUBSETTED");
    let at_version = h.get("Patient/pat-a/_history/1?_summary=true", &t).await;
    assert_eq!(at_version.status, 200, "{}", at_version.body);
    assert!(at_version.body.get("generalPractitioner").is_none());
    for (path, fix) in [
        ("Patient/pat-a?name=x", "a read takes no parameter 'name'"),
        ("Patient/pat-a?_summary=count", "not a read"),
        (
            "Patient/pat-a?_total=none",
            "a read takes no parameter '_total'",
        ),
        (
            "Patient/pat-a?_elements=colour",
            "not an element of Patient",
        ),
    ] {
        let refused = h.get(path, &t).await;
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert!(diagnostics(&refused).contains(fix), "{}", refused.body);
    }
}

async fn writes_answer_as_preferred(h: Harness) {
    let citizen = h.citizen("pat-c");
    let post = |prefer: &str| {
        Request::builder()
            .method("POST")
            .uri("/fhir/r4/Observation")
            .header("authorization", format!("Bearer {citizen}"))
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(Body::from(measurement("pat-c").to_string()))
            .unwrap()
    };
    let minimal = h.send(post("return=minimal")).await;
    assert_eq!(minimal.status, 201);
    assert_eq!(minimal.body, Value::Null, "no body");
    assert_eq!(minimal.headers["preference-applied"], "return=minimal");
    let location = minimal.headers["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("/_history/1"), "{location}");
    assert_eq!(minimal.headers["etag"], "W/\"1\"");
    let created = h.get(&location, &h.clinician()).await;
    assert_eq!(created.status, 200, "what was created is there");

    let outcome = h
        .send(post("handling=strict, return=OperationOutcome"))
        .await;
    assert_eq!(outcome.status, 201);
    assert_eq!(outcome.body["resourceType"], "OperationOutcome");
    assert!(
        diagnostics(&outcome).starts_with("created Observation/"),
        "{}",
        outcome.body
    );
    let representation = h.send(post("return=representation")).await;
    assert_eq!(representation.body["resourceType"], "Observation");
    assert_eq!(
        representation.headers["preference-applied"],
        "return=representation"
    );
    let refused = h.send(post("return=everything")).await;
    assert_eq!(refused.status, 400);
    assert!(
        diagnostics(&refused).contains("not one of minimal"),
        "{}",
        refused.body
    );
    assert_eq!(
        h.ids("Observation?patient=pat-c&code=29463-7", &h.clinician())
            .await
            .len(),
        3,
        "the refused one was not created"
    );
}

async fn a_current_copy_is_answered_304(h: Harness) {
    let citizen = h.citizen("pat-c");
    let created = h
        .request(
            "POST",
            "Observation",
            Some(&citizen),
            Some(measurement("pat-c")),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let read = h.get(&format!("Observation/{id}"), &citizen).await;
    assert_eq!(
        read.headers["cache-control"], "no-store",
        "patient data is not cached"
    );
    let modified = read.headers["last-modified"].to_str().unwrap().to_owned();
    assert!(modified.ends_with(" GMT"), "{modified}");
    let conditional = |name: &str, value: &str| {
        Request::builder()
            .uri(format!("/fhir/r4/Observation/{id}"))
            .header("authorization", format!("Bearer {citizen}"))
            .header(name, value)
            .body(Body::empty())
            .unwrap()
    };
    // A copy from the same second may predate a change within it: only a later one counts.
    let later =
        chrono::DateTime::parse_from_rfc2822(&modified).unwrap() + chrono::Duration::seconds(1);
    let later = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    for (name, value) in [
        ("if-none-match", "W/\"1\""),
        ("if-none-match", "W/\"7\", W/\"1\""),
        ("if-modified-since", later.as_str()),
    ] {
        let answer = h.send(conditional(name, value)).await;
        assert_eq!(answer.status, 304, "{name}: {value}");
        assert_eq!(answer.body, Value::Null);
        assert_eq!(answer.headers["etag"], "W/\"1\"");
    }
    for (name, value) in [
        ("if-none-match", "W/\"2\""),
        ("if-modified-since", modified.as_str()),
        ("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT"),
    ] {
        let answer = h.send(conditional(name, value)).await;
        assert_eq!(answer.status, 200, "{name}: {value}");
        assert_eq!(answer.body["id"], id.as_str());
    }
    // A 304 is a read like any other: refused to whoever may not read it.
    let other = h.citizen("pat-a");
    let probe = Request::builder()
        .uri(format!("/fhir/r4/Observation/{id}"))
        .header("authorization", format!("Bearer {other}"))
        .header("if-none-match", "*")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(probe).await.status, 404);
}

async fn earlier_versions_are_kept_and_a_deletion_answers_410(h: Harness) {
    let citizen = h.citizen("pat-a");
    let created = h.opt_out(&citizen, "pat-a", "Organization/gp-2", &[]).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let mut withdrawn = created.body.clone();
    withdrawn["status"] = json!("inactive");
    let updated = h
        .request(
            "PUT",
            &format!("Consent/{id}"),
            Some(&citizen),
            Some(withdrawn),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    // Who opted out of what, and when it was lifted: both versions are there.
    let first = h.get(&format!("Consent/{id}/_history/1"), &citizen).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "active");
    assert_eq!(first.headers["etag"], "W/\"1\"");
    let history = h.get(&format!("Consent/{id}/_history"), &citizen).await;
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.body["type"], "history");
    let entries = history.body["entry"].as_array().unwrap();
    let described: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["request"]["method"].as_str().unwrap(),
                e["resource"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(described, [("PUT", "inactive"), ("POST", "active")]);
    // Another patient cannot read them, a version or the list: not theirs to know of.
    let other = h.citizen("pat-b");
    for path in [
        format!("Consent/{id}/_history/1"),
        format!("Consent/{id}/_history"),
    ] {
        assert_eq!(h.get(&path, &other).await.status, 404, "{path}");
    }
    assert_eq!(
        h.get(&format!("Consent/{id}/_history/7"), &citizen)
            .await
            .status,
        404
    );
    // Deleted, it is gone (410) for its patient, and still nothing at all for anyone else.
    let deleted = h
        .request("DELETE", &format!("Consent/{id}"), Some(&citizen), None)
        .await;
    assert_eq!(deleted.status, 204);
    let gone = h.get(&format!("Consent/{id}"), &citizen).await;
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert!(diagnostics(&gone).contains("was deleted"), "{}", gone.body);
    assert_eq!(h.get(&format!("Consent/{id}"), &other).await.status, 404);
    // Its story stays readable to its patient, and only to them.
    let story = h.get(&format!("Consent/{id}/_history"), &citizen).await;
    assert_eq!(story.status, 200, "{}", story.body);
    let first_entry = &story.body["entry"][0];
    assert_eq!(first_entry["request"]["method"], "DELETE");
    assert!(first_entry.get("resource").is_none());
    assert_eq!(story.body["total"], 3);
    let opted_out = h.get(&format!("Consent/{id}/_history/1"), &citizen).await;
    assert_eq!(opted_out.body["status"], "active", "{}", opted_out.body);
    for path in [
        format!("Consent/{id}/_history"),
        format!("Consent/{id}/_history/1"),
    ] {
        assert_eq!(h.get(&path, &other).await.status, 404, "{path}");
    }
    let deletion = h.get(&format!("Consent/{id}/_history/3"), &citizen).await;
    assert_eq!(deletion.status, 410);
    // Imported again after its deletion, its versions go on from the deletion, and an update
    // of it keeps the re-imported version as well.
    let mut again = created.body.clone();
    again["meta"] = json!({});
    h.import(vec![again]).await.unwrap();
    let back = h.get(&format!("Consent/{id}"), &citizen).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["meta"]["versionId"], "4");
    let mut lifted = back.body.clone();
    lifted["status"] = json!("inactive");
    let updated = h
        .request(
            "PUT",
            &format!("Consent/{id}"),
            Some(&citizen),
            Some(lifted),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let history = h.get(&format!("Consent/{id}/_history"), &citizen).await;
    let methods: Vec<&str> = history.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["PUT", "PUT", "DELETE", "PUT", "POST"]);
    // A re-import keeps the version it replaces too.
    let mut organization = json!({"resourceType": "Organization", "id": "gp-9", "name": "Før"});
    h.import(vec![organization.clone()]).await.unwrap();
    organization["name"] = json!("Efter");
    h.import(vec![organization]).await.unwrap();
    let t = h.clinician();
    assert_eq!(h.get("Organization/gp-9", &t).await.body["name"], "Efter");
    let before = h.get("Organization/gp-9/_history/1", &t).await;
    assert_eq!(before.body["name"], "Før", "{}", before.body);
}

async fn a_version_filed_under_another_patient_is_not_this_resources(h: Harness) {
    // Re-imported under another patient (a correction at the source): the earlier version is
    // pat-a's data, whose consent and log the read of pat-b's resource would bypass.
    let mut moved = measurement("pat-a");
    moved["id"] = json!("moved");
    h.import(vec![moved.clone()]).await.unwrap();
    moved["subject"] = json!({"reference": "Patient/pat-b"});
    h.import(vec![moved]).await.unwrap();
    let t = h.clinician();
    let now = h.get("Observation/moved", &t).await;
    assert_eq!(now.body["subject"]["reference"], "Patient/pat-b");
    let before = h.get("Observation/moved/_history/1", &t).await;
    assert_eq!(before.status, 404, "{}", before.body);
    let history = h.get("Observation/moved/_history", &t).await;
    let listed: Vec<&Value> = history.body["entry"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "{}", history.body);
    assert_eq!(
        listed[0]["resource"]["subject"]["reference"],
        "Patient/pat-b"
    );
}

async fn history_is_served_in_pages(h: Harness) {
    let citizen = h.citizen("pat-a");
    let created = h.opt_out(&citizen, "pat-a", "Organization/gp-2", &[]).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let mut consent = created.body.clone();
    for status in ["inactive", "active", "inactive"] {
        consent["status"] = json!(status);
        let updated = h
            .request(
                "PUT",
                &format!("Consent/{id}"),
                Some(&citizen),
                Some(consent.clone()),
            )
            .await;
        assert_eq!(updated.status, 200, "{}", updated.body);
        consent = updated.body;
    }
    let mut url = format!("Consent/{id}/_history?_count=3");
    let mut versions = Vec::new();
    loop {
        let page = h.get(&url, &citizen).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body["total"], 4);
        for entry in page.body["entry"].as_array().unwrap() {
            versions.push(
                entry["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let links = page.body["link"].as_array().unwrap();
        match links.iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(versions, ["4", "3", "2", "1"]);
    let refused = h
        .get(&format!("Consent/{id}/_history?_since=2024"), &citizen)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
}
