//! The `compare` benchmark: requests over real HTTP on loopback, each server in its own
//! process so its CPU time can be read from /proc, load from [`crate::http`].
//!
//! Hello, four ways, in alternating rounds (A, B, C, D, A, B, C, D, …) so drift in the
//! shared machine's load hits all of them alike:
//!
//! 1. the runtime (this binary in server mode: token check, install lookup, a fresh instance),
//! 2. the runtime reusing instances of the same launch context,
//! 3. `wasmtime serve` running the same component,
//! 4. a native axum handler answering the same text.
//!
//! Then the bp-monitor page (a patient with 500 blood pressures) through the runtime against
//! a native handler that makes the same `FhirService` calls under the same access context
//! (policy, consent and audit included) and renders the same page with the same template
//! engine. Every status is checked, and a sample of bodies, so a failing server fails the
//! benchmark instead of flattering it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bp_monitor_pages::{reading, view};
use healthcloud_integration::import::{Importer, load_synthetic};
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_integration::{FhirError, FhirService};
use healthcloud_platform::auth::bearer_token;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest, TokenVerifier};
use healthcloud_runtime::{Install, Limits, Runtime, RuntimeConfig};
use healthcloud_sdk::clock::Date;
use healthcloud_sdk::model::{Observation, Patient};
use healthcloud_synth::SynthOptions;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::http::{self, BodyCheck};
use crate::machine::Usage;
use crate::server::{Ready, Server};
use crate::stats::{Latency, ms, per_second, thousands};

/// The wasmtime CLI compared against: the release the runtime's `wasmtime` crates are pinned
/// to in the workspace, so both sides run the same engine.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// What `wasmtime serve` needs besides the component: `-S cli=y` links the WASI CLI
/// interfaces Rust's standard library imports (environment, exit), which the bare proxy
/// world leaves out.
const WASMTIME_SERVE_FLAGS: &[&str] = &["-S", "cli=y"];
/// The region the apps are installed in and the token is for.
const REGION: &str = "bench";
const ISSUER: &str = "bench";
const HELLO_PATH: &str = "/apps/bench/examples/hello/";
const HELLO_TEXT: &str = "Hello from healthcloud";
const BP_APP: &str = "examples/bp-monitor";
const BP_PATH: &str = "/apps/bench/examples/bp-monitor/";
/// The patient whose blood pressures the bp-monitor page shows.
const BP_PATIENT: &str = "bench-bp-patient";
const BP_READINGS: usize = 500;
/// Instances of one install at once in the runtime servers: above the load generator's
/// connections, since an instance can hold its slot for a moment after its answer went out
/// and the default (16) would then refuse a 16-connection client with 503 now and then.
const MIN_INSTANCE_SLOTS: usize = 64;

/// How one run is configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent keep-alive connections of the load generator.
    pub connections: usize,
    /// Load time of one round of one target.
    pub round: Duration,
    /// Rounds per target.
    pub rounds: usize,
    /// A quick run for CI: few patients, short warm-ups, and `wasmtime serve` skipped when it
    /// is not installed (a full run installs it).
    pub smoke: bool,
    /// A fresh subdirectory of this directory holds the run's databases; it is removed at the
    /// end.
    pub data_dir: PathBuf,
}

/// The targets, in the order they are measured and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetId {
    /// hello through the runtime, a fresh instance per request.
    HelloFresh,
    /// hello through the runtime, instances reused within a launch context.
    HelloReuse,
    /// hello under `wasmtime serve`.
    WasmtimeServe,
    /// A native axum handler answering the same text.
    HelloNative,
    /// The bp-monitor page through the runtime, a fresh instance per request.
    BpMonitor,
    /// A native handler making the same FHIR calls and rendering the same page.
    BpNative,
}

impl TargetId {
    /// What the table calls it.
    pub fn name(self) -> &'static str {
        match self {
            TargetId::HelloFresh => "hello, runtime, fresh instance per request",
            TargetId::HelloReuse => "hello, runtime, instance reused (same context)",
            TargetId::WasmtimeServe => "hello, wasmtime serve",
            TargetId::HelloNative => "hello, native axum handler",
            TargetId::BpMonitor => "bp-monitor page, runtime, fresh instance",
            TargetId::BpNative => "bp-monitor page, native handler",
        }
    }
}

/// One measured target.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Which target.
    pub id: TargetId,
    /// Requests answered in the timed rounds.
    pub requests: usize,
    /// Load time of the timed rounds together.
    pub elapsed: Duration,
    /// Requests per second of each round, in order.
    pub round_rates: Vec<f64>,
    /// Every timed request's latency.
    pub latency: Latency,
    /// CPU time (user + system) of the server process over the timed rounds.
    pub server_cpu: Duration,
    /// CPU time of the load generator (this process) over the timed rounds: it shares the
    /// machine's cores with the server.
    pub client_cpu: Duration,
    /// AuditEvents the server wrote per request, for the targets that read patient data.
    pub audits_per_request: Option<f64>,
}

impl Measured {
    /// Requests per second over all timed rounds.
    pub fn rate(&self) -> f64 {
        per_second(self.requests, self.elapsed)
    }

    /// Server CPU time per request.
    pub fn server_cpu_per_request(&self) -> Duration {
        self.server_cpu / u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX)
    }

    /// Load generator CPU time per request.
    pub fn client_cpu_per_request(&self) -> Duration {
        self.client_cpu / u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX)
    }
}

