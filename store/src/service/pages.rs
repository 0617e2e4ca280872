//! The catalog's web pages at `/store`: the app list with search and the app page, for region
//! admins choosing what to install and for anyone checking what an app asks to do.
//!
//! Server-rendered from the askama templates in `store/templates/` (HTML escaping on), with no
//! JavaScript and a content security policy that allows nothing but the store's own stylesheet.
//! The pages read through the same [`catalog`](super::catalog) functions as the JSON API, so
//! both always agree.

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use healthcloud_platform::http::{SecurityHeaders, stylesheet};
use serde::Deserialize;

use super::catalog::{self, CatalogQuery};
use super::{Store, StoreError};
use healthcloud_package::catalog::{AppDetail, AppList, AppSummary, VersionSummary};

/// Nothing but the store's own stylesheet (and images, for app icons to come) may load; no
/// script, no framing, forms post only back to the store.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../../templates/store.css");

/// The audience filter's choices: (value, label). `any` is no filter.
const AUDIENCES: [(&str, &str); 4] = [
    ("any", "Any audience"),
    ("clinician", "Clinicians"),
    ("patient", "Patients"),
    ("citizen", "Citizens"),
];

/// Apps per catalog page.
const PER_PAGE: u32 = 20;

pub(super) fn router() -> Router<Store> {
    Router::new()
        .route("/store", get(list))
        .route("/store/", get(|| async { Redirect::permanent("/store") }))
        .route("/store/apps/{publisher}/{app}", get(app))
        .route(
            "/store/static/store.css",
            get(|| async { stylesheet(STYLESHEET) }),
        )
        .layer(PAGE_HEADERS.layer())
}

/// The catalog pages' headers.
const PAGE_HEADERS: SecurityHeaders = SecurityHeaders {
    content_security_policy: CONTENT_SECURITY_POLICY,
    referrer_policy: Some("same-origin"),
    default_cache_control: None,
};

/// The search form's fields, all text so that a bad value is answered on the page rather
/// than by the extractor.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    q: Option<String>,
    audience: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage {
    q: String,
    audience: String,
    audiences: Vec<AudienceOption>,
    error: Option<String>,
    results: Option<Results>,
}

struct AudienceOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// One page of results, with what the pager needs.
struct Results {
    apps: Vec<AppSummary>,
    total: i64,
    page: u32,
    pages: u32,
    /// The list number of the first app on this page.
    first: u32,
    previous: Option<u32>,
    next: Option<u32>,
}

impl Results {
    fn new(list: AppList) -> Results {
        let total = u32::try_from(list.total).unwrap_or(u32::MAX);
        let pages = total.div_ceil(list.per_page).max(1);
        Results {
            first: (list.page - 1)
                .saturating_mul(list.per_page)
                .saturating_add(1),
            previous: (list.page > 1).then(|| (list.page - 1).min(pages)),
            next: (list.page < pages).then(|| list.page + 1),
            apps: list.apps,
            total: list.total,
            page: list.page,
            pages,
        }
    }

    fn count_text(&self) -> String {
        let apps = if self.total == 1 { "app" } else { "apps" };
        if self.apps.is_empty() && self.page > self.pages {
            return format!(
                "{} {apps} found, none on page {}: the last page is {}",
                self.total, self.page, self.pages
            );
        }
        if self.apps.is_empty() || self.pages == 1 {
            return format!("{} {apps} found", self.total);
        }
        let last = i64::from(self.first) + self.apps.len() as i64 - 1;
        format!("{} {apps} found, showing {}–{last}", self.total, self.first)
    }
}

async fn list(
    State(store): State<Store>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let params = params.map(|Query(params)| params);
    let (q, audience) = match &params {
        Ok(params) => (
            params.q.clone().unwrap_or_default(),
            params.audience.clone().unwrap_or_default(),
        ),
        Err(_) => Default::default(),
    };
    let mut page = ListPage {
        audiences: AUDIENCES
            .iter()
            .map(|&(value, label)| AudienceOption {
                value,
                label,
                selected: value == audience || (value == "any" && audience.is_empty()),
            })
            .collect(),
        q,
        audience,
        error: None,
        results: None,
    };
    let query = params
        .map_err(|rejection| StoreError::bad_request(format!("unreadable search: {rejection}")))
        .and_then(|params| catalog_query(&params));
    let status = match query {
        Ok(query) => match catalog::search(&store, &query).await {
            Ok(list) => {
                page.results = Some(Results::new(list));
                StatusCode::OK
            }
            Err(error) => {
                let (status, message) = shown(error);
                page.error = Some(message);
                status
            }
        },
        Err(error) => {
            let (status, message) = shown(error);
            page.error = Some(message);
            status
        }
    };
    render(status, &page)
}

