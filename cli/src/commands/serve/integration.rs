//! `healthcloud serve integration`: a FHIR API node, reading through the upstream sources
//! of its data directory's `sources.toml` and its `--source` flags.

use super::{AuthorizationArgs, NodeArgs};
use crate::server;
use crate::sources::{self, SourceArgs};

/// `serve integration`.
#[derive(Debug, clap::Args)]
pub struct ServeIntegrationCommand {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    authorization: AuthorizationArgs,
}

/// How often a FHIR API node reads the regions' SMART web app installs.
const SMART_INSTALLS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

impl ServeIntegrationCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let node = self.node;
        let (integration, listener) = node.open().await?;
        let sources = sources::start(&integration, &node.data.data_dir, &self.sources).await?;
        // The regions' SMART web apps, as the app cloud's nodes record their installs.
        let clients = healthcloud_platform::auth::smart::Clients::default();
        if self.authorization.identity_provider.is_some() {
            healthcloud_runtime::regions::smart::follow(
                integration.database.clone(),
                clients.clone(),
                SMART_INSTALLS_POLL,
            )
            .await?;
        }
        let (integration, authorization) = self
            .authorization
            .open(integration, &node.data.data_dir, clients)
            .await?;
        eprintln!(
            "FHIR API node on {}/fhir/r4 (sources admin API: /admin/v1/sources)",
            node.url(&listener)?
        );
        if let Some(authorization) = &authorization {
            eprintln!(
                "SMART authorization server at {} (users sign in at the identity provider)",
                authorization.endpoints().issuer()
            );
        }
        let services = server::Services {
            integration: Some(&integration),
            sources: Some(&sources),
            authorization: authorization.as_ref(),
            ..Default::default()
        };
        server::serve(listener, server::app(services, &server::Ready::now())).await
    }
}
