//! `healthcloud serve integration`: a FHIR API node.

use super::NodeArgs;
use crate::server;

/// `serve integration`.
#[derive(Debug, clap::Args)]
pub struct ServeIntegrationCommand {
    #[command(flatten)]
    node: NodeArgs,
}

impl ServeIntegrationCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let node = self.node;
        let (integration, listener) = node.open().await?;
        eprintln!("FHIR API node on {}/fhir/r4", node.url(&listener)?);
        let services = server::Services {
            integration: Some(&integration),
            ..Default::default()
        };
        server::serve(listener, server::app(services, &server::Ready::now())).await
    }
}
