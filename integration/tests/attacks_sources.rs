//! Attacks on the federated reads and searches, from the attacker's side: a patient or an app
//! confined to one patient reaching for another's data through a source, a clinician a
//! patient opted out, a hostile or careless source (other patients' resources, crafted ids and
//! references, duplicate records and entries, forged origins, `next` links, included entries),
//! a caller probing which sources hold a patient or trying to get a source skipped for
//! everyone, and paging tricks. Every source is a real HTTP server on loopback.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::routing::get;
use common::sources::{RecordingSource, patient, searchset};
use common::{Backend, Harness, LOINC, OBS_CATEGORY, diagnostics};
use healthcloud_integration::FhirError;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::sources::SourceSettings;
use healthcloud_integration::upstream::UpstreamConfig;
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_platform::scope::Scope;
use serde_json::{Value, json};

/// pat-a's and pat-b's CPR numbers in the harness's fixture.
const PAT_A_CPR: &str = "7501504321";
const PAT_B_CPR: &str = "6107624322";
const BP: &str = "85354-9";

fn observation(id: &str, subject: &str, date: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": BP}]},
        "subject": {"reference": subject},
        "effectiveDateTime": date})
}

/// A source on loopback: it declares Patients searchable by identifier, Observations by
/// patient, code, category and `_source`, and Consents and AuditEvents by patient, answers
/// with `routes`, and records every request it gets.
async fn source(routes: Router) -> RecordingSource {
    let declared = json!([
        {"type": "Patient", "searchParam": [{"name": "identifier"}]},
        {"type": "Observation", "searchParam": [{"name": "patient"}, {"name": "code"}, {"name": "category"}, {"name": "_source"}]},
        {"type": "Consent", "searchParam": [{"name": "patient"}]},
        {"type": "AuditEvent", "searchParam": [{"name": "patient"}]}
    ]);
    RecordingSource::start(declared, routes).await
}

/// Patient routes of an honest patient registry: a search by `identifier=system|value` finds
/// the patients carrying it, a read finds one by id.
fn patients(records: Vec<Value>) -> Router {
    registry(Arc::new(Mutex::new(records)))
}

