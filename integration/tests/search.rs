//! Every search parameter and date prefix, sorting and paging, through the HTTP API.

mod common;

use common::*;
use healthcloud_integration::query::PageLimits;

on_both_backends!(
    patient_parameters,
    observation_parameters,
    date_prefixes,
    sorting,
    other_types,
    paging_follows_next_links_to_the_last_page,
    post_search_matches_get,
    unsupported_parameters_are_refused,
    result_parameters_shape_what_is_returned,
    more_parameters_of_the_common_types,
    meta_parameters_on_every_type,
    strings_match_as_danish_users_write_them,
    quantities_compare_as_numbers_in_their_unit,
    codes_are_found_by_their_text,
    a_code_and_its_value_are_searched_together,
    numbers_compare_within_their_precision,
);

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn patient_parameters(h: Harness) {
    let t = h.clinician();
    assert_eq!(h.ids("Patient?_id=pat-b", &t).await, ["pat-b"]);
    assert_eq!(
        sorted(h.ids("Patient?_id=pat-a,pat-c", &t).await),
        ["pat-a", "pat-c"]
    );
    assert_eq!(
        h.ids(&format!("Patient?identifier={CPR}|6107624322"), &t)
            .await,
        ["pat-b"]
    );
    assert_eq!(h.ids("Patient?identifier=6107624322", &t).await, ["pat-b"]);
    assert!(
        h.ids("Patient?identifier=urn:other|6107624322", &t)
            .await
            .is_empty()
    );
    assert_eq!(
        sorted(h.ids("Patient?name=hans", &t).await),
        ["pat-b", "pat-c"]
    );
    assert_eq!(
        h.ids("Patient?name=%C3%85SE", &t).await,
        ["pat-a"],
        "case-insensitive, non-ASCII"
    );
    assert_eq!(h.ids("Patient?name=bir", &t).await, ["pat-c"]);
    assert_eq!(
        h.ids("Patient?name:contains=%C3%B8rens", &t).await,
        ["pat-a"]
    );
    assert!(
        h.ids("Patient?name=ansen", &t).await.is_empty(),
        "default is starts-with"
    );
    assert_eq!(
        h.ids("Patient?name=hansen&name=bent", &t).await,
        ["pat-b"],
        "repeated = AND"
    );
    assert_eq!(
        sorted(h.ids("Patient?name=bent,birgit", &t).await),
        ["pat-b", "pat-c"],
        "comma = OR"
    );
    assert_eq!(h.ids("Patient?birthdate=1950-03-15", &t).await, ["pat-a"]);
    assert_eq!(h.ids("Patient?birthdate=1962", &t).await, ["pat-b"]);
    assert_eq!(
        sorted(
            h.ids("Patient?general-practitioner=Organization/gp-2", &t)
                .await
        ),
        ["pat-b", "pat-c"]
    );
    assert_eq!(
        h.ids("Patient?general-practitioner=gp-1", &t).await,
        ["pat-a"]
    );
}

