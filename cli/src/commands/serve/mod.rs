//! `healthcloud serve store|runtime|integration`: one part of the system per process, for
//! deployments with several nodes sharing a PostgreSQL database. Runtime nodes follow the
//! store over HTTP and each other through the database (NOTIFY plus a poll), so a grant change
//! or a revocation made through one node applies on every node within seconds.

mod integration;
mod runtime;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

use healthcloud_integration::Integration;
use healthcloud_platform::auth::TokenVerifier;
use healthcloud_platform::auth::issuers::TrustedIssuers;

use super::DataDirArgs;
use crate::server;

/// Run one part of the system: the app store, an app runtime node or the FHIR API.
#[derive(Debug, clap::Subcommand)]
pub enum ServeCommand {
    /// The app store: catalog pages, `/store/v1` (publish, download, the revocation feed).
    Store(store::ServeStoreCommand),
    /// An app runtime node: `/apps/…` and the region admin API `/admin/v1/regions/…`.
    Runtime(runtime::ServeRuntimeCommand),
    /// The integration cloud's FHIR API, `/fhir/r4`.
    Integration(integration::ServeIntegrationCommand),
}

impl ServeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ServeCommand::Store(command) => command.run().await,
            ServeCommand::Runtime(command) => command.run().await,
            ServeCommand::Integration(command) => command.run().await,
        }
    }
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
    fhir_api: FhirApiArgs,
}

/// Whom a node's FHIR API accepts: tokens of the development issuer in the data directory or
/// another, for its audience, and calls from the pages of browser apps at given origins.
#[derive(Debug, Clone, clap::Args)]
pub struct FhirApiArgs {
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
    /// Let the pages of a browser app at this origin (scheme://host[:port]) call the FHIR API
    /// (CORS; repeatable). Its calls still need a token.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = cors_origin)]
    pub cors_origins: Vec<String>,
    /// Accept tokens of this identity provider too (its issuer URL, exactly as its tokens'
    /// `iss`; repeatable): verified with the keys its OpenID discovery document points to.
    #[arg(
        long = "trust-issuer",
        value_name = "ISSUER_URL",
        env = "HEALTHCLOUD_TRUST_ISSUER"
    )]
    pub trusted_issuers: Vec<String>,
    /// The claim of a trusted provider's tokens that names the user's healthcloud role
    /// (clinician, patient or citizen); without it, patient/ scopes with a patient make a
    /// patient and user/ scopes with a Practitioner as fhirUser a clinician.
    #[arg(long, default_value = "role", value_name = "CLAIM")]
    pub role_claim: String,
    /// Let subscriptions notify endpoints inside the network (loopback, private addresses,
    /// local names) and plain http ones: for receivers in your own network, or on this
    /// machine. Without it only public https endpoints are notified.
    #[arg(long, env = "HEALTHCLOUD_ALLOW_INTERNAL_SUBSCRIPTION_ENDPOINTS")]
    pub allow_internal_subscription_endpoints: bool,
}

/// healthcloud's SMART authorization server (`/oauth2/…`), run when a region's identity
/// provider is configured: users sign in there, and the region's SMART web apps (their
/// installs are their client registrations) get tokens for the FHIR API.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthorizationArgs {
    /// The region's OpenID Connect provider (its issuer URL; https, http only on loopback):
    /// users sign in there. Register healthcloud with it as a confidential client whose
    /// redirect URI is <public-url>/oauth2/login/callback.
    #[arg(
        long = "identity-provider",
        value_name = "ISSUER_URL",
        env = "HEALTHCLOUD_IDENTITY_PROVIDER",
        requires = "identity_provider_secret"
    )]
    pub identity_provider: Option<String>,
    /// healthcloud's client id at the identity provider.
    #[arg(long, value_name = "ID", default_value = "healthcloud")]
    pub identity_provider_client_id: String,
    /// A file holding healthcloud's client secret at the identity provider.
    #[arg(
        long,
        value_name = "FILE",
        env = "HEALTHCLOUD_IDENTITY_PROVIDER_SECRET_FILE"
    )]
    pub identity_provider_secret: Option<PathBuf>,
    /// Read one of healthcloud's claims (role, fhirUser, patient, org, practitioner,
    /// region) from the provider's ID token claim of another name, e.g. org=hospital_org
    /// (repeatable; by default each is read from a claim of its own name).
    #[arg(long = "identity-provider-claim", value_name = "NAME=CLAIM")]
    pub identity_provider_claims: Vec<String>,
}

