//! `GET /` and `POST /launch`: the launch page. Like a SMART EHR launch, the user picks who
//! they are (role, region) and the context (patient, app); the launch mints a short-lived
//! token bound to exactly that context and hands it to the browser as a cookie scoped to the
//! one app or page it is for.

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::service::WRITTEN_SOURCE;
use healthcloud_integration::{FhirError, FhirService};
use healthcloud_platform::auth::smart::Client;
use healthcloud_platform::auth::{Role, TokenRequest};
use healthcloud_runtime::regions::smart::client_id;
use healthcloud_runtime::serve::{LAUNCH_COOKIE, admits};
use serde::Deserialize;
use serde_json::Value;

use super::error::PageError;
use super::session::{self, Citizen, RegionAdmin, SESSION_SECS, SessionKind, StoreAdmin};
use super::{Launch, is_plain_id, render};

/// How many demo patients the launch page offers.
const PATIENTS: usize = 8;

/// The roles a launch can take, with what each opens.
const ROLES: [(Role, &str, &str); 5] = [
    (
        Role::Clinician,
        "Clinician",
        "opens an app of the region with the patient in context",
    ),
    (
        Role::Patient,
        "Patient",
        "opens an app of the region about their own care",
    ),
    (
        Role::Citizen,
        "Citizen",
        "sees who looked at their data and opts apps out",
    ),
    (
        Role::RegionAdmin,
        "Region admin",
        "grants and revokes what the region's apps may do, approves upgrades, uninstalls",
    ),
    (
        Role::StoreAdmin,
        "Store admin",
        "revokes a published app version everywhere",
    ),
];

pub(super) fn router() -> Router<Launch> {
    Router::new()
        .route("/", get(page))
        .route("/launch", post(launch))
}

/// The launch form; every field text, so that a bad value is answered on the page.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct LaunchForm {
    role: String,
    region: String,
    patient: String,
    app: String,
}

/// One option of a select.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// A problem with one field of the form.
struct FieldError {
    field: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "launch/launch.html")]
struct LaunchPage {
    roles: Vec<Choice>,
    regions: Vec<Choice>,
    patients: Vec<Choice>,
    apps: Vec<Choice>,
    errors: Vec<FieldError>,
    session_minutes: i64,
}

/// A demo patient as the form offers it.
#[derive(Debug, Clone)]
struct Patient {
    id: String,
    label: String,
}

/// `GET /`, optionally with the form's fields to preselect (the error pages link here so).
async fn page(
    State(launch): State<Launch>,
    query: Result<Query<LaunchForm>, QueryRejection>,
) -> Response {
    let form = query.map(|Query(form)| form).unwrap_or_default();
    match launch_page(&launch, &form, Vec::new()).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(error) => error.into_response(),
    }
}

async fn launch_page(
    launch: &Launch,
    form: &LaunchForm,
    errors: Vec<FieldError>,
) -> Result<LaunchPage, PageError> {
    let patients = demo_patients(&launch.config().service).await?;
    let apps = launch.installed_apps();
    let role = if form.role.is_empty() {
        Role::Clinician.as_str()
    } else {
        form.role.as_str()
    };
    Ok(LaunchPage {
        roles: ROLES
            .iter()
            .map(|(r, label, what)| Choice {
                value: r.as_str().to_owned(),
                label: format!("{label}: {what}"),
                selected: r.as_str() == role,
            })
            .collect(),
        regions: launch
            .regions()
            .into_iter()
            .map(|region| Choice {
                selected: region == form.region,
                label: region.clone(),
                value: region,
            })
            .collect(),
        patients: patients
            .into_iter()
            .map(|patient| Choice {
                selected: patient.id == form.patient,
                value: patient.id,
                label: patient.label,
            })
            .collect(),
        apps: apps
            .into_iter()
            .map(|(id, app)| Choice {
                selected: id == form.app,
                label: format!(
                    "{} ({id}), installed in {}",
                    app.name,
                    app.regions.join(", ")
                ),
                value: id,
            })
            .collect(),
        errors,
        session_minutes: SESSION_SECS / 60,
    })
}

