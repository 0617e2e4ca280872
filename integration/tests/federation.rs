//! Data at the source, through the FHIR API: a patient's compartment searched across the home
//! store, an independently written FHIR server (Medplum, the GP) and another region's
//! healthcloud (the hospital in hovedstaden), all over loopback HTTP, under one policy,
//! consent and audit; and hostile sources that fail in every way a source can.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use common::sources::{Medplum, RecordingSource, searchset, serve};
use common::{Backend, Harness, LOINC, OBS_CATEGORY};
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::sources::SourceSettings;
use healthcloud_integration::upstream::{UpstreamAuth, UpstreamConfig};
use healthcloud_platform::auth::{Role, TokenRequest};
use reqwest::Url;
use serde_json::{Value, json};

/// The patient in every sector: `hc-1` at home, `gp-patient-1` at the GP, `local-7` in
/// hovedstaden.
const HC_CPR: &str = "0101701234";
const BP: &str = "85354-9";

fn observation(id: &str, patient: &str, code: &str, category: &str, date: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date})
}

fn settings(name: &str, base: Url, configure: impl FnOnce(&mut UpstreamConfig)) -> SourceSettings {
    let mut upstream = UpstreamConfig::new(name, base);
    upstream.deadline = Duration::from_secs(20);
    configure(&mut upstream);
    SourceSettings {
        upstream,
        organization: None,
        types: None,
    }
}

/// The home region with the patient's home readings, and hovedstaden's healthcloud on
/// loopback holding their hospital readings (six blood pressures and an HbA1c), in pages of
/// four.
struct World {
    home: Harness,
    _hovedstaden: Harness,
    dir: tempfile::TempDir,
}

