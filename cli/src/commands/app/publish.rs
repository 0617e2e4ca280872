//! `healthcloud app publish`: the app built, signed and uploaded to the store.

use std::path::{Path, PathBuf};

use anyhow::Context;
use healthcloud_package::client::{Caller, Published, StoreClient};
use healthcloud_package::keys::SecretKey;
use healthcloud_package::package::Package;
use indicatif::{ProgressBar, ProgressStyle};

use super::build::{BuiltApp, build, read_manifest};
use super::sign::sign;
use crate::commands::ServerArgs;

#[derive(Debug, clap::Args)]
pub struct PublishCommand {
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Your private key; the store must know its public half (`healthcloud store add-key`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

impl PublishCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        // Everything that can fail without building is checked before the (slow) build.
        let client = self.server.client()?;
        let manifest = read_manifest(&self.dir)?;
        client.require_token(Caller::Publisher(&manifest.app.publisher))?;
        let key = SecretKey::read(&self.key)?;
        // A SMART web app is served by its vendor: its package signs its registration.
        if let Some((package, document)) = Package::of_smart(&manifest) {
            let signed = package.sign(&key);
            let size = document.len() as u64;
            let result = client.publish(&signed, document.into(), size).await;
            return report(result?);
        }
        let built = build(&self.dir).await?;
        let signed = sign(&built, &key)?;
        // The bytes are dropped here: the upload streams them from the file.
        let BuiltApp { wasm, .. } = built;
        let size = signed.package.component.size;
        let upload = upload_progress(size, &client);
        let body = stream_file(&wasm, upload.clone()).await?;
        let result = client.publish(&signed, body, size).await;
        upload.finish_and_clear();
        report(result?)
    }
}

/// What the store said of a publish.
fn report((created, published): (bool, Published)) -> anyhow::Result<()> {
    let id = format!(
        "{}/{}@{}",
        published.publisher, published.app, published.version
    );
    if created {
        println!("published {id} (sha256 {})", published.sha256);
    } else {
        println!(
            "{id} is already published with identical content (sha256 {})",
            published.sha256
        );
    }
    println!("  signed with key {}", published.key_id);
    Ok(())
}

/// A progress bar of the upload's bytes, on stderr (hidden when that is not a terminal).
fn upload_progress(size: u64, client: &StoreClient) -> ProgressBar {
    let bar = ProgressBar::new(size).with_message(format!("uploading to {}", client.server()));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The file at `path` as a request body read in chunks as it is sent, advancing `progress`.
async fn stream_file(path: &Path, progress: ProgressBar) -> anyhow::Result<reqwest::Body> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let chunks =
        futures_util::stream::try_unfold((file, progress), |(mut file, progress)| async move {
            let mut chunk = vec![0; 64 * 1024];
            let read = file.read(&mut chunk).await?;
            if read == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            chunk.truncate(read);
            progress.inc(read as u64);
            Ok(Some((chunk, (file, progress))))
        });
    Ok(reqwest::Body::wrap_stream(chunks))
}
