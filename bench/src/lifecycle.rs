//! The `lifecycle` benchmark: what it costs to install an app in a region, to restart a node
//! with installs, and to keep 1,000 installs resident.
//!
//! Everything goes through the product's own paths, on embedded SQLite in a fresh directory:
//! this process builds the example apps, opens an app store (`healthcloud_store::service::Store`)
//! on its own database, serves it on a loopback port, registers a publisher and publishes the
//! apps signed with its key. Runtime nodes are child processes of this binary (a hidden mode
//! of the `lifecycle` command), each with its own database, compile cache and component
//! directory, following the store over HTTP as `healthcloud serve runtime` does
//! (`Runtime::serve_regions`), and installing through the region admin operations
//! (`RegionAdminService::install`: download, signature and digest checks, validation, compile,
//! durable record). Separate processes make a restart a real restart and let the memory of a
//! node be read from `/proc/<pid>/status` without the store's or the benchmark's own memory.
//!
//! 1. **install** (one node): `examples/hello` at fresh digests (cold: download and compile),
//!    then the same version into further regions (the compile cache), then every example app
//!    into a few regions; each step of an install is then timed alone.
//! 2. **restart**: new processes on that node's database and disk; the time from start to the
//!    first successful response of every install.
//! 3. **memory**: a node installing 1,000 apps across regions; RSS after installing, under
//!    concurrent requests and after them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use healthcloud_integration::FhirService;
use healthcloud_integration::import::load_synthetic;
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_package::client::{AppVersion, StoreClient};
use healthcloud_package::keys::{PublicKey, SecretKey};
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::Package;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;
use healthcloud_runtime::regions::admin::Admin;
use healthcloud_runtime::{AppEngine, Limits, RegionsConfig, Runtime, RuntimeConfig};
use healthcloud_store::service::{Store, StoreConfig, StoreLimits};
use healthcloud_synth::SynthOptions;
use http_body_util::BodyExt;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;

use crate::stats::{Latency, ms, per_second, thousands};

/// Install target: an app installs in at most this long (the ~100 KB component, cold).
const INSTALL_TARGET: Duration = Duration::from_millis(150);
/// Restart target: from start to first response, per installed app.
const RESTART_TARGET: Duration = Duration::from_millis(20);
/// Memory target: resident memory of a node idle with 1,000 installs, in bytes (MB = 10^6).
const MEMORY_TARGET: u64 = 300_000_000;
/// The app whose install is measured (the example app nearest 100 KB).
const HELLO: &str = "examples/hello";
/// The publisher of the example apps.
const PUBLISHER: &str = "examples";
/// How often the node follows the store without a push (as `healthcloud serve runtime`).
const POLL: Duration = Duration::from_secs(1);

/// How one run is configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// A fresh directory for the run's databases and files (the caller removes it).
    pub data_dir: PathBuf,
    /// Synthetic patients in each node's database (the apps read them).
    pub patients: usize,
    /// Cold installs of `hello`: each at a new digest, so nothing is cached or on disk.
    pub cold_installs: usize,
    /// Installs of the same `hello` version into further regions (compile cache warm).
    pub warm_installs: usize,
    /// Regions each example app is installed in for the restart (4 apps each).
    pub restart_regions: usize,
    /// Restarts timed (a new process each).
    pub restarts: usize,
    /// Samples of each step timed alone (the compile steps use the cold versions instead).
    pub step_samples: usize,
    /// Region installs of the memory node, the example apps in turn.
    pub memory_installs: usize,
    /// Concurrent clients of the load on the memory node.
    pub load_clients: usize,
    /// How long the load lasts.
    pub load_duration: Duration,
}

impl Config {
    /// The full run: 1,000 installs for memory, 16 for restart.
    pub fn full(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            patients: 20,
            cold_installs: 5,
            warm_installs: 20,
            restart_regions: 4,
            restarts: 3,
            step_samples: 20,
            memory_installs: 1_000,
            load_clients: 4,
            load_duration: Duration::from_secs(10),
        }
    }

    /// A quick run that proves the benchmark works (CI).
    pub fn smoke(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            patients: 5,
            cold_installs: 2,
            warm_installs: 3,
            restart_regions: 1,
            restarts: 1,
            step_samples: 3,
            memory_installs: 12,
            load_clients: 2,
            load_duration: Duration::from_secs(1),
        }
    }
}

/// Everything measured.
#[derive(Debug)]
pub struct Results {
    /// The filesystem the databases and files were on.
    pub filesystem: String,
    /// The example apps' components.
    pub components: Vec<ComponentSize>,
    /// Installs.
    pub install: Install,
    /// Restarts.
    pub restart: Restart,
    /// Memory with many installs.
    pub memory: Memory,
}

/// One example app's component.
#[derive(Debug, Clone)]
pub struct ComponentSize {
    /// `publisher/app`.
    pub app: String,
    /// The `.wasm` component as published.
    pub wasm_bytes: u64,
    /// Its compiled code in the compile cache (`.cwasm`), if found.
    pub compiled_bytes: Option<u64>,
}

/// Install figures.
#[derive(Debug)]
pub struct Install {
    /// Size of the measured component (`hello`, plus a few bytes of custom section for the
    /// cold versions).
    pub component_bytes: u64,
    /// `region_admin().install` of `hello` at a digest the node never saw: download, durable write,
    /// checks, compile, compile-cache write, record.
    pub cold: Latency,
    /// `region_admin().install` of a `hello` version compiled before but no longer loaded (its last
    /// install was removed; the first install of a version after a restart): bytes from
    /// disk, compiled code from the compile cache.
    pub cached: Latency,
    /// `region_admin().install` of a `hello` version loaded now (installed in another region): the
    /// install shares its compiled, pre-instantiated component.
    pub warm: Latency,
    /// Each example app: its first region (cold) and the next ones.
    pub by_app: Vec<AppInstall>,
    /// Steps of an install, each timed alone.
    pub steps: Vec<Step>,
    /// `region_admin().uninstall`.
    pub uninstall: Latency,
    /// Installs that answered 404 right after `region_admin().install` returned (a concurrent
    /// `sync_regions` took them out until its next run), of [`Install::installs`].
    pub lost_to_sync: usize,
    /// Installs made on the install node.
    pub installs: usize,
}

/// One example app's installs.
#[derive(Debug)]
pub struct AppInstall {
    /// `publisher/app`.
    pub app: String,
    /// The first install (compile).
    pub cold: Duration,
    /// The others (compile cache).
    pub warm: Latency,
}

/// One step of an install, timed alone with the calls the install makes.
#[derive(Debug, Clone)]
pub struct Step {
    /// What.
    pub name: String,
    /// Median.
    pub p50: Duration,
    /// Samples (0: the difference of two other steps' medians).
    pub samples: usize,
    /// Whether a cold install, a warm one, or both pay it.
    pub paid_by: &'static str,
}

impl Step {
    fn samples_text(&self) -> String {
        if self.samples == 0 {
            "difference".into()
        } else {
            self.samples.to_string()
        }
    }
}

/// Restart figures.
#[derive(Debug)]
pub struct Restart {
    /// Installs the restarted node serves.
    pub installs: usize,
    /// Distinct app versions among them.
    pub apps: usize,
    /// Each restart.
    pub runs: Vec<RestartRun>,
}

/// One restart, in a new process.
#[derive(Debug, Clone)]
pub struct RestartRun {
    /// From spawning the process to its report that every install answered (includes the
    /// process start and the bench binary's own start-up).
    pub spawn_to_all: Duration,
    /// From the node's first step (opening the database) to the last first response.
    pub start_to_all: Duration,
    /// `open_database` (pool, migrations).
    pub connect: Duration,
    /// `Runtime::new` (engine, pooling allocator, linker, runtime migrations).
    pub runtime_new: Duration,
    /// `serve_regions` (revocation feed from the store, then every install loaded).
    pub serve_regions: Duration,
    /// The first request of each install.
    pub first_request: Latency,
    /// When each install first answered, since the node's start: `region app`.
    pub first_responses: Vec<(String, Duration)>,
}

impl RestartRun {
    /// Start to the last first response, divided by the installs.
    pub fn per_install(&self, installs: usize) -> Duration {
        self.start_to_all / installs.max(1) as u32
    }

    /// `serve_regions` divided by the installs: loading one.
    pub fn load_per_install(&self, installs: usize) -> Duration {
        self.serve_regions / installs.max(1) as u32
    }
}

