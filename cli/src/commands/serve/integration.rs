//! `healthcloud serve integration`: a FHIR API node, reading through the upstream sources
//! of its data directory's `sources.toml` and its `--source` flags.

use super::NodeArgs;
use crate::server;
use crate::sources::{self, SourceArgs};

/// `serve integration`.
#[derive(Debug, clap::Args)]
pub struct ServeIntegrationCommand {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    sources: SourceArgs,
}

impl ServeIntegrationCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let node = self.node;
        let (integration, listener) = node.open().await?;
        let sources = sources::start(&integration, &node.data.data_dir, &self.sources).await?;
        eprintln!(
            "FHIR API node on {}/fhir/r4 (sources admin API: /admin/v1/sources)",
            node.url(&listener)?
        );
        let services = server::Services {
            integration: Some(&integration),
            sources: Some(&sources),
            ..Default::default()
        };
        server::serve(listener, server::app(services, &server::Ready::now())).await
    }
}
