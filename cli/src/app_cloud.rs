//! The app cloud's local configuration (`app-cloud.toml` in the data directory): limits and
//! which example apps each demo region installs, with which grant, on first start.

use std::path::Path;

use anyhow::Context;
use healthcloud_package::keys::{KeyId, SecretKey};
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::Package;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_runtime::regions::admin::{Admin, AdminError};
use healthcloud_runtime::{Limits, Runtime};
use serde::Deserialize;

use healthcloud_package::client::StoreClient;

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

/// The demo publisher's id and display name.
pub const DEMO_PUBLISHER: (&str, &str) = ("examples", "healthcloud examples");

/// Publishes the example apps through the store's public API at `server`, as any vendor
/// would: the demo publisher is registered (by a store admin) with a key kept in the data
/// directory, and each app is signed with it and uploaded. Publishing again is a no-op.
/// Returns the signing key's id.
pub async fn publish_example_apps(
    server: &str,
    data_dir: &Path,
    issuer: &TokenIssuer,
) -> anyhow::Result<KeyId> {
    let key_path = data_dir.join("examples-publisher.key");
    if !key_path.exists() {
        SecretKey::generate().write(&key_path)?;
    }
    let key = SecretKey::read(&key_path)?;
    let (publisher, name) = DEMO_PUBLISHER;
    let token = |role: Role, sub: &str| {
        issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(sub.into()),
                    ttl_secs: Some(600),
                    ..TokenRequest::default()
                },
            )
            .map_err(anyhow::Error::msg)
    };
    let admin = StoreClient::new(server, Some(token(Role::StoreAdmin, "demo-store-admin")?))?;
    match admin
        .approve_publisher(publisher, name, &key.public().to_pem())
        .await
    {
        Ok(_) => {}
        Err(error) if error.status() == Some(reqwest::StatusCode::CONFLICT) => {}
        Err(error) => return Err(error).context("registering the demo publisher"),
    }
    let vendor = StoreClient::new(server, Some(token(Role::Publisher, publisher)?))?;
    for (manifest, component) in example_apps()? {
        let signed = Package::new(&manifest, component).sign(&key);
        let size = signed.package.component.size;
        match vendor
            .publish(&signed, reqwest::Body::from(component), size)
            .await
        {
            Ok(_) => {}
            // This binary's build of an app differs from what an earlier run published under
            // the same version: the store keeps what it has, and that is what gets installed.
            Err(error) if error.status() == Some(reqwest::StatusCode::CONFLICT) => {
                eprintln!(
                    "warning: {} {} was not published again: {error}; the version in the store stays installed (bump the version in example-apps/{}/healthcloud.toml to publish this build)",
                    manifest.full_id(),
                    manifest.app.version,
                    manifest.app.id
                );
            }
            Err(error) => {
                return Err(error).with_context(|| format!("publishing {}", manifest.full_id()));
            }
        }
    }
    Ok(key.public().id())
}

/// Installs the configured example apps in their regions on first start, through the region
/// admin operations (the same as `healthcloud region install`): each version is downloaded from
/// the store, refused if the store revoked it or no longer trusts its key, verified, compiled
/// and recorded. Later starts serve what the regions' admins made of them; a marker file in
/// the data directory says the first start is done. Returns how many apps were installed.
pub async fn install_example_apps(
    runtime: &Runtime,
    config: &AppCloudConfig,
    data_dir: &Path,
) -> anyhow::Result<usize> {
    let marker = data_dir.join("regions-installed");
    if marker.exists() {
        return Ok(0);
    }
    let apps = example_apps()?;
    for install in &config.install {
        let Some((manifest, _)) = apps.iter().find(|(m, _)| m.full_id() == install.app) else {
            anyhow::bail!(
                "{FILE}: there is no example app {}; the built-in apps are {}",
                install.app,
                apps.iter()
                    .map(|(m, _)| m.full_id())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let admin = Admin::system("healthcloud up (first start)", &install.region);
        let app = format!("{}@{}", install.app, manifest.app.version);
        match runtime
            .region_admin()
            .install(&admin, &app, &install.grant)
            .await
        {
            Ok(_) => {}
            // Installed before the marker was written (a crash in between).
            Err(AdminError::Conflict(_))
                if runtime
                    .region_admin()
                    .show(&admin, &install.app)
                    .await
                    .is_ok() => {}
            Err(error) => {
                return Err(anyhow::anyhow!(error.public_message()))
                    .with_context(|| format!("installing {app} in {} ({FILE})", install.region));
            }
        }
    }
    std::fs::write(
        &marker,
        "the example apps were installed in their regions\n",
    )
    .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(config.install.len())
}
