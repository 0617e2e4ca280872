//! `healthcloud app new|build|run|sign|publish|verify`: the vendor's loop, from a new crate to
//! a signed package in the store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use healthcloud_guestbuild::{Built, Lockfile};
use healthcloud_integration::Integration;
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_runtime::{AppEngine, Limits};
use healthcloud_store::keys::SecretKey;
use healthcloud_store::manifest::{Audience, MANIFEST_FILE, Manifest};
use healthcloud_store::package::{Package, SignedPackage, signature_path};
use indicatif::{ProgressBar, ProgressStyle};

use super::ServerArgs;
use crate::server;
use healthcloud_store::client::{AppVersion, Caller, KeyStatus, PublisherKey, StoreClient};

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
            AppCommand::New(command) => command.run(),
            AppCommand::Build(command) => command.run().await.map(|_| ()),
            AppCommand::Run(command) => command.run().await,
            AppCommand::Sign(command) => command.run().await,
            AppCommand::Publish(command) => command.run().await,
            AppCommand::Verify(command) => command.run().await,
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
    /// Where the component was written.
    pub wasm: PathBuf,
}

/// The manifest of the app in `dir`.
fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).with_context(|| {
        format!("no {MANIFEST_FILE} in {}: run this in an app's directory (`healthcloud app new NAME` makes one)", dir.display())
    })?;
    Ok(Manifest::parse(&text)?)
}

impl BuildCommand {
    pub async fn run(self) -> anyhow::Result<BuiltApp> {
        let manifest = read_manifest(&self.dir)?;
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
            wasm,
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
        let router = server::router(&integration, &runtime, &app_store, &server::Ready::now());
        server::serve(listener, router).await
    }
}

/// Synthetic patients in a development data directory.
const DEV_PATIENTS: usize = 50;

/// Signs a built app with `key`, writing the package to `<wasm>.sig.json`.
fn sign(built: &BuiltApp, key: &SecretKey) -> anyhow::Result<SignedPackage> {
    let signed = Package::new(&built.manifest, &built.component).sign(key);
    let path = signature_path(&built.wasm);
    std::fs::write(&path, signed.to_json())
        .with_context(|| format!("cannot write the signature {}", path.display()))?;
    let app = &signed.package.app;
    println!("signed {}/{} {}", app.publisher, app.id, app.version);
    println!("  sha256:    {}", signed.package.component.sha256);
    println!("  key id:    {}", signed.signature.key_id);
    println!("  signature: {}", path.display());
    Ok(signed)
}