/// A ratio the targets are stated in.
#[derive(Debug, Clone)]
pub struct Ratio {
    /// The faster-hoped side.
    pub numerator: TargetId,
    /// What it is compared with.
    pub denominator: TargetId,
    /// The stated target for the requests-per-second ratio.
    pub target: f64,
    /// numerator ÷ denominator in requests per second; `None` when a side was not measured.
    pub rate: Option<f64>,
    /// The same comparison in server CPU per request (denominator's ÷ numerator's, so above 1
    /// means the numerator needs less CPU per request).
    pub cpu: Option<f64>,
}

impl Ratio {
    /// Whether the target is met; `None` when not measured.
    pub fn met(&self) -> Option<bool> {
        self.rate.map(|rate| rate >= self.target)
    }
}

/// What was checked about the bp-monitor answers.
#[derive(Debug, Clone)]
pub struct BpCheck {
    /// The latest reading as both pages must show it.
    pub latest: String,
    /// The readings in the 90-day window.
    pub readings: usize,
    /// Whether the native page is byte for byte the app's page.
    pub identical: bool,
    /// Sizes of the app's and the native page.
    pub page_bytes: (usize, usize),
}

/// A server as started, for the report.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// Which targets it served.
    pub serves: &'static str,
    /// The command line (paths relative to the repository).
    pub command: String,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// How the run was configured.
    pub config: Config,
    /// Synthetic patients in the store besides the blood-pressure patient.
    pub patients: usize,
    /// Each target, in [`TargetId`] order (without `wasmtime serve` when it was skipped).
    pub measured: Vec<Measured>,
    /// The stated ratios.
    pub ratios: Vec<Ratio>,
    /// How each server was started.
    pub servers: Vec<ServerCommand>,
    /// `wasmtime --version`, or why `wasmtime serve` was skipped.
    pub wasmtime: Result<String, String>,
    /// The `wasmtime` crate version the runtime was built with (from Cargo.lock).
    pub runtime_wasmtime: String,
    /// The bp-monitor answers.
    pub bp: BpCheck,
    /// /proc/loadavg when the measuring started and when it ended (the machine is shared).
    pub load_average: (String, String),
}

/// Runs the benchmark.
pub async fn run(config: &Config) -> anyhow::Result<Results> {
    let root = crate::repository_root();
    let run_dir = crate::RunDir {
        path: config
            .data_dir
            .join(format!("healthcloud-bench-compare-{}", std::process::id())),
        keep: false,
    };
    std::fs::create_dir_all(&run_dir.path)
        .with_context(|| format!("cannot create {}", run_dir.path.display()))?;
    let wasmtime = wasmtime_binary(root, config.smoke)?;

    eprintln!("building the example apps…");
    let built = crate::build_example_apps()?;
    let app = |package: &str| {
        built
            .iter()
            .find(|b| b.package == package)
            .with_context(|| format!("the example apps have no {package}"))
    };
    let (hello, bp_monitor) = (app("hello")?, app("bp-monitor")?);

    let patients = if config.smoke { 20 } else { 200 };
    eprintln!("generating {patients} patients and {BP_READINGS} blood pressures…");
    let seed_db = run_dir.path.join("seed.db");
    let latest = prepare_data(&seed_db, patients).await?;
    let issuer = TokenIssuer::generate(ISSUER).with_audience(crate::bench_audience());
    let issuer_pem = run_dir.path.join("issuer.pem");
    std::fs::write(&issuer_pem, issuer.public_pem())?;
    let token = issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                patient: Some(BP_PATIENT.into()),
                region: Some(REGION.into()),
                org: Some("gp-0001".into()),
                fhir_user: Some("Practitioner/bench-clinician".into()),
                // Outlives a slow run; the token check is the same at any lifetime.
                ttl_secs: Some(6 * 3600),
                ..TokenRequest::default()
            },
        )
        .map_err(anyhow::Error::msg)?;

    eprintln!("starting the servers…");
    let servers = Servers::start(&ServerSetup {
        root,
        run_dir: &run_dir.path,
        seed_db: &seed_db,
        issuer_pem: &issuer_pem,
        hello,
        bp_monitor,
        wasmtime: wasmtime.as_ref().ok(),
        slots: instance_slots(config.connections),
    })
    .await?;
    let (hello_loads, bp_loads) = servers.loads(&token, &latest, &run_dir.path);
    let bp = compare_pages(&bp_loads, latest).await?;

    let warm_up = if config.smoke {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let load_before = crate::machine::load_average();
    let mut measured = Vec::new();
    for (phase, loads) in [("hello", &hello_loads), ("bp-monitor", &bp_loads)] {
        eprintln!(
            "{phase}: {} targets × {} round(s) of {:.1} s, {} connections…",
            loads.len(),
            config.rounds,
            config.round.as_secs_f64(),
            config.connections
        );
        measured.extend(measure(loads, config, warm_up).await?);
    }
    let load_average = (load_before, crate::machine::load_average());
    let commands = servers.commands.clone();
    servers.stop().await;

    Ok(Results {
        config: config.clone(),
        patients,
        ratios: ratios(&measured),
        measured,
        servers: commands,
        wasmtime: match wasmtime {
            Ok(binary) => Ok(command_output(&binary, &["--version"])?),
            Err(reason) => Err(reason),
        },
        runtime_wasmtime: locked_version(root, "wasmtime").unwrap_or_else(|| "unknown".to_owned()),
        bp,
        load_average,
    })
}

