//! The catalog: search, app detail, versions, component download, yank and revoke.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::error::{JsonBody, QueryParams};
use super::{Caller, Store, StoreError, lock, now, publisher_or_admin, revocations, store_admin};
use healthcloud_package::catalog::{
    AppDetail, AppList, AppSummary, ExplainedCapability, Revoked, VersionSummary,
};
use healthcloud_package::manifest::Capability;
use healthcloud_package::package::{SignedPackage, SignedVersionRecord};
use healthcloud_platform::http::ErrorBody;

/// The header that carries a downloaded component's sha256.
pub const DIGEST_HEADER: &str = "healthcloud-component-sha256";

pub(super) fn router() -> Router<Store> {
    Router::new()
        .route("/apps", get(list))
        .route("/apps/{publisher}/{app}", get(show))
        .route("/apps/{publisher}/{app}/versions/{version}", get(version))
        .route(
            "/apps/{publisher}/{app}/versions/{version}/component",
            get(component),
        )
        .route(
            "/apps/{publisher}/{app}/versions/{version}/yank",
            post(yank),
        )
        .route(
            "/apps/{publisher}/{app}/versions/{version}/revoke",
            post(revoke),
        )
}

/// Catalog search; every filter is optional.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct CatalogQuery {
    /// Words in the name, id or description (matched literally, case-insensitively): at most
    /// 8 words (separated by spaces, tabs or line breaks) in at most 500 characters.
    #[param(
        max_length = 500,
        pattern = r"^[ \t\n\r]*(?:[^ \t\n\r]+[ \t\n\r]+){0,7}(?:[^ \t\n\r]+[ \t\n\r]*)?$"
    )]
    pub q: Option<String>,
    /// `clinician`, `patient` or `citizen`.
    #[param(pattern = "^(clinician|patient|citizen)$")]
    pub audience: Option<String>,
    /// A capability the app requests, exactly as in its manifest (e.g. `kv`).
    pub capability: Option<String>,
    /// 1-based page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4294967295_u64)]
    pub page: Option<u32>,
    /// Apps per page: 1 to 100, 20 by default.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

impl CatalogQuery {
    /// Refuses what the API's parameters do not allow (the catalog pages ask with their own
    /// defaults).
    fn check(&self) -> Result<(), StoreError> {
        if let Some(audience) = &self.audience {
            audience_column(audience)?;
        }
        if self.page == Some(0) {
            return Err(StoreError::BadRequest {
                message: "page is 1-based: use 1 or more".into(),
                field: Some("page".into()),
            });
        }
        if self
            .per_page
            .is_some_and(|n| !(1..=MAX_PER_PAGE).contains(&n))
        {
            return Err(StoreError::BadRequest {
                message: format!("per_page is 1 to {MAX_PER_PAGE}"),
                field: Some("per_page".into()),
            });
        }
        Ok(())
    }
}

/// The most apps on one page.
const MAX_PER_PAGE: u32 = 100;

/// One version with its signed package.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionDetail {
    /// Status.
    #[serde(flatten)]
    pub summary: VersionSummary,
    /// The signed package, exactly as published.
    #[schema(value_type = Object)]
    pub signed: SignedPackage,
    /// The store's signed word that `signed`'s key is the publisher's and in good standing
    /// for this version; absent when it is not (see `signature`) or the version is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub record: Option<SignedVersionRecord>,
}

/// Revoking a version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeVersion {
    /// Why, shown to everyone who used it: not only spaces, tabs or line breaks.
    #[schema(pattern = r"[^ \t\n\r]")]
    pub reason: String,
}

/// The most words a catalog search matches, and the longest search in characters.
const MAX_WORDS: usize = 8;
const MAX_QUERY_CHARS: usize = 500;

/// The words of a catalog search, separated by spaces, tabs or line breaks (the `q`
/// parameter's pattern reads them the same way).
pub(super) fn words(q: &str) -> impl Iterator<Item = &str> {
    q.split([' ', '\t', '\n', '\r'])
        .filter(|word| !word.is_empty())
}

/// `text` as a LIKE pattern matching it literally anywhere (with `ESCAPE '\'`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn audience_column(audience: &str) -> Result<&'static str, StoreError> {
    match audience {
        "clinician" => Ok("for_clinician"),
        "patient" => Ok("for_patient"),
        "citizen" => Ok("for_citizen"),
        other => Err(StoreError::BadRequest {
            message: format!("unknown audience '{other}': use clinician, patient or citizen"),
            field: Some("audience".into()),
        }),
    }
}

