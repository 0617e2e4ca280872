//! Publishers and their keys: registration by a store admin, rotation endorsed by a current
//! key, and revocation (everything the key signed, or only what was published from a
//! compromise date on).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use healthcloud_platform::db::Arg;

use super::error::JsonBody;
use super::{
    Caller, Store, StoreError, lock, now, publisher_or_admin, revocations, store_admin, timestamp,
};
use healthcloud_package::keys::{KeyId, PublicKey, Purpose, endorsement_message};
use healthcloud_package::manifest::check_name;
use healthcloud_platform::http::ErrorBody;

pub(super) fn router() -> Router<Store> {
    Router::new()
        .route("/publishers", post(register))
        .route("/publishers/{publisher}", get(show))
        .route("/publishers/{publisher}/keys", post(add_key))
        .route(
            "/publishers/{publisher}/keys/{key_id}/revoke",
            post(revoke_key),
        )
}

/// A store admin registers a publisher with its first key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPublisher {
    /// The namespace its apps live in, e.g. `acme`: 1-64 of a-z, 0-9 and '-', not starting
    /// with '-'.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,63}$", max_length = 64)]
    pub id: String,
    /// Display name: at most 200 characters, no control characters, not only spaces.
    #[schema(pattern = r"^ *[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$", max_length = 200)]
    pub name: String,
    /// The first key, PEM (`FILE.pub` from `healthcloud keygen`).
    #[schema(
        pattern = r"^-----BEGIN PUBLIC KEY-----\r?\nMCowBQYDK2VwAyEA[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=\r?\n-----END PUBLIC KEY-----\r?\n?$"
    )]
    pub key: String,
}

/// A publisher and its keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Publisher {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Every key it ever had.
    pub keys: Vec<PublisherKey>,
}

/// One of a publisher's keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublisherKey {
    /// sha256 of the key bytes.
    #[schema(value_type = String)]
    pub key_id: KeyId,
    /// The key's 32 bytes, base64.
    pub public_key: String,
    /// When it was added.
    pub added_at: String,
    /// `active` or `revoked`.
    pub status: String,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Only what was published from then on is void; absent on a revoked key, everything is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compromised_since: Option<String>,
    /// Why it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A new key, endorsed by one of the publisher's active keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The new key, PEM.
    #[schema(
        pattern = r"^-----BEGIN PUBLIC KEY-----\r?\nMCowBQYDK2VwAyEA[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=\r?\n-----END PUBLIC KEY-----\r?\n?$"
    )]
    pub key: String,
    /// A current key's signature over the canonical JSON `{"key_id": NEW, "publisher": ID}`;
    /// a store admin may add a key without one (recovery when every key is lost).
    pub endorsement: Option<Endorsement>,
}

/// A signature by a current key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The endorsing key.
    #[schema(value_type = String, pattern = r"^[0-9a-f]{64}$")]
    pub key_id: KeyId,
    /// base64 ed25519 signature (purpose "healthcloud add-key v1").
    #[schema(pattern = r"^[A-Za-z0-9+/]{85}[AQgw]==$")]
    pub signature: String,
}

/// Revoking a key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    /// RFC 3339, not in the future; when given, only versions published from then on are
    /// revoked.
    #[schema(format = DateTime)]
    pub compromised_since: Option<String>,
    /// Why, for the feed and the catalog.
    pub reason: Option<String>,
}

/// A PEM public key: 400 when it is not PEM at all, 422 when it is PEM but not a usable
/// ed25519 key (another algorithm, not a point on the curve, or weak).
fn parse_key(pem: &str) -> Result<PublicKey, StoreError> {
    let pem = pem.trim();
    if !(pem.starts_with("-----BEGIN PUBLIC KEY-----") && pem.ends_with("-----END PUBLIC KEY-----"))
    {
        return Err(StoreError::BadRequest {
            message: "not a PEM public key: send FILE.pub as 'healthcloud keygen' wrote it".into(),
            field: Some("key".into()),
        });
    }
    PublicKey::from_pem(pem).map_err(|e| StoreError::Unprocessable {
        message: format!(
            "{e}: generate a key pair with 'healthcloud keygen' and send its FILE.pub"
        ),
        field: Some("key".into()),
    })
}

/// Whether `name` is a display name: 1-200 characters, no control characters, not only
/// spaces (the `name` pattern of [`NewPublisher`]).
pub(super) fn is_display_name(name: &str) -> bool {
    name.chars().count() <= 200
        && !name.chars().any(|c| c.is_ascii_control())
        && name.chars().any(|c| c != ' ')
}

#[utoipa::path(post, path = "/store/v1/publishers", request_body = NewPublisher,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "registered", body = Publisher),
        (status = 400, description = "the body is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a store admin", body = ErrorBody),
        (status = 409, description = "the id or the key is taken", body = ErrorBody),
        (status = 422, description = "the key is not a usable ed25519 key", body = ErrorBody)))]