impl World {
    /// The ids of every page of the search `first`, following `next` links: each page
    /// complete, and saying there are `total` matches.
    async fn pages(&self, first: &str, token: &str, total: usize) -> Vec<String> {
        let mut paged = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(url) = next {
            let response = self.home.get(&url, token).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            assert_eq!(response.body["total"], total, "{}", response.body);
            let (ids, issues) = matches_and_issues(&response.body);
            assert!(issues.is_empty(), "{issues:?}");
            paged.extend(ids);
            next = response.body["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|link| link["relation"] == "next")
                .map(|link| link["url"].as_str().unwrap().to_owned());
        }
        paged
    }

    /// Adds source `counting`, which holds hc-1 (as `c-1`) and no readings, recording what
    /// it is asked.
    async fn counting_source(&self) -> RecordingSource {
        let counting = RecordingSource::scripted(
            "c-1",
            HC_CPR,
            Router::new().route("/", get(|| async { axum::Json(searchset(vec![])) })),
        )
        .await;
        self.add_source("counting", counting.base.clone());
        counting
    }

    /// Adds a source at `base` with no credentials.
    fn add_source(&self, name: &str, base: Url) {
        let sources = self.home.service.sources();
        sources.add(settings(name, base, |_| {})).unwrap();
    }
}

async fn world() -> World {
    let home = Harness::new(Backend::Sqlite).await.unwrap();
    home.import(vec![
        common::sources::patient("hc-1", HC_CPR),
        observation(
            "home-bp-1",
            "hc-1",
            BP,
            "vital-signs",
            "2026-02-01T08:00:00Z",
        ),
        observation(
            "home-bp-2",
            "hc-1",
            BP,
            "vital-signs",
            "2026-04-01T08:00:00Z",
        ),
    ])
    .await
    .unwrap();
    // Hovedstaden serves pages of four: its answers take following `next` links.
    let pages_of_four = PageLimits {
        default_count: 4,
        max_count: 4,
    };
    let hovedstaden = Harness::with_limits(Backend::Sqlite, pages_of_four)
        .await
        .unwrap();
    let mut hospital = vec![common::sources::patient("local-7", HC_CPR)];
    for month in 1..=6 {
        hospital.push(observation(
            &format!("hosp-bp-{month}"),
            "local-7",
            BP,
            "vital-signs",
            &format!("2026-0{month}-10T12:00:00Z"),
        ));
    }
    hospital.push(observation(
        "hosp-hba1c",
        "local-7",
        "59261-8",
        "laboratory",
        "2026-03-03",
    ));
    hovedstaden.import(hospital).await.unwrap();
    let address = serve(hovedstaden.app.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("hovedstaden.token");
    std::fs::write(&token, hovedstaden.clinician_of("region-midtjylland")).unwrap();
    let base = Url::parse(&format!("http://{address}/fhir/r4")).unwrap();
    home.service
        .sources()
        .add(settings("hovedstaden", base, |c| {
            c.auth = UpstreamAuth::BearerFile(token)
        }))
        .unwrap();
    World {
        home,
        _hovedstaden: hovedstaden,
        dir,
    }
}

/// The ids of a searchset's matches, in order, and its outcome entry's issues.
fn matches_and_issues(bundle: &Value) -> (Vec<String>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut issues = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        match entry["search"]["mode"].as_str() {
            Some("outcome") => {
                assert_eq!(entry["resource"]["resourceType"], "OperationOutcome");
                issues.extend(entry["resource"]["issue"].as_array().unwrap().clone());
            }
            _ => ids.push(entry["resource"]["id"].as_str().unwrap().to_owned()),
        }
    }
    (ids, issues)
}

#[tokio::test]
async fn a_patients_readings_come_from_every_source_merged_sorted_and_named_by_origin() {
    let world = world().await;
    let medplum = Medplum::start(&[]);
    world.add_source("gp", medplum.base.clone());
    let clinician = world.home.clinician();
    let response = world
        .home
        .get(
            &format!("Observation?patient=hc-1&code={LOINC}|{BP}&_sort=-date"),
            &clinician,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let (ids, issues) = matches_and_issues(&response.body);
    assert!(issues.is_empty(), "{issues:?}");
    // Two at home, three at the GP, six in the hospital: newest first across all of them.
    assert_eq!(
        ids,
        [
            "hovedstaden.hosp-bp-6",
            "gp.gp-bp-1-3",
            "hovedstaden.hosp-bp-5",
            "hovedstaden.hosp-bp-4",
            "home-bp-2",
            "hovedstaden.hosp-bp-3",
            "gp.gp-bp-1-2",
            "hovedstaden.hosp-bp-2",
            "home-bp-1",
            "gp.gp-bp-1-1",
            "hovedstaden.hosp-bp-1",
        ]
    );
    assert_eq!(response.body["total"], 11);
    for entry in response.body["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        let id = resource["id"].as_str().unwrap();
        // Every resource reads back through healthcloud, in the home patient's compartment.
        assert!(
            entry["fullUrl"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Observation/{id}"))
        );
        assert_eq!(resource["subject"]["reference"], "Patient/hc-1");
        let origin = resource["meta"]["source"].as_str().unwrap_or_default();
        match id.split_once('.') {
            Some((source, _)) => assert_eq!(origin, format!("urn:healthcloud:source:{source}")),
            None => assert!(!origin.starts_with("urn:healthcloud:source:"), "{origin}"),
        }
    }

    // The patient's own token reaches the same record, confined by the policy.
    let citizen = world.home.citizen("hc-1");
    let own = world.home.ids("Observation?_count=100", &citizen).await;
    assert_eq!(own.len(), 12, "{own:?}");
    assert!(own.contains(&"hovedstaden.hosp-hba1c".to_owned()));
    // Another patient's token reaches their own record across the sources, none of this one.
    let other = world.home.citizen("pat-a");
    let response = world.home.get("Observation?_count=100", &other).await;
    let theirs = matches_and_issues(&response.body).0;
    assert!(
        theirs.contains(&"hovedstaden.a-bp-1".to_owned()),
        "{theirs:?}"
    );
    for entry in response.body["entry"].as_array().unwrap() {
        assert_eq!(entry["resource"]["subject"]["reference"], "Patient/pat-a");
    }
}

#[tokio::test]
async fn pages_across_sources_hold_every_match_once_in_order() {
    let world = world().await;
    let medplum = Medplum::start(&[]);
    world.add_source("gp", medplum.base.clone());
    let clinician = world.home.clinician();
    let all = world
        .home
        .ids(
            &format!("Observation?patient=hc-1&code={LOINC}|{BP}&_sort=date&_count=100"),
            &clinician,
        )
        .await;
    assert_eq!(all.len(), 11);
    let paged = world
        .pages(
            &format!("Observation?patient=hc-1&code={LOINC}|{BP}&_sort=date&_count=4"),
            &clinician,
            11,
        )
        .await;
    assert_eq!(paged, all);
}

#[tokio::test]
async fn a_returned_id_reads_back_through_the_owning_source_and_only_for_whom_may_see_it() {
    let world = world().await;
    let clinician = world.home.clinician();
    let read = world
        .home
        .get("Observation/hovedstaden.hosp-bp-2", &clinician)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["id"], "hovedstaden.hosp-bp-2");
    assert_eq!(read.body["subject"]["reference"], "Patient/hc-1");
    assert_eq!(
        read.body["meta"]["source"],
        "urn:healthcloud:source:hovedstaden"
    );

    // Someone else's token: as if it did not exist.
    let stranger = world.home.citizen("pat-a");
    let hidden = world
        .home
        .get("Observation/hovedstaden.hosp-bp-2", &stranger)
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
    // The patient's own token with vital signs only: the laboratory result is refused.
    let vitals = world.home.token(
        Role::Patient,
        Some("hc-1"),
        Some("patient/Observation.rs?category=vital-signs"),
    );
    let refused = world
        .home
        .get("Observation/hovedstaden.hosp-hba1c", &vitals)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let allowed = world
        .home
        .get("Observation/hovedstaden.hosp-bp-1", &vitals)
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);

    // Nothing there by that id, and nothing written through to a source.
    let missing = world
        .home
        .get("Observation/hovedstaden.nope", &clinician)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let mut changed = read.body.clone();
    changed["status"] = json!("cancelled");
    let update = world
        .home
        .request(
            "PUT",
            "Observation/hovedstaden.hosp-bp-2",
            Some(&clinician),
            Some(changed),
        )
        .await;
    assert_eq!(
        update.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        update.body
    );
}

#[tokio::test]
async fn a_scope_restriction_a_source_cannot_express_is_applied_to_what_it_returns() {
    let world = world().await;
    // The restriction is on the date, which is never passed on to a source: the hospital
    // sends all six readings and only those after March leave the server.
    let restricted = world.home.token(
        Role::Patient,
        Some("hc-1"),
        Some("patient/Observation.rs?date=ge2026-04-01"),
    );
    let ids = world
        .home
        .ids("Observation?_sort=date&_count=100", &restricted)
        .await;
    assert_eq!(
        ids,
        [
            "home-bp-2",
            "hovedstaden.hosp-bp-4",
            "hovedstaden.hosp-bp-5",
            "hovedstaden.hosp-bp-6",
        ]
    );
}

#[tokio::test]
async fn data_a_source_should_not_have_sent_is_withheld_and_logged() {
    let world = world().await;
    // A source that ignores every parameter: it sends another patient's reading, a
    // laboratory result outside the token's scope and a Condition in an Observation search.
    let careless = RecordingSource::scripted(
        "c-1",
        HC_CPR,
        Router::new().route(
            "/",
            get(|| async {
                axum::Json(searchset(vec![
                    observation("mine", "c-1", BP, "vital-signs", "2026-01-01"),
                    observation("theirs", "c-2", BP, "vital-signs", "2026-01-01"),
                    observation("lab", "c-1", "59261-8", "laboratory", "2026-01-01"),
                    json!({"resourceType": "Condition", "id": "cond", "subject": {"reference": "Patient/c-1"}}),
                ]))
            }),
        ),
    )
    .await;
    world.add_source("careless", careless.base.clone());
    let vitals = world.home.token(
        Role::Patient,
        Some("hc-1"),
        Some("patient/Observation.rs?category=vital-signs"),
    );
    let ids = world.home.ids("Observation?_count=100", &vitals).await;
    assert!(ids.contains(&"careless.mine".to_owned()), "{ids:?}");
    for withheld in ["careless.theirs", "careless.lab", "careless.cond"] {
        assert!(!ids.contains(&withheld.to_owned()), "{ids:?}");
    }
    let log = world
        .home
        .service
        .security_log()
        .recent(50, None)
        .await
        .unwrap();
    let entry = log
        .iter()
        .find(|entry| entry.kind == "source-withheld")
        .expect("a source-withheld entry");
    assert!(entry.reason.contains("'careless'"), "{}", entry.reason);
    for named in ["Observation/theirs", "Observation/lab", "Condition/cond"] {
        assert!(entry.reason.contains(named), "{}", entry.reason);
    }
}

#[tokio::test]
async fn consent_is_checked_before_any_source_is_asked() {
    let world = world().await;
    let counting = world.counting_source().await;
    let citizen = world.home.citizen("hc-1");
    let opted = world
        .home
        .opt_out(&citizen, "hc-1", "Organization/clinic-x", &[])
        .await;
    assert_eq!(opted.status, StatusCode::CREATED, "{}", opted.body);
    let clinician = world.home.clinician_of("clinic-x");
    let refused = world.home.get("Observation?patient=hc-1", &clinician).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // In the patient's context (a launch for hc-1), a read by id is refused before the source
    // is asked too.
    let in_context = world
        .home
        .issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                org: Some("clinic-x".into()),
                patient: Some("hc-1".into()),
                scope: Some("patient/Observation.rs".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let read = world
        .home
        .get("Observation/counting.c-obs", &in_context)
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.body);
    // So is a search confined to the patient in context: the patient is found in the home
    // records while consent is checked, and the source is never asked.
    let confined = world.home.get("Observation", &in_context).await;
    assert_eq!(confined.status, StatusCode::FORBIDDEN, "{}", confined.body);
    // Neither the searches nor the read reached the source; but the patient's own searches do.
    assert_eq!(counting.requests(), 0);
    world.home.ids("Observation", &citizen).await;
    assert!(counting.requests() > 0);
}

#[tokio::test]
async fn a_patient_matched_at_a_source_is_not_looked_up_again_while_the_match_is_fresh() {
    let world = world().await;
    let counting = world.counting_source().await;
    let citizen = world.home.citizen("hc-1");
    for _ in 0..3 {
        world.home.ids("Observation", &citizen).await;
    }
    let lookups = |seen: &[String]| {
        (seen.iter())
            .filter(|uri| uri.starts_with("/fhir/Patient"))
            .count()
    };
    assert_eq!(lookups(&counting.seen()), 1, "{:?}", counting.seen());
    assert_eq!(counting.observation_requests().len(), 3);
}

#[tokio::test]
async fn the_audit_event_names_each_source_and_what_it_returned() {
    let world = world().await;
    let clinician = world.home.clinician();
    world
        .home
        .ids(
            // A page smaller than what the source holds: the record counts all it returned.
            &format!("Observation?patient=hc-1&code={LOINC}|{BP}&_count=2"),
            &clinician,
        )
        .await;
    let citizen = world.home.citizen("hc-1");
    let log = world
        .home
        .get("AuditEvent?patient=hc-1&_count=100", &citizen)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let search = log.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .find(|event| event["subtype"][0]["code"] == "search-type")
        .expect("the search's audit event");
    let source = search["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entity| entity["what"]["identifier"]["system"] == "urn:healthcloud:source")
        .expect("an entity naming the source");
    assert_eq!(source["what"]["identifier"]["value"], "hovedstaden");
    assert_eq!(source["description"], "returned 6");
}

/// A source that answers identity lookups but fails every Observation search with `failure`.
async fn failing_source(failure: Router) -> RecordingSource {
    RecordingSource::scripted("c-1", HC_CPR, failure).await
}

#[tokio::test]
async fn each_kind_of_outage_yields_the_other_sources_results_and_an_outcome_naming_it() {
    let world = world().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let silent = failing_source(Router::new().route(
        "/",
        get(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    ))
    .await;
    let broken = failing_source(Router::new().route(
        "/",
        get(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "java.sql.SQLException: password=hunter2 at db01.hospital.internal",
            )
        }),
    ))
    .await;
    let html = failing_source(Router::new().route(
        "/",
        get(|| async { axum::response::Html("<html>please log in</html>") }),
    ))
    .await;
    let flood = failing_source(Router::new().route(
        "/",
        get(|| async {
            let chunks = futures_util::stream::iter(
                (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])),
            );
            (
                [("content-type", "application/fhir+json")],
                Body::from_stream(chunks),
            )
                .into_response()
        }),
    ))
    .await;
    let sources = world.home.service.sources();
    let expected = [
        ("silent", silent.base.clone(), "timeout"),
        ("broken", broken.base.clone(), "transient"),
        ("html", html.base.clone(), "structure"),
        ("flood", flood.base.clone(), "too-costly"),
        (
            "closed",
            Url::parse(&format!("http://{closed}/fhir")).unwrap(),
            "transient",
        ),
    ];
    for (name, base, _) in &expected {
        sources
            .add(settings(name, base.clone(), |c| {
                c.deadline = Duration::from_millis(800);
                c.max_response_bytes = 1024 * 1024;
            }))
            .unwrap();
    }
    let clinician = world.home.clinician();
    let response = world
        .home
        .get(
            &format!("Observation?patient=hc-1&code={LOINC}|{BP}&_count=100"),
            &clinician,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let (ids, issues) = matches_and_issues(&response.body);
    // The home store's and hovedstaden's readings all came back.
    assert_eq!(ids.len(), 8, "{ids:?}");
    assert_eq!(response.body["total"], 8);
    for (name, _, code) in &expected {
        let issue = issues
            .iter()
            .find(|issue| issue["details"]["coding"][0]["code"] == *name)
            .unwrap_or_else(|| panic!("no issue for {name}: {issues:?}"));
        assert_eq!(issue["severity"], "warning");
        assert_eq!(issue["code"], *code, "{name}: {issue}");
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap()
                .contains(&format!("'{name}'")),
            "{issue}"
        );
    }
    let shown = response.body.to_string();
    assert!(
        !shown.contains("hunter2") && !shown.contains("db01"),
        "{shown}"
    );
    assert!(!shown.contains("please log in"), "{shown}");

    // A read from a source that is down answers 503 naming it.
    let down = world
        .home
        .get("Observation/closed.anything", &clinician)
        .await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert!(
        common::diagnostics(&down).contains("'closed'"),
        "{}",
        down.body
    );
}

