//! `healthcloud region …`: a region admin's installs over the region admin API: install an
//! app version granting a subset of what it requests, change the grant, upgrade (approving
//! what a new version asks for beyond the installed one), uninstall, and read the region's
//! admin audit log.

mod audit;
mod grant;
mod install;
mod list;
mod output;
mod revoke;
mod uninstall;
mod upgrade;

use audit::AuditCommand;
use grant::GrantCommand;
use install::InstallCommand;
use list::ListCommand;
use revoke::RevokeCommand;
use uninstall::UninstallCommand;
use upgrade::UpgradeCommand;

use super::ServerArgs;
use crate::region_client::RegionClient;

/// A region's installs and grants.
#[derive(Debug, clap::Subcommand)]
pub enum RegionCommand {
    /// Install an app version from the store, granting a subset of the capabilities it
    /// requests (region-admin token of the region).
    Install(InstallCommand),
    /// Grant an installed app one more of the capabilities it requests.
    Grant(GrantCommand),
    /// Take a capability back from an installed app: its next call that needs it is denied.
    Revoke(RevokeCommand),
    /// List the region's installs: version, whether each serves, pending upgrades, grants.
    List(ListCommand),
    /// Upgrade an install to a later version; one that asks for more waits for --approve.
    Upgrade(UpgradeCommand),
    /// Uninstall an app: it stops serving and its stored data is deleted.
    Uninstall(UninstallCommand),
    /// Show the region's admin audit log, newest first: who did what, allowed or refused.
    Audit(AuditCommand),
}

impl RegionCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            RegionCommand::Install(command) => command.run().await,
            RegionCommand::Grant(command) => command.run().await,
            RegionCommand::Revoke(command) => command.run().await,
            RegionCommand::List(command) => command.run().await,
            RegionCommand::Upgrade(command) => command.run().await,
            RegionCommand::Uninstall(command) => command.run().await,
            RegionCommand::Audit(command) => command.run().await,
        }
    }
}

/// The region a command acts on and the server it asks; every `region` command has them.
#[derive(Debug, clap::Args)]
pub struct RegionArgs {
    /// The region, e.g. hovedstaden; the token must be a region admin's of it.
    #[arg(long)]
    region: String,
    #[command(flatten)]
    server: ServerArgs,
}

impl RegionArgs {
    fn client(&self) -> anyhow::Result<RegionClient> {
        Ok(RegionClient::new(self.server.client()?, &self.region))
    }
}
