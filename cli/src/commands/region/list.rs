//! `healthcloud region list`: the region's installs, their versions, grants and state.

use super::RegionArgs;
use super::output::{listed, print_table, state};

/// `region list`.
#[derive(Debug, clap::Args)]
pub struct ListCommand {
    #[command(flatten)]
    target: RegionArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl ListCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let region = &self.target.region;
        let installs = self.target.client()?.list().await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&installs)?);
            return Ok(());
        }
        if installs.is_empty() {
            println!(
                "no apps are installed in region {region}: install one with `healthcloud region install --region {region} --app publisher/app@version --grant CAP`"
            );
            return Ok(());
        }
        let rows: Vec<[String; 4]> = installs
            .iter()
            .map(|view| {
                [
                    view.app.clone(),
                    view.version.clone(),
                    state(view),
                    listed(&view.granted),
                ]
            })
            .collect();
        print_table(["APP", "VERSION", "STATE", "GRANTED"], &rows);
        Ok(())
    }
}
