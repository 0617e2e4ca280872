//! The upstream client against an independently written FHIR server (Medplum's engine,
//! `tests/upstream/`) and against hostile ones: whatever a source answers, the client yields
//! checked FHIR or an error naming the source, within the deadline and the size cap, and
//! never the upstream's own error body.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use healthcloud_integration::federation::{CompartmentPatient, FederatedSource, search_source};
use healthcloud_integration::open_database;
use healthcloud_integration::patient_index::{IdentityError, PatientIndex, Remembered};
use healthcloud_integration::query::{Alternative, PageLimits, SearchQuery, parse_restriction};
use healthcloud_integration::upstream::{
    Upstream, UpstreamAuth, UpstreamCapabilities, UpstreamConfig, UpstreamError,
};
use healthcloud_platform::db::Database;
use reqwest::Url;
use serde_json::{Value, json};

use common::CPR;
use common::sources::{Medplum, install_upstream, patient, searchset, serve};

/// The GP's FHIR API in the Medplum upstream, with `auth`.
fn gp_upstream(medplum: &Medplum, auth: UpstreamAuth) -> Upstream {
    let mut config = UpstreamConfig::new("gp", medplum.base.clone());
    config.auth = auth;
    config.deadline = Duration::from_secs(30);
    Upstream::open(config).unwrap()
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] != "outcome")
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_medplum_upstream_declares_its_types_finds_a_patient_by_cpr_and_answers_searches_and_reads()
 {
    let medplum = Medplum::start(&[]);
    let gp = gp_upstream(&medplum, UpstreamAuth::None);

    let capabilities = gp.capabilities().await.unwrap();
    assert!(capabilities.searches("Patient", "identifier"));
    assert!(capabilities.searches("Observation", "patient"));
    assert!(capabilities.searches("Observation", "code"));
    assert!(!capabilities.types.contains_key("MedicationRequest"));

    let patients = gp
        .search(
            "Patient",
            &[("identifier".into(), format!("{CPR}|0101701234"))],
        )
        .await
        .unwrap();
    assert_eq!(ids(&patients), ["gp-patient-1"]);

    let readings = gp
        .search(
            "Observation",
            &[
                ("patient".into(), "Patient/gp-patient-1".into()),
                ("code".into(), "http://loinc.org|85354-9".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids(&readings), ["gp-bp-1-1", "gp-bp-1-2", "gp-bp-1-3"]);

    let reading = gp.read("Observation", "gp-bp-2-1").await.unwrap().unwrap();
    assert_eq!(reading["subject"]["reference"], "Patient/gp-patient-2");
    assert!(
        gp.read("Observation", "no-such-id")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_source_with_a_token_gets_it_and_a_wrong_token_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "gp-secret-token\n").unwrap();
    let medplum = Medplum::start(&["--bearer-token-file", token_file.to_str().unwrap()]);

    let gp = gp_upstream(&medplum, UpstreamAuth::BearerFile(token_file));
    assert!(gp.read("Patient", "gp-patient-1").await.unwrap().is_some());

    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "not-the-token").unwrap();
    let refused = gp_upstream(&medplum, UpstreamAuth::BearerFile(wrong_file))
        .read("Patient", "gp-patient-1")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, UpstreamError::Unauthorized { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("check the token"), "{refused}");

    let empty_file = dir.path().join("empty");
    std::fs::write(&empty_file, "  \n").unwrap();
    let mut config = UpstreamConfig::new("gp", medplum.base.clone());
    config.auth = UpstreamAuth::BearerFile(empty_file);
    let error = Upstream::open(config).unwrap_err().to_string();
    assert!(error.contains("is empty"), "{error}");
}

/// A running token endpoint (npm oidc-provider, `tests/upstream/token-server.mjs`), killed
/// when dropped, counting the access tokens it issues.
struct TokenServer {
    child: Child,
    issuer: Url,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    fn start(args: &[impl AsRef<std::ffi::OsStr>]) -> TokenServer {
        let dir = install_upstream();
        let mut child = Command::new("node")
            .arg(dir.join("token-server.mjs"))
            .arg("--log")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let issuer = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the token server did not start: {line:?}"));
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.starts_with("issued ") {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        TokenServer {
            issuer: Url::parse(issuer).unwrap(),
            child,
            issued,
        }
    }

    fn token_url(&self) -> Url {
        self.issuer.join("/token").unwrap()
    }

    /// The tokens issued so far, once the `expected` ones have been told of.
    fn issued(&self, expected: usize) -> usize {
        let count = || self.issued.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..100 {
            if count() >= expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        count()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret oidc-provider holds for healthcloud: characters that `client_secret_basic`
/// must form-encode.
const HEALTHCLOUD_SECRET: &str = "s3cret:with+plus%25/slash";

/// A token endpoint knowing healthcloud's client and the GP's FHIR server's, and the GP's FHIR
/// server accepting only tokens from it with `system/*.read`.
struct OAuthWorld {
    dir: tempfile::TempDir,
    tokens: TokenServer,
    medplum: Medplum,
}

impl OAuthWorld {
    fn start(ttl_seconds: u32) -> OAuthWorld {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("healthcloud"), HEALTHCLOUD_SECRET).unwrap();
        std::fs::write(dir.path().join("gp-fhir"), "gp-fhir-introspection-secret").unwrap();
        let tokens = TokenServer::start(&Self::token_server_args(&dir, ttl_seconds, 0));
        let medplum = Medplum::start(&[
            "--introspect",
            tokens.issuer.join("/token/introspection").unwrap().as_str(),
            "--introspect-client",
            &format!("gp-fhir:{}", dir.path().join("gp-fhir").display()),
            "--introspect-scope",
            "system/*.read",
        ]);
        OAuthWorld {
            dir,
            tokens,
            medplum,
        }
    }

    fn token_server_args(dir: &tempfile::TempDir, ttl_seconds: u32, port: u16) -> Vec<String> {
        [
            "--port".into(),
            port.to_string(),
            "--ttl".into(),
            ttl_seconds.to_string(),
            "--client".into(),
            format!("healthcloud:{}", dir.path().join("healthcloud").display()),
            "--client".into(),
            format!("gp-fhir:{}", dir.path().join("gp-fhir").display()),
        ]
        .into()
    }

    /// The token endpoint started again on its port: the tokens it issued are forgotten.
    fn restart_token_server(&mut self) {
        let port = self.tokens.issuer.port().unwrap();
        let args = Self::token_server_args(&self.dir, 600, port);
        self.tokens.child.kill().unwrap();
        self.tokens.child.wait().unwrap();
        self.tokens = TokenServer::start(&args);
    }

    fn auth(&self, secret: &str, scope: Option<&str>) -> UpstreamAuth {
        let secret_file = self.dir.path().join(format!("secret-{}", secret.len()));
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        UpstreamAuth::ClientCredentials {
            token_url: self.tokens.token_url(),
            client_id: "healthcloud".into(),
            secret_file,
            scope: scope.map(str::to_owned),
        }
    }

    fn upstream(&self, auth: UpstreamAuth) -> Upstream {
        gp_upstream(&self.medplum, auth)
    }
}

#[tokio::test]
async fn a_source_behind_a_token_endpoint_is_searched_and_read_with_one_token_shared_by_all_calls()
{
    let world = OAuthWorld::start(600);
    let gp = world.upstream(world.auth(HEALTHCLOUD_SECRET, Some("system/*.read")));

    let capabilities = gp.capabilities().await.unwrap();
    assert!(capabilities.searches("Observation", "patient"));
    let patients = gp
        .search(
            "Patient",
            &[("identifier".into(), format!("{CPR}|0101701234"))],
        )
        .await
        .unwrap();
    assert_eq!(ids(&patients), ["gp-patient-1"]);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let gp = gp.clone();
        calls.spawn(async move { gp.read("Observation", "gp-bp-1-2").await });
    }
    while let Some(read) = calls.join_next().await {
        assert!(read.unwrap().unwrap().is_some());
    }
    assert_eq!(world.tokens.issued(1), 1);

    // Concurrent first calls of a new source wait for one token together.
    let fresh = world.upstream(world.auth(HEALTHCLOUD_SECRET, Some("system/*.read")));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let fresh = fresh.clone();
        calls.spawn(async move { fresh.read("Patient", "gp-patient-2").await });
    }
    while let Some(read) = calls.join_next().await {
        assert!(read.unwrap().unwrap().is_some());
    }
    assert_eq!(world.tokens.issued(2), 2);

    let shown = format!("{gp:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[tokio::test]
async fn the_client_secret_goes_to_the_token_endpoint_only_and_the_source_sees_a_bearer_token() {
    let world = OAuthWorld::start(600);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = seen.clone();
    let auth = world.auth(HEALTHCLOUD_SECRET, Some("system/*.read"));
    let source = hostile(
        Router::new().fallback(move |headers: axum::http::HeaderMap| {
            recorder.lock().unwrap().push(
                headers
                    .get("authorization")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
            );
            async { axum::Json(searchset(vec![])) }
        }),
        |config| config.auth = auth,
    )
    .await;
    source.search("Observation", &[]).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let token = seen[0].strip_prefix("Bearer ").expect("a bearer token");
    assert!(
        !token.contains("s3cret") && !seen[0].contains("Basic"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_source_refuses_calls_without_a_token_or_with_one_lacking_its_scope() {
    let world = OAuthWorld::start(600);

    let error = world
        .upstream(UpstreamAuth::None)
        .read("Patient", "gp-patient-1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::Unauthorized { status, .. } if status == StatusCode::UNAUTHORIZED),
        "{error}"
    );

    // A token without the scope the source requires: refused, and not asked for again, as a
    // new one would lack it too.
    let unscoped = world.upstream(world.auth(HEALTHCLOUD_SECRET, None));
    let error = unscoped.read("Patient", "gp-patient-1").await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::Unauthorized { status, .. } if status == StatusCode::FORBIDDEN),
        "{error}"
    );
    assert_eq!(world.tokens.issued(1), 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_at_the_token_endpoint_naming_the_source_and_nothing_it_said()
 {
    let world = OAuthWorld::start(600);
    let error = world
        .upstream(world.auth("not-the-secret", Some("system/*.read")))
        .search("Observation", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            UpstreamError::CredentialsRefused { status, oauth_error: Some(code), .. }
                if *status == StatusCode::UNAUTHORIZED && code == "invalid_client"
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("source 'gp'"), "{message}");
    assert!(
        message.contains("check the client id, the secret file"),
        "{message}"
    );
    // oidc-provider's error_description stays behind.
    assert!(!message.contains("authentication failed"), "{message}");
    assert_eq!(world.tokens.issued(0), 0);
}

#[tokio::test]
async fn client_credentials_are_checked_when_the_source_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let open = |token_url: &str, secret_file: PathBuf| {
        let mut config = UpstreamConfig::new("gp", Url::parse("http://127.0.0.1:1/fhir").unwrap());
        config.auth = UpstreamAuth::ClientCredentials {
            token_url: Url::parse(token_url).unwrap(),
            client_id: "healthcloud".into(),
            secret_file,
            scope: None,
        };
        Upstream::open(config).unwrap_err().to_string()
    };
    let missing = dir.path().join("missing");
    let error = open("https://login.example.dk/token", missing.clone());
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("write the secret"),
        "{error}"
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let error = open("https://login.example.dk/token", empty);
    assert!(error.contains("is empty"), "{error}");

    // The secret would cross the network in the clear.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let error = open("http://login.example.dk/token", secret);
    assert!(error.contains("not https"), "{error}");
}

#[tokio::test]
async fn an_expired_token_is_replaced_without_the_caller_noticing() {
    let world = OAuthWorld::start(3);
    let gp = world.upstream(world.auth(HEALTHCLOUD_SECRET, Some("system/*.read")));
    assert!(gp.read("Patient", "gp-patient-1").await.unwrap().is_some());
    assert!(gp.read("Patient", "gp-patient-2").await.unwrap().is_some());
    assert_eq!(world.tokens.issued(1), 1);

    // Past its three seconds, the token would be refused: a new one is asked for first.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(gp.read("Patient", "gp-patient-1").await.unwrap().is_some());
    assert_eq!(world.tokens.issued(2), 2);
}

#[tokio::test]
async fn a_token_the_source_stops_accepting_is_replaced_once_and_then_refused_by_name() {
    let mut world = OAuthWorld::start(600);
    let gp = world.upstream(world.auth(HEALTHCLOUD_SECRET, Some("system/*.read")));
    assert!(gp.read("Patient", "gp-patient-1").await.unwrap().is_some());

    // The token endpoint restarts and forgets its tokens: the source answers 401 to the held
    // one, and the call goes through with a new one.
    world.restart_token_server();
    assert!(gp.read("Patient", "gp-patient-1").await.unwrap().is_some());
    assert_eq!(world.tokens.issued(1), 1);

    // Tokens from another token endpoint are never accepted: one retry, then the refusal.
    let elsewhere = TokenServer::start(&OAuthWorld::token_server_args(&world.dir, 600, 0));
    let mut auth = world.auth(HEALTHCLOUD_SECRET, Some("system/*.read"));
    if let UpstreamAuth::ClientCredentials { token_url, .. } = &mut auth {
        *token_url = elsewhere.token_url();
    }
    let error = world
        .upstream(auth)
        .read("Patient", "gp-patient-1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::Unauthorized { status, .. } if status == StatusCode::UNAUTHORIZED),
        "{error}"
    );
    assert!(error.to_string().contains("source 'gp'"), "{error}");
    assert_eq!(elsewhere.issued(2), 2);
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_fails_the_call_naming_the_source_within_its_deadline() {
    let world = OAuthWorld::start(600);
    let auth = world.auth(HEALTHCLOUD_SECRET, Some("system/*.read"));
    drop(world.tokens);
    let mut config = UpstreamConfig::new("gp", world.medplum.base.clone());
    config.auth = auth;
    let error = Upstream::open(config)
        .unwrap()
        .read("Patient", "gp-patient-1")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, UpstreamError::TokenEndpoint { problem, .. } if problem.contains("could not be reached")),
        "{error}"
    );
    assert!(error.to_string().contains("source 'gp'"), "{error}");

    // A token endpoint that accepts the connection and never answers: the source's deadline.
    let secret = world.dir.path().join("hanging");
    std::fs::write(&secret, "s").unwrap();
    let source = hostile(
        Router::new().fallback(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
        |config| {
            config.deadline = Duration::from_millis(300);
            config.auth = UpstreamAuth::ClientCredentials {
                token_url: config.base.join("/token").unwrap(),
                client_id: "healthcloud".into(),
                secret_file: secret.clone(),
                scope: None,
            };
        },
    )
    .await;
    let error = source.read("Patient", "p").await.unwrap_err();
    assert!(matches!(error, UpstreamError::Deadline { .. }), "{error}");
}

#[tokio::test]
async fn a_token_endpoint_error_body_is_never_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let with_token_endpoint = |config: &mut UpstreamConfig| {
        config.auth = UpstreamAuth::ClientCredentials {
            token_url: config.base.join("/token").unwrap(),
            client_id: "healthcloud".into(),
            secret_file: secret.clone(),
            scope: None,
        };
    };
    let leak = "java.sql.SQLException: password=hunter2 at db01.idp.internal";
    for (status, body, code) in [
        (StatusCode::INTERNAL_SERVER_ERROR, leak.to_owned(), None),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": leak}).to_string(),
            Some("invalid_request"),
        ),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": leak}).to_string(),
            None,
        ),
        (
            StatusCode::OK,
            json!({"access_token": "x", "token_type": leak}).to_string(),
            None,
        ),
    ] {
        let source = hostile(
            Router::new().fallback(move || async move { (status, body) }),
            with_token_endpoint,
        )
        .await;
        let error = source.read("Patient", "p").await.unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("db01"),
            "{shown}"
        );
        assert!(shown.contains("'hostile'"), "{shown}");
        match error {
            UpstreamError::CredentialsRefused { oauth_error, .. } => {
                assert_eq!(oauth_error.as_deref(), code, "{shown}")
            }
            UpstreamError::TokenEndpoint { .. } => assert!(code.is_none()),
            other => panic!("{other}"),
        }
    }

    // A token endpoint streaming past the source's cap is cut off.
    let source = hostile(
        Router::new().fallback(|| async {
            let chunks = futures_util::stream::iter(
                (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])),
            );
            Body::from_stream(chunks).into_response()
        }),
        |config| {
            config.max_response_bytes = 1024 * 1024;
            with_token_endpoint(config);
        },
    )
    .await;
    let error = source.read("Patient", "p").await.unwrap_err();
    assert!(
        matches!(&error, UpstreamError::TokenEndpoint { problem, .. } if problem.contains("1048576 bytes")),
        "{error}"
    );
}

