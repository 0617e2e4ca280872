//! `healthcloud data generate|import`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use healthcloud_integration::FhirError;
use healthcloud_integration::import::{ImportReport, Importer, load_synthetic};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_integration::synth::SynthOptions;
use indicatif::{ProgressBar, ProgressStyle};

use super::DataDirArgs;

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Generate deterministic synthetic Danish patients into the store.
    Generate(GenerateCommand),
    /// Import FHIR R4 transaction, batch or collection Bundles (files or folders of .json).
    Import(ImportCommand),
}

impl DataCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            DataCommand::Generate(command) => command.run().await,
            DataCommand::Import(command) => command.run().await,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct GenerateCommand {
    #[command(flatten)]
    data: DataDirArgs,
    /// How many patients.
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// Seed: the same seed gives the same patients.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The day the data ends ("today" for the generator), YYYY-MM-DD.
    #[arg(long, default_value = crate::demo::DATA_ANCHOR_DATE)]
    today: chrono::NaiveDate,
}

impl GenerateCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let store = open_store(&self.data).await?;
        let started = std::time::Instant::now();
        let report = generate(
            &store,
            SynthOptions {
                patients: self.patients,
                seed: self.seed,
                today: self.today,
            },
        )
        .await?;
        print_report("generated", &report, started.elapsed());
        Ok(())
    }
}

/// Generates patients with a progress bar.
pub async fn generate(
    store: &EmbeddedStore,
    options: SynthOptions,
) -> anyhow::Result<ImportReport> {
    let bar = progress_bar(options.patients as u64, "patients");
    let report = load_synthetic(store, options, &|done| bar.set_position(done as u64))
        .await
        .context("generating data failed; nothing of the unfinished batch was kept")?;
    bar.finish_and_clear();
    Ok(report)
}

#[derive(Debug, clap::Args)]
pub struct ImportCommand {
    #[command(flatten)]
    data: DataDirArgs,
    /// Bundle files, or folders searched for *.json.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

impl ImportCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut files = Vec::new();
        for path in &self.paths {
            collect_json(path, &mut files)?;
        }
        // Synthea writes shared organizations and practitioners to Bundles of their own that
        // patients' Bundles refer to conditionally: import those first.
        files.sort_by_key(|file| !is_shared_bundle(file));
        anyhow::ensure!(
            !files.is_empty(),
            "no .json files found in {:?}",
            self.paths
        );
        let store = open_store(&self.data).await?;
        let started = std::time::Instant::now();
        let bar = progress_bar(files.len() as u64, "bundles");
        let mut importer = Importer::new(&store);
        let mut failures = Vec::new();
        for file in &files {
            let bundle = async {
                let text = tokio::fs::read(file).await?;
                anyhow::Ok(serde_json::from_slice(&text).context("not valid JSON")?)
            }
            .await;
            let result = match bundle {
                Ok(bundle) => match importer.add(bundle).await {
                    // Storage failed while committing earlier Bundles: not this file's fault,
                    // and nothing after the last commit is kept. Stop and say so.
                    Err(FhirError::Internal(error)) => {
                        bar.finish_and_clear();
                        let committed = importer.committed().bundles;
                        return Err(error.context(format!(
                            "the database failed while committing; the first {committed} bundles were imported, \
                             none after them (import the remaining files again once the cause is fixed)"
                        )));
                    }
                    other => other.map(|_| ()).map_err(anyhow::Error::from),
                },
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                bar.suspend(|| eprintln!("rejected {}: {error:#}", file.display()));
                failures.push(file);
            }
            bar.inc(1);
        }
        let report = importer.finish().await?;
        bar.finish_and_clear();
        print_report("imported", &report, started.elapsed());
        anyhow::ensure!(
            failures.is_empty(),
            "{} of {} bundles were rejected and not imported (see above); fix them and import those files again",
            failures.len(),
            files.len()
        );
        Ok(())
    }
}

fn is_shared_bundle(file: &Path) -> bool {
    file.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.starts_with("hospitalInformation") || n.starts_with("practitionerInformation")
    })
}

fn collect_json(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let child = entry.path();
            if child.is_dir() || child.extension().is_some_and(|e| e == "json") {
                collect_json(&child, files)?;
            }
        }
    } else {
        files.push(path.to_owned());
    }
    Ok(())
}

pub async fn open_store(data: &DataDirArgs) -> anyhow::Result<EmbeddedStore> {
    Ok(EmbeddedStore::new(
        healthcloud_integration::open_database(&data.database_url()?).await?,
    ))
}

fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn print_report(verb: &str, report: &ImportReport, elapsed: std::time::Duration) {
    let resources = report.resources();
    println!(
        "{verb} {resources} resources in {:.1}s ({:.0} resources/s)",
        elapsed.as_secs_f64(),
        resources as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    for (resource_type, count) in &report.by_type {
        let served = if healthcloud_integration::params::type_def(resource_type).is_some() {
            ""
        } else {
            " (stored, not served)"
        };
        println!("  {resource_type:<22} {count}{served}");
    }
}
