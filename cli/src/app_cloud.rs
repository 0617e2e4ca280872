//! The app cloud's local configuration (`app-cloud.toml` in the data directory): limits and
//! which example apps each demo region installs with which grant.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use healthcloud_integration::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_runtime::{Limits, Runtime};
use healthcloud_store::keys::{KeyId, SecretKey};
use healthcloud_store::manifest::{Capability, Manifest};
use healthcloud_store::package::{Package, SignedPackage};
use serde::Deserialize;

use healthcloud_store::client::{AppVersion, StoreClient};

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

/// Installs the configured example apps as the store at `server` serves them: the signed
/// package and the component are downloaded, a version the store revoked or whose key it no
/// longer trusts is refused, and the runtime checks the signature and the bytes before it
/// compiles them. Compiling is CPU work: it runs off the executor, and compiled code is cached
/// in the data directory, so a restart is quick.
pub async fn install_example_apps(
    runtime: &Runtime,
    config: &AppCloudConfig,
    server: &str,
) -> anyhow::Result<usize> {
    let apps = example_apps()?;
    let store = StoreClient::new(server, None)?;
    let mut downloaded: HashMap<String, (SignedPackage, Vec<u8>)> = HashMap::new();
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
        let grant = install
            .grant
            .iter()
            .map(|c| Capability::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| {
                format!("{FILE}: the grant of {} in {}", install.app, install.region)
            })?;
        if !downloaded.contains_key(&install.app) {
            let package = download(&store, manifest).await?;
            downloaded.insert(install.app.clone(), package);
        }
        let (signed, component) = downloaded[&install.app].clone();
        let (runtime, region) = (runtime.clone(), install.region.clone());
        tokio::task::spawn_blocking(move || {
            runtime.install_package(&region, &signed, &component, grant)
        })
        .await?
        .with_context(|| format!("installing {} in {}", install.app, install.region))?;
    }
    Ok(config.install.len())
}

/// The signed package and component of `manifest`'s version, as the store serves them, if the
/// store still vouches for them.
async fn download(
    store: &StoreClient,
    manifest: &Manifest,
) -> anyhow::Result<(SignedPackage, Vec<u8>)> {
    let version = AppVersion {
        publisher: manifest.app.publisher.clone(),
        app: manifest.app.id.clone(),
        version: manifest.app.version.clone(),
    };
    let published = store
        .version(&version)
        .await
        .with_context(|| format!("looking up {version} in the store"))?;
    if let Some(revoked) = &published.revoked {
        anyhow::bail!(
            "{version} was revoked by the store at {}: {}",
            revoked.at,
            revoked.reason
        );
    }
    match published.signature.as_deref() {
        Some("valid") => {}
        other => anyhow::bail!(
            "the store does not vouch for {version}'s signature: {}",
            other.unwrap_or("no verdict")
        ),
    }
    let component = store
        .component(&version)
        .await
        .with_context(|| format!("downloading {version}"))?;
    Ok((published.signed, component))
}
