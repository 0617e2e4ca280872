//! Attacks on the audit trail: writing into strangers' access logs, and flooding the logs
//! with refused requests. Each case is named after the attack.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use healthcloud_integration::FhirService;
use healthcloud_integration::api::{self, FhirConfig, FhirState};
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::ratelimit::RefusalLimits;
use healthcloud_integration::security::SecurityEntry;
use healthcloud_platform::auth::Role;
use sqlx::Row;

on_both_backends!(
    citizen_probing_a_hundred_ghost_ids_files_nothing_in_others_logs,
    citizen_probing_a_real_other_patient_leaves_nothing_in_their_log,
    clinician_searches_still_file_in_the_reached_patients_logs,
    clinician_naming_ghost_ids_files_nothing_for_them,
    refused_request_flood_gets_429_with_retry_after,
);

/// The patient of every AuditEvent stored, `None` for events about no patient.
async fn audit_patients(h: &Harness) -> Vec<Option<String>> {
    sqlx::query("SELECT patient_id FROM resources WHERE resource_type = 'AuditEvent'")
        .fetch_all(h.store.database().pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<Option<String>, _>(0))
        .collect()
}

async fn security_log(h: &Harness) -> Vec<SecurityEntry> {
    h.service.security_log().recent(1000, None).await.unwrap()
}

/// The stored AuditEvents of `patient`, as JSON text.
async fn log_text(h: &Harness, patient: &str) -> Vec<String> {
    let mut select = h
        .store
        .database()
        .sql("SELECT content FROM resources WHERE resource_type = 'AuditEvent' AND patient_id = ");
    select.bind(patient);
    select
        .query()
        .fetch_all(h.store.database().pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect()
}

fn ghosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("ghost{i}")).collect()
}

async fn citizen_probing_a_hundred_ghost_ids_files_nothing_in_others_logs(h: Harness) {
    let citizen = h.citizen("pat-a");
    let mut named = vec!["pat-b".to_owned()];
    named.extend(ghosts(99));
    let probe = format!("Observation?patient={}", named.join(","));
    let response = h.get(&probe, &citizen).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["total"], 0, "{}", response.body);

    let filed = audit_patients(&h).await;
    let strangers: Vec<&String> = filed
        .iter()
        .flatten()
        .filter(|p| named.contains(p))
        .collect();
    assert!(strangers.is_empty(), "filed in others' logs: {strangers:?}");
    assert!(
        filed.len() <= 1,
        "one request, at most one record: {filed:?}"
    );
    for event in log_text(&h, "pat-a").await {
        assert!(
            !event.contains("pat-b") && !event.contains("ghost"),
            "the citizen's own log names others: {event}"
        );
    }

    let log = security_log(&h).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    let row = &log[0];
    assert_eq!(
        (row.kind.as_str(), row.sub.as_str(), row.role.as_str()),
        ("probe", "citizen-user", "citizen")
    );
    assert!(
        row.request
            .starts_with("search-type Observation?patient=pat-b%2Cghost1"),
        "the operator sees what was asked: {}",
        row.request
    );
    assert!(row.reason.contains("outside what this caller may reach"));
}

async fn citizen_probing_a_real_other_patient_leaves_nothing_in_their_log(h: Harness) {
    let citizen = h.citizen("pat-a");
    let probed = h.get("Observation/b-bp-1", &citizen).await;
    let missing = h.get("Observation/no-such-observation", &citizen).await;
    assert_eq!(probed.status, 404, "{}", probed.body);
    assert_eq!(
        diagnostics(&probed).replace("b-bp-1", "X"),
        diagnostics(&missing).replace("no-such-observation", "X"),
        "a probe must not tell them apart"
    );
    assert_eq!(h.get("Patient/pat-b", &citizen).await.status, 404);
    let search = h.get("Condition?patient=pat-b", &citizen).await;
    assert_eq!(search.body["total"], 0, "{}", search.body);
    let planted = serde_json::json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Patient/pat-b"}});
    let write = h
        .request("POST", "Observation", Some(&citizen), Some(planted))
        .await;
    assert_eq!(write.status, 403, "{}", write.body);

    assert!(
        log_text(&h, "pat-b").await.is_empty(),
        "pat-b's log holds the citizen's probes"
    );
    let log = security_log(&h).await;
    let requests: Vec<&str> = log.iter().map(|r| r.request.as_str()).collect();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(
        log.iter()
            .all(|r| r.kind == "probe" && r.sub == "citizen-user")
    );
    for asked in [
        "read Observation/b-bp-1",
        "read Patient/pat-b",
        "search-type Condition?patient=pat-b",
        "create Observation",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(asked)),
            "{asked}: {requests:?}"
        );
    }
}

