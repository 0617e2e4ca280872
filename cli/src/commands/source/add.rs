//! `healthcloud source add`: adds a source, or replaces the one of that name, through the
//! running server (at once, and in `sources.toml`) or, with no server running, in the file.

use std::path::PathBuf;

use healthcloud_integration::sources_file::{AuthKind, SourceEntry};
use healthcloud_integration::upstream::Upstream;

use super::SourceTarget;
use super::output::print_one;

/// `source add`.
#[derive(Debug, clap::Args)]
pub struct AddCommand {
    /// The source's name: lowercase letters, digits and '-' (it prefixes its resources' ids).
    name: String,
    /// Its FHIR base URL, e.g. https://gp.example.dk/fhir/R4.
    base: String,
    /// The organization that owns it, Organization/<id>.
    #[arg(long)]
    organization: Option<String>,
    /// How healthcloud authenticates to it (default: bearer-file with --token-file,
    /// client-credentials with --client-id, else none).
    #[arg(long, value_enum)]
    auth: Option<AuthArg>,
    /// A file holding the bearer token the source issued to healthcloud.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// With client credentials: the source's OAuth token endpoint.
    #[arg(long)]
    token_url: Option<String>,
    /// With client credentials: the client id the token endpoint issued to healthcloud.
    #[arg(long)]
    client_id: Option<String>,
    /// With client credentials: a file holding the client secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// With client credentials: the scope to ask for.
    #[arg(long)]
    scope: Option<String>,
    /// The resource types to ask it for (comma-separated; default: all it declares).
    #[arg(long, value_delimiter = ',')]
    types: Option<Vec<String>>,
    /// How long one call to it may take, in seconds (default 5).
    #[arg(long)]
    deadline_secs: Option<f64>,
    /// How many calls may be open to it at once (default 8).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// The largest answer read from it, in bytes (default 16 MiB).
    #[arg(long)]
    max_response_bytes: Option<u64>,
    #[command(flatten)]
    target: SourceTarget,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AuthArg {
    None,
    BearerFile,
    ClientCredentials,
}

impl AddCommand {
    /// The source as the file and the API take it; files made absolute, since the server
    /// reads them from its own directory.
    fn entry(&self) -> anyhow::Result<SourceEntry> {
        let absolute = |path: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
            path.as_deref()
                .map(std::path::absolute)
                .transpose()
                .map_err(Into::into)
        };
        let auth = match self.auth {
            Some(AuthArg::None) => AuthKind::None,
            Some(AuthArg::BearerFile) => AuthKind::BearerFile,
            Some(AuthArg::ClientCredentials) => AuthKind::ClientCredentials,
            None if self.token_file.is_some() => AuthKind::BearerFile,
            None if self.client_id.is_some() => AuthKind::ClientCredentials,
            None => AuthKind::None,
        };
        Ok(SourceEntry {
            name: self.name.clone(),
            organization: self.organization.clone(),
            base: self.base.clone(),
            auth,
            token_file: absolute(&self.token_file)?,
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            secret_file: absolute(&self.secret_file)?,
            scope: self.scope.clone(),
            types: self.types.clone(),
            deadline_secs: self.deadline_secs,
            max_concurrent: self.max_concurrent,
            max_response_bytes: self.max_response_bytes,
        })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let entry = self.entry()?;
        let client = self.target.client()?;
        let put = client.put(&entry).await;
        if !super::unreachable(&client, &put).await {
            let view = put?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!(
                    "source {} is configured on the server at {} (and in its sources.toml)",
                    entry.name,
                    client.server()
                );
                print_one(&view);
            }
            return Ok(());
        }
        self.target.not_running(&client);
        let mut file = self.target.file()?;
        let settings = entry
            .settings(file.data_dir())
            .map_err(|e| anyhow::anyhow!("source '{}': {e}", entry.name))?;
        // Reads the token file, as the server will.
        Upstream::open(settings.upstream)?;
        let replaced = file.put(entry.clone());
        file.save()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&entry)?);
        } else {
            println!(
                "{} source {} in {}: the server asks it from its next start (`healthcloud source check {}` reads its CapabilityStatement now)",
                if replaced { "replaced" } else { "added" },
                entry.name,
                file.path().display(),
                entry.name
            );
        }
        Ok(())
    }
}