/// A hostile source on loopback answering every request with `router`.
async fn hostile(router: Router, configure: impl FnOnce(&mut UpstreamConfig)) -> Upstream {
    let address = serve(router).await;
    let mut config = UpstreamConfig::new(
        "hostile",
        Url::parse(&format!("http://{address}/fhir")).unwrap(),
    );
    configure(&mut config);
    Upstream::open(config).unwrap()
}

#[tokio::test]
async fn a_source_that_never_answers_fails_at_its_deadline_naming_it() {
    let source = hostile(
        Router::new().fallback(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
        |config| config.deadline = Duration::from_millis(300),
    )
    .await;
    let error = source.search("Observation", &[]).await.unwrap_err();
    assert!(matches!(error, UpstreamError::Deadline { .. }), "{error}");
    assert!(error.to_string().contains("'hostile'"), "{error}");
}

#[tokio::test]
async fn a_source_error_body_is_never_passed_on() {
    let source = hostile(
        Router::new().fallback(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "java.sql.SQLException: password=hunter2 at db01.hospital.internal",
            )
        }),
        |_| {},
    )
    .await;
    let error = source.search("Observation", &[]).await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::Status { status, .. } if status == StatusCode::INTERNAL_SERVER_ERROR),
        "{error}"
    );
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("db01"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_source_answering_html_or_the_wrong_fhir_is_refused_as_not_fhir() {
    let html = hostile(
        Router::new().fallback(|| async { axum::response::Html("<html>login</html>") }),
        |_| {},
    )
    .await;
    let error = html.search("Observation", &[]).await.unwrap_err();
    assert!(matches!(error, UpstreamError::NotFhir { .. }), "{error}");

    let wrong = hostile(
        Router::new()
            .route(
                "/fhir/Observation",
                get(|| async {
                    axum::Json(json!({"resourceType": "Bundle", "type": "collection"}))
                }),
            )
            .route(
                "/fhir/Observation/{id}",
                get(|| async {
                    axum::Json(json!({"resourceType": "Observation", "id": "someone-else"}))
                }),
            ),
        |_| {},
    )
    .await;
    let error = wrong.search("Observation", &[]).await.unwrap_err();
    assert!(error.to_string().contains("searchset"), "{error}");
    let error = wrong.read("Observation", "asked-for").await.unwrap_err();
    assert!(error.to_string().contains("someone-else"), "{error}");
}

#[tokio::test]
async fn a_source_streaming_past_its_cap_is_cut_off() {
    let source = hostile(
        Router::new().fallback(|| async {
            // 4 MiB in chunks, no length announced.
            let chunks = futures_util::stream::iter(
                (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])),
            );
            (
                [("content-type", "application/fhir+json")],
                Body::from_stream(chunks),
            )
                .into_response()
        }),
        |config| config.max_response_bytes = 1024 * 1024,
    )
    .await;
    let error = source.search("Observation", &[]).await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::TooLarge { limit, .. } if limit == 1024 * 1024),
        "{error}"
    );
}

