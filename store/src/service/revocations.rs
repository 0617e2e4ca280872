//! The revocation feed: an append-only list of revoked versions and keys with a monotonic
//! sequence, served signed by the store's key with an expiry. A runtime that polls
//! `GET /store/v1/revocations?since=SEQ` learns what to stop serving, and one holding an
//! expired feed knows the feed is frozen rather than quiet. What an answer holds, and how a
//! runtime checks it, is `healthcloud_package::feed`; this serves and appends to it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use healthcloud_package::feed::{Feed, FeedEntry, FeedKey, REVOCATIONS_CHANNEL, SignedFeed};
use healthcloud_package::keys::{KeyId, Purpose};
use healthcloud_package::package::{SignedPackage, SignedVersionRecord, VersionRecord};
use serde::Deserialize;
use sqlx::Row;
use utoipa::IntoParams;

use super::error::QueryParams;
use super::{Store, StoreError, now, timestamp};

/// The advisory lock every feed writer holds, so entries commit in sequence order.
pub(super) const LOCK: &str = "revocations";

/// The most entries in one answer; `more` says to ask again from `next`.
const PAGE: i64 = 1000;

pub(super) fn router() -> Router<Store> {
    Router::new()
        .route("/revocations", get(feed))
        .route("/revocations/key", get(feed_key))
}

#[utoipa::path(get, path = "/store/v1/revocations/key", responses((status = 200, body = FeedKey)))]
pub(super) async fn feed_key(State(store): State<Store>) -> Json<FeedKey> {
    let key = store.feed_key();
    Json(FeedKey {
        key_id: key.id(),
        public_key: key.to_base64(),
        pem: key.to_pem(),
    })
}

/// Feed query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Since {
    /// The last sequence number already seen (0 for everything).
    #[serde(default)]
    #[param(minimum = 0)]
    pub since: i64,
    /// A fresh random value (up to 64 letters and digits) that the answer signs back, so a
    /// recorded answer cannot be replayed to this caller.
    #[serde(default)]
    #[param(pattern = "^[A-Za-z0-9]{1,64}$")]
    pub nonce: Option<String>,
}

#[utoipa::path(get, path = "/store/v1/revocations", params(Since),
    responses(
        (status = 200, body = SignedFeed),
        (status = 400, description = "a parameter is not as described", body = healthcloud_platform::http::ErrorBody)))]
pub(super) async fn feed(
    State(store): State<Store>,
    QueryParams(Since { since, nonce }): QueryParams<Since>,
) -> Result<Json<SignedFeed>, StoreError> {
    if since < 0 {
        return Err(StoreError::BadRequest {
            message: "since is a sequence number: 0 for everything, or the feed's last `next`"
                .into(),
            field: Some("since".into()),
        });
    }
    if let Some(nonce) = &nonce
        && (nonce.is_empty()
            || nonce.len() > 64
            || !nonce.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(StoreError::BadRequest {
            message: "nonce must be 1 to 64 letters and digits".into(),
            field: Some("nonce".into()),
        });
    }
    let db = store.db();
    let mut select = db.sql(
        "SELECT seq, kind, publisher, app, version, key_id, compromised_since, reason, at \
         FROM store_revocations WHERE seq > ",
    );
    select
        .bind(since)
        .push(" ORDER BY seq LIMIT ")
        .bind(PAGE + 1);
    let mut entries: Vec<FeedEntry> = select
        .query()
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| FeedEntry {
            seq: row.get(0),
            kind: row.get(1),
            publisher: row.get(2),
            app: row.get(3),
            version: row.get(4),
            key_id: row.get(5),
            compromised_since: row.get(6),
            reason: row.get(7),
            at: row.get(8),
        })
        .collect();
    let more = entries.len() as i64 > PAGE;
    entries.truncate(PAGE as usize);
    let issued = chrono::Utc::now();
    let ttl = chrono::Duration::from_std(store.inner.limits.feed_ttl)
        .map_err(|e| anyhow::anyhow!("feed ttl: {e}"))?;
    let feed = Feed {
        store_key_id: store.inner.feed_key.public().id(),
        issued_at: timestamp(issued),
        expires_at: timestamp(issued + ttl),
        since,
        next: entries.last().map_or(since, |e| e.seq),
        more,
        nonce,
        entries,
    };
    let canonical = serde_json_canonicalizer::to_vec(&feed).expect("a feed serializes");
    let signature = store.inner.feed_key.sign(Purpose::Revocations, &canonical);
    Ok(Json(SignedFeed { feed, signature }))
}