async fn observation_parameters(h: Harness) {
    let t = h.clinician();
    let a_all = [
        "a-bp-1",
        "a-bp-2",
        "a-bp-3",
        "a-bp-4",
        "a-bp-5",
        "a-hba1c-1",
        "a-hba1c-2",
        "a-hr-1",
    ];
    assert_eq!(sorted(h.ids("Observation?patient=pat-a", &t).await), a_all);
    assert_eq!(
        sorted(h.ids("Observation?patient=Patient/pat-a", &t).await),
        a_all
    );
    assert_eq!(
        sorted(h.ids("Observation?subject=Patient/pat-a", &t).await),
        a_all
    );
    assert_eq!(
        sorted(h.ids("Observation?subject:Patient=pat-a", &t).await),
        a_all
    );
    assert_eq!(
        sorted(
            h.ids(
                &format!("Observation?patient=pat-b&code={LOINC}|85354-9"),
                &t
            )
            .await
        ),
        ["b-bp-1", "b-bp-2", "b-bp-3"]
    );
    assert_eq!(
        sorted(
            h.ids("Observation?patient=pat-b&code=85354-9,29463-7", &t)
                .await
        ),
        ["b-bp-1", "b-bp-2", "b-bp-3", "b-weight-1"],
        "code without system, comma = OR"
    );
    assert!(
        h.ids("Observation?code=http://snomed.info/sct|85354-9", &t)
            .await
            .is_empty(),
        "system must match"
    );
    assert_eq!(
        h.ids(&format!("Observation?code={LOINC}|29463-7"), &t)
            .await,
        ["b-weight-1"]
    );
    assert_eq!(
        sorted(
            h.ids(
                &format!("Observation?category={OBS_CATEGORY}|laboratory"),
                &t
            )
            .await
        ),
        ["a-hba1c-1", "a-hba1c-2"]
    );
    assert_eq!(
        sorted(
            h.ids("Observation?category=laboratory&date=ge2024-06", &t)
                .await
        ),
        ["a-hba1c-2"]
    );
    assert_eq!(h.get("Observation", &t).await.body["total"], 12);
}

async fn date_prefixes(h: Harness) {
    let t = h.clinician();
    let q = |date: &str| format!("Observation?patient=pat-a&code=85354-9&{date}");
    assert_eq!(
        h.ids(&q("date=2024-03-01"), &t).await,
        ["a-bp-3"],
        "eq by day"
    );
    assert_eq!(
        h.ids(&q("date=eq2024-03"), &t).await,
        ["a-bp-3"],
        "eq by month"
    );
    assert_eq!(
        h.ids(&q("date=eq2024-03-01T09:00:00Z"), &t).await,
        ["a-bp-3"],
        "eq to the second"
    );
    assert_eq!(
        h.ids(&q("date=eq2024-03-01T10:00:00%2B01:00"), &t).await,
        ["a-bp-3"],
        "time zones compare in UTC"
    );
    assert_eq!(
        sorted(h.ids(&q("date=ne2024-03-01"), &t).await),
        ["a-bp-1", "a-bp-2", "a-bp-4", "a-bp-5"]
    );
    assert_eq!(
        sorted(h.ids(&q("date=gt2024-03-01"), &t).await),
        ["a-bp-4", "a-bp-5"]
    );
    assert_eq!(
        sorted(h.ids(&q("date=ge2024-03-01"), &t).await),
        ["a-bp-3", "a-bp-4", "a-bp-5"]
    );
    assert_eq!(
        sorted(h.ids(&q("date=lt2024-03-01"), &t).await),
        ["a-bp-1", "a-bp-2"]
    );
    assert_eq!(
        sorted(h.ids(&q("date=le2024-03-01"), &t).await),
        ["a-bp-1", "a-bp-2", "a-bp-3"]
    );
    assert_eq!(
        sorted(h.ids(&q("date=ge2024-02&date=lt2024-04"), &t).await),
        ["a-bp-2", "a-bp-3"],
        "repeatable"
    );
    assert!(h.ids(&q("date=2023"), &t).await.is_empty());
    // Starts after, ends before, approximately (a tenth of the distance from now, at least a
    // day: the readings are a month apart, and more than a year ago).
    assert_eq!(
        sorted(h.ids(&q("date=sa2024-03-01"), &t).await),
        ["a-bp-4", "a-bp-5"]
    );
    assert_eq!(
        sorted(h.ids(&q("date=eb2024-03-01"), &t).await),
        ["a-bp-1", "a-bp-2"]
    );
    assert!(
        h.ids(&q("date=ap2024-03-01"), &t)
            .await
            .contains(&"a-bp-3".to_owned())
    );
    assert!(h.ids(&q("date=ap2019-03-01"), &t).await.is_empty());
    // A time without a zone is Copenhagen's: 09:00 there is 08:00 UTC in winter.
    assert!(h.ids(&q("date=eq2024-03-01T09:00"), &t).await.is_empty());
    assert_eq!(
        h.ids(&q("date=2024-03-01T10:00"), &t).await,
        ["a-bp-3"],
        "a minute covers 60 s (10:00 in Copenhagen is 09:00 UTC)"
    );
    // Against a period, ge/le need the period to reach beyond the value or lie within it.
    let visit = |date: &str| format!("Encounter?patient=pat-a&date={date}");
    assert_eq!(h.ids(&visit("ge2024-01-01T10:00"), &t).await, ["a-visit"]);
    assert!(h.ids(&visit("ge2024-01-01T09:30:01Z"), &t).await.is_empty());
    assert_eq!(h.ids(&visit("le2024-01-01T10:00"), &t).await, ["a-visit"]);
    assert!(h.ids(&visit("le2024-01-01T08:00"), &t).await.is_empty());
}

