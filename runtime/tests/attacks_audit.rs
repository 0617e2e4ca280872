//! Attacks on the audit trail through an app: one request filing records in many patients'
//! logs, and a flood of refused data calls.

use healthcloud_runtime::testing as common;

use axum::http::StatusCode;
use common::{Host, REGION};
use serde_json::Value;

fn path(rest: &str) -> String {
    format!("/apps/{REGION}/tests/other-patient/{rest}")
}

/// The patients the AuditEvents are filed for.
fn filed_for(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .flat_map(|e| e["entity"].as_array().cloned().unwrap_or_default())
        .filter_map(|entity| entity["what"]["reference"].as_str().map(str::to_owned))
        .filter(|reference| reference.starts_with("Patient/"))
        .collect()
}

#[tokio::test]
async fn one_app_request_cannot_file_in_a_hundred_patients_logs() {
    let host = Host::new().await;
    host.install_component("other-patient", None).unwrap();
    let mut named = vec!["pat-b".to_owned()];
    named.extend((1..=99).map(|i| format!("ghost{i}")));
    let answer = host
        .get(
            &path(&format!("search?patient={}", named.join(","))),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["total"], 0, "{}", answer.body);

    let events = host.audit_events().await;
    assert!(
        events.len() <= 1,
        "one data call, at most one record: {events:#?}"
    );
    let filed = filed_for(&events);
    assert!(
        filed.iter().all(|p| p == "Patient/pat-a"),
        "filed in others' logs: {filed:?}"
    );
    let log = host
        .service
        .security_log()
        .recent(1000, None)
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0].kind, "probe");
    assert_eq!(log[0].app.as_deref(), Some("tests/other-patient 0.1.0"));
    assert!(log[0].request.contains("ghost99"), "{}", log[0].request);
}

#[tokio::test]
async fn a_refused_data_call_flood_gets_429_with_retry_after() {
    let host = Host::new().await;
    host.install_component("other-patient", None).unwrap();
    let token = host.clinician("pat-a");
    let mut refused = 0;
    let limited = loop {
        let answer = host.get(&path("read?id=pat-b"), &token).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            break answer;
        }
        refused += 1;
        assert!(refused < 1000, "never slowed down: {}", answer.body);
    };
    assert!(refused >= 30, "slowed down after only {refused} refusals");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert!(
        limited.body.contains("too many refused requests"),
        "{}",
        limited.body
    );
    let log = host
        .service
        .security_log()
        .recent(1000, None)
        .await
        .unwrap();
    assert_eq!(
        log.iter().filter(|r| r.kind == "rate-limited").count(),
        1,
        "{log:#?}"
    );
    assert!(
        log.len() <= refused + 1,
        "the security log grows with the refusals, never with the 429s"
    );
    // The audit trail holds nothing of the probes.
    let filed = filed_for(&host.audit_events().await);
    assert!(filed.iter().all(|p| p == "Patient/pat-a"), "{filed:?}");
}
