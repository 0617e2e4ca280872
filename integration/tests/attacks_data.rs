//! Attacks on what data means: planting data in another patient's search results through
//! identifiers inside references, slipping unallowed values past a restricted write, and
//! passing patient- or app-written data off as a source system's.

mod common;

use common::*;
use healthcloud_integration::FhirError;
use healthcloud_integration::import::Importer;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_platform::scope::Scope;
use serde_json::{Value, json};

on_both_backends!(
    planting_via_a_subject_identifier_stays_out_of_the_other_patients_results,
    planting_via_a_general_practitioner_identifier_stays_out_of_the_gps_list,
    a_login_named_like_a_practitioner_is_not_listed_as_that_practitioner,
    a_multi_category_write_under_a_vital_signs_scope_is_refused,
    a_multi_category_write_through_an_app_grant_is_refused,
    a_forged_meta_source_is_replaced_by_the_writer,
    app_and_patient_writes_carry_the_writer_stamp,
);

const HBA1C: &str = "59261-8";
const LAB: &str = "laboratory";

fn observation(patient_reference: Value, categories: &[&str], code: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": categories.iter().map(|c| json!({"coding": [{"system": OBS_CATEGORY, "code": c}]})).collect::<Vec<_>>(),
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": patient_reference,
        "effectiveDateTime": "2024-06-01T07:30:00+02:00",
        "valueQuantity": {"value": 48, "unit": "mmol/mol"}
    })
}

fn citizen_with(h: &Harness, patient: &str, scope: &str) -> String {
    h.token(Role::Citizen, Some(patient), Some(scope))
}

/// The Observation ids of pat-a's laboratory results, as a clinician sees them.
async fn lab_results(h: &Harness, patient: &str) -> Vec<String> {
    let mut ids = h
        .ids(
            &format!("Observation?patient={patient}&category={LAB}&_count=200"),
            &h.clinician(),
        )
        .await;
    ids.sort();
    ids
}

async fn planting_via_a_subject_identifier_stays_out_of_the_other_patients_results(h: Harness) {
    let attacker = h.citizen("pat-a");
    let mut planted = Vec::new();
    for identifier in [
        json!({"value": "pat-b"}),
        json!({"system": CPR, "value": "6107624322"}),
    ] {
        let body = observation(
            json!({"reference": "Patient/pat-a", "identifier": identifier}),
            &["vital-signs"],
            "85354-9",
        );
        let created = h
            .request("POST", "Observation", Some(&attacker), Some(body))
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        planted.push(created.body["id"].as_str().unwrap().to_owned());
    }

    let clinician = h.clinician();
    for search in [
        "Observation?subject=pat-b",
        "Observation?subject=Patient/pat-b",
        "Observation?subject:Patient=pat-b",
        "Observation?patient=pat-b",
        "Observation?subject=6107624322",
        "Observation?patient=6107624322",
    ] {
        let found = h.ids(search, &clinician).await;
        assert!(
            planted.iter().all(|p| !found.contains(p)),
            "{search} returned data planted by pat-a: {found:?}"
        );
        if search.contains("pat-b") {
            assert!(found.contains(&"b-bp-1".to_owned()), "{search}: {found:?}");
        }
    }

    // An identifier inside a reference is found only by asking for it, with its system; what
    // comes back says whose record it is in.
    let refused = h
        .get("Observation?subject:identifier=pat-b", &clinician)
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        diagnostics(&refused).contains("with its system"),
        "{}",
        refused.body
    );
    let refused = h
        .get(&format!("Observation?subject={CPR}|6107624322"), &clinician)
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        diagnostics(&refused).contains("subject:identifier=system|value"),
        "{}",
        refused.body
    );
    let by_identifier = h
        .get(
            &format!("Observation?subject:identifier={CPR}|6107624322"),
            &clinician,
        )
        .await;
    assert_eq!(common::ids(&by_identifier.body), [planted[1].clone()]);
    assert_eq!(
        by_identifier.body["entry"][0]["resource"]["subject"]["reference"],
        "Patient/pat-a"
    );
}