/// Memory figures.
#[derive(Debug)]
pub struct Memory {
    /// Region installs.
    pub installs: usize,
    /// Regions.
    pub regions: usize,
    /// Distinct apps.
    pub apps: usize,
    /// Installing them all, one after another.
    pub install_time: Duration,
    /// Each install.
    pub install_latency: Latency,
    /// Installs not served right after the last install returned: taken out by a concurrent
    /// `sync_regions` (they serve again after its next one).
    pub missing_after_install: usize,
    /// The node started, nothing installed.
    pub started: ProcMemory,
    /// Idle after installing, before any request.
    pub idle: ProcMemory,
    /// Highest VmRSS sampled (every 100 ms) under load.
    pub load_peak_rss: u64,
    /// At the end of the load.
    pub after_load: ProcMemory,
    /// Two seconds after the load.
    pub settled: ProcMemory,
    /// The load.
    pub load: Load,
}

/// Requests to the memory node.
#[derive(Debug)]
pub struct Load {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests answered 200.
    pub requests: usize,
    /// How long.
    pub duration: Duration,
    /// Each request.
    pub latency: Latency,
}

/// A process's memory from `/proc/<pid>/status` and `/proc/<pid>/maps`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcMemory {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the highest resident so far.
    pub hwm: u64,
    /// `RssAnon`: resident anonymous memory (heap, compiled code copies, instance memory).
    pub anon: u64,
    /// `RssFile`: resident file-backed pages (the binary, mapped files).
    pub file: u64,
    /// `VmSize`: address space reserved (the pooling allocator reserves its slots).
    pub virtual_size: u64,
    /// Resident executable anonymous memory (`/proc/<pid>/smaps`): the compiled wasm code.
    pub code: u64,
    /// Mappings in `/proc/<pid>/smaps`.
    pub mappings: usize,
}

impl ProcMemory {
    fn of(pid: u32) -> anyhow::Result<ProcMemory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let kib = |key: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
                .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
            Ok(line.trim().trim_end_matches("kB").trim().parse::<u64>()? * 1024)
        };
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        // A mapping's header is `start-end perms offset dev inode [path]`, then `Key: value`
        // lines; executable mappings without a path are code wasmtime published.
        let (mut mappings, mut code, mut in_code) = (0, 0, false);
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .first()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
            {
                mappings += 1;
                in_code =
                    fields.get(1).is_some_and(|perms| perms.contains('x')) && fields.len() == 5;
            } else if in_code && fields.first() == Some(&"Rss:") {
                code += fields
                    .get(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024;
            }
        }
        Ok(ProcMemory {
            rss: kib("VmRSS")?,
            hwm: kib("VmHWM")?,
            anon: kib("RssAnon")?,
            file: kib("RssFile")?,
            virtual_size: kib("VmSize")?,
            code,
            mappings,
        })
    }
}

/// Runs the three measurements.
pub async fn run(config: &Config) -> anyhow::Result<Results> {
    let filesystem = crate::machine::Machine::describe(&config.data_dir).filesystem;
    eprintln!("building the example apps…");
    let apps = example_apps()?;
    let hello = apps
        .iter()
        .find(|app| app.id == HELLO)
        .context("no example app examples/hello")?;
    let store = StoreNode::start(config, &apps).await?;
    let cold_versions: Vec<String> = (0..config.cold_installs)
        .map(|k| format!("0.2.{k}"))
        .collect();
    eprintln!(
        "publishing {} versions of {HELLO} with distinct digests…",
        cold_versions.len()
    );
    let mut cold_bytes = 0;
    for (k, version) in cold_versions.iter().enumerate() {
        let bytes = with_custom_section(&hello.bytes, "healthcloud-bench", &[k as u8]);
        cold_bytes = bytes.len() as u64;
        let manifest = hello.manifest_text.replacen(
            &format!("version = \"{}\"", hello.version),
            &format!("version = \"{version}\""),
            1,
        );
        store.publish(&Manifest::parse(&manifest)?, &bytes).await?;
    }

    let node_dir = config.data_dir.join("node");
    let node = NodeSpec {
        db: config.data_dir.join("node.db"),
        cache_dir: node_dir.join("compiled"),
        components_dir: node_dir.join("components"),
        store_url: store.url.clone(),
        feed_key: store.store.feed_key().to_base64(),
        patients: config.patients,
    };
    let app_specs: Vec<AppSpec> = apps.iter().map(AppSpec::of).collect();
    eprintln!(
        "installing on a node ({} cold, {} warm)…",
        config.cold_installs, config.warm_installs
    );
    let mut child = ChildProcess::spawn(&ChildSpec::Install(InstallSpec {
        node: node.clone(),
        plain_store_url: store.plain_url.clone(),
        scratch: config.data_dir.join("scratch"),
        cold_versions,
        apps: app_specs.clone(),
        restart_regions: config.restart_regions,
        warm_installs: config.warm_installs,
        step_samples: config.step_samples,
    }))?;
    let Event::Installed(installed) = child.event().await? else {
        anyhow::bail!("the install node answered out of turn");
    };
    child.finish().await?;

    let restart_installs: Vec<(String, String)> = (0..config.restart_regions.max(1))
        .flat_map(|r| {
            app_specs
                .iter()
                .map(move |app| (format!("r{r}"), app.id.clone()))
        })
        .collect();
    let mut runs = Vec::new();
    for run in 0..config.restarts {
        eprintln!(
            "restart {}/{} with {} installs…",
            run + 1,
            config.restarts,
            restart_installs.len()
        );
        let spawned = Instant::now();
        let mut child = ChildProcess::spawn(&ChildSpec::Restart(RestartSpec {
            node: node.clone(),
            installs: restart_installs.clone(),
            patient: installed.patient.clone(),
        }))?;
        let Event::Restarted(restarted) = child.event().await? else {
            anyhow::bail!("the restarted node answered out of turn");
        };
        let spawn_to_all = spawned.elapsed();
        child.finish().await?;
        runs.push(RestartRun {
            spawn_to_all,
            start_to_all: seconds(restarted.start_to_all),
            connect: seconds(restarted.connect),
            runtime_new: seconds(restarted.runtime_new),
            serve_regions: seconds(restarted.serve_regions),
            first_request: latency(&restarted.requests),
            first_responses: restart_installs
                .iter()
                .map(|(region, app)| format!("{region} {app}"))
                .zip(restarted.first_responses.iter().map(|s| seconds(*s)))
                .collect(),
        });
    }

    let memory = measure_memory(config, &node, &app_specs).await?;
    drop(store);

    let compiled = compiled_sizes(&node.cache_dir);
    let components = apps
        .iter()
        .map(|app| ComponentSize {
            app: app.id.clone(),
            wasm_bytes: app.bytes.len() as u64,
            compiled_bytes: compiled
                .iter()
                .find(|(digest, _)| *digest == app.digest)
                .map(|(_, size)| *size),
        })
        .collect();
    let by_app = app_specs
        .iter()
        .zip(&installed.by_app)
        .map(|(app, samples)| AppInstall {
            app: app.id.clone(),
            cold: seconds(samples[0]),
            warm: latency(&samples[1..]),
        })
        .collect();
    Ok(Results {
        filesystem,
        components,
        install: Install {
            component_bytes: cold_bytes,
            cold: latency(&installed.cold),
            cached: latency(&installed.cached),
            warm: latency(&installed.warm),
            by_app,
            steps: installed
                .steps
                .into_iter()
                .map(|s| Step {
                    p50: latency(&s.samples).p50,
                    samples: if s.derived { 0 } else { s.samples.len() },
                    paid_by: s.paid_by.label(),
                    name: s.name,
                })
                .collect(),
            uninstall: latency(&installed.uninstall),
            lost_to_sync: installed.lost,
            installs: 2 * config.cold_installs
                + config.warm_installs
                + app_specs.len() * config.restart_regions.max(1),
        },
        restart: Restart {
            installs: restart_installs.len(),
            apps: app_specs.len(),
            runs,
        },
        memory,
    })
}

