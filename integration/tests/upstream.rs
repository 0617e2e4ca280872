//! The upstream client against an independently written FHIR server (Medplum's engine,
//! `tests/upstream/`) and against hostile ones: whatever a source answers, the client yields
//! checked FHIR or an error naming the source, within the deadline and the size cap, and
//! never the upstream's own error body.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use healthcloud_integration::federation::{CompartmentPatient, FederatedSource, search_source};
use healthcloud_integration::open_database;
use healthcloud_integration::patient_index::{IdentityError, PatientIndex};
use healthcloud_integration::query::{Alternative, PageLimits, SearchQuery, parse_restriction};
use healthcloud_integration::upstream::{
    Upstream, UpstreamAuth, UpstreamCapabilities, UpstreamConfig, UpstreamError,
};
use healthcloud_platform::db::Database;
use reqwest::Url;
use serde_json::{Value, json};

const CPR: &str = "urn:oid:1.2.208.176.1.2";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The upstream server's npm packages, installed once (`npm ci`, from the lockfile).
fn install_upstream() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = repository().join("tests/upstream");
            if !dir.join("node_modules/@medplum/fhir-router").exists() {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .expect(
                        "npm runs (Node.js 20 and npm are needed for the upstream FHIR server)",
                    );
                assert!(status.success(), "npm ci in tests/upstream failed");
            }
            dir
        })
        .clone()
}

/// A running Medplum upstream, killed when dropped.
struct Medplum {
    child: Child,
    base: Url,
}

impl Medplum {
    fn start(extra: &[&str]) -> Medplum {
        let dir = install_upstream();
        let mut child = Command::new("node")
            .arg("--experimental-websocket")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--name", "gp", "--data"])
            .arg(dir.join("data/gp.json"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the upstream did not start: {line:?}"));
        Medplum {
            base: Url::parse(base).unwrap(),
            child,
        }
    }

    fn upstream(&self, auth: UpstreamAuth) -> Upstream {
        let mut config = UpstreamConfig::new("gp", self.base.clone());
        config.auth = auth;
        config.deadline = Duration::from_secs(30);
        Upstream::open(config).unwrap()
    }
}

impl Drop for Medplum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] != "outcome")
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_medplum_upstream_declares_its_types_finds_a_patient_by_cpr_and_answers_searches_and_reads()
 {
    let medplum = Medplum::start(&[]);
    let gp = medplum.upstream(UpstreamAuth::None);

    let capabilities = gp.capabilities().await.unwrap();
    assert!(capabilities.searches("Patient", "identifier"));
    assert!(capabilities.searches("Observation", "patient"));
    assert!(capabilities.searches("Observation", "code"));
    assert!(!capabilities.types.contains_key("MedicationRequest"));

    let patients = gp
        .search(
            "Patient",
            &[("identifier".into(), format!("{CPR}|0101701234"))],
        )
        .await
        .unwrap();
    assert_eq!(ids(&patients), ["gp-patient-1"]);

    let readings = gp
        .search(
            "Observation",
            &[
                ("patient".into(), "Patient/gp-patient-1".into()),
                ("code".into(), "http://loinc.org|85354-9".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids(&readings), ["gp-bp-1-1", "gp-bp-1-2", "gp-bp-1-3"]);

    let reading = gp.read("Observation", "gp-bp-2-1").await.unwrap().unwrap();
    assert_eq!(reading["subject"]["reference"], "Patient/gp-patient-2");
    assert!(
        gp.read("Observation", "no-such-id")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_source_with_a_token_gets_it_and_a_wrong_token_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "gp-secret-token\n").unwrap();
    let medplum = Medplum::start(&["--bearer-token-file", token_file.to_str().unwrap()]);

    let gp = medplum.upstream(UpstreamAuth::BearerFile(token_file));
    assert!(gp.read("Patient", "gp-patient-1").await.unwrap().is_some());

    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "not-the-token").unwrap();
    let refused = medplum
        .upstream(UpstreamAuth::BearerFile(wrong_file))
        .read("Patient", "gp-patient-1")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, UpstreamError::Unauthorized { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("check the token"), "{refused}");

    let empty_file = dir.path().join("empty");
    std::fs::write(&empty_file, "  \n").unwrap();
    let mut config = UpstreamConfig::new("gp", medplum.base.clone());
    config.auth = UpstreamAuth::BearerFile(empty_file);
    let error = Upstream::open(config).unwrap_err().to_string();
    assert!(error.contains("is empty"), "{error}");
}

/// A hostile source on loopback answering every request with `router`.
async fn hostile(router: Router, configure: impl FnOnce(&mut UpstreamConfig)) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut config = UpstreamConfig::new(
        "hostile",
        Url::parse(&format!("http://{address}/fhir")).unwrap(),
    );
    configure(&mut config);
    Upstream::open(config).unwrap()
}