async fn planting_via_a_general_practitioner_identifier_stays_out_of_the_gps_list(h: Harness) {
    let mut importer = Importer::new(&h.store);
    importer
        .add(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
            "resourceType": "Patient", "id": "pat-planted",
            "generalPractitioner": [{"reference": "Organization/gp-1",
                "identifier": {"system": "urn:oid:1.2.208.176.1.1", "value": "gp-2"}}]}}]}),
        )
        .await
        .unwrap();
    importer.finish().await.unwrap();
    let clinician = h.clinician();
    for search in [
        "Patient?general-practitioner=gp-2",
        "Patient?general-practitioner=Organization/gp-2",
    ] {
        let mut found = h.ids(search, &clinician).await;
        found.sort();
        assert_eq!(found, ["pat-b", "pat-c"], "{search}");
    }
    assert_eq!(
        h.ids("Patient?general-practitioner=gp-1", &clinician).await,
        ["pat-a", "pat-planted"]
    );
    assert_eq!(
        h.ids(
            "Patient?general-practitioner:identifier=urn:oid:1.2.208.176.1.1|gp-2",
            &clinician
        )
        .await,
        ["pat-planted"]
    );
}

async fn a_login_named_like_a_practitioner_is_not_listed_as_that_practitioner(h: Harness) {
    let mint = |sub: &str, fhir_user: Option<&str>, org: &str| {
        h.issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    sub: Some(sub.into()),
                    fhir_user: fhir_user.map(str::to_owned),
                    org: Some(org.into()),
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let impostor = mint("dr-x", None, "gp-1");
    let doctor = mint("login-of-dr-x", Some("Practitioner/dr-x"), "gp-2");
    assert_eq!(h.get("Observation/a-hba1c-1", &impostor).await.status, 200);
    assert_eq!(h.get("Observation/a-bp-1", &doctor).await.status, 200);

    let citizen = h.citizen("pat-a");
    for search in [
        "AuditEvent?patient=pat-a&agent=dr-x",
        "AuditEvent?patient=pat-a&agent=Practitioner/dr-x",
    ] {
        let log = h.get(search, &citizen).await;
        assert_eq!(log.status, 200, "{search}: {}", log.body);
        let agents: Vec<&Value> = log.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"]["agent"][0]["who"])
            .collect();
        assert!(!agents.is_empty(), "{search}: the doctor's read is listed");
        assert!(
            agents
                .iter()
                .all(|who| who["reference"] == "Practitioner/dr-x"),
            "{search} lists someone else as Dr X: {agents:?}"
        );
    }
    let by_login = h
        .get(
            "AuditEvent?patient=pat-a&agent:identifier=urn:healthcloud:user|dr-x",
            &citizen,
        )
        .await;
    let entries = by_login.body["entry"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries
            .iter()
            .all(|e| e["resource"]["agent"][0]["who"]["reference"].is_null())
    );
}

async fn a_multi_category_write_under_a_vital_signs_scope_is_refused(h: Harness) {
    let before = lab_results(&h, "pat-a").await;
    let writer = citizen_with(
        &h,
        "pat-a",
        "patient/*.rs patient/Observation.c?category=vital-signs",
    );
    let subject = json!({"reference": "Patient/pat-a"});
    let two_categories = observation(subject.clone(), &["vital-signs", LAB], HBA1C);
    let mut two_codings = observation(subject.clone(), &["vital-signs"], HBA1C);
    two_codings["category"][0]["coding"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": OBS_CATEGORY, "code": LAB}));
    for body in [two_categories, two_codings] {
        let response = h
            .request("POST", "Observation", Some(&writer), Some(body.clone()))
            .await;
        assert_eq!(response.status, 403, "{body}: {}", response.body);
        let message = diagnostics(&response);
        assert!(message.contains("every value"), "{message}");
    }
    assert_eq!(
        lab_results(&h, "pat-a").await,
        before,
        "nothing was written"
    );
    let hba1c = h
        .ids(
            &format!("Observation?patient=pat-a&code={HBA1C}&_count=200"),
            &h.clinician(),
        )
        .await;
    assert_eq!(hba1c.len(), 2, "{hba1c:?}");

    // What the scope allows is still written.
    let allowed = h
        .request(
            "POST",
            "Observation",
            Some(&writer),
            Some(observation(subject, &["vital-signs"], "85354-9")),
        )
        .await;
    assert_eq!(allowed.status, 201, "{}", allowed.body);
}

async fn a_multi_category_write_through_an_app_grant_is_refused(h: Harness) {
    let before = lab_results(&h, "pat-a").await;
    let context = app_context(&h, "patient/Observation.c?category=vital-signs");
    let body = observation(
        json!({"reference": "Patient/pat-a"}),
        &["vital-signs", LAB],
        HBA1C,
    );
    let err = h
        .service
        .create(&context, "Observation", body)
        .await
        .unwrap_err();
    assert!(matches!(err, FhirError::Forbidden(_)), "{err}");
    assert!(err.to_string().contains("every value"), "{err}");
    assert_eq!(
        lab_results(&h, "pat-a").await,
        before,
        "nothing was written"
    );
}

async fn a_forged_meta_source_is_replaced_by_the_writer(h: Harness) {
    let lab_system = "https://lab.rigshospitalet.example/fhir";
    let citizen = h.citizen("pat-a");
    let mut body = observation(json!({"reference": "Patient/pat-a"}), &[LAB], HBA1C);
    body["meta"] = json!({"source": lab_system});
    let created = h
        .request("POST", "Observation", Some(&citizen), Some(body))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let stamp = "urn:healthcloud:written:user:citizen:citizen-user";
    assert_eq!(created.body["meta"]["source"], stamp);
    let id = created.body["id"].as_str().unwrap();

    let clinician = h.clinician();
    let read = h.get(&format!("Observation/{id}"), &clinician).await;
    assert_eq!(read.body["meta"]["source"], stamp);
    assert!(
        !read.body.to_string().contains(lab_system),
        "the forged source is gone"
    );
    for search in [
        format!("Observation?_source={lab_system}"),
        format!("Observation?_source:below={lab_system}"),
    ] {
        assert!(h.ids(&search, &clinician).await.is_empty(), "{search}");
    }
    assert_eq!(
        h.ids(&format!("Observation?_source={stamp}"), &clinician)
            .await,
        [id]
    );
}

async fn app_and_patient_writes_carry_the_writer_stamp(h: Harness) {
    let citizen = h.citizen("pat-a");
    let by_patient = h
        .request(
            "POST",
            "Observation",
            Some(&citizen),
            Some(observation(
                json!({"reference": "Patient/pat-a"}),
                &[LAB],
                HBA1C,
            )),
        )
        .await;
    assert_eq!(by_patient.status, 201, "{}", by_patient.body);
    let by_patient_id = by_patient.body["id"].as_str().unwrap().to_owned();

    let context = app_context(&h, "patient/Observation.c");
    let by_app = h
        .service
        .create(
            &context,
            "Observation",
            observation(json!({"reference": "Patient/pat-a"}), &[LAB], HBA1C),
        )
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&by_app.content).unwrap();
    assert_eq!(
        stored["meta"]["source"],
        "urn:healthcloud:written:app:examples.bp-monitor:citizen:citizen-user"
    );

    // Lab-looking results: the clinician tells the source system's from the written ones.
    let clinician = h.clinician();
    let mut written = h
        .ids(
            &format!(
                "Observation?patient=pat-a&category={LAB}&_source:below=urn:healthcloud:written"
            ),
            &clinician,
        )
        .await;
    written.sort();
    let mut expected = vec![by_patient_id.clone(), by_app.id.clone()];
    expected.sort();
    assert_eq!(written, expected);
    assert_eq!(
        h.ids(
            "Observation?_source:below=urn:healthcloud:written:app",
            &clinician
        )
        .await,
        [by_app.id.as_str()]
    );
    assert_eq!(
        h.ids(
            "Observation?_source:below=urn:healthcloud:written:user:citizen",
            &clinician
        )
        .await,
        [by_patient_id]
    );
    assert_eq!(
        h.ids(
            &format!("Observation?patient=pat-a&category={LAB}&_source:missing=true"),
            &clinician
        )
        .await,
        ["a-hba1c-1", "a-hba1c-2"],
        "the source system's results, without what was written through the platform"
    );
    let imported = h.get("Observation/a-hba1c-1", &clinician).await;
    assert!(
        imported.body["meta"]["source"].is_null(),
        "{}",
        imported.body
    );

    // A consent the citizen updates is restamped with the updater.
    let consent = h.opt_out(&citizen, "pat-a", "Organization/gp-2", &[]).await;
    assert_eq!(
        consent.body["meta"]["source"],
        "urn:healthcloud:written:user:citizen:citizen-user"
    );
}

/// The bp-monitor app acting for pat-a's citizen, granted `grant`.
fn app_context(h: &Harness, grant: &str) -> AccessContext {
    let principal = h.issuer.verifier().verify(&h.citizen("pat-a")).unwrap();
    AccessContext {
        principal,
        app: Some(AppIdentity {
            id: "examples/bp-monitor".into(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            publisher_key: "key".into(),
            region: "hovedstaden".into(),
        }),
        grant: Some(Scope::parse_list(grant).unwrap()),
        purpose: None,
    }
}

/// Index rows written before identifiers in references were kept apart are reshaped when the
/// database is opened: the planted identifier no longer matches a search by id, and is found
/// by `:identifier` with its system; an imported `meta.source` becomes searchable.
async fn old_index_rows_are_reshaped_on_open(url: String, backend: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mut first = match backend {
        "sqlite" => sqlx::migrate!("./migrations/sqlite"),
        _ => sqlx::migrate!("./migrations/postgres"),
    };
    first.migrations = first
        .migrations
        .iter()
        .filter(|m| m.version == 1)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    first.run(&pool).await.unwrap();
    let planted = json!({"resourceType": "Observation", "id": "planted", "status": "final",
        "meta": {"source": "https://lab.example/fhir"}, "code": {"text": "x"},
        "subject": {"reference": "Patient/pat-a", "identifier": {"system": CPR, "value": "pat-b"}}});
    sqlx::query("INSERT INTO resources (resource_type, id, version_id, last_updated, patient_id, sort_date, content) VALUES ('Observation', 'planted', 1, 0, 'pat-a', NULL, $1)")
        .bind(planted.to_string())
        .execute(&pool)
        .await
        .unwrap();
    // As the old code indexed it: the identifier's value, without its system, under the
    // reference parameters themselves.
    for (param, system, value) in [
        ("patient", "Patient", "pat-a"),
        ("subject", "Patient", "pat-a"),
        ("patient", "", "pat-b"),
        ("subject", "", "pat-b"),
    ] {
        sqlx::query("INSERT INTO search_token (resource_type, resource_id, param, system, value) VALUES ('Observation', 'planted', $1, $2, $3)")
            .bind(param)
            .bind(system)
            .bind(value)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = EmbeddedStore::new(healthcloud_integration::open_database(&url).await.unwrap());
    let service = healthcloud_integration::FhirService::new(store, PageLimits::default());
    let issuer =
        healthcloud_platform::auth::TokenIssuer::generate("t").with_audience(vec![BASE.into()]);
    let clinician = TokenRequest {
        org: Some("gp-1".into()),
        fhir_user: Some("Practitioner/dr-test".into()),
        ..Default::default()
    };
    let token = issuer.mint(Role::Clinician, clinician).unwrap();
    let context = AccessContext::user(issuer.verifier().verify(&token).unwrap());
    let search = |name: &str, value: &str| {
        let params = vec![(name.to_owned(), value.to_owned())];
        let service = service.clone();
        let context = context.clone();
        async move {
            let (_, page) = service
                .search_params(&context, "Observation", &params)
                .await
                .unwrap();
            page.resources.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert!(search("subject", "pat-b").await.is_empty());
    assert_eq!(search("subject", "pat-a").await, ["planted"]);
    assert_eq!(
        search("subject:identifier", &format!("{CPR}|pat-b")).await,
        ["planted"]
    );
    assert_eq!(
        search("_source", "https://lab.example/fhir").await,
        ["planted"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_index_rows_are_reshaped_on_open_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    old_index_rows_are_reshaped_on_open(url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_index_rows_are_reshaped_on_open_postgres() {
    if let Some(url) = healthcloud_platform::testing::postgres_database("hc_test").await {
        old_index_rows_are_reshaped_on_open(url, "postgres").await;
    }
}
