//! `healthcloud store …`: the store's administration over its HTTP API (publishers, their
//! keys, and withdrawing published versions).

use std::path::{Path, PathBuf};

use anyhow::Context;
use healthcloud_store::keys::{KeyId, PublicKey, Purpose, SecretKey, endorsement_message};

use super::ServerArgs;
use healthcloud_store::client::AppVersion;

/// Publishers, keys and versions.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Register a publisher with its first public key (needs a store-admin token).
    ApprovePublisher(ApprovePublisherCommand),
    /// Add a publisher key, endorsed by one of the publisher's active keys (publisher token).
    AddKey(AddKeyCommand),
    /// Revoke a publisher key: every version it signed is distrusted, or with
    /// --compromised-since only those published from then on (publisher or store-admin token).
    RevokeKey(RevokeKeyCommand),
    /// Withdraw a published version everywhere, e.g. for a security flaw (store-admin token).
    RevokeVersion(RevokeVersionCommand),
    /// Withdraw one of your versions from new installs (publisher token).
    Yank(YankCommand),
}

impl StoreCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            StoreCommand::ApprovePublisher(command) => command.run().await,
            StoreCommand::AddKey(command) => command.run().await,
            StoreCommand::RevokeKey(command) => command.run().await,
            StoreCommand::RevokeVersion(command) => command.run().await,
            StoreCommand::Yank(command) => command.run().await,
        }
    }
}

/// Reads a public key written by `healthcloud keygen` (FILE.pub).
fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| {
        format!(
            "{} is not a public key: pass the FILE.pub that `healthcloud keygen --out FILE` wrote",
            path.display()
        )
    })
}

/// `store approve-publisher`.
#[derive(Debug, clap::Args)]
pub struct ApprovePublisherCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// The publisher's id: the namespace of its apps (a-z, 0-9, '-').
    #[arg(long)]
    publisher: String,
    /// Its display name.
    #[arg(long)]
    name: String,
    /// Its first public key (the FILE.pub from `healthcloud keygen`).
    #[arg(long, value_name = "FILE.pub")]
    key: PathBuf,
}

impl ApprovePublisherCommand {
    async fn run(self) -> anyhow::Result<()> {
        let key = read_public_key(&self.key)?;
        let client = self.server.client()?;
        client
            .approve_publisher(&self.publisher, &self.name, &key.to_pem())
            .await?;
        println!(
            "approved publisher {} ({}) with key {}",
            self.publisher,
            self.name,
            key.id()
        );
        Ok(())
    }
}

/// `store add-key`.
#[derive(Debug, clap::Args)]
pub struct AddKeyCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// Your publisher id.
    #[arg(long)]
    publisher: String,
    /// The new public key (FILE.pub).
    #[arg(long, value_name = "NEW.pub")]
    key: PathBuf,
    /// One of your current, active private keys: it endorses the new key.
    #[arg(long, value_name = "CURRENT_KEY")]
    signing_key: PathBuf,
}

impl AddKeyCommand {
    async fn run(self) -> anyhow::Result<()> {
        let new_key = read_public_key(&self.key)?;
        let current = SecretKey::read(&self.signing_key)?;
        let current_id = current.public().id();
        if current_id == new_key.id() {
            anyhow::bail!(
                "--key is the public half of --signing-key: endorse a new key with one you already have"
            );
        }
        let signature = current.sign(
            Purpose::AddKey,
            &endorsement_message(&self.publisher, &new_key.id()),
        );
        let client = self.server.client()?;
        client
            .add_key(&self.publisher, &new_key.to_pem(), &current_id, &signature)
            .await?;
        println!(
            "added key {} to publisher {} (endorsed by key {current_id})",
            new_key.id(),
            self.publisher
        );
        Ok(())
    }
}

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
    async fn run(self) -> anyhow::Result<()> {
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
    async fn run(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        client.revoke_version(&self.app, &self.reason).await?;
        println!("revoked {}: {}", self.app, self.reason);
        Ok(())
    }
}

/// `store yank`.
#[derive(Debug, clap::Args)]
pub struct YankCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// The version, as publisher/app@version.
    #[arg(long)]
    app: AppVersion,
}

impl YankCommand {
    async fn run(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        client.yank(&self.app).await?;
        println!("yanked {}: it is withdrawn from new installs", self.app);
        Ok(())
    }
}
