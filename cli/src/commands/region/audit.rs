//! `healthcloud region audit`: the region's admin audit log, newest first.

use super::RegionArgs;
use super::output::print_table;

/// `region audit`.
#[derive(Debug, clap::Args)]
pub struct AuditCommand {
    #[command(flatten)]
    target: RegionArgs,
}

impl AuditCommand {
    pub async fn run(self) -> anyhow::Result<()> {
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
