//! Long work shown with a progress bar on stderr (hidden when that is not a terminal):
//! generating synthetic patients for `data generate` and the first start of `up`, importing
//! Bundles.

use anyhow::Context;
use healthcloud_integration::import::{ImportReport, load_synthetic};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_synth::SynthOptions;
use indicatif::{ProgressBar, ProgressStyle};

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

/// A bar counting `len` of `unit`, with the rate and the time left.
pub fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
