//! `healthcloud security-log`: the operator's view of the security log, read straight from
//! the database (no token: whoever can read the database is the operator).

use healthcloud_integration::security::SecurityLog;

use super::DataDirArgs;

/// Show the security log: probes about patients out of the caller's reach, region admin
/// requests by callers without a role in that region, and users slowed down (429) for too
/// many refusals. Newest first.
#[derive(Debug, clap::Args)]
pub struct SecurityLogCommand {
    #[command(flatten)]
    data: DataDirArgs,
    /// How many rows (at most 1,000).
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Only this user's rows (the token's `sub`).
    #[arg(long)]
    sub: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

impl SecurityLogCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let db = healthcloud_integration::open_database(&self.data.database_url()?).await?;
        let entries = SecurityLog::new(db)
            .recent(self.limit, self.sub.as_deref())
            .await?;
        for entry in entries {
            if self.json {
                println!("{}", serde_json::to_string(&entry)?);
                continue;
            }
            let mut who = vec![entry.role];
            who.extend(entry.org.map(|org| format!("org {org}")));
            who.extend(entry.fhir_user);
            who.extend(entry.app.map(|app| format!("app {app}")));
            who.extend(entry.region.map(|region| format!("region {region}")));
            println!(
                "{} {} {} ({}): {} -- {}",
                entry.at,
                entry.kind,
                entry.sub,
                who.join(", "),
                entry.request,
                entry.reason
            );
        }
        Ok(())
    }
}
