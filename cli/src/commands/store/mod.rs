//! `healthcloud store …`: the store's administration over its HTTP API (publishers, their
//! keys, and withdrawing published versions).

mod add_key;
mod approve_publisher;
mod revoke_key;
mod revoke_version;
mod yank;

use std::path::Path;

use anyhow::Context;
use healthcloud_package::keys::PublicKey;

use add_key::AddKeyCommand;
use approve_publisher::ApprovePublisherCommand;
use revoke_key::RevokeKeyCommand;
use revoke_version::RevokeVersionCommand;
use yank::YankCommand;

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
