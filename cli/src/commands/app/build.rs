//! `healthcloud app build`: the app's component, built and checked against its manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use healthcloud_guestbuild::{Built, Lockfile};
use healthcloud_package::manifest::{MANIFEST_FILE, Manifest};
use healthcloud_runtime::{AppEngine, Limits};

#[derive(Debug, clap::Args)]
pub struct BuildCommand {
    /// The app's directory (with Cargo.toml and healthcloud.toml).
    #[arg(default_value = ".")]
    dir: PathBuf,
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
    pub async fn run(self) -> anyhow::Result<()> {
        build(&self.dir).await?;
        Ok(())
    }
}

/// Builds the app in `dir` and checks that it installs: what `app build` does, and the first
/// step of `app run`, `app sign` and `app publish`.
pub(super) async fn build(dir: &Path) -> anyhow::Result<BuiltApp> {
    let manifest = read_manifest(dir)?;
    eprintln!(
        "building {} {} for {}…",
        manifest.full_id(),
        manifest.app.version,
        healthcloud_guestbuild::TARGET
    );
    let app_dir = dir.to_owned();
    let built = tokio::task::spawn_blocking(move || {
        healthcloud_guestbuild::build(
            &app_dir.join("Cargo.toml"),
            &app_dir.join("target"),
            Lockfile::Update,
        )
    })
    .await??;
    let package_dir = dir.canonicalize()?;
    let Some(Built { wasm, .. }) = built.into_iter().find(|b| b.package_dir == package_dir) else {
        bail!(
            "{} built no component of its own: its crate needs `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
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