/// [`patients`] over records the test can change while the source runs.
fn registry(records: Arc<Mutex<Vec<Value>>>) -> Router {
    let by_id = records.clone();
    Router::new()
        .route(
            "/fhir/Patient",
            get(move |RawQuery(query): RawQuery| {
                let records = records.lock().unwrap().clone();
                async move {
                    let wanted: Vec<String> =
                        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                            .filter(|(name, _)| name == "identifier")
                            .map(|(_, value)| value.into_owned())
                            .collect();
                    let found = records
                        .into_iter()
                        .filter(|record| {
                            wanted.iter().all(|wanted| {
                                let (system, value) = wanted.split_once('|').unwrap();
                                record["identifier"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .any(|i| i["system"] == system && i["value"] == value)
                            })
                        })
                        .collect();
                    axum::Json(searchset(found))
                }
            }),
        )
        .route(
            "/fhir/Patient/{id}",
            get(move |Path(id): Path<String>| {
                let found = (by_id.lock().unwrap().iter())
                    .find(|r| r["id"] == id.as_str())
                    .cloned();
                async move {
                    use axum::response::IntoResponse;
                    match found {
                        Some(resource) => axum::Json(resource).into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
}

/// A route at `path` (with an `{id}` segment) reading `records` by id: 404 for any other id.
fn reads(path: &str, records: Vec<Value>) -> Router {
    Router::new().route(
        path,
        get(move |Path(id): Path<String>| {
            let found = records.iter().find(|r| r["id"] == id.as_str()).cloned();
            async move {
                use axum::response::IntoResponse;
                match found {
                    Some(resource) => axum::Json(resource).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    )
}

/// Observation routes of a careless source: every search answers `bundle` whatever it asks,
/// reads find `records` by id.
fn observations(bundle: Value, records: Vec<Value>) -> Router {
    Router::new()
        .route(
            "/fhir/Observation",
            get(move || {
                let bundle = bundle.clone();
                async move { axum::Json(bundle) }
            }),
        )
        .merge(reads("/fhir/Observation/{id}", records))
}

/// The home harness (pat-a, pat-b, pat-c) with `source` registered as `src`.
/// A source holding pat-a (as `s-a`) whose searches answer `readings` and whose reads find
/// them.
async fn holding_pat_a(readings: Vec<Value>) -> RecordingSource {
    source(
        patients(vec![patient("s-a", PAT_A_CPR)])
            .merge(observations(searchset(readings.clone()), readings)),
    )
    .await
}

async fn home_with(source: &RecordingSource) -> Harness {
    let home = Harness::new(Backend::Sqlite).await.unwrap();
    add(&home, "src", source);
    home
}

fn add(home: &Harness, name: &str, source: &RecordingSource) {
    home.service
        .sources()
        .add(SourceSettings {
            upstream: UpstreamConfig::new(name, source.base.clone()),
            organization: None,
            types: None,
        })
        .unwrap();
}

/// The ids of a searchset's matches, in order, and its outcome entry's issues.
fn matches_and_issues(bundle: &Value) -> (Vec<String>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut issues = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        match entry["search"]["mode"].as_str() {
            Some("outcome") => {
                issues.extend(entry["resource"]["issue"].as_array().unwrap().clone())
            }
            _ => ids.push(entry["resource"]["id"].as_str().unwrap().to_owned()),
        }
    }
    (ids, issues)
}

async fn search(home: &Harness, path: &str, token: &str) -> (Vec<String>, Vec<Value>, Value) {
    let response = home.get(path, token).await;
    assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
    let (ids, issues) = matches_and_issues(&response.body);
    (ids, issues, response.body)
}

async fn withheld_log(home: &Harness) -> String {
    let log = home.service.security_log().recent(100, None).await.unwrap();
    (log.iter())
        .filter(|entry| entry.kind == "source-withheld")
        .map(|entry| entry.reason.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

// --- references that point elsewhere ---------------------------------------------------------

/// A source that writes its own references with its public URL (which is not the base
/// healthcloud reaches it at), or points at another organization's server: `Patient/pat-b`
/// at the end of such a URL is somebody at that server, not healthcloud's pat-b.
#[tokio::test]
async fn a_patient_named_by_a_url_elsewhere_lands_in_no_healthcloud_patients_record() {
    let elsewhere_a = observation(
        "elsewhere-a",
        "https://gp.example/fhir/Patient/pat-a",
        "2026-01-02",
    );
    let elsewhere_b = observation(
        "elsewhere-b",
        "https://other-region.example/fhir/Patient/pat-b",
        "2026-01-03",
    );
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)]).merge(observations(
            searchset(vec![mine.clone(), elsewhere_a.clone(), elsewhere_b.clone()]),
            vec![mine, elsewhere_a, elsewhere_b],
        )),
    )
    .await;
    let home = home_with(&source).await;

    // pat-a's search: the source (ignoring the patient parameter) sends a reading of its
    // patient whose URL ends in "pat-a": not pat-a's, so not returned.
    let citizen_a = home.citizen("pat-a");
    let (ids, _, _) = search(&home, "Observation?_count=100", &citizen_a).await;
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
    assert!(!ids.contains(&"src.elsewhere-a".to_owned()), "{ids:?}");
    assert!(
        withheld_log(&home)
            .await
            .contains("Observation/elsewhere-a"),
        "the source's mistake is logged"
    );

    // pat-b reads, by id, the reading of a patient at another server whose URL ends in
    // "pat-b": it is not theirs to see.
    let citizen_b = home.citizen("pat-b");
    let read = home.get("Observation/src.elsewhere-b", &citizen_b).await;
    assert_ne!(read.status, StatusCode::OK, "{}", read.body);
    assert!(
        !read.body.to_string().contains("other-region"),
        "{}",
        read.body
    );
    // Nor pat-a the one ending in "pat-a".
    let read = home.get("Observation/src.elsewhere-a", &citizen_a).await;
    assert_ne!(read.status, StatusCode::OK, "{}", read.body);
}

/// A source's reference to `Patient/<a healthcloud id>` names the source's own patient of that
/// id: it is renamed into the source's namespace and reaches no healthcloud patient.
#[tokio::test]
async fn a_source_naming_a_home_patient_id_directly_plants_nothing_in_their_record() {
    let planted = observation("planted", "Patient/pat-b", "2026-01-05");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)]).merge(observations(
            searchset(vec![planted.clone()]),
            vec![planted],
        )),
    )
    .await;
    let home = home_with(&source).await;
    let citizen_b = home.citizen("pat-b");
    let read = home.get("Observation/src.planted", &citizen_b).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.body);
    let clinician = home.clinician();
    let read = home.get("Observation/src.planted", &clinician).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["subject"]["reference"], "Patient/src.pat-b");
    // In pat-a's search it is another patient's, withheld.
    let (ids, _, _) = search(&home, "Observation", &home.citizen("pat-a")).await;
    assert!(!ids.contains(&"src.planted".to_owned()), "{ids:?}");
    let (ids, _, _) = search(&home, "Observation?patient=pat-b", &clinician).await;
    assert!(!ids.contains(&"src.planted".to_owned()), "{ids:?}");
}

// --- the patient's own record at a source -----------------------------------------------------

/// The source's Patient record is the patient's data (name, CPR number): a clinician the
/// patient opted out cannot read it through healthcloud, the patient can, others cannot.
#[tokio::test]
async fn an_opted_out_clinician_cannot_read_the_patients_record_at_a_source() {
    let mut record = patient("s-a", PAT_A_CPR);
    record["name"] = json!([{"family": "Sørensen", "given": ["Åse"]}]);
    let source = source(patients(vec![record])).await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let opted = home
        .opt_out(&citizen_a, "pat-a", "Organization/clinic-x", &[])
        .await;
    assert_eq!(opted.status, StatusCode::CREATED, "{}", opted.body);

    let opted_out = home.clinician_of("clinic-x");
    let read = home.get("Patient/src.s-a", &opted_out).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.body);
    assert!(!read.body.to_string().contains(PAT_A_CPR), "{}", read.body);
    // The same as the home record.
    let home_record = home.get("Patient/pat-a", &opted_out).await;
    assert_eq!(home_record.status, StatusCode::FORBIDDEN);

    // Someone else's token: as if it did not exist.
    let other = home.get("Patient/src.s-a", &home.citizen("pat-b")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
    // The patient reads their own record at the source.
    let own = home.get("Patient/src.s-a", &citizen_a).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["meta"]["source"], "urn:healthcloud:source:src");

    // Both reads are in pat-a's log: the refused one and their own.
    let log = home
        .get("AuditEvent?patient=pat-a&_count=100", &citizen_a)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let outcomes: Vec<&Value> = (log.body["entry"].as_array().unwrap().iter())
        .map(|entry| &entry["resource"])
        .filter(|event| event.to_string().contains("Patient/src.s-a"))
        .map(|event| &event["outcome"])
        .collect();
    assert_eq!(outcomes.len(), 2, "{}", log.body);
    assert!(outcomes.contains(&&json!("4")) && outcomes.contains(&&json!("0")));
}

