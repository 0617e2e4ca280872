//! `healthcloud data generate`.

use healthcloud_synth::SynthOptions;

use super::{open_store, print_report};
use crate::commands::DataDirArgs;
use crate::progress::generate;

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