#[tokio::test]
async fn a_source_that_refuses_connections_is_unreachable_without_the_query_in_the_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let source = Upstream::open(UpstreamConfig::new(
        "closed",
        Url::parse(&format!("http://{address}/fhir")).unwrap(),
    ))
    .unwrap();
    let error = source
        .search(
            "Patient",
            &[("identifier".into(), format!("{CPR}|0101701234"))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::Unreachable { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("0101701234"), "{error}");
}

/// A fresh database with the integration cloud's schema on each backend the tests can reach.
async fn databases() -> Vec<(tempfile::TempDir, Database)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("fhir.db").display());
    let mut databases = vec![(dir, open_database(&sqlite).await.unwrap())];
    if let Some(url) = healthcloud_platform::testing::postgres_database("hc_upstream_test").await {
        databases.push((
            tempfile::tempdir().unwrap(),
            open_database(&url).await.unwrap(),
        ));
    }
    databases
}

#[tokio::test]
async fn a_patient_is_matched_at_a_source_by_cpr_and_remembered_without_asking_again() {
    for (_dir, db) in databases().await {
        let medplum = Medplum::start(&[]);
        let gp = gp_upstream(&medplum, UpstreamAuth::None);
        let index = PatientIndex::new(db.clone(), Duration::from_secs(3600));

        let found = index.at_source(&gp, "hc-1", "0101701234").await.unwrap();
        assert_eq!(found.as_deref(), Some("gp-patient-1"));
        assert_eq!(
            index
                .patient_of("gp", "gp-patient-1")
                .await
                .unwrap()
                .as_deref(),
            Some("hc-1")
        );
        assert_eq!(
            index.at_source(&gp, "hc-3", "0303903456").await.unwrap(),
            None
        );

        // The source goes away: what the index holds still answers, unknown patients included.
        drop(medplum);
        assert_eq!(
            index
                .at_source(&gp, "hc-1", "0101701234")
                .await
                .unwrap()
                .as_deref(),
            Some("gp-patient-1")
        );
        assert_eq!(
            index.at_source(&gp, "hc-3", "0303903456").await.unwrap(),
            None
        );

        // A stale match is looked up again, so the source's absence now shows.
        let stale = PatientIndex::new(db, Duration::ZERO);
        let error = stale
            .at_source(&gp, "hc-1", "0101701234")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                IdentityError::Upstream(UpstreamError::Unreachable { .. })
            ),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_source_ignoring_the_identifier_or_holding_a_cpr_twice_matches_nobody() {
    let (_dir, db) = databases().await.remove(0);
    let index = PatientIndex::new(db, Duration::from_secs(3600));

    // Answers every search with someone else: an upstream that ignored `identifier`.
    let ignoring = hostile(
        Router::new().fallback(|| async {
            axum::Json(searchset(vec![patient("someone-else", "0909909999")]))
        }),
        |_| {},
    )
    .await;
    assert_eq!(
        index
            .at_source(&ignoring, "hc-1", "0101701234")
            .await
            .unwrap(),
        None
    );

    let twice = hostile(
        Router::new().fallback(|| async {
            axum::Json(searchset(vec![
                patient("a", "0101701234"),
                patient("b", "0101701234"),
            ]))
        }),
        |config| config.name = "twice".into(),
    )
    .await;
    let refused = index
        .at_source(&twice, "hc-1", "0101701234")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IdentityError::Ambiguous { count: 2, .. }),
        "{refused}"
    );
    assert_eq!(index.patient_of("twice", "a").await.unwrap(), None);
}

