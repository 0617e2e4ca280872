//! The sources admin API over real HTTP on loopback, against another healthcloud node as the
//! upstream source: a platform operator lists, checks, adds, replaces and removes sources,
//! every change written to `sources.toml` and used at once; a clinician and a region admin
//! are refused 403 naming the role, each refusal in the security log.

mod common;

use std::path::Path;

use common::{Backend, Harness};
use healthcloud_integration::Integration;
use healthcloud_integration::admin::SourcesAdmin;
use healthcloud_integration::sources_file::{SourceEntry, SourcesFile};
use healthcloud_platform::auth::{Role, TokenRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Serves `router` on a loopback port already bound.
fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    tokio::spawn(async move { axum::serve(listener, router).await });
}

/// A loopback port nobody listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// This node: the integration cloud of `dir` with its sources admin API on loopback, and
/// `flags` as if given with `--source`.
async fn node(dir: &Path, flags: Vec<SourceEntry>) -> (Integration, SourcesAdmin, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let database = format!("sqlite://{}", dir.join("healthcloud.db").display());
    let integration = Integration::open(&database, &url, dir).await.unwrap();
    let file = SourcesFile::load(&SourcesFile::path_in(dir)).unwrap();
    let admin = SourcesAdmin::open(&integration.state, file, flags).unwrap();
    serve(listener, integration.router().merge(admin.router()));
    (integration, admin, url)
}

struct Caller<'a> {
    http: reqwest::Client,
    url: &'a str,
}

impl Caller<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }
}

