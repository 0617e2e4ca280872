//! `healthcloud store yank`: one of your versions withdrawn from new installs.

use healthcloud_package::client::AppVersion;

use crate::commands::ServerArgs;

/// `store yank`.
#[derive(Debug, clap::Args)]
pub struct YankCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// The version, as publisher/app@version.
    #[arg(long)]
    app: AppVersion,
}

impl YankCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        client.yank(&self.app).await?;
        println!("yanked {}: it is withdrawn from new installs", self.app);
        Ok(())
    }
}
