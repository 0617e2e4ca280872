//! Publishing a signed package: `POST /store/v1/packages`, multipart with the envelope
//! (`package`) first and the component (`component`) streamed after it.
//!
//! Everything that can be refused from the envelope alone (namespace, signature, key status,
//! version order, declared size) is refused before a component byte is read. The component
//! streams to a temporary file under the size the package signs, is hashed on the way,
//! checked with the runtime's install-time check, then moved into content-addressed storage
//! and recorded in one transaction, under the publisher's lock (which key revocation also
//! takes; the key is checked again there). The lock decides concurrent publishes of one
//! version too.

use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use healthcloud_platform::db::Arg;

use super::{Caller, Store, StoreError, StoreLimits, acts_for, authenticated, lock, now};
use healthcloud_package::manifest::Audience;
use healthcloud_package::package::SignedPackage;
use healthcloud_platform::http::ErrorBody;

/// The largest envelope accepted (the manifest with its justifications, and the signature).
const MAX_ENVELOPE: usize = 256 * 1024;

pub(super) fn router(limits: &StoreLimits) -> Router<Store> {
    // The component streams under the size its package signs; the body limit bounds what
    // the multipart parser may read ahead in any case.
    let most = limits.max_component_bytes as usize + MAX_ENVELOPE + 64 * 1024;
    Router::new().route(
        "/packages",
        post(publish).layer(DefaultBodyLimit::max(most)),
    )
}

/// A published version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// The publisher.
    pub publisher: String,
    /// The app.
    pub app: String,
    /// The version.
    pub version: String,
    /// The component's sha256.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: u64,
    /// The signing key.
    pub key_id: String,
    /// When the store accepted it.
    pub published_at: String,
}

/// The two multipart fields of a publish (documentation only).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
struct PublishForm {
    /// The signed package envelope (`healthcloud app sign` writes it), JSON.
    package: String,
    /// The component bytes.
    #[schema(format = Binary)]
    component: Vec<u8>,
}

/// The multipart body, whose rejection (no `multipart/form-data` content type or boundary)
/// is a JSON [`StoreError`] like every other refusal.
pub(super) struct Upload(Multipart);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Upload {
    type Rejection = StoreError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, StoreError> {
        <Multipart as axum::extract::FromRequest<S>>::from_request(request, state)
            .await
            .map(Upload)
            .map_err(|rejection| {
                StoreError::bad_request(format!(
                    "{}: send multipart/form-data with the fields 'package' (the .sig.json envelope), then 'component' (the .wasm)",
                    rejection.body_text()
                ))
            })
    }
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> StoreError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StoreError::TooLarge(error.body_text())
    } else {
        StoreError::bad_request(format!("malformed multipart upload: {}", error.body_text()))
    }
}

async fn next_field<'a>(multipart: &'a mut Multipart, name: &str) -> Result<Field<'a>, StoreError> {
    let field = multipart.next_field().await.map_err(multipart_error)?;
    match field {
        Some(field) if field.name() == Some(name) => Ok(field),
        _ => Err(StoreError::bad_request(format!(
            "expected the multipart field '{name}': send 'package' (the .sig.json envelope) first, then 'component' (the .wasm)"
        ))),
    }
}

