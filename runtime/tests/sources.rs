//! Apps over upstream sources, from the app's side: a search answered by the home store and an
//! organization's FHIR server (a loopback server here). An app built against
//! `healthcloud:platform@0.2.0` is told which sources are missing from a partial answer and
//! where each resource came from; an app built against the frozen 0.1.0 still installs, runs
//! and gets the resources of the sources that answered.

use healthcloud_runtime::testing as common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::{Host, REGION, test_component};
use healthcloud_integration::sources::SourceSettings;
use healthcloud_integration::upstream::UpstreamConfig;
use serde_json::{Value, json};
use url::Url;

/// The CPR number system: how a source finds the patient.
const CPR: &str = "urn:oid:1.2.208.176.1.2";

/// What a failing source says about itself: it must never reach an app.
const LEAK: &str = "ORA-01017: invalid username/password at db01.gp.internal";

fn path(app: &str, rest: &str) -> String {
    format!("/apps/{REGION}/tests/{app}/{rest}")
}

/// A GP system on loopback that declares Observations searchable by patient, holds `pat-a`
/// (as `gp-17`, found by the CPR number of the harness's home record) and answers Observation
/// searches with `observations`.
async fn gp_system(host: &Host, observations: Router) {
    let fixture = common::fixture();
    let home = fixture["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .find(|resource| resource["resourceType"] == "Patient" && resource["id"] == "pat-a")
        .expect("the harness's home record of pat-a");
    assert_eq!(home["identifier"][0]["system"], CPR);
    let cpr = home["identifier"][0]["value"].as_str().unwrap().to_owned();
    let patients = json!({"resourceType": "Bundle", "type": "searchset", "entry": [{
        "resource": {"resourceType": "Patient", "id": "gp-17",
                     "identifier": [{"system": CPR, "value": cpr}]},
        "search": {"mode": "match"}}]});
    let router = Router::new()
        .route(
            "/fhir/metadata",
            get(|| async {
                axum::Json(json!({"resourceType": "CapabilityStatement",
                "rest": [{"mode": "server", "resource": [
                    {"type": "Patient", "searchParam": [{"name": "identifier"}]},
                    {"type": "Observation", "searchParam": [{"name": "patient"}]}
                ]}]}))
            }),
        )
        .route(
            "/fhir/Patient",
            get(move || async move { axum::Json(patients) }),
        )
        .nest("/fhir/Observation", observations);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let base = Url::parse(&format!("http://{address}/fhir")).unwrap();
    host.service
        .sources()
        .add(SourceSettings {
            upstream: UpstreamConfig::new("gp", base),
            organization: None,
            types: None,
        })
        .unwrap();
}

/// A GP system whose Observation searches fail with a 500 that names its database.
async fn failing_gp(host: &Host) {
    let failing = Router::new().route(
        "/",
        get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, LEAK) }),
    );
    gp_system(host, failing).await;
}

/// The home store's blood pressures of `pat-a` (the harness's fixture).
const HOME_READINGS: [&str; 3] = ["a-bp-1", "a-bp-2", "a-bp-3"];

