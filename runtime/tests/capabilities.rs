//! Capabilities from the attacker's side: region grant ∩ user scopes ∩ consent ∩ the patient
//! compartment, checked at every host call and audited.

use healthcloud_runtime::testing as common;

use axum::http::StatusCode;
use common::{Host, REGION, test_component};
use healthcloud_package::manifest::Capability;
use healthcloud_platform::auth::Role;
use serde_json::Value;

/// Answers 127.0.0.1 for every name.
#[derive(Debug)]
struct LoopbackResolver;

impl healthcloud_runtime::capability::outbound::Resolve for LoopbackResolver {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        port: u16,
    ) -> healthcloud_runtime::capability::outbound::Resolution<'a> {
        Box::pin(async move { Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))]) })
    }
}

fn path(app: &str, rest: &str) -> String {
    format!("/apps/{REGION}/tests/{app}/{rest}")
}

/// Audit records of the app's host calls (`entity` names the app as a Device).
fn by_app<'a>(events: &'a [Value], app: &str) -> Vec<&'a Value> {
    let device = format!("Device/{}", app.replace('/', "."));
    events
        .iter()
        .filter(|e| e.to_string().contains(&device))
        .collect()
}

#[tokio::test]
async fn a_guest_cannot_reach_another_patients_data() {
    let host = Host::new().await;
    host.install_component("other-patient", None).unwrap();
    let token = host.clinician("pat-a");
    let own = host
        .get(&path("other-patient", "read?id=pat-a"), &token)
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.json()["id"], "pat-a");
    let other = host
        .get(&path("other-patient", "read?id=pat-b"), &token)
        .await;
    let missing = host
        .get(&path("other-patient", "read?id=no-such-patient"), &token)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
    assert_eq!(
        (other.status, &other.body),
        (missing.status, &missing.body),
        "a probe must not tell them apart"
    );
    let search = host
        .get(&path("other-patient", "search?patient=pat-b"), &token)
        .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.body);
    assert_eq!(search.json()["total"], 0);
    let own_search = host
        .get(&path("other-patient", "search?patient=pat-a"), &token)
        .await;
    assert_eq!(own_search.json()["total"], 3);
    assert_eq!(
        own_search.json()["patients"],
        serde_json::json!(["Patient/pat-a"])
    );
}

#[tokio::test]
async fn even_a_clinician_allowed_all_patients_reaches_only_the_patient_in_context() {
    let host = Host::new().await;
    host.install_component(
        "other-patient",
        Some(&["user/Patient.r", "user/Observation.rs"]),
    )
    .unwrap_err();
    // The manifest asks for patient/ scopes; a clinician token with user/*.rs still only
    // reaches the patient the app was opened for.
    host.install_component("other-patient", None).unwrap();
    let token = host.token(Role::Clinician, Some("pat-a"), Some("user/*.rs"));
    let other = host
        .get(&path("other-patient", "read?id=pat-b"), &token)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
}

#[tokio::test]
async fn without_a_patient_in_context_data_calls_are_denied_and_audited() {
    let host = Host::new().await;
    host.install_component("other-patient", None).unwrap();
    let token = host.token(Role::Clinician, None, None);
    let answer = host
        .get(&path("other-patient", "read?id=pat-a"), &token)
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(
        answer.body.contains("denied: no patient in context"),
        "{}",
        answer.body
    );
    let events = host.audit_events().await;
    let refused = by_app(&events, "tests/other-patient");
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["outcome"], "4");
}

