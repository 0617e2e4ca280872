//! `healthcloud region install`: an app version from the store installed with a grant.

use healthcloud_package::client::AppVersion;

use super::RegionArgs;
use super::output::{print_grant, state};

/// `region install`.
#[derive(Debug, clap::Args)]
pub struct InstallCommand {
    #[command(flatten)]
    target: RegionArgs,
    /// The version to install, as publisher/app@version.
    #[arg(long)]
    app: AppVersion,
    /// A capability to grant, one of those the version requests; repeat for more. Without
    /// any, the app gets no data.
    #[arg(long = "grant", value_name = "CAP")]
    grant: Vec<String>,
    /// Allow outbound-http destinations inside your network (loopback, private, link-local,
    /// cloud metadata, …) among the granted capabilities; refused without it. Recorded in the
    /// region's audit log.
    #[arg(long)]
    allow_internal_address: bool,
}

impl InstallCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.target.client()?;
        let view = client
            .install(&self.app, &self.grant, self.allow_internal_address)
            .await?;
        println!(
            "installed {} {} in region {}",
            view.app, view.version, view.region
        );
        print_grant(&view);
        println!("  state:       {}", state(&view));
        println!("  open it at:  {}{}", client.server(), view.url);
        Ok(())
    }
}
