//! The launcher on a real listener over an integration cloud with a few synthetic patients
//! and a runtime without installs: the launch itself, the cookies, session checks and the
//! cross-site refusals. The browser test (tests/e2e/test_launch.py) covers the pages with
//! the example apps installed.

use axum::http::{HeaderMap, HeaderValue, header};
use healthcloud_integration::Integration;
use healthcloud_integration::audit::{AuditRecord, audit_event};
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_platform::scope::Interaction;
use healthcloud_runtime::{Limits, Runtime, RuntimeConfig};
use healthcloud_synth::SynthOptions;

use super::*;

struct Harness {
    url: String,
    launch: Launch,
    integration: Integration,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fhir.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", listener.local_addr().unwrap());
    let integration = Integration::open(&url, &public_url, dir.path())
        .await
        .unwrap();
    healthcloud_integration::import::load_synthetic(
        integration.state.service.store_for_loading(),
        SynthOptions {
            patients: 6,
            seed: 3,
            today: "2026-11-01".parse().unwrap(),
        },
        &|_| {},
    )
    .await
    .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        service: integration.state.service.clone(),
        database: integration.database.clone(),
        verifier: integration.state.verifier.clone(),
        public_url: public_url.clone(),
        limits: Limits::default(),
        cache_dir: None,
    })
    .await
    .unwrap();
    let launch = Launch::new(LaunchConfig {
        issuer: healthcloud_platform::auth::TokenIssuer::dev(dir.path()).unwrap(),
        verifier: integration.state.verifier.clone(),
        service: integration.state.service.clone(),
        runtime,
        store_url: public_url.clone(),
        public_url: public_url.clone(),
        regions: vec!["hovedstaden".into(), "midtjylland".into()],
        listen_addr: listener.local_addr().unwrap(),
        authorization: None,
    })
    .unwrap();
    // The FHIR API beside the pages, as `up` serves them: session tokens must not open it.
    let app = router(launch.clone()).merge(integration.router());
    // Each request carries its peer's address, as `healthcloud up` serves the pages.
    tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .into_future(),
    );
    Harness {
        url: public_url,
        launch,
        integration,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Harness {
    async fn patients(&self) -> Vec<String> {
        let page = self.http.get(&self.url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let select = html.split("id=\"patient\"").nth(1).unwrap();
        let select = select.split("</select>").next().unwrap();
        select
            .split("<option value=\"")
            .skip(1)
            .map(|option| option.split('"').next().unwrap().to_owned())
            .collect()
    }

    fn launch(&self, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/launch", self.url))
            .header(header::ORIGIN, &self.url)
            .form(form)
    }

    /// A token for `audience` (a page's URL, or the default: the FHIR API and the apps).
    fn token(
        &self,
        role: Role,
        region: Option<&str>,
        patient: Option<&str>,
        audience: Option<String>,
    ) -> String {
        self.integration
            .issuer
            .mint(
                role,
                TokenRequest {
                    region: region.map(str::to_owned),
                    patient: patient.map(str::to_owned),
                    audience: audience.into_iter().collect(),
                    ..Default::default()
                },
            )
            .unwrap()
    }
}

fn cookie_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_citizen_launch_sets_a_scoped_cookie_whose_token_verifies_on_every_request() {
    let h = harness().await;
    let patients = h.patients().await;
    assert!(!patients.is_empty() && patients.len() <= 8, "{patients:?}");
    let patient = &patients[0];

    let launched = h
        .launch(&[
            ("role", "citizen"),
            ("region", ""),
            ("patient", patient),
            ("app", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(launched.status(), 303);
    assert_eq!(launched.headers()[header::LOCATION], "/citizen/");
    let cookie = cookie_of(&launched);
    assert!(
        cookie.ends_with("; Path=/citizen/; Max-Age=600; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    let token = cookie
        .strip_prefix("healthcloud_citizen=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let claims = h.integration.state.verifier.verify(token).unwrap().claims;
    assert_eq!(claims.role, Role::Citizen);
    assert_eq!(claims.patient.as_deref(), Some(patient.as_str()));
    assert!(claims.exp - claims.iat <= 600, "short-lived");

    let page = h
        .http
        .get(format!("{}/citizen/", h.url))
        .header(header::COOKIE, format!("healthcloud_citizen={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY].clone();
    assert_eq!(csp, CONTENT_SECURITY_POLICY);
    assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("Who looked at your data"), "{html}");
    assert!(!html.contains("<script"), "no script");

    // Without the cookie, with a forged one, or with another role's: refused, with a way on.
    let missing = h
        .http
        .get(format!("{}/citizen/", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.text().await.unwrap().contains("launch page"));
    let mut forged = token.to_owned();
    forged.insert(forged.len() / 2, 'x');
    let forged = h
        .http
        .get(format!("{}/citizen/", h.url))
        .header(header::COOKIE, format!("healthcloud_citizen={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let page = format!("{}/citizen/", h.url);
    let clinician = h.token(
        Role::Clinician,
        Some("hovedstaden"),
        Some(patient),
        Some(page.clone()),
    );
    let wrong_role = h
        .http
        .get(&page)
        .header(header::COOKIE, format!("healthcloud_citizen={clinician}"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_role.status(), 403);
}

#[tokio::test]
async fn a_page_session_token_is_for_its_page_only() {
    let h = harness().await;
    let patient = h.patients().await.remove(0);
    let launched = h
        .launch(&[
            ("role", "citizen"),
            ("region", ""),
            ("patient", &patient),
            ("app", ""),
        ])
        .send()
        .await
        .unwrap();
    let cookie = cookie_of(&launched);
    let token = cookie
        .strip_prefix("healthcloud_citizen=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let claims = h.integration.state.verifier.verify(&token).unwrap().claims;
    assert_eq!(claims.aud, [format!("{}/citizen/", h.url)]);
    // The citizen's page token is no FHIR bearer token.
    let fhir = h
        .http
        .get(format!("{}/fhir/r4/Patient/{patient}", h.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(fhir.status(), 401);
    assert!(fhir.text().await.unwrap().contains("audience"));
    // A citizen token for the FHIR API opens no page session.
    let bearer = h.token(Role::Citizen, None, Some(&patient), None);
    let page = h
        .http
        .get(format!("{}/citizen/", h.url))
        .header(header::COOKIE, format!("healthcloud_citizen={bearer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.text().await.unwrap().contains("audience"));
}

#[tokio::test]
async fn a_region_admin_reaches_only_their_own_region() {
    let h = harness().await;
    let launched = h
        .launch(&[
            ("role", "region-admin"),
            ("region", "midtjylland"),
            ("patient", ""),
            ("app", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(launched.status(), 303);
    assert_eq!(
        launched.headers()[header::LOCATION],
        "/regions/midtjylland/"
    );
    let cookie = cookie_of(&launched);
    assert!(cookie.contains("; Path=/regions/;"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    let other = h
        .http
        .get(format!("{}/regions/hovedstaden/", h.url))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let html = other.text().await.unwrap();
    assert!(
        html.contains("You cannot administer region hovedstaden"),
        "{html}"
    );
    let act = h
        .http
        .post(format!(
            "{}/regions/hovedstaden/installs/examples/bp-monitor/grant",
            h.url
        ))
        .header(header::COOKIE, &session)
        .header(header::ORIGIN, &h.url)
        .form(&[("capability", "log"), ("change", "revoke")])
        .send()
        .await
        .unwrap();
    assert_eq!(act.status(), 403);
}

#[tokio::test]
async fn forms_from_other_origins_are_refused_before_anything_happens() {
    let h = harness().await;
    let patients = h.patients().await;
    let form = [
        ("role", "citizen"),
        ("region", ""),
        ("patient", patients[0].as_str()),
        ("app", ""),
    ];
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        // Another port on this host is the same site, so SameSite cookies would go along.
        ("sec-fetch-site", "same-site"),
    ] {
        let refused = h
            .http
            .post(format!("{}/launch", h.url))
            .header(name, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{name}: {value}");
        assert!(refused.headers().get(header::SET_COOKIE).is_none());
        assert!(refused.text().await.unwrap().contains("another site"));
    }
    let allowed = h
        .launch(&form)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 303);
}

/// The launch form as a raw HTTP/1.0 request without `Host`, as an attacker's script sends it.
async fn raw_launch_without_host(h: &Harness, patient: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = format!("role=store-admin&region=&patient={patient}&app=");
    stream
        .write_all(
            format!(
                "POST /launch HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn a_launch_without_a_host_header_mints_nothing() {
    let h = harness().await;
    let patients = h.patients().await;
    let response = raw_launch_without_host(&h, &patients[0]).await;
    assert!(response.starts_with("HTTP/1.0 403"), "{response}");
    assert!(
        !response.to_ascii_lowercase().contains("set-cookie"),
        "{response}"
    );
    assert!(
        response.contains("only requests from this machine"),
        "{response}"
    );
}

#[tokio::test]
async fn a_launch_from_another_machine_mints_nothing_whatever_its_host_header_says() {
    use tower::ServiceExt;
    let h = harness().await;
    let patients = h.patients().await;
    let launch = |peer: Option<&str>| {
        let mut request = axum::http::Request::post("/launch")
            .header(header::HOST, h.url.strip_prefix("http://").unwrap())
            .header(header::ORIGIN, &h.url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!(
                "role=store-admin&region=&patient={}&app=",
                patients[0]
            )))
            .unwrap();
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        router(h.launch.clone()).oneshot(request)
    };
    // A port forward or proxy on this machine: the peer is what the listener accepted.
    for peer in [Some("10.1.2.3:40000"), Some("[2001:db8::7]:40000"), None] {
        let refused = launch(peer).await.unwrap();
        assert_eq!(refused.status(), 403, "{peer:?}");
        assert!(refused.headers().get(header::SET_COOKIE).is_none());
    }
    let allowed = launch(Some("127.0.0.1:40000")).await.unwrap();
    assert_eq!(allowed.status(), 303);
    assert!(allowed.headers().get(header::SET_COOKIE).is_some());
}

#[tokio::test]
async fn the_launcher_is_never_built_for_a_listener_other_machines_reach() {
    let h = harness().await;
    for addr in ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"] {
        let error = Launch::new(LaunchConfig {
            issuer: h.integration.issuer.clone(),
            verifier: h.integration.state.verifier.clone(),
            service: h.integration.state.service.clone(),
            runtime: h.launch.runtime().clone(),
            store_url: h.url.clone(),
            public_url: h.url.clone(),
            regions: Vec::new(),
            listen_addr: addr.parse().unwrap(),
            authorization: None,
        })
        .err()
        .unwrap_or_else(|| panic!("a launcher on {addr}"));
        assert!(
            error.to_string().contains("only on a loopback address"),
            "{error}"
        );
    }
    assert!(mountable_on("127.0.0.1:8080".parse().unwrap()));
    assert!(mountable_on("[::1]:8080".parse().unwrap()));
}

#[tokio::test]
async fn a_launch_that_names_nothing_real_is_answered_on_the_form() {
    let h = harness().await;
    let patients = h.patients().await;
    let answered = h
        .launch(&[
            ("role", "clinician"),
            ("region", "hovedstaden"),
            ("patient", "no-such-patient"),
            ("app", "examples/bp-monitor"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 422);
    assert!(answered.headers().get(header::SET_COOKIE).is_none());
    let html = answered.text().await.unwrap();
    assert!(
        html.contains("choose one of the patients offered"),
        "{html}"
    );
    assert!(
        html.contains("examples/bp-monitor is not installed in region hovedstaden"),
        "{html}"
    );
    assert!(html.contains("<form class=\"launch\""), "the form stays");

    let unknown_region = h
        .launch(&[
            ("role", "region-admin"),
            ("region", "../store-admin"),
            ("patient", patients[0].as_str()),
            ("app", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_region.status(), 422);
    let no_role = h.launch(&[("role", "publisher")]).send().await.unwrap();
    assert_eq!(no_role.status(), 422);
}

#[test]
fn the_pages_answer_only_to_this_servers_names() {
    let host = |value: &'static str| {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static(value));
        map
    };
    let origin = "http://127.0.0.1:8080";
    for here in [
        "127.0.0.1:8080",
        "localhost:8080",
        "LOCALHOST:8080",
        "[::1]:8080",
    ] {
        assert!(addressed_here(&host(here), origin), "{here}");
    }
    // DNS rebinding: a name the attacker controls, resolving to this server.
    for elsewhere in [
        "evil.example:8080",
        "127.0.0.1:9090",
        "localhost",
        "evil.example",
    ] {
        assert!(!addressed_here(&host(elsewhere), origin), "{elsewhere}");
    }
    assert!(addressed_here(
        &host("health.example.org"),
        "https://health.example.org"
    ));
    assert!(!addressed_here(
        &host("localhost"),
        "https://health.example.org"
    ));
    assert!(!addressed_here(&HeaderMap::new(), origin), "no Host at all");
}

#[test]
fn same_origin_needs_the_browser_to_say_so_when_it_speaks() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    };
    let origin = "http://127.0.0.1:8080";
    assert!(same_origin(&headers(&[]), origin), "no browser");
    assert!(same_origin(
        &headers(&[("origin", "http://127.0.0.1:8080")]),
        origin
    ));
    assert!(same_origin(
        &headers(&[
            ("origin", "http://localhost:8080"),
            ("host", "localhost:8080")
        ]),
        origin
    ));
    assert!(!same_origin(
        &headers(&[
            ("origin", "http://127.0.0.1:9090"),
            ("host", "127.0.0.1:8080")
        ]),
        origin
    ));
    assert!(!same_origin(
        &headers(&[("origin", origin), ("sec-fetch-site", "same-site")]),
        origin
    ));
    assert!(same_origin(
        &headers(&[("origin", origin), ("sec-fetch-site", "same-origin")]),
        origin
    ));
}

#[test]
fn an_audit_event_reads_as_who_through_which_app_what_and_the_outcome() {
    let issuer = healthcloud_platform::auth::TokenIssuer::generate("test")
        .with_audience(vec!["http://fhir.test/fhir/r4".into()]);
    let token = issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                sub: Some("dr-hansen".into()),
                region: Some("hovedstaden".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mut context = AccessContext::user(issuer.verifier().verify(&token).unwrap());
    context.app = Some(AppIdentity {
        id: "examples/bp-monitor".into(),
        version: "0.1.0".into(),
        digest: "d".into(),
        publisher_key: "k".into(),
        region: "hovedstaden".into(),
    });
    let record = AuditRecord {
        context: &context,
        interaction: Interaction::Search,
        resource_type: "Observation",
        resource_id: None,
        query: Some("category=vital-signs"),
        patient: Some("p1"),
        denied: Some("access denied by the patient's consent".into()),
        sources: &[],
    };
    let event = audit_event(&record, 1_790_000_000_000);
    let access = citizen_access(&event);
    assert_eq!(access.0, "dr-hansen (clinician)");
    assert_eq!(access.1.as_deref(), Some("examples/bp-monitor 0.1.0"));
    assert_eq!(access.2, "searched Observation");
    assert_eq!(access.3, "hovedstaden");
    assert_eq!(access.4, "refused: access denied by the patient's consent");
}

/// The citizen page's reading of an AuditEvent: who, app, what, where, outcome.
fn citizen_access(event: &serde_json::Value) -> (String, Option<String>, String, String, String) {
    let access = citizen::access(event);
    (
        access.who,
        access.app,
        access.what,
        access.place,
        access.outcome,
    )
}

#[test]
fn plain_ids_exclude_what_could_leave_a_path_segment() {
    for good in ["hovedstaden", "bp-monitor", "examples", "v1.2_x"] {
        assert!(is_plain_id(good), "{good}");
    }
    for bad in ["", ".", "..", "a/b", "a;b", "a b", "a\nb", "å"] {
        assert!(!is_plain_id(bad), "{bad:?}");
    }
    assert_eq!(urlencode("a/b@1.0 x"), "a%2Fb%401.0%20x");
}
