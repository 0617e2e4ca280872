//! `healthcloud source list`: every source with its health, or, with no server running, as
//! `sources.toml` configures them.

use super::SourceTarget;
use super::output::{print_configured, print_health};

/// `source list`.
#[derive(Debug, clap::Args)]
pub struct ListCommand {
    #[command(flatten)]
    target: SourceTarget,
    /// Print JSON instead of a table: the API's answer, or the file's sources when no
    /// server runs.
    #[arg(long)]
    json: bool,
}

impl ListCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.target.client()?;
        let listed = client.list().await;
        if !super::unreachable(&client, &listed).await {
            let views = listed?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!(
                    "no sources besides the embedded store: add one with `healthcloud source add NAME FHIR_BASE`"
                );
            } else {
                print_health(&views);
            }
            return Ok(());
        }
        self.target.not_running(&client);
        let file = self.target.file()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&file.entries)?);
        } else if file.entries.is_empty() {
            println!(
                "no sources are configured in {}: add one with `healthcloud source add NAME FHIR_BASE`",
                file.path().display()
            );
        } else {
            println!("the server is not running: the sources as configured, without health");
            print_configured(&file.entries);
        }
        Ok(())
    }
}
