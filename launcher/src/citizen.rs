//! `/citizen/`: the citizen page. Who looked at my data (the citizen's AuditEvents: when, who,
//! through which app, what, the outcome) and, per installed app, a button that opts it out of
//! the citizen's data (a Consent denying `Device/<publisher.app>`) or lifts that opt-out; and
//! the same for the purposes backend services use data for (research, quality registries:
//! a Consent denying the purpose of use). An export that included the citizen's records is
//! in the log as such, with what it was for.
//!
//! Everything goes through the integration cloud's [`FhirService`] with the citizen's verified
//! token, the same policy path (compartment, scopes, consent, audit) as the FHIR API.
//!
//! [`FhirService`]: healthcloud_integration::FhirService

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use healthcloud_integration::consent::{self, Denial};
use healthcloud_integration::policy::AccessContext;
use healthcloud_integration::service::Change;
use healthcloud_integration::store::Version;
use healthcloud_platform::scope::Purpose;
use serde::Deserialize;
use serde_json::Value;

use super::error::PageError;
use super::session::{self, Citizen, Session, SessionKind};
use super::{Launch, readable_time, render, urlencode};

/// How many accesses the page lists, newest first.
const ACCESSES: usize = 50;

pub(super) fn router() -> Router<Launch> {
    Router::new()
        .route(
            "/citizen",
            get(|| async { Redirect::permanent(Citizen::PATH) }),
        )
        .route("/citizen/", get(page))
        .route("/citizen/opt-out", post(opt_out))
        .route("/citizen/lift", post(lift))
        .route("/citizen/sign-out", post(session::sign_out::<Citizen>))
}

impl Session<Citizen> {
    /// The citizen's own patient id (a citizen token always names it) and the access context
    /// of the citizen's calls.
    fn context(&self) -> Result<(String, AccessContext), PageError> {
        let patient = self.principal.claims.patient.clone().ok_or_else(|| {
            PageError::Forbidden("your session names no patient record of yours".into())
        })?;
        Ok((patient, AccessContext::user(self.principal.clone())))
    }
}

#[derive(Template)]
#[template(path = "launch/citizen.html")]
struct CitizenPage {
    user: String,
    ends: String,
    patient: String,
    notice: Option<String>,
    accesses: Vec<Access>,
    apps: Vec<AppRow>,
    purposes: Vec<PurposeRow>,
    opt_outs: Vec<OptOut>,
    /// Each consent's story, newest first: what it opted out of, and when it changed.
    history: Vec<String>,
}

/// One AuditEvent as the citizen reads it.
pub(super) struct Access {
    datetime: String,
    at: String,
    /// The user, with their role.
    pub(super) who: String,
    /// Whether it was the citizen (or the patient) themselves.
    yourself: bool,
    /// The app and its version, when the access came through one.
    pub(super) app: Option<String>,
    /// What was done to which type of data.
    pub(super) what: String,
    /// The region (or the integration cloud).
    pub(super) place: String,
    allowed: bool,
    /// `allowed`, or why it was refused.
    pub(super) outcome: String,
}

/// An installed app and the citizen's opt-out of it.
struct AppRow {
    /// `publisher/app`.
    id: String,
    name: String,
    /// `Device/<publisher.app>`: how consents name it.
    device: String,
    regions: String,
    /// The active Consent opting it out of everything.
    opted_out: Option<String>,
    /// Resource types a narrower opt-out covers.
    partly: Vec<String>,
}

/// A purpose of use the citizen may opt out of, and their opt-out of it.
struct PurposeRow {
    /// Its name in a grant and in the form (`research`).
    name: &'static str,
    /// In words.
    display: &'static str,
    /// The active Consent opting out of it.
    opted_out: Option<String>,
}

/// The purposes of use the page offers an opt-out of: the uses of data beyond the citizen's
/// own care.
const OPTIONAL_PURPOSES: [Purpose; 2] = [Purpose::Research, Purpose::Quality];