async fn sorting(h: Harness) {
    let t = h.clinician();
    assert_eq!(
        h.ids("Observation?patient=pat-a&code=85354-9&_sort=-date", &t)
            .await,
        ["a-bp-5", "a-bp-4", "a-bp-3", "a-bp-2", "a-bp-1"]
    );
    assert_eq!(
        h.ids(
            "Observation?patient=pat-a&code=85354-9&_sort=date&_count=2",
            &t
        )
        .await,
        ["a-bp-1", "a-bp-2"]
    );
}

async fn other_types(h: Harness) {
    let t = h.clinician();
    assert_eq!(h.ids("Condition?patient=pat-a", &t).await, ["a-htn"]);
    assert_eq!(
        h.ids("Condition?code=http://hl7.org/fhir/sid/icd-10|I10", &t)
            .await,
        ["a-htn"]
    );
    assert_eq!(
        h.ids("Condition?clinical-status=resolved", &t).await,
        ["c-asthma"]
    );
    assert_eq!(
        sorted(h.ids("Condition?clinical-status=active", &t).await),
        ["a-htn", "b-dm2"]
    );
    assert_eq!(
        h.ids(
            "MedicationStatement?patient=pat-a&status=active&code=A10BA02",
            &t
        )
        .await,
        ["a-metformin"]
    );
    assert!(
        h.ids("MedicationStatement?status=stopped", &t)
            .await
            .is_empty()
    );
    assert_eq!(
        h.ids(
            "MedicationRequest?patient=pat-b&status=stopped&code=http://www.whocc.no/atc|C09AA05",
            &t
        )
        .await,
        ["b-ramipril"]
    );
    assert_eq!(
        h.ids("AllergyIntolerance?patient=pat-a&date=2020", &t)
            .await,
        ["a-penicillin"]
    );
    assert_eq!(
        h.ids("Immunization?patient=pat-b&date=ge2023-09", &t).await,
        ["b-flu"]
    );
    assert_eq!(
        h.ids("Encounter?patient=pat-a&date=2024-01-01", &t).await,
        ["a-visit"]
    );
    assert!(h.ids("Encounter?date=2024-01-02", &t).await.is_empty());
    assert_eq!(
        h.ids("Procedure?patient=pat-b&date=lt2023", &t).await,
        ["b-echo"]
    );
    assert_eq!(
        h.ids(
            "DiagnosticReport?patient=pat-a&date=2024-02-10&_sort=-date",
            &t
        )
        .await,
        ["a-labs"]
    );
    assert_eq!(
        h.ids("Organization?identifier=urn:oid:1.2.208.176.1.1|222222", &t)
            .await,
        ["gp-2"]
    );
    assert_eq!(
        h.ids("Organization?name=aarhus", &t).await,
        ["gp-2"],
        "alias"
    );
    assert_eq!(h.ids("Organization?name=l%C3%A6gerne", &t).await, ["gp-1"]);
}