fn sorted_ids(ids: &Value) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_partial_answer_names_the_missing_source_to_an_app_and_keeps_the_rest() {
    let host = Host::new().await;
    failing_gp(&host).await;
    host.install_component("partial-answer", None).unwrap();
    let answer = host
        .get(&path("partial-answer", "search"), &host.clinician("pat-a"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let page = answer.json();
    assert_eq!(page["complete"], false, "{page}");
    assert_eq!(sorted_ids(&page["ids"]), HOME_READINGS);
    let incomplete = page["incomplete"].as_array().unwrap();
    assert_eq!(incomplete.len(), 1, "{page}");
    assert_eq!(incomplete[0]["source"], "gp");
    assert_eq!(incomplete[0]["code"], "transient");
    let diagnostics = incomplete[0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("gp"), "{diagnostics}");
    assert!(
        !answer.body.contains("ORA-01017") && !answer.body.contains("db01"),
        "the source's own error body reached the app: {}",
        answer.body
    );
}

#[tokio::test]
async fn with_every_source_answering_the_page_is_complete_and_names_each_origin() {
    let host = Host::new().await;
    let readings = Router::new().route(
        "/",
        get(|| async {
            axum::Json(
                json!({"resourceType": "Bundle", "type": "searchset", "entry": [{
                "resource": {"resourceType": "Observation", "id": "gp-bp-1", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                    "subject": {"reference": "Patient/gp-17"},
                    "effectiveDateTime": "2026-03-01T10:00:00Z"},
                "search": {"mode": "match"}}]}),
            )
        }),
    );
    gp_system(&host, readings).await;
    host.install_component("partial-answer", None).unwrap();
    let answer = host
        .get(&path("partial-answer", "search"), &host.clinician("pat-a"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let page = answer.json();
    assert_eq!(page["complete"], true, "{page}");
    assert_eq!(page["incomplete"], json!([]));
    let mut expected: Vec<String> = HOME_READINGS.map(str::to_owned).to_vec();
    expected.push("gp.gp-bp-1".into());
    expected.sort();
    assert_eq!(sorted_ids(&page["ids"]), expected);
    let ids = page["ids"].as_array().unwrap();
    let origins = page["origins"].as_array().unwrap();
    let from_gp = ids.iter().position(|id| id == "gp.gp-bp-1").unwrap();
    assert_eq!(origins[from_gp], "urn:healthcloud:source:gp");
}

/// The platform interfaces a component imports, `name@version`.
fn platform_imports(bytes: &[u8]) -> Vec<String> {
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::ComponentImportSection(section) = payload.unwrap() {
            for import in section {
                let name = import.unwrap().name.name;
                if name.starts_with("healthcloud:platform/") {
                    imports.push(name.to_owned());
                }
            }
        }
    }
    imports.sort();
    imports
}

#[tokio::test]
async fn an_app_built_against_0_1_still_installs_runs_and_gets_what_the_sources_answered() {
    let (_, bytes) = test_component("contract-0-1");
    assert_eq!(
        platform_imports(&bytes),
        [
            "healthcloud:platform/context@0.1.0",
            "healthcloud:platform/fhir@0.1.0"
        ],
        "the component no longer proves the 0.1.0 contract"
    );
    let host = Host::new().await;
    failing_gp(&host).await;
    host.install_component("contract-0-1", None).unwrap();
    let token = host.clinician("pat-a");
    let context = host.get(&path("contract-0-1", "context"), &token).await;
    assert_eq!(context.status, StatusCode::OK, "{}", context.body);
    assert_eq!(
        context.json(),
        json!({"app-version": "0.1.0", "patient": "pat-a"})
    );
    let search = host.get(&path("contract-0-1", "search"), &token).await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.body);
    let found = search.json();
    assert_eq!(sorted_ids(&found["ids"]), HOME_READINGS);
    assert_eq!(found["total"], 3);
}

#[tokio::test]
async fn apps_built_against_either_version_run_side_by_side() {
    let host = Host::new().await;
    host.install_component("contract-0-1", None).unwrap();
    host.install_component("partial-answer", None).unwrap();
    let token = host.clinician("pat-b");
    let old = host.get(&path("contract-0-1", "search"), &token).await;
    let new = host.get(&path("partial-answer", "search"), &token).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.body);
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
    assert_eq!(old.json()["ids"], json!(["b-bp-1"]));
    assert_eq!(new.json()["ids"], json!(["b-bp-1"]));
    assert_eq!(new.json()["complete"], true);
}

/// The blood-pressure app, as a clinician sees it, when the GP system does not answer: the
/// home store's readings, and a sentence that the GP's are not shown.
#[tokio::test]
async fn bp_monitor_says_which_place_did_not_answer_and_shows_the_rest() {
    let host = Host::new().await;
    failing_gp(&host).await;
    let (manifest, bytes) = common::example_app("bp-monitor");
    host.install(REGION, &manifest, &bytes, None).unwrap();
    let page = host
        .get(
            &format!("/apps/{REGION}/examples/bp-monitor/"),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("<strong>138/86 mmHg</strong>"),
        "the home store's readings: {}",
        page.body
    );
    assert!(
        page.body
            .contains("Not shown: readings from <span class=\"origin\">gp</span>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("ORA-01017"), "{}", page.body);
}