#[tokio::test]
async fn a_source_that_never_answers_fails_at_its_deadline_naming_it() {
    let source = hostile(
        Router::new().fallback(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
        |config| config.deadline = Duration::from_millis(300),
    )
    .await;
    let error = source.search("Observation", &[]).await.unwrap_err();
    assert!(matches!(error, UpstreamError::Deadline { .. }), "{error}");
    assert!(error.to_string().contains("'hostile'"), "{error}");
}

#[tokio::test]
async fn a_source_error_body_is_never_passed_on() {
    let source = hostile(
        Router::new().fallback(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "java.sql.SQLException: password=hunter2 at db01.hospital.internal",
            )
        }),
        |_| {},
    )
    .await;
    let error = source.search("Observation", &[]).await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::Status { status, .. } if status == StatusCode::INTERNAL_SERVER_ERROR),
        "{error}"
    );
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("db01"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_source_answering_html_or_the_wrong_fhir_is_refused_as_not_fhir() {
    let html = hostile(
        Router::new().fallback(|| async { axum::response::Html("<html>login</html>") }),
        |_| {},
    )
    .await;
    let error = html.search("Observation", &[]).await.unwrap_err();
    assert!(matches!(error, UpstreamError::NotFhir { .. }), "{error}");

    let wrong = hostile(
        Router::new()
            .route(
                "/fhir/Observation",
                get(|| async {
                    axum::Json(json!({"resourceType": "Bundle", "type": "collection"}))
                }),
            )
            .route(
                "/fhir/Observation/{id}",
                get(|| async {
                    axum::Json(json!({"resourceType": "Observation", "id": "someone-else"}))
                }),
            ),
        |_| {},
    )
    .await;
    let error = wrong.search("Observation", &[]).await.unwrap_err();
    assert!(error.to_string().contains("searchset"), "{error}");
    let error = wrong.read("Observation", "asked-for").await.unwrap_err();
    assert!(error.to_string().contains("someone-else"), "{error}");
}

#[tokio::test]
async fn a_source_streaming_past_its_cap_is_cut_off() {
    let source = hostile(
        Router::new().fallback(|| async {
            // 4 MiB in chunks, no length announced.
            let chunks = futures_util::stream::iter(
                (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])),
            );
            (
                [("content-type", "application/fhir+json")],
                Body::from_stream(chunks),
            )
                .into_response()
        }),
        |config| config.max_response_bytes = 1024 * 1024,
    )
    .await;
    let error = source.search("Observation", &[]).await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::TooLarge { limit, .. } if limit == 1024 * 1024),
        "{error}"
    );
}

#[tokio::test]
async fn a_source_that_refuses_connections_is_unreachable_without_the_query_in_the_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let source = Upstream::open(UpstreamConfig::new(
        "closed",
        Url::parse(&format!("http://{address}/fhir")).unwrap(),
    ))
    .unwrap();
    let error = source
        .search(
            "Patient",
            &[("identifier".into(), format!("{CPR}|0101701234"))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::Unreachable { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("0101701234"), "{error}");
}

/// A fresh database with the integration cloud's schema on each backend the tests can reach.
async fn databases() -> Vec<(tempfile::TempDir, Database)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("fhir.db").display());
    let mut databases = vec![(dir, open_database(&sqlite).await.unwrap())];
    if let Some(url) = healthcloud_platform::testing::postgres_database("hc_upstream_test").await {
        databases.push((
            tempfile::tempdir().unwrap(),
            open_database(&url).await.unwrap(),
        ));
    }
    databases
}

