//! `healthcloud region grant`: one more requested capability granted to an install.

use super::RegionArgs;
use super::output::print_grant;
use crate::region_client::AppId;

/// `region grant`.
#[derive(Debug, clap::Args)]
pub struct GrantCommand {
    #[command(flatten)]
    target: RegionArgs,
    /// The installed app, as publisher/app.
    #[arg(long)]
    app: AppId,
    /// The capability to grant, e.g. 'patient/Observation.s?category=vital-signs'.
    #[arg(long, value_name = "CAP")]
    capability: String,
    /// Allow outbound-http destinations inside your network (loopback, private, link-local,
    /// cloud metadata, …) among the granted capabilities; refused without it. Recorded in the
    /// region's audit log.
    #[arg(long)]
    allow_internal_address: bool,
}

impl GrantCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.target.client()?;
        let view = client
            .grant(&self.app, &self.capability, self.allow_internal_address)
            .await?;
        println!(
            "granted {} to {} in region {}: the app's next call may use it",
            self.capability, view.app, view.region
        );
        print_grant(&view);
        Ok(())
    }
}