/// Instance slots per install in the runtime servers (see [`MIN_INSTANCE_SLOTS`]).
fn instance_slots(connections: usize) -> usize {
    MIN_INSTANCE_SLOTS.max(connections * 2)
}

/// The stated ratios, from what was measured.
fn ratios(measured: &[Measured]) -> Vec<Ratio> {
    let find = |id| measured.iter().find(|m| m.id == id);
    let ratio = |numerator, denominator, target| {
        let both = find(numerator).zip(find(denominator));
        Ratio {
            numerator,
            denominator,
            target,
            rate: both.map(|(n, d)| n.rate() / d.rate()),
            cpu: both.map(|(n, d)| {
                d.server_cpu_per_request().as_secs_f64()
                    / n.server_cpu_per_request()
                        .as_secs_f64()
                        .max(f64::MIN_POSITIVE)
            }),
        }
    };
    vec![
        ratio(TargetId::HelloFresh, TargetId::WasmtimeServe, 1.5),
        ratio(TargetId::HelloReuse, TargetId::WasmtimeServe, 4.0),
        ratio(TargetId::BpMonitor, TargetId::BpNative, 0.5),
    ]
}

/// Fetches the bp-monitor page from both servers: each must show the latest reading, and
/// whether the native page is the app's byte for byte is recorded.
async fn compare_pages(loads: &[Load<'_>], latest: String) -> anyhow::Result<BpCheck> {
    let mut pages = Vec::new();
    for load in loads {
        pages.push(checked_get(load).await?);
    }
    let [app, native] = pages.as_slice() else {
        anyhow::bail!("expected the app's and the native bp-monitor page");
    };
    Ok(BpCheck {
        latest,
        // Two numeric cells (systolic, diastolic) per table row.
        readings: String::from_utf8_lossy(native)
            .matches("<td class=\"number\">")
            .count()
            / 2,
        identical: app == native,
        page_bytes: (app.len(), native.len()),
    })
}

/// One request to `load`'s target, which must succeed with a correct body.
async fn checked_get(load: &Load<'_>) -> anyhow::Result<bytes::Bytes> {
    let (status, body) = http::get(&load.target).await?;
    anyhow::ensure!(
        status.is_success(),
        "{}: {status} {}",
        load.id.name(),
        String::from_utf8_lossy(&body)
    );
    load.target
        .check
        .verify(&body)
        .with_context(|| load.id.name())?;
    Ok(body)
}

/// What the servers are started from.
struct ServerSetup<'a> {
    root: &'a Path,
    run_dir: &'a Path,
    /// The prepared database; each runtime server gets a copy.
    seed_db: &'a Path,
    issuer_pem: &'a Path,
    hello: &'a healthcloud_guestbuild::Built,
    bp_monitor: &'a healthcloud_guestbuild::Built,
    wasmtime: Option<&'a PathBuf>,
    slots: usize,
}

/// Every server of a run.
struct Servers {
    fresh: Server,
    reuse: Server,
    native: Server,
    bp_native: Server,
    wasmtime: Option<Server>,
    commands: Vec<ServerCommand>,
}

impl Servers {
    async fn start(setup: &ServerSetup<'_>) -> anyhow::Result<Servers> {
        let exe = std::env::current_exe()?;
        let mut commands = Vec::new();
        let mut start =
            async |mode: ServerMode, apps: &[&healthcloud_guestbuild::Built], serves| {
                let args = server_args(setup, mode, apps)?;
                commands.push(ServerCommand {
                    serves,
                    command: format!("healthcloud-bench {}", shorten_all(&args, setup)),
                });
                Server::start(mode.name(), &exe, &args, Ready::Stdout).await
            };
        let (hello, bp_monitor) = (setup.hello, setup.bp_monitor);
        let fresh = start(
            ServerMode::Fresh,
            &[hello, bp_monitor],
            "hello and bp-monitor, runtime, fresh instances",
        )
        .await?;
        let reuse = start(
            ServerMode::Reuse,
            &[hello],
            "hello, runtime, instance reuse",
        )
        .await?;
        let native = start(ServerMode::Native, &[], "hello, native axum handler").await?;
        let bp_native = start(
            ServerMode::BpNative,
            &[bp_monitor],
            "bp-monitor page, native handler",
        )
        .await?;
        let wasmtime = match setup.wasmtime {
            Some(binary) => {
                let mut args = vec!["serve".to_owned(), "--addr".into(), "127.0.0.1:0".into()];
                args.extend(WASMTIME_SERVE_FLAGS.iter().map(|flag| (*flag).to_owned()));
                args.push(hello.wasm.display().to_string());
                commands.push(ServerCommand {
                    serves: "hello, wasmtime serve",
                    command: format!(
                        "{} {}",
                        shorten(&binary.display().to_string(), setup),
                        shorten_all(&args, setup)
                    ),
                });
                Some(Server::start("wasmtime serve", binary, &args, Ready::WasmtimeStderr).await?)
            }
            None => None,
        };
        Ok(Servers {
            fresh,
            reuse,
            native,
            bp_native,
            wasmtime,
            commands,
        })
    }