async fn clinician_searches_still_file_in_the_reached_patients_logs(h: Harness) {
    let clinician = h.clinician();
    let search = "Observation?patient=pat-a,pat-b&code=85354-9";
    assert_eq!(h.ids(search, &clinician).await.len(), 8);
    assert_eq!(
        h.ids("Observation?patient=pat-c", &clinician).await.len(),
        0
    );
    for patient in ["pat-a", "pat-b"] {
        let log = log_text(&h, patient).await;
        assert_eq!(log.len(), 1, "{patient}: {log:?}");
        assert!(log[0].contains("clinician-user"), "{}", log[0]);
    }
    // A real patient named but with no matching data still sees the search.
    assert_eq!(log_text(&h, "pat-c").await.len(), 1);
    assert!(security_log(&h).await.is_empty());
}

async fn clinician_naming_ghost_ids_files_nothing_for_them(h: Harness) {
    let clinician = h.clinician();
    let mut named = vec!["pat-c".to_owned()];
    named.extend(ghosts(99));
    let response = h
        .get(
            &format!("Observation?patient={}", named.join(",")),
            &clinician,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let filed = audit_patients(&h).await;
    assert_eq!(
        filed,
        [Some("pat-c".to_owned())],
        "ids of no patient have no log"
    );
}

/// The fixture's service with a small refusal budget that never refills during the test.
fn with_budget(h: &mut Harness, burst: u32) {
    let service = FhirService::new(h.store.clone(), PageLimits::default()).with_refusal_limits(
        RefusalLimits {
            burst,
            refill_every: Duration::from_secs(3600),
        },
    );
    let state = FhirState {
        service: service.clone(),
        verifier: h.issuer.verifier(),
        config: Arc::new(FhirConfig {
            base_url: BASE.into(),
            audience: BASE.into(),
            max_body_bytes: 64 * 1024,
            cors_origins: Vec::new(),
            authorization: None,
            subscription_endpoints: Default::default(),
        }),
    };
    h.app = api::mount(state);
    h.service = service;
}

async fn refused_request_flood_gets_429_with_retry_after(mut h: Harness) {
    with_budget(&mut h, 5);
    let citizen = h.citizen("pat-a");
    for attempt in 0..5 {
        let response = h
            .get(&format!("Observation/b-bp-{attempt}"), &citizen)
            .await;
        assert_eq!(response.status, 404, "{attempt}: {}", response.body);
    }
    let records = (audit_patients(&h).await.len(), security_log(&h).await.len());

    let limited = h.get("Observation/b-bp-1", &citizen).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert!(
        diagnostics(&limited).contains("too many refused requests"),
        "{}",
        limited.body
    );
    // Slowed down for everything, even its own record, and nothing more is written.
    assert_eq!(h.get("Patient/pat-a", &citizen).await.status, 429);
    let flood = format!("Observation?patient={}", ghosts(99).join(","));
    assert_eq!(h.get(&flood, &citizen).await.status, 429);
    assert_eq!(
        (audit_patients(&h).await.len(), security_log(&h).await.len()),
        records,
        "a 429 writes nothing"
    );
    let rate_limited: Vec<SecurityEntry> = security_log(&h)
        .await
        .into_iter()
        .filter(|r| r.kind == "rate-limited")
        .collect();
    assert_eq!(rate_limited.len(), 1, "{rate_limited:#?}");
    assert_eq!(rate_limited[0].sub, "citizen-user");

    // Other users are not slowed down by someone else's refusals.
    let other = h.token(Role::Patient, Some("pat-b"), None);
    assert_eq!(h.get("Patient/pat-b", &other).await.status, 200);
}
