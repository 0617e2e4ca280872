//! `/regions/{region}/`: the region admin page. The region's installs with every requested
//! capability (the vendor's reason, what it allows, whether granted, a button to change it),
//! a pending upgrade to approve, the store's revocation, an uninstall, and the region's admin
//! audit log. Every change goes through the runtime's region administration (`Runtime::region_admin`), so it is audited and
//! reaches every node exactly as the admin API's would.

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use healthcloud_runtime::regions::admin::{
    Admin, AuditEntry, CapabilityView, InstallView, UpgradeRequest,
};
use serde::Deserialize;

use super::error::{PageError, form};
use super::session::{self, RegionAdmin, Session};
use super::{Launch, is_plain_id, readable_time, render, urlencode};

/// How many audit entries the page shows.
const AUDIT_ENTRIES: i64 = 50;

pub(super) fn router() -> Router<Launch> {
    let install = "/regions/{region}/installs/{publisher}/{app}";
    Router::new()
        .route(
            "/regions/{region}",
            get(|Path(region): Path<String>| async move {
                Redirect::permanent(&format!("/regions/{}/", urlencode(&region)))
            }),
        )
        .route("/regions/{region}/", get(page))
        .route(&format!("{install}/grant"), post(set_grant))
        .route(
            &format!("{install}/uninstall"),
            get(confirm_uninstall).post(uninstall),
        )
        .route(&format!("{install}/approve"), post(approve))
        .route(
            "/regions/{region}/sign-out",
            post(session::sign_out::<RegionAdmin>),
        )
}

#[derive(Debug, Deserialize)]
struct InstallPath {
    region: String,
    publisher: String,
    app: String,
}

impl InstallPath {
    /// The session's region admin and the app (`publisher/app`) the path names.
    async fn admin(
        &self,
        launch: &Launch,
        session: &Session<RegionAdmin>,
    ) -> Result<(Admin, String), PageError> {
        let admin = admin(launch, session, &self.region).await?;
        let app = format!("{}/{}", self.publisher, self.app);
        if !valid_app(&app) {
            return Err(PageError::NotFound(format!("'{app}' is not an app id")));
        }
        Ok((admin, app))
    }
}

/// The session's region admin, who must administer `region` (a refusal is audited in that
/// region's log).
async fn admin(
    launch: &Launch,
    session: &Session<RegionAdmin>,
    region: &str,
) -> Result<Admin, PageError> {
    if !is_plain_id(region) {
        return Err(PageError::NotFound(format!(
            "'{region}' is not a region name"
        )));
    }
    launch
        .runtime()
        .region_admin()
        .authorize(&session.principal, region)
        .await
        .map_err(|error| {
            PageError::Forbidden(format!(
                "you cannot administer region {region}: {}",
                error.public_message()
            ))
        })
}

fn page_path(region: &str) -> String {
    format!("/regions/{region}/")
}

/// What the page says after a change (the query of the redirect), checked against the
/// installs so the page never repeats text it did not make.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Done {
    done: String,
    app: String,
    capability: String,
}

#[derive(Template)]
#[template(path = "launch/region.html")]
struct RegionPage {
    region: String,
    user: String,
    ends: String,
    notice: Option<String>,
    installs: Vec<InstallRow>,
    audit: Vec<AuditRow>,
}

/// One install as the page shows it.
struct InstallRow {
    view: InstallView,
    /// The element id of its section.
    anchor: String,
    /// `/regions/{region}/installs/{publisher}/{app}`: its forms post below it.
    actions: String,
    capabilities: Vec<CapabilityRow>,
    /// The pending upgrade's added capabilities, with their checkbox ids.
    pending: Vec<(String, CapabilityView)>,
    revoked: Option<(String, String)>,
    installed: String,
    updated: String,
}

struct CapabilityRow {
    capability: CapabilityView,
    /// `grant` or `revoke`: what its button does.
    change: &'static str,
}

struct AuditRow {
    entry: AuditEntry,
    at: String,
    refused: bool,
}

async fn page(
    State(launch): State<Launch>,
    Path(region): Path<String>,
    session: Session<RegionAdmin>,
    done: Result<Query<Done>, QueryRejection>,
) -> Result<Response, PageError> {
    let admin = admin(&launch, &session, &region).await?;
    let back = page_path(&region);
    let admin_service = launch.runtime().region_admin();
    let views = admin_service
        .list(&admin)
        .await
        .map_err(|e| PageError::admin(e, "/"))?;
    let audit = admin_service
        .audit_log(&admin, AUDIT_ENTRIES)
        .await
        .map_err(|e| PageError::admin(e, &back))?;
    let done = done.map(|Query(done)| done).unwrap_or_default();
    let notice = notice(&region, &views, &done);
    let installs = views.into_iter().map(install_row).collect();
    let audit = audit
        .into_iter()
        .map(|entry| AuditRow {
            at: readable_time(&entry.at),
            refused: entry.outcome != "allowed",
            entry,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &RegionPage {
            user: session.user().to_owned(),
            ends: session.ends(),
            region,
            notice,
            installs,
            audit,
        },
    ))
}