#[tokio::test]
async fn a_source_that_keeps_failing_is_skipped_for_a_while_and_the_answer_says_so() {
    let world = world().await;
    let broken =
        failing_source(Router::new().route("/", get(|| async { StatusCode::BAD_GATEWAY }))).await;
    world.add_source("broken", broken.base.clone());
    let clinician = world.home.clinician();
    let path = format!("Observation?patient=hc-1&code={LOINC}|{BP}");
    for _ in 0..3 {
        let response = world.home.get(&path, &clinician).await;
        let (_, issues) = matches_and_issues(&response.body);
        assert!(
            issues[0]["diagnostics"].as_str().unwrap().contains("502"),
            "{issues:?}"
        );
    }
    let asked = broken.requests();
    let response = world.home.get(&path, &clinician).await;
    let (ids, issues) = matches_and_issues(&response.body);
    assert_eq!(ids.len(), 8);
    let diagnostics = issues[0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("'broken' failed 3 times in a row and is not asked"),
        "{diagnostics}"
    );
    assert_eq!(broken.requests(), asked, "a skipped source is not asked");
    let status = world.home.service.sources().status();
    let broken_status = status.iter().find(|s| s.name == "broken").unwrap();
    assert_eq!(broken_status.failures_in_a_row, 3);
    assert!(broken_status.skipped_for_secs.is_some());
    let hovedstaden = status.iter().find(|s| s.name == "hovedstaden").unwrap();
    assert!(hovedstaden.last_success.is_some() && hovedstaden.latency_ms.is_some());
    assert_eq!(
        hovedstaden.types.as_ref().map(|t| t
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .contains("Observation")),
        Some(true)
    );
}