/// One active Consent with deny provisions.
struct OptOut {
    id: String,
    since: String,
    denied: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Done {
    done: String,
    app: String,
    purpose: String,
}

async fn page(
    State(launch): State<Launch>,
    session: Session<Citizen>,
    done: Result<Query<Done>, QueryRejection>,
) -> Result<Response, PageError> {
    let (patient, context) = session.context()?;
    let service = &launch.config().service;
    let back = "/";
    let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let count = ACCESSES.to_string();
    let (_, events) = service
        .search_params(
            &context,
            "AuditEvent",
            &params(&[
                ("patient", &patient),
                ("_sort", "-date"),
                ("_count", &count),
            ]),
        )
        .await
        .map_err(|e| PageError::fhir(e, back))?;
    let (_, consents) = service
        .search_params(
            &context,
            "Consent",
            &params(&[
                ("patient", &patient),
                ("status", "active"),
                ("_count", "100"),
            ]),
        )
        .await
        .map_err(|e| PageError::fhir(e, back))?;
    // Every version of every consent, in one audited read: who was opted out of what, and
    // when it was lifted, is kept in full.
    let versions = service
        .type_history(&context, Some("Consent"), (200, None), None)
        .await
        .map_err(|e| PageError::fhir(e, back))?
        .versions;
    let history = consent_history(versions.into_iter().map(|(_, id, v)| (id, v)).collect());
    let accesses = events
        .resources
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.content).ok())
        .map(|event| access(&event))
        .collect();
    let mut opt_outs = Vec::new();
    let mut denials: Vec<(String, Denial)> = Vec::new();
    for resource in &consents.resources {
        let Ok(consent) = serde_json::from_str::<Value>(&resource.content) else {
            continue;
        };
        let found = consent::denials(&consent).unwrap_or_default();
        if found.is_empty() {
            continue;
        }
        opt_outs.push(OptOut {
            id: resource.id.clone(),
            since: consent["dateTime"]
                .as_str()
                .map(readable_time)
                .unwrap_or_default(),
            denied: found.iter().map(denial_text).collect(),
        });
        denials.extend(found.into_iter().map(|d| (resource.id.clone(), d)));
    }
    let apps: Vec<AppRow> = launch
        .installed_apps()
        .into_iter()
        .map(|(id, app)| {
            let device = format!("Device/{}", id.replace('/', "."));
            let of_app = || denials.iter().filter(|(_, d)| d.actor == device);
            AppRow {
                opted_out: of_app()
                    .find(|(_, d)| d.resource_type.is_empty())
                    .map(|(consent, _)| consent.clone()),
                partly: of_app()
                    .filter(|(_, d)| !d.resource_type.is_empty())
                    .map(|(_, d)| d.resource_type.clone())
                    .collect(),
                regions: app.regions.join(", "),
                id,
                name: app.name,
                device,
            }
        })
        .collect();
    let purposes: Vec<PurposeRow> = (OPTIONAL_PURPOSES.into_iter())
        .map(|purpose| {
            let actor = purpose.consent_actor();
            PurposeRow {
                name: purpose.name(),
                display: purpose.display(),
                opted_out: (denials.iter())
                    .find(|(_, d)| d.actor == actor && d.resource_type.is_empty())
                    .map(|(consent, _)| consent.clone()),
            }
        })
        .collect();
    let done = done.map(|Query(done)| done).unwrap_or_default();
    let purpose = purposes.iter().find(|p| p.name == done.purpose);
    let app = apps.iter().find(|a| a.id == done.app);
    let notice = match (done.done.as_str(), app, purpose) {
        ("opted-out", _, Some(purpose)) if purpose.opted_out.is_some() => Some(format!(
            "You are opted out of {}: no export for it includes your data from now on, and no service granted it reads your data.",
            purpose.display
        )),
        ("lifted", _, Some(purpose)) if purpose.opted_out.is_none() => Some(format!(
            "Your opt-out of {} is lifted: your data may be used for it again.",
            purpose.display
        )),
        (kind, app, _) => match (kind, app) {
            ("opted-out", Some(app)) if app.opted_out.is_some() => Some(format!(
                "{} is opted out: from its next call on, it gets none of your data, in every region.",
                app.name
            )),
            ("lifted", Some(app)) if app.opted_out.is_none() => Some(format!(
                "Your opt-out of {} is lifted: it may use your data again when someone you see opens it.",
                app.name
            )),
            ("lifted", None) if done.app.is_empty() => Some("The opt-out is lifted.".into()),
            _ => None,
        },
    };
    Ok(render(
        StatusCode::OK,
        &CitizenPage {
            user: session.user().to_owned(),
            ends: session.ends(),
            patient,
            notice,
            accesses,
            apps,
            purposes,
            opt_outs,
            history,
        },
    ))
}

