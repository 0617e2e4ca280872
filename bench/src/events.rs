//! The `events` benchmark: how long after a write its notification reaches a subscriber. A
//! clinician's rest-hook subscription (topic `new-observation`, id-only) notifies a webhook
//! receiver on loopback; writers create Observations for a synthetic population through
//! `FhirService` (each write committed with its audit record and its change row), and the
//! latency of each is from its write returning to the receiver holding its notification —
//! the dispatcher's wake-up, the subscriber's access checked again, the match as one search,
//! the delivery's audit record, the signed POST.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use healthcloud_integration::FhirService;
use healthcloud_integration::api::{self, FhirConfig, FhirState};
use healthcloud_integration::import::load_synthetic;
use healthcloud_integration::policy::AccessContext;
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_integration::webhook::EndpointPolicy;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_synth::SynthOptions;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::stats::{Latency, ms};

/// Goal: write-to-webhook latency, 99th percentile.
const GOAL_P99: Duration = Duration::from_millis(200);

const BASE: &str = "http://bench.local/fhir/r4";

/// `healthcloud-bench events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Observations written (each one notification) [default: 1000, or 50 with --smoke].
    #[arg(long)]
    writes: Option<usize>,
    /// Writes per second, started on a steady clock (each in its own task, so a slow one
    /// delays no other).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Patients in the population the writes are spread over.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// A few seconds' run for CI.
    #[arg(long)]
    smoke: bool,
}

/// When each notified Observation's notification arrived, by its focus.
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<String, Instant>>,
    arrived: Notify,
}

/// Runs the benchmark.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let writes = args.writes.unwrap_or(if args.smoke { 50 } else { 1000 });
    let patients = if args.smoke { 10 } else { args.patients };
    let dir = tempfile::Builder::new()
        .prefix("healthcloud-bench-events-")
        .tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let store = EmbeddedStore::new(healthcloud_integration::open_database(&url).await?);
    let options = SynthOptions {
        patients,
        seed: 23,
        today: crate::SYNTH_TODAY.parse()?,
    };
    load_synthetic(&store, options, &|_| {}).await?;
    let service = FhirService::new(store, PageLimits::default());
    let issuer = TokenIssuer::generate("bench").with_audience(vec![BASE.into()]);
    let state = FhirState {
        service: service.clone(),
        verifier: issuer.verifier(),
        config: Arc::new(FhirConfig {
            base_url: BASE.into(),
            audience: BASE.into(),
            max_body_bytes: 1 << 20,
            cors_origins: Vec::new(),
            authorization: None,
            subscription_endpoints: EndpointPolicy {
                allow_internal: true,
            },
        }),
    };
    // Mounting the API starts delivery.
    let _api = api::mount(state);

    let arrivals = Arc::new(Arrivals::default());
    let received = arrivals.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let received = received.clone();
            async move {
                let now = Instant::now();
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let focus = (body["entry"][0]["resource"]["parameter"].as_array())
                    .into_iter()
                    .flatten()
                    .filter(|p| p["name"] == "notification-event")
                    .flat_map(|p| p["part"].as_array().cloned().unwrap_or_default())
                    .find(|part| part["name"] == "focus")
                    .and_then(|part| {
                        part["valueReference"]["reference"]
                            .as_str()
                            .map(str::to_owned)
                    });
                if let Some(focus) = focus {
                    received.at.lock().unwrap().insert(focus, now);
                    received.arrived.notify_waiters();
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let context = |scope: &str| -> anyhow::Result<AccessContext> {
        let token = issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    sub: Some("bench-gp".into()),
                    scope: Some(scope.into()),
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
        Ok(AccessContext::user(issuer.verifier().verify(&token)?))
    };
    let subscriber = context("user/Observation.rs")?;
    let writer = context("user/Observation.crs user/Patient.rs")?;
    let subscription = json!({
        "resourceType": "Subscription", "status": "requested", "reason": "benchmark",
        "criteria": "https://healthcloud.example/fhir/SubscriptionTopic/new-observation",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
    });
    service
        .subscription_create(&subscriber, subscription)
        .await?;

    let (_, page) = service
        .search_params(
            &writer,
            "Patient",
            &[("_count".into(), patients.to_string())],
        )
        .await?;
    let ids: Vec<String> = page.resources.into_iter().map(|r| r.id).collect();
    if ids.is_empty() {
        bail!("the population has no patients");
    }

    eprintln!("{writes} writes at {} per second…", args.rate);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..writes {
        let due = started + Duration::from_secs_f64(n as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let (service, writer) = (service.clone(), writer.clone());
        let observation = json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": format!("Patient/{}", ids[n % ids.len()])},
            "effectiveDateTime": "2026-12-01T08:00:00Z"
        });
        tasks.push(tokio::spawn(async move {
            let done = service.create(&writer, "Observation", observation).await?;
            Ok::<_, anyhow::Error>((format!("{BASE}/Observation/{}", done.id), Instant::now()))
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await??);
    }
    let writing = started.elapsed();
    // Every notification, or a minute at most.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived = arrivals.arrived.notified();
        if arrivals.at.lock().unwrap().len() >= written.len() || Instant::now() > deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
    }
    let at = arrivals.at.lock().unwrap().clone();
    let latencies: Vec<Duration> = (written.iter())
        .filter_map(|(focus, done)| {
            at.get(focus)
                .map(|arrived| arrived.saturating_duration_since(*done))
        })
        .collect();
    if latencies.len() != written.len() {
        bail!(
            "{} of {} writes were notified within a minute",
            latencies.len(),
            written.len()
        );
    }
    let latency = Latency::of(&latencies);
    println!(
        "events: {writes} new Observations at {:.0} writes/s over {} patients, one rest-hook subscription (id-only) on loopback, embedded SQLite",
        writes as f64 / writing.as_secs_f64(),
        ids.len()
    );
    println!(
        "write → webhook: p50 {} p90 {} p99 {} max {} (goal p99 ≤ {}: {})",
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.max),
        ms(GOAL_P99),
        if latency.p99 <= GOAL_P99 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