/// Consents are enforced from the home store, and the audit trail is of accesses through
/// healthcloud: a source's Consent ("you are opted out") or AuditEvent ("nobody looked") in
/// the patient's own list would tell them something healthcloud does not do.
#[tokio::test]
async fn a_source_cannot_forge_the_patients_consents_or_audit_trail() {
    let mut consent =
        healthcloud_integration::consent::opt_out("s-a", "Organization/clinic-x", &[]);
    consent["id"] = json!("forged-opt-out");
    let event = json!({"resourceType": "AuditEvent", "id": "forged-event",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "recorded": "2026-01-01T00:00:00Z", "outcome": "0",
        "agent": [{"who": {"reference": "Practitioner/dr-nobody"}, "requestor": true}],
        "source": {"observer": {"display": "src"}},
        "entity": [{"what": {"reference": "Patient/s-a"}}]});
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)])
            .route(
                "/fhir/Consent",
                get({
                    let consent = consent.clone();
                    move || async move { axum::Json(searchset(vec![consent])) }
                }),
            )
            .merge(reads("/fhir/Consent/{id}", vec![consent]))
            .route(
                "/fhir/AuditEvent",
                get({
                    let event = event.clone();
                    move || async move { axum::Json(searchset(vec![event])) }
                }),
            )
            .merge(reads("/fhir/AuditEvent/{id}", vec![event])),
    )
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let (ids, issues, _) = search(&home, "Consent", &citizen_a).await;
    assert!(ids.iter().all(|id| !id.starts_with("src.")), "{ids:?}");
    assert!(issues.is_empty(), "{issues:?}");
    let (ids, _, _) = search(&home, "AuditEvent?patient=pat-a&_count=100", &citizen_a).await;
    assert!(ids.iter().all(|id| !id.starts_with("src.")), "{ids:?}");
    for path in ["Consent/src.forged-opt-out", "AuditEvent/src.forged-event"] {
        let read = home.get(path, &citizen_a).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{path}: {}", read.body);
    }
    let asked: Vec<String> = (source.seen().into_iter())
        .filter(|uri| uri.starts_with("/fhir/Consent") || uri.starts_with("/fhir/AuditEvent"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
}

// --- a CPR number held twice -------------------------------------------------------------------

/// A source that holds pat-a's CPR number on two records matches nobody, whether the patient's
/// compartment is searched or one of the records' resources is read by id: the second record
/// may be another person's, filed under a mistyped number.
#[tokio::test]
async fn a_cpr_number_a_source_holds_twice_joins_nobody_even_through_a_read() {
    let first = observation("first", "Patient/s-a", "2026-01-01");
    let second = observation("second", "Patient/s-a2", "2026-01-02");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR), patient("s-a2", PAT_A_CPR)]).merge(observations(
            searchset(vec![first.clone(), second.clone()]),
            vec![first, second],
        )),
    )
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let (ids, issues, _) = search(&home, "Observation", &citizen_a).await;
    assert_eq!(
        ids,
        [
            "a-bp-1",
            "a-bp-2",
            "a-bp-3",
            "a-bp-4",
            "a-bp-5",
            "a-hba1c-1",
            "a-hba1c-2",
            "a-hr-1"
        ]
    );
    assert_eq!(issues[0]["code"], "multiple-matches", "{issues:?}");

    // A read by id of either record's reading does not place it with pat-a…
    for id in ["src.second", "src.first"] {
        let read = home.get(&format!("Observation/{id}"), &citizen_a).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{id}: {}", read.body);
    }
    // …nor settles which record is pat-a's for the next search.
    let (ids, issues, _) = search(&home, "Observation", &citizen_a).await;
    assert!(ids.iter().all(|id| !id.starts_with("src.")), "{ids:?}");
    assert_eq!(issues[0]["code"], "multiple-matches", "{issues:?}");
}

/// Two home records with one CPR number (a mistyped number, a duplicate registration) are
/// joined to no source record either: otherwise the second person would read the first's data
/// at every source.
#[tokio::test]
async fn a_cpr_number_on_two_home_records_joins_neither_to_a_source() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = holding_pat_a(vec![mine]).await;
    let home = home_with(&source).await;
    home.import(vec![patient("pat-z", PAT_A_CPR)])
        .await
        .unwrap();
    for who in ["pat-z", "pat-a"] {
        let (ids, _, _) = search(&home, "Observation", &home.citizen(who)).await;
        assert!(
            ids.iter().all(|id| !id.starts_with("src.")),
            "{who}: {ids:?}"
        );
        let read = home.get("Observation/src.mine", &home.citizen(who)).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{who}: {}", read.body);
    }
    assert!(
        source
            .observation_requests()
            .iter()
            .all(|uri| !uri.contains("patient="))
    );
}

/// A CPR number that is empty is none: a home record carrying one is joined to no source
/// record. Asked for an empty number, a source would name whoever has an empty one too, and
/// two people without a number would read each other's data.
#[tokio::test]
async fn a_home_record_with_an_empty_cpr_number_is_joined_to_no_source_record() {
    let theirs = observation("theirs", "Patient/s-e", "2026-01-01");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR), patient("s-e", "")])
            .merge(observations(searchset(vec![theirs.clone()]), vec![theirs])),
    )
    .await;
    let home = home_with(&source).await;
    home.import(vec![patient("pat-e", "")]).await.unwrap();
    let citizen = home.citizen("pat-e");
    let (ids, issues, _) = search(&home, "Observation", &citizen).await;
    assert!(ids.iter().all(|id| !id.starts_with("src.")), "{ids:?}");
    assert!(issues.is_empty(), "{issues:?}");
    let read = home.get("Observation/src.theirs", &citizen).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.body);
    assert!(
        source
            .seen()
            .iter()
            .all(|uri| !uri.starts_with("/fhir/Patient?")),
        "{:?}",
        source.seen()
    );
}

