//! One module per subcommand; each is a clap struct with `async fn run(self)`.

mod app;
mod data;
mod keygen;
mod region;
mod rotate_signing_key;
mod security_log;
mod serve;
mod source;
mod store;
mod table;
mod token;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use healthcloud_package::client::StoreClient;

/// The healthcloud command line.
#[derive(Debug, Parser)]
#[command(
    name = "healthcloud",
    version,
    about = "An open national health cloud: FHIR integration, app cloud and app store"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Runs the subcommand given.
    pub async fn run(self) -> anyhow::Result<()> {
        self.command.run().await
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on embedded SQLite, with demo data on first start.
    Up(up::UpCommand),
    /// Mint a development access token signed by the data directory's issuer key.
    Token(token::TokenCommand),
    /// Generate or import FHIR data.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Write, build, run, sign, publish and verify a health app (the vendor's loop).
    #[command(subcommand)]
    App(app::AppCommand),
    /// Generate an ed25519 signing key for publishing apps.
    Keygen(keygen::KeygenCommand),
    /// Administer the app store: publishers, their keys, and published versions.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Run one part of the system (for several nodes sharing a PostgreSQL database).
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// Administer a region's installs: install, grant, revoke, upgrade, uninstall, list.
    #[command(subcommand)]
    Region(region::RegionCommand),
    /// Show the security log (probes out of reach, foreign region admin requests, 429s).
    SecurityLog(security_log::SecurityLogCommand),
    /// The upstream FHIR sources and their health: list, add, remove, check.
    #[command(subcommand)]
    Source(source::SourceCommand),
    /// Add a new signing key to the SMART authorization server's keys (rotation).
    RotateSigningKey(rotate_signing_key::RotateSigningKeyCommand),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Up(command) => command.run().await,
            Command::Token(command) => command.run().await,
            Command::Data(command) => command.run().await,
            Command::App(command) => command.run().await,
            Command::Keygen(command) => command.run().await,
            Command::Store(command) => command.run().await,
            Command::Serve(command) => command.run().await,
            Command::Region(command) => command.run().await,
            Command::SecurityLog(command) => command.run().await,
            Command::Source(command) => command.run().await,
            Command::RotateSigningKey(command) => command.run().await,
        }
    }
}

/// Where healthcloud keeps its state, shared by every command that touches it.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArgs {
    /// Data directory (database, development issuer key).
    #[arg(
        long,
        env = "HEALTHCLOUD_DATA_DIR",
        default_value = "./healthcloud-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL; defaults to the SQLite file in the data directory.
    #[arg(long, env = "HEALTHCLOUD_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DataDirArgs {
    /// The database URL to use, creating the data directory if needed.
    pub fn database_url(&self) -> anyhow::Result<String> {
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                self.data_dir.display()
            )
        })?;
        Ok(match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("healthcloud.db").display()
            ),
        })
    }
}

/// Which server a remote command talks to and the token it shows, shared by every command
/// that calls the store API.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The healthcloud server's URL.
    #[arg(
        long,
        env = "HEALTHCLOUD_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Access token; `healthcloud token --role publisher --sub ID` (or `--role store-admin`)
    /// mints a development one.
    #[arg(long, env = "HEALTHCLOUD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArgs {
    /// A client of the store on this server.
    pub fn client(&self) -> anyhow::Result<StoreClient> {
        StoreClient::new(&self.server, self.token.clone())
    }
}
