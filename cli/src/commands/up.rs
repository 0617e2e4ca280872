//! `healthcloud up`: the whole system in one process.

use std::net::SocketAddr;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use healthcloud_integration::Integration;
use healthcloud_integration::auth::TokenVerifier;

use super::DataDirArgs;

/// Run everything in one process.
#[derive(Debug, clap::Args)]
pub struct UpCommand {
    #[command(flatten)]
    data: DataDirArgs,
    /// Address to listen on.
    #[arg(long, env = "HEALTHCLOUD_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Public base URL clients reach this server at (links are absolute on it).
    #[arg(long, env = "HEALTHCLOUD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Accept tokens from this issuer (`iss`) instead of the development issuer; needs --issuer-key.
    #[arg(long, env = "HEALTHCLOUD_ISSUER", requires = "issuer_key")]
    issuer: Option<String>,
    /// The issuer's Ed25519 public key (SPKI PEM file).
    #[arg(long, env = "HEALTHCLOUD_ISSUER_KEY", requires = "issuer")]
    issuer_key: Option<std::path::PathBuf>,
}

impl UpCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr));
        let mut integration =
            Integration::open(&self.data.database_url()?, &public_url, &self.data.data_dir).await?;
        if let (Some(issuer), Some(key)) = (&self.issuer, &self.issuer_key) {
            let pem = std::fs::read(key).map_err(|e| {
                anyhow::anyhow!("cannot read the issuer key {}: {e}", key.display())
            })?;
            integration.state.verifier = TokenVerifier::from_public_pem(issuer, &pem)?;
        }
        let store = integration.state.service.store().clone();
        crate::demo::ensure_data(&store).await?;
        let listener = tokio::net::TcpListener::bind(self.addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {}: {e} (is another healthcloud running? use --addr HOST:PORT)", self.addr)
        })?;
        let app = Router::new()
            .merge(integration.router())
            .route("/healthz", get(|| async { "ok" }))
            // A bug must cost one request a 500, never the connection or the process.
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                healthcloud_integration::FhirError::Internal(anyhow::anyhow!(
                    "request handler panicked"
                ))
                .into_response()
            }))
            .layer(tower_http::trace::TraceLayer::new_for_http());

        println!("healthcloud is up");
        println!(
            "  FHIR R4 API:   {public_url}/fhir/r4  (metadata: {public_url}/fhir/r4/metadata)"
        );
        println!("  health check:  {public_url}/healthz");
        println!("  data dir:      {}", self.data.data_dir.display());
        let dev_issuer = self.issuer.is_none();
        if let Some(patient) = crate::demo::demo_patient(&store)
            .await?
            .filter(|_| dev_issuer)
        {
            println!("demo tokens (12 h; mint more with `healthcloud token --role …`):");
            for (who, token) in crate::demo::tokens(&integration.issuer, &patient)? {
                println!("  {who}:\n    {token}");
            }
            println!(
                "try:\n  curl -H \"Authorization: Bearer $TOKEN\" '{public_url}/fhir/r4/Observation?patient={patient}&code=http://loinc.org|85354-9&_sort=-date&_count=5'"
            );
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    }
}
