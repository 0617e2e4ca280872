//! `healthcloud region revoke`: a granted capability taken back from an install.

use super::RegionArgs;
use super::output::print_grant;
use crate::region_client::AppId;

/// `region revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeCommand {
    #[command(flatten)]
    target: RegionArgs,
    /// The installed app, as publisher/app.
    #[arg(long)]
    app: AppId,
    /// The capability to take back, exactly as granted (`region list` shows the grants).
    #[arg(long, value_name = "CAP")]
    capability: String,
}

impl RevokeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.target.client()?;
        // A revoke of what is not granted changes nothing; a typo must not read as success.
        let before = client.show(&self.app).await?;
        if !before.granted.contains(&self.capability) {
            println!(
                "{} in region {} was not granted {}: nothing to revoke",
                before.app, before.region, self.capability
            );
            print_grant(&before);
            return Ok(());
        }
        let view = client.revoke(&self.app, &self.capability).await?;
        println!(
            "revoked {} from {} in region {}: the app's next call that needs it is denied",
            self.capability, view.app, view.region
        );
        print_grant(&view);
        Ok(())
    }
}