#[tokio::test]
async fn an_opted_out_patient_named_by_an_unconfined_clinician_is_refused_before_fan_out() {
    let world = world().await;
    let counting = world.counting_source().await;
    let citizen = world.home.citizen("hc-1");
    world
        .home
        .opt_out(&citizen, "hc-1", "Organization/clinic-y", &["Observation"])
        .await;
    let clinician = world.home.clinician_of("clinic-y");
    let refused = world
        .home
        .get("Observation?subject=Patient/hc-1", &clinician)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(counting.requests(), 0);
}

/// Readings taken at the same moment in several places page as one order: a source that
/// sorts and is read only up to the end of each page keeps its own order of ties, and every
/// reading is on exactly one page.
#[tokio::test]
async fn readings_of_the_same_moment_across_sources_page_once_each() {
    let world = world().await;
    let moment = "2026-06-10T12:00:00Z";
    let mut tied = vec![common::sources::patient("t-1", HC_CPR)];
    for n in 1..=9 {
        tied.push(observation(
            &format!("tie-{n}"),
            "t-1",
            BP,
            "vital-signs",
            moment,
        ));
    }
    let clinic = Harness::with_limits(
        Backend::Sqlite,
        PageLimits {
            default_count: 3,
            max_count: 3,
        },
    )
    .await
    .unwrap();
    clinic.import(tied).await.unwrap();
    world
        .home
        .import(vec![
            observation("home-tie-1", "hc-1", BP, "vital-signs", moment),
            observation("home-tie-2", "hc-1", BP, "vital-signs", moment),
        ])
        .await
        .unwrap();
    let address = serve(clinic.app.clone()).await;
    let token = world.dir.path().join("clinic.token");
    std::fs::write(&token, clinic.clinician_of("region-midtjylland")).unwrap();
    world
        .home
        .service
        .sources()
        .add(settings(
            "clinic",
            Url::parse(&format!("http://{address}/fhir/r4")).unwrap(),
            |c| c.auth = UpstreamAuth::BearerFile(token),
        ))
        .unwrap();
    let clinician = world.home.clinician();
    let search = format!("Observation?patient=hc-1&code={LOINC}|{BP}&_sort=-date");
    let all = world
        .home
        .ids(&format!("{search}&_count=100"), &clinician)
        .await;
    assert_eq!(all.len(), 2 + 2 + 6 + 9, "{all:?}");
    let paged = world
        .pages(&format!("{search}&_count=4"), &clinician, 19)
        .await;
    assert_eq!(paged, all, "every reading once, in one order");
    let unique: BTreeSet<&String> = paged.iter().collect();
    assert_eq!(unique.len(), paged.len());
}