/// Searches the catalog.
pub(super) async fn search(store: &Store, query: &CatalogQuery) -> Result<AppList, StoreError> {
    let db = store.db();
    let per_page = query.per_page.unwrap_or(20).clamp(1, MAX_PER_PAGE);
    let page = query.page.unwrap_or(1).max(1);
    if let Some(q) = &query.q
        && (words(q).count() > MAX_WORDS || q.chars().count() > MAX_QUERY_CHARS)
    {
        return Err(StoreError::BadRequest {
            message: format!(
                "search with at most {MAX_WORDS} words ({MAX_QUERY_CHARS} characters)"
            ),
            field: Some("q".into()),
        });
    }
    let filter = |select: &str| -> Result<healthcloud_platform::db::Sql, StoreError> {
        let mut sql = db.sql(select);
        sql.push(" FROM store_apps a WHERE 1 = 1");
        if let Some(q) = query.q.as_deref() {
            for word in words(q) {
                sql.push(" AND a.search_text LIKE ")
                    .bind(contains_pattern(&word.to_lowercase()))
                    .push(" ESCAPE '\\'");
            }
        }
        if let Some(audience) = query.audience.as_deref().filter(|a| !a.is_empty()) {
            sql.push(&format!(" AND a.{} = 1", audience_column(audience)?));
        }
        if let Some(capability) = query.capability.as_deref().filter(|c| !c.is_empty()) {
            sql.push(
                " AND EXISTS (SELECT 1 FROM store_app_capabilities c \
                 WHERE c.publisher = a.publisher AND c.app = a.id AND c.capability = ",
            )
            .bind(capability)
            .push(")");
        }
        Ok(sql)
    };
    let total: i64 = filter("SELECT COUNT(*)")?
        .query()
        .fetch_one(db.pool())
        .await?
        .get(0);
    let mut select = filter(
        "SELECT a.publisher, a.id, a.name, a.description, a.latest_version, \
         a.for_clinician, a.for_patient, a.for_citizen",
    )?;
    select
        .push(" ORDER BY a.name, a.publisher, a.id LIMIT ")
        .bind(i64::from(per_page))
        .push(" OFFSET ")
        .bind(i64::from(page - 1) * i64::from(per_page));
    let apps = select
        .query()
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(summary)
        .collect();
    Ok(AppList {
        apps,
        total,
        page,
        per_page,
    })
}

fn summary(row: &sqlx::any::AnyRow) -> AppSummary {
    let audience = [(5, "clinician"), (6, "patient"), (7, "citizen")]
        .iter()
        .filter(|(column, _)| row.get::<i64, _>(*column) == 1)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    AppSummary {
        publisher: row.get(0),
        id: row.get(1),
        name: row.get(2),
        description: row.get(3),
        latest_version: row.get(4),
        audience,
    }
}

/// An app with its versions.
pub(super) async fn detail(
    store: &Store,
    publisher: &str,
    app: &str,
) -> Result<AppDetail, StoreError> {
    let db = store.db();
    let mut select = db.sql(
        "SELECT a.publisher, a.id, a.name, a.description, a.latest_version, \
         a.for_clinician, a.for_patient, a.for_citizen, p.name \
         FROM store_apps a JOIN store_publishers p ON p.id = a.publisher WHERE a.publisher = ",
    );
    select.bind(publisher).push(" AND a.id = ").bind(app);
    let row = select
        .query()
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no app '{publisher}/{app}' in the store")))?;
    let summary = summary(&row);
    let publisher_name: String = row.get(8);
    let versions = versions(store, publisher, app, None).await?;
    let latest = versions
        .iter()
        .find(|(v, _)| v.version == summary.latest_version)
        .map(|(_, signed)| signed.package.requested.clone())
        .unwrap_or_default();
    let capabilities = latest
        .into_iter()
        .map(|requested| ExplainedCapability {
            explanation: Capability::parse(&requested.name)
                .map(|c| c.explain())
                .unwrap_or_default(),
            name: requested.name,
            justification: requested.justification,
        })
        .collect();
    Ok(AppDetail {
        summary,
        publisher_name,
        capabilities,
        versions: versions.into_iter().map(|(v, _)| v).collect(),
    })
}

