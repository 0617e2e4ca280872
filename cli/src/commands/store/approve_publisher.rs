//! `healthcloud store approve-publisher`: a publisher registered with its first public key.

use std::path::PathBuf;

use super::read_public_key;
use crate::commands::ServerArgs;

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
    pub async fn run(self) -> anyhow::Result<()> {
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
