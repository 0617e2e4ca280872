//! Attacks on a runtime node's trust in the app store, from the attacker's side: a fake (or
//! intercepting) store on loopback that says a key of its own belongs to a publisher, that
//! streams more than the signed size, or that stalls a download; and a node pointed at a
//! remote store without a pinned key. The fake store holds the real store's key only to pass
//! the genuine feed and the genuine versions through, as something sitting between would.

use healthcloud_runtime::testing as common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Answer, Host, example_app};
use healthcloud_package::client::StoreClient;
use healthcloud_package::feed::{Feed, FeedKey, SignedFeed};
use healthcloud_package::keys::{Purpose, SecretKey};
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::{Package, SignedPackage, SignedVersionRecord, VersionRecord};
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_runtime::RegionsConfig;
use serde_json::{Value, json};

const HOVEDSTADEN: &str = "hovedstaden";
const MIDTJYLLAND: &str = "midtjylland";

/// How long a download may take in these tests: short, so a stalled one fails fast.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(2);

/// What the fake store sends as a version's component.
#[derive(Clone)]
enum Serve {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Zeros, far more than any signed size, without announcing a length.
    Endless,
    /// A few bytes, then nothing, forever.
    Stall,
}

/// The most the endless component sends.
const ENDLESS_BYTES: u64 = 256 << 20;

struct Offer {
    answer: Value,
    component: Serve,
}

struct FakeInner {
    /// The real store's key: the fake passes the genuine feed and versions through with it.
    store_key: SecretKey,
    /// The publisher's genuine key.
    publisher_key: SecretKey,
    /// The attacker's own key.
    attacker_key: SecretKey,
    offers: Mutex<HashMap<String, Offer>>,
    component_requests: AtomicUsize,
    streamed: AtomicU64,
}

#[derive(Clone)]
struct FakeStore(Arc<FakeInner>);

impl FakeStore {
    async fn start() -> (FakeStore, String) {
        let fake = FakeStore(Arc::new(FakeInner {
            store_key: SecretKey::generate(),
            publisher_key: SecretKey::from_seed(&[11; 32]),
            attacker_key: SecretKey::from_seed(&[66; 32]),
            offers: Mutex::default(),
            component_requests: AtomicUsize::new(0),
            streamed: AtomicU64::new(0),
        }));
        let version = "/store/v1/apps/{publisher}/{app}/versions/{version}";
        let router = axum::Router::new()
            .route("/store/v1/revocations", get(feed))
            .route("/store/v1/revocations/key", get(feed_key))
            .route("/store/v1/publishers/{publisher}", get(publisher))
            .route(version, get(version_answer))
            .route(&format!("{version}/component"), get(component))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (fake, url)
    }

    /// Offers `signed` as its version, with `record`, the store's verdict `valid` and
    /// `component` as its bytes.
    fn offer(&self, signed: &SignedPackage, record: Option<SignedVersionRecord>, component: Serve) {
        let app = &signed.package.app;
        let id = format!("{}/{}@{}", app.publisher, app.id, app.version);
        let answer = json!({
            "version": app.version.to_string(),
            "published_at": "2026-12-01T10:00:00Z",
            "sha256": signed.package.component.sha256,
            "size": signed.package.component.size,
            "key_id": signed.signature.key_id,
            "signature": "valid",
            "signed": signed,
            "record": record,
        });
        self.0
            .offers
            .lock()
            .unwrap()
            .insert(id, Offer { answer, component });
    }

    /// The genuine store's record of `signed`.
    fn record(&self, signed: &SignedPackage) -> SignedVersionRecord {
        self.record_signed_by(signed, &self.0.store_key)
    }

    fn record_signed_by(&self, signed: &SignedPackage, key: &SecretKey) -> SignedVersionRecord {
        VersionRecord::of(
            signed,
            key.public().id(),
            ("2026-12-01T10:00:00Z".into(), None),
            chrono::Utc::now(),
            chrono::Duration::minutes(5),
        )
        .sign(key)
    }

    /// A genuine version: signed by the publisher, with the store's record.
    fn genuine(&self, manifest: &Manifest, bytes: &[u8], component: Serve) -> SignedPackage {
        let signed = Package::new(manifest, bytes).sign(&self.0.publisher_key);
        self.offer(&signed, Some(self.record(&signed)), component);
        signed
    }

    fn component_requests(&self) -> usize {
        self.0.component_requests.load(Ordering::SeqCst)
    }
}

