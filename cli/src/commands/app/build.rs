//! `healthcloud app build`: the app's component, built and checked against its manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use healthcloud_guestbuild::{Built, Lockfile};
use healthcloud_runtime::{AppEngine, Limits};
use healthcloud_store::manifest::{MANIFEST_FILE, Manifest};

#[derive(Debug, clap::Args)]
pub struct BuildCommand {
    /// The app's directory (with Cargo.toml and healthcloud.toml).
    #[arg(default_value = ".")]
    pub(super) dir: PathBuf,
}

/// A built and checked app.
pub struct BuiltApp {
    pub manifest: Manifest,
    pub component: Vec<u8>,
    /// Where the component was written.
    pub wasm: PathBuf,
}

/// The manifest of the app in `dir`.
pub(super) fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).with_context(|| {
        format!("no {MANIFEST_FILE} in {}: run this in an app's directory (`healthcloud app new NAME` makes one)", dir.display())
    })?;
    Ok(Manifest::parse(&text)?)
}

impl BuildCommand {
    pub async fn run(self) -> anyhow::Result<BuiltApp> {
        let manifest = read_manifest(&self.dir)?;
        eprintln!(
            "building {} {} for {}…",
            manifest.full_id(),
            manifest.app.version,
            healthcloud_guestbuild::TARGET
        );
        let dir = self.dir.clone();
        let built = tokio::task::spawn_blocking(move || {
            healthcloud_guestbuild::build(
                &dir.join("Cargo.toml"),
                &dir.join("target"),
                Lockfile::Update,
            )
        })
        .await??;
        let package_dir = self.dir.canonicalize()?;
        let Some(Built { wasm, .. }) = built.into_iter().find(|b| b.package_dir == package_dir)
        else {
            bail!(
                "{} built no component of its own: its crate needs `[lib] crate-type = [\"cdylib\"]`",
                self.dir.display()
            );
        };
        let component = std::fs::read(&wasm)?;
        let engine = AppEngine::new(
            &Limits {
                pool_instances: 1,
                ..Limits::default()
            },
            None,
        )?;
        let check = (manifest.clone(), component.clone());
        tokio::task::spawn_blocking(move || engine.validate(&check.0, &check.1))
            .await?
            .with_context(|| format!("{} does not install", wasm.display()))?;
        println!(
            "built {} {}: {} ({} KiB, sha256 {})",
            manifest.full_id(),
            manifest.app.version,
            wasm.display(),
            component.len() / 1024,
            healthcloud_runtime::install::digest(&component)
        );
        println!(
            "its imports match the {} capabilities its manifest requests",
            manifest.requested.len()
        );
        Ok(BuiltApp {
            manifest,
            component,
            wasm,
        })
    }
}
