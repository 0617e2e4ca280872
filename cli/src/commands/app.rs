//! `healthcloud app new|build|run`: the vendor's development loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use healthcloud_guestbuild::{Built, Lockfile};
use healthcloud_integration::Integration;
use healthcloud_integration::auth::{Role, TokenRequest};
use healthcloud_runtime::{AppEngine, Limits};
use healthcloud_store::manifest::{MANIFEST_FILE, Manifest};

use crate::server;

/// Write, build and run an app.
#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Create a new app from a template: a Rust crate and its healthcloud.toml manifest.
    New(NewCommand),
    /// Build the app in DIR into a component and check its imports against its manifest.
    Build(BuildCommand),
    /// Build the app and serve it locally on synthetic data, printing its URL and a token.
    Run(RunCommand),
}

impl AppCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            AppCommand::New(command) => command.run(),
            AppCommand::Build(command) => command.run().await.map(|_| ()),
            AppCommand::Run(command) => command.run().await,
        }
    }
}

/// `app new NAME`.
#[derive(Debug, clap::Args)]
pub struct NewCommand {
    /// The app's id (a-z, 0-9, '-'); also the directory created.
    name: String,
    /// Your publisher id, the namespace of your apps.
    #[arg(long, default_value = "my-publisher")]
    publisher: String,
    /// The healthcloud-sdk crate to depend on (defaults to the SDK of this checkout).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

impl NewCommand {
    fn run(self) -> anyhow::Result<()> {
        let dir = PathBuf::from(&self.name);
        if dir.exists() {
            bail!(
                "{} already exists: choose another name or remove it",
                dir.display()
            );
        }
        let sdk = match self.sdk {
            Some(sdk) => sdk,
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
        };
        let sdk = sdk.canonicalize().with_context(|| {
            format!(
                "the SDK is not at {}: pass --sdk PATH/TO/healthcloud/sdk",
                sdk.display()
            )
        })?;
        let fill = |template: &str| {
            template
                .replace("{name}", &self.name)
                .replace("{publisher}", &self.publisher)
                .replace("{sdk}", &sdk.display().to_string())
                .replace("{{", "{")
                .replace("}}", "}")
        };
        let manifest = fill(include_str!("../template/healthcloud.toml.in"));
        Manifest::parse(&manifest).context("the app name or publisher is not valid")?;
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(
            dir.join("Cargo.toml"),
            fill(include_str!("../template/Cargo.toml.in")),
        )?;
        std::fs::write(
            dir.join("src/lib.rs"),
            fill(include_str!("../template/lib.rs.in")),
        )?;
        std::fs::write(dir.join(MANIFEST_FILE), manifest)?;
        std::fs::write(
            dir.join(".gitignore"),
            include_str!("../template/gitignore.in"),
        )?;
        println!(
            "created {}/ (Cargo.toml, src/lib.rs, {MANIFEST_FILE})",
            self.name
        );
        println!(
            "next:\n  healthcloud app build {0}\n  healthcloud app run {0}",
            self.name
        );
        Ok(())
    }
}

/// `app build [DIR]`.
#[derive(Debug, clap::Args)]
pub struct BuildCommand {
    /// The app's directory (with Cargo.toml and healthcloud.toml).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// A built and checked app.
pub struct BuiltApp {
    pub manifest: Manifest,
    pub component: Vec<u8>,
}

impl BuildCommand {
    pub async fn run(self) -> anyhow::Result<BuiltApp> {
        let manifest_path = self.dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!("no {MANIFEST_FILE} in {}: run this in an app's directory (`healthcloud app new NAME` makes one)", self.dir.display())
        })?;
        let manifest = Manifest::parse(&text)?;
        eprintln!(
            "building {} {} for {}…",
            manifest.full_id(),
            manifest.app.version,
            healthcloud_guestbuild::TARGET
        );
        let dir = self.dir.clone();
        let built = tokio::task::spawn_blocking(move || {
            healthcloud_guestbuild::build(
                &dir.join("Cargo.toml"),
                &dir.join("target"),
                Lockfile::Update,
            )
        })
        .await??;
        let package_dir = self.dir.canonicalize()?;
        let Some(Built { wasm, .. }) = built.into_iter().find(|b| b.package_dir == package_dir)
        else {
            bail!(
                "{} built no component of its own: its crate needs `[lib] crate-type = [\"cdylib\"]`",
                self.dir.display()
            );
        };
        let component = std::fs::read(&wasm)?;
        let engine = AppEngine::new(
            &Limits {
                pool_instances: 1,
                ..Limits::default()
            },
            None,
        )?;
        let check = (manifest.clone(), component.clone());
        tokio::task::spawn_blocking(move || engine.validate(&check.0, &check.1))
            .await?
            .with_context(|| format!("{} does not install", wasm.display()))?;
        println!(
            "built {} {}: {} ({} KiB, sha256 {})",
            manifest.full_id(),
            manifest.app.version,
            wasm.display(),
            component.len() / 1024,
            healthcloud_runtime::install::digest(&component)
        );
        println!(
            "its imports match the {} capabilities its manifest requests",
            manifest.requested.len()
        );
        Ok(BuiltApp {
            manifest,
            component,
        })
    }
}

/// `app run [DIR]`.
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
    async fn run(self) -> anyhow::Result<()> {
        let built = BuildCommand {
            dir: self.dir.clone(),
        }
        .run()
        .await?;
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("target/healthcloud-dev"));
        std::fs::create_dir_all(&data_dir)?;
        let url = format!("sqlite://{}", data_dir.join("healthcloud.db").display());
        let public_url = format!("http://{}", self.addr);
        let integration = Integration::open(&url, &public_url, &data_dir).await?;
        let store = integration.state.service.store().clone();
        crate::demo::ensure_data_of_size(&store, DEV_PATIENTS).await?;
        let patient = match self.patient {
            Some(patient) => patient,
            None => crate::demo::demo_patient(&store)
                .await?
                .context("the local data has no patients")?,
        };
        let runtime = server::app_cloud(&integration, &data_dir, Limits::default()).await?;
        let grant = built.manifest.capabilities();
        let app_id = built.manifest.full_id();
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
                Role::Clinician,
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
        println!("{app_id} is running with everything its manifest requests granted");
        println!("  app:     {public_url}/apps/{DEV_REGION}/{app_id}/");
        println!("  patient: {patient} (synthetic; --patient ID for another)");
        println!("  token:   {token}");
        println!(
            "try:\n  curl -H \"Authorization: Bearer {token}\" {public_url}/apps/{DEV_REGION}/{app_id}/"
        );
        server::serve(listener, server::router(&integration, &runtime)).await
    }
}

/// Synthetic patients in a development data directory.
const DEV_PATIENTS: usize = 50;