#[derive(serde::Deserialize)]
struct Since {
    since: i64,
    nonce: String,
}

/// The genuine feed: nothing revoked.
async fn feed(State(fake): State<FakeStore>, Query(query): Query<Since>) -> Json<SignedFeed> {
    let issued = chrono::Utc::now();
    let feed = Feed {
        store_key_id: fake.0.store_key.public().id(),
        issued_at: issued.to_rfc3339(),
        expires_at: (issued + chrono::Duration::minutes(5)).to_rfc3339(),
        since: query.since,
        next: query.since,
        more: false,
        nonce: Some(query.nonce),
        entries: vec![],
    };
    let canonical = serde_json_canonicalizer::to_vec(&feed).unwrap();
    Json(SignedFeed {
        signature: fake.0.store_key.sign(Purpose::Revocations, &canonical),
        feed,
    })
}

async fn feed_key(State(fake): State<FakeStore>) -> Json<FeedKey> {
    let key = fake.0.store_key.public();
    Json(FeedKey {
        key_id: key.id(),
        public_key: key.to_base64(),
        pem: key.to_pem(),
    })
}

/// The bogus answer: the attacker's key belongs to the publisher and is active.
async fn publisher(State(fake): State<FakeStore>, Path(publisher): Path<String>) -> Json<Value> {
    Json(json!({
        "id": publisher,
        "name": publisher,
        "keys": [
            {"key_id": fake.0.publisher_key.public().id(), "status": "active"},
            {"key_id": fake.0.attacker_key.public().id(), "status": "active"},
        ],
    }))
}

async fn version_answer(
    State(fake): State<FakeStore>,
    Path((publisher, app, version)): Path<(String, String, String)>,
) -> Response {
    let id = format!("{publisher}/{app}@{version}");
    match fake.0.offers.lock().unwrap().get(&id) {
        Some(offer) => Json(offer.answer.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such version"})),
        )
            .into_response(),
    }
}

async fn component(
    State(fake): State<FakeStore>,
    Path((publisher, app, version)): Path<(String, String, String)>,
) -> Response {
    fake.0.component_requests.fetch_add(1, Ordering::SeqCst);
    let id = format!("{publisher}/{app}@{version}");
    let serve = match fake.0.offers.lock().unwrap().get(&id) {
        Some(offer) => offer.component.clone(),
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    match serve {
        Serve::Bytes(bytes) => bytes.into_response(),
        Serve::Endless => {
            let chunks = futures_util::stream::unfold(0u64, move |sent| {
                let fake = fake.clone();
                async move {
                    if sent >= ENDLESS_BYTES {
                        return None;
                    }
                    let chunk = Bytes::from(vec![0u8; 64 << 10]);
                    fake.0
                        .streamed
                        .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    let sent = sent + chunk.len() as u64;
                    Some((Ok::<_, std::io::Error>(chunk), sent))
                }
            });
            Body::from_stream(chunks).into_response()
        }
        Serve::Stall => {
            let first =
                futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1024]))]);
            let never = futures_util::stream::pending();
            Body::from_stream(futures_util::StreamExt::chain(first, never)).into_response()
        }
    }
}

/// A runtime node following the fake store, with the real store's key pinned.
async fn node_following(fake: &FakeStore, url: &str) -> (Host, tempfile::TempDir) {
    let host = Host::new().await;
    let components = tempfile::tempdir().unwrap();
    host.runtime
        .serve_regions(RegionsConfig {
            store: StoreClient::new(url, None)
                .unwrap()
                .with_download_timeout(DOWNLOAD_TIMEOUT),
            feed_key: Some(fake.0.store_key.public()),
            components_dir: components.path().to_owned(),
            poll: Duration::from_millis(200),
            push: None,
        })
        .await
        .unwrap();
    (host, components)
}

fn region_admin(host: &Host, region: &str) -> String {
    host.issuer
        .mint(
            Role::RegionAdmin,
            TokenRequest {
                sub: Some(format!("admin-of-{region}")),
                region: Some(region.into()),
                ..Default::default()
            },
        )
        .unwrap()
}