/// The story of each consent, from its versions (newest first, as a type's history lists
/// them): "…: opted out on …; lifted on …", newest consent first.
fn consent_history(versions: Vec<(String, Version)>) -> Vec<String> {
    let mut by_consent: Vec<(String, Vec<Version>)> = Vec::new();
    for (id, version) in versions {
        match by_consent.iter_mut().find(|(known, _)| *known == id) {
            Some((_, versions)) => versions.push(version),
            None => by_consent.push((id, vec![version])),
        }
    }
    by_consent
        .into_iter()
        .filter_map(|(_, mut versions)| {
            versions.sort_by_key(|v| v.version_id);
            let at = |version: &Version| {
                chrono::DateTime::from_timestamp_millis(version.last_updated)
                    .map(|t| readable_time(&t.to_rfc3339()))
                    .unwrap_or_default()
            };
            let mut what = None;
            let mut steps = Vec::new();
            let mut denying = false;
            for version in &versions {
                let Some(content) = &version.content else {
                    steps.push(format!("withdrawn on {}", at(version)));
                    denying = false;
                    continue;
                };
                let Ok(consent) = serde_json::from_str::<Value>(content) else {
                    continue;
                };
                let denials = consent::denials(&consent).unwrap_or_default();
                if what.is_none() && !denials.is_empty() {
                    let texts: Vec<String> = denials.iter().map(denial_text).collect();
                    what = Some(texts.join("; "));
                }
                match (denying, denials.is_empty()) {
                    (false, false) => steps.push(format!("opted out on {}", at(version))),
                    (true, true) => steps.push(format!("lifted on {}", at(version))),
                    _ => {}
                }
                denying = !denials.is_empty();
            }
            Some(format!("{}: {}", what?, steps.join("; ")))
        })
        .collect()
}

fn denial_text(denial: &Denial) -> String {
    let what = if denial.resource_type.is_empty() {
        "all your data".to_owned()
    } else {
        format!("your {} records", denial.resource_type)
    };
    let purpose = (denial.actor.strip_prefix("PurposeOfUse/")).and_then(Purpose::from_code);
    let whom = match (denial.actor.strip_prefix("Device/"), purpose) {
        (Some(app), _) => format!("the app {}", app.replacen('.', "/", 1)),
        (_, Some(purpose)) => format!("every use for {}", purpose.display()),
        _ => denial.actor.clone(),
    };
    format!("{whom}: {what}")
}