/// Spawns the memory node and reads its memory at each phase.
async fn measure_memory(
    config: &Config,
    node: &NodeSpec,
    apps: &[AppSpec],
) -> anyhow::Result<Memory> {
    eprintln!(
        "memory: {} installs on a new node, then {} clients for {:?}…",
        config.memory_installs, config.load_clients, config.load_duration
    );
    // Its own database, the first node's compile cache and component bytes: the first
    // install of each version does not compile again (that cost is measured above).
    let mut child = ChildProcess::spawn(&ChildSpec::Memory(MemorySpec {
        node: NodeSpec {
            db: config.data_dir.join("memory.db"),
            ..node.clone()
        },
        apps: apps.to_vec(),
        installs: config.memory_installs,
        clients: config.load_clients,
        load_seconds: config.load_duration.as_secs_f64(),
    }))?;
    let pid = child.pid;
    let Event::Started = child.event().await? else {
        anyhow::bail!("the memory node answered out of turn");
    };
    let started = ProcMemory::of(pid)?;
    child.proceed().await?;
    let Event::MemoryInstalled {
        seconds: install_seconds,
        latencies,
        missing,
    } = child.event().await?
    else {
        anyhow::bail!("the memory node answered out of turn");
    };
    let idle = ProcMemory::of(pid)?;
    child.proceed().await?;
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(now) = ProcMemory::of(pid) {
                    peak.fetch_max(now.rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let loaded = child.event().await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    let Event::Loaded {
        requests,
        seconds: load_seconds,
        latencies: load_latencies,
    } = loaded?
    else {
        anyhow::bail!("the memory node answered out of turn");
    };
    let after_load = ProcMemory::of(pid)?;
    child.proceed().await?;
    let Event::Settled = child.event().await? else {
        anyhow::bail!("the memory node answered out of turn");
    };
    let settled = ProcMemory::of(pid)?;
    child.finish().await?;
    Ok(Memory {
        installs: config.memory_installs,
        regions: config.memory_installs.div_ceil(apps.len()),
        apps: apps.len(),
        install_time: seconds(install_seconds),
        install_latency: latency(&latencies),
        missing_after_install: missing,
        started,
        idle,
        load_peak_rss: peak.load(Ordering::Relaxed).max(after_load.rss),
        after_load,
        settled,
        load: Load {
            clients: config.load_clients,
            requests,
            duration: seconds(load_seconds),
            latency: latency(&load_latencies),
        },
    })
}

/// One example app as built from source.
struct ExampleApp {
    /// `publisher/app`.
    id: String,
    version: String,
    manifest_text: String,
    manifest: Manifest,
    bytes: Vec<u8>,
    digest: String,
}

fn example_apps() -> anyhow::Result<Vec<ExampleApp>> {
    let built = crate::build_example_apps()?;
    let mut apps = Vec::new();
    for app in built {
        let manifest_text = std::fs::read_to_string(app.package_dir.join("healthcloud.toml"))?;
        let manifest = Manifest::parse(&manifest_text)?;
        let bytes = std::fs::read(&app.wasm)?;
        apps.push(ExampleApp {
            id: manifest.full_id(),
            version: manifest.app.version.to_string(),
            digest: healthcloud_runtime::install::digest(&bytes),
            manifest_text,
            manifest,
            bytes,
        });
    }
    // hello first: the restart and memory nodes serve the apps in this order.
    apps.sort_by_key(|app| (app.id != HELLO, app.id.clone()));
    Ok(apps)
}

/// `component` with a custom section appended: the same code at another digest. A component
/// may carry custom sections anywhere, and the runtime ignores them.
fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut bytes = component.to_vec();
    bytes.push(0);
    leb128(content.len(), &mut bytes);
    bytes.extend_from_slice(&content);
    bytes
}

/// `(digest, bytes)` of each compiled component in a compile cache directory.
fn compiled_sizes(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (digest, _) = name.strip_suffix(".cwasm")?.split_once('-')?;
            Some((digest.to_owned(), entry.metadata().ok()?.len()))
        })
        .collect()
}

/// The app store, served on a loopback port by this process.
struct StoreNode {
    store: Store,
    /// Served as `healthcloud` serves (`server::serve`: `TCP_NODELAY` on each accepted
    /// socket).
    url: String,
    /// The same store on sockets as accepted (Nagle's algorithm on), for comparison.
    plain_url: String,
    serving: Vec<tokio::task::JoinHandle<()>>,
    issuer: TokenIssuer,
    key: SecretKey,
}

impl Drop for StoreNode {
    fn drop(&mut self) {
        for serving in &self.serving {
            serving.abort();
        }
    }
}

impl StoreNode {
    /// Opens the store on its own database, serves it, registers the example apps' publisher
    /// and publishes them.
    async fn start(config: &Config, apps: &[ExampleApp]) -> anyhow::Result<StoreNode> {
        let db = connect(&config.data_dir.join("store.db")).await?;
        let issuer =
            TokenIssuer::generate("healthcloud-bench").with_audience(crate::bench_audience());
        // The store's publish check, on an engine of its own without a compile cache: the
        // node's installs must find nothing compiled.
        let checker = Arc::new(AppEngine::new(&small_pool(), None)?);
        let (store, _) = Store::open(StoreConfig {
            db,
            dir: config.data_dir.join("store"),
            verifier: issuer.verifier(),
            check: Arc::new(move |manifest, bytes| {
                checker.validate(manifest, bytes).map_err(|e| e.to_string())
            }),
            limits: StoreLimits::default(),
        })
        .await?;
        let (url, as_served) = serve_store(&store, true).await?;
        let (plain_url, plain) = serve_store(&store, false).await?;
        let node = StoreNode {
            store,
            url,
            plain_url,
            serving: vec![as_served, plain],
            issuer,
            key: SecretKey::generate(),
        };
        node.client(Role::StoreAdmin, "bench-store-admin")?
            .approve_publisher(PUBLISHER, "Examples", &node.key.public().to_pem())
            .await
            .context("registering the publisher")?;
        eprintln!(
            "publishing the example apps through the store at {}…",
            node.url
        );
        for app in apps {
            node.publish(&app.manifest, &app.bytes).await?;
        }
        Ok(node)
    }

    fn client(&self, role: Role, sub: &str) -> anyhow::Result<StoreClient> {
        let token = self
            .issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(sub.into()),
                    ..TokenRequest::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
        StoreClient::new(&self.url, Some(token))
    }

    /// Signs `component` for `manifest` and publishes it through the store's HTTP API.
    async fn publish(&self, manifest: &Manifest, component: &[u8]) -> anyhow::Result<()> {
        let signed = Package::new(manifest, component).sign(&self.key);
        let size = signed.package.component.size;
        self.client(Role::Publisher, PUBLISHER)?
            .publish(&signed, reqwest::Body::from(component.to_vec()), size)
            .await
            .with_context(|| {
                format!("publishing {} {}", manifest.full_id(), manifest.app.version)
            })?;
        Ok(())
    }
}

/// Serves `store` on a loopback port, as `healthcloud` does (`server::serve`: with
/// `TCP_NODELAY` on each accepted socket) or on the sockets as accepted.
async fn serve_store(
    store: &Store,
    nodelay: bool,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::serve::ListenerExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let listener = listener.tap_io(move |tcp| {
        if nodelay && let Err(error) = tcp.set_nodelay(true) {
            eprintln!("cannot set TCP_NODELAY: {error}");
        }
    });
    let router = store.router();
    let serving = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("the benchmark's store stopped: {error}");
        }
    });
    Ok((url, serving))
}

/// Limits for an engine that only compiles and validates: a pool of one instance.
fn small_pool() -> Limits {
    Limits {
        pool_instances: 1,
        ..Limits::default()
    }
}

async fn connect(path: &Path) -> anyhow::Result<Database> {
    healthcloud_integration::open_database(&format!("sqlite://{}", path.display())).await
}

// ---- Child processes: the runtime nodes. ----

/// What a node child process is told to do: the JSON of `lifecycle --child`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum ChildSpec {
    Install(InstallSpec),
    Restart(RestartSpec),
    Memory(MemorySpec),
}

/// Where a node keeps its state and which store it follows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeSpec {
    db: PathBuf,
    cache_dir: PathBuf,
    components_dir: PathBuf,
    store_url: String,
    /// The store's feed key (base64), pinned as `healthcloud serve runtime --store-key` does.
    feed_key: String,
    /// Synthetic patients loaded into a new database.
    patients: usize,
}

/// One published app version and the grant it is installed with (all it requests).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppSpec {
    id: String,
    version: String,
    grant: Vec<String>,
}

