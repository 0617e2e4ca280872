//! `healthcloud serve runtime`: an app runtime node following a store.

use std::path::PathBuf;

use anyhow::Context;
use healthcloud_package::client::StoreClient;
use healthcloud_package::keys::{KeyId, PublicKey};
use healthcloud_runtime::Limits;

use super::NodeArgs;
use crate::server;

/// A runtime node: a node, and the store it follows.
#[derive(Debug, clap::Args)]
pub struct ServeRuntimeCommand {
    #[command(flatten)]
    node: NodeArgs,
    /// The app store's base URL: packages, components and the revocation feed come from it.
    #[arg(long, env = "HEALTHCLOUD_STORE_URL")]
    store_url: String,
    /// The store's key, which signs its revocation feed and version records: a PEM file
    /// (`<store data dir>/store/store.key.pub`) or the key's id (64 hex characters, printed
    /// by `healthcloud serve store`). Needed unless the store is on loopback, whose key is
    /// then pinned from its first answer.
    #[arg(long, env = "HEALTHCLOUD_STORE_KEY")]
    store_key: Option<String>,
}

impl ServeRuntimeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let ServeRuntimeCommand {
            node,
            store_url,
            store_key,
        } = self;
        let (integration, listener) = node.open().await?;
        let feed_key = match &store_key {
            Some(store_key) => Some(pinned_store_key(&store_url, store_key).await?),
            None => {
                eprintln!(
                    "note: no --store-key: the key the store at {store_url} presents first is pinned (allowed only for a store on this machine)"
                );
                None
            }
        };
        let runtime =
            server::app_cloud(&integration, &node.data.data_dir, Limits::default()).await?;
        server::serve_regions(&runtime, &store_url, feed_key, None, &node.data.data_dir).await?;
        eprintln!(
            "app runtime node on {} following the store at {store_url} ({} installs)",
            node.url(&listener)?,
            runtime.installs().len()
        );
        let services = server::Services {
            runtime: Some(&runtime),
            ..Default::default()
        };
        server::serve(listener, server::app(services, &server::Ready::now())).await
    }
}

/// The store key `--store-key` names: read from a PEM file, or, given as a key id, the key
/// the store presents checked against it.
async fn pinned_store_key(store_url: &str, store_key: &str) -> anyhow::Result<PublicKey> {
    if let Ok(key_id) = KeyId::try_from(store_key.to_owned()) {
        let store = StoreClient::new(store_url, None)?;
        return healthcloud_runtime::regions::trust::store_key_by_id(&store, &key_id).await;
    }
    let path = PathBuf::from(store_key);
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the store key {} (--store-key takes a PEM file or a key id of 64 hex characters)",
            path.display()
        )
    })?;
    PublicKey::from_pem(&pem)
        .with_context(|| format!("{} is not the store's public key (PEM)", path.display()))
}
