//! What a listener serves, composed by `healthcloud::server::app` and driven with `oneshot`,
//! without a socket: every service on one listener (`up`, `app run`), one service per node
//! (`serve`), `/healthz`, and the launcher's pages when `up` mounts them.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use healthcloud::server::{self, Ready, Services};
use healthcloud_integration::Integration;
use healthcloud_runtime::{Limits, Runtime};
use healthcloud_store::service::Store;
use serde_json::Value;
use tower::ServiceExt;

const PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// The three services over one fresh SQLite database, as `up` opens them.
struct Parts {
    integration: Integration,
    runtime: Runtime,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn parts() -> Parts {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("healthcloud.db").display());
    let integration = Integration::open(&url, PUBLIC_URL, dir.path())
        .await
        .unwrap();
    let runtime = server::app_cloud(&integration, dir.path(), Limits::default())
        .await
        .unwrap();
    let store = server::app_store(&integration, dir.path(), &runtime)
        .await
        .unwrap();
    Parts {
        integration,
        runtime,
        store,
        _dir: dir,
    }
}

impl Parts {
    fn all(&self) -> Services<'_> {
        Services::all(&self.integration, &self.runtime, &self.store)
    }
}

/// `GET path` from a loopback peer (as the listener records it), with `Host` set.
async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let mut request = Request::get(path)
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_000))));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn one_listener_serves_the_fhir_api_the_app_cloud_and_the_store() {
    let parts = parts().await;
    let app = server::app(parts.all(), &Ready::now());

    let (status, body) = get(&app, "/fhir/r4/metadata").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["resourceType"], "CapabilityStatement", "{body}");

    let (status, body) = get(&app, "/store/v1/apps").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str::<Value>(&body).expect("the store's catalog is JSON");

    let (status, body) = get(&app, "/apps/hovedstaden/examples/hello/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token: {body}");

    let (status, body) = get(&app, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    // `app run` composes the same services without pages.
    let (status, _) = get(&app, "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no launcher without pages");
}

#[tokio::test]
async fn a_node_serves_its_own_part_and_nothing_of_the_others() {
    let parts = parts().await;
    let only = |services: Services<'_>| server::app(services, &Ready::now());

    let store = only(Services {
        store: Some(&parts.store),
        ..Default::default()
    });
    assert_eq!(get(&store, "/store/v1/apps").await.0, StatusCode::OK);
    assert_eq!(
        get(&store, "/fhir/r4/metadata").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&store, "/apps/hovedstaden/examples/hello/").await.0,
        StatusCode::NOT_FOUND
    );

    let integration = only(Services {
        integration: Some(&parts.integration),
        ..Default::default()
    });
    assert_eq!(
        get(&integration, "/fhir/r4/metadata").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&integration, "/store/v1/apps").await.0,
        StatusCode::NOT_FOUND
    );

    let runtime = only(Services {
        runtime: Some(&parts.runtime),
        ..Default::default()
    });
    assert_eq!(
        get(&runtime, "/apps/hovedstaden/examples/hello/").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&runtime, "/fhir/r4/metadata").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&runtime, "/store/v1/apps").await.0,
        StatusCode::NOT_FOUND
    );

    for node in [store, integration, runtime] {
        assert_eq!(get(&node, "/healthz").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn healthz_answers_503_until_start_up_is_done() {
    let parts = parts().await;
    let ready = Ready::default();
    let app = server::app(parts.all(), &ready);
    let (status, body) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.starts_with("starting"), "{body}");
    // The APIs answer meanwhile: start-up publishes through the store's.
    assert_eq!(get(&app, "/store/v1/apps").await.0, StatusCode::OK);
    ready.set();
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn up_mounts_the_launcher_pages_beside_the_services() {
    let parts = parts().await;
    let pages = healthcloud_launcher::router(
        healthcloud_launcher::Launch::new(healthcloud_launcher::LaunchConfig {
            issuer: parts.integration.issuer.clone(),
            verifier: parts.integration.state.verifier.clone(),
            service: parts.integration.state.service.clone(),
            runtime: parts.runtime.clone(),
            store_url: PUBLIC_URL.into(),
            public_url: PUBLIC_URL.into(),
            regions: vec!["hovedstaden".into()],
            listen_addr: "127.0.0.1:8080".parse().unwrap(),
            authorization: None,
        })
        .unwrap(),
    );
    let app = server::app(
        Services {
            pages: Some(pages),
            ..parts.all()
        },
        &Ready::now(),
    );
    let (status, body) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("hovedstaden"),
        "the launch page offers the region"
    );
    assert_eq!(get(&app, "/fhir/r4/metadata").await.0, StatusCode::OK);
}
