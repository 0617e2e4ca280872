//! `healthcloud app new`: a new app from the template, a Rust crate and its manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use healthcloud_package::manifest::{MANIFEST_FILE, Manifest};

/// `app new NAME`.
#[derive(Debug, clap::Args)]
pub struct NewCommand {
    /// The app's id (a-z, 0-9, '-'); also the directory created.
    name: String,
    /// Your publisher id, the namespace of your apps.
    #[arg(long, default_value = "my-publisher")]
    publisher: String,
    /// The healthcloud-sdk crate to depend on (defaults to the SDK of this checkout).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

impl NewCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let dir = PathBuf::from(&self.name);
        if dir.exists() {
            bail!(
                "{} already exists: choose another name or remove it",
                dir.display()
            );
        }
        let sdk = match self.sdk {
            Some(sdk) => sdk,
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
        };
        let sdk = sdk.canonicalize().with_context(|| {
            format!(
                "the SDK is not at {}: pass --sdk PATH/TO/healthcloud/sdk",
                sdk.display()
            )
        })?;
        let fill = |template: &str| {
            template
                .replace("{name}", &self.name)
                .replace("{publisher}", &self.publisher)
                .replace("{sdk}", &sdk.display().to_string())
                .replace("{{", "{")
                .replace("}}", "}")
        };
        let manifest = fill(include_str!("../../template/healthcloud.toml.in"));
        Manifest::parse(&manifest).context("the app name or publisher is not valid")?;
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(
            dir.join("Cargo.toml"),
            fill(include_str!("../../template/Cargo.toml.in")),
        )?;
        std::fs::write(
            dir.join("src/lib.rs"),
            fill(include_str!("../../template/lib.rs.in")),
        )?;
        std::fs::write(dir.join(MANIFEST_FILE), manifest)?;
        std::fs::write(
            dir.join(".gitignore"),
            include_str!("../../template/gitignore.in"),
        )?;
        println!(
            "created {}/ (Cargo.toml, src/lib.rs, {MANIFEST_FILE})",
            self.name
        );
        println!(
            "next:\n  healthcloud app build {0}\n  healthcloud app run {0}",
            self.name
        );
        Ok(())
    }
}