#[utoipa::path(post, path = "/store/v1/packages",
    request_body(content = PublishForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "published", body = Published),
        (status = 200, description = "an identical package was already published", body = Published),
        (status = 400, description = "not a multipart upload of a package envelope and its component, or the component is not the one signed", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not this namespace's publisher, or the signing key is not an active key of it", body = ErrorBody),
        (status = 408, description = "the upload took too long", body = ErrorBody),
        (status = 409, description = "that version exists with other content, or a later one is published", body = ErrorBody),
        (status = 413, description = "over the size cap", body = ErrorBody),
        (status = 422, description = "the component would not install", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn publish(
    State(store): State<Store>,
    caller: Caller,
    Upload(mut multipart): Upload,
) -> Result<(StatusCode, Json<Published>), StoreError> {
    let outcome = receive(&store, caller, &mut multipart).await;
    let authenticated = !matches!(outcome, Err(StoreError::Unauthorized(_)));
    if authenticated && !matches!(outcome, Ok((StatusCode::CREATED, _))) {
        // An answer given before the upload was read (a refusal, or an identical package)
        // would otherwise reach the client as a reset connection while it is still sending.
        // Only for a caller with a valid token, and only so much.
        let drain = async {
            let mut read = 0;
            while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(chunk)) = field.chunk().await {
                    read += chunk.len();
                    if read > DRAIN_BYTES {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    outcome
}

/// How much of a refused upload is read, and for how long, so the client gets the answer.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

async fn receive(
    store: &Store,
    caller: Caller,
    multipart: &mut Multipart,
) -> Result<(StatusCode, Json<Published>), StoreError> {
    let store = store.clone();
    let principal = authenticated(caller)?;
    let mut envelope = Vec::new();
    {
        let mut field = next_field(multipart, "package").await?;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if envelope.len() + chunk.len() > MAX_ENVELOPE {
                return Err(StoreError::TooLarge(format!(
                    "the package envelope is over {MAX_ENVELOPE} bytes: send the .sig.json that 'healthcloud app sign' wrote, not another file"
                )));
            }
            envelope.extend_from_slice(&chunk);
        }
    }
    let signed = SignedPackage::from_json(&envelope)?;
    let app = &signed.package.app;
    let version = app.version.to_string();
    let publisher = app.publisher.as_str();
    acts_for(&principal, publisher, false).map_err(|_| {
        StoreError::Forbidden(format!(
            "'{}/{}' is in publisher '{publisher}''s namespace, and your token is for '{}': publish under your own publisher id",
            publisher, app.id, principal.claims.sub
        ))
    })?;
    let key_id = signed.verify()?.id().to_string();
    let db = store.db();
    {
        let mut conn = db.pool().acquire().await?;
        check_key(&store, &mut conn, publisher, &key_id).await?;
        if let Some(published) = decide(&store, &mut conn, &signed).await? {
            return Ok((StatusCode::OK, Json(published)));
        }
    }
    let declared = signed.package.component.size;
    let max = store.inner.limits.max_component_bytes;
    if declared > max {
        return Err(StoreError::TooLarge(format!(
            "the component is {declared} bytes; this store accepts at most {max}: make it smaller (a release build, no debug info)"
        )));
    }

    let mut field = next_field(multipart, "component").await?;
    let mut upload = store.inner.blobs.upload().await?;
    let deadline = tokio::time::Instant::now() + store.inner.limits.upload_time;
    loop {
        // Dropping the upload (any early return) deletes its temporary file.
        let chunk = tokio::time::timeout_at(deadline, field.chunk())
            .await
            .map_err(|_| {
                StoreError::Timeout(format!(
                    "the upload took longer than {} s: try again on a faster connection",
                    store.inner.limits.upload_time.as_secs()
                ))
            })?
            .map_err(multipart_error)?;
        let Some(chunk) = chunk else { break };
        if upload.size() + chunk.len() as u64 > declared {
            return Err(StoreError::TooLarge(format!(
                "the upload is larger than the {declared} bytes the package signs: upload the component that was signed"
            )));
        }
        upload.write(&chunk).await?;
        if upload.size() == chunk.len() as u64 {
            store.pause_point("uploading").await;
        }
    }
    let uploaded = upload.finish().await?;
    store.pause_point("uploaded").await;
    if uploaded.sha256 != signed.package.component.sha256 || uploaded.size != declared {
        return Err(StoreError::bad_request(format!(
            "the component is not the one that was signed: got sha256 {} ({} bytes), the package signs {} ({declared} bytes); sign the component you upload ('healthcloud app sign')",
            uploaded.sha256, uploaded.size, signed.package.component.sha256
        )));
    }
    let bytes = uploaded.read().await?;
    let manifest = signed.package.manifest();
    let check = store.inner.check.clone();
    tokio::task::spawn_blocking(move || check(&manifest, &bytes))
        .await
        .map_err(|e| anyhow::anyhow!("component check panicked: {e}"))?
        .map_err(|reason| StoreError::Unprocessable {
            message: format!("the component would not install: {reason}"),
            field: Some("component".into()),
        })?;
    store.pause_point("validated").await;

    let mut write = db.begin_write().await?;
    // The publisher's lock, which key revocation takes too: the key is checked again here,
    // so a key revoked during the upload publishes nothing.
    lock(db, &mut write.tx, &format!("publisher:{publisher}")).await?;
    check_key(&store, &mut write.tx, publisher, &key_id).await?;
    if let Some(published) = decide(&store, &mut write.tx, &signed).await? {
        return Ok((StatusCode::OK, Json(published)));
    }
    store.inner.blobs.commit(uploaded).await?;
    store.pause_point("placed").await;
    let published = record(&store, &mut write.tx, &signed).await?;
    store.pause_point("recorded").await;
    write.commit().await?;
    store.pause_point("committed").await;
    tracing::info!(
        app = %signed.package.app.full_id(), %version, sha256 = %published.sha256,
        key_id = %published.key_id, "published"
    );
    Ok((StatusCode::CREATED, Json(published)))
}

/// Refuses a key that is not an active key of `publisher`.
async fn check_key(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    publisher: &str,
    key_id: &str,
) -> Result<(), StoreError> {
    let db = store.db();
    let mut select = db.sql(
        "SELECT publisher, revoked_at, compromised_since, reason FROM store_keys WHERE key_id = ",
    );
    select.bind(key_id);
    let Some(row) = select.query().fetch_optional(conn).await? else {
        return Err(StoreError::Forbidden(format!(
            "key {key_id} is not registered with this store: ask the store admin to register it ('healthcloud store approve-publisher'), or add it with 'healthcloud store add-key'"
        )));
    };
    let owner: String = row.get(0);
    if owner != publisher {
        return Err(StoreError::Forbidden(format!(
            "key {key_id} belongs to publisher '{owner}', not '{publisher}': sign with one of '{publisher}''s keys"
        )));
    }
    let revoked_at: Option<String> = row.get(1);
    let since: Option<String> = row.get(2);
    let reason: Option<String> = row.get(3);
    let reason = reason.unwrap_or_default();
    match (revoked_at, since) {
        (None, _) => Ok(()),
        (Some(_), Some(since)) if now() < since => Ok(()),
        (Some(at), None) => Err(StoreError::Forbidden(format!(
            "key {key_id} was revoked at {at} ({reason}): sign with an active key"
        ))),
        (Some(_), Some(since)) => Err(StoreError::Forbidden(format!(
            "key {key_id} is compromised since {since} ({reason}): sign with an active key"
        ))),
    }
}

/// What an existing version or a later one means for this publish: `Some` when an identical
/// package is already published (a no-op), an error when the version is taken by other
/// content or not above the latest, `None` when the publish may go ahead.
async fn decide(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    signed: &SignedPackage,
) -> Result<Option<Published>, StoreError> {
    let db = store.db();
    let app = &signed.package.app;
    let mut select =
        db.sql("SELECT version, envelope, published_at, revoked_at, revoke_reason FROM store_versions WHERE publisher = ");
    select
        .bind(app.publisher.as_str())
        .push(" AND app = ")
        .bind(app.id.as_str());
    let rows = select.query().fetch_all(conn).await?;
    let mut latest: Option<semver::Version> = None;
    for row in &rows {
        let version: String = row.get(0);
        let version = semver::Version::parse(&version)
            .map_err(|e| anyhow::anyhow!("stored version {version}: {e}"))?;
        if version == app.version {
            let envelope: String = row.get(1);
            let existing = SignedPackage::from_json(envelope.as_bytes())
                .map_err(|e| anyhow::anyhow!("stored envelope: {e}"))?;
            let revoked: Option<String> = row.get(3);
            if let Some(at) = revoked {
                let reason: Option<String> = row.get(4);
                return Err(StoreError::Conflict(format!(
                    "version {} of {} was revoked at {at} ({}): publish a new version",
                    app.version,
                    app.full_id(),
                    reason.unwrap_or_default()
                )));
            }
            if existing.package == signed.package {
                return Ok(Some(published(&existing, row.get(2))));
            }
            return Err(StoreError::Conflict(format!(
                "version {} of {} is already published with different content: bump the version",
                app.version,
                app.full_id()
            )));
        }
        latest = latest.max(Some(version));
    }
    match latest {
        Some(latest) if latest > app.version => Err(StoreError::Conflict(format!(
            "version {} of {} is lower than the latest published version {latest}: versions only go up, publish a version above {latest}",
            app.version,
            app.full_id()
        ))),
        _ => Ok(None),
    }
}

fn published(signed: &SignedPackage, published_at: String) -> Published {
    let app = &signed.package.app;
    Published {
        publisher: app.publisher.clone(),
        app: app.id.clone(),
        version: app.version.to_string(),
        sha256: signed.package.component.sha256.clone(),
        size: signed.package.component.size,
        key_id: signed.signature.key_id.to_string(),
        published_at,
    }
}

/// Records the version and makes it the app's catalog entry.
async fn record(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    signed: &SignedPackage,
) -> Result<Published, StoreError> {
    let db = store.db();
    let published = published(signed, now());
    let app = &signed.package.app;
    let mut insert = db.sql(
        "INSERT INTO store_versions \
         (publisher, app, version, sha256, size, key_id, envelope, published_at) VALUES (",
    );
    insert
        .bind_list([
            Arg::from(published.publisher.as_str()),
            published.app.as_str().into(),
            published.version.as_str().into(),
            published.sha256.as_str().into(),
            (published.size as i64).into(),
            published.key_id.as_str().into(),
            // What was verified, re-serialized: never the upload's own bytes.
            signed.to_json().into(),
            published.published_at.as_str().into(),
        ])
        .push(")");
    insert.query().execute(&mut **tx).await?;

    let search_text = format!("{} {} {}", app.name, app.full_id(), app.description).to_lowercase();
    let audience = |who: Audience| i64::from(app.audience.contains(&who));
    let mut upsert = db.sql(
        "INSERT INTO store_apps (publisher, id, latest_version, name, description, search_text, \
         for_clinician, for_patient, for_citizen, updated_at) VALUES (",
    );
    upsert
        .bind_list([
            Arg::from(published.publisher.as_str()),
            published.app.as_str().into(),
            published.version.as_str().into(),
            app.name.as_str().into(),
            app.description.as_str().into(),
            search_text.into(),
            audience(Audience::Clinician).into(),
            audience(Audience::Patient).into(),
            audience(Audience::Citizen).into(),
            published.published_at.as_str().into(),
        ])
        .push(
            ") ON CONFLICT (publisher, id) DO UPDATE SET latest_version = excluded.latest_version, \
             name = excluded.name, description = excluded.description, \
             search_text = excluded.search_text, for_clinician = excluded.for_clinician, \
             for_patient = excluded.for_patient, for_citizen = excluded.for_citizen, \
             updated_at = excluded.updated_at",
        );
    upsert.query().execute(&mut **tx).await?;
    let mut clear = db.sql("DELETE FROM store_app_capabilities WHERE publisher = ");
    clear
        .bind(published.publisher.as_str())
        .push(" AND app = ")
        .bind(published.app.as_str());
    clear.query().execute(&mut **tx).await?;
    for requested in &signed.package.requested {
        let mut insert =
            db.sql("INSERT INTO store_app_capabilities (publisher, app, capability) VALUES (");
        insert
            .bind_list([
                Arg::from(published.publisher.as_str()),
                published.app.as_str().into(),
                requested.name.as_str().into(),
            ])
            .push(")");
        insert.query().execute(&mut **tx).await?;
    }
    Ok(published)
}
