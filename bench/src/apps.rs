//! The `apps` benchmark: what one request to an app costs through the whole runtime path
//! (token check, routing, a fresh instance, the handler, host calls with policy and durable
//! audit), in process, without sockets, next to a native handler on the same router.

use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use healthcloud_integration::FhirService;
use healthcloud_integration::import::load_synthetic;
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_package::manifest::Manifest;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;
use healthcloud_runtime::{Limits, Runtime, RuntimeConfig};
use healthcloud_synth::SynthOptions;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::stats::{Latency, ms, per_second};

/// How one run is configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// Synthetic patients in the store.
    pub patients: usize,
    /// Sequential requests timed per target.
    pub requests: usize,
    /// Where the database lives.
    pub data_dir: std::path::PathBuf,
}

/// One measured target.
#[derive(Debug)]
pub struct Measured {
    /// What was requested.
    pub name: &'static str,
    /// Sequential latency.
    pub latency: Latency,
    /// Requests per second with two concurrent clients.
    pub concurrent_rate: f64,
    /// Audit records written per request.
    pub audits_per_request: f64,
}

pub async fn run(config: &Config) -> anyhow::Result<Vec<Measured>> {
    eprintln!("building the example apps…");
    let built = crate::build_example_apps()?;
    let db = config.data_dir.join("apps.db");
    let database =
        healthcloud_integration::open_database(&format!("sqlite://{}", db.display())).await?;
    let store = EmbeddedStore::new(database.clone());
    eprintln!("generating {} patients…", config.patients);
    load_synthetic(
        &store,
        SynthOptions {
            patients: config.patients,
            seed: 7,
            today: crate::SYNTH_TODAY.parse()?,
        },
        &|_| {},
    )
    .await?;
    let patient = patient_with_blood_pressures(&store).await?;
    let issuer = TokenIssuer::generate("bench").with_audience(crate::bench_audience());
    let service = FhirService::new(store.clone(), PageLimits::default());
    let fresh = runtime_with(&service, &database, &issuer, &built, Limits::default()).await?;
    let reusing = runtime_with(
        &service,
        &database,
        &issuer,
        &built,
        Limits {
            reuse_instances: true,
            ..Limits::default()
        },
    )
    .await?;
    let router = fresh
        .router()
        .route(
            "/native/hello",
            axum::routing::get(|| async { "Hello from healthcloud" }),
        )
        .nest("/reuse", reusing.router());
    let token = issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                patient: Some(patient),
                region: Some("bench".into()),
                ..Default::default()
            },
        )
        .map_err(anyhow::Error::msg)?;
    let mut results = Vec::new();
    for (name, path, expected) in [
        (
            "native axum handler (same router, no token check)",
            "/native/hello",
            StatusCode::OK,
        ),
        (
            "token check + lookup only (app not installed: 404)",
            "/apps/bench/examples/none/",
            StatusCode::NOT_FOUND,
        ),
        (
            "hello (fresh instance, no host call)",
            "/apps/bench/examples/hello/",
            StatusCode::OK,
        ),
        (
            "hello (instance reused for the same launch context)",
            "/reuse/apps/bench/examples/hello/",
            StatusCode::OK,
        ),
        (
            "bp-monitor page (Patient read + searches, audited)",
            "/apps/bench/examples/bp-monitor/",
            StatusCode::OK,
        ),
        (
            "bp-monitor JSON (searches, audited)",
            "/apps/bench/examples/bp-monitor/api/readings",
            StatusCode::OK,
        ),
    ] {
        eprintln!("timing {path}…");
        let audits_before = audit_count(&store).await?;
        let latency = sequential(&router, path, &token, expected, config.requests).await?;
        let audits = audit_count(&store).await? - audits_before;
        let concurrent_rate = concurrent(&router, path, &token, expected, config.requests).await?;
        results.push(Measured {
            name,
            latency,
            concurrent_rate,
            audits_per_request: audits as f64 / config.requests as f64,
        });
    }
    Ok(results)
}

/// A runtime over `service` with every example app installed, everything requested granted.
async fn runtime_with(
    service: &FhirService,
    database: &Database,
    issuer: &TokenIssuer,
    built: &[healthcloud_guestbuild::Built],
    limits: Limits,
) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(RuntimeConfig {
        service: service.clone(),
        database: database.clone(),
        verifier: issuer.verifier(),
        public_url: crate::BENCH_URL.into(),
        limits,
        cache_dir: None,
    })
    .await?;
    for app in built {
        let manifest = Manifest::parse(&std::fs::read_to_string(
            app.package_dir.join("healthcloud.toml"),
        )?)?;
        let grant = manifest.capabilities();
        runtime.install(
            "bench",
            manifest,
            &std::fs::read(&app.wasm)?,
            "bench-key",
            grant,
        )?;
    }
    Ok(runtime)
}

async fn request(
    router: &Router,
    path: &str,
    token: &str,
    expected: StatusCode,
) -> anyhow::Result<()> {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .header("host", "bench")
        .body(Body::empty())?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == expected,
        "{path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

async fn sequential(
    router: &Router,
    path: &str,
    token: &str,
    expected: StatusCode,
    count: usize,
) -> anyhow::Result<Latency> {
    for _ in 0..count.div_ceil(10) {
        request(router, path, token, expected).await?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        request(router, path, token, expected).await?;
        samples.push(started.elapsed());
    }
    Ok(Latency::of(&samples))
}

/// Two clients at once (the machine's core count), `count` requests in all.
async fn concurrent(
    router: &Router,
    path: &str,
    token: &str,
    expected: StatusCode,
    count: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (router, path, token) = (router.clone(), path.to_owned(), token.to_owned());
            tokio::spawn(async move {
                for _ in 0..count / 2 {
                    request(&router, &path, &token, expected).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(per_second(count / 2 * 2, started.elapsed()))
}

async fn audit_count(store: &EmbeddedStore) -> anyhow::Result<i64> {
    use sqlx::Row;
    let db = store.database();
    let row = db
        .sql("SELECT COUNT(*) FROM resources WHERE resource_type = 'AuditEvent'")
        .query()
        .fetch_one(db.pool())
        .await?;
    Ok(row.try_get(0)?)
}

async fn patient_with_blood_pressures(store: &EmbeddedStore) -> anyhow::Result<String> {
    let params = vec![
        ("code".to_owned(), "http://loinc.org|85354-9".to_owned()),
        ("_count".to_owned(), "1".to_owned()),
    ];
    let query = SearchQuery::parse("Observation", &params, PageLimits::default())?;
    let page = store.search(&query).await?;
    page.resources
        .first()
        .and_then(|r| r.patient_id.clone())
        .context("the synthetic data has no blood pressures")
}

/// The results as a text table.
pub fn table(results: &[Measured], requests: usize) -> String {
    let mut text = format!(
        "{:<58} {:>10} {:>10} {:>14} {:>10}\n",
        "request (in process, no socket)", "p50", "p99", "req/s (2 cl.)", "audits"
    );
    for m in results {
        text.push_str(&format!(
            "{:<58} {:>10} {:>10} {:>14.0} {:>10.1}\n",
            m.name,
            ms(m.latency.p50),
            ms(m.latency.p99),
            m.concurrent_rate,
            m.audits_per_request
        ));
    }
    text.push_str(&format!(
        "({requests} sequential requests per row after a warm-up)\n"
    ));
    text
}
