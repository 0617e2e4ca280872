//! `healthcloud app run`: the app served locally on synthetic data, everything it requests
//! granted.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use healthcloud_integration::Integration;
use healthcloud_package::manifest::Audience;
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_runtime::Limits;

use super::build::build;
use crate::server;

#[derive(Debug, clap::Args)]
pub struct RunCommand {
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The patient in context (defaults to a synthetic patient).
    #[arg(long)]
    patient: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Where the local data lives (synthetic patients, audit trail).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The region the development loop installs into.
const DEV_REGION: &str = "local";

impl RunCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let built = build(&self.dir).await?;
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("target/healthcloud-dev"));
        std::fs::create_dir_all(&data_dir)?;
        let url = format!("sqlite://{}", data_dir.join("healthcloud.db").display());
        let public_url = format!("http://{}", self.addr);
        let integration = Integration::open(&url, &public_url, &data_dir).await?;
        let store = integration.state.service.store_for_loading().clone();
        crate::demo::ensure_data_of_size(&store, DEV_PATIENTS).await?;
        let patient = match self.patient {
            Some(patient) => patient,
            None => crate::demo::demo_patient(&store)
                .await?
                .context("the local data has no patients")?,
        };
        let runtime = server::app_cloud(&integration, &data_dir, Limits::default()).await?;
        // The developer's own app on their own machine: a local mock server behind an
        // outbound-http:localhost:<port> grant is fine here, unlike in a region.
        let grant = healthcloud_runtime::Grant::new(built.manifest.capabilities())
            .allowing_internal_addresses(true);
        let app_id = built.manifest.full_id();
        // The token's role is one the app declares as its audience: the runtime opens the
        // app for no other.
        let role = match built.manifest.app.audience.first() {
            Some(Audience::Patient) => Role::Patient,
            Some(Audience::Citizen) => Role::Citizen,
            Some(Audience::Clinician) | None => Role::Clinician,
        };
        runtime.install(
            DEV_REGION,
            built.manifest,
            &built.component,
            "local-development",
            grant,
        )?;
        let token = integration
            .issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some("developer".into()),
                    region: Some(DEV_REGION.into()),
                    patient: Some(patient.clone()),
                    ttl_secs: Some(12 * 3600),
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
        let listener = server::listen(self.addr).await?;
        println!(
            "{app_id} is running with everything its manifest requests granted (outbound-http to addresses inside your network included)"
        );
        println!("  app:     {public_url}/apps/{DEV_REGION}/{app_id}/");
        println!("  patient: {patient} (synthetic; --patient ID for another)");
        println!("  token:   {token}");
        println!(
            "try:\n  curl -H \"Authorization: Bearer {token}\" {public_url}/apps/{DEV_REGION}/{app_id}/"
        );
        let app_store = server::app_store(&integration, &data_dir, &runtime).await?;
        let router = server::app(
            server::Services::all(&integration, &runtime, &app_store),
            &server::Ready::now(),
        );
        server::serve(listener, router).await
    }
}

/// Synthetic patients in a development data directory.
const DEV_PATIENTS: usize = 50;