pub(super) async fn register(
    State(store): State<Store>,
    caller: Caller,
    JsonBody(new): JsonBody<NewPublisher>,
) -> Result<(StatusCode, Json<Publisher>), StoreError> {
    store_admin(caller)?;
    check_name("id", &new.id).map_err(|e| StoreError::BadRequest {
        message: e.message,
        field: Some("id".into()),
    })?;
    if !is_display_name(&new.name) {
        return Err(StoreError::BadRequest {
            message: "give the publisher's display name: 1-200 characters, no control characters, not only spaces".into(),
            field: Some("name".into()),
        });
    }
    let key = parse_key(&new.key)?;
    let db = store.db();
    let mut write = db.begin_write().await?;
    lock(db, &mut write.tx, &format!("publisher:{}", new.id)).await?;
    let mut exists = db.sql("SELECT 1 FROM store_publishers WHERE id = ");
    exists.bind(new.id.as_str());
    if exists
        .query()
        .fetch_optional(&mut *write.tx)
        .await?
        .is_some()
    {
        return Err(StoreError::Conflict(format!(
            "publisher '{}' is already registered: add keys with 'healthcloud store add-key'",
            new.id
        )));
    }
    let at = now();
    let mut insert = db.sql("INSERT INTO store_publishers (id, name, created_at) VALUES (");
    insert
        .bind_list([
            Arg::from(new.id.as_str()),
            new.name.trim_matches(' ').into(),
            at.as_str().into(),
        ])
        .push(")");
    insert.query().execute(&mut *write.tx).await?;
    insert_key(&store, &mut write.tx, &new.id, &key, &at).await?;
    write.commit().await?;
    tracing::info!(publisher = %new.id, key_id = %key.id(), "publisher registered");
    Ok((StatusCode::CREATED, Json(publisher(&store, &new.id).await?)))
}

async fn insert_key(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    publisher: &str,
    key: &PublicKey,
    at: &str,
) -> Result<(), StoreError> {
    let db = store.db();
    // Keys are unique across publishers: two publishers adding one key at once must meet here.
    lock(db, tx, "keys").await?;
    let mut owner = db.sql("SELECT publisher FROM store_keys WHERE key_id = ");
    owner.bind(key.id().as_str());
    if let Some(row) = owner.query().fetch_optional(&mut **tx).await? {
        let owner: String = row.get(0);
        return Err(StoreError::Conflict(format!(
            "key {} is already registered to publisher '{owner}': every key belongs to one publisher; generate a new one with 'healthcloud keygen'",
            key.id()
        )));
    }
    let mut insert =
        db.sql("INSERT INTO store_keys (key_id, publisher, public_key, added_at) VALUES (");
    insert
        .bind_list([
            Arg::from(key.id().as_str()),
            publisher.into(),
            key.to_base64().into(),
            at.into(),
        ])
        .push(")");
    insert.query().execute(&mut **tx).await?;
    Ok(())
}

/// The publisher `id` with its keys.
pub(super) async fn publisher(store: &Store, id: &str) -> Result<Publisher, StoreError> {
    let db = store.db();
    let mut select = db.sql("SELECT name FROM store_publishers WHERE id = ");
    select.bind(id);
    let row = select
        .query()
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no publisher '{id}'")))?;
    let name: String = row.get(0);
    let mut keys = db.sql(
        "SELECT key_id, public_key, added_at, revoked_at, compromised_since, reason \
         FROM store_keys WHERE publisher = ",
    );
    keys.bind(id).push(" ORDER BY added_at, key_id");
    let keys = keys
        .query()
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| {
            let revoked_at: Option<String> = row.get(3);
            Ok(PublisherKey {
                key_id: KeyId::try_from(row.get::<String, _>(0))
                    .map_err(|e| anyhow::anyhow!("stored key id: {e}"))?,
                public_key: row.get(1),
                added_at: row.get(2),
                status: if revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                }
                .into(),
                revoked_at,
                compromised_since: row.get(4),
                reason: row.get(5),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Publisher {
        id: id.to_owned(),
        name,
        keys,
    })
}

#[utoipa::path(get, path = "/store/v1/publishers/{publisher}",
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    responses(
        (status = 200, body = Publisher),
        (status = 404, description = "no such publisher", body = ErrorBody)))]
pub(super) async fn show(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<Json<Publisher>, StoreError> {
    Ok(Json(publisher(&store, &id).await?))
}

#[utoipa::path(post, path = "/store/v1/publishers/{publisher}/keys", request_body = NewKey,
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "added", body = Publisher),
        (status = 400, description = "the body is not as described, or a publisher's new key has no endorsement", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not this publisher or a store admin, or the endorsement does not verify", body = ErrorBody),
        (status = 404, description = "no such publisher", body = ErrorBody),
        (status = 409, description = "the key is registered already", body = ErrorBody),
        (status = 422, description = "the key is not a usable ed25519 key", body = ErrorBody)))]
