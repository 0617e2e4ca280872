//! Attacks on the app door with tokens, each kept as a test of what stops it: a token is for
//! the service it names (a launch token for one app, the app cloud, or the FHIR API), an app
//! opens only in the region the token names, and only for the audience its manifest declares.

use healthcloud_runtime::testing as common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Host, OTHER_REGION, PUBLIC_URL, REGION, example_app};
use healthcloud_platform::auth::{Role, TokenRequest, app_audience, fhir_audience};

const HELLO: &str = "/apps/testregion/examples/hello/";
const BP: &str = "/apps/testregion/examples/bp-monitor/";

/// `hello` (for clinicians, patients and citizens) and `bp-monitor` (clinicians and
/// patients only) installed in [`REGION`].
async fn with_two_apps() -> Host {
    let host = Host::new().await;
    for app in ["hello", "bp-monitor"] {
        let (manifest, bytes) = example_app(app);
        host.install(REGION, &manifest, &bytes, None).unwrap();
    }
    host
}

fn mint(host: &Host, role: Role, request: TokenRequest) -> String {
    host.issuer.mint(role, request).unwrap()
}

fn clinician_for(host: &Host, audience: String) -> String {
    mint(
        host,
        Role::Clinician,
        TokenRequest {
            patient: Some("pat-a".into()),
            region: Some(REGION.into()),
            audience: vec![audience],
            ..Default::default()
        },
    )
}

/// `path` with the launch cookie holding `token`, as a browser sends it after a launch.
async fn with_cookie(host: &Host, path: &str, token: &str) -> common::Answer {
    let request = Request::get(path)
        .header(header::COOKIE, format!("healthcloud_launch={token}"))
        .body(Body::empty())
        .unwrap();
    host.send(request).await
}

/// Nothing ran: no data call, so no AuditEvent.
async fn assert_nothing_ran(host: &Host) {
    let events = host.audit_events().await;
    assert!(
        events.is_empty(),
        "an instance made data calls: {events:#?}"
    );
}

#[tokio::test]
async fn a_launch_token_for_one_app_opens_no_other_app() {
    let host = with_two_apps().await;
    let hello_launch = clinician_for(&host, app_audience(PUBLIC_URL, REGION, "examples/hello"));
    let opened = with_cookie(&host, HELLO, &hello_launch).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    // The same token at the other app's path: as a cookie (a page planting it there) or as
    // a bearer token.
    for answer in [
        with_cookie(&host, BP, &hello_launch).await,
        host.get(BP, &hello_launch).await,
    ] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        assert!(
            answer.body.contains("not for this service")
                && answer
                    .body
                    .contains("/apps/testregion/examples/bp-monitor/"),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("mmHg"), "{}", answer.body);
    }
    // The same app in another region is another install: another audience.
    let (manifest, bytes) = example_app("hello");
    host.install(OTHER_REGION, &manifest, &bytes, None).unwrap();
    let elsewhere = host
        .get("/apps/otherregion/examples/hello/", &hello_launch)
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        elsewhere.body
    );
    assert_nothing_ran(&host).await;
}

#[tokio::test]
async fn a_fhir_api_token_or_a_token_for_another_server_opens_no_app() {
    let host = with_two_apps().await;
    for audience in [
        fhir_audience(PUBLIC_URL),
        "http://elsewhere.test/apps/".to_owned(),
        app_audience("http://elsewhere.test", REGION, "examples/bp-monitor"),
    ] {
        let token = clinician_for(&host, audience.clone());
        let answer = host.get(BP, &token).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{audience}: {}",
            answer.body
        );
        assert!(
            answer
                .body
                .contains(&format!("its audience (aud) is {audience}")),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("mmHg"), "{}", answer.body);
    }
    assert_nothing_ran(&host).await;
    // A token for the app cloud, or for this one app, opens it.
    let bp_launch = clinician_for(
        &host,
        app_audience(PUBLIC_URL, REGION, "examples/bp-monitor"),
    );
    assert_eq!(host.get(BP, &bp_launch).await.status, StatusCode::OK);
    assert_eq!(
        host.get(BP, &host.clinician("pat-a")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_without_a_region_opens_no_app_for_any_role() {
    let host = with_two_apps().await;
    for role in [Role::Clinician, Role::Patient, Role::Citizen] {
        let token = mint(
            &host,
            role,
            TokenRequest {
                patient: Some("pat-a".into()),
                ..Default::default()
            },
        );
        let answer = host.get(HELLO, &token).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{role:?}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("names no region (the region claim)"),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("Hello"), "{}", answer.body);
    }
    // Nor does a token naming another region.
    let patient_elsewhere = mint(
        &host,
        Role::Patient,
        TokenRequest {
            patient: Some("pat-a".into()),
            region: Some(OTHER_REGION.into()),
            ..Default::default()
        },
    );
    let answer = host.get(BP, &patient_elsewhere).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(
        answer.body.contains("your token is for region otherregion"),
        "{}",
        answer.body
    );
    assert_nothing_ran(&host).await;
}

#[tokio::test]
async fn a_role_outside_the_manifest_audience_cannot_open_the_app() {
    let host = with_two_apps().await;
    for role in [
        Role::Citizen,
        Role::RegionAdmin,
        Role::StoreAdmin,
        Role::Publisher,
        Role::SecurityOfficer,
        Role::PlatformOperator,
        Role::System,
    ] {
        let token = host.token(role, Some("pat-a"), None);
        let answer = host.get(BP, &token).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{role:?}: {}",
            answer.body
        );
        assert!(
            answer.body.contains(&format!(
                "examples/bp-monitor is for clinician, patient only (its manifest's audience); your token's role is {}",
                role.as_str()
            )),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("mmHg"), "{}", answer.body);
    }
    assert_nothing_ran(&host).await;
    // The audience it declares opens it; a citizen opens the app declared for citizens.
    let patient = host.token(Role::Patient, Some("pat-a"), None);
    assert_eq!(host.get(BP, &patient).await.status, StatusCode::OK);
    let citizen = host.token(Role::Citizen, Some("pat-a"), None);
    assert_eq!(host.get(HELLO, &citizen).await.status, StatusCode::OK);
}