#[tokio::test]
async fn a_platform_operator_manages_sources_over_http_and_nobody_else_may() {
    // The upstream: another region's healthcloud, reached with a token it issued.
    let other = Harness::new(Backend::Sqlite).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_base = format!("http://{}/fhir/r4", listener.local_addr().unwrap());
    serve(listener, other.app.clone());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("other.token"),
        other.clinician_of("hospital-hovedstaden"),
    )
    .unwrap();
    std::fs::write(
        SourcesFile::path_in(dir.path()),
        format!(
            "[[source]]\nname = \"hovedstaden\"\norganization = \"Organization/region-h\"\n\
             base = \"{other_base}\"\nauth = \"bearer-file\"\ntoken-file = \"other.token\"\n"
        ),
    )
    .unwrap();
    let down = format!("http://127.0.0.1:{}/fhir", dead_port());
    let (integration, _admin, url) =
        node(dir.path(), vec![SourceEntry::new("flagged", down.clone())]).await;
    let api = Caller {
        http: reqwest::Client::new(),
        url: &url,
    };
    let operator = integration
        .issuer
        .mint(Role::PlatformOperator, TokenRequest::default())
        .unwrap();
    let operator = Some(operator.as_str());
    use reqwest::Method;

    // Operating the platform reaches no patient's data.
    let (status, refused) = api
        .call(Method::GET, "/fhir/r4/Patient?_count=1", operator, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("platform-operator token gives no access to FHIR data"),
        "{refused}"
    );

    // Both sources are listed, each saying where it is configured; nothing was asked yet.
    let (status, listed) = api
        .call(Method::GET, "/admin/v1/sources", operator, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flagged", "hovedstaden"]);
    assert_eq!(listed[1]["configured_in"], "file");
    assert_eq!(listed[1]["auth"], "bearer-file");
    assert_eq!(listed[1]["organization"], "Organization/region-h");
    assert_eq!(listed[0]["configured_in"], "command-line");
    assert_eq!(listed[1]["last_success"], Value::Null);

    // A check reads the CapabilityStatement now, with the token from the file.
    let (status, checked) = api
        .call(
            Method::POST,
            "/admin/v1/sources/hovedstaden/check",
            operator,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    let types: Vec<&str> = checked["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(types.contains(&"Observation"), "{checked}");
    assert_eq!(checked["failures_in_a_row"], 0);
    assert!(checked["last_success"].is_string(), "{checked}");
    assert!(checked["latency_ms"].is_u64(), "{checked}");

    // A source that is down: 502 naming it, and its health says so.
    let (status, refused) = api
        .call(
            Method::POST,
            "/admin/v1/sources/flagged/check",
            operator,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(
        message.contains("source 'flagged' could not be reached"),
        "{message}"
    );
    let (_, flagged) = api
        .call(Method::GET, "/admin/v1/sources/flagged", operator, None)
        .await;
    assert_eq!(flagged["failures_in_a_row"], 1, "{flagged}");
    assert_eq!(flagged["recent_failures"].as_array().unwrap().len(), 1);

    // A credential file outside the data directory is refused: the API cannot send any file
    // the server can read to an address of the caller's choosing.
    let outside = json!({"base": other_base, "auth": "bearer-file", "token-file": "/etc/hostname"});
    let (status, refused) = api
        .call(Method::PUT, "/admin/v1/sources/gp", operator, Some(outside))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("inside the data directory")
    );

    // Added: written to the file, used at once, checked right away.
    let gp = json!({
        "base": other_base,
        "organization": "Organization/gp-clinic",
        "auth": "bearer-file",
        "token-file": "other.token",
        "types": ["Observation", "Patient"],
        "deadline-secs": 3,
    });
    let (status, added) = api
        .call(
            Method::PUT,
            "/admin/v1/sources/gp",
            operator,
            Some(gp.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["types"], json!(["Observation", "Patient"]));
    assert_eq!(added["failures_in_a_row"], 0, "{added}");
    assert!(integration.state.service.sources().contains("gp"));
    let file = SourcesFile::load(&SourcesFile::path_in(dir.path())).unwrap();
    let written: Vec<&str> = file.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(written, ["hovedstaden", "gp"], "the flag is not written");
    assert_eq!(file.get("gp").unwrap().deadline_secs, Some(3.0));

    // Replaced: 200, the file holds the new settings.
    let mut narrower = gp.clone();
    narrower["types"] = json!(["Observation"]);
    let (status, replaced) = api
        .call(
            Method::PUT,
            "/admin/v1/sources/gp",
            operator,
            Some(narrower),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["types"], json!(["Observation"]));
    let file = SourcesFile::load(&SourcesFile::path_in(dir.path())).unwrap();
    assert_eq!(
        file.get("gp").unwrap().types,
        Some(vec!["Observation".to_owned()])
    );

    // What cannot be written is refused, naming the key and the fix; the file is unchanged.
    for (body, status, expected) in [
        (
            json!({ "base": other_base, "tokn-file": "x" }),
            StatusCode::BAD_REQUEST,
            "tokn-file",
        ),
        (
            json!({ "base": "ftp://gp.example.dk/R4" }),
            StatusCode::BAD_REQUEST,
            "give the source's FHIR base URL",
        ),
        (
            json!({ "name": "other", "base": other_base }),
            StatusCode::BAD_REQUEST,
            "leave name out of the body",
        ),
        (
            json!({ "base": other_base, "auth": "bearer-file", "token-file": "secrets/missing.token" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot be read",
        ),
    ] {
        let (got, refused) = api
            .call(Method::PUT, "/admin/v1/sources/gp", operator, Some(body))
            .await;
        assert_eq!(got, status, "{refused}");
        let message = refused["error"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    let (status, refused) = api
        .call(
            Method::PUT,
            "/admin/v1/sources/flagged",
            operator,
            Some(json!({ "base": other_base })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("--source"));
    assert_eq!(
        SourcesFile::load(&SourcesFile::path_in(dir.path())).unwrap(),
        file
    );

    // Removed: gone from the registry and the file; a command-line source only from the
    // registry.
    let (status, removed) = api
        .call(Method::DELETE, "/admin/v1/sources/gp", operator, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["configured_in"], "file");
    assert!(!integration.state.service.sources().contains("gp"));
    let (status, _) = api
        .call(Method::GET, "/admin/v1/sources/gp", operator, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, removed) = api
        .call(Method::DELETE, "/admin/v1/sources/flagged", operator, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["configured_in"], "command-line");
    let file = SourcesFile::load(&SourcesFile::path_in(dir.path())).unwrap();
    let written: Vec<&str> = file.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(written, ["hovedstaden"]);

    // A restart reads the file: the source added over the API and removed again stays away,
    // the one in the file is back.
    drop(integration);
    let (restarted, admin, _) = node(dir.path(), vec![]).await;
    let names: Vec<String> = admin
        .list()
        .await
        .into_iter()
        .map(|view| view.status.name)
        .collect();
    assert_eq!(names, ["hovedstaden"]);
    drop(restarted);
}

#[tokio::test]
async fn clinicians_and_region_admins_are_refused_into_the_security_log() {
    let dir = tempfile::tempdir().unwrap();
    let (integration, _admin, url) = node(dir.path(), vec![]).await;
    let api = Caller {
        http: reqwest::Client::new(),
        url: &url,
    };
    use reqwest::Method;
    let mint = |role, sub: &str, region: Option<&str>, org: Option<&str>| {
        integration
            .issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(sub.to_owned()),
                    region: region.map(str::to_owned),
                    org: org.map(str::to_owned),
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let clinician = mint(Role::Clinician, "dr-jensen", None, Some("hospital"));
    let region_admin = mint(
        Role::RegionAdmin,
        "ra-hovedstaden",
        Some("hovedstaden"),
        None,
    );
    let body = json!({ "base": "http://127.0.0.1:9/fhir" });
    for (token, sub, role) in [
        (&clinician, "dr-jensen", "clinician"),
        (&region_admin, "ra-hovedstaden", "region-admin"),
    ] {
        for (method, path, body) in [
            (Method::GET, "/admin/v1/sources", None),
            (Method::PUT, "/admin/v1/sources/evil", Some(body.clone())),
        ] {
            let (status, refused) = api.call(method.clone(), path, Some(token), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} {path}: {refused}");
            let message = refused["error"].as_str().unwrap();
            assert!(
                message.contains("role platform-operator")
                    && message.contains(&format!("yours is for role {role}"))
                    && message.contains("healthcloud token --role platform-operator"),
                "{message}"
            );
        }
        let log = integration
            .state
            .service
            .security_log()
            .recent(10, Some(sub))
            .await
            .unwrap();
        let rows: Vec<(&str, &str)> = log
            .iter()
            .map(|row| (row.kind.as_str(), row.request.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("source-admin", "PUT /admin/v1/sources/evil"),
                ("source-admin", "GET /admin/v1/sources"),
            ],
            "{role}"
        );
        assert_eq!(log[0].role, role);
    }
    assert!(!integration.state.service.sources().contains("evil"));
    assert!(
        !SourcesFile::path_in(dir.path()).exists(),
        "nothing written"
    );

    // No token, or a token for another service: 401.
    let (status, refused) = api.call(Method::GET, "/admin/v1/sources", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let elsewhere = integration
        .issuer
        .mint(
            Role::PlatformOperator,
            TokenRequest {
                audience: vec!["http://elsewhere.test/fhir/r4".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let (status, refused) = api
        .call(Method::GET, "/admin/v1/sources", Some(&elsewhere), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("audience"));
}
