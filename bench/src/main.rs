//! # healthcloud-bench
//!
//! Benchmarks of the integration cloud, separate from the tests so they can run at full size
//! in release mode:
//!
//! ```text
//! cargo run --release -p healthcloud-bench -- fhir --patients 20000   # writes bench/RESULTS.md
//! cargo run --release -p healthcloud-bench -- fhir --smoke            # a few seconds, for CI
//! cargo run --release -p healthcloud-bench -- federation              # search over sources
//! ```
//!
//! See `bench/README.md` for what each figure means.

/// JSON-heavy work (parsing Bundles, building index rows and SQL arguments) allocates a lot;
/// mimalloc makes that markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod apps;
mod compare;
mod corpus;
mod events;
mod export;
mod federation;
mod fhir;
mod http;
mod lifecycle;
mod machine;
mod report;
mod server;
mod stats;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// "Today" for generated data: the same anchor as the demo data, so runs on different days
/// import byte-identical corpora.
const SYNTH_TODAY: &str = "2026-11-01";

/// The public URL the benchmarks' app clouds are configured with: their tokens name its
/// app cloud (`…/apps/`) and its FHIR API as their audience.
const BENCH_URL: &str = "http://bench.local";

/// The audience of every benchmark token.
fn bench_audience() -> Vec<String> {
    use healthcloud_platform::auth::{apps_audience, fhir_audience};
    vec![fhir_audience(BENCH_URL), apps_audience(BENCH_URL)]
}

#[derive(Debug, Parser)]
#[command(
    name = "healthcloud-bench",
    about = "Benchmarks of the healthcloud integration cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// FHIR Bundle import throughput and patient-compartment search latency on embedded SQLite.
    Fhir(FhirArgs),
    /// What one app request costs through the runtime, next to a native handler.
    Apps(AppsArgs),
    /// Requests over HTTP: the runtime vs `wasmtime serve` vs native handlers, server CPU
    /// per request.
    Compare(CompareArgs),
    /// Installing an app in a region, restarting a node with installs, memory of 1,000
    /// installs.
    Lifecycle(LifecycleArgs),
    /// A patient's blood-pressure search against the embedded store alone, each upstream
    /// source directly, and through healthcloud over three sources; healthcloud's CPU per
    /// federated search.
    Federation(FederationArgs),
    /// Bulk Data export throughput and peak memory of a synthetic population (not part of
    /// `all`).
    Export(export::ExportArgs),
    /// Notification latency from a write to a rest-hook subscriber's webhook (not part of
    /// `all`).
    Events(events::EventsArgs),
    /// Every benchmark above but `apps` and `federation`, one after the other, into one
    /// `bench/RESULTS.md`.
    All(AllArgs),
}

#[derive(Debug, Args)]
struct AllArgs {
    /// A quick run that only proves the benchmarks work (for CI); writes nothing unless --out
    /// is given.
    #[arg(long)]
    smoke: bool,
    /// Directory for the benchmark databases (fresh subdirectories are made and removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    /// Where to write the markdown results [default: bench/RESULTS.md; none with --smoke].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FederationArgs {
    /// Timed searches per target and concurrency level [default: 200, or 20 with --smoke].
    #[arg(long)]
    requests: Option<usize>,
    /// Connections per target in the concurrent pass (the first pass is sequential); 1 skips
    /// it.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// A quick run that only proves the benchmark works (for CI).
    #[arg(long)]
    smoke: bool,
    /// Directory for the run's databases and token files (a fresh subdirectory is made and
    /// removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    #[command(flatten)]
    node: federation::NodeArgs,
}

#[derive(Debug, Args)]
struct LifecycleArgs {
    /// A quick run that only proves the benchmark works (for CI): a few installs, seconds.
    #[arg(long)]
    smoke: bool,
    /// Directory for the run's databases and files (a fresh subdirectory is made and removed).
    /// Keep it on a real disk: on tmpfs, fsyncs cost nothing and the numbers flatter.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    /// Internal: run as one of the benchmark's runtime node processes.
    #[arg(long, hide = true)]
    child: Option<String>,
}

#[derive(Debug, Args)]
struct AppsArgs {
    /// Sequential requests per measured path [default: 2000, or 50 with --smoke].
    #[arg(long)]
    requests: Option<usize>,
    /// Synthetic patients in the store.
    #[arg(long, default_value_t = 200)]
    patients: usize,
    /// A quick run that only proves the benchmark works (for CI).
    #[arg(long)]
    smoke: bool,
    /// Directory for the benchmark database (a fresh subdirectory is made and removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of load per round of each target [default: 5, or 0.5 with --smoke].
    #[arg(long)]
    round_secs: Option<f64>,
    /// Timed rounds per target, the targets alternating [default: 3, or 1 with --smoke].
    #[arg(long)]
    rounds: Option<usize>,
    /// A quick run that only proves the benchmark works (for CI); skips `wasmtime serve`
    /// when it is not installed instead of installing it.
    #[arg(long)]
    smoke: bool,
    /// Directory for the benchmark databases (a fresh subdirectory is made and removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    #[command(flatten)]
    server: compare::ServerArgs,
}