/// `app sign [DIR] --key FILE`.
#[derive(Debug, clap::Args)]
pub struct SignCommand {
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Your private key (from `healthcloud keygen --out FILE`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

impl SignCommand {
    async fn run(self) -> anyhow::Result<()> {
        let key = SecretKey::read(&self.key)?;
        let built = BuildCommand { dir: self.dir }.run().await?;
        sign(&built, &key)?;
        Ok(())
    }
}

/// `app publish [DIR] --key FILE`.
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
    async fn run(self) -> anyhow::Result<()> {
        // Everything that can fail without building is checked before the (slow) build.
        let client = self.server.client()?;
        let publisher = read_manifest(&self.dir)?.app.publisher;
        client.require_token(Caller::Publisher(&publisher))?;
        let key = SecretKey::read(&self.key)?;
        let built = BuildCommand { dir: self.dir }.run().await?;
        let signed = sign(&built, &key)?;
        // The bytes are dropped here: the upload streams them from the file.
        let BuiltApp { wasm, .. } = built;
        let size = signed.package.component.size;
        let upload = upload_progress(size, &client);
        let body = stream_file(&wasm, upload.clone()).await?;
        let result = client.publish(&signed, body, size).await;
        upload.finish_and_clear();
        let (created, published) = result?;
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

/// `app verify PATH [--server URL]`.
#[derive(Debug, clap::Args)]
pub struct VerifyCommand {
    /// The component (`.wasm`, with its package at `.wasm.sig.json`) or the `.sig.json` itself
    /// (with the component beside it).
    path: PathBuf,
    /// Also ask this server's store whether the key is the publisher's and still trusted, and
    /// whether the version was revoked or yanked.
    #[arg(long, env = "HEALTHCLOUD_SERVER")]
    server: Option<String>,
}

impl VerifyCommand {
    async fn run(self) -> anyhow::Result<()> {
        let (wasm, envelope) = match self.path.to_str().and_then(|p| p.strip_suffix(".sig.json")) {
            Some(wasm) => (PathBuf::from(wasm), self.path.clone()),
            None => (self.path.clone(), signature_path(&self.path)),
        };
        let text = std::fs::read(&envelope).with_context(|| {
            format!(
                "no package at {}: sign the app with `healthcloud app sign DIR --key FILE`",
                envelope.display()
            )
        })?;
        let signed = SignedPackage::from_json(&text)
            .with_context(|| format!("{} is not a signed package", envelope.display()))?;
        let component = std::fs::read(&wasm)
            .with_context(|| format!("cannot read the component {}", wasm.display()))?;
        let app = &signed.package.app;
        println!("app:       {}/{}", app.publisher, app.id);
        println!("version:   {}", app.version);
        println!("sha256:    {}", signed.package.component.sha256);
        println!("key id:    {}", signed.signature.key_id);
        let mut problems = Vec::new();
        match signed.verify() {
            Ok(_) => println!("signature: valid"),
            Err(e) => {
                println!("signature: INVALID");
                problems.push(format!(
                    "the signature in {} does not hold: {e} (the package was changed after signing: sign it again)",
                    envelope.display()
                ));
            }
        }
        match signed.check_component(&component) {
            Ok(()) => println!("component: matches the signed sha256 and size"),
            Err(e) => {
                println!("component: MISMATCH");
                problems.push(format!("{}: {e}", wasm.display()));
            }
        }
        if let Some(server) = &self.server {
            let client = StoreClient::new(server, None)?;
            problems.extend(check_with_store(&client, &signed).await?);
        }
        match problems.as_slice() {
            [] => Ok(()),
            [problem] => bail!("{problem}"),
            problems => bail!(
                "{} checks failed:\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            ),
        }
    }
}

/// What the store says about a package: printed, and returned as problems if any.
async fn check_with_store(
    client: &StoreClient,
    signed: &SignedPackage,
) -> anyhow::Result<Vec<String>> {
    let app = &signed.package.app;
    let version = AppVersion {
        publisher: app.publisher.clone(),
        app: app.id.clone(),
        version: app.version.clone(),
    };
    let not_found = |e: &healthcloud_store::client::StoreError| {
        e.status() == Some(reqwest::StatusCode::NOT_FOUND)
    };
    let mut problems = Vec::new();
    let published = match client.version(&version).await {
        Ok(published) => Some(published),
        Err(e) if not_found(&e) => {
            println!("store:     not published");
            problems.push(format!(
                "{version} is not published in the store at {}",
                client.server()
            ));
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(published) = &published {
        if published.signed == *signed {
            let verdict = published.signature.as_deref().unwrap_or("not given");
            println!(
                "store:     published {}, signature {verdict}",
                published.published_at
            );
        } else {
            println!("store:     DIFFERENT package published");
            problems.push(format!(
                "the store at {} has another package for {version} (sha256 {}): this one is not what was published",
                client.server(),
                published.signed.package.component.sha256
            ));
        }
        if let Some(revoked) = &published.revoked {
            println!("revoked:   {} ({})", revoked.at, revoked.reason);
            problems.push(format!(
                "{version} was revoked by the store at {}: {}",
                revoked.at, revoked.reason
            ));
        }
        if let Some(at) = published.yanked_at {
            println!("yanked:    {at}");
            problems.push(format!(
                "{version} was yanked by its publisher at {at}: install a newer version"
            ));
        }
    }
    let key_id = &signed.signature.key_id;
    match client.publisher(&app.publisher).await {
        Ok(publisher) => match publisher.keys.iter().find(|k| &k.key_id == key_id) {
            Some(key) => {
                let verdict = key_verdict(key, published.as_ref().map(|p| p.published_at));
                let (Ok(status) | Err(status)) = &verdict;
                println!(
                    "key:       of publisher {} ({}), {status}",
                    publisher.id, publisher.name
                );
                if let Err(status) = verdict {
                    problems.push(format!(
                        "key {key_id} of publisher {} is {status}",
                        publisher.id
                    ));
                }
            }
            None => {
                println!("key:       NOT a key of publisher {}", publisher.id);
                problems.push(format!(
                    "key {key_id} is not a key of publisher {} in the store: only its keys may sign its apps",
                    publisher.id
                ));
            }
        },
        Err(e) if not_found(&e) => {
            println!("key:       publisher {} unknown", app.publisher);
            problems.push(format!(
                "publisher {} is not in the store at {}",
                app.publisher,
                client.server()
            ));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(problems)
}

/// Whether a publisher key vouches for a version published at `published_at`: `Ok` with its
/// status if so, `Err` with why not. As in the store, a revoked key vouches for nothing,
/// unless it was revoked as compromised since a time: then it still vouches for what was
/// published before that.
fn key_verdict(
    key: &PublisherKey,
    published_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<String, String> {
    if key.status == KeyStatus::Active {
        return Ok("active".into());
    }
    let mut revoked = String::from("revoked");
    if let Some(at) = key.revoked_at {
        revoked.push_str(&format!(" at {at}"));
    }
    if let Some(since) = key.compromised_since {
        revoked.push_str(&format!(", compromised since {since}"));
    }
    if let Some(reason) = &key.reason {
        revoked.push_str(&format!(" ({reason})"));
    }
    match (published_at, key.compromised_since) {
        (Some(published), Some(since)) if published < since => Ok(format!(
            "{revoked}; this version was published before that, so the key still vouches for it"
        )),
        _ => Err(revoked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(revoked_at: &str, compromised_since: Option<&str>) -> PublisherKey {
        serde_json::from_value(serde_json::json!({
            "key_id": "0".repeat(64),
            "public_key": "ignored",
            "added_at": "2025-01-01T00:00:00Z",
            "status": "revoked",
            "revoked_at": revoked_at,
            "compromised_since": compromised_since,
            "reason": "r",
        }))
        .unwrap()
    }

    #[test]
    fn a_revoked_key_vouches_only_for_what_was_published_before_its_compromise() {
        let published = "2025-02-01T00:00:00Z".parse().ok();
        let retired = revoked("2025-03-01T00:00:00Z", None);
        let why = key_verdict(&retired, published).unwrap_err();
        assert!(why.starts_with("revoked at 2025-03-01"), "{why}");
        let stolen = revoked("2025-03-01T00:00:00Z", Some("2025-01-15T00:00:00Z"));
        let why = key_verdict(&stolen, published).unwrap_err();
        assert!(why.contains("compromised since 2025-01-15"), "{why}");
        let stolen_later = revoked("2025-03-01T00:00:00Z", Some("2025-02-15T00:00:00Z"));
        assert!(key_verdict(&stolen_later, published).is_ok());
        assert!(
            key_verdict(&stolen_later, None).is_err(),
            "not published: nothing to vouch for"
        );
    }
}
