//! `healthcloud region upgrade`: an install moved to a later version, approving what it asks
//! for beyond the installed one.

use healthcloud_package::client::AppVersion;

use super::RegionArgs;
use super::output::{listed, print_capability, print_grant, shell_quoted, state};
use crate::region_client::AppId;

/// `region upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeCommand {
    #[command(flatten)]
    target: RegionArgs,
    /// The version to upgrade to, as publisher/app@version.
    #[arg(long)]
    app: AppVersion,
    /// Approve what the new version asks for beyond the installed one; without it such an
    /// upgrade waits and the installed version keeps serving.
    #[arg(long)]
    approve: bool,
    /// With --approve: a newly requested capability to grant; repeat for more.
    #[arg(long = "grant", value_name = "CAP", requires = "approve")]
    grant: Vec<String>,
    /// With --approve: allow outbound-http destinations inside your network among what the
    /// new version is granted. Recorded in the region's audit log.
    #[arg(long, requires = "approve")]
    allow_internal_address: bool,
}

impl UpgradeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.target.client()?;
        let before = client.show(&AppId::from(&self.app)).await?;
        let upgrade = client
            .upgrade(
                &self.app,
                self.approve,
                &self.grant,
                self.allow_internal_address,
            )
            .await?;
        let view = &upgrade.install;
        match (upgrade.status.as_str(), &view.pending) {
            ("pending", Some(pending)) => {
                println!(
                    "{} {} waits for approval in region {}: it asks for what {} did not:",
                    view.app, pending.version, view.region, view.version
                );
                for added in &pending.added {
                    print_capability(added);
                }
                println!(
                    "{} {} keeps serving meanwhile. To approve the upgrade, granting what you choose of the above:",
                    view.app, view.version
                );
                let grants: String = pending
                    .added
                    .iter()
                    .map(|added| format!(" --grant {}", shell_quoted(&added.capability)))
                    .collect();
                println!(
                    "  healthcloud region upgrade --region {} --app {}@{} --approve{grants}",
                    view.region, view.app, pending.version
                );
            }
            _ => {
                println!(
                    "upgraded {} in region {} from {} to {}",
                    view.app, view.region, before.version, view.version
                );
                let dropped: Vec<String> = before
                    .granted
                    .iter()
                    .filter(|c| !view.granted.contains(c))
                    .cloned()
                    .collect();
                print_grant(view);
                if !dropped.is_empty() {
                    println!("  dropped:     {} (no longer requested)", listed(&dropped));
                }
                println!("  state:       {}", state(view));
            }
        }
        Ok(())
    }
}