pub(super) async fn add_key(
    State(store): State<Store>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<Publisher>), StoreError> {
    let principal = publisher_or_admin(caller, &id, true)?;
    let existing = publisher(&store, &id).await?;
    let key = parse_key(&new.key)?;
    match &new.endorsement {
        Some(endorsement) => {
            let endorser = existing
                .keys
                .iter()
                .find(|k| k.key_id == endorsement.key_id && k.status == "active")
                .ok_or_else(|| {
                    StoreError::Forbidden(format!(
                        "key {} is not an active key of publisher '{id}': endorse the new key with a current one",
                        endorsement.key_id
                    ))
                })?;
            PublicKey::from_base64(&endorser.public_key)
                .and_then(|k| {
                    k.verify(
                        Purpose::AddKey,
                        &endorsement_message(&id, &key.id()),
                        &endorsement.signature,
                    )
                })
                .map_err(|e| StoreError::Forbidden(format!("endorsement refused: {e}")))?;
        }
        None if principal.claims.role == healthcloud_platform::auth::Role::StoreAdmin => {}
        None => {
            return Err(StoreError::BadRequest {
                message: "a new key must be endorsed by one of the publisher's active keys ('healthcloud store add-key --signing-key CURRENT')".into(),
                field: Some("endorsement".into()),
            });
        }
    }
    let db = store.db();
    let mut write = db.begin_write().await?;
    lock(db, &mut write.tx, &format!("publisher:{id}")).await?;
    insert_key(&store, &mut write.tx, &id, &key, &now()).await?;
    write.commit().await?;
    tracing::info!(publisher = %id, key_id = %key.id(), by = %principal.claims.sub, "key added");
    Ok((StatusCode::CREATED, Json(publisher(&store, &id).await?)))
}

#[utoipa::path(post, path = "/store/v1/publishers/{publisher}/keys/{key_id}/revoke",
    request_body = Option<RevokeKey>,
    params(
        ("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"),
        ("key_id" = String, Path, pattern = r"^[0-9a-f]{64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "revoked (or already revoked at least as widely)", body = Publisher),
        (status = 400, description = "the body is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not this publisher or a store admin", body = ErrorBody),
        (status = 404, description = "no such publisher or key", body = ErrorBody),
        (status = 422, description = "the compromise date is in the future", body = ErrorBody)))]
pub(super) async fn revoke_key(
    State(store): State<Store>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
    body: Option<JsonBody<Option<RevokeKey>>>,
) -> Result<Json<Publisher>, StoreError> {
    let principal = publisher_or_admin(caller, &id, true)?;
    let request = body.and_then(|JsonBody(b)| b).unwrap_or_default();
    let since = request
        .compromised_since
        .as_deref()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| timestamp(t.with_timezone(&chrono::Utc)))
                .map_err(|e| StoreError::BadRequest {
                    message: format!(
                        "'{text}' is not an RFC 3339 time ({e}), e.g. 2026-11-01T00:00:00Z"
                    ),
                    field: Some("compromised_since".into()),
                })
        })
        .transpose()?;
    if since.as_deref().is_some_and(|since| since > now().as_str()) {
        return Err(StoreError::Unprocessable {
            message: "compromised_since is in the future: give the time the key was (or may have been) exposed, or leave it out to void everything it signed".into(),
            field: Some("compromised_since".into()),
        });
    }
    let reason = request
        .reason
        .unwrap_or_else(|| format!("revoked by {}", principal.claims.sub));
    let db = store.db();
    let mut write = db.begin_write().await?;
    // The same lock as publishing and adding keys: a publish signed with this key either
    // commits before the revocation (and is voided by it) or sees the key revoked.
    lock(db, &mut write.tx, &format!("publisher:{id}")).await?;
    lock(db, &mut write.tx, revocations::LOCK).await?;
    let mut select =
        db.sql("SELECT revoked_at, compromised_since FROM store_keys WHERE publisher = ");
    select
        .bind(id.as_str())
        .push(" AND key_id = ")
        .bind(key_id.as_str());
    let row = select
        .query()
        .fetch_optional(&mut *write.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("publisher '{id}' has no key {key_id}")))?;
    let (revoked_at, old_since): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    // Revoking again may only widen what is void: an earlier compromise date, or everything.
    let widens = match (&revoked_at, &old_since, &since) {
        (None, _, _) => true,
        (Some(_), None, _) => false,
        (Some(_), Some(_), None) => true,
        (Some(_), Some(old), Some(new)) => new < old,
    };
    if widens {
        let at = now();
        let mut update = db.sql("UPDATE store_keys SET revoked_at = ");
        update
            .bind(revoked_at.unwrap_or_else(|| at.clone()))
            .push(", compromised_since = ");
        match &since {
            Some(since) => update.bind(since.as_str()),
            None => update.push("NULL"),
        };
        update
            .push(", reason = ")
            .bind(reason.as_str())
            .push(" WHERE key_id = ")
            .bind(key_id.as_str());
        update.query().execute(&mut *write.tx).await?;
        let key_id = KeyId::try_from(key_id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        revocations::revoke_key(
            &store,
            &mut write.tx,
            &id,
            &key_id,
            since.as_deref(),
            &reason,
            &at,
        )
        .await?;
        write.commit().await?;
        store.revocations_committed();
        tracing::warn!(publisher = %id, %key_id, compromised_since = ?since, by = %principal.claims.sub, "key revoked");
    }
    Ok(Json(publisher(&store, &id).await?))
}