/// An AuditEvent (as `healthcloud_integration::audit` writes them) in words.
pub(super) fn access(event: &Value) -> Access {
    let agents = event["agent"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let user = agents
        .iter()
        .find(|a| a["requestor"].as_bool() == Some(true));
    let id = user
        .and_then(|u| {
            u["who"]["identifier"]["value"]
                .as_str()
                .or_else(|| u["who"]["reference"].as_str())
        })
        .unwrap_or("unknown");
    let role = user
        .and_then(|u| u["role"][0]["text"].as_str())
        .unwrap_or_default();
    let app = agents.iter().find_map(|a| {
        let reference = a["who"]["reference"].as_str()?;
        reference.strip_prefix("Device/")?;
        Some(a["who"]["display"].as_str().unwrap_or(reference).to_owned())
    });
    let verb = match event["subtype"][0]["code"].as_str().unwrap_or_default() {
        "read" | "vread" => "read",
        "search-type" | "search" => "searched",
        "create" => "added",
        "update" => "changed",
        "delete" => "deleted",
        other => other,
    };
    let resource_type = event["entity"]
        .as_array()
        .and_then(|entities| entities.iter().find_map(|e| e["description"].as_str()))
        .unwrap_or("data");
    let recorded = event["recorded"].as_str().unwrap_or_default();
    let allowed = event["outcome"].as_str() == Some("0");
    let purpose =
        (event["purposeOfEvent"][0]["coding"][0]["code"].as_str()).and_then(Purpose::from_code);
    // A Bulk Data export files one record in each included patient's log: its query is the
    // kick-off's (`$export=<level>…`).
    let exported = (event["entity"].as_array().into_iter().flatten())
        .filter_map(|entity| entity["query"].as_str())
        .filter_map(|query| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(query).ok()
        })
        .any(|query| query.starts_with(b"%24export="));
    let what = match exported {
        true => "included your records in an export".to_owned(),
        false => format!("{verb} {resource_type}"),
    };
    let what = match purpose {
        Some(purpose) => format!("{what} for {}", purpose.display()),
        None => what,
    };
    Access {
        datetime: recorded.to_owned(),
        at: readable_time(recorded),
        who: if role.is_empty() {
            id.to_owned()
        } else {
            format!("{id} ({role})")
        },
        yourself: matches!(role, "citizen" | "patient"),
        app,
        what,
        place: event["source"]["site"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        allowed,
        outcome: if allowed {
            "allowed".into()
        } else {
            match event["outcomeDesc"].as_str() {
                Some(why) => format!("refused: {why}"),
                None => "refused".into(),
            }
        },
    }
}

/// An opt-out: of an app, or of a purpose of use.
#[derive(Debug, Deserialize)]
struct OptOutForm {
    /// `publisher/app`.
    #[serde(default)]
    app: String,
    /// `research` or `quality`.
    #[serde(default)]
    purpose: String,
}

async fn opt_out(
    State(launch): State<Launch>,
    session: Session<Citizen>,
    request: Result<Form<OptOutForm>, FormRejection>,
) -> Result<Response, PageError> {
    let request = super::error::form(request)?;
    let (patient, context) = session.context()?;
    // Who is opted out: a purpose of use, or an installed app.
    let actor = match request.purpose.is_empty() {
        false => Purpose::from_name(&request.purpose)
            .filter(|purpose| OPTIONAL_PURPOSES.contains(purpose))
            .map(Purpose::consent_actor)
            .ok_or_else(|| {
                PageError::NotFound(format!(
                    "no purpose of use '{}' to opt out of: research or quality",
                    request.purpose
                ))
            })?,
        true if launch.installed_apps().contains_key(&request.app) => {
            format!("Device/{}", request.app.replace('/', "."))
        }
        true => {
            return Err(PageError::NotFound(format!(
                "no app {} is installed in any region",
                request.app
            )));
        }
    };
    launch
        .config()
        .service
        .create(&context, "Consent", consent::opt_out(&patient, &actor, &[]))
        .await
        .map_err(|e| PageError::fhir(e, Citizen::PATH))?;
    let back = returned_to(&request.app, &request.purpose);
    Ok(Redirect::to(&format!("/citizen/?done=opted-out&{back}")).into_response())
}

/// Where the page returns after a change: the app's or the purpose's place, named so the
/// page can say what was done.
fn returned_to(app: &str, purpose: &str) -> String {
    match purpose.is_empty() {
        true => format!("app={}#apps-heading", urlencode(app)),
        false => format!("purpose={}#purposes-heading", urlencode(purpose)),
    }
}

#[derive(Debug, Deserialize)]
struct LiftForm {
    consent: String,
    /// The app the button was for, to say so afterwards.
    #[serde(default)]
    app: String,
    /// Or the purpose of use.
    #[serde(default)]
    purpose: String,
}

/// Lifts an opt-out: the Consent becomes `inactive` (kept, so the record shows it existed).
async fn lift(
    State(launch): State<Launch>,
    session: Session<Citizen>,
    request: Result<Form<LiftForm>, FormRejection>,
) -> Result<Response, PageError> {
    let request = super::error::form(request)?;
    let (_, context) = session.context()?;
    let service = &launch.config().service;
    let current = service
        .read(&context, "Consent", &request.consent)
        .await
        .map_err(|e| PageError::fhir(e, Citizen::PATH))?;
    let lifted = Change::Merge(serde_json::json!({"status": "inactive"}));
    service
        .update(
            &context,
            "Consent",
            &request.consent,
            lifted,
            Some(current.version_id),
        )
        .await
        .map_err(|e| PageError::fhir(e, Citizen::PATH))?;
    let back = returned_to(&request.app, &request.purpose);
    Ok(Redirect::to(&format!("/citizen/?done=lifted&{back}")).into_response())
}

#[cfg(test)]
mod history_tests {
    use super::*;
    use serde_json::json;

    fn version(version_id: i64, at: i64, status: Option<&str>) -> Version {
        Version {
            version_id,
            last_updated: at,
            patient_id: Some("p".into()),
            content: status.map(|status| {
                let mut consent = consent::opt_out("p", "Device/examples.bp-monitor", &[]);
                consent["status"] = json!(status);
                consent.to_string()
            }),
        }
    }

    #[test]
    fn a_consents_story_says_when_it_was_given_lifted_and_withdrawn() {
        const HOUR: i64 = 3_600_000;
        let start = 1_764_000_000_000;
        // Newest first, as a type's history lists them.
        let versions = vec![
            ("c1".to_owned(), version(3, start + 3 * HOUR, None)),
            ("c1".to_owned(), version(2, start + HOUR, Some("inactive"))),
            ("c1".to_owned(), version(1, start, Some("active"))),
        ];
        let story = consent_history(versions);
        assert_eq!(story.len(), 1);
        let text = &story[0];
        assert!(
            text.starts_with("the app examples/bp-monitor: all your data: opted out on "),
            "{text}"
        );
        assert!(text.contains("; lifted on "), "{text}");
        assert!(text.contains("; withdrawn on "), "{text}");
        let opted = text.find("opted out").unwrap();
        assert!(
            opted < text.find("lifted").unwrap() && text.find("lifted") < text.find("withdrawn")
        );
        // A consent that never opted anyone out has no story.
        let versions = vec![("c2".to_owned(), version(1, start, Some("inactive")))];
        assert!(consent_history(versions).is_empty());
    }
}
