//! `healthcloud source …`: the upstream FHIR sources and their health. Each command asks the
//! running server's sources admin API (`/admin/v1/sources`) with a platform-operator token
//! (`--token`, else minted with the data directory's development issuer). When no server
//! answers, `add`, `remove` and `list` work on `<data-dir>/sources.toml` directly, and
//! `check` reads the source's CapabilityStatement from here.

mod add;
mod check;
mod list;
mod output;
mod remove;

use add::AddCommand;
use check::CheckCommand;
use list::ListCommand;
use remove::RemoveCommand;

use healthcloud_integration::sources_file::SourcesFile;
use healthcloud_package::client::ClientError;

use super::{DataDirArgs, ServerArgs};
use crate::source_client::SourceClient;

/// The upstream sources: list, add, remove, check.
#[derive(Debug, clap::Subcommand)]
pub enum SourceCommand {
    /// List the sources with their health: last success, latency, failures, skipping.
    List(ListCommand),
    /// Add a source, or replace the one of that name (written to sources.toml).
    Add(Box<AddCommand>),
    /// Remove a source (from sources.toml, and from the running server at once).
    Remove(RemoveCommand),
    /// Read a source's CapabilityStatement now: the types it serves, or what went wrong.
    Check(CheckCommand),
}

impl SourceCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            SourceCommand::List(command) => command.run().await,
            SourceCommand::Add(command) => command.run().await,
            SourceCommand::Remove(command) => command.run().await,
            SourceCommand::Check(command) => command.run().await,
        }
    }
}

/// Which server a `source` command asks, and the data directory it falls back to.
#[derive(Debug, clap::Args)]
pub struct SourceTarget {
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl SourceTarget {
    fn client(&self) -> anyhow::Result<SourceClient> {
        SourceClient::new(
            &self.server.server,
            self.server.token.clone(),
            &self.data.data_dir,
        )
    }

    fn file(&self) -> anyhow::Result<SourcesFile> {
        SourcesFile::load(&SourcesFile::path_in(&self.data.data_dir))
    }

    /// Says, on stderr, that the server is not running and the file is used instead.
    fn not_running(&self, client: &SourceClient) {
        eprintln!(
            "no server answers at {}: working on {} (the server's sources and their health show \
             once it runs; pass --server URL for another one)",
            client.server(),
            SourcesFile::path_in(&self.data.data_dir).display()
        );
    }
}

/// Whether `result` failed because no server answered (without a token nothing was sent:
/// then whether one answers at all).
async fn unreachable<T>(client: &SourceClient, result: &Result<T, ClientError>) -> bool {
    match result {
        Err(ClientError::Unreachable { .. }) => true,
        Err(ClientError::NoToken { .. }) => !client.answers().await,
        _ => false,
    }
}