/// An import that names a home resource as a source's (`<source>.<id>`) is refused: listed by
/// searches, it would be shadowed by the source's resource of that id on every read, so one id
/// would name two resources. The source's own resource still reads through.
#[tokio::test]
async fn a_home_resource_cannot_take_the_id_of_a_sources_resource() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = holding_pat_a(vec![mine]).await;
    let home = home_with(&source).await;
    let forged = observation("src.mine", "Patient/pat-a", "2020-01-01");
    let refused = home.import(vec![forged]).await.unwrap_err().to_string();
    assert!(refused.contains("'src.mine'"), "{refused}");
    assert!(refused.contains("<source>.<id>"), "{refused}");
    let read = home
        .get("Observation/src.mine", &home.citizen("pat-a"))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["effectiveDateTime"], "2026-01-01");
}

/// Data written or imported about a source's patient (`Patient/src.s-a`, as searches name the
/// source's records) is refused with the fix: filed under that id it would sit outside the
/// healthcloud patient's record, their consent and their log.
#[tokio::test]
async fn data_cannot_be_filed_under_a_sources_patient() {
    let source = source(patients(vec![patient("s-a", PAT_A_CPR)])).await;
    let home = home_with(&source).await;
    let reading = observation("new", "Patient/src.s-a", "2026-02-01");
    let written = home
        .request(
            "POST",
            "Observation",
            Some(&home.clinician()),
            Some(reading.clone()),
        )
        .await;
    assert_eq!(
        written.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        written.body
    );
    let message = diagnostics(&written);
    assert!(message.contains("Patient/src.s-a"), "{message}");
    assert!(message.contains("Patient?identifier="), "{message}");
    let imported = observation("imported", "Patient/src.s-a", "2026-02-01");
    let refused = home.import(vec![imported]).await.unwrap_err().to_string();
    assert!(refused.contains("Patient/src.s-a"), "{refused}");
    // Nothing landed: the clinician finds no reading filed under that id.
    let found = home
        .ids("Observation?patient=src.s-a", &home.clinician())
        .await;
    assert!(found.is_empty(), "{found:?}");
}

/// A source corrects a record's CPR number: the record was filed under pat-a's number and is
/// pat-b's. Once healthcloud has matched it to pat-b, pat-a reads none of its data by id.
#[tokio::test]
async fn a_source_record_matched_anew_to_another_patient_is_no_longer_the_first_ones() {
    let mine = observation("mine", "Patient/s-1", "2026-01-01");
    let records = Arc::new(Mutex::new(vec![patient("s-1", PAT_A_CPR)]));
    let source = source(
        registry(records.clone()).merge(observations(searchset(vec![mine.clone()]), vec![mine])),
    )
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let (ids, _, _) = search(&home, "Observation", &citizen_a).await;
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");

    *records.lock().unwrap() = vec![patient("s-1", PAT_B_CPR)];
    let citizen_b = home.citizen("pat-b");
    let (ids, _, _) = search(&home, "Observation", &citizen_b).await;
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
    let read = home.get("Observation/src.mine", &citizen_a).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.body);
    let read = home.get("Observation/src.mine", &citizen_b).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    // And pat-a's searches no longer reach it either.
    let (ids, _, _) = search(&home, "Observation", &citizen_a).await;
    assert!(!ids.contains(&"src.mine".to_owned()), "{ids:?}");
}

// --- getting a source skipped for everyone ----------------------------------------------------

/// A source refuses a read of an id it finds malformed (400), as many servers do: that is the
/// caller's request refused, not the source failing. A citizen reading such ids again and
/// again must not get the source skipped for every other user.
#[tokio::test]
async fn a_caller_cannot_get_a_source_skipped_for_everyone_by_reading_ids_it_refuses() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)])
            .route(
                "/fhir/Observation",
                get(move || {
                    let bundle = searchset(vec![mine.clone()]);
                    async move { axum::Json(bundle) }
                }),
            )
            .route(
                "/fhir/Observation/{id}",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "invalid",
                                       "diagnostics": "HAPI-2001: Invalid resource ID"}]})),
                    )
                }),
            ),
    )
    .await;
    let home = home_with(&source).await;
    let attacker = home.citizen("pat-c");
    for _ in 0..5 {
        let read = home.get("Observation/src.bad-id", &attacker).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.body);
        assert!(!read.body.to_string().contains("HAPI"), "{}", read.body);
    }
    // pat-a still gets the source's data.
    let (ids, issues, _) = search(&home, "Observation", &home.citizen("pat-a")).await;
    assert!(issues.is_empty(), "{issues:?}");
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
    let status = home.service.sources().status();
    assert_eq!(status[0].failures_in_a_row, 0, "{:?}", status[0]);
}