/// A few demo patients by name, the first being `up`'s demo patient: in `up`'s demo world,
/// patients the hospital admitted who measure their blood pressure at home (the apps show
/// their home, GP and hospital readings), then patients with hypertension recorded here
/// (their blood pressure is followed), or any patients when there are none of either. Read
/// from the embedded store
/// directly, as `up`'s demo tokens are: the launcher stands in for an EHR's own patient list,
/// not for an access through the integration cloud.
async fn demo_patients(service: &FhirService) -> Result<Vec<Patient>, PageError> {
    let store = service.store_for_loading();
    let search = |resource_type: &str, params: &[(&str, &str)]| {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SearchQuery::parse(resource_type, &params, PageLimits::default())
            .map_err(|e| anyhow::anyhow!("the demo patient search: {e}"))
    };
    let hypertension = search(
        "Condition",
        &[
            ("code", "http://snomed.info/sct|59621000"),
            ("_count", "50"),
        ],
    )?;
    let mut ids: Vec<String> = Vec::new();
    let store_error = |e: FhirError| anyhow::anyhow!("the demo patient search: {e}");
    // In the demo world the store's Encounters are the hospital's admissions.
    let admissions = store
        .search(&search("Encounter", &[("_count", "200")])?)
        .await
        .map_err(store_error)?;
    for patient in admissions
        .resources
        .into_iter()
        .filter_map(|r| r.patient_id)
    {
        if ids.len() == PATIENTS || ids.contains(&patient) {
            continue;
        }
        let home_readings = search(
            "Observation",
            &[
                ("patient", &patient),
                ("code", "http://loinc.org|85354-9"),
                ("_source:below", WRITTEN_SOURCE),
                ("_count", "1"),
            ],
        )?;
        if !store
            .search(&home_readings)
            .await
            .map_err(store_error)?
            .resources
            .is_empty()
        {
            ids.push(patient);
        }
    }
    let conditions = store
        .search(&hypertension)
        .await
        .map_err(|e| anyhow::anyhow!("the demo patient search: {e}"))?;
    for patient in conditions
        .resources
        .into_iter()
        .filter_map(|r| r.patient_id)
    {
        if !ids.contains(&patient) && ids.len() < PATIENTS {
            ids.push(patient);
        }
    }
    let count = PATIENTS.to_string();
    let by_id = ids.join(",");
    let query = if ids.is_empty() {
        search("Patient", &[("_count", &count)])?
    } else {
        search("Patient", &[("_id", &by_id), ("_count", &count)])?
    };
    let found = store
        .search(&query)
        .await
        .map_err(|e| anyhow::anyhow!("the demo patient search: {e}"))?;
    let mut patients: Vec<Patient> = found
        .resources
        .iter()
        .map(|resource| Patient {
            id: resource.id.clone(),
            label: patient_label(&resource.id, &resource.content),
        })
        .collect();
    // In the order the conditions came (the demo patient of `up`'s tokens first).
    patients.sort_by_key(|p| ids.iter().position(|id| id == &p.id));
    Ok(patients)
}

/// `Given Family, born 1956-03-02 (Patient/<id>)`.
fn patient_label(id: &str, content: &str) -> String {
    let resource: Value = serde_json::from_str(content).unwrap_or_default();
    let name = &resource["name"][0];
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .map(|given| given.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(family) = name["family"].as_str() {
        parts.push(family);
    }
    let name = if parts.is_empty() {
        "(no name)".to_owned()
    } else {
        parts.join(" ")
    };
    match resource["birthDate"].as_str() {
        Some(born) => format!("{name}, born {born} (Patient/{id})"),
        None => format!("{name} (Patient/{id})"),
    }
}

/// `POST /launch`.
async fn launch(
    State(launch): State<Launch>,
    form: Result<Form<LaunchForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) =
        form.map_err(|e| PageError::BadRequest(format!("the launch form is unreadable: {e}")))?;
    let patients = demo_patients(&launch.config().service).await?;
    let target = match check(&launch, &form, &patients) {
        Ok(target) => target,
        Err(errors) => {
            let page = launch_page(&launch, &form, errors).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    if let (Some(client), Some(authorization), Some(patient)) = (
        &target.smart,
        &launch.config().authorization,
        &target.patient,
    ) {
        return smart_launch(&launch, authorization, client, patient).await;
    }
    let (cookie, location) = target.destination();
    let token = launch
        .config()
        .issuer
        .mint(
            target.role,
            target.token_request(target.audience(&launch, &cookie)),
        )
        .map_err(|e| anyhow::anyhow!("minting a launch token: {e}"))?;
    tracing::info!(
        role = target.role.as_str(),
        region = target.region,
        patient = target.patient,
        location,
        "launched"
    );
    let set_cookie = session::set_cookie(
        cookie.name,
        &token,
        &cookie.path,
        launch.inner.secure_cookies,
    )?;
    let location =
        HeaderValue::try_from(location).map_err(|e| anyhow::anyhow!("a launch location: {e}"))?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::SET_COOKIE, set_cookie),
        ],
    )
        .into_response())
}