async fn post(host: &Host, path: &str, token: &str, body: Value) -> Answer {
    host.send(
        axum::http::Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn install(host: &Host, region: &str, app: &str) -> Answer {
    post(
        host,
        &format!("/admin/v1/regions/{region}/installs"),
        &region_admin(host, region),
        json!({"app": app, "grant": []}),
    )
    .await
}

/// The region's installs as `app@version`.
async fn installed(host: &Host, region: &str) -> Vec<String> {
    let answer = host
        .get(
            &format!("/admin/v1/regions/{region}/installs"),
            &region_admin(host, region),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|install| format!("{}@{}", install["app"], install["version"]).replace('"', ""))
        .collect()
}

/// The component files the node keeps.
fn kept_components(dir: &tempfile::TempDir) -> Vec<String> {
    match std::fs::read_dir(dir.path().join("sha256")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

fn hello(version: &str) -> (Manifest, Vec<u8>) {
    let (manifest, bytes) = example_app("hello");
    let mut manifest = Manifest::parse(&manifest).unwrap();
    manifest.app.version = version.parse().unwrap();
    (manifest, bytes)
}

fn error_of(answer: &Answer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_fake_store_cannot_get_self_signed_code_installed_under_a_publishers_app_id() {
    let (fake, url) = FakeStore::start().await;
    let (host, components) = node_following(&fake, &url).await;

    // The genuine version, with the store's signed record, installs.
    let (manifest, bytes) = hello("1.0.0");
    let genuine = fake.genuine(&manifest, &bytes, Serve::Bytes(bytes.clone()));
    let answer = install(&host, HOVEDSTADEN, "examples/hello@1.0.0").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    // The attacker's build of the same app id, signed by their own key. The store's unsigned
    // answers say the key is the publisher's: the verdict `valid`, and the key in the
    // publisher's list.
    let (manifest, bytes) = hello("6.6.6");
    let forged = Package::new(&manifest, &bytes).sign(&fake.0.attacker_key);
    let bogus = StoreClient::new(&url, None)
        .unwrap()
        .publisher("examples")
        .await
        .unwrap();
    assert!(
        bogus
            .keys
            .iter()
            .any(|key| key.key_id == fake.0.attacker_key.public().id())
    );
    let attacker = fake.0.attacker_key.public().id().to_string();
    for (record, why) in [
        (
            None,
            "the answer carries no version record signed by the app store's pinned key",
        ),
        (
            Some(fake.record_signed_by(&forged, &fake.0.attacker_key)),
            "its version record is not signed by the app store's pinned key",
        ),
        (
            Some(fake.record(&genuine)),
            "the store's version record is about examples/hello@1.0.0",
        ),
    ] {
        fake.offer(&forged, record, Serve::Bytes(bytes.clone()));
        let refused = install(&host, MIDTJYLLAND, "examples/hello@6.6.6").await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        let message = error_of(&refused);
        assert!(
            message.contains(&format!(
                "examples/hello@6.6.6 is signed by key {attacker}, which the app store does not vouch for as a key of publisher examples"
            )),
            "{message}"
        );
        assert!(message.contains(why), "{message}");

        let upgrade = post(
            &host,
            "/admin/v1/regions/hovedstaden/installs/examples/hello/upgrade",
            &region_admin(&host, HOVEDSTADEN),
            json!({"version": "6.6.6", "approve": true}),
        )
        .await;
        assert_eq!(upgrade.status, StatusCode::CONFLICT, "{}", upgrade.body);
        assert!(error_of(&upgrade).contains(why), "{}", upgrade.body);
    }

    // A yank the store signed cannot be hidden by leaving it out of the unsigned answer.
    let (manifest, bytes) = hello("1.0.1");
    let yanked = Package::new(&manifest, &bytes).sign(&fake.0.publisher_key);
    let record = VersionRecord::of(
        &yanked,
        fake.0.store_key.public().id(),
        (
            "2026-12-01T10:00:00Z".into(),
            Some("2026-12-02T10:00:00Z".into()),
        ),
        chrono::Utc::now(),
        chrono::Duration::minutes(5),
    )
    .sign(&fake.0.store_key);
    fake.offer(&yanked, Some(record), Serve::Bytes(bytes.clone()));
    let refused = install(&host, MIDTJYLLAND, "examples/hello@1.0.1").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        error_of(&refused).contains("examples/hello@1.0.1 was yanked by its publisher"),
        "{}",
        refused.body
    );

    // Nothing of the attacker's was downloaded, kept, recorded or served.
    assert_eq!(fake.component_requests(), 1, "only the genuine download");
    assert_eq!(
        kept_components(&components),
        [genuine.package.component.sha256.as_str()]
    );
    assert!(installed(&host, MIDTJYLLAND).await.is_empty());
    assert_eq!(
        installed(&host, HOVEDSTADEN).await,
        ["examples/hello@1.0.0"]
    );
    let serving: Vec<String> = host
        .runtime
        .installs()
        .iter()
        .map(|install| format!("{}@{}", install.identity.id, install.identity.version))
        .collect();
    assert_eq!(serving, ["examples/hello@1.0.0"]);
}

#[tokio::test]
async fn a_fake_store_streaming_more_than_the_signed_size_is_cut_off() {
    let (fake, url) = FakeStore::start().await;
    let (host, components) = node_following(&fake, &url).await;
    let (manifest, bytes) = hello("1.0.0");
    let signed = fake.genuine(&manifest, &bytes, Serve::Endless);

    let refused = install(&host, HOVEDSTADEN, "examples/hello@1.0.0").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    let message = error_of(&refused);
    assert!(
        message.contains(&format!(
            "the component of examples/hello@1.0.0 from {url} is larger than {} bytes: refused without reading the rest (its signed size)",
            signed.package.component.size
        )),
        "{message}"
    );
    // The node stopped reading at the signed size: the rest was never sent, let alone held.
    let streamed = fake.0.streamed.load(Ordering::SeqCst);
    assert!(
        streamed < ENDLESS_BYTES / 4,
        "{streamed} bytes were sent before the node hung up"
    );
    assert!(installed(&host, HOVEDSTADEN).await.is_empty());
    assert!(host.runtime.installs().is_empty());
    assert!(kept_components(&components).is_empty());
}

#[tokio::test]
async fn a_fake_store_that_stalls_a_download_is_given_up_on() {
    let (fake, url) = FakeStore::start().await;
    let (host, components) = node_following(&fake, &url).await;
    let (manifest, bytes) = hello("1.0.0");
    fake.genuine(&manifest, &bytes, Serve::Stall);

    // Unbounded, the install would wait forever; the outer bound only turns that into a
    // failure.
    let refused = tokio::time::timeout(
        Duration::from_secs(120),
        install(&host, HOVEDSTADEN, "examples/hello@1.0.0"),
    )
    .await
    .expect("the install waits for a stalled download without bound");
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    let message = error_of(&refused);
    assert!(
        message.contains(&format!(
            "the component of examples/hello@1.0.0 from {url} did not arrive within 2 s"
        )),
        "{message}"
    );
    assert_eq!(fake.component_requests(), 1);
    assert!(installed(&host, HOVEDSTADEN).await.is_empty());
    assert!(kept_components(&components).is_empty());
}

#[tokio::test]
async fn a_runtime_refuses_a_remote_store_whose_key_is_not_pinned() {
    let config = |url: &str, pinned: bool| RegionsConfig {
        store: StoreClient::new(url, None).unwrap(),
        feed_key: pinned.then(|| SecretKey::generate().public()),
        components_dir: std::env::temp_dir(),
        poll: Duration::from_secs(1),
        push: None,
    };
    for remote in [
        "http://store.example.org:8080",
        "https://store.example.org",
        "http://10.0.0.5:8080",
    ] {
        let error = config(remote, false).check_store_trust().unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("is not on this machine and no --store-key pins its key"),
            "{message}"
        );
        assert!(message.contains("store.key.pub"), "{message}");
        assert!(config(remote, true).check_store_trust().is_ok());
    }
    assert!(
        config("http://127.0.0.1:8080", false)
            .check_store_trust()
            .is_ok(),
        "a store on this machine may have its key pinned on first use"
    );

    // Starting a node that way fails before anything is asked of the store, and the node
    // serves no region installs.
    let host = Host::new().await;
    let error = host
        .runtime
        .serve_regions(config("http://store.example.org:8080", false))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--store-key"), "{error}");
    let answer = install(&host, HOVEDSTADEN, "examples/hello@1.0.0").await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_store_key_given_by_its_id_is_refused_when_the_store_presents_another() {
    let (fake, url) = FakeStore::start().await;
    let store = StoreClient::new(&url, None).unwrap();
    let genuine = fake.0.store_key.public();
    let pinned = healthcloud_runtime::regions::trust::store_key_by_id(&store, &genuine.id())
        .await
        .unwrap();
    assert_eq!(pinned, genuine);

    let expected = SecretKey::generate().public().id();
    let error = healthcloud_runtime::regions::trust::store_key_by_id(&store, &expected)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains(&format!(
            "presents key {}, not the key {expected} given with --store-key",
            genuine.id()
        )),
        "{error}"
    );
}