async fn paging_follows_next_links_to_the_last_page(h: Harness) {
    let t = h.clinician();
    let mut url = "Observation?patient=pat-a&_count=3".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = h.get(&url, &t).await;
        assert_eq!(page.body["total"], 8);
        seen.extend(ids(&page.body));
        pages += 1;
        let links = page.body["link"].as_array().unwrap();
        let self_link = links.iter().find(|l| l["relation"] == "self").unwrap()["url"]
            .as_str()
            .unwrap();
        assert!(
            self_link.starts_with(&format!("{BASE}/Observation?")),
            "{self_link}"
        );
        match links.iter().find(|l| l["relation"] == "next") {
            Some(next) => {
                let next = next["url"].as_str().unwrap();
                assert!(
                    next.starts_with(BASE),
                    "next links are absolute on the base URL: {next}"
                );
                assert!(
                    next.contains("patient=pat-a"),
                    "next keeps the filters: {next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    assert_eq!(
        sorted(seen.clone()).len(),
        {
            let mut d = seen.clone();
            d.sort();
            d.dedup();
            d.len()
        },
        "no duplicates"
    );
}

async fn result_parameters_shape_what_is_returned(h: Harness) {
    let t = h.clinician();
    // `_summary=count` (and fhirpy's `count()`: `_count=0&_totalMethod=count`): how many, none
    // of them.
    for path in [
        "Observation?patient=pat-a&_summary=count",
        "Observation?patient=pat-a&_count=0&_totalMethod=count",
    ] {
        let counted = h.get(path, &t).await;
        assert_eq!(counted.status, 200, "{path}: {}", counted.body);
        assert_eq!(counted.body["total"], 8, "{path}");
        assert!(counted.body.get("entry").is_none(), "{path}");
    }
    // `_total=none`: no total, and paging still says where the next page is.
    let page = h
        .get("Observation?patient=pat-a&_count=3&_total=none", &t)
        .await;
    assert!(page.body.get("total").is_none(), "{}", page.body);
    assert_eq!(ids(&page.body).len(), 3);
    let next = page.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next link");
    assert!(
        next["url"].as_str().unwrap().contains("_total=none"),
        "{next}"
    );
    // `_elements`: the elements named and the mandatory ones, tagged as a subset.
    let page = h
        .get("Observation?patient=pat-a&_elements=subject&_count=1", &t)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let observation = &page.body["entry"][0]["resource"];
    let mut properties: Vec<&str> = observation
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    properties.sort();
    assert_eq!(
        properties,
        ["code", "id", "meta", "resourceType", "status", "subject"]
    );
    assert_eq!(observation["meta"]["tag"][0]["code"], "SUBSETTED");
    // `_summary=true` on a Patient keeps its summary elements (name, identifier), not others.
    let page = h.get("Patient?_id=pat-a&_summary=true", &t).await;
    let patient = &page.body["entry"][0]["resource"];
    assert_eq!(patient["name"][0]["family"], "Sørensen");
    assert!(patient.get("generalPractitioner").is_none(), "{patient}");
    // Counting stays within what the caller may see: a citizen counts their own record.
    let citizen = h.citizen("pat-b");
    let own = h
        .get("Observation?_summary=count&_total=accurate", &citizen)
        .await;
    assert_eq!(
        own.body["total"],
        h.get("Observation?patient=pat-b&_count=0", &t).await.body["total"],
        "a citizen's count is of their own record"
    );
    // `_pretty=true`: the same Bundle, indented.
    let request = axum::http::Request::builder()
        .uri("/fhir/r4/Patient?_id=pat-a&_pretty=true")
        .header("authorization", format!("Bearer {t}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(h.app.clone(), request)
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("\n  \"resourceType\": \"Bundle\""), "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["entry"][0]["resource"]["id"],
        "pat-a"
    );
}

async fn more_parameters_of_the_common_types(h: Harness) {
    let t = h.clinician();
    let d = serde_json::json!({"reference": "Patient/pat-d"});
    h.import(vec![
        serde_json::json!({"resourceType": "Patient", "id": "pat-d", "gender": "female",
            "name": [{"family": "Østergaard", "given": ["Dorte"]}],
            "address": [{"line": ["Nørregade 1"], "city": "Odense C", "postalCode": "5000"}]}),
        serde_json::json!({"resourceType": "Encounter", "id": "d-visit", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": d}),
        serde_json::json!({"resourceType": "Condition", "id": "d-copd", "subject": d,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"text": "COPD"}, "onsetDateTime": "2021-03-01",
            "encounter": {"reference": "Encounter/d-visit"}}),
        serde_json::json!({"resourceType": "Observation", "id": "d-spo2", "status": "amended",
            "code": {"coding": [{"system": LOINC, "code": "59408-5"}]}, "subject": d,
            "encounter": {"reference": "Encounter/d-visit"}}),
    ])
    .await
    .unwrap();
    for (search, expected) in [
        ("Patient?gender=female", vec!["pat-d"]),
        ("Patient?family=%C3%B8ster&given=dorte", vec!["pat-d"]),
        ("Patient?address=odense", vec!["pat-d"]),
        ("Patient?address=n%C3%B8rregade", vec!["pat-d"]),
        (
            "Patient?address-postalcode=5000&address-city=odense",
            vec!["pat-d"],
        ),
        ("Observation?status=amended", vec!["d-spo2"]),
        ("Observation?encounter=Encounter/d-visit", vec!["d-spo2"]),
        (
            "Condition?category=problem-list-item&onset-date=ge2021",
            vec!["d-copd"],
        ),
        ("Condition?encounter=d-visit&onset-date=lt2021", vec![]),
        ("Encounter?class=AMB&status=finished", vec!["a-visit"]),
        ("Encounter?class=IMP", vec!["d-visit"]),
        (
            "MedicationRequest?intent=order&status=stopped",
            vec!["b-ramipril"],
        ),
        (
            "DiagnosticReport?result=Observation/a-hba1c-1",
            vec!["a-labs"],
        ),
        ("DiagnosticReport?code=24323-8&status=final", vec!["a-labs"]),
    ] {
        assert_eq!(sorted(h.ids(search, &t).await), expected, "{search}");
    }
    // combo-code finds an observation by its own code or a component's: pat-a's blood
    // pressures by their systolic component.
    let by_component = h
        .ids(
            "Observation?patient=pat-a&combo-code=http://loinc.org|8480-6",
            &t,
        )
        .await;
    let pressures = h.ids("Observation?patient=pat-a&code=85354-9", &t).await;
    assert!(!pressures.is_empty());
    assert_eq!(sorted(by_component), sorted(pressures));
}

async fn post_search_matches_get(h: Harness) {
    let t = h.clinician();
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/fhir/r4/Observation/_search?patient=pat-b")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("code=85354-9&_sort=-date"))
        .unwrap();
    let response = h.send(request).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), ["b-bp-3", "b-bp-2", "b-bp-1"]);
}

async fn unsupported_parameters_are_refused(h: Harness) {
    let t = h.clinician();
    for path in [
        "Observation?colour=red",
        "Observation?value-quantity:text=pressure",
        "Observation?date=xy2024",
        "Observation?date=yesterday",
        "Observation?_elements=colour",
        "Observation?_summary=true&_elements=status",
        "Observation?_total=some",
        "Observation?_sort=code",
        "Patient?_sort=date",
        "Observation?patient=Organization/gp-1",
        "Patient?_count=-5",
        "Patient?_count=1&_count=2",
    ] {
        let response = h.get(path, &t).await;
        assert_eq!(response.status, 400, "{path}: {}", response.body);
        assert!(!diagnostics(&response).is_empty());
    }
    let response = h.get("Observation?colour=red", &t).await;
    assert!(
        diagnostics(&response).contains("unsupported search parameter 'colour'"),
        "{}",
        response.body
    );
    assert_eq!(
        h.get("Coverage?patient=x", &t).await.status,
        404,
        "unserved type"
    );
}

#[tokio::test]
async fn page_size_is_clamped_to_the_maximum() {
    let h = Harness::with_limits(
        Backend::Sqlite,
        PageLimits {
            default_count: 2,
            max_count: 3,
        },
    )
    .await
    .unwrap();
    let t = h.clinician();
    let page = h.get("Observation?_count=1000", &t).await;
    assert_eq!(ids(&page.body).len(), 3);
    let next = page.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap();
    assert!(next["url"].as_str().unwrap().contains("_count=3"));
    assert_eq!(
        ids(&h.get("Observation", &t).await.body).len(),
        2,
        "default page size"
    );
}

async fn meta_parameters_on_every_type(h: Harness) {
    let t = h.clinician();
    let tagged = serde_json::json!({"resourceType": "Condition", "id": "a-tagged",
        "meta": {"tag": [{"system": "urn:test:tags", "code": "reviewed"}],
                 "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                 "profile": ["http://hl7.dk/fhir/core/StructureDefinition/dk-core-condition"]},
        "subject": {"reference": "Patient/pat-a"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}});
    let before = h.ids("Condition?_lastUpdated=gt2000-01-01", &t).await.len();
    h.import(vec![tagged]).await.unwrap();
    assert_eq!(
        h.ids("Condition?_tag=urn:test:tags|reviewed", &t).await,
        ["a-tagged"]
    );
    assert_eq!(h.ids("Condition?_security=R", &t).await, ["a-tagged"]);
    assert_eq!(
        h.ids(
            "Condition?_profile=http://hl7.dk/fhir/core/StructureDefinition/dk-core-condition",
            &t
        )
        .await,
        ["a-tagged"]
    );
    // Everything was written here after 2000; nothing after next year.
    assert_eq!(
        h.ids("Condition?_lastUpdated=gt2000-01-01", &t).await.len(),
        before + 1
    );
    let next_year = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse::<i32>()
        .unwrap()
        + 1;
    assert!(
        h.ids(&format!("Condition?_lastUpdated=ge{next_year}"), &t)
            .await
            .is_empty()
    );
}

async fn strings_match_as_danish_users_write_them(h: Harness) {
    let t = h.clinician();
    // pat-a is Åse Sørensen.
    for query in [
        "family=S%C3%B8rensen",
        "family=sorensen",
        "family=SOERENSEN",
        "given=aase",
        "given=%C3%A5se",
        "name=ase",
        "name:contains=rens",
    ] {
        assert_eq!(
            h.ids(&format!("Patient?{query}"), &t).await,
            ["pat-a"],
            "{query}"
        );
    }
    // :exact is the text as written.
    assert_eq!(
        h.ids("Patient?family:exact=S%C3%B8rensen", &t).await,
        ["pat-a"]
    );
    for query in [
        "family:exact=s%C3%B8rensen",
        "family:exact=Sorensen",
        "family:exact=S%C3%B8ren",
    ] {
        assert!(
            h.ids(&format!("Patient?{query}"), &t).await.is_empty(),
            "{query}"
        );
    }
    // :not: everything of the patient's but blood pressures, a resource without a code too.
    let mut others = h
        .ids(
            "Observation?patient=pat-a&code:not=http://loinc.org|85354-9",
            &t,
        )
        .await;
    others.sort();
    assert_eq!(others, ["a-hba1c-1", "a-hba1c-2", "a-hr-1"]);
    let response = h.get("Observation?status:not=x&_count=1", &t).await;
    assert_eq!(response.status, 200, "{}", response.body);
}

async fn quantities_compare_as_numbers_in_their_unit(h: Harness) {
    let t = h.clinician();
    let reading = |id: &str, value: f64, code: &str| {
        serde_json::json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "15074-8"}]},
            "subject": {"reference": "Patient/pat-c"},
            "valueQuantity": {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}})
    };
    h.import(vec![
        reading("glucose-1", 5.4, "mmol/L"),
        reading("glucose-2", 7.5, "mmol/L"),
        reading("glucose-3", 11.2, "mmol/L"),
        reading("glucose-4", 135.0, "mg/dL"),
    ])
    .await
    .unwrap();
    let q = |value: &str| format!("Observation?patient=pat-c&value-quantity={value}");
    for (value, expected) in [
        ("7.5", vec!["glucose-2"]),
        // 7 means 6.5 up to 7.5: not 7.5 itself.
        ("7", vec![]),
        ("gt7.5", vec!["glucose-3", "glucose-4"]),
        ("ge7.5", vec!["glucose-2", "glucose-3", "glucose-4"]),
        ("lt7.5", vec!["glucose-1"]),
        (
            "ge7|http://unitsofmeasure.org|mmol/L",
            vec!["glucose-2", "glucose-3"],
        ),
        ("ge7||mg/dL", vec!["glucose-4"]),
        ("ap11", vec!["glucose-3"]),
        ("ne5.4", vec!["glucose-2", "glucose-3", "glucose-4"]),
    ] {
        assert_eq!(sorted(h.ids(&q(value), &t).await), expected, "{value}");
    }
    // Blood pressure components: a systolic of 140 in the fixture's readings.
    assert!(
        h.ids(
            "Observation?patient=pat-a&component-value-quantity=ge140",
            &t
        )
        .await
        .contains(&"a-bp-1".to_owned())
    );
    for bad in [
        "value-quantity=high",
        "value-quantity=xx7",
        "value-quantity=1e3",
    ] {
        let response = h.get(&format!("Observation?{bad}"), &t).await;
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
    }
}

