//! `healthcloud serve store|runtime|integration`: one part of the system per process, for
//! deployments with several nodes sharing a PostgreSQL database. Runtime nodes follow the
//! store over HTTP and each other through the database (NOTIFY plus a poll), so a grant change
//! or a revocation made through one node applies on every node within seconds.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use healthcloud_integration::Integration;
use healthcloud_platform::auth::TokenVerifier;
use healthcloud_runtime::Limits;
use healthcloud_store::client::StoreClient;
use healthcloud_store::keys::{KeyId, PublicKey};

use super::DataDirArgs;
use crate::server;

/// Run one part of the system: the app store, an app runtime node or the FHIR API.
#[derive(Debug, clap::Subcommand)]
pub enum ServeCommand {
    /// The app store: catalog pages, `/store/v1` (publish, download, the revocation feed).
    Store(NodeArgs),
    /// An app runtime node: `/apps/…` and the region admin API `/admin/v1/regions/…`.
    Runtime(RuntimeArgs),
    /// The integration cloud's FHIR API, `/fhir/r4`.
    Integration(NodeArgs),
}

/// What every node needs.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    data: DataDirArgs,
    /// Address to listen on.
    #[arg(long, env = "HEALTHCLOUD_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Public base URL clients reach this node at (links are absolute on it).
    #[arg(long, env = "HEALTHCLOUD_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    issuer: IssuerArgs,
}

/// A runtime node: a node, and the store it follows.
#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
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

/// Whose tokens a node accepts: the development issuer in the data directory, or another.
#[derive(Debug, Clone, clap::Args)]
pub struct IssuerArgs {
    /// Accept tokens from this issuer (`iss`) instead of the development issuer; needs --issuer-key.
    #[arg(long, env = "HEALTHCLOUD_ISSUER", requires = "issuer_key")]
    pub issuer: Option<String>,
    /// The issuer's Ed25519 public key (SPKI PEM file; `healthcloud token --public-key` prints
    /// the development issuer's).
    #[arg(long, env = "HEALTHCLOUD_ISSUER_KEY", requires = "issuer")]
    pub issuer_key: Option<PathBuf>,
    /// The audience (`aud`) the FHIR API accepts tokens for, as the issuer writes it
    /// (default: its base URL, <public-url>/fhir/r4). Tokens for anything else are refused.
    #[arg(long, env = "HEALTHCLOUD_FHIR_AUDIENCE")]
    pub fhir_audience: Option<String>,
}

impl IssuerArgs {
    /// Makes `integration` verify this issuer's tokens, when one is configured.
    pub fn apply(&self, integration: &mut Integration) -> anyhow::Result<()> {
        if let (Some(issuer), Some(key)) = (&self.issuer, &self.issuer_key) {
            let pem = std::fs::read(key).map_err(|e| {
                anyhow::anyhow!("cannot read the issuer key {}: {e}", key.display())
            })?;
            integration.state.verifier = TokenVerifier::from_public_pem(issuer, &pem)?;
        }
        if let Some(audience) = &self.fhir_audience {
            std::sync::Arc::make_mut(&mut integration.state.config).audience = audience.clone();
        }
        Ok(())
    }
}

impl ServeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ServeCommand::Store(node) => {
                let (integration, listener) = node.open().await?;
                // The store checks uploads with the runtime's install-time check; it compiles
                // and never instantiates.
                let checker =
                    server::app_cloud(&integration, &node.data.data_dir, Limits::default()).await?;
                let store = server::app_store(&integration, &node.data.data_dir, &checker).await?;
                eprintln!(
                    "app store node on {} (feed key {})",
                    node.url(&listener)?,
                    store.feed_key().id()
                );
                server::serve(listener, server::node_router(store.router())).await
            }
            ServeCommand::Runtime(RuntimeArgs {
                node,
                store_url,
                store_key,
            }) => {
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
                server::serve_regions(&runtime, &store_url, feed_key, None, &node.data.data_dir)
                    .await?;
                eprintln!(
                    "app runtime node on {} following the store at {store_url} ({} installs)",
                    node.url(&listener)?,
                    runtime.installs().len()
                );
                server::serve(listener, server::node_router(runtime.router())).await
            }
            ServeCommand::Integration(node) => {
                let (integration, listener) = node.open().await?;
                eprintln!("FHIR API node on {}/fhir/r4", node.url(&listener)?);
                server::serve(listener, server::node_router(integration.router())).await
            }
        }
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

impl NodeArgs {
    /// Connects to the database (migrating it) and binds the address.
    async fn open(&self) -> anyhow::Result<(Integration, tokio::net::TcpListener)> {
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr));
        let mut integration =
            Integration::open(&self.data.database_url()?, &public_url, &self.data.data_dir).await?;
        self.issuer.apply(&mut integration)?;
        let listener = server::listen(self.addr).await?;
        Ok((integration, listener))
    }

    fn url(&self, listener: &tokio::net::TcpListener) -> anyhow::Result<String> {
        Ok(match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", listener.local_addr()?),
        })
    }
}