fn install_row(view: InstallView) -> InstallRow {
    let anchor = format!("install-{}", view.app.replace('/', "-"));
    let actions = format!("/regions/{}/installs/{}", view.region, view.app);
    let capabilities = view
        .requested
        .iter()
        .map(|capability| CapabilityRow {
            change: if capability.granted {
                "revoke"
            } else {
                "grant"
            },
            capability: capability.clone(),
        })
        .collect();
    let pending = view
        .pending
        .iter()
        .flat_map(|pending| pending.added.iter().cloned().enumerate())
        .map(|(i, capability)| (format!("{anchor}-added-{i}"), capability))
        .collect();
    InstallRow {
        revoked: view
            .revoked
            .as_ref()
            .map(|r| (readable_time(&r.at), r.reason.clone())),
        installed: readable_time(&view.installed_at),
        updated: readable_time(&view.updated_at),
        anchor,
        actions,
        capabilities,
        pending,
        view,
    }
}

fn notice(region: &str, views: &[InstallView], done: &Done) -> Option<String> {
    let view = views.iter().find(|v| v.app == done.app);
    let capability =
        view.and_then(|v| v.requested.iter().find(|c| c.capability == done.capability));
    match (done.done.as_str(), view, capability) {
        ("granted", Some(view), Some(c)) if c.granted => Some(format!(
            "Granted {} to {}: its next call may use it, on every node.",
            c.capability, view.name
        )),
        ("revoked", Some(view), Some(c)) if !c.granted => Some(format!(
            "Revoked {} from {}: its next call is refused it, on every node.",
            c.capability, view.name
        )),
        ("approved", Some(view), _) => Some(format!(
            "Approved: {} now runs version {}.",
            view.name, view.version
        )),
        ("uninstalled", None, _) if valid_app(&done.app) => Some(format!(
            "Uninstalled {} from region {region}: it no longer serves there, and its stored state is deleted.",
            done.app
        )),
        _ => None,
    }
}

fn valid_app(app: &str) -> bool {
    app.split_once('/')
        .is_some_and(|(publisher, id)| is_plain_id(publisher) && is_plain_id(id))
}

/// Sends the browser back to the page, saying what was done.
fn done(region: &str, pairs: &[(&str, &str)], anchor: &str) -> Response {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    Redirect::to(&format!("/regions/{region}/?{}#{anchor}", query.join("&"))).into_response()
}

#[derive(Debug, Deserialize)]
struct GrantForm {
    capability: String,
    /// `grant` or `revoke`.
    change: String,
}

async fn set_grant(
    State(launch): State<Launch>,
    Path(path): Path<InstallPath>,
    session: Session<RegionAdmin>,
    request: Result<Form<GrantForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (admin, app) = path.admin(&launch, &session).await?;
    let request = form(request)?;
    let grant = match request.change.as_str() {
        "grant" => true,
        "revoke" => false,
        other => {
            return Err(PageError::BadRequest(format!(
                "'{other}' is neither grant nor revoke"
            )));
        }
    };
    launch
        .runtime()
        .region_admin()
        .set_grant(&admin, &app, &request.capability, grant)
        .await
        .map_err(|e| PageError::admin(e, &page_path(&path.region)))?;
    let done_word = if grant { "granted" } else { "revoked" };
    Ok(done(
        &path.region,
        &[
            ("done", done_word),
            ("app", &app),
            ("capability", &request.capability),
        ],
        &format!("install-{}-{}", path.publisher, path.app),
    ))
}

#[derive(Template)]
#[template(path = "launch/uninstall.html")]
struct UninstallPage {
    region: String,
    user: String,
    ends: String,
    view: InstallView,
    actions: String,
}

async fn confirm_uninstall(
    State(launch): State<Launch>,
    Path(path): Path<InstallPath>,
    session: Session<RegionAdmin>,
) -> Result<Response, PageError> {
    let (admin, app) = path.admin(&launch, &session).await?;
    let view = launch
        .runtime()
        .region_admin()
        .show(&admin, &app)
        .await
        .map_err(|e| PageError::admin(e, &page_path(&path.region)))?;
    Ok(render(
        StatusCode::OK,
        &UninstallPage {
            user: session.user().to_owned(),
            ends: session.ends(),
            actions: format!("/regions/{}/installs/{app}", path.region),
            region: path.region,
            view,
        },
    ))
}

async fn uninstall(
    State(launch): State<Launch>,
    Path(path): Path<InstallPath>,
    session: Session<RegionAdmin>,
) -> Result<Response, PageError> {
    let (admin, app) = path.admin(&launch, &session).await?;
    launch
        .runtime()
        .region_admin()
        .uninstall(&admin, &app)
        .await
        .map_err(|e| PageError::admin(e, &page_path(&path.region)))?;
    Ok(done(
        &path.region,
        &[("done", "uninstalled"), ("app", &app)],
        "installs-heading",
    ))
}