async fn codes_are_found_by_their_text(h: Harness) {
    let t = h.clinician();
    let condition = |id: &str, text: Option<&str>, display: &str| {
        let mut code = serde_json::json!({"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": display}]});
        if let Some(text) = text {
            code["text"] = text.into();
        }
        serde_json::json!({"resourceType": "Condition", "id": id, "code": code,
            "subject": {"reference": "Patient/pat-c"}})
    };
    h.import(vec![
        condition(
            "c-htn-da",
            Some("Forhøjet blodtryk"),
            "Hypertensive disorder",
        ),
        condition("c-htn-en", None, "Hypertensive disorder, systemic arterial"),
        // A code that is only text.
        serde_json::json!({"resourceType": "Condition", "id": "c-apnoea",
            "code": {"text": "Mistænkt søvnapnø"}, "subject": {"reference": "Patient/pat-c"}}),
    ])
    .await
    .unwrap();
    let q = |value: &str| format!("Condition?patient=pat-c&code:text={value}");
    for (value, expected) in [
        // Any word's start, case and accents aside, Danish letters as Danes write them.
        ("blodtryk", vec!["c-htn-da"]),
        ("forhojet", vec!["c-htn-da"]),
        ("FORHOEJET", vec!["c-htn-da"]),
        ("hypertens", vec!["c-htn-da", "c-htn-en"]),
        ("systemic", vec!["c-htn-en"]),
        ("arterial,blodtryk", vec!["c-htn-da", "c-htn-en"]),
        ("sovnapno", vec!["c-apnoea"]),
        ("SØVNAPNØ", vec!["c-apnoea"]),
        // Not the middle of a word, and not the code itself.
        ("ertensive", vec![]),
        ("38341003", vec![]),
    ] {
        assert_eq!(sorted(h.ids(&q(value), &t).await), expected, "{value}");
    }
    // Only tokens have a text.
    let response = h.get("Patient?name:text=hans", &t).await;
    assert_eq!(response.status, 400, "{}", response.body);
}