/// `<source>.` followed by `.` or `..` is no resource: asked for as it is, the URL would lose
/// the segment and ask the source for every Observation or Patient it holds.
#[tokio::test]
async fn dot_segment_ids_reach_no_listing_at_the_source() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = holding_pat_a(vec![mine]).await;
    let home = home_with(&source).await;
    let attacker = home.citizen("pat-c");
    for path in [
        "Observation/src..",
        "Observation/src...",
        "Patient/src..",
        "Patient/src...",
    ] {
        for _ in 0..2 {
            let read = home.get(path, &attacker).await;
            assert_eq!(read.status, StatusCode::NOT_FOUND, "{path}: {}", read.body);
        }
    }
    let listings: Vec<String> = (source.seen().into_iter())
        .filter(|uri| uri == "/fhir/Observation" || uri == "/fhir/Patient")
        .collect();
    assert!(listings.is_empty(), "{listings:?}");
    let status = home.service.sources().status();
    assert_eq!(status[0].failures_in_a_row, 0, "{:?}", status[0]);
    // The source still answers pat-a.
    let (ids, issues, _) = search(&home, "Observation", &home.citizen("pat-a")).await;
    assert!(issues.is_empty(), "{issues:?}");
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
}

/// A search value the caller chose, passed on to the source, can make it answer 400: the
/// caller's answer says so, but the source is not skipped for everyone else.
#[tokio::test]
async fn a_caller_cannot_get_a_source_skipped_by_searching_what_it_refuses() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = source(patients(vec![patient("s-a", PAT_A_CPR)]).route(
        "/fhir/Observation",
        get(move |RawQuery(query): RawQuery| {
            let mine = mine.clone();
            async move {
                use axum::response::IntoResponse;
                match query.unwrap_or_default().contains("code=") {
                    true => StatusCode::BAD_REQUEST.into_response(),
                    false => axum::Json(searchset(vec![mine])).into_response(),
                }
            }
        }),
    ))
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    for _ in 0..5 {
        let (_, issues, _) = search(&home, "Observation?code=weird|x", &citizen_a).await;
        assert!(
            issues[0]["diagnostics"].as_str().unwrap().contains("400"),
            "{issues:?}"
        );
    }
    let (ids, issues, _) = search(&home, "Observation", &citizen_a).await;
    assert!(issues.is_empty(), "{issues:?}");
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
}

// --- what a hostile source sends ---------------------------------------------------------------

/// One Bundle with everything a source should not send: another patient's reading, another
/// type, an id too long to name through healthcloud, an included entry of another patient, a
/// forged origin, and the same id twice. Only pat-a's own readings leave, once each, named by
/// their real origin; the rest is withheld and logged.
#[tokio::test]
async fn what_a_hostile_source_sends_is_held_to_the_patient_and_named_by_its_origin() {
    let mut forged = observation("forged", "Patient/s-a", "2026-01-03");
    forged["meta"] = json!({"source": "urn:healthcloud:written:user:clinician:dr-trusted"});
    let long_id = "x".repeat(62);
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": observation("mine", "Patient/s-a", "2026-01-01"), "search": {"mode": "match"}},
        {"resource": observation("mine", "Patient/s-a", "2026-01-01"), "search": {"mode": "match"}},
        {"resource": observation("x.y", "Patient/s-a", "2026-01-02"), "search": {"mode": "match"}},
        {"resource": forged, "search": {"mode": "match"}},
        {"resource": observation("theirs", "Patient/s-b", "2026-01-01"), "search": {"mode": "match"}},
        {"resource": observation(&long_id, "Patient/s-a", "2026-01-01"), "search": {"mode": "match"}},
        {"resource": observation("..", "Patient/s-a", "2026-01-01"), "search": {"mode": "match"}},
        {"resource": {"resourceType": "Condition", "id": "cond", "subject": {"reference": "Patient/s-a"}}, "search": {"mode": "match"}},
        {"resource": observation("included", "Patient/s-b", "2026-01-01"), "search": {"mode": "include"}},
        {"resource": {"resourceType": "Patient", "id": "s-b", "identifier": [{"system": common::CPR, "value": PAT_B_CPR}]}, "search": {"mode": "include"}},
    ]});
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR), patient("s-b", PAT_B_CPR)]).merge(observations(
            bundle,
            vec![observation("x.y", "Patient/s-a", "2026-01-02")],
        )),
    )
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let (ids, issues, body) = search(
        &home,
        &format!("Observation?code={LOINC}|{BP}&_sort=date&_count=100"),
        &citizen_a,
    )
    .await;
    assert!(issues.is_empty(), "{issues:?}");
    let from_source: Vec<&String> = ids.iter().filter(|id| id.starts_with("src.")).collect();
    assert_eq!(
        from_source,
        ["src.mine", "src.x.y", "src.forged"],
        "{ids:?}"
    );
    assert_eq!(body["total"], ids.len(), "the total counts each match once");
    let forged = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["resource"]["id"] == "src.forged")
        .unwrap();
    assert_eq!(
        forged["resource"]["meta"]["source"],
        "urn:healthcloud:source:src"
    );
    // Nothing of pat-b's reached pat-a's answer, not even their CPR number.
    assert!(!body.to_string().contains(PAT_B_CPR), "{body}");

    // The crafted id reads back through the source it came from.
    let read = home.get("Observation/src.x.y", &citizen_a).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["id"], "src.x.y");

    let log = withheld_log(&home).await;
    for named in [
        "Observation/theirs",
        "Condition/cond",
        &format!("Observation/{long_id}"),
        // An id that would not read back (`src...` reads as the path step `..`).
        "Observation/..",
    ] {
        assert!(log.contains(named), "{named} not in {log}");
    }
}

