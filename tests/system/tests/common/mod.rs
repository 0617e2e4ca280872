//! Store-test harness: a store on a fresh SQLite or PostgreSQL database with the runtime's real
//! install-time check, requests through its router without a socket, and components built
//! from the example apps' source.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::{Package, SignedPackage};
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;
use healthcloud_runtime::{AppEngine, Limits};
use healthcloud_store::service::{Store, StoreConfig, StoreLimits};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

pub struct StoreHost {
    pub store: Store,
    pub app: Router,
    pub issuer: TokenIssuer,
    pub dir: tempfile::TempDir,
    pub db: Database,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// The runtime's install-time check, on one engine for the whole test binary.
fn engine() -> Arc<AppEngine> {
    static ENGINE: OnceLock<Arc<AppEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let limits = Limits {
                pool_instances: 4,
                ..Limits::default()
            };
            Arc::new(AppEngine::new(&limits, None).unwrap())
        })
        .clone()
}

impl StoreHost {
    /// A store on `backend`, or `None` when PostgreSQL is not configured.
    pub async fn on(backend: Backend) -> Option<StoreHost> {
        Self::with_limits(backend, StoreLimits::default()).await
    }

    pub async fn with_limits(backend: Backend, limits: StoreLimits) -> Option<StoreHost> {
        Self::with_gate(backend, limits, Arc::new(|| {})).await
    }

    /// A store whose component check first runs `gate` (on a blocking thread): a test holds
    /// a publish there, between its upload and its commit.
    pub async fn with_gate(
        backend: Backend,
        limits: StoreLimits,
        gate: Arc<dyn Fn() + Send + Sync>,
    ) -> Option<StoreHost> {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("store.db").display()),
            Backend::Postgres => {
                healthcloud_platform::testing::postgres_database("hc_store_test").await?
            }
        };
        let db = Database::connect(&url).await.unwrap();
        let issuer = TokenIssuer::generate("test-issuer")
            .with_audience(vec!["http://store.test/store/v1".into()]);
        let engine = engine();
        let (store, _) = Store::open(StoreConfig {
            db: db.clone(),
            dir: dir.path().join("store"),
            verifier: issuer.verifier(),
            check: Arc::new(move |manifest, bytes| {
                gate();
                engine.validate(manifest, bytes).map_err(|e| e.to_string())
            }),
            limits,
        })
        .await
        .unwrap();
        Some(StoreHost {
            app: store.router(),
            store,
            issuer,
            dir,
            db,
        })
    }

    pub fn token(&self, role: Role, sub: &str) -> String {
        self.issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(sub.into()),
                    ..TokenRequest::default()
                },
            )
            .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token(Role::StoreAdmin, "store-admin")
    }

    pub fn publisher_token(&self, publisher: &str) -> String {
        self.token(Role::Publisher, publisher)
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.send(
            Request::post(path)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Registers `publisher` with `key` as a store admin.
    pub async fn register(&self, publisher: &str, key: &SecretKey) -> Answer {
        self.post_json(
            "/store/v1/publishers",
            &self.admin(),
            &json!({"id": publisher, "name": format!("{publisher} Ltd"), "key": key.public().to_pem()}),
        )
        .await
    }

    /// Publishes `signed` with `component` as `publisher`.
    pub async fn publish_as(
        &self,
        publisher: &str,
        signed: &SignedPackage,
        component: &[u8],
    ) -> Answer {
        self.publish_raw(
            &self.publisher_token(publisher),
            signed.to_json().as_bytes(),
            Body::from(multipart_tail(component)),
        )
        .await
    }

    /// Publishes as the package's own publisher.
    pub async fn publish(&self, signed: &SignedPackage, component: &[u8]) -> Answer {
        let publisher = signed.package.app.publisher.clone();
        self.publish_as(&publisher, signed, component).await
    }

    /// A publish whose component part (and closing boundary) comes from `tail`.
    pub async fn publish_raw(&self, token: &str, envelope: &[u8], tail: Body) -> Answer {
        let head = multipart_head(envelope);
        let stream = futures_util::stream::once(async move {
            Ok::<_, axum::Error>(axum::body::Bytes::from(head))
        })
        .chain(tail.into_data_stream());
        self.send(
            Request::post("/store/v1/packages")
                .header("authorization", format!("Bearer {token}"))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::from_stream(stream))
                .unwrap(),
        )
        .await
    }

    /// Files in the store's temporary and blob folders.
    pub fn files(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let list = |dir: &str| -> Vec<PathBuf> {
            std::fs::read_dir(self.dir.path().join("store/blobs").join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        };
        (list("tmp"), list("sha256"))
    }
}

use futures_util::StreamExt;

pub const BOUNDARY: &str = "healthcloud-test-boundary-7d1f";

/// The multipart body up to the start of the component's bytes.
pub fn multipart_head(envelope: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"package\"\r\nContent-Type: application/json\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(envelope);
    body.extend_from_slice(
        format!(
            "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"app.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body
}

/// The component's bytes and the closing boundary.
pub fn multipart_tail(component: &[u8]) -> Vec<u8> {
    let mut body = component.to_vec();
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The example app `name`: its manifest and its component, built from source once per test
/// binary (by the runtime's harness).
pub fn example_app(name: &str) -> (Manifest, Vec<u8>) {
    let (manifest, component) = healthcloud_runtime::testing::example_app(name);
    (Manifest::parse(&manifest).unwrap(), component)
}

/// `hello`'s component under another publisher, id and version.
pub fn hello_as(publisher: &str, id: &str, version: &str) -> (Manifest, Vec<u8>) {
    let (mut manifest, component) = example_app("hello");
    manifest.app.publisher = publisher.into();
    manifest.app.id = id.into();
    manifest.app.version = version.parse().unwrap();
    (manifest, component)
}

/// Signs `manifest` for `component` with `key`.
pub fn sign(manifest: &Manifest, component: &[u8], key: &SecretKey) -> SignedPackage {
    Package::new(manifest, component).sign(key)
}