async fn a_code_and_its_value_are_searched_together(h: Harness) {
    let t = h.clinician();
    let bp = |id: &str, systolic: f64, diastolic: f64| {
        let part = |code: &str, value: f64| {
            serde_json::json!({"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
        };
        serde_json::json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": "Patient/pat-c"}, "effectiveDateTime": "2025-01-01T08:00:00Z",
            "component": [part("8480-6", systolic), part("8462-4", diastolic)]})
    };
    let glucose = serde_json::json!({"resourceType": "Observation", "id": "c-glucose", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "15074-8"}]},
        "subject": {"reference": "Patient/pat-c"},
        "valueQuantity": {"value": 9.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
    h.import(vec![
        bp("c-bp-high", 185.0, 95.0),
        bp("c-bp-diastolic", 150.0, 115.0),
        bp("c-bp-normal", 120.0, 80.0),
        glucose,
        // A code with a space in it does not pass for the one after the space.
        serde_json::json!({"resourceType": "Observation", "id": "c-forged", "status": "final",
            "code": {"coding": [{"system": "x", "code": "y http://loinc.org|8480-6"}]},
            "subject": {"reference": "Patient/pat-c"},
            "valueQuantity": {"value": 999, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}),
    ])
    .await
    .unwrap();
    let q = |param: &str, value: &str| format!("Observation?patient=pat-c&{param}={value}");
    let composite = "component-code-value-quantity";
    for (param, value, expected) in [
        // Any part at or above 110: every reading, by its systolic part.
        (
            "component-value-quantity",
            "ge110",
            vec!["c-bp-diastolic", "c-bp-high", "c-bp-normal"],
        ),
        // The diastolic part at or above 110: only the reading whose diastolic is.
        (
            composite,
            "http://loinc.org|8462-4$ge110",
            vec!["c-bp-diastolic"],
        ),
        (
            composite,
            "http://loinc.org|8480-6$ge180",
            vec!["c-bp-high"],
        ),
        // At or above 180/110: either part (commas OR).
        (
            composite,
            "http://loinc.org|8480-6$ge180,http://loinc.org|8462-4$ge110",
            vec!["c-bp-diastolic", "c-bp-high"],
        ),
        (composite, "8480-6$lt130", vec!["c-bp-normal"]),
        (
            "code-value-quantity",
            "http://loinc.org|8480-6$ge180",
            vec![],
        ),
        // Codes compare as written, case and all.
        (composite, "http://LOINC.org|8480-6$lt130", vec![]),
        (composite, "http://other|8480-6$lt130", vec![]),
        (
            "code-value-quantity",
            "http://loinc.org|15074-8$gt7",
            vec!["c-glucose"],
        ),
        (
            "code-value-quantity",
            "http://loinc.org|15074-8$lt7",
            vec![],
        ),
        ("code-value-quantity", "http://loinc.org|8480-6$gt7", vec![]),
    ] {
        assert_eq!(
            sorted(h.ids(&q(param, value), &t).await),
            expected,
            "{param}={value}"
        );
    }
    for bad in [
        "http://loinc.org|8480-6",
        "http://loinc.org|8480-6$ge180|http://unitsofmeasure.org|mm[Hg]",
        "$ge180",
        "http://loinc.org|8480-6$high",
    ] {
        let response = h.get(&q(composite, bad), &t).await;
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
    }
}

async fn numbers_compare_within_their_precision(h: Harness) {
    let t = h.clinician();
    let risk = |id: &str, probability: f64| {
        serde_json::json!({"resourceType": "RiskAssessment", "id": id, "status": "final",
            "subject": {"reference": "Patient/pat-c"},
            "prediction": [{"outcome": {"text": "Stroke within 10 years"}, "probabilityDecimal": probability}]})
    };
    h.import(vec![risk("c-risk-low", 0.05), risk("c-risk-high", 0.31)])
        .await
        .unwrap();
    let q = |value: &str| format!("RiskAssessment?patient=pat-c&probability={value}");
    for (value, expected) in [
        ("ge0.2", vec!["c-risk-high"]),
        ("lt0.2", vec!["c-risk-low"]),
        // 0.3 means 0.25 up to 0.35; 0.30 means 0.295 up to 0.305.
        ("0.3", vec!["c-risk-high"]),
        ("0.30", vec![]),
        ("0.05", vec!["c-risk-low"]),
    ] {
        assert_eq!(sorted(h.ids(&q(value), &t).await), expected, "{value}");
    }
    for bad in ["0.3|http://unitsofmeasure.org|%", "likely", "xx0.3"] {
        let response = h.get(&q(bad), &t).await;
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
    }
    // A patient's risk assessments are in their compartment: the citizen sees only their own.
    let citizen = h.citizen("pat-a");
    assert!(h.ids("RiskAssessment", &citizen).await.is_empty());
}
