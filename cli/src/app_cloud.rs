//! The app cloud's local configuration (`app-cloud.toml` in the data directory): limits and
//! which example apps each demo region installs with which grant.

use std::path::Path;

use anyhow::Context;
use healthcloud_runtime::{Limits, Runtime};
use healthcloud_store::manifest::{Capability, Manifest};
use serde::Deserialize;

/// The file's name in the data directory.
pub const FILE: &str = "app-cloud.toml";

const DEFAULT: &str = include_str!("app-cloud.toml");

include!(concat!(env!("OUT_DIR"), "/example_apps.rs"));

/// The parsed configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCloudConfig {
    /// Containment limits.
    #[serde(default)]
    pub limits: Limits,
    /// Installs.
    #[serde(default)]
    pub install: Vec<InstallConfig>,
}

/// One install: an app in a region with a grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallConfig {
    /// The region, e.g. `hovedstaden`.
    pub region: String,
    /// `publisher/app`.
    pub app: String,
    /// Granted capabilities: a subset of what the app's manifest requests.
    pub grant: Vec<String>,
}

impl AppCloudConfig {
    /// Reads `app-cloud.toml` from `data_dir`, writing the default there first if missing.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(FILE);
        if !path.exists() {
            std::fs::write(&path, DEFAULT)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid app cloud configuration", path.display()))
    }
}

/// The example apps built into this binary: (manifest, component).
pub fn example_apps() -> anyhow::Result<Vec<(Manifest, &'static [u8])>> {
    EXAMPLE_APPS
        .iter()
        .map(|(manifest, component)| Ok((Manifest::parse(manifest)?, *component)))
        .collect()
}

/// Installs the configured example apps. Compiling is CPU work: it runs off the executor,
/// and compiled code is cached in the data directory, so a restart is quick.
pub async fn install_example_apps(
    runtime: &Runtime,
    config: &AppCloudConfig,
) -> anyhow::Result<usize> {
    let apps = example_apps()?;
    let mut installed = 0;
    for install in &config.install {
        let Some((manifest, component)) = apps.iter().find(|(m, _)| m.full_id() == install.app)
        else {
            anyhow::bail!(
                "{FILE}: there is no example app {}; the built-in apps are {}",
                install.app,
                apps.iter()
                    .map(|(m, _)| m.full_id())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let grant = install
            .grant
            .iter()
            .map(|c| Capability::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| {
                format!("{FILE}: the grant of {} in {}", install.app, install.region)
            })?;
        let (runtime, region, manifest, component) = (
            runtime.clone(),
            install.region.clone(),
            manifest.clone(),
            *component,
        );
        tokio::task::spawn_blocking(move || {
            runtime.install(&region, manifest, component, LOCAL_PUBLISHER_KEY, grant)
        })
        .await?
        .with_context(|| format!("installing {} in {}", install.app, install.region))?;
        installed += 1;
    }
    Ok(installed)
}

/// The publisher key id recorded for apps installed from this binary rather than from a
/// signed package.
pub const LOCAL_PUBLISHER_KEY: &str = "local-build";
