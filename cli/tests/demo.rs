//! The cross-sector demo world `healthcloud up` creates on a first start, through the real
//! binary over loopback HTTP: each sector's data in its own FHIR server, the apps showing a
//! patient's whole course with each item's origin.

mod common;

use std::collections::BTreeMap;

use common::{Up, free_port, http_get};

#[test]
fn up_shows_a_patients_readings_from_home_the_gp_and_the_hospital_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let port = free_port();
    // The demo world as a first start makes it (500 patients, a few seconds).
    let up = Up::start(&data_dir, port, None);
    // `up` printed each sector's own server; each is a FHIR server of its own that answers
    // only with a token it issued.
    let mut sources = BTreeMap::new();
    for name in ["gp", "municipality"] {
        let line = up.line_containing(&format!("    {name} "));
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL for {name} in '{line}'"))
            .to_owned();
        sources.insert(name, base);
    }
    for base in sources.values() {
        let (host_port, path) = base["http://".len()..].split_once('/').unwrap();
        let source_port: u16 = host_port.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(source_port, port);
        let (status, _) = http_get(source_port, &format!("/{path}/metadata"), "");
        assert_eq!(status, 200, "{base} serves FHIR");
        let (status, _) = http_get(source_port, &format!("/{path}/Observation"), "");
        assert_eq!(status, 401, "{base} answers only with its own tokens");
    }
    // Tokens are printed on the line after their description.
    up.wait_for_line("TOKEN: clinician in hovedstaden (FHIR API");
    let fhir_token = up.line_containing("eyJ").trim().to_owned();
    up.wait_for_line("APP_TOKEN: clinician in hovedstaden who opened patient");
    let app_token = up.line_containing("eyJ").trim().to_owned();

    // A patient the municipality's home care visits: their nurse's readings come back
    // through the region's FHIR API, named as the municipality's, with the patient
    // reference translated to the region's patient.
    let municipal_token =
        std::fs::read_to_string(data_dir.join("sectors/municipality/region-token")).unwrap();
    let municipal = get_json(
        &format!("{}/Observation?_count=1", sources["municipality"]),
        &municipal_token,
    );
    let visited = municipal["entry"][0]["resource"]["subject"]["reference"]
        .as_str()
        .unwrap_or_else(|| panic!("the municipality holds home-care observations: {municipal}"))
        .trim_start_matches("Patient/")
        .to_owned();
    let through_region = get_json(
        &format!(
            "{}/fhir/r4/Observation?patient={visited}&_count=500",
            up.url
        ),
        &fhir_token,
    );
    let from_municipality: Vec<&serde_json::Value> = through_region["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|r| r["meta"]["source"] == "urn:healthcloud:source:municipality")
        .collect();
    assert!(!from_municipality.is_empty(), "{through_region}");
    for reading in from_municipality {
        assert!(reading["id"].as_str().unwrap().starts_with("municipality."));
        assert_eq!(
            reading["subject"]["reference"],
            format!("Patient/{visited}")
        );
    }

    // The last 90 days' readings, and the newest earlier one of each place with none in them
    // (the demo data ends on its own fixed day, whatever today is).
    let (status, page) = http_get(port, "/apps/hovedstaden/examples/bp-monitor/", &app_token);
    assert_eq!(status, 200, "{page}");
    let mut origins = BTreeMap::new();
    for cell in page.split("<td class=\"origin\">").skip(1) {
        let origin = cell.split('<').next().unwrap();
        *origins.entry(origin.to_owned()).or_insert(0) += 1;
    }
    for origin in ["home", "gp", "hospital"] {
        assert!(
            origins.contains_key(origin),
            "the readings table has readings from {origin}: {origins:?}\n{page}"
        );
    }

    // The summary is assembled from more than one organization's record.
    let (status, summary) = http_get(
        port,
        "/apps/hovedstaden/examples/patient-summary/",
        &app_token,
    );
    assert_eq!(status, 200, "{summary}");
    let summary_origins: std::collections::BTreeSet<&str> = summary
        .split("<span class=\"origin\">(")
        .skip(1)
        .map(|item| item.split(')').next().unwrap())
        .collect();
    assert!(
        summary_origins.contains("gp") && summary_origins.contains("hospital"),
        "{summary_origins:?}"
    );
}

/// A FHIR JSON answer to a GET with `token`, which must succeed.
fn get_json(url: &str, token: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.json().await.unwrap()
    })
}
