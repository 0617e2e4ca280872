//! The one listener: the integration cloud's FHIR API, the app cloud's apps and the app
//! store, composed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use healthcloud_integration::Integration;
use healthcloud_integration::admin::SourcesAdmin;
use healthcloud_package::client::StoreClient;
use healthcloud_package::keys::PublicKey;
use healthcloud_runtime::{Limits, RegionsConfig, Runtime, RuntimeConfig};
use healthcloud_store::service::{Store, StoreConfig, StoreLimits};

/// Creates the app cloud on top of an opened integration cloud; compiled code is cached in
/// `data_dir`.
pub async fn app_cloud(
    integration: &Integration,
    data_dir: &Path,
    limits: Limits,
) -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeConfig {
        service: integration.state.service.clone(),
        database: integration.database.clone(),
        verifier: integration.state.verifier.clone(),
        public_url: integration.public_url.clone(),
        limits,
        cache_dir: Some(data_dir.join("compiled")),
    })
    .await
}

/// Opens the app store on the integration cloud's database; components and the feed key live
/// in `data_dir/store`, and uploads are checked with `runtime`'s install-time check.
pub async fn app_store(
    integration: &Integration,
    data_dir: &Path,
    runtime: &Runtime,
) -> anyhow::Result<Store> {
    let runtime = runtime.clone();
    let (store, _) = Store::open(StoreConfig {
        db: integration.database.clone(),
        dir: data_dir.join("store"),
        verifier: integration.state.verifier.clone(),
        check: Arc::new(move |manifest, bytes| {
            runtime.validate(manifest, bytes).map_err(|e| e.to_string())
        }),
        limits: StoreLimits::default(),
    })
    .await?;
    Ok(store)
}

/// Serves the regions' installs from the database, following the store at `store_url`
/// (its revocation feed, packages and components); component bytes are kept in
/// `data_dir/components`. `feed_key` pins the store's key, which signs its feed and version
/// records (else the first one seen is pinned, which only a store on loopback is allowed);
/// `push` wakes the follower when a store in this process commits a revocation.
pub async fn serve_regions(
    runtime: &Runtime,
    store_url: &str,
    feed_key: Option<PublicKey>,
    push: Option<tokio::sync::watch::Receiver<u64>>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    runtime
        .serve_regions(RegionsConfig {
            store: StoreClient::new(store_url, None)?,
            feed_key,
            components_dir: data_dir.join("components"),
            poll: std::time::Duration::from_secs(1),
            push,
        })
        .await
}

/// Whether start-up work that needs the listener (publishing the example apps through the
/// store) is done: until then `/healthz` answers 503.
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    /// Already ready.
    pub fn now() -> Ready {
        let ready = Ready::default();
        ready.set();
        ready
    }

    /// Marks start-up as done.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What one listener serves: `up` and `app run` compose all three services (`up` with the
/// development launcher's pages), a `serve` node exactly one.
#[derive(Default)]
pub struct Services<'a> {
    /// The integration cloud's FHIR API, `/fhir/r4`.
    pub integration: Option<&'a Integration>,
    /// The integration cloud's sources admin API, `/admin/v1/sources`.
    pub sources: Option<&'a SourcesAdmin>,
    /// The app cloud: `/apps/…` and the region admin API `/admin/v1/regions/…`.
    pub runtime: Option<&'a Runtime>,
    /// The app store: catalog pages and `/store/v1`.
    pub store: Option<&'a Store>,
    /// The development launcher's pages (`healthcloud_launcher::router`).
    pub pages: Option<Router>,
    /// The SMART authorization server, `/oauth2/…`.
    pub authorization: Option<&'a healthcloud_oauth::AuthorizationServer>,
}

impl<'a> Services<'a> {
    /// The three services on one listener, without pages.
    pub fn all(integration: &'a Integration, runtime: &'a Runtime, store: &'a Store) -> Self {
        Services {
            integration: Some(integration),
            sources: None,
            runtime: Some(runtime),
            store: Some(store),
            pages: None,
            authorization: None,
        }
    }
}

/// The routes of `services`, `/healthz` (503 until `ready`) and the layers every listener
/// has: what a listener serves, testable without one.
pub fn app(services: Services<'_>, ready: &Ready) -> Router {
    let Services {
        integration,
        sources,
        runtime,
        store,
        pages,
        authorization,
    } = services;
    let routes = [
        integration.map(Integration::router),
        sources.map(SourcesAdmin::router),
        runtime.map(Runtime::router),
        store.map(Store::router),
        authorization.map(healthcloud_oauth::AuthorizationServer::router),
        pages,
    ]
    .into_iter()
    .flatten()
    .fold(Router::new(), |all, routes| all.merge(routes));
    with_layers(routes, ready)
}

/// `/healthz` and the layers every listener has.
fn with_layers(routes: Router, ready: &Ready) -> Router {
    let ready = ready.clone();
    let health = move || async move {
        if ready.0.load(Ordering::Acquire) {
            (StatusCode::OK, "ok")
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: publishing and installing the example apps",
            )
        }
    };
    routes
        .route("/healthz", get(health))
        // A bug must cost one request a 500, never the connection or the process.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            healthcloud_integration::FhirError::Internal(anyhow::anyhow!(
                "request handler panicked"
            ))
            .into_response()
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Binds `addr`, with an error that says what to do when it is taken.
pub async fn listen(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr}: {e} (is another healthcloud running? use --addr HOST:PORT)"
        )
    })
}

/// Serves until Ctrl-C.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> anyhow::Result<()> {
    let listener = healthcloud_platform::http::without_delay(listener);
    // Each request carries its peer's address (`ConnectInfo`): the launch pages answer only
    // loopback peers.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