#[tokio::test]
async fn a_patient_is_matched_at_a_source_by_cpr_and_remembered_without_asking_again() {
    for (_dir, db) in databases().await {
        let medplum = Medplum::start(&[]);
        let gp = medplum.upstream(UpstreamAuth::None);
        let index = PatientIndex::new(db.clone(), Duration::from_secs(3600));

        let found = index.at_source(&gp, "hc-1", "0101701234").await.unwrap();
        assert_eq!(found.as_deref(), Some("gp-patient-1"));
        assert_eq!(
            index
                .patient_of("gp", "gp-patient-1")
                .await
                .unwrap()
                .as_deref(),
            Some("hc-1")
        );
        assert_eq!(
            index.at_source(&gp, "hc-3", "0303903456").await.unwrap(),
            None
        );

        // The source goes away: what the index holds still answers, unknown patients included.
        drop(medplum);
        assert_eq!(
            index
                .at_source(&gp, "hc-1", "0101701234")
                .await
                .unwrap()
                .as_deref(),
            Some("gp-patient-1")
        );
        assert_eq!(
            index.at_source(&gp, "hc-3", "0303903456").await.unwrap(),
            None
        );

        // A stale match is looked up again, so the source's absence now shows.
        let stale = PatientIndex::new(db, Duration::ZERO);
        let error = stale
            .at_source(&gp, "hc-1", "0101701234")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                IdentityError::Upstream(UpstreamError::Unreachable { .. })
            ),
            "{error}"
        );
    }
}

fn patient(id: &str, cpr: &str) -> Value {
    json!({"resourceType": "Patient", "id": id,
           "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}]})
}

fn searchset(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset",
           "entry": resources.into_iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_source_ignoring_the_identifier_or_holding_a_cpr_twice_matches_nobody() {
    let (_dir, db) = databases().await.remove(0);
    let index = PatientIndex::new(db, Duration::from_secs(3600));

    // Answers every search with someone else: an upstream that ignored `identifier`.
    let ignoring = hostile(
        Router::new().fallback(|| async {
            axum::Json(searchset(vec![patient("someone-else", "0909909999")]))
        }),
        |_| {},
    )
    .await;
    assert_eq!(
        index
            .at_source(&ignoring, "hc-1", "0101701234")
            .await
            .unwrap(),
        None
    );

    let twice = hostile(
        Router::new().fallback(|| async {
            axum::Json(searchset(vec![
                patient("a", "0101701234"),
                patient("b", "0101701234"),
            ]))
        }),
        |config| config.name = "twice".into(),
    )
    .await;
    let refused = index
        .at_source(&twice, "hc-1", "0101701234")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IdentityError::Ambiguous { count: 2, .. }),
        "{refused}"
    );
    assert_eq!(index.patient_of("twice", "a").await.unwrap(), None);
}

fn gp_source(upstream: Upstream) -> FederatedSource {
    let mut capabilities = UpstreamCapabilities::default();
    capabilities.types.insert(
        "Observation".into(),
        ["patient", "code", "category"].map(String::from).into(),
    );
    FederatedSource {
        upstream,
        capabilities,
    }
}

fn observation_query(
    filters: &[(&str, &str)],
    restriction: Option<(&str, &[(&str, &str)])>,
) -> SearchQuery {
    let pairs: Vec<(String, String)> = filters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut query = SearchQuery::parse("Observation", &pairs, PageLimits::default()).unwrap();
    if let Some((patient, restriction)) = restriction {
        let pairs: Vec<(String, String)> = restriction
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        query.constraints.groups = vec![vec![Alternative {
            compartment: Some(patient.to_owned()),
            filters: parse_restriction(query.type_def, &pairs).unwrap(),
        }]];
    }
    query
}

const HC: CompartmentPatient<'static> = CompartmentPatient {
    id: "hc-1",
    cpr: "0101701234",
};

#[tokio::test]
async fn a_sources_readings_come_back_named_through_healthcloud_in_the_patients_compartment() {
    let (_dir, db) = databases().await.remove(0);
    let index = PatientIndex::new(db, Duration::from_secs(3600));
    let medplum = Medplum::start(&[]);
    let mut source = gp_source(medplum.upstream(UpstreamAuth::None));
    source.capabilities = source.upstream.capabilities().await.unwrap();

    let query = observation_query(
        &[("code", "http://loinc.org|85354-9")],
        Some(("hc-1", &[("category", "vital-signs")])),
    );
    let answer = search_source(&source, &index, &query, HC).await.unwrap();
    assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
    let mut ids: Vec<&str> = answer.resources.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["gp.gp-bp-1-1", "gp.gp-bp-1-2", "gp.gp-bp-1-3"]);
    for reading in &answer.resources {
        assert_eq!(reading.resource["subject"]["reference"], "Patient/hc-1");
        assert_eq!(
            reading.resource["meta"]["source"],
            "urn:healthcloud:source:gp"
        );
    }

    // A scope restricted to laboratory results reaches none of the GP's vital signs.
    let laboratory = observation_query(&[], Some(("hc-1", &[("category", "laboratory")])));
    let answer = search_source(&source, &index, &laboratory, HC)
        .await
        .unwrap();
    assert!(answer.resources.is_empty());

    // A patient the source does not hold: nothing, and nothing dropped.
    let stranger = CompartmentPatient {
        id: "hc-9",
        cpr: "0909909999",
    };
    let answer = search_source(&source, &index, &observation_query(&[], None), stranger)
        .await
        .unwrap();
    assert!(answer.resources.is_empty() && answer.dropped.is_empty());
}

