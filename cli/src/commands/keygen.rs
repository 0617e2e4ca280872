//! `healthcloud keygen`: a publisher's signing key.

use std::path::PathBuf;

use anyhow::bail;
use healthcloud_package::keys::{SecretKey, public_key_path};

/// Generate an ed25519 key pair.
#[derive(Debug, clap::Args)]
pub struct KeygenCommand {
    /// Where to write the private key (mode 0600); the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl KeygenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let public_path = public_key_path(&self.out);
        // Both halves are checked first: writing a new FILE.pub over another key's would
        // leave that private key without its public half.
        for path in [&self.out, &public_path] {
            if path.exists() {
                bail!(
                    "{} already exists and a key is never overwritten: choose another --out, or move the old key away first",
                    path.display()
                );
            }
        }
        if let Some(parent) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                anyhow::anyhow!("cannot create the directory {}: {e}", parent.display())
            })?;
        }
        let key = SecretKey::generate();
        key.write(&self.out)?;
        let id = key.public().id();
        println!("key id: {id}");
        println!(
            "  private key: {} (keep it secret: it signs your apps)",
            self.out.display()
        );
        println!("  public key:  {}", public_path.display());
        println!(
            "next: ask the store to approve your publisher id with this public key\n  healthcloud store approve-publisher --publisher ID --name NAME --key {}",
            public_path.display()
        );
        Ok(())
    }
}