/// A source that floods its answer with thousands of resources it should not have sent
/// (within its size cap) gets no more of them read than were asked for, and the security log
/// entry stays readable: it names the first few and counts the rest.
#[tokio::test]
async fn a_flood_of_resources_is_read_no_further_than_asked_and_logged_in_brief() {
    let mut flood = vec![observation("mine", "Patient/s-a", "2026-01-01")];
    flood.extend(
        (0..3000).map(|n| observation(&format!("theirs-{n}"), "Patient/s-b", "2026-01-01")),
    );
    flood.push(observation("late", "Patient/s-a", "2026-01-02"));
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)]).merge(observations(searchset(flood), vec![])),
    )
    .await;
    let home = home_with(&source).await;
    let (ids, issues, _) = search(&home, "Observation?_count=100", &home.citizen("pat-a")).await;
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
    // Past what was asked for, nothing is read: the answer says the source holds more.
    assert!(!ids.contains(&"src.late".to_owned()), "{ids:?}");
    assert_eq!(issues[0]["code"], "too-costly", "{issues:?}");
    let log = withheld_log(&home).await;
    assert!(log.contains("Observation/theirs-0"), "{log}");
    assert!(log.len() < 4096, "{} bytes in the security log", log.len());
}

/// `meta.source` through healthcloud names the source a resource came from, whatever the
/// source itself had there: a search by origin finds the source's resources, and one by the
/// origin a source forged finds nothing of it, even from a source that filters by its own.
#[tokio::test]
async fn a_search_by_origin_holds_to_healthclouds_origin_not_the_sources() {
    let mut mine = observation("mine", "Patient/s-a", "2026-01-01");
    mine["meta"] = json!({"source": "https://gp.example/ehr"});
    let mut forged = observation("forged", "Patient/s-a", "2026-01-02");
    forged["meta"] = json!({"source": "urn:healthcloud:written:user:clinician:dr-trusted"});
    let held = vec![mine, forged];
    let source = source(patients(vec![patient("s-a", PAT_A_CPR)]).route(
        "/fhir/Observation",
        get(move |RawQuery(query): RawQuery| {
            let held = held.clone();
            async move {
                let wanted: Option<String> =
                    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                        .find(|(name, _)| name == "_source")
                        .map(|(_, value)| value.into_owned());
                let found = (held.into_iter())
                    .filter(|r| {
                        wanted
                            .as_ref()
                            .is_none_or(|w| r["meta"]["source"] == w.as_str())
                    })
                    .collect();
                axum::Json(searchset(found))
            }
        }),
    ))
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let (ids, _, _) = search(
        &home,
        "Observation?_source=urn:healthcloud:source:src",
        &citizen_a,
    )
    .await;
    assert_eq!(ids, ["src.forged", "src.mine"]);
    for forged_origin in [
        "Observation?_source=urn:healthcloud:written:user:clinician:dr-trusted",
        "Observation?_source:below=urn:healthcloud:written",
    ] {
        let (ids, _, _) = search(&home, forged_origin, &citizen_a).await;
        assert!(
            ids.iter().all(|id| !id.starts_with("src.")),
            "{forged_origin}: {ids:?}"
        );
    }
}

/// What a source was not asked to apply (a date range, which is never passed on; a
/// restriction of the caller's scopes it cannot express) is applied to what it returns, and
/// what fails it is an ordinary non-match: an honest source is not reported for it, so the
/// security log keeps its entries for sources that send what they should not.
#[tokio::test]
async fn an_honest_source_is_not_reported_for_what_it_was_not_asked_to_filter() {
    let early = observation("early", "Patient/s-a", "2026-01-01");
    let late = observation("late", "Patient/s-a", "2026-06-01");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)])
            .merge(observations(searchset(vec![early, late]), vec![])),
    )
    .await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let (ids, _, _) = search(&home, "Observation?date=ge2026-03-01", &citizen_a).await;
    assert_eq!(ids, ["src.late"]);
    let restricted = home.token(
        Role::Patient,
        Some("pat-a"),
        Some("patient/Observation.rs?date=ge2026-03-01"),
    );
    let (ids, _, _) = search(&home, "Observation", &restricted).await;
    assert_eq!(ids, ["src.late"]);
    assert_eq!(withheld_log(&home).await, "");
}

/// A source's `next` link is never followed (it could point anywhere, healthcloud itself
/// included); the answer says the source holds more than was read.
#[tokio::test]
async fn a_sources_next_link_is_never_followed() {
    let elsewhere = source(Router::new()).await;
    let next = format!("{}/Observation?patient=s-b&page=2", elsewhere.base);
    let mut bundle = searchset(vec![observation("mine", "Patient/s-a", "2026-01-01")]);
    bundle["link"] = json!([{"relation": "next", "url": next}]);
    let source =
        source(patients(vec![patient("s-a", PAT_A_CPR)]).merge(observations(bundle, vec![]))).await;
    let home = home_with(&source).await;
    let (ids, issues, _) = search(&home, "Observation", &home.citizen("pat-a")).await;
    assert!(ids.contains(&"src.mine".to_owned()), "{ids:?}");
    assert_eq!(issues[0]["code"], "too-costly", "{issues:?}");
    assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
}

// --- confinement, consent and probing ----------------------------------------------------------

