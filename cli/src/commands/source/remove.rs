//! `healthcloud source remove`: a source is no longer asked, and gone from `sources.toml`.

use healthcloud_integration::admin::Origin;

use super::SourceTarget;

/// `source remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveCommand {
    /// The source's name.
    name: String,
    #[command(flatten)]
    target: SourceTarget,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

impl RemoveCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let name = &self.name;
        let client = self.target.client()?;
        let removed = client.remove(name).await;
        if !super::unreachable(&client, &removed).await {
            let removed = removed?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&removed)?);
            } else if removed.configured_in != Origin::File {
                println!(
                    "removed source {name} from the server at {}: it was not configured in sources.toml (--source, or built into the server), and comes back at the next start unless that is changed",
                    client.server()
                );
            } else {
                println!(
                    "removed source {name}: the server at {} no longer asks it",
                    client.server()
                );
            }
            return Ok(());
        }
        self.target.not_running(&client);
        let mut file = self.target.file()?;
        if file.remove(name).is_none() {
            anyhow::bail!(
                "{} configures no source named '{name}': see them with `healthcloud source list`",
                file.path().display()
            );
        }
        file.save()?;
        if self.json {
            println!(
                "{}",
                serde_json::json!({ "name": name, "configured_in": "file" })
            );
        } else {
            println!("removed source {name} from {}", file.path().display());
        }
        Ok(())
    }
}
