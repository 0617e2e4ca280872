//! Attacks on outgoing HTTP, from a hostile app's side (the `outbound` guest test component
//! fetches whatever URL it is told to) and from a vendor's side (a grant naming an address
//! inside the network):
//!
//! - DNS rebinding: a granted name that answers a public address when checked and
//!   127.0.0.1 when connected never reaches a loopback server, over http or https;
//! - a granted name that resolves inside the network is refused before any connection;
//! - port scanning: closed, silent, resetting and non-TLS ports all fail with one error code;
//! - a literal internal address in a grant is refused at install, locally and through the
//!   region admin API, unless the region admin allows it explicitly, which is audited.

use healthcloud_runtime::testing as common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, Host, REGION, fixture, test_component};
use healthcloud_integration::FhirService;
use healthcloud_integration::import::Importer;
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_package::client::StoreClient;
use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::{Capability, Manifest};
use healthcloud_package::package::Package;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;
use healthcloud_runtime::capability::outbound::{Resolution, Resolve};
use healthcloud_runtime::{Grant, InstallError, Limits, RegionsConfig, Runtime, RuntimeConfig};
use healthcloud_store::service::{Store, StoreConfig, StoreLimits};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A public address (example.org's) the rebinding resolver answers at first.
const PUBLIC: &str = "93.184.215.14";

/// A loopback server that counts every connection it accepts and records each request head.
struct Loopback {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers `200 ok` to any request.
    Http,
    /// Accepts and never answers.
    Silent,
    /// Accepts and closes at once.
    Reset,
}

async fn loopback(behaviour: Behaviour) -> Loopback {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (counted, recorded) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            match behaviour {
                Behaviour::Silent => held.push(socket),
                Behaviour::Reset => drop(socket),
                Behaviour::Http => {
                    let recorded = recorded.clone();
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buffer = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buffer[..n]),
                            }
                        }
                        recorded
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    });
                }
            }
        }
    });
    Loopback {
        port,
        connections,
        requests,
    }
}

impl Loopback {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A DNS server under the attacker's control: answers each lookup with the next of
/// `answers` (the last one repeating), and counts the lookups.
#[derive(Debug)]
struct Scripted {
    answers: Vec<Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl Scripted {
    fn new(answers: &[&[&str]]) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: answers
                .iter()
                .map(|answer| answer.iter().map(|ip| ip.parse().unwrap()).collect())
                .collect(),
            lookups: AtomicUsize::new(0),
        })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl Resolve for Scripted {
    fn resolve<'a>(&'a self, _host: &'a str, port: u16) -> Resolution<'a> {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = &self.answers[n.min(self.answers.len() - 1)];
        let addresses = answer.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        Box::pin(async move { Ok(addresses) })
    }
}

/// A host whose outgoing connects and first bytes give up quickly, so a connection to the
/// unreachable public address fails inside the request's deadline.
async fn host() -> Host {
    Host::with_limits(Limits {
        host_call_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(3),
        ..common::test_limits()
    })
    .await
}

/// The `outbound` component's manifest requesting `capabilities` instead of example.org.
fn outbound_manifest(capabilities: &[&str]) -> (String, Vec<u8>) {
    let (manifest, bytes) = test_component("outbound");
    let requested: String = capabilities
        .iter()
        .map(|c| {
            format!(
                "[[capability]]\nname = \"{c}\"\njustification = \"The attack test asks for it.\"\n\n"
            )
        })
        .collect();
    let start = manifest.find("[[capability]]").unwrap();
    (format!("{}{requested}", &manifest[..start]), bytes)
}

fn install(host: &Host, capabilities: &[&str], grant: Grant) -> Result<(), InstallError> {
    let (manifest, bytes) = outbound_manifest(capabilities);
    host.runtime
        .install(
            REGION,
            Manifest::parse(&manifest).unwrap(),
            &bytes,
            "test-publisher-key",
            grant,
        )
        .map(drop)
}

fn capabilities(names: &[&str]) -> Vec<Capability> {
    names
        .iter()
        .map(|n| Capability::parse(n).unwrap())
        .collect()
}

async fn fetch(host: &Host, url: &str) -> Answer {
    host.get(
        &format!("/apps/{REGION}/tests/outbound/fetch?url={url}"),
        &host.clinician("pat-a"),
    )
    .await
}

#[tokio::test]
async fn dns_rebinding_from_a_public_answer_to_loopback_never_reaches_the_loopback_server() {
    for scheme in ["http", "https"] {
        let host = host().await;
        let server = loopback(Behaviour::Http).await;
        // Check time sees a public address; a second lookup would see the loopback server.
        let dns = Scripted::new(&[&[PUBLIC], &["127.0.0.1"]]);
        host.runtime.set_outbound_resolver(dns.clone());
        let grant = ["outbound-http:rebind.attacker.example"];
        install(&host, &grant, capabilities(&grant).into()).unwrap();

        let answer = fetch(
            &host,
            &format!("{scheme}://rebind.attacker.example:{}/steal", server.port),
        )
        .await;

        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{scheme}: {}",
            answer.body
        );
        assert_eq!(
            answer.body, "error: ErrorCode::DestinationUnavailable",
            "{scheme}: the connection went to the checked public address, which is unreachable here"
        );
        assert_eq!(dns.lookups(), 1, "{scheme}: the name is resolved once");
        assert_eq!(
            server.connections(),
            0,
            "{scheme}: the loopback server saw a connection"
        );
        assert!(server.requests().is_empty());
    }
}