fn gp_source(upstream: Upstream) -> FederatedSource {
    let mut capabilities = UpstreamCapabilities::default();
    capabilities.types.insert(
        "Observation".into(),
        ["patient", "code", "category"].map(String::from).into(),
    );
    FederatedSource {
        upstream,
        capabilities: capabilities.into(),
    }
}

fn observation_query(
    filters: &[(&str, &str)],
    restriction: Option<(&str, &[(&str, &str)])>,
) -> SearchQuery {
    let pairs: Vec<(String, String)> = filters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut query = SearchQuery::parse("Observation", &pairs, PageLimits::default()).unwrap();
    if let Some((patient, restriction)) = restriction {
        let pairs: Vec<(String, String)> = restriction
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        query.constraints.groups = vec![vec![Alternative {
            compartment: Some(patient.to_owned()),
            filters: parse_restriction(query.type_def, &pairs).unwrap(),
        }]];
    }
    query
}

const HC: CompartmentPatient<'static> = CompartmentPatient {
    id: "hc-1",
    cpr: "0101701234",
    remembered: &Remembered::NOT_READ,
};

#[tokio::test]
async fn a_sources_readings_come_back_named_through_healthcloud_in_the_patients_compartment() {
    let (_dir, db) = databases().await.remove(0);
    let index = PatientIndex::new(db, Duration::from_secs(3600));
    let medplum = Medplum::start(&[]);
    let mut source = gp_source(gp_upstream(&medplum, UpstreamAuth::None));
    source.capabilities = source.upstream.capabilities().await.unwrap().into();

    let query = observation_query(
        &[("code", "http://loinc.org|85354-9")],
        Some(("hc-1", &[("category", "vital-signs")])),
    );
    let answer = search_source(&source, &index, &query, HC).await.unwrap();
    assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
    let mut ids: Vec<&str> = answer.resources.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["gp.gp-bp-1-1", "gp.gp-bp-1-2", "gp.gp-bp-1-3"]);
    for reading in &answer.resources {
        let reading: Value = serde_json::from_str(&reading.content).unwrap();
        assert_eq!(reading["subject"]["reference"], "Patient/hc-1");
        assert_eq!(reading["meta"]["source"], "urn:healthcloud:source:gp");
    }

    // A scope restricted to laboratory results reaches none of the GP's vital signs.
    let laboratory = observation_query(&[], Some(("hc-1", &[("category", "laboratory")])));
    let answer = search_source(&source, &index, &laboratory, HC)
        .await
        .unwrap();
    assert!(answer.resources.is_empty() && answer.returned == 0);

    // A patient the source does not hold: nothing, and nothing dropped.
    let stranger = CompartmentPatient {
        id: "hc-9",
        cpr: "0909909999",
        remembered: &Remembered::NOT_READ,
    };
    let answer = search_source(&source, &index, &observation_query(&[], None), stranger)
        .await
        .unwrap();
    assert!(answer.resources.is_empty() && answer.returned == 0 && answer.dropped.is_empty());
}

