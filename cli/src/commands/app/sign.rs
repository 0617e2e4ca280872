//! `healthcloud app sign`: the built app signed with the publisher's key.

use std::path::PathBuf;

use anyhow::Context;
use healthcloud_package::keys::SecretKey;
use healthcloud_package::package::{Package, SignedPackage, signature_path};

use super::build::{BuiltApp, build};

/// Signs a built app with `key`, writing the package to `<wasm>.sig.json`.
pub(super) fn sign(built: &BuiltApp, key: &SecretKey) -> anyhow::Result<SignedPackage> {
    let signed = Package::new(&built.manifest, &built.component).sign(key);
    let path = signature_path(&built.wasm);
    std::fs::write(&path, signed.to_json())
        .with_context(|| format!("cannot write the signature {}", path.display()))?;
    let app = &signed.package.app;
    println!("signed {}/{} {}", app.publisher, app.id, app.version);
    println!("  sha256:    {}", signed.package.component.sha256);
    println!("  key id:    {}", signed.signature.key_id);
    println!("  signature: {}", path.display());
    Ok(signed)
}

/// `app sign [DIR] --key FILE`.
#[derive(Debug, clap::Args)]
pub struct SignCommand {
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Your private key (from `healthcloud keygen --out FILE`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

impl SignCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let key = SecretKey::read(&self.key)?;
        let built = build(&self.dir).await?;
        sign(&built, &key)?;
        Ok(())
    }
}