    /// The hello targets and the bp-monitor targets, each in measuring order.
    fn loads(&self, token: &str, latest: &str, run_dir: &Path) -> (Vec<Load<'_>>, Vec<Load<'_>>) {
        let load = |id, server, path, check: &BodyCheck, db: Option<&str>| {
            Load::new(
                id,
                server,
                path,
                token,
                check.clone(),
                db.map(|db| run_dir.join(db)),
            )
        };
        let hello = BodyCheck::Equals(HELLO_TEXT.to_owned());
        let mut hello_loads = vec![
            load(TargetId::HelloFresh, &self.fresh, HELLO_PATH, &hello, None),
            load(TargetId::HelloReuse, &self.reuse, HELLO_PATH, &hello, None),
        ];
        if let Some(wasmtime) = &self.wasmtime {
            hello_loads.push(load(
                TargetId::WasmtimeServe,
                wasmtime,
                HELLO_PATH,
                &hello,
                None,
            ));
        }
        hello_loads.push(load(
            TargetId::HelloNative,
            &self.native,
            HELLO_PATH,
            &hello,
            None,
        ));
        let latest = BodyCheck::Contains(latest.to_owned());
        let bp_loads = vec![
            load(
                TargetId::BpMonitor,
                &self.fresh,
                BP_PATH,
                &latest,
                Some("fresh.db"),
            ),
            load(
                TargetId::BpNative,
                &self.bp_native,
                BP_PATH,
                &latest,
                Some("bp-native.db"),
            ),
        ];
        (hello_loads, bp_loads)
    }

    async fn stop(self) {
        for server in [self.fresh, self.reuse, self.native, self.bp_native]
            .into_iter()
            .chain(self.wasmtime)
        {
            server.stop().await;
        }
    }
}

/// The command line of one of this binary's servers; a runtime server's database is a copy
/// of the prepared one, made here.
fn server_args(
    setup: &ServerSetup<'_>,
    mode: ServerMode,
    apps: &[&healthcloud_guestbuild::Built],
) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = ["compare", "--serve", mode.name(), "--addr", "127.0.0.1:0"]
        .map(str::to_owned)
        .to_vec();
    if mode == ServerMode::Native {
        return Ok(args);
    }
    let db = setup.run_dir.join(format!("{}.db", mode.name()));
    copy_database(setup.seed_db, &db)?;
    args.extend([
        "--db".into(),
        db.display().to_string(),
        "--issuer-pem".into(),
        setup.issuer_pem.display().to_string(),
        "--cache-dir".into(),
        setup.run_dir.join("code-cache").display().to_string(),
        "--max-instances".into(),
        setup.slots.to_string(),
    ]);
    for app in apps {
        args.extend([
            "--app".into(),
            format!("{}={}", app.package_dir.display(), app.wasm.display()),
        ]);
    }
    Ok(args)
}

/// One target under load: its server, its request, and the server's database when it
/// writes audit records.
struct Load<'a> {
    id: TargetId,
    server: &'a Server,
    target: http::Target,
    db: Option<PathBuf>,
}

impl<'a> Load<'a> {
    fn new(
        id: TargetId,
        server: &'a Server,
        path: &str,
        token: &str,
        check: BodyCheck,
        db: Option<PathBuf>,
    ) -> Load<'a> {
        Load {
            id,
            server,
            target: http::Target {
                addr: server.addr,
                path: path.to_owned(),
                bearer: Some(token.to_owned()),
                check,
            },
            db,
        }
    }
}

/// Checks each target once, warms each up, then runs `config.rounds` rounds of every target
/// in turn.
async fn measure(
    targets: &[Load<'_>],
    config: &Config,
    warm_up: Duration,
) -> anyhow::Result<Vec<Measured>> {
    for load in targets {
        checked_get(load).await?;
        http::load(&load.target, config.connections, warm_up)
            .await
            .with_context(|| format!("warming up {}", load.id.name()))?;
    }
    let mut audits_before = Vec::new();
    for load in targets {
        audits_before.push(match &load.db {
            Some(db) => Some(audit_count(db).await?),
            None => None,
        });
    }
    let mut results: Vec<Measured> = targets
        .iter()
        .map(|load| Measured {
            id: load.id,
            requests: 0,
            elapsed: Duration::ZERO,
            round_rates: Vec::new(),
            latency: Latency::default(),
            server_cpu: Duration::ZERO,
            client_cpu: Duration::ZERO,
            audits_per_request: None,
        })
        .collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for round in 0..config.rounds {
        for (i, load) in targets.iter().enumerate() {
            let server_before = load.server.cpu()?;
            let client_before = Usage::now();
            let measured = http::load(&load.target, config.connections, config.round)
                .await
                .with_context(|| format!("round {} of {}", round + 1, load.id.name()))?;
            let client = client_before.since();
            let server = load.server.cpu()?.saturating_sub(server_before);
            let result = &mut results[i];
            result.requests += measured.requests;
            result.elapsed += measured.elapsed;
            result
                .round_rates
                .push(per_second(measured.requests, measured.elapsed));
            result.server_cpu += server;
            result.client_cpu += client.user + client.system;
            samples[i].extend(measured.latencies);
            eprintln!(
                "  round {}: {:<50} {:>8.0} req/s",
                round + 1,
                load.id.name(),
                per_second(measured.requests, measured.elapsed)
            );
        }
    }
    for (i, load) in targets.iter().enumerate() {
        results[i].latency = Latency::of(&samples[i]);
        if let (Some(db), Some(before)) = (&load.db, audits_before[i]) {
            let written = audit_count(db).await? - before;
            results[i].audits_per_request =
                Some(written as f64 / results[i].requests.max(1) as f64);
        }
    }
    Ok(results)
}

/// The `wasmtime` binary, installed into `target/bench-tools` if missing (not with `smoke`:
/// then `Err` says why it is skipped).
fn wasmtime_binary(root: &Path, smoke: bool) -> anyhow::Result<Result<PathBuf, String>> {
    let tools = root.join("target/bench-tools");
    let binary = tools.join("bin/wasmtime");
    if binary.exists() {
        return Ok(Ok(binary));
    }
    let install =
        format!("cargo install --locked wasmtime-cli@{WASMTIME_VERSION} --root target/bench-tools");
    if smoke {
        let reason = format!("not installed (`{install}` installs it)");
        eprintln!("wasmtime serve skipped: {reason}");
        return Ok(Err(reason));
    }
    eprintln!(
        "installing wasmtime-cli {WASMTIME_VERSION} for the comparison with `wasmtime serve`: \
         `{install}` (once; 8 minutes on a quiet 2-core machine, longer when it is busy)…"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "install",
            "--locked",
            &format!("wasmtime-cli@{WASMTIME_VERSION}"),
            "--root",
        ])
        .arg(&tools)
        .status()
        .context("cannot run cargo install")?;
    anyhow::ensure!(
        status.success() && binary.exists(),
        "installing wasmtime-cli failed ({status}); run `{install}` by hand to see why"
    );
    Ok(Ok(binary))
}