/// Appends an entry. The caller holds [`LOCK`] in `tx`.
async fn append(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    entry: &FeedEntry,
) -> Result<(), StoreError> {
    let db = store.db();
    let mut insert = db.sql(
        "INSERT INTO store_revocations \
         (kind, publisher, app, version, key_id, compromised_since, reason, at) VALUES (",
    );
    insert.bind(entry.kind.as_str());
    for value in [
        Some(&entry.publisher),
        entry.app.as_ref(),
        entry.version.as_ref(),
        entry.key_id.as_ref(),
        entry.compromised_since.as_ref(),
        Some(&entry.reason),
        Some(&entry.at),
    ] {
        insert.push(", ");
        match value {
            Some(text) => insert.bind(text.as_str()),
            None => insert.push("NULL"),
        };
    }
    insert.push(")");
    insert.query().execute(&mut **tx).await?;
    db.notify(tx, REVOCATIONS_CHANNEL).await?;
    Ok(())
}

impl Store {
    /// Changes whenever revocations commit in this process: a runtime in the same process
    /// fetches the feed at once instead of at its next poll.
    pub fn revocations_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revoked.subscribe()
    }

    /// Call after committing a transaction that appended to the feed.
    pub(super) fn revocations_committed(&self) {
        self.inner.revoked.send_modify(|count| *count += 1);
    }
}

impl Store {
    /// The store's signed record of `signed`, a version it accepted from a key of its
    /// publisher that is in good standing for it (the caller checked that), valid as long as
    /// a feed answer.
    pub(super) fn version_record(
        &self,
        signed: &SignedPackage,
        published_at: &str,
        yanked_at: Option<&str>,
    ) -> Result<SignedVersionRecord, StoreError> {
        let ttl = chrono::Duration::from_std(self.inner.limits.feed_ttl)
            .map_err(|e| anyhow::anyhow!("feed ttl: {e}"))?;
        let record = VersionRecord::of(
            signed,
            self.inner.feed_key.public().id(),
            (published_at.to_owned(), yanked_at.map(str::to_owned)),
            chrono::Utc::now(),
            ttl,
        );
        Ok(record.sign(&self.inner.feed_key))
    }
}

/// Revokes one version (a no-op when it already is). The caller holds [`LOCK`] in `tx`.
pub(super) async fn revoke_version(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    (publisher, app, version): (&str, &str, &str),
    key_id: Option<&str>,
    reason: &str,
) -> Result<bool, StoreError> {
    let db = store.db();
    let at = now();
    let mut update = db.sql("UPDATE store_versions SET revoked_at = ");
    update
        .bind(at.as_str())
        .push(", revoke_reason = ")
        .bind(reason)
        .push(" WHERE publisher = ")
        .bind(publisher)
        .push(" AND app = ")
        .bind(app)
        .push(" AND version = ")
        .bind(version)
        .push(" AND revoked_at IS NULL");
    let changed = update.query().execute(&mut **tx).await?.rows_affected() > 0;
    if changed {
        append(
            store,
            tx,
            &FeedEntry {
                seq: 0,
                kind: "version".into(),
                publisher: publisher.into(),
                app: Some(app.into()),
                version: Some(version.into()),
                key_id: key_id.map(str::to_owned),
                compromised_since: None,
                reason: reason.into(),
                at,
            },
        )
        .await?;
    }
    Ok(changed)
}

/// Records a key revocation and revokes every version it voids: all it signed, or with
/// `since`, those published from then on. The caller holds [`LOCK`] in `tx`.
pub(super) async fn revoke_key(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    publisher: &str,
    key_id: &KeyId,
    since: Option<&str>,
    reason: &str,
    at: &str,
) -> Result<(), StoreError> {
    append(
        store,
        tx,
        &FeedEntry {
            seq: 0,
            kind: "key".into(),
            publisher: publisher.into(),
            app: None,
            version: None,
            key_id: Some(key_id.to_string()),
            compromised_since: since.map(str::to_owned),
            reason: reason.into(),
            at: at.into(),
        },
    )
    .await?;
    let db = store.db();
    let mut voided = db.sql("SELECT app, version FROM store_versions WHERE key_id = ");
    voided.bind(key_id.as_str());
    if let Some(since) = since {
        voided.push(" AND published_at >= ").bind(since);
    }
    voided.push(" ORDER BY app, published_at");
    let rows = voided.query().fetch_all(&mut **tx).await?;
    let version_reason = format!("signed by key {key_id}, which was revoked: {reason}");
    for row in rows {
        let (app, version): (String, String) = (row.get(0), row.get(1));
        revoke_version(
            store,
            tx,
            (publisher, &app, &version),
            Some(key_id.as_str()),
            &version_reason,
        )
        .await?;
    }
    Ok(())
}
