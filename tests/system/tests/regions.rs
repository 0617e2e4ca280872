//! Region installs from a real app store over loopback HTTP: the admin API (grants ⊆
//! requested, who may act where, audit), revocation without restarts (store revocations
//! within seconds, in-flight requests interrupted, fail closed on an expired feed), upgrades
//! that ask again, durability across restarts, and two nodes sharing one database.

use healthcloud_runtime::testing as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, Backend, example_app, fixture, test_component};
use healthcloud_integration::FhirService;
use healthcloud_integration::import::Importer;
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_package::client::{AppVersion, StoreClient};
use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::{Manifest, RequestedCapability};
use healthcloud_package::package::Package;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;
use healthcloud_runtime::{Limits, RegionsConfig, Runtime, RuntimeConfig};
use healthcloud_store::service::{Store, StoreConfig, StoreLimits};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const HOVEDSTADEN: &str = "hovedstaden";
const MIDTJYLLAND: &str = "midtjylland";

/// A store served on a loopback port and a runtime node following it, on one database.
struct Cloud {
    node: Node,
    store: Store,
    store_url: String,
    serving: tokio::task::JoinHandle<()>,
    issuer: TokenIssuer,
    db_url: String,
    dir: Arc<tempfile::TempDir>,
}

/// Each publisher's signing key (a key belongs to one publisher).
fn key_of(publisher: &str) -> SecretKey {
    let mut seed = [7u8; 32];
    seed[..publisher.len().min(32)]
        .copy_from_slice(&publisher.as_bytes()[..publisher.len().min(32)]);
    SecretKey::from_seed(&seed)
}

/// One runtime node.
struct Node {
    runtime: Runtime,
    app: Router,
}

struct Options {
    backend: Backend,
    feed_ttl: Duration,
    poll: Duration,
    /// Whether the store pushes revocations to the node in-process.
    push: bool,
    limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Sqlite,
            feed_ttl: Duration::from_secs(300),
            poll: Duration::from_millis(200),
            push: false,
            limits: common::test_limits(),
        }
    }
}

async fn cloud(options: Options) -> Option<Cloud> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db_url = match options.backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("cloud.db").display()),
        Backend::Postgres => {
            healthcloud_platform::testing::postgres_database("hc_regions_test").await?
        }
    };
    let db = healthcloud_integration::open_database(&db_url)
        .await
        .unwrap();
    let fhir = EmbeddedStore::new(db.clone());
    let mut importer = Importer::new(&fhir);
    importer.add(fixture()).await.unwrap();
    importer.finish().await.unwrap();
    let issuer = TokenIssuer::generate("test-issuer").with_audience(vec![
        healthcloud_platform::auth::apps_audience(common::PUBLIC_URL),
    ]);
    let runtime = new_runtime(&db, &issuer, &dir, "node-a", options.limits.clone()).await;
    let checker = runtime.clone();
    let (store, _) = Store::open(StoreConfig {
        db: db.clone(),
        dir: dir.path().join("store"),
        verifier: issuer.verifier(),
        check: Arc::new(move |manifest, bytes| {
            checker.validate(manifest, bytes).map_err(|e| e.to_string())
        }),
        limits: StoreLimits {
            feed_ttl: options.feed_ttl,
            ..StoreLimits::default()
        },
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", listener.local_addr().unwrap());
    let serving = serve_store(listener, &store);
    let node = follow(
        runtime,
        &store_url,
        &dir,
        "node-a",
        options.poll,
        options.push.then(|| store.revocations_changed()),
    )
    .await;
    let cloud = Cloud {
        node,
        store,
        store_url,
        serving,
        issuer,
        db_url,
        dir,
    };
    for publisher in ["examples", "tests"] {
        cloud
            .store_admin()
            .approve_publisher(publisher, publisher, &key_of(publisher).public().to_pem())
            .await
            .unwrap();
    }
    Some(cloud)
}

async fn new_runtime(
    db: &Database,
    issuer: &TokenIssuer,
    dir: &tempfile::TempDir,
    name: &str,
    limits: Limits,
) -> Runtime {
    let service = FhirService::new(EmbeddedStore::new(db.clone()), PageLimits::default());
    Runtime::new(RuntimeConfig {
        service,
        database: db.clone(),
        verifier: issuer.verifier(),
        public_url: common::PUBLIC_URL.into(),
        limits,
        cache_dir: Some(dir.path().join(name).join("compiled")),
    })
    .await
    .unwrap()
}

async fn follow(
    runtime: Runtime,
    store_url: &str,
    dir: &tempfile::TempDir,
    name: &str,
    poll: Duration,
    push: Option<tokio::sync::watch::Receiver<u64>>,
) -> Node {
    runtime
        .serve_regions(RegionsConfig {
            store: StoreClient::new(store_url, None).unwrap(),
            feed_key: None,
            components_dir: dir.path().join(name).join("components"),
            poll,
            push,
        })
        .await
        .unwrap();
    Node {
        app: runtime.router(),
        runtime,
    }
}

fn serve_store(listener: tokio::net::TcpListener, store: &Store) -> tokio::task::JoinHandle<()> {
    let router = store.router();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    })
}