/// Generates `patients` synthetic patients into a new database at `db`, plus one patient with
/// [`BP_READINGS`] blood pressures over the last 89 days, imported as one transaction Bundle.
/// Returns the latest reading as the bp-monitor page shows it.
async fn prepare_data(db: &Path, patients: usize) -> anyhow::Result<String> {
    let store = EmbeddedStore::new(
        healthcloud_integration::open_database(&format!("sqlite://{}", db.display())).await?,
    );
    load_synthetic(
        &store,
        SynthOptions {
            patients,
            seed: 7,
            today: crate::SYNTH_TODAY.parse()?,
        },
        &|_| {},
    )
    .await?;
    let (bundle, latest) = blood_pressure_bundle(chrono::Utc::now());
    let mut importer = Importer::new(&store);
    importer.add(bundle).await?;
    importer.finish().await?;
    let pool = store.database().pool();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    pool.close().await;
    Ok(latest)
}

/// A transaction Bundle: the patient and [`BP_READINGS`] blood-pressure panels, newest half
/// an hour before `now`, evenly spread over 89 days (inside the app's 90-day window).
fn blood_pressure_bundle(now: chrono::DateTime<chrono::Utc>) -> (Value, String) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(500);
    let newest = now - chrono::TimeDelta::minutes(30);
    let step = chrono::TimeDelta::days(89) / i32::try_from(BP_READINGS).expect("small");
    let mut entries = vec![json!({
        "fullUrl": format!("Patient/{BP_PATIENT}"),
        "resource": {
            "resourceType": "Patient",
            "id": BP_PATIENT,
            "name": [{"use": "official", "family": "Testperson", "given": ["Benchmark"]}],
            "gender": "female",
            "birthDate": "1956-03-14"
        },
        "request": {"method": "PUT", "url": format!("Patient/{BP_PATIENT}")}
    })];
    let mut latest = String::new();
    for i in 0..BP_READINGS {
        let when = newest - step * i32::try_from(i).expect("small");
        let effective = when.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let systolic: u16 = rng.gen_range(112..=168);
        let diastolic: u16 = rng.gen_range(68..=104).min(systolic - 30);
        if i == 0 {
            latest = format!(
                "Latest: <strong>{systolic}/{diastolic} mmHg</strong> on {}",
                &effective[..10]
            );
        }
        let quantity = |value: u16| json!({"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"});
        entries.push(json!({
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                    "display": "Vital Signs"
                }]}],
                "code": {"coding": [{
                    "system": "http://loinc.org",
                    "code": "85354-9",
                    "display": "Blood pressure panel with all children optional"
                }]},
                "subject": {"reference": format!("Patient/{BP_PATIENT}")},
                "effectiveDateTime": effective,
                "component": [
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                        "valueQuantity": quantity(systolic)
                    },
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                        "valueQuantity": quantity(diastolic)
                    }
                ]
            },
            "request": {"method": "POST", "url": "Observation"}
        }));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    (bundle, latest)
}