/// An EHR launch of a SMART web app: a launch id for `patient`, handed to the app at its
/// launch URL with this FHIR server as `iss`. Who the user is, the region's identity provider
/// says when the app asks for authorization; no token is minted here.
async fn smart_launch(
    launch: &Launch,
    authorization: &healthcloud_oauth::AuthorizationServer,
    client: &Client,
    patient: &str,
) -> Result<Response, PageError> {
    let id = authorization
        .launch(&client.client_id, patient, None)
        .await
        .map_err(|e| anyhow::anyhow!("a SMART launch: {e}"))?;
    let mut location = url::Url::parse(client.launch_url.as_deref().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("the app's launch URL: {e}"))?;
    location
        .query_pairs_mut()
        .append_pair(
            "iss",
            &healthcloud_platform::auth::fhir_audience(&launch.config().public_url),
        )
        .append_pair("launch", &id);
    tracing::info!(client = client.client_id, patient, "SMART app launched");
    // A page that goes on to the app, not a redirect: the launch form may only post to this
    // server (form-action 'self'), and the app is elsewhere.
    let page = SmartLaunchPage {
        name: &client.name,
        origin: location.origin().ascii_serialization(),
        patient,
        region: &client.region,
        url: location.as_str(),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "launch/smart.html")]
struct SmartLaunchPage<'a> {
    name: &'a str,
    origin: String,
    patient: &'a str,
    region: &'a str,
    url: &'a str,
}

/// A checked launch: who, in which context, opening what.
#[derive(Debug)]
struct Target {
    role: Role,
    region: Option<String>,
    patient: Option<String>,
    /// `publisher/app`, for clinicians and patients.
    app: Option<String>,
    /// The SMART web app it opens, when it is one.
    smart: Option<std::sync::Arc<Client>>,
}

/// Where a launch's cookie goes.
struct LaunchCookie {
    name: &'static str,
    path: String,
}

impl Target {
    /// Who the launch token is for: the one app it opens (its install's URL) or the one page
    /// its cookie is scoped to. It is accepted nowhere else, the FHIR API included.
    fn audience(&self, launch: &Launch, cookie: &LaunchCookie) -> String {
        match (&self.region, &self.app) {
            (Some(region), Some(app)) if cookie.name == LAUNCH_COOKIE => {
                launch.runtime().app_audience(region, app)
            }
            _ => session::page_audience(&launch.config().public_url, &cookie.path),
        }
    }

    /// The launch token's claims; a clinician acts for their region's organization as the
    /// practitioner with their user id, so consent opt-outs of either apply to them.
    fn token_request(&self, audience: String) -> TokenRequest {
        let region = self.region.as_deref().unwrap_or_default();
        let patient = self.patient.as_deref().unwrap_or_default();
        let sub = match self.role {
            Role::Clinician => format!("demo-clinician-{region}"),
            Role::Patient => format!("demo-patient-{patient}"),
            Role::Citizen => format!("demo-citizen-{patient}"),
            Role::RegionAdmin => format!("demo-region-admin-{region}"),
            Role::StoreAdmin
            | Role::Publisher
            | Role::SecurityOfficer
            | Role::PlatformOperator
            | Role::System => "demo-store-admin".to_owned(),
        };
        let (org, fhir_user) = match self.role {
            Role::Clinician => (
                Some(format!("region-{region}")),
                Some(format!("Practitioner/{sub}")),
            ),
            _ => (None, None),
        };
        TokenRequest {
            sub: Some(sub),
            patient: self.patient.clone(),
            region: self.region.clone(),
            org,
            fhir_user,
            audience: vec![audience],
            ttl_secs: Some(SESSION_SECS),
            ..Default::default()
        }
    }

