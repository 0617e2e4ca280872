//! `/store-admin/`: the store admin page. Every published version with its signature verdict,
//! its status and where it runs, and a "revoke this version" form taking a reason. Revoking
//! calls the store's API (`POST /store/v1/apps/{publisher}/{app}/versions/{version}/revoke`)
//! with the session's own store-admin token: the page holds no privilege of its own.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use healthcloud_package::catalog::{AppSummary, VersionSummary};
use healthcloud_package::client::{AppVersion, ClientError, StoreClient};
use serde::Deserialize;

use super::error::PageError;
use super::session::{self, Session, SessionKind, StoreAdmin};
use super::{Launch, is_plain_id, readable_time, render, urlencode};

/// At most this many catalog pages of 100 apps are shown.
const CATALOG_PAGES: u32 = 20;

pub(super) fn router() -> Router<Launch> {
    Router::new()
        .route(
            "/store-admin",
            get(|| async { Redirect::permanent(StoreAdmin::PATH) }),
        )
        .route("/store-admin/", get(page))
        .route("/store-admin/revoke", post(revoke))
        .route(
            "/store-admin/sign-out",
            post(session::sign_out::<StoreAdmin>),
        )
}

#[derive(Template)]
#[template(path = "launch/store_admin.html")]
struct StoreAdminPage {
    user: String,
    ends: String,
    notice: Option<String>,
    apps: Vec<AppRow>,
}

struct AppRow {
    app: AppSummary,
    /// `publisher/app`.
    full_id: String,
    versions: Vec<VersionRow>,
}

struct VersionRow {
    summary: VersionSummary,
    /// `publisher/app@version`: what the revoke form sends.
    full: String,
    /// The reason field's id.
    field: String,
    published: String,
    revoked: Option<(String, String)>,
    short_sha256: String,
    short_key_id: String,
    /// Regions serving it now.
    serving: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Done {
    done: String,
    version: String,
}

async fn page(
    State(launch): State<Launch>,
    session: Session<StoreAdmin>,
    done: Result<Query<Done>, QueryRejection>,
) -> Result<Response, PageError> {
    let catalog = catalog(&launch).await?;
    let mut serving: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for install in launch.runtime().installs() {
        let identity = &install.identity;
        serving
            .entry((identity.id.clone(), identity.version.clone()))
            .or_default()
            .push(identity.region.clone());
    }
    let apps: Vec<AppRow> = catalog
        .into_iter()
        .map(|(app, versions)| {
            let full_id = format!("{}/{}", app.publisher, app.id);
            let versions = versions
                .into_iter()
                .map(|summary| VersionRow {
                    full: format!("{full_id}@{}", summary.version),
                    field: format!("reason-{}-{}-{}", app.publisher, app.id, summary.version),
                    published: readable_time(&summary.published_at),
                    revoked: summary
                        .revoked
                        .as_ref()
                        .map(|r| (readable_time(&r.at), r.reason.clone())),
                    short_sha256: summary.sha256.chars().take(12).collect(),
                    short_key_id: summary.key_id.chars().take(12).collect(),
                    serving: serving
                        .get(&(full_id.clone(), summary.version.clone()))
                        .cloned()
                        .unwrap_or_default(),
                    summary,
                })
                .collect();
            AppRow {
                app,
                full_id,
                versions,
            }
        })
        .collect();
    let done = done.map(|Query(done)| done).unwrap_or_default();
    let notice = (done.done == "revoked")
        .then(|| {
            apps.iter()
                .flat_map(|app| &app.versions)
                .find(|v| v.full == done.version)
                .and_then(|v| v.revoked.as_ref().map(|(_, reason)| (v, reason)))
                .map(|(v, reason)| {
                    format!(
                        "Revoked {}: every runtime stops serving it within seconds. Reason given: {reason}",
                        v.full
                    )
                })
        })
        .flatten();
    Ok(render(
        StatusCode::OK,
        &StoreAdminPage {
            user: session.user().to_owned(),
            ends: session.ends(),
            notice,
            apps,
        },
    ))
}

/// Every app in the store's catalog with its versions, through the store's public API.
async fn catalog(launch: &Launch) -> Result<Vec<(AppSummary, Vec<VersionSummary>)>, PageError> {
    let store = StoreClient::new(&launch.config().store_url, None)?;
    let failed = |e: ClientError| PageError::Refused {
        status: StatusCode::BAD_GATEWAY,
        message: format!("the store's catalog could not be read: {e}"),
        back: "/".into(),
    };
    let mut apps = Vec::new();
    for page in 1..=CATALOG_PAGES {
        let list = store.apps(page, 100).await.map_err(failed)?;
        let last = i64::from(list.page) * i64::from(list.per_page) >= list.total;
        for app in list.apps {
            let detail = store.app(&app.publisher, &app.id).await.map_err(failed)?;
            apps.push((app, detail.versions));
        }
        if last {
            break;
        }
    }
    Ok(apps)
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    /// `publisher/app@version`.
    version: String,
    reason: String,
}

async fn revoke(
    State(launch): State<Launch>,
    session: Session<StoreAdmin>,
    request: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let request = super::error::form(request)?;
    let version: AppVersion = request
        .version
        .parse()
        .map_err(|e| PageError::BadRequest(format!("the form names no version: {e}")))?;
    if !(is_plain_id(&version.publisher) && is_plain_id(&version.app)) {
        return Err(PageError::NotFound(format!(
            "the store has no app {version}"
        )));
    }
    let store = StoreClient::new(&launch.config().store_url, Some(session.token.clone()))?;
    store
        .revoke_version(&version, request.reason.trim())
        .await
        .map_err(|e| PageError::store(e, StoreAdmin::PATH))?;
    tracing::warn!(version = %version, by = session.user(), "version revoked from the store admin page");
    let location = format!(
        "/store-admin/?done=revoked&version={}#app-{}-{}",
        urlencode(&version.to_string()),
        version.publisher,
        version.app
    );
    Ok(Redirect::to(&location).into_response())
}