fn observation(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "encounter": {"reference": "Encounter/enc-7"},
           "meta": "not an object",
           "effectiveDateTime": "2026-03-01T08:00:00Z"})
}

#[tokio::test]
async fn a_source_that_ignores_the_query_leaks_no_other_patient_and_nothing_outside_the_scope() {
    let (_dir, db) = databases().await.remove(0);
    let index = PatientIndex::new(db, Duration::from_secs(3600));
    let observation_searches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = observation_searches.clone();
    let source = gp_source(
        hostile(
            Router::new()
                .route(
                    "/fhir/Patient",
                    get(|| async { axum::Json(searchset(vec![patient("src-1", "0101701234")])) }),
                )
                .route(
                    "/fhir/Observation",
                    get(move |headers: axum::http::HeaderMap| {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // The same patient named absolutely, under the source's own base.
                        let host = headers["host"].to_str().unwrap().to_owned();
                        let mut absolute = observation("mine-absolute", "src-1", "vital-signs");
                        absolute["subject"]["reference"] =
                            json!(format!("http://{host}/fhir/Patient/src-1"));
                        async move {
                            let mut bundle = searchset(vec![
                                observation("mine", "src-1", "vital-signs"),
                                absolute,
                                observation("lab", "src-1", "laboratory"),
                                observation("theirs", "src-2", "vital-signs"),
                                json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/src-1"}}),
                            ]);
                            bundle["entry"].as_array_mut().unwrap().push(json!({
                                "resource": {"resourceType": "OperationOutcome", "id": "warn"},
                                "search": {"mode": "outcome"}}));
                            axum::Json(bundle)
                        }
                    }),
                ),
            |config| config.name = "gp".into(),
        )
        .await,
    );

    let query = observation_query(&[], Some(("hc-1", &[("category", "vital-signs")])));
    let answer = search_source(&source, &index, &query, HC).await.unwrap();
    let ids: Vec<&str> = answer.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["gp.mine", "gp.mine-absolute"]);
    assert_eq!(
        answer.resources[0].resource["subject"]["reference"],
        "Patient/hc-1"
    );
    assert_eq!(
        answer.resources[1].resource["subject"]["reference"],
        "Patient/hc-1"
    );
    assert_eq!(
        answer.resources[0].resource["encounter"]["reference"],
        "Encounter/gp.enc-7"
    );
    let mut dropped: Vec<(String, String)> = answer
        .dropped
        .iter()
        .map(|d| (d.resource.clone(), d.reason.clone()))
        .collect();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            (
                "Condition/c".to_owned(),
                "its type is \"Condition\", not Observation".to_owned()
            ),
            (
                "Observation/lab".to_owned(),
                "it does not satisfy the search or the caller's access".to_owned()
            ),
            (
                "Observation/theirs".to_owned(),
                "it is not in the patient's compartment".to_owned()
            ),
        ]
    );
    assert_eq!(
        observation_searches.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A source that cannot search the type by patient is never asked for it.
    let mut undeclared = source.clone();
    undeclared.capabilities.types.insert(
        "Observation".into(),
        ["code", "category"].map(String::from).into(),
    );
    let answer = search_source(&undeclared, &index, &query, HC)
        .await
        .unwrap();
    assert!(answer.resources.is_empty() && answer.dropped.is_empty());
    assert_eq!(
        observation_searches.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A patient the source does not know is never searched for.
    let stranger = CompartmentPatient {
        id: "hc-9",
        cpr: "0909909999",
    };
    let answer = search_source(&source, &index, &query, stranger)
        .await
        .unwrap();
    assert!(answer.resources.is_empty());
    assert_eq!(
        observation_searches.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
