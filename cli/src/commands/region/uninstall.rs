//! `healthcloud region uninstall`: an app stops serving and its stored data is deleted.

use super::RegionArgs;
use crate::region_client::AppId;

/// `region uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallCommand {
    #[command(flatten)]
    target: RegionArgs,
    /// The installed app, as publisher/app.
    #[arg(long)]
    app: AppId,
}

impl UninstallCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.target.client()?;
        let before = client.show(&self.app).await?;
        client.uninstall(&self.app).await?;
        println!(
            "uninstalled {} {} from region {}: it no longer serves, and its stored data is deleted",
            before.app, before.version, before.region
        );
        Ok(())
    }
}