#[tokio::test]
async fn a_history_says_that_the_sources_keep_their_own() {
    let world = world().await;
    let clinician = world.home.clinician();
    let warning = |bundle: &Value| -> Option<String> {
        (bundle["entry"].as_array()?.iter())
            .find_map(|e| e["response"]["outcome"]["issue"][0]["diagnostics"].as_str())
            .map(str::to_owned)
    };
    for path in ["Observation/_history", "_history"] {
        let history = world.home.get(path, &clinician).await;
        assert_eq!(history.status, StatusCode::OK, "{}", history.body);
        let said = warning(&history.body).unwrap_or_else(|| panic!("{path}: {}", history.body));
        assert!(said.contains("hovedstaden"), "{said}");
        // The versions at home are there.
        assert!(
            (history.body["entry"].as_array().unwrap().iter())
                .any(|e| e["resource"]["resourceType"] == "Observation"),
            "{}",
            history.body
        );
    }
    // Shared data is the home store's alone: nothing to say.
    let history = world.home.get("Organization/_history", &clinician).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(warning(&history.body), None, "{}", history.body);
    // A source's resource has the version the source holds now.
    let history = world
        .home
        .get("Observation/hovedstaden.hosp-bp-1/_history", &clinician)
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["total"], 1, "{}", history.body);
}

