//! The `export` benchmark: a Bulk Data export (`$export` at system level, every type the
//! grant allows) of a synthetic population from the embedded store, by a backend service
//! with `system/*.rs`, as `FhirService` runs it behind the API: resources written per second,
//! and the peak resident memory of the process that runs it.
//!
//! The database is made first (its own process's memory is not the export's); the export runs
//! in a child process (this binary, `export --run-export`) that opens it, runs the export to
//! its manifest, checks every file's line count, and reports its own peak RSS (`VmHWM`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use healthcloud_integration::FhirService;
use healthcloud_integration::import::load_synthetic;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::service::export::{
    ExportLevel, ExportRequest, ExportStatus, InstallCheck,
};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_platform::auth::{Claims, Principal, Role};
use healthcloud_platform::scope::{Purpose, Scope};
use healthcloud_synth::SynthOptions;
use serde_json::{Value, json};

/// Goal: resources written per second from the embedded store.
const GOAL_RESOURCES_PER_SEC: f64 = 50_000.0;

/// Goal: peak resident memory of the exporting process, whatever the population.
const GOAL_PEAK_RSS_MIB: f64 = 300.0;

/// `healthcloud-bench export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Patients in the population [default: 20000, or 200 with --smoke].
    #[arg(long)]
    patients: Option<usize>,
    /// A few seconds' run for CI: 200 patients.
    #[arg(long)]
    smoke: bool,
    /// Where the throwaway database is made (a fresh directory under it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the database afterwards.
    #[arg(long)]
    keep_data: bool,
    /// (internal) Run the export over `--db` and print its figures as JSON.
    #[arg(long, hide = true)]
    run_export: bool,
    /// (internal) The database the child exports from.
    #[arg(long, hide = true)]
    db: Option<PathBuf>,
}

/// Runs the benchmark (or, with `--run-export`, its child).
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    if args.run_export {
        let db = args.db.as_deref().context("--db is required")?;
        let figures = export_once(db).await?;
        println!("{figures}");
        return Ok(());
    }
    let patients = args
        .patients
        .unwrap_or(if args.smoke { 200 } else { 20_000 });
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("healthcloud-bench-export-")
        .tempdir_in(&parent)?;
    let db = dir.path().join("export.db");
    eprintln!("making the database: {patients} synthetic patients…");
    let started = Instant::now();
    let resources = {
        let url = format!("sqlite://{}", db.display());
        let store = EmbeddedStore::new(healthcloud_integration::open_database(&url).await?);
        let report = load_synthetic(
            &store,
            SynthOptions {
                patients,
                seed: 17,
                today: crate::SYNTH_TODAY.parse()?,
            },
            &|_| {},
        )
        .await?;
        store.database().pool().close().await;
        report.by_type.values().sum::<usize>()
    };
    eprintln!(
        "{resources} resources in {:.0} s; exporting in a child process…",
        started.elapsed().as_secs_f64()
    );
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args(["export", "--run-export", "--db"])
        .arg(&db)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        bail!("the export's process failed ({})", output.status);
    }
    let figures: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stdout).into_owned())?;
    let exported = figures["resources"].as_u64().unwrap_or_default();
    let secs = figures["seconds"].as_f64().unwrap_or(f64::NAN);
    let rate = exported as f64 / secs;
    let rss = figures["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "export: $export (system level, every type of system/*.rs) of {patients} synthetic patients from embedded SQLite"
    );
    println!(
        "{resources} resources in the store; {exported} exported into {} files in {secs:.2} s (the files and the audit records of {} patients)",
        figures["files"], figures["patients"]
    );
    println!(
        "throughput: {rate:.0} resources/s (goal ≥ {GOAL_RESOURCES_PER_SEC:.0}: {})",
        met(rate >= GOAL_RESOURCES_PER_SEC)
    );
    println!(
        "peak RSS of the exporting process: {rss:.0} MiB (goal < {GOAL_PEAK_RSS_MIB:.0} MiB: {})",
        met(rss < GOAL_PEAK_RSS_MIB)
    );
    if args.keep_data {
        println!("kept: {}", dir.keep().display());
    }
    Ok(())
}

/// The export of everything `system/*.rs` allows from the database `db`, to its manifest:
/// resources, files, patients audited, seconds and this process's peak RSS.
async fn export_once(db: &Path) -> anyhow::Result<Value> {
    let url = format!("sqlite://{}", db.display());
    let store = EmbeddedStore::new(healthcloud_integration::open_database(&url).await?);
    let service = FhirService::new(store.clone(), PageLimits::default());
    let scopes = Scope::parse_list("system/*.rs")?;
    let now = chrono::Utc::now().timestamp();
    let context = AccessContext {
        principal: Principal {
            claims: Claims {
                iss: "bench".into(),
                sub: "bench-export".into(),
                exp: now + 3600,
                iat: now,
                role: Role::System,
                scope: "system/*.rs".into(),
                patient: None,
                region: Some("bench".into()),
                fhir_user: None,
                org: None,
                practitioner: None,
                aud: Vec::new(),
                client_id: Some("bench-export".into()),
                encounter: None,
                jti: None,
            },
            scopes: scopes.clone(),
        },
        app: Some(AppIdentity {
            id: "bench/export".into(),
            version: "1.0.0".into(),
            digest: "0".repeat(64),
            publisher_key: "bench".into(),
            region: "bench".into(),
        }),
        grant: Some(scopes),
        // Research: each patient's opt-outs of research are looked at, as in a real one.
        purpose: Some(Purpose::Research),
    };
    let started = Instant::now();
    let id = service
        .export_start(
            &context,
            ExportRequest {
                level: ExportLevel::System,
                types: None,
                since: None,
                deidentify: false,
                type_filters: Vec::new(),
                url: "http://bench.local/fhir/r4/$export".into(),
                installed: InstallCheck(Arc::new(|| true)),
            },
        )
        .await?;
    let files = loop {
        match service.export_status(&context, &id)? {
            ExportStatus::InProgress(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            ExportStatus::Complete { files, .. } => break files,
            ExportStatus::Failed(why) => bail!("the export failed: {why}"),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    // The export's own peak, before its files are checked.
    let peak_rss_kib = peak_rss_kib()?;
    let mut resources = 0;
    for file in &files {
        let path = service.export_file(&context, &id, &file.name)?;
        let lines = lines_in(&path)?;
        if lines != file.count {
            bail!(
                "{} holds {lines} lines, its manifest says {}",
                file.name,
                file.count
            );
        }
        resources += file.count;
    }
    let patients = files
        .iter()
        .find(|f| f.resource_type == "Patient")
        .map_or(0, |f| f.count);
    Ok(json!({
        "resources": resources,
        "files": files.len(),
        "patients": patients,
        "seconds": seconds,
        "peak_rss_kib": peak_rss_kib,
    }))
}

/// The line breaks in the file at `path`, read a block at a time.
fn lines_in(path: &Path) -> anyhow::Result<usize> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut block = vec![0; 1 << 20];
    let mut lines = 0;
    loop {
        match file.read(&mut block)? {
            0 => return Ok(lines),
            n => lines += block[..n].iter().filter(|b| **b == b'\n').count(),
        }
    }
}

/// This process's peak resident set (`VmHWM`), KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
