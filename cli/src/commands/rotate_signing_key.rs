//! `healthcloud rotate-signing-key`: a new signing key for the SMART authorization server.

use healthcloud_platform::auth::keys::{KEPT_KEYS, PROPAGATION, SigningKeys};

use super::DataDirArgs;

/// Add a new signing key to the authorization server's keys (`<data dir>/oauth-keys`).
#[derive(Debug, clap::Args)]
pub struct RotateSigningKeyCommand {
    #[command(flatten)]
    data: DataDirArgs,
}

impl RotateSigningKeyCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let keys = SigningKeys::open(&self.data.data_dir.join("oauth-keys"))?;
        let before = keys.kids();
        let kid = keys.rotate()?;
        println!("new signing key {kid}");
        println!(
            "  it verifies at once, and signs from {} minutes from now: every server using this directory reads it within a minute",
            PROPAGATION.as_secs() / 60
        );
        if before.len() >= KEPT_KEYS {
            println!(
                "  retired key {}: tokens it signed are refused from now on",
                before[0]
            );
        }
        Ok(())
    }
}
