//! `healthcloud app verify`: a signed component checked, its signature, its bytes and, with
//! `--server`, what the store says about it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use healthcloud_package::client::{AppVersion, KeyStatus, PublisherKey, StoreClient};
use healthcloud_package::package::{SignedPackage, signature_path};

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
    pub async fn run(self) -> anyhow::Result<()> {
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
    let not_found = |e: &healthcloud_package::client::ClientError| {
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