#[tokio::test]
async fn a_source_cannot_pass_off_a_device_as_an_installed_app() {
    let world = world().await;
    // A source named like a publisher answers a read of "its" Device with one that claims to
    // be the platform's record of an app, in no patient's record.
    let forged = json!({"resourceType": "Device", "id": "bp-monitor",
        "identifier": [{"system": "urn:healthcloud:app", "value": "examples/bp-monitor"}],
        "deviceName": [{"name": "Blood pressure monitor", "type": "user-friendly-name"}]});
    let declared = json!([
        {"type": "Patient", "searchParam": [{"name": "identifier"}]},
        {"type": "Device", "searchParam": [{"name": "patient"}]}
    ]);
    let routes = Router::new().route(
        "/fhir/Device/{id}",
        get(move || {
            let forged = forged.clone();
            async move { axum::Json(forged) }
        }),
    );
    let source = RecordingSource::start(declared, routes).await;
    world.add_source("examples", source.base.clone());
    let clinician = world.home.clinician();
    let response = world
        .home
        .get("Device/examples.bp-monitor", &clinician)
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    assert!(source.requests() > 0, "the source was asked");
}

/// Starts an export on the home node and waits for its manifest.
async fn export_manifest(home: &Harness, path: &str, token: &str) -> Value {
    let request = axum::http::Request::get(format!("/fhir/r4/{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .body(Body::empty())
        .unwrap();
    let started = home.send(request).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let status_url = started.headers["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    for _ in 0..300 {
        let status = home.get(&status_url, token).await;
        if status.status == StatusCode::OK {
            return status.body;
        }
        assert_eq!(status.status, StatusCode::ACCEPTED, "{}", status.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the export did not finish");
}

/// How many patients' data an export's error file says source `source` could not give.
fn patients_missing(outcomes: &[Value], source: &str) -> usize {
    (outcomes.iter())
        .filter_map(|o| o["issue"][0]["diagnostics"].as_str())
        .filter(|said| said.contains(&format!("source '{source}'")))
        .filter_map(|said| {
            said.split(" of ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// The NDJSON lines of an export file.
async fn export_lines(home: &Harness, url: &str, token: &str) -> Vec<Value> {
    use tower::ServiceExt as _;
    let request = axum::http::Request::get(url.strip_prefix("http://fhir.test").unwrap())
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = home.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (String::from_utf8(body.to_vec()).unwrap().lines())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn an_export_reads_what_stays_at_the_sources_and_names_a_source_that_failed() {
    let world = world().await;
    let home = &world.home;
    let token = home.backend_service(
        "registry",
        "purpose:quality system/Observation.rs system/Patient.rs",
    );
    let manifest = export_manifest(home, "Patient/$export?_type=Observation", &token).await;
    assert_eq!(manifest["error"], json!([]), "{manifest}");
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let lines = export_lines(home, url, &token).await;
    // (Both nodes hold the fixture's patients too, matched across them by CPR number.)
    let hers: BTreeSet<String> = (lines.iter())
        .filter(|o| o["subject"]["reference"] == "Patient/hc-1")
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: BTreeSet<String> = ["home-bp-1", "home-bp-2", "hovedstaden.hosp-hba1c"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    expected.extend((1..=6).map(|month| format!("hovedstaden.hosp-bp-{month}")));
    assert_eq!(hers, expected, "her home readings and the hospital's");
    let all: BTreeSet<&str> = lines.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(all.len(), lines.len(), "each once");
    // Every reading from the source is filed under a home patient, naming its origin.
    for reading in (lines.iter()).filter(|o| o["id"].as_str().unwrap().starts_with("hovedstaden."))
    {
        let subject = reading["subject"]["reference"].as_str().unwrap();
        assert!(
            ["Patient/hc-1", "Patient/pat-a", "Patient/pat-b"].contains(&subject),
            "{reading}"
        );
        assert_eq!(
            reading["meta"]["source"],
            "urn:healthcloud:source:hovedstaden"
        );
    }

    // A source that is down: the others' data, and an error naming it and how many
    // patients it could not give (none by name).
    let down = Url::parse("http://127.0.0.1:9/fhir/r4").unwrap();
    home.service
        .sources()
        .add(settings("down", down, |c| {
            c.deadline = Duration::from_secs(2)
        }))
        .unwrap();
    let manifest = export_manifest(home, "Patient/$export?_type=Observation", &token).await;
    assert_eq!(manifest["output"][0]["count"], lines.len(), "{manifest}");
    let error = manifest["error"][0]["url"].as_str().unwrap();
    let outcomes = export_lines(home, error, &token).await;
    let asked_down = patients_missing(&outcomes, "down");
    assert!(asked_down >= 1, "{outcomes:?}");
    let named = outcomes.iter().any(|o| o.to_string().contains("Patient/"));
    assert!(!named, "the errors name no patient: {outcomes:?}");

    // She opts out of the service: nothing of hers, from home or the sources, and no source
    // is asked about her.
    let opted = home
        .opt_out(
            &home.citizen("hc-1"),
            "hc-1",
            "Device/research.registry",
            &[],
        )
        .await;
    assert_eq!(opted.status, StatusCode::CREATED, "{}", opted.body);
    let manifest = export_manifest(home, "Patient/$export?_type=Observation", &token).await;
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let lines = export_lines(home, url, &token).await;
    assert!(
        !lines
            .iter()
            .any(|o| o["subject"]["reference"] == "Patient/hc-1")
    );
    let error = manifest["error"][0]["url"].as_str().unwrap();
    let outcomes = export_lines(home, error, &token).await;
    assert_eq!(
        patients_missing(&outcomes, "down"),
        asked_down - 1,
        "{outcomes:?}"
    );
}