impl AppSpec {
    fn of(app: &ExampleApp) -> AppSpec {
        AppSpec {
            id: app.id.clone(),
            version: app.version.clone(),
            grant: app
                .manifest
                .capabilities()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    fn versioned(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct InstallSpec {
    node: NodeSpec,
    /// The store on sockets as accepted (without `TCP_NODELAY`), for comparison.
    plain_store_url: String,
    /// A directory for the steps timed alone.
    scratch: PathBuf,
    /// Versions of hello at distinct digests.
    cold_versions: Vec<String>,
    apps: Vec<AppSpec>,
    restart_regions: usize,
    warm_installs: usize,
    step_samples: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct RestartSpec {
    node: NodeSpec,
    /// `(region, app)` expected to serve.
    installs: Vec<(String, String)>,
    patient: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemorySpec {
    node: NodeSpec,
    apps: Vec<AppSpec>,
    installs: usize,
    clients: usize,
    load_seconds: f64,
}

/// What a node child reports, one JSON line each on its stdout. Durations in seconds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Installed(InstallReport),
    Restarted(RestartReport),
    Started,
    MemoryInstalled {
        seconds: f64,
        latencies: Vec<f64>,
        /// Installs not served right after the last install returned.
        missing: usize,
    },
    Loaded {
        requests: usize,
        seconds: f64,
        latencies: Vec<f64>,
    },
    Settled,
}

#[derive(Debug, Serialize, Deserialize)]
struct InstallReport {
    patient: String,
    cold: Vec<f64>,
    cached: Vec<f64>,
    warm: Vec<f64>,
    /// Per app: the first region, then the others.
    by_app: Vec<Vec<f64>>,
    uninstall: Vec<f64>,
    steps: Vec<StepReport>,
    /// Installs that did not serve right after their install returned.
    lost: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct StepReport {
    name: String,
    paid_by: PaidBy,
    samples: Vec<f64>,
    /// The one sample is the difference of two other steps' medians.
    derived: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PaidBy {
    /// A version new to the node.
    Cold,
    /// A version compiled before but not loaded now.
    Cached,
    /// Cached, and a version loaded now (shared).
    NotCold,
    /// Every install.
    All,
    /// Not part of an install (a comparison).
    Neither,
}

impl PaidBy {
    fn label(self) -> &'static str {
        match self {
            PaidBy::Cold => "cold",
            PaidBy::Cached => "cached",
            PaidBy::NotCold => "cached, warm",
            PaidBy::All => "all",
            PaidBy::Neither => "–",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RestartReport {
    connect: f64,
    runtime_new: f64,
    serve_regions: f64,
    start_to_all: f64,
    /// Since the start, per install in the spec's order.
    first_responses: Vec<f64>,
    /// The first request of each install.
    requests: Vec<f64>,
}

/// A node child process of this binary, its reports read line by line.
struct ChildProcess {
    process: tokio::process::Child,
    pid: u32,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl ChildProcess {
    fn spawn(spec: &ChildSpec) -> anyhow::Result<ChildProcess> {
        let exe = std::env::current_exe().context("cannot find the benchmark binary")?;
        let mut process = tokio::process::Command::new(exe)
            .arg("lifecycle")
            .arg("--child")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a node process")?;
        let pid = process.id().context("the node process already exited")?;
        let stdin = process.stdin.take().context("no stdin")?;
        let stdout = process.stdout.take().context("no stdout")?;
        Ok(ChildProcess {
            process,
            pid,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
        })
    }

    /// The next report.
    async fn event(&mut self) -> anyhow::Result<Event> {
        match self.lines.next_line().await? {
            Some(line) => serde_json::from_str(&line)
                .with_context(|| format!("a node process reported {line:?}")),
            None => {
                let status = self.process.wait().await?;
                anyhow::bail!("the node process ended early ({status}); see its errors above")
            }
        }
    }

    /// Lets the node go on to its next phase.
    async fn proceed(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"go\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Closes its stdin and waits for a successful exit.
    async fn finish(self) -> anyhow::Result<()> {
        let ChildProcess {
            mut process, stdin, ..
        } = self;
        drop(stdin);
        let status = process.wait().await?;
        anyhow::ensure!(status.success(), "the node process failed ({status})");
        Ok(())
    }
}

/// Runs a node child process: `lifecycle --child <JSON>`.
pub async fn child(spec: &str) -> anyhow::Result<()> {
    match serde_json::from_str(spec).context("the --child specification")? {
        ChildSpec::Install(spec) => install_node(spec).await,
        ChildSpec::Restart(spec) => restart_node(spec).await,
        ChildSpec::Memory(spec) => memory_node(spec).await,
    }
}

fn report(event: &Event) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(event)?)?;
    stdout.flush()?;
    Ok(())
}

/// Waits for the parent's go-ahead (or for it to close stdin).
async fn wait_for_parent(
    stdin: &mut tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
) -> anyhow::Result<()> {
    stdin.next_line().await?;
    Ok(())
}

/// A runtime node following the store.
struct Node {
    runtime: Runtime,
    router: Router,
    issuer: TokenIssuer,
}

impl Node {
    /// A new node database with synthetic patients.
    async fn create_database(spec: &NodeSpec) -> anyhow::Result<Database> {
        let db = connect(&spec.db).await?;
        load_synthetic(
            &EmbeddedStore::new(db.clone()),
            SynthOptions {
                patients: spec.patients,
                seed: 7,
                today: crate::SYNTH_TODAY.parse()?,
            },
            &|_| {},
        )
        .await?;
        Ok(db)
    }

    async fn runtime(
        db: &Database,
        spec: &NodeSpec,
        issuer: &TokenIssuer,
    ) -> anyhow::Result<Runtime> {
        let service = FhirService::new(EmbeddedStore::new(db.clone()), PageLimits::default());
        Runtime::new(RuntimeConfig {
            service,
            database: db.clone(),
            verifier: issuer.verifier(),
            public_url: crate::BENCH_URL.into(),
            limits: Limits::default(),
            cache_dir: Some(spec.cache_dir.clone()),
        })
        .await
    }

    async fn serve_regions(runtime: &Runtime, spec: &NodeSpec) -> anyhow::Result<()> {
        let feed_key = PublicKey::from_base64(&spec.feed_key)
            .map_err(|e| anyhow::anyhow!("the store's feed key: {e}"))?;
        runtime
            .serve_regions(RegionsConfig {
                store: StoreClient::new(&spec.store_url, None)?,
                feed_key: Some(feed_key),
                components_dir: spec.components_dir.clone(),
                poll: POLL,
                push: None,
            })
            .await
    }

    /// A node on a new database.
    async fn start(spec: &NodeSpec) -> anyhow::Result<Node> {
        let db = Node::create_database(spec).await?;
        let issuer =
            TokenIssuer::generate("healthcloud-bench").with_audience(crate::bench_audience());
        let runtime = Node::runtime(&db, spec, &issuer).await?;
        Node::serve_regions(&runtime, spec).await?;
        Ok(Node {
            router: runtime.router(),
            runtime,
            issuer,
        })
    }

    /// Checks that a just installed app serves: 0 if it answers 200 at once, 1 if it first
    /// answers 404 (not installed on this node) and then 200 within 10 s. A `sync_regions`
    /// running while `region_admin().install` commits can read the rows before the new one and list the
    /// installs after it, and so take the new install out until its next sync.
    async fn lost(&self, region: &str, app: &str, token: &str) -> anyhow::Result<usize> {
        let started = Instant::now();
        let mut lost = 0;
        loop {
            let (status, body) = get_app(&self.router, region, app, token).await?;
            match status {
                StatusCode::OK => return Ok(lost),
                StatusCode::NOT_FOUND if started.elapsed() < Duration::from_secs(10) => lost = 1,
                _ => anyhow::bail!(
                    "{app} in region {region} answered {status} after its install: {body}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn uninstall(&self, region: &str, app: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.runtime
            .region_admin()
            .uninstall(&Admin::system("healthcloud-bench", region), app)
            .await
            .with_context(|| format!("uninstalling {app} from region {region}"))?;
        Ok(started.elapsed())
    }

    async fn install(&self, region: &str, app: &str, grant: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.runtime
            .region_admin()
            .install(&Admin::system("healthcloud-bench", region), app, grant)
            .await
            .with_context(|| format!("installing {app} in region {region}"))?;
        Ok(started.elapsed())
    }
}

/// A clinician of `region` who opened an app for `patient`.
fn clinician(issuer: &TokenIssuer, region: &str, patient: &str) -> anyhow::Result<String> {
    issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                sub: Some("bench-clinician".into()),
                patient: Some(patient.into()),
                region: Some(region.into()),
                ttl_secs: Some(3_600),
                ..TokenRequest::default()
            },
        )
        .map_err(anyhow::Error::msg)
}

/// `GET /apps/{region}/{app}/`; the status and the body.
async fn get_app(
    router: &Router,
    region: &str,
    app: &str,
    token: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let request = Request::get(format!("/apps/{region}/{app}/"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Fails unless `app` answers 200 in `region`.
async fn expect_ok(router: &Router, region: &str, app: &str, token: &str) -> anyhow::Result<()> {
    let (status, body) = get_app(router, region, app, token).await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "{app} in region {region} answered {status}: {body}"
    );
    Ok(())
}

/// A patient with blood pressures (the apps then have data to show).
async fn a_patient(db: &Database) -> anyhow::Result<String> {
    let params = vec![
        ("code".to_owned(), "http://loinc.org|85354-9".to_owned()),
        ("_count".to_owned(), "1".to_owned()),
    ];
    let query = SearchQuery::parse("Observation", &params, PageLimits::default())?;
    let page = EmbeddedStore::new(db.clone()).search(&query).await?;
    page.resources
        .first()
        .and_then(|r| r.patient_id.clone())
        .context("the synthetic data has no blood pressures")
}

/// The install node: installs timed, then each step of an install alone.
async fn install_node(spec: InstallSpec) -> anyhow::Result<()> {
    let node = Node::start(&spec.node).await?;
    let patient = a_patient(&connect(&spec.node.db).await?).await?;
    let token = |region: &str| clinician(&node.issuer, region, &patient);
    // Installs that answered 404 right after `region_admin().install` returned, until the follower's
    // next sync loaded them again.
    let mut lost = 0;

    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let mut uninstall = Vec::new();
    for (k, version) in spec.cold_versions.iter().enumerate() {
        let app = format!("{HELLO}@{version}");
        let region = format!("cold{k}");
        cold.push(node.install(&region, &app, &[]).await?);
        lost += node.lost(&region, HELLO, &token(&region)?).await?;
        // Its only install removed, the version is no longer loaded: installed again, it is
        // read from disk and loaded from the compile cache, as after a restart.
        uninstall.push(node.uninstall(&region, HELLO).await?);
        let region = format!("cached{k}");
        cached.push(node.install(&region, &app, &[]).await?);
        lost += node.lost(&region, HELLO, &token(&region)?).await?;
    }
    let mut by_app = Vec::new();
    for app in &spec.apps {
        let mut samples = Vec::new();
        for r in 0..spec.restart_regions.max(1) {
            let region = format!("r{r}");
            samples.push(node.install(&region, &app.versioned(), &app.grant).await?);
            lost += node.lost(&region, &app.id, &token(&region)?).await?;
        }
        by_app.push(samples);
    }
    let hello = spec
        .apps
        .iter()
        .find(|app| app.id == HELLO)
        .context("no hello")?;
    let mut warm = Vec::new();
    for w in 0..spec.warm_installs {
        let region = format!("warm{w}");
        warm.push(node.install(&region, &hello.versioned(), &[]).await?);
        lost += node.lost(&region, HELLO, &token(&region)?).await?;
    }
    // Only the example apps in the restart regions stay installed.
    let regions = (0..spec.cold_versions.len())
        .map(|k| format!("cached{k}"))
        .chain((0..spec.warm_installs).map(|w| format!("warm{w}")));
    for region in regions {
        uninstall.push(node.uninstall(&region, HELLO).await?);
    }
    let steps = install_steps(&spec, &node).await?;
    report(&Event::Installed(InstallReport {
        patient,
        cold: in_seconds(&cold),
        cached: in_seconds(&cached),
        warm: in_seconds(&warm),
        by_app: by_app.iter().map(|s| in_seconds(s)).collect(),
        uninstall: in_seconds(&uninstall),
        steps,
        lost,
    }))
}

/// Each step of an install timed alone, with the calls the install makes.
async fn install_steps(spec: &InstallSpec, node: &Node) -> anyhow::Result<Vec<StepReport>> {
    let n = spec.step_samples.max(1);
    let client = StoreClient::new(&spec.node.store_url, None)?;
    let hello = spec
        .apps
        .iter()
        .find(|app| app.id == HELLO)
        .context("no hello")?;
    let hello: AppVersion = hello.versioned().parse().map_err(anyhow::Error::msg)?;
    let mut steps = Steps::default();

    let mut samples = Vec::new();
    let mut published = None;
    for _ in 0..n {
        let started = Instant::now();
        published = Some(client.version(&hello).await?);
        samples.push(started.elapsed());
    }
    steps.timed(
        "ask the store for the version (HTTP GET, JSON)",
        PaidBy::All,
        &samples,
    );
    let signed = published.context("no sample")?.signed;

    let samples = timed(n, || signed.verify().map(drop))?;
    steps.timed(
        "verify the package signature (ed25519)",
        PaidBy::All,
        &samples,
    );

    let mut samples = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        bytes = client
            .component(&hello, signed.package.component.size)
            .await?;
        samples.push(started.elapsed());
    }
    steps.timed(
        "download the component (HTTP GET, sockets as `healthcloud` serves them: TCP_NODELAY)",
        PaidBy::Cold,
        &samples,
    );
    let plain = StoreClient::new(&spec.plain_store_url, None)?;
    let mut samples = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        plain
            .component(&hello, signed.package.component.size)
            .await?;
        samples.push(started.elapsed());
    }
    steps.timed(
        "(for comparison: the same download, sockets as accepted, without TCP_NODELAY)",
        PaidBy::Neither,
        &samples,
    );

    let samples = timed(n, || signed.check_component(&bytes))?;
    steps.timed(
        "check the component's size and sha256",
        PaidBy::All,
        &samples,
    );

    let dir = spec.scratch.join("components");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("component");
    let samples = timed(n, || write_durably(&dir, &path, &bytes))?;
    steps.timed(
        "keep the bytes on disk (write, fsync, rename, fsync dir)",
        PaidBy::Cold,
        &samples,
    );
    let mut samples = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        tokio::fs::read(&path).await?;
        samples.push(started.elapsed());
    }
    steps.timed("read the bytes from disk", PaidBy::NotCold, &samples);

    // The cold versions are new to these engines: each compiles once.
    let mut versions = Vec::new();
    for version in &spec.cold_versions {
        let version: AppVersion = format!("{HELLO}@{version}")
            .parse()
            .map_err(anyhow::Error::msg)?;
        let published = client.version(&version).await?;
        let bytes = client
            .component(&version, published.signed.package.component.size)
            .await?;
        versions.push((published.signed.package.manifest(), bytes));
    }
    let plain = AppEngine::new(&small_pool(), None)?;
    let compile = each(&versions, |(_, bytes)| plain.compile(bytes).map(drop))?;
    let cached = AppEngine::new(&small_pool(), Some(&spec.scratch.join("compiled")))?;
    let compile_and_write = each(&versions, |(_, bytes)| cached.compile(bytes).map(drop))?;
    let load = each(&versions, |(_, bytes)| cached.compile(bytes).map(drop))?;
    let validate = each(&versions, |(manifest, bytes)| {
        cached
            .validate(manifest, bytes)
            .map_err(anyhow::Error::from)
    })?;
    steps.timed("compile (Cranelift)", PaidBy::Cold, &compile);
    steps.difference(
        "write the compile cache (serialize, MAC, fsync): compile and write − compile",
        PaidBy::Cold,
        &compile_and_write,
        &compile,
    );
    steps.timed(
        "load from the compile cache (read, MAC, deserialize)",
        PaidBy::Cached,
        &load,
    );
    steps.difference(
        "check imports, pre-instantiate: validate (cache hit) − cache load",
        PaidBy::All,
        &validate,
        &load,
    );

    // One durable admin write (the install's INSERT, change counter and audit record, in
    // one transaction, fsynced), then the install's view: a grant change does the same.
    let app = spec
        .apps
        .iter()
        .filter(|app| !app.grant.is_empty())
        .max_by_key(|app| app.grant.len())
        .context("no app requests a capability")?;
    let capability = app.grant.last().context("no grant")?;
    let admin = Admin::system("healthcloud-bench", "r0");
    let mut samples = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        node.runtime
            .region_admin()
            .set_grant(&admin, &app.id, capability, i % 2 == 1)
            .await?;
        samples.push(started.elapsed());
    }
    if n % 2 == 1 {
        node.runtime
            .region_admin()
            .set_grant(&admin, &app.id, capability, true)
            .await?;
    }
    steps.timed(
        "record: one audited admin write transaction + the install's view",
        PaidBy::All,
        &samples,
    );
    Ok(steps.0)
}

/// The steps of an install as they are measured.
#[derive(Default)]
struct Steps(Vec<StepReport>);

impl Steps {
    fn timed(&mut self, name: &str, paid_by: PaidBy, samples: &[Duration]) {
        self.0.push(StepReport {
            name: name.to_owned(),
            paid_by,
            samples: in_seconds(samples),
            derived: false,
        });
    }

    /// A step that cannot be timed alone: the median of `with` less that of `without`.
    fn difference(&mut self, name: &str, paid_by: PaidBy, with: &[Duration], without: &[Duration]) {
        let difference = median(with).saturating_sub(median(without));
        self.0.push(StepReport {
            name: name.to_owned(),
            paid_by,
            samples: in_seconds(&[difference]),
            derived: true,
        });
    }
}

fn median(samples: &[Duration]) -> Duration {
    Latency::of(samples).p50
}

/// `n` timings of `work`.
fn timed<E: Into<anyhow::Error>>(
    n: usize,
    mut work: impl FnMut() -> Result<(), E>,
) -> anyhow::Result<Vec<Duration>> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            work().map_err(Into::into)?;
            Ok(started.elapsed())
        })
        .collect()
}

/// A timing of `work` on each item.
fn each<T>(
    items: &[T],
    mut work: impl FnMut(&T) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    items
        .iter()
        .map(|item| {
            let started = Instant::now();
            work(item)?;
            Ok(started.elapsed())
        })
        .collect()
}

/// What the runtime does with downloaded bytes: a temporary file, fsync, rename, fsync of
/// the directory.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(".component.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A restart: a new runtime on the install node's database and disk, timed from its first
/// step to the first response of every install.
async fn restart_node(spec: RestartSpec) -> anyhow::Result<()> {
    // The clients' tokens are not the node's work: minted before the clock starts.
    let issuer = TokenIssuer::generate("healthcloud-bench").with_audience(crate::bench_audience());
    let mut tokens = std::collections::HashMap::new();
    for (region, _) in &spec.installs {
        if !tokens.contains_key(region) {
            tokens.insert(region.clone(), clinician(&issuer, region, &spec.patient)?);
        }
    }
    let started = Instant::now();
    let db = connect(&spec.node.db).await?;
    let connect_time = started.elapsed();
    let runtime = Node::runtime(&db, &spec.node, &issuer).await?;
    let runtime_new = started.elapsed() - connect_time;
    Node::serve_regions(&runtime, &spec.node).await?;
    let serve_regions = started.elapsed() - connect_time - runtime_new;
    let router = runtime.router();
    let mut first_responses = Vec::new();
    let mut requests = Vec::new();
    for (region, app) in &spec.installs {
        let token = &tokens[region];
        let asked = Instant::now();
        loop {
            let (status, body) = get_app(&router, region, app, token).await?;
            if status == StatusCode::OK {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "{app} in region {region} still answers {status} a minute after the restart: {body}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        requests.push(asked.elapsed());
        first_responses.push(started.elapsed());
    }
    let start_to_all = started.elapsed();
    anyhow::ensure!(
        runtime.installs().len() == spec.installs.len(),
        "the restarted node serves {} installs, not {}",
        runtime.installs().len(),
        spec.installs.len()
    );
    report(&Event::Restarted(RestartReport {
        connect: connect_time.as_secs_f64(),
        runtime_new: runtime_new.as_secs_f64(),
        serve_regions: serve_regions.as_secs_f64(),
        start_to_all: start_to_all.as_secs_f64(),
        first_responses: in_seconds(&first_responses),
        requests: in_seconds(&requests),
    }))
}

/// The memory node: started, then installs, then load, then idle; the parent reads its memory
/// between the phases.
async fn memory_node(spec: MemorySpec) -> anyhow::Result<()> {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let node = Node::start(&spec.node).await?;
    let patient = a_patient(&connect(&spec.node.db).await?).await?;
    report(&Event::Started)?;
    wait_for_parent(&mut stdin).await?;

    let installs: Vec<(String, &AppSpec)> = (0..spec.installs)
        .map(|i| {
            (
                format!("m{:04}", i / spec.apps.len()),
                &spec.apps[i % spec.apps.len()],
            )
        })
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for (i, (region, app)) in installs.iter().enumerate() {
        latencies.push(node.install(region, &app.versioned(), &app.grant).await?);
        if (i + 1) % 100 == 0 {
            eprintln!("  {} installs", i + 1);
        }
    }
    let install_time = started.elapsed();
    // Installs a concurrent sync took out (see `Node::lost`) come back at its next sync.
    let missing = spec.installs.saturating_sub(node.runtime.installs().len());
    while node.runtime.installs().len() != spec.installs {
        anyhow::ensure!(
            started.elapsed() < install_time + Duration::from_secs(30),
            "{} installs serve, not {}",
            node.runtime.installs().len(),
            spec.installs
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    report(&Event::MemoryInstalled {
        seconds: install_time.as_secs_f64(),
        latencies: in_seconds(&latencies),
        missing,
    })?;
    wait_for_parent(&mut stdin).await?;

    let mut tokens = std::collections::HashMap::new();
    for (region, _) in &installs {
        if !tokens.contains_key(region) {
            tokens.insert(region.clone(), clinician(&node.issuer, region, &patient)?);
        }
    }
    let targets: Arc<Vec<(String, String, String)>> = Arc::new(
        installs
            .iter()
            .map(|(region, app)| (region.clone(), app.id.clone(), tokens[region].clone()))
            .collect(),
    );
    let load = Duration::from_secs_f64(spec.load_seconds);
    let started = Instant::now();
    let clients: Vec<_> = (0..spec.clients)
        .map(|client| {
            let (router, targets) = (node.router.clone(), targets.clone());
            tokio::spawn(async move {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(client as u64);
                let mut latencies = Vec::new();
                while started.elapsed() < load {
                    let (region, app, token) = &targets[rng.gen_range(0..targets.len())];
                    let asked = Instant::now();
                    expect_ok(&router, region, app, token).await?;
                    latencies.push(asked.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await??);
    }
    let load_time = started.elapsed();
    report(&Event::Loaded {
        requests: latencies.len(),
        seconds: load_time.as_secs_f64(),
        latencies: in_seconds(&latencies),
    })?;
    wait_for_parent(&mut stdin).await?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    report(&Event::Settled)?;
    wait_for_parent(&mut stdin).await?;
    Ok(())
}

fn in_seconds(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(Duration::as_secs_f64).collect()
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn latency(samples: &[f64]) -> Latency {
    let samples: Vec<Duration> = samples.iter().map(|s| seconds(*s)).collect();
    Latency::of(&samples)
}

// ---- Reports. ----

/// Bytes as MB (10^6), one decimal.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Bytes as KB (10^3), one decimal.
fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1e3)
}

fn met(yes: bool) -> &'static str {
    if yes { "yes" } else { "**no**" }
}

impl Results {
    /// The restart run whose per-install time is the median.
    fn median_restart(&self) -> Option<&RestartRun> {
        let mut runs: Vec<&RestartRun> = self.restart.runs.iter().collect();
        runs.sort_by_key(|run| run.start_to_all);
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }

    /// The steps a cold (or a warm) install pays, added up.
    /// The steps an install of `kind` (`cold`, `cached`, `warm`) pays, added up.
    fn steps_paid_by(&self, kind: &str) -> Duration {
        self.install
            .steps
            .iter()
            .filter(|step| step.paid_by == "all" || step.paid_by.split(", ").any(|k| k == kind))
            .map(|step| step.p50)
            .sum()
    }

    fn steps_summary(&self) -> String {
        let install = &self.install;
        format!(
            "a cold install's steps come to {} (measured p50 {}), a cached one's to {} ({}), \
             a warm one's to {} ({})",
            ms(self.steps_paid_by("cold")),
            ms(install.cold.p50),
            ms(self.steps_paid_by("cached")),
            ms(install.cached.p50),
            ms(self.steps_paid_by("warm")),
            ms(install.warm.p50)
        )
    }

    /// Installs that did not serve right after `region_admin().install` returned.
    fn race_note(&self) -> String {
        format!(
            "Installs answering 404 right after `region_admin().install` returned (a concurrent \
             `sync_regions` listed the installs after reading the rows without the new one, \
             and took it out until its next sync): {} of {} on the install node, {} of {} on \
             the memory node.",
            self.install.lost_to_sync,
            self.install.installs,
            self.memory.missing_after_install,
            thousands(self.memory.installs as u64)
        )
    }

    fn install_met(&self) -> bool {
        self.install.cold.p50 <= INSTALL_TARGET && self.install.warm.p50 <= INSTALL_TARGET
    }

    fn restart_met(&self) -> bool {
        self.median_restart()
            .is_some_and(|run| run.per_install(self.restart.installs) <= RESTART_TARGET)
    }

    fn memory_met(&self) -> bool {
        self.memory.idle.rss <= MEMORY_TARGET
    }

    /// RSS the installs added, per install.
    fn per_install_rss(&self) -> u64 {
        let memory = &self.memory;
        memory.idle.rss.saturating_sub(memory.started.rss) / memory.installs.max(1) as u64
    }

    /// The compiled code of the memory node's installs, were each to hold its own copy.
    fn compiled_per_install(&self) -> Option<u64> {
        let sizes: Option<Vec<u64>> = self.components.iter().map(|c| c.compiled_bytes).collect();
        let sizes = sizes?;
        Some(sizes.iter().sum::<u64>() / sizes.len().max(1) as u64)
    }
}

/// The results as text tables.
pub fn table(results: &Results) -> String {
    let install = &results.install;
    let mut text = format!(
        "Install of {HELLO} ({} bytes) through RegionAdminService::install, store over loopback HTTP\n",
        thousands(install.component_bytes)
    );
    text.push_str(&format!(
        "{:<62} {:>10} {:>10} {:>8}\n",
        "", "p50", "max", "samples"
    ));
    for (name, l) in [
        (
            "cold (new digest: download, compile, record)",
            &install.cold,
        ),
        (
            "cached (compiled before, not loaded: compile cache)",
            &install.cached,
        ),
        ("warm (loaded in another region: shared)", &install.warm),
        ("uninstall", &install.uninstall),
    ] {
        text.push_str(&format!(
            "{:<62} {:>10} {:>10} {:>8}\n",
            name,
            ms(l.p50),
            ms(l.max),
            l.samples
        ));
    }
    text.push_str(&format!(
        "target ≤ {}: {}\n\n",
        ms(INSTALL_TARGET),
        met(results.install_met()).trim_matches('*')
    ));
    text.push_str(&format!(
        "{:<28} {:>12} {:>12} {:>12} {:>12}\n",
        "app", "component", "compiled", "first", "next (p50)"
    ));
    for (app, size) in install.by_app.iter().zip(&results.components) {
        text.push_str(&format!(
            "{:<28} {:>12} {:>12} {:>12} {:>12}\n",
            app.app,
            kb(size.wasm_bytes),
            size.compiled_bytes.map_or_else(|| "?".into(), kb),
            ms(app.cold),
            if app.warm.samples > 0 {
                ms(app.warm.p50)
            } else {
                "-".into()
            }
        ));
    }
    text.push_str("\nSteps of an install, each timed alone (p50)\n");
    for step in &install.steps {
        text.push_str(&format!(
            "{:<76} {:>10}  {}\n",
            step.name,
            ms(step.p50),
            step.paid_by
        ));
    }
    text.push_str(&format!("(added up, {})\n", results.steps_summary()));
    text.push_str(&format!("{}\n", results.race_note()));

    text.push_str(&format!(
        "\nRestart with {} installs ({} apps), {} run(s)\n",
        results.restart.installs,
        results.restart.apps,
        results.restart.runs.len()
    ));
    text.push_str(&format!(
        "{:>4} {:>12} {:>12} {:>11} {:>11} {:>13} {:>11} {:>11} {:>11}\n",
        "run",
        "spawn→all",
        "start→all",
        "per app",
        "connect",
        "Runtime::new",
        "serve_reg.",
        "load/app",
        "1st req p50"
    ));
    for (i, run) in results.restart.runs.iter().enumerate() {
        text.push_str(&format!(
            "{:>4} {:>12} {:>12} {:>11} {:>11} {:>13} {:>11} {:>11} {:>11}\n",
            i + 1,
            ms(run.spawn_to_all),
            ms(run.start_to_all),
            ms(run.per_install(results.restart.installs)),
            ms(run.connect),
            ms(run.runtime_new),
            ms(run.serve_regions),
            ms(run.load_per_install(results.restart.installs)),
            ms(run.first_request.p50)
        ));
    }
    if let Some(run) = results.median_restart() {
        text.push_str("first response since start (median run):");
        for (name, at) in &run.first_responses {
            text.push_str(&format!(" {name} {};", ms(*at)));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "target ≤ {} per app: {}\n",
        ms(RESTART_TARGET),
        met(results.restart_met()).trim_matches('*')
    ));

    let memory = &results.memory;
    text.push_str(&format!(
        "\nMemory of a node with {} installs ({} apps × {} regions), installed at {}/s (p50 {}, p99 {})\n",
        thousands(memory.installs as u64),
        memory.apps,
        memory.regions,
        thousands(per_second(memory.installs, memory.install_time).round() as u64),
        ms(memory.install_latency.p50),
        ms(memory.install_latency.p99)
    ));
    text.push_str(&format!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}\n",
        "", "VmRSS", "VmHWM", "RssAnon", "RssFile", "wasm code", "VmSize", "mappings"
    ));
    for (name, m) in [
        ("started, nothing installed", &memory.started),
        ("idle after installing", &memory.idle),
        ("end of the load", &memory.after_load),
        ("2 s after the load", &memory.settled),
    ] {
        text.push_str(&format!(
            "{:<36} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}\n",
            name,
            mb(m.rss),
            mb(m.hwm),
            mb(m.anon),
            mb(m.file),
            mb(m.code),
            format!("{:.0} GB", m.virtual_size as f64 / 1e9),
            m.mappings
        ));
    }
    text.push_str(&format!(
        "peak VmRSS under load: {} ({} clients, {} requests in {}, {}/s, p50 {}, p99 {})\n",
        mb(memory.load_peak_rss),
        memory.load.clients,
        thousands(memory.load.requests as u64),
        crate::stats::secs(memory.load.duration),
        thousands(per_second(memory.load.requests, memory.load.duration).round() as u64),
        ms(memory.load.latency.p50),
        ms(memory.load.latency.p99)
    ));
    text.push_str(&format!(
        "per install: {} of RSS; compiled code per app (mean of the {}): {}\n",
        kb(results.per_install_rss()),
        results.components.len(),
        results
            .compiled_per_install()
            .map_or_else(|| "?".into(), kb)
    ));
    text.push_str(&format!(
        "target ≤ {} idle: {}\n",
        mb(MEMORY_TARGET),
        met(results.memory_met()).trim_matches('*')
    ));
    text
}

/// The "Install, restart and memory" section of `RESULTS.md`.
pub fn markdown(results: &Results) -> String {
    let install = &results.install;
    let memory = &results.memory;
    let mut md = String::from("## Install, restart and memory\n\n");
    md.push_str(&format!(
        "Runtime nodes are child processes of the benchmark following an app store served by \
         the benchmark on a loopback port (`Store` + axum), each with its own embedded SQLite \
         database (WAL, `synchronous=FULL`) on {}. Installs go through \
         `RegionAdminService::install`, what `POST /admin/v1/regions/{{region}}/installs` runs.\n\n",
        results.filesystem
    ));
    md.push_str("| figure | value | target | met |\n|---|---|---|---|\n");
    md.push_str(&format!(
        "| **install**, cold (`{HELLO}`, {} bytes, new digest), p50 of {} | {} | ≤ {} | {} |\n",
        thousands(install.component_bytes),
        install.cold.samples,
        ms(install.cold.p50),
        ms(INSTALL_TARGET),
        met(install.cold.p50 <= INSTALL_TARGET)
    ));
    md.push_str(&format!(
        "| **install**, cached (compiled before, not loaded), p50 of {} | {} | ≤ {} | {} |\n",
        install.cached.samples,
        ms(install.cached.p50),
        ms(INSTALL_TARGET),
        met(install.cached.p50 <= INSTALL_TARGET)
    ));
    md.push_str(&format!(
        "| **install**, warm (loaded in another region), p50 of {} | {} | ≤ {} | {} |\n",
        install.warm.samples,
        ms(install.warm.p50),
        ms(INSTALL_TARGET),
        met(install.warm.p50 <= INSTALL_TARGET)
    ));
    if let Some(run) = results.median_restart() {
        md.push_str(&format!(
            "| **restart to first response**, per app ({} installs, median of {} restarts) | {} ({} in all; {} from spawning the process) | ≤ {} per app | {} |\n",
            results.restart.installs,
            results.restart.runs.len(),
            ms(run.per_install(results.restart.installs)),
            ms(run.start_to_all),
            ms(run.spawn_to_all),
            ms(RESTART_TARGET),
            met(results.restart_met())
        ));
    }
    md.push_str(&format!(
        "| **resident memory**, idle with {} installs | {} (VmHWM {}) | ≤ {} | {} |\n",
        thousands(memory.installs as u64),
        mb(memory.idle.rss),
        mb(memory.idle.hwm),
        mb(MEMORY_TARGET),
        met(results.memory_met())
    ));
    md.push_str(&format!(
        "| resident memory under load (peak VmRSS) | {} | | |\n",
        mb(memory.load_peak_rss)
    ));
    md.push_str(&format!(
        "| installs per second (durable, versions compiled before) | {} | | |\n\n",
        thousands(per_second(memory.installs, memory.install_time).round() as u64)
    ));

    md.push_str("### Install\n\n");
    md.push_str(&format!(
        "`region_admin().install` timed end to end: the store asked for the version (revocation, yank and \
         signature verdicts), the signature verified, the component downloaded (or read from \
         the node's disk) and checked against the signed digest, kept durably, validated \
         (imports against the manifest), compiled (or loaded from the compile cache), \
         pre-instantiated, and the install recorded with its audit record in one fsynced \
         transaction. *Cold*: `{HELLO}` republished as versions whose component carries a \
         few bytes of custom section, so each install meets a digest the node never saw \
         ({} bytes; the built `hello.wasm` is {}). *Cached*: each of those versions \
         uninstalled (nothing holds its compiled code any more) and installed into another \
         region: bytes from the node's disk, code from the compile cache, as the first \
         install of a version after a restart. *Warm*: the published `{HELLO}`, loaded in \
         other regions, installed into {} more: the install shares the loaded compiled, \
         pre-instantiated component (only this manifest's imports are checked again). Every \
         install is checked to answer 200 afterwards.\n\n",
        thousands(install.component_bytes),
        results
            .components
            .iter()
            .find(|c| c.app == HELLO)
            .map_or_else(
                || "?".into(),
                |c| format!("{} bytes", thousands(c.wasm_bytes))
            ),
        install.warm.samples
    ));
    md.push_str("| install | p50 | max | samples |\n|---|---|---|---|\n");
    for (name, l) in [
        ("cold", &install.cold),
        ("cached", &install.cached),
        ("warm", &install.warm),
        ("uninstall", &install.uninstall),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            ms(l.p50),
            ms(l.max),
            l.samples
        ));
    }
    md.push_str("\n| app | component | compiled code | first install | next installs (p50) |\n|---|---|---|---|---|\n");
    for (app, size) in install.by_app.iter().zip(&results.components) {
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            app.app,
            kb(size.wasm_bytes),
            size.compiled_bytes.map_or_else(|| "?".into(), kb),
            ms(app.cold),
            if app.warm.samples > 0 {
                ms(app.warm.p50)
            } else {
                "–".into()
            }
        ));
    }
    md.push_str(
        "\nWhere the time goes: each step timed alone on the same node with the calls an install \
         makes (p50; *paid by*: which installs pay it).\n\n\
         | step | p50 | samples | paid by |\n|---|---|---|---|\n",
    );
    for step in &install.steps {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            step.name,
            ms(step.p50),
            step.samples_text(),
            step.paid_by
        ));
    }
    md.push_str(&format!("\nAdded up, {}.\n\n", results.steps_summary()));
    md.push_str(
        "The two downloads differ by TCP: on sockets as accepted, Nagle's algorithm holds the \
         end of a response written in pieces until the client's delayed ACK (about 40 ms on \
         Linux); `healthcloud` sets `TCP_NODELAY` on every accepted socket, so it does not.\n\n",
    );
    md.push_str(&format!("{}\n", results.race_note()));

    md.push_str("\n### Restart\n\n");
    md.push_str(&format!(
        "A new process on the install node's database, compile cache and component directory, \
         serving {} installs (the {} example apps in {} region(s)): `open_database`, \
         `Runtime::new`, `serve_regions` (the store's revocation feed, then every install \
         loaded: bytes read and checked, signature verified, compiled code loaded from the \
         cache), then one request to each install until it answers 200. *start→all* is timed \
         in the process from opening the database to the last first response; *spawn→all* \
         from spawning it (process and runtime start-up included).\n\n",
        results.restart.installs,
        results.restart.apps,
        results.restart.installs / results.restart.apps.max(1)
    ));
    md.push_str("| run | spawn→all | start→all | per app | connect | `Runtime::new` | `serve_regions` | of which per install | first request (p50) |\n|---|---|---|---|---|---|---|---|---|\n");
    for (i, run) in results.restart.runs.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            ms(run.spawn_to_all),
            ms(run.start_to_all),
            ms(run.per_install(results.restart.installs)),
            ms(run.connect),
            ms(run.runtime_new),
            ms(run.serve_regions),
            ms(run.load_per_install(results.restart.installs)),
            ms(run.first_request.p50)
        ));
    }
    if let Some(run) = results.median_restart() {
        md.push_str("\nFirst response of each install since the start (median run): ");
        let list: Vec<String> = run
            .first_responses
            .iter()
            .map(|(name, at)| format!("{name} {}", ms(*at)))
            .collect();
        md.push_str(&list.join(", "));
        md.push_str(".\n");
    }