    /// The cookie and the page the browser is sent to.
    fn destination(&self) -> (LaunchCookie, String) {
        fn page<K: SessionKind>(location: String) -> (LaunchCookie, String) {
            let cookie = LaunchCookie {
                name: K::COOKIE,
                path: K::PATH.to_owned(),
            };
            (cookie, location)
        }
        let region = self.region.as_deref().unwrap_or_default();
        match (self.role, &self.app) {
            (Role::RegionAdmin, _) => page::<RegionAdmin>(format!("/regions/{region}/")),
            (Role::StoreAdmin, _) => page::<StoreAdmin>(StoreAdmin::PATH.to_owned()),
            (Role::Citizen, _) => page::<Citizen>(Citizen::PATH.to_owned()),
            (_, app) => {
                let path = format!("/apps/{region}/{}/", app.as_deref().unwrap_or_default());
                let cookie = LaunchCookie {
                    name: LAUNCH_COOKIE,
                    path: path.clone(),
                };
                (cookie, path)
            }
        }
    }
}

/// Checks the form against what exists: every mistake at once, each naming its field.
fn check(
    launch: &Launch,
    form: &LaunchForm,
    patients: &[Patient],
) -> Result<Target, Vec<FieldError>> {
    let mut errors = Vec::new();
    let role = ROLES
        .iter()
        .map(|(role, ..)| *role)
        .find(|role| role.as_str() == form.role);
    let Some(role) = role else {
        errors.push(FieldError {
            field: "role",
            message: "choose one of the roles offered".into(),
        });
        return Err(errors);
    };
    let needs_region = matches!(role, Role::Clinician | Role::Patient | Role::RegionAdmin);
    let needs_patient = matches!(role, Role::Clinician | Role::Patient | Role::Citizen);
    let needs_app = matches!(role, Role::Clinician | Role::Patient);
    let region = needs_region.then(|| form.region.clone());
    if let Some(region) = &region
        && !(is_plain_id(region) && launch.regions().contains(region))
    {
        errors.push(FieldError {
            field: "region",
            message: format!(
                "a {} works in a region: choose one of the regions offered",
                role.as_str()
            ),
        });
    }
    let patient = needs_patient.then(|| form.patient.clone());
    if let Some(patient) = &patient
        && !patients.iter().any(|p| &p.id == patient)
    {
        errors.push(FieldError {
            field: "patient",
            message: format!(
                "a {} launch needs a patient: choose one of the patients offered",
                role.as_str()
            ),
        });
    }
    let app = needs_app.then(|| form.app.clone());
    let mut smart = None;
    if let (Some(app), Some(region)) = (&app, &region) {
        let named = app
            .split_once('/')
            .is_some_and(|(publisher, id)| is_plain_id(publisher) && is_plain_id(id));
        let install = named
            .then(|| launch.runtime().installed(region, app))
            .flatten();
        smart = named
            .then(|| {
                launch
                    .runtime()
                    .smart_clients()
                    .get(&client_id(region, app))
            })
            .flatten()
            .filter(|client| client.launch_url.is_some());
        if let Some(install) = &install
            && !admits(&install.manifest.app.audience, role)
        {
            errors.push(FieldError {
                field: "app",
                message: format!(
                    "{app} is not for a {}: its manifest names who it is for; choose another app or role",
                    role.as_str()
                ),
            });
        }
        if smart.is_some() && launch.config().authorization.is_none() {
            errors.push(FieldError {
                field: "app",
                message: format!(
                    "{app} is a SMART web app: launching it needs the authorization server (start with --identity-provider)"
                ),
            });
        }
        if install.is_none() && smart.is_none() {
            errors.push(FieldError {
                field: "app",
                message: if app.is_empty() {
                    format!("a {} opens an app: choose one", role.as_str())
                } else {
                    format!(
                        "{app} is not installed in region {region}: choose an app installed there, or another region"
                    )
                },
            });
        }
    }
    if errors.is_empty() {
        Ok(Target {
            role,
            region,
            patient,
            app,
            smart,
        })
    } else {
        Err(errors)
    }
}