/// The app's versions (or just `only`), newest first, with their stored envelopes.
async fn versions(
    store: &Store,
    publisher: &str,
    app: &str,
    only: Option<&str>,
) -> Result<Vec<(VersionSummary, SignedPackage)>, StoreError> {
    let db = store.db();
    let mut select = db.sql(
        "SELECT v.version, v.published_at, v.sha256, v.size, v.key_id, v.envelope, \
         v.yanked_at, v.revoked_at, v.revoke_reason, k.publisher, k.revoked_at, \
         k.compromised_since \
         FROM store_versions v JOIN store_keys k ON k.key_id = v.key_id WHERE v.publisher = ",
    );
    select.bind(publisher).push(" AND v.app = ").bind(app);
    if let Some(version) = only {
        select.push(" AND v.version = ").bind(version);
    }
    let mut versions = Vec::new();
    for row in select.query().fetch_all(db.pool()).await? {
        let envelope: String = row.get(5);
        let signed = SignedPackage::from_json(envelope.as_bytes())
            .map_err(|e| anyhow::anyhow!("stored envelope of {publisher}/{app}: {e}"))?;
        let published_at: String = row.get(1);
        let key_owner: String = row.get(9);
        let key_revoked: Option<String> = row.get(10);
        let since: Option<String> = row.get(11);
        let signature = match signed.verify() {
            Err(error) => format!("invalid: {error}"),
            Ok(_) if key_owner != publisher => format!("invalid: the key belongs to '{key_owner}'"),
            Ok(_) => match (key_revoked, since) {
                (Some(_), None) => "key revoked".to_owned(),
                (Some(_), Some(since)) if published_at >= since => {
                    format!("key compromised since {since}")
                }
                _ => "valid".to_owned(),
            },
        };
        let revoked_at: Option<String> = row.get(7);
        let reason: Option<String> = row.get(8);
        versions.push((
            VersionSummary {
                version: row.get(0),
                published_at,
                sha256: row.get(2),
                size: row.get(3),
                key_id: row.get(4),
                signature,
                yanked_at: row.get(6),
                revoked: revoked_at.map(|at| Revoked {
                    at,
                    reason: reason.unwrap_or_default(),
                }),
            },
            signed,
        ));
    }
    versions.sort_by(|(a, _), (b, _)| {
        let parse = |v: &str| semver::Version::parse(v).ok();
        parse(&b.version).cmp(&parse(&a.version))
    });
    Ok(versions)
}

async fn one_version(
    store: &Store,
    publisher: &str,
    app: &str,
    version: &str,
) -> Result<VersionDetail, StoreError> {
    let (summary, signed) = versions(store, publisher, app, Some(version))
        .await?
        .pop()
        .ok_or_else(|| {
            StoreError::NotFound(format!("no version {version} of '{publisher}/{app}'"))
        })?;
    let vouched = summary.signature == "valid" && summary.revoked.is_none();
    let record = if vouched {
        Some(store.version_record(&signed, &summary.published_at, summary.yanked_at.as_deref())?)
    } else {
        None
    };
    Ok(VersionDetail {
        summary,
        signed,
        record,
    })
}

#[utoipa::path(get, path = "/store/v1/apps", params(CatalogQuery),
    responses(
        (status = 200, body = AppList),
        (status = 400, description = "a parameter is not as described", body = ErrorBody)))]
pub(super) async fn list(
    State(store): State<Store>,
    QueryParams(query): QueryParams<CatalogQuery>,
) -> Result<Json<AppList>, StoreError> {
    query.check()?;
    Ok(Json(search(&store, &query).await?))
}

#[utoipa::path(get, path = "/store/v1/apps/{publisher}/{app}",
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")),
    responses(
        (status = 200, body = AppDetail),
        (status = 404, description = "no such app", body = ErrorBody)))]
pub(super) async fn show(
    State(store): State<Store>,
    Path((publisher, app)): Path<(String, String)>,
) -> Result<Json<AppDetail>, StoreError> {
    Ok(Json(detail(&store, &publisher, &app).await?))
}

#[utoipa::path(get, path = "/store/v1/apps/{publisher}/{app}/versions/{version}",
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("version" = String, Path, description = "A semantic version, e.g. `1.2.0`.")),
    responses(
        (status = 200, body = VersionDetail),
        (status = 404, description = "no such version", body = ErrorBody)))]
pub(super) async fn version(
    State(store): State<Store>,
    Path((publisher, app, version)): Path<(String, String, String)>,
) -> Result<Json<VersionDetail>, StoreError> {
    Ok(Json(one_version(&store, &publisher, &app, &version).await?))
}