impl Cloud {
    /// Another runtime node on the same database (or this one, restarted, by its name).
    async fn another_node(&self, name: &str, poll: Duration) -> Node {
        let db = healthcloud_integration::open_database(&self.db_url)
            .await
            .unwrap();
        let runtime = new_runtime(&db, &self.issuer, &self.dir, name, common::test_limits()).await;
        follow(runtime, &self.store_url, &self.dir, name, poll, None).await
    }

    fn store_admin(&self) -> StoreClient {
        let token = self.token(Role::StoreAdmin, "store-admin", None, None);
        StoreClient::new(&self.store_url, Some(token)).unwrap()
    }

    fn token(&self, role: Role, sub: &str, region: Option<&str>, patient: Option<&str>) -> String {
        self.issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(sub.into()),
                    region: region.map(str::to_owned),
                    patient: patient.map(str::to_owned),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    fn admin(&self, region: &str) -> String {
        self.token(
            Role::RegionAdmin,
            &format!("admin-of-{region}"),
            Some(region),
            None,
        )
    }

    fn clinician(&self, region: &str, patient: &str) -> String {
        self.token(Role::Clinician, "dr-test", Some(region), Some(patient))
    }

    /// Signs and publishes `manifest` for `component` through the store's HTTP API.
    async fn publish(&self, manifest: &Manifest, component: &[u8]) {
        let signed = Package::new(manifest, component).sign(&key_of(&manifest.app.publisher));
        let token = self.token(Role::Publisher, &manifest.app.publisher, None, None);
        let size = component.len() as u64;
        StoreClient::new(&self.store_url, Some(token))
            .unwrap()
            .publish(&signed, reqwest::Body::from(component.to_vec()), size)
            .await
            .unwrap();
    }

    async fn revoke_in_store(&self, app: &str, reason: &str) {
        let version: AppVersion = app.parse().unwrap();
        self.store_admin()
            .revoke_version(&version, reason)
            .await
            .unwrap();
    }
}

impl Node {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(
            Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(
            Request::post(path)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn install(&self, token: &str, region: &str, app: &str, grant: &[&str]) -> Answer {
        self.post(
            &format!("/admin/v1/regions/{region}/installs"),
            token,
            json!({"app": app, "grant": grant}),
        )
        .await
    }

    async fn change_grant(
        &self,
        token: &str,
        region: &str,
        app: &str,
        action: &str,
        capability: &str,
    ) -> Answer {
        self.post(
            &format!("/admin/v1/regions/{region}/installs/{app}/{action}"),
            token,
            json!({ "capability": capability }),
        )
        .await
    }
}

/// Polls `check` until it holds, for at most `within`; returns how long it took.
async fn eventually(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `hello`'s component as `tests/greeter@version`, requesting `capabilities`.
fn greeter(version: &str, capabilities: &[&str]) -> (Manifest, Vec<u8>) {
    let (manifest, component) = example_app("hello");
    let mut manifest = Manifest::parse(&manifest).unwrap();
    manifest.app.publisher = "tests".into();
    manifest.app.id = "greeter".into();
    manifest.app.version = version.parse().unwrap();
    manifest.requested = capabilities
        .iter()
        .map(|name| RequestedCapability {
            name: (*name).into(),
            justification: format!("The test asks for {name}."),
        })
        .collect();
    (manifest, component)
}

fn bp_monitor() -> (Manifest, Vec<u8>) {
    let (manifest, component) = example_app("bp-monitor");
    (Manifest::parse(&manifest).unwrap(), component)
}

const BP_SEARCH: &str = "patient/Observation.s?category=vital-signs";
const BP_GRANT: &[&str] = &["patient/Patient.r", BP_SEARCH];
const BP_APP: &str = "/apps/hovedstaden/examples/bp-monitor/";

fn shows_readings(answer: &Answer) -> bool {
    answer.status == StatusCode::OK && answer.body.contains("151") && !denied(answer)
}

/// bp-monitor's own notice that the platform denied its data call.
fn denied(answer: &Answer) -> bool {
    answer.body.contains("was denied") && !answer.body.contains("151")
}

#[tokio::test]
async fn a_region_installs_from_the_store_with_a_subset_of_what_the_app_requests() {
    let cloud = cloud(Options::default()).await.unwrap();
    let (manifest, component) = bp_monitor();
    cloud.publish(&manifest, &component).await;
    let node = &cloud.node;
    let admin = cloud.admin(HOVEDSTADEN);

    let refused = node
        .install(
            &admin,
            HOVEDSTADEN,
            "examples/bp-monitor@0.1.0",
            &[BP_SEARCH, "patient/MedicationStatement.rs", "kv"],
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
        message.contains("'patient/MedicationStatement.rs', 'kv' are not requested"),
        "{message}"
    );

    for (token, status) in [
        (cloud.admin(MIDTJYLLAND), StatusCode::FORBIDDEN),
        (cloud.clinician(HOVEDSTADEN, "pat-a"), StatusCode::FORBIDDEN),
        ("not-a-token".to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        let answer = node
            .install(&token, HOVEDSTADEN, "examples/bp-monitor@0.1.0", BP_GRANT)
            .await;
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_eq!(
            node.get("/admin/v1/regions/hovedstaden/installs", &token)
                .await
                .status,
            status
        );
    }
    let unknown = node
        .install(&admin, HOVEDSTADEN, "examples/bp-monitor@9.9.9", BP_GRANT)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);

    let installed = node
        .install(&admin, HOVEDSTADEN, "examples/bp-monitor@0.1.0", BP_GRANT)
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let view = installed.json();
    assert_eq!(view["granted"], json!(BP_GRANT));
    assert_eq!(view["serving"], true);
    let requested = view["requested"].as_array().unwrap();
    let create = requested
        .iter()
        .find(|c| c["capability"] == "patient/Observation.c?category=vital-signs")
        .unwrap();
    assert_eq!(create["granted"], false);
    assert!(!create["justification"].as_str().unwrap().is_empty());

    let page = node
        .get(BP_APP, &cloud.clinician(HOVEDSTADEN, "pat-a"))
        .await;
    assert!(shows_readings(&page), "{}", page.body);
    // The installed app is the FHIR Device that consents and audit records name.
    let db = healthcloud_integration::open_database(&cloud.db_url)
        .await
        .unwrap();
    let device = EmbeddedStore::new(db)
        .read("Device", "examples.bp-monitor")
        .await
        .unwrap()
        .expect("the app's Device");
    let device: Value = serde_json::from_str(&device.content).unwrap();
    assert_eq!(device["deviceName"][0]["name"], manifest.app.name.as_str());
    assert_eq!(device["version"][0]["value"], "0.1.0");
    let again = node
        .install(&admin, HOVEDSTADEN, "examples/bp-monitor@0.1.0", BP_GRANT)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains("region upgrade"), "{}", again.body);

    // Another region's install is its own: not installed there.
    let elsewhere = node
        .get(
            "/apps/midtjylland/examples/bp-monitor/",
            &cloud.clinician(MIDTJYLLAND, "pat-a"),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);

    // Every action of the region's admin is audited, refusals included, in the region; callers
    // without a role there write nothing in it (they are in the security log).
    let audit = node
        .get("/admin/v1/regions/hovedstaden/audit", &admin)
        .await
        .json();
    let outcomes: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|(action, outcome)| action == "install" && outcome == "allowed")
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|(action, _)| action != "access"),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|(action, outcome)| action == "install" && outcome.contains("not requested")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_removed_grant_denies_the_next_call_and_other_regions_are_unaffected() {
    let cloud = cloud(Options::default()).await.unwrap();
    let (manifest, component) = bp_monitor();
    cloud.publish(&manifest, &component).await;
    let node = &cloud.node;
    for region in [HOVEDSTADEN, MIDTJYLLAND] {
        let answer = node
            .install(
                &cloud.admin(region),
                region,
                "examples/bp-monitor@0.1.0",
                BP_GRANT,
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    let revoked = node
        .change_grant(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "examples/bp-monitor",
            "revoke",
            BP_SEARCH,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let page = node
        .get(BP_APP, &cloud.clinician(HOVEDSTADEN, "pat-a"))
        .await;
    assert!(denied(&page), "{}", page.body);
    let again = node
        .change_grant(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "examples/bp-monitor",
            "revoke",
            BP_SEARCH,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains("nothing to revoke"), "{}", again.body);
    let midt = node
        .get(
            "/apps/midtjylland/examples/bp-monitor/",
            &cloud.clinician(MIDTJYLLAND, "pat-a"),
        )
        .await;
    assert!(shows_readings(&midt), "{}", midt.body);

    // Granting what the app never requested is refused; granting back restores access.
    let extra = node
        .change_grant(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "examples/bp-monitor",
            "grant",
            "patient/Condition.rs",
        )
        .await;
    assert_eq!(
        extra.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        extra.body
    );
    let granted = node
        .change_grant(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "examples/bp-monitor",
            "grant",
            BP_SEARCH,
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    let page = node
        .get(BP_APP, &cloud.clinician(HOVEDSTADEN, "pat-a"))
        .await;
    assert!(shows_readings(&page), "{}", page.body);

    // Uninstalled: a 404, and only in that region.
    let gone = node
        .send(
            Request::delete("/admin/v1/regions/hovedstaden/installs/examples/bp-monitor")
                .header(
                    "authorization",
                    format!("Bearer {}", cloud.admin(HOVEDSTADEN)),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    let page = node
        .get(BP_APP, &cloud.clinician(HOVEDSTADEN, "pat-a"))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let midt = node
        .get(
            "/apps/midtjylland/examples/bp-monitor/",
            &cloud.clinician(MIDTJYLLAND, "pat-a"),
        )
        .await;
    assert!(shows_readings(&midt), "{}", midt.body);
}

/// The store revokes a version while a request of it runs: the request is interrupted and
/// every region answers 410 with the reason, within 2 s.
async fn revocation_interrupts_and_stops(cloud: &Cloud, node: &Node) {
    let (manifest, component) = test_component("loop");
    let manifest = Manifest::parse(&manifest).unwrap();
    cloud.publish(&manifest, &component).await;
    for region in [HOVEDSTADEN, MIDTJYLLAND] {
        let answer = node
            .install(&cloud.admin(region), region, "tests/loop@0.1.0", &[])
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    let token = cloud.clinician(HOVEDSTADEN, "pat-a");
    let spinning = {
        let (app, token) = (node.app.clone(), token.clone());
        tokio::spawn(async move {
            let request = Request::get("/apps/hovedstaden/tests/loop/spin")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let response = app.oneshot(request).await.unwrap();
            (response.status(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cloud
        .revoke_in_store("tests/loop@0.1.0", "it never answers")
        .await;
    let took = eventually(
        Duration::from_secs(2),
        "both regions answer 410",
        async || {
            let mut gone = true;
            for region in [HOVEDSTADEN, MIDTJYLLAND] {
                let answer = node
                    .get(
                        &format!("/apps/{region}/tests/loop/"),
                        &cloud.clinician(region, "pat-a"),
                    )
                    .await;
                gone &= answer.status == StatusCode::GONE;
            }
            gone
        },
    )
    .await;
    println!("revocation reached both regions in {took:?}");
    let (status, elapsed) = spinning.await.unwrap();
    assert_eq!(
        status,
        StatusCode::GONE,
        "the in-flight request is interrupted"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "interrupted, not run to its deadline"
    );
    let page = node.get("/apps/hovedstaden/tests/loop/", &token).await;
    assert!(
        page.body.contains("Infinite loop was revoked"),
        "{}",
        page.body
    );
    assert!(page.body.contains("it never answers"), "{}", page.body);
    // And it cannot be installed again.
    let again = node
        .install(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "tests/loop@0.1.0",
            &[],
        )
        .await;
    assert!(
        again.status == StatusCode::GONE || again.status == StatusCode::CONFLICT,
        "{}",
        again.body
    );
}

fn long_deadline() -> Limits {
    Limits {
        deadline: Duration::from_secs(30),
        ..common::test_limits()
    }
}

// Like the server: a spinning guest shares the executor with the feed follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_version_stops_everywhere_within_two_seconds_by_polling() {
    let cloud = cloud(Options {
        limits: long_deadline(),
        ..Options::default()
    })
    .await
    .unwrap();
    revocation_interrupts_and_stops(&cloud, &cloud.node).await;
}

// Like the server: a spinning guest shares the executor with the feed follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_pushed_by_a_store_in_the_same_process() {
    let cloud = cloud(Options {
        limits: long_deadline(),
        poll: Duration::from_secs(3600),
        push: true,
        ..Options::default()
    })
    .await
    .unwrap();
    revocation_interrupts_and_stops(&cloud, &cloud.node).await;
}

// Like the server: a spinning guest shares the executor with the feed follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_a_node_through_postgres_notify() {
    let Some(cloud) = cloud(Options {
        backend: Backend::Postgres,
        limits: long_deadline(),
        poll: Duration::from_secs(3600),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    revocation_interrupts_and_stops(&cloud, &cloud.node).await;
}

#[tokio::test]
async fn a_key_revoked_as_compromised_stops_what_it_signed() {
    let cloud = cloud(Options::default()).await.unwrap();
    let (manifest, component) = greeter("1.0.0", &[]);
    cloud.publish(&manifest, &component).await;
    let node = &cloud.node;
    let answer = node
        .install(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "tests/greeter@1.0.0",
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    cloud
        .store_admin()
        .revoke_key(
            "tests",
            &key_of("tests").public().id(),
            None,
            Some("laptop stolen"),
        )
        .await
        .unwrap();
    let token = cloud.clinician(HOVEDSTADEN, "pat-a");
    eventually(
        Duration::from_secs(2),
        "410 after the key is revoked",
        async || {
            node.get("/apps/hovedstaden/tests/greeter/", &token)
                .await
                .status
                == StatusCode::GONE
        },
    )
    .await;
    let page = node.get("/apps/hovedstaden/tests/greeter/", &token).await;
    assert!(page.body.contains("laptop stolen"), "{}", page.body);
}

#[tokio::test]
async fn an_expired_feed_fails_closed_until_the_store_answers_again() {
    let mut cloud = cloud(Options {
        feed_ttl: Duration::from_secs(1),
        ..Options::default()
    })
    .await
    .unwrap();
    let (manifest, component) = greeter("1.0.0", &[]);
    cloud.publish(&manifest, &component).await;
    let node = &cloud.node;
    let answer = node
        .install(
            &cloud.admin(HOVEDSTADEN),
            HOVEDSTADEN,
            "tests/greeter@1.0.0",
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let token = cloud.clinician(HOVEDSTADEN, "pat-a");
    let path = "/apps/hovedstaden/tests/greeter/";
    assert_eq!(node.get(path, &token).await.status, StatusCode::OK);

    // The store goes away: once the last feed expires, nothing starts.
    let port = cloud.store_url.rsplit(':').next().unwrap().to_owned();
    cloud.serving.abort();
    let _ = (&mut cloud.serving).await;
    eventually(
        Duration::from_secs(3),
        "503 once the feed expired",
        async || node.get(path, &token).await.status == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let refused = node.get(path, &token).await;
    assert!(refused.body.contains("revocation feed"), "{}", refused.body);
    // The SMART web apps' tokens fail closed with them (at the feed's next check).
    eventually(
        Duration::from_secs(2),
        "SMART apps' tokens suspended",
        async || {
            node.runtime
                .smart_clients()
                .suspended()
                .is_some_and(|why| why.contains("revocation feed"))
        },
    )
    .await;

    // Something else answers at the store's address with its own feed key: still closed,
    // and the refusal says why.
    let db = healthcloud_integration::open_database(&cloud.db_url)
        .await
        .unwrap();
    let impostor = Store::open(StoreConfig {
        db,
        dir: cloud.dir.path().join("impostor"),
        verifier: cloud.issuer.verifier(),
        check: Arc::new(|_, _| Ok(())),
        limits: StoreLimits::default(),
    })
    .await
    .unwrap()
    .0;
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let impostor = serve_store(listener, &impostor);
    eventually(
        Duration::from_secs(3),
        "the impostor's feed is refused",
        async || {
            node.get(path, &token)
                .await
                .body
                .contains("not signed by the store's key")
        },
    )
    .await;
    assert_eq!(
        node.get(path, &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    impostor.abort();
    let _ = impostor.await;

    // The store comes back: apps start again.
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    cloud.serving = serve_store(listener, &cloud.store);
    eventually(
        Duration::from_secs(3),
        "200 once the feed is renewed",
        async || node.get(path, &token).await.status == StatusCode::OK,
    )
    .await;
    eventually(
        Duration::from_secs(2),
        "SMART apps' tokens taken again",
        async || node.runtime.smart_clients().suspended().is_none(),
    )
    .await;
}

#[tokio::test]
async fn an_upgrade_asking_for_more_waits_for_approval_and_one_asking_less_applies_at_once() {
    let cloud = cloud(Options::default()).await.unwrap();
    for (version, capabilities) in [
        ("1.0.0", &["log"][..]),
        ("1.1.0", &["log", "kv"][..]),
        ("1.2.0", &["kv"][..]),
    ] {
        let (manifest, component) = greeter(version, capabilities);
        cloud.publish(&manifest, &component).await;
    }
    let node = &cloud.node;
    let admin = cloud.admin(HOVEDSTADEN);
    let base = "/admin/v1/regions/hovedstaden/installs/tests/greeter";
    let answer = node
        .install(&admin, HOVEDSTADEN, "tests/greeter@1.0.0", &["log"])
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let serving = || {
        node.runtime
            .installed(HOVEDSTADEN, "tests/greeter")
            .unwrap()
            .identity
            .version
            .clone()
    };

    let pending = node
        .post(
            &format!("{base}/upgrade"),
            &admin,
            json!({"version": "1.1.0"}),
        )
        .await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.body);
    let view = pending.json();
    assert_eq!(view["status"], "pending");
    assert_eq!(view["install"]["version"], "1.0.0");
    assert_eq!(view["install"]["pending"]["version"], "1.1.0");
    assert_eq!(view["install"]["pending"]["added"][0]["capability"], "kv");
    assert_eq!(serving(), "1.0.0", "the old version keeps serving");
    let token = cloud.clinician(HOVEDSTADEN, "pat-a");
    assert_eq!(
        node.get("/apps/hovedstaden/tests/greeter/", &token)
            .await
            .status,
        StatusCode::OK
    );

    // Declined: forgotten, and asked again by the next upgrade.
    let declined = node
        .send(
            Request::delete(format!("{base}/upgrade"))
                .header("authorization", format!("Bearer {admin}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(declined.status, StatusCode::OK, "{}", declined.body);
    assert_eq!(declined.json()["pending"], Value::Null);
    let pending = node
        .post(
            &format!("{base}/upgrade"),
            &admin,
            json!({"version": "1.1.0"}),
        )
        .await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.body);

    let approved = node
        .post(
            &format!("{base}/upgrade"),
            &admin,
            json!({"version": "1.1.0", "approve": true, "grant": ["kv"]}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.json()["install"]["granted"], json!(["log", "kv"]));
    assert_eq!(approved.json()["install"]["pending"], Value::Null);
    assert_eq!(serving(), "1.1.0");

    // 1.2.0 asks for less: it applies at once, and the grant keeps only what it requests.
    let less = node
        .post(
            &format!("{base}/upgrade"),
            &admin,
            json!({"version": "1.2.0"}),
        )
        .await;
    assert_eq!(less.status, StatusCode::OK, "{}", less.body);
    assert_eq!(less.json()["install"]["granted"], json!(["kv"]));
    assert_eq!(serving(), "1.2.0");

    let backwards = node
        .post(
            &format!("{base}/upgrade"),
            &admin,
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(backwards.status, StatusCode::CONFLICT, "{}", backwards.body);
}

#[tokio::test]
async fn a_restarted_node_serves_the_same_state_and_verifies_bytes_at_rest() {
    let cloud = cloud(Options::default()).await.unwrap();
    let (manifest, component) = bp_monitor();
    cloud.publish(&manifest, &component).await;
    let (greeter_manifest, greeter_component) = greeter("1.0.0", &[]);
    cloud.publish(&greeter_manifest, &greeter_component).await;
    let node = &cloud.node;
    let admin = cloud.admin(HOVEDSTADEN);
    for app in ["examples/bp-monitor@0.1.0", "tests/greeter@1.0.0"] {
        let grant: &[&str] = if app.starts_with("examples") {
            BP_GRANT
        } else {
            &[]
        };
        let answer = node.install(&admin, HOVEDSTADEN, app, grant).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    node.change_grant(
        &admin,
        HOVEDSTADEN,
        "examples/bp-monitor",
        "revoke",
        BP_SEARCH,
    )
    .await;
    cloud
        .revoke_in_store("tests/greeter@1.0.0", "withdrawn")
        .await;
    let token = cloud.clinician(HOVEDSTADEN, "pat-a");
    eventually(Duration::from_secs(2), "greeter revoked", async || {
        node.get("/apps/hovedstaden/tests/greeter/", &token)
            .await
            .status
            == StatusCode::GONE
    })
    .await;

    // Someone alters the bytes at rest on the node's disk.
    let sha256 = healthcloud_package::package::digest(&component);
    let at_rest = cloud
        .dir
        .path()
        .join("node-a/components/sha256")
        .join(&sha256);
    let mut tampered = std::fs::read(&at_rest).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&at_rest, tampered).unwrap();

    // A restart on the same database and disk, with the store unreachable: what the node
    // knows comes from the database and its disk alone.
    let mut cloud = cloud;
    let port = cloud.store_url.rsplit(':').next().unwrap().to_owned();
    cloud.serving.abort();
    let _ = (&mut cloud.serving).await;
    let restarted = cloud
        .another_node("node-a", Duration::from_millis(200))
        .await;
    assert_eq!(
        restarted
            .get("/apps/hovedstaden/tests/greeter/", &token)
            .await
            .status,
        StatusCode::GONE,
        "the revocation lasted"
    );
    let view = |app: &'static str| {
        let (restarted, admin) = (&restarted, &admin);
        async move {
            restarted
                .get(
                    &format!("/admin/v1/regions/hovedstaden/installs/{app}"),
                    admin,
                )
                .await
                .json()
        }
    };
    assert_eq!(
        view("tests/greeter").await["revoked"]["reason"],
        "withdrawn"
    );
    let bp = view("examples/bp-monitor").await;
    assert_eq!(
        bp["granted"],
        json!(["patient/Patient.r"]),
        "the grant change lasted"
    );
    assert_eq!(
        bp["serving"], false,
        "its bytes at rest were altered and the store is away: not loaded"
    );

    // The store is back: the altered bytes are fetched again and the app serves, with the
    // grant as the region left it.
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    cloud.serving = serve_store(listener, &cloud.store);
    eventually(
        Duration::from_secs(10),
        "bp-monitor serves again",
        async || denied(&restarted.get(BP_APP, &token).await),
    )
    .await;
    assert_eq!(
        std::fs::read(&at_rest).unwrap(),
        component,
        "the altered bytes were refused and fetched again from the store"
    );
}

#[tokio::test]
async fn two_nodes_on_one_postgres_database_see_each_others_changes_within_two_seconds() {
    let Some(cloud) = cloud(Options {
        backend: Backend::Postgres,
        poll: Duration::from_secs(3600),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let (manifest, component) = bp_monitor();
    cloud.publish(&manifest, &component).await;
    let other = cloud
        .another_node("node-b", Duration::from_secs(3600))
        .await;
    let admin = cloud.admin(HOVEDSTADEN);
    let answer = cloud
        .node
        .install(&admin, HOVEDSTADEN, "examples/bp-monitor@0.1.0", BP_GRANT)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let token = cloud.clinician(HOVEDSTADEN, "pat-a");
    eventually(
        Duration::from_secs(2),
        "node b serves the install",
        async || shows_readings(&other.get(BP_APP, &token).await),
    )
    .await;
    cloud
        .node
        .change_grant(
            &admin,
            HOVEDSTADEN,
            "examples/bp-monitor",
            "revoke",
            BP_SEARCH,
        )
        .await;
    let took = eventually(Duration::from_secs(2), "node b denies", async || {
        denied(&other.get(BP_APP, &token).await)
    })
    .await;
    println!("a grant change reached the other node in {took:?}");
    // And back, through the other node.
    other
        .change_grant(
            &admin,
            HOVEDSTADEN,
            "examples/bp-monitor",
            "grant",
            BP_SEARCH,
        )
        .await;
    eventually(
        Duration::from_secs(2),
        "node a serves data again",
        async || shows_readings(&cloud.node.get(BP_APP, &token).await),
    )
    .await;
}

#[tokio::test]
async fn a_foreign_region_token_writes_nothing_in_the_region_admin_log() {
    let cloud = cloud(Options::default()).await.unwrap();
    let node = &cloud.node;
    let admin = cloud.admin(HOVEDSTADEN);
    let foreign = [
        ("admin-of-midtjylland", cloud.admin(MIDTJYLLAND)),
        ("dr-test", cloud.clinician(HOVEDSTADEN, "pat-a")),
        (
            "store-admin",
            cloud.token(Role::StoreAdmin, "store-admin", None, None),
        ),
    ];
    for (_, token) in &foreign {
        for path in [
            "/admin/v1/regions/hovedstaden/installs",
            "/admin/v1/regions/hovedstaden/audit",
        ] {
            let answer = node.get(path, token).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        }
        let answer = node
            .install(token, HOVEDSTADEN, "examples/bp-monitor@0.1.0", BP_GRANT)
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    }

    let audit = node
        .get("/admin/v1/regions/hovedstaden/audit", &admin)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert_eq!(
        audit.json(),
        json!([]),
        "strangers wrote into the region's admin log"
    );

    let db = healthcloud_integration::open_database(&cloud.db_url)
        .await
        .unwrap();
    let log = healthcloud_integration::security::SecurityLog::new(db)
        .recent(1000, None)
        .await
        .unwrap();
    for (sub, _) in &foreign {
        let rows: Vec<_> = log.iter().filter(|r| &r.sub == sub).collect();
        assert_eq!(rows.len(), 3, "{sub}: {log:#?}");
        assert!(rows.iter().all(|r| r.kind == "region-admin"), "{rows:#?}");
        assert!(
            rows.iter()
                .any(|r| r.request == "POST /admin/v1/regions/hovedstaden/installs"),
            "{rows:#?}"
        );
    }
    let midtjylland = log
        .iter()
        .find(|r| r.sub == "admin-of-midtjylland")
        .unwrap();
    assert_eq!(midtjylland.role, "region-admin");
    assert_eq!(midtjylland.region.as_deref(), Some(MIDTJYLLAND));
    assert!(
        midtjylland
            .reason
            .contains("administers region midtjylland"),
        "{midtjylland:?}"
    );
}

#[tokio::test]
async fn a_foreign_admin_flooding_a_region_is_slowed_down_with_429() {
    let cloud = cloud(Options::default()).await.unwrap();
    let node = &cloud.node;
    let foreign = cloud.admin(MIDTJYLLAND);
    let mut refused = 0;
    let limited = loop {
        let answer = node
            .get("/admin/v1/regions/hovedstaden/installs", &foreign)
            .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            break answer;
        }
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        refused += 1;
        assert!(refused < 1000, "never slowed down");
    };
    assert!(refused >= 30, "slowed down after only {refused} refusals");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert!(
        limited.body.contains("too many refused requests"),
        "{}",
        limited.body
    );
    // Other callers are not slowed down by its refusals.
    let admin = node
        .get(
            "/admin/v1/regions/hovedstaden/installs",
            &cloud.admin(HOVEDSTADEN),
        )
        .await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
}

/// Uninstalling deletes everything the app kept in kv in that region: every patient's
/// partition, the install-wide one and values from before kv was partitioned. Another
/// region's install of the same app keeps its own.
#[tokio::test]
async fn uninstalling_deletes_every_kv_partition_of_the_install() {
    let cloud = cloud(Options::default()).await.unwrap();
    let (manifest, component) = bp_monitor();
    cloud.publish(&manifest, &component).await;
    let admin = cloud.admin(HOVEDSTADEN);
    let installed = cloud
        .node
        .install(&admin, HOVEDSTADEN, "examples/bp-monitor@0.1.0", BP_GRANT)
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let db = healthcloud_integration::open_database(&cloud.db_url)
        .await
        .unwrap();
    let rows = [
        (HOVEDSTADEN, "pat-a"),
        (HOVEDSTADEN, "pat-b"),
        (HOVEDSTADEN, ""),
        (HOVEDSTADEN, "(unattributed)"),
        (MIDTJYLLAND, "pat-a"),
    ];
    for (region, patient) in rows {
        let mut insert = db.sql("INSERT INTO app_kv (region, app, patient, key, value) VALUES (");
        insert
            .bind(region)
            .push(", ")
            .bind("examples/bp-monitor")
            .push(", ")
            .bind(patient)
            .push(", 'note', ")
            .bind(b"kept".to_vec())
            .push(")");
        insert.query().execute(db.pool()).await.unwrap();
    }
    let left = async |region: &str| -> i64 {
        let mut count = db.sql("SELECT COUNT(*) FROM app_kv WHERE region = ");
        count.bind(region).push(" AND app = 'examples/bp-monitor'");
        sqlx::Row::get(&count.query().fetch_one(db.pool()).await.unwrap(), 0)
    };
    assert_eq!(left(HOVEDSTADEN).await, 4);

    let uninstalled = cloud
        .node
        .send(
            Request::delete("/admin/v1/regions/hovedstaden/installs/examples/bp-monitor")
                .header("authorization", format!("Bearer {admin}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(uninstalled.status, StatusCode::OK, "{}", uninstalled.body);
    assert_eq!(left(HOVEDSTADEN).await, 0, "every partition is gone");
    assert_eq!(
        left(MIDTJYLLAND).await,
        1,
        "another region's install keeps its own"
    );
}

/// A SMART web app's manifest: its registration, and the data scopes it asks for.
fn smart_app(version: &str) -> Manifest {
    Manifest::parse(&format!(
        r#"
        [app]
        publisher = "examples"
        id = "bp-diary"
        version = "{version}"
        name = "BP diary"
        description = "Charts blood pressure"
        audience = ["patient"]

        [smart]
        launch_url = "https://bp-diary.example/launch"
        redirect_uris = ["https://bp-diary.example/callback"]

        [[capability]]
        name = "patient/Observation.rs"
        justification = "charts readings"

        [[capability]]
        name = "patient/Condition.rs"
        justification = "warns about diagnoses"
        "#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_smart_web_app_install_is_its_client_registration_on_every_node_until_revoked() {
    let Some(cloud) = cloud(Options::default()).await else {
        return;
    };
    let manifest = smart_app("1.0.0");
    let document = manifest.smart.as_ref().unwrap().document();
    cloud.publish(&manifest, &document).await;
    // The store refuses any other "component" for it.
    let other = smart_app("1.0.1");
    let signed = Package::new(&other, b"not the registration").sign(&key_of("examples"));
    let token = cloud.token(Role::Publisher, "examples", None, None);
    let refused = StoreClient::new(&cloud.store_url, Some(token))
        .unwrap()
        .publish(
            &signed,
            reqwest::Body::from(b"not the registration".to_vec()),
            20,
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("[smart] table"), "{refused}");

    // Installed with part of what it asks: registered on this node, with that grant.
    let admin = cloud.admin(HOVEDSTADEN);
    let installed = cloud
        .node
        .install(
            &admin,
            HOVEDSTADEN,
            "examples/bp-diary@1.0.0",
            &["patient/Observation.rs"],
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let view = installed.json();
    assert_eq!(
        view["smart_client"]["client_id"],
        "examples.bp-diary@hovedstaden"
    );
    assert_eq!(view["serving"], true);
    let client_id = "examples.bp-diary@hovedstaden";
    let registered = cloud.node.runtime.smart_clients().get(client_id).unwrap();
    assert_eq!(registered.grant.len(), 1);
    assert_eq!(registered.origins, ["https://bp-diary.example"]);
    // Not an app the app cloud serves.
    let answer = cloud
        .node
        .get(
            "/apps/hovedstaden/examples/bp-diary/",
            &cloud.clinician(HOVEDSTADEN, "pat-a"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    // A FHIR API node without the app cloud follows the same database.
    let db = healthcloud_integration::open_database(&cloud.db_url)
        .await
        .unwrap();
    let follower = healthcloud_platform::auth::smart::Clients::default();
    healthcloud_runtime::regions::smart::follow(db, follower.clone(), Duration::from_millis(100))
        .await
        .unwrap();
    assert!(follower.get(client_id).is_some());
    assert_eq!(
        follower.suspended(),
        None,
        "the app cloud shared the feed's validity"
    );

    // A version whose registration changes (here a redirect URI) waits for approval, even
    // asking for nothing more.
    let mut moved = smart_app("1.1.0");
    moved.smart.as_mut().unwrap().redirect_uris = vec!["https://elsewhere.example/cb".into()];
    cloud
        .publish(&moved, &moved.smart.as_ref().unwrap().document())
        .await;
    let pending = cloud
        .node
        .post(
            "/admin/v1/regions/hovedstaden/installs/examples/bp-diary/upgrade",
            &admin,
            json!({"version": "1.1.0"}),
        )
        .await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.body);
    let view = pending.json();
    assert_eq!(view["status"], "pending");
    assert_eq!(view["install"]["pending"]["registration_changed"], true);
    let registered = cloud.node.runtime.smart_clients().get(client_id).unwrap();
    assert_eq!(
        registered.redirect_uris,
        ["https://bp-diary.example/callback"]
    );

    // The store revokes the version: unregistered here and on the follower.
    cloud
        .revoke_in_store("examples/bp-diary@1.0.0", "leaks data")
        .await;
    eventually(
        Duration::from_secs(2),
        "unregistered on both nodes",
        async || {
            cloud.node.runtime.smart_clients().get(client_id).is_none()
                && follower.get(client_id).is_none()
        },
    )
    .await;
}