#[tokio::test]
async fn a_granted_name_that_resolves_inside_the_network_is_refused_before_connecting() {
    let server = loopback(Behaviour::Http).await;
    for answer in [
        &["127.0.0.1"][..],
        &["169.254.169.254"],
        &["::ffff:127.0.0.1"],
        &["10.0.0.5"],
        &["::1"],
        // One internal address among public ones is enough to refuse.
        &[PUBLIC, "127.0.0.1"],
    ] {
        let host = host().await;
        let dns = Scripted::new(&[answer]);
        host.runtime.set_outbound_resolver(dns.clone());
        let grant = ["outbound-http:api.attacker.example"];
        install(&host, &grant, capabilities(&grant).into()).unwrap();
        for scheme in ["http", "https"] {
            let refused = fetch(
                &host,
                &format!("{scheme}://api.attacker.example:{}/", server.port),
            )
            .await;
            assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{answer:?}");
            assert_eq!(
                refused.body, "error: ErrorCode::DestinationIpProhibited",
                "{answer:?} {scheme}"
            );
        }
    }
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_port_scan_sees_one_error_for_closed_silent_resetting_and_non_tls_ports() {
    let host = host().await;
    let open = loopback(Behaviour::Http).await;
    let silent = loopback(Behaviour::Silent).await;
    let reset = loopback(Behaviour::Reset).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // The region admin allowed this internal host, on any port: the worst case for a scan.
    let grant = ["outbound-http:127.0.0.1"];
    install(
        &host,
        &grant,
        Grant::new(capabilities(&grant)).allowing_internal_addresses(true),
    )
    .unwrap();

    let ok = fetch(&host, &format!("http://127.0.0.1:{}/", open.port)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, "200");

    let mut answers = Vec::new();
    for url in [
        format!("http://127.0.0.1:{closed}/"),
        format!("http://127.0.0.1:{}/", silent.port),
        format!("http://127.0.0.1:{}/", reset.port),
        format!("https://127.0.0.1:{}/", open.port),
        format!("https://127.0.0.1:{closed}/"),
        format!("https://127.0.0.1:{}/", silent.port),
    ] {
        let answer = fetch(&host, &url).await;
        answers.push((url, answer.status, answer.body));
    }
    for (url, status, body) in &answers {
        assert_eq!(*status, StatusCode::BAD_GATEWAY, "{url}: {body}");
        assert_eq!(body, "error: ErrorCode::DestinationUnavailable", "{url}");
    }
    assert!(silent.connections() >= 2 && reset.connections() >= 1);
}

#[tokio::test]
async fn an_allowed_internal_name_is_connected_at_the_checked_address_with_its_own_host_header() {
    let host = host().await;
    let server = loopback(Behaviour::Http).await;
    let dns = Scripted::new(&[&["127.0.0.1"], &[PUBLIC]]);
    host.runtime.set_outbound_resolver(dns.clone());
    let capability = format!("outbound-http:lab.hospital.internal:{}", server.port);
    let grant = [capability.as_str()];
    install(
        &host,
        &grant,
        Grant::new(capabilities(&grant)).allowing_internal_addresses(true),
    )
    .unwrap();

    let answer = fetch(
        &host,
        &format!("http://lab.hospital.internal:{}/results", server.port),
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(dns.lookups(), 1);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with("GET /results HTTP/1.1\r\n"),
        "{}",
        requests[0]
    );
    assert!(
        requests[0].to_ascii_lowercase().contains(&format!(
            "\r\nhost: lab.hospital.internal:{}\r\n",
            server.port
        )),
        "{}",
        requests[0]
    );
}

#[tokio::test]
async fn literal_internal_addresses_in_a_grant_are_refused_at_install() {
    let host = host().await;
    for internal in [
        "outbound-http:169.254.169.254",
        "outbound-http:10.0.0.5",
        "outbound-http:127.0.0.1:8080",
        "outbound-http:[::1]",
        "outbound-http:[::ffff:127.0.0.1]",
        "outbound-http:[::ffff:a9fe:a9fe]",
        "outbound-http:localhost",
        "outbound-http:metadata.google.internal",
        "outbound-http:100.64.0.1",
        "outbound-http:[fd00::1]",
        "outbound-http:192.168.0.1",
        "outbound-http:0.0.0.0",
    ] {
        let grant = [internal];
        let refused = install(&host, &grant, capabilities(&grant).into()).unwrap_err();
        let message = refused.to_string();
        assert!(
            matches!(refused, InstallError::InternalAddress { .. })
                && message.contains("an address inside your network")
                && message.contains("--allow-internal-address"),
            "{internal}: {message}"
        );
        assert!(
            host.runtime.installed(REGION, "tests/outbound").is_none(),
            "{internal} was installed"
        );
        // Requested but left out of the grant, it installs.
        install(&host, &grant, Grant::new(vec![])).unwrap();
        host.runtime.uninstall(REGION, "tests/outbound");
    }
    // Disguised forms are not even a capability.
    for disguised in [
        "outbound-http:2130706433",
        "outbound-http:0x7f000001",
        "outbound-http:0xa9fea9fe",
    ] {
        let error = Capability::parse(disguised).unwrap_err();
        assert!(error.reason.contains("in disguise"), "{disguised}: {error}");
    }
}

// ---- Through the region admin API, with a real store ----

struct Cloud {
    db: Database,
    runtime: Runtime,
    app: axum::Router,
    issuer: TokenIssuer,
    store_url: String,
    dir: tempfile::TempDir,
}

fn publisher_key() -> SecretKey {
    SecretKey::from_seed(&[9u8; 32])
}

async fn cloud() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let db = healthcloud_integration::open_database(&format!(
        "sqlite://{}",
        dir.path().join("cloud.db").display()
    ))
    .await
    .unwrap();
    let fhir = EmbeddedStore::new(db.clone());
    let mut importer = Importer::new(&fhir);
    importer.add(fixture()).await.unwrap();
    importer.finish().await.unwrap();
    let issuer = TokenIssuer::generate("test-issuer").with_audience(vec![
        healthcloud_platform::auth::apps_audience(common::PUBLIC_URL),
    ]);
    let runtime = Runtime::new(RuntimeConfig {
        public_url: common::PUBLIC_URL.into(),
        service: FhirService::new(EmbeddedStore::new(db.clone()), PageLimits::default()),
        database: db.clone(),
        verifier: issuer.verifier(),
        limits: common::test_limits(),
        cache_dir: Some(dir.path().join("compiled")),
    })
    .await
    .unwrap();
    let checker = runtime.clone();
    let (store, _) = Store::open(StoreConfig {
        db: db.clone(),
        dir: dir.path().join("store"),
        verifier: issuer.verifier(),
        check: Arc::new(move |manifest, bytes| {
            checker.validate(manifest, bytes).map_err(|e| e.to_string())
        }),
        limits: StoreLimits::default(),
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", listener.local_addr().unwrap());
    let router = store.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    runtime
        .serve_regions(RegionsConfig {
            store: StoreClient::new(&store_url, None).unwrap(),
            feed_key: None,
            components_dir: dir.path().join("components"),
            poll: Duration::from_millis(200),
            push: None,
        })
        .await
        .unwrap();
    let cloud = Cloud {
        db,
        app: runtime.router(),
        runtime,
        issuer,
        store_url,
        dir,
    };
    let store_admin = StoreClient::new(
        &cloud.store_url,
        Some(cloud.token(Role::StoreAdmin, "store-admin", None)),
    )
    .unwrap();
    store_admin
        .approve_publisher("tests", "tests", &publisher_key().public().to_pem())
        .await
        .unwrap();
    cloud
}

impl Cloud {
    fn token(&self, role: Role, sub: &str, patient: Option<&str>) -> String {
        self.issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(sub.into()),
                    region: Some(REGION.into()),
                    patient: patient.map(str::to_owned),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    async fn publish(&self, manifest: &str, component: &[u8]) {
        let manifest = Manifest::parse(manifest).unwrap();
        let signed = Package::new(&manifest, component).sign(&publisher_key());
        StoreClient::new(
            &self.store_url,
            Some(self.token(Role::Publisher, "tests", None)),
        )
        .unwrap()
        .publish(
            &signed,
            reqwest::Body::from(component.to_vec()),
            component.len() as u64,
        )
        .await
        .unwrap();
    }

    /// A second runtime node on the same database, as after a restart: it loads the region's
    /// installs from their rows.
    async fn another_node(&self) -> axum::Router {
        let runtime = Runtime::new(RuntimeConfig {
            public_url: common::PUBLIC_URL.into(),
            service: FhirService::new(EmbeddedStore::new(self.db.clone()), PageLimits::default()),
            database: self.db.clone(),
            verifier: self.issuer.verifier(),
            limits: common::test_limits(),
            cache_dir: Some(self.dir.path().join("node-b").join("compiled")),
        })
        .await
        .unwrap();
        runtime
            .serve_regions(RegionsConfig {
                store: StoreClient::new(&self.store_url, None).unwrap(),
                feed_key: None,
                components_dir: self.dir.path().join("node-b").join("components"),
                poll: Duration::from_millis(200),
                push: None,
            })
            .await
            .unwrap();
        runtime.router()
    }

    async fn send(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
        send_via(&self.app, method, path, token, body).await
    }

    fn admin(&self) -> String {
        self.token(Role::RegionAdmin, "admin-of-testregion", None)
    }

    async fn audit(&self) -> Vec<Value> {
        let audit = self
            .send(
                "GET",
                &format!("/admin/v1/regions/{REGION}/audit"),
                &self.admin(),
                None,
            )
            .await;
        audit.json().as_array().unwrap().clone()
    }

    async fn installed_rows(&self) -> i64 {
        sqlx::Row::get(
            &self
                .db
                .sql("SELECT COUNT(*) FROM region_installs")
                .query()
                .fetch_one(self.db.pool())
                .await
                .unwrap(),
            0,
        )
    }
}

async fn send_via(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn outcomes(audit: &[Value], action: &str) -> Vec<(String, String, String)> {
    audit
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_region_admin_installs_a_literal_internal_address_only_with_the_audited_flag() {
    let cloud = cloud().await;
    let server = loopback(Behaviour::Http).await;
    let internal = format!("outbound-http:127.0.0.1:{}", server.port);
    let (manifest, component) = outbound_manifest(&[&internal, "outbound-http:169.254.169.254"]);
    // The store publishes it; the capability says where it leads.
    cloud.publish(&manifest, &component).await;
    let admin = cloud.admin();
    let installs = format!("/admin/v1/regions/{REGION}/installs");
    let app = "tests/outbound@0.1.0";

    let refused = cloud
        .send(
            "POST",
            &installs,
            &admin,
            Some(json!({"app": app, "grant": [internal]})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    let error = refused.json();
    assert_eq!(error["field"], "grant");
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "'{internal}' reaches 127.0.0.1, an address inside your network"
        )) && message.contains("--allow-internal-address"),
        "{message}"
    );
    assert_eq!(cloud.installed_rows().await, 0, "nothing was recorded");
    let unserved = cloud
        .send(
            "GET",
            &format!(
                "/apps/{REGION}/tests/outbound/fetch?url=http://127.0.0.1:{}/",
                server.port
            ),
            &cloud.token(Role::Clinician, "dr-test", Some("pat-a")),
            None,
        )
        .await;
    assert_eq!(unserved.status, StatusCode::NOT_FOUND, "{}", unserved.body);
    let refusals = outcomes(&cloud.audit().await, "install");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].2.starts_with("refused: ") && refusals[0].2.contains("inside your network"),
        "{refusals:?}"
    );

    // Allowed explicitly: installed, shown, audited with who allowed it.
    let allowed = cloud
        .send(
            "POST",
            &installs,
            &admin,
            Some(json!({"app": app, "grant": [internal], "allow_internal_addresses": true})),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);
    let view = allowed.json();
    assert_eq!(view["allow_internal_addresses"], true);
    assert_eq!(view["granted"], json!([internal]));
    for requested in view["requested"].as_array().unwrap() {
        let explanation = requested["explanation"].as_str().unwrap();
        assert!(
            explanation.contains("an address inside your network")
                && !explanation.contains("internet"),
            "{explanation}"
        );
    }
    let installs_audited = outcomes(&cloud.audit().await, "install");
    assert!(
        installs_audited.contains(&(
            "admin-of-testregion".to_owned(),
            format!("{app} granting {internal} allowing internal addresses"),
            "allowed".to_owned()
        )),
        "{installs_audited:?}"
    );

    // Each internal destination needs its own allowance: the install's does not cover a
    // later grant of the metadata address.
    let grant_path = format!("/admin/v1/regions/{REGION}/installs/tests/outbound/grant");
    let metadata = "outbound-http:169.254.169.254";
    let later = cloud
        .send(
            "POST",
            &grant_path,
            &admin,
            Some(json!({"capability": metadata})),
        )
        .await;
    assert_eq!(
        later.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        later.body
    );
    let install = cloud.runtime.installed(REGION, "tests/outbound").unwrap();
    assert_eq!(
        install.grant.outbound_hosts(),
        vec![internal.replace("outbound-http:", "")]
    );

    // The allowed loopback server is reached, at the checked address.
    let fetched = cloud
        .send(
            "GET",
            &format!(
                "/apps/{REGION}/tests/outbound/fetch?url=http://127.0.0.1:{}/",
                server.port
            ),
            &cloud.token(Role::Clinician, "dr-test", Some("pat-a")),
            None,
        )
        .await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.body);
    assert_eq!(server.requests().len(), 1);

    // The allowance is durable: a node starting from the rows serves the same.
    let restarted = cloud.another_node().await;
    let fetched = send_via(
        &restarted,
        "GET",
        &format!(
            "/apps/{REGION}/tests/outbound/fetch?url=http://127.0.0.1:{}/",
            server.port
        ),
        &cloud.token(Role::Clinician, "dr-test", Some("pat-a")),
        None,
    )
    .await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.body);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_region_admin_grants_an_internal_address_later_only_with_the_audited_flag() {
    let cloud = cloud().await;
    let metadata = "outbound-http:169.254.169.254";
    let (manifest, component) = outbound_manifest(&["outbound-http:api.example.org", metadata]);
    cloud.publish(&manifest, &component).await;
    let admin = cloud.admin();
    let installed = cloud
        .send(
            "POST",
            &format!("/admin/v1/regions/{REGION}/installs"),
            &admin,
            Some(
                json!({"app": "tests/outbound@0.1.0", "grant": ["outbound-http:api.example.org"]}),
            ),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    assert_eq!(installed.json()["allow_internal_addresses"], false);

    let grant_path = format!("/admin/v1/regions/{REGION}/installs/tests/outbound/grant");
    let refused = cloud
        .send(
            "POST",
            &grant_path,
            &admin,
            Some(json!({"capability": metadata})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("cloud metadata service")
            && refused.body.contains("--allow-internal-address"),
        "{}",
        refused.body
    );
    let install = cloud.runtime.installed(REGION, "tests/outbound").unwrap();
    assert!(!install.grant.allows_internal_addresses());
    assert_eq!(
        install.grant.outbound_hosts(),
        vec!["api.example.org".to_owned()],
        "the refused grant changed nothing"
    );

    let allowed = cloud
        .send(
            "POST",
            &grant_path,
            &admin,
            Some(json!({"capability": metadata, "allow_internal_addresses": true})),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert_eq!(allowed.json()["allow_internal_addresses"], true);
    assert!(install.grant.allows_internal_addresses());
    let grants = outcomes(&cloud.audit().await, "grant");
    assert_eq!(
        grants
            .iter()
            .map(|(_, detail, outcome)| (detail.as_str(), outcome.split(':').next().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            (
                format!("{metadata} allowing internal addresses").as_str(),
                "allowed"
            ),
            (metadata, "refused"),
        ]
    );
}