#[derive(Debug, Args)]
struct FhirArgs {
    /// Patients to generate and import [default: 20000, or 200 with --smoke].
    #[arg(long)]
    patients: Option<usize>,
    /// A small, quick run that only proves the benchmark works (for CI). Results are printed
    /// but not written unless --out is given.
    #[arg(long)]
    smoke: bool,
    /// Seed of the synthetic data and of the choice of searched patients.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Patients with blood pressures to search [default: 500, or 50 with --smoke].
    #[arg(long)]
    search_patients: Option<usize>,
    /// Timed passes over the searched patients, per search path [default: 3, or 1 with --smoke].
    #[arg(long)]
    rounds: Option<usize>,
    /// Time budget in seconds of each measured search path; a slow store is then reported
    /// from fewer samples (the report says how many) instead of running for hours.
    #[arg(long, default_value_t = 90)]
    search_budget_secs: u64,
    /// Skip timing `load_synthetic` (the `healthcloud data generate` path).
    #[arg(long)]
    no_generate: bool,
    /// Directory for the benchmark databases (a fresh subdirectory is made and removed).
    /// Keep it on a real disk: on tmpfs, commits cost nothing and the numbers flatter.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    /// Keep the databases after the run (their path is printed).
    #[arg(long)]
    keep_data: bool,
    /// Where to write the markdown results [default: bench/RESULTS.md; none with --smoke].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Removes the run's data directory when the run ends, however it ends.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("databases kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Fhir(args) => fhir_command(args).await,
        Command::Apps(args) => apps_command(args).await,
        Command::Compare(args) => compare_command(args).await,
        Command::Lifecycle(args) => lifecycle_command(args).await,
        Command::Federation(args) => federation_command(args).await,
        Command::Export(args) => export::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::All(args) => all_command(args).await,
    }
}

async fn federation_command(args: FederationArgs) -> anyhow::Result<()> {
    if args.node.serve_node {
        return federation::serve_node(&args.node).await;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with --release for meaningful numbers");
    }
    let run_dir = RunDir {
        path: args.data_dir.join(format!(
            "healthcloud-bench-federation-{}",
            std::process::id()
        )),
        keep: false,
    };
    std::fs::create_dir_all(&run_dir.path)
        .with_context(|| format!("cannot create {}", run_dir.path.display()))?;
    let requests = args.requests.unwrap_or(if args.smoke { 20 } else { 200 });
    let config = federation::Config {
        requests,
        warm_up: (requests / 10).max(5),
        concurrency: args.concurrency,
        data_dir: run_dir.path.clone(),
    };
    let results = federation::run(&config).await?;
    println!("{}", federation::table(&results));
    Ok(())
}

async fn lifecycle_command(args: LifecycleArgs) -> anyhow::Result<()> {
    if let Some(spec) = args.child {
        return lifecycle::child(&spec).await;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with --release for meaningful numbers");
    }
    let results = lifecycle_run(args.smoke, &args.data_dir).await?;
    println!("{}", lifecycle::table(&results));
    println!("{}", lifecycle::markdown(&results));
    Ok(())
}

async fn apps_command(args: AppsArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with --release for meaningful numbers");
    }
    let run_dir = RunDir {
        path: args
            .data_dir
            .join(format!("healthcloud-bench-apps-{}", std::process::id())),
        keep: false,
    };
    std::fs::create_dir_all(&run_dir.path)
        .with_context(|| format!("cannot create {}", run_dir.path.display()))?;
    let requests = args.requests.unwrap_or(if args.smoke { 50 } else { 2_000 });
    let config = apps::Config {
        patients: args.patients,
        requests,
        data_dir: run_dir.path.clone(),
    };
    let results = apps::run(&config).await?;
    println!("{}", apps::table(&results, requests));
    Ok(())
}

/// Runs the lifecycle benchmark in a fresh directory under `data_dir`, removed afterwards.
async fn lifecycle_run(
    smoke: bool,
    data_dir: &std::path::Path,
) -> anyhow::Result<lifecycle::Results> {
    let run_dir = RunDir {
        path: data_dir.join(format!(
            "healthcloud-bench-lifecycle-{}",
            std::process::id()
        )),
        keep: false,
    };
    std::fs::create_dir_all(&run_dir.path)
        .with_context(|| format!("cannot create {}", run_dir.path.display()))?;
    let config = if smoke {
        lifecycle::Config::smoke(run_dir.path.clone())
    } else {
        lifecycle::Config::full(run_dir.path.clone())
    };
    lifecycle::run(&config).await
}

