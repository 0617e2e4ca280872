//! `healthcloud region …`: a region admin's installs over the region admin API: install an
//! app version granting a subset of what it requests, change the grant, upgrade (approving
//! what a new version asks for beyond the installed one), uninstall, and read the region's
//! admin audit log.

use healthcloud_runtime::regions::admin::{CapabilityView, InstallView};
use healthcloud_store::client::AppVersion;

use super::ServerArgs;
use crate::region_client::{AppId, RegionClient};

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
    async fn run(self) -> anyhow::Result<()> {
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
    async fn run(self) -> anyhow::Result<()> {
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
    async fn run(self) -> anyhow::Result<()> {
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
    async fn run(self) -> anyhow::Result<()> {
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
    async fn run(self) -> anyhow::Result<()> {
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
    async fn run(self) -> anyhow::Result<()> {
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

/// `region audit`.
#[derive(Debug, clap::Args)]
pub struct AuditCommand {
    #[command(flatten)]
    target: RegionArgs,
}

impl AuditCommand {
    async fn run(self) -> anyhow::Result<()> {
        let entries = self.target.client()?.audit().await?;
        if entries.is_empty() {
            println!(
                "no admin actions are recorded for region {}",
                self.target.region
            );
            return Ok(());
        }
        let rows: Vec<[String; 5]> = entries
            .into_iter()
            .map(|entry| {
                let outcome = match (entry.outcome.as_str(), entry.detail.is_empty()) {
                    (outcome, true) => outcome.to_owned(),
                    ("allowed", false) => format!("allowed: {}", entry.detail),
                    (refused, false) => format!("{refused} (asked: {})", entry.detail),
                };
                [
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.app.unwrap_or_default(),
                    outcome,
                ]
            })
            .collect();
        print_table(["AT", "WHO", "ACTION", "APP", "OUTCOME"], &rows);
        Ok(())
    }
}

/// Whether the install serves, as a user would say it.
fn state(view: &InstallView) -> String {
    let mut state = match (&view.revoked, view.serving) {
        (Some(revoked), _) => format!("revoked ({})", revoked.reason),
        (None, true) => "serving".to_owned(),
        (None, false) => "not serving".to_owned(),
    };
    if let Some(pending) = &view.pending {
        let asks: Vec<String> = pending.added.iter().map(|c| c.capability.clone()).collect();
        state.push_str(&format!(
            "; pending upgrade {} asking for {}",
            pending.version,
            listed(&asks)
        ));
    }
    state
}

/// What is granted and what the version requests that is not.
fn print_grant(view: &InstallView) {
    println!("  granted:     {}", listed(&view.granted));
    if view.allow_internal_addresses {
        println!("  internal:    allowed (outbound-http may reach addresses inside your network)");
    }
    let withheld: Vec<String> = view
        .requested
        .iter()
        .filter(|c| !c.granted)
        .map(|c| c.capability.clone())
        .collect();
    if !withheld.is_empty() {
        println!("  not granted: {}", listed(&withheld));
    }
}

fn print_capability(capability: &CapabilityView) {
    println!("  {}", capability.capability);
    if !capability.explanation.is_empty() {
        println!("      allows: {}", capability.explanation);
    }
    println!("      why:    {}", capability.justification);
}

fn listed(capabilities: &[String]) -> String {
    if capabilities.is_empty() {
        "nothing".to_owned()
    } else {
        capabilities.join(", ")
    }
}

/// `text` quoted for a POSIX shell when it holds anything but safe characters (capabilities
/// hold `?` and `&`).
fn shell_quoted(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/.-_=:@,+".contains(c);
    if text.chars().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Columns padded to their widest cell; the last one is not padded.
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|title| title.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        println!("{}", line.trim_end());
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_commands_quote_capabilities_for_the_shell() {
        assert_eq!(shell_quoted("log"), "log");
        assert_eq!(shell_quoted("patient/Patient.r"), "patient/Patient.r");
        assert_eq!(
            shell_quoted("patient/Observation.s?category=vital-signs"),
            "'patient/Observation.s?category=vital-signs'"
        );
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