#[utoipa::path(get, path = "/store/v1/apps/{publisher}/{app}/versions/{version}/component",
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("version" = String, Path, description = "A semantic version, e.g. `1.2.0`.")),
    responses(
        (status = 200, description = "the component; its sha256 in the Healthcloud-Component-Sha256 header", content_type = "application/wasm"),
        (status = 404, description = "no such version", body = ErrorBody),
        (status = 410, description = "revoked", body = ErrorBody)))]
pub(super) async fn component(
    State(store): State<Store>,
    Path((publisher, app, version)): Path<(String, String, String)>,
) -> Result<Response, StoreError> {
    let detail = one_version(&store, &publisher, &app, &version).await?;
    if let Some(revoked) = &detail.summary.revoked {
        return Err(StoreError::Gone(format!(
            "{publisher}/{app}@{version} was revoked at {}: {}",
            revoked.at, revoked.reason
        )));
    }
    let path = store.inner.blobs.path(&detail.summary.sha256);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| anyhow::anyhow!("component {} missing on disk: {e}", detail.summary.sha256))?;
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(detail.summary.size),
    );
    headers.insert(
        DIGEST_HEADER,
        HeaderValue::from_str(&detail.summary.sha256).map_err(anyhow::Error::from)?,
    );
    Ok(response)
}

#[utoipa::path(post, path = "/store/v1/apps/{publisher}/{app}/versions/{version}/yank",
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("version" = String, Path, description = "A semantic version, e.g. `1.2.0`.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "yanked (or yanked already)", body = VersionDetail),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not this app's publisher", body = ErrorBody),
        (status = 404, description = "no such version", body = ErrorBody)))]
pub(super) async fn yank(
    State(store): State<Store>,
    caller: Caller,
    Path((publisher, app, version)): Path<(String, String, String)>,
) -> Result<Json<VersionDetail>, StoreError> {
    publisher_or_admin(caller, &publisher, false)?;
    one_version(&store, &publisher, &app, &version).await?;
    let db = store.db();
    let mut update = db.sql("UPDATE store_versions SET yanked_at = ");
    update
        .bind(now())
        .push(" WHERE publisher = ")
        .bind(publisher.as_str())
        .push(" AND app = ")
        .bind(app.as_str())
        .push(" AND version = ")
        .bind(version.as_str())
        .push(" AND yanked_at IS NULL");
    let mut write = db.begin_write().await?;
    update.query().execute(&mut *write.tx).await?;
    write.commit().await?;
    tracing::info!(app = %format!("{publisher}/{app}"), %version, "version yanked");
    Ok(Json(one_version(&store, &publisher, &app, &version).await?))
}

#[utoipa::path(post, path = "/store/v1/apps/{publisher}/{app}/versions/{version}/revoke",
    request_body = RevokeVersion,
    params(("publisher" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("app" = String, Path, pattern = r"^[a-z0-9][a-z0-9-]{0,63}$"), ("version" = String, Path, description = "A semantic version, e.g. `1.2.0`.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "revoked (or revoked already)", body = VersionDetail),
        (status = 400, description = "the body is not as described", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "not a store admin", body = ErrorBody),
        (status = 404, description = "no such version", body = ErrorBody)))]
pub(super) async fn revoke(
    State(store): State<Store>,
    caller: Caller,
    Path((publisher, app, version)): Path<(String, String, String)>,
    JsonBody(request): JsonBody<RevokeVersion>,
) -> Result<(StatusCode, Json<VersionDetail>), StoreError> {
    let admin = store_admin(caller)?;
    let reason = request.reason.trim_matches([' ', '\t', '\n', '\r']);
    if reason.is_empty() {
        return Err(StoreError::BadRequest {
            message: "say why the version is revoked: every region that ran it is told".into(),
            field: Some("reason".into()),
        });
    }
    let detail = one_version(&store, &publisher, &app, &version).await?;
    let db = store.db();
    let mut write = db.begin_write().await?;
    lock(db, &mut write.tx, revocations::LOCK).await?;
    revocations::revoke_version(
        &store,
        &mut write.tx,
        (&publisher, &app, &version),
        Some(&detail.summary.key_id),
        reason,
    )
    .await?;
    write.commit().await?;
    store.revocations_committed();
    tracing::warn!(app = %format!("{publisher}/{app}"), %version, by = %admin.claims.sub, %reason, "version revoked");
    Ok((
        StatusCode::OK,
        Json(one_version(&store, &publisher, &app, &version).await?),
    ))
}
