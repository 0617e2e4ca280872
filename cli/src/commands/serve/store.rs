//! `healthcloud serve store`: an app store node.

use healthcloud_runtime::Limits;

use super::NodeArgs;
use crate::server;

/// `serve store`.
#[derive(Debug, clap::Args)]
pub struct ServeStoreCommand {
    #[command(flatten)]
    node: NodeArgs,
}

impl ServeStoreCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let node = self.node;
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
        let services = server::Services {
            store: Some(&store),
            ..Default::default()
        };
        server::serve(listener, server::app(services, &server::Ready::now())).await
    }
}