fn observation(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "encounter": {"reference": "Encounter/enc-7"},
           "meta": "not an object",
           "effectiveDateTime": "2026-03-01T08:00:00Z"})
}

#[tokio::test]
async fn a_source_that_ignores_the_query_leaks_no_other_patient_and_nothing_outside_the_scope() {
    let (_dir, db) = databases().await.remove(0);
    let index = PatientIndex::new(db, Duration::from_secs(3600));
    let observation_searches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = observation_searches.clone();
    let source = gp_source(
        hostile(
            Router::new()
                .route(
                    "/fhir/Patient",
                    get(|| async { axum::Json(searchset(vec![patient("src-1", "0101701234")])) }),
                )
                .route(
                    "/fhir/Observation",
                    get(move |headers: axum::http::HeaderMap| {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // The same patient named absolutely, under the source's own base.
                        let host = headers["host"].to_str().unwrap().to_owned();
                        let mut absolute = observation("mine-absolute", "src-1", "vital-signs");
                        absolute["subject"]["reference"] =
                            json!(format!("http://{host}/fhir/Patient/src-1"));
                        async move {
                            let mut bundle = searchset(vec![
                                observation("mine", "src-1", "vital-signs"),
                                absolute,
                                observation("lab", "src-1", "laboratory"),
                                observation("theirs", "src-2", "vital-signs"),
                                json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/src-1"}}),
                            ]);
                            bundle["entry"].as_array_mut().unwrap().push(json!({
                                "resource": {"resourceType": "OperationOutcome", "id": "warn"},
                                "search": {"mode": "outcome"}}));
                            axum::Json(bundle)
                        }
                    }),
                ),
            |config| config.name = "gp".into(),
        )
        .await,
    );

    let query = observation_query(&[], Some(("hc-1", &[("category", "vital-signs")])));
    let answer = search_source(&source, &index, &query, HC).await.unwrap();
    let ids: Vec<&str> = answer.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["gp.mine", "gp.mine-absolute"]);
    let resources: Vec<Value> = (answer.resources.iter())
        .map(|r| serde_json::from_str(&r.content).unwrap())
        .collect();
    assert_eq!(resources[0]["subject"]["reference"], "Patient/hc-1");
    assert_eq!(resources[1]["subject"]["reference"], "Patient/hc-1");
    assert_eq!(resources[0]["encounter"]["reference"], "Encounter/gp.enc-7");
    let mut dropped: Vec<(String, String)> = answer
        .dropped
        .iter()
        .map(|d| (d.resource.clone(), d.reason.clone()))
        .collect();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            (
                "Condition/c".to_owned(),
                "its type is \"Condition\", not Observation".to_owned()
            ),
            (
                "Observation/lab".to_owned(),
                "it does not satisfy the search or the caller's access".to_owned()
            ),
            (
                "Observation/theirs".to_owned(),
                "it is not in the patient's compartment".to_owned()
            ),
        ]
    );
    assert_eq!(
        observation_searches.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A source that cannot search the type by patient is never asked for it.
    let mut undeclared = source.clone();
    std::sync::Arc::make_mut(&mut undeclared.capabilities)
        .types
        .insert(
            "Observation".into(),
            ["code", "category"].map(String::from).into(),
        );
    let answer = search_source(&undeclared, &index, &query, HC)
        .await
        .unwrap();
    assert!(answer.resources.is_empty() && answer.returned == 0 && answer.dropped.is_empty());
    assert_eq!(
        observation_searches.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A patient the source does not know is never searched for.
    let stranger = CompartmentPatient {
        id: "hc-9",
        cpr: "0909909999",
        remembered: &Remembered::NOT_READ,
    };
    let answer = search_source(&source, &index, &query, stranger)
        .await
        .unwrap();
    assert!(answer.resources.is_empty() && answer.returned == 0);
    assert_eq!(
        observation_searches.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

// --- a region's identity provider ----------------------------------------------------------------

/// A JWT access token from `tokens`' token endpoint for client `hc` (secret `secret`).
async fn jwt_from(tokens: &TokenServer, secret: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(tokens.token_url())
        .basic_auth("hc", Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "user/Patient.rs"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// The FHIR API trusting independent identity providers (oidc-provider issuing RS256 JWT
/// access tokens, its keys found through its discovery document): a token for this API, with
/// the role in a claim, reads what its scopes allow; a trusted provider's token for another
/// service is refused for its audience.
#[tokio::test]
async fn the_fhir_api_accepts_tokens_of_a_trusted_identity_provider_for_itself_only() {
    use common::{BASE, Backend, Harness};
    use healthcloud_integration::api::{self, FhirConfig, FhirState};
    use healthcloud_platform::auth::issuers::TrustedIssuers;

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hc-secret");
    std::fs::write(&secret_file, "hc-secret\n").unwrap();
    let client = format!("hc:{}", secret_file.display());
    let provider = |audience: &str| {
        TokenServer::start(&[
            "--port",
            "0",
            "--client",
            &client,
            "--scope",
            "user/Patient.rs",
            "--jwt-audience",
            audience,
            "--claim",
            "role=clinician",
            // The actor consent opt-outs name: a clinician token must carry it.
            "--claim",
            "org=rigshospitalet",
        ])
    };
    let region = provider(BASE);
    let elsewhere = provider("https://other.example/fhir/r4");
    let issuer = region.issuer.as_str().trim_end_matches('/').to_owned();

    let mut h = Harness::new(Backend::Sqlite).await.unwrap();
    let state = FhirState {
        service: h.service.clone(),
        verifier: h.issuer.verifier().trusting(
            TrustedIssuers::default()
                .with(&issuer, "role")
                .unwrap()
                .with(elsewhere.issuer.as_str().trim_end_matches('/'), "role")
                .unwrap(),
        ),
        config: std::sync::Arc::new(FhirConfig {
            base_url: BASE.into(),
            audience: BASE.into(),
            max_body_bytes: 64 * 1024,
            cors_origins: Vec::new(),
            authorization: None,
            subscription_endpoints: Default::default(),
        }),
    };
    h.app = api::mount(state);

    let token = jwt_from(&region, "hc-secret").await;
    let read = h.get("Patient/pat-a", &token).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    // Its scopes hold: user/Patient.rs reads no Observations.
    let refused = h.get("Observation?patient=pat-a", &token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    let for_another = jwt_from(&elsewhere, "hc-secret").await;
    let refused = h.get("Patient/pat-a", &for_another).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("audience"),
        "{}",
        refused.body
    );
}