#[tokio::test]
async fn the_launch_context_comes_from_the_token_and_the_install() {
    let host = Host::new().await;
    host.install_component("other-patient", None).unwrap();
    let answer = host
        .get(&path("other-patient", "context"), &host.clinician("pat-a"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let context = answer.json();
    assert_eq!(context["region"], REGION);
    assert_eq!(context["app-id"], "tests/other-patient");
    assert_eq!(context["app-version"], "0.1.0");
    assert_eq!(context["patient"], "pat-a");
    assert_eq!(context["user"]["role"], "clinician");
    assert_eq!(context["user"]["id"], "clinician-user");
    assert_eq!(
        context["granted-scopes"],
        serde_json::json!(["patient/Patient.r", "patient/Observation.rs"])
    );
}

#[tokio::test]
async fn every_data_call_is_audited_with_the_apps_identity() {
    let host = Host::new().await;
    let install = host.install_component("other-patient", None).unwrap();
    let token = host.clinician("pat-a");
    host.get(&path("other-patient", "read?id=pat-a"), &token)
        .await;
    host.get(&path("other-patient", "read?id=pat-b"), &token)
        .await;
    let events = host.audit_events().await;
    let calls = by_app(&events, "tests/other-patient");
    // The read of the patient in context is in the audit trail; the probe of another patient
    // is in the security log, never in that patient's log.
    assert_eq!(calls.len(), 1, "{events:#?}");
    assert_eq!(calls[0]["outcome"], "0");
    let text = serde_json::to_string(&calls).unwrap();
    for expected in [
        install.identity.digest.as_str(),
        "test-publisher-key",
        "0.1.0",
        REGION,
        "clinician-user",
    ] {
        assert!(text.contains(expected), "audit lacks {expected}: {text}");
    }
    let probes = host.service.security_log().recent(100, None).await.unwrap();
    assert_eq!(probes.len(), 1, "{probes:#?}");
    assert_eq!(probes[0].kind, "probe");
    assert_eq!(probes[0].app.as_deref(), Some("tests/other-patient 0.1.0"));
    assert_eq!(probes[0].region.as_deref(), Some(REGION));
    assert_eq!(probes[0].sub, "clinician-user");
    assert_eq!(probes[0].request, "read Patient/pat-b");
}

#[tokio::test]
async fn an_ungranted_capability_is_denied_at_call_time() {
    let host = Host::new().await;
    host.install_component("ungranted", Some(&["patient/Observation.rs"]))
        .unwrap();
    let token = host.clinician("pat-a");
    let kv = host.get(&path("ungranted", "kv"), &token).await;
    assert_eq!(kv.status, StatusCode::FORBIDDEN, "{}", kv.body);
    assert!(
        kv.body.contains("denied:") && kv.body.contains("kv capability"),
        "{}",
        kv.body
    );
    let observations = host.get(&path("ungranted", "observations"), &token).await;
    assert_eq!(observations.status, StatusCode::OK, "{}", observations.body);
}

#[tokio::test]
async fn a_removed_grant_denies_the_very_next_call_and_is_audited() {
    let host = Host::new().await;
    let install = host.install_component("ungranted", None).unwrap();
    let token = host.clinician("pat-a");
    let stored = host.get(&path("ungranted", "kv"), &token).await;
    assert_eq!(
        (stored.status, stored.body.trim()),
        (StatusCode::OK, "stored")
    );
    let before = host.get(&path("ungranted", "observations"), &token).await;
    assert_eq!(before.json()["total"], 3);
    install.grant.replace(vec![Capability::Kv]);
    let after = host.get(&path("ungranted", "observations"), &token).await;
    assert_eq!(after.status, StatusCode::FORBIDDEN, "{}", after.body);
    assert!(
        after
            .body
            .contains("denied: the region has not granted this app"),
        "{}",
        after.body
    );
    let events = host.audit_events().await;
    let last = by_app(&events, "tests/ungranted")
        .into_iter()
        .last()
        .unwrap()
        .clone();
    assert_ne!(last["outcome"], "0", "{last:#}");
    // Refused before any data was read, it still lands in the log of the patient in context.
    assert!(
        last.to_string().contains("\"Patient/pat-a\""),
        "the refusal names the patient in context: {last:#}"
    );
}

#[tokio::test]
async fn outgoing_http_reaches_only_granted_public_hosts_unless_internal_ones_are_allowed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { (StatusCode::IM_A_TEAPOT, "tea") }),
    );
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let host = Host::new().await;
    let (manifest, bytes) = test_component("outbound");
    let token = host.clinician("pat-a");
    let fetch = |url: String| {
        let host = &host;
        let token = &token;
        async move {
            host.get(&path("outbound", &format!("fetch?url={url}")), token)
                .await
        }
    };

    host.install(REGION, &manifest, &bytes, None).unwrap();
    let loopback = fetch(format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(
        loopback.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        loopback.body
    );
    assert!(
        loopback.body.contains("HttpRequestDenied"),
        "{}",
        loopback.body
    );

    // A granted name that resolves to an internal address is refused too.
    let by_name = manifest.replace(
        "outbound-http:example.org",
        &format!("outbound-http:loopback.example.org:{port}"),
    );
    host.runtime
        .set_outbound_resolver(std::sync::Arc::new(LoopbackResolver));
    host.install(REGION, &by_name, &bytes, None).unwrap();
    let internal = fetch(format!("http://loopback.example.org:{port}/")).await;
    assert_eq!(
        internal.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        internal.body
    );
    assert!(
        internal.body.contains("DestinationIpProhibited"),
        "{}",
        internal.body
    );

    // An address granted literally needs the region admin's allowance, and is then reached.
    let literal = manifest.replace(
        "outbound-http:example.org",
        &format!("outbound-http:127.0.0.1:{port}"),
    );
    let refused = host.install(REGION, &literal, &bytes, None).unwrap_err();
    assert!(
        refused.to_string().contains("--allow-internal-address"),
        "{refused}"
    );
    let literal_manifest = healthcloud_package::manifest::Manifest::parse(&literal).unwrap();
    let grant = healthcloud_runtime::Grant::new(literal_manifest.capabilities())
        .allowing_internal_addresses(true);
    host.runtime
        .install(
            REGION,
            literal_manifest,
            &bytes,
            "test-publisher-key",
            grant,
        )
        .unwrap();
    let allowed = fetch(format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert!(allowed.body.contains("418"), "{}", allowed.body);

    // Requested but not granted by the region: denied.
    host.install(REGION, &literal, &bytes, Some(&[])).unwrap();
    let ungranted = fetch(format!("http://127.0.0.1:{port}/")).await;
    assert!(
        ungranted.body.contains("HttpRequestDenied"),
        "{}",
        ungranted.body
    );
}

#[tokio::test]
async fn a_kv_write_over_the_quota_fails_and_changes_nothing() {
    let host = Host::with_limits(healthcloud_runtime::Limits {
        kv_quota_bytes: 1,
        ..common::test_limits()
    })
    .await;
    host.install_component("ungranted", None).unwrap();
    let answer = host
        .get(&path("ungranted", "kv"), &host.clinician("pat-a"))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        answer.body
    );
    assert!(answer.body.contains("QuotaExceeded"), "{}", answer.body);
    let db = &host.database;
    let rows: i64 = sqlx::Row::get(
        &db.sql("SELECT COUNT(*) FROM app_kv")
            .query()
            .fetch_one(db.pool())
            .await
            .unwrap(),
        0,
    );
    assert_eq!(rows, 0, "the refused write stored nothing");
}

