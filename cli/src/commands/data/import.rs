//! `healthcloud data import`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use healthcloud_integration::FhirError;
use healthcloud_integration::import::Importer;

use super::{open_store, print_report};
use crate::commands::DataDirArgs;
use crate::progress::progress_bar;

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
