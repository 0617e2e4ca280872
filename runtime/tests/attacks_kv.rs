//! kv from the attacker's side: a hostile app (`tests/components/kv-snoop`) stores what it saw
//! in one patient's launch and tries every way to show it in other launches.

use healthcloud_runtime::testing as common;

use axum::http::StatusCode;
use common::{Host, REGION};
use healthcloud_integration::policy::AccessContext;
use healthcloud_platform::auth::{Role, TokenRequest};
use serde_json::Value;

const SECRET: &str = "pat-a-hba1c-97";

fn path(rest: &str) -> String {
    format!("/apps/{REGION}/tests/kv-snoop/{rest}")
}

/// Everything `/recall` reached, as one string to search.
async fn recall(host: &Host, token: &str) -> (StatusCode, String) {
    let answer = host.get(&path("recall"), token).await;
    (answer.status, answer.body)
}

/// A clinician of the region with no patient in context.
fn clinician_without_patient(host: &Host) -> String {
    host.issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                sub: Some("clinician-user".into()),
                region: Some(REGION.into()),
                ..Default::default()
            },
        )
        .unwrap()
}

async fn remember_for_pat_a(host: &Host) {
    let stored = host
        .get(
            &path(&format!("remember?value={SECRET}")),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
}

/// kv calls filed in `patient`'s log.
async fn kv_events_of(host: &Host, patient: &str) -> Vec<Value> {
    host.audit_events()
        .await
        .into_iter()
        .filter(|event| {
            event["entity"].as_array().is_some_and(|entities| {
                entities.iter().any(|e| e["description"] == "kv")
                    && entities
                        .iter()
                        .any(|e| e["what"]["reference"] == format!("Patient/{patient}"))
            })
        })
        .collect()
}

#[tokio::test]
async fn what_an_app_kept_for_one_patient_never_reaches_another_patients_launch() {
    let host = Host::new().await;
    host.install_component("kv-snoop", None).unwrap();
    remember_for_pat_a(&host).await;

    let (status, own) = recall(&host, &host.clinician("pat-a")).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert!(
        own.contains(SECRET),
        "the patient's own launch sees it: {own}"
    );

    for (who, token) in [
        ("a clinician for pat-b", host.clinician("pat-b")),
        (
            "pat-b themself",
            host.token(Role::Patient, Some("pat-b"), None),
        ),
        (
            "pat-b as a citizen",
            host.token(Role::Citizen, Some("pat-b"), None),
        ),
    ] {
        let (status, seen) = recall(&host, &token).await;
        assert_eq!(status, StatusCode::OK, "{who}: {seen}");
        assert!(!seen.contains(SECRET), "{who} saw pat-a's value: {seen}");
        assert_eq!(
            serde_json::from_str::<Value>(&seen).unwrap()["seen"],
            serde_json::json!({}),
            "{who}"
        );
    }
}

#[tokio::test]
async fn a_launch_without_a_patient_reaches_no_patients_partition() {
    let host = Host::new().await;
    host.install_component("kv-snoop", Some(&["kv"])).unwrap();
    remember_for_pat_a(&host).await;
    let (status, body) = recall(&host, &clinician_without_patient(&host)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("no patient in context") && body.contains("kv-install"),
        "{body}"
    );
    assert!(!body.contains(SECRET), "{body}");
}

#[tokio::test]
async fn the_install_wide_partition_is_apart_from_every_patients() {
    let host = Host::new().await;
    host.install_component("kv-snoop", None).unwrap();
    remember_for_pat_a(&host).await;
    let anyone = clinician_without_patient(&host);
    let (status, seen) = recall(&host, &anyone).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert!(!seen.contains(SECRET), "{seen}");
    let shared = host
        .get(&path("remember?value=shared-setting"), &anyone)
        .await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.body);
    let (_, own) = recall(&host, &host.clinician("pat-a")).await;
    assert!(
        own.contains(SECRET) && !own.contains("shared-setting"),
        "{own}"
    );
}

#[tokio::test]
async fn an_opt_out_of_the_app_closes_the_patients_partition() {
    let host = Host::new().await;
    host.install_component("kv-snoop", None).unwrap();
    remember_for_pat_a(&host).await;
    let consent = healthcloud_integration::consent::opt_out("pat-a", "Device/tests.kv-snoop", &[]);
    let citizen = host
        .issuer
        .verifier()
        .verify(&host.token(Role::Citizen, Some("pat-a"), None))
        .unwrap();
    host.service
        .create(&AccessContext::user(citizen), "Consent", consent)
        .await
        .unwrap();

    let (status, body) = recall(&host, &host.clinician("pat-a")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("patient's consent"), "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let write = host
        .get(&path("remember?value=more"), &host.clinician("pat-a"))
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.body);
    // The refusals are in the patient's log; another patient's launches are unaffected.
    let refused = kv_events_of(&host, "pat-a").await;
    assert!(refused.iter().any(|e| e["outcome"] != "0"), "{refused:#?}");
    let (status, _) = recall(&host, &host.clinician("pat-b")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_kv_call_is_in_the_patients_log_and_nowhere_else() {
    let host = Host::new().await;
    host.install_component("kv-snoop", None).unwrap();
    remember_for_pat_a(&host).await;
    recall(&host, &host.clinician("pat-a")).await;
    let events = kv_events_of(&host, "pat-a").await;
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|e| e["subtype"][0]["code"].as_str())
        .collect();
    for interaction in ["update", "read", "search-type"] {
        assert!(actions.contains(&interaction), "{interaction}: {actions:?}");
    }
    assert!(
        events
            .iter()
            .all(|e| e["outcome"] == "0" && e.to_string().contains("Device/tests.kv-snoop")),
        "{events:#?}"
    );
    assert!(kv_events_of(&host, "pat-b").await.is_empty());
}
