//! The upstream sources a server starts with: `sources.toml` in the data directory and
//! `--source NAME=FHIR_BASE` flags, registered with the integration cloud, each one's
//! CapabilityStatement read once at start (a source that does not answer is a warning, and
//! is retried on use) and again every [`REFRESH`].

use std::path::Path;
use std::time::Duration;

use healthcloud_integration::Integration;
use healthcloud_integration::admin::SourcesAdmin;
use healthcloud_integration::sources_file::{SourceEntry, SourcesFile};

/// How often every source's CapabilityStatement is read again.
const REFRESH: Duration = Duration::from_secs(10 * 60);

/// The sources given on the command line of `up` and `serve integration`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SourceArgs {
    /// An upstream FHIR server to read patients' data through, as NAME=FHIR_BASE (e.g.
    /// gp=http://127.0.0.1:8103/fhir/R4); repeatable. Added to those of
    /// <data-dir>/sources.toml, for this run only.
    #[arg(long = "source", value_name = "NAME=FHIR_BASE", value_parser = SourceEntry::from_flag)]
    pub sources: Vec<SourceEntry>,
}

/// Registers the sources of `data_dir`'s `sources.toml` and of `args` with `integration`,
/// reads each one's CapabilityStatement (printing one line per source) and keeps them fresh.
pub async fn start(
    integration: &Integration,
    data_dir: &Path,
    args: &SourceArgs,
) -> anyhow::Result<SourcesAdmin> {
    let file = SourcesFile::load(&SourcesFile::path_in(data_dir))?;
    let admin = SourcesAdmin::open(&integration.state, file, args.sources.clone())?;
    let checked = admin.check_all().await;
    if checked.is_empty() {
        eprintln!(
            "sources: none besides the embedded store (add one with --source NAME=FHIR_BASE, in {}, or `healthcloud source add`)",
            SourcesFile::path_in(data_dir).display()
        );
    } else {
        eprintln!("sources:");
    }
    for (name, base, types) in checked {
        match types {
            Ok(types) => eprintln!("  {name}  {base}  {}", types.join(", ")),
            Err(error) => eprintln!(
                "  {name}  {base}  warning: {error}: check that it runs at that base URL and accepts healthcloud's credentials (`healthcloud source check {name}`); it is retried on use"
            ),
        }
    }
    integration.state.service.sources().refresh_every(REFRESH);
    Ok(admin)
}
