//! `healthcloud store add-key`: a publisher key added, endorsed by one of the publisher's
//! active keys.

use std::path::PathBuf;

use healthcloud_package::keys::{Purpose, SecretKey, endorsement_message};

use super::read_public_key;
use crate::commands::ServerArgs;

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
    pub async fn run(self) -> anyhow::Result<()> {
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