#[tokio::test]
async fn searches_are_paged_at_the_per_call_limit_and_cursors_reach_every_page() {
    let host = Host::with_limits(healthcloud_runtime::Limits {
        search_results: 1,
        ..common::test_limits()
    })
    .await;
    host.install_component("other-patient", None).unwrap();
    let answer = host
        .get(
            &path("other-patient", "search?patient=pat-a"),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // Three observations, one per call: the component followed two cursors.
    assert_eq!(answer.json()["total"], 3);
    let events = host.audit_events().await;
    assert_eq!(
        by_app(&events, "tests/other-patient").len(),
        3,
        "one audited call per page"
    );
}

/// The runtime's own table (kv) and every data path, on PostgreSQL.
#[tokio::test]
async fn capabilities_work_the_same_on_postgresql() {
    let Some(host) = Host::on(common::Backend::Postgres, common::test_limits()).await else {
        return;
    };
    host.install_component("ungranted", None).unwrap();
    host.install_component("other-patient", None).unwrap();
    let token = host.clinician("pat-a");
    let stored = host.get(&path("ungranted", "kv"), &token).await;
    assert_eq!(
        (stored.status, stored.body.trim()),
        (StatusCode::OK, "stored")
    );
    let observations = host.get(&path("ungranted", "observations"), &token).await;
    assert_eq!(observations.json()["total"], 3, "{}", observations.body);
    let other = host
        .get(&path("other-patient", "read?id=pat-b"), &token)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    // The kv write, its read back and the search: each in the patient's log.
    assert_eq!(
        by_app(&host.audit_events().await, "tests/ungranted").len(),
        3
    );

    let small = Host::on(
        common::Backend::Postgres,
        healthcloud_runtime::Limits {
            kv_quota_bytes: 1,
            ..common::test_limits()
        },
    )
    .await
    .unwrap();
    small.install_component("ungranted", None).unwrap();
    let over = small
        .get(&path("ungranted", "kv"), &small.clinician("pat-a"))
        .await;
    assert!(over.body.contains("QuotaExceeded"), "{}", over.body);
}

#[tokio::test]
async fn the_users_credentials_never_reach_the_app() {
    let host = Host::new().await;
    host.install_component("trap", None).unwrap();
    let request = axum::http::Request::get(path("trap", "headers"))
        .header(
            "authorization",
            format!("Bearer {}", host.clinician("pat-a")),
        )
        .header("cookie", "session=secret")
        .header("x-requested-with", "test")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = host.send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let names: Vec<&str> = answer.body.lines().collect();
    assert!(names.contains(&"x-requested-with"), "{names:?}");
    for secret in ["authorization", "cookie", "proxy-authorization"] {
        assert!(
            !names.contains(&secret),
            "{secret} reached the app: {names:?}"
        );
    }
}

#[tokio::test]
async fn a_clinician_token_without_a_region_opens_no_install() {
    let host = Host::new().await;
    host.install_component("trap", None).unwrap();
    let token = host
        .issuer
        .mint(
            Role::Clinician,
            healthcloud_platform::auth::TokenRequest {
                patient: Some("pat-a".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let answer = host.get(&path("trap", "ok"), &token).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(answer.body.contains("region"), "{}", answer.body);
}

#[tokio::test]
async fn a_request_may_make_only_so_many_data_calls() {
    let host = Host::with_limits(healthcloud_runtime::Limits {
        host_calls: 2,
        search_results: 1,
        ..common::test_limits()
    })
    .await;
    host.install_component("other-patient", None).unwrap();
    // Three pages at one result each need three calls; the third is refused.
    let answer = host
        .get(
            &path("other-patient", "search?patient=pat-a"),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(answer.body.contains("data calls"), "{}", answer.body);
}
