//! `healthcloud source check`: reads a source's CapabilityStatement now, through the running
//! server (which records it in the source's health) or, with no server running, from here.

use healthcloud_integration::upstream::Upstream;

use super::SourceTarget;
use super::output::print_one;

/// `source check`.
#[derive(Debug, clap::Args)]
pub struct CheckCommand {
    /// The source's name.
    name: String,
    #[command(flatten)]
    target: SourceTarget,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

impl CheckCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let name = &self.name;
        let client = self.target.client()?;
        let checked = client.check(name).await;
        if !super::unreachable(&client, &checked).await {
            let view = checked?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_one(&view);
            }
            return Ok(());
        }
        self.target.not_running(&client);
        let file = self.target.file()?;
        let Some(entry) = file.get(name) else {
            anyhow::bail!(
                "{} configures no source named '{name}': add it with `healthcloud source add {name} FHIR_BASE`",
                file.path().display()
            );
        };
        let settings = entry
            .settings(file.data_dir())
            .map_err(|e| anyhow::anyhow!("source '{name}': {e}"))?;
        let upstream = Upstream::open(settings.upstream.clone())?;
        let started = std::time::Instant::now();
        let declared = upstream.capabilities().await.map_err(|e| {
            anyhow::anyhow!(
                "{e}: check that it runs at {} and accepts healthcloud's credentials",
                upstream.base()
            )
        })?;
        let latency_ms = started.elapsed().as_millis() as u64;
        let types: Vec<String> = declared
            .types
            .into_keys()
            .filter(|t| settings.types.as_ref().is_none_or(|only| only.contains(t)))
            .collect();
        if self.json {
            let answer = serde_json::json!({
                "name": name,
                "base": upstream.base().as_str(),
                "types": types,
                "latency_ms": latency_ms,
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            println!("{name}  {}", upstream.base());
            println!("  types:        {}", types.join(", "));
            println!("  latency:      {latency_ms} ms");
        }
        Ok(())
    }
}
