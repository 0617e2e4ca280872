//! `healthcloud store revoke-key`: a publisher key revoked, distrusting what it signed (or only
//! what was published since it was compromised).

use healthcloud_package::keys::KeyId;

use crate::commands::ServerArgs;

/// `store revoke-key`.
#[derive(Debug, clap::Args)]
pub struct RevokeKeyCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// The publisher whose key it is.
    #[arg(long)]
    publisher: String,
    /// The key's id (what `healthcloud keygen` printed).
    #[arg(long, value_parser = parse_key_id)]
    key_id: KeyId,
    /// When the key may have been stolen (RFC 3339, e.g. 2025-03-01T00:00:00Z): only versions
    /// published from then on are distrusted; without it, all that the key signed are.
    #[arg(long, value_parser = parse_time)]
    compromised_since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Why, for the record.
    #[arg(long)]
    reason: Option<String>,
}

fn parse_key_id(text: &str) -> Result<KeyId, String> {
    KeyId::try_from(text.to_owned()).map_err(|_| {
        format!(
            "'{text}' is not a key id: 64 lowercase hex characters, as `healthcloud keygen` printed"
        )
    })
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("'{text}' is not an RFC 3339 time like 2025-03-01T00:00:00Z: {e}"))
}

impl RevokeKeyCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let since = self.compromised_since.map(|time| time.to_rfc3339());
        let client = self.server.client()?;
        client
            .revoke_key(
                &self.publisher,
                &self.key_id,
                since.as_deref(),
                self.reason.as_deref(),
            )
            .await?;
        match since {
            Some(since) => println!(
                "revoked key {} of publisher {}: versions it signed that were published since {since} are distrusted",
                self.key_id, self.publisher
            ),
            None => println!(
                "revoked key {} of publisher {}: every version it signed is distrusted",
                self.key_id, self.publisher
            ),
        }
        Ok(())
    }
}