/// A citizen naming another patient in a search still searches only their own compartment:
/// the other patient's sources are not asked about them, and nothing comes back.
#[tokio::test]
async fn a_confined_caller_naming_another_patient_asks_no_source_about_them() {
    let theirs = observation("theirs", "Patient/s-b", "2026-01-01");
    let source = source(
        patients(vec![patient("s-b", PAT_B_CPR)])
            .merge(observations(searchset(vec![theirs.clone()]), vec![theirs])),
    )
    .await;
    let home = home_with(&source).await;
    let attacker = home.citizen("pat-a");
    for path in [
        "Observation?patient=pat-b",
        "Observation?subject=Patient/pat-b",
        "Observation?patient=pat-a&patient=pat-b",
        "Observation?patient=pat-b,pat-a",
    ] {
        let (ids, issues, _) = search(&home, path, &attacker).await;
        // At most the caller's own home readings (when their own id is among those named).
        assert!(ids.iter().all(|id| id.starts_with("a-")), "{path}: {ids:?}");
        assert!(issues.is_empty(), "{path}: {issues:?}");
    }
    // Only pat-a's own CPR number was looked up; no search asked for pat-b's record.
    for uri in source.seen() {
        assert!(!uri.contains(PAT_B_CPR), "{uri}");
        assert!(!uri.contains("patient=Patient%2Fs-b"), "{uri}");
    }
    // A read by id must ask the source to know whose it is: as if it did not exist, and the
    // attempt is in the security log as a probe, in no patient's log.
    let read = home.get("Observation/src.theirs", &attacker).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.body);
    let log = home.service.security_log().recent(100, None).await.unwrap();
    assert!(
        log.iter()
            .any(|entry| entry.kind == "probe" && entry.request.contains("src.theirs")),
        "{log:?}"
    );
}

/// A clinician pat-a opted out cannot get pat-a's sources asked by naming pat-a second, beside
/// a patient who allows them, nor read pat-a's readings at a source by id.
#[tokio::test]
async fn an_opted_out_clinician_reaches_no_source_data_of_the_patient() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = holding_pat_a(vec![mine]).await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let opted = home
        .opt_out(
            &citizen_a,
            "pat-a",
            "Organization/clinic-x",
            &["Observation"],
        )
        .await;
    assert_eq!(opted.status, StatusCode::CREATED, "{}", opted.body);
    let clinician = home.clinician_of("clinic-x");
    for path in [
        "Observation?patient=pat-a",
        "Observation?patient=pat-b&patient=pat-a",
        "Observation?patient=pat-b,pat-a",
    ] {
        let response = home.get(path, &clinician).await;
        let (ids, _) = matches_and_issues(&response.body);
        assert!(
            ids.iter()
                .all(|id| !id.starts_with("src.") && !id.starts_with("a-")),
            "{path}: {ids:?}"
        );
    }
    assert!(
        source.observation_requests().is_empty(),
        "{:?}",
        source.observation_requests()
    );
    let read = home.get("Observation/src.mine", &clinician).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.body);
    // In pat-a's context, an app-like launch is refused before the source is asked at all.
    let in_context = home
        .issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                org: Some("clinic-x".into()),
                patient: Some("pat-a".into()),
                scope: Some("patient/Observation.rs".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let asked = source.observation_requests().len();
    let read = home.get("Observation/src.mine", &in_context).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.body);
    assert_eq!(source.observation_requests().len(), asked);
}

/// A token whose scopes do not reach a type at all gets no source asked on its behalf by
/// reading that type by id, and learns nothing of the source (not even that it is down).
#[tokio::test]
async fn a_caller_without_access_to_a_type_gets_no_source_asked_by_reading_it() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = holding_pat_a(vec![mine]).await;
    let home = home_with(&source).await;
    let conditions_only = home.token(Role::Patient, Some("pat-a"), Some("patient/Condition.rs"));
    let read = home.get("Observation/src.mine", &conditions_only).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.body);
    let clinician_conditions = home.token(Role::Clinician, None, Some("user/Condition.rs"));
    let read = home
        .get("Observation/src.mine", &clinician_conditions)
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.body);
    assert!(
        source.seen().is_empty(),
        "asked for a refused caller: {:?}",
        source.seen()
    );
}