/// The comparison's settings: the defaults, or the short ones of a smoke run.
fn compare_config(
    smoke: bool,
    round_secs: Option<f64>,
    rounds: Option<usize>,
    connections: usize,
    data_dir: &std::path::Path,
) -> compare::Config {
    compare::Config {
        connections: connections.max(1),
        round: std::time::Duration::from_secs_f64(round_secs.unwrap_or(if smoke {
            0.5
        } else {
            5.0
        })),
        rounds: rounds.unwrap_or(if smoke { 1 } else { 3 }).max(1),
        smoke,
        data_dir: data_dir.to_owned(),
    }
}

async fn compare_command(args: CompareArgs) -> anyhow::Result<()> {
    if let Some(mode) = args.server.serve {
        return compare::serve(mode, &args.server).await;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with --release for meaningful numbers");
    }
    let config = compare_config(
        args.smoke,
        args.round_secs,
        args.rounds,
        args.connections,
        &args.data_dir,
    );
    let results = compare::run(&config).await?;
    println!("{}", compare::table(&results));
    println!("{}", compare::markdown(&results));
    Ok(())
}

async fn fhir_command(args: FhirArgs) -> anyhow::Result<()> {
    let (smoke, out) = (args.smoke, args.out.clone());
    let report = fhir_report(args).await?;
    println!("{}", report.text());
    write_results(smoke, out, &report.markdown())
}

/// Writes `markdown` to `out`, or to bench/RESULTS.md unless this is a smoke run.
fn write_results(smoke: bool, out: Option<PathBuf>, markdown: &str) -> anyhow::Result<()> {
    let out = out
        .or_else(|| (!smoke).then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")));
    if let Some(out) = out {
        std::fs::write(&out, markdown)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("results written to {}", out.display());
    }
    Ok(())
}

/// Every benchmark, its figures in one file.
async fn all_command(args: AllArgs) -> anyhow::Result<()> {
    let fhir = fhir_report(FhirArgs {
        patients: None,
        smoke: args.smoke,
        seed: 42,
        search_patients: None,
        rounds: None,
        search_budget_secs: 90,
        no_generate: false,
        data_dir: args.data_dir.clone(),
        keep_data: false,
        out: None,
    })
    .await?;
    println!("{}", fhir.text());
    let compared =
        compare::run(&compare_config(args.smoke, None, None, 16, &args.data_dir)).await?;
    println!("{}", compare::table(&compared));
    let lived = lifecycle_run(args.smoke, &args.data_dir).await?;
    println!("{}", lifecycle::table(&lived));
    let markdown = format!(
        "{}\n{}\n{}",
        fhir.markdown(),
        compare::markdown(&compared),
        lifecycle::markdown(&lived)
    );
    write_results(args.smoke, args.out, &markdown)
}

async fn fhir_report(args: FhirArgs) -> anyhow::Result<report::Report> {
    let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let command = format!(
        "cargo run --release -p healthcloud-bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with --release for meaningful numbers");
    }

    let run_dir = RunDir {
        path: args
            .data_dir
            .join(format!("healthcloud-bench-{}", std::process::id())),
        keep: args.keep_data,
    };
    std::fs::create_dir_all(&run_dir.path)
        .with_context(|| format!("cannot create {}", run_dir.path.display()))?;
    // Described before the run, so the load average says how busy the machine was going in
    // (the one at the end is added after the run).
    let mut machine = machine::Machine::describe(&run_dir.path);

    let config = fhir::Config {
        patients: args
            .patients
            .unwrap_or(if args.smoke { 200 } else { 20_000 }),
        seed: args.seed,
        today: SYNTH_TODAY.parse()?,
        search_patients: args
            .search_patients
            .unwrap_or(if args.smoke { 50 } else { 500 }),
        rounds: args.rounds.unwrap_or(if args.smoke { 1 } else { 3 }).max(1),
        search_budget: std::time::Duration::from_secs(args.search_budget_secs),
        generate: !args.no_generate,
        data_dir: run_dir.path.clone(),
    };
    let results = fhir::run(&config).await?;
    drop(run_dir);

    machine.load_average.1 = machine::load_average();
    Ok(report::build(date, command, &machine, &config, &results))
}

/// The repository's root directory (the benchmark runs from its own checkout).
fn repository_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate sits in the repository")
}

/// The example apps, built for wasm32-wasip2 into `target/guests` as the tests build them.
fn build_example_apps() -> anyhow::Result<Vec<healthcloud_guestbuild::Built>> {
    let root = repository_root();
    healthcloud_guestbuild::build(
        &root.join("example-apps/Cargo.toml"),
        &root.join("target/guests"),
        healthcloud_guestbuild::Lockfile::Locked,
    )
}
