//! `healthcloud app new|build|run|sign|publish|verify`: the vendor's loop, from a new crate to
//! a signed package in the store; one module per subcommand.

mod build;
mod new;
mod publish;
mod run;
mod sign;
mod verify;

use build::BuildCommand;
use new::NewCommand;
use publish::PublishCommand;
use run::RunCommand;
use sign::SignCommand;
use verify::VerifyCommand;

/// Write, build and run an app.
#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Create a new app from a template: a Rust crate and its healthcloud.toml manifest.
    New(NewCommand),
    /// Build the app in DIR into a component and check its imports against its manifest.
    Build(BuildCommand),
    /// Build the app and serve it locally on synthetic data, printing its URL and a token.
    Run(RunCommand),
    /// Build the app and sign it with your key, writing the package beside the component.
    Sign(SignCommand),
    /// Build, sign and upload the app to the store.
    Publish(PublishCommand),
    /// Check a signed component: its signature, its bytes and, with --server, the store's word.
    Verify(VerifyCommand),
}

impl AppCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            AppCommand::New(command) => command.run().await,
            AppCommand::Build(command) => command.run().await,
            AppCommand::Run(command) => command.run().await,
            AppCommand::Sign(command) => command.run().await,
            AppCommand::Publish(command) => command.run().await,
            AppCommand::Verify(command) => command.run().await,
        }
    }
}