/// A source configured for some types only (what the organization agreed to share) is read
/// for those only: a read by id of another type, or of one the source does not declare, asks
/// it nothing.
#[tokio::test]
async fn a_read_by_id_reaches_only_the_types_a_source_is_configured_for() {
    let condition = json!({"resourceType": "Condition", "id": "c1",
        "subject": {"reference": "Patient/s-a"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "59621000"}]}});
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR)])
            .merge(observations(searchset(vec![mine.clone()]), vec![mine]))
            .merge(reads("/fhir/Condition/{id}", vec![condition])),
    )
    .await;
    let home = Harness::new(Backend::Sqlite).await.unwrap();
    home.service
        .sources()
        .add(SourceSettings {
            upstream: UpstreamConfig::new("src", source.base.clone()),
            organization: None,
            types: Some(["Observation".to_owned()].into()),
        })
        .unwrap();
    let clinician = home.clinician();
    for path in ["Condition/src.c1", "Patient/src.s-a"] {
        let read = home.get(path, &clinician).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{path}: {}", read.body);
    }
    let asked: Vec<String> = (source.seen().into_iter())
        .filter(|uri| uri.starts_with("/fhir/Condition") || uri.starts_with("/fhir/Patient/"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    // What it is configured for reads as before.
    let read = home.get("Observation/src.mine", &clinician).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
}

/// An app in pat-a's context, through the same host calls as any app: held to its grant over
/// what a source sends, reaching nothing of another patient's at a source by id, and refused
/// before any source is asked once pat-a opts the app out.
#[tokio::test]
async fn an_app_in_one_patients_context_reaches_only_its_grant_of_that_patient() {
    let mine = observation("mine", "Patient/s-a", "2026-01-01");
    let mut lab = observation("lab", "Patient/s-a", "2026-01-02");
    lab["category"][0]["coding"][0]["code"] = json!("laboratory");
    let theirs = observation("theirs", "Patient/s-b", "2026-01-01");
    let source = source(
        patients(vec![patient("s-a", PAT_A_CPR), patient("s-b", PAT_B_CPR)]).merge(observations(
            searchset(vec![mine.clone(), lab.clone(), theirs.clone()]),
            vec![mine, lab, theirs],
        )),
    )
    .await;
    let home = home_with(&source).await;
    let app = AccessContext {
        principal: home
            .issuer
            .verifier()
            .verify(&home.citizen("pat-a"))
            .unwrap(),
        app: Some(AppIdentity {
            id: "examples/bp-monitor".into(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            publisher_key: "key".into(),
            region: "hovedstaden".into(),
        }),
        grant: Some(Scope::parse_list("patient/Observation.rs?category=vital-signs").unwrap()),
        purpose: None,
    };
    let every = || {
        SearchQuery::parse(
            "Observation",
            &[("_count".into(), "100".into())],
            PageLimits::default(),
        )
        .unwrap()
    };
    let page = home.service.search(&app, every()).await.unwrap();
    let ids: Vec<&str> = page.resources.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&"src.mine"), "{ids:?}");
    assert!(
        !ids.contains(&"src.lab") && !ids.contains(&"src.theirs"),
        "{ids:?}"
    );
    for (id, refusal) in [("src.lab", "forbidden"), ("src.theirs", "not found")] {
        let read = home.service.read(&app, "Observation", id).await;
        match (refusal, read) {
            ("forbidden", Err(FhirError::Forbidden(_)))
            | ("not found", Err(FhirError::NotFound(_))) => {}
            (_, other) => panic!("{id}: {other:?}"),
        }
    }

    let citizen_a = home.citizen("pat-a");
    let opted = home
        .opt_out(&citizen_a, "pat-a", "Device/examples.bp-monitor", &[])
        .await;
    assert_eq!(opted.status, StatusCode::CREATED, "{}", opted.body);
    let asked = source.observation_requests().len();
    let refused = home.service.search(&app, every()).await;
    assert!(
        matches!(refused, Err(FhirError::ConsentDenied)),
        "{refused:?}"
    );
    let refused = home.service.read(&app, "Observation", "src.mine").await;
    assert!(
        matches!(refused, Err(FhirError::ConsentDenied)),
        "{refused:?}"
    );
    assert_eq!(source.observation_requests().len(), asked);
}

// --- ids that look like source ids ----------------------------------------------------------------

/// An id with a dot that cannot name a source (`Lab.r1`: a source's name is lowercase) is the
/// home store's; one that could (`lab.r1`) is the sources' even while no source has that
/// name, so registering one later shadows nothing; and a prefix naming no source reaches no
/// source.
#[tokio::test]
async fn ids_that_look_like_source_ids_but_name_no_source_are_the_home_stores() {
    let source = source(patients(vec![patient("s-a", PAT_A_CPR)])).await;
    let home = home_with(&source).await;
    let import = async |id: &str| {
        home.import(vec![observation(id, "Patient/pat-a", "2026-01-01")])
            .await
    };
    import("Lab.r1").await.unwrap();
    let refused = import("lab.r1").await.unwrap_err().to_string();
    assert!(refused.contains("<source>.<id>"), "{refused}");
    let citizen_a = home.citizen("pat-a");
    let read = home.get("Observation/Lab.r1", &citizen_a).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let other = home.get("Observation/Lab.r1", &home.citizen("pat-b")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
    for path in [
        "Observation/lab.r1",
        "Observation/nosuch.a-bp-1",
        "Observation/SRC.mine",
        "Observation/.src",
    ] {
        let read = home.get(path, &citizen_a).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{path}: {}", read.body);
    }
    assert!(source.observation_requests().is_empty());
}

// --- paging tricks ---------------------------------------------------------------------------------

/// The deepest offset answers an empty page with the true total, deeper is refused, a zero
/// count answers the total only, and readings sharing one date (across the home store and the
/// source) page in one stable order, each once.
#[tokio::test]
async fn paging_tricks_across_sources_answer_every_match_once() {
    let same_day = "2024-03-01T09:00:00Z";
    let readings: Vec<Value> = (1..=5)
        .map(|n| observation(&format!("tie-{n}"), "Patient/s-a", same_day))
        .collect();
    let source = holding_pat_a(readings).await;
    let home = home_with(&source).await;
    let citizen_a = home.citizen("pat-a");
    let query = format!("Observation?code={LOINC}|{BP}&_sort=date");
    let (all, _, body) = search(&home, &format!("{query}&_count=100"), &citizen_a).await;
    // pat-a's five home readings and the source's five.
    assert_eq!(all.len(), 10, "{all:?}");
    assert_eq!(body["total"], 10);

    let (ids, _, body) = search(&home, &format!("{query}&_offset=10000000"), &citizen_a).await;
    assert!(ids.is_empty());
    assert_eq!(body["total"], 10);
    let deeper = home
        .get(&format!("{query}&_offset=10000001"), &citizen_a)
        .await;
    assert_eq!(deeper.status, StatusCode::BAD_REQUEST, "{}", deeper.body);
    let (ids, _, body) = search(&home, &format!("{query}&_count=0"), &citizen_a).await;
    assert!(ids.is_empty());
    assert_eq!(body["total"], 10);

    let mut paged = Vec::new();
    for offset in 0..12 {
        let (ids, _, _) = search(
            &home,
            &format!("{query}&_count=1&_offset={offset}"),
            &citizen_a,
        )
        .await;
        paged.extend(ids);
    }
    assert_eq!(paged, all);
}
