//! `healthcloud data generate|import`.

mod generate;
mod import;

use healthcloud_integration::import::ImportReport;
use healthcloud_integration::store::EmbeddedStore;

use super::DataDirArgs;

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Generate deterministic synthetic Danish patients into the store.
    Generate(generate::GenerateCommand),
    /// Import FHIR R4 transaction, batch or collection Bundles (files or folders of .json).
    Import(import::ImportCommand),
}

impl DataCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            DataCommand::Generate(command) => command.run().await,
            DataCommand::Import(command) => command.run().await,
        }
    }
}

pub async fn open_store(data: &DataDirArgs) -> anyhow::Result<EmbeddedStore> {
    Ok(EmbeddedStore::new(
        healthcloud_integration::open_database(&data.database_url()?).await?,
    ))
}

fn print_report(verb: &str, report: &ImportReport, elapsed: std::time::Duration) {
    let resources = report.resources();
    println!(
        "{verb} {resources} resources in {:.1}s ({:.0} resources/s)",
        elapsed.as_secs_f64(),
        resources as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    for (resource_type, count) in &report.by_type {
        let served = match report.unplaced.get(resource_type) {
            _ if healthcloud_integration::params::type_def(resource_type).is_none() => {
                " (stored, not served)".to_owned()
            }
            Some(unplaced) => format!(
                " ({unplaced} stored but served to no one: they name their patient otherwise than as Patient/<id>)"
            ),
            None => String::new(),
        };
        println!("  {resource_type:<22} {count}{served}");
    }
}