    md.push_str("\n### Memory\n\n");
    md.push_str(&format!(
        "A new node process installs {} apps ({} example apps in turn across {} regions) \
         one after another through `region_admin().install` (durable: bytes from disk, checks, \
         record; with the install node's compile cache and component bytes, so no version \
         compiles again: the first install of each loads it from the cache, the others share \
         it); \
         then {} clients send requests to installs drawn at random for {}; memory is read \
         from `/proc/<pid>/status` by the benchmark between the phases (VmRSS every 100 ms \
         under load; *wasm code*: resident executable anonymous mappings in \
         `/proc/<pid>/smaps`, the code wasmtime loaded; *VmSize* is mostly the pooling \
         allocator's address-space reservation, not memory). MB = 10^6 bytes.\n\n",
        thousands(memory.installs as u64),
        memory.apps,
        memory.regions,
        memory.load.clients,
        crate::stats::secs(memory.load.duration)
    ));
    md.push_str("| phase | VmRSS | VmHWM | RssAnon | RssFile | of which wasm code | VmSize | mappings |\n|---|---|---|---|---|---|---|---|\n");
    for (name, m) in [
        ("started, nothing installed", &memory.started),
        ("idle after installing", &memory.idle),
        ("end of the load", &memory.after_load),
        ("2 s after the load", &memory.settled),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {:.0} GB | {} |\n",
            mb(m.rss),
            mb(m.hwm),
            mb(m.anon),
            mb(m.file),
            mb(m.code),
            m.virtual_size as f64 / 1e9,
            m.mappings
        ));
    }
    md.push_str(&format!(
        "\nInstalls: {} in {} ({}/s; p50 {}, p99 {}). RSS added per install: {} (compiled \
         code per app, mean of the example apps: {}). Load: {} requests answered 200 in {} \
         ({}/s, p50 {}, p99 {}), peak VmRSS {}.\n",
        thousands(memory.installs as u64),
        crate::stats::secs(memory.install_time),
        thousands(per_second(memory.installs, memory.install_time).round() as u64),
        ms(memory.install_latency.p50),
        ms(memory.install_latency.p99),
        kb(results.per_install_rss()),
        results
            .compiled_per_install()
            .map_or_else(|| "?".into(), kb),
        thousands(memory.load.requests as u64),
        crate::stats::secs(memory.load.duration),
        thousands(per_second(memory.load.requests, memory.load.duration).round() as u64),
        ms(memory.load.latency.p50),
        ms(memory.load.latency.p99),
        mb(memory.load_peak_rss)
    ));
    md
}
