//! Another region's healthcloud as a source: its FHIR API, reached over loopback HTTP with a
//! token it issued, answers the upstream client and a federated search like any FHIR server,
//! under its own policy.

mod common;

use std::time::Duration;

use common::{Backend, Harness};
use healthcloud_integration::federation::{CompartmentPatient, FederatedSource, search_source};
use healthcloud_integration::patient_index::{PatientIndex, Remembered};
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::upstream::{Upstream, UpstreamAuth, UpstreamConfig};
use reqwest::Url;

#[tokio::test]
async fn a_patients_readings_in_another_region_come_back_through_this_one() {
    // The other region: its FHIR API on a loopback port.
    let other = Harness::new(Backend::Sqlite).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = other.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, other.clinician_of("hospital-hovedstaden")).unwrap();
    let mut config = UpstreamConfig::new(
        "hovedstaden",
        Url::parse(&format!("http://{address}/fhir/r4")).unwrap(),
    );
    config.auth = UpstreamAuth::BearerFile(token);
    let upstream = Upstream::open(config).unwrap();
    let source = FederatedSource {
        capabilities: upstream.capabilities().await.unwrap().into(),
        upstream,
    };
    assert!(source.capabilities.searches("Observation", "patient"));
    assert!(source.capabilities.searches("Patient", "identifier"));

    // This region: its own database for the patient index.
    let here = Harness::new(Backend::Sqlite).await.unwrap();
    let index = PatientIndex::new(here.store.database().clone(), Duration::from_secs(60));
    let mut query = SearchQuery::parse(
        "Observation",
        &[("code".into(), "http://loinc.org|85354-9".into())],
        PageLimits::default(),
    )
    .unwrap();
    query.constraints.groups = vec![vec![healthcloud_integration::query::Alternative {
        compartment: Some("local-7".into()),
        filters: vec![],
    }]];
    let patient = CompartmentPatient {
        id: "local-7",
        cpr: "7501504321",
        remembered: &Remembered::NOT_READ,
    };
    let answer = search_source(&source, &index, &query, patient)
        .await
        .unwrap();
    assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
    assert!(!answer.resources.is_empty());
    for reading in &answer.resources {
        let reading: serde_json::Value = serde_json::from_str(&reading.content).unwrap();
        assert!(
            reading["id"]
                .as_str()
                .unwrap()
                .starts_with("hovedstaden.a-bp-")
        );
        assert_eq!(reading["subject"]["reference"], "Patient/local-7");
        assert_eq!(
            reading["meta"]["source"],
            "urn:healthcloud:source:hovedstaden"
        );
    }
}