/// The catalog query the form asks for.
fn catalog_query(params: &ListParams) -> Result<CatalogQuery, StoreError> {
    let page = match params.page.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(page) => match page.parse::<u32>() {
            Ok(page) if page >= 1 => Some(page),
            _ => {
                return Err(StoreError::BadRequest {
                    message: format!("page '{page}' is not a page number: use 1 or more"),
                    field: Some("page".into()),
                });
            }
        },
    };
    Ok(CatalogQuery {
        q: params.q.clone(),
        audience: params.audience.clone().filter(|audience| audience != "any"),
        capability: None,
        page,
        per_page: Some(PER_PAGE),
    })
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    app: AppDetail,
    versions: Vec<VersionRow>,
}

/// A version as the table shows it.
struct VersionRow {
    summary: VersionSummary,
    published: String,
    short_sha256: String,
    short_key_id: String,
    signature_valid: bool,
}

impl VersionRow {
    fn new(summary: VersionSummary) -> VersionRow {
        let published = chrono::DateTime::parse_from_rfc3339(&summary.published_at)
            .map(|time| time.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|_| summary.published_at.clone());
        VersionRow {
            published,
            short_sha256: summary.sha256.chars().take(12).collect(),
            short_key_id: summary.key_id.chars().take(12).collect(),
            signature_valid: summary.signature == "valid",
            summary,
        }
    }
}

async fn app(
    State(store): State<Store>,
    Path((publisher, app)): Path<(String, String)>,
) -> Response {
    match catalog::detail(&store, &publisher, &app).await {
        Ok(mut app) => {
            let versions = std::mem::take(&mut app.versions)
                .into_iter()
                .map(VersionRow::new)
                .collect();
            render(StatusCode::OK, &AppPage { app, versions })
        }
        Err(error) => error_page(error),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    heading: &'static str,
    message: String,
}

fn error_page(error: StoreError) -> Response {
    let (status, message) = shown(error);
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        _ if status.is_server_error() => "Something went wrong",
        _ => "Not available",
    };
    render(status, &ErrorPage { heading, message })
}

