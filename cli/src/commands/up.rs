//! `healthcloud up`: the whole system in one process.

use std::net::SocketAddr;

use healthcloud_integration::Integration;
use healthcloud_launcher::{Launch, LaunchConfig};

use super::DataDirArgs;
use super::serve::{AuthorizationArgs, FhirApiArgs};
use crate::app_cloud::{self, AppCloudConfig};
use crate::server;
use crate::sources::{self, SourceArgs};

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
    #[command(flatten)]
    fhir_api: FhirApiArgs,
    #[command(flatten)]
    authorization: AuthorizationArgs,
    #[command(flatten)]
    sources: SourceArgs,
    /// Synthetic patients generated on a first start (an empty data directory).
    #[arg(long, default_value_t = crate::demo::DEMO_PATIENTS)]
    demo_patients: usize,
}

impl UpCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr));
        let mut integration =
            Integration::open(&self.data.database_url()?, &public_url, &self.data.data_dir).await?;
        self.fhir_api.apply(&mut integration)?;
        let store = integration.state.service.store_for_loading().clone();
        let sectors = crate::demo_sources::start(&self.data.data_dir).await?;
        crate::demo::ensure_world(
            crate::demo::SectorStores {
                hospital: &store,
                gp: sectors.gp.integration.state.service.store_for_loading(),
                municipality: sectors
                    .municipality
                    .integration
                    .state
                    .service
                    .store_for_loading(),
                source_names: (sectors.gp.sector.name, sectors.municipality.sector.name),
            },
            self.demo_patients,
        )
        .await?;
        let demo_sources =
            crate::demo_sources::register(&integration.state.service, &sectors).await?;
        let sources = sources::start(&integration, &self.data.data_dir, &self.sources).await?;
        let config = AppCloudConfig::load(&self.data.data_dir)?;
        let runtime =
            server::app_cloud(&integration, &self.data.data_dir, config.limits.clone()).await?;
        let app_store = server::app_store(&integration, &self.data.data_dir, &runtime).await?;
        let (integration, authorization) = self
            .authorization
            .open(
                integration,
                &self.data.data_dir,
                runtime.smart_clients().clone(),
            )
            .await?;
        let listener = server::listen(self.addr).await?;
        let bound = listener.local_addr()?;
        // This process's own calls (publishing the example apps, following the store) go over
        // loopback even when the listener takes every address.
        let local_url = if bound.ip().is_unspecified() {
            let loopback: std::net::IpAddr = match bound {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            };
            format!("http://{}", SocketAddr::new(loopback, bound.port()))
        } else {
            format!("http://{bound}")
        };
        let ready = server::Ready::default();
        // The launcher mints tokens of any role with the development issuer's key: never beside
        // a real issuer, and only where no one but this machine's users can reach it.
        let launcher = match &self.fhir_api.issuer {
            None if healthcloud_launcher::mountable_on(bound) => Launcher::Mounted,
            None => Launcher::NotLoopback,
            Some(_) => Launcher::RealIssuer,
        };
        let pages = match launcher {
            Launcher::Mounted => Some(healthcloud_launcher::router(Launch::new(LaunchConfig {
                issuer: integration.issuer.clone(),
                verifier: integration.state.verifier.clone(),
                service: integration.state.service.clone(),
                runtime: runtime.clone(),
                store_url: local_url.clone(),
                public_url: public_url.clone(),
                regions: config.install.iter().map(|i| i.region.clone()).collect(),
                listen_addr: bound,
                authorization: authorization.clone(),
            })?)),
            Launcher::NotLoopback | Launcher::RealIssuer => None,
        };
        let app = server::app(
            server::Services {
                pages,
                sources: Some(&sources),
                authorization: authorization.as_ref(),
                ..server::Services::all(&integration, &runtime, &app_store)
            },
            &ready,
        );
        let serving = tokio::spawn(server::serve(listener, app));
        // The example apps go through the store's API with tokens of the development
        // issuer; with a real issuer configured those are refused, and nothing is published
        // on anyone's behalf.
        let dev_issuer = self.fhir_api.issuer.is_none();
        let key_id = if dev_issuer {
            eprintln!("publishing the example apps through the store at {local_url}/store…");
            let key_id = app_cloud::publish_example_apps(
                &local_url,
                &self.data.data_dir,
                &integration.issuer,
            )
            .await?;
            Some(key_id)
        } else {
            None
        };
        // The runtime follows the store through its public API, as a separate node would.
        server::serve_regions(
            &runtime,
            &local_url,
            Some(app_store.feed_key()),
            Some(app_store.revocations_changed()),
            &self.data.data_dir,
        )
        .await?;
        let installed = if dev_issuer {
            eprintln!("installing the example apps…");
            app_cloud::install_example_apps(&runtime, &config, &self.data.data_dir).await?
        } else {
            0
        };
        ready.set();

        println!("healthcloud is up");
        match launcher {
            Launcher::Mounted => println!(
                "  launch page:   {public_url}/  (open the apps, the region and store admin pages and the citizen page in a browser)"
            ),
            Launcher::NotLoopback => println!(
                "  launch page:   not served: {bound} is not a loopback address, and the launch page \
                 mints tokens for any role (listen on 127.0.0.1 to use it)"
            ),
            Launcher::RealIssuer => {}
        }
        println!(
            "  FHIR R4 API:   {public_url}/fhir/r4  (metadata: {public_url}/fhir/r4/metadata)"
        );
        if let Some(authorization) = &authorization {
            println!(
                "  SMART apps:    authorized at {}  (users sign in at {}; SMART web apps installed in a region are its clients)",
                authorization.endpoints().issuer(),
                self.authorization
                    .identity_provider
                    .as_deref()
                    .unwrap_or_default()
            );
        }
        println!("  health check:  {public_url}/healthz");
        if demo_sources.is_empty() {
            println!(
                "  demo sectors:  none (start on an empty data directory for the demo's GP system and municipal care record; configured sources are listed above)"
            );
        } else {
            println!(
                "  sources:       each sector's own FHIR server, read through per patient (nothing copied; the hospital's record is this server's own store):"
            );
        }
        for node in demo_sources {
            println!(
                "    {:<13} {}  ({}, {})",
                node.sector.name, node.fhir_base, node.sector.description, node.sector.organization
            );
        }
        println!(
            "  app store:     {public_url}/store  (API: {public_url}/store/v1, OpenAPI: {public_url}/store/v1/openapi.json)"
        );
        match &key_id {
            Some(key_id) => println!(
                "    publisher '{}' signs the example apps with key {key_id}",
                app_cloud::DEMO_PUBLISHER.0
            ),
            None => println!(
                "    the example apps are not published with an external issuer: publish them with 'healthcloud app publish --token …'"
            ),
        }
        println!(
            "  apps ({} installs{}; change them with `healthcloud region …`{}):",
            runtime.installs().len(),
            if installed > 0 {
                ", just installed as configured in app-cloud.toml"
            } else {
                ""
            },
            if launcher == Launcher::Mounted {
                " or the launch page"
            } else {
                ""
            }
        );
        for install in runtime.installs() {
            let id = &install.identity;
            println!(
                "    {public_url}/apps/{}/{}/  ({})",
                id.region, id.id, id.version
            );
        }
        println!("  data dir:      {}", self.data.data_dir.display());
        if let Some(patient) = crate::demo::demo_patient(&store)
            .await?
            .filter(|_| dev_issuer)
        {
            println!("demo tokens (12 h; mint more with `healthcloud token --role …`):");
            for (who, token) in crate::demo::tokens(&integration.issuer, &patient, &public_url)? {
                println!("  {who}:\n    {token}");
            }
            println!(
                "try:\n  curl -H \"Authorization: Bearer $TOKEN\" '{public_url}/fhir/r4/Observation?patient={patient}&code=http://loinc.org|85354-9&_sort=-date&_count=5'"
            );
            println!(
                "  curl -H \"Authorization: Bearer $APP_TOKEN\" {public_url}/apps/hovedstaden/examples/bp-monitor/"
            );
        }
        serving.await?
    }
}

/// Whether `up` serves the development launch pages, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launcher {
    /// Development issuer on a loopback listener.
    Mounted,
    /// Development issuer, but the listener is reachable from other machines.
    NotLoopback,
    /// Tokens come from a real issuer: the launcher could not mint them.
    RealIssuer,
}
