//! What a runtime node believes of the app store, and why.
//!
//! Only what the store's key signs is believed: the revocation feed ([`super::feed`]) and the
//! version record that says a package's key is its publisher's and in good standing
//! ([`SignedVersionRecord`]). Every other answer (the `signature: valid` verdict, a
//! publisher's key list) travels unsigned, so a fake store or anything between could make it
//! say that a key of its own belongs to any publisher. The key is pinned from `--store-key`;
//! only a store on this machine (loopback, as in `healthcloud up`) may have its key pinned on
//! first use, since nothing can sit between the two.

use anyhow::Context;
use chrono::Utc;
use healthcloud_package::client::{AppVersion, StoreClient};
use healthcloud_package::keys::{KeyId, PublicKey};
use healthcloud_package::package::{SignedPackage, SignedVersionRecord};
use healthcloud_platform::db::Database;
use sqlx::Row;

use super::admin::AdminError;
use super::{Regions, RegionsConfig};

/// How to pin the store's key, for messages.
pub(crate) const PIN_HINT: &str = "pass --store-key (or set HEALTHCLOUD_STORE_KEY) with the store's public key: the PEM file store/store.key.pub in the store's data directory, or its key id (64 hex characters, printed by `healthcloud serve store`), copied over a channel you trust";

impl RegionsConfig {
    /// Refuses a store this node could not tell from an impostor: one that is not on this
    /// machine while no key is pinned (`feed_key` is `None`). Its key would be pinned from
    /// its first answer, and anything on the way (over plain `http`, anything at all) could
    /// present its own and then sign feeds and version records at will.
    pub fn check_store_trust(&self) -> anyhow::Result<()> {
        if self.feed_key.is_some() || self.store.is_loopback() {
            return Ok(());
        }
        anyhow::bail!(
            "the app store at {} is not on this machine and no --store-key pins its key: {PIN_HINT}; a runtime never trusts the key a remote store presents, since anything between could present its own",
            self.store.server()
        )
    }
}

/// The store's key with id `key_id` (a fingerprint given as `--store-key`): the key the store
/// presents, refused unless its id is `key_id`.
pub async fn store_key_by_id(store: &StoreClient, key_id: &KeyId) -> anyhow::Result<PublicKey> {
    let presented = store.feed_key().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot fetch the store's key to check it against --store-key {key_id}: {e}"
        )
    })?;
    let key = PublicKey::from_pem(&presented.pem)
        .map_err(|e| anyhow::anyhow!("the key the store at {} presents: {e}", store.server()))?;
    anyhow::ensure!(
        &key.id() == key_id,
        "the store at {} presents key {}, not the key {key_id} given with --store-key: something other than that store answers there",
        store.server(),
        key.id()
    );
    Ok(key)
}

/// The pinned store key, pinning what the store presents when nothing is pinned yet and
/// the store is on loopback (elsewhere [`RegionsConfig::check_store_trust`] already
/// refused to start without a configured key).
///
/// [`RegionsConfig::check_store_trust`]: super::RegionsConfig::check_store_trust
pub(crate) async fn store_key(regions: &Regions) -> anyhow::Result<PublicKey> {
    if let Some(key) = regions.feed.key.lock().expect("feed lock poisoned").clone() {
        return Ok(key);
    }
    anyhow::ensure!(
        regions.store().is_loopback(),
        "no store key is pinned and the store at {} is not on this machine: {}",
        regions.store().server(),
        PIN_HINT
    );
    let presented = regions
        .store()
        .feed_key()
        .await
        .context("fetching the store's feed key")?;
    let key = PublicKey::from_pem(&presented.pem).context("the store's feed key")?;
    anyhow::ensure!(
        key.id() == presented.key_id,
        "the store's feed key does not match its id"
    );
    let key = pin(regions.db(), &key).await?;
    tracing::info!(key_id = %key.id(), "pinned the store's feed key");
    *regions.feed.key.lock().expect("feed lock poisoned") = Some(key.clone());
    Ok(key)
}

/// Pins `key` as the store's feed key unless one is pinned already; returns the pinned key,
/// which must be `key`.
pub(super) async fn pin(db: &Database, key: &PublicKey) -> anyhow::Result<PublicKey> {
    let mut write = db.begin_write().await?;
    let mut insert = db.sql("INSERT INTO runtime_feed (id, store_key, next) VALUES (1, ");
    insert
        .bind(key.to_pem())
        .push(", 0) ON CONFLICT (id) DO NOTHING");
    insert.query().execute(&mut *write.tx).await?;
    let pinned: String = sqlx::query("SELECT store_key FROM runtime_feed WHERE id = 1")
        .fetch_one(&mut *write.tx)
        .await?
        .get(0);
    write.commit().await?;
    let pinned = PublicKey::from_pem(&pinned).context("the pinned store key")?;
    anyhow::ensure!(
        &pinned == key,
        "the store presents feed key {} but this database pinned {}: if the store's key really changed, delete the row of runtime_feed",
        key.id(),
        pinned.id()
    );
    Ok(pinned)
}

/// Refuses `signed` (offered as `version`) unless `record` is the store's signed word, under
/// the pinned key and unexpired, that exactly this package was published by a key of its
/// publisher in good standing.
pub(crate) async fn check_vouched(
    regions: &Regions,
    version: &AppVersion,
    record: Option<&SignedVersionRecord>,
    signed: &SignedPackage,
) -> Result<(), AdminError> {
    let store_key = store_key(regions)
        .await
        .map_err(|e| AdminError::Store(format!("cannot check {version}: {e:#}")))?;
    let why = match record {
        None => format!(
            "the answer carries no version record signed by the app store's pinned key {}",
            store_key.id()
        ),
        Some(record) => match record.vouches_for(&store_key, signed, Utc::now()) {
            // The signed record also carries the yank, which the unsigned answer could
            // leave out.
            Ok(()) if record.record.yanked_at.is_some() => {
                return Err(AdminError::Conflict(format!(
                    "{version} was yanked by its publisher and is not for new installs; install a later version"
                )));
            }
            Ok(()) => return Ok(()),
            Err(error) => error.to_string(),
        },
    };
    Err(AdminError::Conflict(format!(
        "{version} is signed by key {}, which the app store does not vouch for as a key of publisher {}: {why}; install only what the store whose key is pinned published, and if this is that store, check what sits between it and this node",
        signed.signature.key_id, version.publisher
    )))
}
