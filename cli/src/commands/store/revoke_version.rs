//! `healthcloud store revoke-version`: a published version withdrawn everywhere.

use healthcloud_package::client::AppVersion;

use crate::commands::ServerArgs;

/// `store revoke-version`.
#[derive(Debug, clap::Args)]
pub struct RevokeVersionCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// The version, as publisher/app@version.
    #[arg(long)]
    app: AppVersion,
    /// Why, shown to regions and users.
    #[arg(long)]
    reason: String,
}

impl RevokeVersionCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        client.revoke_version(&self.app, &self.reason).await?;
        println!("revoked {}: {}", self.app, self.reason);
        Ok(())
    }
}
