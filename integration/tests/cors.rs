//! CORS on the FHIR API: the pages of configured browser apps may call it (preflights
//! answered, the headers SMART clients need allowed and exposed); pages of any other origin
//! get no permission, and no answer ever allows credentials (tokens travel as bearer headers).

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{APP_ORIGIN, Backend, Harness, Response};
use healthcloud_integration::api::origin;

fn preflight(origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/fhir/r4/Observation?patient=pat-a")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
        .body(Body::empty())
        .unwrap()
}

fn get_from(origin: &str, token: &str) -> Request<Body> {
    Request::builder()
        .uri("/fhir/r4/Patient/pat-a")
        .header(header::ORIGIN, origin)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .map(|value| value.to_str().unwrap())
        .unwrap_or_default()
}

fn list(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    header(headers, name)
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

#[tokio::test]
async fn a_configured_apps_page_may_call_the_fhir_api_with_a_bearer_token() {
    let h = Harness::new(Backend::Sqlite).await.unwrap();
    let Response {
        status, headers, ..
    } = h
        .send(preflight(APP_ORIGIN, "GET", "authorization, accept"))
        .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        header(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        APP_ORIGIN
    );
    let methods = list(&headers, header::ACCESS_CONTROL_ALLOW_METHODS);
    for method in ["get", "post", "put", "delete"] {
        assert!(methods.contains(&method.to_owned()), "{methods:?}");
    }
    let allowed = list(&headers, header::ACCESS_CONTROL_ALLOW_HEADERS);
    for name in [
        "authorization",
        "content-type",
        "if-match",
        "if-none-exist",
        "prefer",
    ] {
        assert!(allowed.contains(&name.to_owned()), "{allowed:?}");
    }
    assert!(
        headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );

    let answer = h.send(get_from(APP_ORIGIN, &h.clinician())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        header(&answer.headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        APP_ORIGIN
    );
    let exposed = list(&answer.headers, header::ACCESS_CONTROL_EXPOSE_HEADERS);
    for name in ["location", "etag", "last-modified"] {
        assert!(exposed.contains(&name.to_owned()), "{exposed:?}");
    }
    assert!(
        answer
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );
}

/// Another site's page (or one of the app's own host on another scheme or port, or a
/// look-alike host) gets no permission: its browser withholds the answer from it. And
/// however the browser is asked, the token still decides what the answer holds.
#[tokio::test]
async fn pages_of_any_other_origin_get_no_permission() {
    let h = Harness::new(Backend::Sqlite).await.unwrap();
    for other in [
        "https://evil.example",
        "http://app.example.dk",
        "https://app.example.dk:8443",
        "https://app.example.dk.evil.example",
        "null",
    ] {
        let preflight = h.send(preflight(other, "GET", "authorization")).await;
        assert!(
            preflight
                .headers
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none(),
            "{other}: {:?}",
            preflight.headers
        );
        let answer = h.send(get_from(other, &h.clinician())).await;
        assert!(
            answer
                .headers
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none(),
            "{other}"
        );
    }
    let anonymous = h.send(get_from(APP_ORIGIN, "not-a-token")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn an_origin_is_scheme_host_and_port_only() {
    assert_eq!(
        origin("https://app.example.dk").unwrap(),
        "https://app.example.dk"
    );
    assert_eq!(
        origin("https://app.example.dk/").unwrap(),
        "https://app.example.dk"
    );
    assert_eq!(
        origin("http://127.0.0.1:9000").unwrap(),
        "http://127.0.0.1:9000"
    );
    assert_eq!(
        origin("https://APP.example.dk:443").unwrap(),
        "https://app.example.dk"
    );
    for refused in [
        "*",
        "app.example.dk",
        "https://app.example.dk/launch",
        "https://app.example.dk/?x=1",
        "ftp://app.example.dk",
        "https://user:pw@app.example.dk",
        "file:///etc/passwd",
    ] {
        let error = origin(refused).unwrap_err();
        assert!(error.contains("scheme://host[:port]"), "{refused}: {error}");
    }
}
