//! Isolation between requests: a fresh instance per request by default; with reuse
//! configured, an instance serves again only the very same launch context.

use healthcloud_runtime::testing as common;

use axum::http::StatusCode;
use common::{Host, REGION, test_limits};
use healthcloud_platform::auth::Role;
use healthcloud_runtime::Limits;

fn count_path() -> String {
    format!("/apps/{REGION}/tests/trap/count")
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance_by_default() {
    let host = Host::new().await;
    host.install_component("trap", None).unwrap();
    let token = host.clinician("pat-a");
    for _ in 0..3 {
        let answer = host.get(&count_path(), &token).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "1"));
    }
}

/// Has the trap component leave `secret` in its static data and all over its heap.
async fn remember(host: &Host, token: &str, secret: &str) {
    let path = format!("/apps/{REGION}/tests/trap/remember?secret={secret}");
    let answer = in_the_one_slot(host, &path, token).await;
    assert_eq!(answer, "remembered");
}

/// How many copies of `secret` the trap component finds in its memory.
async fn recall(host: &Host, token: &str, secret: &str) -> usize {
    let path = format!("/apps/{REGION}/tests/trap/recall?secret={secret}");
    in_the_one_slot(host, &path, token).await.parse().unwrap()
}

/// GETs `path` from a host with one instance slot in all: a request arriving before the last
/// instance gave the slot back is refused (503), so it is tried again.
async fn in_the_one_slot(host: &Host, path: &str, token: &str) -> String {
    for _ in 0..100 {
        let answer = host.get(path, token).await;
        match answer.status {
            StatusCode::OK => return answer.body,
            StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            status => panic!("{status}: {}", answer.body),
        }
    }
    panic!("the one instance slot never came free");
}

/// 32 random hex digits.
fn random_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[tokio::test]
async fn what_a_request_left_in_memory_is_gone_for_the_next_one() {
    // One instance slot in all, so every instance gets the very memory the last one used.
    let one_slot = |reuse_instances| Limits {
        reuse_instances,
        pool_instances: 1,
        ..test_limits()
    };
    let secret = random_secret();
    // The scan finds what was left, where an instance is reused on purpose.
    let reusing = Host::with_limits(one_slot(true)).await;
    reusing.install_component("trap", None).unwrap();
    let token = reusing.clinician("pat-a");
    remember(&reusing, &token, &secret).await;
    assert!(recall(&reusing, &token, &secret).await > 1000);
    drop(reusing);

    // A fresh instance in the same slot finds nothing: not in the pages reset in place, not
    // in the pages returned to the kernel, not in pages it grows into; nor, after several
    // rounds, anything an earlier round left.
    let host = Host::with_limits(one_slot(false)).await;
    host.install_component("trap", None).unwrap();
    let token = host.clinician("pat-a");
    for _ in 0..3 {
        remember(&host, &token, &secret).await;
        for _ in 0..3 {
            assert_eq!(recall(&host, &token, &secret).await, 0);
        }
    }
}

#[tokio::test]
async fn a_reused_instance_serves_only_its_own_launch_context() {
    let host = Host::with_limits(Limits {
        reuse_instances: true,
        ..test_limits()
    })
    .await;
    let install = host.install_component("trap", None).unwrap();
    let count = |token: String| {
        let host = &host;
        async move {
            let answer = host.get(&count_path(), &token).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            answer.body
        }
    };
    let for_a = host.clinician("pat-a");
    assert_eq!(count(for_a.clone()).await, "1");
    assert_eq!(
        count(for_a.clone()).await,
        "2",
        "same context: the instance is reused"
    );
    assert_eq!(
        count(host.clinician("pat-b")).await,
        "1",
        "another patient: a fresh instance"
    );
    let other_scopes = host.token(Role::Clinician, Some("pat-a"), Some("user/Patient.rs"));
    assert_eq!(
        count(other_scopes).await,
        "1",
        "other scopes: a fresh instance"
    );
    // (Another clinician: trap's manifest admits clinicians only.)
    let other_user = host
        .issuer
        .mint(
            Role::Clinician,
            healthcloud_platform::auth::TokenRequest {
                sub: Some("another-clinician".into()),
                patient: Some("pat-a".into()),
                region: Some(REGION.into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        count(other_user).await,
        "1",
        "another user: a fresh instance"
    );
    assert_eq!(count(for_a.clone()).await, "3");

    // A grant change (even back to the same capabilities) retires instances made before it.
    install.grant.replace(install.grant.capabilities());
    assert_eq!(
        count(for_a.clone()).await,
        "1",
        "made under the old grant: not reused"
    );
    assert_eq!(count(for_a.clone()).await, "2");

    // A trapped instance is never reused.
    let trapped = host
        .get(&format!("/apps/{REGION}/tests/trap/trap"), &for_a)
        .await;
    assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(count(for_a).await, "1");
}

#[tokio::test]
async fn an_idle_reused_instance_is_dropped_on_time_even_without_more_requests() {
    // One instance slot in all: while app A's idle instance holds it, app B cannot run.
    let host = Host::with_limits(Limits {
        reuse_instances: true,
        reuse_idle: std::time::Duration::from_millis(200),
        pool_instances: 1,
        ..test_limits()
    })
    .await;
    host.install_component("trap", None).unwrap();
    host.install_component("other-patient", None).unwrap();
    let token = host.clinician("pat-a");
    assert_eq!(host.get(&count_path(), &token).await.status, StatusCode::OK);
    let blocked = host
        .get(
            &format!("/apps/{REGION}/tests/other-patient/context"),
            &token,
        )
        .await;
    assert_eq!(
        blocked.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the idle instance holds the slot"
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let after = host
        .get(
            &format!("/apps/{REGION}/tests/other-patient/context"),
            &token,
        )
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
}

#[tokio::test]
async fn an_app_cannot_set_cookies_on_the_platforms_origin() {
    let host = Host::new().await;
    host.install_component("loop", None).unwrap();
    let answer = host
        .get(
            &format!("/apps/{REGION}/tests/loop/cookie"),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "cookie set")
    );
    assert!(
        answer.headers.get("set-cookie").is_none(),
        "{:?}",
        answer.headers
    );
}
