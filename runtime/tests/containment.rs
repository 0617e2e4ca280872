//! Hostile guests (`tests/components/`): each misbehaviour fails only its own request, with a
//! status and a body naming the cause, while other apps keep answering.

use healthcloud_runtime::testing as common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Host, OTHER_REGION, REGION, example_app, test_component, test_limits};
use healthcloud_runtime::{InstallError, Limits};

fn path(app: &str, rest: &str) -> String {
    format!("/apps/{REGION}/tests/{app}/{rest}")
}

/// Runs a misbehaving request and, while it runs, checks that another app answers.
async fn misbehave_while_others_answer(host: &Host, app: &str, rest: &str) -> common::Answer {
    host.install_component("trap", None).unwrap();
    let token = host.clinician("pat-a");
    let bad_path = path(app, rest);
    let bad = host.get(&bad_path, &token);
    let good = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        host.get(&path("trap", "ok"), &token).await
    };
    let (bad, good) = tokio::join!(bad, good);
    assert_eq!(
        good.status,
        StatusCode::OK,
        "another app stopped answering: {}",
        good.body
    );
    bad
}

/// Installs `app`, makes it misbehave on `rest` while another app answers, checks the
/// status and the cause named in the body, then that the same app serves its next request.
async fn fails_alone(app: &str, rest: &str, status: StatusCode, cause: &str) {
    let host = Host::new().await;
    host.install_component(app, None).unwrap();
    let answer = misbehave_while_others_answer(&host, app, rest).await;
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(answer.body.contains(cause), "{}", answer.body);
    let next = host.get(&path(app, "ok"), &host.clinician("pat-a")).await;
    assert_eq!((next.status, next.body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    fails_alone(
        "loop",
        "spin",
        StatusCode::GATEWAY_TIMEOUT,
        "deadline of 1000 ms",
    )
    .await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_cap() {
    fails_alone(
        "memory-bomb",
        "grow",
        StatusCode::INTERNAL_SERVER_ERROR,
        "memory limit of 64 MiB",
    )
    .await;
}

#[tokio::test]
async fn runaway_recursion_overflows_the_stack_and_only_that_request_fails() {
    fails_alone(
        "recursion",
        "deep",
        StatusCode::INTERNAL_SERVER_ERROR,
        "overflowed its stack",
    )
    .await;
}

#[tokio::test]
async fn a_trap_fails_its_request_and_the_next_request_works() {
    fails_alone(
        "trap",
        "trap",
        StatusCode::INTERNAL_SERVER_ERROR,
        "tests/trap crashed",
    )
    .await;
    fails_alone(
        "trap",
        "unreachable",
        StatusCode::INTERNAL_SERVER_ERROR,
        "tests/trap crashed",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_response_is_refused() {
    fails_alone(
        "big-response",
        "big?mb=16",
        StatusCode::BAD_GATEWAY,
        "response limit of 8 MiB",
    )
    .await;
    let host = Host::new().await;
    host.install_component("big-response", None).unwrap();
    let small = host
        .get(&path("big-response", "big?mb=1"), &host.clinician("pat-a"))
        .await;
    assert_eq!(small.status, StatusCode::OK);
    assert_eq!(small.body.len(), 1 << 20);
}

#[tokio::test]
async fn a_handle_flood_hits_the_table_limit() {
    fails_alone(
        "handle-flood",
        "flood",
        StatusCode::INTERNAL_SERVER_ERROR,
        "more than 1000 handles",
    )
    .await;
}

#[tokio::test]
async fn a_log_flood_is_rate_limited_and_the_request_completes() {
    let host = Host::new().await;
    host.install_component("log-flood", None).unwrap();
    let answer = misbehave_while_others_answer(&host, "log-flood", "flood?n=20000").await;
    assert_eq!(
        (answer.status, answer.body.trim()),
        (StatusCode::OK, "flooded")
    );
}

#[tokio::test]
async fn a_busy_app_answers_503_with_retry_after() {
    let host = Host::with_limits(Limits {
        concurrent_instances: 1,
        ..test_limits()
    })
    .await;
    host.install_component("loop", None).unwrap();
    let token = host.clinician("pat-a");
    let spin = path("loop", "spin");
    let spinning = host.get(&spin, &token);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        host.get(&path("loop", "ok"), &token).await
    };
    let (spinning, second) = tokio::join!(spinning, second);
    assert_eq!(spinning.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        second.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        second.body
    );
    assert_eq!(second.headers["retry-after"], "1");
    let after = host.get(&path("loop", "ok"), &token).await;
    assert_eq!(after.status, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_request_body_is_refused() {
    let host = Host::with_limits(Limits {
        request_bytes: 1024,
        ..test_limits()
    })
    .await;
    host.install_component("trap", None).unwrap();
    let request = Request::post(path("trap", "ok"))
        .header(
            "authorization",
            format!("Bearer {}", host.clinician("pat-a")),
        )
        .body(Body::from(vec![b'x'; 4096]))
        .unwrap();
    let answer = host.send(request).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn requests_need_a_valid_token_an_install_and_the_tokens_region() {
    let host = Host::new().await;
    host.install_component("trap", None).unwrap();
    let anonymous = host
        .send(
            Request::get(path("trap", "ok"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    let forged = host.get(&path("trap", "ok"), "not.a.token").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let token = host.clinician("pat-a");
    let missing = host.get(&path("loop", "ok"), &token).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing
            .body
            .contains("no app tests/loop is installed in region testregion")
    );
    let other_region = host
        .get(
            &format!("/apps/{}/tests/trap/ok", common::OTHER_REGION),
            &token,
        )
        .await;
    assert_eq!(other_region.status, StatusCode::NOT_FOUND);
    let (manifest, bytes) = test_component("trap");
    host.install(common::OTHER_REGION, &manifest, &bytes, None)
        .unwrap();
    let foreign = host
        .get(
            &format!("/apps/{}/tests/trap/ok", common::OTHER_REGION),
            &token,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{}", foreign.body);
    assert!(host.runtime.uninstall(REGION, "tests/trap"));
    let gone = host.get(&path("trap", "ok"), &token).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_import_of_an_unrequested_empty_interface_is_refused_at_install() {
    let host = Host::new().await;
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/components/empty-import");
    let manifest = std::fs::read_to_string(dir.join("healthcloud.toml")).unwrap();
    let text = std::fs::read(dir.join("component.wat")).unwrap();
    let refused = host.install(REGION, &manifest, &text, None).unwrap_err();
    assert!(
        matches!(&refused, InstallError::ImportNotRequested { import, .. } if import == "healthcloud:platform/kv@0.1.0"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("needs the kv capability"),
        "{refused}"
    );
}

#[tokio::test]
async fn core_modules_precompiled_code_and_garbage_are_refused_at_install() {
    let host = Host::new().await;
    let (manifest, component) = test_component("trap");
    let core_module = wat_module();
    assert!(matches!(
        host.install(REGION, &manifest, &core_module, None),
        Err(InstallError::CoreModule)
    ));
    let precompiled = wasmtime::Engine::default()
        .precompile_component(&component)
        .unwrap();
    assert!(matches!(
        host.install(REGION, &manifest, &precompiled, None),
        Err(InstallError::Precompiled)
    ));
    assert!(matches!(
        host.install(REGION, &manifest, b"#!/bin/sh\nrm -rf /\n", None),
        Err(InstallError::NotWasm)
    ));
}

#[tokio::test]
async fn a_grant_beyond_the_request_is_refused() {
    let host = Host::new().await;
    let refused = host
        .install_component("trap", Some(&["patient/Observation.rs"]))
        .unwrap_err();
    assert!(
        matches!(refused, InstallError::NotRequested(ref c) if c == "patient/Observation.rs"),
        "{refused}"
    );
}

/// A minimal core module: `(module)` in binary.
fn wat_module() -> Vec<u8> {
    vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
}

#[tokio::test]
async fn a_full_instance_pool_answers_503_and_recovers() {
    let host = Host::with_limits(Limits {
        pool_instances: 1,
        ..test_limits()
    })
    .await;
    host.install_component("loop", None).unwrap();
    host.install_component("trap", None).unwrap();
    let token = host.clinician("pat-a");
    let spin = path("loop", "spin");
    let spinning = host.get(&spin, &token);
    let other = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        host.get(&path("trap", "ok"), &token).await
    };
    let (spinning, other) = tokio::join!(spinning, other);
    assert_eq!(spinning.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        other.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        other.body
    );
    assert!(other.body.contains("instance capacity"), "{}", other.body);
    assert_eq!(other.headers["retry-after"], "1");
    let after = host.get(&path("trap", "ok"), &token).await;
    assert_eq!(after.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_upload_times_out_without_holding_the_apps_only_slot() {
    let host = Host::with_limits(Limits {
        concurrent_instances: 1,
        host_call_timeout: Duration::from_millis(300),
        ..test_limits()
    })
    .await;
    host.install_component("trap", None).unwrap();
    let token = host.clinician("pat-a");
    // A body that never finishes arriving.
    let never = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let slow = Request::post(path("trap", "ok"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from_stream(never))
        .unwrap();
    let slow = host.send(slow);
    let other = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        host.get(&path("trap", "ok"), &token).await
    };
    let (slow, other) = tokio::join!(slow, other);
    assert_eq!(slow.status, StatusCode::REQUEST_TIMEOUT, "{}", slow.body);
    assert_eq!(
        other.status,
        StatusCode::OK,
        "the upload held the slot: {}",
        other.body
    );
}

#[tokio::test]
async fn bytes_installed_already_are_checked_again_against_each_manifest() {
    // Installs of the same bytes share one compiled component; a manifest that does not
    // request what those bytes import is refused all the same.
    let host = Host::new().await;
    let (manifest, component) = example_app("bp-monitor");
    host.install(REGION, &manifest, &component, None).unwrap();
    // The same app requesting nothing.
    let stripped = &manifest[..manifest.find("[[capability]]").unwrap()];
    let refused = host
        .install(OTHER_REGION, stripped, &component, Some(&[]))
        .unwrap_err();
    assert!(
        matches!(&refused, InstallError::ImportNotRequested { import, .. } if import.starts_with("healthcloud:platform/")),
        "{refused}"
    );
}