/// The status of `error` and the message a page may show: the API's own mapping, so the
/// pages answer as the JSON API does, and internal errors are logged there and never shown.
fn shown(error: StoreError) -> (StatusCode, String) {
    let message = match &error {
        StoreError::Internal(_) => {
            "the store could not answer; it logged the details, please try again later".to_owned()
        }
        other => other.to_string(),
    };
    (error.into_response().status(), message)
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a catalog page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the catalog page failed to render; the store logged the details",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    //! The templates and the form handling, without a store: the pages' data as the catalog
    //! would hand it over. The end-to-end browser test (tests/e2e/test_store_pages.py) covers
    //! the pages on a real server.

    use super::*;
    use healthcloud_package::catalog::{ExplainedCapability, Revoked};

    fn summary(id: &str) -> AppSummary {
        AppSummary {
            publisher: "acme".into(),
            id: id.into(),
            name: format!("App {id}"),
            description: "Does <b>things</b>".into(),
            audience: vec!["clinician".into(), "patient".into()],
            latest_version: "1.2.0".into(),
        }
    }

    fn version(version: &str, signature: &str) -> VersionSummary {
        VersionSummary {
            version: version.into(),
            published_at: "2026-03-01T09:30:00.123456Z".into(),
            sha256: "ab".repeat(32),
            size: 10,
            key_id: "cd".repeat(32),
            signature: signature.into(),
            yanked_at: None,
            revoked: None,
        }
    }

    fn list_page(params: ListParams, list: Option<AppList>) -> String {
        let query = catalog_query(&params);
        let mut page = ListPage {
            q: params.q.unwrap_or_default(),
            audience: params.audience.clone().unwrap_or_default(),
            audiences: AUDIENCES
                .iter()
                .map(|&(value, label)| AudienceOption {
                    value,
                    label,
                    selected: Some(value) == params.audience.as_deref(),
                })
                .collect(),
            error: query.err().map(|e| e.to_string()),
            results: list.map(Results::new),
        };
        if page.error.is_some() {
            page.results = None;
        }
        page.render().unwrap()
    }

    #[test]
    fn the_query_is_escaped_and_kept_in_the_form() {
        let html = list_page(
            ListParams {
                q: Some("\"><script>alert(1)</script>".into()),
                audience: Some("citizen".into()),
                page: None,
            },
            Some(AppList {
                apps: vec![summary("one")],
                total: 1,
                page: 1,
                per_page: PER_PAGE,
            }),
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("value=\"&#34;&#62;&#60;script&#62;"),
            "{html}"
        );
        assert!(
            html.contains(r#"<option value="citizen" selected>"#),
            "{html}"
        );
        assert!(
            html.contains("Does &#60;b&#62;things&#60;/b&#62;"),
            "{html}"
        );
        assert!(html.contains(r#"href="/store/apps/acme/one""#), "{html}");
        assert!(html.contains("1 app found"), "{html}");
        assert!(!html.contains("Next page"), "one page needs no pager");
    }

    #[test]
    fn the_form_rejects_bad_pages_and_reads_any_as_no_filter() {
        let params = |audience: &str, page: &str| ListParams {
            q: None,
            audience: Some(audience.into()),
            page: Some(page.into()),
        };
        let query = catalog_query(&params("any", "")).unwrap();
        assert_eq!((query.audience, query.page), (None, None));
        let query = catalog_query(&params("patient", " 3 ")).unwrap();
        assert_eq!(
            (query.audience.as_deref(), query.page),
            (Some("patient"), Some(3))
        );
        for page in ["0", "-1", "two", "99999999999"] {
            let error = catalog_query(&params("any", page)).unwrap_err();
            assert!(
                matches!(error, StoreError::BadRequest { .. }),
                "{page}: {error}"
            );
        }
        let html = list_page(params("any", "0"), None);
        assert!(html.contains("not a page number") && html.contains("role=\"alert\""));
    }

    #[test]
    fn the_pager_links_keep_the_search() {
        let results = Results::new(AppList {
            apps: (0..20).map(|i| summary(&i.to_string())).collect(),
            total: 45,
            page: 2,
            per_page: 20,
        });
        assert_eq!((results.pages, results.first), (3, 21));
        assert_eq!((results.previous, results.next), (Some(1), Some(3)));
        assert_eq!(results.count_text(), "45 apps found, showing 21–40");
        let html = list_page(
            ListParams {
                q: Some("a&b c".into()),
                audience: Some("patient".into()),
                page: Some("2".into()),
            },
            Some(AppList {
                apps: vec![summary("x")],
                total: 45,
                page: 2,
                per_page: 20,
            }),
        );
        assert!(
            html.contains(r#"href="/store?q=a%26b%20c&amp;audience=patient&amp;page=3""#),
            "{html}"
        );
        // Past the end: nothing shown, and the way back goes to the last page.
        let past = Results::new(AppList {
            apps: vec![],
            total: 45,
            page: 9,
            per_page: 20,
        });
        assert_eq!((past.previous, past.next), (Some(3), None));
        assert_eq!(
            past.count_text(),
            "45 apps found, none on page 9: the last page is 3"
        );
        let last = Results::new(AppList {
            apps: vec![],
            total: 45,
            page: u32::MAX,
            per_page: 20,
        });
        assert_eq!((last.first, last.previous), (u32::MAX, Some(3)));
    }

    #[test]
    fn the_app_page_shows_capabilities_and_each_versions_state() {
        let mut yanked = version("1.1.0", "valid");
        yanked.yanked_at = Some("2026-03-02T00:00:00Z".into());
        let mut revoked = version("1.0.0", "key revoked");
        revoked.revoked = Some(Revoked {
            at: "2026-03-03T00:00:00Z".into(),
            reason: "leaks <data>".into(),
        });
        let page = AppPage {
            app: AppDetail {
                summary: summary("one"),
                publisher_name: "ACME Health".into(),
                capabilities: vec![ExplainedCapability {
                    name: "patient/Observation.rs?category=vital-signs".into(),
                    justification: "Shows the trend.".into(),
                    explanation: "Read and search the patient's Observation records.".into(),
                }],
                versions: vec![],
            },
            versions: [version("1.2.0", "valid"), yanked, revoked]
                .into_iter()
                .map(VersionRow::new)
                .collect(),
        };
        let html = page.render().unwrap();
        assert_eq!(html.matches("<h1>").count(), 1);
        assert!(html.contains("<h1>App one</h1>"), "{html}");
        assert!(html.contains("<code>patient/Observation.rs?category=vital-signs</code>"));
        assert!(html.contains("Read and search the patient&#39;s Observation records."));
        assert!(html.contains("Shows the trend."));
        assert!(html.contains("ACME Health"));
        assert!(
            html.contains(
                r#"<time datetime="2026-03-01T09:30:00.123456Z">2026-03-01 09:30 UTC</time>"#
            ),
            "{html}"
        );
        assert!(html.contains(&format!("<code>{}…</code>", "ab".repeat(6))));
        assert!(html.contains(&format!(r#"<code class="full">{}</code>"#, "ab".repeat(32))));
        assert!(
            html.contains(r#"<span class="badge bad">key revoked</span>"#),
            "{html}"
        );
        assert!(html.contains("revoked: leaks &#60;data&#62;"), "{html}");
        assert_eq!(html.matches(">yanked<").count(), 1, "{html}");
        assert_eq!(html.matches(">available<").count(), 1, "{html}");
        assert!(!html.contains("<script"));
    }

    #[test]
    fn internal_errors_are_not_shown() {
        let (status, message) = shown(StoreError::Internal(anyhow::anyhow!(
            "database password is hunter2"
        )));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!message.contains("hunter2"));
        let (status, _) = shown(StoreError::NotFound("no app".into()));
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
