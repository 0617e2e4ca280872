//! The example apps on the host: real data from the FHIR store, "denied" when the scope,
//! the grant or the patient's consent says no, and audited either way.

use healthcloud_runtime::testing as common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Host, REGION, example_app};
use healthcloud_integration::policy::AccessContext;
use healthcloud_package::manifest::{Capability, Manifest};
use healthcloud_platform::auth::Role;

const BP: &str = "/apps/testregion/examples/bp-monitor/";

async fn with_bp_monitor() -> (Host, std::sync::Arc<healthcloud_runtime::Install>) {
    let host = Host::new().await;
    let (manifest, bytes) = example_app("bp-monitor");
    let install = host.install(REGION, &manifest, &bytes, None).unwrap();
    (host, install)
}

#[tokio::test]
async fn bp_monitor_shows_the_patients_latest_reading_from_the_store() {
    let (host, _) = with_bp_monitor().await;
    let page = host.get(BP, &host.clinician("pat-a")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("<strong>138/86 mmHg</strong>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Åse"),
        "the patient's name: {}",
        page.body
    );
    assert!(page.body.contains("<svg"), "the trend chart: {}", page.body);
    let other = host.get(BP, &host.clinician("pat-b")).await;
    assert!(
        other.body.contains("<strong>119/77 mmHg</strong>"),
        "{}",
        other.body
    );
    let json = host
        .get(&format!("{BP}api/readings"), &host.clinician("pat-a"))
        .await;
    let readings = json.json();
    assert_eq!(
        readings["readings"].as_array().unwrap().len(),
        3,
        "{readings:#}"
    );
    assert_eq!(readings["latest"]["systolic"], 138.0);
    let flagged: Vec<bool> = readings["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flagged"].as_bool().unwrap())
        .collect();
    assert_eq!(
        flagged.iter().filter(|f| **f).count(),
        1,
        "only 151/95 is high: {readings:#}"
    );
}

#[tokio::test]
async fn bp_monitor_says_denied_without_the_users_scope() {
    let (host, _) = with_bp_monitor().await;
    let token = host.token(Role::Clinician, Some("pat-a"), Some("user/Patient.rs"));
    let page = host.get(BP, &token).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("denied"), "{}", page.body);
    assert!(!page.body.contains("138/86"), "{}", page.body);
}

#[tokio::test]
async fn a_consent_opt_out_of_the_app_denies_it_and_is_audited() {
    let (host, _) = with_bp_monitor().await;
    let consent =
        healthcloud_integration::consent::opt_out("pat-a", "Device/examples.bp-monitor", &[]);
    let verifier = host.issuer.verifier();
    let principal = verifier
        .verify(&host.token(Role::Citizen, Some("pat-a"), None))
        .unwrap();
    host.service
        .create(&AccessContext::user(principal), "Consent", consent)
        .await
        .unwrap();
    let page = host.get(BP, &host.clinician("pat-a")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("denied"), "{}", page.body);
    assert!(!page.body.contains("138/86"), "{}", page.body);
    // Another patient's readings are unaffected.
    let other = host.get(BP, &host.clinician("pat-b")).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    let events = host.audit_events().await;
    let refused = events.iter().any(|e| {
        let text = e.to_string();
        text.contains("Device/examples.bp-monitor") && text.contains("pat-a") && e["outcome"] != "0"
    });
    assert!(refused, "no refused audit record for the app: {events:#?}");
}

#[tokio::test]
async fn a_grant_removed_in_process_denies_the_very_next_call() {
    let (host, install) = with_bp_monitor().await;
    let token = host.clinician("pat-a");
    assert_eq!(host.get(BP, &token).await.status, StatusCode::OK);
    install
        .grant
        .replace(vec![Capability::parse("patient/Patient.r").unwrap()]);
    let page = host.get(BP, &token).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("denied"), "{}", page.body);
}

#[tokio::test]
async fn a_patient_records_a_home_measurement_the_clinician_then_sees() {
    let (host, _) = with_bp_monitor().await;
    let patient = host.token(Role::Patient, Some("pat-a"), None);
    let form = host.get(BP, &patient).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("<form"), "{}", form.body);
    let post = Request::post(format!("{BP}measurements"))
        .header("authorization", format!("Bearer {patient}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("systolic=162&diastolic=101"))
        .unwrap();
    let answer = host.send(post).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert!(answer.headers["location"].to_str().unwrap().starts_with(BP));
    let page = host.get(BP, &host.clinician("pat-a")).await;
    assert!(
        page.body.contains("<strong>162/101 mmHg</strong>"),
        "{}",
        page.body
    );
    let nonsense = Request::post(format!("{BP}measurements"))
        .header("authorization", format!("Bearer {patient}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("systolic=abc&diastolic=101"))
        .unwrap();
    assert_eq!(host.send(nonsense).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_patient_summary_is_an_ips_document_bundle() {
    let host = Host::new().await;
    let (manifest, bytes) = example_app("patient-summary");
    host.install(REGION, &manifest, &bytes, None).unwrap();
    let answer = host
        .get(
            "/apps/testregion/examples/patient-summary/api/ips",
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let bundle = answer.json();
    assert_eq!(bundle["type"], "document");
    let composition = &bundle["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    let sections: Vec<&str> = composition["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    for code in ["10160-0", "48765-2", "11450-4"] {
        assert!(sections.contains(&code), "{sections:?}");
    }
}

#[tokio::test]
async fn hello_imports_no_platform_interface() {
    let host = Host::new().await;
    let (manifest, bytes) = example_app("hello");
    let install = host.install(REGION, &manifest, &bytes, Some(&[])).unwrap();
    assert!(install.manifest.requested.is_empty());
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    assert!(
        imports.iter().all(|i| i.starts_with("wasi:")),
        "{imports:?}"
    );
    let answer = host
        .get("/apps/testregion/examples/hello/", &host.clinician("pat-a"))
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "Hello from healthcloud")
    );
}

/// A signed package installs with its signing key on every audit record; a package whose
/// bytes or manifest changed after signing never gets compiled.
#[tokio::test]
async fn a_signed_package_installs_only_as_signed() {
    use healthcloud_package::keys::SecretKey;
    use healthcloud_package::package::Package;
    let host = Host::new().await;
    let (manifest, component) = example_app("hello");
    let manifest = Manifest::parse(&manifest).unwrap();
    let key = SecretKey::generate();
    let signed = Package::new(&manifest, &component).sign(&key);

    let mut flipped = component.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let refused = host
        .runtime
        .install_package(REGION, &signed, &flipped, vec![])
        .unwrap_err();
    assert!(
        refused.to_string().contains("not the one that was signed"),
        "{refused}"
    );

    let mut widened = signed.clone();
    widened
        .package
        .requested
        .push(healthcloud_package::manifest::RequestedCapability {
            name: "patient/*.rs".into(),
            justification: "everything".into(),
        });
    let refused = host
        .runtime
        .install_package(REGION, &widened, &component, vec![])
        .unwrap_err();
    assert!(refused.to_string().contains("does not verify"), "{refused}");
    assert!(host.runtime.installed(REGION, "examples/hello").is_none());

    let install = host
        .runtime
        .install_package(REGION, &signed, &component, vec![])
        .unwrap();
    assert_eq!(
        install.identity.publisher_key,
        key.public().id().to_string()
    );
    let answer = host
        .get(
            &format!("/apps/{REGION}/examples/hello/"),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