impl AuthorizationArgs {
    /// The authorization server for `integration` (whose database and public URL it shares),
    /// issuing tokens to the apps in `clients`, when an identity provider is configured; the
    /// FHIR API then takes and advertises its tokens.
    pub async fn open(
        &self,
        integration: Integration,
        data_dir: &std::path::Path,
        clients: healthcloud_platform::auth::smart::Clients,
    ) -> anyhow::Result<(Integration, Option<healthcloud_oauth::AuthorizationServer>)> {
        let (Some(issuer), Some(secret_file)) =
            (&self.identity_provider, &self.identity_provider_secret)
        else {
            return Ok((integration, None));
        };
        let client_secret = std::fs::read_to_string(secret_file)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the identity provider's client secret {}: {e}",
                    secret_file.display()
                )
            })?
            .trim()
            .to_owned();
        anyhow::ensure!(
            !client_secret.is_empty(),
            "{} is empty: it must hold healthcloud's client secret at the identity provider",
            secret_file.display()
        );
        let server = healthcloud_oauth::AuthorizationServer::open(
            integration.database.clone(),
            data_dir,
            healthcloud_oauth::OAuthConfig {
                public_url: integration.public_url.clone(),
                fhir_base: integration.state.config.base_url.clone(),
                identity_provider: Some(healthcloud_oauth::IdentityProviderConfig {
                    issuer: issuer.clone(),
                    client_id: self.identity_provider_client_id.clone(),
                    client_secret,
                    claims: healthcloud_oauth::ClaimNames::default()
                        .mapped(&self.identity_provider_claims)
                        .map_err(|e| anyhow::anyhow!("--identity-provider-claim {e}"))?,
                }),
                clients,
            },
        )
        .await?;
        let integration = integration.with_authorization_server(
            server.endpoints().clone(),
            server.keys().clone(),
            server.clients().clone(),
        );
        Ok((integration, Some(server)))
    }
}

fn cors_origin(text: &str) -> Result<String, String> {
    healthcloud_integration::api::origin(text)
}

impl FhirApiArgs {
    /// Makes `integration` verify the configured issuer's tokens (and the trusted providers'),
    /// for its audience, and answer CORS for the configured origins.
    pub fn apply(&self, integration: &mut Integration) -> anyhow::Result<()> {
        if let (Some(issuer), Some(key)) = (&self.issuer, &self.issuer_key) {
            let pem = std::fs::read(key).map_err(|e| {
                anyhow::anyhow!("cannot read the issuer key {}: {e}", key.display())
            })?;
            integration.state.verifier = TokenVerifier::from_public_pem(issuer, &pem)?;
        }
        if !self.trusted_issuers.is_empty() {
            let mut trusted = TrustedIssuers::default();
            for issuer in &self.trusted_issuers {
                trusted = trusted.with(issuer, &self.role_claim)?;
            }
            integration.state.verifier = integration.state.verifier.clone().trusting(trusted);
        }
        let config = std::sync::Arc::make_mut(&mut integration.state.config);
        if let Some(audience) = &self.fhir_audience {
            config.audience = audience.clone();
        }
        config.cors_origins = self.cors_origins.clone();
        config.subscription_endpoints.allow_internal = self.allow_internal_subscription_endpoints;
        Ok(())
    }
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
        self.fhir_api.apply(&mut integration)?;
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