/// Copies a closed, checkpointed SQLite database, so each server writes its own.
fn copy_database(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// AuditEvents in the database at `db` (a server's, read while it runs: SQLite's WAL lets
/// another process read).
async fn audit_count(db: &Path) -> anyhow::Result<i64> {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE resource_type = 'AuditEvent'")
            .fetch_one(&mut connection)
            .await?;
    connection.close().await?;
    Ok(count)
}

/// `program args…`'s standard output, trimmed.
fn command_output(program: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {}: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The version of `package` in the workspace's Cargo.lock.
fn locked_version(root: &Path, package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok()?;
    let mut lines = lock.lines();
    let name = format!("name = \"{package}\"");
    lines.find(|line| *line == name)?;
    lines
        .next()?
        .strip_prefix("version = \"")?
        .strip_suffix('"')
        .map(str::to_owned)
}

/// `arg` with the repository root and the run directory abbreviated, for the report.
fn shorten(arg: &str, setup: &ServerSetup<'_>) -> String {
    arg.replace(&format!("{}/", setup.run_dir.display()), "$RUN/")
        .replace(&format!("{}/", setup.root.display()), "")
}

fn shorten_all(args: &[String], setup: &ServerSetup<'_>) -> String {
    args.iter()
        .map(|arg| shorten(arg, setup))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a server process of this benchmark serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerMode {
    /// The runtime's router, a fresh instance per request.
    Fresh,
    /// The runtime's router, instances reused within a launch context.
    Reuse,
    /// A native axum handler answering hello's text.
    Native,
    /// A native handler for the bp-monitor page.
    BpNative,
}

impl ServerMode {
    fn name(self) -> &'static str {
        match self {
            ServerMode::Fresh => "fresh",
            ServerMode::Reuse => "reuse",
            ServerMode::Native => "native",
            ServerMode::BpNative => "bp-native",
        }
    }
}

/// The hidden options of `compare` with which the benchmark starts its own servers.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Serve instead of measuring (the benchmark starts its servers this way).
    #[arg(long, hide = true, value_enum)]
    pub serve: Option<ServerMode>,
    /// Where to listen; the bound address is printed as `listening on ADDR`.
    #[arg(long, hide = true, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// The server's SQLite database.
    #[arg(long, hide = true)]
    pub db: Option<PathBuf>,
    /// The token issuer's public key (PEM).
    #[arg(long, hide = true)]
    pub issuer_pem: Option<PathBuf>,
    /// Where compiled components are cached (shared by the servers of one run).
    #[arg(long, hide = true)]
    pub cache_dir: Option<PathBuf>,
    /// Instances of one install at once.
    #[arg(long, hide = true, default_value_t = MIN_INSTANCE_SLOTS)]
    pub max_instances: usize,
    /// An app to install, as `PACKAGE_DIR=COMPONENT.wasm` (repeatable).
    #[arg(long = "app", hide = true)]
    pub apps: Vec<String>,
}

/// Runs one of the benchmark's servers until it is killed.
pub async fn serve(mode: ServerMode, args: &ServerArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let router = match mode {
        ServerMode::Native => Router::new().route(HELLO_PATH, get(|| async { HELLO_TEXT })),
        ServerMode::Fresh | ServerMode::Reuse => {
            let (runtime, _) = server_runtime(args, mode == ServerMode::Reuse).await?;
            runtime.router()
        }
        ServerMode::BpNative => {
            let (runtime, service) = server_runtime(args, false).await?;
            // The install is used only for what the runtime would put in the access context:
            // the app's identity and the region's grant.
            let install = runtime
                .installed(REGION, BP_APP)
                .with_context(|| format!("--app must install {BP_APP}"))?;
            Router::new()
                .route(BP_PATH, get(bp_native))
                .with_state(Arc::new(BpNative {
                    service,
                    verifier: read_verifier(args)?,
                    install,
                }))
        }
    };
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

fn read_verifier(args: &ServerArgs) -> anyhow::Result<TokenVerifier> {
    let path = args
        .issuer_pem
        .as_deref()
        .context("--issuer-pem is required")?;
    TokenVerifier::from_public_pem(ISSUER, &std::fs::read(path)?)
}

/// A runtime over the server's database, with `--app`s installed in [`REGION`], everything
/// they request granted.
async fn server_runtime(args: &ServerArgs, reuse: bool) -> anyhow::Result<(Runtime, FhirService)> {
    let db = args.db.as_deref().context("--db is required")?;
    let database =
        healthcloud_integration::open_database(&format!("sqlite://{}", db.display())).await?;
    let store = EmbeddedStore::new(database.clone());
    let service = FhirService::new(store, PageLimits::default());
    let runtime = Runtime::new(RuntimeConfig {
        service: service.clone(),
        database,
        verifier: read_verifier(args)?,
        public_url: crate::BENCH_URL.into(),
        limits: Limits {
            reuse_instances: reuse,
            concurrent_instances: args.max_instances,
            ..Limits::default()
        },
        cache_dir: args.cache_dir.clone(),
    })
    .await?;
    for app in &args.apps {
        let (dir, wasm) = app
            .split_once('=')
            .with_context(|| format!("--app {app}: expected PACKAGE_DIR=COMPONENT.wasm"))?;
        let manifest = healthcloud_package::manifest::Manifest::parse(&std::fs::read_to_string(
            Path::new(dir).join("healthcloud.toml"),
        )?)?;
        let grant = manifest.capabilities();
        runtime.install(REGION, manifest, &std::fs::read(wasm)?, "bench-key", grant)?;
    }
    Ok((runtime, service))
}

/// The native bp-monitor page's state.
struct BpNative {
    service: FhirService,
    verifier: TokenVerifier,
    install: Arc<Install>,
}

/// The bp-monitor page (clinician view), natively: the runtime's token and region checks,
/// then the app's FHIR calls through the same service under the access context the runtime
/// builds for the app's host calls, then the app's page.
async fn bp_native(State(state): State<Arc<BpNative>>, headers: HeaderMap) -> Response {
    match bp_page(&state, &headers).await {
        Ok(page) => Html(page).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn bp_page(state: &BpNative, headers: &HeaderMap) -> Result<String, FhirError> {
    let principal = state.verifier.verify(bearer_token(headers)?)?;
    let identity = &state.install.identity;
    if principal.claims.region.as_deref() != Some(identity.region.as_str()) {
        return Err(FhirError::Forbidden(format!(
            "this install belongs to region {}",
            identity.region
        )));
    }
    if principal.claims.role != Role::Clinician {
        return Err(FhirError::Forbidden(
            "the native page is the clinician's".into(),
        ));
    }
    let context = AccessContext {
        principal,
        app: Some(AppIdentity::clone(identity)),
        grant: Some(state.install.grant.patient_scopes()),
        purpose: None,
    };
    let patient_id = context
        .patient()
        .ok_or_else(|| FhirError::BadRequest("a patient must be selected".into()))?
        .to_owned();
    let trend = load_trend(&state.service, &context).await?;
    let patient = state.service.read(&context, "Patient", &patient_id).await?;
    let patient: Patient = serde_json::from_str(&patient.content)
        .map_err(|e| FhirError::Internal(anyhow::anyhow!("Patient: {e}")))?;
    Ok(view::clinician_page(
        patient.display_name().as_deref(),
        &trend,
        TREND_DAYS,
    ))
}

/// As in the app: how many days back the trend goes, the most readings collected, the newest
/// panels before the window looked through (for the latest reading and each place's newest).
const TREND_DAYS: i64 = 90;
const MAX_READINGS: usize = 1000;
const EARLIER_LOOKBACK: u32 = 100;
/// The runtime's per-call page size (`Limits::search_results`), which caps the app's
/// `_count=100`.
const PAGE_SIZE: u32 = 100;

/// The app's `load_trend`, with its searches as the runtime turns them into `FhirService`
/// calls: the same parameters in the same order, `_count` capped and the cursor as
/// `_offset`.
async fn load_trend(
    service: &FhirService,
    context: &AccessContext,
) -> Result<view::Trend, FhirError> {
    let since = Date::today().add_days(-TREND_DAYS);
    let mut params = blood_pressure_search();
    params.push(("date".into(), format!("ge{since}")));
    let mut observations = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset
        && observations.len() < MAX_READINGS
    {
        let (mut page, next) = search_page(service, context, &params, PAGE_SIZE, at).await?;
        page.truncate(MAX_READINGS - observations.len());
        observations.append(&mut page);
        offset = next;
    }
    let readings: Vec<reading::Reading> = observations
        .iter()
        .filter_map(reading::Reading::from_observation)
        .collect();
    let mut before = blood_pressure_search();
    before.push(("date".into(), format!("lt{since}")));
    let earlier: Vec<reading::Reading> =
        search_page(service, context, &before, EARLIER_LOOKBACK, 0)
            .await?
            .0
            .iter()
            .filter_map(reading::Reading::from_observation)
            .collect();
    Ok(view::Trend::new(readings, &earlier))
}

fn blood_pressure_search() -> Vec<(String, String)> {
    vec![
        ("code".into(), "http://loinc.org|85354-9".into()),
        ("_sort".into(), "-date".into()),
    ]
}

/// One page of an Observation search, decoded as the app decodes it, and the next offset.
async fn search_page(
    service: &FhirService,
    context: &AccessContext,
    params: &[(String, String)],
    count: u32,
    offset: usize,
) -> Result<(Vec<Observation>, Option<usize>), FhirError> {
    let mut pairs = params.to_vec();
    pairs.push(("_count".into(), count.to_string()));
    pairs.push(("_offset".into(), offset.to_string()));
    let (_, page) = service
        .search_params(context, "Observation", &pairs)
        .await?;
    let returned = page.resources.len();
    let next = (offset + returned < page.total && returned > 0).then_some(offset + returned);
    let observations = page
        .resources
        .iter()
        .map(|resource| serde_json::from_str(&resource.content))
        .collect::<Result<_, _>>()
        .map_err(|e| FhirError::Internal(anyhow::anyhow!("Observation: {e}")))?;
    Ok((observations, next))
}

/// The results as a text table.
pub fn table(results: &Results) -> String {
    let mut text = format!(
        "{:<48} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9}\n",
        "over HTTP, loopback", "req/s", "p50", "p99", "server CPU", "client CPU", "requests"
    );
    for m in &results.measured {
        text.push_str(&format!(
            "{:<48} {:>9.0} {:>9} {:>9} {:>11} {:>11} {:>9}\n",
            m.id.name(),
            m.rate(),
            ms(m.latency.p50),
            ms(m.latency.p99),
            us(m.server_cpu_per_request()),
            us(m.client_cpu_per_request()),
            thousands(m.requests as u64)
        ));
    }
    text.push_str(
        "(CPU columns: per request; client = the load generator. Ratios: requests/s, target, \
         met; the CPU/request ratio is the denominator's server CPU per request ÷ the \
         numerator's, above 1 when the numerator is cheaper)\n\n",
    );
    for ratio in &results.ratios {
        text.push_str(&format!(
            "{:<58} {:>6}  target ≥ {:<4} {:<8} CPU/request ratio {}\n",
            ratio_name(ratio),
            fixed(ratio.rate, 2),
            ratio.target,
            met(ratio.met()),
            fixed(ratio.cpu, 2),
        ));
    }
    if let Err(reason) = &results.wasmtime {
        text.push_str(&format!("wasmtime serve: {reason}\n"));
    }
    text.push_str(&format!(
        "load average {} before, {} after\n",
        results.load_average.0, results.load_average.1
    ));
    text.push_str(&format!(
        "bp-monitor: both pages show \"{}\" ({} readings in the window); native page identical to the app's: {}\n",
        strip_tags(&results.bp.latest),
        results.bp.readings,
        if results.bp.identical { "yes" } else { "no" }
    ));
    text
}

/// The "Requests over HTTP" section of RESULTS.md.
pub fn markdown(results: &Results) -> String {
    let config = &results.config;
    let mut md = String::from("## Requests over HTTP\n\n");
    md.push_str(&format!(
        "```sh\ncargo run --release -p healthcloud-bench -- compare --connections {} --round-secs {} --rounds {}{}\n```\n\n",
        config.connections,
        config.round.as_secs_f64(),
        config.rounds,
        if config.smoke { " --smoke" } else { "" },
    ));
    md.push_str("Servers, each its own process (`$RUN` is the run's temporary directory):\n\n");
    for server in &results.servers {
        md.push_str(&format!("- {}: `{}`\n", server.serves, server.command));
    }
    md.push_str(&format!(
        "\nVersions: {}; the runtime embeds the `wasmtime` crate {}.\n\n",
        match &results.wasmtime {
            Ok(version) => format!("`wasmtime --version`: {version}"),
            Err(reason) => format!("`wasmtime serve` not measured: {reason}"),
        },
        results.runtime_wasmtime
    ));
    md.push_str(
        "| target | requests/s | p50 | p99 | server CPU / request | load generator CPU / request | audit records / request | requests | requests/s by round |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for m in &results.measured {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.id.name(),
            thousands(m.rate().round() as u64),
            ms(m.latency.p50),
            ms(m.latency.p99),
            us(m.server_cpu_per_request()),
            us(m.client_cpu_per_request()),
            m.audits_per_request
                .map_or_else(|| "–".to_owned(), |a| format!("{a:.1}")),
            thousands(m.requests as u64),
            m.round_rates
                .iter()
                .map(|r| thousands(r.round() as u64))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    md.push_str(
        "\n| ratio (requests/s) | measured | target | met | same in server CPU / request |\n\
         |---|---:|---:|---|---:|\n",
    );
    for ratio in &results.ratios {
        md.push_str(&format!(
            "| {} | {} | ≥ {} | {} | {} |\n",
            ratio_name(ratio),
            fixed(ratio.rate, 2),
            ratio.target,
            met(ratio.met()),
            fixed(ratio.cpu, 2),
        ));
    }
    let bp = &results.bp;
    md.push_str(&format!(
        "\nThe bp-monitor page is a clinician's view of a patient with {BP_READINGS} blood pressures \
         ({} in the 90-day window, so the app pages through {} searches of 100, then reads the Patient); \
         both answers show \"{}\", and the native page is {}.\n\n",
        bp.readings,
        bp.readings.div_ceil(100),
        strip_tags(&bp.latest),
        if bp.identical {
            format!("byte for byte the app's ({} bytes)", bp.page_bytes.0)
        } else {
            format!(
                "not identical to the app's ({} bytes vs {} bytes)",
                bp.page_bytes.1, bp.page_bytes.0
            )
        }
    ));
    md.push_str(&format!(
        "How it was measured: each server runs in its own process on loopback over a SQLite store of \
         {} synthetic patients (each runtime server with its own copy); the load generator in the \
         benchmark process keeps {} HTTP/1.1 keep-alive connections busy (hyper client, a new request \
         as soon as the previous answer is read) for {:.1} s per round after a warm-up, with the \
         targets in alternating rounds ({} each) so drift in the shared machine's load hits all \
         alike. Latency is each request's time from sending it to reading its whole body; server CPU is \
         the server process's utime + stime from /proc/<pid>/stat over its rounds divided by its \
         requests. Every response's status is checked (any non-200 fails the run) and every 50th body \
         of each connection. The runtime servers use the default limits except `concurrent_instances` \
         ({}), raised above the connection count; the bearer token (clinician, region claim, patient) \
         is verified on every runtime request. The servers run without `RUST_BACKTRACE` / \
         `RUST_LIB_BACKTRACE` (with them, wasmtime captures a backtrace on every store drop). The load generator shares the {} cores with the server, \
         so requests/s is a whole-machine figure; CPU per request is the server's own cost. Load \
         average (1/5/15 min) {} when measuring started, {} when it ended.\n",
        results.patients,
        config.connections,
        config.round.as_secs_f64(),
        if config.rounds == 1 {
            "1 round".to_owned()
        } else {
            format!("{} rounds", config.rounds)
        },
        instance_slots(config.connections),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        results.load_average.0,
        results.load_average.1,
    ));
    md
}

fn ratio_name(ratio: &Ratio) -> String {
    format!(
        "{} ÷ {}",
        short_name(ratio.numerator),
        short_name(ratio.denominator)
    )
}

fn short_name(id: TargetId) -> &'static str {
    match id {
        TargetId::HelloFresh => "hello fresh",
        TargetId::HelloReuse => "hello reuse",
        TargetId::WasmtimeServe => "wasmtime serve",
        TargetId::HelloNative => "native hello",
        TargetId::BpMonitor => "bp-monitor",
        TargetId::BpNative => "native bp handler",
    }
}

fn met(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "no",
        None => "n/a",
    }
}

fn fixed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// CPU time per request: microseconds below a millisecond (`412 µs`), else `29.4 ms`.
fn us(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn strip_tags(html: &str) -> String {
    html.replace("<strong>", "").replace("</strong>", "")
}