/// The approve form: the pending `version` and any number of `grant` checkboxes.
async fn approve(
    State(launch): State<Launch>,
    Path(path): Path<InstallPath>,
    session: Session<RegionAdmin>,
    request: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let (admin, app) = path.admin(&launch, &session).await?;
    let pairs = form(request)?;
    let values = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let Some(version) = values("version").into_iter().next() else {
        return Err(PageError::BadRequest(
            "the approve form names no version".into(),
        ));
    };
    let request = UpgradeRequest {
        version,
        approve: true,
        grant: values("grant"),
        // Internal outbound destinations are allowed only from the CLI, explicitly.
        allow_internal_addresses: false,
    };
    launch
        .runtime()
        .region_admin()
        .upgrade(&admin, &app, &request)
        .await
        .map_err(|e| PageError::admin(e, &page_path(&path.region)))?;
    Ok(done(
        &path.region,
        &[("done", "approved"), ("app", &app)],
        &format!("install-{}-{}", path.publisher, path.app),
    ))
}

#[cfg(test)]
mod tests {
    //! The page as the runtime's views would fill it: what the browser test cannot reach
    //! (a pending upgrade, a revoked version) and escaping.

    use healthcloud_runtime::regions::admin::{PendingView, RevokedView};

    use super::*;

    fn capability(name: &str, granted: bool) -> CapabilityView {
        CapabilityView {
            capability: name.into(),
            justification: "Because <b>we</b> need it".into(),
            explanation: format!("Explains {name}"),
            granted,
        }
    }

    fn view() -> InstallView {
        InstallView {
            region: "hovedstaden".into(),
            app: "acme/notes".into(),
            name: "Notes <script>".into(),
            version: "1.0.0".into(),
            sha256: "ab".repeat(32),
            key_id: "cd".repeat(32),
            requested: vec![
                capability("patient/Observation.rs", true),
                capability("kv", false),
            ],
            granted: vec!["patient/Observation.rs".into()],
            allow_internal_addresses: false,
            installed_at: "2026-11-01T09:30:00.000Z".into(),
            updated_at: "2026-11-01T09:30:00.000Z".into(),
            serving: false,
            revoked: Some(RevokedView {
                reason: "leaks data".into(),
                at: "2026-11-02T10:00:00Z".into(),
            }),
            pending: Some(PendingView {
                version: "1.1.0".into(),
                registration_changed: false,
                added: vec![capability("outbound-http:api.example", false)],
            }),
            url: "/apps/hovedstaden/acme/notes/".into(),
            smart_client: None,
        }
    }

    #[test]
    fn each_capability_gets_its_toggle_and_a_pending_upgrade_its_approval() {
        let page = RegionPage {
            region: "hovedstaden".into(),
            user: "admin".into(),
            ends: "10:00 UTC".into(),
            notice: None,
            installs: vec![install_row(view())],
            audit: Vec::new(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("Notes &#60;script&#62;"), "{html}");
        assert!(html.contains("Because &#60;b&#62;we&#60;/b&#62; need it"));
        let form =
            r#"<form method="post" action="/regions/hovedstaden/installs/acme/notes/grant">"#;
        assert_eq!(html.matches(form).count(), 2, "{html}");
        assert!(html.contains(r#"name="change" value="revoke""#));
        assert!(html.contains(r#"name="change" value="grant""#));
        assert!(html.contains("Revoked by the app store at 2026-11-02 10:00:00 UTC"));
        assert!(html.contains(r#"action="/regions/hovedstaden/installs/acme/notes/approve""#));
        assert!(html.contains(r#"<input type="hidden" name="version" value="1.1.0">"#));
        assert!(html.contains(
            r#"<input type="checkbox" id="install-acme-notes-added-0" name="grant" value="outbound-http:api.example">"#
        ));
        assert!(html.contains(r#"<label for="install-acme-notes-added-0">"#));
    }

    #[test]
    fn notices_repeat_only_what_the_installs_confirm() {
        let views = vec![view()];
        let done = |done: &str, app: &str, capability: &str| Done {
            done: done.into(),
            app: app.into(),
            capability: capability.into(),
        };
        let revoked = notice("hovedstaden", &views, &done("revoked", "acme/notes", "kv"));
        assert!(revoked.unwrap().starts_with("Revoked kv from Notes"));
        // Says "granted" only when it is.
        assert_eq!(
            notice("hovedstaden", &views, &done("granted", "acme/notes", "kv")),
            None
        );
        assert_eq!(
            notice(
                "hovedstaden",
                &views,
                &done("revoked", "acme/notes", "<b>x</b>")
            ),
            None
        );
        assert_eq!(
            notice(
                "hovedstaden",
                &views,
                &done("uninstalled", "acme/notes", "")
            ),
            None,
            "still installed"
        );
        assert!(
            notice("hovedstaden", &views, &done("uninstalled", "acme/gone", ""))
                .unwrap()
                .starts_with("Uninstalled acme/gone")
        );
        assert_eq!(
            notice("hovedstaden", &views, &done("uninstalled", "<i>/x y", "")),
            None
        );
    }
}
